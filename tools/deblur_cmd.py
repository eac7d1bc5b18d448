"""``spikereveal deblur``: one blurry image + its spike file -> K sharp frames on disk."""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

import click
import numpy as np

from spikereveal.capture.images import read_bgr, write_image
from spikereveal.stream.errors import SpikeRevealError
from spikereveal.tools.cli_types import EXPOSURE, SIZE
from spikereveal.tools.model_options import model_options

log = logging.getLogger(__name__)


MANIFEST_NAME = "frames.json"
# What deblur names its frames: frame_000.png ... (3 digits, more past 999 frames).
_FRAME_RE = re.compile(r"^frame_\d{3,}\.png$")


class OutputFolderError(SpikeRevealError):
    """An output folder that cannot take a new run without losing or mixing files."""


def _listed_frames(out_dir: Path) -> list[Path]:
    """The frame files an earlier run's frames.json lists (only deblur's own names, inside out_dir)."""
    try:
        manifest = json.loads((out_dir / MANIFEST_NAME).read_text())
        names = [entry["file"] for entry in manifest["frames"]]
    except (OSError, ValueError, KeyError, TypeError):
        return []  # unreadable: nothing is provably ours but frames.json itself
    return [out_dir / name for name in names if isinstance(name, str) and _FRAME_RE.match(name)]


def clear_previous_run(out_dir: Path) -> list[Path]:
    """Remove what an earlier run wrote in ``out_dir`` (frames.json and the frames it lists).

    Without this a run of K=3 into a folder that held K=5 leaves frame_003/004.png from the old
    run beside the new ones. Files the manifest does not list are left alone: deblur never
    deletes what it cannot show it wrote. Returns the removed paths.
    """
    removed = []
    for path in [*_listed_frames(out_dir), out_dir / MANIFEST_NAME]:
        if path.is_file():
            path.unlink()
            removed.append(path)
    return removed


def check_out_dir(out_dir: Path, overwrite: bool) -> None:
    """Refuse an ``out_dir`` that holds deblur outputs, unless ``overwrite`` and all of them are ours.

    The same rule as ``simulate --out``: a folder with an earlier run needs ``--overwrite``; then
    the earlier run's files are replaced. A ``frame_NNN.png`` that no frames.json lists was not
    provably written by deblur, so it is never deleted and the run is refused instead.
    """
    if out_dir.exists() and not out_dir.is_dir():
        raise OutputFolderError(f"--out {out_dir}: is a file, not a folder")
    if not out_dir.is_dir():
        return
    frames = sorted(p for p in out_dir.iterdir() if _FRAME_RE.match(p.name))
    manifest = out_dir / MANIFEST_NAME
    if not frames and not manifest.exists():
        return
    if not overwrite:
        found = MANIFEST_NAME if manifest.exists() else f"{len(frames)} frame_*.png"
        raise OutputFolderError(
            f"--out {out_dir}: already holds an earlier run ({found}); pick another --out or pass --overwrite"
        )
    stray = sorted(set(frames) - set(_listed_frames(out_dir)))
    if stray:
        raise OutputFolderError(
            f"--out {out_dir}: {stray[0].name}{f' and {len(stray) - 1} more' if len(stray) > 1 else ''} "
            f"not listed in {MANIFEST_NAME}, so not known to be deblur's; remove {'them' if len(stray) > 1 else 'it'} or pick another --out"
        )


