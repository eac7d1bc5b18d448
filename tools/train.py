"""Self-supervised training of the BSN, the SR net and the LDN on a user's own recordings.

No ground truth is ever read: the dataset is opened with ``with_sharp=False``, so ``sharp_data/``
is not even listed. What each net learns from:

- **BSN** (blind-spot denoiser): MSE(BSN(tfp), tfp) for the 9-frame TFP around a random time; the
  blind spot keeps it from learning the identity, so it learns the noise-free part.
- **SR** (EDSR x4): MSE(SR(TFP_long), grey(blur)), grey = 0.3 R + 0.59 G + 0.11 B of the BGR blur:
  the blur is the mean of the latent frames over the exposure, as TFP_long is, at 4x the size.
- **LDN**: the teacher's frames at 5 times spread over the exposure (``exposure_times(s, e, 5)``)
  and the re-blur constraint: ``mean_k teacher_loss(LDN(t_k), teacher(t_k)) + 100 * MSE(blur,
  mean_k LDN(t_k))``. The teacher is raw SDM (``sdm``) or SDM on the super-resolved, denoised TFPs
  (``cascade``). The teacher loss is LPIPS-VGG when the user has its weights locally
  (``lpips_weights``), else ``l1+ssim``: L1 + (1 - SSIM), SSIM with an 11x11 gaussian window
  (sigma 1.5), which needs no download. Which one ran is recorded in the weights' metadata.

Spike density (LDN): each sample's spike windows are scaled by ``density_scale(estimated,
density_target)`` (engine/density.py; default target the paper's Vth-1 density), the same
normalisation inference applies, so one set of weights learns from recordings at any threshold
and records ``spike_density = density_target``. ``density_norm=False`` feeds the raw spikes and
records the data's mean density instead.

Each step draws ``batch`` random crops of ``crop`` RGB pixels (``crop / 4`` spike pixels) with
random horizontal and vertical flips applied to the blur and the spikes alike. Adam (lr 1e-3 LDN,
3e-4 BSN, 2e-4 SR) with a cosine schedule over the step budget: ``steps`` when given, else the
number of steps ``minutes`` allows, estimated from the run's speed (the first step left out, as it
warms up) and refined every :data:`ESTIMATE_STEPS` steps. Training stops at whichever of ``steps``
and ``minutes`` comes first (with ``minutes`` alone: when the time is spent) and always writes a
usable weights file; neither given means :data:`DEFAULT_STEPS` steps.

Reproducible: every random draw comes from one NumPy generator seeded with ``seed`` (the data
sampler) and torch's generator seeded likewise (the initial weights), so the same seed and data
give bit-identical weights on the CPU. Checkpoints (every ``checkpoint_every`` steps, and at the
end) are a safetensors file (weights, Adam state, torch RNG) plus a JSON file (step, schedule,
NumPy and Python RNG states, the loss log); resuming from one gives exactly the state of an
uninterrupted run. Never pickle.

Outputs beside ``out`` (``W.safetensors``): ``W.losses.csv`` (step, time, loss terms, lr),
``W.losses.png`` (when matplotlib is installed) and ``W.checkpoints/step-NNNNNN.{safetensors,json}``.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import logging
import math
import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from spikereveal.capture.datasets import DatasetError, SpikeDataset, open_dataset
from spikereveal.capture.sample import Sample
from spikereveal.capture.spike_camera import bgr_to_grey
from spikereveal.engine.density import PAPER_DENSITY, density_scale, estimate_density
from spikereveal.engine.tfp import tfp, tfp_range
from spikereveal.engine.threads import usable_cores
from spikereveal.engine.weights import ARCHITECTURES, load_net, resolve_weights, save_net
from spikereveal.engine.windows import (
    LDN_SCALE,
    LDN_WINDOW,
    SDM_SHORT_WINDOW,
    ExposureError,
    check_exposure,
    exposure_times,
    ldn_inputs,
)
from spikereveal.stream.errors import SpikeRevealError
from spikereveal.stream.settings import setting, validate

log = logging.getLogger(__name__)

NETS = ("bsn", "sr", "ldn")
TEACHERS = ("sdm", "cascade")
DEFAULT_LR = {"ldn": 1e-3, "bsn": 3e-4, "sr": 2e-4}
#: Fine-tuning (``--init``) starts from weights that already work: a lower peak rate keeps the first
#: steps on a user's few recordings from undoing them (the peak is this fraction of DEFAULT_LR).
FINETUNE_LR_FACTOR = 0.3
#: Output times per blur the LDN is taught at (the paper's K = 5, spread over the exposure).
TEACHER_TIMES = 5
#: Weight of the re-blur term 100 * MSE(blur, mean of the LDN outputs) (the paper's).
REBLUR_WEIGHT = 100.0
#: Steps timed before a ``minutes``-only budget fixes the cosine schedule's length.
ESTIMATE_STEPS = 5
#: Steps used when neither ``steps`` nor ``minutes`` is given.
DEFAULT_STEPS = 1000
#: Samples are kept decoded in memory up to this many bytes (beyond, read again on each use).
CACHE_BYTES = 2 << 30
#: Spike size multiple for crops: RGB crops are multiples of 16 so that spikes (1/4) are multiples of 4,
#: which the LDN's two stride-2 encoders need at RGB size.
CROP_MULTIPLE = 16
CHECKPOINT_FORMAT = "spikereveal-train-checkpoint"
TEACHER_LOSSES = ("l1+ssim", "lpips-vgg")


class TrainingError(SpikeRevealError):
    """Training cannot start or continue: bad data, options, weights or checkpoint."""


def _check_crop(value: Any) -> Any:
    """A crop side (text from a flag, or a YAML integer) that is a multiple of :data:`CROP_MULTIPLE`."""
    if isinstance(value, str):
        try:
            value = int(value)
        except ValueError:
            raise TrainingError(f"crop: got {value!r}, expected a number of RGB pixels") from None
    if isinstance(value, int) and not isinstance(value, bool) and value % CROP_MULTIPLE:
        raise TrainingError(f"crop: got {value}, expected a multiple of {CROP_MULTIPLE} RGB pixels")
    return value


@dataclass(frozen=True)
class TrainConfig:
    """The settings of one training run (``spikereveal train <net>`` options and YAML keys)."""

    data: Path | None = setting(
        None,
        help="Dataset folder (any layout the readers know); ground truth in it is never read.",
        path="dir",
    )
    out: Path | None = setting(None, help="Weights file to write (.safetensors).")
    init: str | None = setting(
        None, help="Start from these weights ('default': the shipped default LDN).", metavar="W"
    )
    steps: int | None = setting(
        None, help=f"Optimizer steps (default {DEFAULT_STEPS} unless --minutes is given).", min=1
    )
    minutes: float | None = setting(
        None, help="Time budget in minutes: stop cleanly when spent.", min=0, min_open=True
    )
    seed: int = setting(0, help="Seed of the data sampler and the initial weights.", min=0)
    crop: int = setting(
        128,
        help=f"Random crop side in RGB pixels (multiple of {CROP_MULTIPLE}; spikes get crop/4).",
        min=CROP_MULTIPLE,
        parse=_check_crop,
    )
    batch: int = setting(4, help="Crops per step.", min=1)
    resume: Path | None = setting(None, help="Continue from this checkpoint (.safetensors or .json).")
    checkpoint_every: int = setting(200, help="Write a checkpoint every N steps.", min=1)
    lr: float | None = setting(
        None,
        help="Peak learning rate (default: LDN 1e-3, BSN 3e-4, SR 2e-4; 0.3x that with --init).",
        min=0,
        min_open=True,
    )
    teacher: str = setting("sdm", help="LDN teacher: raw SDM or the BSN+SR cascade.", choices=TEACHERS)
    bsn: Path | None = setting(None, help="BSN weights for --teacher cascade.")
    sr: Path | None = setting(None, help="SR weights for --teacher cascade.")
    lpips_weights: Path | None = setting(
        None, help="LPIPS-VGG weights file: use LPIPS as the teacher loss (else L1 + SSIM)."
    )
    density_norm: bool = setting(
        True,
        help="Scale each sample's LDN spike input to --density-target (as inference does).",
        flag="--density-norm/--no-density-norm",
    )
    density_target: float = setting(
        PAPER_DENSITY,
        help="Spike density the LDN learns at (the paper's, Vth 1); recorded as spike_density.",
        min=0,
        min_open=True,
    )
    threads: int | None = setting(
        None,
        help="CPU threads (default: every usable core; 1 is faster on a CPU other jobs share).",
        min=1,
    )
    device: str = setting(
        "auto", help="auto (cuda when present), cpu or cuda.", choices=("auto", "cpu", "cuda")
    )

    def __post_init__(self) -> None:
        validate(self)


# Settings that only the LDN reads.
LDN_ONLY = ("teacher", "bsn", "sr", "lpips_weights", "density_norm", "density_target")


def config_keys(net: str) -> list[str]:
    """The settings (option and YAML key names, underscores) that ``train <net>`` takes."""
    names = [f.name for f in dataclasses.fields(TrainConfig)]
    return names if net == "ldn" else [n for n in names if n not in LDN_ONLY]


def load_config_file(path: str | Path, net: str) -> dict[str, Any]:
    """The settings a YAML file gives (keys as the option names, ``-`` or ``_``); unknown key -> error."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise TrainingError(f"{path}: no such training configuration file")
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise TrainingError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise TrainingError(
            f"{path}: expected a mapping of option names to values, got {type(data).__name__}"
        )
    known = config_keys(net)
    values: dict[str, Any] = {}
    for key, value in data.items():
        name = str(key).replace("-", "_")
        if name not in known:
            spelled = ", ".join(k.replace("_", "-") for k in known)
            raise TrainingError(f"{path}: unknown key {key!r} for train {net} (known: {spelled})")
        values[name] = value
    return values


