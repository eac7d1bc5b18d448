"""How many spikes the sensor fires per frame per unit of light, measured from the data itself.

The LDN is trained at one spike threshold: the paper's weights at Vth 1, where a white pixel fires
on ~99 % of frames. A sensor at Vth 2 or 4 fires half or a quarter as often, so the same scene gives
the network spike windows that look twice or four times darker, and its output goes dark. The blur
says how bright each pixel was over the exposure and the spikes say how often it fired, so their
ratio is the sensor's *spike density*; scaling the windows by ``trained / estimated`` gives the
network the firing rate it was trained on.

In the simulator (capture/spike_camera.py) a pixel of grey g fires at
``increment_per_frame * g / (2 * Vth)`` = ``1.985 g / (2 Vth)`` spikes per frame, capped at one per
frame: a density of ~0.99 at Vth 1, ~0.50 at Vth 2 and ~0.25 at Vth 4.

NumPy and OpenCV only (no torch): the engine node, eval and training all call it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import cv2
import numpy as np

from spikereveal.stream.errors import SpikeRevealError

#: Density of the paper's checkpoint, which was trained on the official simulator at Vth 1
#: (1.985 / 2 spikes per frame at grey 1.0). Its .pth carries no metadata, so this is assumed.
PAPER_DENSITY = 1.985 / 2.0
#: Grey levels used for the estimate: darker pixels are dominated by sensor noise and the blur's
#: 8-bit quantization, brighter ones by the blur's clipping at 255.
GREY_RANGE = (0.05, 0.95)
#: A pixel whose expected rate exceeds this is near the sensor's cap of one spike per frame
#: (reached at Vth < 1), where the rate stops growing with the light: left out of the estimate.
RATE_CAP = 0.9
#: The scale factor is kept in this range, so that a black or nearly spikeless exposure (whose
#: estimate means little) cannot multiply the network's input by an absurd factor.
SCALE_RANGE = (1.0 / 16.0, 16.0)
#: Fewer spikes than this in the pixels used leave the estimate undetermined (0.0).
MIN_SPIKES = 64


class DensityError(SpikeRevealError):
    """Inputs to the density estimate that do not fit together, or a bad recorded density."""


@dataclass(frozen=True)
class DensityNorm:
    """What the density normalization did for one exposure (reported in frames.json and Results).

    ``estimated``: spikes per frame per unit grey of this data (0.0 = undetermined);
    ``trained``: the density the weights were trained at; ``scale``: the factor applied to the
    spike windows (1.0 when ``enabled`` is False or the estimate is undetermined).
    """

    estimated: float
    trained: float
    scale: float
    enabled: bool

    def to_dict(self) -> dict[str, float | bool]:
        return {
            "estimated": round(self.estimated, 6),
            "trained": round(self.trained, 6),
            "scale": round(self.scale, 6),
            "enabled": self.enabled,
        }


def blur_grey(blur_bgr: np.ndarray, spike_hw: tuple[int, int]) -> np.ndarray:
    """Grey 0..1 (0.3 R + 0.59 G + 0.11 B, float32) of a BGR blur, area-resized to ``spike_hw``.

    Grey first and then INTER_AREA, the order the simulator and a sensor pixel's area use.
    """
    blur = np.asarray(blur_bgr)
    if blur.ndim != 3 or blur.shape[2] != 3:
        raise DensityError(f"blur: shape {blur.shape} is not (H, W, 3) BGR")
    scale = 1.0 / 255.0 if blur.dtype == np.uint8 else 1.0
    # One weighted pass over the channels (cv2.transform), not three float copies of the image.
    weights = np.array([[0.11 * scale, 0.59 * scale, 0.3 * scale]], dtype=np.float32)
    grey = cv2.transform(blur.astype(np.float32, copy=False), weights)
    h, w = spike_hw
    if grey.shape != (h, w):
        grey = cv2.resize(grey, (w, h), interpolation=cv2.INTER_AREA)
    return grey


def estimate_density(blur_bgr: np.ndarray, spikes: np.ndarray, exposure: tuple[int, int]) -> float:
    """Spikes per frame per unit grey intensity over the exposure, from the data alone.

    Args:
        blur_bgr: (H, W, 3) BGR, uint8 (0..255) or float (0..1); any size (resized to the spikes').
        spikes: (T, h, w) 0/1 spike frames, upright.
        exposure: inclusive spike-frame range ``(start, end)`` the blur integrates.

    Returns:
        ``sum(rate) / sum(grey)`` over the pixels with grey in :data:`GREY_RANGE`, without those
        whose rate would be near the one-spike-per-frame cap: ~0.99 at Vth 1 in the simulator,
        ~0.5 at Vth 2, ~0.25 at Vth 4. A ratio of sums weighs each pixel by its light, so dark,
        noisy pixels count little. 0.0 when undetermined (no usable pixels, or fewer than
        :data:`MIN_SPIKES` spikes in them).

    Examples:
        >>> import numpy as np
        >>> blur = np.full((16, 16, 3), 128, np.uint8)  # grey 0.5
        >>> spikes = np.zeros((40, 4, 4), np.uint8)
        >>> spikes[::4] = 1                            # a quarter of the frames: rate 0.25
        >>> round(estimate_density(blur, spikes, (0, 39)), 3)
        0.498
    """
    spikes = np.asarray(spikes)
    if spikes.ndim != 3:
        raise DensityError(f"spikes: shape {spikes.shape} is not (T, h, w)")
    start, end = (int(v) for v in exposure)
    if not 0 <= start <= end < spikes.shape[0]:
        raise DensityError(f"exposure {start}:{end} is outside the {spikes.shape[0]} spike frames")
    # uint16 holds any exposure a sensor makes (<= 65535 frames) and sums far faster than int64.
    dtype = np.uint16 if end - start < np.iinfo(np.uint16).max else np.int64
    counts = spikes[start : end + 1].sum(axis=0, dtype=dtype)
    return density_from_counts(blur_bgr, counts, end - start + 1)


def density_from_counts(blur_bgr: np.ndarray, counts: np.ndarray, frames: int) -> float:
    """:func:`estimate_density` from the (h, w) spike counts over the exposure's ``frames`` frames.

    The engine's one-pass decode (engine/cpu_decode.py) has those counts already (TFP_long's).
    """
    counts = np.asarray(counts).astype(np.int64)
    if counts.ndim != 2 or frames < 1:
        raise DensityError(f"counts: shape {counts.shape} over {frames} frames is not (h, w) over >= 1")
    grey = blur_grey(blur_bgr, counts.shape).astype(np.float64)
    rate = counts / float(frames)
    mask = (grey >= GREY_RANGE[0]) & (grey <= GREY_RANGE[1])
    density = _ratio(rate, grey, counts, mask)
    if density > 0:
        # Second pass without the pixels the first estimate puts near the cap (a dense sensor).
        refined = _ratio(rate, grey, counts, mask & (density * grey <= RATE_CAP))
        density = refined if refined > 0 else density
    return density


def _ratio(rate: np.ndarray, grey: np.ndarray, counts: np.ndarray, mask: np.ndarray) -> float:
    light = float(grey[mask].sum())
    if light <= 0 or int(counts[mask].sum()) < MIN_SPIKES:
        return 0.0
    return float(rate[mask].sum()) / light


def density_scale(estimated: float, trained: float) -> float:
    """The factor that brings spike windows at density ``estimated`` to ``trained``.

    ``trained / estimated``, kept in :data:`SCALE_RANGE`; 1.0 (no change) when the estimate is
    undetermined (0, NaN) or ``trained`` is not a positive number.

    >>> density_scale(0.25, 0.99)
    3.96
    >>> density_scale(0.0, 0.99)
    1.0
    """
    if not (math.isfinite(estimated) and estimated > 0 and math.isfinite(trained) and trained > 0):
        return 1.0
    return float(min(max(trained / estimated, SCALE_RANGE[0]), SCALE_RANGE[1]))


def trained_density(metadata: Mapping[str, str], source: str = "weights") -> float:
    """The density a set of LDN weights was trained at, from their metadata.

    ``spike_density`` if recorded; else, from a recorded paper threshold ``vth``,
    ``PAPER_DENSITY / vth`` (the simulator's relation); else :data:`PAPER_DENSITY`: the paper's
    .pth has no metadata and was trained at Vth 1 (an assumption, stated here once). Raises
    DensityError for a recorded value that is not a positive number.
    """
    for key, to_density in (("spike_density", lambda v: v), ("vth", lambda v: PAPER_DENSITY / v)):
        text = metadata.get(key)
        if text is None or str(text).strip() == "":
            continue
        try:
            value = float(text)
        except ValueError:
            value = float("nan")
        if not (math.isfinite(value) and value > 0):
            raise DensityError(f"{source}: metadata {key} = {text!r} is not a positive number")
        return float(to_density(value))
    return PAPER_DENSITY


def normalization(
    blur_bgr: np.ndarray, spikes: np.ndarray, exposure: tuple[int, int], trained: float, enabled: bool = True
) -> DensityNorm:
    """Estimate this exposure's density and the scale to apply (1.0 when not ``enabled``)."""
    estimated = estimate_density(blur_bgr, spikes, exposure)
    scale = density_scale(estimated, trained) if enabled else 1.0
    return DensityNorm(estimated=estimated, trained=float(trained), scale=scale, enabled=enabled)
