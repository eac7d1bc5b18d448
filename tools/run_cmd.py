"""``spikereveal run``: the whole live pipeline (capture -> engine -> display) as three processes."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from spikereveal.stream.latency import format_summary
from spikereveal.stream.transport import StopFlag
from spikereveal.tools.pipeline import Outcome, Pipeline, node_commands, resolve_endpoints
from spikereveal.tools.run_config import RunConfig, load_run_config


def run_pipeline(config: RunConfig, *, verbose: int = 1, grace_s: float = 10.0) -> Outcome:
    """Start the nodes of ``config``, wait for the end (or a signal or a failure), stop them all."""
    commands = node_commands(config, resolve_endpoints(config), verbose=verbose)
    pipeline = Pipeline(commands)
    stop = StopFlag()
    with stop.handle_signals():
        pipeline.start()
        try:
            outcome = pipeline.wait(stop)
        finally:
            pipeline.stop(
                grace_s, on_kill=lambda name: pipeline.say("run", f"{name} did not stop in time: killed")
            )
    if outcome.failed_node:
        pipeline.say("run", f"error: {outcome.reason}; stopped the other nodes")
    summary_path = Path(config.display.summary)
    if summary_path.is_file():
        click.echo(f"latency summary ({summary_path}):")
        click.echo(format_summary(json.loads(summary_path.read_text())))
    return outcome


@click.command("run")
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path), default=None, help="YAML rig configuration."
)
@click.option("--source", default=None, help="Source URI (sample, sim:..., gopro:PATH, rsb:PATH, PATH).")
@click.option("--rate", default=None, help="realtime, max or a speed factor.")
@click.option("--loop/--no-loop", default=None, help="Replay the source again at its end.")
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after this many exposures.")
@click.option(
    "--policy",
    type=click.Choice(["lossless", "latest"]),
    default=None,
    help="lossless: replay; latest: live.",
)
@click.option("--model", type=click.Choice(["ldn", "sdm"]), default=None)
@click.option("--weights", default=None, help="LDN weights (paper .pth or project .safetensors).")
@click.option("--backend", type=click.Choice(["torch", "onnxruntime"]), default=None)
@click.option("--times", type=click.IntRange(min=1), default=None, help="Sharp frames per exposure (K).")
@click.option("--window/--no-window", default=None, help="Show a window (default: when there is a screen).")
@click.option("--record", default=None, help="Write the displayed sequence to this video file.")
@click.option("--summary", default=None, help="Latency summary JSON (default build/run/latency.json).")
@click.option(
    "--warmup", type=click.IntRange(min=0), default=None, help="Results left out of latency stats (5)."
)
@click.option("--allow-remote", is_flag=True, default=None, help="Allow endpoints beyond loopback.")
def run_command(config_path: Path | None, **flags: object) -> None:
    """Run capture, engine and display as processes; Ctrl-C stops them all."""
    config = load_run_config(config_path) if config_path else RunConfig()
    sections = {
        "source": "capture.source",
        "rate": "capture.rate",
        "loop": "capture.loop",
        "count": "capture.count",
        "model": "engine.model",
        "weights": "engine.weights",
        "backend": "engine.backend",
        "times": "engine.times",
        "window": "display.window",
        "record": "display.record",
        "summary": "display.summary",
        "warmup": "display.warmup",
        "policy": "policy",
        "allow_remote": "allow_remote",
    }
    config = config.with_overrides({sections[k]: v for k, v in flags.items()})
    outcome = run_pipeline(config)
    if outcome.code == 1:
        click.echo(f"error: {outcome.reason}", err=True)
    sys.exit(outcome.code)
