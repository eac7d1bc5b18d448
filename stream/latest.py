"""The latest-wins channel (live): an XPUB publisher that never blocks, a SUB that keeps the newest.

See ``spikereveal.stream.transport`` for why draining and not ZMQ_CONFLATE.
"""

from __future__ import annotations

import contextlib
import logging
import re
import threading
import time
from dataclasses import fields
from typing import TYPE_CHECKING, Any

import zmq

from spikereveal.stream.channel import ChannelCounters, DataMessage, check_silence, track_producer
from spikereveal.stream.endpoint import Receiver, Sender
from spikereveal.stream.errors import SpikeRevealError
from spikereveal.stream.protocol import Message, ProtocolError, Status, decode, encode
from spikereveal.stream.sockets import LIVE_SOCKET_CONFIG
from spikereveal.stream.stopping import POLL_SLICE_S, Deadline, StopFlag, stopped

if TYPE_CHECKING:  # names for annotations only (typing_extensions: Unpack on Python 3.10)
    from typing_extensions import Unpack

    from spikereveal.stream.channel import Peer, PeerInfo
    from spikereveal.stream.endpoint import EndpointOptions

log = logging.getLogger("spikereveal.stream")

#: How long :meth:`LatestSubscriber.close` waits for its receiving thread (which polls in slices
#: of ``POLL_SLICE_S``, so it normally stops within one).
CLOSE_JOIN_S = 2.0


