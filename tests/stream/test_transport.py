"""stream/transport.py: endpoints, stopping, and both policies between real processes on 127.0.0.1.

Peers run as child processes of this very file (``python test_transport.py ROLE ...``, see the
bottom) and report what they saw over a PUSH socket; every wait is a poll with a generous bound,
and every child is terminated (then killed) in the fixture's teardown.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator

import msgpack
import numpy as np
import pytest
import zmq

from spikereveal.capture.dat import SpikeGeometry
from spikereveal.stream.protocol import Bundle, Status, encode
from spikereveal.stream.transport import (
    POLICIES,
    ChannelCounters,
    EndpointError,
    LatestPublisher,
    LatestSubscriber,
    LosslessReceiver,
    LosslessSender,
    SocketConfig,
    StopFlag,
    attach,
    check_bind_endpoint,
    flush_patiently,
    free_tcp_endpoint,
    make_socket,
    open_receiver,
    open_sender,
    recv_message,
)

pytestmark = pytest.mark.timeout(60)  # every wait below is bounded far lower; this catches a bug

GEOMETRY = SpikeGeometry(8, 16)
WAIT_S = 10.0  # generous bound for anything a loaded 2-core machine must do; never a sleep


def bundle(seq: int, source: str = "test", blur_bytes: int = 4 * 6 * 3) -> Bundle:
    h = max(1, blur_bytes // (512 * 3)) if blur_bytes > 4096 else 4
    w = max(1, blur_bytes // (h * 3))
    return Bundle(
        seq=seq,
        source_id=source,
        blur=np.full((h, w, 3), seq % 256, np.uint8),
        spikes_packed=np.full((3, GEOMETRY.frame_bytes), seq % 256, np.uint8),
        geometry=GEOMETRY,
        exposure=(0, 2),
        stamps=(("send", time.monotonic_ns()),),
    )


# -- child processes and their reports ------------------------------------------------------------


class Reports:
    """The PULL end the children report to (one JSON object per message)."""

    def __init__(self) -> None:
        self.sock = zmq.Context.instance().socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()

    def next(self, timeout_s: float = WAIT_S) -> dict:
        if not self.sock.poll(int(timeout_s * 1000)):
            raise AssertionError(f"no report from a child within {timeout_s} s")
        return self.sock.recv_json()

    def until(self, predicate: Callable[[dict], bool], timeout_s: float = WAIT_S) -> list[dict]:
        """All reports up to and including the first one that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout_s
        seen = []
        while True:
            seen.append(self.next(max(0.01, deadline - time.monotonic())))
            if predicate(seen[-1]):
                return seen

    def close(self) -> None:
        self.sock.close(0)


@pytest.fixture
def reports() -> Iterator[Reports]:
    r = Reports()
    yield r
    r.close()


@pytest.fixture
def spawn_child() -> Iterator[Callable[..., subprocess.Popen]]:
    procs: list[subprocess.Popen] = []

    def start(*args: object) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, __file__, *map(str, args)])
        procs.append(proc)
        return proc

    yield start
    for proc in procs:
        if proc.poll() is None:
            proc.terminate()
    for proc in procs:
        try:
            proc.wait(timeout=3)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=3)


# -- endpoints and sockets ------------------------------------------------------------------------


def test_bind_endpoint_policy(caplog: pytest.LogCaptureFixture) -> None:
    for ok in (
        "tcp://127.0.0.1:5555",
        "tcp://localhost:1",
        "tcp://127.0.0.2:*",
        "tcp://[::1]:80",
        "ipc:///tmp/x",
        "inproc://a",
    ):
        assert check_bind_endpoint(ok) == ok
    for remote in ("tcp://*:5555", "tcp://0.0.0.0:5555", "tcp://eth0:5555", "tcp://192.168.1.4:5555"):
        with pytest.raises(EndpointError, match="other hosts.*loopback"):
            check_bind_endpoint(remote)
    with caplog.at_level(logging.WARNING, logger="spikereveal.stream"):
        assert check_bind_endpoint("tcp://*:5555", allow_remote=True) == "tcp://*:5555"
    assert "beyond loopback" in caplog.text
    for bad, words in (
        ("udp://127.0.0.1:1", "not supported"),
        ("127.0.0.1:5555", "expected tcp://"),
        ("tcp://nohost", "HOST:PORT"),
    ):
        with pytest.raises(EndpointError, match=words):
            check_bind_endpoint(bad)


