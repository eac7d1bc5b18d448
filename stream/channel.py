"""What both delivery policies share: counters, bad-message logging, peer liveness."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import zmq

from spikereveal.stream.protocol import (
    DEFAULT_LIMITS,
    FINAL_STATES,
    Bundle,
    Limits,
    Message,
    ProtocolError,
    Result,
    Status,
    decode,
)
from spikereveal.stream.stopping import Deadline, StopFlag, stopped

log = logging.getLogger("spikereveal.stream")

DataMessage = Bundle | Result


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


class RateLimitedLog:
    """Warn about a repeated failure without flooding the log: the first ``first``, then every ``every``-th.

    One per kind of failure (bad messages on a channel end, bundles an engine could not process);
    ``count`` is that failure's running count, which the caller keeps in its counters anyway.
    """

    def __init__(
        self, where: str, logger: logging.Logger = log, *, first: int = 10, every: int = 100
    ) -> None:
        self.where, self.logger, self.first, self.every = where, logger, first, every

    def due(self, count: int) -> bool:
        """Whether failure number ``count`` (1, 2, ...) is logged."""
        return count <= self.first or count % self.every == 0

    def warn(self, count: int, message: str, *args: object, exc_info: bool = False) -> None:
        """``logger.warning("<where>: " + message, *args)`` if failure ``count`` is due."""
        if self.due(count):
            self.logger.warning("%s: " + message, self.where, *args, exc_info=exc_info)


class BadMessageLog(RateLimitedLog):
    """Log bad messages without flooding (see :class:`RateLimitedLog`), with their frame sizes."""

    def __call__(self, count: int, error: Exception, frames: Sequence[Any]) -> None:
        if self.due(count):
            sizes = [frame_len(f) for f in frames][:8]
            self.warn(count, "bad message #%d (frame sizes %s): %s", count, sizes, error)


def frame_len(frame: Any) -> int:
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
        (on_bad or BadMessageLog("receive"))(counters.bad, exc, frames)
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
    deadline = Deadline(timeout_s)
    on_bad = BadMessageLog(where)
    while not stopped(stop):
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
class Peer:
    node: str
    last_seen_ns: int
    state: str = "ready"
    status: Status | None = None
    lost: bool = False

    def info(self) -> PeerInfo:
        return PeerInfo(self.node, not self.lost, self.state, self.last_seen_ns, self.status)


def heard(peer: Peer, now_ns: int, where: str, status: Status | None = None) -> None:
    peer.last_seen_ns = now_ns
    if status is not None:
        peer.status, peer.state = status, status.state
    if peer.lost:
        peer.lost = False
        log.info("%s: peer %r is back", where, peer.node)


def track_producer(
    peer: Peer | None, msg: Message, now_ns: int, where: str, counters: ChannelCounters, unnamed: str
) -> Peer:
    """The producer after ``msg`` came from it (a receiver's bookkeeping, whatever the policy).

    A Status names the producer (a new name is a new peer: a replaced or restarted producer) and
    counts as a heartbeat; any other message marks it "alive", and one that comes before any
    Status makes a peer called ``unnamed``. ``counters.peers_joined`` counts each new peer.
    """
    if isinstance(msg, Status):
        if peer is None or peer.node != msg.node:
            peer = Peer(msg.node, now_ns)
            counters.peers_joined += 1
        counters.heartbeats_received += 1
        heard(peer, now_ns, where, msg)
        return peer
    if peer is None:
        peer = Peer(unnamed, now_ns)
        counters.peers_joined += 1
    heard(peer, now_ns, where)
    peer.state = "alive"
    return peer


def check_silence(
    peer: Peer | None, now_ns: int, timeout_s: float, where: str, counters: ChannelCounters
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


def new_session() -> bytes:
    return os.urandom(8)


def checked_final_state(state: str) -> str:
    if state not in FINAL_STATES:
        raise ValueError(f"final_state: got {state!r}, expected one of {', '.join(FINAL_STATES)}")
    return state
