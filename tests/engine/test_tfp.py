"""Tests for engine/tfp.py: the mean of spike frames over a window."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikereveal.engine.tfp import tfp, tfp_range, window_bounds


def test_hand_case() -> None:
    # GIVEN 5 frames of 1x3 where pixel 0 fires always, pixel 1 on frames 1 and 3, pixel 2 never
    spikes = np.array([[[1, 0, 0]], [[1, 1, 0]], [[1, 0, 0]], [[1, 1, 0]], [[1, 0, 0]]], dtype=np.uint8)
    # WHEN averaged over 3 frames around frame 2 THEN the means are exact
    out = tfp(spikes, 2, 3)
    assert out.dtype == np.float32
    assert out.shape == (1, 3)
    np.testing.assert_array_equal(out, np.array([[1.0, 2 / 3, 0.0]], dtype=np.float32))
    np.testing.assert_array_equal(tfp(spikes, 2, 5), np.array([[1.0, 0.4, 0.0]], dtype=np.float32))
    np.testing.assert_array_equal(tfp(spikes, 0, 1), spikes[0].astype(np.float32))
    np.testing.assert_array_equal(tfp_range(spikes, 1, 3), np.array([[1.0, 2 / 3, 0.0]], dtype=np.float32))


def test_window_bounds() -> None:
    assert window_bounds(151, 41, 301) == (131, 171)
    assert window_bounds(0, 1, 1) == (0, 0)


@pytest.mark.parametrize("window", [0, -3, 4, 2.0, True])
def test_window_must_be_odd_and_positive(window: object) -> None:
    with pytest.raises(ValueError, match="positive odd number of frames"):
        tfp(np.zeros((10, 2, 2), np.uint8), 5, window)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (
            lambda s: tfp(s, 1, 5),
            r"frames -1\.\.3 \(centre 1, window 5\) are outside .* 10 frames \(0\.\.9\)",
        ),
        (lambda s: tfp(s, 8, 5), r"frames 6\.\.10 .* 10 frames"),
        (lambda s: tfp_range(s, 3, 10), r"frames 3\.\.10 are outside the spike stream of 10 frames"),
        (lambda s: tfp_range(s, 5, 4), r"frames 5\.\.4"),
        (lambda s: tfp_range(s[:0], 0, 0), r"0 frames \(none\)"),
    ],
)
def test_out_of_range_names_range_and_frames(call, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        call(np.zeros((10, 2, 2), np.uint8))


def test_rejects_non_frames() -> None:
    with pytest.raises(ValueError, match="must be \\(T, H, W\\)"):
        tfp(np.zeros(10, np.uint8), 5, 3)


def test_long_windows_over_255_frames_are_exact() -> None:
    # 300 frames: more than one 8-bit accumulation chunk
    spikes = np.ones((300, 2, 2), dtype=np.uint8)
    spikes[:, 0, 0] = 0
    spikes[::3, 1, 1] = 0
    out = tfp_range(spikes, 0, 299)
    np.testing.assert_array_equal(out, np.array([[0.0, 1.0], [1.0, 200 / 300]], dtype=np.float32))


@settings(max_examples=40, deadline=None)
@given(
    frames=st.integers(1, 300),
    seed=st.integers(0, 2**32 - 1),
    dtype=st.sampled_from([np.uint8, np.bool_, np.float32, np.int32]),
)
def test_matches_float64_mean_for_any_dtype(frames: int, seed: int, dtype: type) -> None:
    rng = np.random.default_rng(seed)
    spikes = (rng.random((frames, 3, 5)) < 0.4).astype(dtype)
    start = int(rng.integers(0, frames))
    stop = int(rng.integers(start, frames))
    expected = spikes[start : stop + 1].astype(np.float64).mean(axis=0).astype(np.float32)
    out = tfp_range(spikes, start, stop)
    assert out.dtype == np.float32
    np.testing.assert_allclose(out, expected, rtol=1e-6, atol=0)
    # tfp is tfp_range of the centred window
    half = min(start, frames - 1 - start)
    np.testing.assert_array_equal(
        tfp(spikes, start, 2 * half + 1), tfp_range(spikes, start - half, start + half)
    )
