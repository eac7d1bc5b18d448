"""``spikereveal eval`` (tools/eval.py, tools/eval_cmd.py) on small simulated sets."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import cv2
import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from spikereveal.tools.eval import EvalConfig, EvalError, evaluate, plan_methods, score


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    """Two samples of a pan over the procedural texture at Vth 1 (16x24 spikes, 64x96 blur)."""
    from spikereveal.capture.scenes import pan_scene
    from spikereveal.tools.simulate import SimulationConfig, simulate_dataset

    config = SimulationConfig(spike_size=(16, 24), seed=2)
    out = tmp_path_factory.mktemp("eval") / "data"
    frames = pan_scene(2 * config.frames_per_sample, config.blur_size, texture="procedural")
    simulate_dataset(frames, config, out, samples=2, source="builtin:pan", progress=False)
    return out


@pytest.fixture(scope="module")
def random_weights(tmp_path_factory) -> Path:
    """An untrained LDN (seeded), saved as the project's safetensors: deterministic, always present."""
    torch = pytest.importorskip("torch")
    from spikereveal.engine.ldn import LDN
    from spikereveal.engine.weights import save_ldn_state

    torch.manual_seed(0)
    return save_ldn_state(tmp_path_factory.mktemp("w") / "random.safetensors", LDN().state_dict())


def _eval(capsys, *args) -> tuple[int, str, str]:
    """``spikereveal eval ARGS`` in-process (the console script's entry point): (code, stdout, stderr)."""
    from spikereveal.tools.cli import main

    code = main(["eval", *map(str, args)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _numbers(report: dict) -> dict:
    return {m["name"]: (m["psnr"], m["ssim"], m["per_sample"]) for m in report["methods"]}


def test_metrics_follow_the_papers_protocol_on_float_bgr():
    # GIVEN two uint8 images; tools/metrics.py scores them with data range 255
    rng = np.random.default_rng(0)
    truth = rng.integers(0, 256, (40, 48, 3), dtype=np.uint8)
    estimate = np.clip(truth.astype(int) + rng.integers(-20, 21, truth.shape), 0, 255).astype(np.uint8)
    # THEN the numbers are skimage's on BGR float in [0, 1]: data range 1, 7x7 SSIM, channel_axis=2
    p, s = score(estimate.astype(np.float32) / 255.0, truth)
    f_est, f_truth = estimate / 255.0, truth / 255.0
    assert p == pytest.approx(peak_signal_noise_ratio(f_truth, f_est, data_range=1), abs=1e-9)
    assert s == pytest.approx(
        structural_similarity(f_truth, f_est, data_range=1, win_size=7, channel_axis=2), abs=1e-9
    )


def test_methods_default_to_blur_sdm_and_the_ldns_given():
    assert [m.name for m in plan_methods((), (), None, None)] == ["blur", "sdm"]
    methods = plan_methods((), ("a/w.pth", "b/w.pth", "default"), Path("bsn"), Path("sr"))
    assert [m.name for m in methods] == ["blur", "sdm", "teacher", "ldn(w)#1", "ldn(w)#2", "ldn(default)"]
    assert [m.weights for m in plan_methods(("ldn",), (), None, None)] == ["default"]
    with pytest.raises(EvalError, match="needs both --bsn W and --sr W"):
        plan_methods((), (), Path("bsn"), None)
    with pytest.raises(EvalError, match="--model teacher needs"):
        plan_methods(("teacher",), (), None, None)


def test_eval_writes_table_json_and_sheet_and_is_reproducible(capsys, tiny_set, random_weights, tmp_path):
    # GIVEN a fixed tiny simulated set and a fixed LDN
    outs = [tmp_path / "run1", tmp_path / "run2"]
    # WHEN eval runs twice
    for out in outs:
        code, stdout, stderr = _eval(capsys, "--data", tiny_set, "--weights", random_weights, "--out", out)
        assert code == 0, stderr
    # THEN a table with a row per method and a column per ground-truth time (and the mean) is printed
    lines = stdout.splitlines()
    assert lines[0].split() == ["method", "t=20", "t=44", "t=68", "t=92", "t=116", "mean"]
    assert [line.split()[0] for line in lines[2:5]] == ["blur", "sdm", "ldn(random)"]
    assert "eval" in stderr  # the progress bar
    # AND eval.json holds the same numbers both times, per time, averaged and per sample
    first, second = (json.loads((out / "eval.json").read_text()) for out in outs)
    assert _numbers(first) == _numbers(second)
    assert first["times"] == [20, 44, 68, 92, 116]
    assert first["samples"] == ["pan/0000", "pan/0001"]
    assert first["spike_density"][0] == pytest.approx(0.9925, rel=0.05)
    methods = {m["name"]: m for m in first["methods"]}
    for m in methods.values():
        assert set(m["psnr"]) == {"20", "44", "68", "92", "116", "mean"}
        assert len(m["per_sample"]) == 2 and len(m["per_sample"][0]["psnr"]) == 5
        assert m["psnr"]["mean"] == pytest.approx(np.mean([v for s in m["per_sample"] for v in s["psnr"]]))
    assert methods["ldn(random)"]["per_sample"][0]["density"]["enabled"] is True
    # AND the numbers are sane: SDM beats the blur on a simulated pan at Vth 1
    assert methods["sdm"]["psnr"]["mean"] > methods["blur"]["psnr"]["mean"] + 1.0
    assert methods["sdm"]["ssim"]["mean"] > methods["blur"]["ssim"]["mean"]
    # AND the contact sheet has a row per sample of GT | blur | SDM | LDN (64x96 tiles + banners)
    sheet = cv2.imread(str(outs[0] / "contact_sheet.png"), cv2.IMREAD_COLOR)
    assert sheet.shape == (2 * (64 + 28), 4 * 96, 3)


def test_density_norm_off_and_fixed_times_and_limit(tiny_set, random_weights):
    report = evaluate(
        EvalConfig(
            data=tiny_set,
            weights=(str(random_weights),),
            times=1,
            limit=1,
            density_norm=False,
            progress=False,
        )
    )
    assert report["times"] == [68] and report["samples"] == ["pan/0000"]
    ldn = report["methods"][-1]
    assert ldn["per_sample"][0]["density"]["enabled"] is False
    assert ldn["per_sample"][0]["density"]["scale"] == 1.0


def test_paper_checkpoint_beats_the_blur(tiny_set, paper_weights):
    report = evaluate(EvalConfig(data=tiny_set, weights=(str(paper_weights),), progress=False))
    methods = {m["kind"]: m for m in report["methods"]}
    assert methods["ldn"]["psnr"]["mean"] > methods["blur"]["psnr"]["mean"]


def _bad_dataset(kind: str, src: Path, tmp: Path) -> Path:
    """A dataset folder that eval must refuse, of the ``kind`` named."""
    folder = tmp / kind
    if kind == "no-ground-truth":  # a real set with sharp_data/ deleted
        shutil.copytree(src, folder)
        shutil.rmtree(folder / "sharp_data")
    elif kind == "empty-folder":
        folder.mkdir()
    elif kind == "no-samples":
        (folder / "spike_data/pan").mkdir(parents=True)
        (folder / "blur_data").mkdir()
    return folder  # "missing": not made at all


@pytest.mark.parametrize(
    ("kind", "needle"),
    [
        ("no-ground-truth", "no ground truth"),
        ("empty-folder", "no spike_data/ folder"),
        ("no-samples", "no .dat files"),
        ("missing", "dataset folder not found"),
    ],
)
def test_bad_datasets_are_one_clear_line(capsys, tiny_set, tmp_path, kind, needle):
    data = _bad_dataset(kind, tiny_set, tmp_path)
    code, _, stderr = _eval(capsys, "--data", data, "--out", tmp_path / "out", "--quiet")
    assert code == 2
    assert stderr.startswith("error: ") and needle in stderr
    assert len(stderr.strip().splitlines()) == 1 and "Traceback" not in stderr


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (["--times", "4"], "--times 4 asks for spike index 52, which has no ground truth"),
        (["--model", "teacher"], "--model teacher needs the cascade's nets"),
        (["--bsn", "x.safetensors"], "needs both --bsn W and --sr W"),
        (["--weights", "nowhere.pth"], "nowhere.pth: weights file not found"),
    ],
)
def test_bad_options_are_one_clear_line(capsys, tiny_set, tmp_path, args, needle):
    code, _, stderr = _eval(capsys, "--data", tiny_set, "--out", tmp_path / "out", "--quiet", *args)
    assert code == 2, stderr
    assert needle in stderr and len(stderr.strip().splitlines()) == 1


