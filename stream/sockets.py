"""ZeroMQ sockets for the nodes: loopback-only endpoints unless told otherwise, bounded waits."""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass

import zmq

from spikereveal.stream.protocol import (
    DEFAULT_LIMITS,
    ProtocolError,
)

log = logging.getLogger("spikereveal.stream")


class EndpointError(ProtocolError):
    """An endpoint string is malformed or would expose a node beyond this host without consent."""


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
                "expected a loopback address such as tcp://127.0.0.1:PORT, or pass --allow-remote "
                "(allow_remote: true in a run YAML) to accept other hosts on purpose"
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
    zero-copy costs more than it saves (~64 KB measured). ``sndbuf_bytes``/``rcvbuf_bytes``:
    SO_SNDBUF/SO_RCVBUF, -1 for the kernel's (auto-tuned) default; the latest-wins channel uses
    :data:`LIVE_SOCKET_CONFIG`.
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


DEFAULT_SOCKET_CONFIG = SocketConfig()

#: Kernel socket buffer of each end of a latest-wins channel. The kernel's default buffers grow to
#: megabytes on loopback, where stale live bundles wait unseen by ZeroMQ's high-water marks (which
#: count messages, not bytes). 64 KiB keeps that to a bundle or two and still lets a 6 MB bundle
#: through at full speed: measured 1.5 ms for 6 MB across 127.0.0.1 with 64 KiB, 1.8 ms with the
#: defaults, 8.8 ms with 16 KiB (Linux doubles the value asked for and switches off auto-tuning).
LIVE_BUFFER_BYTES = 64 * 1024

#: The socket options of a latest-wins channel: the defaults with small kernel buffers.
LIVE_SOCKET_CONFIG = SocketConfig(sndbuf_bytes=LIVE_BUFFER_BYTES, rcvbuf_bytes=LIVE_BUFFER_BYTES)


def make_socket(
    ctx: zmq.Context, socket_type: int, config: SocketConfig = DEFAULT_SOCKET_CONFIG
) -> zmq.Socket:
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
