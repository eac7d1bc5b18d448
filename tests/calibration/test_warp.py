"""Applying a calibration: RGB onto the spike grid's 4x, exposures onto spike frames; the v2 record."""

from __future__ import annotations

import numpy as np
import pytest

from spikereveal.calibration.model import Calibration, CalibrationError, load_calibration, save_calibration
from spikereveal.calibration.warp import exposure_window_frames, rgb_on_spike_grid, spike_grid_matrix
from spikereveal.tools.calibrate_sim import TRUE_SPATIAL


def _ramp(h: int, w: int) -> np.ndarray:
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    return np.stack([xx, yy, xx + yy], axis=2)


def test_nominal_calibration_is_the_identity_at_scale_4() -> None:
    rgb = _ramp(48, 64)
    out = rgb_on_spike_grid(rgb, Calibration(), (12, 16))
    assert out.shape == (48, 64, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, rgb, atol=1e-3)


def test_homography_with_a_pure_shift_moves_pixels_exactly() -> None:
    # Spike (x, y) -> RGB (4x + 1.5 + 8, 4y + 1.5 + 4): the 4x grid is the RGB shifted by (8, 4).
    h = ((4.0, 0.0, 9.5), (0.0, 4.0, 5.5), (0.0, 0.0, 1.0))
    rgb = (np.arange(60 * 80, dtype=np.uint32) % 251).astype(np.uint8).reshape(60, 80)
    out = rgb_on_spike_grid(rgb, Calibration(homography=h), (10, 12))
    assert out.shape == (40, 48)
    np.testing.assert_array_equal(out, rgb[4:44, 8:56])


def test_output_pixel_centre_maps_through_the_homography() -> None:
    cal = Calibration(homography=tuple(tuple(r) for r in TRUE_SPATIAL))
    rgb = _ramp(480, 640)
    out = rgb_on_spike_grid(rgb, cal, (120, 160), scale=2)
    for X, Y in [(10, 7), (151, 99), (300, 200)]:
        xs, ys = (X + 0.5) / 2 - 0.5, (Y + 0.5) / 2 - 0.5
        p = TRUE_SPATIAL @ np.array([xs, ys, 1.0])
        assert out[Y, X, 0] == pytest.approx(p[0] / p[2], abs=0.02)
        assert out[Y, X, 1] == pytest.approx(p[1] / p[2], abs=0.02)
    np.testing.assert_allclose(spike_grid_matrix(Calibration(), 4), np.eye(3), atol=1e-12)


def test_rgb_on_spike_grid_rejects_bad_arguments() -> None:
    with pytest.raises(CalibrationError, match="scale"):
        rgb_on_spike_grid(np.zeros((8, 8)), Calibration(), (2, 2), scale=0)
    with pytest.raises(CalibrationError, match="rgb"):
        rgb_on_spike_grid(np.zeros(8), Calibration(), (2, 2))


def test_exposure_window_frames_follows_the_offset_and_margin() -> None:
    # 20 kHz: 50 us per frame; an exposure [0, 1 ms] covers frames 1..20 (frame i integrates ((i-1), i]).
    assert exposure_window_frames(0, 1_000_000, Calibration(), 20_000.0) == (1, 20)
    assert exposure_window_frames(0, 1_000_000, Calibration(time_offset_ns=1_000_000), 20_000.0) == (21, 40)
    assert exposure_window_frames(0, 1_000_000, Calibration(time_offset_ns=-25_000), 20_000.0, 3) == (-3, 23)
    assert exposure_window_frames(10, 10, Calibration(), 20_000.0) == (1, 1)
    with pytest.raises(CalibrationError, match="margin_frames"):
        exposure_window_frames(0, 1, Calibration(), 20_000.0, -1)
    with pytest.raises(CalibrationError, match="spike_rate_hz"):
        exposure_window_frames(0, 1, Calibration(), float("nan"))


# -- the version-2 record (calibration/model.py) -------------------------------------------------


def test_v2_round_trip_and_v1_files_still_load(tmp_path) -> None:
    cal = Calibration(
        homography=tuple(tuple(r) for r in TRUE_SPATIAL),
        rms_px=0.12,
        time_offset_ns=1234,
        time_offset_std_ns=5.0,
    )
    path = save_calibration(tmp_path / "c.yaml", cal)
    assert path.read_text().startswith("version: 2\n")
    back = load_calibration(path)
    assert back == cal and back.version == 2 and back.homography == cal.homography
    old = tmp_path / "old.yaml"
    old.write_text("id: rig\nscale: 4\n")
    v1 = load_calibration(old)
    assert v1.version == 1 and v1.homography is None and v1.time_offset_ns == 0


@pytest.mark.parametrize(
    ("homography", "match"),
    [
        ([[1, 0], [0, 1]], "not a 3x3"),
        ([[1, 0, 0], [0, 1, 0], [0, 0, "x"]], "not a 3x3"),
        ([[1, 0, 0], [0, float("nan"), 0], [0, 0, 1]], "NaN or infinite"),
        ([[1, 2, 0], [2, 4, 0], [0, 0, 0]], "singular"),
    ],
)
def test_malformed_homography_names_the_field(tmp_path, homography, match) -> None:
    import json

    path = tmp_path / "c.json"
    path.write_text(json.dumps({"homography": homography}).replace("NaN", "NaN"))
    with pytest.raises(CalibrationError, match=rf"c\.json: calibration homography: .*{match}"):
        load_calibration(path)


def test_unknown_version_and_bad_time_fields(tmp_path) -> None:
    with pytest.raises(CalibrationError, match="version"):
        Calibration(version=3)
    with pytest.raises(CalibrationError, match="time_offset_ns"):
        Calibration(time_offset_ns=1.5)
    with pytest.raises(CalibrationError, match="rms_px"):
        Calibration(rms_px=-1.0)
    (tmp_path / "u.yaml").write_text("version: 2\nhomograpy: []\n")
    with pytest.raises(CalibrationError, match="unknown field"):
        load_calibration(tmp_path / "u.yaml")
