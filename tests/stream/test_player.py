"""stream/player.py: the canvas layout, the overlay, rates and playback timing (pure, injected clock)."""

from __future__ import annotations

import numpy as np
import pytest

from spikereveal.stream.player import (
    DEFAULT_RGB_FPS,
    GAP_BGR,
    GAP_PX,
    MAX_RGB_FPS,
    MIN_RGB_FPS,
    NO_BLUR_BGR,
    ArrivalRate,
    OverlayInfo,
    Playback,
    RateMeter,
    SensorRate,
    canvas_size,
    compose_canvas,
    draw_overlay,
    fit_for_screen,
    fit_size,
    overlay_lines,
    window_limits,
)
from spikereveal.stream.protocol import Result

H, W = 6, 8


def solid(bgr: tuple[int, int, int], h: int = H, w: int = W) -> np.ndarray:
    return np.broadcast_to(np.array(bgr, np.uint8), (h, w, 3)).copy()


def result(seq: int, k: int = 4, *, blur: bool = True) -> Result:
    """K frames whose colour encodes (seq, index): frame i is all (seq, i, 200)."""
    frames = np.stack([solid((seq % 256, i, 200)) for i in range(k)])
    return Result(
        seq=seq,
        source_id="test",
        frames=frames,
        spike_times=tuple(20 + 10 * i for i in range(k)),
        blur=solid((7, 7, 7)) if blur else None,
    )


# -- canvas ---------------------------------------------------------------------------------------


def test_canvas_golden_layout_blur_gap_sharp() -> None:
    blue, red = solid((255, 0, 0)), solid((0, 0, 255))
    canvas = compose_canvas(red, blue)
    assert canvas.shape == (H, 2 * W + GAP_PX, 3) == (*canvas_size(H, W), 3)
    assert canvas.dtype == np.uint8
    assert (canvas[:, :W] == (255, 0, 0)).all()  # blur left
    assert (canvas[:, W : W + GAP_PX] == GAP_BGR).all()  # separator
    assert (canvas[:, W + GAP_PX :] == (0, 0, 255)).all()  # sharp right


def test_canvas_one_pixel_lands_where_expected() -> None:
    sharp, blur = np.zeros((H, W, 3), np.uint8), np.zeros((H, W, 3), np.uint8)
    sharp[2, 3] = (1, 2, 3)
    blur[4, 5] = (9, 8, 7)
    canvas = compose_canvas(sharp, blur, gap_px=0)
    assert tuple(canvas[2, W + 3]) == (1, 2, 3) and tuple(canvas[4, 5]) == (9, 8, 7)
    assert canvas.sum() == 1 + 2 + 3 + 9 + 8 + 7


def test_canvas_without_blur_keeps_its_size_and_is_a_copy() -> None:
    sharp = solid((10, 20, 30))
    canvas = compose_canvas(sharp, None)
    assert canvas.shape == (H, 2 * W + GAP_PX, 3)
    assert (canvas[:, :W] == NO_BLUR_BGR).all()
    canvas[:] = 0
    assert (sharp == (10, 20, 30)).all()  # the input is not a view of the canvas


def test_canvas_accepts_read_only_views() -> None:
    sharp = solid((1, 1, 1))
    sharp.flags.writeable = False  # what protocol.decode hands out
    assert compose_canvas(sharp, sharp).shape[0] == H


@pytest.mark.parametrize(
    ("sharp", "blur", "match"),
    [
        (np.zeros((H, W), np.uint8), None, "sharp"),
        (np.zeros((H, W, 3), np.float32), None, "sharp"),
        (np.zeros((H, W, 3), np.uint8), np.zeros((H, W + 1, 3), np.uint8), "blur"),
        (np.zeros((H, W, 4), np.uint8), None, "sharp"),
    ],
)
def test_canvas_rejects_wrong_inputs(sharp, blur, match: str) -> None:
    with pytest.raises(ValueError, match=match):
        compose_canvas(sharp, blur)


