"""Blurry frame + spike stream -> sequence of sharp frames: the pure core every caller shares.

The offline CLI, the engine node and the benchmarks hand a blur, its spikes, the exposure and
the output times to a :class:`Deblurrer` and get K frames back; which model runs (closed-form
SDM or the distilled LDN on some backend) is chosen once, when the deblurrer is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from spikereveal.calibration.model import Calibration, CalibrationError
from spikereveal.engine.sdm import sdm_sequence
from spikereveal.engine.windows import LDN_SCALE, LDN_WINDOW, SDM_SHORT_WINDOW, check_exposure, ldn_inputs

MODELS = ("ldn", "sdm")
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

    def close(self) -> None:
        return None


@dataclass
class LDNDeblurrer:
    """The distilled network on one backend; one batch of K windows per exposure."""

    backend: object  # spikereveal.engine.backends.Backend
    window: int = LDN_WINDOW
    name: str = field(default="ldn", init=False)

    def sequence(
        self, blur_bgr: np.ndarray, spikes: np.ndarray, exposure: tuple[int, int], times: list[int]
    ) -> np.ndarray:
        check_ldn_sizes(blur_bgr.shape[:2], spikes.shape[1:3])
        check_exposure(exposure, times, spikes.shape[0], self.window)
        blur, windows = ldn_inputs(blur_bgr, spikes, times, self.window)
        sharp = self.backend.run(blur, windows)  # (K, 3, H, W)
        return np.ascontiguousarray(sharp.transpose(0, 2, 3, 1))

    def close(self) -> None:
        self.backend.close()


def make_deblurrer(
    model: str,
    *,
    weights: str | Path | None = None,
    backend: str = "torch",
    threads: int | None = None,
) -> Deblurrer:
    """Build the deblurrer named ``model`` ("sdm" or "ldn"; "ldn" needs ``weights``)."""
    if model == "sdm":
        return SDMDeblurrer()
    if model != "ldn":
        raise ValueError(f"unknown model {model!r}; expected one of {', '.join(MODELS)}")
    if weights is None:
        raise ValueError(
            "weights: the ldn model needs weights (a paper checkpoint or the project's .safetensors); "
            "the sdm model deblurs without them"
        )
    from spikereveal.engine.backends import create_backend
    from spikereveal.engine.weights import load_ldn_state

    return LDNDeblurrer(create_backend(backend, load_ldn_state(weights), threads=threads))


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """float 0..1 -> uint8 with rounding and clipping (SDM may overshoot at moving edges)."""
    return np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)
