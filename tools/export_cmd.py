"""``spikereveal export onnx|tensorrt``: the LDN as a file another runtime loads.

``onnx`` is a contract for other runtimes: inputs ``blur`` (K,3,H,W) BGR 0..1 and ``spikes``
(K,21,H/4,W/4), output ``sharp`` (K,3,H,W); ``--fp16`` makes the whole graph half precision, inputs
and output included (what TensorRT's strongly typed networks need: engine/onnx_export.py says why).
``tensorrt`` builds a fixed-shape fp16 engine from that export on this machine's GPU (TensorRT
engines run only on the TensorRT version and GPU model that built them) and writes it where the
tensorrt backend finds it, or to ``--out``. torch is imported only once the options are checked.
"""

from __future__ import annotations

from pathlib import Path

import click

from spikereveal.tools.cli_types import SIZE


@click.group("export")
def export_group() -> None:
    """Export the LDN for other runtimes: ONNX, or a TensorRT engine built here."""


def _state(weights: str):  # -> dict[str, torch.Tensor]
    from spikereveal.engine.weights import load_ldn_state, resolve_weights

    return load_ldn_state(resolve_weights(weights))


@export_group.command("onnx")
@click.option(
    "--weights",
    default="default",
    show_default=True,
    help="LDN weights: a paper .pth, a .safetensors or 'default' (the project's own).",
)
@click.option("--fp16", is_flag=True, help="Half precision: weights, inputs and output (for TensorRT).")
@click.option(
    "--size",
    type=SIZE,
    default=None,
    help="Fix the blur size HxW (multiples of 4); default: height and width dynamic.",
)
@click.option(
    "--batch",
    type=click.IntRange(min=1),
    default=None,
    help="Fix the batch K (output frames per exposure); default: dynamic (1 with --size).",
)
@click.option("--opset", type=click.IntRange(min=13), default=17, show_default=True, help="ONNX opset.")
@click.option("--out", required=True, type=click.Path(dir_okay=False, path_type=Path), help="The .onnx file.")
def onnx_command(
    weights: str, fp16: bool, size: tuple[int, int] | None, batch: int | None, opset: int, out: Path
) -> None:
    """Write the LDN as an ONNX model (blur, spikes -> sharp) and check it."""
    from spikereveal.engine.onnx_export import export_ldn_onnx
    from spikereveal.engine.windows import LDN_SCALE

    if size is not None and (size[0] % LDN_SCALE or size[1] % LDN_SCALE):
        raise click.BadParameter(
            f"{size[0]}x{size[1]} is not a multiple of {LDN_SCALE} per side (the spikes are 1/{LDN_SCALE})",
            param_hint="--size",
        )
    height, width = size if size is not None else (None, None)
    precision = "fp16" if fp16 else "fp32"
    path = export_ldn_onnx(
        _state(weights),
        out,
        height=height,
        width=width,
        batch=batch,
        dynamic=size is None,
        opset=opset,
        precision=precision,
    )
    k = batch or ("K" if size is None else 1)
    hw = f"{size[0]}x{size[1]}" if size is not None else "HxW"
    click.echo(f"wrote {path}: {precision}, blur ({k},3,{hw.replace('x', ',')}) + spikes -> sharp")


@export_group.command("tensorrt")
@click.option(
    "--weights",
    default="default",
    show_default=True,
    help="LDN weights: a paper .pth, a .safetensors or 'default' (the project's own).",
)
@click.option("--size", type=SIZE, required=True, help="Blur size HxW the engine runs at (multiples of 4).")
@click.option(
    "--batch", type=click.IntRange(min=1), default=5, show_default=True, help="K frames per exposure."
)
@click.option(
    "--workspace-mb",
    type=click.IntRange(min=16),
    default=1024,
    show_default=True,
    help="Builder workspace limit.",
)
@click.option(
    "--cache-dir",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Engine cache (default: $SPIKEREVEAL_CACHE_DIR/tensorrt or ~/.cache/spikereveal/tensorrt).",
)
@click.option(
    "--out",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Write the engine here instead of the cache (load it with the backend's engine option).",
)
def tensorrt_command(
    weights: str,
    size: tuple[int, int],
    batch: int,
    workspace_mb: int,
    cache_dir: Path | None,
    out: Path | None,
) -> None:
    """Build a fixed-shape fp16 TensorRT engine of the LDN on this GPU (strongly typed, timing-cached)."""
    from spikereveal.engine.backends.tensorrt_backend import cached_engine, import_tensorrt

    import_tensorrt()  # one line when TensorRT is missing, before the weights are read
    path, payload = cached_engine(
        _state(weights), (batch, *size), cache_dir=cache_dir, workspace_mb=workspace_mb, out=out
    )
    click.echo(f"wrote {path}: TensorRT engine, fp16, K={batch}, {size[0]}x{size[1]}, {len(payload):,} bytes")
