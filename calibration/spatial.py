"""Spatial calibration: the homography from spike pixels to RGB pixels, from one checkerboard view.

The two sensors see one scene through different optics (a beam splitter and a 4x resolution
difference on the RSB rig). A checkerboard is found in the RGB frame and in the TFP (mean of
spike frames) of the spike stream; the corners pair up and a homography is fitted, first with
RANSAC (a corner mis-detected in the noisy TFP must not bend the fit), then by least squares on
the inliers. Coordinates follow OpenCV: pixel centres at integers, (x, y) = (column, row).

Pattern size ``COLSxROWS`` counts *inner* corners (where four squares meet): a board of 10x7
squares is ``9x6``. One even and one odd count (9x6, 7x4) make the board look different when
turned by 180 degrees, which is how the two corner lists are put in the same order; a board that
looks the same turned (8x6, 7x5) falls back on the corner direction (see ``_reversed``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import cv2
import numpy as np

from spikereveal.calibration.model import CalibrationError

DEFAULT_PATTERN = (9, 6)
# RANSAC inlier threshold in RGB pixels: sub-pixel corners sit well inside it, a wrong one far out.
RANSAC_THRESHOLD_PX = 3.0
# The TFP is small (160x120 for a 640x480 RGB); the detector likes squares of a dozen pixels or
# more, so small images are enlarged before detection and the corners mapped back.
_MIN_DETECT_SIDE = 480

_PATTERN_RE = re.compile(r"^\s*checkerboard\s*:\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_pattern(text: str) -> tuple[int, int]:
    """``"checkerboard:9x6"`` -> ``(9, 6)``: inner corners per row (COLS) and per column (ROWS).

    Examples:
        >>> parse_pattern("checkerboard:9x6")
        (9, 6)
    """
    match = _PATTERN_RE.match(text)
    if match is None:
        raise CalibrationError(
            f"pattern: {text!r} is not checkerboard:COLSxROWS (inner corners), e.g. checkerboard:9x6"
        )
    cols, rows = int(match.group(1)), int(match.group(2))
    if cols < 2 or rows < 2:
        raise CalibrationError(f"pattern: {text!r} needs at least 2x2 inner corners")
    return cols, rows


def tfp_image(spikes: np.ndarray) -> np.ndarray:
    """Mean of (T, H, W) 0/1 spike frames as (H, W) float32 in 0..1 (the TFP over all given frames).

    The engine has the one TFP of the pipeline; calibration sits below it, and a mean is all it
    needs here.
    """
    spikes = np.asarray(spikes)
    if spikes.ndim != 3 or spikes.shape[0] == 0:
        raise CalibrationError(f"spikes: expected (T, H, W) frames with T >= 1, got shape {spikes.shape}")
    return (spikes.sum(axis=0, dtype=np.int64) / spikes.shape[0]).astype(np.float32)


def to_grey_u8(image: np.ndarray) -> np.ndarray:
    """An image as 8-bit grey for the detector: BGR -> grey, floats stretched to 0..255 by their range."""
    image = np.asarray(image)
    if image.ndim == 3:
        if image.dtype != np.uint8:
            image = _stretch(image.astype(np.float32))
        image = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if image.shape[2] == 3 else cv2.COLOR_BGRA2GRAY)
    if image.dtype != np.uint8:
        image = _stretch(image.astype(np.float32))
    return image


def _stretch(image: np.ndarray) -> np.ndarray:
    lo, hi = float(np.min(image)), float(np.max(image))
    scale = 255.0 / (hi - lo) if hi > lo else 0.0
    return np.clip(np.rint((image - lo) * scale), 0, 255).astype(np.uint8)


def find_checkerboard(grey: np.ndarray, pattern: tuple[int, int], name: str) -> np.ndarray:
    """Inner corners of a ``pattern`` (COLS, ROWS) board in an 8-bit grey image, (ROWS*COLS, 2) float64.

    Row-major (COLS corners per row), sub-pixel, pixel centres at integers. ``name`` names the
    image in the error raised when the board is not found.
    """
    grey = to_grey_u8(grey)
    h, w = grey.shape
    factor = max(1, int(np.ceil(_MIN_DETECT_SIDE / max(min(h, w), 1))))
    big = cv2.resize(grey, (w * factor, h * factor), interpolation=cv2.INTER_CUBIC) if factor > 1 else grey
    corners = _detect(big, pattern)
    if corners is None:
        raise CalibrationError(
            f"{name}: no {pattern[0]}x{pattern[1]} checkerboard (inner corners) found in the "
            f"{w}x{h} image; check the pattern size and that the whole board is visible"
        )
    # Pixel centre x of the enlarged image sits at (x + 0.5) / factor - 0.5 of the original.
    corners = (corners.astype(np.float64) + 0.5) / factor - 0.5
    return refine_saddle(grey, corners, pattern)


def refine_saddle(grey: np.ndarray, corners: np.ndarray, pattern: tuple[int, int]) -> np.ndarray:
    """Corners moved to the saddle point of a quadratic fitted to the smoothed image around each.

    cornerSubPix is biased by ~0.1 px on squares of ~10 px (a 160x120 TFP); the saddle of the
    blurred intensity is the corner by symmetry and lands within ~0.03 px there (measured on
    simulated boards), which is what the 0.5 RGB px goal needs at a 4x scale. The window and
    blur scale with the square size; a corner whose fit is not a saddle keeps its first estimate.
    """
    pts = corners.reshape(pattern[1], pattern[0], 2)
    step = float(np.median(np.linalg.norm(np.diff(pts, axis=1), axis=2)))
    r = int(max(2, round(0.35 * step)))
    smooth = cv2.GaussianBlur(np.asarray(grey, dtype=np.float64), (0, 0), max(0.7, 0.15 * step))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(np.float64)
    x, y = xx.ravel(), yy.ravel()
    weights = np.exp(-(x**2 + y**2) / (2 * (r / 1.5) ** 2))
    design = np.stack([x * x, x * y, y * y, x, y, np.ones_like(x)], axis=1) * weights[:, None]
    h, w = smooth.shape
    out = corners.copy()
    for k, (cx, cy) in enumerate(corners):
        px, py = cx, cy
        for _ in range(3):
            ix, iy = int(round(px)), int(round(py))
            if ix - r < 0 or iy - r < 0 or ix + r >= w or iy + r >= h:
                break
            patch = smooth[iy - r : iy + r + 1, ix - r : ix + r + 1].ravel() * weights
            a, b, c, d, e, _ = np.linalg.lstsq(design, patch, rcond=None)[0]
            hess = np.array([[2 * a, b], [b, 2 * c]])
            if np.linalg.det(hess) >= 0:  # not a saddle: no corner model here
                break
            sx, sy = np.linalg.solve(hess, [-d, -e])
            if abs(sx) > r or abs(sy) > r:
                break
            px, py = ix + sx, iy + sy
        if np.hypot(px - cx, py - cy) < 0.5 * step:
            out[k] = (px, py)
    return out


def _detect(grey: np.ndarray, pattern: tuple[int, int]) -> np.ndarray | None:
    found, corners = cv2.findChessboardCornersSB(grey, pattern, flags=cv2.CALIB_CB_ACCURACY)
    if not found:
        flags = cv2.CALIB_CB_ADAPTIVE_THRESH | cv2.CALIB_CB_NORMALIZE_IMAGE
        found, corners = cv2.findChessboardCorners(grey, pattern, flags=flags)
        if not found:
            return None
    corners = corners.reshape(-1, 1, 2).astype(np.float32)
    # Half a square (in pixels) bounds the refinement window, so it never reaches the next corner.
    pts = corners.reshape(pattern[1], pattern[0], 2)
    step = float(np.median(np.linalg.norm(np.diff(pts, axis=1), axis=2)))
    half = int(max(2, min(11, step * 0.4)))
    criteria = (cv2.TERM_CRITERIA_EPS + cv2.TERM_CRITERIA_MAX_ITER, 50, 1e-3)
    cv2.cornerSubPix(grey, corners, (half, half), (-1, -1), criteria)
    return corners.reshape(-1, 2)


def first_square_is_dark(grey: np.ndarray, corners: np.ndarray, pattern: tuple[int, int]) -> bool:
    """Whether the square between the first two corner rows and columns is darker than the next one.

    Used to bring two detections into the same order: the detector may start from either end of
    the board.
    """
    grey = to_grey_u8(grey).astype(np.float32)
    cols = pattern[0]
    pts = corners.reshape(pattern[1], cols, 2)
    a = pts[0:2, 0:2].reshape(-1, 2).mean(axis=0)  # centre of the first square
    b = pts[0:2, 1:3].reshape(-1, 2).mean(axis=0)  # its neighbour along the row
    return _sample(grey, a) < _sample(grey, b)


def _reversed(
    rgb: np.ndarray,
    rgb_corners: np.ndarray,
    tfp: np.ndarray,
    spike_corners: np.ndarray,
    pattern: tuple[int, int],
) -> bool:
    """Whether the detector listed the spike corners from the other end of the board than the RGB ones.

    With one even and one odd inner-corner count, a board turned by 180 degrees swaps its square
    shades, so the first square's shade tells the two orders apart whatever the optics do. With
    both even or both odd it looks the same turned; there the order is the one that keeps the
    first-to-last corner direction (the sensors are never turned by more than 90 degrees against
    each other on a rig that shares one view).
    """
    if (pattern[0] + pattern[1]) % 2 == 1:
        return first_square_is_dark(rgb, rgb_corners, pattern) != first_square_is_dark(
            tfp, spike_corners, pattern
        )
    rgb_dir = rgb_corners[-1] - rgb_corners[0]
    spike_dir = spike_corners[-1] - spike_corners[0]
    return float(np.dot(rgb_dir, spike_dir)) < 0


def _sample(grey: np.ndarray, xy: np.ndarray) -> float:
    x, y = int(round(xy[0])), int(round(xy[1]))
    h, w = grey.shape
    return float(grey[min(max(y, 0), h - 1), min(max(x, 0), w - 1)])


@dataclass(frozen=True)
class SpatialFit:
    """A fitted homography and the data behind it.

    ``homography``: (3, 3) float64, spike (x, y, 1) -> RGB (x, y, 1). ``rms_px``: reprojection
    RMS over the inliers, RGB pixels. ``spike_corners``/``rgb_corners``: (N, 2) paired corners.
    ``inliers``: (N,) bool. ``tfp``: the (h, w) float32 TFP the spike corners came from.
    """

    homography: np.ndarray
    rms_px: float
    spike_corners: np.ndarray
    rgb_corners: np.ndarray
    inliers: np.ndarray
    tfp: np.ndarray

    @property
    def homography_rows(self) -> tuple[tuple[float, float, float], ...]:
        """The homography as nested tuples, as the calibration record holds it."""
        return tuple(tuple(float(v) for v in row) for row in self.homography)


def fit_homography(spike_pts: np.ndarray, rgb_pts: np.ndarray) -> tuple[np.ndarray, np.ndarray, float]:
    """Robust homography spike -> RGB: RANSAC, then least squares (Levenberg-Marquardt) on the inliers.

    Returns (H normalised to H[2, 2] = 1, inlier mask, RMS reprojection error in RGB pixels).
    """
    src = np.asarray(spike_pts, dtype=np.float64).reshape(-1, 1, 2)
    dst = np.asarray(rgb_pts, dtype=np.float64).reshape(-1, 1, 2)
    if len(src) < 4:
        raise CalibrationError(f"homography: needs at least 4 corner pairs, got {len(src)}")
    h_ransac, mask = cv2.findHomography(src, dst, cv2.RANSAC, RANSAC_THRESHOLD_PX)
    if h_ransac is None:
        raise CalibrationError("homography: the corners do not fit a homography (degenerate layout)")
    inliers = mask.ravel().astype(bool)
    if inliers.sum() < 4:
        raise CalibrationError(f"homography: only {int(inliers.sum())} corners agree; need at least 4")
    h_fit, _ = cv2.findHomography(src[inliers], dst[inliers], 0)
    if h_fit is None:
        h_fit = h_ransac
    h_fit = h_fit / h_fit[2, 2]
    err = project(h_fit, src[inliers].reshape(-1, 2)) - dst[inliers].reshape(-1, 2)
    rms = float(np.sqrt(np.mean(np.sum(err**2, axis=1))))
    return h_fit, inliers, rms


def project(homography: np.ndarray, pts: np.ndarray) -> np.ndarray:
    """Apply a 3x3 homography to (N, 2) points; returns (N, 2) float64."""
    pts = np.asarray(pts, dtype=np.float64).reshape(-1, 2)
    hom = np.concatenate([pts, np.ones((len(pts), 1))], axis=1) @ np.asarray(homography, dtype=np.float64).T
    return hom[:, :2] / hom[:, 2:3]


def calibrate_spatial(
    rgb: np.ndarray, spikes: np.ndarray, pattern: tuple[int, int] = DEFAULT_PATTERN
) -> SpatialFit:
    """Fit the spike -> RGB homography from an RGB image and the spike frames of the same board.

    ``rgb``: (H, W, 3) uint8 BGR or (H, W) grey. ``spikes``: (T, h, w) 0/1 frames (their mean is
    the TFP the spike corners are found in). ``pattern``: inner corners (COLS, ROWS).
    """
    tfp = tfp_image(spikes)
    rgb_corners = find_checkerboard(rgb, pattern, "RGB image")
    spike_corners = find_checkerboard(tfp, pattern, "spike TFP image")
    if _reversed(rgb, rgb_corners, tfp, spike_corners, pattern):
        spike_corners = spike_corners[::-1].copy()
    homography, inliers, rms = fit_homography(spike_corners, rgb_corners)
    return SpatialFit(homography, rms, spike_corners, rgb_corners, inliers, tfp)


def overlay_image(rgb: np.ndarray, fit: SpatialFit) -> np.ndarray:
    """A picture to check the fit at a glance: (H, W, 3) uint8 BGR.

    The RGB image in grey with the spike TFP's edges, warped onto it through the homography, drawn
    in magenta (a good fit puts them on the RGB's own edges; a misfit shows as doubled lines); the
    RGB corners as green circles and the spike corners mapped through the homography as red
    crosses (they should sit in the circles).
    """
    grey = to_grey_u8(rgb)
    h, w = grey.shape
    tfp = to_grey_u8(fit.tfp)
    warped = cv2.warpPerspective(tfp, fit.homography, (w, h), flags=cv2.INTER_LINEAR)
    covered = cv2.warpPerspective(np.full_like(tfp, 255), fit.homography, (w, h), flags=cv2.INTER_NEAREST)
    edges = cv2.Canny(cv2.GaussianBlur(warped, (0, 0), 1.5), 40, 120) > 0
    edges &= cv2.erode(covered, np.ones((5, 5), np.uint8)) > 0  # not the border of the spike view
    out = cv2.cvtColor((grey * 0.8).astype(np.uint8), cv2.COLOR_GRAY2BGR)
    out[edges] = (255, 0, 255)
    radius = max(3, min(h, w) // 120)
    for x, y in fit.rgb_corners:
        cv2.circle(out, (int(round(x)), int(round(y))), radius + 2, (0, 200, 0), 1, cv2.LINE_AA)
    for x, y in project(fit.homography, fit.spike_corners):
        cv2.drawMarker(out, (int(round(x)), int(round(y))), (0, 0, 255), cv2.MARKER_CROSS, 2 * radius, 1)
    label = f"rms {fit.rms_px:.3f} px, {int(fit.inliers.sum())}/{len(fit.inliers)} corners"
    (tw, th), _ = cv2.getTextSize(label, cv2.FONT_HERSHEY_SIMPLEX, 0.5, 1)
    cv2.rectangle(out, (4, 4), (16 + tw, 12 + th + 4), (0, 0, 0), -1)
    cv2.putText(out, label, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(out, label, (8, 20), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (255, 255, 255), 1, cv2.LINE_AA)
    return out
