"""The LDN in PyTorch: the reference backend, and on CPU a fast one once laid out channels-last.

Measured on the 2-core development VM at 1000x1600 (``spikereveal bench model``): channels-last
(NHWC) runs about 2x faster than the default NCHW layout, mostly because oneDNN's transposed
convolutions and the full-resolution 1x1 head are slow in NCHW; results differ by < 1e-6.
The head runs without its full-resolution concat (:class:`ConcatFreeLDN`, ~7-10% more).
``precision="bf16"`` (CPU autocast, oneDNN bf16 kernels where the CPU has them) is faster still
but changes outputs by up to ~1e-2, so it is opt-in.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping

import numpy as np
import torch

from spikereveal.engine.backends.base import Backend, BackendError
from spikereveal.engine.backends.malloc import freed_memory_kept, keep_freed_memory
from spikereveal.engine.ldn import LDN, ConcatFreeLDN
from spikereveal.engine.weights import validate_ldn_state

log = logging.getLogger(__name__)

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TorchBackend(Backend):
    """LDN in eval mode under ``torch.inference_mode``.

    Options: device "cpu" (default) or "cuda"; channels_last (default True: faster on CPU and
    with cuDNN); precision "fp32" (default), "bf16" or "fp16" (CUDA only), run under autocast;
    compile: wrap the model in ``torch.compile`` (inductor with weight freezing; needs a C++
    compiler on CPU, costs ~20 s per new input size, measured ~5-10% faster on CPU);
    keep_memory (default True, CPU): let glibc reuse freed activations instead of page-faulting
    them in again every frame (see engine.backends.malloc; process-wide, ~15-35% faster).
    ``threads`` sets torch's intra-op thread count, which is also process-wide.
    """

    name = "torch"

    def __init__(
        self,
        state_dict: Mapping[str, torch.Tensor],
        *,
        threads: int | None = None,
        device: str = "cpu",
        channels_last: bool = True,
        precision: str = "fp32",
        compile: bool = False,
        keep_memory: bool = True,
    ) -> None:
        if device not in ("cpu", "cuda") and not device.startswith("cuda:"):
            raise BackendError(f"torch backend: device {device!r} is not 'cpu' or 'cuda'")
        if device.startswith("cuda") and not torch.cuda.is_available():
            raise BackendError(f"torch backend: device {device!r} asked for, but torch sees no CUDA device")
        if precision not in PRECISIONS:
            raise BackendError(
                f"torch backend: precision {precision!r} is not one of {', '.join(PRECISIONS)}"
            )
        if precision == "fp16" and device == "cpu":
            raise BackendError("torch backend: precision 'fp16' needs device 'cuda' (use 'bf16' on CPU)")
        if precision == "bf16" and device == "cpu" and not torch.backends.mkldnn.is_available():
            raise BackendError("torch backend: precision 'bf16' on CPU needs oneDNN (mkldnn)")
        if threads is not None:
            torch.set_num_threads(threads)
        if keep_memory and device == "cpu":
            keep_freed_memory()
        self.device = torch.device(device)
        self.memory_format = torch.channels_last if channels_last else torch.contiguous_format
        self.precision = precision
        self.compiled = compile
        ldn = LDN()
        ldn.load_state_dict(validate_ldn_state(state_dict, "state_dict"), strict=True)
        model = ConcatFreeLDN(ldn).eval().to(self.device, memory_format=self.memory_format)
        for p in model.parameters():
            p.requires_grad_(False)
        self.model: torch.nn.Module | None = (
            torch.compile(model, options={"freezing": True}) if compile else model
        )

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.precision == "fp32":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])

    def _run(self, blur: np.ndarray, spikes: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise BackendError("torch backend: run() after close()")
        # torch.compile with freezing traces under no_grad; eager runs under inference_mode.
        grad_ctx = torch.no_grad() if self.compiled else torch.inference_mode()
        with grad_ctx:
            b = torch.from_numpy(blur).to(self.device).contiguous(memory_format=self.memory_format)
            s = torch.from_numpy(spikes).to(self.device).contiguous(memory_format=self.memory_format)
            with self._autocast():
                out = self.model(b, s)
            # Back to NCHW float32 on the host for the caller.
            return out.float().contiguous().cpu().numpy()

    def close(self) -> None:
        self.model = None
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "device": str(self.device),
            "channels_last": self.memory_format == torch.channels_last,
            "precision": self.precision,
            "compile": self.compiled,
            "threads": torch.get_num_threads(),
            "freed_memory_kept": freed_memory_kept(),
        }
