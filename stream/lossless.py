"""The lossless channel (replay): credit-based ROUTER producer, DEALER consumer.

See ``spikereveal.stream.transport`` for why credits and not PUSH/PULL.
"""

from __future__ import annotations

import contextlib
import logging
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, NamedTuple

import zmq

from spikereveal.stream.channel import (
    DataMessage,
    Peer,
    PeerInfo,
    check_silence,
    decode_or_count,
    heard,
    new_session,
    track_producer,
)
from spikereveal.stream.endpoint import EndpointOptions, Receiver, Sender
from spikereveal.stream.protocol import FINAL_STATES, Credit, Message, ProtocolError, Status, encode
from spikereveal.stream.stopping import POLL_SLICE_S, Deadline, StopFlag, stopped

if TYPE_CHECKING:  # typing_extensions for Python 3.10; annotations only
    from typing_extensions import Unpack

log = logging.getLogger("spikereveal.stream")

# Delivery envelope of the lossless channel: magic, producer session (8 random bytes), delivery
# number (1, 2, ...; 0 for heartbeats, which are not acknowledged).
_ENVELOPE = struct.Struct("<4s8sQ")
_MAGIC = b"SRL1"


class _InFlight(NamedTuple):
    """A message dealt and not acknowledged yet: its delivery number, its place among the messages
    sent (1, 2, ...: ``counters.sent`` when it was first sent; kept across redeliveries) and frames."""

    n: int
    index: int
    frames: list[Any]


@dataclass
class _Consumer:
    peer: Peer
    session: str
    routing_id: bytes | None
    window: int
    acked: int = 0
    inflight: deque[_InFlight] = field(default_factory=deque)
    last_heartbeat_ns: int = 0
    last_deal_ns: int = 0
    #: The highest number dealt to it since it last gave messages back: one of its own given back
    #: keeps its number only above this (it must see rising numbers), else it gets a new one.
    dealt_since_requeue: int = 0

    @property
    def room(self) -> int:
        """Deliveries this consumer can take now (0 while lost or unreachable)."""
        if self.routing_id is None or self.peer.lost:
            return 0
        return max(0, self.window - len(self.inflight))


@dataclass
class _Held:
    """A message waiting to be delivered again: its number and the consumer session it was
    dealt to (that consumer drops it if it has it; any other one gets it under a new number),
    and its place among the messages sent (:attr:`_InFlight.index`)."""

    n: int
    origin: str
    frames: list[Any]
    index: int


