"""``spikereveal selftest --shim | --gpu``: every kernel check, and on a GPU every check and timing, in one call.

``--shim`` runs engine/kernels/checks.py's cases through the CPU emulation of the CUDA kernels (what
CI runs). ``--gpu`` is the one command for whoever gets a GPU: each kernel against its NumPy
reference through :class:`CudaRunner`, each LDN backend present against torch fp32 on the CPU, and
CUDA-event timings of the kernels, the inference and the whole bundle at 720x1280 and 1000x1600
for K = 1, 5, 7. Both print a table last; ``--gpu`` also writes JSON.

It must run unattended on a bare GPU machine (torch with CUDA and cuda-python, but no pyzmq, no
click and no project install), so this module imports only the standard library and NumPy at
module level, and ``python -m spikereveal.tools.selftest`` works beside the click command; from a
raw checkout use ``python tools/selftest_standalone.py --gpu``. Exit codes: 0 all checks passed,
1 a check failed, 2 the mode cannot run here (no GPU, missing package), with one line saying why.
"""

from __future__ import annotations

import argparse
import datetime as _dt
import importlib.util
import json
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["DEFAULT_JSON", "Row", "SelftestUnavailable", "format_table", "main", "run_gpu", "run_shim"]

DEFAULT_JSON = Path("bench") / "selftest-gpu.json"
#: RGB sizes and output counts of the issue's goals; the spike sensor is 1/4 per side.
SIZES: tuple[tuple[int, int], ...] = ((720, 1280), (1000, 1600))
KS: tuple[int, ...] = (1, 5, 7)
#: Frames in one bundle of the reference rig (the "137-frame 250x400 bundle" of the goals).
BUNDLE_FRAMES = 137
#: The default exposure of such a bundle: all frames but 20 at each end (README's conventions).
EXPOSURE = (20, BUNDLE_FRAMES - 21)
#: The whole --gpu run stays under 5 minutes: past this, the remaining timings are skipped.
TIME_BUDGET_S = 240.0
#: Goals on one H100/H200-class GPU (issue 8), reported beside the timings, not part of the exit code.
GOAL_KERNELS_MS = 0.2
GOAL_LDN_MS_PER_FRAME = 1.0
GOAL_BUNDLE_K7_MS = 8.0
#: Backend agreement with torch fp32 on CPU, relative to max(1, max |reference|).
TOLERANCES = {"fp32": 1e-4, "fp16": 1e-2}


#: What the engine imports beyond torch and NumPy, by module -> wheel: a bare GPU machine may lack them.
CARRIED = {"cv2": "opencv-python-headless", "yaml": "pyyaml", "tqdm": "tqdm"}


class SelftestUnavailable(Exception):
    """The asked mode cannot run on this machine (no GPU, a missing package): one line, exit 2."""


@dataclass
class Row:
    """One line of the table: a check (ok True/False), a timing (ok None unless it is a goal), or a skip."""

    section: str
    name: str
    shape: str
    result: str
    ok: bool | None = None
    data: dict[str, Any] = field(default_factory=dict)


