"""``spikereveal weights``: bring LDN weights into the project's own format and inspect them.

``import`` reads a PyTorch checkpoint (the paper's ``.pth``, safely, without running pickled
code), checks it is an LDN and writes ``.safetensors`` with metadata saying where it came from and
the spike threshold it was trained at; ``info`` prints what a weights file holds. torch is imported
only once a file is read, so that option errors come back at once.
"""

from __future__ import annotations

from pathlib import Path

import click


@click.group("weights")
def weights_group() -> None:
    """Import and inspect LDN weights (.pth checkpoints, the project's .safetensors)."""


@weights_group.command("import")
@click.argument("source", type=click.Path(dir_okay=False, path_type=Path))
@click.argument("out", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--spike-threshold",
    type=click.FloatRange(min=0, min_open=True),
    default=1.0,
    show_default=True,
    help="Spike threshold the weights were trained at, in the paper's units (the released checkpoint: 1).",
)
@click.option("--origin", default=None, help="Where the weights come from (default: the source file name).")
@click.option("--note", default="", help="Free text stored in the metadata.")
@click.option("--force", is_flag=True, help="Overwrite OUT if it exists.")
def import_command(
    source: Path, out: Path, spike_threshold: float, origin: str | None, note: str, force: bool
) -> None:
    """Check SOURCE (a PyTorch LDN checkpoint) and write it to OUT as .safetensors."""
    if out.suffix.lower() != ".safetensors":
        raise click.BadParameter(f"{out}: the output must end in .safetensors", param_hint="'OUT'")
    if out.exists() and not force:
        raise click.BadParameter(f"{out} exists; pass --force to overwrite", param_hint="'OUT'")
    from spikereveal.engine.weights import file_sha256, load_ldn_state, save_ldn_state

    state = load_ldn_state(source)
    metadata = {
        "source": origin or source.name,
        "source_sha256": file_sha256(source),
        "spike_threshold": f"{spike_threshold:g}",
        "input_order": "BGR",
        "spike_window": "21",
        "spike_scale": "4",
    }
    if note:
        metadata["note"] = note
    save_ldn_state(out, state, metadata)
    params = sum(t.numel() for t in state.values())
    click.echo(
        f"wrote {out}: {len(state)} tensors, {params:,} parameters, spike threshold {spike_threshold:g}"
    )


@weights_group.command("info")
@click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
def info_command(path: Path) -> None:
    """Print the tensors count, parameter count, digest and metadata of an LDN weights file."""
    from spikereveal.engine.weights import load_ldn_metadata, load_ldn_state, state_digest

    state = load_ldn_state(path)
    metadata = load_ldn_metadata(path)
    params = sum(t.numel() for t in state.values())
    click.echo(f"file: {path}")
    click.echo(f"tensors: {len(state)}")
    click.echo(f"parameters: {params:,}")
    click.echo(f"weights_sha256: {state_digest(state)}")
    for key in sorted(metadata):
        if key not in ("weights_sha256", "parameters"):  # already printed, from the tensors
            click.echo(f"{key}: {metadata[key]}")
