"""``spikereveal bench model``: per-frame LDN latency on each CPU backend, against plain torch eager.

For each blur size (default 1000x1600, the RSB size, and 720x1280, the GOPRO size) one frame (N=1)
with its 21-frame spike window at 1/4 resolution is run through every variant:

- ``torch-eager`` (the baseline): the LDN in eval mode under inference_mode, NCHW, fp32, torch's
  default thread count; what a straightforward PyTorch port does;
- ``eager-keepmem``: the baseline with glibc told to keep freed memory (engine.backends.malloc),
  to show how much of the gain is the allocator alone;
- ``torch``: the project's torch backend (channels-last layout, concat-free head, freed memory
  kept, ``--threads``);
- ``onnxruntime``: the project's ONNX export in onnxruntime (all graph optimisations, NCHWc);
- ``torch-bf16``: the torch backend under bf16 autocast (reduced precision: see its max diff);
  run by default only on a CPU with bf16 units (elsewhere it is ~10x slower than fp32);
- ``torch-compile`` (not run by default: ~20 s of compiling per size): torch.compile + freezing.

Each variant and size is measured in a fresh process by default (``--no-isolate``: all in this
one, baseline first), with its warm-up and timed runs in one block.
Reported per variant: median and spread (quartiles, min/max) of the seconds per frame, the ratio
baseline median / variant median from the same run, and the max abs difference of its output from
the baseline's. Weights are a seeded random initialisation unless ``--weights`` is given (the
arithmetic, hence the speed, does not depend on them).
"""

from __future__ import annotations

import os
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click
import numpy as np

from spikereveal.tools.bench_common import (
    Timing,
    format_table,
    json_option,
    machine_info,
    time_repeats,
    write_json,
)
from spikereveal.tools.cli_types import parse_size


@dataclass(frozen=True)
class Variant:
    """One way of running the LDN: a registered backend with options ("eager": the baseline)."""

    name: str
    backend: str
    options: dict[str, object] = field(default_factory=dict)
    precision: str = "fp32"
    tuned_threads: bool = True  # False for the baseline: torch's default threads, untouched
    description: str = ""


BASELINE = "torch-eager"
VARIANTS: dict[str, Variant] = {
    v.name: v
    for v in (
        Variant(
            BASELINE,
            "eager",
            tuned_threads=False,
            description="plain PyTorch eager LDN, NCHW, fp32, default threads and malloc",
        ),
        Variant(
            "eager-keepmem",
            "eager",
            {"keep_memory": True},
            tuned_threads=False,
            description="the baseline with freed memory kept (shows what malloc alone gives)",
        ),
        Variant(
            "torch", "torch", {}, description="torch backend: channels-last, concat-free head, memory kept"
        ),
        Variant("onnxruntime", "onnxruntime", {}, description="onnxruntime CPU, ORT_ENABLE_ALL, fp32"),
        Variant(
            "torch-bf16",
            "torch",
            # Forced: the bench measures what was asked; the backend itself refuses bf16 on a CPU
            # without bf16 units, and the default variants leave it out there.
            {"precision": "bf16", "force_precision": True},
            "bf16",
            description="torch backend, bf16 autocast",
        ),
        Variant(
            "torch-compile", "torch", {"compile": True}, description="torch.compile (inductor, freezing)"
        ),
    )
}
#: The issue's goal for the best fp32 CPU backend at 1000x1600 (x torch eager).
GOAL_RATIO = 3.0


def cpu_has_bf16_units() -> bool:
    """AVX512-BF16 or AMX in /proc/cpuinfo (no torch import): bf16 is only offered where it is fast.

    Measured: bf16 ran the LDN ~5x faster than fp32 on a CPU with bf16 units and at 0.09x on an
    AMD EPYC with AVX2 only (oneDNN emulates it there).
    """
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


DEFAULT_VARIANTS = (BASELINE, "eager-keepmem", "torch", "onnxruntime") + (
    ("torch-bf16",) if cpu_has_bf16_units() else ()
)


