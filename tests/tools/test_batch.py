"""``spikereveal batch`` on real simulated files: local pool vs a real Ray cluster, resume, bad samples."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from spikereveal.tools.batch import SUMMARY_NAME, BatchConfig, is_done, run_batch
from spikereveal.tools.cli import main

SAMPLES = 3


@pytest.fixture(scope="module")
def small_set(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Three consecutive samples of the built-in pan (16x24 spikes, 64x96 blurs), gopro layout."""
    from spikereveal.capture.scenes import pan_scene
    from spikereveal.tools.simulate import SimulationConfig, simulate_dataset

    config = SimulationConfig(spike_size=(16, 24), seed=3)
    out = tmp_path_factory.mktemp("batch") / "data"
    frames = pan_scene(config.frames_per_sample * SAMPLES, config.blur_size)
    simulate_dataset(frames, config, out, samples=SAMPLES, source="builtin:pan", progress=False)
    return out


def _files(root: Path) -> dict[str, bytes]:
    """Every output file under ``root`` but the summary (which holds timings), by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != SUMMARY_NAME
    }


def _config(data: Path, out: Path, **kw: object) -> BatchConfig:
    return BatchConfig(data=data, out=out, model="sdm", times=3, **kw)  # type: ignore[arg-type]


@pytest.mark.slow
def test_local_pool_and_real_ray_cluster_write_identical_files(small_set: Path, tmp_path: Path) -> None:
    ray = pytest.importorskip("ray")
    local = run_batch(_config(small_set, tmp_path / "local", ray="local", workers=2), progress=False)
    assert (local.runner, local.done, local.failed) == ("local", SAMPLES, 0)
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    try:
        on_ray = run_batch(_config(small_set, tmp_path / "ray", ray="auto", workers=2), progress=False)
    finally:
        ray.shutdown()
    assert (on_ray.runner, on_ray.done, on_ray.failed) == ("ray", SAMPLES, 0)
    local_files, ray_files = _files(tmp_path / "local"), _files(tmp_path / "ray")
    assert len(local_files) == SAMPLES * 4  # 3 frames + frames.json each
    assert local_files == ray_files
    manifest = json.loads(local_files["pan/0001/frames.json"])
    assert manifest["spike_indices"] == [20, 68, 116] and manifest["model"] == "sdm"
    assert manifest["sample"] == "pan/0001" and manifest["spikes"].endswith("spike_data/pan/0001.dat")


def test_second_run_skips_what_is_done_and_redoes_what_is_not(
    small_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    args = ["batch", "--data", str(small_set), "--out", str(out), "--model", "sdm", "--ray", "local"]
    assert main([*args, "--workers", "2", "--quiet", "--times", "3"]) == 0
    first = _files(out)
    assert "3 samples: 3 done, 0 skipped" in capsys.readouterr().out
    # One sample lost a frame, another's manifest is cut short: neither counts as done.
    (out / "pan/0000/frame_001.png").unlink()
    (out / "pan/0002/frames.json").write_text('{"frames": [')
    assert not is_done(out / "pan/0000") and not is_done(out / "pan/0002") and is_done(out / "pan/0001")
    summary = run_batch(_config(small_set, out, ray="local", workers=1), progress=False)
    assert (summary.samples, summary.done, summary.skipped, summary.failed) == (SAMPLES, 2, 1, 0)
    assert _files(out) == first  # redone byte for byte
    saved = json.loads((out / SUMMARY_NAME).read_text())
    assert saved["done"] == 2 and saved["skipped"] == 1 and saved["runner"] == "local"


def test_bad_samples_are_reported_and_the_rest_done(small_set: Path, tmp_path: Path) -> None:
    data = tmp_path / "data"
    shutil.copytree(small_set, data)
    dat = data / "spike_data/pan/0000.dat"
    dat.write_bytes(dat.read_bytes()[:-7])  # not a whole number of frames
    (data / "blur_data/pan/0002.png").write_bytes(b"not a png")
    summary = run_batch(_config(data, tmp_path / "out", ray="local", workers=2), progress=False)
    assert (summary.done, summary.failed, summary.skipped) == (1, 2, 0)
    reasons = {f["sample"]: f["reason"] for f in summary.failures}
    assert set(reasons) == {"pan/0000", "pan/0002"}
    assert "0000.dat" in reasons["pan/0000"] and "0002.png" in reasons["pan/0002"]
    assert is_done(tmp_path / "out/pan/0001") and not (tmp_path / "out/pan/0000").exists()
    saved = json.loads((tmp_path / "out" / SUMMARY_NAME).read_text())
    assert saved["failures"] == summary.failures


def test_a_sample_without_its_image_is_reported_not_the_end_of_the_run(
    small_set: Path, tmp_path: Path
) -> None:
    data = tmp_path / "data"
    shutil.copytree(small_set, data)
    (data / "blur_data/pan/0001.png").unlink()
    summary = run_batch(_config(data, tmp_path / "out", ray="local", workers=1), progress=False)
    assert (summary.done, summary.failed) == (2, 1)
    assert [f["sample"] for f in summary.failures] == ["pan/0001"]
    assert "0001.png" in summary.failures[0]["reason"] and "no such file" in summary.failures[0]["reason"]


def test_missing_data_folder_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["batch", "--data", str(tmp_path / "nope"), "--out", str(tmp_path / "o"), "--ray", "local"])
    err = capsys.readouterr().err
    assert code == 2
    assert err.strip().splitlines() == [f"error: {tmp_path / 'nope'}: dataset folder not found"]


def test_weights_no_worker_can_load_end_the_run_in_one_line(
    small_set: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"garbage")
    args = ["--model", "ldn", "--weights", str(bad), "--ray", "local", "--workers", "1", "--quiet"]
    code = main(["batch", "--data", str(small_set), "--out", str(tmp_path / "o"), *args])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert err[0].startswith("error: a worker could not load the model:") and "bad.safetensors" in err[0]
