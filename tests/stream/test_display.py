"""stream/display.py and ``spikereveal display``: the node as a real process fed over real sockets.

Each test binds a producer in this process on a free loopback port (the engine's end: a
LosslessSender, a LatestPublisher, or a raw ROUTER speaking the credit protocol by hand to slip
malformed messages in), starts ``python -m spikereveal.tools.cli display`` as a child, and checks
what it wrote: the .mp4 read back with cv2.VideoCapture and the JSON summary. Every wait is bounded;
every child is terminated (then killed) in teardown. No sleeps as synchronisation: the lossless
channel's acknowledgements and the node's own exit say when it is done.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import cv2
import numpy as np
import pytest
import zmq

from spikereveal.stream.display import DisplayConfig, DisplayNode, Recording, screen_size
from spikereveal.stream.player import DEFAULT_RGB_FPS
from spikereveal.stream.protocol import STATES, Credit, Result, Status, decode, encode
from spikereveal.stream.transport import (
    EndpointError,
    LatestPublisher,
    LosslessSender,
    StopFlag,
    attach,
    free_tcp_endpoint,
    make_socket,
)
from spikereveal.stream.video import VideoError
from tests.conftest import WAIT_S, stop_processes
from tests.media import read_video

pytestmark = pytest.mark.timeout(90)  # every wait below is bounded far lower; this catches a bug

K, H, W = 3, 16, 24
CANVAS = (H, 2 * W + 4, 3)  # blur | 4 px gap | sharp
BLUR_BGR = (255, 0, 0)

requires_finished = pytest.mark.skipif(
    "finished" not in STATES, reason="protocol has no 'finished' state yet (end of stream)"
)


def level(seq: int, i: int) -> int:
    """Grey level of frame i of result seq: distinct and ordered, so a video shows order and loss."""
    return 10 + 10 * (seq * K + i)


def make_result(seq: int, *, blur: bool = True) -> Result:
    t0 = time.monotonic_ns()
    return Result(
        seq=seq,
        source_id="test",
        frames=np.stack([np.full((H, W, 3), level(seq, i), np.uint8) for i in range(K)]),
        spike_times=tuple(20 + 30 * i for i in range(K)),
        model="test",
        blur=np.full((H, W, 3), BLUR_BGR, np.uint8) if blur else None,
        stamps=(("capture.read", t0), ("engine.send", time.monotonic_ns())),
    )


def sharp_levels(frames: list[np.ndarray]) -> list[float]:
    """Mean grey of the sharp panel's middle (away from the codec's edge ringing)."""
    return [float(f[4:-4, W + 4 + 4 : -4].mean()) for f in frames]


class Display:
    """A display node child process and its log."""

    def __init__(self, proc: subprocess.Popen, log_path: Path) -> None:
        self.proc, self.log_path = proc, log_path

    def wait(self, timeout_s: float = WAIT_S) -> int:
        try:
            return self.proc.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"display did not exit within {timeout_s} s:\n{self.log()}") from None

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")


@pytest.fixture
def start_display(tmp_path: Path) -> Iterator[Callable[..., Display]]:
    """Start ``spikereveal display ARGS`` (cwd tmp_path, no screen unless ``env`` names one)."""
    started: list[tuple[subprocess.Popen, object]] = []

    def start(*args: object, env: dict[str, str] | None = None) -> Display:
        child_env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
        child_env.update(env or {})
        log_path = tmp_path / f"display{len(started)}.log"
        out = log_path.open("w")
        proc = subprocess.Popen(
            [sys.executable, "-m", "spikereveal.tools.cli", "-v", "display", *map(str, args)],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=child_env,
            cwd=tmp_path,
        )
        started.append((proc, out))
        return Display(proc, log_path)

    yield start
    stop_processes([proc for proc, _ in started], timeout_s=10)
    for _, out in started:
        out.close()


def send_all(sender: LosslessSender, results: list[Result]) -> None:
    for result in results:
        assert sender.send(result, timeout_s=WAIT_S), f"result {result.seq} not taken within {WAIT_S} s"
    assert sender.flush(timeout_s=WAIT_S), "display did not acknowledge everything"


# -- in-process parts -----------------------------------------------------------------------------


def test_recording_holds_results_until_the_rate_is_known(tmp_path: Path) -> None:
    rec = Recording(tmp_path / "v.mp4", tmp_path / "png", probe_results=3)
    assert rec.add(make_result(0), 0.0) == 0 and rec.add(make_result(1), 0.05) == 0  # held back
    assert rec.add(make_result(2), 0.10) == 3 * K  # third arrival: 20 Hz measured, all written
    assert rec.rgb_fps == pytest.approx(20.0) and rec.video_fps == pytest.approx(20.0 * K)
    assert rec.add(make_result(3), 0.15) == K  # from now on, at once
    rec.close()
    assert rec.frames_written == 4 * K and len(read_video(tmp_path / "v.mp4")) == 4 * K
    assert len(list((tmp_path / "png").glob("*.png"))) == 4 * K


def test_recording_with_a_fixed_rate_writes_at_once_and_flushes_on_close(tmp_path: Path) -> None:
    rec = Recording(tmp_path / "v.mp4", None, rgb_fps=7.5)
    assert rec.add(make_result(0), 0.0) == K
    rec.close()
    rec.close()  # idempotent
    assert rec.video_fps == pytest.approx(7.5 * K) and len(read_video(tmp_path / "v.mp4")) == K
    held = Recording(tmp_path / "h.mp4", None, probe_results=10)
    held.add(make_result(0), 0.0)
    held.close()  # the stream ended before the rate was known: written at the default rate
    assert held.rgb_fps == DEFAULT_RGB_FPS and len(read_video(tmp_path / "h.mp4")) == K
    assert Recording(None, None).add(make_result(0), 0.0) == 0  # nothing asked for, nothing done


def test_recording_takes_the_rate_from_sensor_times_not_arrivals(tmp_path: Path) -> None:
    # GIVEN results captured 1/40 s apart on the sensor clock, one missing (a latest-wins drop),
    # that arrive only every 0.5 s (a slow engine)
    sensor_ns = 25_000_000
    rec = Recording(tmp_path / "v.mp4", None, probe_results=8)
    seqs = [0, 1, 3, 4]
    written = [
        rec.add(dataclasses.replace(make_result(seq), rgb_t_ns=(seq + 1) * sensor_ns), 0.5 * i)
        for i, seq in enumerate(seqs)
    ]
    rec.close()
    # THEN the video opens at the second result, at K x 40 Hz, the sensor's rate
    assert written == [0, 2 * K, K, K]
    assert rec.rgb_fps == pytest.approx(40.0) and rec.video_fps == pytest.approx(40.0 * K)
    assert len(read_video(tmp_path / "v.mp4")) == 4 * K


def test_node_watches_the_callers_stop_flag_and_writes_a_summary(tmp_path: Path) -> None:
    stop = StopFlag()
    config = DisplayConfig(sub=free_tcp_endpoint(), window=False, record=tmp_path / "v.mp4",
                           summary=tmp_path / "s.json")  # fmt: skip
    node = DisplayNode(config, stop)
    assert node.stop is stop
    stop.set()
    run = node.run()
    assert run.exit_reason == "stopped" and run.results == 0
    summary = json.loads((tmp_path / "s.json").read_text())
    assert summary["exit"] == "stopped" and summary["frames_written"] == 0
    assert not (tmp_path / "v.mp4").exists()  # no frame, no file


def test_config_errors_name_the_value(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="policy"):
        DisplayConfig(sub="tcp://127.0.0.1:1", policy="fastest")
    with pytest.raises(ValueError, match="rgb_fps"):
        DisplayConfig(sub="tcp://127.0.0.1:1", rgb_fps=float("nan"))
    with pytest.raises(VideoError, match=r"out\.gif"):
        DisplayConfig(sub="tcp://127.0.0.1:1", record=tmp_path / "out.gif")


# -- headless, lossless ---------------------------------------------------------------------------


@requires_finished
def test_lossless_every_frame_is_written_in_order_and_finished_exits_0(tmp_path: Path, start_display) -> None:
    n = 6
    video, summary_path = tmp_path / "out" / "run.mp4", tmp_path / "out" / "latency.json"
    with LosslessSender(free_tcp_endpoint(), node="engine", role="engine", heartbeat_s=0.2) as sender:
        display = start_display(
            "--sub", sender.endpoint, "--no-window", "--record", video, "--summary", summary_path,
            "--warmup", 2, "--rgb-fps", 10,
        )  # fmt: skip
        send_all(sender, [make_result(seq) for seq in range(n)])
        sender.close(final_state="finished")
        assert display.wait() == 0, display.log()

    frames = read_video(video)
    assert len(frames) == n * K and frames[0].shape == CANVAS
    assert sharp_levels(frames) == pytest.approx([level(s, i) for s in range(n) for i in range(K)], abs=4)
    left = frames[0][4:-4, 4 : W - 4].mean(axis=(0, 1))
    assert left[0] > 200 and left[2] < 60  # the blur (blue) on the left

    summary = json.loads(summary_path.read_text())
    assert summary["exit"] == "finished" and summary["mode"] == "headless"
    assert summary["results"] == n and summary["frames_written"] == n * K and summary["k"] == K
    assert summary["video_fps"] == pytest.approx(K * 10.0)
    assert summary["outputs"]["video"] == str(video) and summary["outputs"]["video_frames"] == n * K
    assert summary["end_to_end"]["n"] == n - 2  # warm-up left out
    assert {"capture.read->engine.send", "engine.send->display.recv"} <= set(summary["stages"])
    assert summary["end_to_end"]["p50_ms"] >= 0 and summary["bad_messages"] == 0
    assert summary["counters"]["received"] == n and summary["dropped"] == 0
    assert summary["reorder"] is None and summary["sync"] is None  # one engine, a replay: neither
    out = display.log()
    assert "end_to_end" in out and "finished" in out  # LatencyStats.format() and the last line


@requires_finished
def test_rate_is_estimated_and_pngs_written_without_blur(tmp_path: Path, start_display) -> None:
    n = 5
    video, pngs, summary_path = tmp_path / "v.mp4", tmp_path / "png", tmp_path / "s.json"
    with LosslessSender(free_tcp_endpoint(), node="engine", role="engine", heartbeat_s=0.2) as sender:
        display = start_display(
            "--sub", sender.endpoint, "--no-window", "--record", video, "--png-dir", pngs,
            "--summary", summary_path, "--warmup", 0,
        )  # fmt: skip
        send_all(sender, [make_result(seq, blur=False) for seq in range(n)])
        sender.close(final_state="finished")
        assert display.wait() == 0, display.log()
    summary = json.loads(summary_path.read_text())
    assert summary["frames_written"] == n * K and summary["outputs"]["pngs"] == n * K
    assert summary["rgb_fps"] > 0 and summary["video_fps"] == pytest.approx(K * summary["rgb_fps"])
    png = cv2.imread(str(pngs / "00000002_001.png"))
    assert png.shape == CANVAS and (png[:, W + 4 :] == level(2, 1)).all()  # PNG: exact pixels
    assert len(read_video(video)) == n * K


def test_malformed_messages_are_counted_and_the_rest_arrives(tmp_path: Path, start_display) -> None:
    """A raw ROUTER plays the engine, honouring credits, and slips bad messages between good ones."""
    n = 4
    video, summary_path = tmp_path / "v.mp4", tmp_path / "s.json"
    router = make_socket(zmq.Context.instance(), zmq.ROUTER)
    try:
        endpoint = attach(router, "tcp://127.0.0.1:*", bind=True)
        display = start_display(
            "--sub", endpoint, "--no-window", "--record", video, "--summary", summary_path, "--rgb-fps", 10,
        )  # fmt: skip
        session = b"engine01"
        acked, routing_id = 0, None

        def credit(min_acked: int) -> bytes:
            """Wait for a credit acknowledging at least ``min_acked``; returns the routing id."""
            nonlocal acked
            deadline = time.monotonic() + WAIT_S
            while True:
                remaining = deadline - time.monotonic()
                assert remaining > 0 and router.poll(int(remaining * 1000)), f"no credit for {min_acked}"
                rid, *frames = router.recv_multipart()
                msg = decode(frames)
                if isinstance(msg, Credit) and msg.producer_session == session.hex():
                    acked = max(acked, msg.acked)
                if isinstance(msg, Credit) and acked >= min_acked:
                    return rid

        def envelope(number: int) -> bytes:
            return b"SRL1" + session + number.to_bytes(8, "little")

        for seq in range(n):
            routing_id = credit(seq - 1)  # window 2: at most two in flight
            router.send_multipart([routing_id, envelope(seq + 1), *encode(make_result(seq))])
            if seq == 1:  # in the middle: a bad envelope, then a good envelope around junk
                router.send_multipart([routing_id, b"junk"])
                router.send_multipart([routing_id, envelope(99), b"\xc1not msgpack"])
        routing_id = credit(n)
        finished = Status.now("engine", "engine", "finished") if "finished" in STATES else None
        if finished is None:
            display.proc.send_signal(signal.SIGTERM)
        else:
            router.send_multipart([routing_id, envelope(0), *encode(finished)])
        assert display.wait() == 0, display.log()
    finally:
        router.close(0)
    summary = json.loads(summary_path.read_text())
    assert summary["bad_messages"] == 2 and summary["counters"]["bad"] == 2
    assert summary["results"] == n and len(read_video(video)) == n * K
    assert "bad message" in display.log()


def test_sigterm_mid_stream_leaves_a_readable_video_and_a_summary(tmp_path: Path, start_display) -> None:
    n = 3  # fewer than the results held back to estimate the rate: they are written at exit
    video, summary_path = tmp_path / "v.mp4", tmp_path / "s.json"
    with LosslessSender(free_tcp_endpoint(), node="engine", role="engine", heartbeat_s=0.2) as sender:
        display = start_display(
            "--sub", sender.endpoint, "--no-window", "--record", video, "--summary", summary_path
        )
        send_all(sender, [make_result(seq) for seq in range(n)])
        display.proc.send_signal(signal.SIGTERM)  # the stream is still open: no "finished"
        assert display.wait() == 0, display.log()
    assert len(read_video(video)) == n * K
    summary = json.loads(summary_path.read_text())
    assert summary["exit"] == "signal" and summary["results"] == n and summary["frames_written"] == n * K


def _bind_retrying(endpoint: str) -> LosslessSender:
    """A sender on a fixed port again; libzmq releases the previous socket's port asynchronously."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            return LosslessSender(endpoint, node="engine", role="engine", heartbeat_s=0.2)
        except EndpointError:
            assert time.monotonic() < deadline, f"{endpoint} still busy after {WAIT_S} s"
            time.sleep(0.05)


