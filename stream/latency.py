"""Latency and rate statistics from the per-stage stamps that messages carry.

Every stage appends ``(stage, time.monotonic_ns())`` to a message (``Bundle.stamped`` /
``Result.stamped``); ``monotonic_ns`` is comparable across processes on one host. The node at the
end of a path (display, recorder, bench) feeds each message's stamps to :meth:`LatencyStats.add`,
which records the time between consecutive stamps (``"capture.send->engine.recv"``) and end to
end (first stamp to last). The first ``warmup`` messages are left out of the percentiles, as
Holoscan's data-flow tracker does: they pay for connection set-up, page faults and lazy
initialisation, not for the steady state the numbers should describe.

A live source's sync report (``Result.sync``, the flat mapping of capture/sync.py, forwarded by
the engine) goes to :meth:`LatencyStats.note_sync`; the summary's ``sync`` section holds the latest
report and totals over the run (skipped exposures by reason, lost blocks, the clock residual),
which add up across a source that was opened again (its running counts start from 0 again).
"""

from __future__ import annotations

import json
import os
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

END_TO_END = "end_to_end"


def percentiles_ms(samples_ns: Sequence[int] | np.ndarray) -> dict[str, float | int]:
    """``n``, ``p50_ms``, ``p95_ms``, ``p99_ms``, ``max_ms``, ``mean_ms`` of durations in ns (n=0: only n)."""
    values = np.asarray(samples_ns, dtype=np.float64)
    if values.size == 0:
        return {"n": 0}
    p50, p95, p99 = np.percentile(values, [50, 95, 99]) / 1e6
    return {
        "n": int(values.size),
        "p50_ms": float(p50),
        "p95_ms": float(p95),
        "p99_ms": float(p99),
        "max_ms": float(values.max() / 1e6),
        "mean_ms": float(values.mean() / 1e6),
    }


def _rate_hz(times_ns: Sequence[int]) -> float | None:
    """Events per second between the first and last event (None with fewer than two)."""
    if len(times_ns) < 2 or times_ns[-1] <= times_ns[0]:
        return None
    return (len(times_ns) - 1) * 1e9 / (times_ns[-1] - times_ns[0])


#: Sync report fields that are not running counts (a level now, not a total so far).
_SYNC_LEVELS = frozenset({"offset_residual_ns", "rate_hz", "drift_ppm", "coverage_wait_ns"})
_SKIPPED = "skipped."


class SyncTotals:
    """A live source's sync reports (flat name -> number mappings, capture/sync.py) over a run.

    Each report holds running counts since its source opened, so within one source the latest
    says it all; a report whose ``exposures`` went back means the source was opened again (a
    looped or restarted rig), and the counts so far are carried into the totals.

    Examples:
        >>> totals = SyncTotals()
        >>> totals.add({"exposures": 5, "lost_blocks": 1, "skipped.lost_block": 2, "offset_residual_ns": 900.0})
        >>> totals.add({"exposures": 2, "lost_blocks": 0, "skipped.lost_block": 1, "offset_residual_ns": 300.0})
        >>> t = totals.summary()["totals"]
        >>> t["exposures"], t["lost_blocks"], t["skipped"], t["offset_residual_max_ns"]
        (7, 1, {'lost_block': 3}, 900.0)
    """

    def __init__(self) -> None:
        self.reports = 0
        self.restarts = 0
        self.latest: dict[str, int | float] | None = None
        self._carried: dict[str, int | float] = {}  # counts of sources opened before the current one
        self._residual_max = 0.0

    def add(self, sync: Mapping[str, int | float]) -> None:
        """One report (empty: ignored)."""
        if not sync:
            return
        report = dict(sync)
        previous = self.latest
        if previous is not None and report.get("exposures", 0) < previous.get("exposures", 0):
            self.restarts += 1
            for key, value in previous.items():
                if key not in _SYNC_LEVELS:
                    self._carried[key] = self._carried.get(key, 0) + value
        self.latest = report
        self.reports += 1
        self._residual_max = max(self._residual_max, float(report.get("offset_residual_ns", 0.0)))

    def totals(self) -> dict[str, Any]:
        """Counts over the run: ``exposures``, ``skipped`` (reason -> n), ``skipped_total``,
        ``lost_blocks``, ``missing_frames``, ``dropped_frames``, ``clock_jumps``, the other
        counts, ``offset_residual_ns`` (latest) and ``offset_residual_max_ns``, ``restarts``."""
        latest = self.latest or {}
        counts = {
            key: self._carried.get(key, 0) + latest.get(key, 0)
            for key in dict.fromkeys([*latest, *self._carried])
            if key not in _SYNC_LEVELS
        }
        skipped = {k[len(_SKIPPED) :]: n for k, n in counts.items() if k.startswith(_SKIPPED)}
        out: dict[str, Any] = {k: n for k, n in counts.items() if not k.startswith(_SKIPPED)}
        out.update(
            skipped=skipped,
            skipped_total=sum(skipped.values()),
            lost_blocks=out.get("lost_blocks", 0),
            offset_residual_ns=float(latest.get("offset_residual_ns", 0.0)),
            offset_residual_max_ns=self._residual_max,
            restarts=self.restarts,
        )
        return out

    def summary(self) -> dict[str, Any] | None:
        """``{"reports", "latest", "totals"}``, or None when no report came (a recording)."""
        if self.latest is None:
            return None
        return {"reports": self.reports, "latest": dict(self.latest), "totals": self.totals()}


