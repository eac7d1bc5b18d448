"""Each package's ``__init__`` names what it offers (``__all__``) and stays cheap to import."""

from __future__ import annotations

import importlib
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("capture", "stream", "engine", "engine.backends", "calibration", "tools")


@pytest.mark.parametrize("package", PACKAGES)
def test_every_public_name_resolves(package: str) -> None:
    module = importlib.import_module(f"spikereveal.{package}")
    assert module.__all__, f"spikereveal.{package} offers nothing"
    for name in module.__all__:
        assert getattr(module, name) is not None, name
    folder = REPO / package.replace(".", "/")
    submodules = {p.stem for p in folder.glob("*.py")} | {p.name for p in folder.iterdir() if p.is_dir()}
    # A public name equal to a submodule's name would turn into the module once that is imported.
    assert not set(module.__all__) & submodules


def test_the_main_entry_points_are_offered() -> None:
    from spikereveal import capture, engine, stream

    for package, names in (
        (capture, ["open_source", "open_dat", "Capture"]),
        (stream, ["Bundle", "Result", "encode", "decode", "open_sender", "open_receiver", "SpikeGeometry"]),
        (stream, ["unpack_frames", "pack_frames", "SpikeRevealError"]),
        (engine, ["create_backend", "make_deblurrer"]),
    ):
        assert set(names) <= set(package.__all__)


def _loaded_after(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(' '.join(sorted(sys.modules)))"
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True
    )
    return set(out.stdout.split())


def test_importing_the_packages_does_not_load_torch() -> None:
    loaded = _loaded_after(
        "import spikereveal.engine, spikereveal.engine.backends, spikereveal.capture, "
        "spikereveal.stream, spikereveal.calibration"
    )
    assert "torch" not in loaded


def test_the_cli_starts_without_numpy() -> None:
    """``spikereveal --help`` loads click and the error root only (it stays fast)."""
    loaded = _loaded_after("import spikereveal.tools.cli")
    assert "numpy" not in loaded and "torch" not in loaded and "zmq" not in loaded