@requires_finished
def test_no_exit_on_finish_writes_a_summary_and_takes_the_next_stream(tmp_path: Path, start_display) -> None:
    endpoint, video, summary_path = free_tcp_endpoint(), tmp_path / "v.mp4", tmp_path / "s.json"
    display = None
    for stream, n in enumerate((2, 3)):
        with _bind_retrying(endpoint) as sender:
            if display is None:
                display = start_display(
                    "--sub", endpoint, "--no-window", "--record", video, "--summary", summary_path,
                    "--rgb-fps", 10, "--no-exit-on-finish",
                )  # fmt: skip
            send_all(sender, [make_result(2 * stream + seq) for seq in range(n)])
            sender.close(final_state="finished")
        total = 2 + 3 * stream
        wait_for(
            lambda total=total: (
                summary_path.exists() and json.loads(summary_path.read_text())["results"] == total
            ),
            f"a summary after stream {stream}",
        )
        assert display.proc.poll() is None, display.log()  # still running, waiting for the next
    display.proc.send_signal(signal.SIGTERM)
    assert display.wait() == 0, display.log()
    summary = json.loads(summary_path.read_text())
    assert summary["exit"] == "signal" and summary["results"] == 5
    assert len(read_video(video)) == 5 * K


@requires_finished
def test_results_sent_again_by_a_restarted_producer_are_shown_once(tmp_path: Path, start_display) -> None:
    """Lossless is at-least-once across a producer restart: the second producer session sends
    results 2 and 3 again (the same captures); the display shows each seq once and counts two."""
    n = 6
    endpoint, video, summary_path = free_tcp_endpoint(), tmp_path / "v.mp4", tmp_path / "s.json"
    results = [make_result(seq) for seq in range(n)]
    with _bind_retrying(endpoint) as first:
        display = start_display(
            "--sub", endpoint, "--no-window", "--record", video, "--summary", summary_path,
            "--rgb-fps", 10, "--warmup", 0,
        )  # fmt: skip
        send_all(first, results[:4])
    with _bind_retrying(endpoint) as second:  # a new session: the display's window starts afresh
        send_all(second, results[2:])
        second.close(final_state="finished")
        assert display.wait() == 0, display.log()
    summary = json.loads(summary_path.read_text())
    assert summary["results"] == n and summary["duplicates"] == 2
    assert summary["counters"]["duplicates"] >= 2 and summary["frames_written"] == n * K
    frames = read_video(video)
    assert sharp_levels(frames) == pytest.approx([level(s, i) for s in range(n) for i in range(K)], abs=4)


