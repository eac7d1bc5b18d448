"""``spikereveal selftest --shim | --gpu``: the click face of tools/selftest.py (which needs no click)."""

from __future__ import annotations

from pathlib import Path

import click

from spikereveal.tools.selftest import DEFAULT_JSON, run


@click.command("selftest")
@click.option(
    "--shim", "mode", flag_value="shim", help="Every kernel check through the CPU shim (what CI runs)."
)
@click.option(
    "--gpu",
    "mode",
    flag_value="gpu",
    help="Kernels, backends and CUDA-event timings at 720x1280 and 1000x1600, K = 1, 5, 7.",
)
@click.option(
    "--json",
    "json_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help=f"Where to write the JSON (--gpu writes {DEFAULT_JSON} by default).",
)
def selftest_command(mode: str | None, json_path: Path | None) -> None:
    """Check the kernels (and on a GPU the backends and timings); print a table last.

    Exit 0 when every check passes, 1 when one fails, 2 when the mode cannot run here.
    """
    if mode is None:
        raise click.UsageError("choose --shim (CPU emulation of the kernels) or --gpu")
    code = run(mode, json_path, echo=click.echo)
    if code:
        raise SystemExit(code)
