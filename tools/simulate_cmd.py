"""``spikereveal simulate``: make a GOPRO-spike style dataset from a video, images or a built-in scene.

A thin shell over ``spikereveal.tools.simulate``: it picks the frame source, brings it to the
spike rate and the RGB size, and hands the frames to ``simulate_dataset``. The built-in scenes
are ``pan`` (the demo's panning scene) and ``motion`` (``--motion pan|rotate|zoom|mixed`` on any
texture or photo, the training data's scenes); ``--append`` adds one scene to a dataset, so that
a training set of many scenes is one folder.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path

import click
import numpy as np

from spikereveal.capture import scenes
from spikereveal.tools.cli_types import SIZE
from spikereveal.tools.simulate import PAPER_SHARP_TIMES, SimulationConfig, simulate_dataset

BUILTIN_SCENES = ("pan", "motion")
DEFAULT_PAN_SPIKE_SIZE = (64, 96)  # small and fast: `make demo` runs this
#: The texture when none is given: the demo's photo for the pan, a pattern for motion scenes (so
#: that training data never picks a held-out photo by default).
DEFAULT_TEXTURES = {"pan": "astronaut", "motion": "procedural"}


class TextureType(click.ParamType):
    """``--texture``: a built-in name (``scenes.SKIMAGE_TEXTURES``, ``procedural[:SEED]``) or an image."""

    name = "NAME|FILE"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str:
        try:
            return scenes.check_texture(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


def parse_times(text: str) -> tuple[int, ...]:
    """``"20,44,68"`` -> (20, 44, 68)."""
    try:
        times = tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a comma-separated list of spike indices", param_hint="'--sharp-times'"
        ) from None
    if not times:
        raise click.BadParameter("give at least one spike index", param_hint="'--sharp-times'")
    return times


def _peek(frames: Iterator[np.ndarray]) -> tuple[np.ndarray, Iterator[np.ndarray]]:
    first = next(frames, None)
    if first is None:
        raise click.ClickException("the source holds no frames")
    return first, itertools.chain([first], frames)


@click.command("simulate")
@click.option(
    "--video", type=click.Path(dir_okay=False, path_type=Path), help="Sharp video file (any OpenCV format)."
)
@click.option(
    "--images", type=click.Path(file_okay=False, path_type=Path), help="Folder of sharp frames (PNG/JPG)."
)
@click.option("--builtin", type=click.Choice(BUILTIN_SCENES), help="A built-in scene with known motion.")
@click.option(
    "--motion",
    type=click.Choice(scenes.MOTIONS),
    help="Motion of --builtin motion (default mixed: translation, rotation and zoom).",
)
@click.option(
    "--speed",
    type=click.FloatRange(min=0),
    help="Peak image speed of --builtin motion at the frame's edge, RGB pixels per spike frame "
    "(default: drawn from --seed).",
)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder."
)
@click.option("--samples", default=4, show_default=True, type=click.IntRange(min=1), help="Samples to make.")
@click.option(
    "--spike-size",
    type=SIZE,
    help="Spike frame size HxW (RGB is 4x per side). Default: 64x96 for pan, else frame/4.",
)
@click.option(
    "--vth",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    help="Spike threshold in paper units (1, 2 or 4).",
)
@click.option(
    "--noise",
    default=0.0,
    show_default=True,
    type=click.FloatRange(0, 1),
    help="Noise spike probability per pixel per frame (the paper uses 0.007).",
)
@click.option("--seed", default=0, show_default=True, type=int, help="Seed of the camera's charge and noise.")
@click.option(
    "--sharp-times",
    default=",".join(map(str, PAPER_SHARP_TIMES)),
    show_default=True,
    help="Spike indices (0..136) to save ground truth at.",
)
@click.option("--sharp-all", is_flag=True, help="Save ground truth at every spike frame.")
@click.option(
    "--upsample",
    type=click.IntRange(min=1),
    help="Frames per source interval after linear blending (default: just enough for --samples).",
)
@click.option(
    "--texture",
    type=TextureType(),
    help="Texture of a built-in scene: a scikit-image name "
    f"({', '.join(scenes.SKIMAGE_TEXTURES)}), procedural[:SEED] or an image file. Default: astronaut "
    "for pan, procedural for motion.",
)
@click.option(
    "--scene", "scene_name", help="Scene folder name (default: pan, the video stem or the folder name)."
)
@click.option("--overwrite", is_flag=True, help="Replace a dataset already in --out.")
@click.option(
    "--append",
    is_flag=True,
    help="Add this scene to the dataset in --out (same spike size; starts one if there is none).",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def simulate_command(
    video: Path | None,
    images: Path | None,
    builtin: str | None,
    motion: str | None,
    speed: float | None,
    out_dir: Path,
    samples: int,
    spike_size: tuple[int, int] | None,
    vth: float,
    noise: float,
    seed: int,
    sharp_times: str,
    sharp_all: bool,
    upsample: int | None,
    texture: str | None,
    scene_name: str | None,
    overwrite: bool,
    append: bool,
    quiet: bool,
) -> None:
    """Simulate spikes, blur and ground truth (GOPRO-spike layout: 137 frames, exposure 20..116)."""
    chosen = [
        name for name, value in (("--video", video), ("--images", images), ("--builtin", builtin)) if value
    ]
    if len(chosen) != 1:
        raise click.UsageError("give exactly one source: --video FILE, --images DIR or --builtin pan|motion")
    if builtin != "motion":
        for option, value in (("--motion", motion), ("--speed", speed)):
            if value is not None:
                raise click.UsageError(f"{option} is only used with --builtin motion")
    if texture is not None and builtin is None:
        raise click.UsageError("--texture is only used with --builtin pan|motion")
    if append and overwrite:
        raise click.UsageError("--append adds a scene to --out, --overwrite starts it over: give one")
    times = None if sharp_all else parse_times(sharp_times)
    frames_per_sample = SimulationConfig().frames_per_sample
    needed = samples * frames_per_sample

    if builtin is not None:
        spike_hw = spike_size or DEFAULT_PAN_SPIKE_SIZE
        _check_spike_size(spike_hw, None if spike_size else f"the default for --builtin {builtin}")
        config = _config(spike_hw, vth, noise, seed, times)
        texture = texture or DEFAULT_TEXTURES[builtin]
        frames: Iterator[np.ndarray]
        if builtin == "pan":
            frames = scenes.pan_scene(needed, config.blur_size, texture=texture)
            source = f"builtin:{builtin}(texture={texture})"
            scene = scene_name or builtin
        else:
            motion = motion or "mixed"
            trajectory = scenes.make_trajectory(motion, config.blur_size, seed, speed)
            edge_speed = trajectory.peak_edge_speed(config.blur_size)
            frames = scenes.MotionScene(config.blur_size, texture, trajectory, seed).frames(0, needed)
            source = (
                f"builtin:motion(motion={motion}, texture={texture}, seed={seed}, "
                f"peak_speed={edge_speed:.3f}px/frame)"
            )
            scene = scene_name or motion
    else:
        if video is not None:
            available = scenes.count_video_frames(video)
            raw = scenes.video_frames(video)
            source, scene = f"video:{video}", scene_name or video.stem
        else:
            assert images is not None
            available = len(scenes.list_image_files(images))
            raw = scenes.image_folder_frames(images)
            source, scene = f"images:{images}", scene_name or images.resolve().name
        first, raw = _peek(raw)
        spike_hw = spike_size or (first.shape[0] // 4, first.shape[1] // 4)
        _check_spike_size(
            spike_hw,
            None if spike_size else f"{source}: its {first.shape[0]}x{first.shape[1]} frames at 1/4 per side",
        )
        config = _config(spike_hw, vth, noise, seed, times)
        try:
            factor = upsample or scenes.interpolation_factor(available, needed)
        except ValueError as exc:
            raise click.ClickException(f"{source}: {exc}") from None
        if factor > 1:
            source += f" (linear blend x{factor})"
        frames = scenes.resize_frames(scenes.interpolate_frames(raw, factor), config.blur_size)

    result = simulate_dataset(
        frames,
        config,
        out_dir,
        samples=samples,
        scene=scene,
        source=source,
        overwrite=overwrite,
        append=append,
        progress=not quiet,
    )
    h, w = config.spike_size
    bh, bw = config.blur_size
    click.echo(
        f"wrote {len(result.samples)} samples of scene '{scene}' to {out_dir} "
        f"(spikes {h}x{w}, blur {bh}x{bw}, vth {vth:g}, noise {noise:g}, seed {seed})"
    )


def _check_spike_size(spike_hw: tuple[int, int], derived_from: str | None) -> None:
    """Check the spike size alone, in the terms of the option the user gave.

    ``derived_from`` says where a size the user did not pass came from (the source's frames, a
    default), so the message explains it and names ``--spike-size`` as the way out instead of
    quoting a spike size the user never wrote.
    """
    try:
        SimulationConfig(spike_size=spike_hw)
    except ValueError as exc:
        if derived_from is None:
            raise click.BadParameter(str(exc), param_hint="'--spike-size'") from None
        h, w = spike_hw
        example = f"{max(h, 1)}x{max(8, w // 8 * 8)}"
        raise click.UsageError(
            f"{derived_from} give spike frames of {h}x{w}, which cannot be simulated ({exc}); "
            f"pass --spike-size HxW (the frames are resized to 4x it per side), e.g. --spike-size {example}"
        ) from None


def _config(
    spike_hw: tuple[int, int], vth: float, noise: float, seed: int, times: tuple[int, ...] | None
) -> SimulationConfig:
    try:
        return SimulationConfig(spike_size=spike_hw, vth=vth, noise_prob=noise, seed=seed, sharp_times=times)
    except ValueError as exc:
        # The spike size was checked on its own, so what is left is one of the options below.
        hint = "'--sharp-times'" if "sharp times" in str(exc) else "'--vth' / '--noise' / '--sharp-times'"
        raise click.BadParameter(str(exc), param_hint=hint) from None