@dataclass(frozen=True)
class ModelBenchConfig:
    """Settings of one ``bench model`` run."""

    sizes: tuple[tuple[int, int], ...] = ((1000, 1600), (720, 1280))
    variants: tuple[str, ...] = DEFAULT_VARIANTS
    repeats: int = 5
    warmup: int = 1
    threads: int | None = None  # None: all usable cores for the tuned variants
    weights: str | None = None
    seed: int = 0
    isolate: bool = True  # each (variant, size) in a fresh process

    def __post_init__(self) -> None:
        if not self.sizes:
            raise ValueError("give at least one size")
        for h, w in self.sizes:
            if h <= 0 or w <= 0 or h % 4 or w % 4:
                raise ValueError(f"size {h}x{w}: height and width must be positive multiples of 4")
        unknown = [v for v in self.variants if v not in VARIANTS]
        if unknown:
            raise ValueError(f"unknown variant(s) {', '.join(unknown)}; choose from {', '.join(VARIANTS)}")
        if self.repeats < 1 or self.warmup < 0:
            raise ValueError("repeats must be >= 1 and warmup >= 0")


def _state_dict(config: ModelBenchConfig) -> tuple[dict[str, object], str]:
    import torch

    from spikereveal.engine.ldn import LDN
    from spikereveal.engine.weights import load_ldn_state

    if config.weights is not None:
        return load_ldn_state(config.weights), str(config.weights)
    torch.manual_seed(config.seed)
    return LDN().state_dict(), f"random init (seed {config.seed})"


class EagerBaseline:
    """What a straightforward PyTorch port runs: the LDN module as written, NCHW, fp32, eval mode,
    under inference_mode, with torch's default settings. Nothing here is tuned on purpose."""

    name = BASELINE

    def __init__(self, state_dict: dict[str, object], keep_memory: bool = False) -> None:
        from spikereveal.engine.backends.malloc import keep_freed_memory
        from spikereveal.engine.ldn import LDN

        if keep_memory:
            keep_freed_memory()
        self.model = LDN().eval()
        self.model.load_state_dict(state_dict, strict=True)

    def run(self, blur: np.ndarray, spikes: np.ndarray) -> np.ndarray:
        import torch

        with torch.inference_mode():
            return self.model(torch.from_numpy(blur), torch.from_numpy(spikes)).numpy()

    def close(self) -> None:
        self.model = None


