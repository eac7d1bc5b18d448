"""Simulated rigs with known ground truth, to measure the calibration: a checkerboard and a blinking light.

Spatial: a checkerboard on white paper rendered, area-sampled, into a 640x480 RGB image and
through a known homography (a few degrees of rotation, scale ~4, a shift, slight perspective)
into a 160x120 spike sensor, fired by the integrate-and-fire simulator for ~200 frames.
Temporal: an irregular blink (random levels and durations) seen by both sensors, with the spike
clock ahead of the RGB clock by a known offset, and RGB exposures at a frame rate of choice.

Run ``python -m spikereveal.tools.calibrate_sim OUT_DIR`` to write both rigs and print the
recovered calibration against the truth (``calibrate spatial``/``temporal`` run on the files).
"""

from __future__ import annotations

import csv
import sys
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from spikereveal.capture.spike_camera import SpikeCamera

# A truth of the kind a beam-splitter rig has: ~4x, 2.5 degrees, a shift, a little keystone.
TRUE_SPATIAL = np.array(
    [
        [4.0 * np.cos(np.radians(2.5)), -4.0 * np.sin(np.radians(2.5)), 12.3],
        [4.0 * np.sin(np.radians(2.5)), 4.0 * np.cos(np.radians(2.5)), -7.6],
        [2.0e-5, -1.5e-5, 1.0],
    ]
)


def _homography_from_board(
    pattern: tuple[int, int], square_px: float, centre: tuple[float, float]
) -> np.ndarray:
    """Board coordinates (units of squares, origin at the board's top-left outer corner) -> RGB pixels."""
    cols, rows = pattern[0] + 1, pattern[1] + 1  # squares
    tilt = np.array([[1.0, 0.06, 0.0], [-0.04, 1.0, 0.0], [1.0e-4, 5.0e-5, 1.0]])
    place = np.array(
        [
            [square_px, 0, centre[0] - square_px * cols / 2],
            [0, square_px, centre[1] - square_px * rows / 2],
            [0, 0, 1.0],
        ]
    )
    return tilt @ place


def render_board(
    board_to_image: np.ndarray, size_hw: tuple[int, int], pattern: tuple[int, int], supersample: int = 4
) -> np.ndarray:
    """Grey 0..1 (float64) image of a checkerboard on white paper over a grey background, area-sampled.

    Each pixel (pixel centres at integers) is the mean of ``supersample``^2 samples of the board
    seen through ``board_to_image``: the light a sensor pixel integrates.
    """
    h, w = size_hw
    s = supersample
    offs = (np.arange(s) + 0.5) / s - 0.5
    ys = (np.arange(h)[:, None] + offs[None, :]).ravel()
    xs = (np.arange(w)[:, None] + offs[None, :]).ravel()
    gx, gy = np.meshgrid(xs, ys)
    inv = np.linalg.inv(board_to_image)
    hom = inv @ np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size)])
    u, v = hom[0] / hom[2], hom[1] / hom[2]
    cols, rows = pattern[0] + 1, pattern[1] + 1
    on_board = (u >= 0) & (u < cols) & (v >= 0) & (v < rows)
    on_paper = (u >= -1) & (u < cols + 1) & (v >= -1) & (v < rows + 1)
    dark = ((np.floor(u) + np.floor(v)) % 2 == 0) & on_board
    value = np.where(on_paper, 0.9, 0.35)
    value = np.where(dark, 0.08, value)
    return value.reshape(h * s, w * s).reshape(h, s, w, s).mean(axis=(1, 3))


@dataclass(frozen=True)
class SpatialRig:
    """A simulated spatial calibration shot: ``rgb`` (H, W, 3) uint8 BGR, ``spikes`` (T, h, w) 0/1."""

    rgb: np.ndarray
    spikes: np.ndarray
    homography: np.ndarray  # truth: spike (x, y, 1) -> RGB (x, y, 1)
    pattern: tuple[int, int]


