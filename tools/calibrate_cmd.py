"""``spikereveal calibrate spatial|temporal``: measure how a rig's spike sensor maps onto its RGB camera.

Both write the same calibration file (calibration/model.py, version 2); an existing ``--out`` is
updated, so ``spatial`` keeps the time fields a ``temporal`` run wrote and vice versa. The files
are read here (capture/) and the arrays handed to the calibration functions, which know no files.
"""

from __future__ import annotations

import csv
import dataclasses
import re
from pathlib import Path

import click
import cv2
import numpy as np
from tqdm import tqdm

from spikereveal.calibration.model import Calibration, CalibrationError, load_calibration, save_calibration
from spikereveal.capture.dat import open_dat
from spikereveal.capture.datasets import natural_key
from spikereveal.capture.images import read_bgr, write_image
from spikereveal.tools.cli_types import SIZE, ParsedType

_FRAMES_RE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")
_IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp"}
_CHUNK_FRAMES = 4096


def parse_frames(text: str) -> tuple[int, int]:
    """``"10:209"`` -> ``(10, 209)``: first and last spike frame, inclusive."""
    match = _FRAMES_RE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a frame range A:B (first and last frame, inclusive), e.g. 0:199")
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        raise ValueError(f"{text!r}: the range ends before it starts")
    return start, end


def _parse_pattern(text: str) -> tuple[int, int]:
    from spikereveal.calibration.spatial import parse_pattern

    return parse_pattern(text)


FRAMES = ParsedType("A:B", parse_frames)
PATTERN = ParsedType("checkerboard:COLSxROWS", _parse_pattern)


