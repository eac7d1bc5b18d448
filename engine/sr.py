"""EDSR-style x4 super-resolution of grey spike images, the cascade teacher's bridge to RGB size.

The spike sensor has 1/4 of the RGB camera's resolution per side. S-SDM's teacher divides two
spike images, so both must first be brought to the RGB size; bilinear upsampling blurs edges, and
the ratio of two blurred edges is not a sharp edge. This net is trained from TFP_long (spike
resolution) to the grey blurry frame (0.3R + 0.59G + 0.11B at RGB resolution): the blur is the
exposure's mean, as TFP_long is, so no high-resolution ground truth is needed. The same net then
upsamples the denoised short TFPs.

Layout (Lim et al. 2017, "Enhanced Deep Residual Networks"): head conv, residual blocks without
batch norm (BN's per-batch statistics would shift the intensity scale the SDM ratio relies on),
a body conv with a global skip, two conv + pixel-shuffle x2 stages, a tail conv. A bilinear x4 of
the input is added to the output, so the net learns only the detail and the intensity scale.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Parameter count of the default EDSR (32 features, 6 residual blocks).
EDSR_PARAMETERS = 194_817
#: Upscaling factor per side (the RGB frame over the spike frame, windows.LDN_SCALE).
SR_SCALE = 4


class EDSRBlock(nn.Module):
    """x + conv3x3(relu(conv3x3(x))): EDSR's residual block, no batch norm."""

    def __init__(self, features: int) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(features, features, 3, padding=1)
        self.conv2 = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv2(F.relu(self.conv1(x)))


class EDSR(nn.Module):
    """x4 super-resolution of grey images (194,817 parameters by default).

    forward(x): x (N, 1, h, w) float (a TFP, 0..1); returns (N, 1, 4h, 4w), the grey image in the
    blur's intensity units (not clamped).

    Examples:
        >>> import torch
        >>> from spikereveal.engine.sr import EDSR, EDSR_PARAMETERS
        >>> net = EDSR()
        >>> net(torch.rand(2, 1, 8, 12)).shape
        torch.Size([2, 1, 32, 48])
        >>> sum(p.numel() for p in net.parameters()) == EDSR_PARAMETERS
        True
    """

    def __init__(self, features: int = 32, blocks: int = 6) -> None:
        super().__init__()
        if features < 1 or blocks < 0:
            raise ValueError(f"EDSR needs features >= 1 and blocks >= 0, got {features}, {blocks}")
        self.features, self.blocks = int(features), int(blocks)
        f = self.features
        self.head = nn.Conv2d(1, f, 3, padding=1)
        self.body = nn.Sequential(*(EDSRBlock(f) for _ in range(self.blocks)))
        self.body_end = nn.Conv2d(f, f, 3, padding=1)
        # Two x2 stages (conv to 4f channels, pixel shuffle), as EDSR does for x4.
        self.up = nn.Sequential(
            nn.Conv2d(f, 4 * f, 3, padding=1),
            nn.PixelShuffle(2),
            nn.Conv2d(f, 4 * f, 3, padding=1),
            nn.PixelShuffle(2),
        )
        self.tail = nn.Conv2d(f, 1, 3, padding=1)

    def config(self) -> dict[str, object]:
        """Constructor arguments, stored with saved weights so that a loader can rebuild this net."""
        return {"features": self.features, "blocks": self.blocks}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"EDSR input must be (N, 1, h, w), got shape {tuple(x.shape)}")
        feat = self.head(x)
        feat = feat + self.body_end(self.body(feat))
        detail = self.tail(self.up(feat))
        base = F.interpolate(x, scale_factor=SR_SCALE, mode="bilinear", align_corners=False)
        return base + detail
