"""The LDN in PyTorch: the reference backend, and on CPU the fastest one measured here.

Measured on the 2-core development VM (``spikereveal bench model``, each in a fresh process; plain
eager NCHW fp32 LDN = 0.89-0.91 s per 1000x1600 frame, 0.47 s at 720x1280):

- channels-last (NHWC): oneDNN's transposed convolutions and the full-resolution 1x1 head are
  slow in NCHW; the largest single gain;
- the head without its full-resolution concat (:class:`ConcatFreeLDN`): ~7-10%;
- glibc keeping freed memory (engine.backends.malloc): no page faults on every frame;

together 0.34-0.39 s at 1000x1600 and 0.21 s at 720x1280 (2.3-2.5x), outputs within 2e-7.
``precision="bf16"`` (oneDNN bf16 kernels under autocast) reaches 0.19-0.21 s / 0.12 s (3.9-4.4x)
on a CPU with bf16 units but changes outputs by up to ~1e-2 (<= 0.01 dB on the synthetic check),
so it is opt-in; on a CPU without them (an AMD EPYC with AVX2 only) it ran at 0.09x, so there it is
refused (:func:`cpu_bf16_fast`) unless ``force_precision`` says the caller knows.

On CUDA the network runs in the precision itself (weights cast, no autocast, as the fp16 ONNX for
TensorRT does), channels-last under cuDNN, and each input shape is captured once as a CUDA graph
after a warm-up (one replay per bundle instead of ~100 kernel launches from Python); a capture that
fails is logged and that shape runs eagerly. ``run_device`` takes and returns CUDA tensors, and
``input_buffers`` hands out the graph's own input tensors, so that the spike kernels write the K
windows straight into them: no host round trip and no extra copy. fp32 on CUDA is true fp32 (TF32
off), so that it can serve as a reference for fp16.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import torch

from spikereveal.engine.backends.base import SPIKE_SCALE, SPIKE_WINDOW, Backend, BackendError, check_shapes
from spikereveal.engine.backends.malloc import freed_memory_kept, keep_freed_memory
from spikereveal.engine.ldn import LDN, ConcatFreeLDN
from spikereveal.engine.weights import validate_ldn_state

PRECISIONS = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}
#: Eager runs before a capture: cuDNN's benchmark mode picks its algorithms there, and the caching
#: allocator settles, so that the capture records the steady state.
GRAPH_WARMUP_RUNS = 3

log = logging.getLogger(__name__)


def cpu_bf16_fast() -> bool:
    """Whether this CPU has bf16 arithmetic (AVX512-BF16 or AMX tiles): only then does bf16 beat fp32.

    Without them oneDNN emulates bf16 through fp32 conversions, ~10x slower than plain fp32.
    """
    for probe in ("_is_avx512_bf16_supported", "_is_amx_tile_supported"):
        check = getattr(torch.cpu, probe, None)
        if check is not None and check():
            return True
    return False


@dataclass
class _Static:
    """One input shape on CUDA: its input tensors and, when captured, the graph and its output."""

    blur: torch.Tensor
    spikes: torch.Tensor
    graph: torch.cuda.CUDAGraph | None = None
    out: torch.Tensor | None = None


class TorchBackend(Backend):
    """LDN in eval mode under ``torch.inference_mode``.

    Options: device "cpu" (default) or "cuda"; channels_last (default True: faster on CPU and
    with cuDNN); precision "fp32" (default), "bf16" or "fp16" (CUDA only): on CPU bf16 runs
    under autocast, on CUDA the weights and inputs are cast (see the module docstring);
    compile: wrap the model in ``torch.compile`` (inductor with weight freezing; needs a C++
    compiler on CPU, costs ~14-20 s per new input size, measured ~5% faster on CPU);
    force_precision (default False): run bf16 on a CPU without bf16 units anyway (accuracy
    checks; it is ~10x slower there, so it is refused otherwise);
    keep_memory (default True, CPU): let glibc reuse freed activations instead of page-faulting
    them in again every frame (see engine.backends.malloc; process-wide).
    ``threads`` sets torch's intra-op thread count, which is also process-wide.
    cuda_graphs (default True, CUDA only): capture each input shape as a CUDA graph after a
    warm-up; ignored on CPU and with compile (inductor owns the graph then).
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
        cuda_graphs: bool = True,
        force_precision: bool = False,
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
        if precision == "bf16" and device == "cpu" and not force_precision and not cpu_bf16_fast():
            raise BackendError(
                "torch backend: precision 'bf16' on this CPU (no AVX512-BF16 or AMX units) runs ~10x slower "
                "than fp32; use 'fp32'"
            )
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
        # On CUDA the network runs in its precision itself (fp16 halves the memory traffic and
        # keeps tensor cores busy); on CPU bf16 stays under autocast as measured above.
        self.dtype = PRECISIONS[precision] if self.device.type == "cuda" else torch.float32
        if self.dtype != torch.float32:
            model = model.to(dtype=self.dtype)
        self.model: torch.nn.Module | None = (
            torch.compile(model, options={"freezing": True}) if compile else model
        )
        self.cuda_graphs = cuda_graphs and self.device.type == "cuda" and not compile
        self._static: dict[tuple[int, int, int], _Static] = {}

    def _autocast(self) -> contextlib.AbstractContextManager[object]:
        if self.precision == "fp32" or self.device.type == "cuda":
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=PRECISIONS[self.precision])

    def _run(self, blur: np.ndarray, spikes: np.ndarray) -> np.ndarray:
        if self.model is None:
            raise BackendError("torch backend: run() after close()")
        if self.device.type == "cuda":
            b = torch.from_numpy(blur).to(self.device)
            s = torch.from_numpy(spikes).to(self.device)
            return self.run_device(b, s).cpu().numpy()
        # torch.compile with freezing traces under no_grad; eager runs under inference_mode.
        grad_ctx = torch.no_grad() if self.compiled else torch.inference_mode()
        with grad_ctx:
            b = torch.from_numpy(blur).to(self.device).contiguous(memory_format=self.memory_format)
            s = torch.from_numpy(spikes).to(self.device).contiguous(memory_format=self.memory_format)
            with self._autocast():
                out = self.model(b, s)
            # Back to NCHW float32 on the host for the caller.
            return out.float().contiguous().cpu().numpy()

    def _cudnn(self) -> contextlib.AbstractContextManager[object]:
        # benchmark: shapes are fixed, so cuDNN may time its algorithms once per shape;
        # TF32 off: "fp32" means fp32 (TF32 differs from it by ~1e-3).
        return torch.backends.cudnn.flags(enabled=True, benchmark=True, deterministic=False, allow_tf32=False)

    def _forward(self, blur: torch.Tensor, spikes: torch.Tensor) -> torch.Tensor:
        """The network on NCHW CUDA tensors of ``self.dtype``: (N,3,H,W) float32 NCHW out."""
        assert self.model is not None
        b = blur.contiguous(memory_format=self.memory_format)
        s = spikes.contiguous(memory_format=self.memory_format)
        return self.model(b, s).float().contiguous()

    def _check_device_inputs(
        self, blur: torch.Tensor, spikes: torch.Tensor, out: torch.Tensor | None = None
    ) -> None:
        if self.model is None:
            raise BackendError("torch backend: run_device() after close()")
        if self.device.type != "cuda":
            raise BackendError("torch backend: run_device() needs device 'cuda' (use run() on CPU)")
        for name, t in (("blur", blur), ("spikes", spikes)):
            if not isinstance(t, torch.Tensor):
                raise BackendError(f"{name}: {type(t).__name__} is not a torch tensor")
            if t.device.type != "cuda" or (self.device.index is not None and t.device != self.device):
                raise BackendError(f"{name}: tensor on {t.device}, expected {self.device}")
            if not t.dtype.is_floating_point:
                raise BackendError(
                    f"{name}: dtype {t.dtype} is not floating point (expected float16/float32)"
                )
        check_shapes(tuple(blur.shape), tuple(spikes.shape))
        if out is not None and (
            not isinstance(out, torch.Tensor)
            or out.shape != blur.shape
            or out.dtype != torch.float32
            or out.device != blur.device
        ):
            got = (
                f"{tuple(out.shape)} {out.dtype} on {out.device}"
                if isinstance(out, torch.Tensor)
                else type(out).__name__
            )
            raise BackendError(f"out: {got} is not a float32 {tuple(blur.shape)} tensor on {blur.device}")

    def _prepare(self, n: int, h: int, w: int) -> _Static:
        """The input tensors of shape (n, h, w), captured as a CUDA graph on first use when enabled."""
        key = (n, h, w)
        static = self._static.get(key)
        if static is not None:
            return static
        shape_s = (n, SPIKE_WINDOW, h // SPIKE_SCALE, w // SPIKE_SCALE)
        # Zeros, not empty(): the warm-up and the capture run on these values.
        static = _Static(
            torch.zeros((n, 3, h, w), dtype=self.dtype, device=self.device),
            torch.zeros(shape_s, dtype=self.dtype, device=self.device),
        )
        self._static[key] = static
        if not self.cuda_graphs:
            return static
        try:
            current = torch.cuda.current_stream(self.device)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(current)
            with torch.cuda.stream(side), self._cudnn():
                for _ in range(GRAPH_WARMUP_RUNS):
                    self._forward(static.blur, static.spikes)
            current.wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with self._cudnn(), torch.cuda.graph(graph):
                out = self._forward(static.blur, static.spikes)
        except Exception as exc:  # a capture can fail for reasons outside our code (driver, cuDNN, memory)
            log.warning(
                "torch backend: CUDA graph capture for N=%d %dx%d failed (%s); running eagerly", n, h, w, exc
            )
            return static
        static.graph, static.out = graph, out
        log.info("torch backend: captured a CUDA graph for N=%d %dx%d (%s)", n, h, w, self.precision)
        return static

    def input_buffers(self, n: int, h: int, w: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The backend's own input tensors for ``n`` frames of ``h`` x ``w``: blur (n,3,h,w) and
        spikes (n,21,h/4,w/4), NCHW contiguous, of the backend's dtype (float16 for "fp16").

        Write the inputs into these (the spike kernels write the K windows straight into
        ``spikes``) and pass them to :meth:`run_device`, which then copies nothing in.
        """
        if self.device.type != "cuda":
            raise BackendError("torch backend: input_buffers() needs device 'cuda'")
        check_shapes((n, 3, h, w), (n, SPIKE_WINDOW, h // SPIKE_SCALE, w // SPIKE_SCALE))
        static = self._prepare(n, h, w)
        return static.blur, static.spikes

    def run_device(
        self, blur: torch.Tensor, spikes: torch.Tensor, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """The sharp frames (N,3,H,W) float32 NCHW on the GPU, from CUDA tensors of the same shapes as
        :meth:`run` takes (float16 or float32); queued on torch's current stream, nothing synchronised.

        ``out``: a float32 (N,3,H,W) CUDA tensor to write into; otherwise a fresh tensor is returned.
        """
        self._check_device_inputs(blur, spikes, out)
        n, _, h, w = blur.shape
        with torch.no_grad():
            static = self._prepare(n, h, w)
            for src, dst in ((blur, static.blur), (spikes, static.spikes)):
                if src.data_ptr() != dst.data_ptr():
                    dst.copy_(src)
            if static.graph is not None:
                assert static.out is not None
                static.graph.replay()
                result = static.out
                # The graph overwrites its output on the next replay: hand out a copy.
                return out.copy_(result) if out is not None else result.clone()
            with self._cudnn():
                result = self._forward(static.blur, static.spikes)
            return out.copy_(result) if out is not None else result

    def close(self) -> None:
        self.model = None
        self._static.clear()
        if self.device.type == "cuda":
            torch.cuda.empty_cache()

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "device": str(self.device),
            "channels_last": self.memory_format == torch.channels_last,
            "precision": self.precision,
            "compile": self.compiled,
            "cuda_graphs": self.cuda_graphs,
            "threads": torch.get_num_threads(),
            "freed_memory_kept": freed_memory_kept(),
        }
