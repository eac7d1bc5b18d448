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
Each end declares only what differs (its socket type, its default node, bind and socket config)
as class attributes, and takes the shared options as :class:`EndpointOptions`.
"""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Mapping
from typing import TYPE_CHECKING, ClassVar, TypedDict

import zmq

from spikereveal.stream.channel import (
    BadMessageLog,
    ChannelCounters,
    DataMessage,
    PeerInfo,
    checked_final_state,
)
from spikereveal.stream.protocol import DEFAULT_LIMITS, Limits, Message, Status
from spikereveal.stream.sockets import DEFAULT_SOCKET_CONFIG, SocketConfig, attach, make_socket
from spikereveal.stream.stopping import StopFlag, stopped

if TYPE_CHECKING:  # typing_extensions for Python 3.10; annotations only, never imported at run time
    from typing_extensions import Self, Unpack


class EndpointOptions(TypedDict, total=False):
    """The keyword options every end takes (see :class:`Endpoint`), for ``**options`` pass-through."""

    node: str
    role: str
    bind: bool
    allow_remote: bool
    ctx: zmq.Context | None
    config: SocketConfig
    limits: Limits


class Endpoint:
    """One end of a channel: a ZeroMQ socket of :attr:`socket_type` attached to ``endpoint``.

    Options (:class:`EndpointOptions`): ``node`` (the name in logs and Status messages) and
    ``role`` both default to :attr:`default_node` ("capture" for a sender, "engine" for a
    receiver); ``bind`` to :attr:`default_bind` (a sender binds, a receiver connects);
    ``allow_remote`` to False; ``ctx`` to the process-wide context; ``config`` to
    :attr:`default_config`; ``limits`` to :data:`~spikereveal.stream.protocol.DEFAULT_LIMITS`.

    ``sockopts`` (from the end itself) are set before the socket binds or connects (high-water
    marks only take effect then). ``where`` ("engine <- tcp://127.0.0.1:5555") prefixes every log
    line of this end; :attr:`arrow` is "->" for a sender and "<-" for a receiver.
    """

    socket_type: ClassVar[int]
    default_node: ClassVar[str]
    default_bind: ClassVar[bool]
    default_config: ClassVar[SocketConfig] = DEFAULT_SOCKET_CONFIG
    arrow: ClassVar[str]

    def __init__(
        self,
        endpoint: str,
        *,
        sockopts: Mapping[int, int | bytes] | None = None,
        node: str | None = None,
        role: str | None = None,
        bind: bool | None = None,
        allow_remote: bool = False,
        ctx: zmq.Context | None = None,
        config: SocketConfig | None = None,
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        self.node = self.default_node if node is None else node
        self.role = self.default_node if role is None else role
        self.config = self.default_config if config is None else config
        self.limits = limits
        self.counters = ChannelCounters()
        self._sock = make_socket(ctx or zmq.Context.instance(), self.socket_type, self.config)
        for option, value in (sockopts or {}).items():
            self._sock.setsockopt(option, value)
        bind = self.default_bind if bind is None else bind
        try:
            self.endpoint = attach(self._sock, endpoint, bind=bind, allow_remote=allow_remote)
        except BaseException:
            self._sock.close(0)
            raise
        self._where = f"{self.node} {self.arrow} {self.endpoint}"
        self._on_bad = BadMessageLog(self._where)

    @property
    def where(self) -> str:
        """``"<node> -> <endpoint>"`` (sender) or ``"<node> <- <endpoint>"`` (receiver), for logs."""
        return self._where

    def close(self) -> None:
        if not self._sock.closed:
            self._sock.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class Sender(Endpoint, ABC):
    """The sending end of either policy (capture -> engine, engine -> display).

    ``status_counters``: the node's own counters (bundles in, errors...), sent in every Status
    heartbeat beside the channel's.
    """

    default_node = "capture"
    default_bind = True
    arrow = "->"

    def __init__(
        self,
        endpoint: str,
        *,
        sockopts: Mapping[int, int | bytes] | None = None,
        **options: Unpack[EndpointOptions],
    ) -> None:
        super().__init__(endpoint, sockopts=sockopts, **options)
        self.status_counters: dict[str, int | float] = {}

    def _status(self, state: str) -> Status:
        """A Status of this end in ``state``, with the channel's and the node's counters."""
        return Status.now(self.node, self.role, state, {**self.counters.as_dict(), **self.status_counters})

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

    def _begin_close(self, final_state: str) -> bool:
        """The first step of :meth:`close`: refuse an unknown ``final_state`` (a caller's bug, so it
        raises even on a closed end); False if already closed (a second close says nothing)."""
        checked_final_state(final_state)
        return not self._sock.closed

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

    default_node = "engine"
    default_bind = False
    arrow = "<-"

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
