"""Compile the CUDA C kernels with NVRTC (cuda-python's ``cuda.core``) and launch them on torch's stream.

Why cuda-python and not pycuda (which the design card names): pycuda has no wheels, needs a CUDA
toolkit with headers and driver stubs to build, and shells out to nvcc at run time; cuda-python
(``cuda-core`` + ``cuda-bindings`` + ``nvidia-cuda-nvrtc``) installs from wheels everywhere and
compiles to a cubin without a GPU, so CI checks that the kernels compile.

A compiled module is cached on disk by (source sha256, architecture, NVRTC version, options) under
``$SPIKEREVEAL_CACHE_DIR/kernels`` or ``~/.cache/spikereveal/kernels``: a process starts in
milliseconds instead of NVRTC's second, and a new driver, NVRTC or source can never pick a stale file.

Launch arguments are the same tuple that the CPU shim (engine/kernels/shim.py) takes, with torch
CUDA tensors where the shim takes NumPy arrays: pointers are ``tensor.data_ptr()``, every scalar an
explicit ``np.int32``/``np.int64``/``np.float32``. A bare Python int is refused, because cuda.core
would pass it as a pointer without a word.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from spikereveal.engine.cache import cache_dir
from spikereveal.stream.errors import SpikeRevealError

__all__ = [
    "DEFAULT_SOURCE",
    "INSTALL_HINT",
    "CompiledModule",
    "CudaRunner",
    "KernelError",
    "compile_cubin",
    "kernel_cache_dir",
    "nvrtc_version",
]

log = logging.getLogger(__name__)

#: The project's kernels (K windows, TFP counts, SDM), shipped as package data.
DEFAULT_SOURCE = Path(__file__).with_name("spikes.cu")
INSTALL_HINT = (
    "cuda-python (cuda-core, cuda-bindings) is not installed: "
    "pip install cuda-core cuda-bindings nvidia-cuda-nvrtc"
)
#: The scalar types a kernel argument may have; anything else is a pointer or an error.
SCALAR_TYPES = (np.int32, np.int64, np.uint32, np.uint64, np.float32, np.float64)


class KernelError(SpikeRevealError):
    """The kernels cannot be compiled, loaded or launched here (missing runtime, no GPU, bad launch)."""


def _cuda_core() -> Any:
    """The ``cuda.core`` module (``cuda.core.experimental`` on releases before 1.0)."""
    try:
        import cuda.core as core

        core.Program  # noqa: B018  (0.x exposes the names only under .experimental)
        return core
    except (ImportError, AttributeError):
        pass
    try:
        import cuda.core.experimental as core
    except ImportError as exc:
        raise KernelError(INSTALL_HINT) from exc
    return core


def nvrtc_version() -> tuple[int, int]:
    """The NVRTC library's (major, minor) version; KernelError if NVRTC is missing."""
    try:
        from cuda.bindings import nvrtc
    except ImportError as exc:
        raise KernelError(INSTALL_HINT) from exc
    try:
        err, major, minor = nvrtc.nvrtcVersion()
    except Exception as exc:  # cuda.bindings raises its own types when libnvrtc cannot be loaded
        raise KernelError(
            f"NVRTC cannot be loaded ({exc}): pip install nvidia-cuda-nvrtc (or put the CUDA toolkit's "
            "libnvrtc on the library path)"
        ) from exc
    if int(err) != 0:
        raise KernelError(f"NVRTC cannot report its version (error {err})")
    return int(major), int(minor)


def kernel_cache_dir() -> Path:
    """Where compiled kernels are kept: ``$SPIKEREVEAL_CACHE_DIR/kernels`` or ``~/.cache/spikereveal/kernels``."""
    return cache_dir("kernels")


def _check_arch(arch: str) -> str:
    if not (arch.startswith("sm_") and arch[3:].rstrip("a").isdigit()):
        raise KernelError(f"arch {arch!r} is not a GPU architecture such as 'sm_90'")
    return arch


