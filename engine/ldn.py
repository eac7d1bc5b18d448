"""The Lightweight Deblurring Network (LDN) of S-SDM, the distilled student that runs in real time.

One forward pass turns a blurry RGB frame plus a 21-frame spike window centred on a time t into the
sharp frame at t. The layout (module names, kernel sizes, paddings) reproduces the checkpoint released
with the paper, so its state_dict loads with ``strict=True``; the choices the key names alone do not
fix were settled by measurement with the released weights on a synthetic case with known ground
truth (4 photos panned 24 px over 97 frames at 256x384, spikes from an integrate-and-fire
simulation at the training threshold; the blur itself scores 19.2-26.0 dB against the sharp centre
frame, this layout 22.8-28.0 dB, i.e. +2.0..3.6 dB; see tests/engine/test_ldn.py):

- ``pred`` sees [blur, decoded features] (blur first): the first three columns of ``pred.weight``
  form a near-diagonal colour matrix; the other order gives 7-14 dB;
- the blur features come first in the 64-channel concat (the other order: 14-23 dB);
- CBAM multiplies the features by both attention maps (not multiplying: 11-17 dB);
- residual blocks are x + conv(relu(conv(x))) with no normalisation (instance norm: 6-8 dB) and no
  ReLU after the sum (with it: 20-26 dB, 2-3 dB worse);
- no final activation (a sigmoid: 10-14 dB); outputs slightly outside 0..1 are normal.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from spikereveal.engine.windows import LDN_SCALE, LDN_WINDOW

# Declared once in the torch-free windows module (the backends' input checks need them without torch).
SPIKE_WINDOW = LDN_WINDOW  # spike frames per input window, centred on the output time
SPIKE_SCALE = LDN_SCALE  # the spike sensor has 1/4 of the RGB resolution per side
LDN_PARAMETERS = 234_158  # parameter count of the paper's network (and of its released checkpoint)


class ResidualBlock(nn.Module):
    """x + conv3x3(relu(conv3x3(x))), 64 channels, zero padding, with bias.

    ``conv_block`` has four slots because the released checkpoint names its convolutions
    ``conv_block.0`` and ``conv_block.3``: slots 1 and 2 hold no parameters (no normalisation, then
    the ReLU; an instance norm there was measured to ruin the released weights' output).
    """

    def __init__(self, channels: int = 64) -> None:
        super().__init__()
        self.conv_block = nn.Sequential(
            nn.Conv2d(channels, channels, 3, padding=1),
            nn.Identity(),
            nn.ReLU(inplace=True),
            nn.Conv2d(channels, channels, 3, padding=1),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class ChannelAttention(nn.Module):
    """CBAM channel attention: sigmoid(fc(avgpool(x)) + fc(maxpool(x))), shape (N,C,1,1).

    The pools run over the whole frame, so every output pixel depends (weakly) on every input
    pixel: tiled inference is not exactly full-frame inference.
    """

    def __init__(self, channels: int = 64, reduction: int = 16) -> None:
        super().__init__()
        hidden = channels // reduction
        self.fc = nn.Sequential(
            nn.Conv2d(channels, hidden, 1, bias=False),
            nn.ReLU(inplace=True),
            nn.Conv2d(hidden, channels, 1, bias=False),
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        avg = self.fc(F.adaptive_avg_pool2d(x, 1))
        peak = self.fc(F.adaptive_max_pool2d(x, 1))
        return torch.sigmoid(avg + peak)


class SpatialAttention(nn.Module):
    """CBAM spatial attention: sigmoid(conv7x7([mean_c(x), max_c(x)])), shape (N,1,H,W)."""

    def __init__(self, kernel_size: int = 7) -> None:
        super().__init__()
        self.conv1 = nn.Conv2d(2, 1, kernel_size, padding=kernel_size // 2, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        pooled = torch.cat([x.mean(dim=1, keepdim=True), x.amax(dim=1, keepdim=True)], dim=1)
        return torch.sigmoid(self.conv1(pooled))


def _conv_relu(cin: int, cout: int, kernel: int, stride: int) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, kernel, stride=stride, padding=kernel // 2), nn.ReLU(inplace=True)
    )


def _up_relu(cin: int, cout: int) -> nn.Sequential:
    # 5x5, stride 2, padding 2, output_padding 1: exactly doubles each side.
    return nn.Sequential(
        nn.ConvTranspose2d(cin, cout, 5, stride=2, padding=2, output_padding=1), nn.ReLU(inplace=True)
    )


class LDN(nn.Module):
    """S-SDM's Lightweight Deblurring Network (234,158 parameters).

    forward(blur, spikes):
      blur: (N,3,H,W) float32, **BGR**, 0..1 (the channel order OpenCV reads; RGB costs ~1.3 dB);
      spikes: (N,21,H/4,W/4) float32 of 0/1, upright, centred on the output time;
      returns (N,3,H,W) float32 BGR, not clamped (values slightly outside 0..1 occur).
    H and W must be multiples of 4.
    """

    def __init__(self) -> None:
        super().__init__()
        # Blur encoder: two stride-2 convs bring the RGB frame to the spike resolution.
        self.blur_enc = _conv_relu(3, 16, 5, 2)
        self.blur_enc2 = _conv_relu(16, 32, 5, 2)
        # Spike encoder at 1/4 resolution.
        self.spike_enc = _conv_relu(SPIKE_WINDOW, 16, 3, 1)
        self.spike_enc2 = _conv_relu(16, 32, 3, 1)
        # Registered in the checkpoint's key order (the attention runs before the blocks).
        self.resBlock1 = ResidualBlock(64)
        self.resBlock2 = ResidualBlock(64)
        self.ca = ChannelAttention(64)
        self.sa = SpatialAttention(7)
        self.decoder1 = _up_relu(64, 32)
        self.decoder2 = _up_relu(32, 16)
        # 1x1 head on [blur (3), decoded features (16)]: the blur passes straight to the output.
        self.pred = nn.Conv2d(3 + 16, 3, 1)

    def features(self, blur: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
        """Everything before the head: (N,3,H,W), (N,21,H/4,W/4) -> decoded features (N,16,H,W)."""
        blur_feat = self.blur_enc2(self.blur_enc(blur))
        spike_feat = self.spike_enc2(self.spike_enc(spikes))
        x = torch.cat([blur_feat, spike_feat], dim=1)
        x = x * self.ca(x)
        x = x * self.sa(x)
        x = self.resBlock2(self.resBlock1(x))
        return self.decoder2(self.decoder1(x))

    def forward(self, blur: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
        return self.pred(torch.cat([blur, self.features(blur, spikes)], dim=1))


class ConcatFreeLDN(nn.Module):
    """The same function as an :class:`LDN`, without the full-resolution concat before the head.

    ``pred(cat[blur, x])`` is a 1x1 conv, i.e. ``W_blur @ blur + W_x @ x + b``: computing the two
    products separately skips writing and re-reading a 19-channel full-size tensor (~7-10% of a
    frame on CPU, channels-last). Shares the LDN's parameters; outputs agree to float rounding.
    """

    def __init__(self, ldn: LDN) -> None:
        super().__init__()
        self.ldn = ldn

    def forward(self, blur: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
        weight, bias = self.ldn.pred.weight, self.ldn.pred.bias
        x = self.ldn.features(blur, spikes)
        return F.conv2d(x, weight[:, 3:]) + F.conv2d(blur, weight[:, :3], bias)


def count_parameters(model: nn.Module) -> int:
    """Number of scalar parameters of ``model`` (234,158 for the LDN)."""
    return sum(p.numel() for p in model.parameters())
