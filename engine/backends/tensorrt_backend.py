"""The LDN in TensorRT, built from the project's fp16 ONNX export of the same weights.

TensorRT is optional (it installs only from NVIDIA's own package index) and imported only here, only
when this backend is made; without it, asking for the backend is one line saying so. Only the Python
API that TensorRT 10 and 11 both bind is used (CI checks every ``tensorrt`` attribute of this file
against ``../shared/reference/tensorrt/names_both.txt``), which decides the shape of the code:

- the network is **strongly typed** (``NetworkDefinitionCreationFlag.STRONGLY_TYPED``: required on
  10, always on in 11), so fp16 comes from the ONNX model's own types (engine.onnx_export with
  ``precision="fp16"``: inputs, weights and output in half), never from ``BuilderFlag.FP16`` (gone
  in 11);
- the engine is built for one fixed shape (K, H, W): one optimization profile with min = opt = max,
  a WORKSPACE memory-pool limit, and a timing cache kept on disk so that a rebuild (another K or
  size, a new weights file) reuses the tactic timings of earlier builds;
- it runs with ``set_input_shape`` / ``set_tensor_address`` / ``execute_async_v3`` on the backend's
  own torch CUDA stream, over device buffers allocated once; the enqueue is captured in a CUDA graph
  and replayed (one launch per frame instead of one per layer), falling back to plain enqueues where
  capture fails.

Engines are cached on disk under ``<cache>/tensorrt``, named and stamped by what they depend on: the
weights' hash, the shape, the precision, the TensorRT version and the GPU (an engine runs only on the
TensorRT version and GPU model that built it). Each file starts with a one-line JSON header holding
that key; a cached file whose header does not match (stale, foreign, truncated) is reported in one
line and rebuilt, and an engine file given explicitly (``engine=``) that does not match is refused
with one line naming the field that differs.
"""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import re
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from spikereveal.engine.backends.base import Backend, BackendError
from spikereveal.engine.cache import cache_dir
from spikereveal.engine.onnx_export import EXPORT_VERSION, INPUT_NAMES, OUTPUT_NAME, export_ldn_onnx
from spikereveal.engine.weights import state_digest, validate_ldn_state
from spikereveal.engine.windows import LDN_SCALE, LDN_WINDOW

log = logging.getLogger(__name__)

#: What a missing TensorRT says (the package index's tensorrt wheels download from NVIDIA's index).
INSTALL_HINT = (
    "TensorRT is not installed here: install it from NVIDIA's package index "
    "(pip install tensorrt --extra-index-url https://pypi.nvidia.com), or use the torch or auto backend"
)
#: First bytes of an engine file written by this module; the JSON key follows on the same line.
MAGIC = b"spikereveal-trt-engine "
#: Workspace (scratch memory for tactics) the builder may use; the LDN needs far less at 1000x1600.
DEFAULT_WORKSPACE_MB = 1024


class EngineCacheError(BackendError):
    """An engine file that is not one of ours, or was built for other weights, shapes, TensorRT or GPU."""


def import_tensorrt() -> Any:
    """The ``tensorrt`` module, or BackendError with :data:`INSTALL_HINT` (one line) if it cannot load."""
    try:
        return importlib.import_module("tensorrt")
    except Exception as exc:  # a stub wheel raises at import, not only ImportError
        raise BackendError(f"tensorrt backend: {INSTALL_HINT} ({type(exc).__name__}: {exc})") from None


def tensorrt_available() -> bool:
    """Whether ``import tensorrt`` works here (without raising)."""
    try:
        import_tensorrt()
    except BackendError:
        return False
    return True


@dataclass(frozen=True)
class EngineKey:
    """What a serialized engine depends on; it runs only where every field is the same."""

    weights_sha256: str
    batch: int
    height: int
    width: int
    precision: str
    tensorrt_version: str
    gpu_name: str
    export_version: str = EXPORT_VERSION

    @property
    def shape(self) -> tuple[int, int, int]:
        return (self.batch, self.height, self.width)

    def file_name(self) -> str:
        """``ldn-<digest16>-k5-720x1280-fp16-trt10.16.1-nvidia-h200-v1.engine``: the key, readable."""
        gpu = re.sub(r"[^a-z0-9]+", "-", self.gpu_name.lower()).strip("-") or "gpu"
        return (
            f"ldn-{self.weights_sha256[:16]}-k{self.batch}-{self.height}x{self.width}-{self.precision}"
            f"-trt{self.tensorrt_version}-{gpu}-v{self.export_version}.engine"
        )

    def mismatch(self, other: EngineKey) -> str | None:
        """The first field in which ``other`` (a file's key) differs from this one, said in words."""
        for name, here in asdict(self).items():
            there = getattr(other, name)
            if here != there:
                return f"built for {name.replace('_', ' ')} {there}, not {here}"
        return None