#: NVRTC options every build uses. fma off: the CPU shim and the NumPy references round each
#: multiply and add separately, so the GPU must as well to agree with them bit for bit
#: (the kernels are memory bound; contraction buys nothing measurable there).
_OPTIONS: dict[str, object] = {"fma": False, "std": "c++17"}


@dataclass(frozen=True)
class CompiledModule:
    """One compiled cubin: its bytes, the cache file holding them, and whether it was a cache hit."""

    cubin: bytes
    path: Path
    arch: str
    cache_hit: bool


def compile_cubin(
    source: str,
    arch: str,
    *,
    name: str = "spikes",
    cache_dir: Path | None = None,
) -> CompiledModule:
    """Compile CUDA C ``source`` for ``arch`` (e.g. "sm_90") to a cubin, or read it from the cache.

    Needs no GPU (NVRTC runs without a driver). The cache file is
    ``<cache_dir>/<name>-<arch>-nvrtc<major>.<minor>-<sha256[:16]>.cubin``, where the hash covers the
    source, the architecture, the NVRTC version and the options; it is written atomically, so
    concurrent processes never read half a file.
    """
    arch = _check_arch(arch)
    major, minor = nvrtc_version()
    options = dict(_OPTIONS, arch=arch)
    key = hashlib.sha256(
        "\0".join([source, arch, f"{major}.{minor}", repr(sorted(options.items()))]).encode()
    ).hexdigest()
    directory = cache_dir if cache_dir is not None else kernel_cache_dir()
    path = directory / f"{name}-{arch}-nvrtc{major}.{minor}-{key[:16]}.cubin"
    if path.is_file():
        data = path.read_bytes()
        if data[:4] == b"\x7fELF":  # a truncated or foreign file is rebuilt, never loaded
            return CompiledModule(data, path, arch, cache_hit=True)
        log.warning("kernel cache %s is not a cubin; compiling again", path)
    core = _cuda_core()
    program = core.Program(source, code_type="c++", options=core.ProgramOptions(name=name, **options))
    try:
        data = bytes(program.compile("cubin").code)
    except Exception as exc:  # NVRTC's log is in the message
        raise KernelError(f"{name}.cu: NVRTC {major}.{minor} failed to compile for {arch}: {exc}") from exc
    directory.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    log.info("compiled %s for %s with NVRTC %d.%d -> %s", name, arch, major, minor, path)
    return CompiledModule(data, path, arch, cache_hit=False)


class _TorchStream:
    """torch's CUDA stream as cuda.core's ``__cuda_stream__`` protocol object (version 0, handle)."""

    def __init__(self, handle: int) -> None:
        self.handle = handle

    def __cuda_stream__(self) -> tuple[int, int]:
        return (0, self.handle)


