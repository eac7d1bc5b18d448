"""One interface for both delivery policies: a node holds a :class:`Sender` and a :class:`Receiver`.

The lossless channel (``stream/lossless.py``) and the latest-wins channel (``stream/latest.py``)
implement the same two interfaces, so a node never asks which policy it was given:

- a sender's :meth:`Sender.wait_ready` waits until a message sent now will be taken: a credit
  from the consumer (lossless: the handshake and the backpressure), or a first subscriber (latest:
  the handshake only; a live stream never waits for its consumer after that, and a message sent
  while nobody listens is dropped: :meth:`Sender.send` returns False and counts it);
- a receiver's :meth:`Receiver.recv` returns the next message to process (lossless: the next in
  order, acknowledging the one before; latest: the newest, dropping older ones).

:class:`Endpoint` does the set-up all four ends share: the node's name and role, the socket
(``make_socket`` + options + ``attach``), counters, the bad-message log and the context manager.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import Any

import zmq

from spikereveal.stream.channel import BadMessageLog, ChannelCounters, DataMessage, PeerInfo
from spikereveal.stream.protocol import DEFAULT_LIMITS, Limits, Message
from spikereveal.stream.sockets import DEFAULT_SOCKET_CONFIG, SocketConfig, attach, make_socket
from spikereveal.stream.stopping import StopFlag, stopped


class Endpoint:
    """One end of a channel: a ZeroMQ socket of ``socket_type`` attached to ``endpoint``.

    ``sockopts`` are set before the socket binds or connects (high-water marks only take effect
    then). ``arrow`` is "->" for a sender and "<-" for a receiver; ``where`` ("engine <-
    tcp://127.0.0.1:5555") prefixes every log line of this end.
    """

    def __init__(
        self,
        endpoint: str,
        socket_type: int,
        *,
        node: str,
        role: str,
        bind: bool,
        allow_remote: bool = False,
        ctx: zmq.Context | None = None,
        config: SocketConfig = DEFAULT_SOCKET_CONFIG,
        limits: Limits = DEFAULT_LIMITS,
        sockopts: Mapping[int, int | bytes] | None = None,
        arrow: str = "->",
    ) -> None:
        self.node, self.role, self.config, self.limits = node, role, config, limits
        self.counters = ChannelCounters()
        self._sock = make_socket(ctx or zmq.Context.instance(), socket_type, config)
        for option, value in (sockopts or {}).items():
            self._sock.setsockopt(option, value)
        try:
            self.endpoint = attach(self._sock, endpoint, bind=bind, allow_remote=allow_remote)
        except BaseException:
            self._sock.close(0)
            raise
        self._where = f"{node} {arrow} {self.endpoint}"
        self._on_bad = BadMessageLog(self._where)

    @property
    def where(self) -> str:
        """``"<node> -> <endpoint>"`` (sender) or ``"<node> <- <endpoint>"`` (receiver), for logs."""
        return self._where

    def close(self) -> None:
        if not self._sock.closed:
            self._sock.close()

    def __enter__(self) -> Any:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Sender(Endpoint, ABC):
    """The sending end of either policy (capture -> engine, engine -> display).

    ``status_counters``: the node's own counters (bundles in, errors...), sent in every Status
    heartbeat beside the channel's.
    """

    status_counters: dict[str, int | float]

    @abstractmethod
    def wait_ready(self, timeout_s: float | None = None, stop: StopFlag | None = None) -> bool:
        """Wait until a message sent now will be taken; False on timeout or stop.

        Lossless: a consumer has room (a credit). Latest: a subscriber has joined once; after
        that True at once (a live stream never waits; what nobody takes is dropped by ``send``).
        Read and stamp the next message after this returns, so its stamps exclude the wait.
        """

    @abstractmethod
    def send(self, msg: Message, timeout_s: float | None = None, stop: StopFlag | None = None) -> bool:
        """Hand ``msg`` on; False if it was not (lossless: timeout or stop; latest: nobody listens)."""

    @abstractmethod
    def service(self, timeout_s: float = 0.0, stop: StopFlag | None = None) -> None:
        """Keep the channel alive while there is nothing to send (heartbeats, credits, joins)."""

    @abstractmethod
    def flush(self, timeout_s: float | None = None, stop: StopFlag | None = None) -> bool:
        """Wait until every message sent is acknowledged (True at once for latest-wins: it keeps none)."""

    @property
    @abstractmethod
    def in_flight(self) -> int:
        """Messages sent but not acknowledged yet (0 for latest-wins)."""

    @abstractmethod
    def peer_missing(self) -> str | None:
        """Why no consumer takes messages now ("no consumer has asked yet"), or None if one is there.

        For the node's "waiting for ..." notices: None also while a consumer is merely busy.
        """

    @abstractmethod
    def close(self, final_state: str = "stopping") -> None:  # type: ignore[override]
        """Say ``final_state`` ("stopping", or "finished" after the last data) and close."""

    def flush_patiently(self, *, idle_timeout_s: float, stop: StopFlag | None = None) -> bool:
        """At the end of a stream, wait until every message sent is acknowledged; True if so.

        Waits as long as the consumer makes progress (a slow engine may take seconds per bundle)
        and gives up after ``idle_timeout_s`` without a single acknowledgement, or on ``stop``.
        """
        best, since = self.in_flight, time.monotonic()
        while not self.flush(timeout_s=0.5, stop=stop):
            if stopped(stop):
                return False
            if self.in_flight < best:
                best, since = self.in_flight, time.monotonic()
            elif time.monotonic() - since > idle_timeout_s:
                return False
        return True


class Receiver(Endpoint, ABC):
    """The receiving end of either policy (engine <- capture, display <- engine)."""

    @abstractmethod
    def recv(self, timeout_s: float | None = None, stop: StopFlag | None = None) -> DataMessage | None:
        """The next Bundle/Result to process, or None on timeout or stop; never raises for a peer."""

    @property
    @abstractmethod
    def producer(self) -> PeerInfo | None:
        """The producer as last heard from (None before its first message); its ``state`` is
        "finished" once it has said it sent everything."""

    def peer_missing(self) -> str | None:
        """Why nothing can arrive now ("no producer heard yet", "producer 'capture' lost"), or None."""
        peer = self.producer
        if peer is None:
            return "no producer heard yet"
        if not peer.alive:
            return f"producer {peer.node!r} lost"
        if peer.state == "stopping":
            return f"producer {peer.node!r} stopped; waiting for it to come back"
        return None

    @abstractmethod
    def close(self, acknowledge: bool = True) -> None:  # type: ignore[override]
        """Close; ``acknowledge=False`` (lossless) leaves the last message for the next consumer."""