def test_fit_for_screen_enlarges_small_exactly_and_shrinks_huge() -> None:
    small = compose_canvas(solid((0, 255, 0)), solid((255, 0, 0)))
    big = fit_for_screen(small, min_height=60)
    assert big.shape[0] >= 60 and big.shape[0] % H == 0
    factor = big.shape[0] // H
    assert big.shape[1] == small.shape[1] * factor
    assert np.array_equal(big[::factor, ::factor], small)  # nearest neighbour: pixels unchanged
    huge = np.zeros((2000, 3000, 3), np.uint8)
    fitted = fit_for_screen(huge, max_height=1000, max_width=1900)
    assert fitted.shape[0] <= 1000 and fitted.shape[1] <= 1900
    assert abs(fitted.shape[1] / fitted.shape[0] - 1.5) < 0.01
    middle = np.zeros((500, 800, 3), np.uint8)
    assert fit_for_screen(middle) is middle


def test_a_big_stream_fits_the_screen_with_a_margin() -> None:
    # GIVEN a 1000x1600 stream: blur | sharp is 1000 x 3204 pixels
    canvas_hw = (1000, 2 * 1600 + 4)
    # WHEN it is fitted to a 1600-pixel-wide screen (900 rows)
    max_h, max_w = window_limits((900, 1600))
    out_h, out_w = fit_size(*canvas_hw, max_height=max_h, max_width=max_w)
    # THEN the window is narrower than the screen, with room for its decorations, aspect kept
    assert max_w < 1600 and max_h < 900
    assert out_w <= max_w and out_h <= max_h
    assert abs(out_w / out_h - canvas_hw[1] / canvas_hw[0]) < 0.01
    # AND a screen of unknown size gets a default that fits any laptop
    assert window_limits(None) == (720, 1280)
    assert fit_size(*canvas_hw) == (400, 1280)
    # AND small sequences are still enlarged by whole factors, within the limits
    assert fit_size(64, 196, min_height=360, max_height=max_h, max_width=max_w) == (384, 1176)
    assert fit_size(500, 800) == (500, 800)
    with pytest.raises(ValueError, match="0x8"):
        fit_size(0, 8)


def test_sensor_rate_is_the_median_spacing_per_sequence_number() -> None:
    rate = SensorRate()
    assert rate.rate_hz is None
    rate.add(0, 0)  # unknown time: ignored
    rate.add(1, 10_000_000)
    assert rate.rate_hz is None  # one usable time says nothing yet
    rate.add(2, 20_000_000)
    rate.add(5, 50_000_000)  # two results dropped in between: still 10 ms per frame
    rate.add(6, 90_000_000)  # one late outlier: the median ignores it
    rate.add(4, 95_000_000)  # going back (a restart): not an interval
    assert rate.rate_hz == pytest.approx(100.0)


# -- overlay --------------------------------------------------------------------------------------


def test_overlay_lines_say_what_the_info_holds() -> None:
    info = OverlayInfo(
        fps_in=9.96,
        fps_out=79.6,
        rgb_fps=10.0,
        latency_last_ms=12.34,
        latency_p50_ms=11.0,
        dropped=3,
        missed=2,
        bad=1,
        paused=True,
        seq=42,
        frame_index=2,
        k=8,
        spike_time=57,
        producer="alive",
    )
    text = "\n".join(overlay_lines(info))
    for part in (
        "in 10.0 res/s",
        "out 79.6 fr/s",
        "K=8",
        "last 12.3 ms",
        "p50 11.0 ms",
        "dropped 3",
        "missed 2",
        "bad 1",
        "seq 42",
        "frame 3/8",
        "spike t 57",
        "PAUSED",
        "producer alive",
    ):
        assert part in text, part
    assert text.isascii()


def test_overlay_lines_unknown_values_show_a_dash() -> None:
    text = "\n".join(overlay_lines(OverlayInfo()))
    assert "in - res/s" in text and "last - ms" in text and "PAUSED" not in text


