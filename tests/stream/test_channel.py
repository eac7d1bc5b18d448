"""stream/channel.py: receiving that counts and skips bad messages.

Every wait is a poll with a generous bound; child peers are terminated (then killed) by the
``spawn_child`` fixture (tests/stream/conftest.py).
"""

from __future__ import annotations

import pytest
import zmq

from spikereveal.stream.protocol import encode
from spikereveal.stream.transport import (
    ChannelCounters,
    attach,
    make_socket,
    recv_message,
)
from tests.stream.channel_harness import WAIT_S, bundle

pytestmark = pytest.mark.timeout(60)  # every wait below is bounded far lower; this catches a bug


def test_recv_message_skips_bad_messages() -> None:
    ctx = zmq.Context.instance()
    a, b = make_socket(ctx, zmq.PAIR), make_socket(ctx, zmq.PAIR)
    try:
        attach(a, "inproc://recv-helper", bind=True)
        attach(b, "inproc://recv-helper", bind=False)
        counters = ChannelCounters()
        a.send_multipart([b"nope"])
        a.send_multipart(encode(bundle(3)))
        assert recv_message(b, timeout_s=WAIT_S, counters=counters).seq == 3
        assert counters.bad == 1 and counters.received == 1
        assert recv_message(b, timeout_s=0.05, counters=counters) is None
    finally:
        a.close(0)
        b.close(0)
