"""capture/clock.py: the online clock fit converges under drift and jitter, and jumps are counted."""

from __future__ import annotations

import numpy as np
import pytest

from spikereveal.capture.clock import ClockModel

RATE = 20_000.0
PERIOD_NS = 1e9 / RATE


def simulate(drift_ppm: float, jitter_ns: float, pairs: int, step: int = 200, seed: int = 0):
    """(index, host_t_ns) pairs of a camera ``drift_ppm`` fast, offset 5 s, with Gaussian jitter."""
    rng = np.random.default_rng(seed)
    true_period = PERIOD_NS / (1 + drift_ppm * 1e-6)
    indices = np.arange(pairs) * step
    host = 5e9 + indices * true_period + rng.normal(0.0, jitter_ns, pairs)
    return indices, host.round().astype(np.int64), true_period


def test_converges_under_drift_and_jitter_within_a_fraction_of_a_frame() -> None:
    indices, host, true_period = simulate(drift_ppm=50.0, jitter_ns=10_000.0, pairs=2000)
    clock = ClockModel(RATE)
    for i, t in zip(indices, host, strict=True):
        assert not clock.update(int(i), int(t)).jump
    assert clock.drift_ppm == pytest.approx(50.0, abs=2.0)
    # Predicting well past the data (10 s later) stays within a tenth of a frame of the truth.
    future = int(indices[-1]) + 200_000
    truth = 5e9 + future * true_period
    assert abs(clock.to_host_ns(future) - truth) < 0.1 * PERIOD_NS
    assert clock.to_index(truth) == pytest.approx(future, abs=0.1)
    assert clock.residual_ns == pytest.approx(10_000.0, rel=0.1)  # the jitter we put in
    assert clock.jumps == 0 and clock.report()["clock_pairs"] == 2000


def test_nominal_rate_alone_would_be_off_by_frames() -> None:
    """The property the model exists for: a fixed nominal mapping walks off under 50 ppm."""
    indices, host, _ = simulate(drift_ppm=50.0, jitter_ns=0.0, pairs=2000)
    naive_error_frames = (host[-1] - host[0] - indices[-1] * PERIOD_NS) / PERIOD_NS
    assert abs(naive_error_frames) > 10
    clock = ClockModel(RATE)
    for i, t in zip(indices, host, strict=True):
        clock.update(int(i), int(t))
    assert abs(clock.to_host_ns(int(indices[-1])) - host[-1]) < 0.01 * PERIOD_NS


def test_clock_jump_is_counted_and_the_fit_restarts() -> None:
    indices, host, true_period = simulate(drift_ppm=-30.0, jitter_ns=2_000.0, pairs=400)
    host = host.copy()
    host[200:] += 7_000_000  # the host clock steps by 7 ms (140 frames) halfway
    clock = ClockModel(RATE)
    jumps = [clock.update(int(i), int(t)).jump for i, t in zip(indices, host, strict=True)]
    assert jumps.count(True) == 1 and jumps.index(True) == 200
    assert clock.jumps == 1 and clock.last_jump == (int(indices[200]), int(host[200]))
    # After the jump the line is the new one, not a blend of both.
    assert abs(clock.to_host_ns(int(indices[-1])) - host[-1]) < 0.2 * PERIOD_NS


def test_forgetting_tracks_a_changing_drift() -> None:
    clock = ClockModel(RATE, memory=200)
    t = 0.0
    for k in range(3000):
        drift = 20.0 if k < 1500 else 80.0
        clock.update(k * 100, round(t))
        t += 100 * PERIOD_NS / (1 + drift * 1e-6)
    assert clock.drift_ppm == pytest.approx(80.0, abs=3.0)


def test_bad_settings_and_no_data_are_errors() -> None:
    with pytest.raises(ValueError, match="nominal_rate_hz"):
        ClockModel(0.0)
    with pytest.raises(ValueError, match="memory"):
        ClockModel(RATE, memory=1)
    clock = ClockModel(RATE)
    assert clock.rate_hz == RATE and not clock.fitted
    with pytest.raises(ValueError, match="no \\(index, host time\\) pair"):
        clock.to_host_ns(0)