class LosslessSender(Sender):
    """Producer end of the lossless channel (a replay reader, or the engine feeding a recorder).

    ``send(msg)`` returns True once the message is handed to a consumer within its credit window,
    False on timeout or stop (then it was not sent; send it again or give up). Call
    :meth:`service` when idle so heartbeats flow and credits are read; :meth:`flush` at the end waits
    until the consumers have acknowledged everything. Binds by default (``tcp://127.0.0.1:*`` picks a
    free port; see :attr:`endpoint`).

    **A pool of consumers** (``consumers``: how many at once, None: any number): each message is
    dealt to the consumer with the most free credit (the least recently dealt to on a tie), so a
    fast engine takes more than a slow one; a newcomer's first credit makes it eligible at once.
    A consumer that stops, restarts or stays silent longer than ``peer_timeout_s`` gives its
    unacknowledged messages back, and they go to the others first: nothing is lost. Each consumer
    sees rising delivery numbers (a message dealt again to another consumer gets a new one), so each
    one's exactly-once filter keeps working; a message whose consumer was only slow, not dead, may
    then be processed twice: the display drops the second result (``stream/pool.py``). Consumers
    are told apart by their node name (``engine-0``, ``engine-1``): a new session under a known
    name is that consumer restarted. ``consumers=1`` is the one-consumer channel: a second node
    is ignored until the first is lost or stops.
    """

    socket_type = zmq.ROUTER

    def __init__(
        self,
        endpoint: str,
        *,
        heartbeat_s: float = 1.0,
        peer_timeout_s: float = 15.0,
        consumers: int | None = None,
        **options: Unpack[EndpointOptions],
    ) -> None:
        """``options``: node ("capture"), role, bind (True), allow_remote, ctx, config, limits;
        see :class:`~spikereveal.stream.endpoint.Endpoint`."""
        if consumers is not None and consumers < 1:
            raise ValueError(f"consumers: got {consumers}, expected at least 1 (or None: any number)")
        # Fail loudly (EHOSTUNREACH) instead of silently dropping a delivery to a vanished consumer.
        super().__init__(endpoint, sockopts={zmq.ROUTER_MANDATORY: 1}, **options)
        self.heartbeat_s, self.peer_timeout_s = heartbeat_s, peer_timeout_s
        self.max_consumers = consumers
        self._session = new_session()
        self.session = self._session.hex()
        self._consumers: dict[str, _Consumer] = {}  # by node name, in order of joining
        self._pending: deque[_Held] = deque()  # given back by a lost/stopped consumer, ascending
        self._next_n = 1
        self._ignored: set[str] = set()
        self._retired: set[str] = set()  # sessions of replaced consumers: their late credits are stale

    # -- public ------------------------------------------------------------------------------
    @property
    def consumer(self) -> PeerInfo | None:
        """The first consumer being served (alive first), or None before the first credit."""
        alive = [c for c in self._consumers.values() if not c.peer.lost]
        pool = alive or list(self._consumers.values())
        return pool[0].peer.info() if pool else None

    @property
    def consumers(self) -> list[PeerInfo]:
        """Every consumer known now (lost ones included, until they stop or are replaced)."""
        return [c.peer.info() for c in self._consumers.values()]

    def dealt(self) -> dict[str, int]:
        """Messages in flight per consumer now (for logs and the pool benchmark)."""
        return {name: len(c.inflight) for name, c in self._consumers.items()}

    @property
    def in_flight(self) -> int:
        """Messages sent or queued for redelivery but not yet acknowledged."""
        return sum(len(c.inflight) for c in self._consumers.values()) + len(self._pending)

    def acked_through(self) -> int:
        """How many of the messages sent, counted from the first, are all acknowledged.

        The i-th message :meth:`send` took (``counters.sent`` was i after it) is acknowledged
        whenever ``i <= acked_through()``, whichever consumer took it and however often it was
        dealt again; a later one acknowledged before an earlier one does not count yet. A relay
        (the engine) acknowledges its own input upstream by this (:class:`RelayAcks`).
        """
        waiting = [m.index for c in self._consumers.values() for m in c.inflight]
        waiting += [h.index for h in self._pending]
        return min(waiting) - 1 if waiting else self.counters.sent

    def peer_missing(self) -> str | None:
        if not self._consumers:
            return "no consumer has asked yet"
        if all(c.peer.lost or c.routing_id is None for c in self._consumers.values()):
            names = ", ".join(repr(name) for name in self._consumers)
            return f"consumer {names} lost" if len(self._consumers) == 1 else f"consumers {names} lost"
        return None

    def wait_ready(self, timeout_s: float | None = None, stop: StopFlag | None = None) -> bool:
        """:meth:`wait_for_credit` under the :class:`~spikereveal.stream.endpoint.Sender` interface."""
        return self.wait_for_credit(timeout_s, stop)

    def wait_for_credit(self, timeout_s: float | None = None, stop: StopFlag | None = None) -> bool:
        """Wait until a consumer can take a new message now (the handshake, and the backpressure).

        Read (and stamp) the next message after this returns True, so its stamps do not include
        the time spent waiting for the consumer.
        """
        deadline = Deadline(timeout_s)
        while True:
            self._service_once()
            if not self._pending and self._best() is not None:
                return True
            if stopped(stop) or deadline.expired():
                return False
            self._sock.poll(deadline.slice_ms(self._slice_s()), zmq.POLLIN)

    def send(self, msg: Message, timeout_s: float | None = None, stop: StopFlag | None = None) -> bool:
        """Deliver ``msg`` after any redeliveries; True once sent, False on timeout/stop (not sent).

        Raises ProtocolError if ``msg`` itself is invalid (a bug in the caller, not the peer).
        """
        frames = encode(msg, self.limits)
        deadline = Deadline(timeout_s)
        while True:
            self._service_once()
            c = None if self._pending else self._best()
            if c is not None:
                if self._deliver(c, self._next_n, frames, self.counters.sent + 1):
                    self._next_n += 1
                    self.counters.sent += 1
                    return True
                continue
            if stopped(stop) or deadline.expired():
                return False
            self._sock.poll(deadline.slice_ms(self._slice_s()), zmq.POLLIN)

    def service(self, timeout_s: float = 0.0, stop: StopFlag | None = None) -> None:
        """Handle credits and statuses for up to ``timeout_s``; send heartbeats and redeliveries."""
        deadline = Deadline(timeout_s)
        while True:
            self._service_once()
            if stopped(stop) or deadline.expired():
                return
            self._sock.poll(deadline.slice_ms(self._slice_s()), zmq.POLLIN)

    def flush(self, timeout_s: float | None = None, stop: StopFlag | None = None) -> bool:
        """Wait until every message sent has been acknowledged; True if so."""
        deadline = Deadline(timeout_s)
        while True:
            self._service_once()
            if self.in_flight == 0:
                return True
            if stopped(stop) or deadline.expired():
                return False
            self._sock.poll(deadline.slice_ms(self._slice_s()), zmq.POLLIN)

    def close(self, final_state: str = "stopping") -> None:
        """Tell the consumers we leave (best effort) and close the socket.

        ``final_state``: "stopping" (shutting down; may come back) or "finished" (all data sent:
        call after :meth:`flush` at the end of a replay, so the consumers know none will follow).
        """
        if not self._begin_close(final_state):
            return
        for c in self._consumers.values():
            if c.routing_id is not None:
                self._send_control(c, self._status(final_state))
        self._sock.close()

    # -- internals ---------------------------------------------------------------------------
    def _slice_s(self) -> float:
        return min(POLL_SLICE_S, self.heartbeat_s)

    def _best(self) -> _Consumer | None:
        """The consumer to deal the next message to: most free credit, then least recently dealt."""
        ready = [c for c in self._consumers.values() if c.room > 0]
        return max(ready, key=lambda c: (c.room, -c.last_deal_ns)) if ready else None

    def _service_once(self) -> None:
        self._read_incoming()
        now = time.monotonic_ns()
        for c in list(self._consumers.values()):
            was_lost = c.peer.lost
            check_silence(c.peer, now, self.peer_timeout_s, self._where, self.counters)
            if c.peer.lost and not was_lost and len(self._consumers) > 1:
                self._requeue(c)  # the others take over what it held; it may still come back
        self._redeliver()
        for c in self._consumers.values():
            if c.routing_id is not None and now - c.last_heartbeat_ns > self.heartbeat_s * 1e9:
                self._send_control(c, self._status("alive"))
                c.last_heartbeat_ns = now

    def _redeliver(self) -> None:
        """Deal the messages given back, in order: to the consumer that had them first where it
        is back (same number: it drops what it has), else to the others under new numbers."""
        while self._pending:
            held = self._pending[0]
            origin = next((c for c in self._consumers.values() if c.session == held.origin), None)
            if origin is not None and origin.room > 0:
                c, n = origin, held.n
            else:
                c = self._best()
                if c is None or (origin is not None and c is not origin and self._origin_waits(origin)):
                    return
                n = self._next_n
            if c is origin and held.n <= c.dealt_since_requeue:
                n = self._next_n  # a newer one went to it first: a new number keeps them rising
            if not self._deliver(c, n, held.frames, held.index):
                return
            self._pending.popleft()
            if n == self._next_n:
                self._next_n += 1

    def _origin_waits(self, origin: _Consumer) -> bool:
        """Whether given-back messages should wait for their consumer rather than go elsewhere:
        only when it is the one consumer there is (a reconnect: it gets them back as they were)."""
        return not origin.peer.lost and origin.routing_id is not None

    def _deliver(self, c: _Consumer, n: int, frames: list[Any], index: int = 0) -> bool:
        envelope = _ENVELOPE.pack(_MAGIC, self._session, n)
        try:
            self._sock.send_multipart(
                [c.routing_id, envelope, *frames], zmq.NOBLOCK, copy=not self.config.zero_copy
            )
        except zmq.Again:
            return False  # consumer's pipe full (cannot happen within the window); retry later
        except zmq.ZMQError as exc:
            if exc.errno != zmq.EHOSTUNREACH:
                raise
            # The connection behind this routing id is gone; wait for the consumer's next credit.
            log.info("%s: consumer %r unreachable; will redeliver when it returns", self._where, c.peer.node)
            c.routing_id = None
            self._requeue(c)
            return False
        if n:
            c.inflight.append(_InFlight(n, index, frames))
            c.last_deal_ns = time.monotonic_ns()
            c.dealt_since_requeue = max(c.dealt_since_requeue, n)
        return True

    def _send_control(self, c: _Consumer, status: Status) -> None:
        if self._deliver(c, 0, encode(status, self.limits)):
            self.counters.heartbeats_sent += 1

    def _requeue(self, c: _Consumer) -> None:
        if c.inflight:
            self.counters.redelivered += len(c.inflight)
            given_back = [_Held(m.n, c.session, m.frames, m.index) for m in c.inflight]
            self._pending = deque(sorted([*given_back, *self._pending], key=lambda h: h.n))
            c.inflight.clear()
        c.dealt_since_requeue = 0

    def _read_incoming(self) -> None:
        while True:
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            routing_id, rest = frames[0].bytes, frames[1:]
            msg = decode_or_count(rest, self.counters, limits=self.limits, on_bad=self._on_bad)
            if isinstance(msg, Credit):
                self._on_credit(routing_id, msg)
            elif isinstance(msg, Status):
                self._on_status(routing_id, msg)
            elif msg is not None:
                self.counters.bad += 1
                self._on_bad(self.counters.bad, ProtocolError(f"a consumer sent a {msg.kind}"), rest)

    def _full(self, node: str) -> bool:
        """Whether a new consumer ``node`` must wait: ``consumers`` are served and none is lost.
        A lost one makes room: it is retired, and what it held goes to the newcomer."""
        if self.max_consumers is None or len(self._consumers) < self.max_consumers:
            return False
        lost = next((c for c in self._consumers.values() if c.peer.lost), None)
        if lost is None:
            if node not in self._ignored:
                self._ignored.add(node)
                served = ", ".join(repr(name) for name in self._consumers)
                log.warning(
                    "%s: %r asked for messages while %s is served; this channel feeds %d consumer(s)",
                    self._where,
                    node,
                    served,
                    self.max_consumers,
                )
            return True
        self._retire(lost, f"replaced by {node!r}")
        return False

    def _retire(self, c: _Consumer, why: str) -> None:
        self._requeue(c)
        self._retired.add(c.session)
        self._consumers.pop(c.peer.node, None)
        log.info(
            "%s: consumer %r (session %s) %s; %d to redeliver",
            self._where,
            c.peer.node,
            c.session,
            why,
            len(self._pending),
        )

    def _on_credit(self, routing_id: bytes, credit: Credit) -> None:
        now = time.monotonic_ns()
        if credit.session in self._retired:
            return
        c = self._consumers.get(credit.node)
        if c is None or c.session != credit.session:
            if c is not None:
                self._retire(c, f"restarted (session {credit.session})")
            elif self._full(credit.node):
                return
            log.info("%s: consumer %r ready (session %s)", self._where, credit.node, credit.session)
            c = _Consumer(Peer(credit.node, now), credit.session, routing_id, credit.window)
            self._consumers[credit.node] = c
            self.counters.peers_joined += 1
        elif c.routing_id != routing_id:
            # Same process, new connection: whatever was queued on the old one is gone.
            self._requeue(c)
            c.routing_id = routing_id
        heard(c.peer, now, self._where)
        acked = credit.acked if credit.producer_session == self.session else 0
        if acked > c.acked:
            c.acked = acked
        while c.inflight and c.inflight[0].n <= c.acked:
            c.inflight.popleft()
            self.counters.acked += 1
        kept = [h for h in self._pending if not (h.origin == c.session and h.n <= c.acked)]
        self.counters.acked += len(self._pending) - len(kept)  # acked by a reconnected consumer
        self._pending = deque(kept)
        c.window = credit.window

    def _on_status(self, routing_id: bytes, status: Status) -> None:
        c = self._consumers.get(status.node)
        if c is None or c.routing_id != routing_id:
            return  # a stale status from a previous connection
        self.counters.heartbeats_received += 1
        heard(c.peer, time.monotonic_ns(), self._where, status)
        if status.state in FINAL_STATES:
            self._retire(c, "stopped")


