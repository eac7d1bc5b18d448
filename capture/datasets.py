"""Readers for spike-deblurring datasets on disk, yielding ``Sample``s.

Two layouts, both rooted at a *set* folder (pass e.g. ``GOPRO/test``, not ``GOPRO``):

**gopro** (GOPRO-spike, and what ``spikereveal simulate`` writes)::

    <root>/spike_data/<scene>/<name>.dat        137 frames, exposure = frames 20..116
    <root>/blur_data/<scene>/<name>.png         the blurry RGB frame (4x the spike size per side)
    <root>/sharp_data/<scene>/<name>/<idx>.png  ground truth at spike index idx (this project), or
    <root>/sharp_data/<scene>/<name>.png        one ground-truth frame at the exposure centre (68),
                                                as the official GOPRO-spike scripts write it
    <root>/meta.json                            optional: layout, frames_per_sample, exposure, ...

The official GOPRO-spike set (spikes 180x320, blurs 720x1280, 137 frames, exposure 20..116) reads
as is. Its ``spike_full`` variant (full-resolution spikes) is not supported.

**rsb** (the real RSB set: spikes 250x400 and blurs 1000x1600 JPEG, no ground truth)::

    <root>/spike_data/<scene>/<n>.dat
    <root>/blur_data/<scene>/<n>.jpg

The exposure is every frame but 20 at each end, unless ``meta.json`` gives ``exposure: [s, e]`` or
``margin_frames``. (A 137-frame file gives 20..116, the same as GOPRO-spike.)

Detection (``layout="auto"``): ``meta.json``'s ``layout`` if present, else ``gopro`` when a
``sharp_data`` folder exists, else ``rsb``. Blur images may be ``.png``, ``.jpg``, ``.jpeg`` or
``.bmp`` in either layout.

Spike frame size: the ``.dat`` sidecar (``<name>.dat.json``) if present, else ``spike_size`` in
``meta.json``, else the blur size divided by the calibration scale (4 per side). The spike size must
be the blur size over the calibration scale; a ``Calibration`` with another scale allows other
ratios, and its ``spike_offset_frames`` shifts the exposure window.

Reading is lazy: opening scans folder listings only; indexing a sample reads its files.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

import numpy as np

from spikereveal.calibration.model import Calibration, CalibrationError
from spikereveal.capture.dat import open_dat, read_sidecar
from spikereveal.capture.images import ImageFileError, read_bgr
from spikereveal.capture.sample import Sample
from spikereveal.stream.errors import SpikeRevealError
from spikereveal.stream.spikes import SpikeFormatError

LAYOUTS = ("gopro", "rsb")
# Official GOPRO-spike convention: 20 spike frames before the exposure, 97 inside, 20 after.
GOPRO_FRAMES_PER_SAMPLE = 137
GOPRO_EXPOSURE = (20, 116)
RSB_MARGIN_FRAMES = 20
META_NAME = "meta.json"
BLUR_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp")
_LAYOUT_ALIASES = {"gopro": "gopro", "gopro-spike": "gopro", "rsb": "rsb"}


class DatasetError(SpikeRevealError):
    """A dataset folder does not have the expected layout, or one of its files is wrong."""


@dataclass(frozen=True)
class DatasetEntry:
    """The files of one sample, found when the dataset is opened (nothing is read yet)."""

    scene: str
    name: str
    spike_path: Path
    blur_path: Path
    sharp_paths: tuple[tuple[int | None, Path], ...] = ()  # (spike index, path); None = exposure centre

    @property
    def sample_name(self) -> str:
        return f"{self.scene}/{self.name}"


def natural_key(text: str) -> list[object]:
    """Sort key for names with numbers in them: ``"2.png"`` before ``"10.png"``, case ignored."""
    return [int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", text)]


def _read_meta(root: Path) -> dict[str, Any]:
    path = root / META_NAME
    return read_meta_file(path) if path.is_file() else {}


def read_meta_file(path: Path) -> dict[str, Any]:
    """A dataset's ``meta.json`` as a dict; DatasetError naming the file if it is not a JSON object."""
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise DatasetError(f"{path}: not readable JSON ({exc})") from None
    if not isinstance(meta, dict):
        raise DatasetError(f"{path}: expected a JSON object")
    return meta


def _meta_pair(meta: dict[str, Any], key: str, root: Path) -> tuple[int, int] | None:
    value = meta.get(key)
    if value is None:
        return None
    if (
        not isinstance(value, (list, tuple))
        or len(value) != 2
        or not all(isinstance(v, int) and not isinstance(v, bool) for v in value)
    ):
        raise DatasetError(f"{root / META_NAME}: {key} must be a pair of integers, got {value!r}")
    return int(value[0]), int(value[1])


