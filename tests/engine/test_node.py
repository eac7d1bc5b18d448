"""engine/node.py: the pure bundle -> result step, and the node as a real process on real sockets.

The engine runs as ``python -m spikereveal.tools.cli engine ...`` between a producer and a
consumer that live in this test process (``stream.transport`` classes, or a raw ROUTER socket to
send what no well-behaved producer would). Every wait is bounded; every process is terminated
(then killed) in the fixture's teardown.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

from spikereveal.capture.node import bundle_from_capture
from spikereveal.capture.sources import open_source
from spikereveal.engine.deblur import SDMDeblurrer, make_deblurrer, to_uint8
from spikereveal.engine.node import (
    EngineNodeConfig,
    PacedDeblurrer,
    check_bundle_sizes,
    process_bundle,
)
from spikereveal.engine.windows import exposure_times
from spikereveal.stream.display import DisplayConfig, DisplayNode
from spikereveal.stream.protocol import Bundle, Credit, Result, Status, decode, encode
from spikereveal.stream.spikes import SpikeGeometry, pack_frames
from spikereveal.stream.transport import (
    LatestPublisher,
    LatestSubscriber,
    LosslessReceiver,
    LosslessSender,
    StopFlag,
    attach,
    free_tcp_endpoint,
    make_socket,
)
from tests.conftest import stop_processes
from tests.stream.channel_harness import bind_retrying

pytestmark = pytest.mark.timeout(60)  # every wait below is bounded far lower; this catches a bug

WAIT_S = 20.0  # generous bound for a process start on a loaded 2-core machine; never a sleep
GEOMETRY = SpikeGeometry(16, 24, flip=False)


def make_bundle(
    seq: int, *, frames: int = 41, exposure: tuple[int, int] = (10, 30), scale: int = 4, rgb_t_ns: int = 0
) -> Bundle:
    """A small random bundle (16x24 spikes, blur ``scale`` x larger); cheap to deblur with SDM.

    Its stamps are fixed, so the same ``seq`` made twice is the same capture (as a redelivery is).
    """
    rng = np.random.default_rng(seq)
    spikes = (rng.random((frames, 16, 24)) < 0.3).astype(np.uint8)
    return Bundle(
        seq=seq,
        source_id="test",
        blur=rng.integers(0, 256, (16 * scale, 24 * scale, 3), dtype=np.uint8),
        spikes_packed=pack_frames(spikes, GEOMETRY),
        geometry=GEOMETRY,
        exposure=exposure,
        rgb_t_ns=rgb_t_ns,
        stamps=(("capture.read", 1), ("capture.send", 2)),
    )


@pytest.fixture(scope="module")
def sim_bundle() -> tuple[Bundle, np.ndarray]:
    """A real bundle of the simulated camera (16x24 spikes, 64x96 blur) and its upright spikes."""
    source = open_source("sim:pan?size=16x24&count=1")
    (capture,) = list(source)
    return bundle_from_capture(capture, source.source_id), capture.sample.spikes


def engine(spawn, sub: str, pub: str, *extra: object) -> subprocess.Popen:
    return spawn("engine", "--sub", sub, "--pub", pub, *extra)


def exit_code(proc: subprocess.Popen) -> int:
    try:
        return proc.wait(timeout=WAIT_S)
    except subprocess.TimeoutExpired:
        raise AssertionError(f"node still running after {WAIT_S} s:\n{proc.log_path.read_text()}") from None


class Consumer(threading.Thread):
    """The display's place: collects results on its own thread until the engine says "finished"."""

    def __init__(self, endpoint: str, policy: str = "lossless") -> None:
        super().__init__(daemon=True)
        self.endpoint, self.policy = endpoint, policy
        self.results: list[Result] = []
        self.state: str | None = None
        self.counters: dict = {}
        self.ready = threading.Event()
        self.stop = threading.Event()

    def run(self) -> None:
        cls = LosslessReceiver if self.policy == "lossless" else LatestSubscriber
        options = {"heartbeat_s": 0.1} if self.policy == "lossless" else {}
        with cls(self.endpoint, node="display", **options) as receiver:
            self.ready.set()
            deadline = time.monotonic() + 3 * WAIT_S
            while not self.stop.is_set() and time.monotonic() < deadline:
                msg = receiver.recv(0.05)
                if msg is not None:
                    self.results.append(msg)
                    continue
                producer = receiver.producer
                if producer is not None and producer.status is not None:
                    self.state, self.counters = producer.state, dict(producer.status.counters)
                    if producer.state == "finished":
                        return

    def finish(self) -> None:
        self.join(2 * WAIT_S)
        assert not self.is_alive(), "the consumer never saw the engine finish"


