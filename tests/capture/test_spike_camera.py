"""Integrate-and-fire simulator: rates in paper units, determinism, noise, charge carry-over."""

from __future__ import annotations

import numpy as np
import pytest

from spikereveal.capture.spike_camera import SpikeCamera, bgr_to_grey


def _constant(grey: float, t: int = 400, h: int = 24, w: int = 32) -> np.ndarray:
    return np.full((t, h, w), grey, dtype=np.float32)


def test_smoke() -> None:
    spikes = SpikeCamera(seed=1).integrate(np.random.default_rng(0).random((20, 8, 16)))
    assert spikes.shape == (20, 8, 16)
    assert spikes.dtype == np.uint8
    assert set(np.unique(spikes)) <= {0, 1}


@pytest.mark.parametrize("vth", [1.0, 2.0, 4.0])
@pytest.mark.parametrize("grey", [0.1, 0.5, 0.9])
def test_rate_matches_paper_units(vth: float, grey: float) -> None:
    """Firing rate per frame = 1.985 * g / (2 * Vth): Vth 1 ~ every frame at white, 2 and 4 half and quarter."""
    camera = SpikeCamera(threshold=vth, seed=3)
    rate = camera.integrate(_constant(grey)).mean()
    expected = 1.985 * grey / (2 * vth)
    assert rate == pytest.approx(expected, rel=0.02)
    assert camera.expected_rate(grey) == pytest.approx(expected)


def test_white_at_vth1_fires_almost_every_frame() -> None:
    rate = SpikeCamera(threshold=1, seed=0).integrate(_constant(1.0)).mean()
    assert 0.985 < rate < 1.0


def test_golden_hand_computed_train() -> None:
    """One pixel, checked against the rule written out by hand: add, compare, subtract."""
    camera = SpikeCamera(threshold=1.0, increment_per_frame=1.0, seed=7)
    camera.step(np.zeros((1, 1)))  # draws the initial charge without adding any
    charge = float(camera.charge[0, 0])
    greys = [0.9, 0.9, 0.3, 1.0, 0.0, 1.0, 1.0, 0.5, 0.8, 0.2]
    expected = []
    for g in greys:
        charge += g
        fired = charge >= 2.0
        charge -= 2.0 * fired
        expected.append(int(fired))
    got = [int(camera.step(np.full((1, 1), g))[0, 0]) for g in greys]
    assert got == expected
    assert float(camera.charge[0, 0]) == pytest.approx(charge)


def test_golden_half_grey_fires_every_other_frame() -> None:
    # +1 per frame against a code threshold of 2: a strict alternation, phase set by the initial charge.
    spikes = SpikeCamera(threshold=1, increment_per_frame=2.0, seed=5).integrate(
        _constant(0.5, t=10, h=3, w=4)
    )
    assert np.all(spikes[:-1] + spikes[1:] == 1)


def test_deterministic_with_seed() -> None:
    frames = np.random.default_rng(1).random((30, 8, 8)).astype(np.float32)
    a = SpikeCamera(seed=11, noise_prob=0.01).integrate(frames)
    b = SpikeCamera(seed=11, noise_prob=0.01).integrate(frames)
    c = SpikeCamera(seed=12, noise_prob=0.01).integrate(frames)
    assert np.array_equal(a, b)
    assert not np.array_equal(a, c)


def test_initial_charge_uniform_below_threshold() -> None:
    camera = SpikeCamera(threshold=2.0, seed=0)
    camera.step(np.zeros((64, 64)))
    charge = camera.charge
    assert charge.min() >= 0 and charge.max() < 4.0
    assert charge.mean() == pytest.approx(2.0, abs=0.1)


def test_noise_rate_on_black() -> None:
    spikes = SpikeCamera(seed=2, noise_prob=0.05).integrate(_constant(0.0, t=200))
    assert spikes.mean() == pytest.approx(0.05, rel=0.05)
    assert SpikeCamera(seed=2).integrate(_constant(0.0, t=50)).sum() == 0


def test_noise_only_adds_spikes_and_does_not_discharge() -> None:
    frames = _constant(0.4, t=200)
    clean = SpikeCamera(seed=4).integrate(frames)
    noisy = SpikeCamera(seed=4, noise_prob=0.007).integrate(frames)
    assert np.all(noisy >= clean)  # same initial charge, noise OR-ed on top
    extra = (noisy.astype(int) - clean).mean()
    assert extra == pytest.approx(0.007 * (1 - clean.mean()), rel=0.15)


def test_charge_carries_over_between_calls() -> None:
    frames = np.random.default_rng(3).random((60, 6, 10)).astype(np.float32)
    whole = SpikeCamera(seed=9, noise_prob=0.01).integrate(frames)
    camera = SpikeCamera(seed=9, noise_prob=0.01)
    parts = np.concatenate([camera.integrate(frames[:17]), camera.integrate(frames[17:40])])
    stepped = np.stack([camera.step(f) for f in frames[40:]])
    assert np.array_equal(np.concatenate([parts, stepped]), whole)
    assert camera.frames_seen == 60


def test_reset_restarts_the_stream() -> None:
    frames = np.random.default_rng(3).random((20, 4, 8))
    camera = SpikeCamera(seed=1, noise_prob=0.02)
    first = camera.integrate(frames)
    camera.reset()
    assert camera.charge is None and camera.frames_seen == 0
    assert np.array_equal(camera.integrate(frames), first)


def test_saturation_fires_every_frame_with_bounded_charge() -> None:
    camera = SpikeCamera(threshold=0.5, seed=0)  # 1.985 per frame against a code threshold of 1.0
    spikes = camera.integrate(_constant(1.0, t=50, h=4, w=4))
    assert spikes[1:].all()
    assert camera.charge.max() <= 1.0


def test_negative_grey_counts_as_zero() -> None:
    assert SpikeCamera(seed=0).integrate(_constant(-1.0, t=20)).sum() == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"threshold": 0}, "threshold"),
        ({"threshold": float("inf")}, "threshold"),
        ({"increment_per_frame": -1}, "increment_per_frame"),
        ({"noise_prob": 1.5}, "noise_prob"),
    ],
)
def test_invalid_settings(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SpikeCamera(**kwargs)


def test_frame_errors() -> None:
    camera = SpikeCamera(seed=0)
    with pytest.raises(ValueError, match="2-D"):
        camera.step(np.zeros((2, 3, 4)))
    camera.step(np.zeros((4, 8)))
    with pytest.raises(ValueError, match=r"\(5, 8\) does not match the sensor \(4, 8\)"):
        camera.step(np.zeros((5, 8)))
    with pytest.raises(ValueError, match="NaN"):
        camera.step(np.full((4, 8), np.nan))
    with pytest.raises(ValueError, match="3-D"):
        camera.integrate(np.zeros((4, 8)))


def test_bgr_to_grey_weights() -> None:
    image = np.zeros((1, 3, 3), np.uint8)
    image[0, 0] = (255, 0, 0)  # blue
    image[0, 1] = (0, 255, 0)  # green
    image[0, 2] = (0, 0, 255)  # red
    grey = bgr_to_grey(image)
    assert grey.dtype == np.float32
    assert grey[0].tolist() == pytest.approx([0.11, 0.59, 0.3])
    assert bgr_to_grey(np.full((2, 2, 3), 255, np.uint8)) == pytest.approx(1.0)
