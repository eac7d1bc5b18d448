"""``spikereveal bench model``: per-frame LDN latency on each CPU backend, against plain torch eager.

For each blur size (default 1000x1600, the RSB size, and 720x1280, the GOPRO size) one frame (N=1)
with its 21-frame spike window at 1/4 resolution is run through every variant:

- ``torch-eager`` (the baseline): the LDN in eval mode under inference_mode, NCHW, fp32, torch's
  default thread count; what a straightforward PyTorch port does;
- ``torch``: the project's torch backend (channels-last layout, ``--threads``);
- ``onnxruntime``: the project's ONNX export in onnxruntime (all graph optimisations, NCHWc);
- ``torch-bf16``: the torch backend under bf16 autocast (reduced precision: see its max diff);
- ``torch-compile`` (not run by default: ~20 s of compiling per size): torch.compile + freezing.

Each variant runs its warm-up and timed runs in one block, baseline first. Reported per variant: median and spread (quartiles,
min/max) of the seconds per frame, the ratio baseline median / variant median from the same run,
and the max abs difference of its output from the baseline's. Weights are a seeded random
initialisation unless ``--weights`` is given (the arithmetic, hence the speed, does not depend on
them).
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import click
import numpy as np
from spikereveal.tools.bench_common import format_table, machine_info, time_repeats, write_json
from spikereveal.tools.cli_types import parse_size


@dataclass(frozen=True)
class Variant:
    """One way of running the LDN: a registered backend with options."""

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
            "torch",
            {"channels_last": False},
            tuned_threads=False,
            description="plain PyTorch eager, NCHW, fp32, default threads",
        ),
        Variant("torch", "torch", {}, description="torch backend: channels-last, fp32"),
        Variant("onnxruntime", "onnxruntime", {}, description="onnxruntime CPU, ORT_ENABLE_ALL, fp32"),
        Variant(
            "torch-bf16", "torch", {"precision": "bf16"}, "bf16", description="channels-last, bf16 autocast"
        ),
        Variant(
            "torch-compile", "torch", {"compile": True}, description="torch.compile (inductor, freezing)"
        ),
    )
}
DEFAULT_VARIANTS = (BASELINE, "torch", "onnxruntime", "torch-bf16")


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


def _inputs(height: int, width: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    blur = rng.random((1, 3, height, width), dtype=np.float32)
    spikes = (rng.random((1, 21, height // 4, width // 4)) < 0.5).astype(np.float32)
    return blur, spikes


def run_model_bench(config: ModelBenchConfig, *, progress: bool = True) -> dict[str, object]:
    """Measure as described in the module docstring; returns the JSON payload."""
    import torch
    from spikereveal.engine.backends import create_backend, usable_cores
    from tqdm import tqdm

    state, weights_label = _state_dict(config)
    default_threads = torch.get_num_threads()
    threads = config.threads if config.threads is not None else usable_cores()
    names = [BASELINE, *[v for v in config.variants if v != BASELINE]]  # baseline always, first
    results: list[dict[str, object]] = []
    summary: list[dict[str, object]] = []
    bar = tqdm(total=len(config.sizes) * len(names), desc="bench model", disable=not progress, leave=False)
    with tempfile.TemporaryDirectory(prefix="bench-model-") as cache_dir:
        for height, width in config.sizes:
            blur, spikes = _inputs(height, width, config.seed)
            backends = {}
            setup_s: dict[str, float] = {}
            outputs: dict[str, np.ndarray] = {}
            try:
                for name in names:
                    variant = VARIANTS[name]
                    opts = dict(variant.options)
                    if variant.backend == "onnxruntime":
                        opts["cache_dir"] = cache_dir
                    t0 = time.perf_counter()
                    backend = create_backend(
                        variant.backend, state, threads=threads if variant.tuned_threads else None, **opts
                    )
                    outputs[name] = backend.run(blur, spikes)  # first run: compile/allocate, untimed
                    setup_s[name] = time.perf_counter() - t0
                    backends[name] = backend
                    bar.update()

                def work_for(name: str) -> Callable[[], object]:
                    backend = backends[name]
                    variant = VARIANTS[name]

                    def work() -> object:
                        # torch's thread count is process-wide: the baseline gets the default back.
                        if variant.backend == "torch":
                            torch.set_num_threads(threads if variant.tuned_threads else default_threads)
                        return backend.run(blur, spikes)

                    return work

                # One variant at a time: onnxruntime's idle threads spin for a while after a run
                # and would slow whatever runs next if the variants were interleaved.
                timings = {
                    n: time_repeats(work_for(n), repeats=config.repeats, warmup=config.warmup) for n in names
                }
            finally:
                for backend in backends.values():
                    backend.close()
                torch.set_num_threads(default_threads)
            base = timings[BASELINE].median_s
            best: tuple[str, float] | None = None
            for name in names:
                timing, variant = timings[name], VARIANTS[name]
                ratio = base / timing.median_s
                diff = float(np.abs(outputs[name] - outputs[BASELINE]).max())
                results.append(
                    {
                        "size": [height, width],
                        "variant": name,
                        "backend": variant.backend,
                        "options": dict(variant.options),
                        "precision": variant.precision,
                        "threads": threads if variant.tuned_threads else default_threads,
                        "description": variant.description,
                        **timing.to_dict(),
                        "setup_s": setup_s[name],
                        "frames_per_s": timing.per_second(1),
                        "ratio_vs_baseline": ratio,
                        "max_abs_diff_vs_baseline": diff,
                    }
                )
                if variant.precision == "fp32" and name != BASELINE and (best is None or ratio > best[1]):
                    best = (name, ratio)
            summary.append(
                {
                    "size": [height, width],
                    "baseline_median_s": base,
                    "best_fp32_variant": best[0] if best else None,
                    "best_fp32_ratio": best[1] if best else None,
                }
            )
    bar.close()
    return {
        "bench": "model",
        "machine": machine_info(packages=["torch", "onnxruntime", "onnx"]),
        "config": {**asdict(config), "sizes": [list(s) for s in config.sizes]},
        "weights": weights_label,
        "batch": 1,
        "baseline": f"{BASELINE}: {VARIANTS[BASELINE].description}",
        "default_torch_threads": default_threads,
        "threads": threads,
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
            "max|diff|",
        ],
        rows,
    )
    lines = [table]
    for s in payload["summary"]:  # type: ignore[union-attr]
        if s["best_fp32_variant"] is not None:
            lines.append(
                f"{s['size'][0]}x{s['size'][1]}: best fp32 {s['best_fp32_variant']} "
                f"{s['best_fp32_ratio']:.2f}x faster than {BASELINE} ({s['baseline_median_s']:.3f} s)"
            )
    return "\n".join(lines)


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
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=Path("build/bench/model.json"),
    show_default=True,
)
def model_command(
    sizes: Sequence[tuple[int, int]],
    variants: Sequence[str],
    repeats: int,
    warmup: int,
    threads: int | None,
    weights: Path | None,
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
    )
    payload = run_model_bench(config)
    click.echo(format_model_table(payload))
    click.echo(f"wrote {write_json(json_path, payload)}")
