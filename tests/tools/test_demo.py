"""``spikereveal demo``: the main job on the built-in sample, as ``make demo`` runs it."""

import json

import cv2


def test_demo_writes_sequence_sheet_and_metrics(cli, tmp_path):
    res = cli("demo", "--out", tmp_path, "--samples", 1, "--no-live")
    assert res.returncode == 0, res.stderr
    # (the suite's tree has no default weights: tests/conftest.py) it says so and shows SDM
    assert "make default-weights" in res.stdout and "shows SDM only" in res.stdout
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert set(metrics) == {"blur", "sdm"}
    assert metrics["sdm"]["n"] == 5
    # SDM recovers the sharp frames better than the blur on this simulated pan
    assert metrics["sdm"]["psnr_db"] > metrics["blur"]["psnr_db"] + 2.0
    assert metrics["sdm"]["ssim"] > metrics["blur"]["ssim"]
    sheet = cv2.imread(str(tmp_path / "contact_sheet.png"))
    assert sheet is not None and sheet.shape[0] > sheet.shape[1] / 2  # 5 rows of 4 tiles
    frames = json.loads((tmp_path / "sharp/pan/0000/frames.json").read_text())
    assert frames["spike_indices"] == [20, 44, 68, 92, 116]


def test_demo_adds_the_ldn_column_with_weights(cli, tmp_path, paper_weights):
    res = cli(
        "demo", "--out", tmp_path, "--samples", 1, "--times", 1, "--weights", paper_weights, "--no-live"
    )
    assert res.returncode == 0, res.stderr
    metrics = json.loads((tmp_path / "metrics.json").read_text())["metrics"]
    assert metrics["ldn"]["n"] == 1
    assert metrics["ldn"]["psnr_db"] > metrics["blur"]["psnr_db"]


def test_demo_shows_the_default_ldn_against_sdm(cli, tmp_path, default_weights):
    # GIVEN default LDN weights (a tiny random file standing in for engine/default_weights/)
    # WHEN the demo runs without --weights
    res = cli("demo", "--out", tmp_path, "--samples", 1, "--times", 2, "--no-live")
    # THEN it compares the LDN on them with SDM and the blur, and writes the LDN's sequence
    assert res.returncode == 0, res.stderr
    assert "shows SDM only" not in res.stdout and "ldn" in res.stdout
    summary = json.loads((tmp_path / "metrics.json").read_text())
    assert set(summary["metrics"]) == {"blur", "sdm", "ldn"} and summary["metrics"]["ldn"]["n"] == 2
    assert summary["ldn_weights"] == str(default_weights)
    assert json.loads((tmp_path / "sharp/pan/0000/frames.json").read_text())["model"] == "ldn"
    sheet = cv2.imread(str(tmp_path / "contact_sheet.png"))
    assert sheet is not None


def test_demo_with_weights_default_but_none_built_is_one_line(cli, tmp_path):
    res = cli("demo", "--out", tmp_path, "--samples", 1, "--weights", "default", "--no-live")
    assert res.returncode == 2 and "make default-weights" in res.stderr and "Traceback" not in res.stderr
