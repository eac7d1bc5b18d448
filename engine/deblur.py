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

from spikereveal.engine.sdm import sdm_sequence
from spikereveal.engine.windows import LDN_WINDOW, SDM_SHORT_WINDOW, ldn_inputs

MODELS = ("ldn", "sdm")


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
            "the ldn model needs --weights (a paper checkpoint or the project's .safetensors); "
            "use --model sdm to deblur without weights"
        )
    from spikereveal.engine.backends import create_backend
    from spikereveal.engine.weights import load_ldn_state

    return LDNDeblurrer(create_backend(backend, load_ldn_state(weights), threads=threads))


def to_uint8(frames: np.ndarray) -> np.ndarray:
    """float 0..1 -> uint8 with rounding and clipping (SDM may overshoot at moving edges)."""
    return np.clip(np.rint(frames * 255.0), 0, 255).astype(np.uint8)