def format_table(rows: Sequence[Row]) -> str:
    """The rows as an aligned text table (section, check, shape, result, ok)."""
    marks = {True: "ok", False: "FAIL", None: ""}
    lines = [("section", "check", "shape", "result", "ok")]
    lines += [(r.section, r.name, r.shape, r.result, marks[r.ok]) for r in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(5)]
    out = ["  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)).rstrip() for line in lines]
    out.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------- shim
def _checks_module() -> Any:
    try:
        from spikereveal.engine.kernels import checks
    except ImportError as exc:
        raise SelftestUnavailable(
            f"the kernel checks cannot be imported (engine/kernels/checks.py): {exc}"
        ) from exc
    return checks


def _case_row(section: str, case: Any, result: Any) -> Row:
    """A row from one of checks.py's CaseResults: the case, its frames x spike size, mismatches/total."""
    g = getattr(case, "geometry", None)
    shape = f"{case.n_frames}x{g.height}x{g.width}" if g is not None else ""
    text = f"{result.mismatches}/{result.total} values differ (bit-exact check), {result.seconds:.2f} s"
    if result.detail:
        text += f"; {result.detail}"
    data = {"mismatches": result.mismatches, "total": result.total, "seconds": result.seconds}
    return Row(section, result.name, shape, text, bool(result.ok), data)


def run_shim() -> list[Row]:
    """Every case of engine/kernels/checks.py through the CPU shim (g++ build, cached)."""
    checks = _checks_module()
    rows = []
    for case in checks.shim_cases():
        try:
            result = checks.run_case(case, "shim")
        except Exception as exc:  # one broken case must not hide the others
            rows.append(Row("shim", str(getattr(case, "name", case)), "", f"error: {exc}", False))
            continue
        rows.append(_case_row("shim", case, result))
    return rows


# ---------------------------------------------------------------------------------------------- gpu
def _require_gpu() -> Any:
    if importlib.util.find_spec("torch") is None:
        raise SelftestUnavailable("selftest --gpu needs torch with CUDA: torch is not installed")
    import torch

    if not torch.cuda.is_available():
        raise SelftestUnavailable("selftest --gpu: no CUDA device here (torch.cuda.is_available() is False)")
    missing = [wheel for module, wheel in CARRIED.items() if importlib.util.find_spec(module) is None]
    if missing:
        raise SelftestUnavailable(
            f"selftest --gpu: {', '.join(missing)} not installed here: carry the wheels and "
            f"pip install them first (README, 'GPU self-test')"
        )
    return torch


def _machine(torch: Any) -> dict[str, Any]:
    info: dict[str, Any] = {
        "when": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "host": platform.node(),
        "cpu_count": os.cpu_count(),
        "numpy": np.__version__,
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "gpu": torch.cuda.get_device_name(0),
        "capability": "sm_{}{}".format(*torch.cuda.get_device_capability(0)),
    }
    for module in ("cuda.core", "cuda.bindings", "onnxruntime", "tensorrt", "cv2"):
        if importlib.util.find_spec(module.split(".")[0]) is not None:
            try:
                info[module] = getattr(__import__(module, fromlist=["_"]), "__version__", "?")
            except Exception as exc:
                info[module] = f"unusable: {exc}"
    try:
        from spikereveal.engine.kernels.cuda_loader import nvrtc_version

        info["nvrtc"] = "{}.{}".format(*nvrtc_version())
    except Exception as exc:
        info["nvrtc"] = f"unavailable: {exc}"
    return info


def _bundle(rng: np.random.Generator, h: int, w: int, frames: int = BUNDLE_FRAMES) -> tuple[Any, np.ndarray]:
    """A random packed bundle (frames, frame_bytes) of an h x w sensor, tag bits set too."""
    from spikereveal.stream.spikes import SpikeGeometry

    geometry = SpikeGeometry(h, w)
    packed = rng.integers(0, 256, (frames, geometry.frame_bytes), dtype=np.uint8)
    return geometry, packed


def _times(k: int, exposure: tuple[int, int]) -> list[int]:
    """K output times spread evenly over the exposure, as the engine spreads them."""
    from spikereveal.engine.windows import exposure_times

    return exposure_times(exposure[0], exposure[1], k)


def _gpu_cases(checks: Any) -> list[Any]:
    """checks.py's small cases, then each kernel on random data at the goal size (250x400, 137 frames, K=7)."""
    from spikereveal.stream.spikes import SpikeGeometry

    big = SpikeGeometry(250, 400)
    exposure = EXPOSURE
    large = [
        checks.Case(kernel, big, BUNDLE_FRAMES, exposure, 7, dtype=dtype, seed=8)
        for kernel, dtype in (
            ("unpack_windows", "float32"),
            ("unpack_windows", "float16"),
            ("tfp_counts", "int32"),
            ("tfp_counts", "float32"),
            ("sdm_upsample", "float32"),
        )
    ]
    return [*checks.shim_cases(), *large]


def _kernel_checks(runner: Any) -> list[Row]:
    """Every kernel case through the CUDA runner, bit for bit against the NumPy references."""
    try:
        checks = _checks_module()
        cases = _gpu_cases(checks)
    except Exception as exc:
        return [Row("kernel", "checks.py cases", "", f"error: {exc}", False)]
    rows = []
    for case in cases:
        try:
            rows.append(_case_row("kernel", case, checks.run_case(case, runner)))
        except Exception as exc:  # one broken case must not hide the others
            rows.append(Row("kernel", str(getattr(case, "name", case)), "", f"error: {exc}", False))
    return rows


def _weights(torch: Any) -> tuple[dict[str, Any], str]:
    """The default LDN weights when present and loadable, else a seeded random LDN (timings do not care)."""
    try:
        from spikereveal.engine.deblur import default_ldn_weights
        from spikereveal.engine.weights import load_ldn_state

        path = default_ldn_weights()
        if path.is_file():
            return load_ldn_state(path), str(path)
    except Exception:  # safetensors missing, a half-written file: fall back, the JSON says which ran
        pass
    from spikereveal.engine.ldn import LDN

    torch.manual_seed(0)
    return LDN().state_dict(), "random (seed 0)"


def _backend_checks(torch: Any, state: dict[str, Any]) -> list[Row]:
    """Each backend present against torch fp32 on the CPU, on 0..1 images and 0/1 spike windows."""
    from spikereveal.engine.backends import create_backend

    rng = np.random.default_rng(3)
    n, h, w = 2, 256, 384
    blur = rng.random((n, 3, h, w), dtype=np.float32)
    spikes = (rng.random((n, 21, h // 4, w // 4)) < 0.3).astype(np.float32)
    shape = f"{n}x{h}x{w}"
    with create_backend("torch", state) as cpu:
        reference = cpu.run(blur, spikes)
    scale = max(1.0, float(np.abs(reference).max()))
    candidates: list[tuple[str, str, str, dict[str, Any]]] = [
        ("torch cuda fp32 graphs", "fp32", "torch", {"device": "cuda", "precision": "fp32"}),
        ("torch cuda fp16 graphs", "fp16", "torch", {"device": "cuda", "precision": "fp16"}),
        (
            "torch cuda fp16 eager",
            "fp16",
            "torch",
            {"device": "cuda", "precision": "fp16", "cuda_graphs": False},
        ),
        ("onnxruntime cpu fp32", "fp32", "onnxruntime", {}),
    ]
    rows: list[Row] = []
    if importlib.util.find_spec("tensorrt") is not None:
        candidates.append(("tensorrt fp16", "fp16", "tensorrt", {}))
    else:
        rows.append(Row("backend", "tensorrt", shape, "skipped: tensorrt is not installed"))
    for label, precision, name, opts in candidates:
        try:
            with create_backend(name, state, **opts) as backend:
                out = backend.run(blur, spikes)
                out = backend.run(blur, spikes)  # the second run replays the captured graph
        except Exception as exc:
            if name in ("onnxruntime", "tensorrt") and "not available" in str(exc):
                rows.append(Row("backend", label, shape, f"skipped: {exc}"))
            else:
                rows.append(Row("backend", label, shape, f"error: {exc}", False))
            continue
        diff = float(np.abs(out - reference).max()) / scale
        tol = TOLERANCES[precision]
        rows.append(
            Row(
                "backend",
                label,
                shape,
                f"rel diff {diff:.2g} (<= {tol:g})",
                diff <= tol,
                {"rel_diff": diff, "tol": tol},
            )
        )
    return rows


def _event_ms(torch: Any, work: Callable[[], object], repeats: int = 20, warmup: int = 3) -> dict[str, float]:
    """Median and spread of ``work`` on torch's current stream, timed with CUDA events (ms)."""
    for _ in range(warmup):
        work()
    torch.cuda.synchronize()
    times = []
    for _ in range(repeats):
        start, stop = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        work()
        stop.record()
        stop.synchronize()
        times.append(start.elapsed_time(stop))
    q1, med, q3 = np.percentile(times, [25, 50, 75])
    return {"median_ms": float(med), "q1_ms": float(q1), "q3_ms": float(q3), "min_ms": float(min(times))}


def _timings(torch: Any, runner: Any, state: dict[str, Any], deadline: float) -> list[Row]:
    """CUDA-event timings per size and K: kernels, LDN fp16 (CUDA graph) and the whole bundle."""
    from spikereveal.engine.backends import create_backend

    rows: list[Row] = []
    rng = np.random.default_rng(5)
    with create_backend("torch", state, device="cuda", precision="fp16") as backend:
        for big_h, big_w in SIZES:
            geometry, packed = _bundle(rng, big_h // 4, big_w // 4)
            blur = rng.integers(0, 256, (big_h, big_w, 3), dtype=np.uint8)
            for k in KS:
                if time.monotonic() > deadline:
                    rows.append(Row("time", "(rest)", f"{big_h}x{big_w} K={k}", "skipped: time budget spent"))
                    return rows
                rows += _time_bundle(torch, runner, backend, geometry, packed, blur, k)
    return rows


def _time_bundle(
    torch: Any, runner: Any, backend: Any, geometry: Any, packed: np.ndarray, blur: np.ndarray, k: int
) -> list[Row]:
    """One size and K: each kernel, the LDN replay, and the whole bundle from pinned host memory."""
    from spikereveal.engine.kernels import ops

    big_h, big_w = blur.shape[:2]
    h, w = geometry.height, geometry.width
    shape = f"{big_h}x{big_w} K={k}"
    exposure = EXPOSURE
    times = _times(k, exposure)
    exposure_frames = exposure[1] - exposure[0] + 1
    host_packed = torch.from_numpy(packed).pin_memory()
    host_blur = torch.from_numpy(blur).pin_memory()
    dev_packed, dev_blur = host_packed.cuda(), host_blur.cuda()
    blur_in, spikes_in = backend.input_buffers(k, big_h, big_w)
    long_out = torch.empty((h, w), dtype=torch.int32, device="cuda")
    short_out = torch.empty((k, h, w), dtype=torch.int32, device="cuda")
    sdm_out = torch.empty((k, 3, big_h, big_w), dtype=torch.float32, device="cuda")
    host_out = torch.empty((k, 3, big_h, big_w), dtype=torch.float32).pin_memory()

    def unpack() -> None:
        ops.unpack_windows(dev_packed, geometry, times, spikes_in, runner=runner)

    def counts() -> None:
        ops.tfp_counts(dev_packed, geometry, exposure, times, long_out, short_out, runner=runner)

    def sdm() -> None:
        ops.sdm_upsample(
            long_out, short_out, dev_blur, sdm_out, exposure_frames=exposure_frames, runner=runner
        )

    def ldn() -> None:
        backend.run_device(blur_in, spikes_in)

    def bundle() -> None:
        dev_packed.copy_(host_packed, non_blocking=True)
        dev_blur.copy_(host_blur, non_blocking=True)
        # BGR uint8 (H, W, 3) -> the K blur inputs (K, 3, H, W) in 0..1, in the backend's dtype.
        blur_in.copy_((dev_blur.permute(2, 0, 1).unsqueeze(0) * (1.0 / 255.0)).expand_as(blur_in))
        unpack()
        counts()
        host_out.copy_(backend.run_device(blur_in, spikes_in), non_blocking=True)

    stages: list[tuple[str, Callable[[], object]]] = [
        ("unpack_windows fp16", unpack),
        ("tfp_counts", counts),
        ("sdm_upsample", sdm),
        ("ldn torch fp16 graph", ldn),
        ("bundle (H2D+kernels+LDN+D2H)", bundle),
    ]
    rows: list[Row] = []
    measured: dict[str, float] = {}
    for name, work in stages:
        try:
            stats = _event_ms(torch, work)
        except Exception as exc:
            rows.append(Row("time", name, shape, f"error: {exc}", False))
            continue
        measured[name] = stats["median_ms"]
        rows.append(Row("time", name, shape, f"{stats['median_ms']:.3f} ms", None, stats))
    if big_h == 1000:  # the goals are stated at 1000x1600 (a 250x400 sensor)
        if "unpack_windows fp16" in measured and "tfp_counts" in measured:
            total = measured["unpack_windows fp16"] + measured["tfp_counts"]
            rows.append(_goal("goal kernels", shape, total, GOAL_KERNELS_MS, "ms"))
        if "ldn torch fp16 graph" in measured:
            per_frame = measured["ldn torch fp16 graph"] / k
            rows.append(_goal("goal LDN per frame", shape, per_frame, GOAL_LDN_MS_PER_FRAME, "ms/frame"))
        if "bundle (H2D+kernels+LDN+D2H)" in measured and k == 7:
            total = measured["bundle (H2D+kernels+LDN+D2H)"]
            rows.append(_goal("goal bundle", shape, total, GOAL_BUNDLE_K7_MS, "ms"))
    return rows


def _goal(name: str, shape: str, value: float, goal: float, unit: str) -> Row:
    met = value <= goal
    text = f"{value:.3f} {unit} ({'met' if met else 'missed'}: <= {goal:g})"
    # A missed goal is reported, not failed: the exit code is about correctness.
    return Row("goal", name, shape, text, None, {"value": value, "goal": goal, "met": met})


def run_gpu() -> tuple[list[Row], dict[str, Any]]:
    """Checks and timings on the GPU; (rows, machine facts). SelftestUnavailable without a GPU."""
    torch = _require_gpu()
    deadline = time.monotonic() + TIME_BUDGET_S
    machine = _machine(torch)
    rows: list[Row] = []
    runner = None
    try:
        from spikereveal.engine.kernels.cuda_loader import CudaRunner

        runner = CudaRunner()
        machine["kernel_cache"] = str(runner.compiled.path)
    except Exception as exc:
        rows.append(Row("kernel", "compile spikes.cu", "", f"error: {exc}", False))
    if runner is not None:
        rows += _kernel_checks(runner)
    state, source = _weights(torch)
    machine["weights"] = source
    try:
        rows += _backend_checks(torch, state)
    except Exception as exc:
        rows.append(Row("backend", "torch cpu fp32 reference", "", f"error: {exc}", False))
    if runner is not None:
        rows += _timings(torch, runner, state, deadline)
    else:
        rows.append(Row("time", "kernels and bundle", "", "skipped: the kernels did not compile"))
    return rows, machine


# ---------------------------------------------------------------------------------------------- entry
def write_json(path: Path, mode: str, rows: Sequence[Row], machine: dict[str, Any], elapsed_s: float) -> None:
    """The rows and the machine facts as JSON (the folder is made if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {
        "mode": mode,
        "elapsed_s": round(elapsed_s, 2),
        "machine": machine,
        "rows": [asdict(r) for r in rows],
    }
    path.write_text(json.dumps(payload, indent=2) + "\n")


def run(mode: str, json_path: Path | None = None, echo: Callable[[str], None] = print) -> int:
    """Run ``mode`` ("shim" or "gpu"), print the table last, write JSON (--gpu always); the exit code."""
    started = time.monotonic()
    try:
        if mode == "shim":
            rows, machine = run_shim(), {"python": platform.python_version(), "host": platform.node()}
        elif mode == "gpu":
            rows, machine = run_gpu()
        else:
            raise SelftestUnavailable(f"selftest: mode {mode!r} is not 'shim' or 'gpu'")
    except SelftestUnavailable as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    elapsed = time.monotonic() - started
    if mode == "gpu" or json_path is not None:
        path = json_path if json_path is not None else DEFAULT_JSON
        write_json(path, mode, rows, machine, elapsed)
        echo(f"wrote {path}")
    failed = [r for r in rows if r.ok is False]
    echo(format_table(rows))
    echo(
        f"{len(rows) - len(failed)} of {len(rows)} rows without failure, {len(failed)} failed, {elapsed:.1f} s"
    )
    return 1 if failed else 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m spikereveal.tools.selftest --shim|--gpu [--json PATH]`` (no click needed)."""
    parser = argparse.ArgumentParser(prog="spikereveal selftest", description=__doc__.splitlines()[0])
    group = parser.add_mutually_exclusive_group(required=True)
    group.add_argument(
        "--shim", action="store_const", const="shim", dest="mode", help="kernel checks on the CPU shim"
    )
    group.add_argument(
        "--gpu", action="store_const", const="gpu", dest="mode", help="checks and timings on a GPU"
    )
    parser.add_argument(
        "--json", type=Path, default=None, help=f"where to write JSON (--gpu default: {DEFAULT_JSON})"
    )
    args = parser.parse_args(argv)
    return run(args.mode, args.json)


if __name__ == "__main__":
    sys.exit(main())
