"""stream/transport.py: one interface over both policies, and patient flushing.

Every wait is a poll with a generous bound; child peers are terminated (then killed) by the
``spawn_child`` fixture (tests/stream/conftest.py).
"""

from __future__ import annotations

import time

import pytest

from spikereveal.stream.transport import (
    POLICIES,
    LatestPublisher,
    LosslessReceiver,
    LosslessSender,
    flush_patiently,
    open_receiver,
    open_sender,
)
from tests.stream.channel_harness import WAIT_S, bundle

pytestmark = pytest.mark.timeout(60)  # every wait below is bounded far lower; this catches a bug


def test_open_by_policy_gives_the_same_interface() -> None:
    for policy in POLICIES:
        with (
            open_sender(policy, f"inproc://policy-{policy}") as sender,
            open_receiver(policy, f"inproc://policy-{policy}") as receiver,
        ):
            if isinstance(sender, LatestPublisher):
                assert sender.wait_for_subscriber(WAIT_S)
            assert sender.send(bundle(1), timeout_s=WAIT_S)
            msg = receiver.recv(WAIT_S)
            assert msg is not None and msg.seq == 1 and receiver.counters.received == 1
    with pytest.raises(ValueError, match="policy"):
        open_sender("fast", "inproc://x")
    with pytest.raises(ValueError, match="policy"):
        open_receiver("fast", "inproc://x")


def test_flush_patiently_waits_for_progress_and_gives_up_without() -> None:
    with (
        LosslessSender("inproc://patient", bind=True) as sender,
        LosslessReceiver("inproc://patient") as receiver,
    ):
        assert sender.send(bundle(0), timeout_s=WAIT_S) and sender.send(bundle(1), timeout_s=WAIT_S)
        assert receiver.recv(WAIT_S).seq == 0 and receiver.recv(WAIT_S).seq == 1  # 1 is never acked
        t0 = time.monotonic()
        assert not flush_patiently(sender, idle_timeout_s=0.3)  # acked 0, then nothing: gives up
        assert sender.in_flight == 1 and time.monotonic() - t0 < WAIT_S
        receiver.recv(0.0)  # acknowledges 1
        assert flush_patiently(sender, idle_timeout_s=WAIT_S)
    with LatestPublisher("inproc://patient-latest") as publisher:
        assert flush_patiently(publisher, idle_timeout_s=0.0)  # keeps nothing
