"""``spikereveal display``: show or record the deblurred sequence coming from an engine node.

The loop is ``spikereveal.stream.display``; this module only turns options into a
:class:`~spikereveal.stream.display.DisplayConfig`, installs the SIGINT/SIGTERM handlers (so the
video is finished properly) and prints the latency table at the end.
"""

from __future__ import annotations

from typing import Any

import click

from spikereveal.stream.display import DisplayConfig, run_display
from spikereveal.stream.transport import StopFlag
from spikereveal.tools.config_options import config_from_options, config_options


@click.command("display")
@config_options(DisplayConfig)
def display_command(**options: Any) -> None:
    """Play the engine's sharp sequences beside their blur, or write them to a video.

    Window keys: space pause/resume, n or . step while paused, s save a PNG, q or Esc quit.
    """
    config = config_from_options(DisplayConfig, options)  # a bad value: one line
    stop = StopFlag()
    with stop.handle_signals():
        run = run_display(config, stop)
    click.echo(run.stats.format() if run.stats is not None else "no results")
    outputs = run.summary.get("outputs", {})
    wrote = [f"{outputs['video']} ({outputs['video_frames']} frames)"] if outputs.get("video") else []
    if outputs.get("png_dir"):
        wrote.append(f"{outputs['png_dir']}/ ({outputs['pngs']} PNGs)")
    wrote.append(str(run.summary_path))
    if outputs.get("web"):
        wrote.append(f"served {outputs['web']}")
    click.echo(
        f"{config.node}: {run.exit_reason}; {run.summary.get('results', 0)} results; wrote {', '.join(wrote)}"
    )