def test_draw_overlay_changes_the_top_left_only_and_leaves_the_input() -> None:
    canvas = fit_for_screen(compose_canvas(solid((0, 200, 0)), solid((200, 0, 0))), min_height=360)
    before = canvas.copy()
    shown = draw_overlay(canvas, overlay_lines(OverlayInfo(seq=1, k=4)))
    assert np.array_equal(canvas, before)  # a copy was drawn on
    assert shown.shape == canvas.shape and not np.array_equal(shown, canvas)
    changed = np.argwhere((shown != canvas).any(axis=2))
    assert changed[:, 0].max() < canvas.shape[0] // 2  # the band stays at the top
    assert (shown == 255).all(axis=2).any()  # white text is there
    assert np.array_equal(draw_overlay(canvas, []), canvas)


# -- rates ----------------------------------------------------------------------------------------


def test_rate_meter_counts_events_and_batches_alike() -> None:
    single, batch = RateMeter(window_s=2.0), RateMeter(window_s=2.0)
    assert single.rate_hz(0.0) is None
    for i in range(11):  # 10 results/s, each of 8 frames
        single.mark(i * 0.1)
        batch.mark(i * 0.1, n=8)
    assert single.rate_hz(1.0) == pytest.approx(10.0)
    assert batch.rate_hz(1.0) == pytest.approx(80.0)
    assert single.rate_hz(10.0) == 0.0  # silence: the old rate is not shown forever


def test_rate_meter_reads_a_bursty_flow_as_its_mean() -> None:
    meter = RateMeter(window_s=2.0)
    for burst in range(10):  # 4 events at once every 0.5 s: 8 per second on average
        for _ in range(4):
            meter.mark(burst * 0.5)
    assert meter.rate_hz(4.75) == pytest.approx(8.0)


def test_arrival_rate_is_the_median_interval_and_ignores_outliers() -> None:
    rate = ArrivalRate()
    assert rate.rate_hz is None
    t = 0.0
    for interval in (0.04, 0.04, 0.5, 0.04, 0.04, 0.0):  # one stall, one burst (0 s)
        t += interval
        rate.add(t)
    assert rate.rate_hz == pytest.approx(25.0)


# -- playback -------------------------------------------------------------------------------------


def play(p: Playback, start: float, stop: float, dt: float) -> list[tuple[float, int, int]]:
    """Tick an injected clock from start to stop; (time, seq, index) of every frame shown."""
    shown = []
    for step in range(round((stop - start) / dt) + 1):
        now = start + step * dt
        frame = p.tick(now)
        if frame is not None:
            shown.append((round(now, 6), frame.seq, frame.index))
    return shown


TICK = 1 / 1024  # binary fractions: the injected clock and the periods below add up exactly


def test_playback_plays_k_frames_at_k_times_the_rgb_rate() -> None:
    p = Playback(rgb_fps=8.0)  # K=4 -> one frame every 1/32 s
    p.push(result(0), 0.0)
    shown = play(p, 0.0, 0.25, TICK)
    assert [(s, i) for _, s, i in shown] == [(0, 0), (0, 1), (0, 2), (0, 3)]
    assert [t for t, _, _ in shown] == pytest.approx([0.0, 1 / 32, 2 / 32, 3 / 32], abs=1e-6)
    assert p.idle and p.shown == 4 and p.current is not None and p.current.index == 3
    assert p.tick(1.0) is None and p.next_due_in_s(1.0) is None


def test_playback_frame_carries_its_images_and_spike_time() -> None:
    p = Playback(rgb_fps=10.0)
    r = result(5)
    p.push(r, 0.0)
    frame = p.tick(0.0)
    assert frame is not None and frame.blur is r.blur
    assert np.shares_memory(frame.sharp, r.frames) and np.array_equal(frame.sharp, r.frames[0])
    assert (frame.seq, frame.k, frame.spike_time) == (5, 4, 20)


def test_playback_goes_from_one_result_to_the_next_without_a_gap() -> None:
    p = Playback(rgb_fps=8.0)
    p.push(result(0), 0.0)
    p.push(result(1), 0.0)
    shown = play(p, 0.0, 0.5, TICK)
    assert [(s, i) for _, s, i in shown] == [(0, i) for i in range(4)] + [(1, i) for i in range(4)]
    gaps = np.diff([t for t, _, _ in shown])
    assert gaps.max() == pytest.approx(1 / 32, abs=1e-6)  # one period, never a pause between results


