"""capture/node.py: the pure bundle builder, and the node as a real process on real sockets.

The far end of every socket is this test process (``stream.transport`` classes); nodes run as
``python -m spikereveal.tools.cli capture ...`` on free loopback ports. Every wait is bounded and
every process is terminated (then killed) in the fixture's teardown.
"""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from spikereveal.capture.node import (
    CaptureNodeConfig,
    CaptureReport,
    bundle_from_capture,
    resolve_policy,
    run_capture,
)
from spikereveal.capture.sample import Sample
from spikereveal.capture.sources import Capture, SourceError, open_source, parse_rate
from spikereveal.stream.channel import PeerInfo
from spikereveal.stream.protocol import Bundle, decode, encode
from spikereveal.stream.spikes import SpikeGeometry, unpack_frames
from spikereveal.stream.transport import LatestSubscriber, LosslessReceiver, StopFlag, free_tcp_endpoint
from tests.conftest import WAIT_S

pytestmark = pytest.mark.timeout(60)  # every wait below is bounded far lower; this catches a bug

SIM = "sim:pan?size=16x24&count={n}"


def until_finished(receiver: LosslessReceiver | LatestSubscriber, timeout_s: float = WAIT_S) -> list:
    """Every data message until the producer reports "finished" (AssertionError after ``timeout_s``)."""
    got = []
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        msg = receiver.recv(0.1)
        if msg is not None:
            got.append(msg)
        elif receiver.producer is not None and receiver.producer.state == "finished":
            return got
    raise AssertionError(f"no 'finished' within {timeout_s} s; got {[m.seq for m in got]}")


def run_capture_in_thread(config: CaptureNodeConfig) -> tuple[list, CaptureReport, PeerInfo | None]:
    """``run_capture(config)`` in a thread, into a lossless receiver on ``config.pub``: every data
    message until "finished", the node's report, and the producer as the receiver last heard it."""
    reports = []
    worker = threading.Thread(target=lambda: reports.append(run_capture(config, StopFlag())))
    with LosslessReceiver(config.pub, heartbeat_s=0.1) as receiver:
        worker.start()
        try:
            got = until_finished(receiver)
        finally:
            worker.join(WAIT_S)
    (report,) = reports
    return got, report, receiver.producer


def exit_code(proc: subprocess.Popen) -> int:
    try:
        return proc.wait(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"node still running after {WAIT_S} s:\n{proc.log_path.read_text()}") from None


# -- bundle_from_capture ------------------------------------------------------------------------


def test_bundle_round_trip_gives_the_sample_back(sim_dataset: Path) -> None:
    source = open_source(str(sim_dataset))
    (capture,) = list(source)
    sample = capture.sample
    bundle = bundle_from_capture(capture, source.source_id, "nominal", read_t_ns=1234)
    assert bundle.seq == 0 and bundle.source_id == source.source_id and bundle.calibration_id == "nominal"
    assert bundle.geometry == SpikeGeometry(32, 48, flip=False)  # sample spikes are upright already
    assert bundle.exposure == sample.exposure == (20, 116)
    assert (bundle.rgb_t_ns, bundle.spike_t0_ns, bundle.spike_rate_hz) == (
        capture.rgb_t_ns,
        capture.spike_t0_ns,
        capture.spike_rate_hz,
    )
    assert bundle.stamps == (("capture.read", 1234),)
    np.testing.assert_array_equal(bundle.blur, sample.blur)
    # Over the wire and back, unpacked by the one unpacker the engine uses.
    wired = decode([bytes(f) for f in encode(bundle)])
    np.testing.assert_array_equal(unpack_frames(wired.spikes_packed, wired.geometry), sample.spikes)
    np.testing.assert_array_equal(wired.blur, sample.blur)
    assert wired.spike_time_ns(20) == capture.rgb_t_ns  # the exposure starts at spike frame 20


