"""Sockets between nodes: safe endpoints, bounded waits, and the two delivery policies.

Two policies, one per use (issue 3):

**Lossless** (:class:`LosslessSender` -> :class:`LosslessReceiver`, replaying recordings): every
message arrives, in order, and the reader waits for the consumer. It is a credit scheme on
ROUTER/DEALER rather than PUSH/PULL with a small high-water mark, because:

- backpressure is exact: the producer has at most ``window`` messages in flight. A HWM counts
  messages in ZeroMQ's queues only, and the kernel's TCP buffers hold a few more multi-MB bundles
  beyond it, so PUSH/PULL lets the reader run ahead by an unknown amount;
- nothing is sent before the consumer's first credit, which *is* the ready handshake: no slow-joiner
  loss and no sleeps. Credits repeat while the consumer waits, so they double as its heartbeat and
  make the handshake repeatable when either side restarts;
- messages stay with the producer until acknowledged, so when the consumer restarts (same node
  name, new session) or reconnects, the unacknowledged ones are delivered again, in order. With
  PUSH/PULL whatever sat in the dead peer's queues is lost. Every delivery carries a number, so a
  consumer drops the duplicates a reconnect can cause: delivery is exactly once per consumer session.

A lossless channel feeds one consumer at a time (a second node is ignored until the first is lost
or stops); ordering across several consumers would be meaningless anyway.

**Latest-wins** (:class:`LatestPublisher` -> :class:`LatestSubscriber`, live cameras): the publisher
never blocks (XPUB, small HWM: ZeroMQ drops for a slow subscriber), and the subscriber drains
everything queued and keeps only the newest message, so latency stays bounded whatever the
consumer's speed. ``ZMQ_CONFLATE`` is not used: it keeps one *frame*, which breaks multipart
messages. Drops are counted: ``dropped`` (drained here) and ``missed`` (sequence gaps: dropped
upstream). XPUB sees every (un)subscription, which gives a handshake (:meth:`wait_for_subscriber`)
and a subscriber count without a side channel.

**End of stream**: a producer that has sent everything closes with ``close(final_state="finished")``
(after :meth:`LosslessSender.flush`); receivers then see ``producer.state == "finished"`` and can
leave in turn. ``"stopping"`` means the peer is shutting down and may come back.

Every wait is a poll in slices of at most :data:`POLL_SLICE_S` that checks a :class:`StopFlag`, so a
node exits promptly on SIGINT/SIGTERM; no call blocks forever. Peers that stay silent longer than
``peer_timeout_s`` are logged as lost (and as back when they return); ZeroMQ reconnects by itself
and the handshakes above repeat, so a node keeps running across its peers' restarts. Bad messages
are counted and logged and never raise out of a receive call.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import os
import signal
import socket
import struct
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import zmq

from spikereveal.stream.protocol import (
    DEFAULT_LIMITS,
    FINAL_STATES,
    Bundle,
    Credit,
    Limits,
    Message,
    ProtocolError,
    Result,
    Status,
    decode,
    encode,
)

log = logging.getLogger("spikereveal.stream")

# Longest single wait inside any call: bounds how late a loop notices its StopFlag.
POLL_SLICE_S = 0.05

# Delivery envelope of the lossless channel: magic, producer session (8 random bytes), delivery
# number (1, 2, ...; 0 for heartbeats, which are not acknowledged).
_ENVELOPE = struct.Struct("<4s8sQ")
_MAGIC = b"SRL1"

DataMessage = Bundle | Result


class EndpointError(ProtocolError):
    """An endpoint string is malformed or would expose a node beyond this host without consent."""


# --------------------------------------------------------------------------------------------------
# Endpoints and sockets


def _tcp_host(endpoint: str) -> str:
    rest = endpoint[len("tcp://") :]
    if rest.startswith("["):  # [::1]:5555
        host, sep, _ = rest[1:].partition("]")
        if not sep:
            raise EndpointError(f"{endpoint}: unbalanced '[' in an IPv6 address, expected tcp://[::1]:PORT")
        return host
    host, sep, port = rest.rpartition(":")
    if not sep or not host or not port:
        raise EndpointError(f"{endpoint}: expected tcp://HOST:PORT (e.g. tcp://127.0.0.1:5555)")
    return host


def is_loopback(host: str) -> bool:
    """True for ``localhost`` and loopback addresses (127.0.0.0/8, ::1)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # an interface name or hostname: may be reachable from outside


def check_bind_endpoint(endpoint: str, *, allow_remote: bool = False) -> str:
    """Validate an endpoint a node will bind; refuse non-loopback tcp unless ``allow_remote``.

    ``tcp://*:5555`` or ``tcp://0.0.0.0:5555`` would accept connections from any host on the
    network; nodes carry camera data, so that must be asked for explicitly.
    """
    if not isinstance(endpoint, str) or "://" not in endpoint:
        raise EndpointError(f"{endpoint!r}: expected tcp://HOST:PORT, ipc://PATH or inproc://NAME")
    scheme = endpoint.split("://", 1)[0]
    if scheme in ("ipc", "inproc"):
        return endpoint
    if scheme != "tcp":
        raise EndpointError(f"{endpoint}: transport {scheme!r} is not supported, expected tcp, ipc or inproc")
    host = _tcp_host(endpoint)
    if not is_loopback(host):
        if not allow_remote:
            raise EndpointError(
                f"{endpoint}: binding to {host!r} accepts connections from other hosts; "
                "expected a loopback address such as tcp://127.0.0.1:PORT (or allow remote access explicitly)"
            )
        log.warning("%s: binding beyond loopback; any host that reaches this port can connect", endpoint)
    return endpoint