def write_engine_file(path: str | os.PathLike[str], key: EngineKey, payload: bytes | memoryview) -> Path:
    """Write ``MAGIC + json(key) + newline + payload`` beside ``path`` and rename it into place."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + json.dumps(asdict(key), sort_keys=True).encode() + b"\n")
            f.write(payload)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def read_engine_file(
    path: str | os.PathLike[str], expected: EngineKey | None = None
) -> tuple[EngineKey, bytes]:
    """The key and serialized engine of an engine file; EngineCacheError (one line) if it does not fit.

    ``expected``: the key this process needs; a file built for anything else is refused, naming
    the first field that differs.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise EngineCacheError(f"{path}: cannot read the engine file ({exc.strerror or exc})") from None
    if not data.startswith(MAGIC) or b"\n" not in data[:4096]:
        raise EngineCacheError(
            f"{path}: not an engine file written by spikereveal (no '{MAGIC.decode().strip()}' header); "
            "build one with `spikereveal export tensorrt`"
        )
    header, payload = data[len(MAGIC) :].split(b"\n", 1)
    try:
        fields = json.loads(header)
        key = EngineKey(**fields)
    except (ValueError, TypeError) as exc:
        raise EngineCacheError(f"{path}: unreadable engine header ({exc})") from None
    if not payload:
        raise EngineCacheError(f"{path}: the engine file holds a header but no engine (truncated)")
    if expected is not None:
        why = expected.mismatch(key)
        if why is not None:
            raise EngineCacheError(
                f"{path}: {why}; rebuild it with `spikereveal export tensorrt` or delete it"
            )
    return key, payload


def default_cache_dir() -> Path:
    """Where engines and the timing cache are kept: ``$SPIKEREVEAL_CACHE_DIR/tensorrt`` or ~/.cache."""
    return cache_dir("tensorrt")


def _check_shape(batch: int, height: int, width: int) -> None:
    if batch < 1 or height <= 0 or width <= 0 or height % LDN_SCALE or width % LDN_SCALE:
        raise BackendError(
            f"tensorrt backend: shape K={batch}, {height}x{width}: need K >= 1 and H, W positive "
            f"multiples of {LDN_SCALE}"
        )


def _profile_shapes(batch: int, height: int, width: int) -> dict[str, tuple[int, int, int, int]]:
    return {
        INPUT_NAMES[0]: (batch, 3, height, width),
        INPUT_NAMES[1]: (batch, LDN_WINDOW, height // LDN_SCALE, width // LDN_SCALE),
    }


def build_engine(
    onnx_path: str | os.PathLike[str],
    shape: tuple[int, int, int],
    *,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    timing_cache: str | os.PathLike[str] | None = None,
) -> bytes:
    """Build a serialized engine from an (fp16) ONNX model for one fixed shape (K, H, W).

    ``timing_cache``: a file read before the build (if there) and written after it, so later
    builds skip the tactic timings already measured. Raises BackendError (one line) when
    TensorRT is missing, the ONNX does not parse or the build fails.
    """
    trt = import_tensorrt()
    batch, height, width = shape
    _check_shape(batch, height, width)
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    # Strongly typed: precisions come from the ONNX tensors' own types (fp16 export), on 10 and 11.
    network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.STRONGLY_TYPED))
    parser = trt.OnnxParser(network, logger)
    if not parser.parse_from_file(str(onnx_path)):
        errors = "; ".join(str(parser.get_error(i).desc()) for i in range(parser.num_errors))
        raise BackendError(f"{onnx_path}: TensorRT cannot parse the ONNX model: {errors or 'no detail'}")
    config = builder.create_builder_config()
    config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    cache_path = Path(timing_cache) if timing_cache is not None else None
    cached = cache_path.read_bytes() if cache_path is not None and cache_path.is_file() else b""
    cache = config.create_timing_cache(cached)
    if not config.set_timing_cache(cache, True):  # ignore a mismatched (other GPU/version) cache
        log.info("tensorrt: timing cache %s does not fit this GPU or TensorRT; starting afresh", cache_path)
        config.set_timing_cache(config.create_timing_cache(b""), True)
    profile = builder.create_optimization_profile()
    for name, dims in _profile_shapes(batch, height, width).items():
        profile.set_shape(name, dims, dims, dims)  # one fixed shape: min = opt = max
    config.add_optimization_profile(profile)
    serialized = builder.build_serialized_network(network, config)
    if serialized is None:
        raise BackendError(f"{onnx_path}: TensorRT could not build an engine for K={batch}, {height}x{width}")
    if cache_path is not None:
        cache_path.parent.mkdir(parents=True, exist_ok=True)
        cache_path.write_bytes(bytes(memoryview(config.get_timing_cache().serialize())))
    return bytes(memoryview(serialized))


