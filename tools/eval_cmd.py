"""``spikereveal eval``: PSNR/SSIM of blur, SDM, the teacher and LDNs on a dataset with ground truth.

A thin shell over :mod:`spikereveal.tools.eval`: it parses the options, prints the paper-style
table and writes ``eval.json`` and ``contact_sheet.png`` into ``--out``. With ``--ray`` (or
``--workers``) the samples are scored on ``spikereveal batch``'s workers (Ray or a local process
pool) and the report is the same as in one process.
"""

from __future__ import annotations

from pathlib import Path

import click

from spikereveal.tools.eval import METHOD_KINDS, REPORT_NAME, SHEET_NAME, EvalConfig, EvalError
from spikereveal.tools.model_options import model_options


@click.command("eval")
@click.option(
    "--data",
    required=True,
    type=click.Path(path_type=Path),
    help="Dataset folder with ground truth (GOPRO-spike layout, or what `spikereveal simulate` writes).",
)
@model_options(
    models=METHOD_KINDS,
    multiple=True,
    model_help="Methods to score (repeatable). Default: blur, sdm, teacher with --bsn/--sr, ldn with --weights; "
    "ldn without --weights scores the default weights.",
    backends=("torch", "onnxruntime"),
    backend_default="torch",
    device=False,
)
@click.option(
    "--bsn", type=click.Path(path_type=Path), default=None, help="BSN weights of the cascade teacher."
)
@click.option(
    "--sr", type=click.Path(path_type=Path), default=None, help="SR weights of the cascade teacher."
)
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(path_type=Path),
    help="Folder for eval.json and the sheet.",
)
@click.option(
    "--times",
    "count",
    type=click.IntRange(min=1),
    default=None,
    help="Score K times spread over the exposure (default: every time that has ground truth).",
)
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Score only the first N samples.")
@click.option(
    "--no-density-norm",
    is_flag=True,
    help="Feed the LDN the raw spikes, not scaled to the spike density its weights were trained at.",
)
@click.option("--threads", type=click.IntRange(min=1), default=None, help="CPU threads for the LDN.")
@click.option(
    "--ray",
    "ray_option",
    default=None,
    help="Score the samples on workers: auto (Ray if installed, else a local process pool), local, or a Ray "
    "cluster ADDRESS to join (as `batch`). Default: in this process (auto with --workers).",
)
@click.option(
    "--workers",
    type=click.IntRange(min=1),
    default=None,
    help="Workers for --ray, each with the methods loaded (default: one per GPU, else per core, at most 4).",
)
@click.option("--overwrite", is_flag=True, help="Replace the eval.json and contact sheet of an earlier run.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def eval_command(
    data: Path,
    weights: tuple[str, ...],
    models: tuple[str, ...],
    bsn: Path | None,
    sr: Path | None,
    out_dir: Path,
    count: int | None,
    limit: int | None,
    no_density_norm: bool,
    backend: str,
    threads: int | None,
    ray_option: str | None,
    workers: int | None,
    overwrite: bool,
    quiet: bool,
) -> None:
    """Score every method against ground truth: a table per output time, JSON and a contact sheet."""
    from spikereveal.tools.batch import default_workers
    from spikereveal.tools.eval import evaluate, format_table, write_report

    if out_dir.exists() and not out_dir.is_dir():
        raise EvalError(f"--out {out_dir}: is a file, not a folder")
    earlier = [p.name for p in (out_dir / REPORT_NAME, out_dir / SHEET_NAME) if p.exists()]
    if earlier and not overwrite:
        raise EvalError(
            f"--out {out_dir}: already holds an earlier run ({', '.join(earlier)}); pick another --out "
            "or pass --overwrite"
        )
    config = EvalConfig(
        data=data,
        weights=weights,
        models=models,
        bsn=bsn,
        sr=sr,
        times=count,
        limit=limit,
        density_norm=not no_density_norm,
        backend=backend,
        threads=threads,
        progress=not quiet,
        ray=ray_option or ("auto" if workers else None),
        workers=workers or (default_workers() if ray_option else 1),
    )
    report = evaluate(config)
    click.echo(format_table(report))
    json_path, sheet_path = write_report(report, out_dir)
    click.echo(f"wrote {json_path} and {sheet_path}")
