"""SyncReport: checked values, a flat mapping for the wire, and back."""

from __future__ import annotations

import pytest

from spikereveal.capture.sync import SKIP_REASONS, SyncError, SyncReport


def test_round_trip_and_every_reason_present():
    report = SyncReport(exposures=7, offset_residual_ns=1234.5, missing_frames=3, skipped={"clock_jump": 2})
    d = report.to_dict()
    assert {f"skipped.{r}" for r in SKIP_REASONS} <= set(d)
    assert d["skipped.clock_jump"] == 2 and d["skipped.no_coverage"] == 0
    assert all(isinstance(k, str) and len(k) <= 64 for k in d)
    back = SyncReport.from_dict(d)
    assert back == report and back.skipped_total == 2 and back.offset_residual_ns == 1234.5


def test_bad_values_name_the_field():
    with pytest.raises(SyncError, match="dropped_frames: -1"):
        SyncReport(dropped_frames=-1)
    with pytest.raises(SyncError, match="unknown reason 'late'"):
        SyncReport(skipped={"late": 1})
    with pytest.raises(SyncError, match="bundle.sync: unknown key 'jitter'"):
        SyncReport.from_dict({"jitter": 1}, source="bundle.sync")
    with pytest.raises(SyncError, match="offset_residual_ns: 'x' is not a number"):
        SyncReport(offset_residual_ns="x")  # type: ignore[arg-type]
