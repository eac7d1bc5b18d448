"""``spikereveal deblur``: one blurry image + its spike file -> K sharp frames on disk."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import click
import numpy as np

from spikereveal.tools.cli_types import EXPOSURE, SIZE
from spikereveal.tools.images import read_bgr, write_image

log = logging.getLogger(__name__)


def write_sequence(out_dir: Path, frames: np.ndarray, times: list[int], info: dict) -> Path:
    """Write ``frame_000.png``... and ``frames.json`` (spike index of each frame) into ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, (frame, t) in enumerate(zip(frames, times, strict=True)):
        name = f"frame_{i:03d}.png"
        write_image(out_dir / name, frame)
        entries.append({"file": name, "spike_index": int(t)})
    manifest = {**info, "spike_indices": [int(t) for t in times], "frames": entries}
    path = out_dir / "frames.json"
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return path


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
    help="Exposure A:B in spike frames (default: all but 20 at each end).",
)
@click.option(
    "--times", "count", type=click.IntRange(min=1), default=5, show_default=True, help="Output frames K."
)
@click.option(
    "--model", type=click.Choice(["ldn", "sdm"]), default=None, help="Default: ldn with --weights, else sdm."
)
@click.option(
    "--weights", type=click.Path(path_type=Path), default=None, help="Paper .pth or project .safetensors."
)
@click.option("--backend", type=click.Choice(["torch", "onnxruntime"]), default="torch", show_default=True)
@click.option(
    "--calibration", type=click.Path(path_type=Path), default=None, help="Spike/RGB calibration file."
)
@click.option("--no-flip", is_flag=True, help="Spike frames are stored upright (some cameras).")
@click.option("--out", "out_dir", required=True, type=click.Path(path_type=Path), help="Output folder.")
def deblur_command(
    blur_path: Path,
    spikes_path: Path,
    spike_size: tuple[int, int] | None,
    exposure: tuple[int, int] | None,
    count: int,
    model: str | None,
    weights: Path | None,
    backend: str,
    calibration: Path | None,
    no_flip: bool,
    out_dir: Path,
) -> None:
    """Deblur one image into K sharp frames spread over its exposure."""
    from spikereveal.calibration.model import Calibration, CalibrationError, load_calibration
    from spikereveal.capture.dat import open_dat
    from spikereveal.engine.deblur import make_deblurrer, to_uint8
    from spikereveal.engine.windows import default_exposure, exposure_times

    blur = read_bgr(blur_path)
    height, width = spike_size if spike_size else (None, None)
    dat = open_dat(spikes_path, height, width, flip=not no_flip)
    calib = load_calibration(calibration) if calibration else Calibration()
    try:
        calib.check_sizes(blur.shape[:2], (dat.geometry.height, dat.geometry.width))
    except CalibrationError as exc:
        raise CalibrationError(f"{blur_path} with {spikes_path}: {exc}") from exc

    num_frames = len(dat)
    start, end = exposure if exposure else default_exposure(num_frames)
    if not 0 <= start <= end < num_frames:
        raise click.BadParameter(
            f"{start}:{end} is outside the {num_frames} frames of {spikes_path} (0..{num_frames - 1})",
            param_hint="--exposure",
        )
    times = exposure_times(start, end, count)
    model = model or ("ldn" if weights else "sdm")
    if model == "sdm" and weights:
        raise click.BadParameter("--weights is only used by --model ldn", param_hint="--weights")
    try:
        deblurrer = make_deblurrer(model, weights=weights, backend=backend)
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    spikes = dat.read(0, num_frames)
    try:
        frames = deblurrer.sequence(blur, spikes, (start, end), times)
    except ValueError as exc:  # a window that does not fit the stream names its frames
        raise click.UsageError(str(exc)) from exc
    finally:
        deblurrer.close()
    info = {
        "model": model,
        "backend": backend if model == "ldn" else None,
        "blur": str(blur_path),
        "spikes": str(spikes_path),
        "spike_size": [dat.geometry.height, dat.geometry.width],
        "blur_size": list(blur.shape[:2]),
        "exposure": [start, end],
    }
    manifest = write_sequence(out_dir, to_uint8(frames), times, info)
    click.echo(f"wrote {len(times)} frames ({model}) at spike frames {times} to {out_dir} ({manifest.name})")
    log.debug("deblur done: %s", info)
