"""``spikereveal bench model`` smoke tests: a tiny size, one run, every field there (no speed asserts)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from spikereveal.tools.bench_model import BASELINE, ModelBenchConfig, format_model_table, run_model_bench


def test_cli_writes_table_and_json(cli, tmp_path: Path) -> None:
    out = tmp_path / "model.json"
    result = cli(
        "bench", "model", "--sizes", "32x48", "--repeats", "1", "--warmup", "0",
        "--variants", "torch,onnxruntime", "--threads", "1", "--no-isolate", "--json", out,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "torch-eager" in result.stdout and "onnxruntime" in result.stdout
    payload = json.loads(out.read_text())
    assert out.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert payload["bench"] == "model"
    assert payload["machine"]["versions"]["torch"]
    rows = payload["results"]
    assert [r["variant"] for r in rows] == [BASELINE, "torch", "onnxruntime"]
    for row in rows:
        assert row["size"] == [32, 48]
        assert row["fresh_process"] is False
        assert row["runs"] == 1
        assert row["median_s"] > 0
        assert row["max_abs_diff_vs_baseline"] <= 1e-4
    assert rows[0]["ratio_vs_baseline"] == 1.0
    assert payload["summary"][0]["best_fp32_variant"] in ("torch", "onnxruntime")


def test_baseline_runs_in_a_fresh_process_by_default() -> None:
    config = ModelBenchConfig(sizes=((16, 24),), variants=(BASELINE,), repeats=2, warmup=0)
    assert config.isolate
    payload = run_model_bench(config, progress=False)
    (row,) = payload["results"]
    assert row["fresh_process"] is True
    assert row["freed_memory_kept"] is False  # the baseline keeps glibc's default malloc
    assert row["runs"] == 2
    assert row["max_abs_diff_vs_baseline"] == 0.0


def test_in_process_run_with_paper_weights(paper_weights: Path) -> None:
    config = ModelBenchConfig(
        sizes=((16, 24), (32, 32)),
        variants=("torch",),
        repeats=2,
        warmup=0,
        threads=1,
        weights=str(paper_weights),
        isolate=False,
    )
    payload = run_model_bench(config, progress=False)
    assert len(payload["results"]) == 4
    assert payload["weights"] == str(paper_weights)
    table = format_model_table(payload)
    assert "16x24" in table and "32x32" in table and "best fp32 torch" in table


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--sizes", "30x48"], "multiples of 4"),
        (["--sizes", "big"], "is not a size HxW"),
        (["--variants", "torch,tensorflow"], "unknown variant(s) tensorflow"),
    ],
)
def test_bad_options_exit_2(cli, tmp_path: Path, args: list[str], message: str) -> None:
    result = cli("bench", "model", *args, "--json", tmp_path / "x.json")
    assert result.returncode == 2
    assert message in result.stderr
    assert not (tmp_path / "x.json").exists()


def test_bf16_is_a_default_only_where_the_cpu_has_bf16_units() -> None:
    from spikereveal.tools.bench_model import DEFAULT_VARIANTS, cpu_has_bf16_units

    assert ("torch-bf16" in DEFAULT_VARIANTS) == cpu_has_bf16_units()


def test_config_is_validated() -> None:
    with pytest.raises(ValueError, match="multiples of 4"):
        ModelBenchConfig(sizes=((10, 12),))
    with pytest.raises(ValueError, match="unknown variant"):
        ModelBenchConfig(variants=("nope",))