def send_all(sender: LosslessSender, bundles: list[Bundle]) -> None:
    for bundle in bundles:
        assert sender.send(bundle, timeout_s=WAIT_S), f"bundle {bundle.seq} not taken"


# -- process_bundle -----------------------------------------------------------------------------


def test_process_bundle_with_sdm_matches_the_offline_deblurrer(sim_bundle) -> None:
    bundle, spikes = sim_bundle
    result = process_bundle(bundle, SDMDeblurrer(), 5, send_blur=True, recv_t_ns=10)
    times = exposure_times(*bundle.exposure, 5)
    assert result.spike_times == tuple(times) == (20, 44, 68, 92, 116)
    assert result.frames.shape == (5, 64, 96, 3) and result.frames.dtype == np.uint8
    np.testing.assert_array_equal(
        result.frames, SDMDeblurrer().sequence_uint8(bundle.blur, spikes, bundle.exposure, times)
    )
    reference = to_uint8(SDMDeblurrer().sequence(bundle.blur, spikes, bundle.exposure, times))
    assert int(np.abs(result.frames.astype(int) - reference.astype(int)).max()) <= 1  # engine/sdm.py
    assert result.blur is bundle.blur and result.seq == bundle.seq and result.source_id == bundle.source_id
    assert result.model == "sdm"
    assert [s for s, _ in result.stamps] == ["engine.recv", "engine.done", "engine.send"]
    assert result.stamps[0][1] == 10 and result.stamps[0][1] <= result.stamps[1][1] <= result.stamps[2][1]
    lean = process_bundle(bundle, SDMDeblurrer(), 1, send_blur=False, model="x", stamp_send=False)
    assert lean.blur is None and lean.k == 1 and lean.spike_times == (68,) and lean.model == "x"
    assert [s for s, _ in lean.stamps][-1] == "engine.done"


def test_process_bundle_on_a_decoded_read_only_bundle() -> None:
    bundle = make_bundle(3)
    wired = decode([bytes(f) for f in encode(bundle)])  # arrays are read-only views of the frames
    result = process_bundle(wired, SDMDeblurrer(), 3, send_blur=True)
    np.testing.assert_array_equal(result.frames, process_bundle(bundle, SDMDeblurrer(), 3).frames)
    assert decode([bytes(f) for f in encode(result)]).spike_times == (10, 20, 30)  # it goes on the wire


def test_process_bundle_with_the_paper_ldn(sim_bundle, paper_weights: Path) -> None:
    bundle, spikes = sim_bundle
    deblurrer = make_deblurrer("ldn", weights=paper_weights, threads=1)
    try:
        result = process_bundle(bundle, deblurrer, 3, send_blur=False)
        times = exposure_times(*bundle.exposure, 3)
        expected = to_uint8(deblurrer.sequence(bundle.blur, spikes, bundle.exposure, times))
    finally:
        deblurrer.close()
    assert result.frames.shape == (3, 64, 96, 3) and result.spike_times == (20, 68, 116)
    np.testing.assert_array_equal(result.frames, expected)
    assert result.model == "ldn"


