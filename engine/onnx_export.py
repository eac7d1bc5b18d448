"""Export LDN weights to ONNX (for onnxruntime here, TensorRT on GPU machines), with a small cache.

The graph takes ``blur`` (N,3,H,W) float32 BGR 0..1 and ``spikes`` (N,21,H/4,W/4) float32 and gives
``sharp`` (N,3,H,W) float32; batch, height and width are dynamic by default, so one file serves every
frame size.

``precision="fp16"`` exports the whole graph in half precision, inputs and output included: TensorRT
10 and 11 build *strongly typed* networks, which take every tensor's type from the ONNX model and
never choose a precision themselves (``BuilderFlag.FP16`` is gone in 11), so half precision has to
live in the model. fp16 inputs rather than fp32 inputs with Cast nodes, because the GPU kernels write
the windows as fp16 straight into the engine's input buffer (half the bytes, no extra cast layers on
full-size tensors); spikes are 0/1 (exact in fp16) and the blur's 8-bit values lose < 2^-11 relative. torch 2.13's default exporter is the torch.export one, which needs ``onnxscript`` (not a
dependency of this project); the TorchScript exporter (``dynamo=False``) still exports this plain
convolutional network exactly, so it is used with its deprecation warning silenced here.
"""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping
from pathlib import Path

import torch

from spikereveal.engine.cache import cache_dir
from spikereveal.engine.ldn import LDN, SPIKE_SCALE, SPIKE_WINDOW
from spikereveal.engine.weights import FORMAT_NAME, state_digest, validate_ldn_state

INPUT_NAMES = ("blur", "spikes")
OUTPUT_NAME = "sharp"
DEFAULT_OPSET = 17
# Bump when the exported graph changes for the same weights (invalidates cached exports).
EXPORT_VERSION = "1"
# Example input size used to trace a dynamic export (any multiple of 4 works).
_TRACE_SIZE = (64, 96)
#: Export precisions: the torch dtype of the whole graph (weights, inputs, output).
PRECISIONS = {"fp32": torch.float32, "fp16": torch.float16}


def _dynamic_axes(batch: bool = True, size: bool = True) -> dict[str, dict[int, str]]:
    """The axes left dynamic: the batch axis if ``batch``, height and width if ``size``."""
    axes: dict[str, dict[int, str]] = {}
    for name, h, w in (
        ("blur", "height", "width"),
        ("spikes", "spike_height", "spike_width"),
        (OUTPUT_NAME, "height", "width"),
    ):
        axes[name] = {**({0: "batch"} if batch else {}), **({2: h, 3: w} if size else {})}
    return axes


def export_ldn_onnx(
    state_dict: Mapping[str, torch.Tensor],
    path: str | os.PathLike[str],
    *,
    height: int | None = None,
    width: int | None = None,
    batch: int | None = None,
    dynamic: bool = True,
    opset: int = DEFAULT_OPSET,
    precision: str = "fp32",
) -> Path:
    """Write the LDN with ``state_dict`` as an ONNX model at ``path`` and check it; returns the path.

    height, width: blur size in pixels (multiples of 4) of the traced example; required when
    ``dynamic`` is False (the graph is then fixed to that size), optional otherwise.
    batch: fixes the batch axis N to this K (default: dynamic, or 1 in a static export).
    precision: "fp32" or "fp16" (the whole graph, inputs and output too: see the module doc).
    The model's metadata records the weights' digest, the precision and the export version. The
    file is written beside ``path`` and renamed into place.
    """
    import onnx

    checked = validate_ldn_state(state_dict, "state to export")
    if (height is None) != (width is None):
        raise ValueError("give both height and width, or neither")
    if height is None or width is None:
        if not dynamic:
            raise ValueError("a static export (dynamic=False) needs height and width")
        height, width = _TRACE_SIZE
    if precision not in PRECISIONS:
        raise ValueError(f"precision {precision!r} is not one of {', '.join(PRECISIONS)}")
    if batch is not None and batch < 1:
        raise ValueError(f"batch {batch} is not >= 1")
    if height <= 0 or width <= 0 or height % SPIKE_SCALE or width % SPIKE_SCALE:
        raise ValueError(f"blur size {height}x{width} is not a positive multiple of {SPIKE_SCALE} per side")

    dtype = PRECISIONS[precision]
    model = LDN().eval()
    model.load_state_dict(checked, strict=True)
    model = model.to(dtype)  # fp16: every weight, and so every op the tracer records, in half
    n = batch or 1
    example = (
        torch.zeros(n, 3, height, width, dtype=dtype),
        torch.zeros(n, SPIKE_WINDOW, height // SPIKE_SCALE, width // SPIKE_SCALE, dtype=dtype),
    )
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        with warnings.catch_warnings():
            # The TorchScript exporter is deprecated in favour of one that needs onnxscript.
            warnings.simplefilter("ignore", DeprecationWarning)
            warnings.simplefilter("ignore", FutureWarning)
            with torch.no_grad():
                torch.onnx.export(
                    model,
                    example,
                    str(tmp),
                    dynamo=False,
                    opset_version=opset,
                    input_names=list(INPUT_NAMES),
                    output_names=[OUTPUT_NAME],
                    dynamic_axes=_dynamic_axes(batch=batch is None, size=True) if dynamic else None,
                    do_constant_folding=True,
                )
        proto = onnx.load(str(tmp))
        onnx.checker.check_model(proto, full_check=True)
        meta = {
            "format": FORMAT_NAME,
            "architecture": "ldn",
            "weights_sha256": state_digest(checked),
            "export_version": EXPORT_VERSION,
            "precision": precision,
            "input_order": "BGR",
        }
        for key, value in meta.items():
            entry = proto.metadata_props.add()
            entry.key, entry.value = key, value
        onnx.save(proto, str(tmp))
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def default_cache_dir() -> Path:
    """Where exported models are kept: $SPIKEREVEAL_CACHE_DIR, else $XDG_CACHE_HOME or ~/.cache."""
    return cache_dir("onnx")


def cached_ldn_onnx(
    state_dict: Mapping[str, torch.Tensor],
    *,
    cache_dir: str | os.PathLike[str] | None = None,
    opset: int = DEFAULT_OPSET,
) -> Path:
    """A dynamic-shape ONNX export of these weights, made once and reused (keyed by their hash).

    Returns the path of ``ldn-<digest16>-o<opset>-v<export version>.onnx`` in ``cache_dir``
    (default :func:`default_cache_dir`), exporting it first if it is not there yet.
    """
    folder = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    digest = state_digest(validate_ldn_state(state_dict, "state to export"))
    path = folder / f"ldn-{digest[:16]}-o{opset}-v{EXPORT_VERSION}.onnx"
    if not path.is_file():
        export_ldn_onnx(state_dict, path, dynamic=True, opset=opset)
    return path