def test_playback_speeds_up_to_drain_a_backlog() -> None:
    p = Playback(rgb_fps=8.0)
    for seq in range(3):
        p.push(result(seq), 0.0)
    play(p, 0.0, 0.0, TICK)  # frame 0 of result 0, with results 1 and 2 waiting: double speed
    assert p.next_due_in_s(0.0) == pytest.approx(1 / 64)


def test_playback_keeps_cadence_when_ticked_coarsely_and_never_bursts() -> None:
    p = Playback(rgb_fps=10.0)
    p.push(result(0, k=8), 0.0)  # a frame every 12.5 ms
    shown = play(p, 0.0, 0.2, 0.01)  # a loop that wakes every 10 ms
    times = [t for t, _, _ in shown]
    assert len(shown) == 8
    assert times[-1] == pytest.approx(0.09)  # 7 periods of 12.5 ms, rounded up to the 10 ms tick
    # After a stall of 1 s, the next result starts at once and keeps its own cadence.
    p.push(result(1, k=8), 1.0)
    assert p.tick(1.0) is not None
    assert p.tick(1.001) is None
    assert p.next_due_in_s(1.001) == pytest.approx(0.0115)


def test_playback_estimates_the_rgb_rate_from_arrivals() -> None:
    p = Playback()
    assert p.rgb_fps == DEFAULT_RGB_FPS
    for i in range(3):
        p.push(result(i), i * 0.05)  # 20 Hz
    assert p.rgb_fps == pytest.approx(20.0)


def test_playback_skips_the_oldest_beyond_max_pending() -> None:
    p = Playback(rgb_fps=10.0, max_pending=2)
    for i in range(5):
        p.push(result(i), 0.0)
    assert p.skipped == 3 and p.pending_results == 2
    shown = play(p, 0.0, 1.0, 0.001)
    assert [s for _, s, i in shown if i == 0] == [3, 4]


def test_playback_pause_step_resume() -> None:
    p = Playback(rgb_fps=10.0)
    p.push(result(0), 0.0)
    assert p.tick(0.0) is not None
    assert p.toggle(0.001) is True
    assert p.tick(1.0) is None and p.next_due_in_s(1.0) is None  # paused: time passes, nothing shown
    stepped = p.step()
    assert stepped is not None and stepped.index == 1
    assert p.toggle(2.0) is False
    assert p.step() is None  # stepping only while paused
    frame = p.tick(2.0)
    assert frame is not None and frame.index == 2  # resumes at once, where it was


def test_playback_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match="rgb_fps"):
        Playback(rgb_fps=0)
    with pytest.raises(ValueError, match="max_pending"):
        Playback(max_pending=0)


def test_playback_shows_every_frame_in_order_when_not_overrun() -> None:
    """Property: with max_pending never exceeded, every frame is shown once, in order."""
    rng = np.random.default_rng(3)
    p = Playback(rgb_fps=25.0, max_pending=100)
    t, expected, shown = 0.0, [], []
    for seq in range(20):
        k = int(rng.integers(1, 6))
        p.push(result(seq, k=k), t)
        expected += [(seq, i) for i in range(k)]
        for _ in range(int(rng.integers(0, 30))):
            t += float(rng.uniform(0.0, 0.02))
            frame = p.tick(t)
            if frame is not None:
                shown.append((frame.seq, frame.index))
    while not p.idle:
        t += 0.01
        frame = p.tick(t)
        if frame is not None:
            shown.append((frame.seq, frame.index))
    assert shown == expected and p.skipped == 0


def test_arrival_rate_stays_within_bounds_for_bursts_and_stalls() -> None:
    burst, stall = ArrivalRate(), ArrivalRate()
    for i in range(5):
        burst.add(i * 0.001)  # 1000 Hz: a backlog draining
        stall.add(i * 10.0)  # 0.1 Hz
    assert burst.rate_hz == MAX_RGB_FPS and stall.rate_hz == MIN_RGB_FPS