class LatestPublisher(Sender):
    """Publisher end of the live channel: never blocks, heartbeats when idle, counts subscribers.

    ``sndhwm`` is small, and so are the kernel's buffers (:data:`LIVE_SOCKET_CONFIG`), so that a
    slow subscriber costs drops, not memory or latency: a HWM counts messages, and a kernel buffer
    auto-tuned to megabytes would hold many stale small bundles beyond it. Under the
    :class:`~spikereveal.stream.endpoint.Sender` interface, ``send`` returns False (and counts
    ``dropped``) while no subscriber is there, and ``wait_ready`` waits for the first one only.
    """

    socket_type = zmq.XPUB
    default_config = LIVE_SOCKET_CONFIG

    def __init__(
        self, endpoint: str, *, sndhwm: int = 2, heartbeat_s: float = 1.0, **options: Unpack[EndpointOptions]
    ) -> None:
        """``options``: node ("capture"), role, bind (True), allow_remote, ctx, config
        (:data:`LIVE_SOCKET_CONFIG`), limits; see :class:`~spikereveal.stream.endpoint.Endpoint`."""
        # Pass every subscribe *and* unsubscribe up, so a re-joining subscriber is seen each time.
        super().__init__(endpoint, sockopts={zmq.SNDHWM: sndhwm, zmq.XPUB_VERBOSER: 1}, **options)
        self.heartbeat_s = heartbeat_s
        self.subscribers = 0
        self._joined_once = False
        self._last_send_ns = 0

    def publish(self, msg: Message) -> None:
        """Send ``msg`` to every subscriber that keeps up; ZeroMQ drops it for one whose queue is full.

        Never blocks. Call :meth:`service` when there is nothing to publish, so heartbeats flow.
        """
        self._read_subscriptions()
        if self._send(encode(msg, self.limits)):
            self.counters.sent += 1

    def _send(self, frames: list[Any]) -> bool:
        try:
            self._sock.send_multipart(frames, zmq.NOBLOCK, copy=not self.config.zero_copy)
        except zmq.Again:  # only with XPUB_NODROP, which is off; keep the loop alive regardless
            return False
        self._last_send_ns = time.monotonic_ns()
        return True

    def send(self, msg: Message, timeout_s: float | None = None, stop: StopFlag | None = None) -> bool:
        """:meth:`publish` if a subscriber is there (True); else count ``dropped`` and return False.

        Never waits (``timeout_s`` and ``stop`` are for the interface): XPUB would discard a
        message nobody subscribed to anyway, and a live stream must not wait for its consumer.
        """
        self._read_subscriptions()
        if self.subscribers == 0:
            self.counters.dropped += 1
            return False
        self.publish(msg)
        return True

    def wait_ready(self, timeout_s: float | None = None, stop: StopFlag | None = None) -> bool:
        """Before the first subscriber: :meth:`wait_for_subscriber`. After it, True at once."""
        if self._joined_once:
            return True
        return self.wait_for_subscriber(timeout_s, stop)

    def flush(self, timeout_s: float | None = None, stop: StopFlag | None = None) -> bool:
        """True: a publisher keeps nothing to acknowledge."""
        return True

    @property
    def in_flight(self) -> int:
        """0: a publisher keeps nothing to acknowledge."""
        return 0

    def peer_missing(self) -> str | None:
        self._read_subscriptions()
        return None if self.subscribers else "no subscriber yet"

    def wait_for_subscriber(self, timeout_s: float | None = None, stop: StopFlag | None = None) -> bool:
        """Wait until at least one subscriber's subscription has arrived (no slow-joiner loss after).

        Once XPUB has delivered the subscription to us, its pipe is in the routing table, so every
        message published afterwards reaches that subscriber (up to its HWM).
        """
        deadline = Deadline(timeout_s)
        while True:
            self._read_subscriptions()
            if self.subscribers > 0:
                return True
            if stopped(stop) or deadline.expired():
                return False
            self._sock.poll(deadline.slice_ms(), zmq.POLLIN)

    def service(self, timeout_s: float = 0.0, stop: StopFlag | None = None) -> None:
        """Track (un)subscriptions for up to ``timeout_s`` and send a heartbeat if idle."""
        deadline = Deadline(timeout_s)
        while True:
            self._read_subscriptions()
            idle = time.monotonic_ns() - self._last_send_ns > self.heartbeat_s * 1e9
            if idle and self._send(encode(self._status("alive"), self.limits)):
                self.counters.heartbeats_sent += 1
            if stopped(stop) or deadline.expired():
                return
            self._sock.poll(deadline.slice_ms(), zmq.POLLIN)

    def close(self, final_state: str = "stopping", timeout_s: float = 1.0) -> None:
        """Say ``final_state`` ("stopping", or "finished" after the last data) and close the socket.

        A full subscriber queue drops the status silently like any message, and XPUB cannot tell
        (XPUB_NODROP does not help: a queue that overflowed is skipped until its reader catches
        up). "finished" must reach even a slow consumer, so it is repeated for ``timeout_s``
        while a subscriber is connected; "stopping" is sent once.
        """
        if not self._begin_close(final_state):
            return
        frames = encode(self._status(final_state), self.limits)
        deadline = Deadline(timeout_s if final_state == "finished" else 0.0)
        with contextlib.suppress(zmq.ZMQError):
            while True:
                self._read_subscriptions()
                self._send(frames)
                if deadline.expired() or not self.subscribers:
                    break
                self._sock.poll(deadline.slice_ms(), zmq.POLLIN)  # (un)subscriptions, or the period
        self._sock.close()

    def _read_subscriptions(self) -> None:
        while True:
            try:
                event = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if event[:1] == b"\x01":
                self.subscribers += 1
                self._joined_once = True
                self.counters.peers_joined += 1
                log.info("%s: subscriber joined (%d now)", self._where, self.subscribers)
                # Say who we are at once rather than at the next idle heartbeat.
                if self._send(encode(self._status("ready"), self.limits)):
                    self.counters.heartbeats_sent += 1
            elif event[:1] == b"\x00":
                self.subscribers = max(0, self.subscribers - 1)
                log.info("%s: subscriber left (%d now)", self._where, self.subscribers)


class ShareError(SpikeRevealError):
    """A latest-wins share that is not ``I/N`` with 0 <= I < N."""


def parse_share(text: Any) -> str | None:
    """``"1/3"`` -> ``"1/3"`` (checked); None stays None. The engine ``--share I/N`` setting.

    Examples:
        >>> parse_share(" 0/2 ")
        '0/2'
    """
    if text is None:
        return None
    match = re.fullmatch(r"\s*(\d+)\s*/\s*(\d+)\s*", str(text))
    if match is None or not int(match.group(1)) < int(match.group(2)):
        raise ShareError(f"share: got {text!r}, expected I/N with 0 <= I < N (e.g. 0/2)")
    return f"{int(match.group(1))}/{int(match.group(2))}"


