"""``spikereveal train bsn|sr|ldn|all``: self-supervised training on a folder of recordings.

A thin shell over ``spikereveal.tools.train``: the options are derived from its ``TrainConfig``
(each declared once), ``--config train.yaml`` gives the same settings as YAML keys (the option
names, ``-`` or ``_``; an unknown key is an error naming the file and the key), and the flags
given on the command line override the file.

``train all --data DIR --out DIR2`` runs the whole cascade: BSN, then SR, then the LDN taught by
the BSN + SR cascade teacher, writing ``DIR2/bsn.safetensors``, ``sr.safetensors`` and
``ldn.safetensors`` (each with its ``.losses.csv``/``.png`` and checkpoints). Budgets per stage:
``--bsn-steps``/``--sr-steps``/``--ldn-steps`` (default: ``--steps`` for each), and ``--minutes M``
split as 20 % BSN, 20 % SR, 60 % LDN (the LDN is the net that runs at inference, and the slowest
per step).
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path
from typing import Any

import click

from spikereveal.tools.config_options import config_options
from spikereveal.tools.train import (
    TrainConfig,
    TrainResult,
    config_keys,
    load_config_file,
    make_config,
    read_checkpoint,
    resume_config,
    train,
)

#: Share of ``train all --minutes`` each stage gets.
STAGE_SHARES = {"bsn": 0.2, "sr": 0.2, "ldn": 0.6}


def command_line() -> str:
    """The command as typed (recorded in the weights' metadata)."""
    return shlex.join(["spikereveal", *sys.argv[1:]])


def _report(net: str, result: TrainResult) -> None:
    click.echo(
        f"train {net}: {result.steps} steps in {result.seconds:.1f} s ({result.seconds_per_step:.2f} s/step, "
        f"stopped by {result.stopped_by}); loss on a fixed batch {result.probe_before:.4g} -> "
        f"{result.probe_after:.4g}; wrote {result.weights}" + (f", {result.plot.name}" if result.plot else "")
    )


def _run(net: str, config_file: Path | None, options: dict[str, Any], progress: bool = True) -> TrainResult:
    file_values = load_config_file(config_file, net) if config_file is not None else {}
    where = str(config_file) if config_file is not None else ""
    resume = options.get("resume") or file_values.get("resume")
    if resume is not None:
        info, _ = read_checkpoint(Path(resume), net)
        flags = {**file_values, **{k: v for k, v in options.items() if v is not None}}
        config = resume_config(info, flags, Path(resume))
    else:
        config = make_config(net, file_values, options, where=where)
    result = train(net, config, command=command_line(), progress=progress)
    _report(net, result)
    return result


def _net_command(net: str, summary: str) -> click.Command:
    @click.command(net, help=summary)
    @config_options(TrainConfig, only=config_keys(net), overrides=True, defaults=TrainConfig())
    @click.option(
        "--config",
        "config_file",
        type=click.Path(dir_okay=False, path_type=Path),
        help="YAML file of these options (keys = option names); flags override it.",
    )
    @click.option("--no-progress", is_flag=True, help="No progress bar.")
    def command(config_file: Path | None, no_progress: bool, **options: Any) -> None:
        _run(net, config_file, options, progress=not no_progress)

    return command


@click.group("train")
def train_group() -> None:
    """Train the nets self-supervised on recordings (no ground truth is read)."""


train_group.add_command(_net_command("bsn", "Train the blind-spot denoiser: MSE(BSN(TFP_short), TFP_short)."))
train_group.add_command(
    _net_command("sr", "Train the x4 super-resolution net: MSE(SR(TFP_long), grey(blur)).")
)
train_group.add_command(
    _net_command(
        "ldn",
        "Train the LDN: teacher loss at 5 times over the exposure + 100 * MSE(blur, mean of the outputs).",
    )
)


@train_group.command("all")
@click.option(
    "--data", required=True, type=click.Path(file_okay=False, path_type=Path), help="Dataset folder."
)
@click.option(
    "--out", "out_dir", required=True, type=click.Path(file_okay=False, path_type=Path), help="Output folder."
)
@click.option("--steps", type=click.IntRange(min=1), help="Steps of each stage (default: the stage's own).")
@click.option("--bsn-steps", type=click.IntRange(min=1), help="Steps of the BSN stage.")
@click.option("--sr-steps", type=click.IntRange(min=1), help="Steps of the SR stage.")
@click.option("--ldn-steps", type=click.IntRange(min=1), help="Steps of the LDN stage.")
@click.option(
    "--minutes",
    type=click.FloatRange(min=0, min_open=True),
    help="Total time budget, split 20 % BSN, 20 % SR, 60 % LDN.",
)
@click.option("--seed", type=click.IntRange(min=0), help="Seed of every stage.")
@click.option("--crop", type=int, help="Random crop side in RGB pixels (multiple of 16).")
@click.option("--batch", type=click.IntRange(min=1), help="Crops per step.")
@click.option("--threads", type=click.IntRange(min=1), help="CPU threads (default: every usable core).")
@click.option("--init", help="Start the LDN from these weights ('default': the shipped default).")
@click.option(
    "--lpips-weights", type=click.Path(dir_okay=False, path_type=Path), help="LPIPS-VGG weights for the LDN."
)
@click.option(
    "--config",
    "config_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="YAML file of shared options (seed, crop, batch, ...); flags override it.",
)
@click.option("--no-progress", is_flag=True, help="No progress bars.")
def all_command(
    data: Path,
    out_dir: Path,
    steps: int | None,
    bsn_steps: int | None,
    sr_steps: int | None,
    ldn_steps: int | None,
    minutes: float | None,
    seed: int | None,
    crop: int | None,
    batch: int | None,
    threads: int | None,
    init: str | None,
    lpips_weights: Path | None,
    config_file: Path | None,
    no_progress: bool,
) -> None:
    """BSN -> SR -> cascade teacher -> LDN in one command: writes DIR2/{bsn,sr,ldn}.safetensors."""
    out_dir.mkdir(parents=True, exist_ok=True)
    per_stage = {"bsn": bsn_steps, "sr": sr_steps, "ldn": ldn_steps}
    shared = {"data": data, "seed": seed, "crop": crop, "batch": batch, "threads": threads}
    results: dict[str, TrainResult] = {}
    # One file for every stage: each takes the keys it knows (the LDN's are the widest set).
    all_values = load_config_file(config_file, "ldn") if config_file is not None else {}
    for net in ("bsn", "sr", "ldn"):
        file_values = {k: v for k, v in all_values.items() if k in config_keys(net)}
        options: dict[str, Any] = {
            **shared,
            "out": out_dir / f"{net}.safetensors",
            "steps": per_stage[net] or steps,
            "minutes": None if minutes is None else minutes * STAGE_SHARES[net],
        }
        if net == "ldn":
            options.update(
                teacher="cascade",
                bsn=results["bsn"].weights,
                sr=results["sr"].weights,
                init=init,
                lpips_weights=lpips_weights,
            )
        config = make_config(net, file_values, options, where=str(config_file or ""))
        results[net] = train(net, config, command=command_line(), progress=not no_progress)
        _report(net, results[net])