def make_config(
    net: str, file_values: dict[str, Any], flag_values: dict[str, Any], where: str = ""
) -> TrainConfig:
    """Defaults, then the file's values, then the flags given (None = not given).

    ``where`` (the YAML file, when there is one) prefixes the message of a bad value.
    """
    values = {**file_values, **{k: v for k, v in flag_values.items() if v is not None}}
    try:
        return TrainConfig(**values)
    except SpikeRevealError as exc:
        raise TrainingError(f"{where}: {exc}" if where else str(exc)) from None


# --------------------------------------------------------------------------------------- data


@dataclass(frozen=True)
class Crop:
    """One random crop: sample index, top-left corner in spike pixels, flips, and a random time."""

    index: int
    y: int
    x: int
    flip_v: bool
    flip_h: bool
    time: int


@dataclass(frozen=True)
class CroppedSample:
    """A crop of a sample: blur (H, W, 3) uint8 BGR and spikes (T, h, w) uint8, flips applied."""

    blur: np.ndarray
    spikes: np.ndarray
    exposure: tuple[int, int]
    density: float
    time: int


def grey_density(sample: Sample) -> float:
    """Spikes per frame per unit grey intensity over the exposure (engine/density.py's estimate)."""
    try:
        return float(estimate_density(sample.blur, sample.spikes, sample.exposure))
    except SpikeRevealError as exc:
        raise TrainingError(f"{sample.name}: {exc}") from None


