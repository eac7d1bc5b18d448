"""Synthesise a GOPRO-spike style dataset from sharp frames at the spike rate.

One sample = ``frames_per_sample`` (137) consecutive sharp frames: the blurry image is the mean of
the exposure frames 20..116 (97 frames, the paper's blur model B = mean of the latent frames), the
spikes come from an integrate-and-fire camera watching the grey frames downsampled to 1/4 per side,
and chosen frames are kept as ground truth. Consecutive samples of a scene take consecutive frames
and share one camera, so the spike stream is continuous across samples (the RGB sensor idles for
the 20 + 20 frames between two exposures).

Written layout (read back by ``spikereveal.capture.datasets.open_dataset``)::

    <out>/spike_data/<scene>/<nnnn>.dat (+ .dat.json sidecar)
    <out>/blur_data/<scene>/<nnnn>.png
    <out>/sharp_data/<scene>/<nnnn>/<spike_index:03d>.png
    <out>/meta.json

One folder may hold many scenes (``append=True`` / ``simulate --append`` adds one): a training set
mixes motions, textures and thresholds, and ``train --data`` takes one folder. What the readers
need to read any sample (layout, frames per sample, exposure, sizes, scale) must then agree;
per-scene settings (vth, seed, noise, source, ...) are recorded under ``scenes.<name>`` and at the
top as one value when every scene agrees, else as the list of the distinct values.
"""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

import cv2
import numpy as np
from tqdm import tqdm

from spikereveal.capture.dat import write_dat
from spikereveal.capture.datasets import META_NAME, DatasetError, read_meta_file
from spikereveal.capture.sample import Sample
from spikereveal.capture.simulation import (  # noqa: F401  (re-exported for callers of the tool)
    GENERATOR_REVISION,
    PAPER_SHARP_TIMES,
    IncompleteSampleError,
    SimulationConfig,
    simulate_sample,
)
from spikereveal.stream.spikes import SpikeGeometry

log = logging.getLogger(__name__)

LAYOUT_NAME = "gopro-spike"
#: meta.json fields every scene of one dataset shares: what the readers use to read any sample.
SHARED_META = ("layout", "frames_per_sample", "exposure", "spike_size", "blur_size", "scale")
#: Settings of each scene, kept per scene; at the top one value, or the distinct values when mixed.
SCENE_META = ("vth", "increment_per_frame", "noise_prob", "seed", "sharp_times", "source")


@dataclass(frozen=True)
class SamplePaths:
    """The files written for one sample."""

    spikes: Path
    blur: Path
    sharp: tuple[Path, ...]


@dataclass(frozen=True)
class SimulationResult:
    """What ``simulate_dataset`` wrote."""

    out_dir: Path
    scene: str
    meta: Path
    samples: tuple[SamplePaths, ...]


def write_sample(out_dir: Path, scene: str, index: int, sample: Sample) -> SamplePaths:
    """Write one sample in the gopro-spike layout (see the module docstring)."""
    stem = f"{index:04d}"
    spike_dir = out_dir / "spike_data" / scene
    blur_dir = out_dir / "blur_data" / scene
    sharp_dir = out_dir / "sharp_data" / scene / stem
    for folder in (spike_dir, blur_dir, sharp_dir):
        folder.mkdir(parents=True, exist_ok=True)
    h, w = sample.spike_size
    spike_path = write_dat(spike_dir / f"{stem}.dat", sample.spikes, SpikeGeometry(h, w, flip=True))
    blur_path = blur_dir / f"{stem}.png"
    _imwrite(blur_path, sample.blur)
    sharp_paths = []
    for t, image in sample.sharp.items():
        path = sharp_dir / f"{t:03d}.png"
        _imwrite(path, image)
        sharp_paths.append(path)
    return SamplePaths(spike_path, blur_path, tuple(sharp_paths))


def _imwrite(path: Path, image: np.ndarray) -> None:
    if not cv2.imwrite(str(path), image):
        raise OSError(f"{path}: OpenCV could not write the image")


def generator_version() -> str:
    """``"<package version>+sim<revision>"``, recorded in meta.json."""
    try:
        version = metadata.version("spikereveal-rt")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"{version}+sim{GENERATOR_REVISION}"


def build_meta(config: SimulationConfig, scene: str, source: str, samples: int) -> dict[str, object]:
    """The meta.json content for a finished run (the reader uses layout, frame and size fields)."""
    meta: dict[str, object] = {
        "layout": LAYOUT_NAME,
        "generator": "spikereveal simulate",
        "generator_version": generator_version(),
        "frames_per_sample": config.frames_per_sample,
        "exposure": list(config.exposure),
        "spike_size": list(config.spike_size),
        "blur_size": list(config.blur_size),
        "scale": config.scale,
        "vth": config.vth,
        "increment_per_frame": config.increment_per_frame,
        "noise_prob": config.noise_prob,
        "seed": config.seed,
        "sharp_times": "all" if config.sharp_times is None else list(config.sharp_times),
        "grey": "0.11 B + 0.59 G + 0.3 R, INTER_AREA downsampling",
        "source": source,
    }
    meta["scenes"] = {scene: {"samples": samples, **{key: meta[key] for key in SCENE_META}}}
    return meta


def _distinct(values: list[object]) -> object:
    """One value if all are equal, else the distinct ones (sorted when they are all numbers)."""
    unique: list[object] = []
    for value in values:
        if value not in unique:
            unique.append(value)
    if len(unique) == 1:
        return unique[0]
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in unique):
        return sorted(unique)  # type: ignore[type-var]
    return unique


