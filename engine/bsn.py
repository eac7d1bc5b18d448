"""The blind-spot denoiser (BSN) of S-SDM: a short TFP in, the same TFP with its spike noise removed.

A short TFP (9 frames) is a binomial sample of each pixel's firing rate; neighbouring pixels are
independent samples of similar rates. A network that never sees the pixel it predicts cannot copy
that pixel's noise, so training it to reproduce its own input (MSE(BSN(tfp), tfp)) makes it
predict the expected rate: denoising with no clean target (Noise2Void; Laine et al. 2019, "High-
Quality Self-Supervised Deep Image Denoising", the design used here).

How the blind spot is built (Laine et al.): one branch of "shifted" convolutions sees only rows at
or above the output row (each 3x3 conv reads the 2d rows above and the row itself, never below);
a final one-row shift moves that half-plane strictly above, so the branch output at (i, j) depends
only on rows < i. The branch runs on the input rotated by 0, 90, 180 and 270 degrees (shared
weights), each result is rotated back, so the four see the half-planes above, left of, below and
right of the pixel; 1x1 convs merge them. Their union is every pixel except (i, j) itself, and no
layer (all 1x1 or shifted, no pooling, no normalisation across pixels, no skip from the input)
can bring the centre back in.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

#: Parameter count of the default BSN (32 features, dilations 1, 1, 2, 3, 1).
BSN_PARAMETERS = 45_633
#: Dilations of the default branch's shifted 3x3 convs: upward reach 2 * (1+1+2+3+1) + 1 = 17 rows.
BSN_DILATIONS = (1, 1, 2, 3, 1)


class ShiftedConv2d(nn.Conv2d):
    """A 3x3 conv whose output row i reads input rows i-2d .. i only (d the dilation), never below.

    Zero-pads 2d rows on top and none at the bottom, d columns on each side, then convolves with no
    padding: the output keeps the input's (h, w).
    """

    def __init__(self, cin: int, cout: int, dilation: int = 1) -> None:
        super().__init__(cin, cout, 3, dilation=dilation, padding=0)
        self.reach = dilation

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        d = self.reach
        return super().forward(F.pad(x, (d, d, 2 * d, 0)))


def shift_down(x: torch.Tensor, rows: int = 1) -> torch.Tensor:
    """Move a (N, C, h, w) map down by ``rows`` (zeros enter at the top, the bottom rows drop)."""
    return F.pad(x, (0, 0, rows, 0))[:, :, : x.shape[2]]


class UpwardBranch(nn.Module):
    """Shifted convs with leaky ReLUs, then the one-row shift: output (i, j) sees only rows < i."""

    def __init__(self, features: int, dilations: tuple[int, ...]) -> None:
        super().__init__()
        channels = [1, *([features] * len(dilations))]
        self.convs = nn.ModuleList(
            ShiftedConv2d(cin, cout, d)
            for cin, cout, d in zip(channels[:-1], channels[1:], dilations, strict=True)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for conv in self.convs:
            # Leaky as in Laine et al.: a dead ReLU on a mostly-zero sparse TFP would stall training.
            x = F.leaky_relu(conv(x), 0.1)
        return shift_down(x, 1)


class BSN(nn.Module):
    """Blind-spot denoiser of short TFPs (45,633 parameters by default).

    forward(x): x (N, 1, h, w) float TFP in 0..1 (any h, w >= 1); returns (N, 1, h, w), the
    denoised TFP (not clamped). The output at (i, j) does not depend on the input at (i, j).

    Examples:
        >>> import torch
        >>> from spikereveal.engine.bsn import BSN, BSN_PARAMETERS
        >>> net = BSN()
        >>> net(torch.rand(2, 1, 12, 20)).shape
        torch.Size([2, 1, 12, 20])
        >>> sum(p.numel() for p in net.parameters()) == BSN_PARAMETERS
        True
    """

    def __init__(self, features: int = 32, dilations: tuple[int, ...] = BSN_DILATIONS) -> None:
        super().__init__()
        if features < 1 or not dilations or any(int(d) < 1 for d in dilations):
            raise ValueError(f"BSN needs features >= 1 and dilations >= 1, got {features}, {dilations}")
        self.features = int(features)
        self.dilations = tuple(int(d) for d in dilations)
        self.branch = UpwardBranch(self.features, self.dilations)
        # The four directions, merged per pixel (1x1 convs keep the blind spot).
        self.merge = nn.Conv2d(4 * self.features, 2 * self.features, 1)
        self.out = nn.Conv2d(2 * self.features, 1, 1)
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                # He init for the leaky ReLUs (as Laine et al.): PyTorch's default shrinks the signal
                # ~1.7x per layer, so an untrained net would barely react to its input.
                nn.init.kaiming_normal_(module.weight, a=0.1, nonlinearity="leaky_relu")
                nn.init.zeros_(module.bias)

    def config(self) -> dict[str, object]:
        """Constructor arguments, stored with saved weights so that a loader can rebuild this net."""
        return {"features": self.features, "dilations": list(self.dilations)}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.ndim != 4 or x.shape[1] != 1:
            raise ValueError(f"BSN input must be (N, 1, h, w), got shape {tuple(x.shape)}")
        # rot90 by k, the upward branch, rot90 back by -k: the half-plane above, left, below, right.
        views = [torch.rot90(self.branch(torch.rot90(x, k, (2, 3))), -k, (2, 3)) for k in range(4)]
        merged = F.leaky_relu(self.merge(torch.cat(views, dim=1)), 0.1)
        return self.out(merged)
