"""What the three nodes (capture, engine, display) share besides their channels.

- :class:`NodeReport`: what one run of a node did (``rate_hz``, ``exit_code``, ``summary()``).
- :class:`WaitNotice`: say what a node waits for, every few seconds, until it gets it; a standalone
  ``spikereveal engine`` with no capture node must not sit there in silence.
- :class:`RealTimeCheck`: say once when a node works slower than the stream's real-time rate.
- :class:`OnceFilter`: each capture reaches the user once (exactly once to the user), although a
  lossless channel is at-least-once across a producer restart.

Every node is a small class ``XNode(config, stop, ...)`` whose ``run()`` returns its report;
``run_capture``/``run_engine``/``run_display`` are one-line wrappers around it.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from spikereveal.stream.channel import DataMessage
from spikereveal.stream.stopping import StopFlag

log = logging.getLogger("spikereveal.nodes")

#: Seconds between two "waiting for ..." notices. WARNING level: the CLI's default shows it.
WAIT_NOTICE_S = 5.0


@dataclass(frozen=True)
class NodeReport:
    """What one run of a node did; each node adds its own counts.

    ``final_state``: "finished" (the stream ended) or "stopping" (a signal); ``unacknowledged``:
    messages its consumer never confirmed (lossless). Subclasses name what ``rate_hz`` counts
    with :attr:`items_out`.
    """

    policy: str
    final_state: str
    unacknowledged: int
    elapsed_s: float

    @property
    def items_out(self) -> int:
        """Messages sent on (bundles for capture, results for the engine)."""
        raise NotImplementedError

    @property
    def rate_hz(self) -> float:
        """:attr:`items_out` per second of the run."""
        return self.items_out / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """0, or 1 when a finished stream could not deliver everything (the consumer went away)."""
        return 1 if self.final_state == "finished" and self.unacknowledged else 0


class WaitNotice:
    """Say what a node waits for: once at INFO when the wait starts, then every ``every_s`` at WARNING.

    Call :meth:`still` on every pass of a wait loop (cheap: it logs only when due) and
    :meth:`over` when the wait ends. ``clock``: monotonic seconds.
    """

    def __init__(
        self, node: str, every_s: float = WAIT_NOTICE_S, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.node, self.every_s, self.clock = node, every_s, clock
        self._since: float | None = None
        self._next = 0.0
        self.notices = 0  # warnings given, for tests and reports

    def still(self, what: str, why: str | None = None) -> None:
        """Still waiting for ``what`` ("bundles from tcp://...") because ``why`` ("no producer heard yet")."""
        now = self.clock()
        text = what if why is None else f"{what} ({why})"
        if self._since is None:
            self._since, self._next = now, now + self.every_s
            log.info("%s: waiting for %s", self.node, text)
        elif now >= self._next:
            self._next = now + self.every_s
            self.notices += 1
            log.warning("%s: waiting for %s, for %.0f s now", self.node, text, now - self._since)

    def over(self) -> None:
        """The wait ended (the peer is there); the next wait starts afresh."""
        if self._since is not None and self.notices:
            log.warning("%s: got it after %.0f s of waiting", self.node, self.clock() - self._since)
        self._since, self.notices = None, 0


def wait_noting(
    ready: Callable[[float], bool],
    notice: WaitNotice,
    what: str,
    why: Callable[[], str | None],
    stop: StopFlag,
    slice_s: float = 0.5,
) -> bool:
    """Call ``ready(slice_s)`` until it is True (returns True) or ``stop`` (returns False).

    While it waits and ``why()`` names a missing peer, ``notice`` says so; a peer that is there
    but busy (a full credit window) is waited for in silence.
    """
    while not stop.is_set():
        if ready(slice_s):
            notice.over()
            return True
        reason = why()
        if reason is not None:
            notice.still(what, reason)
    return False


class RealTimeCheck:
    """Warn once when a node does its work slower than the stream's real-time rate.

    Feed every item with :meth:`add`: its ``seq`` and sensor time (``rgb_t_ns``), and the seconds
    the node itself spent on it (``busy_s``: reading and sending for capture, processing and
    sending for the engine; never the time spent waiting for a peer). The source's rate is
    ``speed`` x (items per second of sensor time, from seq and sensor-time spans: an engine under
    latest-wins sees only some of the items); the node's own rate is items per busy second. A
    node is told once it is below ``tolerance`` x the source's rate *and* its work on the items so
    far took ``min_lag_s`` longer than the source took to produce them (so that the set-up cost of
    the first few items, which a paced replay then catches up, is not taken for falling behind),
    once per run: ``"<where>: falling behind real time: <own rate> <done>
    against <source rate> <coming> (<consequence>)"``, e.g. done="results/s", coming="bundles/s
    coming in".
    """

    def __init__(
        self,
        where: str,
        *,
        done: str,
        coming: str,
        consequence: str = "",
        speed: float = 1.0,
        min_items: int = 5,
        min_lag_s: float = 1.0,
        tolerance: float = 0.9,
    ) -> None:
        self.where, self.done, self.coming, self.consequence = where, done, coming, consequence
        self.speed, self.min_items, self.min_lag_s, self.tolerance = speed, min_items, min_lag_s, tolerance
        self.warned = False
        self._first: tuple[int, int] | None = None  # (seq, sensor ns) of the first item
        self._last: tuple[int, int] | None = None
        self._items = 0
        self._busy_s = 0.0

    def add(self, seq: int, sensor_t_ns: int, busy_s: float) -> bool:
        """Record one item; True if this call gave the warning."""
        if self.warned:
            return False
        if self._last is not None and (seq <= self._last[0] or sensor_t_ns < self._last[1]):
            self._first, self._items, self._busy_s = None, 0, 0.0  # a restarted source: start again
        if self._first is None:
            self._first = (seq, sensor_t_ns)
        self._last = (seq, sensor_t_ns)
        self._items += 1
        self._busy_s += max(0.0, busy_s)
        if self._items < self.min_items:
            return False
        source_hz, own_hz = self.source_hz, self.own_hz
        if source_hz is None or own_hz is None or own_hz >= self.tolerance * source_hz:
            return False
        if self._busy_s - self._items / source_hz < self.min_lag_s:
            return False
        self.warned = True
        log.warning(
            "%s: falling behind real time: %.1f %s against %.1f %s%s",
            self.where,
            own_hz,
            self.done,
            source_hz,
            self.coming,
            f" ({self.consequence})" if self.consequence else "",
        )
        return True

    @property
    def source_hz(self) -> float | None:
        """Items per second of sensor time x ``speed`` (None until the sensor clock has advanced)."""
        if self._first is None or self._last is None:
            return None
        span_ns = self._last[1] - self._first[1]
        if span_ns <= 0 or self._last[0] <= self._first[0]:
            return None
        return self.speed * (self._last[0] - self._first[0]) * 1e9 / span_ns

    @property
    def own_hz(self) -> float | None:
        """Items per second of the node's own work."""
        return self._items / self._busy_s if self._busy_s > 0 else None


