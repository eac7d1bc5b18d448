"""Run the CUDA kernels of spikes.cu on the CPU: the host-emulation shim, built with g++, called via ctypes.

CI has no GPU, so the kernels' arithmetic and indexing are verified by compiling the *same*
``.cu`` source as C++ with ``shim.h`` force-included (blocks in turn, threads as OS threads,
``__syncthreads`` as a barrier) and comparing with the NumPy references (checks.py). The built
library is cached on disk, keyed by the hash of the sources, the flags and the compiler, in
``$SPIKEREVEAL_CACHE_DIR/shim`` (default ``~/.cache/spikereveal/shim``).

Arguments go in as the CUDA launcher takes them: a tuple of C-contiguous NumPy arrays (passed as
pointers) and ``np.int32`` / ``np.int64`` / ``np.float32`` scalars. A plain Python int is refused,
because cuda.core would silently take it as a pointer.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import re
import shutil
import subprocess
import tempfile
from functools import cache
from pathlib import Path

import numpy as np

from spikereveal.engine.cache import cache_dir as project_cache_dir
from spikereveal.stream.errors import SpikeRevealError

__all__ = ["KERNEL_SOURCE", "SHIM_HEADER", "ShimBuildError", "ShimRunner", "build", "kernel_names", "launch"]

KERNEL_SOURCE = Path(__file__).resolve().parent / "spikes.cu"
SHIM_HEADER = Path(__file__).resolve().parent / "shim.h"
#: -O1 keeps builds quick; -ffp-contract=off so that g++ fuses nothing the kernel did not ask for.
BASE_FLAGS = ("-std=c++20", "-O1", "-ffp-contract=off", "-fPIC", "-shared", "-pthread")
SANITIZE_FLAGS = {
    None: (),
    "thread": ("-fsanitize=thread", "-g"),
    "address,undefined": ("-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-g"),
}
_KERNEL_RE = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(')
_SCALARS = {
    np.int32: ctypes.c_int32,
    np.int64: ctypes.c_int64,
    np.uint32: ctypes.c_uint32,
    np.float32: ctypes.c_float,
}
_LAUNCH_ERRORS = {
    1: "unknown kernel",
    2: "bad grid, block or shared-memory size",
    3: "a kernel thread failed",
}


class ShimBuildError(SpikeRevealError):
    """The CPU shim could not be built or loaded (no g++, a compile error, a bad launch)."""


def cache_dir() -> Path:
    """Where built shims are kept: ``$SPIKEREVEAL_CACHE_DIR/shim`` or ``~/.cache/spikereveal/shim``."""
    return project_cache_dir("shim")


def kernel_names(source: Path = KERNEL_SOURCE) -> list[str]:
    """The ``extern "C" __global__`` kernels defined in ``source``, in order."""
    return _KERNEL_RE.findall(Path(source).read_text())


def _compiler() -> str:
    compiler = os.environ.get("CXX") or shutil.which("g++")
    if not compiler:
        raise ShimBuildError("the CPU kernel shim needs g++ (C++20), which is not on PATH (or set $CXX)")
    return compiler


def build(source: Path = KERNEL_SOURCE, sanitize: str | None = None) -> Path:
    """Compile ``source`` with shim.h into a shared library (cached) and return its path.

    ``sanitize``: None, ``"thread"`` or ``"address,undefined"``; a sanitized library must be
    loaded into a process that preloads the sanitizer runtime (see checks.py's ``main``).
    """
    if sanitize not in SANITIZE_FLAGS:
        raise ShimBuildError(f"sanitize={sanitize!r}: expected one of {sorted(map(str, SANITIZE_FLAGS))}")
    source = Path(source).resolve()
    names = kernel_names(source)
    if not names:
        raise ShimBuildError(f'{source}: no extern "C" __global__ kernels found')
    compiler = _compiler()
    flags = (*BASE_FLAGS, *SANITIZE_FLAGS[sanitize])
    version = subprocess.run([compiler, "--version"], capture_output=True, text=True, check=False).stdout
    digest = hashlib.sha256()
    for part in (source.read_bytes(), SHIM_HEADER.read_bytes(), " ".join(flags).encode(), version.encode()):
        digest.update(part)
        digest.update(b"\0")
    target = (
        cache_dir()
        / f"{source.stem}-{digest.hexdigest()[:16]}{'-' + sanitize.replace(',', '-') if sanitize else ''}.so"
    )
    if target.is_file():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    entries = "".join(f"SHIM_KERNEL({name})\n" for name in names)
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        entry = Path(tmp) / "entry.cpp"
        entry.write_text(f'#include "{source}"\nSHIM_BEGIN_KERNELS\n{entries}SHIM_END_KERNELS\n')
        built = Path(tmp) / target.name
        command = [compiler, *flags, "-include", str(SHIM_HEADER), str(entry), "-o", str(built)]
        result = subprocess.run(command, capture_output=True, text=True, check=False)
        if result.returncode != 0:
            tail = "\n".join(result.stderr.strip().splitlines()[-20:])
            raise ShimBuildError(f"{source.name}: the CPU shim build failed ({' '.join(command)}):\n{tail}")
        os.replace(built, target)  # atomic: a concurrent build never sees half a library
    return target


def _c_argument(index: int, value: object) -> ctypes._SimpleCData:
    if isinstance(value, np.ndarray):
        if not value.flags.c_contiguous:
            raise TypeError(f"kernel argument {index}: array of shape {value.shape} is not C-contiguous")
        return ctypes.c_void_p(value.ctypes.data)
    for kind, ctype in _SCALARS.items():
        if type(value) is kind:
            return ctype(value)
    raise TypeError(
        f"kernel argument {index}: {type(value).__name__} {value!r} is not a NumPy array or an "
        "np.int32/np.int64/np.uint32/np.float32 scalar (a plain Python number would be taken as a pointer on the GPU)"
    )


def _dims(name: str, value: tuple[int, ...]) -> ctypes.Array:
    dims = tuple(int(v) for v in value) + (1,) * (3 - len(value))
    if len(dims) != 3 or any(v < 1 for v in dims):
        raise ShimBuildError(f"launch {name}: {value!r} is not 1 to 3 positive sizes")
    return (ctypes.c_uint * 3)(*dims)


class ShimRunner:
    """Launches kernels of one source on the CPU shim; the same ``launch`` as the CUDA runner."""

    kind = "shim"
    device = "cpu"

    def __init__(self, source: Path = KERNEL_SOURCE, sanitize: str | None = None) -> None:
        self.source = Path(source)
        self.sanitize = sanitize
        self.path = build(self.source, sanitize)
        try:
            self._lib = ctypes.CDLL(str(self.path))
        except OSError as exc:
            raise ShimBuildError(f"{self.path}: cannot load the CPU shim: {exc}") from None
        self._launch = self._lib.launch_by_name
        self._launch.restype = ctypes.c_int
        self._launch.argtypes = [
            ctypes.c_char_p,
            ctypes.POINTER(ctypes.c_uint),
            ctypes.POINTER(ctypes.c_uint),
            ctypes.c_uint,
            ctypes.POINTER(ctypes.c_void_p),
        ]

    def launch(
        self,
        name: str,
        grid: tuple[int, ...],
        block: tuple[int, ...],
        args: tuple[object, ...],
        shared_bytes: int = 0,
    ) -> None:
        """Run kernel ``name`` over ``grid`` x ``block`` with ``args`` (synchronous)."""
        values = [_c_argument(i, a) for i, a in enumerate(args)]
        pointers = (ctypes.c_void_p * max(len(values), 1))(*(ctypes.addressof(v) for v in values))
        rc = self._launch(
            name.encode(), _dims("grid", grid), _dims("block", block), int(shared_bytes), pointers
        )
        if rc != 0:
            raise ShimBuildError(
                f"launch {name} grid {tuple(grid)} block {tuple(block)} shared {shared_bytes} B: "
                f"{_LAUNCH_ERRORS.get(rc, f'error {rc}')}"
            )


@cache
def default_runner() -> ShimRunner:
    """The shim of spikes.cu, built once per process."""
    return ShimRunner()


def launch(
    name: str, grid: tuple[int, ...], block: tuple[int, ...], args: tuple[object, ...], shared_bytes: int = 0
) -> None:
    """Launch a kernel of spikes.cu on the CPU shim (see :class:`ShimRunner`)."""
    default_runner().launch(name, grid, block, args, shared_bytes)
