"""stream/latency.py: percentiles from stage stamps, warm-up, rates, counters and the JSON summary."""

from __future__ import annotations

import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikereveal.stream.latency import END_TO_END, LatencyStats, percentiles_ms

MS = 1_000_000


def test_golden_three_stage_path() -> None:
    """Capture at t, engine 2 ms later, display 5 ms later; messages every 10 ms."""
    stats = LatencyStats(warmup=0)
    for i in range(10):
        t = i * 10 * MS
        stats.add([("capture.send", t), ("engine.recv", t + 2 * MS), ("display.recv", t + 5 * MS)], frames=4)
    s = stats.summary()
    assert s["end_to_end"] == {
        "n": 10,
        "p50_ms": 5.0,
        "p95_ms": 5.0,
        "p99_ms": 5.0,
        "max_ms": 5.0,
        "mean_ms": 5.0,
    }
    assert list(s["stages"]) == ["capture.send->engine.recv", "engine.recv->display.recv"]
    assert s["stages"]["capture.send->engine.recv"]["p50_ms"] == 2.0
    assert s["stages"]["engine.recv->display.recv"]["max_ms"] == 3.0
    assert s["fps_out"] == pytest.approx(100.0) and s["fps_source"] == pytest.approx(100.0)
    assert s["frames_per_s_out"] == pytest.approx(400.0)
    assert stats.last_ms() == 5.0 and stats.last_ms("capture.send->engine.recv") == 2.0


def test_percentiles_match_numpy() -> None:
    samples = np.arange(1, 101) * MS  # 1..100 ms
    p = percentiles_ms(samples)
    assert p["n"] == 100 and p["p50_ms"] == pytest.approx(50.5) and p["p99_ms"] == pytest.approx(99.01)
    assert p["max_ms"] == 100.0 and p["mean_ms"] == pytest.approx(50.5)
    assert percentiles_ms([]) == {"n": 0}


def test_warmup_is_excluded() -> None:
    stats = LatencyStats(warmup=3)
    for i in range(8):
        latency = 500 * MS if i < 3 else 1 * MS  # the first three pay for connection set-up
        stats.add([("a", 0), ("b", latency)])
        stats.mark_in(i * MS)
    s = stats.summary()
    assert s["messages"] == 8 and s["end_to_end"]["n"] == 5 and s["end_to_end"]["max_ms"] == 1.0
    assert s["inputs"] == 8 and s["fps_in"] == pytest.approx(1000.0)  # inputs 3..7, 1 ms apart


def test_final_stage_counters_and_negative_intervals() -> None:
    stats = LatencyStats(warmup=0)
    stats.add([("a", 10)], final_stage="shown", now_ns=10 + 4 * MS)
    stats.add([("a", 100), ("b", 50)])  # a clock misuse: counted, not recorded
    stats.count(dropped=3, missed=2, bad=1)
    stats.count(dropped=1)
    s = stats.summary()
    assert s["stages"]["a->shown"]["p50_ms"] == 4.0 and "a->b" not in s["stages"]
    assert s["negative_intervals"] == 1
    assert (s["dropped"], s["missed"], s["bad_messages"]) == (4, 2, 1)
    assert s["fps_in"] is None  # never marked


def test_empty_summary_and_format() -> None:
    stats = LatencyStats()
    s = stats.summary()
    assert s["end_to_end"] == {"n": 0} and s["stages"] == {} and s["fps_out"] is None
    assert "dropped 0" in stats.format()
    stats = LatencyStats(warmup=0)
    stats.add([("a", 0), ("b", 2 * MS)])
    text = stats.format()
    assert END_TO_END in text and "a->b" in text and "p99" in text


def test_write_json(tmp_path) -> None:
    stats = LatencyStats(warmup=0)
    stats.add([("a", 0), ("b", MS)])
    path = stats.write_json(tmp_path / "deep" / "latency.json")
    loaded = json.loads(path.read_text())
    assert loaded["end_to_end"]["p50_ms"] == 1.0 and loaded["stages"]["a->b"]["n"] == 1


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="warmup"):
        LatencyStats(warmup=-1)
    with pytest.raises(ValueError, match="max_samples"):
        LatencyStats(max_samples=0)


def test_samples_are_bounded() -> None:
    stats = LatencyStats(warmup=0, max_samples=5)
    for i in range(20):
        stats.add([("a", 0), ("b", i * MS)])
    s = stats.summary()
    assert s["end_to_end"]["n"] == 5 and s["end_to_end"]["p50_ms"] == 17.0  # the most recent five


