"""Sockets between nodes: safe endpoints, bounded waits, and the two delivery policies.

Two policies, one per use, behind one interface (``stream/endpoint.py``: every sender is a
:class:`~spikereveal.stream.endpoint.Sender`, every receiver a
:class:`~spikereveal.stream.endpoint.Receiver`, so a node never asks which policy it holds):

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

from typing import Any

from spikereveal.stream.channel import ChannelCounters, DataMessage, PeerInfo, decode_or_count, recv_message
from spikereveal.stream.endpoint import Receiver, Sender
from spikereveal.stream.latest import LatestPublisher, LatestSubscriber
from spikereveal.stream.lossless import LosslessReceiver, LosslessSender
from spikereveal.stream.sockets import (
    EndpointError,
    SocketConfig,
    attach,
    check_bind_endpoint,
    free_tcp_endpoint,
    is_loopback,
    make_socket,
)
from spikereveal.stream.stopping import POLL_SLICE_S, StopFlag

__all__ = [
    "POLICIES",
    "POLL_SLICE_S",
    "ChannelCounters",
    "DataMessage",
    "EndpointError",
    "LatestPublisher",
    "LatestSubscriber",
    "LosslessReceiver",
    "LosslessSender",
    "PeerInfo",
    "Receiver",
    "Sender",
    "SocketConfig",
    "StopFlag",
    "attach",
    "check_bind_endpoint",
    "decode_or_count",
    "flush_patiently",
    "free_tcp_endpoint",
    "is_loopback",
    "make_socket",
    "open_receiver",
    "open_sender",
    "recv_message",
]


POLICIES = ("lossless", "latest")


def open_sender(policy: str, endpoint: str, **options: Any) -> Sender:
    """The sending end of ``policy`` ("lossless": replay, "latest": live); ``options`` go to its class.

    Both are a :class:`~spikereveal.stream.endpoint.Sender`: ``wait_ready``, ``send``, ``service``,
    ``flush``, ``in_flight``, ``counters``, ``status_counters`` (the node's own, added to its
    Status messages), ``endpoint`` and ``close(final_state="stopping" | "finished")``.
    """
    if policy == "lossless":
        return LosslessSender(endpoint, **options)
    if policy == "latest":
        return LatestPublisher(endpoint, **options)
    raise ValueError(f"policy: got {policy!r}, expected one of {', '.join(POLICIES)}")


def flush_patiently(sender: Sender, *, idle_timeout_s: float, stop: StopFlag | None = None) -> bool:
    """:meth:`Sender.flush_patiently <spikereveal.stream.endpoint.Sender.flush_patiently>`: True once
    everything sent is acknowledged (at once for latest-wins, which keeps nothing)."""
    return sender.flush_patiently(idle_timeout_s=idle_timeout_s, stop=stop)


def open_receiver(policy: str, endpoint: str, **options: Any) -> Receiver:
    """The receiving end of ``policy``: a :class:`~spikereveal.stream.endpoint.Receiver` with
    ``recv(timeout_s, stop)``, ``counters``, ``producer`` (its ``state`` is "finished" once a
    producer has said it sent everything) and ``close(acknowledge=True)``."""
    if policy == "lossless":
        return LosslessReceiver(endpoint, **options)
    if policy == "latest":
        return LatestSubscriber(endpoint, **options)
    raise ValueError(f"policy: got {policy!r}, expected one of {', '.join(POLICIES)}")