def _inputs(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    blur = rng.random((1, 3, height, width), dtype=np.float32)
    spikes = (rng.random((1, 21, height // 4, width // 4)) < 0.5).astype(np.float32)
    return blur, spikes


@dataclass(frozen=True)
class _Threads:
    tuned: int  # intra-op threads of the tuned variants
    default: int  # torch's own default, restored for the baseline


def _open_variant(variant: Variant, state: dict[str, object], threads: _Threads, cache_dir: str) -> object:
    import torch

    from spikereveal.engine.backends import create_backend

    if variant.backend == "eager":
        torch.set_num_threads(threads.default)
        return EagerBaseline(state, **variant.options)
    opts = dict(variant.options)
    if variant.backend == "onnxruntime":
        opts["cache_dir"] = cache_dir  # a fresh export per bench run (its time is in setup_s)
    return create_backend(variant.backend, state, threads=threads.tuned, **opts)


def _measure(
    name: str,
    size: tuple[int, int],
    state: dict[str, object],
    config: ModelBenchConfig,
    threads: _Threads,
    cache_dir: str,
) -> tuple[tuple[float, ...], float, np.ndarray, bool]:
    """Open one variant, run it once (setup), time it; returns (seconds, setup_s, output, malloc kept).

    Module-level so that a fresh child process can run it.
    """
    import torch

    from spikereveal.engine.backends.malloc import freed_memory_kept

    variant = VARIANTS[name]
    blur, spikes = _inputs(*size, config.seed)
    t0 = time.perf_counter()
    backend = _open_variant(variant, state, threads, cache_dir)
    try:
        out = backend.run(blur, spikes)  # first run: compile/allocate, untimed
        setup_s = time.perf_counter() - t0
        # torch's thread count is process-wide: set this variant's (the baseline: torch's default).
        torch.set_num_threads(threads.tuned if variant.tuned_threads else threads.default)
        timing = time_repeats(lambda: backend.run(blur, spikes), repeats=config.repeats, warmup=config.warmup)
    finally:
        backend.close()
        torch.set_num_threads(threads.default)
    return timing.seconds, setup_s, out, freed_memory_kept()


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def run_model_bench(config: ModelBenchConfig, *, progress: bool = True) -> dict[str, object]:
    """Measure as described in the module docstring; returns the JSON payload.

    With ``config.isolate`` every (variant, size) runs in a fresh process: the baseline then really
    has default settings (process-wide state such as torch threads, glibc's malloc settings and
    its heap history, or onnxruntime's spinning threads cannot leak between measurements; a plain
    eager run after others in one process was measured up to 2x slower). Without it, everything
    runs here, baseline first.
    """
    import multiprocessing

    import torch
    from tqdm import tqdm

    from spikereveal.engine.backends import usable_cores

    load_start = _load_average()
    state, weights_label = _state_dict(config)
    threads = _Threads(
        tuned=config.threads if config.threads is not None else usable_cores(),
        default=torch.get_num_threads(),
    )
    names = [BASELINE, *[v for v in config.variants if v != BASELINE]]  # baseline always, first
    base_out: dict[tuple[int, int], np.ndarray] = {}
    base_s: dict[tuple[int, int], float] = {}
    base_min: dict[tuple[int, int], float] = {}
    rows: dict[tuple[tuple[int, int], str], dict[str, object]] = {}
    bar = tqdm(total=len(config.sizes) * len(names), desc="bench model", disable=not progress, leave=False)
    spawn = multiprocessing.get_context("spawn")
    with tempfile.TemporaryDirectory(prefix="bench-model-") as cache_dir:
        for name in names:
            variant = VARIANTS[name]
            for size in config.sizes:
                args = (name, size, state, config, threads, cache_dir)
                if config.isolate:
                    with spawn.Pool(processes=1, maxtasksperchild=1) as pool:
                        seconds, setup_s, out, kept = pool.apply(_measure, args)
                else:
                    seconds, setup_s, out, kept = _measure(*args)
                timing = Timing(seconds)
                if name == BASELINE:
                    base_out[size], base_s[size], base_min[size] = out, timing.median_s, timing.min_s
                rows[(size, name)] = {
                    "size": list(size),
                    "variant": name,
                    "backend": variant.backend,
                    "options": dict(variant.options),
                    "precision": variant.precision,
                    "threads": threads.tuned if variant.tuned_threads else threads.default,
                    "description": variant.description,
                    "fresh_process": config.isolate,
                    "freed_memory_kept": kept,
                    **timing.to_dict(),
                    "setup_s": setup_s,
                    "frames_per_s": timing.per_second(1),
                    "ratio_vs_baseline": base_s[size] / timing.median_s,
                    # Fastest runs compared: less sensitive to other processes on a shared machine.
                    "ratio_of_min_vs_baseline": base_min[size] / timing.min_s,
                    "max_abs_diff_vs_baseline": float(np.abs(out - base_out[size]).max()),
                }
                bar.update()
    bar.close()
    results = [rows[(size, name)] for size in config.sizes for name in names]
    summary = []
    for size in config.sizes:
        # Candidates are the backends (not the eager diagnostics), at full precision.
        fp32 = [
            rows[(size, n)]
            for n in names
            if VARIANTS[n].backend != "eager" and VARIANTS[n].precision == "fp32"
        ]
        best = max(fp32, key=lambda r: r["ratio_vs_baseline"], default=None)
        summary.append(
            {
                "size": list(size),
                "baseline_median_s": base_s[size],
                "best_fp32_variant": best["variant"] if best else None,
                "best_fp32_ratio": best["ratio_vs_baseline"] if best else None,
                "best_fp32_ratio_of_min": best["ratio_of_min_vs_baseline"] if best else None,
            }
        )
    return {
        "bench": "model",
        "machine": machine_info(packages=["torch", "onnxruntime", "onnx"]),
        "config": {**asdict(config), "sizes": [list(s) for s in config.sizes]},
        "weights": weights_label,
        "batch": 1,
        "baseline": f"{BASELINE}: {VARIANTS[BASELINE].description}",
        "default_torch_threads": threads.default,
        "threads": threads.tuned,
        # Other processes' load: timings on a shared machine are only as quiet as this.
        "load_average_1min": {"start": load_start, "end": _load_average()},
        "results": results,
        "summary": summary,
    }


def format_model_table(payload: dict[str, object]) -> str:
    """The results as a text table, one row per (size, variant), then one line per size."""
    rows = []
    for r in payload["results"]:  # type: ignore[union-attr]
        rows.append(
            [
                f"{r['size'][0]}x{r['size'][1]}",
                r["variant"],
                r["precision"],
                r["threads"],
                f"{1e3 * r['median_s']:.1f}",
                f"{1e3 * r['q1_s']:.1f}-{1e3 * r['q3_s']:.1f}",
                f"{1e3 * r['min_s']:.1f}-{1e3 * r['max_s']:.1f}",
                f"{r['frames_per_s']:.2f}",
                f"{r['ratio_vs_baseline']:.2f}x",
                f"{r['ratio_of_min_vs_baseline']:.2f}x",
                f"{r['max_abs_diff_vs_baseline']:.1e}",
            ]
        )
    table = format_table(
        [
            "size",
            "variant",
            "prec",
            "thr",
            "median ms",
            "q1-q3 ms",
            "min-max ms",
            "fps",
            "vs eager",
            "(min)",
            "max|diff|",
        ],
        rows,
    )
    lines = [table]
    for s in payload["summary"]:  # type: ignore[union-attr]
        if s["best_fp32_variant"] is not None:
            lines.append(
                f"{s['size'][0]}x{s['size'][1]}: best fp32 {s['best_fp32_variant']} "
                f"{s['best_fp32_ratio']:.2f}x faster than {BASELINE} ({s['baseline_median_s']:.3f} s) "
                f"at the median, {s['best_fp32_ratio_of_min']:.2f}x fastest run to fastest run"
            )
    load = payload.get("load_average_1min") or {}
    if load.get("start") is not None:
        lines.append(
            f"load average (1 min) of the machine: {load['start']:.2f} at start, {load['end']:.2f} at end"
        )
    return "\n".join(lines)


def plot_model(payload: dict[str, object], path: Path) -> Path:
    """PNG: seconds per frame of every timed run (one box per size and variant) and the ratios to eager."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows: list[dict[str, object]] = payload["results"]  # type: ignore[assignment]
    labels = [f"{r['size'][0]}x{r['size'][1]} {r['variant']} ({r['precision']})" for r in rows]  # type: ignore[index]
    colors = ["tab:gray" if r["backend"] == "eager" else "tab:green" for r in rows]
    ys = range(1, len(rows) + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 0.5 * len(rows) + 2.2), sharey=True)
    box = left.boxplot(
        [[1e3 * s for s in r["seconds"]] for r in rows],  # type: ignore[union-attr]
        orientation="horizontal",
        patch_artist=True,
        widths=0.6,
    )
    for patch, color in zip(box["boxes"], colors, strict=True):
        patch.set_facecolor(color)
        patch.set_alpha(0.5)
    left.set_yticks(list(ys), labels, fontsize=8)
    left.set_xscale("log")
    left.set_xlabel("ms per frame (one value per timed run)")
    ratios = [float(r["ratio_vs_baseline"]) for r in rows]  # type: ignore[arg-type]
    right.barh(list(ys), ratios, color=colors, alpha=0.7)
    for y, ratio in zip(ys, ratios, strict=True):
        right.text(ratio, y, f" {ratio:.2f}x", va="center", fontsize=8)
    right.axvline(1.0, color="tab:gray", linestyle="--")
    right.axvline(GOAL_RATIO, color="tab:orange", linestyle=":", label=f"goal {GOAL_RATIO:.0f}x")
    right.set_xlabel(f"speed-up over {BASELINE} (medians, same run)")
    right.legend(fontsize=8, loc="lower right")
    right.invert_yaxis()
    load = payload.get("load_average_1min") or {}
    load_text = f", load {load['start']:.1f}..{load['end']:.1f}" if load.get("start") is not None else ""  # type: ignore[union-attr]
    fig.suptitle(f"spikereveal bench model: LDN per frame on CPU, {payload['threads']} threads{load_text}")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _parse_sizes(ctx: click.Context, param: click.Parameter, value: str) -> tuple[tuple[int, int], ...]:
    try:
        sizes = tuple(parse_size(part) for part in value.split(",") if part.strip())
    except ValueError as exc:
        raise click.BadParameter(str(exc), ctx, param) from exc
    if not sizes:
        raise click.BadParameter("give at least one size HxW", ctx, param)
    for h, w in sizes:
        if h % 4 or w % 4:
            raise click.BadParameter(
                f"{h}x{w}: blur sizes must be multiples of 4 (spikes are 1/4)", ctx, param
            )
    return sizes


def _parse_variants(ctx: click.Context, param: click.Parameter, value: str) -> tuple[str, ...]:
    names = tuple(v.strip() for v in value.split(",") if v.strip())
    unknown = [v for v in names if v not in VARIANTS]
    if unknown or not names:
        raise click.BadParameter(
            f"unknown variant(s) {', '.join(unknown) or '(none given)'}; choose from {', '.join(VARIANTS)}",
            ctx,
            param,
        )
    return names


@click.command("model")
@click.option(
    "--sizes",
    default="1000x1600,720x1280",
    show_default=True,
    callback=_parse_sizes,
    help="Blur sizes HxW, comma-separated (spikes are 1/4 per side).",
)
@click.option(
    "--variants",
    default=",".join(DEFAULT_VARIANTS),
    show_default=True,
    callback=_parse_variants,
    help=f"Variants to run ({', '.join(VARIANTS)}); the {BASELINE} baseline always runs.",
)
@click.option("--repeats", type=click.IntRange(min=1), default=5, show_default=True, help="Timed runs each.")
@click.option("--warmup", type=click.IntRange(min=0), default=1, show_default=True, help="Untimed runs each.")
@click.option(
    "--threads", type=click.IntRange(min=1), default=None, help="Threads of the tuned variants [all cores]."
)
@click.option(
    "--weights",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="LDN weights (.pth/.safetensors); default: seeded random init (same speed).",
)
@click.option(
    "--isolate/--no-isolate",
    default=True,
    show_default=True,
    help="Measure each variant and size in a fresh process (clean allocator, threads).",
)
@json_option("model")
def model_command(
    sizes: Sequence[tuple[int, int]],
    variants: Sequence[str],
    repeats: int,
    warmup: int,
    threads: int | None,
    weights: Path | None,
    isolate: bool,
    json_path: Path,
) -> None:
    """Per-frame LDN latency of each CPU backend, and its speed-up over plain torch eager."""
    config = ModelBenchConfig(
        sizes=tuple(sizes),
        variants=tuple(variants),
        repeats=repeats,
        warmup=warmup,
        threads=threads,
        weights=str(weights) if weights is not None else None,
        isolate=isolate,
    )
    payload = run_model_bench(config)
    click.echo(format_model_table(payload))
    click.echo(f"wrote {write_json(json_path, payload)}")
    click.echo(f"wrote {plot_model(payload, json_path.with_suffix('.png'))}")
