"""Where in the spike stream each output frame sits, and the spike windows the models see.

The one place that turns (exposure, K) into spike indices and cuts the fixed-length windows
around them; the offline CLI, the engine node, training and the benchmarks all call it.
"""

from __future__ import annotations

import numpy as np

from spikereveal.engine.tfp import window_bounds
from spikereveal.stream.errors import SpikeRevealError

#: Spike frames the LDN sees per output frame; the output is the frame at the window centre.
LDN_WINDOW = 21
#: The LDN's RGB input is this many times the spike size per side (the spike sensor has 1/4 of it).
LDN_SCALE = 4
#: TFP_short length of the released SDM teacher (DESIGN.md).
SDM_SHORT_WINDOW = 9
#: Frames kept outside the exposure on each side in the GOPRO-spike convention (137 = 20 + 97 + 20).
DEFAULT_MARGIN = 20


class ExposureError(SpikeRevealError):
    """An exposure, a number of output times or a spike window that does not fit the spike stream."""


def default_exposure(num_frames: int, margin: int = DEFAULT_MARGIN) -> tuple[int, int]:
    """Exposure of a stream with ``margin`` spare frames on each side (20..116 for 137 frames).

    Raises ExposureError when the stream is too short to keep the margins (fewer than
    ``2 * margin + 1`` frames): the caller must then be told an explicit exposure.
    """
    start, end = margin, num_frames - 1 - margin
    if end < start:
        raise ExposureError(
            f"{num_frames} spike frames leave no exposure after a margin of {margin} frames on each side; "
            f"need at least {2 * margin + 1} frames or an explicit exposure"
        )
    return start, end


def exposure_times(start: int, end: int, count: int) -> list[int]:
    """``count`` spike indices evenly spaced over ``start..end`` inclusive.

    K=5 over 20..116 gives 20, 44, 68, 92, 116; K=1 gives the middle (68). Halves round up so
    the result does not depend on banker's rounding. ``count`` may not exceed the exposure's
    ``end - start + 1`` frames: more would repeat spike indices, i.e. write the same frame twice
    under two names (ExposureError).
    """
    if count < 1:
        raise ExposureError(f"number of output times must be >= 1, got {count}")
    if end < start:
        raise ExposureError(f"exposure {start}:{end} is empty (end before start)")
    frames = end - start + 1
    if count > frames:
        raise ExposureError(
            f"{count} output times over exposure {start}:{end} would repeat spike frames: "
            f"the exposure has {frames} frame{'s' if frames != 1 else ''}, so at most {frames} output "
            f"time{'s' if frames != 1 else ''}"
        )
    if count == 1:
        return [int(np.floor((start + end) / 2 + 0.5))]
    return [int(np.floor(t + 0.5)) for t in np.linspace(start, end, count)]


def check_exposure(
    exposure: tuple[int, int], times: list[int], num_frames: int, window: int, reader: str = "the model"
) -> None:
    """Raise ExposureError unless a model can read ``exposure`` and ``times`` from ``num_frames`` frames.

    Every model reads the TFP over the whole exposure and the ``window`` frames centred on each
    output time (9 for SDM's TFP_short, 21 for the LDN), so the exposure must lie inside the stream
    and each time at least ``window // 2`` frames from its ends. The message says which exposure
    would fit, since the caller chose an exposure, not a window; ``reader`` names who reads the
    window ("the sdm model").
    """
    start, end = exposure
    half = window // 2
    last = num_frames - 1
    stream = f"a stream of {num_frames} spike frames (0..{last})" if num_frames else "an empty spike stream"
    if not 0 <= start <= end <= last:
        raise ExposureError(f"exposure {start}:{end} is outside {stream}")
    if num_frames < window:
        raise ExposureError(
            f"{stream} is shorter than the {window} frames {reader} reads around each output time; "
            f"need at least {window} frames"
        )
    bad = [t for t in times if not half <= t <= last - half]
    if not bad:
        return
    t = bad[0]
    where = (
        "that time sits in the exposure's middle, so the middle"
        if len(times) == 1
        else "the first and last output times sit on the exposure's ends, so the exposure"
    )
    raise ExposureError(
        f"exposure {start}:{end} does not fit {stream}: output time {t} needs spike frames "
        f"{t - half}..{t + half} (the {window} frames {reader} reads around it), outside the stream; {where} "
        f"must lie within {half}..{last - half}"
    )


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
    blur_bgr: np.ndarray,
    spikes: np.ndarray,
    times: list[int],
    length: int = LDN_WINDOW,
    spike_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray]:
    """Batch the LDN inputs for every output time.

    blur_bgr: (H, W, 3) uint8 BGR; spikes: (T, h, w) uint8 0/1. Returns blur (K, 3, H, W) float32
    in 0..1 (the same image repeated, BGR as the released network expects) and spike windows
    (K, length, h, w) float32, multiplied by ``spike_scale`` (the density normalization of
    engine/density.py: 0/``spike_scale`` windows look to the network like its training threshold's).
    """
    if blur_bgr.ndim != 3 or blur_bgr.shape[2] != 3:
        raise ValueError(f"blur must be (H, W, 3), got shape {blur_bgr.shape}")
    blur = np.ascontiguousarray(blur_bgr.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)
    blur_batch = np.broadcast_to(blur, (len(times), *blur.shape)).copy()
    # One pass per window straight into the float32 batch (cast and scale together): the same
    # values as stacking, casting and scaling in three passes, a third of the memory traffic.
    windows = np.empty((len(times), length, *spikes.shape[1:]), dtype=np.float32)
    for k, t in enumerate(times):
        window = spike_window(spikes, t, length)
        if spike_scale != 1.0:
            np.multiply(window, np.float32(spike_scale), out=windows[k], dtype=np.float32)
        else:
            windows[k] = window
    return blur_batch, windows