def write_sequence(out_dir: Path, frames: np.ndarray, times: list[int], info: dict) -> Path:
    """Write ``frame_000.png``... and ``frames.json`` (spike index of each frame) into ``out_dir``.

    An earlier run's outputs in ``out_dir`` are removed first (see :func:`clear_previous_run`), so
    the folder holds exactly this run's frames.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    clear_previous_run(out_dir)
    entries = []
    for i, (frame, t) in enumerate(zip(frames, times, strict=True)):
        name = f"frame_{i:03d}.png"
        write_image(out_dir / name, frame)
        entries.append({"file": name, "spike_index": int(t)})
    manifest = {**info, "spike_indices": [int(t) for t in times], "frames": entries}
    path = out_dir / MANIFEST_NAME
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


def _density_info(
    deblurrer: object, blur: np.ndarray, spikes: np.ndarray, exposure: tuple[int, int]
) -> dict[str, float | bool | None]:
    """frames.json's ``spike_density``: the LDN's normalization, or the bare estimate for SDM."""
    norm = getattr(deblurrer, "last_density", None)
    if norm is not None:
        return norm.to_dict()
    from spikereveal.engine.density import estimate_density

    estimated = round(estimate_density(blur, spikes, exposure), 6)
    return {"estimated": estimated, "trained": None, "scale": 1.0, "enabled": False}


def _fmt_exposure(exposure: tuple[int, int]) -> str:
    return f"{exposure[0]}:{exposure[1]}"


@click.command("deblur")
@click.option("--blur", "blur_path", required=True, type=click.Path(path_type=Path), help="Blurry RGB image.")
@click.option(
    "--spikes", "spikes_path", required=True, type=click.Path(path_type=Path), help="Raw .dat spikes."
)
@click.option(
    "--spike-size", type=SIZE, default=None, help="Spike frame size HxW (or a <spikes>.json sidecar)."
)
@click.option(
    "--exposure",
    type=EXPOSURE,
    default=None,
    help="RGB exposure A:B in spike frames, before the calibration's spike_offset_frames "
    "(default: all but 20 at each end).",
)
@click.option(
    "--times",
    "count",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Output frames K (at most the exposure's frames).",
)
@model_options()
@click.option(
    "--calibration",
    type=click.Path(path_type=Path),
    default=None,
    help="Spike/RGB calibration file (.yaml/.json): scale and spike_offset_frames are applied.",
)
@click.option("--no-flip", is_flag=True, help="Spike frames are stored upright (some cameras).")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder.")
@click.option("--overwrite", is_flag=True, help="Replace the frames of an earlier run in --out.")
@click.option(
    "--no-density-norm",
    is_flag=True,
    help="Feed the LDN the raw spikes, not scaled to the spike density its weights were trained at.",
)
def deblur_command(
    blur_path: Path,
    spikes_path: Path,
    spike_size: tuple[int, int] | None,
    exposure: tuple[int, int] | None,
    count: int,
    model: str | None,
    weights: str | None,
    backend: str,
    device: str,
    calibration: Path | None,
    no_flip: bool,
    out_dir: Path,
    overwrite: bool,
    no_density_norm: bool,
) -> None:
    """Deblur one image into K sharp frames spread over its exposure."""
    from spikereveal.calibration.model import Calibration, CalibrationError, load_calibration
    from spikereveal.capture.dat import open_dat
    from spikereveal.engine.deblur import (
        WINDOW_FRAMES,
        check_ldn_sizes,
        default_model,
        ldn_weights,
        make_deblurrer,
        missing_default_message,
        to_uint8,
    )
    from spikereveal.engine.windows import (
        DEFAULT_MARGIN,
        ExposureError,
        check_exposure,
        default_exposure,
        exposure_times,
    )

    check_out_dir(out_dir, overwrite)  # before any work: a refused folder costs nothing
    # A tree without the default weights still deblurs (sdm) and says why, once it has worked
    # (so that an error stays one line).
    fallback_note = model is None and default_model(weights) == "sdm"
    model = model or default_model(weights)
    if model == "sdm" and weights:
        raise click.BadParameter("--weights is only used by --model ldn", param_hint="--weights")
    # The default weights' file now, before any work: missing, it is one line naming `make default-weights`.
    weights_path = ldn_weights(weights) if model == "ldn" else None
    blur = read_bgr(blur_path)
    height, width = spike_size if spike_size else (None, None)
    dat = open_dat(spikes_path, height, width, flip=not no_flip)
    calib = load_calibration(calibration) if calibration else Calibration()
    calib_name = f"calibration {calibration}" if calibration else "the nominal calibration"
    if not calib.is_nominal_alignment:
        # Refused rather than ignored: every frame would be silently misregistered.
        raise CalibrationError(
            f"{calibration}: offset {list(calib.offset)} (RGB pixels) of calibration '{calib.id}' cannot be "
            f"applied by deblur yet (it registers spikes to RGB by scale only); set offset to [0, 0]"
        )
    blur_hw, spike_hw = blur.shape[:2], (dat.geometry.height, dat.geometry.width)
    try:
        calib.check_sizes(blur_hw, spike_hw)
        if model == "ldn":
            check_ldn_sizes(blur_hw, spike_hw)
    except CalibrationError as exc:
        hint = (
            "or pass --calibration FILE with your rig's scale"
            if calibration is None
            else f"or fix the scale in --calibration {calibration}"
        )
        if model == "ldn":
            hint += " (the ldn model takes only 4x; --model sdm takes any calibrated scale)"
        raise CalibrationError(
            f"{blur_path} with {spikes_path}: {exc}; resize the blur to fit, {hint}"
        ) from None

    num_frames = len(dat)
    if num_frames == 0:
        raise ExposureError(f"{spikes_path}: holds no spike frames")
    if exposure is None:
        try:
            nominal = default_exposure(num_frames)
        except ExposureError:
            raise ExposureError(
                f"{spikes_path}: {num_frames} spike frames are too few for the default exposure, which keeps "
                f"{DEFAULT_MARGIN} frames on each side (needs at least {2 * DEFAULT_MARGIN + 1} frames); "
                f"give --exposure A:B inside 0..{num_frames - 1}"
            ) from None
    else:
        nominal = exposure
    shift = calib.spike_offset_frames
    start, end = nominal[0] + shift, nominal[1] + shift
    said = (
        f"--exposure {_fmt_exposure(nominal)}"
        if exposure
        else f"the default exposure {_fmt_exposure(nominal)}"
    )
    where = f"{spikes_path}: "
    if shift:
        where += f"{said}, shifted by spike_offset_frames {shift} of {calib_name} to {start}:{end}: "
    if not 0 <= start <= end < num_frames:
        raise ExposureError(
            f"{where}{start}:{end} is outside the {num_frames} frames of {spikes_path} (0..{num_frames - 1})"
        )
    try:
        times = exposure_times(start, end, count)
    except ExposureError as exc:
        raise ExposureError(f"{where}--times {count}: {exc}") from None
    try:
        check_exposure((start, end), times, num_frames, WINDOW_FRAMES[model], reader=f"the {model} model")
    except ExposureError as exc:
        raise ExposureError(f"{where}{exc} (with --times {count})") from None
    try:
        deblurrer = make_deblurrer(
            model, weights=weights_path, backend=backend, device=device, density_norm=not no_density_norm
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    spikes = dat.read(0, num_frames)
    try:
        frames = deblurrer.sequence(blur, spikes, (start, end), times)
    finally:
        deblurrer.close()
    info = {
        "model": model,
        # The backend that ran ("auto" resolved), as results of the engine node name it.
        "backend": getattr(getattr(deblurrer, "backend", None), "name", None),
        "weights": str(weights_path) if weights_path else None,
        "blur": str(blur_path),
        "spikes": str(spikes_path),
        "spike_size": list(spike_hw),
        "blur_size": list(blur_hw),
        "exposure_nominal": list(nominal),
        "exposure": [start, end],
        # The record used, as applied: scale for the size check, spike_offset_frames on the exposure.
        "calibration": {"path": str(calibration) if calibration else None, **calib.to_dict()},
        # Spikes per frame per unit grey of this exposure, against what the weights were trained at.
        "spike_density": _density_info(deblurrer, blur, spikes, (start, end)),
    }
    manifest = write_sequence(out_dir, to_uint8(frames), times, info)
    click.echo(f"wrote {len(times)} frames ({model}) at spike frames {times} to {out_dir} ({manifest.name})")
    if fallback_note:
        click.echo(f"note: {missing_default_message()}; deblurred with sdm", err=True)
    log.debug("deblur done: %s", info)