def _meta_int(meta: dict[str, Any], key: str, root: Path) -> int | None:
    value = meta.get(key)
    if value is None:
        return None
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise DatasetError(f"{root / META_NAME}: {key} must be a non-negative integer, got {value!r}")
    return value


def detect_layout(root: str | Path) -> str:
    """``"gopro"`` or ``"rsb"`` for a set folder (see the module docstring for the rule)."""
    root = Path(root)
    layout = _read_meta(root).get("layout")
    if layout is not None:
        if layout not in _LAYOUT_ALIASES:
            raise DatasetError(
                f"{root / META_NAME}: unknown layout {layout!r} (known: {', '.join(sorted(_LAYOUT_ALIASES))})"
            )
        return _LAYOUT_ALIASES[layout]
    return "gopro" if (root / "sharp_data").is_dir() else "rsb"


def _check_root(root: Path) -> None:
    if not root.exists():
        raise DatasetError(f"{root}: dataset folder not found")
    if not root.is_dir():
        raise DatasetError(f"{root}: not a folder (pass the folder that holds spike_data/ and blur_data/)")
    if (root / "spike_data").is_dir():
        if not (root / "blur_data").is_dir():
            raise DatasetError(f"{root}: has spike_data/ but no blur_data/ folder")
        return
    if root.name in ("spike_data", "blur_data", "sharp_data"):
        raise DatasetError(f"{root}: this is a data folder; pass its parent {root.parent}")
    if root.parent.name == "spike_data":
        raise DatasetError(
            f"{root}: this is a scene folder; pass {root.parent.parent} with scene='{root.name}'"
        )
    sets = sorted(p.name for p in root.iterdir() if p.is_dir() and (p / "spike_data").is_dir())
    if sets:
        raise DatasetError(
            f"{root}: no spike_data/ here; it holds the sets {', '.join(sets)}: pass one of them, e.g. {root / sets[0]}"
        )
    raise DatasetError(
        f"{root}: no spike_data/ folder (expected spike_data/<scene>/<name>.dat and blur_data/)"
    )


def _find_blur(root: Path, scene: str, stem: str, dat: Path) -> Path:
    folder = root / "blur_data" / scene
    for suffix in BLUR_SUFFIXES:
        for candidate in (folder / (stem + suffix), folder / (stem + suffix.upper())):
            if candidate.is_file():
                return candidate
    raise DatasetError(
        f"{dat}: no blurry image for it: expected {folder / stem}.png or .jpg (also .jpeg, .bmp)"
    )


def _find_sharp(root: Path, scene: str, stem: str) -> tuple[tuple[int | None, Path], ...]:
    base = root / "sharp_data" / scene
    found: list[tuple[int | None, Path]] = []
    folder = base / stem
    if folder.is_dir():
        for path in sorted(folder.iterdir(), key=lambda p: natural_key(p.name)):
            if not path.is_file() or path.suffix.lower() not in BLUR_SUFFIXES:
                continue
            if not path.stem.isdigit():
                raise DatasetError(f"{path}: ground-truth file names must be spike indices like 068.png")
            found.append((int(path.stem), path))
        return tuple(found)
    for suffix in BLUR_SUFFIXES:
        single = base / (stem + suffix)
        if single.is_file():
            return ((None, single),)  # the official GOPRO-spike single sharp frame: exposure centre
    return ()


