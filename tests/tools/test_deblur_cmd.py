"""``spikereveal deblur`` end to end on real files: the contract other checks rely on."""

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from spikereveal.tools.metrics import psnr


def _sample_files(sim_dataset: Path) -> tuple[Path, Path]:
    return sim_dataset / "blur_data/pan/0000.png", sim_dataset / "spike_data/pan/0000.dat"


def _truth(sim_dataset: Path, t: int) -> np.ndarray:
    return cv2.imread(str(sim_dataset / f"sharp_data/pan/0000/{t:03d}.png"), cv2.IMREAD_COLOR)


def test_sdm_writes_k_frames_at_the_paper_times(cli, sim_dataset, tmp_path):
    # GIVEN a simulated blur and its 137-frame spike file (32x48 spikes, 128x192 blur)
    blur, spikes = _sample_files(sim_dataset)
    out = tmp_path / "out"
    # WHEN deblurring with the default exposure into 5 frames
    res = cli(
        "deblur",
        "--blur",
        blur,
        "--spikes",
        spikes,
        "--spike-size",
        "32x48",
        "--times",
        5,
        "--model",
        "sdm",
        "--out",
        out,
    )
    # THEN five frames of the blur's size come out at 20, 44, 68, 92, 116, sharper than the blur
    assert res.returncode == 0, res.stderr
    manifest = json.loads((out / "frames.json").read_text())
    assert manifest["spike_indices"] == [20, 44, 68, 92, 116]
    assert [f["file"] for f in manifest["frames"]] == [f"frame_{i:03d}.png" for i in range(5)]
    blur_img = cv2.imread(str(blur), cv2.IMREAD_COLOR)
    for i, t in enumerate(manifest["spike_indices"]):
        frame = cv2.imread(str(out / f"frame_{i:03d}.png"), cv2.IMREAD_UNCHANGED)
        assert frame.shape == blur_img.shape and frame.dtype == np.uint8
        assert psnr(frame, _truth(sim_dataset, t)) > psnr(blur_img, _truth(sim_dataset, t)) + 1.0


def test_one_time_is_the_middle_of_the_given_exposure(cli, sim_dataset, tmp_path):
    blur, spikes = _sample_files(sim_dataset)
    res = cli(
        "deblur",
        "--blur",
        blur,
        "--spikes",
        spikes,
        "--spike-size",
        "32x48",
        "--exposure",
        "30:90",
        "--times",
        1,
        "--out",
        tmp_path,
    )
    assert res.returncode == 0, res.stderr
    assert json.loads((tmp_path / "frames.json").read_text())["spike_indices"] == [60]


@pytest.mark.parametrize("backend", ["torch", "onnxruntime"])
def test_paper_ldn_beats_the_blur_on_each_backend(cli, sim_dataset, tmp_path, paper_weights, backend):
    blur, spikes = _sample_files(sim_dataset)
    res = cli(
        "deblur",
        "--blur",
        blur,
        "--spikes",
        spikes,
        "--spike-size",
        "32x48",
        "--times",
        1,
        "--model",
        "ldn",
        "--weights",
        paper_weights,
        "--backend",
        backend,
        "--out",
        tmp_path,
    )
    assert res.returncode == 0, res.stderr
    frame = cv2.imread(str(tmp_path / "frame_000.png"), cv2.IMREAD_COLOR)
    blur_img = cv2.imread(str(blur), cv2.IMREAD_COLOR)
    assert psnr(frame, _truth(sim_dataset, 68)) > psnr(blur_img, _truth(sim_dataset, 68)) + 1.0


def test_wrong_resolution_names_both_sizes(cli, sim_dataset, tmp_path):
    blur, spikes = _sample_files(sim_dataset)
    small = tmp_path / "small.png"
    cv2.imwrite(str(small), cv2.imread(str(blur))[:100])
    res = cli("deblur", "--blur", small, "--spikes", spikes, "--spike-size", "32x48", "--out", tmp_path / "o")
    assert res.returncode == 2
    assert "32x48" in res.stderr and "100x192" in res.stderr and "Traceback" not in res.stderr


def test_truncated_spike_file_is_a_clear_error(cli, sim_dataset, tmp_path):
    blur, spikes = _sample_files(sim_dataset)
    cut = tmp_path / "cut.dat"
    cut.write_bytes(spikes.read_bytes()[:-7])
    res = cli("deblur", "--blur", blur, "--spikes", cut, "--spike-size", "32x48", "--out", tmp_path / "o")
    assert res.returncode == 2
    assert "cut.dat" in res.stderr and "whole number" in res.stderr and "Traceback" not in res.stderr


@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (["--model", "ldn"], "needs --weights"),
        (["--exposure", "2:130"], "frames -2..6"),  # the 9-frame window around 2 leaves the stream
        (["--exposure", "20:200"], "outside the 137 frames"),
        (["--exposure", "9-3"], "A:B"),
        (["--spike-size", "32by48"], "HxW"),
    ],
)
def test_bad_options_are_named(cli, sim_dataset, tmp_path, extra, needle):
    blur, spikes = _sample_files(sim_dataset)
    args = ["deblur", "--blur", blur, "--spikes", spikes, "--spike-size", "32x48", "--out", tmp_path / "o"]
    res = cli(*args, *extra)
    assert res.returncode == 2, res.stderr
    assert needle in res.stderr and "Traceback" not in res.stderr


def test_missing_blur_file_is_named(cli, sim_dataset, tmp_path):
    _, spikes = _sample_files(sim_dataset)
    res = cli(
        "deblur",
        "--blur",
        tmp_path / "nope.png",
        "--spikes",
        spikes,
        "--spike-size",
        "32x48",
        "--out",
        tmp_path / "o",
    )
    assert res.returncode == 2 and "nope.png" in res.stderr