class TrainingData:
    """The samples of a dataset folder, read without ground truth, cached in memory when small.

    Checks up front that every sample fits the crop and (for the LDN) the 21-frame windows
    around the exposure's ends, so a bad set fails before the first step with one clear line.
    """

    def __init__(self, root: Path, crop: int, net: str) -> None:
        self.root = Path(root)
        try:
            self.dataset: SpikeDataset = open_dataset(self.root, with_sharp=False)
        except DatasetError as exc:
            raise TrainingError(str(exc)) from None
        self.crop_spikes = crop // LDN_SCALE
        self.crop = crop
        self.net = net
        self._cache: dict[int, Sample] = {}
        self._cached_bytes = 0
        self._densities: dict[int, float] = {}
        for index in range(len(self.dataset)):
            self._check(index, self.sample(index))

    def __len__(self) -> int:
        return len(self.dataset)

    def sample(self, index: int) -> Sample:
        """Sample ``index`` (from the cache, else read and cached while the budget lasts)."""
        cached = self._cache.get(index)
        if cached is not None:
            return cached
        try:
            sample = self.dataset[index]
        except DatasetError as exc:
            raise TrainingError(str(exc)) from None
        if sample.sharp:  # the reader was told not to list them: this would be a reader bug
            raise TrainingError(f"{sample.name}: ground truth was read while training")
        size = sample.blur.nbytes + sample.spikes.nbytes
        if self._cached_bytes + size <= CACHE_BYTES:
            self._cache[index] = sample
            self._cached_bytes += size
        return sample

    def density(self, index: int) -> float:
        """Spike density of sample ``index`` (computed once)."""
        if index not in self._densities:
            self._densities[index] = grey_density(self.sample(index))
        return self._densities[index]

    def _check(self, index: int, sample: Sample) -> None:
        where = f"{self.dataset.entries[index].spike_path}"
        h, w = sample.spike_size
        if self.crop_spikes > min(h, w):
            raise TrainingError(
                f"{where}: spikes are {h}x{w} (blur {sample.blur_size[0]}x{sample.blur_size[1]}), smaller than "
                f"the crop of {self.crop} RGB pixels ({self.crop_spikes} spike pixels): pass a smaller --crop"
            )
        if sample.blur_size != (h * LDN_SCALE, w * LDN_SCALE):
            raise TrainingError(
                f"{where}: blur {sample.blur_size[0]}x{sample.blur_size[1]} is not {LDN_SCALE}x the spikes "
                f"{h}x{w}; training needs the nominal 1/{LDN_SCALE} scale"
            )
        start, end = sample.exposure
        window = LDN_WINDOW if self.net == "ldn" else SDM_SHORT_WINDOW
        try:
            times = exposure_times(start, end, TEACHER_TIMES) if self.net == "ldn" else [start, end]
            if self.net != "sr":
                check_exposure(sample.exposure, times, sample.num_frames, window, f"the {self.net} training")
        except ExposureError as exc:
            raise TrainingError(f"{where}: {exc}") from None

    def densities(self, limit: int = 32) -> list[float]:
        """Densities of up to ``limit`` samples spread evenly over the set (for the metadata)."""
        picks = sorted({int(i) for i in np.linspace(0, len(self) - 1, min(limit, len(self)))})
        return [self.density(i) for i in picks]

    def draw(self, rng: np.random.Generator, batch: int) -> list[Crop]:
        """``batch`` random crops; the draws happen in one fixed order, so a seed fixes them."""
        crops = []
        cs = self.crop_spikes
        for _ in range(batch):
            index = int(rng.integers(len(self)))
            sample = self.sample(index)
            h, w = sample.spike_size
            y = int(rng.integers(h - cs + 1))
            x = int(rng.integers(w - cs + 1))
            flip_v, flip_h = bool(rng.integers(2)), bool(rng.integers(2))
            half = SDM_SHORT_WINDOW // 2
            t = int(rng.integers(half, sample.num_frames - half))
            crops.append(Crop(index, y, x, flip_v, flip_h, t))
        return crops

    def cut(self, crop: Crop) -> CroppedSample:
        """The crop's blur and spikes, flipped alike (blur pixels 4y..4y+4cs cover spikes y..y+cs)."""
        sample = self.sample(crop.index)
        cs, s = self.crop_spikes, LDN_SCALE
        blur = sample.blur[s * crop.y : s * (crop.y + cs), s * crop.x : s * (crop.x + cs)]
        spikes = sample.spikes[:, crop.y : crop.y + cs, crop.x : crop.x + cs]
        if crop.flip_v:
            blur, spikes = blur[::-1], spikes[:, ::-1]
        if crop.flip_h:
            blur, spikes = blur[:, ::-1], spikes[:, :, ::-1]
        return CroppedSample(
            np.ascontiguousarray(blur),
            np.ascontiguousarray(spikes),
            sample.exposure,
            self.density(crop.index),
            crop.time,
        )


