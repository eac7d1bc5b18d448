"""Tests for stream/errors.py: every error family of the project sits under the one root."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

import pytest

from spikereveal.stream.errors import SpikeRevealError

REPO = Path(__file__).resolve().parents[2]
PACKAGES = ("capture", "stream", "engine", "calibration", "tools")
#: The families the CLI must print as one line (a new one is found by the walk below, too).
FAMILIES = (
    ("spikereveal.stream.spikes", "SpikeFormatError"),
    ("spikereveal.capture.datasets", "DatasetError"),
    ("spikereveal.capture.sources", "SourceError"),
    ("spikereveal.capture.simulation", "IncompleteSampleError"),
    ("spikereveal.capture.images", "ImageFileError"),
    ("spikereveal.stream.protocol", "ProtocolError"),
    ("spikereveal.stream.sockets", "EndpointError"),
    ("spikereveal.stream.video", "VideoError"),
    ("spikereveal.engine.weights", "WeightsError"),
    ("spikereveal.engine.backends.base", "BackendError"),
    ("spikereveal.calibration.model", "CalibrationError"),
    ("spikereveal.tools.run_config", "RunConfigError"),
)


def _project_modules() -> list[str]:
    names = []
    for package in PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            parts = path.relative_to(REPO).with_suffix("").parts
            names.append(".".join(("spikereveal", *(parts[:-1] if parts[-1] == "__init__" else parts))))
    return names


@pytest.mark.parametrize(("module", "name"), FAMILIES)
def test_each_family_is_a_spikereveal_error(module: str, name: str) -> None:
    family = getattr(importlib.import_module(module), name)
    assert issubclass(family, SpikeRevealError)
    assert issubclass(family, ValueError)  # callers written against ValueError keep working


def test_every_error_class_defined_in_the_project_is_under_the_root() -> None:
    """A family added later without the root would be a traceback at the CLI: find it here."""
    outside = []
    for module_name in _project_modules():
        module = importlib.import_module(module_name)
        for name, obj in vars(module).items():
            if (
                inspect.isclass(obj)
                and issubclass(obj, Exception)
                and obj.__module__ == module_name
                and name.endswith("Error")
                and not issubclass(obj, SpikeRevealError)
            ):
                outside.append(f"{module_name}.{name}")
    assert not outside, f"error families outside SpikeRevealError: {outside}"


def test_the_root_is_a_value_error_with_its_message() -> None:
    exc = SpikeRevealError("x.dat: 3 bytes is not a whole number of 2x8 frames")
    assert isinstance(exc, ValueError)
    assert str(exc) == "x.dat: 3 bytes is not a whole number of 2x8 frames"
