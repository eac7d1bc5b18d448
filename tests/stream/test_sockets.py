"""stream/sockets.py: loopback-only endpoints, socket options, the message size limit.

Every wait is a poll with a generous bound; child peers are terminated (then killed) by the
``spawn_child`` fixture (tests/stream/conftest.py).
"""

from __future__ import annotations

import logging
import time

import pytest
import zmq

from spikereveal.stream.protocol import encode
from spikereveal.stream.sockets import LIVE_BUFFER_BYTES, LIVE_SOCKET_CONFIG
from spikereveal.stream.transport import (
    ChannelCounters,
    EndpointError,
    SocketConfig,
    attach,
    check_bind_endpoint,
    free_tcp_endpoint,
    make_socket,
    recv_message,
)
from tests.stream.channel_harness import WAIT_S, bundle

pytestmark = pytest.mark.timeout(60)  # every wait below is bounded far lower; this catches a bug


def test_bind_endpoint_policy(caplog: pytest.LogCaptureFixture) -> None:
    for ok in (
        "tcp://127.0.0.1:5555",
        "tcp://localhost:1",
        "tcp://127.0.0.2:*",
        "tcp://[::1]:80",
        "ipc:///tmp/x",
        "inproc://a",
    ):
        assert check_bind_endpoint(ok) == ok
    for remote in ("tcp://*:5555", "tcp://0.0.0.0:5555", "tcp://eth0:5555", "tcp://192.168.1.4:5555"):
        with pytest.raises(EndpointError, match="other hosts.*loopback"):
            check_bind_endpoint(remote)
    with caplog.at_level(logging.WARNING, logger="spikereveal.stream"):
        assert check_bind_endpoint("tcp://*:5555", allow_remote=True) == "tcp://*:5555"
    assert "beyond loopback" in caplog.text
    for bad, words in (
        ("udp://127.0.0.1:1", "not supported"),
        ("127.0.0.1:5555", "expected tcp://"),
        ("tcp://nohost", "HOST:PORT"),
    ):
        with pytest.raises(EndpointError, match=words):
            check_bind_endpoint(bad)


def test_remote_bind_refusal_names_the_option_that_allows_it() -> None:
    with pytest.raises(EndpointError) as refused:
        check_bind_endpoint("tcp://0.0.0.0:5555")
    message = str(refused.value)
    assert message.startswith("tcp://0.0.0.0:5555: binding to '0.0.0.0'")
    assert "--allow-remote" in message and "allow_remote: true" in message


def test_live_config_has_small_kernel_buffers_and_the_default_keeps_the_kernels() -> None:
    ctx = zmq.Context.instance()
    live, default = make_socket(ctx, zmq.SUB, LIVE_SOCKET_CONFIG), make_socket(ctx, zmq.SUB)
    try:
        assert LIVE_SOCKET_CONFIG.sndbuf_bytes == LIVE_SOCKET_CONFIG.rcvbuf_bytes == LIVE_BUFFER_BYTES
        assert live.getsockopt(zmq.SNDBUF) == live.getsockopt(zmq.RCVBUF) == LIVE_BUFFER_BYTES
        assert default.getsockopt(zmq.SNDBUF) == default.getsockopt(zmq.RCVBUF) == -1
    finally:
        live.close(0)
        default.close(0)


def test_free_endpoint_and_socket_options() -> None:
    ctx = zmq.Context.instance()
    config = SocketConfig(max_msg_bytes=12345, linger_ms=7, send_timeout_ms=11, recv_timeout_ms=13)
    sock = make_socket(ctx, zmq.PULL, config)
    try:
        assert sock.getsockopt(zmq.MAXMSGSIZE) == 12345
        assert sock.getsockopt(zmq.LINGER) == 7
        assert sock.getsockopt(zmq.SNDTIMEO) == 11 and sock.getsockopt(zmq.RCVTIMEO) == 13
        endpoint = free_tcp_endpoint()
        assert attach(sock, endpoint, bind=True) == endpoint
        with pytest.raises(EndpointError, match="cannot bind"):
            other = make_socket(ctx, zmq.PULL, config)
            try:
                attach(other, endpoint, bind=True)
            finally:
                other.close(0)
    finally:
        sock.close(0)
    picked = make_socket(ctx, zmq.PULL)
    try:
        resolved = attach(picked, "tcp://127.0.0.1:*", bind=True)
        assert resolved.startswith("tcp://127.0.0.1:") and not resolved.endswith("*")
    finally:
        picked.close(0)


def test_maxmsgsize_drops_an_oversized_frame_and_later_messages_arrive() -> None:
    ctx = zmq.Context.instance()
    pull = make_socket(ctx, zmq.PULL, SocketConfig(max_msg_bytes=1000))
    push = make_socket(ctx, zmq.PUSH, SocketConfig(reconnect_ivl_ms=20))
    try:
        endpoint = attach(pull, "tcp://127.0.0.1:*", bind=True)
        attach(push, endpoint, bind=False)
        counters = ChannelCounters()
        push.send_multipart(encode(bundle(0, blur_bytes=4000)))  # one frame above the cap
        deadline = time.monotonic() + WAIT_S
        seq, msg = 0, None
        while msg is None:  # libzmq drops the connection; the sender reconnects by itself
            assert time.monotonic() < deadline
            seq += 1
            push.send_multipart(encode(bundle(seq)), zmq.NOBLOCK)
            msg = recv_message(pull, timeout_s=0.2, counters=counters)
        assert msg.seq >= 1  # never the oversized one
    finally:
        push.close(0)
        pull.close(0)
