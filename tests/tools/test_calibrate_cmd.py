"""``spikereveal calibrate spatial|temporal`` end to end on simulated rigs written as real files."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from spikereveal.calibration.model import load_calibration
from spikereveal.capture.dat import write_dat
from spikereveal.stream.spikes import SpikeGeometry
from spikereveal.tools.calibrate_sim import mapping_rms_px, spatial_rig, temporal_rig, write_exposures_csv
from spikereveal.tools.cli import main


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    root = tmp_path_factory.mktemp("board")
    rig = spatial_rig(frames=120, supersample=3)
    cv2.imwrite(str(root / "rgb.png"), rig.rgb)
    write_dat(root / "s.dat", rig.spikes, SpikeGeometry(120, 160))
    return root, rig


@pytest.fixture(scope="module")
def blink(tmp_path_factory):
    root = tmp_path_factory.mktemp("blink")
    rig = temporal_rig(fps=60.0, exposure_ns=6_000_000, spike_rate_hz=10_000.0)
    (root / "frames").mkdir()
    for i, img in enumerate(rig.rgb):
        cv2.imwrite(str(root / "frames" / f"{i}.png"), img)  # 0..29: natural order matters (2 < 10)
    write_exposures_csv(root / "exp.csv", rig.exposures_ns)
    write_dat(root / "s.dat", rig.spikes, SpikeGeometry(*rig.spikes.shape[1:]))
    return root, rig


def _spatial(root, out, *extra):
    return main(["calibrate", "spatial", "--rgb", str(root / "rgb.png"), "--spikes", str(root / "s.dat"),
                 "--spike-size", "120x160", "--out", str(out), *extra])  # fmt: skip


def _temporal(root, rig, out, rgb=None):
    h, w = rig.spikes.shape[1:]
    return main(["calibrate", "temporal", "--rgb", str(rgb or root / "frames"), "--rgb-exposures",
                 str(root / "exp.csv"), "--spikes", str(root / "s.dat"), "--spike-size", f"{h}x{w}",
                 "--spike-rate", str(rig.spike_rate_hz), "--out", str(out)])  # fmt: skip


def test_spatial_writes_homography_rms_and_overlay(board, tmp_path) -> None:
    root, rig = board
    out = tmp_path / "rig1" / "calib.yaml"  # a folder that does not exist yet is made
    assert _spatial(root, out, "--frames", "10:109", "--pattern", "checkerboard:9x6") == 0
    cal = load_calibration(out)
    assert cal.version == 2 and cal.rms_px is not None and cal.rms_px < 0.5
    assert mapping_rms_px(np.asarray(cal.homography), rig.homography, (120, 160)) <= 0.5
    overlay = cv2.imread(str(tmp_path / "rig1" / "calib.png"))
    assert overlay is not None and overlay.shape == rig.rgb.shape


def test_temporal_then_spatial_update_one_file(board, blink, tmp_path) -> None:
    out = tmp_path / "calib.yaml"
    root, rig = blink
    assert _temporal(root, rig, out) == 0
    cal = load_calibration(out)
    assert abs(cal.time_offset_ns - rig.offset_ns) < 1e9 / rig.spike_rate_hz
    assert cal.homography is None and cal.time_offset_std_ns is not None
    assert _spatial(board[0], out) == 0
    both = load_calibration(out)
    assert both.homography is not None and both.time_offset_ns == cal.time_offset_ns
    assert both.time_offset_std_ns == cal.time_offset_std_ns


def test_temporal_reads_a_video_file(blink, tmp_path) -> None:
    root, rig = blink
    video = tmp_path / "blink.avi"
    h, w = rig.rgb.shape[1:3]
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 60.0, (w, h))
    for img in rig.rgb:
        writer.write(img)
    writer.release()
    out = tmp_path / "calib.json"
    assert _temporal(root, rig, out, rgb=video) == 0
    assert abs(load_calibration(out).time_offset_ns - rig.offset_ns) < 1e9 / rig.spike_rate_hz


def test_target_not_found_names_the_image(board, tmp_path, capsys) -> None:
    root, _ = board
    cv2.imwrite(str(tmp_path / "rgb.png"), np.full((480, 640, 3), 128, np.uint8))
    write_dat(tmp_path / "s.dat", np.zeros((4, 120, 160), np.uint8), SpikeGeometry(120, 160))
    assert _spatial(tmp_path, tmp_path / "c.yaml") == 2
    assert "error: RGB image: no 9x6 checkerboard" in capsys.readouterr().err
    cv2.imwrite(str(tmp_path / "rgb.png"), cv2.imread(str(root / "rgb.png")))
    assert _spatial(tmp_path, tmp_path / "c.yaml") == 2
    assert "error: spike TFP image: no 9x6 checkerboard" in capsys.readouterr().err
    assert not (tmp_path / "c.yaml").exists()


def test_flat_scene_and_bad_csv_are_clear_errors(blink, tmp_path, capsys) -> None:
    root, rig = blink
    (tmp_path / "frames").mkdir()
    for i in range(len(rig.rgb)):
        cv2.imwrite(str(tmp_path / "frames" / f"{i}.png"), np.full((8, 8, 3), 100, np.uint8))
    (tmp_path / "exp.csv").write_text((root / "exp.csv").read_text())
    write_dat(tmp_path / "s.dat", rig.spikes, SpikeGeometry(*rig.spikes.shape[1:]))
    assert _temporal(tmp_path, rig, tmp_path / "c.yaml") == 2
    assert "does not change enough" in capsys.readouterr().err
    (tmp_path / "exp.csv").write_text("start,end\n1,2\n")
    assert _temporal(tmp_path, rig, tmp_path / "c.yaml") == 2
    assert "header start_ns,end_ns" in capsys.readouterr().err
    (tmp_path / "exp.csv").write_text("start_ns,end_ns\n1,2\n")
    assert _temporal(tmp_path, rig, tmp_path / "c.yaml") == 2
    assert "1 exposure rows for 30 RGB frames" in capsys.readouterr().err


def test_help_defines_the_pattern_and_bad_options(board, tmp_path, capsys) -> None:
    assert main(["calibrate", "spatial", "--help"]) == 0
    assert "the INNER corners per row and per column" in " ".join(capsys.readouterr().out.split())
    assert _spatial(board[0], tmp_path / "c.yaml", "--pattern", "grid:9x6") == 2
    assert "checkerboard:COLSxROWS" in capsys.readouterr().err
    assert _spatial(board[0], tmp_path / "c.yaml", "--frames", "0:999") == 2
    assert _spatial(board[0], tmp_path / "c.txt") == 2
