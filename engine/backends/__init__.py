"""LDN backends: the same network run by torch, onnxruntime or TensorRT.

``create_backend("auto" | "torch" | "onnxruntime" | "tensorrt", state_dict, threads=..., device=...,
**options)`` returns a :class:`Backend`; each backend module is imported only when asked for, so that
a missing optional runtime only matters to whoever uses it.

``"auto"`` (:func:`resolve_backend`) takes the best one present: TensorRT when it imports and a CUDA
GPU is there, else torch on CUDA (fp16), else torch on the CPU (the fastest CPU backend measured
here, see torch_backend). An explicit name or device never falls back: a backend or device that is
not there is one BackendError line.
"""

from __future__ import annotations

import importlib
import inspect
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from spikereveal.engine.backends.base import Backend, BackendError, check_inputs, usable_cores

if TYPE_CHECKING:  # a type hint only: choosing a backend must not load torch (onnxruntime, TensorRT)
    import torch

# name -> "module:class"; add a line here to add a backend.
BACKENDS: dict[str, str] = {
    "torch": "spikereveal.engine.backends.torch_backend:TorchBackend",
    "onnxruntime": "spikereveal.engine.backends.onnxruntime_backend:OnnxRuntimeBackend",
    "tensorrt": "spikereveal.engine.backends.tensorrt_backend:TensorRTBackend",
}
_ALIASES = {"ort": "onnxruntime", "trt": "tensorrt"}
#: What ``--backend`` accepts: "auto" (the best present) and every registered backend.
BACKEND_CHOICES = ("auto", *BACKENDS)
#: What ``--device`` accepts ("cuda:N" too): "auto" is the GPU where the backend can use one.
DEVICES = ("auto", "cpu", "cuda")
#: Backends that can run on a CUDA GPU, and where each runs by default.
_DEFAULT_DEVICE = {"torch": "cpu", "onnxruntime": "cpu", "tensorrt": "cuda"}

log = logging.getLogger(__name__)

__all__ = [
    "BACKENDS",
    "BACKEND_CHOICES",
    "DEVICES",
    "Backend",
    "BackendChoice",
    "BackendError",
    "backend_class",
    "check_inputs",
    "choose_backend",
    "create_backend",
    "resolve_backend",
    "usable_cores",
]


def backend_class(name: str) -> type[Backend]:
    """The Backend subclass registered as ``name`` (or an alias such as "ort")."""
    key = _ALIASES.get(name, name)
    target = BACKENDS.get(key)
    if target is None:
        raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(sorted(BACKEND_CHOICES))}")
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(f"backend {key!r} is not available here: {exc}") from exc
    return getattr(module, attr)


@dataclass(frozen=True)
class BackendChoice:
    """What runs: backend ``name`` on ``device``, ``reason`` in words, and options it implies."""

    name: str
    device: str
    reason: str
    options: dict[str, object] = field(default_factory=dict)


def _gpu_name(device: str) -> str | None:
    """The CUDA GPU torch sees (its name), or None; torch is loaded only here, when a GPU matters."""
    import torch

    if not torch.cuda.is_available():
        return None
    index = int(device.split(":", 1)[1]) if device.startswith("cuda:") else 0
    if index >= torch.cuda.device_count():
        return None
    return torch.cuda.get_device_name(index)


def _check_device(device: str) -> None:
    if device in DEVICES or (device.startswith("cuda:") and device[5:].isdigit()):
        return
    raise BackendError(f"device {device!r} is not one of: {', '.join(DEVICES)}, cuda:N")


