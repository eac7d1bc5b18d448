"""stream/pool.py and the pool side of stream/lossless.py: one stream dealt to several real consumer
processes (tests/stream/pool_harness.py), results merged back in order.

The stand-in engines acknowledge end to end (a bundle only once the display acknowledged its
result), so the display keeps reading while the capture flushes (:func:`_flush`): a display that
stops reading never acknowledges its last results, and the capture rightly keeps them in flight.

Every wait is bounded; the children are killed at teardown.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from spikereveal.stream.endpoint import Receiver
from spikereveal.stream.lossless import LosslessReceiver, LosslessSender
from spikereveal.stream.pool import PoolReceiver, ReorderBuffer, open_results_receiver
from spikereveal.stream.sockets import free_tcp_endpoint
from tests.stream.channel_harness import WAIT_S, Reports, bundle

pytestmark = pytest.mark.timeout(60)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def relays(reports: Reports) -> Iterator[Callable[..., tuple[subprocess.Popen, str]]]:
    """Start stand-in engines: ``start(sub, node, slow_ms, hang_after)`` -> (process, its pub)."""
    procs: list[subprocess.Popen] = []

    def start(sub: str, node: str, slow_ms: int = 0, hang_after: int = 0) -> tuple[subprocess.Popen, str]:
        pub = free_tcp_endpoint()
        args = [sub, pub, node, str(slow_ms), str(hang_after), reports.endpoint]
        proc = subprocess.Popen([sys.executable, "-m", "tests.stream.pool_harness", *args], cwd=REPO)
        procs.append(proc)
        return proc, pub

    yield start
    for proc in procs:
        proc.kill()
        proc.wait(WAIT_S)


def _collect(pool: PoolReceiver, n: int, sender: LosslessSender, stop_at: float) -> list[int]:
    got: list[int] = []
    while len(got) < n and time.monotonic() < stop_at:
        sender.service(0.0)
        msg = pool.recv(timeout_s=0.05)
        if msg is not None:
            got.append(msg.seq)
    return got


def _flush(sender: LosslessSender, *displays: Receiver) -> bool:
    """``sender.flush`` while the displays keep reading (a recv acknowledges what came before)."""
    deadline = time.monotonic() + WAIT_S
    while not sender.flush(0.02):
        for display in displays:
            display.recv(timeout_s=0.0)
        if time.monotonic() > deadline:
            return False
    return True


def _stream(sender: LosslessSender, pool: PoolReceiver, n: int, on_seq=None) -> list[int]:
    """Send ``n`` bundles while reading the pool's output; the merged seqs, as handed out."""
    got: list[int] = []
    deadline = time.monotonic() + 4 * WAIT_S
    for seq in range(n):
        if on_seq is not None:
            on_seq(seq)
        while not sender.send(bundle(seq), timeout_s=0.02):
            msg = pool.recv(timeout_s=0.0)
            if msg is not None:
                got.append(msg.seq)
            assert time.monotonic() < deadline, f"stuck at bundle {seq}; got {len(got)}"
        msg = pool.recv(timeout_s=0.0)
        if msg is not None:
            got.append(msg.seq)
    return got + _collect(pool, n - len(got), sender, deadline)


@pytest.mark.parametrize("engines", [2, 3])
def test_bundles_through_several_engine_processes_arrive_all_once_in_order(
    relays, reports: Reports, engines: int
) -> None:
    n = 60
    with LosslessSender("tcp://127.0.0.1:*", node="capture", heartbeat_s=0.1) as sender:
        pubs = [relays(sender.endpoint, f"engine-{i}", slow_ms=10)[1] for i in range(engines)]
        pool = open_results_receiver("lossless", ",".join(pubs), node="display", role="display")
        assert isinstance(pool, PoolReceiver)
        with pool:
            got = _stream(sender, pool, n)
            assert _flush(sender, pool)
        per_node = Counter(r["node"] for r in _drain(reports) if "seq" in r)
    assert got == list(range(n))  # all, once, in order
    assert len(per_node) == engines and all(count > 0 for count in per_node.values())  # all worked
    assert sender.counters.peers_joined == engines


def test_killing_an_engine_mid_stream_loses_nothing(relays, reports: Reports) -> None:
    n = 40
    with LosslessSender("tcp://127.0.0.1:*", node="capture", heartbeat_s=0.1, peer_timeout_s=1.0) as sender:
        doomed, pub_a = relays(sender.endpoint, "engine-a", slow_ms=5, hang_after=3)
        _, pub_b = relays(sender.endpoint, "engine-b", slow_ms=5)
        pool = open_results_receiver("lossless", f"{pub_a},{pub_b}", node="display", role="display")
        killed = []

        def kill_when_hanging(seq: int) -> None:
            if not killed and seq == 20:
                reports.until(lambda r: r.get("event") == "hanging")
                doomed.kill()  # it held its window: those bundles must go to engine-b
                doomed.wait(WAIT_S)
                killed.append(seq)

        with pool:
            got = _stream(sender, pool, n, on_seq=kill_when_hanging)
            assert _flush(sender, pool)
    assert killed and sender.counters.redelivered >= 1
    assert sorted(set(got)) == list(range(n))  # nothing lost
    assert got == list(range(n))  # in order, once: duplicates dropped