class Delivery(NamedTuple):
    """Which message :meth:`LosslessReceiver.recv` returned: the producer's session (hex) and the
    delivery number; what :meth:`LosslessReceiver.acknowledge` takes."""

    producer_session: str
    n: int


class LosslessReceiver(Receiver):
    """Consumer end of the lossless channel (the engine during replay, the display after it).

    ``recv()`` returns the next Bundle/Result in order, or None on timeout/stop. Calling ``recv()``
    again acknowledges the previous message (so one that was being processed when this process died
    is delivered again to its successor). ``window``: messages the producer may have in flight,
    including the one being processed (2 = one prefetched).

    ``manual_ack=True`` (a relay: the engine) acknowledges nothing by itself: the caller passes
    :attr:`last_delivery` of a message to :meth:`acknowledge` once it is safe to forget it (its
    result acknowledged by the next hop), which acknowledges it and every one before it (the
    credit is cumulative). Its ``window`` must then also cover the messages whose results wait
    for that acknowledgement.
    """

    socket_type = zmq.DEALER

    def __init__(
        self,
        endpoint: str,
        *,
        window: int = 2,
        heartbeat_s: float = 0.5,
        peer_timeout_s: float = 15.0,
        manual_ack: bool = False,
        **options: Unpack[EndpointOptions],
    ) -> None:
        """``options``: node ("engine"), role, bind (False), allow_remote, ctx, config, limits;
        see :class:`~spikereveal.stream.endpoint.Endpoint`."""
        if not 1 <= window <= 1024:
            raise ValueError(f"window: got {window}, expected 1..1024 messages")
        super().__init__(endpoint, **options)
        self.window, self.heartbeat_s, self.peer_timeout_s = window, heartbeat_s, peer_timeout_s
        self.manual_ack = manual_ack
        self.session = new_session().hex()
        self._producer_session = b""
        self._last_n = 0
        self._acked = 0
        self._handed_out = 0
        self._producer: Peer | None = None
        self._last_credit_ns = 0
        self._send_credit()  # the ready handshake: the producer sends nothing before this arrives

    @property
    def producer(self) -> PeerInfo | None:
        """The producer as last heard from (None before its first message)."""
        return None if self._producer is None else self._producer.info()

    @property
    def last_delivery(self) -> Delivery:
        """The message :meth:`recv` returned last (number 0 before the first of this producer)."""
        return Delivery(self._producer_session.hex(), self._last_n)

    def acknowledge(self, delivery: Delivery) -> None:
        """Acknowledge ``delivery`` and every message before it now (``manual_ack``; also allowed
        otherwise). One of a producer that has restarted since is ignored: its numbers are gone."""
        if delivery.producer_session != self._producer_session.hex():
            return
        if delivery.n > self._last_n:
            raise ValueError(f"delivery: got number {delivery.n}, only {self._last_n} were received")
        if delivery.n > self._acked:
            self._acked = delivery.n
            self._send_credit()

    def recv(self, timeout_s: float | None = None, stop: StopFlag | None = None) -> DataMessage | None:
        """The next message in order; acknowledges the one returned before (unless ``manual_ack``).
        None on timeout/stop."""
        if self._handed_out and not self.manual_ack:
            self._acked, self._handed_out = self._handed_out, 0
            self._send_credit()
        deadline = Deadline(timeout_s)
        while not stopped(stop):
            now = time.monotonic_ns()
            if now - self._last_credit_ns > self.heartbeat_s * 1e9:
                self._send_credit()  # heartbeat, and the handshake again for a restarted producer
            check_silence(self._producer, now, self.peer_timeout_s, self._where, self.counters)
            if not self._sock.poll(deadline.slice_ms(min(POLL_SLICE_S, self.heartbeat_s)), zmq.POLLIN):
                if deadline.expired():
                    return None
                continue
            msg = self._read_one()
            if msg is not None:
                return msg
        return None

    def close(self, acknowledge: bool = True) -> None:
        """Acknowledge what was processed, say "stopping" (best effort) and close the socket.

        ``acknowledge=False`` leaves the last message returned by :meth:`recv` unacknowledged, so
        that the producer delivers it again to the next consumer (a node that stops before it
        could pass that message's output on). With ``manual_ack`` only what :meth:`acknowledge`
        was given counts: the rest is delivered again to the next consumer either way.
        """
        if self._sock.closed:
            return
        if self._handed_out and acknowledge and not self.manual_ack:
            self._acked, self._handed_out = self._handed_out, 0
        self._send_credit()
        self._send(encode(Status.now(self.node, self.role, "stopping", self.counters.as_dict()), self.limits))
        self._sock.close()

    def _send(self, frames: list[Any]) -> None:
        with contextlib.suppress(zmq.Again):  # not connected yet and queue full: the next one will do
            self._sock.send_multipart(frames, zmq.NOBLOCK)

    def _send_credit(self) -> None:
        credit = Credit(
            self.node,
            self.session,
            self._producer_session.hex(),
            self._acked,
            self.window,
            time.monotonic_ns(),
        )
        self._send(encode(credit, self.limits))
        self._last_credit_ns = time.monotonic_ns()

    def _read_one(self) -> DataMessage | None:
        frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=not self.config.zero_copy)
        envelope = frames[0].bytes if hasattr(frames[0], "bytes") else frames[0]
        if len(envelope) != _ENVELOPE.size or envelope[:4] != _MAGIC:
            self.counters.bad += 1
            self._on_bad(self.counters.bad, ProtocolError(f"envelope: got {len(envelope)} bytes"), frames)
            return None
        _, session, n = _ENVELOPE.unpack(envelope)
        msg = decode_or_count(frames[1:], self.counters, limits=self.limits, on_bad=self._on_bad)
        if msg is None:
            return None
        now = time.monotonic_ns()
        if session != self._producer_session:
            if self._producer_session:
                log.info("%s: producer restarted (session %s)", self._where, session.hex())
            self._producer_session, self._last_n, self._acked = session, 0, 0
        self._producer = track_producer(self._producer, msg, now, self._where, self.counters, "producer")
        if isinstance(msg, Status):
            return None
        if not isinstance(msg, DataMessage):
            self.counters.bad += 1
            self._on_bad(self.counters.bad, ProtocolError(f"a producer sent a {msg.kind}"), frames)
            return None
        if n <= self._last_n:
            self.counters.duplicates += 1  # a redelivery after a reconnect: already have it
            return None
        self._last_n = self._handed_out = n
        self.counters.received += 1
        return msg


