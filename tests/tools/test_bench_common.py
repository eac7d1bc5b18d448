"""Tests for tools/bench_common.py: timing, machine facts, table, JSON."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spikereveal.tools.bench_common import Timing, format_table, machine_info, time_repeats, write_json


def test_timing_statistics() -> None:
    t = Timing((0.4, 0.1, 0.2, 0.3))
    assert t.median_s == pytest.approx(0.25)
    assert (t.min_s, t.max_s) == (0.1, 0.4)
    assert t.iqr_s == pytest.approx((0.175, 0.325))
    assert t.per_second(10) == pytest.approx(40.0)
    d = t.to_dict()
    assert d["runs"] == 4
    assert d["seconds"] == [0.4, 0.1, 0.2, 0.3]


def test_time_repeats_counts_warmup_and_runs() -> None:
    calls: list[int] = []
    timing = time_repeats(lambda: calls.append(1), repeats=3, warmup=2)
    assert len(calls) == 5
    assert len(timing.seconds) == 3
    assert all(s >= 0 for s in timing.seconds)
    with pytest.raises(ValueError, match="repeats must be >= 1"):
        time_repeats(lambda: None, repeats=0)


def test_machine_info_fields() -> None:
    info = machine_info(["click", "surely-not-installed-pkg"])
    assert {"platform", "cpu", "cpu_count", "python", "versions"} <= set(info)
    assert info["versions"]["numpy"]
    assert info["versions"]["click"]
    assert info["versions"]["surely-not-installed-pkg"] is None
    json.dumps(info)


def test_format_table_aligns() -> None:
    text = format_table(["work", "n"], [["a", 1], ["longer", 1000]])
    lines = text.splitlines()
    assert lines[0] == "work       n"
    assert lines[1] == "------  ----"
    assert lines[2] == "a          1"
    assert lines[3] == "longer  1000"
    with pytest.raises(ValueError, match="2 cells"):
        format_table(["a", "b"], [[1]])


def test_write_json(tmp_path: Path) -> None:
    path = write_json(tmp_path / "deep" / "x.json", {"a": 1})
    assert json.loads(path.read_text()) == {"a": 1}
