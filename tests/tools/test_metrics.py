"""tools/metrics.py: PSNR/SSIM on hand-made cases."""

import numpy as np
import pytest

from spikereveal.tools.metrics import psnr, ssim


def test_known_psnr():
    a = np.zeros((8, 8, 3), np.uint8)
    b = a.copy()
    b[...] = 1  # MSE 1 -> 20 log10(255) dB
    assert psnr(b, a) == pytest.approx(20 * np.log10(255), abs=1e-6)


def test_identical_images_have_unit_ssim():
    img = np.random.default_rng(0).integers(0, 256, (32, 32, 3), dtype=np.uint8)
    assert ssim(img, img) == pytest.approx(1.0)
    assert ssim(img, 255 - img) < 0.5


def test_mismatch_is_named():
    with pytest.raises(ValueError, match="shapes differ"):
        psnr(np.zeros((4, 4), np.uint8), np.zeros((4, 5), np.uint8))
    with pytest.raises(ValueError, match="uint8"):
        ssim(np.zeros((8, 8)), np.zeros((8, 8)))
