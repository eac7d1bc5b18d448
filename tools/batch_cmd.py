"""``spikereveal batch``: deblur a whole dataset on Ray or a local process pool, resumably."""

from __future__ import annotations

from pathlib import Path

import click

from spikereveal.tools.model_options import model_options


@click.command("batch")
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="Dataset set folder (spike_data/ + blur_data/: GOPRO-spike, RSB, a simulate --out).",
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Output folder (<scene>/<name>/).",
)
@model_options()
@click.option(
    "--times",
    "count",
    type=click.IntRange(min=1),
    default=5,
    show_default=True,
    help="Output frames K per sample.",
)
@click.option(
    "--ray",
    "ray_option",
    default="auto",
    show_default=True,
    help="auto (Ray if installed, else a local process pool), local, or a Ray cluster ADDRESS to join.",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Workers, each with its model loaded (default: one per GPU, else per core, at most 4).",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads per worker's LDN.")
@click.option("--no-density-norm", is_flag=True, help="Feed the LDN the raw spikes (see `deblur`).")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def batch_command(
    data: Path,
    out_dir: Path,
    model: str | None,
    weights: str | None,
    backend: str,
    device: str,
    count: int,
    ray_option: str,
    workers: int | None,
    threads: int | None,
    no_density_norm: bool,
    quiet: bool,
) -> None:
    """Deblur every exposure of a dataset; a second run skips the samples already done."""
    from spikereveal.engine.deblur import default_model, ldn_weights, missing_default_message
    from spikereveal.tools.batch import SUMMARY_NAME, BatchConfig, default_workers, run_batch

    fallback_note = model is None and default_model(weights) == "sdm"
    model = model or default_model(weights)
    if model == "sdm" and weights:
        raise click.BadParameter("--weights is only used by --model ldn", param_hint="--weights")
    resolved = ldn_weights(weights) if model == "ldn" else None
    if resolved is not None and not resolved.is_file():
        raise click.BadParameter(f"{resolved}: no such weights file", param_hint="--weights")
    config = BatchConfig(
        data=data,
        out=out_dir,
        model=model,
        weights=str(resolved) if resolved else None,
        backend=backend,
        device=device,
        times=count,
        workers=workers or default_workers(),
        ray=ray_option,
        threads=threads,
        density_norm=not no_density_norm,
    )
    summary = run_batch(config, progress=not quiet)
    click.echo(
        f"{summary.samples} samples: {summary.done} done, {summary.skipped} skipped (already done), "
        f"{summary.failed} failed; {summary.samples_per_s:.2f} samples/s on {summary.runner} "
        f"x{summary.workers} ({model}); summary in {out_dir / SUMMARY_NAME}"
    )
    for failure in summary.failures[:5]:
        click.echo(f"failed: {failure['sample']}: {failure['reason']}", err=True)
    if summary.failed > 5:
        click.echo(f"... and {summary.failed - 5} more failures (see {SUMMARY_NAME})", err=True)
    if fallback_note:
        click.echo(f"note: {missing_default_message()}; deblurred with sdm", err=True)