# ------------------------------------------------------------------------------------- losses


def _gaussian_1d(size: int = 11, sigma: float = 1.5) -> torch.Tensor:
    coords = torch.arange(size, dtype=torch.float32) - (size - 1) / 2
    g = torch.exp(-(coords**2) / (2 * sigma**2))
    return g / g.sum()


def ssim(a: torch.Tensor, b: torch.Tensor, window: int = 11, sigma: float = 1.5) -> torch.Tensor:
    """Mean SSIM of (N, C, H, W) images in 0..1 (data range 1), gaussian window, per channel.

    The constants are Wang et al.'s (K1 0.01, K2 0.03); the window is applied without padding
    ("valid"), as scikit-image does with ``gaussian_weights=True``. The gaussian is separable:
    two 1-D passes over the five maps stacked in one tensor cost a tenth of an 11x11 window.
    """
    n, channels = a.shape[:2]
    g = _gaussian_1d(window, sigma).to(a.device, a.dtype)
    maps = torch.cat([a, b, a * a, b * b, a * b], dim=1)  # (N, 5C, H, W)
    groups = maps.shape[1]
    maps = F.conv2d(maps, g.view(1, 1, window, 1).expand(groups, 1, window, 1), groups=groups)
    maps = F.conv2d(maps, g.view(1, 1, 1, window).expand(groups, 1, 1, window), groups=groups)
    mu_a, mu_b, aa, bb, ab = maps.split(channels, dim=1)
    c1, c2 = 0.01**2, 0.03**2
    var_a, var_b, cov = aa - mu_a**2, bb - mu_b**2, ab - mu_a * mu_b
    num = (2 * mu_a * mu_b + c1) * (2 * cov + c2)
    den = (mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)
    return (num / den).mean()


def l1_ssim_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """The teacher loss that needs no download: L1 + (1 - SSIM)."""
    return (pred - target).abs().mean() + (1 - ssim(pred, target))


def lpips_loss(weights: Path, device: torch.device) -> Callable[[torch.Tensor, torch.Tensor], torch.Tensor]:
    """LPIPS-VGG with the backbone and linear layers from a local file (no download).

    ``weights``: a safetensors file or a PyTorch state_dict (read with ``weights_only=True``) of a
    whole ``lpips.LPIPS(net="vgg")`` module. Raises TrainingError when the file or the ``lpips``
    package is missing or the file does not fit.
    """
    weights = Path(weights)
    if not weights.is_file():
        raise TrainingError(f"{weights}: LPIPS weights file not found")
    try:
        import lpips
    except ImportError:
        raise TrainingError(
            f"--lpips-weights {weights}: the lpips package is not installed (pip install 'spikereveal-rt[train]')"
        ) from None
    try:
        model = lpips.LPIPS(net="vgg", pretrained=False, pnet_rand=True, verbose=False)
    except TypeError:  # older lpips without pnet_rand
        model = lpips.LPIPS(net="vgg", pretrained=False, verbose=False)
    try:
        if weights.read_bytes()[8:9] == b"{":
            from safetensors.torch import load_file

            state = load_file(str(weights))
        else:
            state = torch.load(weights, map_location="cpu", weights_only=True)
        model.load_state_dict(state, strict=True)
    except Exception as exc:  # noqa: BLE001 - any failure is a bad file, reported in one line
        raise TrainingError(f"{weights}: not LPIPS-VGG weights ({str(exc).splitlines()[0]})") from None
    model = model.to(device).eval()
    for p in model.parameters():
        p.requires_grad_(False)

    def loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        # LPIPS expects RGB in -1..1; the nets work in BGR 0..1.
        return model(pred.flip(1) * 2 - 1, target.flip(1) * 2 - 1).mean()

    return loss


# ----------------------------------------------------------------------------------- teachers


Teacher = Callable[[torch.Tensor, torch.Tensor, tuple[int, int], list[int]], torch.Tensor]


def make_teacher(config: TrainConfig, device: torch.device) -> Teacher:
    """The teacher of ``config.teacher``: raw SDM or the BSN + SR cascade (nets loaded from files)."""
    from spikereveal.engine.teacher import CascadeTeacher, sdm_teacher

    if config.teacher == "sdm":
        return sdm_teacher
    missing = [flag for flag, value in (("--bsn", config.bsn), ("--sr", config.sr)) if value is None]
    if missing:
        raise TrainingError(f"--teacher cascade needs {' and '.join(missing)} weights")
    assert config.bsn is not None and config.sr is not None
    bsn, _ = load_weights(config.bsn, "bsn")
    sr, _ = load_weights(config.sr, "sr")
    teacher = CascadeTeacher(bsn.to(device).eval(), sr.to(device).eval())

    def run(
        blur: torch.Tensor, spikes: torch.Tensor, exposure: tuple[int, int], times: list[int]
    ) -> torch.Tensor:
        with torch.no_grad():
            return teacher(blur, spikes, exposure, times)

    return run


