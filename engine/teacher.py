"""The LDN's teachers in torch, batched for training: raw SDM and S-SDM's cascade (BSN, SR, SDM).

Both compute the SDM closed form L(t) = B * TFP_short(t) / TFP_long (engine/sdm.py; the grey ratio
multiplies the three colour channels) for N samples that share one exposure and one list of
output times, on whatever device the tensors are on:

- :func:`sdm_teacher` is engine/sdm.py's NumPy reference in torch (same windows, same bilinear x4
  upsampling of both TFPs, 0 where the upsampled TFP_long is 0): ``--teacher sdm``, no nets.
- :class:`CascadeTeacher` is the paper's: the short TFP is denoised by the BSN, and both TFPs are
  super-resolved to the RGB size by the SR net (trained to give the grey blur from TFP_long),
  so the ratio is taken at full resolution with sharp edges.

No gradients flow (the teachers give targets); inputs are checked once and a wrong shape or an
exposure that does not fit is a :class:`TeacherError` / ExposureError naming what was expected.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from spikereveal.engine.windows import LDN_SCALE, SDM_SHORT_WINDOW, check_exposure
from spikereveal.stream.errors import SpikeRevealError

#: Floor of the cascade's super-resolved TFPs before the division: an SR net may output 0 or a
#: slightly negative value in the dark, which would flip the sign of the ratio or make it infinite.
#: 1e-3 is a quarter of one 8-bit grey level (1/255), well below any pixel worth brightening.
CASCADE_EPSILON = 1e-3


class TeacherError(SpikeRevealError):
    """Teacher inputs whose shapes do not fit together (blur, spikes, times)."""


def _check_inputs(
    blur: torch.Tensor, spikes: torch.Tensor, exposure: tuple[int, int], times: Sequence[int], window: int
) -> None:
    if blur.ndim != 4 or blur.shape[1] != 3:
        raise TeacherError(f"blur must be (N, 3, H, W), got shape {tuple(blur.shape)}")
    if spikes.ndim != 4:
        raise TeacherError(f"spikes must be (N, T, h, w), got shape {tuple(spikes.shape)}")
    n, _, height, width = blur.shape
    if spikes.shape[0] != n:
        raise TeacherError(f"blur holds {n} samples but spikes hold {spikes.shape[0]}; expected the same N")
    h, w = spikes.shape[2:]
    if (height, width) != (LDN_SCALE * h, LDN_SCALE * w):
        raise TeacherError(
            f"blur {height}x{width} is not {LDN_SCALE}x the spike frames {h}x{w}; "
            f"expected {LDN_SCALE * h}x{LDN_SCALE * w}"
        )
    if len(times) == 0:
        raise TeacherError("no output times given; expected at least one spike index")
    check_exposure(
        (int(exposure[0]), int(exposure[1])), [int(t) for t in times], spikes.shape[1], window, "the teacher"
    )


def tfp_long(spikes: torch.Tensor, exposure: tuple[int, int]) -> torch.Tensor:
    """(N, T, h, w) 0/1 spikes -> (N, 1, h, w) mean over frames exposure[0]..exposure[1] inclusive.

    The sum of 0/1 float32 values is exact and the one division correctly rounded, as in
    engine/tfp.py, so the result is bit-identical to the NumPy TFP.
    """
    start, end = int(exposure[0]), int(exposure[1])
    frames = spikes[:, start : end + 1].to(torch.float32)
    return frames.sum(dim=1, keepdim=True) / float(end - start + 1)


def tfp_short(spikes: torch.Tensor, times: Sequence[int], window: int = SDM_SHORT_WINDOW) -> torch.Tensor:
    """(N, T, h, w) spikes -> (N, K, h, w): the ``window``-frame TFP centred on each of the K times."""
    half = window // 2
    frames = spikes.to(torch.float32)
    return torch.stack(
        [frames[:, int(t) - half : int(t) + half + 1].sum(dim=1) / float(window) for t in times], dim=1
    )


def _upsample(x: torch.Tensor, height: int, width: int) -> torch.Tensor:
    # align_corners=False is OpenCV's INTER_LINEAR (pixel centres at +0.5, borders replicated).
    return F.interpolate(x, size=(height, width), mode="bilinear", align_corners=False)


def _apply_ratio(
    blur: torch.Tensor, short: torch.Tensor, long: torch.Tensor, valid: torch.Tensor
) -> torch.Tensor:
    """blur (N,3,H,W), short (N,K,H,W), long (N,1,H,W), valid (N,1,H,W) bool -> (N,K,3,H,W)."""
    ratio = torch.where(
        valid, short / torch.where(valid, long, torch.ones_like(long)), torch.zeros_like(short)
    )
    return blur.to(torch.float32)[:, None] * ratio[:, :, None]


@torch.no_grad()
def sdm_teacher(
    blur: torch.Tensor,
    spikes: torch.Tensor,
    exposure: tuple[int, int],
    times: Sequence[int],
    short_window: int = SDM_SHORT_WINDOW,
) -> torch.Tensor:
    """Raw SDM frames for a batch: equal to engine/sdm.py's ``sdm_sequence`` (to float rounding).

    blur: (N, 3, H, W) float BGR in 0..1; spikes: (N, T, H/4, W/4) float 0/1, upright; exposure:
    (start, end) inclusive spike indices shared by the batch; times: K spike indices. Returns
    (N, K, 3, H, W) float32, not clipped.

    Examples:
        >>> import torch
        >>> from spikereveal.engine.teacher import sdm_teacher
        >>> blur = torch.rand(2, 3, 16, 20)
        >>> steady = torch.ones(2, 30, 4, 5)  # every pixel fires every frame: nothing moves
        >>> out = sdm_teacher(blur, steady, (5, 24), [5, 15, 24])
        >>> out.shape
        torch.Size([2, 3, 3, 16, 20])
        >>> bool((out == blur[:, None]).all())
        True
    """
    _check_inputs(blur, spikes, exposure, times, short_window)
    height, width = blur.shape[2:]
    long = _upsample(tfp_long(spikes, exposure), height, width)
    short = _upsample(tfp_short(spikes, times, short_window), height, width)
    return _apply_ratio(blur, short, long, long > 0)


class CascadeTeacher(nn.Module):
    """S-SDM's teacher: SDM on SR(TFP_long) and SR(BSN(TFP_short(t))), at the RGB resolution.

    ``bsn`` maps (M, 1, h, w) -> (M, 1, h, w) and ``sr`` (M, 1, h, w) -> (M, 1, 4h, 4w); both are put
    in eval mode and run without gradients. Calling it takes what :func:`sdm_teacher` takes and
    returns (N, K, 3, H, W) float32. Both super-resolved images are floored at
    :data:`CASCADE_EPSILON`; where the (bilinearly upsampled) raw TFP_long is 0 (no spike in the
    whole exposure) the output is 0, as in SDM.
    """

    def __init__(self, bsn: nn.Module, sr: nn.Module, short_window: int = SDM_SHORT_WINDOW) -> None:
        super().__init__()
        self.bsn, self.sr = bsn.eval(), sr.eval()
        self.short_window = short_window

    def train(self, mode: bool = True) -> CascadeTeacher:
        # A teacher is frozen: training the student must not switch its nets to training mode.
        return super().train(False)

    @torch.no_grad()
    def forward(
        self, blur: torch.Tensor, spikes: torch.Tensor, exposure: tuple[int, int], times: Sequence[int]
    ) -> torch.Tensor:
        _check_inputs(blur, spikes, exposure, times, self.short_window)
        n, _, height, width = blur.shape
        k = len(times)
        h, w = spikes.shape[2:]
        raw_long = tfp_long(spikes, exposure)
        shorts = tfp_short(spikes, times, self.short_window).reshape(n * k, 1, h, w)
        # The nets may run in half precision (autocast); the ratio is always taken in float32.
        sr_short = self.sr(self.bsn(shorts)).float().reshape(n, k, height, width)
        sr_long = self.sr(raw_long).float()
        if sr_long.shape != (n, 1, height, width):
            raise TeacherError(f"the SR net gave {tuple(sr_long.shape)}, expected {(n, 1, height, width)}")
        valid = _upsample(raw_long, height, width) > 0
        return _apply_ratio(
            blur, sr_short.clamp_min(CASCADE_EPSILON), sr_long.clamp_min(CASCADE_EPSILON), valid
        )