def merge_meta(old: dict[str, Any], new: dict[str, Any], path: Path) -> dict[str, Any]:
    """meta.json after adding ``new``'s one scene to the dataset ``old`` describes (at ``path``).

    Raises DatasetError when a field of ``SHARED_META`` differs (the readers could not read both
    scenes as one set) or the scene is already there.
    """
    for key in SHARED_META:
        if old.get(key) != new.get(key):
            raise DatasetError(
                f"{path}: {key} is {old.get(key)!r} there but {new.get(key)!r} in this run; the scenes of "
                f"one dataset share {', '.join(SHARED_META)}: simulate into another --out"
            )
    old_scenes = old.get("scenes") if isinstance(old.get("scenes"), dict) else {}
    (scene, record), *_ = new["scenes"].items()
    if scene in old_scenes:
        raise DatasetError(f"{path}: already holds scene '{scene}'; pick another --scene")
    scenes: dict[str, Any] = {}
    for name, value in old_scenes.items():
        # A dataset written before scenes kept their own settings: take the top-level ones.
        scenes[name] = {
            **{key: old.get(key) for key in SCENE_META},
            **(value if isinstance(value, dict) else {}),
        }
    scenes[scene] = record
    merged = {**old, **{k: v for k, v in new.items() if k not in SCENE_META and k != "scenes"}}
    for key in SCENE_META:
        merged[key] = _distinct([record.get(key) for record in scenes.values()])
    if isinstance(merged["source"], list):
        merged["source"] = f"{len(merged['source'])} sources (see scenes)"
    merged["scenes"] = scenes
    return merged


def _write_meta(path: Path, meta: dict[str, Any]) -> None:
    """Write meta.json by rename, so that an interrupted append never leaves half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(meta, indent=2) + "\n")
    tmp.replace(path)


def prepare_out_dir(out_dir: Path, overwrite: bool, append: bool = False) -> None:
    """Refuse to mix with an existing dataset unless ``overwrite``, which removes its data folders.

    With ``append`` an existing dataset is kept (the caller merges its meta.json).
    """
    if append and overwrite:
        raise DatasetError(f"{out_dir}: append adds a scene, overwrite starts over: choose one")
    if append:
        out_dir.mkdir(parents=True, exist_ok=True)
        return
    if (out_dir / META_NAME).exists():
        if not overwrite:
            raise DatasetError(
                f"{out_dir}: already holds a dataset ({META_NAME}); pick another --out or --overwrite"
            )
        for name in ("spike_data", "blur_data", "sharp_data"):
            shutil.rmtree(out_dir / name, ignore_errors=True)
        (out_dir / META_NAME).unlink()
    out_dir.mkdir(parents=True, exist_ok=True)


def simulate_dataset(
    frames: Iterable[np.ndarray],
    config: SimulationConfig,
    out_dir: str | Path,
    *,
    samples: int,
    scene: str = "pan",
    source: str = "unknown",
    overwrite: bool = False,
    append: bool = False,
    progress: bool = True,
) -> SimulationResult:
    """Simulate up to ``samples`` consecutive samples of one scene and write them under ``out_dir``.

    Args:
        frames: BGR uint8 frames at the spike rate, sized ``config.blur_size``.
        samples: how many samples to make; fewer are written (with a warning) if ``frames`` runs
            out, none is a ``DatasetError``.
        scene: the scene folder name.
        source: a description of where the frames came from (recorded in meta.json).
        append: add the scene to the dataset already in ``out_dir`` (or start one there); its
            sizes and exposure must match (see the module docstring), checked before any work.
    """
    out_dir = Path(out_dir)
    if samples < 1:
        raise DatasetError(f"samples {samples} must be >= 1")
    if not scene or "/" in scene or "\\" in scene or scene in (".", ".."):
        raise DatasetError(
            f"scene name {scene!r} must be a plain folder name (no '/' or '\\', not '.' or '..')"
        )
    prepare_out_dir(out_dir, overwrite, append)
    meta_path = out_dir / META_NAME
    old_meta = read_meta_file(meta_path) if append and meta_path.exists() else None
    if old_meta is not None:
        merge_meta(old_meta, build_meta(config, scene, source, 0), meta_path)  # refuse before any work
    if append and (out_dir / "spike_data" / scene).exists():
        raise DatasetError(f"{out_dir}: already holds scene folder spike_data/{scene}; pick another --scene")
    camera = config.new_camera()
    per = config.frames_per_sample
    written: list[SamplePaths] = []
    stream = iter(frames)
    with tqdm(total=samples * per, unit="frame", desc=f"simulate {scene}", disable=not progress) as bar:

        def counted() -> Iterable[np.ndarray]:
            for frame in stream:
                bar.update(1)
                yield frame

        feed = counted()
        for index in range(samples):
            try:
                sample = simulate_sample(feed, camera, config, name=f"{scene}/{index:04d}")
            except IncompleteSampleError as exc:
                if index == 0:
                    raise DatasetError(f"{source}: {exc}; no sample written") from None
                log.warning("%s: %s; wrote %d of %d samples", source, exc, index, samples)
                break
            written.append(write_sample(out_dir, scene, index, sample))
    meta = build_meta(config, scene, source, len(written))
    _write_meta(meta_path, meta if old_meta is None else merge_meta(old_meta, meta, meta_path))
    return SimulationResult(out_dir, scene, meta_path, tuple(written))
