"""The rig source: exact spike windows per RGB exposure, shared views, faults skipped by reason."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from spikereveal.capture.rgb_camera import RgbFrame
from spikereveal.capture.rig import RigSource, SpikeRing, exposure_frames, load_rig_config
from spikereveal.capture.sources import SourceError, open_source
from spikereveal.capture.spike_stream import CallbackSpikeSource
from spikereveal.stream.spikes import SpikeGeometry, pack_frames

RATE = 1000.0  # 1 ms per spike frame keeps the numbers readable
T0 = 5_000_000_000  # host ns of spike frame 0
H, W = 4, 16  # row 0 of frame i holds the 16 bits of i, so a window tells its own indices


def frames_for(start: int, stop: int) -> np.ndarray:
    idx = np.arange(start, stop)
    out = np.zeros((stop - start, H, W), np.uint8)
    out[:, 0, :] = (idx[:, None] >> np.arange(W)) & 1
    return out


def indices_of(spikes: np.ndarray) -> np.ndarray:
    return (spikes[:, 0, :].astype(np.int64) << np.arange(W)).sum(axis=1)


def push_stream(source: CallbackSpikeSource, stop: int, *, block: int = 10, skip=(), jump_at=None, jump_ns=0):
    """Push frames 0..stop in blocks at their read-out host times; ``skip``: frames never pushed."""
    shift = 0
    for a in range(0, stop, block):
        b = min(a + block, stop)
        if jump_at is not None and a >= jump_at:
            shift = jump_ns
        keep = [i for i in range(a, b) if i not in skip]
        if not keep:
            continue
        source.push(frames_for(keep[0], keep[-1] + 1), host_t_ns=T0 + round((b - 1) * 1e6) + shift)
    source.close()


def rgb_frames(n: int, *, period_ms: float = 30.0, exposure_ms: float = 20.0, first_ms: float = 40.5):
    image = np.zeros((4 * H, 4 * W, 3), np.uint8)
    for k in range(n):
        image = image.copy()
        image[..., 0] = k  # the R channel names the frame
        start = T0 + round((first_ms + k * period_ms) * 1e6)
        yield RgbFrame(k, image, start, start + round(exposure_ms * 1e6))


def make_rig(n_rgb: int, stop: int, margin: int = 5, **push) -> RigSource:
    spikes = CallbackSpikeSource(SpikeGeometry(H, W, flip=False), RATE)
    push_stream(spikes, stop, **push)
    return RigSource(
        rgb_frames(n_rgb), spikes, margin_frames=margin, segment_frames=100_000, coverage_timeout_s=2.0
    )


def test_exposure_frames_rule():
    assert exposure_frames(40.5, 60.5) == (41, 61)
    assert exposure_frames(40.0, 60.0) == (41, 60)
    assert exposure_frames(3.2, 3.4) == (4, 4)


def test_every_exposure_gets_its_exact_window_as_shared_views():
    rig = make_rig(6, 400)
    caps = list(rig)
    assert len(caps) == 6
    for k, cap in enumerate(caps):
        first, last = exposure_frames(40.5 + 30 * k, 60.5 + 30 * k)
        got = indices_of(cap.sample.spikes)
        np.testing.assert_array_equal(got, np.arange(first - 5, last + 6))
        s, e = cap.sample.exposure
        assert (got[s], got[e]) == (first, last)
        # BGR blur of the RGB frame, and times on the host clock
        assert int(cap.sample.blur[0, 0, 2]) == k
        assert cap.rgb_t_ns == T0 + round((40.5 + 30 * k) * 1e6)
        assert abs(cap.spike_t0_ns - (T0 + (first - 5) * 1_000_000)) < 1000
        assert abs(cap.spike_rate_hz - RATE) < 1e-3
        assert not cap.sample.spikes.flags.writeable
        assert cap.sync is not None and cap.sync.exposures == k + 1 and cap.sync.skipped_total == 0
    # consecutive windows overlap (margins): the overlap is the same memory, not a copy
    assert np.shares_memory(caps[0].sample.spikes, caps[1].sample.spikes)
    assert rig.ring.carried_frames == 0


def test_lost_block_skips_only_the_exposures_it_touches():
    rig = make_rig(6, 400, skip=set(range(100, 130)))  # frames 100..129 never arrive
    caps = list(rig)
    windows = {}
    for k in range(6):
        first, last = exposure_frames(40.5 + 30 * k, 60.5 + 30 * k)
        windows[k] = (first - 5, last + 5)
    touched = {k for k, (a, b) in windows.items() if a < 130 and b >= 100}
    delivered = {int(c.sample.blur[0, 0, 2]) for c in caps}
    assert delivered == set(range(6)) - touched and touched
    last = caps[-1].sync
    assert last.skipped["lost_block"] == len(touched)
    assert last.missing_frames == 30 and last.lost_blocks == 1
    for cap in caps:  # never a zero-filled gap inside a delivered window
        got = indices_of(cap.sample.spikes)
        np.testing.assert_array_equal(got, np.arange(got[0], got[0] + len(got)))


def test_clock_jump_is_counted_and_its_exposures_skipped():
    rig = make_rig(10, 500, jump_at=200, jump_ns=-80_000_000)  # host clock stepped back 80 ms
    caps = list(rig)
    last = caps[-1].sync if caps else rig.report()
    report = rig.report()
    assert report.clock_jumps == 1
    assert report.skipped["clock_jump"] >= 1
    assert report.exposures + report.skipped_total == 10
    assert last.exposures == len(caps)
    for cap in caps:  # no delivered window spans the jump
        got = indices_of(cap.sample.spikes)
        assert not (got[0] <= 200 <= got[-1])


def test_no_coverage_when_the_stream_ends_or_never_arrives():
    rig = make_rig(6, 120)  # spikes stop at frame 120: exposures from k=3 on have no coverage
    caps = list(rig)
    report = rig.report()
    assert len(caps) == 2 and report.skipped["no_coverage"] == 4

    spikes = CallbackSpikeSource(SpikeGeometry(H, W, flip=False), RATE)
    spikes.push(frames_for(0, 50), host_t_ns=T0 + 49_000_000)  # then silence, never closed
    rig = RigSource(rgb_frames(2), spikes, margin_frames=5, coverage_timeout_s=0.1)
    t = time.monotonic()
    assert list(rig) == []
    assert time.monotonic() - t < 5
    assert rig.report().skipped["no_coverage"] == 2


def test_ring_views_survive_segment_switches_and_carry_only_what_is_needed():
    ring = SpikeRing((H, W), segment_frames=64)
    ring.append(0, frames_for(0, 50).astype(bool))
    first = ring.window(10, 40)
    ring.keep_from = 30
    ring.append(50, frames_for(50, 120).astype(bool))  # two segment switches
    np.testing.assert_array_equal(indices_of(first), np.arange(10, 40))  # old view untouched
    assert ring.segments == 3 and ring.carried_frames <= 2 * 32
    np.testing.assert_array_equal(indices_of(ring.window(100, 120)), np.arange(100, 120))
    with pytest.raises(IndexError):
        ring.window(0, 10)
    ring.append(130, frames_for(130, 140))
    assert ring.lost_in(100, 140) == 10 and ring.lost_in(131, 140) == 0


def test_rig_file_errors_name_file_and_key(tmp_path: Path):
    rig = tmp_path / "rig.yaml"
    rig.write_text("rgb: video.mp4\nspikes: spikes:tcp://127.0.0.1:9?size=4x16\nmargins: 3\n")
    with pytest.raises(SourceError, match=r"rig\.yaml: unknown key 'margins'"):
        load_rig_config(rig)
    rig.write_text("rgb: 0\n")
    with pytest.raises(SourceError, match=r"rig\.yaml: the key 'spikes' is required"):
        load_rig_config(rig)
    rig.write_text("rgb: 0\nspikes: spikes:tcp://h:1?size=4x16\nmargin_frames: -1\n")
    with pytest.raises(SourceError, match=r"rig\.yaml: margin_frames: -1 must be a whole number >= 0"):
        load_rig_config(rig)
    (tmp_path / "video.mp4").write_bytes(b"")
    rig.write_text("rgb: video.mp4\nspikes: spikes:file:s.dat?size=4x16\ncalibration: c.yaml\n")
    config = load_rig_config(rig)
    assert config.rgb == str(tmp_path / "video.mp4")
    assert config.calibration == str(tmp_path / "c.yaml")
    assert config.spikes == f"spikes:file:{tmp_path / 's.dat'}?size=4x16"
    with pytest.raises(SourceError, match=r"rig\.yaml: calibration"):
        open_source(f"rig:{rig}")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_rig_file_with_a_video_and_a_tcp_spike_stream(tmp_path: Path):
    """The real path: OpenCV plays a video at its rate; spikes come over TCP at their read-out times."""
    h, w, rate, n = 16, 24, 2000.0, 8
    video = tmp_path / "cam.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30.0, (4 * w, 4 * h))
    for k in range(n):
        writer.write(np.full((4 * h, 4 * w, 3), 20 * k, np.uint8))
    writer.release()
    port = _free_port()
    (tmp_path / "rig.yaml").write_text(
        f"rgb: cam.avi\nspikes: spikes:tcp://127.0.0.1:{port}?size={h}x{w}&rate={rate:g}&flip=0\n"
        "margin_frames: 10\ncoverage_timeout_s: 1.0\n"
    )
    server = socket.create_server(("127.0.0.1", port))
    stop = threading.Event()
    geometry = SpikeGeometry(h, w, flip=False)
    rng = np.random.default_rng(0)

    def serve() -> None:
        conn, _ = server.accept()
        with conn:
            t_start, sent = time.monotonic(), 0
            while not stop.is_set():
                due = int((time.monotonic() - t_start) * rate) + 1
                if due > sent:
                    block = (rng.random((due - sent, h, w)) < 0.1).astype(np.uint8)
                    try:
                        conn.sendall(pack_frames(block, geometry).tobytes())
                    except OSError:
                        return
                    sent = due
                time.sleep(0.005)

    thread = threading.Thread(target=serve, daemon=True)
    thread.start()
    try:
        source = open_source(f"rig:{tmp_path / 'rig.yaml'}")
        time.sleep(0.3)  # let the clock model settle before the camera starts
        caps = list(source)
    finally:
        stop.set()
        server.close()
        thread.join(timeout=5)
    assert caps, "no exposure was cut"
    report = source.report()
    assert report.exposures + report.skipped_total == n
    for cap in caps:
        assert cap.sample.spikes.shape[1:] == (h, w) and cap.sample.blur.shape == (4 * h, 4 * w, 3)
        s, e = cap.sample.exposure
        assert s == 10 and cap.sample.num_frames - 1 - e == 10
        # a 1/30 s exposure at 2 kHz covers about 67 spike frames
        assert 60 <= e - s + 1 <= 72
        assert cap.sync is not None and cap.sync.rate_hz > 0


def test_bundles_carry_the_sync_report_over_the_wire():
    from spikereveal.capture.node import bundle_from_capture
    from spikereveal.capture.sync import SyncReport
    from spikereveal.stream.protocol import decode, encode

    rig = make_rig(6, 400, skip=set(range(100, 130)))
    caps = list(rig)
    bundle = decode(encode(bundle_from_capture(caps[-1], rig.source_id)))
    assert SyncReport.from_dict(bundle.sync, "bundle.sync") == caps[-1].sync
    assert bundle.sync["skipped.lost_block"] >= 1 and bundle.sync["missing_frames"] == 30


# -- the calibration id travels with the rig's bundles ---------------------------------------------


def test_rig_exposes_its_calibration_id_and_the_node_takes_it() -> None:
    from spikereveal.calibration.model import Calibration, CalibrationError
    from spikereveal.capture.node import resolve_calibration_id

    spikes = CallbackSpikeSource(SpikeGeometry(H, W, flip=False), RATE)
    rig = RigSource(rgb_frames(1), spikes, calibration=Calibration(id="rig-9"))
    plain = RigSource(rgb_frames(1), CallbackSpikeSource(SpikeGeometry(H, W, flip=False), RATE))
    assert rig.calibration_id == "rig-9" and plain.calibration_id == ""
    # the node's own file wins where the source has none; the source's id where the node has none
    assert resolve_calibration_id(None, rig) == "rig-9" and resolve_calibration_id(None, plain) == ""
    assert resolve_calibration_id(Calibration(id="rig-9"), rig) == "rig-9"
    assert resolve_calibration_id(Calibration(id="lab"), plain) == "lab"
    with pytest.raises(
        CalibrationError, match=r"c\.yaml has id 'lab' but the source rig applies calibration 'rig-9'"
    ):
        resolve_calibration_id(Calibration(id="lab"), rig, "c.yaml")
    rig.close()
    plain.close()


def test_capture_node_sends_the_rig_calibration_id_and_sync_in_every_bundle(tmp_path: Path) -> None:
    from spikereveal.capture.node import CaptureNodeConfig
    from spikereveal.capture.sync import SyncReport
    from spikereveal.stream.transport import free_tcp_endpoint
    from tests.capture.rig_harness import SPIKE_HW, SpikeFileWriter, rig_keys
    from tests.capture.test_node import run_capture_in_thread

    # GIVEN a rig file: a 3x video warped by its calibration, spikes from a file growing at 2 kHz
    (tmp_path / "rig.yaml").write_text(rig_keys(tmp_path, frames=6))
    config = CaptureNodeConfig(f"rig:{tmp_path / 'rig.yaml'}", pub=free_tcp_endpoint(), policy="lossless")
    with SpikeFileWriter(tmp_path / "spikes.dat"):
        time.sleep(0.3)  # the camera has been streaming a while before the RGB side starts
        # WHEN the capture node (without a calibration file of its own) sends its bundles
        got, report, _ = run_capture_in_thread(config)
    # THEN every bundle names the rig's calibration, carries its sync report, and is warped to 4x
    assert got and report.bundles_sent == len(got)
    for bundle in got:
        assert bundle.calibration_id == "rig-test"
        assert bundle.blur.shape == (4 * SPIKE_HW[0], 4 * SPIKE_HW[1], 3)
    last = SyncReport.from_dict(got[-1].sync, "bundle.sync")
    assert last.exposures == len(got) and last.exposures + last.skipped_total <= 6


def test_capture_node_with_a_different_calibration_file_fails_at_start(tmp_path: Path) -> None:
    from spikereveal.calibration.model import Calibration, CalibrationError, save_calibration
    from spikereveal.capture.node import CaptureNodeConfig, run_capture
    from spikereveal.stream.transport import StopFlag, free_tcp_endpoint
    from tests.capture.rig_harness import rig_keys

    (tmp_path / "rig.yaml").write_text(rig_keys(tmp_path, frames=2))
    other = save_calibration(tmp_path / "other.json", Calibration(id="bench-2"))
    pub = free_tcp_endpoint()
    config = CaptureNodeConfig(f"rig:{tmp_path / 'rig.yaml'}", pub=pub, calibration=other)
    with pytest.raises(
        CalibrationError, match=r"other\.json has id 'bench-2' but .* applies calibration 'rig-test'"
    ):
        run_capture(config, StopFlag())
    port = int(pub.rsplit(":", 1)[1])
    with socket.socket() as s:  # nothing was bound: the error came before the socket
        s.bind(("127.0.0.1", port))