def test_a_display_without_a_producer_says_what_it_waits_for(start_display) -> None:
    endpoint = free_tcp_endpoint()
    display = start_display("--sub", endpoint, "--no-window")
    expected = f"display: waiting for results from {endpoint} (no producer heard yet), for 5 s now"
    wait_for(lambda: expected in display.log(), "a waiting notice", timeout_s=WAIT_S + 5)
    display.proc.send_signal(signal.SIGTERM)
    assert display.wait() == 0, display.log()


@requires_finished
def test_latest_policy_without_a_screen_falls_back_to_the_default_video(
    tmp_path: Path, start_display
) -> None:
    n = 8
    with LatestPublisher(free_tcp_endpoint(), node="engine", role="engine") as pub:
        display = start_display("--sub", pub.endpoint, "--policy", "latest", "--warmup", 0, "--rgb-fps", 10)
        assert pub.wait_for_subscriber(timeout_s=WAIT_S), display.log()
        for seq in range(n):
            pub.publish(make_result(seq))
        pub.close(final_state="finished")
        assert display.wait() == 0, display.log()
    assert "no display" in display.log()  # the window was asked for, and there is no screen
    summary = json.loads((tmp_path / "build/run/latency.json").read_text())
    frames = read_video(tmp_path / "build/run/display.mp4")
    got = summary["results"]
    assert 1 <= got <= n and got + summary["dropped"] + summary["missed"] <= n
    assert len(frames) == summary["frames_written"] == got * K
    assert summary["exit"] == "finished" and summary["policy"] == "latest"


