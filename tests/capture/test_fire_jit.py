"""capture/fire_jit.py: the compiled integrate-and-fire gives the NumPy reference's spikes bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikereveal.capture.fire_jit import AVAILABLE, fire_interpolated_jit
from spikereveal.capture.live_sim import fire_interpolated

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="numba is not installed")


def _inputs(seed: int, n: int, shape: tuple[int, int]) -> tuple[np.ndarray, ...]:
    rng = np.random.default_rng(seed)
    charge = (rng.random(shape, dtype=np.float32) * np.float32(0.999)).astype(np.float32)
    start = (rng.random(shape, dtype=np.float32) * np.float32(0.99)).astype(np.float32)
    end = np.clip(start + (rng.random(shape, dtype=np.float32) - 0.5), 0.0, 0.99).astype(np.float32)
    weights = np.clip((np.arange(n) + rng.random()) / max(n, 1), 0.0, 1.0)
    return charge, start, (end - start).astype(np.float32), weights


@settings(max_examples=30, deadline=None)
@given(seed=st.integers(0, 2**32 - 1), n=st.integers(0, 300), h=st.integers(1, 9), w=st.integers(1, 11))
def test_same_spikes_and_charge_as_the_numpy_reference(seed, n, h, w) -> None:
    charge, start, delta, weights = _inputs(seed, n, (h, w))
    ref_spikes, ref_charge = fire_interpolated(charge, start, delta, weights)
    got_spikes, got_charge = fire_interpolated_jit(charge, start, delta, weights)
    assert got_spikes.shape == (n, h, w) and got_spikes.dtype == np.bool_
    assert np.array_equal(got_spikes, ref_spikes)
    assert got_charge.dtype == np.float32 and np.array_equal(got_charge, ref_charge)


def test_webcam_sized_interval_and_strided_inputs() -> None:
    """667 frames of 120x160 (one 30 fps frame at 20 kHz), inputs given as non-contiguous views."""
    charge, start, delta, weights = _inputs(7, 667, (120, 320))
    view = (charge[:, ::2], start[:, ::2], delta[:, ::2])
    ref_spikes, ref_charge = fire_interpolated(*view, weights)
    got_spikes, got_charge = fire_interpolated_jit(*view, weights)
    assert np.array_equal(got_spikes, ref_spikes) and np.array_equal(got_charge, ref_charge)
    assert 0.2 < got_spikes.mean() < 0.8  # the case is not trivially all-0 or all-1