def engine_key(
    state_dict: Mapping[str, torch.Tensor], shape: tuple[int, int, int], device: str = "cuda"
) -> EngineKey:
    """The key an engine of these weights at ``shape`` (K, H, W) has on this TensorRT and GPU."""
    trt = import_tensorrt()
    if not torch.cuda.is_available():
        raise BackendError("tensorrt backend: needs a CUDA GPU, and torch sees none")
    batch, height, width = shape
    return EngineKey(
        weights_sha256=state_digest(validate_ldn_state(state_dict, "state_dict")),
        batch=batch,
        height=height,
        width=width,
        precision="fp16",
        tensorrt_version=str(trt.__version__),
        gpu_name=torch.cuda.get_device_name(torch.device(device)),
    )


def cached_engine(
    state_dict: Mapping[str, torch.Tensor],
    shape: tuple[int, int, int],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    workspace_mb: int = DEFAULT_WORKSPACE_MB,
    device: str = "cuda",
    out: str | os.PathLike[str] | None = None,
) -> tuple[Path, bytes]:
    """The engine of these weights at ``shape`` (K, H, W): read from the cache, else built and stored.

    A cached file that does not fit (stale header, truncated, foreign) is reported in one line and
    rebuilt. ``out``: write the engine there instead of the cache (``export tensorrt --out``).
    Returns the file and its serialized engine.
    """
    batch, height, width = shape
    _check_shape(batch, height, width)
    key = engine_key(state_dict, shape, device)
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    path = Path(out) if out is not None else folder / key.file_name()
    if path.is_file() and out is None:
        try:
            return path, read_engine_file(path, key)[1]
        except EngineCacheError as exc:
            log.warning("%s; rebuilding it", exc)
    onnx_path = (
        folder / f"ldn-{key.weights_sha256[:16]}-k{batch}-{height}x{width}-fp16-v{EXPORT_VERSION}.onnx"
    )
    if not onnx_path.is_file():
        folder.mkdir(parents=True, exist_ok=True)
        export_ldn_onnx(
            state_dict, onnx_path, height=height, width=width, batch=batch, dynamic=False, precision="fp16"
        )
    log.info(
        "tensorrt: building an engine for K=%d, %dx%d on %s (once; kept in %s)", *shape, key.gpu_name, path
    )
    payload = build_engine(onnx_path, shape, workspace_mb=workspace_mb, timing_cache=folder / "timing.cache")
    write_engine_file(path, key, payload)
    return path, payload


class _EngineRunner:
    """One deserialized engine with its context, device buffers, stream and (if it captured) CUDA graph."""

    def __init__(
        self, payload: bytes, shape: tuple[int, int, int], device: torch.device, cuda_graph: bool
    ) -> None:
        trt = import_tensorrt()
        self.trt, self.shape, self.device = trt, shape, device
        self.logger = trt.Logger(trt.Logger.WARNING)
        self.runtime = trt.Runtime(self.logger)
        self.engine = self.runtime.deserialize_cuda_engine(payload)
        if self.engine is None:
            raise EngineCacheError("tensorrt backend: the engine does not deserialize on this TensorRT/GPU")
        self.context = self.engine.create_execution_context()
        self.stream = torch.cuda.Stream(device=device)
        shapes = {**_profile_shapes(*shape), OUTPUT_NAME: (shape[0], 3, shape[1], shape[2])}
        self.buffers: dict[str, torch.Tensor] = {}
        torch_dtypes = {trt.DataType.HALF: torch.float16, trt.DataType.FLOAT: torch.float32}
        for i in range(self.engine.num_io_tensors):
            name = self.engine.get_tensor_name(i)
            if name not in shapes:
                raise EngineCacheError(f"tensorrt backend: the engine has tensor {name!r}, not the LDN's")
            dtype = self.engine.get_tensor_dtype(name)
            torch_dtype = torch_dtypes.get(dtype)
            if torch_dtype is None:
                raise EngineCacheError(
                    f"tensorrt backend: tensor {name!r} has type {dtype}, not fp16 or fp32"
                )
            if self.engine.get_tensor_mode(name) == trt.TensorIOMode.INPUT:
                self.context.set_input_shape(name, shapes[name])
            self.buffers[name] = torch.empty(shapes[name], dtype=torch_dtype, device=device)
            self.context.set_tensor_address(name, self.buffers[name].data_ptr())
        self.graph: torch.cuda.CUDAGraph | None = None
        self._enqueue()  # the first enqueue does lazy setup that must not be captured
        self.stream.synchronize()
        if cuda_graph:
            self.graph = self._capture()

    def _enqueue(self) -> None:
        if not self.context.execute_async_v3(self.stream.cuda_stream):
            raise BackendError("tensorrt backend: execute_async_v3 failed (see TensorRT's log above)")

    def _capture(self) -> torch.cuda.CUDAGraph | None:
        graph = torch.cuda.CUDAGraph()
        try:
            with torch.cuda.graph(graph, stream=self.stream):
                self._enqueue()
        except Exception as exc:  # capture is an optimization: plain enqueues still work
            log.info("tensorrt: CUDA graph capture failed (%s); running without it", exc)
            return None
        return graph

    def execute(self) -> None:
        """Run the engine on what the input buffers hold (on :attr:`stream`; not synchronized)."""
        with torch.cuda.stream(self.stream):
            if self.graph is not None:
                self.graph.replay()
            else:
                self._enqueue()

    def run(self, blur: np.ndarray, spikes: np.ndarray) -> np.ndarray:
        with torch.cuda.stream(self.stream):
            self.buffers[INPUT_NAMES[0]].copy_(torch.from_numpy(blur), non_blocking=False)
            self.buffers[INPUT_NAMES[1]].copy_(torch.from_numpy(spikes), non_blocking=False)
        self.execute()
        with torch.cuda.stream(self.stream):
            out = self.buffers[OUTPUT_NAME].float().cpu().numpy()
        return np.ascontiguousarray(out)