@requires_finished
def test_an_unreachable_x_display_falls_back_to_headless(tmp_path: Path, start_display) -> None:
    """OpenCV's Qt aborts the process on a display it cannot reach; the node must not."""
    with LosslessSender(free_tcp_endpoint(), node="engine", role="engine", heartbeat_s=0.2) as sender:
        display = start_display("--sub", sender.endpoint, "--rgb-fps", 10, env={"DISPLAY": ":4321"})
        send_all(sender, [make_result(seq) for seq in range(2)])
        sender.close(final_state="finished")
        assert display.wait() == 0, display.log()
    assert "cannot open a window" in display.log()
    assert len(read_video(tmp_path / "build/run/display.mp4")) == 2 * K


def test_bad_record_path_is_one_line_and_exit_2(cli, tmp_path: Path) -> None:
    res = cli(
        "display", "--sub", free_tcp_endpoint(), "--no-window", "--record", tmp_path / "x.xyz", timeout=60
    )
    assert res.returncode == 2
    assert "x.xyz" in res.stderr and ".mp4" in res.stderr and "Traceback" not in res.stderr


def test_stream_modules_do_not_import_torch() -> None:
    code = (
        "import sys, spikereveal.stream.display, spikereveal.stream.player, spikereveal.stream.video, "
        "spikereveal.tools.display_cmd; sys.exit('torch' in sys.modules)"
    )
    assert subprocess.run([sys.executable, "-c", code], timeout=60).returncode == 0