def test_process_bundle_refuses_what_it_cannot_deblur() -> None:
    with pytest.raises(ValueError, match="outside|range"):
        # SDM's 9-frame window around spike frame 0 starts at -4.
        process_bundle(make_bundle(0, exposure=(0, 40)), SDMDeblurrer(), 5)
    with pytest.raises(ValueError, match="16x24 do not fit RGB 48x72"):
        process_bundle(make_bundle(0, scale=3), SDMDeblurrer(), 5)
    check_bundle_sizes(make_bundle(0))
    with pytest.raises(ValueError, match="output times"):
        process_bundle(make_bundle(0), SDMDeblurrer(), 0)


def test_backend_auto_is_the_default_and_labels_say_what_runs(tmp_path: Path, tiny_ldn_weights: Path) -> None:
    from spikereveal.engine.backends import BackendError, resolve_backend
    from spikereveal.engine.node import build_deblurrer

    config = EngineNodeConfig(weights=tiny_ldn_weights)
    assert (config.backend, config.device) == ("auto", "auto")
    chosen = resolve_backend("auto")[0]  # torch on this CPU-only machine
    assert config.model_label == f"ldn/{chosen}/{tiny_ldn_weights.name}"
    assert (
        EngineNodeConfig(weights=tmp_path / "w.pth", backend="onnxruntime").model_label
        == "ldn/onnxruntime/w.pth"
    )
    deblurrer = build_deblurrer(EngineNodeConfig(weights=tiny_ldn_weights, threads=1))
    try:
        assert deblurrer.backend.name == chosen
    finally:
        deblurrer.close()
    with pytest.raises(ValueError, match="backend: got 'tpu'"):
        EngineNodeConfig(backend="tpu")
    import torch

    if not torch.cuda.is_available():  # an explicit device that is not there: refused, no fallback
        with pytest.raises(BackendError, match="device 'cuda' asked for"):
            build_deblurrer(EngineNodeConfig(weights=tiny_ldn_weights, device="cuda"))


def test_config_checks_and_model_choice(tmp_path: Path) -> None:
    assert EngineNodeConfig().model_name == "sdm" and EngineNodeConfig().model_label == "sdm"
    with_weights = EngineNodeConfig(weights=tmp_path / "w.pth")
    assert with_weights.model_name == "ldn" and with_weights.model_label == "ldn/torch/w.pth"
    for bad in (
        {"policy": "fifo"},
        {"model": "edsr"},
        {"model": "sdm", "weights": tmp_path / "w.pth"},
        {"times": 0},
        {"times": 1000},
        {"threads": 0},
    ):
        with pytest.raises(ValueError):
            EngineNodeConfig(**bad)


def test_paced_deblurrer_is_stop_aware() -> None:
    stop = StopFlag()
    stop.set()
    slow = PacedDeblurrer(SDMDeblurrer(), min_period_s=3600.0, stop=stop)
    bundle = make_bundle(0)
    assert process_bundle(bundle, slow, 2).k == 2 and slow.name == "sdm"  # returns at once when stopped


# -- the node as a process ----------------------------------------------------------------------


def test_engine_serves_every_bundle_in_order_then_finishes(spawn) -> None:
    n = 8
    sub, pub = free_tcp_endpoint(), free_tcp_endpoint()
    consumer = Consumer(pub)
    consumer.start()
    with LosslessSender(sub, node="capture", heartbeat_s=0.1) as sender:
        proc = engine(spawn, sub, pub, "--times", 3)
        send_all(sender, [make_bundle(seq) for seq in range(n)])
        assert sender.flush(WAIT_S)
        sender.close(final_state="finished")
    consumer.finish()
    assert [r.seq for r in consumer.results] == list(range(n))
    assert all(r.k == 3 and r.blur is not None and r.model == "sdm" for r in consumer.results)
    stages = [s for s, _ in consumer.results[-1].stamps]
    assert stages == ["capture.read", "capture.send", "engine.recv", "engine.done", "engine.send"]
    assert consumer.state == "finished"
    assert consumer.counters["bundles_in"] == n and consumer.counters["results_out"] == n
    assert consumer.counters["errors"] == 0
    assert exit_code(proc) == 0
    assert f"finished: {n} bundles in, {n} results out" in proc.log_path.read_text()