class LatencyStats:
    """Per-stage and end-to-end latency percentiles, rates in and out, drops and bad messages.

    ``warmup``: messages (and input events) left out at the start. ``max_samples``: samples kept
    per stage (the most recent), which bounds memory on a run of days.
    """

    def __init__(self, warmup: int = 10, max_samples: int = 100_000) -> None:
        if warmup < 0 or max_samples < 1:
            raise ValueError(f"warmup must be >= 0 and max_samples >= 1, got {warmup} and {max_samples}")
        self.warmup, self.max_samples = warmup, max_samples
        self._stages: dict[str, deque[int]] = {}
        # The warm-up's own samples: reported (marked) only when the stream ended within it.
        self._warm_stages: dict[str, list[int]] = {}
        self._out_ns: deque[int] = deque(maxlen=max_samples)
        self._in_ns: deque[int] = deque(maxlen=max_samples)
        self._source_ns: deque[int] = deque(maxlen=max_samples)
        self.messages = 0  # messages added, warm-up included
        self.inputs = 0  # input events marked, warm-up included
        self.frames_out = 0  # output frames after warm-up (K per result)
        self.dropped = 0
        self.missed = 0
        self.bad = 0
        self.sync = SyncTotals()  # a live rig's sync reports (Result.sync)
        self.negative = 0  # stamp pairs that went backwards (clock misuse); not recorded
        self._started_ns = time.monotonic_ns()

    def _samples(self, name: str) -> deque[int]:
        if name not in self._stages:
            self._stages[name] = deque(maxlen=self.max_samples)
        return self._stages[name]

    @property
    def warmup_only(self) -> bool:
        """True while every message so far fell within the warm-up (and there was one)."""
        return 0 < self.messages <= self.warmup

    def add(
        self,
        stamps: Sequence[tuple[str, int]],
        *,
        final_stage: str | None = None,
        now_ns: int | None = None,
        frames: int = 1,
    ) -> None:
        """Record one message that reached the end of the path.

        ``stamps``: its ``(stage, monotonic_ns)`` pairs in order. ``final_stage``: append
        ``(final_stage, now_ns or time.monotonic_ns())`` first (e.g. ``"display.shown"``).
        ``frames``: output frames it carried (K for a result), for the output frame rate.
        """
        pairs = list(stamps)
        if final_stage is not None:
            pairs.append((final_stage, time.monotonic_ns() if now_ns is None else int(now_ns)))
        self.messages += 1
        if self.messages <= self.warmup:
            _record_intervals(pairs, lambda name: self._warm_stages.setdefault(name, []))
            return
        if not pairs:
            return
        self._out_ns.append(pairs[-1][1])
        self._source_ns.append(pairs[0][1])
        self.frames_out += frames
        self.negative += _record_intervals(pairs, self._samples)

    def mark_in(self, t_ns: int | None = None) -> None:
        """Record one input event (a bundle entering the engine, a result entering the display)."""
        self.inputs += 1
        if self.inputs > self.warmup:
            self._in_ns.append(time.monotonic_ns() if t_ns is None else int(t_ns))

    def count(self, *, dropped: int = 0, missed: int = 0, bad: int = 0) -> None:
        """Add to the drop/bad counters (or assign ``stats.dropped = counters.dropped`` directly)."""
        self.dropped += dropped
        self.missed += missed
        self.bad += bad

    def note_sync(self, sync: Mapping[str, int | float]) -> None:
        """Add a live source's sync report (``Result.sync``); empty (a recording): ignored."""
        self.sync.add(sync)

    def last_ms(self, stage: str = END_TO_END) -> float | None:
        """The most recent sample of ``stage`` in ms (for an on-screen overlay), or None."""
        samples = self._stages.get(stage)
        return samples[-1] / 1e6 if samples else None

    def summary(self) -> dict[str, object]:
        """Everything as plain JSON-ready values; stage order follows first appearance.

        A stream shorter than the warm-up has no steady-state percentiles (``end_to_end`` has
        ``n`` 0): then ``warmup_only`` is True and ``warmup_results`` holds the warm-up's own
        ``end_to_end`` and ``stages`` (slower than steady state: set-up included), else None.
        """
        warmup_only = self.warmup_only
        out_hz = _rate_hz(self._out_ns)
        return {
            "warmup": self.warmup,
            "warmup_only": warmup_only,
            "warmup_results": _percentiles_by_stage(self._warm_stages) if warmup_only else None,
            "messages": self.messages,
            "inputs": self.inputs,
            **_percentiles_by_stage(self._stages),
            "fps_in": _rate_hz(self._in_ns),
            "fps_out": out_hz,
            "fps_source": _rate_hz(sorted(self._source_ns)),
            "frames_per_s_out": None
            if out_hz is None or not self._out_ns
            else out_hz * self.frames_out / len(self._out_ns),
            "dropped": self.dropped,
            "missed": self.missed,
            "bad_messages": self.bad,
            "sync": self.sync.summary(),
            "negative_intervals": self.negative,
            "elapsed_s": (time.monotonic_ns() - self._started_ns) / 1e9,
        }

    def write_json(self, path: str | os.PathLike[str]) -> Path:
        """Write :meth:`summary` as indented JSON (folders created); returns the path."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.summary(), indent=2) + "\n")
        return path

    def format(self) -> str:
        """A few lines for a log or the end of ``spikereveal run``."""
        return format_summary(self.summary())


def _percentiles_by_stage(samples: dict[str, Any]) -> dict[str, Any]:
    """``{"end_to_end": percentiles, "stages": {name: percentiles}}`` of recorded samples (ns)."""
    return {
        END_TO_END: percentiles_ms(np.fromiter(samples.get(END_TO_END, ()), np.int64)),
        "stages": {
            name: percentiles_ms(np.fromiter(s, np.int64))
            for name, s in samples.items()
            if name != END_TO_END
        },
    }


def _record_intervals(pairs: Sequence[tuple[str, int]], samples: Callable[[str], Any]) -> int:
    """Append each stage interval and the end-to-end time of one message's stamps to
    ``samples(name)``; returns the intervals that went backwards (not recorded)."""
    negative = 0
    for (a, ta), (b, tb) in zip(pairs, pairs[1:], strict=False):
        if tb < ta:
            negative += 1
            continue
        samples(f"{a}->{b}").append(tb - ta)
    if len(pairs) >= 2 and pairs[-1][1] >= pairs[0][1]:
        samples(END_TO_END).append(pairs[-1][1] - pairs[0][1])
    return negative


def format_summary(s: dict) -> str:
    """The lines of :meth:`LatencyStats.format` from a summary dict (e.g. read back from JSON)."""
    lines = []
    table, marker = s, ""
    if s.get("warmup_only") and s.get("warmup_results"):
        table, marker = s["warmup_results"], "  (warm-up only)"
    for name, st in [(END_TO_END, table["end_to_end"]), *table["stages"].items()]:
        if st.get("n"):
            lines.append(
                f"{name:<40} n={st['n']:<6} p50 {st['p50_ms']:8.2f} ms  p95 {st['p95_ms']:8.2f} ms  "
                f"p99 {st['p99_ms']:8.2f} ms  max {st['max_ms']:8.2f} ms{marker}"
            )
    if marker and lines:
        lines.insert(
            0,
            f"warm-up only: all {s.get('messages', 0)} messages fell within the warm-up of {s.get('warmup')}",
        )
    if not lines:
        lines.append(
            f"no latency samples: {s.get('messages', 0)} messages, all within the warm-up of {s.get('warmup')}"
        )
    rates = ", ".join(f"{k} {s[k]:.2f}" for k in ("fps_in", "fps_out") if s.get(k) is not None)
    lines.append(
        f"{rates}; dropped {s['dropped']}, missed {s['missed']}, bad {s['bad_messages']}".lstrip("; ")
    )
    sync = s.get("sync")
    if sync and isinstance(sync.get("totals"), dict):
        t = sync["totals"]
        skipped = {k: v for k, v in t.get("skipped", {}).items() if v}
        reasons = ", ".join(f"{k} {v}" for k, v in skipped.items()) or "none"
        lines.append(
            f"sync: {t.get('exposures', 0)} exposures, skipped {sum(skipped.values())} ({reasons}); "
            f"missing spike frames {t.get('missing_frames', 0)} in {t.get('lost_blocks', 0)} lost blocks, "
            f"clock jumps {t.get('clock_jumps', 0)}, RGB frames dropped {t.get('dropped_frames', 0)}, "
            f"clock residual {t.get('offset_residual_ns', 0) / 1e3:.1f} us "
            f"(max {t.get('offset_residual_max_ns', 0) / 1e3:.1f} us)"
        )
    reorder = s.get("reorder")
    if reorder:
        lines.append("engine pool: " + ", ".join(f"{k} {v}" for k, v in reorder.items()))
    return "\n".join(lines)
