"""stream/lossless.py: the credit-based replay channel between real processes on 127.0.0.1.

Every wait is a poll with a generous bound; child peers are terminated (then killed) by the
``spawn_child`` fixture (tests/stream/conftest.py).
"""

from __future__ import annotations

import time

import msgpack
import pytest
import zmq

from spikereveal.stream.lossless import Delivery, LosslessReceiver, LosslessSender, RelayAcks
from spikereveal.stream.protocol import encode
from spikereveal.stream.sockets import attach, free_tcp_endpoint, make_socket
from spikereveal.stream.stopping import StopFlag
from tests.stream.channel_harness import WAIT_S, Reports, bind_retrying, bundle

pytestmark = pytest.mark.timeout(60)  # every wait below is bounded far lower; this catches a bug


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
        with bind_retrying(endpoint) as sender:
            for seq in range(3):
                assert sender.send(bundle(seq, source=run), timeout_s=WAIT_S)
            assert sender.flush(WAIT_S)
        # closing the sender is the producer going away; the consumer keeps running
    seen = [(r["source"], r["seq"]) for r in reports.until(lambda r: r["event"] == "done") if "seq" in r]
    assert seen == [("first", 0), ("first", 1), ("first", 2), ("second", 0), ("second", 1), ("second", 2)]


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
        LosslessSender("inproc://two", bind=True, consumers=1) as sender,
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


def test_manual_ack_acknowledges_only_what_it_is_told() -> None:
    with (
        LosslessSender("inproc://manual", bind=True) as sender,
        LosslessReceiver("inproc://manual", window=4, manual_ack=True) as receiver,
    ):
        for seq in range(3):
            assert sender.send(bundle(seq), timeout_s=WAIT_S)
        deliveries = []
        for seq in range(3):
            assert receiver.recv(WAIT_S).seq == seq  # a recv acknowledges nothing by itself
            deliveries.append(receiver.last_delivery)
        assert receiver.recv(0.05) is None
        sender.service(0.05)
        assert sender.in_flight == 3 and sender.counters.acked == 0
        assert [d.n for d in deliveries] == [1, 2, 3]
        receiver.acknowledge(deliveries[1])  # cumulative: 1 and 2
        deadline = time.monotonic() + WAIT_S
        while sender.in_flight != 1 and time.monotonic() < deadline:
            sender.service(0.01)
        assert sender.in_flight == 1 and sender.counters.acked == 2
        receiver.acknowledge(deliveries[0])  # already acknowledged: nothing changes
        receiver.acknowledge(Delivery("00" * 8, 3))  # another producer's (a restarted one): ignored
        with pytest.raises(ValueError, match="delivery: got number 9"):
            receiver.acknowledge(Delivery(deliveries[0].producer_session, 9))
        receiver.close()  # manual: the unacknowledged third goes to the next consumer
        deadline = time.monotonic() + WAIT_S
        while sender.consumer is not None and time.monotonic() < deadline:
            sender.service(0.01)
        assert sender.in_flight == 1 and sender.counters.redelivered == 1


def test_acked_through_counts_the_acknowledged_prefix_across_consumers() -> None:
    """Each consumer acknowledges its own; the sender says how many from the first are all done,
    and a message given back and dealt again under a new number keeps its place."""
    with (
        LosslessSender("inproc://through", bind=True) as sender,
        LosslessReceiver("inproc://through", node="a", window=2, manual_ack=True) as a,
        LosslessReceiver("inproc://through", node="b", window=2, manual_ack=True) as b,
    ):
        assert sender.wait_for_credit(WAIT_S)
        deadline = time.monotonic() + WAIT_S
        while len(sender.dealt()) < 2 and time.monotonic() < deadline:
            sender.service(0.01)
        for seq in range(4):  # dealt a, b, a, b (most room, then least recently dealt)
            assert sender.send(bundle(seq), timeout_s=WAIT_S)
        assert sender.acked_through() == 0
        got = {}
        for name, receiver in (("a", a), ("b", b)):
            got[name] = [receiver.recv(WAIT_S).seq, receiver.recv(WAIT_S).seq]
        first, second = ("a", "b") if got["a"][0] == 0 else ("b", "a")
        assert got[first] == [0, 2] and got[second] == [1, 3]
        held = {"a": a, "b": b}

        def settle(in_flight: int) -> int:
            """Service until ``in_flight`` messages are left; then how many from the first are done."""
            deadline = time.monotonic() + WAIT_S
            while sender.in_flight != in_flight and time.monotonic() < deadline:
                sender.service(0.01)
            assert sender.in_flight == in_flight
            return sender.acked_through()

        held[second].acknowledge(held[second].last_delivery)  # messages 2 and 4: 1 still waits
        assert settle(2) == 0
        held[first].acknowledge(Delivery(held[first].last_delivery.producer_session, 1))  # message 1
        assert settle(1) == 2  # 1 and 2; 3 waits (4 is acknowledged, but after it)
        held[first].close()  # gives 3 back: dealt again to the other under a new number
        msg = None
        deadline = time.monotonic() + WAIT_S
        while msg is None and time.monotonic() < deadline:
            sender.service(0.01)
            msg = held[second].recv(0.02)
        assert msg is not None and msg.seq == 2 and held[second].last_delivery.n > 4
        assert settle(1) == 2
        held[second].acknowledge(held[second].last_delivery)
        assert settle(0) == 4


def test_relay_acks_release_in_order() -> None:
    acks = RelayAcks()
    assert acks.release(5) is None  # nothing taken
    acks.add(Delivery("s", 1), 1)
    acks.add(Delivery("s", 2), 2)
    acks.add(Delivery("s", 3), 2)  # made no result: goes with result 2
    assert acks.release(0) is None and len(acks) == 3
    assert acks.release(2) == Delivery("s", 3) and len(acks) == 0
