"""engine/kernels/cuda_loader.py: NVRTC compile and disk cache (no GPU needed), launch on a GPU."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest

from spikereveal.engine.kernels import cuda_loader
from spikereveal.engine.kernels.cuda_loader import CudaRunner, KernelError, compile_cubin

# A tiny include-free kernel, the same shape as the project's: pointers, then explicit-width scalars.
ADD = """
extern "C" __global__ void add_scaled(float* x, const float* y, float a, int n) {
    int i = blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) x[i] += a * y[i];
}
"""


def _installed(module: str) -> bool:
    """Whether ``module`` can be imported (find_spec raises for a submodule of a missing package)."""
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


needs_cuda_core = pytest.mark.skipif(
    not (_installed("cuda.core") and _installed("cuda.bindings")),
    reason="cuda-python (cuda-core, cuda-bindings) is not installed",
)


@needs_cuda_core
def test_compile_to_cubin_without_a_gpu_then_hit_the_cache(tmp_path: Path) -> None:
    # GIVEN an empty cache WHEN the same source compiles twice THEN the second read is a hit
    first = compile_cubin(ADD, "sm_90", name="add", cache_dir=tmp_path)
    second = compile_cubin(ADD, "sm_90", name="add", cache_dir=tmp_path)
    assert first.cubin[:4] == b"\x7fELF" and not first.cache_hit
    assert second.cache_hit and second.cubin == first.cubin and second.path == first.path
    major, minor = cuda_loader.nvrtc_version()
    assert first.path.name.startswith(f"add-sm_90-nvrtc{major}.{minor}-")
    assert [p.name for p in tmp_path.iterdir()] == [first.path.name]  # no temporary file left


@needs_cuda_core
def test_cache_key_covers_source_and_arch(tmp_path: Path) -> None:
    base = compile_cubin(ADD, "sm_90", name="add", cache_dir=tmp_path)
    other_arch = compile_cubin(ADD, "sm_80", name="add", cache_dir=tmp_path)
    other_source = compile_cubin(ADD + "\n// changed\n", "sm_90", name="add", cache_dir=tmp_path)
    assert len({base.path, other_arch.path, other_source.path}) == 3
    assert not other_arch.cache_hit and not other_source.cache_hit


@needs_cuda_core
def test_corrupt_cache_file_is_rebuilt(tmp_path: Path) -> None:
    first = compile_cubin(ADD, "sm_90", name="add", cache_dir=tmp_path)
    first.path.write_bytes(b"not a cubin")
    again = compile_cubin(ADD, "sm_90", name="add", cache_dir=tmp_path)
    assert not again.cache_hit and again.cubin == first.cubin


@needs_cuda_core
def test_cache_dir_follows_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SPIKEREVEAL_CACHE_DIR", str(tmp_path))
    compiled = compile_cubin(ADD, "sm_90", name="add")
    assert compiled.path.parent == tmp_path / "kernels"


@needs_cuda_core
def test_compile_error_is_one_kernel_error(tmp_path: Path) -> None:
    with pytest.raises(KernelError, match=r"bad\.cu: NVRTC .* failed to compile for sm_90"):
        compile_cubin("this is not CUDA(", "sm_90", name="bad", cache_dir=tmp_path)


@pytest.mark.parametrize("arch", ["90", "compute_90", "sm_x"])
def test_bad_arch(arch: str, tmp_path: Path) -> None:
    with pytest.raises(KernelError, match="is not a GPU architecture"):
        compile_cubin(ADD, arch, cache_dir=tmp_path)


@needs_cuda_core
def test_project_kernels_compile_with_nvrtc(tmp_path: Path) -> None:
    if not cuda_loader.DEFAULT_SOURCE.is_file():
        pytest.skip("engine/kernels/spikes.cu is not written yet")
    for arch in ("sm_80", "sm_86", "sm_89", "sm_90"):
        compiled = compile_cubin(cuda_loader.DEFAULT_SOURCE.read_text(), arch, cache_dir=tmp_path)
        assert compiled.cubin[:4] == b"\x7fELF"


def test_missing_cuda_python_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an interpreter where `import cuda.core` fails (as without the wheels)
    import builtins

    real_import = builtins.__import__

    def no_cuda(name: str, *args: object, **kwargs: object):
        if name.startswith("cuda"):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_cuda)
    with pytest.raises(KernelError, match=r"pip install cuda-core cuda-bindings nvidia-cuda-nvrtc"):
        CudaRunner(ADD)


@needs_cuda_core
def test_no_gpu_is_one_line() -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("a CUDA device is present")
    with pytest.raises(KernelError, match=r"device 'cuda' asked for, but torch sees no CUDA device"):
        CudaRunner(ADD)


@needs_cuda_core
@pytest.mark.gpu
def test_launch_on_torchs_stream(tmp_path: Path) -> None:
    import torch

    runner = CudaRunner(ADD, name="add", cache_dir=tmp_path)
    n = 1000
    x = torch.full((n,), -7.0, device="cuda")  # poisoned, never zeros
    y = torch.arange(n, dtype=torch.float32, device="cuda")
    stream = torch.cuda.Stream()
    with torch.cuda.stream(stream):
        runner.launch("add_scaled", (n + 255) // 256, 256, (x, y, np.float32(0.5), np.int32(n)))
    stream.synchronize()
    np.testing.assert_array_equal(x.cpu().numpy(), -7.0 + 0.5 * np.arange(n, dtype=np.float32))
    with pytest.raises(KernelError, match="bare Python number"):
        runner.launch("add_scaled", 1, 256, (x, y, np.float32(0.5), n))
    with pytest.raises(KernelError, match="no kernel 'nope'"):
        runner.launch("nope", 1, 1, ())
    with pytest.raises(KernelError, match="tensor on cpu"):
        runner.launch("add_scaled", 1, 256, (x.cpu(), y, np.float32(0.5), np.int32(n)))
