"""Image quality against ground truth, with scikit-image's reference PSNR and SSIM."""

from __future__ import annotations

import numpy as np
from skimage.metrics import peak_signal_noise_ratio, structural_similarity


def psnr(estimate: np.ndarray, truth: np.ndarray) -> float:
    """PSNR in dB of two uint8 images of the same shape (data range 255)."""
    _check(estimate, truth)
    return float(peak_signal_noise_ratio(truth, estimate, data_range=255))


def ssim(estimate: np.ndarray, truth: np.ndarray) -> float:
    """SSIM of two uint8 (H, W, 3) or (H, W) images (channels averaged)."""
    _check(estimate, truth)
    channel_axis = 2 if estimate.ndim == 3 else None
    return float(structural_similarity(truth, estimate, data_range=255, channel_axis=channel_axis))


def _check(estimate: np.ndarray, truth: np.ndarray) -> None:
    if estimate.shape != truth.shape:
        raise ValueError(f"image shapes differ: estimate {estimate.shape} vs ground truth {truth.shape}")
    if estimate.dtype != np.uint8 or truth.dtype != np.uint8:
        raise ValueError(f"expected uint8 images, got {estimate.dtype} and {truth.dtype}")
