"""The one place where the project keeps what it builds on first use (ONNX exports, TensorRT
engines, compiled kernels, the CPU shim): ``$SPIKEREVEAL_CACHE_DIR/<kind>``, else the user's
cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``) under ``spikereveal/<kind>``. Torch-free, so
the kernel shim and the loaders can use it without importing torch."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir(kind: str) -> Path:
    """The cache folder for ``kind`` ("onnx", "tensorrt", "kernels", "shim"); not created here."""
    explicit = os.environ.get("SPIKEREVEAL_CACHE_DIR")
    if explicit:
        return Path(explicit) / kind
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "spikereveal" / kind