def test_an_earlier_run_needs_overwrite(capsys, tiny_set, tmp_path):
    out = tmp_path / "out"
    assert _eval(capsys, "--data", tiny_set, "--out", out, "--quiet", "--limit", "1")[0] == 0
    code, _, stderr = _eval(capsys, "--data", tiny_set, "--out", out, "--quiet", "--limit", "1")
    assert code == 2 and "already holds an earlier run (eval.json, contact_sheet.png)" in stderr
    assert _eval(capsys, "--data", tiny_set, "--out", out, "--quiet", "--limit", "1", "--overwrite")[0] == 0


def test_the_cascade_teacher_is_a_row_of_its_own(capsys, tiny_set, tmp_path):
    torch = pytest.importorskip("torch")
    teacher = pytest.importorskip("spikereveal.engine.teacher")
    from spikereveal.engine.bsn import BSN
    from spikereveal.engine.sr import EDSR
    from spikereveal.engine.weights import save_net

    # GIVEN an (untrained, seeded) BSN and SR saved in the project's format
    torch.manual_seed(0)
    bsn = save_net(tmp_path / "bsn.safetensors", BSN(), "bsn")
    sr = save_net(tmp_path / "sr.safetensors", EDSR(), "sr")
    # WHEN eval scores the cascade teacher on one sample at the centre time
    report = evaluate(
        EvalConfig(data=tiny_set, models=("teacher",), bsn=bsn, sr=sr, times=1, limit=1, progress=False)
    )
    # THEN it is the only row, and its numbers are the cascade's own on that sample
    (row,) = report["methods"]
    assert row["name"] == "teacher" and report["times"] == [68]
    from spikereveal.capture.datasets import open_dataset
    from spikereveal.engine.weights import load_net

    sample = open_dataset(tiny_set)[0]
    cascade = teacher.CascadeTeacher(load_net(bsn, "bsn")[0], load_net(sr, "sr")[0])
    blur = torch.from_numpy(sample.blur.transpose(2, 0, 1).astype(np.float32) / 255.0)[None]
    out = cascade(blur, torch.from_numpy(sample.spikes.astype(np.float32))[None], sample.exposure, [68])
    expected = score(out[0, 0].permute(1, 2, 0).numpy(), sample.sharp[68])
    assert row["per_sample"][0]["psnr"] == [pytest.approx(expected[0], abs=1e-5)]
    # AND a bsn file given as --sr is refused in one line
    code, _, stderr = _eval(
        capsys, "--data", tiny_set, "--bsn", bsn, "--sr", bsn, "--out", tmp_path / "o", "--quiet"
    )
    assert code == 2 and "holds a bsn network, expected sr" in stderr
