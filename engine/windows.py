"""Where in the spike stream each output frame sits, and the spike windows the models see.

The one place that turns (exposure, K) into spike indices and cuts the fixed-length windows
around them; the offline CLI, the engine node, training and the benchmarks all call it.
"""

from __future__ import annotations

import numpy as np

from spikereveal.engine.tfp import window_bounds

#: Spike frames the LDN sees per output frame; the output is the frame at the window centre.
LDN_WINDOW = 21
#: TFP_short length of the released SDM teacher (DESIGN.md).
SDM_SHORT_WINDOW = 9
#: Frames kept outside the exposure on each side in the GOPRO-spike convention (137 = 20 + 97 + 20).
DEFAULT_MARGIN = 20


def default_exposure(num_frames: int, margin: int = DEFAULT_MARGIN) -> tuple[int, int]:
    """Exposure of a stream with ``margin`` spare frames on each side (20..116 for 137 frames)."""
    start, end = margin, num_frames - 1 - margin
    if end < start:
        raise ValueError(
            f"{num_frames} spike frames leave no exposure after a margin of {margin} frames on each side; "
            f"need at least {2 * margin + 1} frames or an explicit exposure"
        )
    return start, end


def exposure_times(start: int, end: int, count: int) -> list[int]:
    """``count`` spike indices evenly spaced over ``start..end`` inclusive.

    K=5 over 20..116 gives 20, 44, 68, 92, 116; K=1 gives the middle (68). Halves round up so
    the result does not depend on banker's rounding.
    """
    if count < 1:
        raise ValueError(f"number of output times must be >= 1, got {count}")
    if end < start:
        raise ValueError(f"exposure {start}:{end} is empty (end before start)")
    if count == 1:
        return [int(np.floor((start + end) / 2 + 0.5))]
    return [int(np.floor(t + 0.5)) for t in np.linspace(start, end, count)]


def frames_needed(exposure: tuple[int, int], times: list[int], length: int = LDN_WINDOW) -> tuple[int, int]:
    """First and last spike frame that the exposure's TFP and the windows around ``times`` touch.

    Decoding only this span skips the margin frames no model reads (10 of 137 at each end for
    the paper's K=5 times): the decode path is memory-bound, so fewer frames is less time.
    """
    half = length // 2
    return min(exposure[0], min(times) - half), max(exposure[1], max(times) + half)


def spike_window(spikes: np.ndarray, center: int, length: int = LDN_WINDOW) -> np.ndarray:
    """The (length, h, w) slice of ``spikes`` (T, h, w) centred on ``center`` (a view, no copy)."""
    first, last = window_bounds(center, length, spikes.shape[0])
    return spikes[first : last + 1]


def ldn_inputs(
    blur_bgr: np.ndarray, spikes: np.ndarray, times: list[int], length: int = LDN_WINDOW
) -> tuple[np.ndarray, np.ndarray]:
    """Batch the LDN inputs for every output time.

    blur_bgr: (H, W, 3) uint8 BGR; spikes: (T, h, w) uint8 0/1. Returns blur (K, 3, H, W) float32
    in 0..1 (the same image repeated, BGR as the released network expects) and spike windows
    (K, length, h, w) float32.
    """
    if blur_bgr.ndim != 3 or blur_bgr.shape[2] != 3:
        raise ValueError(f"blur must be (H, W, 3), got shape {blur_bgr.shape}")
    blur = np.ascontiguousarray(blur_bgr.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)
    blur_batch = np.broadcast_to(blur, (len(times), *blur.shape)).copy()
    windows = np.stack([spike_window(spikes, t, length) for t in times]).astype(np.float32)
    return blur_batch, windows
