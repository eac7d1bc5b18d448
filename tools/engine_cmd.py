"""``spikereveal engine``: deblur the bundles of a capture node and publish the results (the engine node)."""

from __future__ import annotations

from typing import Any

import click

from spikereveal.engine.node import EngineNodeConfig
from spikereveal.tools.config_options import config_from_options, config_options


@click.command("engine")
@config_options(EngineNodeConfig)
def engine_command(**options: Any) -> None:
    """Deblur bundles from a capture node into K sharp frames each and publish the results.

    Ends with exit 0 when the capture node reports the end of its stream and every result was
    acknowledged (or on Ctrl-C/SIGTERM); exit 1 if results of a finished stream were not delivered.
    """
    import zmq

    from spikereveal.engine.node import build_deblurrer, run_engine
    from spikereveal.stream.errors import SpikeRevealError
    from spikereveal.stream.transport import StopFlag

    config = config_from_options(EngineNodeConfig, options)  # a bad value: one line (SettingError)
    stop = StopFlag()
    with stop.handle_signals():  # already while the model loads (torch takes seconds to import)
        try:
            deblurrer = build_deblurrer(config, stop)
        except SpikeRevealError:
            raise  # a family the CLI prints as one line itself (WeightsError, ...)
        except ValueError as exc:
            raise click.UsageError(str(exc)) from exc  # no weights for ldn, a backend that is missing
        ctx = zmq.Context()
        try:
            report = run_engine(config, stop, ctx=ctx, deblurrer=deblurrer)
        finally:
            ctx.destroy()  # waits (up to each socket's linger) for the final status to leave
    click.echo(f"{config.node}: {report.summary()}", err=True)
    if report.exit_code:
        raise SystemExit(report.exit_code)
