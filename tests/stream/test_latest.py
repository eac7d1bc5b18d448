"""stream/latest.py: the latest-wins live channel between real processes on 127.0.0.1.

Every wait is a poll with a generous bound; child peers are terminated (then killed) by the
``spawn_child`` fixture (tests/stream/conftest.py).
"""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import zmq

from spikereveal.stream.protocol import Status, encode
from spikereveal.stream.transport import (
    LatestPublisher,
    LatestSubscriber,
    SocketConfig,
    attach,
    make_socket,
)
from tests.stream.channel_harness import WAIT_S, Reports, bundle

pytestmark = pytest.mark.timeout(60)  # every wait below is bounded far lower; this catches a bug


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


def test_live_subscriber_that_sleeps_between_takes_always_gets_one_of_the_newest() -> None:
    """A consumer that works 30 ms per take gets a bundle within 2 of the newest sent, take after take.

    The publisher sends a 20 KB bundle every 5 ms (six per take) from a thread of its own. Draining
    only when asked left the ones beyond ZeroMQ's small queues waiting in the kernel's buffers, so
    each take fell further behind; the subscriber's receiving thread keeps up with them all.
    """
    newest = -1
    done = threading.Event()
    with (
        LatestPublisher("tcp://127.0.0.1:*") as publisher,
        LatestSubscriber(publisher.endpoint) as subscriber,
    ):
        assert publisher.wait_for_subscriber(WAIT_S)

        def publish() -> None:  # the only user of the publisher's socket until it is joined
            nonlocal newest
            seq = 0
            while not done.is_set():
                publisher.publish(bundle(seq, blur_bytes=20_000))
                newest, seq = seq, seq + 1
                done.wait(0.005)

        sender = threading.Thread(target=publish, daemon=True)
        sender.start()
        try:
            lags, accounted = [], []
            for _ in range(40):
                time.sleep(0.03)  # the slow engine
                sent = newest
                msg = subscriber.recv_latest(WAIT_S)
                assert msg is not None
                lags.append(sent - msg.seq)  # negative: a newer one arrived during the call
                c = subscriber.counters
                accounted.append(c.dropped + c.missed + c.received - (msg.seq + 1))
        finally:
            done.set()
            sender.join(WAIT_S)
    assert max(lags) <= 2, lags
    assert subscriber.counters.dropped > 0
    # Every seq up to the one taken was taken or counted, at each take (the counters move together).
    assert accounted == [0] * len(accounted), accounted


def test_live_six_megabyte_bundle_passes_the_small_kernel_buffers() -> None:
    with (
        LatestPublisher("tcp://127.0.0.1:*") as publisher,
        LatestSubscriber(publisher.endpoint) as subscriber,
    ):
        assert publisher.wait_for_subscriber(WAIT_S)
        big = bundle(3, blur_bytes=6_000_000)
        publisher.publish(big)
        msg = subscriber.recv_latest(WAIT_S)
        assert msg is not None and msg.seq == 3
        assert msg.blur.nbytes >= 5_900_000 and np.array_equal(msg.blur, big.blur)


def test_latest_subscriber_close_stops_its_receiving_thread() -> None:
    with LatestPublisher("tcp://127.0.0.1:*") as publisher:
        subscriber = LatestSubscriber(publisher.endpoint, node="closing")
        assert publisher.wait_for_subscriber(WAIT_S)
        publisher.publish(bundle(0))
        assert subscriber.recv_latest(WAIT_S).seq == 0

        def receiving() -> list[threading.Thread]:
            return [t for t in threading.enumerate() if t.name.startswith("latest closing <-")]

        assert [t.daemon for t in receiving()] == [True]
        subscriber.close()
        subscriber.close()  # twice is harmless
        assert receiving() == []
        assert subscriber.recv_latest(1.0) is None  # returns at once: nothing can arrive any more
        assert subscriber.counters.received == 1


def test_a_latest_wins_pool_shares_the_stream_by_sequence_number() -> None:
    """Two engines on one live stream take alternate bundles (newest of their share), never the same."""
    with (
        LatestPublisher("tcp://127.0.0.1:*") as publisher,
        LatestSubscriber(publisher.endpoint, share=(0, 2), node="engine-0") as even,
        LatestSubscriber(publisher.endpoint, share=(1, 2), node="engine-1") as odd,
    ):
        deadline = time.monotonic() + WAIT_S
        while publisher.subscribers < 2:
            publisher.service(0.02)
            assert time.monotonic() < deadline, "subscribers did not join"
        got: dict[str, list[int]] = {"even": [], "odd": []}
        for seq in range(10):
            publisher.publish(bundle(seq))
            taker, name = (even, "even") if seq % 2 == 0 else (odd, "odd")
            got[name].append(taker.recv_latest(WAIT_S).seq)  # each waits for its own
        assert got == {"even": [0, 2, 4, 6, 8], "odd": [1, 3, 5, 7, 9]}
        assert even.counters.dropped == 0 and odd.counters.dropped == 0  # the others' are not drops
        deadline = time.monotonic() + WAIT_S  # the last odd bundle may still be on its way to "even"
        while even.others < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert even.others == 5 and odd.others == 5
        assert even.counters.missed == 0  # gaps are counted over the whole stream, not the share


def test_a_share_must_be_one_of_n() -> None:
    from spikereveal.stream.latest import ShareError, parse_share, share_of

    assert parse_share("1/3") == "1/3" and share_of("1/3") == (1, 3) and share_of(None) is None
    for bad in ("3/3", "x", "1/0", "-1/2"):
        with pytest.raises(ShareError, match="expected I/N"):
            parse_share(bad)
    with pytest.raises(ShareError, match="share"):
        LatestSubscriber("tcp://127.0.0.1:1", share=(2, 2))