def test_a_joining_engine_gets_work_at_once(relays, reports: Reports) -> None:
    n = 40
    with LosslessSender("tcp://127.0.0.1:*", node="capture", heartbeat_s=0.1) as sender:
        _, pub_a = relays(sender.endpoint, "engine-a", slow_ms=20)
        outputs = [LosslessReceiver(pub_a, node="display", role="display")]
        try:

            def send(seq: int) -> None:
                deadline = time.monotonic() + WAIT_S
                while not sender.send(bundle(seq), timeout_s=0.02):
                    for out in outputs:
                        out.recv(0.0)
                    assert time.monotonic() < deadline

            for seq in range(10):  # the stream runs with one engine
                send(seq)
            _, pub_b = relays(sender.endpoint, "engine-b", slow_ms=20)  # joins mid-stream
            outputs.append(LosslessReceiver(pub_b, node="display", role="display"))
            # Its process takes a while to start on a loaded machine: "at once" counts from its first
            # credit and its display's link (connected before it bound: up to a 1 s reconnect backoff),
            # since an engine takes more than its window only as the display acknowledges its results.
            deadline = time.monotonic() + WAIT_S
            while "engine-b" not in sender.dealt() or outputs[1].producer is None:
                sender.service(0.02)
                for out in outputs:
                    out.recv(0.0)
                assert time.monotonic() < deadline, "engine-b never sent credit"
            for seq in range(10, n):
                send(seq)
            deadline = time.monotonic() + WAIT_S
            while not sender.flush(0.02):
                for out in outputs:
                    out.recv(0.0)
                assert time.monotonic() < deadline
        finally:
            for out in outputs:
                out.close()
    nodes = [r["node"] for r in _drain(reports) if "seq" in r and r["seq"] >= 10]
    assert nodes.count("engine-b") >= 5  # the newcomer took a share of what came after it joined
    assert sorted(r for r in Counter(nodes)) == ["engine-a", "engine-b"]


def _drain(reports: Reports) -> list[dict]:
    out = []
    while reports.sock.poll(200):
        out.append(reports.sock.recv_json())
    return out


def test_sender_deals_by_credit_to_the_consumer_with_room() -> None:
    with (
        LosslessSender("inproc://deal", bind=True) as sender,
        LosslessReceiver("inproc://deal", node="a", window=2) as a,
        LosslessReceiver("inproc://deal", node="b", window=2) as b,
    ):
        for seq in range(4):  # two windows of two: all four go out without anyone reading
            assert sender.send(bundle(seq), timeout_s=WAIT_S)
        assert sorted(sender.dealt().values()) == [2, 2]
        assert not sender.send(bundle(4), timeout_s=0.2)  # both full: backpressure
        seqs = {a.recv(WAIT_S).seq, b.recv(WAIT_S).seq}
        assert seqs <= {0, 1, 2, 3} and len(seqs) == 2


def test_a_stopping_consumer_gives_its_messages_to_the_other() -> None:
    with (
        LosslessSender("inproc://give", bind=True) as sender,
        LosslessReceiver("inproc://give", node="a", window=2) as a,
        LosslessReceiver("inproc://give", node="b", window=2) as b,
    ):
        for seq in range(4):
            assert sender.send(bundle(seq), timeout_s=WAIT_S)
        held_by_a = sender.dealt()["a"]
        first = a.recv(WAIT_S).seq
        a.close(acknowledge=False)  # stops with everything unacknowledged
        got = []
        deadline = time.monotonic() + WAIT_S
        while len(got) < 4 and time.monotonic() < deadline:
            sender.service(0.01)
            msg = b.recv(0.05)
            if msg is not None:
                got.append(msg.seq)
        assert sorted(got) == [0, 1, 2, 3] and first in got
        assert sender.counters.redelivered == held_by_a
        b.recv(0.0)  # acknowledges the last one
        assert sender.flush(WAIT_S)


def test_reorder_buffer_puts_results_in_order_and_counts() -> None:
    buf = ReorderBuffer(max_held=8, start_after=2)
    out = []
    for seq in (1, 0, 3, 2, 2, 5, 4):
        out += [m.seq for m in buf.push(bundle(seq))]
    assert out == [0, 1, 2, 3, 4, 5]
    c = buf.counters
    assert c.duplicates == 1 and c.reordered == 2 and c.held_max == 2 and c.gaps == 0


def test_reorder_buffer_is_bounded_and_counts_gaps() -> None:
    buf = ReorderBuffer(max_held=3)
    out = [m.seq for seq in (0, 2, 3, 4, 5) for m in buf.push(bundle(seq))]
    assert out == [0, 2, 3, 4, 5][: len(out)] and buf.held <= 3
    assert buf.counters.gaps == 1  # 1 never came: given up when the bound was passed
    late = [m.seq for m in buf.push(bundle(1))]
    assert late == [1] and buf.counters.late == 1  # lossless: still handed out, counted
    assert [m.seq for m in buf.flush()] == []


def test_latest_wins_drops_late_results() -> None:
    buf = ReorderBuffer(latest=True)
    out = [m.seq for seq in (0, 2, 1, 3, 3) for m in buf.push(bundle(seq))]
    assert out == [0, 2, 3]
    assert buf.counters.late == 1 and buf.counters.duplicates == 1