def test_free_endpoint_and_socket_options() -> None:
    ctx = zmq.Context.instance()
    config = SocketConfig(max_msg_bytes=12345, linger_ms=7, send_timeout_ms=11, recv_timeout_ms=13)
    sock = make_socket(ctx, zmq.PULL, config)
    try:
        assert sock.getsockopt(zmq.MAXMSGSIZE) == 12345
        assert sock.getsockopt(zmq.LINGER) == 7
        assert sock.getsockopt(zmq.SNDTIMEO) == 11 and sock.getsockopt(zmq.RCVTIMEO) == 13
        endpoint = free_tcp_endpoint()
        assert attach(sock, endpoint, bind=True) == endpoint
        with pytest.raises(EndpointError, match="cannot bind"):
            other = make_socket(ctx, zmq.PULL, config)
            try:
                attach(other, endpoint, bind=True)
            finally:
                other.close(0)
    finally:
        sock.close(0)
    picked = make_socket(ctx, zmq.PULL)
    try:
        resolved = attach(picked, "tcp://127.0.0.1:*", bind=True)
        assert resolved.startswith("tcp://127.0.0.1:") and not resolved.endswith("*")
    finally:
        picked.close(0)


def test_maxmsgsize_drops_an_oversized_frame_and_later_messages_arrive() -> None:
    ctx = zmq.Context.instance()
    pull = make_socket(ctx, zmq.PULL, SocketConfig(max_msg_bytes=1000))
    push = make_socket(ctx, zmq.PUSH, SocketConfig(reconnect_ivl_ms=20))
    try:
        endpoint = attach(pull, "tcp://127.0.0.1:*", bind=True)
        attach(push, endpoint, bind=False)
        counters = ChannelCounters()
        push.send_multipart(encode(bundle(0, blur_bytes=4000)))  # one frame above the cap
        deadline = time.monotonic() + WAIT_S
        seq, msg = 0, None
        while msg is None:  # libzmq drops the connection; the sender reconnects by itself
            assert time.monotonic() < deadline
            seq += 1
            push.send_multipart(encode(bundle(seq)), zmq.NOBLOCK)
            msg = recv_message(pull, timeout_s=0.2, counters=counters)
        assert msg.seq >= 1  # never the oversized one
    finally:
        push.close(0)
        pull.close(0)


# -- stopping -------------------------------------------------------------------------------------


def test_stop_flag_handles_signals_and_restores_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = StopFlag()
    with stop.handle_signals():
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(WAIT_S) and stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):  # a second signal while stopping forces the way out
            os.kill(os.getpid(), signal.SIGTERM)
            stop.wait(WAIT_S)
    assert signal.getsignal(signal.SIGTERM) is before


def test_waits_return_promptly_when_stopped() -> None:
    stop = StopFlag()
    stop.set()
    with LosslessReceiver("inproc://stopped", bind=True) as receiver:
        t0 = time.monotonic()
        assert receiver.recv(timeout_s=None, stop=stop) is None
        assert time.monotonic() - t0 < WAIT_S


def test_sigterm_stops_a_node_blocked_in_recv(spawn_child, reports: Reports) -> None:
    with LosslessSender("tcp://127.0.0.1:*", node="capture") as sender:
        child = spawn_child("wait_forever", sender.endpoint, reports.endpoint)
        assert reports.next()["event"] == "ready"
        assert sender.wait_for_credit(WAIT_S)  # the child is inside recv(timeout=None)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=WAIT_S) == 0
        assert reports.next()["event"] == "stopped"