def share_of(text: str | None) -> tuple[int, int] | None:
    """``"1/3"`` -> ``(1, 3)``; None -> None (take every bundle)."""
    if text is None:
        return None
    index, count = parse_share(text).split("/")  # type: ignore[union-attr]
    return int(index), int(count)


class LatestSubscriber(Receiver):
    """Subscriber end of the live channel: ``recv_latest`` returns the newest message, dropping older ones.

    Counts ``dropped`` (arrived, replaced by a newer one before it was taken) and ``missed`` (gaps
    in ``seq`` per ``source_id``: dropped upstream). A sequence that goes backwards is taken as a
    restarted source.

    ``share=(i, n)``: one of n engines on one live stream takes only the bundles with
    ``seq % n == i`` (the newest of those), so that a latest-wins pool shares the work instead of
    every engine deblurring the same newest bundle; the others' bundles are counted in
    ``others``, not as drops.

    A receiving thread owns the socket from construction to :meth:`close` (ZeroMQ sockets are not
    thread-safe): it drains continuously, decodes and checks every message, tracks the publisher,
    and keeps only the newest data message in a one-slot mailbox. Draining only when the consumer
    asks would let stale bundles pile up in ZeroMQ's queues and the kernel's buffers while a slow
    engine works, and the next drain would find old ones (seconds behind at 146 bundles/s into a
    70 ms engine). ``counters`` belong to the caller's thread: what the receiving thread counts
    is added to them on each :meth:`recv_latest` and on :meth:`close`.
    """

    socket_type = zmq.SUB
    default_config = LIVE_SOCKET_CONFIG

    def __init__(
        self,
        endpoint: str,
        *,
        rcvhwm: int = 2,
        peer_timeout_s: float = 5.0,
        max_drain: int = 10_000,
        share: tuple[int, int] | None = None,
        **options: Unpack[EndpointOptions],
    ) -> None:
        """``options``: node ("engine"), role, bind (False), allow_remote, ctx, config
        (:data:`LIVE_SOCKET_CONFIG`), limits; see :class:`~spikereveal.stream.endpoint.Endpoint`."""
        if share is not None and not 0 <= share[0] < share[1]:
            raise ShareError(f"share: got {share!r}, expected (i, n) with 0 <= i < n")
        super().__init__(endpoint, sockopts={zmq.RCVHWM: rcvhwm, zmq.SUBSCRIBE: b""}, **options)
        self.peer_timeout_s, self.max_drain = peer_timeout_s, max_drain
        self.share = share
        self.others = 0  # bundles of the other engines' shares (receiving thread's count)
        self._publisher: Peer | None = None
        self._last_seq: dict[str, int] = {}
        self._start_receiving()

    @property
    def publisher(self) -> PeerInfo | None:
        """The publisher as last heard from (None before its first message)."""
        with self._lock:
            return None if self._publisher is None else self._publisher.info()

    @property
    def producer(self) -> PeerInfo | None:
        """:attr:`publisher` under the receiver interface shared with :class:`LosslessReceiver`."""
        return self.publisher

    def recv_latest(self, timeout_s: float | None = None, stop: StopFlag | None = None) -> DataMessage | None:
        """The newest data message that has arrived, waiting up to ``timeout_s`` for one; None on
        timeout or ``stop``. Older ones were dropped (and counted) as newer ones came in."""
        deadline = Deadline(timeout_s)
        with self._arrived:
            while True:
                self._hand_over_counts()
                if stopped(stop):
                    return None
                msg, self._newest = self._newest, None
                if msg is not None:
                    self.counters.received += 1
                    return msg
                if deadline.expired() or not self._thread.is_alive():
                    return None
                self._arrived.wait(deadline.slice_ms() / 1000)

    def recv(self, timeout_s: float | None = None, stop: StopFlag | None = None) -> DataMessage | None:
        """:meth:`recv_latest` under the receiver interface shared with :class:`LosslessReceiver`."""
        return self.recv_latest(timeout_s, stop)

    def close(self, acknowledge: bool = True) -> None:
        """Stop the receiving thread, which closes the socket it owns; waits at most
        :data:`CLOSE_JOIN_S`. ``acknowledge`` is for the interface: latest-wins acknowledges nothing."""
        self._closing.set()
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(CLOSE_JOIN_S)
            if self._thread.is_alive():  # it closes the socket when it stops; a daemon never blocks exit
                log.warning("%s: the receiving thread did not stop within %.1f s", self._where, CLOSE_JOIN_S)
        with self._lock:
            self._hand_over_counts()

    # -- the receiving thread (the only user of the socket once started) ---------------------------
    def _start_receiving(self) -> None:
        self._lock = threading.Lock()
        self._arrived = threading.Condition(self._lock)  # notified when the mailbox is filled
        self._newest: DataMessage | None = None  # the one-slot mailbox
        self._pending = ChannelCounters()  # counted by the thread, not yet added to ``counters``
        self._bad_total = 0  # for the bad-message log's numbering
        self._closing = threading.Event()
        self._thread = threading.Thread(target=self._receive, name=f"latest {self._where}", daemon=True)
        self._thread.start()

    def _receive(self) -> None:
        try:
            while not self._closing.is_set():
                with self._lock:
                    check_silence(
                        self._publisher, time.monotonic_ns(), self.peer_timeout_s, self._where, self._pending
                    )
                if self._sock.poll(int(POLL_SLICE_S * 1000), zmq.POLLIN):
                    self._drain()
        except zmq.ZMQError as exc:  # e.g. the context was terminated under us
            if not self._closing.is_set():
                log.warning("%s: receiving stopped (%s)", self._where, exc)
        except Exception:  # a bug, not a peer's bad message (those are counted): never die silently
            log.exception("%s: the receiving thread failed; nothing more will arrive", self._where)
        finally:
            self._sock.close()
            with self._arrived:
                self._arrived.notify_all()  # a waiting recv_latest returns None at once

    def _drain(self) -> None:
        """Take everything queued, newest into the mailbox, at most ``max_drain`` at a time (so
        closing and silence checks are never held up by a publisher faster than our decoding)."""
        for _ in range(self.max_drain):
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=not self.config.zero_copy)
            except zmq.Again:
                return
            try:
                msg = decode(list(frames), self.limits)  # outside the lock: the consumer may take meanwhile
            except ProtocolError as exc:
                self._count_bad(exc, frames)
                continue
            if not isinstance(msg, (Status, DataMessage)):
                self._count_bad(ProtocolError(f"a publisher sent a {msg.kind}"), frames)
                continue
            with self._arrived:
                self._take_in(msg, time.monotonic_ns())

    def _count_bad(self, error: Exception, frames: list[Any]) -> None:
        with self._lock:
            self._pending.bad += 1
        self._bad_total += 1
        self._on_bad(self._bad_total, error, frames)

    def _take_in(self, msg: Status | DataMessage, now: int) -> None:
        """Track the publisher and ``seq``; a data message replaces the mailbox's (lock held)."""
        self._publisher = track_producer(self._publisher, msg, now, self._where, self._pending, "publisher")
        if isinstance(msg, Status):
            return
        self._track_seq(msg)
        if self.share is not None and msg.seq % self.share[1] != self.share[0]:
            self.others += 1  # another engine's bundle: not ours to drop
            return
        if self._newest is not None:
            self._pending.dropped += 1  # CONFLATE drops multipart frames; keep the newest instead
        self._newest = msg
        self._arrived.notify()

    def _hand_over_counts(self) -> None:
        """Add what the receiving thread counted to ``counters`` (caller's thread, lock held)."""
        for field in fields(ChannelCounters):
            delta = getattr(self._pending, field.name)
            if delta:
                setattr(self.counters, field.name, getattr(self.counters, field.name) + delta)
        self._pending = ChannelCounters()

    def _track_seq(self, msg: DataMessage) -> None:
        last = self._last_seq.get(msg.source_id)
        if last is not None:
            if msg.seq > last + 1:
                self._pending.missed += msg.seq - last - 1
            elif msg.seq <= last:
                log.info(
                    "%s: source %r restarted at seq %d (was %d)", self._where, msg.source_id, msg.seq, last
                )
        self._last_seq[msg.source_id] = msg.seq
