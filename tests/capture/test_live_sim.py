"""capture/live_sim.py: the vectorised integrate-and-fire matches SpikeCamera, and ``livesim:``
turns a real MP4 into captures, through open_source and through the capture node."""

from __future__ import annotations

import itertools
from pathlib import Path

import cv2
import numpy as np
import pytest

from spikereveal.capture.live_sim import LiveSimSource, LiveSpikeSimulator, fire_interpolated, rgb_to_grey
from spikereveal.capture.node import CaptureNodeConfig, bundle_from_capture
from spikereveal.capture.rgb_camera import RgbFrame
from spikereveal.capture.sources import SourceError, open_source
from spikereveal.capture.spike_camera import SpikeCamera
from spikereveal.stream.spikes import unpack_frames
from spikereveal.stream.transport import free_tcp_endpoint
from tests.capture.test_node import run_capture_in_thread

pytestmark = pytest.mark.timeout(60)


def write_video(path: Path, n: int = 6, fps: float = 30.0, size: tuple[int, int] = (64, 96)) -> Path:
    """A bright bar moving right over a grey background."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
    for i in range(n):
        frame = np.full((*size, 3), 60, np.uint8)
        frame[:, 8 * i : 8 * i + 16] = 230
        writer.write(frame)
    writer.release()
    return path


def test_vectorised_fire_matches_spike_camera_step_by_step() -> None:
    rng = np.random.default_rng(4)
    ga, gb = rng.random((12, 20)).astype(np.float32), rng.random((12, 20)).astype(np.float32)
    weights = np.linspace(0, 1, 700, endpoint=False)
    grey = ga[None] + weights[:, None, None].astype(np.float32) * (gb - ga)[None]
    camera = SpikeCamera(threshold=1.0, seed=9)
    expected = camera.integrate(grey)
    sim = LiveSpikeSimulator((12, 20), vth=1.0, seed=9)  # the same initial charge draw
    gain = sim._gain
    got, charge = fire_interpolated(sim._charge, gain * ga, gain * (gb - ga), weights)
    assert got.shape == expected.shape and got.dtype == np.bool_
    mismatch = np.mean(got != expected.astype(bool))
    assert mismatch < 1e-3  # float32 rounding may flip a rare bit at a threshold crossing
    np.testing.assert_allclose(got.sum(0), expected.sum(0), atol=1)  # spike counts per pixel
    np.testing.assert_allclose(charge, camera.charge / camera.code_threshold, atol=1e-3)


def test_simulator_stream_is_continuous_and_rates_follow_threshold() -> None:
    white = np.full((40, 64, 3), 255, np.uint8)
    half = np.full((40, 64, 3), 128, np.uint8)
    for vth, grey_image, rate in ((1.0, white, 0.9925), (2.0, white, 0.496), (1.0, half, 0.4983)):
        sim = LiveSpikeSimulator((10, 16), vth=vth, rate_hz=20_000.0)
        blocks = []
        for k in range(4):  # 30 fps frames: ~667 spike frames between middles
            t = k * 33_333_333
            blocks += sim.feed(RgbFrame(k, grey_image, t, t + 33_333_333))
        assert [b.first_index for b in blocks[1:]] == [b.end_index for b in blocks[:-1]]
        frames = np.concatenate([b.frames for b in blocks])
        # Up to the last frame's middle, 3.5 frame periods after the first exposure's start.
        assert frames.shape[0] == blocks[-1].end_index == 2334
        assert frames.mean() == pytest.approx(rate, abs=0.01)


def test_grey_is_downscaled_with_the_paper_weights() -> None:
    image = np.zeros((480, 640, 3), np.uint8)
    image[..., 0] = 255  # pure red
    grey = rgb_to_grey(image, (120, 160))
    assert grey.shape == (120, 160) and grey.dtype == np.float32
    assert float(grey.mean()) == pytest.approx(0.3, abs=1e-6)


def test_livesim_from_an_mp4_through_open_source(tmp_path: Path) -> None:
    video = write_video(tmp_path / "bar.mp4")
    source = open_source(f"livesim:{video}?size=16x24&rate=20000&exposure_ms=20&realtime=0&margin=20")
    assert isinstance(source, LiveSimSource) and not source.live
    captures = list(source)
    source.close()
    period = 1e9 / 20_000
    assert len(captures) == 5  # the last frame has no next frame to close its window
    for i, capture in enumerate(captures):
        sample = capture.sample
        assert capture.index == i and sample.blur.shape == (64, 96, 3) and sample.spike_size == (16, 24)
        start, end = sample.exposure
        assert start == 20 and end - start + 1 == pytest.approx(20e6 / period, abs=1)  # 400 frames
        assert sample.num_frames == end + 21
        # The exposure's first spike frame integrates around its start: read out 0.5..1.5 later.
        lag = capture.spike_t0_ns + start * period - capture.rgb_t_ns
        assert 0.5 * period - 1 <= lag < 1.5 * period + 1
    # Consecutive windows are cut from one continuous stream: the frames at equal times agree.
    a, b = captures[0], captures[1]
    shift = round((b.spike_t0_ns - a.spike_t0_ns) / period)
    overlap = a.sample.num_frames - shift
    if overlap > 0:
        np.testing.assert_array_equal(a.sample.spikes[shift:], b.sample.spikes[:overlap])
    # The bright bar fires more than the background (blur is BGR, as Sample wants).
    spikes = captures[2].sample.spikes.mean(0)
    assert spikes.max() > 0.8 and spikes.min() < 0.35


def test_livesim_through_the_capture_node(tmp_path: Path) -> None:
    video = write_video(tmp_path / "bar.mp4", n=5)
    uri = f"livesim:{video}?size=16x24&exposure_ms=10&realtime=0"
    config = CaptureNodeConfig(uri, pub=free_tcp_endpoint(), rate="max", policy="lossless")
    got, report, _ = run_capture_in_thread(config)
    assert [b.seq for b in got] == [0, 1, 2, 3] and report.bundles_sent == 4
    bundle = got[1]
    spikes = unpack_frames(bundle.spikes_packed, bundle.geometry)
    assert spikes.shape[1:] == (16, 24) and bundle.exposure == (20, 219)
    assert bundle.blur.shape == (64, 96, 3) and bundle.spike_rate_hz == 20_000.0


@pytest.mark.parametrize(
    ("query", "message"),
    [
        ("?speed=2", "unknown setting"),
        ("?size=16", "bad value for size"),
        ("?realtime=yes", "bad value for realtime"),
        ("?vth=0&realtime=0", "vth 0.0 must be"),
        ("?margin=-1", "margin -1 must be >= 0"),
    ],
)
def test_bad_livesim_uris_are_one_clear_error(tmp_path: Path, query: str, message: str) -> None:
    video = write_video(tmp_path / "bar.mp4", n=2)
    with pytest.raises(SourceError, match=message):
        open_source(f"livesim:{video}{query}")


def test_livesim_camera_that_cannot_be_opened_names_it() -> None:
    with pytest.raises(SourceError, match="camera device '57'"):
        open_source("livesim:57")


def test_livesim_captures_carry_a_sync_report_that_looping_keeps(tmp_path: Path) -> None:
    from spikereveal.capture.sources import looped

    # GIVEN a 6-frame video replayed by livesim, looped twice
    video = write_video(tmp_path / "bar.mp4")
    uri = f"livesim:{video}?size=16x24&rate=20000&exposure_ms=20&realtime=0"
    captures = list(itertools.islice(looped(lambda: open_source(uri), True), 10))
    # THEN every capture has a report: exposures so far (this one included), nothing lost or skipped
    reports = [c.sync for c in captures]
    assert all(r is not None for r in reports)
    assert [r.exposures for r in reports] == [1, 2, 3, 4, 5, 1, 2, 3, 4, 5]  # the second pass: anew
    assert [c.index for c in captures] == list(range(10))  # while the stream's numbers keep rising
    last = reports[-1]
    assert last.lost_blocks == 0 and last.missing_frames == 0 and last.skipped_total == 0
    assert last.rate_hz == 20_000.0 and last.dropped_frames == 0 and last.offset_residual_ns == 0.0
    # AND the report travels in the bundle as the flat mapping
    bundle = bundle_from_capture(captures[2], "livesim")
    assert bundle.sync["exposures"] == 3 and bundle.sync["skipped.no_coverage"] == 0


def test_livesim_exposures_shorter_than_a_spike_frame_are_skipped_as_no_coverage(tmp_path: Path) -> None:
    video = write_video(tmp_path / "bar.mp4", n=4)
    source = open_source(f"livesim:{video}?size=16x24&rate=1000&exposure_ms=0.1&realtime=0")
    # 0.1 ms at 1 kHz: most exposures hold no spike frame centre (which ones depends on the phase)
    captures = list(source)
    source.close()
    report = source.tally.report()
    assert source.skipped >= 2 and report.skipped["no_coverage"] == source.skipped
    assert report.exposures == len(captures) and len(captures) + source.skipped in (3, 4)  # 1 pending
    for capture in captures:
        assert capture.sync is not None and capture.sync.skipped["no_coverage"] <= source.skipped