# -- lossless -------------------------------------------------------------------------------------


def test_lossless_replay_all_in_order_between_processes(spawn_child, reports: Reports) -> None:
    n = 40
    with LosslessSender("tcp://127.0.0.1:*", node="capture", heartbeat_s=0.2) as sender:
        spawn_child("lossless_consumer", sender.endpoint, reports.endpoint, "engine", n, 0, 0)
        peak = 0
        for seq in range(n):  # starts before the consumer exists: send waits for its credit
            assert sender.send(bundle(seq), timeout_s=WAIT_S)
            peak = max(peak, sender.in_flight)
        assert sender.flush(WAIT_S)
        got = [r["seq"] for r in reports.until(lambda r: r["event"] == "done")[:-1]]
    assert got == list(range(n))  # first seq 0: no slow-joiner loss
    assert peak <= 2  # backpressure: never more than the credit window in flight
    assert sender.counters.sent == n and sender.counters.acked == n and sender.counters.bad == 0


def test_lossless_backpressure_waits_for_the_consumer() -> None:
    with (
        LosslessSender("inproc://bp", bind=True) as sender,
        LosslessReceiver("inproc://bp", window=2) as receiver,
    ):
        assert sender.send(bundle(0), timeout_s=WAIT_S)
        assert sender.send(bundle(1), timeout_s=WAIT_S)
        assert not sender.send(bundle(2), timeout_s=0.2)  # window full: the reader must wait
        assert receiver.recv(WAIT_S).seq == 0
        assert receiver.recv(WAIT_S).seq == 1  # acknowledges 0: one slot opens
        assert sender.send(bundle(2), timeout_s=WAIT_S)
        assert not sender.send(bundle(3), timeout_s=0.2)
        assert receiver.recv(WAIT_S).seq == 2


def test_lossless_restarted_consumer_gets_the_unacknowledged_again(spawn_child, reports: Reports) -> None:
    n = 12
    with LosslessSender("tcp://127.0.0.1:*", node="capture", heartbeat_s=0.2) as sender:
        first = spawn_child("lossless_consumer", sender.endpoint, reports.endpoint, "engine", n, 0, 5)
        for seq in range(n):
            if seq == 6:  # the window (2) is full with 4 and 5: the first consumer hangs on 4
                hung = reports.until(lambda r: r["event"] == "hanging")
                first.kill()
                first.wait(WAIT_S)
                spawn_child("lossless_consumer", sender.endpoint, reports.endpoint, "engine", n, 0, 0)
            assert sender.send(bundle(seq), timeout_s=WAIT_S)
        assert sender.flush(WAIT_S)
        second = reports.until(lambda r: r["event"] == "done" or r.get("seq") == n - 1)
    first_seqs = [r["seq"] for r in hung if "seq" in r]
    second_seqs = [r["seq"] for r in second if "seq" in r]
    assert first_seqs == [0, 1, 2, 3, 4]
    # 4 was being processed (not acknowledged), so the restarted consumer starts at or before it.
    assert second_seqs[0] <= 4 and second_seqs == list(range(second_seqs[0], n))
    assert sender.counters.redelivered >= 1 and sender.counters.peers_joined == 2


def test_lossless_consumer_survives_a_producer_restart(spawn_child, reports: Reports) -> None:
    endpoint = free_tcp_endpoint()
    spawn_child("lossless_consumer", endpoint, reports.endpoint, "engine", 6, 0, 0)
    for run in ("first", "second"):
        with _bind_retrying(endpoint) as sender:
            for seq in range(3):
                assert sender.send(bundle(seq, source=run), timeout_s=WAIT_S)
            assert sender.flush(WAIT_S)
        # closing the sender is the producer going away; the consumer keeps running
    seen = [(r["source"], r["seq"]) for r in reports.until(lambda r: r["event"] == "done") if "seq" in r]
    assert seen == [("first", 0), ("first", 1), ("first", 2), ("second", 0), ("second", 1), ("second", 2)]


