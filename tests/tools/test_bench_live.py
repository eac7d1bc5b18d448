"""tools/bench_live.py: its config, and a real short live run (capture, engine, web display as processes)."""

from __future__ import annotations

import json

import pytest

from spikereveal.tools.bench_live import (
    LiveBenchConfig,
    format_live_table,
    run_config_for,
    run_live_bench,
    verdict,
)

pytestmark = pytest.mark.timeout(180)


def test_config_defaults_and_errors(tmp_path) -> None:
    config = LiveBenchConfig()
    assert (config.rgb_size, config.fps, config.spike_size, config.spike_rate_hz) == (
        (480, 640),
        30.0,
        (120, 160),
        20000.0,
    )
    assert config.frames == 600 and config.display == "web"
    assert config.source(tmp_path / "v.avi").startswith(
        f"livesim:{tmp_path / 'v.avi'}?size=120x160&rate=20000"
    )
    run = run_config_for(config, tmp_path / "v.avi", tmp_path, web_port=8123)
    assert run.policy == "latest" and run.engine.model == "sdm" and run.engines == 1
    assert run.display.web == "127.0.0.1:8123" and run.display.record is None and not run.display.window
    video = run_config_for(LiveBenchConfig(display="video"), tmp_path / "v.avi", tmp_path)
    assert video.display.web is None and video.display.record == tmp_path / "display.mp4"
    for bad, field in (
        ({"display": "window"}, "display"),
        ({"seconds": 0.2}, "seconds"),
        ({"seconds": -1}, "seconds"),
    ):
        with pytest.raises(ValueError, match=field):
            LiveBenchConfig(**bad)


def test_verdict_reads_rates_losses_and_sync_totals() -> None:
    config = LiveBenchConfig()
    summary = {
        "results": 100,
        "fps_in": 29.9,
        "fps_out": 29.8,
        "dropped": 0,
        "end_to_end": {"p50_ms": 40.0, "p95_ms": 60.0, "max_ms": 90.0},
        "missed": 2,
        "sync": {
            "totals": {"exposures": 100, "lost_blocks": 0, "skipped": {"no_coverage": 1, "lost_block": 0}}
        },
    }
    v = verdict(summary, config)
    assert (
        v["keeps_up"]
        and v["lost_blocks"] == 0
        and v["skipped_exposures"] == 1
        and v["end_to_end_p95_ms"] == 60.0
    )
    assert not verdict({**summary, "fps_out": 20.0}, config)["keeps_up"]  # behind the camera
    assert not verdict({**summary, "missed": 6}, config)["keeps_up"]  # latest-wins skipped > 5 %


def test_a_short_live_run_reports_latency_and_no_lost_blocks(tmp_path) -> None:
    config = LiveBenchConfig(
        seconds=2.0,
        rgb_size=(96, 128),
        fps=15.0,
        spike_size=(24, 32),
        spike_rate_hz=2000.0,
        times=2,
        warmup=2,
    )
    payload = run_live_bench(config)
    json.dumps(payload)  # the JSON the CLI writes
    v = payload["verdict"]
    assert v["results"] and v["results"] >= 10  # most of the 30 exposures reach the display
    assert v["lost_blocks"] == 0 and v["end_to_end_p50_ms"] > 0
    assert payload["summary"]["sync"]["totals"]["exposures"] >= v["results"]
    assert payload["viewer"]["frames"] > 0  # the page really streamed frames to a viewer
    table = format_live_table(payload)
    assert "lost spike blocks" in table and "web display" in table