# -- window mode under a virtual X server ---------------------------------------------------------


@pytest.fixture
def xvfb() -> Iterator[str]:
    """A private Xvfb server's display name (":N"); skip where Xvfb is not installed."""
    exe = shutil.which("Xvfb")
    if exe is None:
        pytest.skip("Xvfb is not installed (apt-get install xvfb)")
    read_fd, write_fd = os.pipe()
    proc = subprocess.Popen(
        [exe, "-displayfd", str(write_fd), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
        pass_fds=(write_fd,),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    os.close(write_fd)
    try:
        with os.fdopen(read_fd) as pipe:  # Xvfb writes its display number here once it is ready
            number = pipe.readline().strip()
        if not number:
            pytest.skip("Xvfb did not start")
        yield f":{number}"
    finally:
        stop_processes([proc], timeout_s=10)


def press(display_name: str, *keys: str) -> None:
    """Focus the display's window and type ``keys`` (XTEST; no window manager needed)."""
    xdotool = shutil.which("xdotool")
    if xdotool is None:
        pytest.skip("xdotool is not installed (apt-get install xdotool)")
    cmd = [xdotool, "search", "--sync", "--onlyvisible", "--name", "SpikeReveal", "windowfocus", "--sync"]
    done = subprocess.run(
        [*cmd, "key", "--delay", "50", *keys],
        env={**os.environ, "DISPLAY": display_name},
        timeout=WAIT_S,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll a condition another process makes true (bounded; not a sleep standing in for an event)."""
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"{what} within {timeout_s} s"
        time.sleep(0.02)


@requires_finished
def test_window_mode_plays_every_frame_then_finishes_under_xvfb(tmp_path: Path, start_display, xvfb) -> None:
    n = 4
    video, summary_path, pngs = tmp_path / "w.mp4", tmp_path / "s.json", tmp_path / "png"
    with LosslessSender(free_tcp_endpoint(), node="engine", role="engine", heartbeat_s=0.2) as sender:
        display = start_display(
            "--sub", sender.endpoint, "--record", video, "--summary", summary_path, "--png-dir", pngs,
            "--rgb-fps", 20, env={"DISPLAY": xvfb},
        )  # fmt: skip
        send_all(sender, [make_result(seq) for seq in range(n)])
        sender.close(final_state="finished")
        assert display.wait() == 0, display.log()
    summary = json.loads(summary_path.read_text())
    assert summary["mode"] == "window", display.log()
    assert summary["exit"] == "finished"
    assert summary["frames_shown"] == n * K and summary["skipped"] == 0  # lossless: nothing skipped
    assert summary["frames_written"] == n * K and len(read_video(video)) == n * K


def test_window_keys_pause_step_snapshot_quit_under_xvfb(tmp_path: Path, start_display, xvfb) -> None:
    snapshots, summary_path = tmp_path / "png", tmp_path / "s.json"
    with LosslessSender(free_tcp_endpoint(), node="engine", role="engine", heartbeat_s=0.2) as sender:
        display = start_display(
            "--sub", sender.endpoint, "--summary", summary_path, "--png-dir", snapshots, "--rgb-fps", 1,
            env={"DISPLAY": xvfb},
        )  # fmt: skip
        send_all(sender, [make_result(0)])  # K frames over one second: still playing while we type
        press(xvfb, "space", "n", "s")  # pause, step one frame, save it
        wait_for(lambda: any(snapshots.glob("snapshot_*.png")), "a snapshot file")
        press(xvfb, "q")
        assert display.wait() == 0, display.log()
    summary = json.loads(summary_path.read_text())
    assert summary["exit"] == "quit" and summary["mode"] == "window"
    (snapshot,) = summary["outputs"]["snapshots"]
    image = cv2.imread(snapshot)
    assert image.shape == CANVAS  # the clean canvas at its own size, no overlay
    assert (image[:, :W] == BLUR_BGR).all()
    index = int(Path(snapshot).stem.rsplit("_", 1)[1])
    assert index >= 1 and (image[:, W + 4 :] == level(0, index)).all()  # stepped past frame 0
    assert "paused" in display.log()


def test_screen_size_is_read_from_the_x_server(xvfb) -> None:
    if shutil.which("xdpyinfo") is None:
        pytest.skip("xdpyinfo is not installed (apt-get install x11-utils)")
    assert screen_size(xvfb) == (800, 1280)  # the fixture's -screen 0 1280x800x24
    assert screen_size("") is None  # no display named: unknown, never an error


def _started_pids(text: str) -> dict[str, int]:
    return {name: int(pid) for name, pid in re.findall(r"started (\w+) \(pid (\d+)\)", text)}


def _gone(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().split(")")[-1].split()[0] == "Z"  # a zombie has ended
    except FileNotFoundError:
        return True


def test_q_in_the_window_ends_the_whole_run_under_xvfb(tmp_path: Path, xvfb) -> None:
    # GIVEN `spikereveal run` of an endless source with its window on a virtual screen
    log_path = tmp_path / "run.log"
    with log_path.open("w") as out:
        proc = subprocess.Popen(
            [
                sys.executable, "-m", "spikereveal.tools.cli", "run", "--source", "sim:pan?size=16x24",
                "--window", "--summary", tmp_path / "s.json",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env={**os.environ, "DISPLAY": xvfb},
            cwd=tmp_path,
        )  # fmt: skip
        try:
            wait_for(lambda: "[display]" in log_path.read_text(), "the display's first log line")
            pids = _started_pids(log_path.read_text())
            assert set(pids) == {"display", "engine", "capture"}, log_path.read_text()
            # WHEN the user presses q in the live window
            press(xvfb, "q")
            code = proc.wait(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait(timeout=10)
    # THEN the run ends with exit 0, says so, and no node is left running
    text = log_path.read_text()
    assert code == 0, text
    assert "the user quit the display (q or Esc): stopped the other nodes" in text
    wait_for(lambda: all(_gone(p) for p in pids.values()), "every node ended")
    assert json.loads((tmp_path / "s.json").read_text())["exit"] == "quit"


@pytest.mark.parametrize(
    ("fps", "expected"),
    [(29.97, 29.97), (729.93, 729.9), (146.0 * 5, 730.0), (7000.26, 7000.0), (70000.4, 70000.0)],
)
def test_writable_fps_fits_the_mpeg4_time_base(fps: float, expected: float) -> None:
    from spikereveal.stream.display import writable_fps

    assert writable_fps(fps) == pytest.approx(expected)


def test_an_engine_pool_reorder_counters_and_the_sync_section_reach_the_summary(
    tmp_path: Path, start_display
) -> None:
    # GIVEN two engines' results channels, results carrying a live rig's sync report
    summary_path = tmp_path / "latency.json"

    def with_sync(seq: int) -> Result:
        sync = {"exposures": seq + 1, "lost_blocks": seq // 2, "skipped.clock_jump": 1,
                "offset_residual_ns": 100.0 * (3 - seq)}  # fmt: skip
        return dataclasses.replace(make_result(seq), sync=sync)

    results = [with_sync(seq) for seq in range(4)]
    a = LosslessSender(free_tcp_endpoint(), node="engine-0", role="engine", heartbeat_s=0.2)
    b = LosslessSender(free_tcp_endpoint(), node="engine-1", role="engine", heartbeat_s=0.2)
    with a, b:
        display = start_display(
            "--sub", f"{a.endpoint},{b.endpoint}", "--no-window", "--record", tmp_path / "run.mp4",
            "--summary", summary_path, "--warmup", 0, "--rgb-fps", 10,
        )  # fmt: skip
        # WHEN engine-1 finishes 3 before engine-0 finishes 2 (the display must hold 3 for it)
        send_all(a, [results[0]])
        send_all(b, [results[1], results[3]])
        send_all(a, [results[2]])
        a.close(final_state="finished")
        b.close(final_state="finished")
        assert display.wait() == 0, display.log()
    # THEN the summary has the pool's reorder counters and the sync section
    summary = json.loads(summary_path.read_text())
    assert summary["results"] == 4
    reorder = summary["reorder"]
    assert set(reorder) == {"reordered", "held_max", "gaps", "duplicates", "late"}
    assert reorder["reordered"] == 1 and reorder["gaps"] == 0 and reorder["late"] == 0
    sync = summary["sync"]
    assert sync["reports"] == 4 and sync["latest"] == dict(results[3].sync)  # shown in order: 3 last
    totals = sync["totals"]
    assert totals["exposures"] == 4 and totals["lost_blocks"] == 1 and totals["skipped"] == {"clock_jump": 1}
    assert totals["offset_residual_ns"] == 0.0 and totals["offset_residual_max_ns"] == 300.0
    assert "sync: 4 exposures, skipped 1 (clock_jump 1)" in display.log()
