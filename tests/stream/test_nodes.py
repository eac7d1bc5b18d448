"""stream/nodes.py and stream/endpoint.py: what the nodes share, and the one channel interface."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import numpy as np
import pytest

from spikereveal.stream.channel import BadMessageLog, RateLimitedLog
from spikereveal.stream.endpoint import Receiver, Sender
from spikereveal.stream.nodes import NodeReport, OnceFilter, RealTimeCheck, WaitNotice, wait_noting
from spikereveal.stream.protocol import Result
from spikereveal.stream.transport import (
    LatestPublisher,
    LatestSubscriber,
    LosslessReceiver,
    LosslessSender,
    StopFlag,
    open_receiver,
    open_sender,
)


def result(seq: int, read_ns: int, source: str = "cam") -> Result:
    return Result(
        seq=seq,
        source_id=source,
        frames=np.zeros((1, 4, 4, 3), np.uint8),
        spike_times=(0,),
        model="test",
        stamps=(("capture.read", read_ns), ("engine.send", read_ns + 5)),
    )


# -- OnceFilter ---------------------------------------------------------------------------------


def test_once_filter_passes_each_capture_once_and_counts_the_rest() -> None:
    once = OnceFilter()
    first = [result(seq, 1000 + seq) for seq in range(4)]
    assert [once.first_time(r) for r in first] == [True] * 4
    # A restarted engine sends results 2 and 3 again: same capture, same read time.
    assert [once.first_time(result(seq, 1000 + seq)) for seq in (2, 3)] == [False, False]
    assert once.duplicates == 2
    # A restarted capture reads seq 0 again, at a new time: new data, shown.
    assert once.first_time(result(0, 99_999)) and once.duplicates == 2
    assert once.first_time(result(2, 1002, source="other"))  # the source is part of the key


def test_once_filter_forgets_beyond_its_capacity() -> None:
    once = OnceFilter(capacity=2)
    for seq in range(3):
        assert once.first_time(result(seq, seq))
    assert once.first_time(result(0, 0))  # forgotten: redeliveries never come that late
    assert not once.first_time(result(2, 2))
    with pytest.raises(ValueError, match="capacity"):
        OnceFilter(capacity=0)


# -- RateLimitedLog -----------------------------------------------------------------------------


def test_rate_limited_log_gives_the_first_ten_then_every_hundredth(caplog) -> None:
    logger = logging.getLogger("test.ratelimited")
    failures = RateLimitedLog("engine", logger)
    with caplog.at_level(logging.WARNING, logger="test.ratelimited"):
        for count in range(1, 301):
            failures.warn(count, "bundle %d skipped", count)
    assert [r.getMessage() for r in caplog.records][:2] == [
        "engine: bundle 1 skipped",
        "engine: bundle 2 skipped",
    ]
    assert len(caplog.records) == 10 + 3  # 1..10, 100, 200, 300
    assert isinstance(BadMessageLog("x"), RateLimitedLog)  # one log class for both kinds of failure


# -- WaitNotice ---------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_wait_notice_warns_every_period_until_the_wait_is_over(caplog) -> None:
    clock = FakeClock()
    notice = WaitNotice("engine", every_s=5.0, clock=clock)
    with caplog.at_level(logging.INFO, logger="spikereveal.nodes"):
        for t in (0.0, 1.0, 4.9, 5.0, 7.0, 10.0):
            clock.now = t
            notice.still("bundles from tcp://127.0.0.1:5555", "no producer heard yet")
        notice.over()
    levels = [(r.levelno, r.getMessage()) for r in caplog.records]
    assert levels[0] == (
        logging.INFO,
        "engine: waiting for bundles from tcp://127.0.0.1:5555 (no producer heard yet)",
    )
    warnings = [m for lv, m in levels if lv == logging.WARNING]
    assert warnings == [
        "engine: waiting for bundles from tcp://127.0.0.1:5555 (no producer heard yet), for 5 s now",
        "engine: waiting for bundles from tcp://127.0.0.1:5555 (no producer heard yet), for 10 s now",
        "engine: got it after 10 s of waiting",
    ]


def test_wait_noting_is_silent_while_the_peer_is_only_busy() -> None:
    clock = FakeClock()
    notice = WaitNotice("capture", every_s=1.0, clock=clock)
    answers = iter([False, False, False, True])

    def ready(_timeout_s: float) -> bool:
        clock.now += 2.0
        return next(answers)

    assert wait_noting(ready, notice, "a consumer", lambda: None, StopFlag())
    assert notice.notices == 0
    stop = StopFlag()
    stop.set()
    assert not wait_noting(ready, notice, "a consumer", lambda: "none yet", stop)


# -- RealTimeCheck ------------------------------------------------------------------------------


def test_real_time_check_warns_once_with_both_rates(caplog) -> None:
    check = RealTimeCheck("engine", done="results/s", coming="bundles/s coming in", consequence="drops")
    with caplog.at_level(logging.WARNING, logger="spikereveal.nodes"):
        # 20 bundles per second of sensor time, every other one served, 0.25 s of work each.
        warned = [check.add(seq, seq * 50_000_000, 0.25) for seq in range(0, 20, 2)]
    assert warned.count(True) == 1 and check.warned
    (record,) = caplog.records
    assert record.getMessage() == (
        "engine: falling behind real time: 4.0 results/s against 20.0 bundles/s coming in (drops)"
    )


def test_real_time_check_is_quiet_when_fast_enough_or_without_sensor_times() -> None:
    fast = RealTimeCheck("engine", done="results/s", coming="bundles/s")
    assert not any(fast.add(seq, seq * 50_000_000, 0.04) for seq in range(50))  # 25/s against 20/s
    no_clock = RealTimeCheck("engine", done="results/s", coming="bundles/s")
    assert not any(no_clock.add(seq, 0, 1.0) for seq in range(10)) and no_clock.source_hz is None
    catching_up = RealTimeCheck("capture", done="captures/s", coming="captures/s")
    # A slow first item (set-up), then faster than the source: never 1 s behind, never told.
    assert not any(catching_up.add(seq, seq * 50_000_000, 0.6 if seq == 0 else 0.04) for seq in range(40))
    restarted = RealTimeCheck("capture", done="captures/s", coming="captures/s", speed=2.0)
    for seq in (5, 6, 0, 1):  # seq going back: a restarted source, counted afresh
        restarted.add(seq, seq * 100_000_000, 0.01)
    assert restarted.source_hz == pytest.approx(20.0)  # 10/s of sensor time, replayed at 2x


# -- NodeReport ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Report(NodeReport):
    sent: int = 0

    @property
    def items_out(self) -> int:
        return self.sent


def test_node_report_rate_and_exit_code() -> None:
    done = _Report(policy="lossless", final_state="finished", unacknowledged=0, elapsed_s=2.0, sent=10)
    assert done.rate_hz == 5.0 and done.exit_code == 0
    assert _Report("lossless", "finished", 3, 1.0).exit_code == 1  # a finished replay lost some
    assert _Report("lossless", "stopping", 3, 0.0).exit_code == 0 and _Report("x", "y", 0, 0.0).rate_hz == 0


# -- one channel interface ----------------------------------------------------------------------


def test_both_policies_implement_one_interface() -> None:
    for policy in ("lossless", "latest"):
        with open_sender(policy, "tcp://127.0.0.1:*") as sender:
            assert isinstance(sender, Sender) and sender.in_flight == 0
            assert sender.peer_missing() is not None  # nobody there yet
            assert not sender.wait_ready(0.05)
            assert sender.flush_patiently(idle_timeout_s=0.1)  # nothing sent, nothing to wait for
            with open_receiver(policy, sender.endpoint) as receiver:
                assert isinstance(receiver, Receiver) and receiver.producer is None
                assert receiver.peer_missing() == "no producer heard yet"
                assert sender.wait_ready(10.0)  # the handshake: a credit, or a subscription
                assert sender.peer_missing() is None
                assert receiver.recv(0.0) is None
                receiver.close(acknowledge=False)
    assert issubclass(LosslessSender, Sender) and issubclass(LatestPublisher, Sender)
    assert issubclass(LosslessReceiver, Receiver) and issubclass(LatestSubscriber, Receiver)


def test_a_publisher_without_subscribers_drops_and_says_so() -> None:
    with LatestPublisher("tcp://127.0.0.1:*") as publisher:
        assert not publisher.send(result(0, 1)) and publisher.counters.dropped == 1
        assert publisher.counters.sent == 0 and publisher.flush(0.0)