class RelayAcks:
    """End-to-end acknowledgement for a relay (the engine): a message in is acknowledged upstream
    only once what was made from it is acknowledged downstream.

    Each message taken is :meth:`add`-ed in order with how many messages the relay's own
    :class:`LosslessSender` must have acknowledged first: its own output's place among those sent
    (``counters.sent`` right after sending it) or, for one that made no output (a bad bundle:
    it must never come back), the count sent before it, so it goes as soon as those have.
    :meth:`release` gives the newest delivery that may be acknowledged now (acknowledgements are
    cumulative, so one waiting entry holds back every later one).

    Examples:
        >>> acks = RelayAcks()
        >>> acks.add(Delivery("ab", 1), 1)  # bundle 1 -> result 1
        >>> acks.add(Delivery("ab", 2), 1)  # bundle 2 failed: no result, waits for result 1
        >>> acks.add(Delivery("ab", 3), 2)  # bundle 3 -> result 2
        >>> acks.release(0) is None, len(acks)
        (True, 3)
        >>> acks.release(1), len(acks)
        (Delivery(producer_session='ab', n=2), 1)
    """

    def __init__(self) -> None:
        self._waiting: deque[tuple[Delivery, int]] = deque()

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, delivery: Delivery, needs_acked: int) -> None:
        """``delivery`` may be acknowledged once the first ``needs_acked`` messages sent downstream are."""
        self._waiting.append((delivery, needs_acked))

    def release(self, acked_through: int) -> Delivery | None:
        """The newest delivery whose output (and everything before) is acknowledged downstream,
        given :meth:`LosslessSender.acked_through`; None if none became so."""
        newest = None
        while self._waiting and self._waiting[0][1] <= acked_through:
            newest = self._waiting.popleft()[0]
        return newest

    def forward(self, receiver: LosslessReceiver, sender: LosslessSender) -> None:
        """Acknowledge to ``receiver``'s producer whatever ``sender``'s consumers have acknowledged."""
        delivery = self.release(sender.acked_through())
        if delivery is not None:
            receiver.acknowledge(delivery)
