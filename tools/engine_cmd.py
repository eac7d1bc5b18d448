"""``spikereveal engine``: deblur the bundles of a capture node and publish the results (the engine node)."""

from __future__ import annotations

from pathlib import Path

import click

from spikereveal.engine.deblur import MODELS
from spikereveal.stream.transport import POLICIES


@click.command("engine")
@click.option(
    "--sub",
    default="tcp://127.0.0.1:5555",
    show_default=True,
    help="The capture node's endpoint to connect to.",
)
@click.option(
    "--pub",
    default="tcp://127.0.0.1:5556",
    show_default=True,
    help="Endpoint to bind and publish results on.",
)
@click.option(
    "--policy",
    type=click.Choice(POLICIES),
    default="lossless",
    show_default=True,
    help="lossless (replay: every bundle, in order) or latest (live: drop stale bundles); as the capture's.",
)
@click.option(
    "--model", type=click.Choice(MODELS), default=None, help="Default: ldn with --weights, else sdm."
)
@click.option("--backend", type=click.Choice(["torch", "onnxruntime"]), default="torch", show_default=True)
@click.option(
    "--weights",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="LDN weights: a paper .pth or the project's .safetensors.",
)
@click.option(
    "--times", type=click.IntRange(1, 256), default=5, show_default=True, help="Sharp frames K per bundle."
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=None,
    help="CPU threads for the model (default: all cores).",
)
@click.option(
    "--send-blur/--no-send-blur",
    default=True,
    show_default=True,
    help="Send the blurry input with each result.",
)
@click.option("--allow-remote", is_flag=True, help="Allow binding beyond loopback (other hosts can connect).")
@click.option("--node", default="engine", show_default=True, help="Node name in statuses and logs.")
@click.option(
    "--exit-on-finish/--no-exit-on-finish",
    default=True,
    show_default=True,
    help="Exit when the capture node reports the end of its stream, or keep serving the next one.",
)
@click.option(
    "--log-every",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Info line every N results.",
)
@click.option(
    "--min-period-ms",
    type=click.FloatRange(min=0),
    default=0.0,
    hidden=True,
    help="For tests and benchmarks: make every bundle take at least this long (a slow model).",
)
def engine_command(
    sub: str,
    pub: str,
    policy: str,
    model: str | None,
    backend: str,
    weights: Path | None,
    times: int,
    threads: int | None,
    send_blur: bool,
    allow_remote: bool,
    node: str,
    exit_on_finish: bool,
    log_every: int,
    min_period_ms: float,
) -> None:
    """Deblur bundles from a capture node into K sharp frames each and publish the results.

    Ends with exit 0 when the capture node reports the end of its stream and every result was
    acknowledged (or on Ctrl-C/SIGTERM); exit 1 if results of a finished stream were not delivered.
    """
    import zmq

    from spikereveal.engine.node import EngineNodeConfig, build_deblurrer, run_engine
    from spikereveal.stream.transport import StopFlag
    from spikereveal.tools.errors import is_user_error

    try:
        config = EngineNodeConfig(
            sub=sub,
            pub=pub,
            policy=policy,
            model=model,
            backend=backend,
            weights=weights,
            times=times,
            threads=threads,
            send_blur=send_blur,
            allow_remote=allow_remote,
            node=node,
            exit_on_finish=exit_on_finish,
            min_period_ms=min_period_ms,
            log_every=log_every,
        )
    except ValueError as exc:
        raise click.UsageError(str(exc)) from exc
    stop = StopFlag()
    with stop.handle_signals():  # already while the model loads (torch takes seconds to import)
        try:
            deblurrer = build_deblurrer(config, stop)
        except ValueError as exc:
            if is_user_error(exc):
                raise  # a family the CLI prints as one line itself (WeightsError, ...)
            raise click.UsageError(str(exc)) from exc  # no weights for ldn, a backend that is missing
        ctx = zmq.Context()
        try:
            report = run_engine(config, stop, ctx=ctx, deblurrer=deblurrer)
        finally:
            ctx.destroy()  # waits (up to each socket's linger) for the final status to leave
    click.echo(f"{node}: {report.summary()}", err=True)
    if report.exit_code:
        raise SystemExit(report.exit_code)