class SpikeDataset(Sequence[Sample]):
    """A lazily read dataset: ``len(ds)``, ``ds[i]`` -> ``Sample``, iteration in sorted order."""

    def __init__(
        self,
        root: str | Path,
        layout: str = "auto",
        *,
        flip: bool | None = True,
        calibration: Calibration | None = None,
        scene: str | Iterable[str] | None = None,
        with_sharp: bool = True,
        missing_blur_ok: bool = False,
    ) -> None:
        self.root = Path(root)
        # Batch jobs list a sample whose image is missing and report it when they read it, rather
        # than refusing the whole set; everyone else gets the error at once.
        self.missing_blur_ok = missing_blur_ok
        _check_root(self.root)
        if layout not in ("auto", *LAYOUTS):
            raise DatasetError(f"layout {layout!r} is not one of auto, {', '.join(LAYOUTS)}")
        self.meta = _read_meta(self.root)
        self.layout = detect_layout(self.root) if layout == "auto" else layout
        self.flip = flip
        # Training must never see ground truth: with_sharp=False does not even list sharp_data/.
        self.with_sharp = with_sharp
        self.calibration = calibration or Calibration()
        self._frames_per_sample = _meta_int(self.meta, "frames_per_sample", self.root)
        self._exposure = _meta_pair(self.meta, "exposure", self.root)
        self._margin = _meta_int(self.meta, "margin_frames", self.root)
        self._meta_spike_size = _meta_pair(self.meta, "spike_size", self.root)
        self._meta_blur_size = _meta_pair(self.meta, "blur_size", self.root)
        if self.layout == "gopro":
            self._frames_per_sample = self._frames_per_sample or GOPRO_FRAMES_PER_SAMPLE
            self._exposure = self._exposure or GOPRO_EXPOSURE
        self.entries = self._scan(scene)

    def _scan(self, scene: str | Iterable[str] | None) -> tuple[DatasetEntry, ...]:
        spike_root = self.root / "spike_data"
        scenes = sorted((p.name for p in spike_root.iterdir() if p.is_dir()), key=natural_key)
        if scene is not None:
            wanted = [scene] if isinstance(scene, str) else list(scene)
            missing = [s for s in wanted if s not in scenes]
            if missing:
                raise DatasetError(
                    f"{spike_root}: no scene {', '.join(missing)} (scenes: {', '.join(scenes) or 'none'})"
                )
            scenes = [s for s in scenes if s in wanted]
        entries: list[DatasetEntry] = []
        for scene_name in scenes:
            dats = sorted((spike_root / scene_name).glob("*.dat"), key=lambda p: natural_key(p.name))
            for dat in dats:
                try:
                    blur = _find_blur(self.root, scene_name, dat.stem, dat)
                except DatasetError:
                    if not self.missing_blur_ok:
                        raise
                    blur = self.root / "blur_data" / scene_name / f"{dat.stem}.png"  # read: a clear error
                wanted_sharp = self.layout == "gopro" and self.with_sharp
                sharp = _find_sharp(self.root, scene_name, dat.stem) if wanted_sharp else ()
                entries.append(DatasetEntry(scene_name, dat.stem, dat, blur, sharp))
        if not entries:
            where = f"scene(s) {', '.join(scenes)}" if scene is not None else "any scene"
            raise DatasetError(
                f"{spike_root}: no .dat files in {where} (expected spike_data/<scene>/<name>.dat)"
            )
        return tuple(entries)

    @property
    def scenes(self) -> list[str]:
        """Scene names in order of appearance."""
        return list(dict.fromkeys(e.scene for e in self.entries))

    def __len__(self) -> int:
        return len(self.entries)

    def __repr__(self) -> str:
        return f"SpikeDataset({str(self.root)!r}, layout={self.layout!r}, {len(self)} samples)"

    @overload
    def __getitem__(self, index: int) -> Sample: ...

    @overload
    def __getitem__(self, index: slice) -> list[Sample]: ...

    def __getitem__(self, index: int | slice) -> Sample | list[Sample]:
        if isinstance(index, slice):
            return [self.load(e) for e in self.entries[index]]
        return self.load(self.entries[index])

    def load(self, entry: DatasetEntry) -> Sample:
        """Read one sample's files (blur, spikes, ground truth) into a ``Sample``."""
        blur = read_dataset_image(entry.blur_path)
        blur_hw = (blur.shape[0], blur.shape[1])
        if self._meta_blur_size is not None and blur_hw != self._meta_blur_size:
            raise DatasetError(
                f"{entry.blur_path}: image is {blur_hw[0]}x{blur_hw[1]}, {self.root / META_NAME} says "
                f"{self._meta_blur_size[0]}x{self._meta_blur_size[1]}"
            )
        spikes = self._read_spikes(entry, blur_hw)
        exposure = self._exposure_for(entry, spikes.shape[0])
        sharp: dict[int, np.ndarray] = {}
        for index, path in entry.sharp_paths:
            image = read_dataset_image(path)
            if image.shape != blur.shape:
                raise DatasetError(
                    f"{path}: ground truth is {image.shape[0]}x{image.shape[1]}, the blur "
                    f"{entry.blur_path.name} is {blur_hw[0]}x{blur_hw[1]}"
                )
            # The official single sharp frame sits at the exposure centre (68 for 20..116).
            key = (exposure[0] + exposure[1]) // 2 if index is None else index
            if not 0 <= key < spikes.shape[0]:
                raise DatasetError(
                    f"{path}: spike index {key} is outside the {spikes.shape[0]} frames of the sample"
                )
            sharp[key] = image
        return Sample(name=entry.sample_name, blur=blur, spikes=spikes, exposure=exposure, sharp=sharp)

    def _spike_size(self, entry: DatasetEntry, blur_hw: tuple[int, int]) -> tuple[tuple[int, int], str]:
        """(h, w) of the spike frames and where that size came from (for messages)."""
        try:
            side = read_sidecar(entry.spike_path)
        except SpikeFormatError as exc:
            raise DatasetError(str(exc)) from None
        if side is not None and "height" in side and "width" in side:
            return (int(side["height"]), int(side["width"])), f"sidecar {entry.spike_path.name}.json"
        if self._meta_spike_size is not None:
            return self._meta_spike_size, str(self.root / META_NAME)
        return self.calibration.expected_spike_size(blur_hw), "blur size / calibration scale"

    def _read_spikes(self, entry: DatasetEntry, blur_hw: tuple[int, int]) -> np.ndarray:
        spike_hw, origin = self._spike_size(entry, blur_hw)
        try:
            self.calibration.check_sizes(blur_hw, spike_hw)
        except CalibrationError as exc:
            raise DatasetError(
                f"{entry.spike_path}: spike size {spike_hw[0]}x{spike_hw[1]} (from {origin}) does not match "
                f"blur {entry.blur_path.name} {blur_hw[0]}x{blur_hw[1]}: {exc}"
            ) from None
        try:
            with open_dat(entry.spike_path, spike_hw[0], spike_hw[1], flip=self.flip) as dat:
                spikes = dat.read()
        except SpikeFormatError as exc:
            raise DatasetError(
                f"{exc} [spike size {spike_hw[0]}x{spike_hw[1]} from {origin}, blur {blur_hw[0]}x{blur_hw[1]}]"
            ) from None
        if spikes.shape[0] == 0:
            raise DatasetError(f"{entry.spike_path}: the spike file holds no frames")
        return spikes

    def _exposure_for(self, entry: DatasetEntry, frames: int) -> tuple[int, int]:
        if self._frames_per_sample is not None and frames != self._frames_per_sample:
            raise DatasetError(
                f"{entry.spike_path}: {frames} spike frames, the {self.layout} layout here has "
                f"{self._frames_per_sample} per sample"
            )
        if self._exposure is not None:
            start, end = self._exposure
        else:
            margin = RSB_MARGIN_FRAMES if self._margin is None else self._margin
            start, end = margin, frames - 1 - margin
            if start > end:
                raise DatasetError(
                    f"{entry.spike_path}: {frames} spike frames leave no exposure after {margin} margin "
                    "frames at each end"
                )
        shift = self.calibration.spike_offset_frames
        start, end = start + shift, end + shift
        if not 0 <= start <= end < frames:
            raise DatasetError(
                f"{entry.spike_path}: exposure {start}..{end} (calibration '{self.calibration.id}' shifts it by "
                f"{shift} frames) is outside the file's {frames} frames 0..{frames - 1}"
            )
        return start, end