@settings(max_examples=60, deadline=None)
@given(
    deltas=st.lists(st.lists(st.integers(0, 10**9), min_size=1, max_size=4), min_size=1, max_size=30),
    warmup=st.integers(0, 5),
)
def test_end_to_end_is_the_sum_of_stages(deltas: list[list[int]], warmup: int) -> None:
    stats = LatencyStats(warmup=warmup)
    expected = []
    for i, row in enumerate(deltas):
        row = (row * 4)[:4]  # the same four stages for every message
        t, stamps = 0, [("s0", 0)]
        for j, d in enumerate(row, start=1):
            t += d
            stamps.append((f"s{j}", t))
        stats.add(stamps)
        if i >= warmup:
            expected.append(t)
    s = stats.summary()
    assert s["end_to_end"]["n"] == len(expected)
    if expected:
        assert s["end_to_end"]["max_ms"] == pytest.approx(max(expected) / 1e6)
        total_mean = sum(st_["mean_ms"] for st_ in s["stages"].values())
        assert total_mean == pytest.approx(s["end_to_end"]["mean_ms"])


def test_a_stream_shorter_than_the_warmup_reports_the_warmup_marked() -> None:
    stats = LatencyStats(warmup=5)
    for i in range(3):
        stats.add([("capture.read", 1000 * i), ("display.recv", 1000 * i + 2_000_000)])
    s = stats.summary()
    assert s["end_to_end"]["n"] == 0  # no steady-state samples...
    assert s["warmup_only"] is True  # ...so the warm-up's own are given, marked
    warm = s["warmup_results"]
    assert warm["end_to_end"]["n"] == 3 and warm["end_to_end"]["p50_ms"] == pytest.approx(2.0)
    assert warm["stages"]["capture.read->display.recv"]["n"] == 3
    text = stats.format()
    assert "no latency samples" not in text and "(warm-up only)" in text and "end_to_end" in text
    json.loads(json.dumps(s))  # still plain JSON
    for _ in range(3, 6):  # past the warm-up: the steady state alone, unmarked
        stats.add([("capture.read", 0), ("display.recv", 1_000_000)])
    s = stats.summary()
    assert s["warmup_only"] is False and s["warmup_results"] is None and s["end_to_end"]["n"] == 1
    assert "(warm-up only)" not in stats.format()
    assert LatencyStats(warmup=5).summary()["warmup_only"] is False  # nothing at all: nothing to mark


def test_sync_report_in_summary_and_text() -> None:
    stats = LatencyStats(warmup=0)
    assert stats.summary()["sync"] is None
    stats.note_sync({})  # a recording's bundles carry none: nothing changes
    stats.note_sync({"exposures": 9, "missing_frames": 40, "lost_blocks": 1, "skipped.lost_block": 2})
    stats.add([("capture.read", 0), ("display.shown", 5_000_000)])
    summary = json.loads(json.dumps(stats.summary()))
    assert summary["sync"]["latest"]["skipped.lost_block"] == 2 and summary["sync"]["reports"] == 1
    assert summary["sync"]["totals"]["skipped"] == {"lost_block": 2}
    text = stats.format()
    assert "sync: 9 exposures, skipped 2 (lost_block 2)" in text and "40 in 1 lost blocks" in text


def test_sync_totals_add_up_across_a_reopened_source_and_keep_the_worst_residual() -> None:
    # GIVEN reports of a rig that ran 3 exposures, then was opened again (counts from 0) for 2
    stats = LatencyStats(warmup=0)
    reports = [
        {"exposures": 1, "lost_blocks": 0, "skipped.no_coverage": 1, "offset_residual_ns": 2_000.0},
        {
            "exposures": 3,
            "lost_blocks": 1,
            "skipped.no_coverage": 1,
            "skipped.lost_block": 2,
            "offset_residual_ns": 9_000.0,
        },
        {"exposures": 1, "lost_blocks": 0, "skipped.no_coverage": 0, "offset_residual_ns": 1_000.0},
        {"exposures": 2, "lost_blocks": 2, "skipped.evicted": 1, "offset_residual_ns": 4_000.0},
    ]
    for report in reports:
        stats.note_sync(report)
    # WHEN the summary is made
    sync = json.loads(json.dumps(stats.summary()))["sync"]
    # THEN the latest report is there as sent, and the totals cover both openings
    assert sync["latest"] == reports[-1] and sync["reports"] == 4
    totals = sync["totals"]
    assert totals["exposures"] == 5 and totals["lost_blocks"] == 3 and totals["restarts"] == 1
    assert totals["skipped"] == {"no_coverage": 1, "lost_block": 2, "evicted": 1}
    assert totals["skipped_total"] == 4
    assert totals["offset_residual_ns"] == 4_000.0 and totals["offset_residual_max_ns"] == 9_000.0
    assert "sync: 5 exposures, skipped 4" in stats.format() and "(max 9.0 us)" in stats.format()
