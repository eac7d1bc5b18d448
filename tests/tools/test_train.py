"""Self-supervised training (tools/train.py, ``spikereveal train``) on a tiny simulated set.

GIVEN the project's own simulated sample (32x48 spikes, 128x192 blur), WHEN each net trains a few
steps on 64-pixel crops, THEN its loss on a fixed batch goes down, the run is reproducible (same
seed -> bit-identical weights; resume == uninterrupted; no ground truth read) and bad inputs give
one clear line.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from safetensors.torch import load_file

from spikereveal.engine.weights import load_net, read_metadata
from spikereveal.stream.errors import SpikeRevealError
from spikereveal.tools.train import (
    TrainConfig,
    TrainingError,
    checkpoint_dir,
    load_config_file,
    make_config,
    read_checkpoint,
    resume_config,
    ssim,
    train,
)

FAST = {"crop": 64, "batch": 2, "checkpoint_every": 1000}


def _config(data: Path, out: Path, **kw: object) -> TrainConfig:
    return TrainConfig(data=data, out=out, **{**FAST, **kw})


def _run(net: str, config: TrainConfig):
    return train(net, config, progress=False, threads=1)


def _tensors(path: Path) -> dict[str, torch.Tensor]:
    return load_file(str(path))


def _same(a: Path, b: Path) -> bool:
    ta, tb = _tensors(a), _tensors(b)
    return ta.keys() == tb.keys() and all(torch.equal(ta[k], tb[k]) for k in ta)


@pytest.mark.parametrize(("net", "steps"), [("bsn", 12), ("sr", 12), ("ldn", 8)])
def test_each_net_learns(sim_dataset: Path, tmp_path: Path, net: str, steps: int) -> None:
    out = tmp_path / f"{net}.safetensors"
    result = _run(net, _config(sim_dataset, out, steps=steps))
    assert result.steps == steps and result.stopped_by == "steps"
    assert result.probe_after < result.probe_before  # the loss on one fixed batch went down
    loaded, meta = load_net(out, net)
    assert meta["architecture"] == net and meta["steps"] == str(steps) and meta["seed"] == "0"
    assert meta["crop"] == "64" and meta["vth"] == "1.0" and float(meta["spike_density"]) > 0.5
    lines = result.losses_csv.read_text().splitlines()
    assert len(lines) == steps + 1 and lines[0].startswith("step,time_s,loss")
    if net == "ldn":
        assert meta["teacher"] == "sdm" and meta["teacher_loss"] == "l1+ssim"
        assert lines[0] == "step,time_s,loss,teacher,reblur,lr"


def test_same_seed_same_weights_and_ground_truth_never_read(sim_dataset: Path, tmp_path: Path) -> None:
    blind = tmp_path / "no_truth"
    shutil.copytree(sim_dataset, blind)
    shutil.rmtree(blind / "sharp_data")
    a = _run("ldn", _config(sim_dataset, tmp_path / "a.safetensors", steps=3, seed=5)).weights
    b = _run("ldn", _config(blind, tmp_path / "b.safetensors", steps=3, seed=5)).weights
    c = _run("ldn", _config(sim_dataset, tmp_path / "c.safetensors", steps=3, seed=6)).weights
    assert _same(a, b)
    assert not _same(a, c)


def test_resume_equals_uninterrupted(sim_dataset: Path, tmp_path: Path) -> None:
    straight = tmp_path / "straight.safetensors"
    _run("ldn", _config(sim_dataset, straight, steps=6, checkpoint_every=3))
    first = checkpoint_dir(straight) / "step-000003.json"
    info, _ = read_checkpoint(first, "ldn")
    assert info["step"] == 3 and len(info["rows"]) == 3
    resumed = tmp_path / "resumed.safetensors"
    config = resume_config(info, {"out": resumed}, first)
    result = _run("ldn", config)
    assert result.steps == 6
    assert _same(straight, resumed)

    # The loss log of the resumed run covers all six steps, equal to the straight run's (but the times).
    def losses(path: Path) -> list[list[str]]:
        rows = [line.split(",") for line in path.read_text().splitlines()]
        return [row[:1] + row[2:] for row in rows]

    assert losses(result.losses_csv) == losses(straight.with_name("straight.losses.csv"))
    with pytest.raises(TrainingError, match="a checkpoint of train ldn, not train bsn"):
        read_checkpoint(first, "bsn")


def test_minutes_stop_and_write_a_loadable_file(sim_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "new" / "folder" / "timed.safetensors"  # --out's folder is made
    result = _run("bsn", _config(sim_dataset, out, minutes=0.02))
    assert result.stopped_by == "minutes" and result.steps >= 1
    net, meta = load_net(out, "bsn")
    assert meta["stopped_by"] == "minutes" and meta["minutes"] == "0.02"
    assert sum(p.numel() for p in net.parameters()) > 0


def test_init_from_weights_and_wrong_architecture(sim_dataset: Path, tmp_path: Path) -> None:
    bsn = _run("bsn", _config(sim_dataset, tmp_path / "bsn.safetensors", steps=1)).weights
    again = _run("bsn", _config(sim_dataset, tmp_path / "b2.safetensors", steps=1, init=str(bsn)))
    assert read_metadata(again.weights)["init"] == str(bsn)
    with pytest.raises(SpikeRevealError, match="holds a bsn network, expected ldn"):
        _run("ldn", _config(sim_dataset, tmp_path / "x.safetensors", steps=1, init=str(bsn)))


def test_bad_data(sim_dataset: Path, tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    (empty / "spike_data").mkdir(parents=True)
    (empty / "blur_data").mkdir()
    with pytest.raises(TrainingError, match="no .dat files"):
        _run("ldn", _config(empty, tmp_path / "x.safetensors", steps=1))
    with pytest.raises(TrainingError, match="smaller than the crop of 256 RGB pixels"):
        _run("ldn", _config(sim_dataset, tmp_path / "x.safetensors", steps=1, crop=256))
    wrong = tmp_path / "wrong"
    shutil.copytree(sim_dataset, wrong)
    blur = next((wrong / "blur_data").rglob("*.png"))
    cv2.imwrite(str(blur), np.zeros((120, 192, 3), np.uint8))
    with pytest.raises(TrainingError, match="120x192"):
        _run("sr", _config(wrong, tmp_path / "x.safetensors", steps=1))
    with pytest.raises(TrainingError, match="multiple of 16"):
        TrainConfig(crop=100)
    with pytest.raises(TrainingError, match="needs --bsn and --sr"):
        _run("ldn", _config(sim_dataset, tmp_path / "x.safetensors", steps=1, teacher="cascade"))
    (tmp_path / "a-file").write_text("not a folder")
    with pytest.raises(TrainingError, match="cannot make its folder .*a-file"):
        _run("ldn", _config(sim_dataset, tmp_path / "a-file" / "x.safetensors", steps=1))


def test_yaml_config_flags_override_and_unknown_key(tmp_path: Path) -> None:
    good = tmp_path / "train.yaml"
    good.write_text("steps: 7\ncheckpoint-every: 2\ncrop: 64\nteacher: sdm\n")
    values = load_config_file(good, "ldn")
    config = make_config("ldn", values, {"steps": 9, "crop": None})
    assert (config.steps, config.checkpoint_every, config.crop) == (9, 2, 64)
    with pytest.raises(TrainingError, match=r"train.yaml: unknown key 'teacher' for train bsn"):
        load_config_file(good, "bsn")
    bad = tmp_path / "bad.yaml"
    bad.write_text("crop: 100\n")
    with pytest.raises(TrainingError, match=r"bad.yaml: crop: got 100, expected a multiple of 16"):
        make_config("ldn", load_config_file(bad, "ldn"), {}, where=str(bad))


def test_ssim_matches_scikit_image() -> None:
    from skimage.metrics import structural_similarity

    rng = np.random.default_rng(0)
    a = rng.random((40, 48)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    expected = structural_similarity(
        a, b, data_range=1.0, gaussian_weights=True, sigma=1.5, use_sample_covariance=False
    )
    ours = float(ssim(torch.from_numpy(a)[None, None], torch.from_numpy(b)[None, None]))
    # scikit-image crops a border of 5 pixels from its full-size map; ours averages the valid map.
    assert ours == pytest.approx(expected, abs=1e-4)
    assert float(ssim(torch.from_numpy(a)[None, None], torch.from_numpy(a)[None, None])) == pytest.approx(1.0)


def test_density_target_is_recorded(sim_dataset: Path, tmp_path: Path) -> None:
    result = _run("ldn", _config(sim_dataset, tmp_path / "d.safetensors", steps=1, density_target=0.5))
    assert result.metadata["spike_density"] == "0.5000" and result.metadata["density_norm"] == "on"
    assert float(result.metadata["data_spike_density"]) > 0.9  # simulated at Vth 1
    raw = _run("ldn", _config(sim_dataset, tmp_path / "r.safetensors", steps=1, density_norm=False))
    assert raw.metadata["spike_density"] == raw.metadata["data_spike_density"]
    assert raw.metadata["density_norm"] == "off"


def test_cli_train_ldn_and_errors(cli, sim_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "ldn.safetensors"
    result = cli("train", "ldn", "--teacher", "sdm", "--data", sim_dataset, "--out", out, "--steps", "2",
                 "--crop", "64", "--batch", "1", "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "train ldn: 2 steps" in result.stdout
    meta = read_metadata(out)
    assert meta["command"].startswith("spikereveal train ldn --teacher sdm") and meta["steps"] == "2"
    bad = cli("train", "ldn", "--data", sim_dataset, "--out", tmp_path / "x.safetensors", "--init",
              tmp_path / "missing.safetensors")  # fmt: skip
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert bad.stderr.strip().count("\n") == 0 and "missing.safetensors" in bad.stderr


@pytest.mark.slow
def test_cli_train_all(cli, sim_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "all"
    result = cli("train", "all", "--data", sim_dataset, "--out", out, "--steps", "2", "--crop", "64",
                 "--batch", "1", "--no-progress")  # fmt: skip
    assert result.returncode == 0, result.stderr
    for net in ("bsn", "sr", "ldn"):
        assert read_metadata(out / f"{net}.safetensors")["architecture"] == net
    assert read_metadata(out / "ldn.safetensors")["teacher"] == "cascade"


def test_resume_config_keeps_checkpoint_settings(sim_dataset: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.safetensors"
    _run("sr", _config(sim_dataset, out, steps=2, checkpoint_every=1, seed=3))
    first = checkpoint_dir(out) / "step-000001.json"
    info, _ = read_checkpoint(first, "sr")
    config = resume_config(info, {"steps": 4}, first)
    assert (config.seed, config.crop, config.steps, config.resume) == (3, 64, 4, first)
    assert dataclasses.replace(config, resume=None).data == sim_dataset
