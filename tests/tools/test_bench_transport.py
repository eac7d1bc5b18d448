"""tools/bench_transport.py: a tiny real run between processes, the payload, the table and the CLI."""

from __future__ import annotations

import json

import pytest

from spikereveal.tools.bench_transport import (
    TransportBenchConfig,
    format_transport_table,
    make_bundle,
    run_transport_bench,
)

pytestmark = pytest.mark.timeout(120)

TINY = {"rgb": (6, 8), "spikes": (8, 16), "spike_frames": 4, "iterations": 6, "runs": 2, "warmup": 2}


def test_default_bundle_is_the_real_rsb_bundle() -> None:
    bundle = make_bundle(TransportBenchConfig())
    assert bundle.blur.shape == (1000, 1600, 3)
    assert bundle.spikes_packed.shape == (137, 12_500)  # 250x400 packed
    assert bundle.exposure == (20, 116)


def test_tiny_run_measures_every_path_against_memcpy() -> None:
    config = TransportBenchConfig(**TINY)
    payload = run_transport_bench(config)
    assert list(payload["results"]) == ["tcp/zero-copy", "tcp/copy", "ipc/zero-copy", "ipc/copy"]
    for result in payload["results"].values():
        assert result["n"] == 12 and len(result["runs"]) == 2 and all(r["n"] == 6 for r in result["runs"])
        assert 0 < result["p50_ms"] <= result["p99_ms"] <= result["max_ms"]
        assert result["ratio_p50_vs_memcpy"] > 0
    assert payload["baseline"]["memcpy"]["n"] == 12
    assert payload["sizes"]["bundle_bytes"] == 6 * 8 * 3 + 4 * 16
    assert payload["goal"] is None  # the goal is only stated for the real bundle size
    json.dumps(payload)  # JSON-ready
    table = format_transport_table(payload)
    assert "tcp/zero-copy" in table and "baseline memcpy" in table and "x memcpy" in table


def test_config_errors() -> None:
    with pytest.raises(ValueError, match="transports"):
        TransportBenchConfig(transports=("udp",))
    with pytest.raises(ValueError, match="modes"):
        TransportBenchConfig(modes=())
    with pytest.raises(ValueError, match="iterations"):
        TransportBenchConfig(iterations=0)


def test_cli_writes_json_and_prints_the_table(cli, tmp_path) -> None:
    out = tmp_path / "bench" / "transport.json"
    result = cli(
        "bench", "transport", "--rgb", "6x8", "--spikes", "8x16", "--spike-frames", "4", "--iterations", "5",
        "--runs", "2", "--warmup", "1", "--transport", "tcp", "--mode", "zero-copy", "--out", str(out),
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "tcp/zero-copy" in result.stdout and str(out) in result.stdout
    payload = json.loads(out.read_text())
    assert list(payload["results"]) == ["tcp/zero-copy"] and payload["results"]["tcp/zero-copy"]["n"] == 10
    assert payload["machine"]["cpu_count"] >= 1 and payload["libzmq"]


def test_cli_rejects_a_bad_spike_size(cli, tmp_path) -> None:
    result = cli("bench", "transport", "--spikes", "3x3", "--out", str(tmp_path / "x.json"), timeout=60)
    assert result.returncode == 2 and "--spikes" in result.stderr and "divisible by 8" in result.stderr