def free_tcp_endpoint(host: str = "127.0.0.1") -> str:
    """``tcp://host:PORT`` with a port that was free a moment ago (for tests; prefer binding port ``*``)."""
    with socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET) as probe:
        probe.bind((host, 0))
        port = probe.getsockname()[1]
    return f"tcp://[{host}]:{port}" if ":" in host else f"tcp://{host}:{port}"


@dataclass(frozen=True)
class SocketConfig:
    """Options every node socket gets; all waits bounded, all sizes capped.

    ``max_msg_bytes``: ZMQ_MAXMSGSIZE (per frame in libzmq): a peer that sends more is disconnected
    before anything is allocated. ``linger_ms``: how long close() may wait to flush. Send/recv
    timeouts bound any blocking call (the channels poll anyway). ZMTP heartbeats (``heartbeat_*``)
    let libzmq notice a vanished host whose TCP connection never closed. ``zero_copy``: send and
    receive with ``copy=False``; pyzmq still copies frames below ``copy_threshold`` bytes, where
    zero-copy costs more than it saves (~64 KB measured).
    """

    max_msg_bytes: int = DEFAULT_LIMITS.max_buffer_bytes
    linger_ms: int = 200
    send_timeout_ms: int = 1000
    recv_timeout_ms: int = 1000
    heartbeat_ivl_ms: int = 1000
    heartbeat_timeout_ms: int = 5000
    reconnect_ivl_ms: int = 100
    reconnect_ivl_max_ms: int = 1000
    zero_copy: bool = True
    copy_threshold: int = 65536
    sndbuf_bytes: int = -1
    rcvbuf_bytes: int = -1


def make_socket(ctx: zmq.Context, socket_type: int, config: SocketConfig = SocketConfig()) -> zmq.Socket:
    """A socket with the options of ``config`` applied (see :class:`SocketConfig`)."""
    sock = ctx.socket(socket_type)
    sock.setsockopt(zmq.LINGER, config.linger_ms)
    sock.setsockopt(zmq.MAXMSGSIZE, config.max_msg_bytes)
    sock.setsockopt(zmq.SNDTIMEO, config.send_timeout_ms)
    sock.setsockopt(zmq.RCVTIMEO, config.recv_timeout_ms)
    sock.setsockopt(zmq.HEARTBEAT_IVL, config.heartbeat_ivl_ms)
    sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, config.heartbeat_timeout_ms)
    sock.setsockopt(zmq.RECONNECT_IVL, config.reconnect_ivl_ms)
    sock.setsockopt(zmq.RECONNECT_IVL_MAX, config.reconnect_ivl_max_ms)
    sock.copy_threshold = config.copy_threshold
    sock.setsockopt(zmq.SNDBUF, config.sndbuf_bytes)
    sock.setsockopt(zmq.RCVBUF, config.rcvbuf_bytes)
    return sock


def attach(sock: zmq.Socket, endpoint: str, *, bind: bool, allow_remote: bool = False) -> str:
    """Bind (loopback-checked) or connect ``sock``; returns the actual endpoint (port ``*`` resolved)."""
    if endpoint.startswith("tcp://[") or (endpoint.startswith("tcp://") and _tcp_host(endpoint).count(":")):
        sock.setsockopt(zmq.IPV6, 1)
    if bind:
        check_bind_endpoint(endpoint, allow_remote=allow_remote)
        try:
            sock.bind(endpoint)
        except zmq.ZMQError as exc:
            raise EndpointError(f"{endpoint}: cannot bind ({exc})") from None
        last = sock.getsockopt(zmq.LAST_ENDPOINT)
        return last.decode() if isinstance(last, bytes) else str(last)
    try:
        sock.connect(endpoint)
    except zmq.ZMQError as exc:
        raise EndpointError(f"{endpoint}: cannot connect ({exc})") from None
    return endpoint


# --------------------------------------------------------------------------------------------------
# Stopping


