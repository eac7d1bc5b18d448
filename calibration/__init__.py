"""calibration: how the spike sensor maps onto the RGB frame (scale, offset, homography, time offset).

One frozen :class:`Calibration`, loaded from YAML or JSON; capture and engine both check sizes
against it. ``spatial`` fits the spike -> RGB homography from a checkerboard, ``temporal`` the
clock offset from a scene whose brightness changes, and ``warp`` applies both on a rig. Sits on stream/ only. Names are imported on first use (see
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
    "spikereveal.calibration.spatial": ("SpatialFit", "calibrate_spatial", "overlay_image"),
    "spikereveal.calibration.temporal": ("TemporalFit", "estimate_offset"),
    "spikereveal.calibration.warp": ("exposure_window_frames", "rgb_on_spike_grid"),
}
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
