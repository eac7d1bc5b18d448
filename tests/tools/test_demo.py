"""``spikereveal demo``: the main job on the built-in sample, as ``make demo`` runs it."""

import json

import cv2


def test_demo_writes_sequence_sheet_and_metrics(cli, tmp_path):
    res = cli("demo", "--out", tmp_path, "--samples", 1, "--no-live")
    assert res.returncode == 0, res.stderr
    assert "no trained LDN weights" in res.stdout  # says it shows SDM
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
