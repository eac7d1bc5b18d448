"""stream/endpoint.py: what the four channel ends share, and the defaults each one declares."""

from __future__ import annotations

import pytest
import zmq

from spikereveal.stream.endpoint import Endpoint
from spikereveal.stream.latest import LatestPublisher, LatestSubscriber
from spikereveal.stream.lossless import LosslessReceiver, LosslessSender
from spikereveal.stream.sockets import DEFAULT_SOCKET_CONFIG, LIVE_SOCKET_CONFIG, SocketConfig

pytestmark = pytest.mark.timeout(60)


@pytest.mark.parametrize(
    ("cls", "socket_type", "node", "config", "arrow"),
    [
        (LosslessSender, zmq.ROUTER, "capture", DEFAULT_SOCKET_CONFIG, "->"),
        (LosslessReceiver, zmq.DEALER, "engine", DEFAULT_SOCKET_CONFIG, "<-"),
        (LatestPublisher, zmq.XPUB, "capture", LIVE_SOCKET_CONFIG, "->"),
        (LatestSubscriber, zmq.SUB, "engine", LIVE_SOCKET_CONFIG, "<-"),
    ],
)
def test_each_end_declares_its_socket_and_defaults(
    cls: type[Endpoint], socket_type: int, node: str, config: SocketConfig, arrow: str
) -> None:
    # GIVEN no options WHEN an end opens THEN it has its own node/role, config and socket type;
    # a sender binds (a wildcard port is resolved), a receiver connects (the endpoint stays as given)
    endpoint = "tcp://127.0.0.1:*" if arrow == "->" else "tcp://127.0.0.1:9"
    with cls(endpoint) as end:
        assert (end.node, end.role, end.config) == (node, node, config)
        assert end._sock.type == socket_type
        bound = end.endpoint != endpoint  # only a bind resolves the wildcard port
        assert bound == (arrow == "->")
        assert end.where == f"{node} {arrow} {end.endpoint}"
    # GIVEN options WHEN given THEN they win, and role keeps its default when only node is named
    small = SocketConfig(sndbuf_bytes=4096)
    with cls("inproc://endpoint-options", node="mine", bind=True, config=small) as end:
        assert (end.node, end.role, end.config, end.endpoint) == (
            "mine",
            node,
            small,
            "inproc://endpoint-options",
        )


def test_an_unknown_final_state_is_refused_even_after_close() -> None:
    sender = LosslessSender("inproc://endpoint-final")
    sender.close()
    with pytest.raises(ValueError, match="final_state: got 'done'"):
        sender.close(final_state="done")
    sender.close()  # a second close says nothing and does not fail
