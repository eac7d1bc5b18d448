"""``spikereveal eval --ray ... --workers N``: tools/eval.py on tools/batch.py's runners.

The same report as the plain eval, number for number and tile for tile, on a local process pool
and (slow, where Ray is installed) on a real local Ray cluster.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from spikereveal.tools.batch import BatchError
from spikereveal.tools.eval import EvalConfig, EvalError, EvalWorker, SampleFailure, evaluate

pytestmark = pytest.mark.timeout(300)

SAMPLES = 3


@pytest.fixture(scope="module")
def three_samples(tmp_path_factory) -> Path:
    """Three samples of the procedural pan at Vth 1 (16x24 spikes, 64x96 blur), with ground truth."""
    from spikereveal.capture.scenes import pan_scene
    from spikereveal.tools.simulate import SimulationConfig, simulate_dataset

    config = SimulationConfig(spike_size=(16, 24), seed=5)
    out = tmp_path_factory.mktemp("evalw") / "data"
    frames = pan_scene(SAMPLES * config.frames_per_sample, config.blur_size, texture="procedural")
    simulate_dataset(frames, config, out, samples=SAMPLES, source="builtin:pan", progress=False)
    return out


@pytest.fixture(scope="module")
def plain_config(three_samples: Path, tmp_path_factory) -> EvalConfig:
    """blur, sdm and an untrained (seeded) LDN, one thread: the plain eval's config."""
    torch = pytest.importorskip("torch")
    from spikereveal.engine.ldn import LDN
    from spikereveal.engine.weights import save_ldn_state

    torch.manual_seed(0)
    weights = save_ldn_state(tmp_path_factory.mktemp("w") / "random.safetensors", LDN().state_dict())
    return EvalConfig(data=three_samples, weights=(str(weights),), threads=1, progress=False)


@pytest.fixture(scope="module")
def plain_report(plain_config: EvalConfig) -> dict:
    return evaluate(plain_config)


def _same_report(a: dict, b: dict) -> None:
    assert {k: v for k, v in a.items() if k != "_sheet"} == {k: v for k, v in b.items() if k != "_sheet"}
    (sheet_a, labels_a), (sheet_b, labels_b) = a["_sheet"], b["_sheet"]
    assert labels_a == labels_b and list(sheet_a) == list(sheet_b)
    for title in sheet_a:
        assert len(sheet_a[title]) == len(sheet_b[title]) == SAMPLES
        for x, y in zip(sheet_a[title], sheet_b[title], strict=True):
            np.testing.assert_array_equal(x, y)


def test_local_pool_gives_the_plain_report(plain_config: EvalConfig, plain_report: dict) -> None:
    # GIVEN the plain eval's report of three samples (blur, sdm, an LDN)
    assert plain_report["samples"] == ["pan/0000", "pan/0001", "pan/0002"]
    assert [m["name"] for m in plain_report["methods"]] == ["blur", "sdm", "ldn(random)"]
    # WHEN the same config runs on two local worker processes
    pooled = evaluate(dataclasses.replace(plain_config, ray="local", workers=2))
    # THEN the report is the same: order, numbers, densities, contact-sheet tiles
    _same_report(pooled, plain_report)


def test_cli_with_ray_local_writes_the_plain_eval_json(
    capsys, plain_config: EvalConfig, tmp_path: Path
) -> None:
    from spikereveal.tools.cli import main

    base = ["eval", "--data", str(plain_config.data), "--model", "blur", "--model", "sdm", "--quiet"]
    assert main([*base, "--out", str(tmp_path / "plain")]) == 0
    assert main([*base, "--out", str(tmp_path / "pool"), "--ray", "local", "--workers", "2"]) == 0
    capsys.readouterr()
    plain, pooled = ((tmp_path / name / "eval.json").read_bytes() for name in ("plain", "pool"))
    assert plain == pooled
    assert json.loads(plain)["samples"] == ["pan/0000", "pan/0001", "pan/0002"]
    assert (tmp_path / "pool" / "contact_sheet.png").read_bytes() == (
        tmp_path / "plain" / "contact_sheet.png"
    ).read_bytes()


def test_a_sample_error_on_a_worker_is_the_plain_error_line(plain_config: EvalConfig) -> None:
    # --times 4 asks for spike indices without ground truth (the set has it at 20, 44, 68, 92, 116)
    config = dataclasses.replace(plain_config, weights=(), models=("sdm",), times=4)
    with pytest.raises(EvalError) as plain:
        evaluate(config)
    with pytest.raises(EvalError) as pooled:
        evaluate(dataclasses.replace(config, ray="local", workers=2))
    assert str(pooled.value) == str(plain.value)
    assert "no ground truth" in str(plain.value) and "sample pan/0000" in str(plain.value)


def test_a_worker_that_cannot_load_its_weights_is_one_error(plain_config: EvalConfig, tmp_path: Path) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not weights")
    config = dataclasses.replace(plain_config, weights=(str(bad),), ray="local", workers=2)
    with pytest.raises(BatchError, match="a worker could not load the model: .*bad.safetensors"):
        evaluate(config)
    # The worker itself reports it, and then answers every sample with it (never raises).
    worker = EvalWorker(dataclasses.replace(config, ray=None, workers=1))
    assert worker.ready() is not None and "bad.safetensors" in worker.ready()
    failure = worker.run((0, 0))
    assert isinstance(failure, SampleFailure) and failure.status == "start-failed"


def test_bad_worker_count_is_refused(three_samples: Path) -> None:
    with pytest.raises(EvalError, match="workers must be >= 1, got 0"):
        EvalConfig(data=three_samples, workers=0)


@pytest.mark.slow
def test_real_ray_cluster_gives_the_plain_report(plain_config: EvalConfig, plain_report: dict) -> None:
    ray = pytest.importorskip("ray")
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        on_ray = evaluate(dataclasses.replace(plain_config, ray="auto", workers=2))
    finally:
        ray.shutdown()
    _same_report(on_ray, plain_report)
