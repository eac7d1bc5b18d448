"""The LDN in PyTorch: the reference backend, and on CPU the fastest one measured here.

Measured on the 2-core development VM (``spikereveal bench model``, each in a fresh process; plain
eager NCHW fp32 LDN = 0.89-0.91 s per 1000x1600 frame, 0.47 s at 720x1280):

- channels-last (NHWC): oneDNN's transposed convolutions and the full-resolution 1x1 head are
  slow in NCHW; the largest single gain;
- the head without its full-resolution concat (:class:`ConcatFreeLDN`): ~7-10%;
- glibc keeping freed memory (engine.backends.malloc): no page faults on every frame;

together 0.34-0.39 s at 1000x1600 and 0.21 s at 720x1280 (2.3-2.5x), outputs within 2e-7.
``precision="bf16"`` (oneDNN bf16 kernels under autocast) reaches 0.19-0.21 s / 0.12 s (3.9-4.4x)
but changes outputs by up to ~1e-2 (<= 0.01 dB on the synthetic check), so it is opt-in.
"""

from __future__ import annotations

import contextlib
from collections.abc import Mapping

import numpy as np
import torch

from spikereveal.engine.backends.base import Backend, BackendError
from spikereveal.engine.backends.malloc import freed_memory_kept, keep_freed_memory
from spikereveal.engine.ldn import LDN, ConcatFreeLDN
from spikereveal.engine.weights import validate_ldn_state

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


class TorchBackend(Backend):
    """LDN in eval mode under ``torch.inference_mode``.

    Options: device "cpu" (default) or "cuda"; channels_last (default True: faster on CPU and
    with cuDNN); precision "fp32" (default), "bf16" or "fp16" (CUDA only), run under autocast;
    compile: wrap the model in ``torch.compile`` (inductor with weight freezing; needs a C++
    compiler on CPU, costs ~14-20 s per new input size, measured ~5% faster on CPU);
    keep_memory (default True, CPU): let glibc reuse freed activations instead of page-faulting
    them in again every frame (see engine.backends.malloc; process-wide).
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
