"""stream/stopping.py: the stop flag, signals, and waits that notice it.

Every wait is a poll with a generous bound; child peers are terminated (then killed) by the
``spawn_child`` fixture (tests/stream/conftest.py).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from spikereveal.stream.transport import (
    LosslessReceiver,
    LosslessSender,
    StopFlag,
)
from tests.stream.channel_harness import WAIT_S, Reports

pytestmark = pytest.mark.timeout(60)  # every wait below is bounded far lower; this catches a bug


def test_stop_flag_handles_signals_and_restores_handlers() -> None:
    before = signal.getsignal(signal.SIGTERM)
    stop = StopFlag()
    with stop.handle_signals():
        assert not stop.is_set()
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.wait(WAIT_S) and stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):  # a second signal while stopping forces the way out
            os.kill(os.getpid(), signal.SIGTERM)
            stop.wait(WAIT_S)
    assert signal.getsignal(signal.SIGTERM) is before


def test_waits_return_promptly_when_stopped() -> None:
    stop = StopFlag()
    stop.set()
    with LosslessReceiver("inproc://stopped", bind=True) as receiver:
        t0 = time.monotonic()
        assert receiver.recv(timeout_s=None, stop=stop) is None
        assert time.monotonic() - t0 < WAIT_S


def test_sigterm_stops_a_node_blocked_in_recv(spawn_child, reports: Reports) -> None:
    with LosslessSender("tcp://127.0.0.1:*", node="capture") as sender:
        child = spawn_child("wait_forever", sender.endpoint, reports.endpoint)
        assert reports.next()["event"] == "ready"
        assert sender.wait_for_credit(WAIT_S)  # the child is inside recv(timeout=None)
        child.send_signal(signal.SIGTERM)
        assert child.wait(timeout=WAIT_S) == 0
        assert reports.next()["event"] == "stopped"