def spatial_rig(
    rgb_hw: tuple[int, int] = (480, 640),
    spike_hw: tuple[int, int] = (120, 160),
    frames: int = 200,
    pattern: tuple[int, int] = (9, 6),
    homography: np.ndarray = TRUE_SPATIAL,
    supersample: int = 4,
    seed: int = 0,
) -> SpatialRig:
    """Render the board into both sensors; the spike sensor sees it through ``homography``."""
    scale = rgb_hw[1] / 640.0
    board = _homography_from_board(pattern, 38.0 * scale, (rgb_hw[1] / 2 + 5 * scale, rgb_hw[0] / 2))
    grey = render_board(board, rgb_hw, pattern, supersample)
    rng = np.random.default_rng(seed)
    noisy = np.clip(grey * 255 + rng.normal(0, 2.0, grey.shape), 0, 255)
    rgb = np.repeat(np.rint(noisy).astype(np.uint8)[..., None], 3, axis=2)
    spike_grey = render_board(np.linalg.inv(homography) @ board, spike_hw, pattern, supersample)
    camera = SpikeCamera(threshold=1.0, seed=seed, noise_prob=0.002)
    spikes = camera.integrate(np.broadcast_to(spike_grey, (frames, *spike_hw)))
    return SpatialRig(rgb, spikes, np.asarray(homography, dtype=np.float64), pattern)


def mapping_rms_px(estimate: np.ndarray, truth: np.ndarray, spike_hw: tuple[int, int]) -> float:
    """RMS distance, in RGB pixels, between two spike->RGB homographies over every spike pixel."""
    h, w = spike_hw
    gx, gy = np.meshgrid(np.arange(w, dtype=np.float64), np.arange(h, dtype=np.float64))
    pts = np.stack([gx.ravel(), gy.ravel(), np.ones(gx.size)])

    def proj(m: np.ndarray) -> np.ndarray:
        p = np.asarray(m, dtype=np.float64) @ pts
        return p[:2] / p[2]

    return float(np.sqrt(np.mean(np.sum((proj(estimate) - proj(truth)) ** 2, axis=0))))


@dataclass(frozen=True)
class TemporalRig:
    """A simulated blink: ``rgb`` (N, H, W, 3) uint8 frames, ``exposures_ns`` (N, 2) on the RGB clock,
    ``spikes`` (T, h, w) 0/1 with frame i read out at i / rate on the spike clock."""

    rgb: np.ndarray
    exposures_ns: np.ndarray
    spikes: np.ndarray
    spike_rate_hz: float
    offset_ns: int  # truth: spike clock = RGB clock + offset


def temporal_rig(
    offset_ns: int = 1_234_000,
    fps: float = 60.0,
    exposure_ns: int = 6_000_000,
    n_rgb: int = 30,
    spike_rate_hz: float = 20_000.0,
    spike_hw: tuple[int, int] = (12, 16),
    rgb_hw: tuple[int, int] = (24, 32),
    flat: bool = False,
    seed: int = 0,
) -> TemporalRig:
    """An irregular blink filmed by both sensors; the spike stream starts at spike-clock 0."""
    rng = np.random.default_rng(seed)
    first_start = 40_000_000  # RGB clock, ns
    span_ns = int(n_rgb * 1e9 / fps) + exposure_ns + 60_000_000
    # Piecewise-constant light in absolute (= RGB clock) time, steps of 2..25 ms.
    edges = [-100_000_000]
    while edges[-1] < first_start + span_ns:
        edges.append(edges[-1] + int(rng.integers(2_000_000, 25_000_000)))
    edges_ns = np.asarray(edges, dtype=np.int64)
    levels = np.full(len(edges_ns) - 1, 0.5) if flat else rng.uniform(0.15, 0.95, len(edges_ns) - 1)
    cum = np.concatenate([[0.0], np.cumsum(levels * np.diff(edges_ns))])

    def light(a_ns: np.ndarray, b_ns: np.ndarray) -> np.ndarray:
        return (np.interp(b_ns, edges_ns, cum) - np.interp(a_ns, edges_ns, cum)) / (b_ns - a_ns)

    starts = first_start + np.rint(np.arange(n_rgb) * 1e9 / fps + rng.uniform(-2e5, 2e5, n_rgb)).astype(
        np.int64
    )
    exposures = np.stack([starts, starts + exposure_ns], axis=1)
    texture = np.linspace(0.7, 1.0, rgb_hw[1])[None, :] * np.ones(rgb_hw)[:, :]
    rgb = []
    for value in light(exposures[:, 0].astype(np.float64), exposures[:, 1].astype(np.float64)):
        img = np.clip(value * texture * 255 + rng.normal(0, 1.5, rgb_hw), 0, 255)
        rgb.append(np.repeat(np.rint(img).astype(np.uint8)[..., None], 3, axis=2))
    # Spike frame i integrates spike-clock ((i-1)/rate, i/rate], i.e. RGB-clock that minus the offset;
    # the stream starts at spike-clock 0 and runs past the last exposure.
    n_frames = int((first_start + span_ns + offset_ns) * spike_rate_hz / 1e9)
    period = 1e9 / spike_rate_hz
    idx = np.arange(n_frames, dtype=np.float64)
    per_frame = light((idx - 1) * period - offset_ns, idx * period - offset_ns)
    spatial = np.linspace(0.8, 1.0, spike_hw[1])[None, :] * np.ones(spike_hw)
    camera = SpikeCamera(threshold=1.0, seed=seed)
    spikes = camera.integrate(per_frame[:, None, None] * spatial[None])
    return TemporalRig(np.stack(rgb), exposures, spikes, spike_rate_hz, int(offset_ns))


