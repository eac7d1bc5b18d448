"""The LDN in onnxruntime, from the project's own ONNX export of the same weights.

The export is cached on disk keyed by the weights' hash (see engine.onnx_export), so a second
start with the same weights skips it. Sessions use every graph optimisation (on CPU this includes
the NCHWc layout transform and conv+activation fusion), one inter-op thread and ``threads``
intra-op threads (default: all usable cores).

Measured on the 2-core VM (``spikereveal bench model``): 0.50-0.60 s per 1000x1600 frame and
0.26-0.30 s at 720x1280, ~1.6x the plain torch eager baseline but behind the channels-last torch
backend; outputs within 2e-7 of torch. Its profile puts the two transposed convolutions first.
Tried without a measurable gain: rewriting them as sub-pixel convolutions (conv3x3 + DepthToSpace),
exporting without the head's concat, one intra-op thread, and no spinning.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from pathlib import Path

import numpy as np
import torch

from spikereveal.engine.backends.base import Backend, BackendError, usable_cores
from spikereveal.engine.onnx_export import OUTPUT_NAME, cached_ldn_onnx

log = logging.getLogger(__name__)

_PROVIDERS = {"cpu": "CPUExecutionProvider", "cuda": "CUDAExecutionProvider"}


class OnnxRuntimeBackend(Backend):
    """onnxruntime InferenceSession over the exported LDN.

    Options: device "cpu" (default) or "cuda" (CUDAExecutionProvider, must be present);
    cache_dir for the exported model (default: engine.onnx_export.default_cache_dir());
    spin: let idle intra-op threads spin (ORT default True; False frees the CPU between
    frames at some latency cost).
    """

    name = "onnxruntime"

    def __init__(
        self,
        state_dict: Mapping[str, torch.Tensor],
        *,
        threads: int | None = None,
        device: str = "cpu",
        cache_dir: str | os.PathLike[str] | None = None,
        spin: bool = True,
    ) -> None:
        import onnxruntime as ort

        if device not in _PROVIDERS:
            raise BackendError(
                f"onnxruntime backend: device {device!r} is not one of {', '.join(_PROVIDERS)}"
            )
        available = ort.get_available_providers()
        provider = _PROVIDERS[device]
        if provider not in available:
            raise BackendError(
                f"onnxruntime backend: {provider} is not available here (have: {', '.join(available)})"
            )
        self.device = device
        self.threads = threads if threads is not None else usable_cores()
        self.model_path: Path = cached_ldn_onnx(state_dict, cache_dir=cache_dir)
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        options.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
        providers = [provider] if provider == "CPUExecutionProvider" else [provider, "CPUExecutionProvider"]
        self.session: object | None = ort.InferenceSession(str(self.model_path), options, providers=providers)
        log.info("onnxruntime session on %s from %s (%d threads)", provider, self.model_path, self.threads)

    def _run(self, blur: np.ndarray, spikes: np.ndarray) -> np.ndarray:
        if self.session is None:
            raise BackendError("onnxruntime backend: run() after close()")
        (sharp,) = self.session.run([OUTPUT_NAME], {"blur": blur, "spikes": spikes})
        return np.ascontiguousarray(sharp, dtype=np.float32)

    def close(self) -> None:
        self.session = None

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "device": self.device,
            "threads": self.threads,
            "model": str(self.model_path),
        }
