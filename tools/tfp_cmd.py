"""``spikereveal tfp``: write the TFP (mean spike frame) of a window of a raw spike file.

A quick look at a recording, and the first check of a new camera's bit order and flip: a correct
decode shows the scene upright and sharp-edged where it is still.
"""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from spikereveal.capture.dat import open_dat
from spikereveal.engine.tfp import tfp_range, window_bounds
from spikereveal.tools.cli_types import SIZE

_SUFFIXES = (".npy", ".png")


def _check_out(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    if value.suffix.lower() not in _SUFFIXES:
        raise click.BadParameter(
            f"{value}: unknown output type {value.suffix or '(no extension)'!r}; use .npy or .png", ctx, param
        )
    return value


def to_png_levels(image: np.ndarray) -> np.ndarray:
    """A 0..1 float image as 8-bit grey levels: round(255 * x), clipped to 0..255."""
    return np.clip(np.rint(image * 255.0), 0, 255).astype(np.uint8)


@click.command("tfp")
@click.option(
    "--spikes",
    "spikes_path",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Raw spike .dat file.",
)
@click.option(
    "--spike-size", type=SIZE, default=None, help="Frame size HxW, e.g. 250x400 (default: the sidecar)."
)
@click.option("--center", required=True, type=int, help="Centre frame of the window (0-based).")
@click.option("--window", default=41, show_default=True, type=int, help="Window length in frames (odd).")
@click.option("--no-flip", is_flag=True, help="Rows are stored top-down (do not flip vertically).")
@click.option(
    "--row-tag-bits",
    type=int,
    default=None,
    help="Tag bits at the end of each stored row (default: sidecar or 0).",
)
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    callback=_check_out,
    help="Output: .npy (float32 0..1) or .png (8-bit grey).",
)
def tfp_command(
    spikes_path: Path,
    spike_size: tuple[int, int] | None,
    center: int,
    window: int,
    no_flip: bool,
    row_tag_bits: int | None,
    out: Path,
) -> None:
    """Write the TFP (mean of frames CENTER-WINDOW//2 .. CENTER+WINDOW//2) as .npy or .png."""
    height, width = spike_size if spike_size is not None else (None, None)
    with open_dat(
        spikes_path, height, width, flip=False if no_flip else None, row_tag_bits=row_tag_bits
    ) as spikes:
        try:
            start, stop = window_bounds(center, window, len(spikes))
        except ValueError as exc:
            raise click.BadParameter(f"{spikes_path}: {exc}", param_hint="'--center' / '--window'") from exc
        # Decode only the window's frames: the file stays memory-mapped.
        frames = spikes.read(start, stop + 1)
    image = tfp_range(frames, 0, frames.shape[0] - 1)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:  # a parent that is a file, or a folder that cannot be made
        raise click.BadParameter(
            f"{out}: cannot create its folder {out.parent} ({exc.strerror})", param_hint="--out"
        ) from None
    if out.suffix.lower() == ".npy":
        np.save(out, image)
    else:
        import cv2  # imported here: only the PNG path needs OpenCV

        if not cv2.imwrite(str(out), to_png_levels(image)):
            raise click.ClickException(f"{out}: OpenCV could not write the PNG")
    click.echo(
        f"{out}: TFP of frames {start}..{stop} ({frames.shape[0]} frames, "
        f"{image.shape[0]}x{image.shape[1]}), mean {float(image.mean()):.4f}"
    )