class StopFlag:
    """A flag set by SIGINT/SIGTERM (or by code) that node loops check between bounded waits.

    ``with stop.handle_signals():`` installs the handlers in the main thread and restores the old
    ones on exit. A second signal while stopping raises KeyboardInterrupt, so a stuck node can
    still be interrupted by hand.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None

    def set(self, signum: int | None = None) -> None:
        if self.signum is None:
            self.signum = signum
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def __bool__(self) -> bool:
        # ``stop or StopFlag()`` and ``while not stop`` read naturally but are easy to get wrong
        # (an unset flag would be falsy); make every caller say is_set().
        raise TypeError("a StopFlag has no truth value; use stop.is_set()")

    def wait(self, timeout_s: float | None = None) -> bool:
        """Sleep up to ``timeout_s`` unless stopped; True if stopped (use instead of time.sleep)."""
        return self._event.wait(timeout_s)

    @contextlib.contextmanager
    def handle_signals(self, signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[StopFlag]:
        def handler(signum: int, _frame: Any) -> None:
            if self.is_set():
                raise KeyboardInterrupt
            log.info("received %s: stopping", signal.Signals(signum).name)
            self.set(signum)

        previous = {sig: signal.signal(sig, handler) for sig in signals}
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def _stopped(stop: StopFlag | None) -> bool:
    return stop is not None and stop.is_set()


class _Deadline:
    """Remaining time of a wait; ``None`` timeout means forever (still sliced, still stoppable)."""

    def __init__(self, timeout_s: float | None) -> None:
        self.end = None if timeout_s is None else time.monotonic() + max(0.0, timeout_s)

    def remaining(self) -> float:
        return float("inf") if self.end is None else max(0.0, self.end - time.monotonic())

    def slice_ms(self, cap_s: float = POLL_SLICE_S) -> int:
        return max(0, int(1000 * min(cap_s, self.remaining())))

    def expired(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end


# --------------------------------------------------------------------------------------------------
# Counting, logging, peers


@dataclass
class ChannelCounters:
    """What a channel end has seen; ``as_dict()`` goes into Status heartbeats and latency summaries.

    ``dropped``: stale messages discarded by latest-wins draining; ``missed``: sequence numbers that
    never arrived (dropped by the publisher's HWM); ``bad``: messages that failed validation;
    ``duplicates``: lossless redeliveries already seen; ``redelivered``: messages queued again for
    a restarted or reconnected consumer.
    """

    sent: int = 0
    received: int = 0
    dropped: int = 0
    missed: int = 0
    bad: int = 0
    duplicates: int = 0
    redelivered: int = 0
    acked: int = 0
    heartbeats_sent: int = 0
    heartbeats_received: int = 0
    peers_joined: int = 0
    peers_lost: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class _BadMessageLog:
    """Log bad messages without flooding: the first ten, then every hundredth."""

    def __init__(self, where: str) -> None:
        self.where = where

    def __call__(self, count: int, error: Exception, frames: Sequence[Any]) -> None:
        if count <= 10 or count % 100 == 0:
            sizes = [_frame_len(f) for f in frames][:8]
            log.warning("%s: bad message #%d (frame sizes %s): %s", self.where, count, sizes, error)


def _frame_len(frame: Any) -> int:
    try:
        return len(frame.buffer) if hasattr(frame, "buffer") else len(frame)
    except TypeError:
        return -1


def decode_or_count(
    frames: Sequence[Any],
    counters: ChannelCounters,
    *,
    limits: Limits = DEFAULT_LIMITS,
    on_bad: Callable[[int, Exception, Sequence[Any]], None] | None = None,
) -> Message | None:
    """``decode(frames)``, or None after counting (``counters.bad``) and logging a bad message."""
    try:
        return decode(list(frames), limits)
    except ProtocolError as exc:
        counters.bad += 1
        (on_bad or _BadMessageLog("receive"))(counters.bad, exc, frames)
        return None


def recv_message(
    sock: zmq.Socket,
    *,
    timeout_s: float | None,
    counters: ChannelCounters,
    stop: StopFlag | None = None,
    zero_copy: bool = True,
    limits: Limits = DEFAULT_LIMITS,
    where: str = "receive",
) -> Message | None:
    """Receive and decode the next good message from a plain socket (SUB, PULL, PAIR...).

    Bad messages are counted and logged (prefixed with ``where``) and the wait goes on; returns
    None on timeout or stop. Never raises for what a peer sent.
    """
    deadline = _Deadline(timeout_s)
    on_bad = _BadMessageLog(where)
    while not _stopped(stop):
        if not sock.poll(deadline.slice_ms(), zmq.POLLIN):
            if deadline.expired():
                return None
            continue
        frames = sock.recv_multipart(zmq.NOBLOCK, copy=not zero_copy)
        msg = decode_or_count(frames, counters, limits=limits, on_bad=on_bad)
        if msg is not None:
            counters.received += 1
            return msg
    return None


@dataclass(frozen=True)
class PeerInfo:
    """What one end knows about its peer: ``alive`` is False after ``peer_timeout_s`` of silence."""

    node: str
    alive: bool
    state: str
    last_seen_ns: int
    status: Status | None = None


@dataclass
class _Peer:
    node: str
    last_seen_ns: int
    state: str = "ready"
    status: Status | None = None
    lost: bool = False

    def info(self) -> PeerInfo:
        return PeerInfo(self.node, not self.lost, self.state, self.last_seen_ns, self.status)


def _heard(peer: _Peer, now_ns: int, where: str, status: Status | None = None) -> None:
    peer.last_seen_ns = now_ns
    if status is not None:
        peer.status, peer.state = status, status.state
    if peer.lost:
        peer.lost = False
        log.info("%s: peer %r is back", where, peer.node)


def _check_silence(
    peer: _Peer | None, now_ns: int, timeout_s: float, where: str, counters: ChannelCounters
) -> None:
    if peer is None or peer.lost or peer.state in FINAL_STATES:
        return
    silent_s = (now_ns - peer.last_seen_ns) / 1e9
    if silent_s > timeout_s:
        peer.lost = True
        counters.peers_lost += 1
        log.warning(
            "%s: peer %r lost (silent for %.1f s); waiting for it to come back", where, peer.node, silent_s
        )


def _new_session() -> bytes:
    return os.urandom(8)


def _final_state(state: str) -> str:
    if state not in FINAL_STATES:
        raise ValueError(f"final_state: got {state!r}, expected one of {', '.join(FINAL_STATES)}")
    return state


# --------------------------------------------------------------------------------------------------
# Lossless: credit-based ROUTER (producer) / DEALER (consumer)


@dataclass
class _Consumer:
    peer: _Peer
    session: str
    routing_id: bytes | None
    window: int
    acked: int = 0
    inflight: deque[tuple[int, list[Any]]] = field(default_factory=deque)


class LosslessSender:
    """Producer end of the lossless channel (a replay reader, or the engine feeding a recorder).

    ``send(msg)`` returns True once the message is handed to the consumer within its credit window,
    False on timeout or stop (then it was not sent; send it again or give up). Call
    :meth:`service` when idle so heartbeats flow and credits are read; :meth:`flush` at the end waits
    until the consumer has acknowledged everything. Binds by default (``tcp://127.0.0.1:*`` picks a
    free port; see :attr:`endpoint`).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        node: str = "capture",
        role: str = "capture",
        bind: bool = True,
        allow_remote: bool = False,
        ctx: zmq.Context | None = None,
        config: SocketConfig = SocketConfig(),
        heartbeat_s: float = 1.0,
        peer_timeout_s: float = 15.0,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.node, self.role, self.config, self.limits = node, role, config, limits
        self.heartbeat_s, self.peer_timeout_s = heartbeat_s, peer_timeout_s
        self._session = _new_session()
        self.session = self._session.hex()
        self.counters = ChannelCounters()
        self._sock = make_socket(ctx or zmq.Context.instance(), zmq.ROUTER, config)
        # Fail loudly (EHOSTUNREACH) instead of silently dropping a delivery to a vanished consumer.
        self._sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self.endpoint = attach(self._sock, endpoint, bind=bind, allow_remote=allow_remote)
        self._where = f"{node} -> {self.endpoint}"
        self._on_bad = _BadMessageLog(self._where)
        self._consumer: _Consumer | None = None
        self._pending: deque[tuple[int, list[Any]]] = deque()  # redeliveries, ascending numbers
        self._next_n = 1
        self._last_heartbeat_ns = 0
        self._ignored: set[str] = set()
        self._retired: set[str] = set()  # sessions of replaced consumers: their late credits are stale
        # The node's own counters (bundles in, errors...), sent in every Status beside the channel's.
        self.status_counters: dict[str, int | float] = {}

    # -- public ------------------------------------------------------------------------------
    @property
    def consumer(self) -> PeerInfo | None:
        """The consumer being served, or None before the first credit / after it stopped."""
        return None if self._consumer is None else self._consumer.peer.info()

    @property
    def in_flight(self) -> int:
        """Messages sent or queued for redelivery but not yet acknowledged."""
        held = 0 if self._consumer is None else len(self._consumer.inflight)
        return held + len(self._pending)

    def wait_for_credit(self, timeout_s: float | None = None, stop: StopFlag | None = None) -> bool:
        """Wait until a consumer can take a new message now (the handshake, and the backpressure).

        Read (and stamp) the next message after this returns True, so its stamps do not include
        the time spent waiting for the consumer.
        """
        deadline = _Deadline(timeout_s)
        while True:
            self._service_once()
            if not self._pending and self._has_room():
                return True
            if _stopped(stop) or deadline.expired():
                return False
            self._sock.poll(deadline.slice_ms(self._slice_s()), zmq.POLLIN)

    def send(self, msg: Message, timeout_s: float | None = None, stop: StopFlag | None = None) -> bool:
        """Deliver ``msg`` after any redeliveries; True once sent, False on timeout/stop (not sent).

        Raises ProtocolError if ``msg`` itself is invalid (a bug in the caller, not the peer).
        """
        frames = encode(msg, self.limits)
        deadline = _Deadline(timeout_s)
        while True:
            self._service_once()
            if not self._pending and self._has_room():
                assert self._consumer is not None
                if self._deliver(self._consumer, self._next_n, frames):
                    self._next_n += 1
                    self.counters.sent += 1
                    return True
                continue
            if _stopped(stop) or deadline.expired():
                return False
            self._sock.poll(deadline.slice_ms(self._slice_s()), zmq.POLLIN)

    def service(self, timeout_s: float = 0.0, stop: StopFlag | None = None) -> None:
        """Handle credits and statuses for up to ``timeout_s``; send heartbeats and redeliveries."""
        deadline = _Deadline(timeout_s)
        while True:
            self._service_once()
            if _stopped(stop) or deadline.expired():
                return
            self._sock.poll(deadline.slice_ms(self._slice_s()), zmq.POLLIN)

    def flush(self, timeout_s: float | None = None, stop: StopFlag | None = None) -> bool:
        """Wait until every message sent has been acknowledged; True if so."""
        deadline = _Deadline(timeout_s)
        while True:
            self._service_once()
            if self.in_flight == 0:
                return True
            if _stopped(stop) or deadline.expired():
                return False
            self._sock.poll(deadline.slice_ms(self._slice_s()), zmq.POLLIN)

    def close(self, final_state: str = "stopping") -> None:
        """Tell the consumer we leave (best effort) and close the socket.

        ``final_state``: "stopping" (shutting down; may come back) or "finished" (all data sent:
        call after :meth:`flush` at the end of a replay, so the consumer knows none will follow).
        """
        _final_state(final_state)
        if self._sock.closed:
            return
        c = self._consumer
        if c is not None and c.routing_id is not None:
            self._send_control(c, self._status(final_state))
        self._sock.close()

    def _status(self, state: str) -> Status:
        return Status.now(self.node, self.role, state, {**self.counters.as_dict(), **self.status_counters})

    def __enter__(self) -> LosslessSender:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ---------------------------------------------------------------------------
    def _slice_s(self) -> float:
        return min(POLL_SLICE_S, self.heartbeat_s)

    def _has_room(self) -> bool:
        c = self._consumer
        return c is not None and c.routing_id is not None and len(c.inflight) < c.window

    def _service_once(self) -> None:
        self._read_incoming()
        now = time.monotonic_ns()
        c = self._consumer
        if c is not None:
            _check_silence(c.peer, now, self.peer_timeout_s, self._where, self.counters)
            while self._pending and self._has_room():
                n, frames = self._pending[0]
                if not self._deliver(c, n, frames):
                    break
                self._pending.popleft()
            if c.routing_id is not None and now - self._last_heartbeat_ns > self.heartbeat_s * 1e9:
                self._send_control(c, self._status("alive"))
                self._last_heartbeat_ns = now

    def _deliver(self, c: _Consumer, n: int, frames: list[Any]) -> bool:
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
            c.inflight.append((n, frames))
        return True

    def _send_control(self, c: _Consumer, status: Status) -> None:
        if self._deliver(c, 0, encode(status, self.limits)):
            self.counters.heartbeats_sent += 1

    def _requeue(self, c: _Consumer) -> None:
        if c.inflight:
            self.counters.redelivered += len(c.inflight)
            self._pending = deque(sorted([*c.inflight, *self._pending], key=lambda item: item[0]))
            c.inflight.clear()

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

    def _on_credit(self, routing_id: bytes, credit: Credit) -> None:
        now = time.monotonic_ns()
        c = self._consumer
        if credit.session in self._retired:
            return
        if c is not None and c.peer.node != credit.node and not c.peer.lost:
            if credit.node not in self._ignored:
                self._ignored.add(credit.node)
                log.warning(
                    "%s: %r asked for messages while %r is served; a lossless channel feeds one consumer",
                    self._where,
                    credit.node,
                    c.peer.node,
                )
            return
        if c is None or c.peer.node != credit.node or c.session != credit.session:
            if c is not None:
                self._requeue(c)
                self._retired.add(c.session)
                log.info(
                    "%s: consumer %r (session %s) replaces %r (session %s); redelivering %d",
                    self._where,
                    credit.node,
                    credit.session,
                    c.peer.node,
                    c.session,
                    len(self._pending),
                )
            else:
                log.info("%s: consumer %r ready (session %s)", self._where, credit.node, credit.session)
            c = _Consumer(_Peer(credit.node, now), credit.session, routing_id, credit.window)
            self._consumer = c
            self.counters.peers_joined += 1
        elif c.routing_id != routing_id:
            # Same process, new connection: whatever was queued on the old one is gone.
            self._requeue(c)
            c.routing_id = routing_id
        _heard(c.peer, now, self._where)
        acked = credit.acked if credit.producer_session == self.session else 0
        if acked > c.acked:
            c.acked = acked
        while c.inflight and c.inflight[0][0] <= c.acked:
            c.inflight.popleft()
            self.counters.acked += 1
        while self._pending and self._pending[0][0] <= c.acked:  # acked by a reconnected consumer
            self._pending.popleft()
            self.counters.acked += 1
        c.window = credit.window

    def _on_status(self, routing_id: bytes, status: Status) -> None:
        c = self._consumer
        if c is None or c.peer.node != status.node or c.routing_id != routing_id:
            return  # a stale status from a previous connection
        self.counters.heartbeats_received += 1
        _heard(c.peer, time.monotonic_ns(), self._where, status)
        if status.state in FINAL_STATES:
            self._requeue(c)
            self._retired.add(c.session)
            log.info(
                "%s: consumer %r stopped; %d messages wait for the next one",
                self._where,
                c.peer.node,
                self.in_flight,
            )
            self._consumer = None


class LosslessReceiver:
    """Consumer end of the lossless channel (the engine during replay).

    ``recv()`` returns the next Bundle/Result in order, or None on timeout/stop. Calling ``recv()``
    again acknowledges the previous message (so one that was being processed when this process died
    is delivered again to its successor). ``window``: messages the producer may have in flight,
    including the one being processed (2 = one prefetched).
    """

    def __init__(
        self,
        endpoint: str,
        *,
        node: str = "engine",
        role: str = "engine",
        bind: bool = False,
        allow_remote: bool = False,
        window: int = 2,
        ctx: zmq.Context | None = None,
        config: SocketConfig = SocketConfig(),
        heartbeat_s: float = 0.5,
        peer_timeout_s: float = 15.0,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        if not 1 <= window <= 1024:
            raise ValueError(f"window: got {window}, expected 1..1024 messages")
        self.node, self.role, self.window, self.config, self.limits = node, role, window, config, limits
        self.heartbeat_s, self.peer_timeout_s = heartbeat_s, peer_timeout_s
        self.session = _new_session().hex()
        self.counters = ChannelCounters()
        self._sock = make_socket(ctx or zmq.Context.instance(), zmq.DEALER, config)
        self.endpoint = attach(self._sock, endpoint, bind=bind, allow_remote=allow_remote)
        self._where = f"{node} <- {self.endpoint}"
        self._on_bad = _BadMessageLog(self._where)
        self._producer_session = b""
        self._last_n = 0
        self._acked = 0
        self._handed_out = 0
        self._producer: _Peer | None = None
        self._last_credit_ns = 0
        self._send_credit()  # the ready handshake: the producer sends nothing before this arrives

    @property
    def producer(self) -> PeerInfo | None:
        """The producer as last heard from (None before its first message)."""
        return None if self._producer is None else self._producer.info()

    def recv(self, timeout_s: float | None = None, stop: StopFlag | None = None) -> DataMessage | None:
        """The next message in order; acknowledges the one returned before. None on timeout/stop."""
        if self._handed_out:
            self._acked, self._handed_out = self._handed_out, 0
            self._send_credit()
        deadline = _Deadline(timeout_s)
        while not _stopped(stop):
            now = time.monotonic_ns()
            if now - self._last_credit_ns > self.heartbeat_s * 1e9:
                self._send_credit()  # heartbeat, and the handshake again for a restarted producer
            _check_silence(self._producer, now, self.peer_timeout_s, self._where, self.counters)
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
        could pass that message's output on).
        """
        if self._sock.closed:
            return
        if self._handed_out and acknowledge:
            self._acked, self._handed_out = self._handed_out, 0
        self._send_credit()
        self._send(encode(Status.now(self.node, self.role, "stopping", self.counters.as_dict()), self.limits))
        self._sock.close()

    def __enter__(self) -> LosslessReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

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
        if isinstance(msg, Status):
            if self._producer is None or self._producer.node != msg.node:
                self._producer = _Peer(msg.node, now)
                self.counters.peers_joined += 1
            self.counters.heartbeats_received += 1
            _heard(self._producer, now, self._where, msg)
            return None
        if self._producer is None:
            self._producer = _Peer("producer", now)
            self.counters.peers_joined += 1
        _heard(self._producer, now, self._where)
        self._producer.state = "alive"
        if not isinstance(msg, (Bundle, Result)):
            self.counters.bad += 1
            self._on_bad(self.counters.bad, ProtocolError(f"a producer sent a {msg.kind}"), frames)
            return None
        if n <= self._last_n:
            self.counters.duplicates += 1  # a redelivery after a reconnect: already have it
            return None
        self._last_n = self._handed_out = n
        self.counters.received += 1
        return msg


# --------------------------------------------------------------------------------------------------
# Latest-wins: XPUB (publisher) / SUB (subscriber)


class LatestPublisher:
    """Publisher end of the live channel: never blocks, heartbeats when idle, counts subscribers.

    ``sndhwm`` is small so that a slow subscriber costs drops, not memory or latency.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        node: str = "capture",
        role: str = "capture",
        bind: bool = True,
        allow_remote: bool = False,
        ctx: zmq.Context | None = None,
        config: SocketConfig = SocketConfig(),
        sndhwm: int = 2,
        heartbeat_s: float = 1.0,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.node, self.role, self.config, self.limits, self.heartbeat_s = (
            node,
            role,
            config,
            limits,
            heartbeat_s,
        )
        self.counters = ChannelCounters()
        self._sock = make_socket(ctx or zmq.Context.instance(), zmq.XPUB, config)
        self._sock.setsockopt(zmq.SNDHWM, sndhwm)
        # Pass every subscribe *and* unsubscribe up, so a re-joining subscriber is seen each time.
        self._sock.setsockopt(zmq.XPUB_VERBOSER, 1)
        self.endpoint = attach(self._sock, endpoint, bind=bind, allow_remote=allow_remote)
        self._where = f"{node} -> {self.endpoint}"
        self.subscribers = 0
        self._last_send_ns = 0
        # The node's own counters (bundles in, errors...), sent in every Status beside the channel's.
        self.status_counters: dict[str, int | float] = {}

    def _status(self, state: str) -> Status:
        return Status.now(self.node, self.role, state, {**self.counters.as_dict(), **self.status_counters})

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
        """:meth:`publish` under the sender interface shared with :class:`LosslessSender` (always True)."""
        self.publish(msg)
        return True

    def wait_for_subscriber(self, timeout_s: float | None = None, stop: StopFlag | None = None) -> bool:
        """Wait until at least one subscriber's subscription has arrived (no slow-joiner loss after).

        Once XPUB has delivered the subscription to us, its pipe is in the routing table, so every
        message published afterwards reaches that subscriber (up to its HWM).
        """
        deadline = _Deadline(timeout_s)
        while True:
            self._read_subscriptions()
            if self.subscribers > 0:
                return True
            if _stopped(stop) or deadline.expired():
                return False
            self._sock.poll(deadline.slice_ms(), zmq.POLLIN)

    def service(self, timeout_s: float = 0.0, stop: StopFlag | None = None) -> None:
        """Track (un)subscriptions for up to ``timeout_s`` and send a heartbeat if idle."""
        deadline = _Deadline(timeout_s)
        while True:
            self._read_subscriptions()
            idle = time.monotonic_ns() - self._last_send_ns > self.heartbeat_s * 1e9
            if idle and self._send(encode(self._status("alive"), self.limits)):
                self.counters.heartbeats_sent += 1
            if _stopped(stop) or deadline.expired():
                return
            self._sock.poll(deadline.slice_ms(), zmq.POLLIN)

    def close(self, final_state: str = "stopping", timeout_s: float = 1.0) -> None:
        """Say ``final_state`` ("stopping", or "finished" after the last data) and close the socket.

        A full subscriber queue drops the status silently like any message, and XPUB cannot tell
        (XPUB_NODROP does not help: a queue that overflowed is skipped until its reader catches
        up). "finished" must reach even a slow consumer, so it is repeated for ``timeout_s``
        while a subscriber is connected; "stopping" is sent once.
        """
        _final_state(final_state)
        if self._sock.closed:
            return
        frames = encode(self._status(final_state), self.limits)
        deadline = _Deadline(timeout_s if final_state == "finished" else 0.0)
        with contextlib.suppress(zmq.ZMQError):
            while True:
                self._read_subscriptions()
                self._send(frames)
                if deadline.expired() or not self.subscribers:
                    break
                self._sock.poll(deadline.slice_ms(), zmq.POLLIN)  # (un)subscriptions, or the period
        self._sock.close()

    def __enter__(self) -> LatestPublisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _read_subscriptions(self) -> None:
        while True:
            try:
                event = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            if event[:1] == b"\x01":
                self.subscribers += 1
                self.counters.peers_joined += 1
                log.info("%s: subscriber joined (%d now)", self._where, self.subscribers)
                # Say who we are at once rather than at the next idle heartbeat.
                if self._send(encode(self._status("ready"), self.limits)):
                    self.counters.heartbeats_sent += 1
            elif event[:1] == b"\x00":
                self.subscribers = max(0, self.subscribers - 1)
                log.info("%s: subscriber left (%d now)", self._where, self.subscribers)


class LatestSubscriber:
    """Subscriber end of the live channel: ``recv_latest`` returns the newest message, dropping older ones.

    Counts ``dropped`` (drained, older than the one returned) and ``missed`` (gaps in ``seq`` per
    ``source_id``: dropped upstream). A sequence that goes backwards is taken as a restarted source.
    """

    def __init__(
        self,
        endpoint: str,
        *,
        node: str = "engine",
        role: str = "engine",
        bind: bool = False,
        allow_remote: bool = False,
        ctx: zmq.Context | None = None,
        config: SocketConfig = SocketConfig(),
        rcvhwm: int = 2,
        peer_timeout_s: float = 5.0,
        max_drain: int = 10_000,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.node, self.role, self.config, self.limits = node, role, config, limits
        self.peer_timeout_s, self.max_drain = peer_timeout_s, max_drain
        self.counters = ChannelCounters()
        self._sock = make_socket(ctx or zmq.Context.instance(), zmq.SUB, config)
        self._sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self._sock.setsockopt(zmq.SUBSCRIBE, b"")
        self.endpoint = attach(self._sock, endpoint, bind=bind, allow_remote=allow_remote)
        self._where = f"{node} <- {self.endpoint}"
        self._on_bad = _BadMessageLog(self._where)
        self._publisher: _Peer | None = None
        self._last_seq: dict[str, int] = {}

    @property
    def publisher(self) -> PeerInfo | None:
        """The publisher as last heard from (None before its first message)."""
        return None if self._publisher is None else self._publisher.info()

    @property
    def producer(self) -> PeerInfo | None:
        """:attr:`publisher` under the receiver interface shared with :class:`LosslessReceiver`."""
        return self.publisher

    def recv_latest(self, timeout_s: float | None = None, stop: StopFlag | None = None) -> DataMessage | None:
        """Wait up to ``timeout_s`` for data, then drain the queue and return the newest message."""
        deadline = _Deadline(timeout_s)
        while not _stopped(stop):
            _check_silence(
                self._publisher, time.monotonic_ns(), self.peer_timeout_s, self._where, self.counters
            )
            if not self._sock.poll(deadline.slice_ms(), zmq.POLLIN):
                if deadline.expired():
                    return None
                continue
            newest = self._drain()
            if newest is not None:
                self.counters.received += 1
                return newest
        return None

    def recv(self, timeout_s: float | None = None, stop: StopFlag | None = None) -> DataMessage | None:
        """:meth:`recv_latest` under the receiver interface shared with :class:`LosslessReceiver`."""
        return self.recv_latest(timeout_s, stop)

    def close(self) -> None:
        if not self._sock.closed:
            self._sock.close()

    def __enter__(self) -> LatestSubscriber:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _drain(self) -> DataMessage | None:
        newest: DataMessage | None = None
        # Bounded, so a publisher faster than our decoding cannot keep us here forever.
        for _ in range(self.max_drain):
            try:
                frames = self._sock.recv_multipart(zmq.NOBLOCK, copy=not self.config.zero_copy)
            except zmq.Again:
                break
            msg = decode_or_count(frames, self.counters, limits=self.limits, on_bad=self._on_bad)
            if msg is None:
                continue
            now = time.monotonic_ns()
            if isinstance(msg, Status):
                if self._publisher is None or self._publisher.node != msg.node:
                    self._publisher = _Peer(msg.node, now)
                    self.counters.peers_joined += 1
                self.counters.heartbeats_received += 1
                _heard(self._publisher, now, self._where, msg)
                continue
            if not isinstance(msg, (Bundle, Result)):
                self.counters.bad += 1
                self._on_bad(self.counters.bad, ProtocolError(f"a publisher sent a {msg.kind}"), frames)
                continue
            if self._publisher is None:
                self._publisher = _Peer("publisher", now)
                self.counters.peers_joined += 1
            _heard(self._publisher, now, self._where)
            self._publisher.state = "alive"
            self._track_seq(msg)
            if newest is not None:
                self.counters.dropped += 1  # CONFLATE drops multipart frames; drain instead
            newest = msg
        return newest

    def _track_seq(self, msg: DataMessage) -> None:
        last = self._last_seq.get(msg.source_id)
        if last is not None:
            if msg.seq > last + 1:
                self.counters.missed += msg.seq - last - 1
            elif msg.seq <= last:
                log.info(
                    "%s: source %r restarted at seq %d (was %d)", self._where, msg.source_id, msg.seq, last
                )
        self._last_seq[msg.source_id] = msg.seq


# --------------------------------------------------------------------------------------------------
# One switch for the nodes: ``--policy lossless|latest``

POLICIES = ("lossless", "latest")
Sender = LosslessSender | LatestPublisher
Receiver = LosslessReceiver | LatestSubscriber


def open_sender(policy: str, endpoint: str, **options: Any) -> Sender:
    """The sending end of ``policy`` ("lossless": replay, "latest": live); ``options`` go to its class.

    Both ends share ``send(msg, timeout_s, stop) -> bool``, ``service(timeout_s, stop)``,
    ``counters``, ``status_counters`` (the node's own, added to its Status messages), ``endpoint``
    and ``close(final_state="stopping" | "finished")``.
    """
    if policy == "lossless":
        return LosslessSender(endpoint, **options)
    if policy == "latest":
        return LatestPublisher(endpoint, **options)
    raise ValueError(f"policy: got {policy!r}, expected one of {', '.join(POLICIES)}")


def flush_patiently(sender: Sender, *, idle_timeout_s: float, stop: StopFlag | None = None) -> bool:
    """At the end of a stream, wait until every message sent is acknowledged; True if so.

    Waits as long as the consumer makes progress (a slow engine may take seconds per bundle) and
    gives up after ``idle_timeout_s`` without a single acknowledgement, or on ``stop``. A
    latest-wins publisher keeps nothing, so it is always flushed.
    """
    if not isinstance(sender, LosslessSender):
        return True
    best, since = sender.in_flight, time.monotonic()
    while not sender.flush(timeout_s=0.5, stop=stop):
        if _stopped(stop):
            return False
        if sender.in_flight < best:
            best, since = sender.in_flight, time.monotonic()
        elif time.monotonic() - since > idle_timeout_s:
            return False
    return True


def open_receiver(policy: str, endpoint: str, **options: Any) -> Receiver:
    """The receiving end of ``policy``; both share ``recv(timeout_s, stop)``, ``counters``, ``producer``
    (its ``state`` is "finished" once a producer has said it sent everything) and ``close()``."""
    if policy == "lossless":
        return LosslessReceiver(endpoint, **options)
    if policy == "latest":
        return LatestSubscriber(endpoint, **options)
    raise ValueError(f"policy: got {policy!r}, expected one of {', '.join(POLICIES)}")
