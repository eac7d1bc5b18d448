"""Tests for tools/bench_decode.py: ``spikereveal bench decode`` (no speed asserts)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from click.testing import CliRunner

from spikereveal.stream.spikes import SpikeGeometry, pack_frames, unpack_frames
from spikereveal.tools.bench_decode import naive_unpack
from spikereveal.tools.cli import cli


def test_naive_baseline_decodes_like_unpack_frames() -> None:
    spikes = (np.random.default_rng(0).random((3, 8, 16)) < 0.5).astype(np.uint8)
    for geometry in (
        SpikeGeometry(8, 16),
        SpikeGeometry(8, 16, flip=False),
        SpikeGeometry(8, 16, row_tag_bits=16),
    ):
        packed = pack_frames(spikes, geometry)
        np.testing.assert_array_equal(naive_unpack(packed, geometry), unpack_frames(packed, geometry))


def test_bench_decode_smoke(tmp_path: Path) -> None:
    out = tmp_path / "bench" / "decode.json"
    result = CliRunner().invoke(
        cli, ["bench", "decode", "--size", "16x32", "--frames", "300", "--repeats", "1", "--json", str(out)]
    )
    assert result.exit_code == 0, result.output
    assert "x real time" in result.output
    assert "unpack vs baseline" in result.output
    payload = json.loads(out.read_text())
    assert payload["bench"] == "decode"
    assert {"platform", "cpu_count", "python", "versions"} <= set(payload["machine"])
    assert payload["machine"]["versions"]["numpy"] == np.__version__
    assert payload["threads"] == 1
    assert payload["sizes"]["height"] == 16
    assert payload["sizes"]["width"] == 32
    assert payload["sizes"]["frames"] == 274  # whole 137-frame bundles only
    assert payload["sizes"]["times"] == [20, 44, 68, 92, 116]
    assert payload["baseline_matches"] is True
    assert payload["one_pass_matches"] is True
    assert "wrote" in result.output and out.with_suffix(".png").exists()
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(payload["one_pass_ratios"]) == {"one_pass_sdm", "one_pass_full", "one_pass_ldn"}
    for ratio in payload["one_pass_ratios"].values():
        assert ratio["ratio_vs_numpy"] > 0 and ratio["ratio_vs_exposure"] > 0
    for name in ("unpack", "exposure", "baseline_unpack", "numpy_full", "one_pass_full", "one_pass_sdm"):
        r = payload["results"][name]
        assert r["runs"] == 1
        assert {"median_s", "min_s", "max_s", "q1_s", "q3_s", "frames_per_s", "realtime_factor"} <= set(r)
        assert r["frames_per_s"] > 0
    assert payload["ratio_unpack_vs_baseline"] > 0


def test_bench_decode_needs_one_bundle(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        cli, ["bench", "decode", "--frames", "100", "--json", str(tmp_path / "x.json")]
    )
    assert result.exit_code == 2
    assert "--frames" in result.output
