"""``spikereveal capture``: read a source and publish its bundles over ZeroMQ (the capture node)."""

from __future__ import annotations

from typing import Any

import click

from spikereveal.capture.node import CaptureNodeConfig
from spikereveal.tools.config_options import config_from_options, config_options


@click.command("capture")
@config_options(CaptureNodeConfig)
def capture_command(**options: Any) -> None:
    """Read a source and publish bundles (RGB + packed spikes) over ZeroMQ.

    Ends with exit 0 when the source is done and every bundle was acknowledged (or on
    Ctrl-C/SIGTERM); exit 1 if a finished replay could not deliver everything.
    """
    import zmq

    from spikereveal.capture.node import run_capture
    from spikereveal.stream.transport import StopFlag

    config = config_from_options(CaptureNodeConfig, options)  # a bad value: one line
    stop = StopFlag()
    ctx = zmq.Context()
    try:
        with stop.handle_signals():
            report = run_capture(config, stop, ctx=ctx)
    finally:
        ctx.destroy()  # waits (up to each socket's linger) for the final status to leave
    click.echo(f"{config.node}: {report.summary()}", err=True)
    if report.exit_code:
        raise SystemExit(report.exit_code)