def _check_out(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    if value.suffix.lower() not in (".yaml", ".yml", ".json"):
        raise click.BadParameter(f"{value}: use a .yaml, .yml or .json file", ctx, param)
    return value


def _spike_options(f):  # type: ignore[no-untyped-def]
    f = click.option(
        "--row-tag-bits", type=int, default=None, help="Tag bits per stored row (default: sidecar or 0)."
    )(f)
    f = click.option("--no-flip", is_flag=True, help="Rows are stored top-down (do not flip vertically).")(f)
    f = click.option("--spike-size", type=SIZE, required=True, help="Spike frame size HxW, e.g. 120x160.")(f)
    f = click.option(
        "--spikes",
        "spikes_path",
        required=True,
        type=click.Path(exists=True, dir_okay=False, path_type=Path),
        help="Raw spike .dat file.",
    )(f)
    return f


def _out_option(f):  # type: ignore[no-untyped-def]
    return click.option(
        "--out",
        required=True,
        type=click.Path(dir_okay=False, path_type=Path),
        callback=_check_out,
        help="Calibration file to write (.yaml/.json); an existing one is updated.",
    )(f)


def _existing(out: Path) -> Calibration:
    """The record to update: the file at ``out`` if there is one, else a fresh one named after it."""
    if out.exists():
        return load_calibration(out)
    return Calibration(id=out.stem or "calibration")


@click.group("calibrate")
def calibrate_group() -> None:
    """Spatial (homography) and temporal (clock offset) calibration of a spike + RGB rig."""


@calibrate_group.command("spatial")
@click.option(
    "--rgb",
    "rgb_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="RGB image of the checkerboard.",
)
@_spike_options
@click.option(
    "--frames", type=FRAMES, default=None, help="Spike frames A:B (inclusive) for the TFP [default: all]."
)
@click.option(
    "--pattern",
    type=PATTERN,
    default="checkerboard:9x6",
    show_default=True,
    help="Target: checkerboard:COLSxROWS, the INNER corners per row and per column (a board of "
    "10x7 squares is 9x6); use one even and one odd count.",
)
@_out_option
def spatial_command(
    rgb_path: Path,
    spikes_path: Path,
    spike_size: tuple[int, int],
    no_flip: bool,
    row_tag_bits: int | None,
    frames: tuple[int, int] | None,
    pattern: tuple[int, int],
    out: Path,
) -> None:
    """Fit the homography spike pixel -> RGB pixel from one view of a checkerboard.

    Writes OUT (homography, rms_px) and an overlay OUT with .png beside it: the spike TFP warped
    onto the RGB image in alternating tiles, RGB corners as green circles and mapped spike corners
    as red crosses.
    """
    from spikereveal.calibration.spatial import calibrate_spatial, overlay_image

    rgb = read_bgr(rgb_path)
    with open_dat(
        spikes_path, *spike_size, flip=False if no_flip else None, row_tag_bits=row_tag_bits
    ) as dat:
        start, stop = (0, len(dat) - 1) if frames is None else frames
        if len(dat) == 0 or stop >= len(dat):
            raise click.BadParameter(
                f"{spikes_path}: frames {start}..{stop} are outside the file's {len(dat)} frames",
                param_hint="'--frames'",
            )
        spikes = dat.read(start, stop + 1)
    fit = calibrate_spatial(rgb, spikes, pattern)
    record = dataclasses.replace(_existing(out), homography=fit.homography_rows, rms_px=fit.rms_px)
    save_calibration(out, record)
    overlay = write_image(out.with_suffix(".png"), overlay_image(rgb, fit))
    click.echo(
        f"homography from {int(fit.inliers.sum())}/{len(fit.inliers)} corners, rms {fit.rms_px:.3f} RGB px"
        f" -> {out} (overlay {overlay})"
    )


@calibrate_group.command("temporal")
@click.option(
    "--rgb",
    "rgb_path",
    required=True,
    type=click.Path(exists=True, path_type=Path),
    help="RGB frames: a video file, or a folder of images (sorted naturally: 2.png before 10.png).",
)
@click.option(
    "--rgb-exposures",
    "exposures_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="CSV with header start_ns,end_ns and one row per RGB frame (RGB clock).",
)
@_spike_options
@click.option("--spike-rate", type=float, required=True, help="Spike read-out rate in Hz, e.g. 20000.")
@click.option(
    "--max-offset-ms",
    type=float,
    default=None,
    help="Search offsets within +-this many ms [default: all that overlap the spike stream].",
)
@_out_option
def temporal_command(
    rgb_path: Path,
    exposures_path: Path,
    spikes_path: Path,
    spike_size: tuple[int, int],
    no_flip: bool,
    row_tag_bits: int | None,
    spike_rate: float,
    max_offset_ms: float | None,
    out: Path,
) -> None:
    """Estimate the clock offset (spike clock = RGB clock + offset) from a scene whose brightness changes.

    Film a blinking light or an irregular flicker with both cameras. Spike frame i is read out at
    i / RATE on the spike clock and integrates ((i-1)/RATE, i/RATE].
    """
    from spikereveal.calibration.temporal import estimate_offset, frame_means

    brightness = rgb_brightness(rgb_path)
    exposures = read_exposures(exposures_path)
    if len(exposures) != len(brightness):
        raise CalibrationError(
            f"{exposures_path}: {len(exposures)} exposure rows for {len(brightness)} RGB frames in {rgb_path}"
        )
    with open_dat(
        spikes_path, *spike_size, flip=False if no_flip else None, row_tag_bits=row_tag_bits
    ) as dat:
        means = np.empty(len(dat), dtype=np.float64)
        for s in tqdm(range(0, len(dat), _CHUNK_FRAMES), desc="spike frames", unit="chunk", leave=False):
            means[s : s + _CHUNK_FRAMES] = frame_means(dat.read(s, min(s + _CHUNK_FRAMES, len(dat))))
    fit = estimate_offset(
        brightness,
        exposures,
        means,
        spike_rate,
        max_offset_ns=None if max_offset_ms is None else max_offset_ms * 1e6,
    )
    record = dataclasses.replace(
        _existing(out), time_offset_ns=int(round(fit.offset_ns)), time_offset_std_ns=fit.std_ns
    )
    save_calibration(out, record)
    click.echo(
        f"time offset {fit.offset_ns / 1e6:.4f} ms +- {fit.std_ns / 1e3:.1f} us "
        f"(correlation {fit.peak_correlation:.3f}, next peak {fit.runner_up:.3f}, {fit.frames_used} frames) -> {out}"
    )


def rgb_brightness(path: Path) -> np.ndarray:
    """Mean grey level (0..255) of every frame of a video file or a folder of images, (N,) float64."""
    values: list[float] = []
    if path.is_dir():
        files = sorted(
            (p for p in path.iterdir() if p.suffix.lower() in _IMAGE_SUFFIXES),
            key=lambda p: natural_key(p.name),
        )
        if not files:
            raise CalibrationError(f"{path}: no images ({', '.join(sorted(_IMAGE_SUFFIXES))}) in the folder")
        for file in tqdm(files, desc="RGB frames", leave=False):
            values.append(float(cv2.cvtColor(read_bgr(file), cv2.COLOR_BGR2GRAY).mean()))
        return np.asarray(values)
    cap = cv2.VideoCapture(str(path))
    try:
        if not cap.isOpened():
            raise CalibrationError(f"{path}: not a video OpenCV can open, nor a folder of images")
        while True:
            ok, frame = cap.read()
            if not ok:
                break
            grey = frame if frame.ndim == 2 else cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
            values.append(float(grey.mean()))
    finally:
        cap.release()
    if not values:
        raise CalibrationError(f"{path}: the video has no frames")
    return np.asarray(values)


def read_exposures(path: Path) -> np.ndarray:
    """EXP.csv -> (N, 2) int64; header ``start_ns,end_ns``; errors name the file and the row."""
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    if not rows or [c.strip() for c in rows[0]] != ["start_ns", "end_ns"]:
        raise CalibrationError(f"{path}: the first line must be the header start_ns,end_ns")
    out = []
    for n, row in enumerate(rows[1:], start=2):
        if not row or all(not c.strip() for c in row):
            continue
        try:
            if len(row) != 2:
                raise ValueError
            out.append((int(row[0]), int(row[1])))
        except ValueError:
            raise CalibrationError(
                f"{path}: line {n}: {','.join(row)!r} is not two whole numbers start_ns,end_ns"
            ) from None
    if not out:
        raise CalibrationError(f"{path}: no exposure rows after the header")
    from spikereveal.calibration.temporal import check_exposures

    return check_exposures(np.asarray(out, dtype=np.int64), source=str(path))
