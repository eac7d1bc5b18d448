"""engine/sdm.py: L = B * TFP_short / TFP_long, checked on cases solvable by hand."""

import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from spikereveal.engine.deblur import SDMDeblurrer, to_uint8
from spikereveal.engine.sdm import sdm, sdm_ratio, sdm_sequence, sdm_sequence_uint8


def test_static_scene_gives_back_the_blur():
    blur = np.random.default_rng(0).random((8, 8, 3), dtype=np.float32)
    tfp_map = np.full((2, 2), 0.4, np.float32)
    np.testing.assert_allclose(sdm(blur, tfp_map, tfp_map), blur, rtol=1e-6)


def test_never_firing_pixel_is_zero_not_nan():
    ratio = sdm_ratio(np.array([[0.0, 0.5]]), np.array([[0.0, 0.25]]))
    assert np.isfinite(ratio).all()
    np.testing.assert_array_equal(ratio, [[0.0, 2.0]])


def test_two_phase_pixel_is_recovered_exactly():
    # GIVEN a pixel at intensity 1.0 for the first half of the exposure and 0.5 for the second,
    # with spikes firing every frame, then every other frame (rate proportional to intensity)
    first = np.ones(40, np.uint8)
    second = np.tile([1, 0], 20).astype(np.uint8)
    spikes = np.concatenate([np.ones(20, np.uint8), first, second, np.zeros(20, np.uint8)])[:, None, None]
    exposure = (20, 99)
    blur = np.full((1, 1, 3), 0.75 * 255, np.float64).round().astype(np.uint8)  # mean of 1.0 and 0.5
    # WHEN SDM reconstructs one time in each half (short windows of 9 frames stay inside a phase)
    frames = sdm_sequence(blur, spikes, exposure, [40, 80], short_window=9)
    # THEN it recovers each phase's intensity (up to the 8-bit blur and the odd window's 5/9 or 4/9)
    assert abs(frames[0, 0, 0, 0] - 1.0) < 0.01
    assert abs(frames[1, 0, 0, 0] - 0.5) < 0.07


@settings(max_examples=30, deadline=None)
@given(scale=st.floats(0.05, 20.0), seed=st.integers(0, 2**16))
def test_threshold_and_gain_cancel(scale, seed):
    rng = np.random.default_rng(seed)
    blur = rng.random((8, 12, 3), dtype=np.float32)
    short, long = rng.random((2, 2, 3), dtype=np.float32) + 0.01
    np.testing.assert_allclose(sdm(blur, short * scale, long * scale), sdm(blur, short, long), rtol=1e-4)


def test_spike_maps_are_upsampled_to_the_blur():
    blur = np.ones((16, 24, 3), np.float32)
    short = np.zeros((4, 6), np.float32)
    short[:, 3:] = 1.0
    out = sdm(blur, short, np.full((4, 6), 0.5, np.float32))
    assert out.shape == (16, 24, 3)
    assert out[:, :8].max() == 0.0 and np.allclose(out[:, 16:], 2.0)


@settings(max_examples=20, deadline=None)
@given(seed=st.integers(0, 2**16), density=st.floats(0.05, 0.95))
def test_uint8_path_matches_the_float_reference_within_one_level(seed, density):
    """The engine's 8-bit SDM is the float SDM rounded and clipped, to within one grey level."""
    rng = np.random.default_rng(seed)
    blur = rng.integers(0, 256, (24, 32, 3), dtype=np.uint8)
    spikes = (rng.random((60, 6, 8)) < density).astype(np.uint8)
    spikes[:, :2, :2] = 0  # a corner that never fires: 0 there, as in the reference
    times = [10, 25, 49]
    ref = to_uint8(sdm_sequence(blur, spikes, (5, 54), times))
    got = sdm_sequence_uint8(blur, spikes, (5, 54), times)
    assert got.dtype == np.uint8 and got.shape == ref.shape
    assert int(np.abs(got.astype(int) - ref.astype(int)).max()) <= 1
    assert (got[:, 0, 0] == 0).all()
    assert (SDMDeblurrer().sequence_uint8(blur, spikes, (5, 54), times) == got).all()
