"""The one console command, ``spikereveal``, with a subcommand per job.

Subcommands live in their own modules and are registered here by dotted name, so that
``spikereveal --help`` stays fast (torch is imported only by the commands that need it) and
so that each tool owns its options. User errors (bad files, bad values) become one line on
stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import importlib
import logging
import sys

import click

from spikereveal.stream.errors import SpikeRevealError

#: What a user's mistake raises: every family under the root, and the file errors of a bad path.
USER_ERRORS: tuple[type[Exception], ...] = (
    SpikeRevealError,
    FileNotFoundError,
    IsADirectoryError,
    NotADirectoryError,
    PermissionError,
)

# name -> ("module:attribute", one-line help). Modules are imported only when their command runs,
# so `spikereveal --help` lists everything without loading torch or scipy.
COMMANDS: dict[str, tuple[str, str]] = {
    "demo": (
        "spikereveal.tools.demo:demo_command",
        "Simulate the built-in sample, deblur it, show the result.",
    ),
    "deblur": ("spikereveal.tools.deblur_cmd:deblur_command", "Deblur one image into K sharp frames."),
    "tfp": (
        "spikereveal.tools.tfp_cmd:tfp_command",
        "Texture from playback: mean of a window of spike frames.",
    ),
    "simulate": (
        "spikereveal.tools.simulate_cmd:simulate_command",
        "Simulate a spike camera dataset from video.",
    ),
    "weights": ("spikereveal.tools.weights_cmd:weights_group", "Import and inspect LDN weights."),
    "run": ("spikereveal.tools.run_cmd:run_command", "Run capture, engine and display as processes."),
    "bench": ("spikereveal.tools.bench:bench_group", "Benchmarks: print a table and write JSON."),
    "capture": (
        "spikereveal.tools.capture_cmd:capture_command",
        "Read a source and publish bundles over ZeroMQ.",
    ),
    "engine": (
        "spikereveal.tools.engine_cmd:engine_command",
        "Deblur bundles from ZeroMQ and publish results.",
    ),
    "display": ("spikereveal.tools.display_cmd:display_command", "Show or record the deblurred sequence."),
    "eval": (
        "spikereveal.tools.eval_cmd:eval_command",
        "PSNR/SSIM of blur, SDM, the teacher and LDNs against ground truth.",
    ),
    "train": (
        "spikereveal.tools.train_cmd:train_group",
        "Train the BSN, SR and LDN on recordings, self-supervised.",
    ),
    "selftest": (
        "spikereveal.tools.selftest_cmd:selftest_command",
        "Check the kernels (CPU shim or GPU), backends and GPU timings; print a table.",
    ),
    "batch": ("spikereveal.tools.batch_cmd:batch_command", "Deblur a whole dataset on Ray or a local pool."),
    "export": (
        "spikereveal.tools.export_cmd:export_group",
        "Export the LDN: ONNX (fp32/fp16), or a TensorRT engine built on this GPU.",
    ),
    "calibrate": (
        "spikereveal.tools.calibrate_cmd:calibrate_group",
        "Calibrate a rig: homography, clock offset.",
    ),
    "record": (
        "spikereveal.tools.record_cmd:record_command",
        "Record a source losslessly; replay it as rec:DIR.",
    ),
}


class LazyGroup(click.Group):
    """A click group whose subcommands are imported only when used."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(COMMANDS)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        rows = [(name, help_text) for name, (_, help_text) in COMMANDS.items()]
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        entry = COMMANDS.get(cmd_name)
        if entry is None:
            return None
        module_name, attr = entry[0].split(":")
        return getattr(importlib.import_module(module_name), attr)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="spikereveal-rt", prog_name="spikereveal")
@click.option("-v", "--verbose", count=True, help="More logging (-v info, -vv debug).")
def cli(verbose: int) -> None:
    """SpikeReveal-RT: deblur RGB video with a spike camera (S-SDM / LDN)."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(asctime)s %(name)s %(levelname)s: %(message)s")


def main(argv: list[str] | None = None) -> int:
    """Entry point: run the CLI and turn known user errors into one clear line."""
    try:
        cli.main(args=argv, prog_name="spikereveal", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        return 130
    except click.ClickException as exc:
        exc.show()
        return exc.exit_code
    except USER_ERRORS as exc:  # anything else is a bug and keeps its traceback
        click.echo(f"error: {exc}", err=True)
        return 2
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
