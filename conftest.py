"""Run the docstring ``Examples:`` of the project's own modules under their installed names.

pyproject's ``--doctest-modules`` collects capture/, stream/, engine/, calibration/ and tools/.
Left alone, pytest would import ``stream/spikes.py`` as a second module ``stream.spikes`` beside
the real ``spikereveal.stream.spikes`` (the folders are mapped onto ``spikereveal.*`` by
pyproject's package-dir), so a doctest would see a second copy of every class and
``SpikeFormatError`` would print under the wrong name. This hook swaps the doctest collector of
each source file for one that imports the module as ``spikereveal.<folder>.<module>``.
"""

from __future__ import annotations

import importlib
from pathlib import Path
from types import ModuleType

import pytest
from _pytest.doctest import DoctestModule

REPO = Path(__file__).resolve().parent
#: The folders that pyproject maps onto ``spikereveal.<folder>``.
PACKAGES = ("capture", "stream", "engine", "calibration", "tools")


def installed_name(path: Path) -> str | None:
    """``REPO/stream/spikes.py`` -> ``"spikereveal.stream.spikes"``; None outside the packages."""
    try:
        parts = path.resolve().relative_to(REPO).with_suffix("").parts
    except ValueError:
        return None
    if not parts or parts[0] not in PACKAGES:
        return None
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(("spikereveal", *parts))


class InstalledDoctestModule(DoctestModule):
    """A doctest collector that imports its file by its ``spikereveal.*`` name."""

    def _getobj(self) -> ModuleType:
        name = installed_name(self.path)
        assert name is not None
        return importlib.import_module(name)


@pytest.hookimpl(wrapper=True)
def pytest_collect_file(file_path: Path, parent: pytest.Collector):
    collected = yield
    if installed_name(file_path) is None:
        return collected
    return [
        InstalledDoctestModule.from_parent(parent, path=file_path) if type(node) is DoctestModule else node
        for node in collected
    ]
