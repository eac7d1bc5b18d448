"""TFP (texture from playback): the mean of the spikes over a window of frames.

A pixel's firing rate is proportional to its brightness, so the mean of w spike frames is a noisy
grey image; S-SDM uses a short TFP around each output time and a long one over the exposure. This
is the one TFP of the project (CPU path, references for the GPU kernels, training, the CLI).
"""

from __future__ import annotations

import numpy as np

# 0/1 frames are summed in uint8 in chunks of at most 255 frames (no overflow), which runs at
# memory speed with no casting pass; the chunk sums are then added in uint32.
_UINT8_CHUNK = 255


def window_bounds(center: int, window: int, n_frames: int) -> tuple[int, int]:
    """First and last (inclusive) frame of the ``window``-frame window centred on ``center``.

    ``window`` must be a positive odd integer; a window reaching outside ``0..n_frames-1`` is a
    ValueError naming the range and the number of frames.
    """
    if (
        isinstance(window, bool)
        or not isinstance(window, (int, np.integer))
        or window <= 0
        or window % 2 == 0
    ):
        raise ValueError(f"TFP window must be a positive odd number of frames, got {window!r}")
    start, stop = int(center) - window // 2, int(center) + window // 2
    _check_range(start, stop, n_frames, f" (centre {center}, window {window})")
    return start, stop


def _check_range(start: int, stop_inclusive: int, n_frames: int, context: str = "") -> None:
    if not (0 <= start <= stop_inclusive < n_frames):
        available = f"0..{n_frames - 1}" if n_frames else "none"
        raise ValueError(
            f"spike frames {start}..{stop_inclusive}{context} are outside the spike stream of "
            f"{n_frames} frames ({available})"
        )


def _as_frames(spikes: np.ndarray) -> np.ndarray:
    spikes = np.asarray(spikes)
    if spikes.ndim < 2:
        raise ValueError(f"spikes must be (T, H, W) frames, got shape {spikes.shape}")
    return spikes


def _mean_frames(frames: np.ndarray) -> np.ndarray:
    """Mean over axis 0 as float32; exact counts for bool/uint8 0/1 input."""
    n = frames.shape[0]
    if frames.dtype in (np.bool_, np.uint8):
        if n <= _UINT8_CHUNK:
            counts = frames.sum(axis=0, dtype=np.uint8)
        else:
            counts = np.zeros(frames.shape[1:], dtype=np.uint32)
            for s in range(0, n, _UINT8_CHUNK):
                counts += frames[s : s + _UINT8_CHUNK].sum(axis=0, dtype=np.uint8)
        out = counts.astype(np.float32)
        out /= np.float32(n)  # count / n correctly rounded in float32
        return out
    acc = np.float64 if frames.dtype.kind == "f" else np.int64
    return (frames.sum(axis=0, dtype=acc) / n).astype(np.float32)


def tfp(spikes: np.ndarray, center: int, window: int) -> np.ndarray:
    """TFP over frames ``center - window//2 .. center + window//2`` (inclusive).

    ``spikes``: (T, H, W) array of 0/1 (uint8 or bool are the fast path; uint8 must hold only 0/1,
    as it is summed in 8 bits; other dtypes are averaged as numbers). ``window`` odd and positive.
    Returns (H, W) float32 in 0..1.
    """
    spikes = _as_frames(spikes)
    start, stop = window_bounds(center, window, spikes.shape[0])
    return _mean_frames(spikes[start : stop + 1])


def tfp_range(spikes: np.ndarray, start: int, stop_inclusive: int) -> np.ndarray:
    """TFP over frames ``start .. stop_inclusive`` (e.g. a whole exposure, for TFP_long).

    Same input rules as :func:`tfp`; returns (H, W) float32. A range outside the frames, or an
    empty one, is a ValueError naming the range and the number of frames.
    """
    spikes = _as_frames(spikes)
    _check_range(int(start), int(stop_inclusive), spikes.shape[0])
    return _mean_frames(spikes[start : stop_inclusive + 1])