# ------------------------------------------------------------------------------------ weights


def build_net(net: str) -> nn.Module:
    """A freshly initialised network of architecture ``net`` (torch's generator sets its weights)."""
    return ARCHITECTURES[net]()


def load_weights(spec: str | Path, net: str) -> tuple[nn.Module, dict[str, str]]:
    """Weights of architecture ``net`` from a file (``default``: the shipped default LDN).

    A file holding another architecture is a WeightsError: "W: holds a bsn network, expected ldn".
    """
    return load_net(resolve_weights(str(spec)), net)


# ------------------------------------------------------------------------------------- steps


@dataclass
class Batch:
    """Tensors of one step, on the training device."""

    inputs: tuple[torch.Tensor, ...]
    target: torch.Tensor | None = None


class Objective:
    """Turns crops into tensors and a loss for one network (the part that differs per net)."""

    terms: tuple[str, ...] = ("loss",)

    def __init__(self, net: str, config: TrainConfig, device: torch.device) -> None:
        self.net, self.config, self.device = net, config, device
        self.teacher: Teacher | None = None
        self.teacher_loss_name = ""
        self.teacher_loss: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None
        if net == "ldn":
            self.terms = ("loss", "teacher", "reblur")
            self.teacher = make_teacher(config, device)
            if config.lpips_weights is not None:
                self.teacher_loss = lpips_loss(config.lpips_weights, device)
                self.teacher_loss_name = "lpips-vgg"
            else:
                self.teacher_loss = l1_ssim_loss
                self.teacher_loss_name = "l1+ssim"

    def _t(self, array: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def batch(self, crops: Sequence[CroppedSample]) -> Batch:
        """The step's input tensors (and fixed targets) from its crops."""
        if self.net == "bsn":
            x = np.stack([tfp(c.spikes, c.time, SDM_SHORT_WINDOW)[None] for c in crops])
            return Batch((self._t(x),))
        if self.net == "sr":
            x = np.stack([tfp_range(c.spikes, *c.exposure)[None] for c in crops])
            y = np.stack([bgr_to_grey(c.blur)[None] for c in crops]).astype(np.float32)
            return Batch((self._t(x),), self._t(y))
        blurs, windows = [], []
        for c in crops:
            times = exposure_times(c.exposure[0], c.exposure[1], TEACHER_TIMES)
            blur, window = ldn_inputs(c.blur, c.spikes, times)  # (K,3,H,W), (K,21,h,w)
            if self.config.density_norm:
                # The teacher sees the raw spikes (its ratio does not depend on the density); the
                # student sees them brought to the density recorded in its weights, as at inference.
                window = window * np.float32(density_scale(c.density, self.config.density_target))
            blurs.append(blur)
            windows.append(window)
        # The teacher takes one exposure per call: group the crops by exposure (one group, usually).
        teachers: list[torch.Tensor | None] = [None] * len(crops)
        for exposure in dict.fromkeys(c.exposure for c in crops):
            members = [i for i, c in enumerate(crops) if c.exposure == exposure]
            times = exposure_times(exposure[0], exposure[1], TEACHER_TIMES)
            blur_t = self._t(np.stack([blurs[i][0] for i in members]))
            spikes_t = self._t(np.stack([crops[i].spikes for i in members]).astype(np.float32))
            assert self.teacher is not None
            frames = self.teacher(blur_t, spikes_t, exposure, times).float()  # (n, K, 3, H, W)
            for j, i in enumerate(members):
                teachers[i] = frames[j]
        blur_k = self._t(np.concatenate(blurs))
        return Batch((blur_k, self._t(np.concatenate(windows))), torch.cat(teachers))  # type: ignore[arg-type]

    def loss(self, model: nn.Module, batch: Batch) -> dict[str, torch.Tensor]:
        """Loss terms of one step; ``loss`` is what is minimised."""
        if self.net == "bsn":
            (x,) = batch.inputs
            return {"loss": F.mse_loss(model(x).float(), x)}
        if self.net == "sr":
            (x,) = batch.inputs
            assert batch.target is not None
            return {"loss": F.mse_loss(model(x).float(), batch.target)}
        blur, spikes = batch.inputs
        assert batch.target is not None and self.teacher_loss is not None
        out = model(blur, spikes).float()  # (N*K, 3, H, W)
        # Averaging the teacher loss over all N*K frames is its average over the K times.
        teacher = self.teacher_loss(out, batch.target)
        k = TEACHER_TIMES
        mean_out = out.view(-1, k, *out.shape[1:]).mean(dim=1)
        reblur = REBLUR_WEIGHT * F.mse_loss(mean_out, blur[::k])
        return {"loss": teacher + reblur, "teacher": teacher, "reblur": reblur}


def cosine_lr(base: float, step: int, total: int) -> float:
    """Cosine schedule: ``base`` at step 0 down towards 0 at ``total``."""
    if total <= 0:
        return base
    return base * 0.5 * (1 + math.cos(math.pi * min(step, total) / total))


# ------------------------------------------------------------------------------- checkpoints


@dataclass
class TrainState:
    """What a checkpoint holds beyond the tensors (the JSON half)."""

    step: int = 0
    total_steps: int | None = None
    elapsed_s: float = 0.0
    numpy_rng: dict[str, Any] | None = None
    python_rng: list[Any] | None = None
    rows: list[dict[str, float]] = dataclasses.field(default_factory=list)
    probe_before: float | None = None


def checkpoint_dir(out: Path) -> Path:
    """Where the checkpoints of a run writing ``out`` go."""
    return out.with_name(out.stem + ".checkpoints")


def _config_json(config: TrainConfig) -> dict[str, Any]:
    return {
        f.name: (str(v) if isinstance(v := getattr(config, f.name), Path) else v)
        for f in dataclasses.fields(config)
    }


def save_checkpoint(
    folder: Path,
    net: str,
    config: TrainConfig,
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    state: TrainState,
    rng: np.random.Generator,
) -> Path:
    """Write ``step-NNNNNN.safetensors`` (weights, Adam state, torch RNG) and its ``.json``."""
    from safetensors.torch import save_file

    folder.mkdir(parents=True, exist_ok=True)
    stem = folder / f"step-{state.step:06d}"
    tensors: dict[str, torch.Tensor] = {
        f"model/{k}": v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()
    }
    opt = optimizer.state_dict()
    for index, entry in opt["state"].items():
        for name, value in entry.items():
            tensor = value if isinstance(value, torch.Tensor) else torch.tensor(value)
            tensors[f"optim/{index}/{name}"] = tensor.detach().cpu().contiguous().clone()
    tensors["rng/torch"] = torch.get_rng_state()
    if torch.cuda.is_available():
        tensors["rng/cuda"] = torch.cuda.get_rng_state()
    info = {
        "format": CHECKPOINT_FORMAT,
        "net": net,
        "config": _config_json(config),
        "param_groups": opt["param_groups"],
        "step": state.step,
        "total_steps": state.total_steps,
        "elapsed_s": state.elapsed_s,
        "numpy_rng": rng.bit_generator.state,
        "python_rng": _python_state_json(random.getstate()),
        "rows": state.rows,
        "probe_before": state.probe_before,
    }
    save_file(tensors, str(stem) + ".safetensors", metadata={"format": CHECKPOINT_FORMAT, "net": net})
    tmp = Path(str(stem) + ".json.tmp")
    tmp.write_text(json.dumps(info), encoding="utf-8")
    os.replace(tmp, str(stem) + ".json")
    return Path(str(stem) + ".json")


def _python_state_json(state: tuple[Any, ...]) -> list[Any]:
    version, internal, gauss = state
    return [version, list(internal), gauss]


def _checkpoint_paths(path: Path) -> tuple[Path, Path]:
    """(tensors, json) of a checkpoint given as either file, its stem, or its folder (latest)."""
    path = Path(path)
    if path.is_dir():
        found = sorted(path.glob("step-*.json"))
        if not found:
            raise TrainingError(f"{path}: no checkpoints (step-NNNNNN.json) in this folder")
        path = found[-1]
    base = path.with_suffix("") if path.suffix in (".json", ".safetensors") else path
    tensors, info = base.with_suffix(".safetensors"), base.with_suffix(".json")
    for p in (tensors, info):
        if not p.is_file():
            raise TrainingError(
                f"{path}: checkpoint file {p} not found (a checkpoint is a .safetensors and a .json)"
            )
    return tensors, info


def read_checkpoint(path: Path, net: str) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
    """The JSON half and the tensors of a checkpoint; refuses one of another net."""
    from safetensors.torch import load_file

    tensors_path, info_path = _checkpoint_paths(path)
    try:
        info = json.loads(info_path.read_text(encoding="utf-8"))
        tensors = load_file(str(tensors_path))
    except (OSError, ValueError, UnicodeDecodeError) as exc:
        raise TrainingError(f"{info_path}: unreadable checkpoint ({exc})") from None
    if not isinstance(info, dict) or info.get("format") != CHECKPOINT_FORMAT:
        raise TrainingError(f"{info_path}: not a training checkpoint (format {CHECKPOINT_FORMAT!r} expected)")
    if info.get("net") != net:
        raise TrainingError(f"{info_path}: a checkpoint of train {info.get('net')}, not train {net}")
    return info, tensors


def resume_config(info: dict[str, Any], flags: dict[str, Any], path: Path) -> TrainConfig:
    """The checkpoint's configuration with the options given now on top (e.g. more ``steps``)."""
    saved = {k: v for k, v in info["config"].items() if k != "resume"}
    return make_config(info["net"], saved, {**flags, "resume": path}, where=str(path))


def _restore(
    info: dict[str, Any],
    tensors: dict[str, torch.Tensor],
    model: nn.Module,
    optimizer: torch.optim.Optimizer,
    rng: np.random.Generator,
) -> TrainState:
    model_state = {k[len("model/") :]: v for k, v in tensors.items() if k.startswith("model/")}
    model.load_state_dict(model_state, strict=True)
    per_param: dict[int, dict[str, torch.Tensor]] = {}
    for key, value in tensors.items():
        if key.startswith("optim/"):
            _, index, name = key.split("/", 2)
            per_param.setdefault(int(index), {})[name] = value
    optimizer.load_state_dict({"state": per_param, "param_groups": info["param_groups"]})
    torch.set_rng_state(tensors["rng/torch"])
    if "rng/cuda" in tensors and torch.cuda.is_available():
        torch.cuda.set_rng_state(tensors["rng/cuda"])
    rng.bit_generator.state = info["numpy_rng"]
    version, internal, gauss = info["python_rng"]
    random.setstate((version, tuple(internal), gauss))
    return TrainState(
        step=int(info["step"]),
        total_steps=info.get("total_steps"),
        elapsed_s=float(info.get("elapsed_s", 0.0)),
        rows=list(info.get("rows", [])),
        probe_before=info.get("probe_before"),
    )


# -------------------------------------------------------------------------------------- loop


@dataclass(frozen=True)
class TrainResult:
    """What a run wrote and how it went."""

    weights: Path
    steps: int
    seconds: float
    stopped_by: str  # "steps" or "minutes"
    probe_before: float
    probe_after: float
    losses_csv: Path
    plot: Path | None
    metadata: dict[str, str]

    @property
    def seconds_per_step(self) -> float:
        return self.seconds / max(self.steps, 1)


def pick_device(choice: str) -> torch.device:
    """cuda when asked or (``auto``) present, else the CPU."""
    if choice == "cuda" and not torch.cuda.is_available():
        raise TrainingError("device cuda: torch sees no CUDA device")
    if choice == "cuda" or (choice == "auto" and torch.cuda.is_available()):
        return torch.device("cuda")
    return torch.device("cpu")


def _autocast(device: torch.device) -> Any:
    if device.type == "cuda":
        dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
        return torch.autocast("cuda", dtype=dtype)
    return torch.autocast("cpu", enabled=False)


def _probe_loss(objective: Objective, model: nn.Module, batch: Batch, device: torch.device) -> float:
    """The loss on the fixed probe batch (drawn from its own generator: the sampler is untouched)."""
    was_training = model.training
    model.eval()
    with torch.no_grad(), _autocast(device):
        value = float(objective.loss(model, batch)["loss"])
    model.train(was_training)
    return value


def _dataset_meta(root: Path) -> dict[str, Any]:
    path = root / "meta.json"
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return meta if isinstance(meta, dict) else {}


def write_losses(rows: list[dict[str, float]], terms: Sequence[str], path: Path) -> None:
    """The loss log as CSV: step, time_s, each loss term, lr."""
    fields = ["step", "time_s", *terms, "lr"]
    with path.open("w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            writer.writerow(row)


def plot_losses(rows: list[dict[str, float]], terms: Sequence[str], path: Path, title: str) -> Path | None:
    """The loss curves as a PNG; skipped (None, one log line) when matplotlib is not installed."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no loss plot (pip install matplotlib)")
        return None
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = [r["step"] for r in rows]
    for term in terms:
        ax.plot(steps, [r[term] for r in rows], label=term, linewidth=1)
    ax.set_xlabel("step")
    ax.set_ylabel("loss")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def train(
    net: str,
    config: TrainConfig,
    *,
    command: str = "",
    progress: bool = True,
    threads: int | None = None,
) -> TrainResult:
    """Train ``net`` (``bsn``, ``sr`` or ``ldn``) as ``config`` says; returns what was written.

    Raises TrainingError (one line) for bad data, options, weights or checkpoints.
    """
    if net not in NETS:
        raise TrainingError(f"unknown network {net!r} (expected one of {', '.join(NETS)})")
    info: dict[str, Any] | None = None
    tensors: dict[str, torch.Tensor] = {}
    if config.resume is not None:
        info, tensors = read_checkpoint(config.resume, net)
    if config.data is None:
        raise TrainingError(f"train {net}: no dataset: pass --data DIR (or data: in --config)")
    if config.out is None:
        raise TrainingError(f"train {net}: no output file: pass --out W.safetensors (or out: in --config)")
    out = Path(config.out)
    try:  # a new --out folder is made, as calibrate --out and eval --out do
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TrainingError(f"{out}: cannot make its folder {out.parent} ({exc.strerror or exc})") from None
    # Oversubscribed cores make torch's threads wait on each other: on a 2-core machine busy with
    # other jobs, 1 thread measured 4x faster per LDN step than 2 (0.53 s against 2.3 s).
    torch.set_num_threads(threads or config.threads or usable_cores())
    device = pick_device(config.device)

    data = TrainingData(Path(config.data), config.crop, net)
    objective = Objective(net, config, device)

    # Every random draw: torch's generator for the initial weights, one NumPy generator for the
    # data; Python's ``random`` is seeded too (and checkpointed) for anything that might use it.
    torch.manual_seed(config.seed)
    random.seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = build_net(net)
    init_meta: dict[str, str] = {}
    if config.init is not None and info is None:
        loaded, init_meta = load_weights(config.init, net)
        model.load_state_dict(loaded.state_dict(), strict=True)
    model = model.to(device).train()
    base_lr = config.lr if config.lr is not None else DEFAULT_LR[net]
    if config.lr is None and config.init is not None:
        base_lr *= FINETUNE_LR_FACTOR
    optimizer = torch.optim.Adam(model.parameters(), lr=base_lr)

    probe_rng = np.random.default_rng([config.seed, 1])
    probe = objective.batch([data.cut(c) for c in data.draw(probe_rng, config.batch)])
    if info is not None:
        state = _restore(info, tensors, model, optimizer, rng)
        log.info("resumed %s from step %d (%s)", net, state.step, config.resume)
    else:
        state = TrainState(probe_before=_probe_loss(objective, model, probe, device))
    if config.steps is not None:
        state.total_steps = config.steps
    elif config.minutes is None:
        state.total_steps = DEFAULT_STEPS
    budget_s = None if config.minutes is None else config.minutes * 60.0

    from tqdm import tqdm

    bar = tqdm(
        total=state.total_steps,
        initial=state.step,
        desc=f"train {net}",
        unit="step",
        disable=not progress,
        dynamic_ncols=True,
    )
    ckpt_dir = checkpoint_dir(out)
    started = time.perf_counter()
    elapsed0 = state.elapsed_s
    run_steps = 0
    stopped_by = "steps"
    running: float | None = None
    # With a time budget only, the run lasts the budget and the schedule's length is its estimate
    # in steps, refined as the run goes (the first step, with its warm-up, is left out of it).
    timed = config.steps is None and budget_s is not None
    first_done = 0.0
    try:
        while timed or state.total_steps is None or state.step < state.total_steps:
            elapsed = elapsed0 + time.perf_counter() - started
            if budget_s is not None and elapsed >= budget_s:
                stopped_by = "minutes"
                break
            schedule = state.total_steps or DEFAULT_STEPS
            lr = cosine_lr(base_lr, state.step, schedule)
            for group in optimizer.param_groups:
                group["lr"] = lr
            crops = [data.cut(c) for c in data.draw(rng, config.batch)]
            batch = objective.batch(crops)
            optimizer.zero_grad(set_to_none=True)
            with _autocast(device):
                terms = objective.loss(model, batch)
            loss = terms["loss"]
            if not bool(torch.isfinite(loss)):
                raise TrainingError(f"train {net}: the loss became {float(loss)} at step {state.step + 1}")
            loss.backward()
            optimizer.step()
            state.step += 1
            run_steps += 1
            state.elapsed_s = elapsed0 + time.perf_counter() - started
            row = {"step": state.step, "time_s": round(state.elapsed_s, 3), "lr": lr}
            row.update({k: float(v.detach()) for k, v in terms.items()})
            state.rows.append(row)
            value = row["loss"]
            running = value if running is None else 0.9 * running + 0.1 * value
            bar.update(1)
            bar.set_postfix(loss=f"{running:.4g}")
            if run_steps == 1:
                first_done = state.elapsed_s
            if timed and budget_s is not None and run_steps > 1 and (run_steps - 1) % ESTIMATE_STEPS == 0:
                per_step = (state.elapsed_s - first_done) / (run_steps - 1)
                left = max(budget_s - state.elapsed_s, 0.0)
                state.total_steps = state.step + 1 + int(left / per_step)
                bar.total = state.total_steps
                bar.refresh()
                log.debug("%.2f s/step: the cosine schedule spans %d steps", per_step, state.total_steps)
            if state.step % config.checkpoint_every == 0:
                save_checkpoint(ckpt_dir, net, config, model, optimizer, state, rng)
    finally:
        bar.close()
    if state.rows and state.rows[-1]["step"] % config.checkpoint_every != 0:
        save_checkpoint(ckpt_dir, net, config, model, optimizer, state, rng)

    probe_after = _probe_loss(objective, model, probe, device)
    densities = data.densities()
    meta = _dataset_meta(Path(config.data))
    trained_at = net == "ldn" and config.density_norm
    spike_density = config.density_target if trained_at else float(np.mean(densities))
    metadata = {
        "data": str(Path(config.data).resolve()),
        "samples": str(len(data)),
        "steps": str(state.step),
        "seed": str(config.seed),
        "crop": str(config.crop),
        "batch": str(config.batch),
        "lr": repr(base_lr),
        "minutes": "" if config.minutes is None else repr(config.minutes),
        "seconds": f"{state.elapsed_s:.1f}",
        "stopped_by": stopped_by,
        "spike_density": f"{spike_density:.4f}",
        "data_spike_density": f"{float(np.mean(densities)):.4f}",
        "command": command,
        "time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "loss_probe_before": f"{state.probe_before:.6g}",
        "loss_probe_after": f"{probe_after:.6g}",
        "device": device.type,
        "threads": str(torch.get_num_threads()),
    }
    if "vth" in meta:
        metadata["vth"] = str(meta["vth"])
    if config.init is not None:
        metadata["init"] = str(config.init)
        if "weights_sha256" in init_meta:
            metadata["init_sha256"] = init_meta["weights_sha256"]
    if net == "ldn":
        metadata["teacher"] = config.teacher
        metadata["teacher_loss"] = objective.teacher_loss_name
        metadata["density_norm"] = "on" if config.density_norm else "off"
        if config.teacher == "cascade":
            metadata["teacher_bsn"] = str(config.bsn)
            metadata["teacher_sr"] = str(config.sr)
    model = model.cpu().eval()
    weights = save_net(out, model, net, metadata)
    csv_path = out.with_name(out.stem + ".losses.csv")
    write_losses(state.rows, objective.terms, csv_path)
    plot = plot_losses(state.rows, objective.terms, out.with_name(out.stem + ".losses.png"), f"train {net}")
    return TrainResult(
        weights=weights,
        steps=state.step,
        seconds=state.elapsed_s,
        stopped_by=stopped_by,
        probe_before=float(state.probe_before or 0.0),
        probe_after=probe_after,
        losses_csv=csv_path,
        plot=plot,
        metadata=metadata,
    )
