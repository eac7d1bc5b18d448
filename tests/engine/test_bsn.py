"""The BSN: its size, its shapes, and the blind spot (the output at a pixel never sees that pixel)."""

from __future__ import annotations

import pytest
import torch

from spikereveal.engine.bsn import BSN, BSN_PARAMETERS, ShiftedConv2d, shift_down

# The default net's tensors, written out by hand: a shared 5-conv upward branch, two 1x1 merges.
SHAPES = {
    "branch.convs.0.weight": (32, 1, 3, 3),
    "branch.convs.0.bias": (32,),
    **{f"branch.convs.{i}.weight": (32, 32, 3, 3) for i in range(1, 5)},
    **{f"branch.convs.{i}.bias": (32,) for i in range(1, 5)},
    "merge.weight": (64, 128, 1, 1),
    "merge.bias": (64,),
    "out.weight": (1, 64, 1, 1),
    "out.bias": (1,),
}


def _net(dtype: torch.dtype = torch.float64, seed: int = 0) -> BSN:
    torch.manual_seed(seed)
    net = BSN().to(dtype).eval()
    with torch.no_grad():  # non-zero biases everywhere, so no path is silenced by a zero
        for p in net.parameters():
            if p.ndim == 1:
                p.uniform_(-0.5, 0.5)
    return net


def test_parameter_count_and_shapes() -> None:
    net = BSN()
    assert sum(p.numel() for p in net.parameters()) == BSN_PARAMETERS == 45_633
    assert {k: tuple(v.shape) for k, v in net.state_dict().items()} == SHAPES


@pytest.mark.parametrize("shape", [(1, 1, 16, 16), (3, 1, 9, 23), (2, 1, 1, 1), (1, 1, 2, 40)])
def test_output_has_the_input_shape(shape: tuple[int, ...]) -> None:
    out = BSN()(torch.rand(shape))
    assert out.shape == shape
    assert out.dtype == torch.float32
    assert bool(torch.isfinite(out).all())


def test_shifted_conv_reads_only_rows_at_or_above() -> None:
    """GIVEN a one-pixel impulse WHEN a shifted conv (dilation 2) runs THEN rows below it stay zero."""
    conv = ShiftedConv2d(1, 1, dilation=2).double()
    with torch.no_grad():
        conv.weight.fill_(1.0)
        conv.bias.zero_()
    x = torch.zeros(1, 1, 12, 12, dtype=torch.float64)
    x[0, 0, 5, 6] = 1.0
    out = conv(x)[0, 0]
    rows = sorted({int(i) for i in out.nonzero()[:, 0]})
    assert rows == [5, 7, 9]  # i - 2d .. i with d = 2: an impulse at row 5 reaches rows 5..9 only
    assert torch.equal(shift_down(x, 1)[0, 0, 6], x[0, 0, 5])


PIXELS = [(0, 0), (0, 17), (12, 0), (12, 17), (6, 9), (1, 16), (11, 3), (5, 0)]