def write_exposures_csv(path: Path, exposures_ns: np.ndarray) -> Path:
    """EXP.csv: header ``start_ns,end_ns``, one row per RGB frame."""
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["start_ns", "end_ns"])
        writer.writerows([[int(a), int(b)] for a, b in exposures_ns])
    return path


def main(argv: list[str]) -> int:
    """Write both rigs under OUT_DIR, calibrate them through the CLI, print truth vs estimate."""
    from spikereveal.calibration.model import load_calibration
    from spikereveal.capture.dat import write_dat
    from spikereveal.stream.spikes import SpikeGeometry
    from spikereveal.tools.cli import main as cli_main

    out = Path(argv[0] if argv else "calib_sim")
    out.mkdir(parents=True, exist_ok=True)
    rig = spatial_rig()
    cv2.imwrite(str(out / "board_rgb.png"), rig.rgb)
    write_dat(out / "board.dat", rig.spikes, SpikeGeometry(120, 160))
    calib = out / "calib.yaml"
    code = cli_main(
        ["calibrate", "spatial", "--rgb", str(out / "board_rgb.png"), "--spikes", str(out / "board.dat"),
         "--spike-size", "120x160", "--out", str(calib)]
    )  # fmt: skip
    if code:
        return code
    cal = load_calibration(calib)
    err = mapping_rms_px(np.asarray(cal.homography), rig.homography, (120, 160))
    print(
        f"spatial: corner rms {cal.rms_px:.3f} RGB px; mapping error vs truth {err:.3f} RGB px RMS (goal 0.5)"
    )
    print(f"overlay: {calib.with_suffix('.png')}")
    for fps in (30.0, 60.0, 100.0):
        t = temporal_rig(fps=fps, exposure_ns=int(0.4e9 / fps))
        folder = out / f"blink_{int(fps)}fps"
        folder.mkdir(exist_ok=True)
        for i, img in enumerate(t.rgb):
            cv2.imwrite(str(folder / f"{i}.png"), img)
        write_exposures_csv(out / f"blink_{int(fps)}fps.csv", t.exposures_ns)
        write_dat(out / f"blink_{int(fps)}fps.dat", t.spikes, SpikeGeometry(*t.spikes.shape[1:]))
        code = cli_main(
            ["calibrate", "temporal", "--rgb", str(folder), "--rgb-exposures", str(out / f"blink_{int(fps)}fps.csv"),
             "--spikes", str(out / f"blink_{int(fps)}fps.dat"), "--spike-size", f"{t.spikes.shape[1]}x{t.spikes.shape[2]}",
             "--spike-rate", str(t.spike_rate_hz), "--out", str(calib)]
        )  # fmt: skip
        if code:
            return code
        cal = load_calibration(calib)
        frame_ns = 1e9 / t.spike_rate_hz
        miss = (cal.time_offset_ns - t.offset_ns) / frame_ns
        print(
            f"temporal {fps:g} fps: offset {cal.time_offset_ns} ns (truth {t.offset_ns}), "
            f"error {miss:+.3f} spike frames, std {cal.time_offset_std_ns:.0f} ns (goal: within 1 frame)"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
