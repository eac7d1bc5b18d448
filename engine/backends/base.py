"""What every LDN backend is: ``run(blur, spikes) -> sharp`` on NumPy arrays, plus ``close()``.

Backends differ in how they run the network (torch eager, onnxruntime, TensorRT), never in what
they accept: the inputs are checked here, once, with the same messages for all of them.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from typing import ClassVar

import numpy as np

from spikereveal.engine.threads import usable_cores  # noqa: F401  (part of the backends' API)
from spikereveal.engine.windows import LDN_SCALE as SPIKE_SCALE
from spikereveal.engine.windows import LDN_WINDOW as SPIKE_WINDOW
from spikereveal.stream.errors import SpikeRevealError


class BackendError(SpikeRevealError):
    """A backend that cannot be made (unknown name or option, missing device) or bad inputs to it."""


def check_shapes(blur_shape: tuple[int, ...], spikes_shape: tuple[int, ...]) -> None:
    """Raise BackendError unless blur is (N,3,H,W) with H, W multiples of 4 and spikes (N,21,H/4,W/4).

    Shared by the NumPy inputs of ``run`` and the device tensors of the GPU backends, so that both
    get the same messages.
    """
    blur_shape, spikes_shape = tuple(blur_shape), tuple(spikes_shape)
    if len(blur_shape) != 4 or blur_shape[1] != 3:
        raise BackendError(f"blur: shape {blur_shape} is not (N, 3, H, W)")
    n, _, h, w = blur_shape
    if n == 0 or h == 0 or w == 0 or h % SPIKE_SCALE or w % SPIKE_SCALE:
        raise BackendError(
            f"blur: shape {blur_shape}: need N >= 1 and H, W positive multiples of {SPIKE_SCALE}"
        )
    expected = (n, SPIKE_WINDOW, h // SPIKE_SCALE, w // SPIKE_SCALE)
    if spikes_shape != expected:
        raise BackendError(
            f"spikes: shape {spikes_shape} does not fit blur {blur_shape}; expected {expected} "
            f"({SPIKE_WINDOW} frames at exactly 1/{SPIKE_SCALE} of the blur size per side)"
        )


def check_inputs(blur: np.ndarray, spikes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Validate LDN inputs and return them as C-contiguous float32 arrays.

    blur: (N,3,H,W) floating point, BGR 0..1, H and W multiples of 4; spikes: (N,21,H/4,W/4),
    any real dtype (uint8/bool 0/1 windows are converted). Raises BackendError otherwise.
    """
    blur = np.asarray(blur)
    spikes = np.asarray(spikes)
    if blur.ndim == 4 and blur.shape[1] == 3 and not np.issubdtype(blur.dtype, np.floating):
        # uint8 images would silently be 255x too bright: the network expects 0..1.
        raise BackendError(f"blur: dtype {blur.dtype} is not floating point (expected float32 in 0..1)")
    check_shapes(blur.shape, spikes.shape)
    if not (np.issubdtype(spikes.dtype, np.number) or spikes.dtype == np.bool_):
        raise BackendError(f"spikes: dtype {spikes.dtype} is not numeric")
    return (
        np.ascontiguousarray(blur, dtype=np.float32),
        np.ascontiguousarray(spikes, dtype=np.float32),
    )


class Backend(ABC):
    """One loaded LDN, ready to run; use as a context manager or call ``close()``.

    ``run`` takes blur (N,3,H,W) float32 BGR 0..1 and spikes (N,21,H/4,W/4) float32 0/1 and returns
    the sharp frames (N,3,H,W) float32 BGR (not clamped), in a fresh C-contiguous array.
    """

    name: ClassVar[str]

    def run(self, blur: np.ndarray, spikes: np.ndarray) -> np.ndarray:
        blur, spikes = check_inputs(blur, spikes)
        return self._run(blur, spikes)

    @abstractmethod
    def _run(self, blur: np.ndarray, spikes: np.ndarray) -> np.ndarray:
        """Run on inputs already checked by :func:`check_inputs`."""

    def close(self) -> None:
        """Release the model (sessions, device memory); the backend is unusable afterwards."""
        return None

    def describe(self) -> dict[str, object]:
        """The settings this backend runs with (for logs and benchmark JSON)."""
        return {"name": self.name}

    def __enter__(self) -> Backend:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
