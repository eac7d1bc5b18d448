"""Spatial calibration: a simulated rig with a known homography is recovered; missing boards are named."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from spikereveal.calibration.model import CalibrationError
from spikereveal.calibration.spatial import (
    calibrate_spatial,
    fit_homography,
    overlay_image,
    parse_pattern,
    project,
    tfp_image,
)
from spikereveal.tools.calibrate_sim import TRUE_SPATIAL, mapping_rms_px, spatial_rig


@pytest.fixture(scope="module")
def rig():
    return spatial_rig(frames=150, supersample=3)


def test_recovers_known_homography_within_half_an_rgb_pixel(rig) -> None:
    fit = calibrate_spatial(rig.rgb, rig.spikes, rig.pattern)
    err = mapping_rms_px(fit.homography, rig.homography, rig.spikes.shape[1:])
    assert err <= 0.5, f"mapping error {err:.3f} RGB px RMS"
    assert fit.rms_px < 0.5
    assert fit.inliers.all()
    # The fitted map is the truth's: ~4x, rotated 2.5 degrees.
    assert np.degrees(np.arctan2(fit.homography[1, 0], fit.homography[0, 0])) == pytest.approx(2.5, abs=0.2)


def test_overlay_is_an_rgb_sized_colour_picture(rig) -> None:
    fit = calibrate_spatial(rig.rgb, rig.spikes, rig.pattern)
    picture = overlay_image(rig.rgb, fit)
    assert picture.shape == rig.rgb.shape and picture.dtype == np.uint8
    # The warped TFP's edges are magenta (B != G) over the grey RGB, on the board's own edges.
    magenta = (picture[..., 0] == 255) & (picture[..., 1] == 0) & (picture[..., 2] == 255)
    assert magenta.mean() > 0.01
    rgb_edges = cv2.Canny(cv2.cvtColor(rig.rgb, cv2.COLOR_BGR2GRAY), 40, 120) > 0
    near = cv2.dilate(rgb_edges.astype(np.uint8), np.ones((5, 5), np.uint8)) > 0
    assert near[magenta].mean() > 0.9  # a good fit puts them within 2 px of the RGB's edges


def test_board_missing_in_spikes_names_the_spike_image(rig) -> None:
    blank = np.zeros_like(rig.spikes[:10])
    blank[:, ::2] = 1
    with pytest.raises(CalibrationError, match="spike TFP image: no 9x6 checkerboard"):
        calibrate_spatial(rig.rgb, blank, rig.pattern)


def test_board_missing_in_rgb_names_the_rgb_image(rig) -> None:
    with pytest.raises(CalibrationError, match="RGB image: no 9x6 checkerboard"):
        calibrate_spatial(np.full_like(rig.rgb, 128), rig.spikes, rig.pattern)


def test_wrong_pattern_size_is_not_found(rig) -> None:
    with pytest.raises(CalibrationError, match="RGB image: no 7x4 checkerboard"):
        calibrate_spatial(rig.rgb, rig.spikes, (7, 4))


def test_fit_homography_golden_with_an_outlier() -> None:
    gx, gy = np.meshgrid(np.arange(0, 100, 10.0), np.arange(0, 80, 10.0))
    src = np.stack([gx.ravel(), gy.ravel()], axis=1)
    dst = project(TRUE_SPATIAL, src)
    dst[5] += 40.0  # one badly wrong corner
    h, inliers, rms = fit_homography(src, dst)
    assert not inliers[5] and inliers.sum() == len(src) - 1
    assert rms < 1e-4
    np.testing.assert_allclose(h, TRUE_SPATIAL, rtol=1e-5, atol=1e-8)


def test_fit_homography_needs_four_points() -> None:
    with pytest.raises(CalibrationError, match="at least 4"):
        fit_homography(np.zeros((3, 2)), np.zeros((3, 2)))


def test_tfp_image_is_the_mean_of_the_frames() -> None:
    spikes = np.zeros((4, 2, 3), dtype=np.uint8)
    spikes[:3, 0, 0] = 1
    spikes[0, 1, 2] = 1
    tfp = tfp_image(spikes)
    assert tfp.dtype == np.float32
    assert tfp[0, 0] == 0.75 and tfp[1, 2] == 0.25 and tfp.sum() == 1.0
    with pytest.raises(CalibrationError, match="spikes"):
        tfp_image(np.zeros((0, 2, 2)))


@pytest.mark.parametrize("text", ["9x6", "checkerboard:9", "checkerboard:1x6", "circles:9x6"])
def test_parse_pattern_rejects(text: str) -> None:
    with pytest.raises(CalibrationError, match="pattern"):
        parse_pattern(text)


def test_parse_pattern_reads_cols_then_rows() -> None:
    assert parse_pattern(" checkerboard : 7X4 ") == (7, 4)


@pytest.mark.parametrize("pattern", [(8, 6), (7, 5), (9, 6)])
def test_a_detection_from_the_other_end_of_the_board_is_put_back_in_order(pattern) -> None:
    from spikereveal.calibration.spatial import _reversed, find_checkerboard

    rig = spatial_rig(frames=120, pattern=pattern, supersample=3)
    tfp = tfp_image(rig.spikes)
    rgb_corners = find_checkerboard(rig.rgb, pattern, "RGB image")
    spike_corners = find_checkerboard(tfp, pattern, "spike TFP image")
    assert not _reversed(rig.rgb, rgb_corners, tfp, spike_corners, pattern)
    assert _reversed(rig.rgb, rgb_corners, tfp, spike_corners[::-1].copy(), pattern)
