"""Stopping a node loop: a flag set by SIGINT/SIGTERM and waits sliced so they notice it."""

from __future__ import annotations

import contextlib
import logging
import signal
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

log = logging.getLogger("spikereveal.stream")


# Longest single wait inside any call: bounds how late a loop notices its StopFlag.
POLL_SLICE_S = 0.05


class StopFlag:
    """A flag set by SIGINT/SIGTERM (or by code) that node loops check between bounded waits.

    ``with stop.handle_signals():`` installs the handlers in the main thread and restores the old
    ones on exit. A second signal while stopping raises KeyboardInterrupt, so a stuck node can
    still be interrupted by hand.
    """

    def __init__(self) -> None:
        self._event = threading.Event()
        self.signum: int | None = None

    def set(self, signum: int | None = None) -> None:
        if self.signum is None:
            self.signum = signum
        self._event.set()

    def is_set(self) -> bool:
        return self._event.is_set()

    def __bool__(self) -> bool:
        # ``stop or StopFlag()`` and ``while not stop`` read naturally but are easy to get wrong
        # (an unset flag would be falsy); make every caller say is_set().
        raise TypeError("a StopFlag has no truth value; use stop.is_set()")

    def wait(self, timeout_s: float | None = None) -> bool:
        """Sleep up to ``timeout_s`` unless stopped; True if stopped (use instead of time.sleep)."""
        return self._event.wait(timeout_s)

    @contextlib.contextmanager
    def handle_signals(self, signals: Sequence[int] = (signal.SIGINT, signal.SIGTERM)) -> Iterator[StopFlag]:
        def handler(signum: int, _frame: Any) -> None:
            if self.is_set():
                raise KeyboardInterrupt
            log.info("received %s: stopping", signal.Signals(signum).name)
            self.set(signum)

        previous = {sig: signal.signal(sig, handler) for sig in signals}
        try:
            yield self
        finally:
            for sig, old in previous.items():
                signal.signal(sig, old)


def stopped(stop: StopFlag | None) -> bool:
    return stop is not None and stop.is_set()


class Deadline:
    """Remaining time of a wait; ``None`` timeout means forever (still sliced, still stoppable)."""

    def __init__(self, timeout_s: float | None) -> None:
        self.end = None if timeout_s is None else time.monotonic() + max(0.0, timeout_s)

    def remaining(self) -> float:
        return float("inf") if self.end is None else max(0.0, self.end - time.monotonic())

    def slice_ms(self, cap_s: float = POLL_SLICE_S) -> int:
        return max(0, int(1000 * min(cap_s, self.remaining())))

    def expired(self) -> bool:
        return self.end is not None and time.monotonic() >= self.end
