"""Run ``spikereveal.tools.selftest`` from a raw checkout, without installing the project.

pyproject maps the top-level folders (engine/, stream/, tools/, ...) onto ``spikereveal.*``, so a
bare checkout is not importable under those names. This launcher builds that namespace in a
temporary folder of symlinks (``spikereveal/engine -> <checkout>/engine`` ...), puts it first on
``sys.path`` and runs the self-test module with the given arguments. It needs only what the self-test
needs (NumPy, torch, cuda-python for --gpu), never pyzmq or click:

    python tools/selftest_standalone.py --gpu --json bench/selftest-gpu.json
"""

from __future__ import annotations

import os
import runpy
import sys
import tempfile
from pathlib import Path

CHECKOUT = Path(__file__).resolve().parents[1]
#: The folders pyproject's package-dir maps onto ``spikereveal.<folder>``.
PACKAGES = ("capture", "stream", "engine", "calibration", "tools")


def namespace_root(checkout: Path = CHECKOUT) -> Path:
    """A temporary folder holding ``spikereveal/<folder>`` symlinks into ``checkout``."""
    root = Path(tempfile.mkdtemp(prefix="spikereveal-ns-"))
    package = root / "spikereveal"
    package.mkdir()
    for name in PACKAGES:
        os.symlink(checkout / name, package / name, target_is_directory=True)
    return root


def main(argv: list[str] | None = None) -> int:
    # Drop tools/ (this script's folder) from the path: its modules must load as spikereveal.tools.*.
    here = str(Path(__file__).resolve().parent)
    sys.path[:] = [p for p in sys.path if p and Path(p).resolve() != Path(here)]
    sys.path.insert(0, str(namespace_root()))
    sys.argv = ["spikereveal.tools.selftest", *(sys.argv[1:] if argv is None else argv)]
    try:
        runpy.run_module("spikereveal.tools.selftest", run_name="__main__", alter_sys=True)
    except SystemExit as exc:
        return int(exc.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main())
