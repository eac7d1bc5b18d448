"""The EDSR x4 super-resolution net: its size, its shapes, and its bilinear base."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from spikereveal.engine.sr import EDSR, EDSR_PARAMETERS, SR_SCALE

# The default net's tensors, written out by hand (32 features, 6 blocks, two pixel-shuffle stages).
SHAPES = {
    "head.weight": (32, 1, 3, 3),
    "head.bias": (32,),
    **{
        f"body.{b}.{conv}.{kind}": (32, 32, 3, 3) if kind == "weight" else (32,)
        for b in range(6)
        for conv in ("conv1", "conv2")
        for kind in ("weight", "bias")
    },
    "body_end.weight": (32, 32, 3, 3),
    "body_end.bias": (32,),
    "up.0.weight": (128, 32, 3, 3),
    "up.0.bias": (128,),
    "up.2.weight": (128, 32, 3, 3),
    "up.2.bias": (128,),
    "tail.weight": (1, 32, 3, 3),
    "tail.bias": (1,),
}


def test_parameter_count_and_shapes() -> None:
    net = EDSR()
    assert sum(p.numel() for p in net.parameters()) == EDSR_PARAMETERS == 194_817
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == SHAPES
    assert not any(isinstance(m, torch.nn.modules.batchnorm._BatchNorm) for m in net.modules())


@pytest.mark.parametrize("shape", [(1, 1, 32, 32), (3, 1, 5, 9), (1, 1, 1, 1)])
def test_output_is_four_times_larger(shape: tuple[int, ...]) -> None:
    n, _, h, w = shape
    out = EDSR()(torch.rand(shape))
    assert SR_SCALE == 4
    assert out.shape == (n, 1, 4 * h, 4 * w)
    assert bool(torch.isfinite(out).all())


def test_a_zero_tail_is_exactly_bilinear_upsampling() -> None:
    """Golden case: with no learned detail the net is OpenCV-style bilinear x4 (the learning's start)."""
    net = EDSR()
    with torch.no_grad():
        net.tail.weight.zero_()
        net.tail.bias.zero_()
    x = torch.rand(2, 1, 6, 7)
    expected = F.interpolate(x, scale_factor=4, mode="bilinear", align_corners=False)
    torch.testing.assert_close(net(x), expected, rtol=0, atol=0)


def test_batch_items_are_independent() -> None:
    torch.manual_seed(0)
    net = EDSR().double()
    x = torch.rand(3, 1, 8, 8, dtype=torch.float64)
    with torch.no_grad():
        torch.testing.assert_close(net(x)[2:], net(x[2:]), rtol=0, atol=1e-12)


def test_config_rebuilds_a_smaller_net() -> None:
    small = EDSR(features=8, blocks=2)
    clone = EDSR(**small.config())
    assert small.config() == {"features": 8, "blocks": 2}
    assert sum(p.numel() for p in clone.parameters()) == sum(p.numel() for p in small.parameters())
    assert clone(torch.rand(1, 1, 4, 4)).shape == (1, 1, 16, 16)


def test_bad_input_and_bad_config() -> None:
    with pytest.raises(ValueError, match=r"EDSR input must be \(N, 1, h, w\), got shape \(1, 3, 8, 8\)"):
        EDSR()(torch.zeros(1, 3, 8, 8))
    with pytest.raises(ValueError, match="features >= 1"):
        EDSR(features=0)
