"""Temporal calibration: a simulated blink with a known clock offset is recovered to a spike frame."""

from __future__ import annotations

import numpy as np
import pytest

from spikereveal.calibration.model import CalibrationError
from spikereveal.calibration.temporal import estimate_offset, frame_means, window_rates
from spikereveal.tools.calibrate_sim import temporal_rig


@pytest.mark.parametrize(("fps", "offset_ns"), [(30.0, 1_234_000), (60.0, -3_456_789), (100.0, 1_234_000)])
def test_recovers_known_offset_within_one_spike_frame(fps: float, offset_ns: int) -> None:
    rig = temporal_rig(offset_ns=offset_ns, fps=fps, exposure_ns=int(0.4e9 / fps), spike_rate_hz=10_000.0)
    fit = estimate_offset(frame_means(rig.rgb), rig.exposures_ns, frame_means(rig.spikes), rig.spike_rate_hz)
    frame_ns = 1e9 / rig.spike_rate_hz
    assert abs(fit.offset_ns - rig.offset_ns) < frame_ns
    assert 0 <= fit.std_ns < frame_ns
    assert fit.peak_correlation > 0.9


def test_flat_scene_is_an_error_not_a_number() -> None:
    rig = temporal_rig(flat=True, spike_rate_hz=10_000.0)
    with pytest.raises(CalibrationError, match="does not change enough"):
        estimate_offset(frame_means(rig.rgb), rig.exposures_ns, frame_means(rig.spikes), rig.spike_rate_hz)


def test_periodic_flicker_has_no_distinct_peak() -> None:
    rate = 10_000.0
    n = 8000
    t = np.arange(n) / rate
    spikes = 0.5 + 0.3 * np.sign(np.sin(2 * np.pi * 25.0 * t))  # 25 Hz square flicker
    starts = (np.arange(20) * 1e9 / 50.0 + 0.1e9).astype(np.int64)  # 50 fps: sees only two phases
    exposures = np.stack([starts, starts + 5_000_000], axis=1)
    rates, _ = window_rates(spikes, exposures[:, 0] * rate / 1e9, exposures[:, 1] * rate / 1e9)
    with pytest.raises(CalibrationError, match="not distinct"):
        estimate_offset(rates * 200, exposures, spikes, rate)


def test_window_rates_golden() -> None:
    # Frame k integrates (k-1, k]: frames 0..3 hold 0, 1, 1, 0 spikes per pixel.
    means = np.array([0.0, 1.0, 1.0, 0.0])
    rates, covered = window_rates(means, np.array([0.0, 0.5, -2.0]), np.array([2.0, 1.5, 0.0]))
    assert covered.tolist() == [True, True, False]
    assert rates[0] == 1.0 and rates[1] == 1.0 and np.isnan(rates[2])
    rates, _ = window_rates(means, np.array([2.0]), np.array([3.0]))
    assert rates[0] == 0.0


def test_bad_inputs_name_the_field() -> None:
    exp = np.array([[i * 10, i * 10 + 5] for i in range(10)])
    with pytest.raises(CalibrationError, match="exposures: 10 rows for 3 RGB frames"):
        estimate_offset(np.ones(3), exp, np.ones(100), 1000.0)
    bad = np.array([[i * 10, i * 10 + 5] for i in range(10)])
    bad[3] = [30, 30]
    with pytest.raises(CalibrationError, match="row 4: exposure ends"):
        estimate_offset(np.arange(10.0), bad, np.ones(100), 1000.0)
    with pytest.raises(CalibrationError, match="spike_rate_hz"):
        estimate_offset(np.arange(10.0), exp, np.ones(100), 0.0)