def read_dataset_image(path: Path) -> np.ndarray:
    """:func:`~spikereveal.capture.images.read_bgr`, failing as a :class:`DatasetError` (what readers of a set catch)."""
    try:
        return read_bgr(path)
    except ImageFileError as exc:
        raise DatasetError(str(exc)) from None


def open_dataset(
    path: str | Path,
    layout: str = "auto",
    *,
    flip: bool | None = True,
    calibration: Calibration | None = None,
    scene: str | Iterable[str] | None = None,
    with_sharp: bool = True,
    missing_blur_ok: bool = False,
) -> SpikeDataset:
    """Open a dataset set folder as a lazy sequence of ``Sample``s.

    Args:
        path: the folder holding ``spike_data/`` and ``blur_data/`` (e.g. ``GOPRO/test``, an RSB root,
            or a ``spikereveal simulate --out`` folder).
        layout: ``"auto"``, ``"gopro"`` or ``"rsb"`` (see the module docstring).
        flip: undo the sensor's upside-down storage (True for all public data); None takes each
            ``.dat`` sidecar's ``flip`` (else True).
        calibration: sensor relation; default the nominal 1/4 scale, no offsets.
        scene: one scene name or several to keep (default all).
        with_sharp: False never lists nor reads ``sharp_data/`` (samples carry no ground truth),
            which is how training guarantees it learns without it.
        missing_blur_ok: list a ``.dat`` whose blurry image is missing (reading that sample then
            fails, naming the file) instead of refusing the dataset: for batch jobs.
    """
    return SpikeDataset(
        path,
        layout,
        flip=flip,
        calibration=calibration,
        scene=scene,
        with_sharp=with_sharp,
        missing_blur_ok=missing_blur_ok,
    )