def test_bad_messages_are_counted_and_the_next_good_bundle_is_served(spawn) -> None:
    sub, pub = free_tcp_endpoint(), free_tcp_endpoint()
    consumer = Consumer(pub)
    consumer.start()
    router = make_socket(zmq.Context.instance(), zmq.ROUTER)  # a producer that breaks every rule
    try:
        attach(router, sub, bind=True)
        proc = engine(spawn, sub, pub, "--no-send-blur")
        assert router.poll(int(WAIT_S * 1000)), "no credit from the engine"
        routing_id = router.recv_multipart()[0]
        numbers = iter(range(1, 100))

        def deliver(frames: list) -> None:
            envelope = b"SRL1" + b"12345678" + next(numbers).to_bytes(8, "little")
            router.send_multipart([routing_id, envelope, *frames])

        good = encode(make_bundle(5))
        router.send_multipart([routing_id, b"junk"])  # garbage: no envelope
        deliver([b"\xc1"])  # not msgpack
        deliver([msgpack.packb({"v": 1, "kind": "bundle"})])  # a header missing every field
        deliver([good[0], bytes(good[1])[:-1], good[2]])  # a buffer one byte short
        deliver(encode(make_bundle(1, exposure=(0, 40))))  # windows outside the spikes
        deliver(encode(make_bundle(2, scale=3)))  # spikes not 1/4 of the blur
        deliver(good)
        router.send_multipart(
            [routing_id, b"SRL1" + b"12345678" + bytes(8), *encode(Status.now("raw", "capture", "finished"))]
        )
        consumer.finish()
    finally:
        router.close(0)
    assert [r.seq for r in consumer.results] == [5] and consumer.results[0].blur is None
    assert consumer.counters["bad_in"] == 4 and consumer.counters["errors"] == 2
    assert consumer.counters["bundles_in"] == 3 and consumer.counters["results_out"] == 1
    assert exit_code(proc) == 0
    log = proc.log_path.read_text()
    assert "bundle 1 from 'test' skipped" in log and "do not fit RGB" in log


def test_a_restarted_engine_picks_up_the_stream(spawn) -> None:
    """The consumer pauses after 3 results (the last one not acknowledged yet, the next one queued
    for it), so the engine blocks holding bundles 2.. unacknowledged (lossless acknowledges a bundle
    only once its result is); killed there, its successor gets them again and the consumer, dropping
    what it has already seen as the display does, sees every seq once."""
    n = 10
    sub, pub = free_tcp_endpoint(), free_tcp_endpoint()
    bundles = [make_bundle(seq) for seq in range(n)]
    producer_done = threading.Event()
    sender = LosslessSender(sub, node="capture", heartbeat_s=0.1)

    def produce() -> None:  # the producer runs on its own thread; it owns `sender` from here
        try:
            send_all(sender, bundles)
            assert sender.flush(2 * WAIT_S)
            sender.close(final_state="finished")
        finally:
            producer_done.set()

    with LosslessReceiver(pub, node="display", heartbeat_s=0.1) as consumer:
        first = engine(spawn, sub, pub)
        producer = threading.Thread(target=produce, daemon=True)
        producer.start()
        seqs = []
        deadline = time.monotonic() + WAIT_S
        while len(seqs) < 3 and time.monotonic() < deadline:
            msg = consumer.recv(0.1)
            if msg is not None:
                seqs.append(msg.seq)
        assert seqs == [0, 1, 2]
        # Results 2 and 3 fill the consumer's window (2 taken, not acknowledged); the engine waits
        # to send 4: the bundles from 2 on stay unacknowledged, only 0 and 1 are done.
        stall = threading.Event()
        while sender.counters.acked < 2 and time.monotonic() < deadline:
            stall.wait(0.02)  # polls the producer's counter; the engine process does the work
        assert sender.counters.acked == 2, sender.counters
        first.kill()
        first.wait(WAIT_S)
        second = engine(spawn, sub, pub)
        again = 0
        while time.monotonic() < deadline + WAIT_S:
            msg = consumer.recv(0.1)
            if msg is not None:
                if msg.seq in seqs:
                    again += 1  # done again by the successor: the display drops it
                else:
                    seqs.append(msg.seq)
            elif consumer.producer.state == "finished":
                break
        producer.join(WAIT_S)
    assert producer_done.is_set()
    assert seqs == list(range(n)), seqs
    assert again >= 1  # result 2 at least: taken, not acknowledged when the engine died
    assert sender.counters.redelivered >= 1 and sender.counters.peers_joined == 2
    assert exit_code(second) == 0


