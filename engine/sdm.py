"""Spike-guided deblurring model (SDM), the closed form at the heart of S-SDM.

The blur model is B = mean of the latent frames over the exposure, and spikes fire at a rate
proportional to intensity, so L(t) = B * TFP_short(t) / TFP_long: threshold, gain and exposure
time all cancel. The grey ratio is applied to all three colour channels.
"""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np

from spikereveal.engine.tfp import tfp, tfp_range
from spikereveal.engine.windows import SDM_SHORT_WINDOW


def upsample(image: np.ndarray, height: int, width: int) -> np.ndarray:
    """Bilinear resize of a (h, w) float map to (height, width), float32."""
    if image.shape == (height, width):
        return image.astype(np.float32, copy=False)
    return cv2.resize(image.astype(np.float32, copy=False), (width, height), interpolation=cv2.INTER_LINEAR)


def sdm_ratio(tfp_short: np.ndarray, tfp_long: np.ndarray) -> np.ndarray:
    """TFP_short / TFP_long, with 0 wherever TFP_long is 0 (no NaN, no inf).

    A pixel that never fired during the exposure carries no motion information; returning 0
    keeps it dark instead of amplifying noise.
    """
    short = np.asarray(tfp_short, dtype=np.float32)
    long = np.asarray(tfp_long, dtype=np.float32)
    if short.shape != long.shape:
        raise ValueError(f"TFP_short {short.shape} and TFP_long {long.shape} must have the same shape")
    out = np.zeros_like(long)
    np.divide(short, long, out=out, where=long > 0)
    return out


def sdm(blur: np.ndarray, tfp_short: np.ndarray, tfp_long: np.ndarray) -> np.ndarray:
    """Sharp frame L = B * TFP_short / TFP_long.

    blur: (H, W, 3) float in 0..1 (any channel order; the ratio is grey); tfp_short, tfp_long:
    (h, w) float at spike resolution, upsampled bilinearly to (H, W) here. Returns (H, W, 3)
    float32, not clipped (a bright moving edge may legitimately exceed the blur's range).
    """
    if blur.ndim != 3:
        raise ValueError(f"blur must be (H, W, C), got shape {blur.shape}")
    height, width = blur.shape[:2]
    short = upsample(np.asarray(tfp_short), height, width)
    long = upsample(np.asarray(tfp_long), height, width)
    ratio = sdm_ratio(short, long)
    return blur.astype(np.float32, copy=False) * ratio[:, :, None]


def sdm_sequence(
    blur_bgr: np.ndarray,
    spikes: np.ndarray,
    exposure: tuple[int, int],
    times: list[int],
    short_window: int = SDM_SHORT_WINDOW,
) -> np.ndarray:
    """SDM frames for every spike time: (K, H, W, 3) float32 from an 8-bit blur and 0/1 spikes."""
    blur = blur_bgr.astype(np.float32) / np.float32(255.0)
    long = tfp_range(spikes, exposure[0], exposure[1])
    return np.stack([sdm(blur, tfp(spikes, t, short_window), long) for t in times])


def sdm_sequence_uint8(
    blur_bgr: np.ndarray,
    spikes: np.ndarray,
    exposure: tuple[int, int],
    times: list[int],
    short_window: int = SDM_SHORT_WINDOW,
) -> np.ndarray:
    """:func:`sdm_sequence` straight to 8 bits: (K, H, W, 3) uint8, rounded and clipped.

    The live path's form: no (K, H, W, 3) float stack is built and converted afterwards. The
    blur stays in 0..255, TFP_long is upsampled and inverted once per exposure, and each time's
    ratio map is applied by one saturating OpenCV multiply. It equals
    ``to_uint8(sdm_sequence(...))`` to within one grey level (``a * (1 / b)`` against ``a / b``
    and one rounding instead of two).
    """
    long = tfp_range(spikes, exposure[0], exposure[1])
    return sdm_uint8_from_tfps(blur_bgr, long, [tfp(spikes, t, short_window) for t in times])


def sdm_uint8_from_tfps(
    blur_bgr: np.ndarray, tfp_long: np.ndarray, tfp_shorts: Sequence[np.ndarray]
) -> np.ndarray:
    """The 8-bit SDM frames from TFPs already made: (K, H, W, C) uint8 for K ``tfp_shorts``.

    The engine's one-pass decode (engine/cpu_decode.py) gives TFP_long and the K TFP_short
    straight from the packed bytes; this is the part of :func:`sdm_sequence_uint8` after that.
    """
    if blur_bgr.ndim != 3:
        raise ValueError(f"blur must be (H, W, C), got shape {blur_bgr.shape}")
    height, width = blur_bgr.shape[:2]
    blur = blur_bgr.astype(np.float32)
    long = upsample(np.asarray(tfp_long), height, width)
    inverse = np.zeros_like(long)
    np.divide(np.float32(1.0), long, out=inverse, where=long > 0)
    out = np.empty((len(tfp_shorts), height, width, blur.shape[2]), dtype=np.uint8)
    planes = cv2.split(blur)  # per channel: no 3-channel copy of every ratio map (~2x less traffic)
    for k, short in enumerate(tfp_shorts):
        ratio = upsample(np.asarray(short), height, width)
        if ratio is short:  # already full size: never scale the caller's array in place
            ratio = ratio.copy()
        ratio *= inverse
        cv2.merge([cv2.multiply(plane, ratio, dtype=cv2.CV_8U) for plane in planes], dst=out[k])
    return out
