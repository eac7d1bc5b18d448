"""``spikereveal bench batch``: samples/s of ``spikereveal batch`` for 1 and 2 workers, Ray vs the local pool.

One run simulates a small set (the built-in pan, ``--samples`` exposures) in a temporary folder and
deblurs it with every runner (``local``: the process pool; ``ray``: a fresh local Ray cluster with
``num_cpus`` = workers, where Ray is installed) at every worker count, each into a fresh folder.
Samples/s counts from all workers ready (model loaded) to the last sample written, so it is the
steady rate a large set sees; the start-up (process spawn or Ray start, model load) is reported
beside it. Outputs: a table, JSON (``build/bench/batch.json``) and a bar plot beside the JSON.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import click

from spikereveal.tools.bench_common import format_table, json_option, machine_info, write_json
from spikereveal.tools.cli_types import SIZE


def run_batch_bench(
    *,
    samples: int,
    spike_size: tuple[int, int],
    workers: tuple[int, ...],
    runners: tuple[str, ...],
    model: str,
    weights: str | None,
    times: int,
) -> dict[str, Any]:
    """Time every (runner, workers) pair on one simulated set; returns the JSON payload."""
    from spikereveal.capture.scenes import pan_scene
    from spikereveal.tools.batch import BatchConfig, run_batch
    from spikereveal.tools.simulate import SimulationConfig, simulate_dataset

    rows = []
    with tempfile.TemporaryDirectory(prefix="bench-batch-") as tmp:
        data = Path(tmp) / "data"
        sim = SimulationConfig(spike_size=spike_size, seed=0)
        frames = pan_scene(sim.frames_per_sample * samples, sim.blur_size)
        simulate_dataset(frames, sim, data, samples=samples, source="builtin:pan", progress=False)
        for runner in runners:
            for n in workers:
                out = Path(tmp) / f"out-{runner}-{n}"
                config = BatchConfig(
                    data=data,
                    out=out,
                    model=model,
                    weights=weights,
                    times=times,
                    workers=n,
                    ray="auto" if runner == "ray" else "local",
                )
                summary = run_batch(config, progress=False)
                rows.append(
                    {
                        "runner": runner,
                        "workers": n,
                        "samples": summary.done,
                        "failed": summary.failed,
                        "seconds": summary.seconds,
                        "startup_s": summary.startup_s,
                        "samples_per_s": summary.samples_per_s,
                        "backend": summary.backend,
                    }
                )
    for row in rows:
        base = next(r for r in rows if r["runner"] == row["runner"] and r["workers"] == min(workers))
        row["speedup"] = row["samples_per_s"] / base["samples_per_s"] if base["samples_per_s"] else None
    return {
        "bench": "batch",
        "config": {
            "samples": samples,
            "spike_size": list(spike_size),
            "blur_size": [4 * spike_size[0], 4 * spike_size[1]],
            "model": model,
            "weights": weights,
            "times": times,
        },
        "machine": machine_info(["torch", "ray"]),
        "results": rows,
    }


def format_batch_table(payload: dict[str, Any]) -> str:
    headers = ["runner", "workers", "samples", "samples/s", "speedup", "work s", "startup s"]
    rows = [
        [
            r["runner"],
            r["workers"],
            r["samples"],
            f"{r['samples_per_s']:.2f}",
            f"{r['speedup']:.2f}x" if r["speedup"] else "-",
            f"{r['seconds']:.2f}",
            f"{r['startup_s']:.2f}",
        ]
        for r in payload["results"]
    ]
    return format_table(headers, rows)


def plot_batch(payload: dict[str, Any], path: Path) -> Path:
    """Bars of samples/s per worker count, one colour per runner."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = payload["results"]
    runners = list(dict.fromkeys(r["runner"] for r in rows))
    counts = sorted({r["workers"] for r in rows})
    fig, ax = plt.subplots(figsize=(6, 4))
    width = 0.8 / len(runners)
    for i, runner in enumerate(runners):
        values = [
            next((r["samples_per_s"] for r in rows if r["runner"] == runner and r["workers"] == n), 0.0)
            for n in counts
        ]
        ax.bar(
            [c + (i - (len(runners) - 1) / 2) * width for c in range(len(counts))],
            values,
            width,
            label=runner,
        )
    cfg = payload["config"]
    ax.set_xticks(range(len(counts)), [f"{n} worker{'s' if n > 1 else ''}" for n in counts])
    ax.set_ylabel("samples / s")
    ax.set_title(
        f"spikereveal batch: {cfg['model']}, {cfg['blur_size'][0]}x{cfg['blur_size'][1]}, K={cfg['times']}"
    )
    ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@click.command("batch")
@click.option(
    "--samples", type=click.IntRange(min=1), default=8, show_default=True, help="Simulated exposures."
)
@click.option(
    "--spike-size", type=SIZE, default="32x48", show_default=True, help="Spike frame size (blur 4x)."
)
@click.option("--workers", default="1,2", show_default=True, help="Worker counts, comma-separated.")
@click.option(
    "--runners", default="local,ray", show_default=True, help="local and/or ray (ray: if installed)."
)
@click.option("--model", type=click.Choice(["sdm", "ldn"]), default="sdm", show_default=True)
@click.option("--weights", default=None, help="LDN weights (default: the project's own).")
@click.option(
    "--times", type=click.IntRange(min=1), default=5, show_default=True, help="Frames K per sample."
)
@json_option("batch")
def batch_bench_command(
    samples: int,
    spike_size: tuple[int, int],
    workers: str,
    runners: str,
    model: str,
    weights: str | None,
    times: int,
    json_path: Path,
) -> None:
    """Samples/s of `spikereveal batch` for each worker count, Ray against the local pool."""
    from spikereveal.tools.batch import ray_available

    try:
        counts = tuple(int(w) for w in workers.split(","))
    except ValueError:
        raise click.BadParameter(f"{workers!r}: expected counts like 1,2", param_hint="--workers") from None
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"{workers!r}: counts must be >= 1", param_hint="--workers")
    chosen = tuple(r.strip() for r in runners.split(","))
    unknown = [r for r in chosen if r not in ("local", "ray")]
    if unknown:
        raise click.BadParameter(f"{unknown[0]!r}: expected local or ray", param_hint="--runners")
    if "ray" in chosen and not ray_available():
        click.echo("note: ray is not installed; timing the local pool only", err=True)
        chosen = tuple(r for r in chosen if r != "ray")
    if model == "ldn":
        from spikereveal.engine.deblur import ldn_weights

        weights = str(ldn_weights(weights))
    payload = run_batch_bench(
        samples=samples,
        spike_size=spike_size,
        workers=counts,
        runners=chosen,
        model=model,
        weights=weights,
        times=times,
    )
    click.echo(format_batch_table(payload))
    written = write_json(json_path, payload)
    plot = plot_batch(payload, written.with_suffix(".png"))
    click.echo(f"wrote {written} and {plot}")