def test_bundle_packs_a_hand_built_one_pixel_pattern() -> None:
    spikes = np.zeros((2, 8, 8), np.uint8)
    spikes[0, 0, 0] = 1  # pixel 0: bit 0 of byte 0
    spikes[1, 7, 1] = 1  # pixel 57 of an upright frame: bit 1 of byte 7 (no flip)
    blur = np.zeros((32, 32, 3), np.uint8)
    sample = Sample("hand/0", blur, spikes, (0, 1))
    bundle = bundle_from_capture(Capture(7, sample, 100, 50, 40_000.0), "hand")
    expected = np.zeros((2, 8), np.uint8)
    expected[0, 0], expected[1, 7] = 1, 2
    np.testing.assert_array_equal(bundle.spikes_packed, expected)
    assert bundle.seq == 7 and bundle.stamps == () and bundle.calibration_id == ""
    assert bundle.spike_time_ns(1) == 50 + 25_000  # 40 kHz: 25 us per frame


def test_config_and_policy_checks() -> None:
    assert parse_rate("max") == "max" and parse_rate("2.5") == 2.5
    for bad in ("fast", "0", "-1", "inf"):
        with pytest.raises(SourceError, match="rate"):
            parse_rate(bad)
    with pytest.raises(ValueError, match="policy"):
        CaptureNodeConfig("sample", policy="fifo")
    with pytest.raises(ValueError, match="count"):
        CaptureNodeConfig("sample", count=0)
    assert CaptureNodeConfig("sample", rate="4").rate == 4.0
    source = open_source("sample")
    assert resolve_policy("auto", source) == "lossless"  # recordings and the simulator lose nothing
    assert resolve_policy("latest", source) == "latest"


def test_run_capture_in_process_reports_what_it_did() -> None:
    endpoint = free_tcp_endpoint()
    config = CaptureNodeConfig(SIM.format(n=3), pub=endpoint, rate="max", node="cap")
    got, report, producer = run_capture_in_thread(config)
    assert [b.seq for b in got] == [0, 1, 2]
    assert [s for s, _ in got[0].stamps] == ["capture.read", "capture.send"]
    assert got[0].stamps[0][1] <= got[0].stamps[1][1]
    assert (report.final_state, report.bundles_sent, report.unacknowledged, report.exit_code) == (
        "finished",
        3,
        0,
        0,
    )
    assert producer.node == "cap" and producer.status.counters["captures_read"] == 3
    assert "3 bundles sent" in report.summary()


def test_run_capture_loops_a_set_with_rising_sequence_and_times(sim_dataset: Path) -> None:
    endpoint = free_tcp_endpoint()
    config = CaptureNodeConfig(str(sim_dataset), pub=endpoint, rate="max", loop=True, count=3)
    got, _, _ = run_capture_in_thread(config)
    assert [b.seq for b in got] == [0, 1, 2]  # the one-sample set, three times over
    starts = [b.rgb_t_ns for b in got]
    assert starts == sorted(set(starts)) and got[1].spike_t0_ns == round(137 * 1e9 / got[0].spike_rate_hz)


def test_run_capture_stops_on_its_flag_without_a_consumer() -> None:
    stop = StopFlag()
    config = CaptureNodeConfig("sample", pub=free_tcp_endpoint(), rate="max")
    timer = threading.Timer(0.2, stop.set)
    timer.start()
    report = run_capture(config, stop)  # waits for a credit that never comes, until stopped
    timer.join()
    assert report.final_state == "stopping" and report.bundles_sent == 0 and report.exit_code == 0


# -- the node as a process ----------------------------------------------------------------------


