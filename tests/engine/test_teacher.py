"""The torch teachers: raw SDM equals the NumPy reference; the cascade is SDM on the nets' outputs."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from spikereveal.engine.bsn import BSN
from spikereveal.engine.sdm import sdm_sequence
from spikereveal.engine.sr import EDSR
from spikereveal.engine.teacher import (
    CASCADE_EPSILON,
    CascadeTeacher,
    TeacherError,
    sdm_teacher,
    tfp_long,
    tfp_short,
)
from spikereveal.engine.tfp import tfp, tfp_range
from spikereveal.engine.windows import ExposureError
from spikereveal.stream.errors import SpikeRevealError


def _case(seed: int, n: int = 2, frames: int = 61, h: int = 8, w: int = 12, rate: float = 0.3):
    """Random uint8 blurs and 0/1 spikes with varied firing rates, some pixels never firing."""
    rng = np.random.default_rng(seed)
    rates = rng.uniform(0.05, 2 * rate, (n, 1, h, w))
    spikes = (rng.random((n, frames, h, w)) < rates).astype(np.uint8)
    spikes[:, :, 0, 0] = 0  # a dead pixel: TFP_long = 0 there
    spikes[:, :, h - 1, 3] = 0
    blur = rng.integers(0, 256, (n, 4 * h, 4 * w, 3), dtype=np.uint8)
    return blur, spikes


def _torch(blur: np.ndarray, spikes: np.ndarray) -> tuple[torch.Tensor, torch.Tensor]:
    return (
        torch.from_numpy(blur).permute(0, 3, 1, 2).float() / 255.0,
        torch.from_numpy(spikes).float(),
    )


def _numpy_sdm(blur: np.ndarray, spikes: np.ndarray, exposure, times) -> np.ndarray:
    """(N, K, 3, H, W) from the NumPy reference, one sample at a time."""
    return np.stack(
        [sdm_sequence(b, s, exposure, times) for b, s in zip(blur, spikes, strict=True)]
    ).transpose(0, 1, 4, 2, 3)


@pytest.mark.parametrize(
    ("seed", "exposure", "times"),
    [
        (0, (20, 40), [20, 25, 30, 35, 40]),  # the exposure's own ends
        (1, (4, 56), [4, 30, 56]),  # the first and last times the 9-frame window allows
        (2, (10, 50), [30]),
        (3, (0, 60), [4, 5, 55, 56]),  # an exposure over the whole stream
    ],
)
def test_sdm_teacher_equals_the_numpy_reference(seed: int, exposure, times) -> None:
    blur, spikes = _case(seed)
    expected = _numpy_sdm(blur, spikes, exposure, times)
    out = sdm_teacher(*_torch(blur, spikes), exposure, times)
    assert out.shape == (2, len(times), 3, 32, 48)
    assert out.dtype == torch.float32
    assert np.abs(out.numpy() - expected).max() <= 1e-5
    assert float(out[:, :, :, :2, :2].abs().max()) == 0.0  # the dead pixel stays dark, no NaN


def test_tfps_are_bit_identical_to_engine_tfp() -> None:
    _, spikes = _case(4)
    spikes_t = torch.from_numpy(spikes).float()
    long = tfp_long(spikes_t, (10, 50))
    short = tfp_short(spikes_t, [10, 33], 9)
    for i in range(2):
        assert np.array_equal(long[i, 0].numpy(), tfp_range(spikes[i], 10, 50))
        assert np.array_equal(short[i, 1].numpy(), tfp(spikes[i], 33, 9))


def test_a_steady_scene_gives_back_the_blur() -> None:
    """Golden case: every pixel fires every frame, so TFP_short = TFP_long and L(t) = B exactly."""
    blur = torch.rand(1, 3, 16, 20)
    spikes = torch.ones(1, 30, 4, 5)
    out = sdm_teacher(blur, spikes, (5, 24), [5, 15, 24])
    assert torch.equal(out, blur[:, None].expand(1, 3, 3, 16, 20))


def test_batch_items_are_independent() -> None:
    blur, spikes = _case(5, n=3)
    batch = sdm_teacher(*_torch(blur, spikes), (10, 50), [12, 40])
    single = sdm_teacher(*_torch(blur[1:2], spikes[1:2]), (10, 50), [12, 40])
    assert torch.equal(batch[1:2], single)


class _Bilinear(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)


def test_cascade_with_identity_nets_is_raw_sdm() -> None:
    """With BSN = identity and SR = bilinear x4 the cascade must reduce to SDM (where no floor acts)."""
    blur, spikes = _case(6)
    times = [15, 30, 45]
    spikes[:, times] = 1  # every short window holds a spike: no TFP below the epsilon floor
    out = CascadeTeacher(nn.Identity(), _Bilinear())(*_torch(blur, spikes), (15, 45), times)
    expected = sdm_teacher(*_torch(blur, spikes), (15, 45), times)
    torch.testing.assert_close(out, expected, rtol=1e-6, atol=1e-6)


class _Negative(nn.Module):
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return -F.interpolate(x, scale_factor=4, mode="nearest") - 1.0


def test_cascade_floors_non_positive_sr_outputs_and_keeps_dead_pixels_dark() -> None:
    """An SR net that outputs <= 0 everywhere: both images sit on the floor, so the ratio is 1."""
    blur, spikes = _case(7)
    b, s = _torch(blur, spikes)
    out = CascadeTeacher(nn.Identity(), _Negative())(b, s, (10, 50), [20, 40])
    assert bool(torch.isfinite(out).all())
    valid = F.interpolate(tfp_long(s, (10, 50)), size=(32, 48), mode="bilinear") > 0
    expected = torch.where(valid[:, None], b[:, None], torch.zeros(()))
    assert torch.equal(out, expected.expand_as(out))
    assert float(out[:, :, :, :2, :2].abs().max()) == 0.0
    assert CASCADE_EPSILON > 0


def test_cascade_with_the_real_nets_runs_frozen() -> None:
    blur, spikes = _case(8)
    teacher = CascadeTeacher(BSN(), EDSR())
    teacher.train()  # a teacher stays frozen whatever the training loop asks
    assert not teacher.training and not teacher.bsn.training and not teacher.sr.training
    out = teacher(*_torch(blur, spikes), (10, 50), [10, 30, 50])
    assert out.shape == (2, 3, 3, 32, 48)
    assert not out.requires_grad
    assert bool(torch.isfinite(out).all())


# ---- errors: one line naming what was wrong and what was expected ----


def test_bad_shapes_are_teacher_errors() -> None:
    blur, spikes = _torch(*_case(9))
    exposure, times = (10, 50), [30]
    assert issubclass(TeacherError, SpikeRevealError)
    with pytest.raises(TeacherError, match=r"blur must be \(N, 3, H, W\), got shape \(3, 32, 48\)"):
        sdm_teacher(blur[0], spikes, exposure, times)
    with pytest.raises(TeacherError, match="blur holds 1 samples but spikes hold 2"):
        sdm_teacher(blur[:1], spikes, exposure, times)
    with pytest.raises(TeacherError, match="blur 32x48 is not 4x the spike frames 8x11; expected 32x44"):
        sdm_teacher(blur, spikes[..., :11], exposure, times)
    with pytest.raises(TeacherError, match="no output times"):
        CascadeTeacher(BSN(), EDSR())(blur, spikes, exposure, [])


def test_exposures_that_do_not_fit_are_exposure_errors() -> None:
    blur, spikes = _torch(*_case(10))
    with pytest.raises(ExposureError, match="exposure 10:70 is outside a stream of 61 spike frames"):
        sdm_teacher(blur, spikes, (10, 70), [30])
    with pytest.raises(ExposureError, match=r"output time 2 needs spike frames -2\.\.6"):
        sdm_teacher(blur, spikes, (2, 50), [2, 30])
