"""The exception families the CLI reports as one line instead of a traceback.

Each folder raises its own family at its boundary (``SpikeFormatError`` for spike files,
``DatasetError`` for dataset layouts, ...). Add a family here when you add one elsewhere.
"""

from __future__ import annotations

import importlib

_FAMILIES = [
    ("spikereveal.capture.dat", "SpikeFormatError"),
    ("spikereveal.capture.datasets", "DatasetError"),
    ("spikereveal.engine.weights", "WeightsError"),
    ("spikereveal.calibration.model", "CalibrationError"),
    ("spikereveal.stream.protocol", "ProtocolError"),
    ("spikereveal.tools.images", "ImageFileError"),
]


def _collect() -> tuple[type[BaseException], ...]:
    found: list[type[BaseException]] = [FileNotFoundError, IsADirectoryError, NotADirectoryError]
    for module_name, attr in _FAMILIES:
        try:
            found.append(getattr(importlib.import_module(module_name), attr))
        except (ImportError, AttributeError):
            continue  # family not built yet in this checkout
    return tuple(found)


USER_ERRORS: tuple[type[BaseException], ...] = _collect()
