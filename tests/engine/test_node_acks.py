"""engine/node.py, lossless policy: the acknowledgement is end to end.

An engine acknowledges bundle n to the capture only once the display has acknowledged the result
made from it, so a result still queued in a dying engine's socket is not lost: the capture keeps
the bundle in flight and deals it again to another engine. Real engine processes
(``python -m spikereveal.tools.cli engine``) between a capture and a display that live in this
test process; every wait is bounded, every process killed at teardown.
"""

from __future__ import annotations

import time

import pytest

from spikereveal.engine.node import LOSSLESS_WINDOW
from spikereveal.stream.pool import PoolReceiver
from spikereveal.stream.transport import LosslessReceiver, LosslessSender, free_tcp_endpoint
from tests.engine.test_node import WAIT_S, engine, exit_code, make_bundle

pytestmark = pytest.mark.timeout(90)  # every wait below is bounded far lower; this catches a bug


def _until(condition, what: str, *, pump=lambda: None, timeout_s: float = WAIT_S) -> None:
    """Call ``pump`` (a capture's service, a display's recv) until ``condition()``; bounded."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        pump()


def test_a_result_the_display_has_not_acknowledged_keeps_its_bundle_in_flight(spawn) -> None:
    """GIVEN an engine whose display takes results but acknowledges none (a roomy window, so the
    engine is never blocked); WHEN the engine has sent every result; THEN the capture still holds
    every bundle (its window is full: no further bundle goes out); once the display acknowledges
    the first result, exactly that bundle is acknowledged upstream, and the stream ends cleanly."""
    sub, pub = free_tcp_endpoint(), free_tcp_endpoint()
    with (
        LosslessSender(sub, node="capture", heartbeat_s=0.1) as capture,
        LosslessReceiver(pub, node="display", heartbeat_s=0.1, window=16, manual_ack=True) as display,
    ):
        proc = engine(spawn, sub, pub, "--times", 1)
        results = []

        def take() -> None:
            msg = display.recv(0.02)
            if msg is not None:
                results.append((msg.seq, display.last_delivery))

        for seq in range(LOSSLESS_WINDOW):  # the engine's whole upstream window
            assert capture.send(make_bundle(seq), timeout_s=WAIT_S), f"bundle {seq} not taken"
        _until(lambda: len(results) == LOSSLESS_WINDOW, "every result", pump=take)
        assert [seq for seq, _ in results] == list(range(LOSSLESS_WINDOW))
        # Every result is out and the engine idles, yet nothing is acknowledged upstream: the capture
        # can send no more (an engine that acknowledged on sending would have freed its window at once).
        assert not capture.send(make_bundle(LOSSLESS_WINDOW), timeout_s=1.0)
        assert capture.in_flight == LOSSLESS_WINDOW and capture.counters.acked == 0

        display.acknowledge(results[0][1])  # the display is done with result 0 only
        _until(
            lambda: capture.counters.acked == 1, "bundle 0 acknowledged", pump=lambda: capture.service(0.02)
        )
        assert capture.in_flight == LOSSLESS_WINDOW - 1
        assert capture.send(make_bundle(LOSSLESS_WINDOW), timeout_s=WAIT_S)  # room for exactly one more

        _until(lambda: len(results) == LOSSLESS_WINDOW + 1, "the last result", pump=take)
        display.acknowledge(results[-1][1])  # cumulative: every result
        _until(lambda: capture.flush(0.02), "the capture's flush")
        assert capture.counters.acked == LOSSLESS_WINDOW + 1
        capture.close(final_state="finished")
        _until(lambda: display.producer is not None and display.producer.state == "finished",
               "the engine's finish", pump=lambda: display.recv(0.02))  # fmt: skip
    assert exit_code(proc) == 0
    assert "finished: 5 bundles in, 5 results out" in proc.log_path.read_text()


def test_an_engine_killed_with_unacknowledged_results_loses_nothing(spawn) -> None:
    """GIVEN two engines, A's display link taking A's results off the wire but never acknowledging
    (nor showing) them, as if they were still queued in A's socket when it died; WHEN A is
    SIGKILLed after sending results; THEN the capture deals those bundles again to B and the
    display shows every seq once, in order (under acknowledge-on-send they would be lost)."""
    n = 12
    sub, pub_a, pub_b = free_tcp_endpoint(), free_tcp_endpoint(), free_tcp_endpoint()
    with (
        LosslessSender(sub, node="capture", heartbeat_s=0.1, peer_timeout_s=5.0) as capture,
        LosslessReceiver(pub_a, node="display", heartbeat_s=0.1, manual_ack=True) as lost_link,
        LosslessReceiver(pub_b, node="display", heartbeat_s=0.1) as display_b,
    ):
        survivor = engine(spawn, sub, pub_b, "--times", 1, "--node", "engine-b")
        # The display's reorder buffer puts B's redone bundles in place; it may wait for them as long
        # as the capture takes to find A gone (its peer timeout), not give them up as gaps.
        shown = PoolReceiver([display_b], stall_s=2 * WAIT_S)
        got: list[int] = []
        lost_to_a: list[int] = []
        held_by_a: list[int] = []  # bundles the capture had in flight to A as each A result came

        def pump() -> None:
            capture.service(0.0)
            msg = lost_link.recv(0.0)
            if msg is not None:
                lost_to_a.append(msg.seq)
                held_by_a.append(capture.dealt().get("engine-a", 0))
            msg = shown.recv(0.01)
            if msg is not None:
                got.append(msg.seq)

        # Bundle 0 goes to B alone: the display's stream starts at 0 (what A sent is never shown).
        assert capture.send(make_bundle(0), timeout_s=WAIT_S)
        _until(lambda: got == [0], "result 0 from engine B", pump=pump)
        doomed = engine(spawn, sub, pub_a, "--times", 1, "--node", "engine-a")
        _until(
            lambda: "engine-a" in capture.dealt() and lost_link.producer is not None, "engine A", pump=pump
        )
        for seq in range(1, n):
            deadline = time.monotonic() + WAIT_S
            while not capture.send(make_bundle(seq), timeout_s=0.02):
                pump()
                assert time.monotonic() < deadline, f"stuck at bundle {seq}"
            pump()
        _until(lambda: len(lost_to_a) >= 1, "a result from engine A", pump=pump)
        # A's blocked (its display link is full) and soon silent: the capture will give its bundles
        # to B either way; as each result came, its bundle (and every one A took) was still held.
        assert all(held >= i + 1 for i, held in enumerate(held_by_a)), (held_by_a, lost_to_a)
        doomed.kill()  # SIGKILL: no "stopping", nothing flushed
        doomed.wait(WAIT_S)
        _until(lambda: len(got) >= n, "every result", pump=pump, timeout_s=2 * WAIT_S)
        _until(lambda: capture.flush(0.02), "the capture's flush", pump=lambda: display_b.recv(0.0))
        capture.close(final_state="finished")
        _until(
            lambda: display_b.producer.state == "finished",
            "engine B's finish",
            pump=lambda: display_b.recv(0.02),
        )
    assert got == list(range(n)), (got, lost_to_a)  # every seq, once, in order
    assert capture.counters.redelivered >= len(lost_to_a) >= 1
    assert set(lost_to_a) <= set(got)  # what was lost with A was done again by B
    assert exit_code(survivor) == 0