class OnceFilter:
    """Exactly once to the user: pass each capture once, count what comes again.

    Lossless delivery is exactly once per producer session but at-least-once across a producer
    restart: an engine killed after sending a result, before the bundle's acknowledgement left,
    gets that bundle again in its successor, which sends the same result again. A capture is
    known by ``(source_id, seq, first stamp)``: the first stamp is when the capture was read
    (``capture.read``) and travels unchanged through every redelivery, while a capture node
    that is restarted reads its captures again at new times, so a replay started again is new
    data rather than duplicates. Remembers the last ``capacity`` captures (redeliveries come
    within a few credit windows of the original).
    """

    def __init__(self, capacity: int = 4096) -> None:
        if capacity < 1:
            raise ValueError(f"capacity: got {capacity}, expected >= 1")
        self.capacity = capacity
        self.duplicates = 0
        self._seen: OrderedDict[tuple[str, int, int], None] = OrderedDict()

    @staticmethod
    def key(msg: DataMessage) -> tuple[str, int, int]:
        return (msg.source_id, msg.seq, msg.stamps[0][1] if msg.stamps else -1)

    def first_time(self, msg: DataMessage) -> bool:
        """True the first time ``msg``'s capture is seen; False (and ``duplicates`` + 1) after."""
        key = self.key(msg)
        if key in self._seen:
            self._seen.move_to_end(key)
            self.duplicates += 1
            return False
        self._seen[key] = None
        if len(self._seen) > self.capacity:
            self._seen.popitem(last=False)
        return True