def test_an_engine_that_outlives_its_stream_serves_the_next(spawn) -> None:
    sub, pub = free_tcp_endpoint(), free_tcp_endpoint()
    proc = engine(spawn, sub, pub, "--no-exit-on-finish", "--times", 1)
    with LosslessReceiver(pub, node="display", heartbeat_s=0.1) as consumer:
        seqs = []
        for stream in range(2):
            with bind_retrying(sub) as sender:
                send_all(sender, [make_bundle(seq) for seq in range(3)])
                deadline = time.monotonic() + WAIT_S
                while len(seqs) < 3 * (stream + 1) and time.monotonic() < deadline:
                    msg = consumer.recv(0.1)
                    if msg is not None:
                        seqs.append(msg.seq)
                    sender.service(0.0)
                # The consumer keeps reading: its next recv acknowledges the last result, and only
                # then does the engine acknowledge the last bundle.
                while not sender.flush(0.05) and time.monotonic() < deadline:
                    consumer.recv(0.0)
                assert sender.flush(0.0)
                sender.close(final_state="finished")
        # the engine notices each end of stream when it next goes idle: wait for the second one
        deadline = time.monotonic() + WAIT_S
        while proc.log_path.read_text().count("stream finished after") < 2 and time.monotonic() < deadline:
            consumer.recv(0.1)
        assert proc.log_path.read_text().count("stream finished after") == 2
        assert proc.poll() is None  # still serving after two finished streams
        proc.send_signal(signal.SIGTERM)
        assert exit_code(proc) == 0
    assert seqs == [0, 1, 2, 0, 1, 2]


def test_sigterm_stops_a_waiting_engine_with_exit_0(spawn) -> None:
    sub, pub = free_tcp_endpoint(), free_tcp_endpoint()
    with LosslessSender(sub, node="capture", heartbeat_s=0.1) as sender:
        proc = engine(spawn, sub, pub)
        assert sender.wait_for_credit(WAIT_S)  # the engine is up, inside its receive loop
        proc.send_signal(signal.SIGTERM)
        assert exit_code(proc) == 0
        deadline = time.monotonic() + WAIT_S
        while sender.consumer is not None and time.monotonic() < deadline:
            sender.service(0.05)
        assert sender.consumer is None  # it said "stopping" on the way out
    assert "stopping: 0 bundles in" in proc.log_path.read_text()


def test_slow_engine_under_the_live_policy_drops_and_stays_recent(spawn) -> None:
    """The engine takes >= 100 ms per bundle while bundles come every few ms: it must skip ahead."""
    sub, pub = free_tcp_endpoint(), free_tcp_endpoint()
    consumer = Consumer(pub, policy="latest")
    consumer.start()
    assert consumer.ready.wait(WAIT_S)
    # A deep publisher queue: every drop is the engine's own draining, none is ZeroMQ's.
    with LatestPublisher(sub, node="capture", sndhwm=10_000) as publisher:
        proc = engine(spawn, sub, pub, "--policy", "latest", "--min-period-ms", 100, "--times", 2)
        assert publisher.wait_for_subscriber(WAIT_S)
        seq = 0
        deadline = time.monotonic() + WAIT_S
        pace = threading.Event()
        while time.monotonic() < deadline:
            publisher.publish(make_bundle(seq))
            seq += 1
            got = [r.seq for r in consumer.results]
            if len(got) >= 3 and any(b - a > 1 for a, b in zip(got, got[1:], strict=False)):
                break  # the engine has skipped stale bundles
            pace.wait(0.005)  # a camera's frame period, not a synchronisation
        published = seq
        publisher.close(final_state="finished", timeout_s=WAIT_S)
    consumer.finish()
    got = [r.seq for r in consumer.results]
    print("live policy: published", published, "served", got)
    assert got == sorted(set(got)) and len(got) < published / 2, (got, published)
    assert got[-1] == published - 1  # the newest bundle is always served in the end
    assert consumer.counters["dropped_in"] > 0 and consumer.counters["missed_in"] == 0
    assert consumer.counters["bundles_in"] + consumer.counters["dropped_in"] == published
    assert exit_code(proc) == 0


