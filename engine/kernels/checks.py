"""Kernel checks: small cases that run a kernel on a runner and compare it with its CPU reference bit for bit.

What CI runs through the CPU shim (``shim_cases()``), what ``spikereveal selftest --shim`` prints,
and what a GPU self-test can run on a CUDA runner (inputs are moved with torch there). Every
case poisons its outputs first (NaN floats, 0xFF integers), so a pixel the kernel never writes
fails; the spikes are random 0/1 at density ~1/2 with random tag bits and a block of pixels that
never fire (SDM's zero guard), never all zeros.

``python -m spikereveal.engine.kernels.checks [--sanitize thread|address,undefined]`` runs them all
(a sanitized shim needs its runtime preloaded: see :func:`sanitizer_env`).
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from dataclasses import dataclass

import numpy as np

from spikereveal.engine.kernels import ops
from spikereveal.engine.windows import LDN_WINDOW, SDM_SHORT_WINDOW, exposure_times
from spikereveal.stream.spikes import SpikeGeometry, pack_frames

__all__ = ["KERNELS", "Case", "CaseResult", "main", "make_inputs", "run_case", "sanitizer_env", "shim_cases"]

KERNELS = ("unpack_windows", "tfp_counts", "sdm_upsample")


@dataclass(frozen=True)
class Case:
    """One kernel check: the kernel, the spike geometry, frames, exposure, K, output dtype, block."""

    kernel: str
    geometry: SpikeGeometry
    n_frames: int
    exposure: tuple[int, int]
    n_times: int
    dtype: str = "float32"
    scale: float = 1.0
    block: tuple[int, int] = (16, 2)
    seed: int = 0

    @property
    def times(self) -> list[int]:
        return exposure_times(self.exposure[0], self.exposure[1], self.n_times)

    @property
    def name(self) -> str:
        g = self.geometry
        tags = f"+{g.row_tag_bits}" if g.row_tag_bits else ""
        scale = f" x{self.scale:g}" if self.kernel == "unpack_windows" and self.scale != 1.0 else ""
        return (
            f"{self.kernel} {g.size_text}{tags} {'flip' if g.flip else 'noflip'} K={self.n_times} "
            f"{self.dtype}{scale} block={self.block[0]}x{self.block[1]}"
        )


@dataclass(frozen=True)
class CaseResult:
    """How one case went: ``mismatches`` of ``total`` output values differ from the reference."""

    name: str
    kernel: str
    ok: bool
    mismatches: int
    total: int
    seconds: float
    detail: str = ""


def _geometries() -> list[SpikeGeometry]:
    return [
        SpikeGeometry(8, 16, flip=True),
        SpikeGeometry(8, 16, flip=False),
        SpikeGeometry(8, 13, flip=True),  # odd width, rows not byte aligned
        SpikeGeometry(5, 13, flip=False, row_tag_bits=3),  # odd size with tag bits
        SpikeGeometry(4, 8, flip=True, row_tag_bits=16),  # the 250x400 dumps' 16 tag bits
        SpikeGeometry(3, 10, flip=True, row_tag_bits=6),
    ]


def shim_cases() -> list[Case]:
    """Small cases for the CPU shim: flip on/off, tag bits, odd widths, K = 1, 5, 7, fp32/fp16."""
    blocks = [(16, 2), (8, 4), (32, 2), (5, 3), (32, 1), (4, 4)]
    scales = [1.0, 0.3721, 3.96, 1e-6, 7e4, 1.0 / 16.0]
    n_frames, exposure = 41, (10, 30)  # 21-frame windows at the exposure's ends still fit
    cases: list[Case] = []
    i = 0
    for g in _geometries():
        for k in (1, 5, 7):
            for dtype in ("float32", "float16"):
                block, scale = blocks[i % len(blocks)], scales[i % len(scales)]
                cases.append(Case("unpack_windows", g, n_frames, exposure, k, dtype, scale, block, seed=i))
                i += 1
            dtype = "int32" if k != 5 else "float32"
            cases.append(Case("tfp_counts", g, n_frames, exposure, k, dtype, block=blocks[i % 6], seed=i))
            i += 1
        for k in (1, 5, 7):
            cases.append(Case("sdm_upsample", g, n_frames, exposure, k, block=blocks[i % 6], seed=i))
            i += 1
    return cases


def make_inputs(case: Case) -> tuple[np.ndarray, np.ndarray]:
    """Packed frames (T, frame_bytes) with random spikes and tag bits, and a uint8 BGR blur (4x size)."""
    g = case.geometry
    rng = np.random.default_rng(case.seed)
    spikes = (rng.random((case.n_frames, g.height, g.width)) < 0.5).astype(np.uint8)
    spikes[:, : max(1, g.height // 3), : max(1, g.width // 4)] = 0  # pixels that never fire
    packed = pack_frames(spikes, g)
    tag_mask = ~pack_frames(np.ones((1, g.height, g.width), np.uint8), g)[0]
    packed |= rng.integers(0, 256, packed.shape, dtype=np.uint8) & tag_mask  # tags must be ignored
    blur = rng.integers(0, 256, (4 * g.height, 4 * g.width, 3), dtype=np.uint8)
    return packed, blur


class _Device:
    """Moves case arrays to where the runner runs (NumPy for the shim, torch tensors for CUDA)."""

    def __init__(self, runner: object) -> None:
        self.host = getattr(runner, "device", None) == "cpu"
        self.device = getattr(runner, "device", "cuda")

    def put(self, array: np.ndarray) -> object:
        if self.host:
            return np.ascontiguousarray(array)
        import torch

        return torch.from_numpy(np.ascontiguousarray(array)).to(self.device)

    def get(self, array: object) -> np.ndarray:
        if self.host:
            return array  # type: ignore[return-value]
        return array.cpu().numpy()  # type: ignore[attr-defined]


def _poisoned(shape: tuple[int, ...], dtype: str) -> np.ndarray:
    """An output buffer full of NaN (floats) or 0xFF bytes (integers): never zeros."""
    if dtype in ("float32", "float16"):
        return np.full(shape, np.nan, dtype=dtype)
    return np.full(shape, -1, dtype=dtype)  # 0xFFFFFFFF


def _bits(array: np.ndarray) -> np.ndarray:
    return array.view(f"u{array.dtype.itemsize}")


def _compare(got: np.ndarray, want: np.ndarray) -> int:
    if got.shape != want.shape or got.dtype != want.dtype:
        return int(want.size)
    return int(np.count_nonzero(_bits(got) != _bits(want)))


def run_case(case: Case, runner: object = "shim") -> CaseResult:
    """Run ``case`` on ``runner`` ("shim" or a CUDA runner) and compare with the reference bit for bit."""
    if case.kernel not in KERNELS:
        raise ValueError(f"case {case.name}: unknown kernel {case.kernel!r}, expected one of {KERNELS}")
    runner = ops._resolve(runner)
    dev = _Device(runner)
    packed, blur = make_inputs(case)
    g, times = case.geometry, case.times
    start = time.perf_counter()
    detail = ""
    if case.kernel == "unpack_windows":
        with np.errstate(over="ignore"):  # a scale past fp16's range is inf there, as it should be
            want = ops.unpack_windows_reference(
                packed, g, times, LDN_WINDOW, case.scale, np.dtype(case.dtype).type
            )
        out = dev.put(_poisoned(want.shape, case.dtype))
        ops.unpack_windows(dev.put(packed), g, times, out, runner=runner, scale=case.scale, block=case.block)
        mismatches, total = _compare(dev.get(out), want), want.size
    elif case.kernel == "tfp_counts":
        long_ref, short_ref = ops.tfp_counts_reference(packed, g, case.exposure, times, SDM_SHORT_WINDOW)
        long_out = dev.put(_poisoned(long_ref.shape, case.dtype))
        short_out = dev.put(_poisoned(short_ref.shape, case.dtype))
        ops.tfp_counts(
            dev.put(packed), g, case.exposure, times, long_out, short_out, runner=runner, block=case.block
        )
        n_long = np.float32(case.exposure[1] - case.exposure[0] + 1)
        mismatches = total = 0
        for got, want, n in (
            (dev.get(long_out), long_ref, n_long),
            (dev.get(short_out), short_ref, SDM_SHORT_WINDOW),
        ):
            counts = np.rint(want.astype(np.float64) * float(n)).astype(case.dtype)  # exact for n <= 2^24
            mismatches += _compare(got, counts)
            # The TFP the rest of the engine uses: counts / n, exactly as engine/tfp.py rounds it.
            mismatches += _compare(got.astype(np.float32) / np.float32(n), want)
            total += 2 * want.size
    else:
        want = ops.sdm_upsample_reference(blur, packed, g, case.exposure, times, SDM_SHORT_WINDOW)
        h, w, k = g.height, g.width, len(times)
        long_out = dev.put(_poisoned((h, w), "int32"))
        short_out = dev.put(_poisoned((k, h, w), "int32"))
        ops.tfp_counts(
            dev.put(packed), g, case.exposure, times, long_out, short_out, runner=runner, block=case.block
        )
        out = dev.put(_poisoned(want.shape, "float32"))
        n_long = case.exposure[1] - case.exposure[0] + 1
        ops.sdm_upsample(
            long_out, short_out, dev.put(blur), out, exposure_frames=n_long, runner=runner, block=case.block
        )
        mismatches, total = _compare(dev.get(out), want), want.size
        if not np.any(want == 0) or not np.any(want > 0):
            detail = "reference lacks zero-guarded or lit pixels"
    seconds = time.perf_counter() - start
    ok = mismatches == 0 and not detail
    return CaseResult(case.name, case.kernel, ok, mismatches, int(total), seconds, detail)


def format_table(results: list[CaseResult]) -> str:
    """One line per case: name, ok/FAIL, mismatches/total, seconds."""
    width = max((len(r.name) for r in results), default=10)
    lines = [f"{'case':<{width}}  result  mismatches      time"]
    for r in results:
        status = "ok" if r.ok else "FAIL"
        extra = f"  {r.detail}" if r.detail else ""
        lines.append(
            f"{r.name:<{width}}  {status:<6}  {r.mismatches:>5}/{r.total:<6}  {r.seconds:6.3f} s{extra}"
        )
    passed = sum(r.ok for r in results)
    lines.append(f"{passed}/{len(results)} cases bit-exact")
    return "\n".join(lines)


def sanitizer_env(sanitize: str) -> dict[str, str]:
    """Environment for a Python process that loads a shim built with ``sanitize``.

    Python itself is not instrumented, so the sanitizer runtime must be preloaded; leaks of the
    interpreter are not ours (detect_leaks=0), and any report is fatal.
    """
    compiler = os.environ.get("CXX") or "g++"
    lib = "libtsan.so" if sanitize == "thread" else "libasan.so"
    preload = [
        subprocess.run([compiler, f"-print-file-name={lib}"], capture_output=True, text=True).stdout.strip()
    ]
    if sanitize != "thread":
        ubsan = subprocess.run([compiler, "-print-file-name=libubsan.so"], capture_output=True, text=True)
        preload.append(ubsan.stdout.strip())
    env = dict(os.environ)
    env["LD_PRELOAD"] = " ".join(preload)
    env["TSAN_OPTIONS"] = "halt_on_error=1 exitcode=66 report_signal_unsafe=0"
    env["ASAN_OPTIONS"] = "detect_leaks=0 halt_on_error=1 exitcode=66"
    env["UBSAN_OPTIONS"] = "halt_on_error=1 print_stacktrace=1 exitcode=66"
    return env


def main(argv: list[str] | None = None) -> int:
    """Run every shim case (optionally on a sanitized shim), print the table, exit 1 on a mismatch."""
    from spikereveal.engine.kernels.shim import SANITIZE_FLAGS, ShimRunner

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sanitize", choices=[s for s in SANITIZE_FLAGS if s], default=None)
    parser.add_argument(
        "--every", type=int, default=1, help="Run every Nth case only (sanitized runs are slow)."
    )
    args = parser.parse_args(argv)
    if args.every < 1:
        parser.error(f"--every: got {args.every}, expected >= 1")
    runner = ShimRunner(sanitize=args.sanitize)
    results = [run_case(case, runner) for case in shim_cases()[:: args.every]]
    print(format_table(results))
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