def choose_backend(name: str, device: str = "auto") -> BackendChoice:
    """Resolve ``name`` ("auto" or a backend) and ``device`` ("auto", "cpu", "cuda", "cuda:N").

    "auto": TensorRT if it imports and a GPU is there, else torch on CUDA in fp16, else torch on
    the CPU. An explicit backend keeps its name; ``device="auto"`` then means the GPU for the
    backends that use one when it is there (torch, tensorrt), else the backend's own default.
    An explicit device that is not there, or TensorRT asked for without TensorRT or a GPU, is a
    BackendError (one line): only "auto" falls back.
    """
    key = _ALIASES.get(name, name)
    if key != "auto" and key not in BACKENDS:
        raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(sorted(BACKEND_CHOICES))}")
    _check_device(device)
    if device.startswith("cuda") and _gpu_name(device) is None:
        raise BackendError(
            f"device {device!r} asked for, but torch sees no CUDA device here; use device cpu or auto"
        )
    if key == "auto":
        if device == "cpu":
            return BackendChoice("torch", "cpu", "device cpu asked for: torch, the fastest CPU backend here")
        gpu = _gpu_name("cuda" if device == "auto" else device)
        if gpu is None:
            return BackendChoice(
                "torch", "cpu", "no CUDA GPU here: torch on the CPU, the fastest CPU backend here"
            )
        cuda = "cuda" if device == "auto" else device
        from spikereveal.engine.backends.tensorrt_backend import import_tensorrt

        try:
            trt = import_tensorrt()
        except BackendError:
            return BackendChoice(
                "torch", cuda, f"GPU {gpu} but no TensorRT here: torch on CUDA in fp16", {"precision": "fp16"}
            )
        version = getattr(trt, "__version__", "?")
        return BackendChoice("tensorrt", cuda, f"TensorRT {version} and GPU {gpu} present")
    if key == "tensorrt":
        if device == "cpu":
            raise BackendError("backend 'tensorrt' runs on a CUDA GPU only, not on device 'cpu'")
        from spikereveal.engine.backends.tensorrt_backend import import_tensorrt

        import_tensorrt()  # one line when it is missing
        cuda = "cuda" if device == "auto" else device
        if _gpu_name(cuda) is None:
            raise BackendError("backend 'tensorrt' needs a CUDA GPU, and torch sees none here")
        return BackendChoice(key, cuda, "asked for")
    if device == "auto":
        device = "cuda" if key == "torch" and _gpu_name("cuda") is not None else _DEFAULT_DEVICE[key]
    return BackendChoice(key, device, "asked for")


def resolve_backend(name: str, device: str = "auto") -> tuple[str, str]:
    """The backend that runs for ``name`` (e.g. "auto") on ``device``, and why: see :func:`choose_backend`."""
    choice = choose_backend(name, device)
    return choice.name, choice.reason


def create_backend(
    name: str,
    state_dict: Mapping[str, torch.Tensor],
    *,
    threads: int | None = None,
    device: str | None = None,
    **opts: object,
) -> Backend:
    """Load ``state_dict`` (LDN weights, see engine.weights) into the backend called ``name``.

    name: a backend, or "auto" (the best present, see :func:`choose_backend`; logged in one INFO
    line with the reason). device: "auto", "cpu", "cuda" or "cuda:N" (None: "auto" for the auto
    backend, else the backend's own default). threads: CPU threads for the network (default: the
    runtime's own choice for torch, all usable cores for onnxruntime). ``opts`` are the backend's
    own options (e.g. ``channels_last=False`` for torch); an unknown one is a BackendError listing
    the valid ones.

    Examples:
        An untrained LDN (random weights) on one 16x16 image: blur (N, 3, H, W) float32 BGR 0..1,
        spikes (N, 21, H/4, W/4) 0/1, sharp (N, 3, H, W).

        >>> import numpy as np
        >>> import torch
        >>> from spikereveal.engine.ldn import LDN
        >>> _ = torch.manual_seed(0)
        >>> with create_backend("torch", LDN().state_dict(), threads=1) as backend:
        ...     sharp = backend.run(np.full((1, 3, 16, 16), 0.5, np.float32), np.zeros((1, 21, 4, 4), np.uint8))
        >>> sharp.shape, sharp.dtype
        ((1, 3, 16, 16), dtype('float32'))
        >>> create_backend("tensorflow", {})
        Traceback (most recent call last):
        ...
        spikereveal.engine.backends.base.BackendError: unknown backend 'tensorflow'; choose one of: auto, onnxruntime, tensorrt, torch
    """
    if device is not None or _ALIASES.get(name, name) == "auto":
        choice = choose_backend(name, device or "auto")
        if _ALIASES.get(name, name) == "auto":
            log.info("backend auto: %s on %s (%s)", choice.name, choice.device, choice.reason)
        name = choice.name
        opts = {**choice.options, **opts, "device": choice.device}
    cls = backend_class(name)
    if threads is not None and threads < 1:
        raise BackendError(f"threads must be >= 1, got {threads}")
    params = inspect.signature(cls.__init__).parameters
    valid = [p for p in params if p not in ("self", "state_dict", "threads")]
    unknown = [k for k in opts if k not in valid]
    if unknown:
        raise BackendError(
            f"backend {cls.name!r} has no option {', '.join(map(repr, unknown))}; "
            f"its options are: {', '.join(valid) or 'none'}"
        )
    return cls(state_dict, threads=threads, **opts)