def _credit_from(router: zmq.Socket, other_than: str | None = None) -> tuple[bytes, str]:
    """The routing id and session of the next engine credit whose session is not ``other_than``."""
    deadline = time.monotonic() + WAIT_S
    while True:
        remaining = deadline - time.monotonic()
        assert remaining > 0 and router.poll(int(remaining * 1000)), "no credit from an engine"
        routing_id, *frames = router.recv_multipart()
        msg = decode(frames)
        if isinstance(msg, Credit) and msg.session != other_than:
            return routing_id, msg.session


def test_a_result_sent_again_by_a_restarted_engine_is_shown_once(spawn, tmp_path: Path) -> None:
    """Exactly once to the user. The engine is SIGKILLed after its results reached the display; the
    producer (a raw ROUTER whose acknowledgements were lost in the kill: the at-least-once case)
    delivers bundles 3 and 4 again to the restarted engine, which sends results 3 and 4 again.
    The display node shows every seq once and counts the two it discarded."""
    n, k = 10, 1
    sub, pub = free_tcp_endpoint(), free_tcp_endpoint()
    pngs, summary_path = tmp_path / "png", tmp_path / "s.json"
    config = DisplayConfig(
        sub=pub, window=False, record=tmp_path / "v.mp4", png_dir=pngs, summary=summary_path, rgb_fps=10.0,
        warmup=0,
    )  # fmt: skip
    display = DisplayNode(config, StopFlag())
    runs = []
    shown = threading.Thread(target=lambda: runs.append(display.run()), daemon=True)
    router = make_socket(zmq.Context.instance(), zmq.ROUTER)
    numbers = iter(range(1, 100))
    session = b"capture1"

    def deliver(routing_id: bytes, seqs: range) -> None:
        for seq in seqs:
            envelope = b"SRL1" + session + next(numbers).to_bytes(8, "little")
            router.send_multipart([routing_id, envelope, *encode(make_bundle(seq))])

    try:
        attach(router, sub, bind=True)
        shown.start()
        first = engine(spawn, sub, pub, "--times", k)
        first_id, first_session = _credit_from(router)
        deliver(first_id, range(5))
        deadline = time.monotonic() + WAIT_S
        while display.run_info.results < 5 and time.monotonic() < deadline:
            shown.join(0.05)  # the display thread does the work; this only bounds the wait
        assert display.run_info.results == 5, first.log_path.read_text()
        first.kill()  # SIGKILL: no "stopping", nothing flushed
        first.wait(WAIT_S)
        second = engine(spawn, sub, pub, "--times", k)
        second_id, _ = _credit_from(router, other_than=first_session)
        deliver(second_id, range(3, n))  # 3 and 4 again, then the rest
        finished = Status.now("capture", "capture", "finished")
        router.send_multipart([second_id, b"SRL1" + session + bytes(8), *encode(finished)])
        shown.join(2 * WAIT_S)
        assert not shown.is_alive(), second.log_path.read_text()
        assert exit_code(second) == 0
    finally:
        display.stop.set()
        shown.join(WAIT_S)
        router.close(0)
    (run,) = runs
    seqs = sorted(int(path.stem.split("_")[0]) for path in pngs.glob("*.png"))
    assert seqs == list(range(n))  # every seq, once
    assert run.exit_reason == "finished" and run.results == n
    summary = json.loads(summary_path.read_text())
    assert summary["duplicates"] == 2 and summary["counters"]["duplicates"] >= 2
    assert summary["frames_written"] == n * k


