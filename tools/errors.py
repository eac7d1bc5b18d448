"""The exception families the CLI reports as one line instead of a traceback.

Each folder raises its own family at its boundary (``SpikeFormatError`` for spike files,
``DatasetError`` for dataset layouts, ...). Add a family here when you add one elsewhere.
Families are looked up only among modules already imported: an exception cannot come from a
module that was never loaded, and importing them all up front would load torch on every call.
"""

from __future__ import annotations

import sys

FAMILIES: tuple[tuple[str, str], ...] = (
    ("spikereveal.capture.dat", "SpikeFormatError"),
    ("spikereveal.capture.datasets", "DatasetError"),
    ("spikereveal.capture.sources", "SourceError"),
    ("spikereveal.engine.weights", "WeightsError"),
    ("spikereveal.engine.backends.base", "BackendError"),
    ("spikereveal.calibration.model", "CalibrationError"),
    ("spikereveal.stream.protocol", "ProtocolError"),
    ("spikereveal.tools.images", "ImageFileError"),
    ("spikereveal.stream.video", "VideoError"),
    ("spikereveal.tools.run_config", "RunConfigError"),
)


def user_errors() -> tuple[type[BaseException], ...]:
    """Exception types that mean "bad input", not "bug" (file-system errors included)."""
    found: list[type[BaseException]] = [
        FileNotFoundError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
    ]
    for module_name, attr in FAMILIES:
        module = sys.modules.get(module_name)
        if module is not None and hasattr(module, attr):
            found.append(getattr(module, attr))
    return tuple(found)


def is_user_error(exc: BaseException) -> bool:
    """True when ``exc`` should be shown as one line (see :func:`user_errors`)."""
    return isinstance(exc, user_errors())