def _bind_retrying(endpoint: str) -> LosslessSender:
    """A sender on a fixed port; the previous socket on it is released asynchronously by libzmq."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            return LosslessSender(endpoint, node="capture", heartbeat_s=0.1)
        except EndpointError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def test_malformed_messages_are_counted_and_the_next_good_one_served(spawn_child, reports: Reports) -> None:
    ctx = zmq.Context.instance()
    router = make_socket(ctx, zmq.ROUTER)
    try:
        endpoint = attach(router, "tcp://127.0.0.1:*", bind=True)
        spawn_child("lossless_consumer", endpoint, reports.endpoint, "engine", 1, 0, 0)
        assert router.poll(int(WAIT_S * 1000))
        routing_id = router.recv_multipart()[0]  # the consumer's credit
        session = b"12345678"
        good = encode(bundle(0))
        envelope = b"SRL1" + session + (1).to_bytes(8, "little")
        for frames in (
            [b"junk"],  # bad envelope
            [envelope, b"\xc1"],  # not msgpack
            [envelope, msgpack.packb({"v": 9, "kind": "bundle"})],  # wrong version
            [envelope, good[0], good[1]],  # a buffer missing
            [envelope, good[0], bytes(good[1])[:-1], good[2]],  # a buffer one byte short
        ):
            router.send_multipart([routing_id, *frames])
        router.send_multipart([routing_id, envelope, *good])
        report = reports.until(lambda r: "seq" in r)[-1]
    finally:
        router.close(0)
    assert report["seq"] == 0 and report["bad"] == 5


def test_a_second_consumer_waits_while_the_first_is_alive() -> None:
    with (
        LosslessSender("inproc://two", bind=True) as sender,
        LosslessReceiver("inproc://two", node="engine-a") as a,
        LosslessReceiver("inproc://two", node="engine-b") as b,
    ):
        for seq in range(2):
            assert sender.send(bundle(seq), timeout_s=WAIT_S)
        assert sender.consumer is not None
        served, idle = (a, b) if sender.consumer.node == "engine-a" else (b, a)
        assert served.recv(WAIT_S).seq == 0 and served.recv(WAIT_S).seq == 1
        assert idle.recv(0.2) is None


def test_silent_consumer_is_reported_lost_then_back() -> None:
    with (
        LosslessSender("inproc://lost", bind=True, peer_timeout_s=0.2, heartbeat_s=0.05) as sender,
        LosslessReceiver("inproc://lost", heartbeat_s=0.05, peer_timeout_s=0.2) as receiver,
    ):
        assert sender.wait_for_credit(WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while sender.consumer.alive and time.monotonic() < deadline:
            sender.service(0.05)  # the receiver is busy (not in recv): no credits, no heartbeats
        assert not sender.consumer.alive and sender.counters.peers_lost == 1
        receiver.recv(0.1)  # waiting again sends a credit: the consumer is back
        sender.service(0.1)
        assert sender.consumer.alive
        assert receiver.producer is not None and receiver.producer.node == "capture"
        sender.close()
        while receiver.producer.state != "stopping" and time.monotonic() < deadline:
            receiver.recv(0.05)
        assert receiver.producer.state == "stopping"


def test_producer_counts_bad_messages_from_consumers_and_keeps_serving() -> None:
    ctx = zmq.Context.instance()
    rogue = make_socket(ctx, zmq.DEALER)
    try:
        with LosslessSender("inproc://rogue", bind=True) as sender:
            attach(rogue, "inproc://rogue", bind=False)
            rogue.send_multipart([b"\xc1"])
            rogue.send_multipart(encode(bundle(0)))  # data has no business going upstream
            with LosslessReceiver("inproc://rogue") as receiver:
                assert sender.send(bundle(5), timeout_s=WAIT_S)
                assert receiver.recv(WAIT_S).seq == 5
            assert sender.counters.bad == 2
    finally:
        rogue.close(0)


def test_send_gives_up_promptly_without_a_consumer() -> None:
    stop = StopFlag()
    with LosslessSender("inproc://nobody", bind=True) as sender:
        t0 = time.monotonic()
        assert not sender.send(bundle(0), timeout_s=0.1)
        stop.set()
        assert not sender.send(bundle(0), timeout_s=None, stop=stop)
        assert not sender.wait_for_credit(None, stop)
        assert sender.flush(0.0) and sender.in_flight == 0  # a send that returned False left nothing behind
        assert time.monotonic() - t0 < WAIT_S


def test_open_by_policy_gives_the_same_interface() -> None:
    for policy in POLICIES:
        with (
            open_sender(policy, f"inproc://policy-{policy}") as sender,
            open_receiver(policy, f"inproc://policy-{policy}") as receiver,
        ):
            if isinstance(sender, LatestPublisher):
                assert sender.wait_for_subscriber(WAIT_S)
            assert sender.send(bundle(1), timeout_s=WAIT_S)
            msg = receiver.recv(WAIT_S)
            assert msg is not None and msg.seq == 1 and receiver.counters.received == 1
    with pytest.raises(ValueError, match="policy"):
        open_sender("fast", "inproc://x")
    with pytest.raises(ValueError, match="policy"):
        open_receiver("fast", "inproc://x")


# -- latest wins ----------------------------------------------------------------------------------


def test_live_handshake_loses_nothing_at_start() -> None:
    with (
        LatestPublisher("tcp://127.0.0.1:*") as publisher,
        LatestSubscriber(publisher.endpoint) as subscriber,
    ):
        assert publisher.wait_for_subscriber(WAIT_S)  # no sleep: the subscription has arrived
        publisher.publish(bundle(0))
        assert subscriber.recv_latest(WAIT_S).seq == 0
        assert subscriber.publisher.node == "capture"  # its "ready" status came first


def test_live_publisher_never_blocks_and_drops_beyond_its_small_queues() -> None:
    with (
        LatestPublisher("tcp://127.0.0.1:*", sndhwm=2) as publisher,
        LatestSubscriber(publisher.endpoint, rcvhwm=2) as subscriber,
    ):
        assert publisher.wait_for_subscriber(WAIT_S)
        n = 150  # 150 MB at 1 MB each: far beyond HWM 2 + kernel buffers, so drops are certain
        for seq in range(n):
            publisher.publish(bundle(seq, blur_bytes=1 << 20))  # never blocks, never raises
        seqs = []
        while (msg := subscriber.recv_latest(0.3)) is not None:  # until the queues are empty
            seqs.append(msg.seq)
        c = subscriber.counters
        assert seqs == sorted(set(seqs)) and 0 < len(seqs) < n / 2
        assert c.dropped + c.missed + len(seqs) == seqs[-1] + 1  # every seq up to the last accounted for
        publisher.publish(bundle(n))  # with the queues drained, the newest gets through at once
        assert subscriber.recv_latest(WAIT_S).seq == n
        # What the full publisher queue dropped shows up as a gap once a newer message arrives.
        assert c.missed > 0 and c.dropped + c.missed + c.received == n + 1


def test_live_slow_consumer_drops_and_sees_only_recent_messages(spawn_child, reports: Reports) -> None:
    """A lockstep consumer: on each "go" it works for a while (the slow engine), then takes a message.

    Each burst is published before the consumer looks, so latest-wins hands it the newest message
    that has arrived and drops the rest of the burst; a FIFO consumer would need one "go" per message
    and drop nothing. The checks are on sequence numbers and counts, not on the clock.
    """
    burst, bursts = 50, 6
    ctx = zmq.Context.instance()
    go = make_socket(ctx, zmq.PUSH, SocketConfig(send_timeout_ms=int(WAIT_S * 1000)))
    # A deep publisher queue, so every drop here is the subscriber's own draining.
    with LatestPublisher("tcp://127.0.0.1:*", sndhwm=10_000) as publisher:
        try:
            go_endpoint = attach(go, "tcp://127.0.0.1:*", bind=True)
            spawn_child("latest_lockstep", publisher.endpoint, reports.endpoint, go_endpoint, 50)
            assert publisher.wait_for_subscriber(WAIT_S)
            seen: list[dict] = []
            for k in range(bursts):
                first, last = k * burst, (k + 1) * burst - 1
                for seq in range(first, last + 1):
                    publisher.publish(bundle(seq))
                while not seen or seen[-1]["seq"] != last:  # until the newest of the burst is taken
                    go.send(b"go")
                    report = reports.next()
                    # Only recent messages: everything older than this burst was dropped already.
                    assert first <= report["seq"] <= last, (k, report)
                    seen.append(report)
        finally:
            go.close(0)
    seqs = [r["seq"] for r in seen]
    assert seqs == sorted(set(seqs))
    assert len(seqs) <= bursts * burst // 2, seqs  # typically one or two per burst, not fifty
    final = seen[-1]
    assert final["dropped"] > 0 and final["missed"] == 0
    assert final["dropped"] + final["received"] == bursts * burst  # every message taken or counted


def test_live_restarted_subscriber_is_picked_up_again(spawn_child, reports: Reports) -> None:
    with LatestPublisher("tcp://127.0.0.1:*", heartbeat_s=0.1) as publisher:
        seq = 0
        firsts = []
        for attempt in range(2):
            child = spawn_child("latest_consumer", publisher.endpoint, reports.endpoint, 0)
            deadline = time.monotonic() + WAIT_S
            while True:  # publish at a steady pace until this very subscriber reports a message
                publisher.publish(bundle(seq))
                seq += 1
                if reports.sock.poll(20):
                    report = reports.sock.recv_json()
                    if report["pid"] == child.pid:
                        firsts.append(report["seq"])
                        break
                assert time.monotonic() < deadline, f"subscriber {attempt} never received"
            if attempt == 0:
                child.kill()
                child.wait(WAIT_S)
        # the second join is counted once its subscription notice has been read (maybe after its data)
        deadline = time.monotonic() + WAIT_S
        while publisher.counters.peers_joined < 2 and time.monotonic() < deadline:
            publisher.service(0.05)
        assert firsts[1] > firsts[0] and publisher.counters.peers_joined >= 2


def test_latest_subscriber_counts_bad_messages_and_serves_the_next() -> None:
    ctx = zmq.Context.instance()
    pub = make_socket(ctx, zmq.XPUB)
    try:
        endpoint = attach(pub, "tcp://127.0.0.1:*", bind=True)
        with LatestSubscriber(endpoint) as subscriber:
            assert pub.poll(int(WAIT_S * 1000)) and pub.recv()[:1] == b"\x01"
            good = encode(bundle(7))
            pub.send_multipart([b"\x00garbage"])
            pub.send_multipart([good[0], good[1]])
            pub.send_multipart(encode(Status.now("capture", "capture", "alive")))
            pub.send_multipart(good)
            msg = subscriber.recv_latest(WAIT_S)
            while msg is None or subscriber.counters.bad < 2:
                msg = subscriber.recv_latest(WAIT_S) or msg
            assert msg.seq == 7 and subscriber.counters.bad == 2
            assert subscriber.publisher is not None and subscriber.publisher.node == "capture"
    finally:
        pub.close(0)


def test_recv_message_skips_bad_messages() -> None:
    ctx = zmq.Context.instance()
    a, b = make_socket(ctx, zmq.PAIR), make_socket(ctx, zmq.PAIR)
    try:
        attach(a, "inproc://recv-helper", bind=True)
        attach(b, "inproc://recv-helper", bind=False)
        counters = ChannelCounters()
        a.send_multipart([b"nope"])
        a.send_multipart(encode(bundle(3)))
        assert recv_message(b, timeout_s=WAIT_S, counters=counters).seq == 3
        assert counters.bad == 1 and counters.received == 1
        assert recv_message(b, timeout_s=0.05, counters=counters) is None
    finally:
        a.close(0)
        b.close(0)


# -- end of stream --------------------------------------------------------------------------------


def test_lossless_producer_finishes_after_its_data() -> None:
    with (
        LosslessSender("inproc://finish", bind=True, heartbeat_s=0.05) as sender,
        LosslessReceiver("inproc://finish") as receiver,
    ):
        sender.status_counters["bundles_read"] = 2
        for seq in range(2):
            assert sender.send(bundle(seq), timeout_s=WAIT_S)
        got = [receiver.recv(WAIT_S).seq, receiver.recv(WAIT_S).seq]
        receiver.recv(0.0)  # acknowledges the last one
        assert sender.flush(WAIT_S)
        sender.close(final_state="finished")
        deadline = time.monotonic() + WAIT_S
        while receiver.producer.state != "finished" and time.monotonic() < deadline:
            assert receiver.recv(0.05) is None  # nothing after the end
        assert got == [0, 1] and receiver.producer.state == "finished"
        counters = receiver.producer.status.counters
        assert counters["bundles_read"] == 2 and counters["sent"] == 2  # node's and channel's counters
        assert receiver.producer.alive  # a finished producer is not reported lost when it goes silent
    with pytest.raises(ValueError, match="final_state"):
        LosslessSender("inproc://finish-bad", bind=True).close(final_state="done")


def test_unacknowledged_close_hands_the_message_to_the_next_consumer() -> None:
    with LosslessSender("inproc://noack", bind=True) as sender:
        first = LosslessReceiver("inproc://noack", node="engine")
        assert sender.send(bundle(7), timeout_s=WAIT_S)
        assert first.recv(WAIT_S).seq == 7
        first.close(acknowledge=False)  # stopped before passing its output on
        with LosslessReceiver("inproc://noack", node="engine") as second:
            deadline = time.monotonic() + WAIT_S
            msg = None
            while msg is None and time.monotonic() < deadline:
                sender.service(0.01)
                msg = second.recv(0.05)
            assert msg is not None and msg.seq == 7 and sender.counters.redelivered == 1


def test_flush_patiently_waits_for_progress_and_gives_up_without() -> None:
    with (
        LosslessSender("inproc://patient", bind=True) as sender,
        LosslessReceiver("inproc://patient") as receiver,
    ):
        assert sender.send(bundle(0), timeout_s=WAIT_S) and sender.send(bundle(1), timeout_s=WAIT_S)
        assert receiver.recv(WAIT_S).seq == 0 and receiver.recv(WAIT_S).seq == 1  # 1 is never acked
        t0 = time.monotonic()
        assert not flush_patiently(sender, idle_timeout_s=0.3)  # acked 0, then nothing: gives up
        assert sender.in_flight == 1 and time.monotonic() - t0 < WAIT_S
        receiver.recv(0.0)  # acknowledges 1
        assert flush_patiently(sender, idle_timeout_s=WAIT_S)
    with LatestPublisher("inproc://patient-latest") as publisher:
        assert flush_patiently(publisher, idle_timeout_s=0.0)  # keeps nothing


def test_latest_finished_reaches_a_slow_subscriber_with_a_full_queue() -> None:
    """The queues are full (small socket buffers, large messages) when the publisher finishes."""
    import threading

    seen: dict[str, object] = {}
    subscribed, closing = threading.Event(), threading.Event()
    small = SocketConfig(sndbuf_bytes=65536, rcvbuf_bytes=65536)

    def slow_subscriber(endpoint: str) -> None:
        with LatestSubscriber(endpoint, node="slow", rcvhwm=1, config=small) as subscriber:
            subscribed.set()
            closing.wait(WAIT_S)  # busy elsewhere while the publisher fills the queues
            seqs, deadline = [], time.monotonic() + WAIT_S
            while time.monotonic() < deadline:
                msg = subscriber.recv_latest(0.05)
                if msg is not None:
                    seqs.append(msg.seq)
                elif subscriber.producer is not None and subscriber.producer.state == "finished":
                    break
            seen.update(seqs=seqs, state=subscriber.producer.state if subscriber.producer else None)

    with LatestPublisher("tcp://127.0.0.1:*", sndhwm=1, config=small) as publisher:
        thread = threading.Thread(target=slow_subscriber, args=(publisher.endpoint,))
        thread.start()
        try:
            assert subscribed.wait(WAIT_S) and publisher.wait_for_subscriber(WAIT_S)
            for seq in range(30):  # 6 MB against 64 KB buffers: most are dropped, the queues stay full
                publisher.publish(bundle(seq, blur_bytes=200_000))
            closing.set()
            # Returns once the subscriber has left (it leaves on "finished"), at worst after WAIT_S.
            publisher.close(final_state="finished", timeout_s=WAIT_S)
        finally:
            closing.set()
            thread.join(WAIT_S)
    assert seen["state"] == "finished"
    assert seen["seqs"] == sorted(set(seen["seqs"])) and len(seen["seqs"]) < 30


# -- the child processes (run as ``python test_transport.py ROLE ...``) ---------------------------


def _child(role: str, endpoint: str, report_endpoint: str, *args: str) -> int:
    logging.basicConfig(level=logging.INFO, format=f"child {role} %(levelname)s: %(message)s")
    ctx = zmq.Context.instance()
    report = ctx.socket(zmq.PUSH)
    report.setsockopt(zmq.LINGER, 2000)
    report.connect(report_endpoint)
    send = report.send_json
    stop = StopFlag()
    with stop.handle_signals():
        if role == "lossless_consumer":
            node, count, slow_ms, hang_after = args[0], int(args[1]), int(args[2]), int(args[3])
            with LosslessReceiver(endpoint, node=node, heartbeat_s=0.1) as receiver:
                received = 0
                while received < count and not stop.is_set():
                    msg = receiver.recv(timeout_s=0.2, stop=stop)
                    if msg is None:
                        continue
                    received += 1
                    c = receiver.counters
                    send(
                        {
                            "event": "msg",
                            "seq": msg.seq,
                            "source": msg.source_id,
                            "bad": c.bad,
                            "dup": c.duplicates,
                        }
                    )
                    if received == hang_after:
                        send({"event": "hanging"})
                        stop.wait(60)  # "processing" forever: killed by the test
                    stop.wait(slow_ms / 1000)
                receiver.recv(timeout_s=0.0)  # acknowledge the last one before leaving
            send({"event": "done"})
        elif role == "latest_consumer":
            slow_s = int(args[0]) / 1000
            with LatestSubscriber(endpoint, node="slow") as subscriber:
                while not stop.is_set():
                    msg = subscriber.recv_latest(timeout_s=0.2, stop=stop)
                    if msg is None:
                        continue
                    c = subscriber.counters
                    send(
                        {
                            "seq": msg.seq,
                            "dropped": c.dropped,
                            "missed": c.missed,
                            "received": c.received,
                            "pid": os.getpid(),
                        }
                    )
                    stop.wait(slow_s)  # the slow engine
        elif role == "latest_lockstep":
            go = ctx.socket(zmq.PULL)
            go.setsockopt(zmq.LINGER, 0)
            go.connect(args[0])
            with LatestSubscriber(endpoint, node="slow") as subscriber:
                while not stop.is_set():
                    if not go.poll(200):
                        continue
                    go.recv()
                    stop.wait(int(args[1]) / 1000)  # the slow engine's work on the previous message
                    msg = subscriber.recv_latest(timeout_s=WAIT_S, stop=stop)
                    if msg is not None:
                        c = subscriber.counters
                        send(
                            {"seq": msg.seq, "dropped": c.dropped, "missed": c.missed, "received": c.received}
                        )
            go.close()
        elif role == "wait_forever":
            with LosslessReceiver(endpoint, node="engine") as receiver:
                send({"event": "ready"})
                receiver.recv(timeout_s=None, stop=stop)
            send({"event": "stopped"})
    report.close()
    return 0


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:]))
