"""``spikereveal run``: the whole live pipeline (capture -> engine -> display) as three processes."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from spikereveal.capture.node import CaptureNodeConfig
from spikereveal.engine.node import EngineNodeConfig
from spikereveal.stream.display import DisplayConfig
from spikereveal.stream.latency import format_summary
from spikereveal.stream.transport import StopFlag
from spikereveal.tools.config_options import config_options
from spikereveal.tools.pipeline import (
    Outcome,
    Pipeline,
    check_run,
    node_commands,
    node_envs,
    resolve_endpoints,
)
from spikereveal.tools.run_config import RunConfig, load_run_config


def run_pipeline(config: RunConfig, *, verbose: int = 1, grace_s: float = 10.0) -> Outcome:
    """Check ``config``, start its nodes, wait for the end (or a signal, a failure, the user quitting
    the window), stop them all.

    Raises (one line, before any process starts) when the source, its sizes or the weights
    cannot work (:func:`~spikereveal.tools.pipeline.check_run`).
    """
    check_run(config)
    commands = node_commands(config, resolve_endpoints(config), verbose=verbose)
    summary_path = Path(config.display.summary)
    summary_path.unlink(missing_ok=True)  # the display's exit reason is read from it: never a stale one
    pipeline = Pipeline(commands, display_summary=summary_path, envs=node_envs(config))
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
    elif outcome.user_quit:
        pipeline.say("run", f"{outcome.reason}: stopped the other nodes")
    if summary_path.is_file():
        click.echo(f"latency summary ({summary_path}):")
        click.echo(format_summary(json.loads(summary_path.read_text())))
    return outcome


#: ``run``'s flags over its YAML file: (section, the config declaring them, the settings offered).
#: Each flag is derived from the node's own declaration (name, type, range, help), default None:
#: not given keeps the file's value.
RUN_FLAGS: tuple[tuple[str, type, tuple[str, ...]], ...] = (
    ("capture", CaptureNodeConfig, ("source", "rate", "loop", "count")),
    ("engine", EngineNodeConfig, ("model", "weights", "backend", "times")),
    ("display", DisplayConfig, ("window", "record", "summary", "warmup", "web")),
    ("", RunConfig, ("policy", "allow_remote", "engines", "devices")),
)


def _run_flags(command: Any) -> Any:
    defaults = RunConfig()
    for section, cls, names in reversed(RUN_FLAGS):
        command = config_options(
            cls,
            only=names,
            overrides=True,
            prefix=f"{section}__" if section else "",
            defaults=getattr(defaults, section) if section else defaults,
        )(command)
    return command


@click.command("run")
@click.option(
    "--config", "config_path", type=click.Path(path_type=Path), default=None, help="YAML rig configuration."
)
@_run_flags
def run_command(config_path: Path | None, **flags: Any) -> None:
    """Run capture, engine and display as processes; Ctrl-C (or q in the window) stops them all."""
    config = load_run_config(config_path) if config_path else RunConfig()
    config = config.with_overrides({key.replace("__", "."): value for key, value in flags.items()})
    outcome = run_pipeline(config)
    if outcome.code == 1:
        click.echo(f"error: {outcome.reason}", err=True)
    sys.exit(outcome.code)
