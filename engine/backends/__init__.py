"""LDN backends: the same network run by torch or onnxruntime (TensorRT on GPU machines).

``create_backend("torch" | "onnxruntime", state_dict, threads=..., **options)`` returns a
:class:`Backend`; each backend module is imported only when asked for, so that a missing optional
runtime only matters to whoever uses it.
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Mapping
from typing import TYPE_CHECKING

from spikereveal.engine.backends.base import Backend, BackendError, check_inputs, usable_cores

if TYPE_CHECKING:  # a type hint only: choosing a backend must not load torch (onnxruntime, TensorRT)
    import torch

# name -> "module:class"; add a line here to add a backend.
BACKENDS: dict[str, str] = {
    "torch": "spikereveal.engine.backends.torch_backend:TorchBackend",
    "onnxruntime": "spikereveal.engine.backends.onnxruntime_backend:OnnxRuntimeBackend",
}
_ALIASES = {"ort": "onnxruntime"}

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "backend_class",
    "check_inputs",
    "create_backend",
    "usable_cores",
]


def backend_class(name: str) -> type[Backend]:
    """The Backend subclass registered as ``name`` (or an alias such as "ort")."""
    key = _ALIASES.get(name, name)
    target = BACKENDS.get(key)
    if target is None:
        raise BackendError(f"unknown backend {name!r}; choose one of: {', '.join(sorted(BACKENDS))}")
    module_name, attr = target.split(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendError(f"backend {key!r} is not available here: {exc}") from exc
    return getattr(module, attr)


def create_backend(
    name: str, state_dict: Mapping[str, torch.Tensor], *, threads: int | None = None, **opts: object
) -> Backend:
    """Load ``state_dict`` (LDN weights, see engine.weights) into the backend called ``name``.

    threads: CPU threads for the network (default: the runtime's own choice for torch, all usable
    cores for onnxruntime). ``opts`` are the backend's own options (e.g. ``device="cuda"``,
    ``channels_last=False`` for torch); an unknown one is a BackendError listing the valid ones.

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
        spikereveal.engine.backends.base.BackendError: unknown backend 'tensorflow'; choose one of: onnxruntime, torch
    """
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