class CudaRunner:
    """The kernels of one CUDA C source, compiled for this GPU and launched on torch's current stream.

    ``CudaRunner()`` compiles engine/kernels/spikes.cu for the current CUDA device (cached, see
    :func:`compile_cubin`); ``source`` may be the text of another include-free ``extern "C"`` source.
    Raises KernelError with one line when cuda-python is missing or torch sees no CUDA device.
    """

    def __init__(
        self,
        source: str | None = None,
        *,
        device: str = "cuda",
        name: str = "spikes",
        cache_dir: Path | None = None,
    ) -> None:
        core = _cuda_core()
        try:
            import torch
        except ImportError as exc:
            raise KernelError("the CUDA kernels need torch with CUDA (pip install torch)") from exc
        if not (device == "cuda" or device.startswith("cuda:")):
            raise KernelError(f"kernels: device {device!r} is not 'cuda' or 'cuda:N'")
        if not torch.cuda.is_available():
            raise KernelError(f"kernels: device {device!r} asked for, but torch sees no CUDA device")
        self._torch = torch
        self._core = core
        self.device = torch.device(device)
        index = self.device.index if self.device.index is not None else torch.cuda.current_device()
        self.device = torch.device("cuda", index)
        torch.cuda.init()
        # torch and cuda.core share the device's primary context, so pointers and streams mix freely.
        self._cu_device = core.Device(index)
        self._cu_device.set_current()
        major, minor = torch.cuda.get_device_capability(index)
        self.arch = f"sm_{major}{minor}"
        if source is None:
            if not DEFAULT_SOURCE.is_file():
                raise KernelError(f"{DEFAULT_SOURCE}: kernel source not found")
            source = DEFAULT_SOURCE.read_text()
        self.compiled = compile_cubin(source, self.arch, name=name, cache_dir=cache_dir)
        try:
            self._module = core.ObjectCode.from_cubin(self.compiled.cubin, name=name)
        except TypeError:  # cuda.core 0.x: no name
            self._module = core.ObjectCode.from_cubin(self.compiled.cubin)
        self._kernels: dict[str, Any] = {}
        self._streams: dict[int, Any] = {}
        self._uploads: dict[tuple[str, tuple[int, ...], bytes], Any] = {}

    def kernel(self, name: str) -> Any:
        """The cuda.core Kernel called ``name`` (an ``extern "C"`` function of the source)."""
        kernel = self._kernels.get(name)
        if kernel is None:
            try:
                kernel = self._module.get_kernel(name)
            except Exception as exc:
                raise KernelError(
                    f"kernels: no kernel {name!r} in {self.compiled.path.name} ({exc})"
                ) from exc
            self._kernels[name] = kernel
        return kernel

    def upload(self, array: np.ndarray) -> Any:
        """A small read-only host table (e.g. the K output times) as a CUDA tensor, cached by content.

        The same table is uploaded once, so that steady-state launches copy nothing from the host
        (and stay capturable in a CUDA graph). Kernels must not write into what this returns.
        """
        array = np.ascontiguousarray(array)
        key = (array.dtype.str, array.shape, array.tobytes())
        tensor = self._uploads.get(key)
        if tensor is None:
            if len(self._uploads) >= 256:  # bounded: tables are tiny, but keys could be endless
                self._uploads.clear()
            tensor = self._torch.from_numpy(array.copy()).to(self.device)
            self._uploads[key] = tensor
        return tensor

    def _stream(self, stream: Any) -> Any:
        torch = self._torch
        if stream is None:
            stream = torch.cuda.current_stream(self.device)
        handle = int(stream.cuda_stream) if hasattr(stream, "cuda_stream") else int(stream)
        wrapped = self._streams.get(handle)
        if wrapped is None:
            wrapped = self._cu_device.create_stream(_TorchStream(handle))
            self._streams[handle] = wrapped
        return wrapped

    def _argument(self, index: int, value: object) -> object:
        torch = self._torch
        if isinstance(value, torch.Tensor):
            if value.device != self.device:
                raise KernelError(
                    f"kernel argument {index}: tensor on {value.device}, expected {self.device}"
                )
            return value.data_ptr()
        if isinstance(value, SCALAR_TYPES):
            return value
        raise KernelError(
            f"kernel argument {index}: {type(value).__name__} is not a torch CUDA tensor or an "
            "np.int32/np.int64/np.float32 scalar (a bare Python number would be passed as a pointer)"
        )

    def launch(
        self,
        name: str,
        grid: int | tuple[int, ...],
        block: int | tuple[int, ...],
        args: tuple[object, ...],
        shared_bytes: int = 0,
        stream: Any = None,
    ) -> None:
        """Launch kernel ``name`` asynchronously on ``stream`` (default: torch's current stream).

        args: torch CUDA tensors (passed as pointers) and NumPy scalars, in the kernel's order;
        shared_bytes: dynamic shared memory per block. Returns before the kernel has run.
        """
        kernel = self.kernel(name)
        values = tuple(self._argument(i, v) for i, v in enumerate(args))
        config = self._core.LaunchConfig(grid=grid, block=block, shmem_size=int(shared_bytes))
        self._core.launch(self._stream(stream), config, kernel, *values)

    def __repr__(self) -> str:
        return f"CudaRunner({self.device}, {self.arch}, {self.compiled.path.name})"
