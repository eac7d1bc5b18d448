"""Blurry frame + spike stream -> sequence of sharp frames: the pure core every caller shares.

The offline CLI, the engine node and the benchmarks hand a blur, its spikes, the exposure and
the output times to a :class:`Deblurrer` and get K frames back; which model runs (closed-form
SDM or the distilled LDN on some backend) is chosen once, when the deblurrer is made.

The LDN runs the project's own default weights (``engine/default_weights/ldn.safetensors``,
made by ``make default-weights``) unless other weights are given; ``"default"`` names them too.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from spikereveal.calibration.model import Calibration, CalibrationError
from spikereveal.engine.density import PAPER_DENSITY, DensityNorm, normalization, trained_density
from spikereveal.engine.sdm import sdm_sequence, sdm_sequence_uint8
from spikereveal.engine.windows import LDN_SCALE, LDN_WINDOW, SDM_SHORT_WINDOW, check_exposure, ldn_inputs

MODELS = ("ldn", "sdm")
#: The weights spec that names the shipped default (``--weights default``).
DEFAULT_WEIGHTS = "default"
#: Overrides where the default weights are looked for (tests, a development tree without them).
DEFAULT_WEIGHTS_ENV = "SPIKEREVEAL_DEFAULT_WEIGHTS"
#: The project's own LDN weights, shipped inside the package (trained from scratch; see its README).
#: Declared here, not in engine/weights.py, because choosing a model must not import torch.
SHIPPED_LDN_WEIGHTS = Path(__file__).resolve().parent / "default_weights" / "ldn.safetensors"
#: Spike frames each model reads around one output time: what an exposure must leave room for.
WINDOW_FRAMES = {"ldn": LDN_WINDOW, "sdm": SDM_SHORT_WINDOW}
#: The LDN's two stride-2 blur convolutions fix its spikes at exactly 1/4 of the RGB size per side.


def check_ldn_sizes(blur_hw: tuple[int, int], spike_hw: tuple[int, int]) -> None:
    """Raise CalibrationError unless the RGB size is exactly 4x the spike size per side (the LDN's scale).

    The other models resample the spikes to any RGB size a calibration allows; the network cannot,
    so the message names the RGB size these spikes need and the spike size this RGB would need.
    """
    nominal = Calibration(scale=LDN_SCALE, id="ldn")
    if tuple(blur_hw) == nominal.rgb_size_for(spike_hw):
        return
    raise CalibrationError(
        f"the ldn model needs the RGB image at exactly {LDN_SCALE}x the spike size per side, got RGB "
        f"{blur_hw[0]}x{blur_hw[1]} with spike frames {spike_hw[0]}x{spike_hw[1]}: "
        f"{nominal.size_advice(blur_hw, spike_hw)}"
    )


class Deblurrer(Protocol):
    """Anything that turns one exposure into K sharp frames."""

    name: str

    def sequence(
        self, blur_bgr: np.ndarray, spikes: np.ndarray, exposure: tuple[int, int], times: list[int]
    ) -> np.ndarray:
        """blur_bgr (H, W, 3) uint8, spikes (T, h, w) uint8 0/1 -> (K, H, W, 3) float32 0..1-ish, BGR."""
        ...

    def close(self) -> None: ...


@dataclass
class SDMDeblurrer:
    """Closed-form SDM: needs no weights, works at any threshold, but is noisy (no denoiser)."""

    short_window: int = SDM_SHORT_WINDOW
    name: str = field(default="sdm", init=False)

    def sequence(
        self, blur_bgr: np.ndarray, spikes: np.ndarray, exposure: tuple[int, int], times: list[int]
    ) -> np.ndarray:
        check_exposure(exposure, times, spikes.shape[0], self.short_window)
        return sdm_sequence(blur_bgr, spikes, exposure, times, self.short_window)

    def sequence_uint8(
        self, blur_bgr: np.ndarray, spikes: np.ndarray, exposure: tuple[int, int], times: list[int]
    ) -> np.ndarray:
        """:meth:`sequence` as (K, H, W, 3) uint8, made without the float stack (the engine's path)."""
        check_exposure(exposure, times, spikes.shape[0], self.short_window)
        return sdm_sequence_uint8(blur_bgr, spikes, exposure, times, self.short_window)

    def close(self) -> None:
        return None


@dataclass
class LDNDeblurrer:
    """The distilled network on one backend; one batch of K windows per exposure.

    Density normalization (engine/density.py, on unless ``density_norm`` is False): each
    exposure's spike density is estimated from its blur and spikes, and the spike windows are
    multiplied by ``trained_density / estimated`` so that a sensor at another threshold gives the
    network the firing rate its weights were trained at. ``last_density`` says what the last
    ``sequence`` did (estimate, trained density, scale, on/off).
    """

    backend: object  # spikereveal.engine.backends.Backend
    window: int = LDN_WINDOW
    trained_density: float = PAPER_DENSITY
    density_norm: bool = True
    name: str = field(default="ldn", init=False)
    last_density: DensityNorm | None = field(default=None, init=False)

    def sequence(
        self, blur_bgr: np.ndarray, spikes: np.ndarray, exposure: tuple[int, int], times: list[int]
    ) -> np.ndarray:
        check_ldn_sizes(blur_bgr.shape[:2], spikes.shape[1:3])
        check_exposure(exposure, times, spikes.shape[0], self.window)
        norm = normalization(blur_bgr, spikes, exposure, self.trained_density, self.density_norm)
        self.last_density = norm
        blur, windows = ldn_inputs(blur_bgr, spikes, times, self.window, spike_scale=norm.scale)
        sharp = self.backend.run(blur, windows)  # (K, 3, H, W)
        return np.ascontiguousarray(sharp.transpose(0, 2, 3, 1))

    def close(self) -> None:
        self.backend.close()


def default_ldn_weights() -> Path:
    """Where the default LDN weights are: the shipped file, or ``$SPIKEREVEAL_DEFAULT_WEIGHTS``."""
    override = os.environ.get(DEFAULT_WEIGHTS_ENV)
    return Path(override) if override else SHIPPED_LDN_WEIGHTS


def is_default_weights(weights: str | os.PathLike[str] | None) -> bool:
    """Whether ``weights`` means the default LDN weights (None or ``"default"``)."""
    return weights is None or str(weights) == DEFAULT_WEIGHTS


def default_model(weights: str | os.PathLike[str] | None = None) -> str:
    """The model to run when none is named: ldn with weights or with the default weights, else sdm."""
    return "ldn" if weights is not None or default_ldn_weights().is_file() else "sdm"


def missing_default_message(path: Path | None = None) -> str:
    """The one line saying the default weights are missing and how to make them."""
    path = path or default_ldn_weights()
    return (
        f"{path}: the project's default LDN weights are not there; build them with `make default-weights` "
        "(or give a weights file, or use the sdm model)"
    )


def ldn_weights(weights: str | os.PathLike[str] | None = None) -> Path:
    """The file the LDN loads: ``weights`` as given, or the default weights for None / ``"default"``.

    Raises WeightsError (one line naming the file and ``make default-weights``) when the default
    is meant but missing; a given file is checked when it is loaded.
    """
    if not is_default_weights(weights):
        return Path(weights)  # type: ignore[arg-type]  (not None here)
    path = default_ldn_weights()
    if not path.is_file():
        from spikereveal.engine.weights import WeightsError

        raise WeightsError(missing_default_message(path))
    return path


def make_deblurrer(
    model: str,
    *,
    weights: str | Path | None = None,
    backend: str = "torch",
    device: str | None = None,
    threads: int | None = None,
    density_norm: bool = True,
) -> Deblurrer:
    """Build the deblurrer named ``model`` ("sdm" or "ldn", which runs ``weights``: default the default).

    ``backend``: a backend name or "auto", on ``device`` (see engine.backends.create_backend).

    ``density_norm``: normalize the LDN's spike input to the density its weights were trained at
    (their metadata's ``spike_density``; the paper's .pth, which has none, was trained at Vth 1).
    """
    if model == "sdm":
        return SDMDeblurrer()
    if model != "ldn":
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    weights = ldn_weights(weights)
    from spikereveal.engine.backends import create_backend
    from spikereveal.engine.weights import load_ldn_metadata, load_ldn_state

    trained = trained_density(load_ldn_metadata(weights), source=str(weights))
    return LDNDeblurrer(
        create_backend(backend, load_ldn_state(weights), threads=threads, device=device),
        trained_density=trained,
        density_norm=density_norm,
    )


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """float 0..1 -> uint8 with rounding and clipping (SDM may overshoot at moving edges)."""
    return np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)