class TensorRTBackend(Backend):
    """The LDN as a TensorRT fp16 engine, built (and cached) for each (K, H, W) it is run at.

    Options: device "cuda" (default) or "cuda:N"; cache_dir for engines, fp16 exports and the
    timing cache (default: :func:`default_cache_dir`); workspace_mb (builder workspace limit);
    cuda_graph (default True: replay a captured enqueue, falling back where capture fails);
    engine: a prebuilt engine file (``spikereveal export tensorrt --out``) used for its shape,
    refused in one line if it was built for other weights, TensorRT or GPU.
    ``threads`` is accepted for the common interface and unused (the work runs on the GPU).
    """

    name = "tensorrt"

    def __init__(
        self,
        state_dict: Mapping[str, torch.Tensor],
        *,
        threads: int | None = None,
        device: str = "cuda",
        cache_dir: str | os.PathLike[str] | None = None,
        workspace_mb: int = DEFAULT_WORKSPACE_MB,
        cuda_graph: bool = True,
        engine: str | os.PathLike[str] | None = None,
    ) -> None:
        import_tensorrt()
        if device != "cuda" and not device.startswith("cuda:"):
            raise BackendError(f"tensorrt backend: device {device!r} is not 'cuda' or 'cuda:N'")
        if not torch.cuda.is_available():
            raise BackendError(
                f"tensorrt backend: device {device!r} asked for, but torch sees no CUDA device"
            )
        self.state = validate_ldn_state(state_dict, "state_dict")
        self.device = torch.device(device)
        self.cache_dir = cache_dir
        self.workspace_mb = workspace_mb
        self.cuda_graph = cuda_graph
        self.runners: dict[tuple[int, int, int], _EngineRunner] = {}
        self.engine_files: dict[tuple[int, int, int], Path] = {}
        if engine is not None:
            key, _ = read_engine_file(engine)
            read_engine_file(engine, engine_key(self.state, key.shape, device))  # refuses a foreign one
            self.engine_files[key.shape] = Path(engine)
        self.closed = False

    def runner(self, shape: tuple[int, int, int]) -> _EngineRunner:
        """The engine for blur batches of ``shape`` (K, H, W), loaded or built on first use."""
        if self.closed:
            raise BackendError("tensorrt backend: run() after close()")
        found = self.runners.get(shape)
        if found is None:
            given = self.engine_files.get(shape)
            if given is not None:
                payload = read_engine_file(given, engine_key(self.state, shape, str(self.device)))[1]
            else:
                path, payload = cached_engine(
                    self.state,
                    shape,
                    cache_dir=self.cache_dir,
                    workspace_mb=self.workspace_mb,
                    device=str(self.device),
                )
                self.engine_files[shape] = path
            found = self.runners[shape] = _EngineRunner(payload, shape, self.device, self.cuda_graph)
        return found

    def _run(self, blur: np.ndarray, spikes: np.ndarray) -> np.ndarray:
        n, _, h, w = blur.shape
        return self.runner((n, h, w)).run(blur, spikes)

    def close(self) -> None:
        self.closed = True
        for runner in self.runners.values():
            with contextlib.suppress(Exception):
                runner.stream.synchronize()
        self.runners.clear()
        torch.cuda.empty_cache()

    def describe(self) -> dict[str, object]:
        return {
            "name": self.name,
            "device": str(self.device),
            "precision": "fp16",
            "cuda_graph": {f"{k}x{h}x{w}": r.graph is not None for (k, h, w), r in self.runners.items()},
            "engines": [str(p) for p in self.engine_files.values()],
        }