def test_a_standalone_engine_says_what_it_waits_for(tmp_path: Path) -> None:
    """No producer, no consumer, default log level (no -v): the user still sees why nothing happens."""
    sub, pub = free_tcp_endpoint(), free_tcp_endpoint()
    log_path = tmp_path / "engine.log"
    with log_path.open("w") as log_file:
        proc = subprocess.Popen(
            [sys.executable, "-m", "spikereveal.tools.cli", "engine", "--sub", sub, "--pub", pub],
            stdout=subprocess.DEVNULL,
            stderr=log_file,
        )
    expected = f"engine: waiting for bundles from {sub} (no producer heard yet), for 5 s now"
    try:
        deadline = time.monotonic() + WAIT_S + 5
        while expected not in log_path.read_text() and time.monotonic() < deadline:
            assert proc.poll() is None, log_path.read_text()
            time.sleep(0.1)  # polling a file another process writes, not synchronisation
        assert expected in log_path.read_text()
    finally:
        stop_processes([proc])
    assert "Traceback" not in log_path.read_text()


def test_an_engine_slower_than_real_time_says_so_once(spawn) -> None:
    """Bundles 50 ms apart in sensor time (20/s) into an engine that takes 200 ms per bundle."""
    n = 10  # 2 s of work for 0.5 s of stream: 1.5 s behind, past the 1 s the check allows
    sub, pub = free_tcp_endpoint(), free_tcp_endpoint()
    consumer = Consumer(pub)
    consumer.start()
    with LosslessSender(sub, node="capture", heartbeat_s=0.1) as sender:
        proc = engine(spawn, sub, pub, "--times", 1, "--min-period-ms", 200)
        send_all(sender, [make_bundle(seq, rgb_t_ns=seq * 50_000_000) for seq in range(n)])
        assert sender.flush(WAIT_S)
        sender.close(final_state="finished")
    consumer.finish()
    assert [r.seq for r in consumer.results] == list(range(n))
    assert exit_code(proc) == 0
    log = proc.log_path.read_text()
    assert log.count("falling behind real time") == 1, log
    (line,) = [line for line in log.splitlines() if "falling behind real time" in line]
    assert " WARNING: engine: " in line  # shown at the CLI's default level
    assert "results/s against 20.0 bundles/s coming in" in line and "lossless" in line
    own = float(line.split("falling behind real time: ")[1].split(" ")[0])
    assert 0 < own < 6  # at most 5 per second of work


@pytest.mark.parametrize(
    ("args", "words"),
    [
        (["--model", "ldn"], ["error:", "make default-weights"]),  # no --weights, no default built
        (["--pub", "tcp://0.0.0.0:5999"], ["error:", "loopback"]),
        (["--weights", "/nonexistent/w.pth"], ["error:", "w.pth"]),
        (["--times", "0"], ["--times"]),
    ],
)
def test_command_errors_are_one_line(cli, args: list[str], words: list[str]) -> None:
    result = cli("engine", *args, timeout=WAIT_S)
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    for word in words:
        assert word in result.stderr


def test_sdm_from_packed_bytes_equals_the_unpacked_path(sim_bundle) -> None:
    """The SDM engine path decodes TFPs straight from the packed bytes: same frames, same density."""
    import spikereveal.engine.node as node_module
    from spikereveal.engine.cpu_decode import AVAILABLE

    if not AVAILABLE:
        pytest.skip("numba is not installed")
    bundle, _ = sim_bundle
    fast = process_bundle(bundle, SDMDeblurrer(), 5, recv_t_ns=10)
    try:
        node_module.CPU_DECODE = False  # the unpack_frames + engine/tfp.py path
        slow = process_bundle(bundle, SDMDeblurrer(), 5, recv_t_ns=10)
    finally:
        node_module.CPU_DECODE = True
    np.testing.assert_array_equal(fast.frames, slow.frames)
    assert fast.spike_density == slow.spike_density > 0