@pytest.mark.parametrize("pixel", PIXELS)
def test_blind_spot_the_output_ignores_its_own_pixel(pixel: tuple[int, int]) -> None:
    """GIVEN a random TFP WHEN one pixel's input changes THEN the output there is the same to 1e-12."""
    net = _net()
    x = torch.rand(1, 1, 13, 18, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    i, j = pixel
    y = x.clone()
    y[0, 0, i, j] += 3.0
    with torch.no_grad():
        before, after = net(x)[0, 0], net(y)[0, 0]
    assert abs(float(after[i, j] - before[i, j])) <= 1e-12
    changed = (after - before).abs() > 1e-9
    assert int(changed.sum()) > 20  # the change does reach the pixels around it
    for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
        if 0 <= i + di < 13 and 0 <= j + dj < 18:
            assert bool(changed[i + di, j + dj]), (i + di, j + dj)


def test_blind_spot_in_float32_too() -> None:
    net = _net(torch.float32, seed=3)
    x = torch.rand(2, 1, 20, 20)
    y = x.clone()
    y[:, :, 10, 4] = 1.0 - y[:, :, 10, 4]
    with torch.no_grad():
        diff = (net(y) - net(x)).abs()
    assert float(diff[:, :, 10, 4].max()) <= 1e-6
    assert float(diff.max()) > 1e-4


def test_jacobian_diagonal_is_zero_and_the_four_neighbours_count() -> None:
    """Every pixel at once: d out(p) / d in(p) is exactly 0, and each 4-neighbour's derivative is not."""
    net = _net(seed=5)
    h, w = 7, 9
    x = torch.rand(1, 1, h, w, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(lambda t: net(t), x).reshape(h * w, h * w)
    assert torch.count_nonzero(torch.diagonal(jac)) == 0
    for i in range(h):
        for j in range(w):
            for di, dj in ((-1, 0), (1, 0), (0, -1), (0, 1)):
                if 0 <= i + di < h and 0 <= j + dj < w:
                    assert jac[i * w + j, (i + di) * w + j + dj] != 0, (i, j, di, dj)


def test_a_single_pixel_image_has_nothing_to_see() -> None:
    """Golden case: a 1x1 TFP's output is the same whatever its one value (only the centre exists)."""
    net = _net()
    values = [net(torch.full((1, 1, 1, 1), v, dtype=torch.float64)).item() for v in (0.0, 0.5, 1.0, 9.0)]
    assert max(values) - min(values) == 0.0


def test_batch_items_are_independent() -> None:
    net = _net(seed=2)
    x = torch.rand(3, 1, 10, 14, dtype=torch.float64)
    with torch.no_grad():
        batch = net(x)
        single = net(x[1:2])
    torch.testing.assert_close(batch[1:2], single, rtol=0, atol=1e-12)


def test_config_rebuilds_the_same_layout() -> None:
    small = BSN(features=8, dilations=(1, 2))
    clone = BSN(**small.config())
    assert {k: v.shape for k, v in clone.state_dict().items()} == {
        k: v.shape for k, v in small.state_dict().items()
    }


def test_bad_input_and_bad_config() -> None:
    with pytest.raises(ValueError, match=r"BSN input must be \(N, 1, h, w\), got shape \(1, 2, 8, 8\)"):
        BSN()(torch.zeros(1, 2, 8, 8))
    with pytest.raises(ValueError, match="dilations >= 1"):
        BSN(dilations=(1, 0))


@pytest.mark.slow
def test_self_supervised_training_denoises_without_a_clean_target() -> None:
    """GIVEN 9-frame TFPs of smooth rate maps WHEN trained on MSE(BSN(tfp), tfp) alone THEN its output
    is closer to the clean rates than the noisy input is (a net that saw its centre would learn the
    identity and stay as noisy)."""
    torch.manual_seed(0)

    def rates(n: int) -> torch.Tensor:
        coarse = torch.rand(n, 1, 5, 5)
        return 0.05 + 0.85 * torch.nn.functional.interpolate(coarse, size=(24, 24), mode="bicubic").clamp(
            0, 1
        )

    def tfp9(p: torch.Tensor) -> torch.Tensor:
        return torch.binomial(torch.full_like(p, 9.0), p) / 9

    net = BSN(features=16, dilations=(1, 2, 1))  # small, so the test takes seconds
    opt = torch.optim.Adam(net.parameters(), 3e-3)
    clean = rates(16)
    noisy = tfp9(clean)
    for _ in range(60):
        x = tfp9(rates(8))
        loss = torch.nn.functional.mse_loss(net(x), x)
        opt.zero_grad()
        loss.backward()
        opt.step()
    with torch.no_grad():
        denoised = torch.nn.functional.mse_loss(net(noisy), clean).item()
    assert denoised < 0.5 * torch.nn.functional.mse_loss(noisy, clean).item()
