"""engine/windows.py: output times over the exposure and the spike windows around them."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from spikereveal.engine.windows import (
    LDN_WINDOW,
    SDM_SHORT_WINDOW,
    ExposureError,
    check_exposure,
    default_exposure,
    exposure_times,
    ldn_inputs,
    spike_window,
    window_bounds,
)


def test_paper_times_for_five_frames():
    assert exposure_times(20, 116, 5) == [20, 44, 68, 92, 116]


def test_one_time_is_the_middle():
    assert exposure_times(20, 116, 1) == [68]
    assert exposure_times(0, 3, 1) == [2]  # halves round up, not to even


def test_default_exposure_keeps_twenty_frames_each_side():
    assert default_exposure(137) == (20, 116)
    assert default_exposure(301) == (20, 280)


@given(start=st.integers(0, 500), spare=st.integers(0, 500), count=st.integers(1, 40))
def test_times_are_sorted_inside_the_exposure_and_hit_both_ends(start, spare, count):
    end = start + count - 1 + spare  # at least `count` frames: more times than frames is an error
    times = exposure_times(start, end, count)
    assert len(times) == count
    assert times == sorted(times)
    assert all(start <= t <= end for t in times)
    if count > 1:
        assert times[0] == start and times[-1] == end


@pytest.mark.parametrize(
    ("args", "message"),
    [((20, 116, 0), "must be >= 1"), ((30, 20, 3), "empty")],
)
def test_bad_times_are_named(args, message):
    with pytest.raises(ValueError, match=message):
        exposure_times(*args)


def test_too_short_stream_has_no_default_exposure():
    with pytest.raises(ValueError, match="41 frames"):
        default_exposure(30)


def test_user_input_errors_are_one_family_under_the_root():
    from spikereveal.stream.errors import SpikeRevealError

    assert issubclass(ExposureError, SpikeRevealError)
    for call in (lambda: default_exposure(10), lambda: exposure_times(20, 116, 0)):
        with pytest.raises(ExposureError):
            call()


def test_more_times_than_exposure_frames_is_refused():
    # GIVEN an exposure of 11 frames (20..30)
    assert len(set(exposure_times(20, 30, 11))) == 11  # as many times as frames: each frame once
    # WHEN asking for 30 output times THEN it refuses instead of repeating spike indices
    with pytest.raises(ExposureError, match=r"30 output times over exposure 20:30.*at most 11 output times"):
        exposure_times(20, 30, 30)
    with pytest.raises(ExposureError, match="at most 1 output time$"):
        exposure_times(5, 5, 2)


def test_check_exposure_says_which_exposure_fits():
    # GIVEN 310 frames and SDM's 9-frame window WHEN the exposure starts at frame 0
    with pytest.raises(ExposureError) as info:
        check_exposure((0, 300), exposure_times(0, 300, 5), 310, SDM_SHORT_WINDOW, reader="the sdm model")
    text = str(info.value)
    # THEN it names the frames the first time needs, who reads them, and the exposures that fit
    assert "output time 0 needs spike frames -4..4" in text and "the 9 frames the sdm model reads" in text
    assert "must lie within 4..305" in text and "310 spike frames (0..309)" in text
    check_exposure((4, 305), exposure_times(4, 305, 5), 310, SDM_SHORT_WINDOW)  # that one fits


def test_check_exposure_with_one_time_speaks_of_the_middle():
    check_exposure((0, 136), [68], 137, LDN_WINDOW)  # the ends may touch the stream's ends
    with pytest.raises(ExposureError, match=r"the middle must lie within 10\.\.126"):
        check_exposure((0, 4), [2], 137, LDN_WINDOW)


@pytest.mark.parametrize(
    ("exposure", "num_frames", "needle"),
    [
        ((0, 9), 10, "shorter than the 21 frames"),
        ((0, 20), 10, "outside a stream of 10"),
        ((0, 0), 0, "empty"),
    ],
)
def test_check_exposure_rejects_streams_too_short(exposure, num_frames, needle):
    with pytest.raises(ExposureError, match=needle):
        check_exposure(exposure, [exposure[0]], num_frames, LDN_WINDOW)


def test_window_is_centred_and_a_view():
    spikes = np.arange(137)[:, None, None].astype(np.uint8) * np.ones((1, 2, 3), np.uint8)
    window = spike_window(spikes, 68)
    assert window.shape == (LDN_WINDOW, 2, 3)
    assert window[0, 0, 0] == 58 and window[-1, 0, 0] == 78 and window[10, 0, 0] == 68
    assert np.shares_memory(window, spikes)


def test_window_past_the_stream_end_names_the_frames():
    with pytest.raises(ValueError, match=r"frames 127\.\.147.*0\.\.136"):
        window_bounds(137, 21, 137)
    with pytest.raises(ValueError, match="odd"):
        spike_window(np.zeros((137, 1, 1), np.uint8), 50, 20)


def test_ldn_inputs_keep_bgr_order_and_scale():
    blur = np.zeros((8, 12, 3), np.uint8)
    blur[..., 0] = 255  # blue channel as OpenCV reads it
    spikes = np.zeros((60, 2, 3), np.uint8)
    spikes[30, 1, 2] = 1
    blur_batch, windows = ldn_inputs(blur, spikes, [30, 35])
    assert blur_batch.shape == (2, 3, 8, 12) and blur_batch.dtype == np.float32
    assert np.all(blur_batch[:, 0] == 1.0) and np.all(blur_batch[:, 1:] == 0.0)
    assert windows.shape == (2, 21, 2, 3) and windows.dtype == np.float32
    assert windows[0, 10, 1, 2] == 1.0 and windows[1, 5, 1, 2] == 1.0 and windows.sum() == 2


@pytest.mark.parametrize("dtype", [np.uint8, np.bool_, np.float32])
@pytest.mark.parametrize("scale", [1.0, 2.37, 0.1])
def test_ldn_inputs_windows_equal_stack_cast_scale(dtype, scale):
    """The one-pass cast and scale gives the three-pass form's values bit for bit."""
    spikes = (np.random.default_rng(5).random((60, 6, 10)) < 0.4).astype(dtype)
    times = [20, 30, 39]
    _, windows = ldn_inputs(np.zeros((24, 40, 3), np.uint8), spikes, times, spike_scale=scale)
    expected = np.stack([spike_window(spikes, t) for t in times]).astype(np.float32)
    if scale != 1.0:
        expected *= np.float32(scale)
    assert windows.dtype == np.float32 and windows.flags.c_contiguous
    assert np.array_equal(windows, expected)
