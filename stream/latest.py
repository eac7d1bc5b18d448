"""The latest-wins channel (live): an XPUB publisher that never blocks, a SUB that keeps the newest.

See ``spikereveal.stream.transport`` for why draining and not ZMQ_CONFLATE.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import zmq

from spikereveal.stream.channel import (
    BadMessageLog,
    ChannelCounters,
    DataMessage,
    Peer,
    PeerInfo,
    check_silence,
    checked_final_state,
    decode_or_count,
    heard,
)
from spikereveal.stream.protocol import (
    DEFAULT_LIMITS,
    Bundle,
    Limits,
    Message,
    ProtocolError,
    Result,
    Status,
    encode,
)
from spikereveal.stream.sockets import DEFAULT_SOCKET_CONFIG, SocketConfig, attach, make_socket
from spikereveal.stream.stopping import Deadline, StopFlag, stopped

log = logging.getLogger("spikereveal.stream")


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
        config: SocketConfig = DEFAULT_SOCKET_CONFIG,
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
        checked_final_state(final_state)
        if self._sock.closed:
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
        config: SocketConfig = DEFAULT_SOCKET_CONFIG,
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
        self._on_bad = BadMessageLog(self._where)
        self._publisher: Peer | None = None
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
        deadline = Deadline(timeout_s)
        while not stopped(stop):
            check_silence(
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
                    self._publisher = Peer(msg.node, now)
                    self.counters.peers_joined += 1
                self.counters.heartbeats_received += 1
                heard(self._publisher, now, self._where, msg)
                continue
            if not isinstance(msg, (Bundle, Result)):
                self.counters.bad += 1
                self._on_bad(self.counters.bad, ProtocolError(f"a publisher sent a {msg.kind}"), frames)
                continue
            if self._publisher is None:
                self._publisher = Peer("publisher", now)
                self.counters.peers_joined += 1
            heard(self._publisher, now, self._where)
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
