"""``spikereveal display``: show or record the deblurred sequence coming from an engine node.

The loop is ``spikereveal.stream.display``; this module only turns options into a
:class:`~spikereveal.stream.display.DisplayConfig`, installs the SIGINT/SIGTERM handlers (so the
video is finished properly) and prints the latency table at the end.
"""

from __future__ import annotations

from pathlib import Path

import click

from spikereveal.stream.display import DEFAULT_SUMMARY, DisplayConfig, run_display
from spikereveal.stream.transport import POLICIES, StopFlag


@click.command("display")
@click.option("--sub", required=True, help="The engine's results endpoint, e.g. tcp://127.0.0.1:5556.")
@click.option(
    "--policy",
    type=click.Choice(POLICIES),
    default="lossless",
    show_default=True,
    help="lossless: every result, in order (replay); latest: newest only (live).",
)
@click.option(
    "--window/--no-window",
    default=True,
    show_default=True,
    help="Show an OpenCV window; --no-window writes a video instead (also the fallback without a screen).",
)
@click.option(
    "--record",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write blur | sharp frames to this video (.mp4). Default without a window: build/run/display.mp4.",
)
@click.option(
    "--png-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Also write every frame as PNG here (window snapshots go here too).",
)
@click.option(
    "--summary",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_SUMMARY,
    show_default=True,
    help="Latency and counters JSON written at exit.",
)
@click.option(
    "--exit-on-finish/--no-exit-on-finish",
    default=True,
    show_default=True,
    help="Exit 0 when the engine reports that the stream is finished.",
)
@click.option("--node", default="display", show_default=True, help="This node's name (in logs and statuses).")
@click.option(
    "--rgb-fps",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="RGB frame rate; sharp frames play at K times it. Default: estimated from result arrivals.",
)
@click.option(
    "--warmup",
    type=click.IntRange(min=0),
    default=10,
    show_default=True,
    help="Results left out of the latency percentiles.",
)
@click.option(
    "--allow-remote", is_flag=True, help="Accepted for symmetry with the other nodes (display connects)."
)
def display_command(
    sub: str,
    policy: str,
    window: bool,
    record: Path | None,
    png_dir: Path | None,
    summary: Path,
    exit_on_finish: bool,
    node: str,
    rgb_fps: float | None,
    warmup: int,
    allow_remote: bool,
) -> None:
    """Play the engine's sharp sequences beside their blur, or write them to a video.

    Window keys: space pause/resume, n or . step while paused, s save a PNG, q or Esc quit.
    """
    config = DisplayConfig(
        sub=sub,
        policy=policy,
        window=window,
        record=record,
        png_dir=png_dir,
        summary=summary,
        exit_on_finish=exit_on_finish,
        node=node,
        rgb_fps=rgb_fps,
        warmup=warmup,
        allow_remote=allow_remote,
    )
    stop = StopFlag()
    with stop.handle_signals():
        run = run_display(config, stop)
    click.echo(run.stats.format() if run.stats is not None else "no results")
    outputs = run.summary.get("outputs", {})
    wrote = [f"{outputs['video']} ({outputs['video_frames']} frames)"] if outputs.get("video") else []
    if outputs.get("png_dir"):
        wrote.append(f"{outputs['png_dir']}/ ({outputs['pngs']} PNGs)")
    wrote.append(str(run.summary_path))
    click.echo(
        f"{node}: {run.exit_reason}; {run.summary.get('results', 0)} results; wrote {', '.join(wrote)}"
    )
