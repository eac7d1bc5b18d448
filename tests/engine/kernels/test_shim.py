"""The CPU shim itself: build and cache, argument rules, its CUDA primitives, and the sanitizer runs."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from spikereveal.engine.kernels import shim
from spikereveal.engine.kernels.checks import sanitizer_env

PRIMITIVES = Path(__file__).resolve().parent / "data" / "shim_primitives.cu"

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CPU shim needs g++")


@pytest.fixture(scope="module")
def primitives() -> shim.ShimRunner:
    return shim.ShimRunner(PRIMITIVES)


def test_kernel_names_lists_every_extern_c_kernel():
    assert shim.kernel_names() == [
        "unpack_windows_f32",
        "unpack_windows_f16",
        "tfp_counts_i32",
        "tfp_counts_f32",
        "sdm_upsample",
    ]


def test_build_is_cached_by_source_hash(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEREVEAL_CACHE_DIR", str(tmp_path))
    source = tmp_path / "k.cu"
    source.write_text('extern "C" __global__ void fill(int* out) { out[threadIdx.x] = 7; }\n')
    first = shim.build(source)
    assert first.parent == tmp_path / "shim" and first.is_file()
    assert shim.build(source) == first  # same source: the cached library
    source.write_text('extern "C" __global__ void fill(int* out) { out[threadIdx.x] = 8; }\n')
    second = shim.build(source)
    assert second != first
    out = np.zeros(4, np.int32)
    shim.ShimRunner(source).launch("fill", (1,), (4,), (out,))
    assert out.tolist() == [8, 8, 8, 8]


def test_compile_error_is_one_shim_build_error(tmp_path, monkeypatch):
    monkeypatch.setenv("SPIKEREVEAL_CACHE_DIR", str(tmp_path))
    source = tmp_path / "bad.cu"
    source.write_text('extern "C" __global__ void broken(int* out) { out[0] = undeclared; }\n')
    with pytest.raises(shim.ShimBuildError, match="bad.cu: the CPU shim build failed"):
        shim.build(source)


def test_plain_python_numbers_are_refused(primitives):
    out = np.zeros(64, np.int32)
    with pytest.raises(TypeError, match="argument 1: int 64 .* taken as a pointer"):
        primitives.launch("off_by_one", (1,), (32,), (out, 64))


def test_non_contiguous_array_argument_is_refused(primitives):
    out = np.zeros((32, 2), np.int32)[:, 0]
    with pytest.raises(TypeError, match="not C-contiguous"):
        primitives.launch("lane_exchange", (1,), (32,), (out, out))


def test_unknown_kernel_and_bad_block_are_launch_errors(primitives):
    out = np.zeros(32, np.int32)
    with pytest.raises(shim.ShimBuildError, match="unknown kernel"):
        primitives.launch("nope", (1,), (32,), (out,))
    with pytest.raises(shim.ShimBuildError, match="bad grid"):
        primitives.launch("lane_exchange", (1,), (2048,), (out, out))


def test_warp_shuffle_reduction_shared_memory_and_atomics(primitives):
    values = np.arange(1, 3 * 64 + 1, dtype=np.int32)  # 3 blocks of 2 warps, never zero
    blocks = np.full(3, -1, np.int32)
    total = np.zeros(1, np.int32)
    primitives.launch("block_sums", (3,), (64,), (values, blocks, total, np.int32(values.size)))
    assert blocks.tolist() == [int(values[i * 64 : (i + 1) * 64].sum()) for i in range(3)]
    assert int(total[0]) == int(values.sum())


def test_shfl_xor_and_broadcast(primitives):
    xor = np.full(32, -1, np.int32)
    broadcast = np.full(32, -1, np.int32)
    primitives.launch("lane_exchange", (1,), (32,), (xor, broadcast))
    assert xor.tolist() == [(lane ^ 1) * 10 for lane in range(32)]
    assert broadcast.tolist() == [30] * 32


def _run_sanitized(sanitize: str, code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code],
        env=sanitizer_env(sanitize),
        capture_output=True,
        text=True,
        timeout=900,
    )


_PLANTED = """
import numpy as np
from spikereveal.engine.kernels.shim import ShimRunner
runner = ShimRunner({source!r}, sanitize={sanitize!r})
out = np.zeros(64, np.int32)
{call}
"""


@pytest.mark.slow
@pytest.mark.timeout(600)
# ThreadSanitizer makes every emulated thread slow (all 71 cases: ~2.5 min here), so it runs every
# 5th case (15 of 72), which still covers each kernel and dtype, flip, tag bits and K = 1, 5, 7 (the
# cases cycle through them); `python -m spikereveal.engine.kernels.checks --sanitize thread` runs all.
@pytest.mark.parametrize(("sanitize", "every"), [("thread", 5), ("address,undefined", 1)])
def test_shim_cases_run_clean_under_sanitizers(sanitize, every):
    code = (
        "import sys; from spikereveal.engine.kernels.checks import main; "
        f"sys.exit(main(['--sanitize', {sanitize!r}, '--every', '{every}']))"
    )
    result = _run_sanitized(sanitize, code)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-4000:]
    assert "cases bit-exact" in result.stdout


@pytest.mark.slow
def test_thread_sanitizer_catches_a_missing_syncthreads():
    call = "runner.launch('racy_reverse', (1,), (64,), (out,))"
    result = _run_sanitized("thread", _PLANTED.format(source=str(PRIMITIVES), sanitize="thread", call=call))
    assert result.returncode == 66, result.stderr[-3000:]
    assert "data race" in result.stderr


@pytest.mark.slow
def test_address_sanitizer_catches_an_off_by_one():
    call = "runner.launch('off_by_one', (2,), (32,), (out[:63].copy(), np.int32(63)))"
    code = _PLANTED.format(source=str(PRIMITIVES), sanitize="address,undefined", call=call)
    result = _run_sanitized("address,undefined", code)
    assert result.returncode == 66, result.stderr[-3000:]
    assert "heap-buffer-overflow" in result.stderr
