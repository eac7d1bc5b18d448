"""tools/bench_pool.py: a real two-row pool run through the CLI (JSON, table, plot), and its config."""

from __future__ import annotations

import json

import pytest

from spikereveal.tools.bench_pool import PoolBenchConfig, run_config_for

pytestmark = pytest.mark.timeout(180)


def test_config_defaults_and_errors(tmp_path) -> None:
    config = PoolBenchConfig()
    assert config.engines == (1, 2, 4) and config.warmup == 5
    assert config.source == "sim:pan?size=64x96&count=40"
    assert PoolBenchConfig(count=6).warmup == 2  # a short run keeps a steady part to measure
    run = run_config_for(config, 2, tmp_path)
    assert run.engines == 2 and run.policy == "lossless" and run.engine.model == "sdm"
    assert run.capture.rate == "max" and not run.display.window
    assert run.display.summary == tmp_path / "summary.json"
    with pytest.raises(ValueError, match="engines"):
        PoolBenchConfig(engines=(0,))
    with pytest.raises(ValueError, match="count"):
        PoolBenchConfig(count=3, warmup=5)


@pytest.mark.slow
def test_cli_measures_one_and_two_engines(cli, tmp_path) -> None:
    out = tmp_path / "bench" / "pool.json"
    result = cli("bench", "pool", "--engines", "1,2", "--count", "6", "--out", str(out), timeout=150)
    assert result.returncode == 0, result.stderr + result.stdout
    assert "bundles/s" in result.stdout and str(out) in result.stdout
    payload = json.loads(out.read_text())
    rows = payload["rows"]
    assert [r["engines"] for r in rows] == [1, 2]
    for row in rows:
        assert row["results"] == 6 and row["bundles_per_s"] > 0 and row["ratio"] > 0
        assert row["duplicates"] == 0
    assert rows[0]["ratio"] == 1.0
    assert out.with_suffix(".png").stat().st_size > 0


def test_cli_rejects_bad_engine_counts(cli, tmp_path) -> None:
    result = cli("bench", "pool", "--engines", "0,x", "--out", str(tmp_path / "p.json"), timeout=60)
    assert result.returncode == 2 and "--engines" in result.stderr