def test_node_replays_a_dataset_then_finishes(sim_dataset: Path, spawn, tmp_path: Path) -> None:
    endpoint = free_tcp_endpoint()
    calibration = tmp_path / "rig.yaml"
    calibration.write_text("id: rig-a\nscale: 4\n")
    with LosslessReceiver(endpoint, heartbeat_s=0.1) as receiver:
        proc = spawn(
            "capture",
            "--source",
            sim_dataset,
            "--pub",
            endpoint,
            "--rate",
            "max",
            "--calibration",
            calibration,
        )
        got = until_finished(receiver)
    assert [b.seq for b in got] == [0] and got[0].calibration_id == "rig-a"
    assert unpack_frames(got[0].spikes_packed, got[0].geometry).shape == (137, 32, 48)
    assert exit_code(proc) == 0
    assert "finished: 1 bundles sent" in proc.log_path.read_text()


def test_node_replays_every_bundle_in_order(spawn) -> None:
    n = 6
    endpoint = free_tcp_endpoint()
    with LosslessReceiver(endpoint, heartbeat_s=0.1) as receiver:
        # The node may start first: it reads nothing before the receiver's first credit.
        proc = spawn("capture", "--source", SIM.format(n=n), "--pub", endpoint, "--rate", "max")
        got = until_finished(receiver)
        counters = receiver.producer.status.counters
    assert [b.seq for b in got] == list(range(n))  # all, in order, from 0: no slow-joiner loss
    assert all(isinstance(b, Bundle) and b.source_id.startswith("sim:pan") for b in got)
    assert counters["sent"] == n and counters["acked"] == n
    assert exit_code(proc) == 0


def test_node_stops_on_sigterm_and_says_so(spawn) -> None:
    endpoint = free_tcp_endpoint()
    with LosslessReceiver(endpoint, heartbeat_s=0.1) as receiver:
        proc = spawn("capture", "--source", "sim:pan?size=16x24", "--pub", endpoint, "--rate", "max")
        first = None
        deadline = time.monotonic() + WAIT_S
        while first is None and time.monotonic() < deadline:
            first = receiver.recv(0.1)
        assert first is not None and first.seq == 0
        proc.send_signal(signal.SIGTERM)  # an endless source, blocked on our credit window
        assert exit_code(proc) == 0
        while receiver.producer.state != "stopping" and time.monotonic() < deadline:
            receiver.recv(0.1)
        assert receiver.producer.state == "stopping"
    assert "stopping:" in proc.log_path.read_text()


def test_node_under_the_latest_policy_publishes_then_finishes(spawn) -> None:
    n = 5
    endpoint = free_tcp_endpoint()
    with LatestSubscriber(endpoint) as subscriber:
        proc = spawn(
            "capture", "--source", SIM.format(n=n), "--pub", endpoint, "--rate", "max", "--policy", "latest"
        )
        got = until_finished(subscriber)
    seqs = [b.seq for b in got]
    assert seqs and seqs == sorted(set(seqs)) and seqs[-1] <= n - 1  # newest wins, never out of order
    assert exit_code(proc) == 0


def test_a_capture_node_without_a_consumer_says_what_it_waits_for(spawn) -> None:
    endpoint = free_tcp_endpoint()
    proc = spawn("capture", "--source", "sim:pan?size=16x24", "--pub", endpoint, "--rate", "max")
    expected = (
        f"capture: waiting for a consumer of bundles on {endpoint} (no consumer has asked yet), for 5 s now"
    )
    deadline = time.monotonic() + WAIT_S + 5
    while expected not in proc.log_path.read_text() and time.monotonic() < deadline:
        assert proc.poll() is None, proc.log_path.read_text()
        time.sleep(0.1)  # polling a file another process writes, not synchronisation
    assert expected in proc.log_path.read_text()
    proc.send_signal(signal.SIGTERM)
    assert exit_code(proc) == 0


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--source", "sim:cube"], ["error:", "sim:cube", "pan"]),
        (["--source", "sample", "--pub", "tcp://0.0.0.0:5999"], ["error:", "loopback"]),
        (["--source", "sample", "--rate", "fast"], ["--rate", "realtime, max or a speed factor"]),
    ],
)
def test_command_errors_are_one_line(cli, args: list[str], words: list[str]) -> None:
    result = cli("capture", *args, timeout=WAIT_S)
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr
