"""``spikereveal capture``: read a source and publish its bundles over ZeroMQ (the capture node)."""

from __future__ import annotations

from pathlib import Path

import click

from spikereveal.capture.node import CAPTURE_POLICIES, CaptureNodeConfig
from spikereveal.capture.sources import SourceError, parse_rate


class RateType(click.ParamType):
    """``realtime``, ``max`` or a speed factor such as 0.5 or 4."""

    name = "realtime|max|FACTOR"

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> str | float:
        try:
            return parse_rate(value if isinstance(value, float) else str(value))
        except SourceError as exc:
            self.fail(str(exc), param, ctx)


@click.command("capture")
@click.option(
    "--source",
    required=True,
    help="Source URI: sample, sim:pan?size=64x96&count=10, gopro:PATH[?scene=S], rsb:PATH, or a path.",
)
@click.option(
    "--pub",
    default="tcp://127.0.0.1:5555",
    show_default=True,
    help="Endpoint to bind and publish bundles on (tcp://HOST:PORT, ipc://PATH).",
)
@click.option(
    "--rate",
    type=RateType(),
    default="realtime",
    show_default=True,
    help="Replay speed: realtime, max (no waiting) or a factor (0.5 = half speed).",
)
@click.option(
    "--loop", is_flag=True, help="Start the source again at its end (sequence numbers keep rising)."
)
@click.option(
    "--policy",
    type=click.Choice(CAPTURE_POLICIES),
    default="auto",
    show_default=True,
    help="lossless (every bundle, backpressure), latest (live: drop stale), auto: lossless for recordings.",
)
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after N captures.")
@click.option("--no-flip", is_flag=True, help="Spike files are stored upright (some cameras).")
@click.option(
    "--calibration",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Spike/RGB calibration file (YAML or JSON); its id travels with every bundle.",
)
@click.option("--allow-remote", is_flag=True, help="Allow binding beyond loopback (other hosts can connect).")
@click.option("--node", default="capture", show_default=True, help="Node name in statuses and logs.")
@click.option(
    "--log-every",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Info line every N bundles.",
)
def capture_command(
    source: str,
    pub: str,
    rate: str | float,
    loop: bool,
    policy: str,
    count: int | None,
    no_flip: bool,
    calibration: Path | None,
    allow_remote: bool,
    node: str,
    log_every: int,
) -> None:
    """Read a source and publish bundles (RGB + packed spikes) over ZeroMQ.

    Ends with exit 0 when the source is done and every bundle was acknowledged (or on
    Ctrl-C/SIGTERM); exit 1 if a finished replay could not deliver everything.
    """
    import zmq

    from spikereveal.capture.node import run_capture
    from spikereveal.stream.transport import StopFlag

    config = CaptureNodeConfig(
        source=source,
        pub=pub,
        rate=rate,
        loop=loop,
        policy=policy,
        count=count,
        flip=not no_flip,
        calibration=calibration,
        allow_remote=allow_remote,
        node=node,
        log_every=log_every,
    )
    stop = StopFlag()
    ctx = zmq.Context()
    try:
        with stop.handle_signals():
            report = run_capture(config, stop, ctx=ctx)
    finally:
        ctx.destroy()  # waits (up to each socket's linger) for the final status to leave
    click.echo(f"{node}: {report.summary()}", err=True)
    if report.exit_code:
        raise SystemExit(report.exit_code)
