"""Applying a calibration on a rig: the RGB image onto the spike grid, the exposure onto spike frames.

The RGB image is resampled (not the spikes): warping 0/1 spike frames would blur the bits the
spike kernels count, while the RGB image is smooth and warped once per exposure. The target grid
is ``scale`` times the spike grid (4x: the LDN's blur input), so the spikes stay untouched and the
sizes fit by construction.
"""

from __future__ import annotations

import math

import cv2
import numpy as np

from spikereveal.calibration.model import Calibration, CalibrationError


def spike_grid_matrix(calibration: Calibration, scale: int = 4) -> np.ndarray:
    """3x3 matrix from output pixel (X, Y) on the ``scale``x spike grid to RGB pixel (x, y).

    Output pixel X sits at spike coordinate ``(X + 0.5) / scale - 0.5`` (pixel centres at
    integers on both grids), which the calibration maps into the RGB image.
    """
    s = float(scale)
    to_spike = np.array([[1 / s, 0, 0.5 / s - 0.5], [0, 1 / s, 0.5 / s - 0.5], [0, 0, 1]], dtype=np.float64)
    return np.asarray(calibration.spike_to_rgb_matrix(), dtype=np.float64) @ to_spike


def rgb_on_spike_grid(
    rgb: np.ndarray, calibration: Calibration, spike_hw: tuple[int, int], scale: int = 4
) -> np.ndarray:
    """The RGB image resampled onto the grid ``scale`` times the spike grid: (h*scale, w*scale[, C]).

    ``rgb``: (H, W) or (H, W, C) image of any dtype OpenCV warps (uint8, float32); the output has
    the same dtype and channels. Without a ``homography`` the calibration's nominal
    ``scale``/``offset`` relation is used. Pixels that fall outside the RGB image are 0.
    """
    if isinstance(scale, bool) or not isinstance(scale, (int, np.integer)) or scale < 1:
        raise CalibrationError(f"scale: {scale!r} must be a whole number >= 1")
    h, w = int(spike_hw[0]), int(spike_hw[1])
    if h < 1 or w < 1:
        raise CalibrationError(f"spike_hw: {spike_hw!r} must be a positive (height, width)")
    rgb = np.asarray(rgb)
    if rgb.ndim not in (2, 3) or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise CalibrationError(f"rgb: expected an (H, W) or (H, W, C) image, got shape {rgb.shape}")
    matrix = spike_grid_matrix(calibration, scale)
    return cv2.warpPerspective(
        rgb,
        matrix,
        (w * scale, h * scale),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )


def exposure_window_frames(
    start_ns: int, end_ns: int, calibration: Calibration, spike_rate_hz: float, margin_frames: int = 0
) -> tuple[int, int]:
    """Spike frames (first, last), inclusive, covering an RGB-clock exposure plus ``margin_frames`` each side.

    The exposure ``[start_ns, end_ns]`` on the RGB clock is ``[start + time_offset_ns, end +
    time_offset_ns]`` on the spike clock; frame i integrates ``((i-1)/rate, i/rate]``, so it
    overlaps the exposure when ``x0 < i < x1 + 1`` with x in frame units (t * rate).

    Examples:
        >>> exposure_window_frames(0, 1_000_000, Calibration(), 20_000.0)
        (1, 20)
        >>> exposure_window_frames(0, 1_000_000, Calibration(time_offset_ns=50_000), 20_000.0, 2)
        (0, 23)
    """
    if not (math.isfinite(spike_rate_hz) and spike_rate_hz > 0):
        raise CalibrationError(f"spike_rate_hz: {spike_rate_hz!r} must be a finite number > 0")
    if end_ns < start_ns:
        raise CalibrationError(f"exposure: ends at {end_ns} ns before it starts at {start_ns} ns")
    if (
        isinstance(margin_frames, bool)
        or not isinstance(margin_frames, (int, np.integer))
        or margin_frames < 0
    ):
        raise CalibrationError(f"margin_frames: {margin_frames!r} must be a whole number >= 0")
    offset = int(calibration.time_offset_ns)
    # Exact rational arithmetic in integer ns where the rate is whole (the usual 20/40 kHz).
    x0 = _frames_at(int(start_ns) + offset, spike_rate_hz)
    x1 = _frames_at(int(end_ns) + offset, spike_rate_hz)
    first = math.floor(x0) + 1
    last = max(first, math.ceil(x1))
    return first - int(margin_frames), last + int(margin_frames)


def _frames_at(t_ns: int, rate_hz: float) -> float:
    if float(rate_hz).is_integer():
        num = t_ns * int(rate_hz)
        whole, rem = divmod(num, 1_000_000_000)
        return whole + rem / 1e9
    return t_ns * rate_hz / 1e9
