"""calibration: how the spike sensor maps onto the RGB frame (scale, offset, spike-frame shift).

One frozen :class:`Calibration`, loaded from YAML or JSON; capture and engine both check sizes
against it. Sits on stream/ only. Names are imported on first use (see
:mod:`spikereveal.stream.exports`).
"""

from __future__ import annotations

from spikereveal.stream.exports import lazy_exports

_EXPORTS = {
    "spikereveal.calibration.model": (
        "Calibration",
        "CalibrationError",
        "load_calibration",
        "save_calibration",
    ),
}
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
