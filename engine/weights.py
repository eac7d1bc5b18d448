"""Network weights on disk: the paper's PyTorch checkpoint in, the project's own safetensors out.

The project's nets (:data:`ARCHITECTURES`: the LDN, the BSN, the EDSR super-resolution net) are all
stored the same way, by :func:`save_net` / :func:`load_net`: safetensors tensors plus string
metadata naming the architecture (and the constructor arguments, for nets that take some), so a
file of the wrong kind is refused with one line saying what it holds. The LDN also has the
loaders below, which accept the paper's checkpoint too.

Two formats are read, recognised by their first bytes (not their extension):

- a PyTorch checkpoint (``.pth``; zip or legacy pickle), read with ``torch.load(weights_only=True)``
  so that a file carrying code is refused instead of run; a state_dict wrapped as
  ``{"state_dict": ...}`` / ``{"model": ...}`` or saved from ``DataParallel`` (``module.`` prefixes)
  is unwrapped;
- the project's ``.safetensors`` (no code at all, memory-mappable), with string metadata saying what
  the tensors are (format, architecture, where they came from, the spike threshold they were
  trained at).

Every load is checked against the LDN's own state_dict: the same 25 keys and shapes, floating point,
finite. Anything wrong is a :class:`WeightsError` naming the file and what was expected, which the
CLI prints as one line.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import struct
import zipfile
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from spikereveal.engine.bsn import BSN
from spikereveal.engine.deblur import (
    DEFAULT_WEIGHTS,
    SHIPPED_LDN_WEIGHTS,
    default_ldn_weights,
    missing_default_message,
)
from spikereveal.engine.ldn import LDN
from spikereveal.engine.sr import EDSR
from spikereveal.stream.errors import SpikeRevealError

#: Metadata ``format`` value of the project's own files, and its version (bump on layout changes).
FORMAT_NAME = "spikereveal-ldn"
FORMAT_VERSION = "1"
ARCHITECTURE = "ldn"

_WRAPPER_KEYS = ("state_dict", "model_state_dict", "model", "net", "params")

#: Architecture name (the metadata ``architecture`` value) -> the class that holds such weights.
ARCHITECTURES: dict[str, type[nn.Module]] = {"ldn": LDN, "bsn": BSN, "sr": EDSR}
#: What a message calls each architecture ("not an LDN state_dict").
_LABELS = {"ldn": "an LDN", "bsn": "a BSN", "sr": "an SR (EDSR)"}
#: The project's own LDN weights, shipped inside the package (trained from scratch; see its README).
DEFAULT_LDN_WEIGHTS = SHIPPED_LDN_WEIGHTS
#: Metadata keys that :func:`save_net` writes itself (a caller's value for them is replaced).
RESERVED_METADATA = ("format", "format_version", "architecture", "parameters", "weights_sha256", "net_config")


class WeightsError(SpikeRevealError):
    """A weights file that is missing, unreadable, unsafe, or not an LDN state_dict."""


def ldn_reference_shapes() -> dict[str, tuple[int, ...]]:
    """Key -> shape of every tensor in the LDN's state_dict (the 25 tensors of the paper's network)."""
    return {k: tuple(v.shape) for k, v in LDN().state_dict().items()}


def _sniff(path: Path) -> str:
    """'safetensors', 'zip' (torch >= 1.6 checkpoint) or 'pickle' (legacy torch.save), from magic bytes."""
    with path.open("rb") as f:
        head = f.read(9)
    if head[:2] == b"PK":
        return "zip"
    if head[:1] == b"\x80":
        return "pickle"
    if len(head) >= 9 and head[8:9] == b"{":
        return "safetensors"  # 8-byte little-endian header length, then a JSON object
    raise WeightsError(f"{path}: not a PyTorch checkpoint or safetensors file (starts with {head[:8]!r})")


def _check_file(path: str | os.PathLike[str]) -> Path:
    path = Path(path)
    if not path.exists():
        raise WeightsError(f"{path}: weights file not found")
    if not path.is_file():
        raise WeightsError(f"{path}: is not a file")
    if path.stat().st_size == 0:
        raise WeightsError(f"{path}: file is empty")
    return path


def _unwrap(obj: object, path: Path) -> dict[str, torch.Tensor]:
    """Find the state_dict inside what torch.load returned and strip ``module.`` prefixes."""
    for _ in range(3):  # {"state_dict": {"model": ...}} at most a couple of levels deep
        if isinstance(obj, Mapping) and not any(isinstance(v, torch.Tensor) for v in obj.values()):
            inner = next((obj[k] for k in _WRAPPER_KEYS if isinstance(obj.get(k), Mapping)), None)
            if inner is None:
                break
            obj = inner
    if not isinstance(obj, Mapping):
        raise WeightsError(f"{path}: holds a {type(obj).__name__}, not a state_dict (a dict of tensors)")
    state: dict[str, torch.Tensor] = {}
    for key, value in obj.items():
        if not isinstance(value, torch.Tensor):
            raise WeightsError(f"{path}: entry {key!r} is a {type(value).__name__}, not a tensor")
        name = str(key)
        while name.startswith("module."):
            name = name[len("module.") :]
        state[name] = value
    return state


def validate_ldn_state(state: Mapping[str, torch.Tensor], source: str) -> dict[str, torch.Tensor]:
    """Check ``state`` holds exactly the LDN's tensors; return them as float32, contiguous, on CPU.

    ``source`` names the file (or object) in error messages. Raises WeightsError listing missing,
    unexpected and mis-shaped keys, non-float or non-finite tensors.
    """
    return _validate_state(state, ldn_reference_shapes(), source, "an LDN")


def _validate_state(
    state: Mapping[str, torch.Tensor], expected: Mapping[str, tuple[int, ...]], source: str, label: str
) -> dict[str, torch.Tensor]:
    """Check ``state`` holds exactly the ``expected`` keys and shapes (see :func:`validate_ldn_state`)."""
    missing = [k for k in expected if k not in state]
    unexpected = [k for k in state if k not in expected]
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"missing {len(missing)} keys: {', '.join(missing)}")
        if unexpected:
            parts.append(f"unexpected {len(unexpected)} keys: {', '.join(unexpected)}")
        raise WeightsError(f"{source}: not {label} state_dict ({'; '.join(parts)})")
    wrong = [
        f"{k} {tuple(state[k].shape)} (expected {shape})"
        for k, shape in expected.items()
        if tuple(state[k].shape) != shape
    ]
    if wrong:
        raise WeightsError(f"{source}: wrong tensor shapes: {', '.join(wrong)}")
    out: dict[str, torch.Tensor] = {}
    for key in expected:
        tensor = state[key]
        if not tensor.is_floating_point():
            raise WeightsError(f"{source}: {key} has dtype {tensor.dtype}, expected a floating point type")
        # The backends run float32; half-precision files are widened once here.
        tensor = tensor.detach().to("cpu", torch.float32).contiguous()
        if not bool(torch.isfinite(tensor).all()):
            raise WeightsError(f"{source}: {key} contains NaN or infinite values")
        out[key] = tensor
    return out


def _reason(exc: BaseException, prefer: str = "") -> str:
    """The informative line of a (often multi-paragraph) torch error message."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    if prefer:
        lines = [line for line in lines if prefer in line] or lines
    reason = lines[0] if lines else type(exc).__name__
    return reason.split(". ")[0].rstrip(".")


def _load_torch(path: Path) -> dict[str, torch.Tensor]:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        # weights_only refuses globals it does not know: this is how a pickle carrying code ends up.
        raise WeightsError(
            f"{path}: refused to load, it holds more than tensors and could run code "
            f"({_reason(exc, 'GLOBAL')})"
        ) from exc
    except (RuntimeError, EOFError, OSError, ValueError, zipfile.BadZipFile, struct.error) as exc:
        raise WeightsError(
            f"{path}: unreadable PyTorch checkpoint, truncated or corrupt ({_reason(exc)})"
        ) from exc
    return _unwrap(obj, path)


def _read_safetensors(path: Path, tensors: bool = True) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    """Tensors (unless ``tensors`` is False: the header only) and metadata, of any architecture."""
    from safetensors import SafetensorError, safe_open

    try:
        with safe_open(str(path), framework="pt", device="cpu") as f:
            metadata = dict(f.metadata() or {})
            keys = list(f.keys()) if tensors else []
            state = {k: f.get_tensor(k) for k in keys}
    except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as exc:
        raise WeightsError(f"{path}: unreadable safetensors file (truncated or corrupt?): {exc}") from exc
    return state, metadata


def _load_safetensors(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, str]]:
    state, metadata = _read_safetensors(path)
    arch = metadata.get("architecture")
    if arch is not None and arch != ARCHITECTURE:
        raise WeightsError(f"{path}: holds architecture {arch!r}, expected {ARCHITECTURE!r}")
    return state, metadata


def load_ldn_state(path: str | os.PathLike[str]) -> dict[str, torch.Tensor]:
    """Load and check LDN weights from a PyTorch checkpoint or the project's safetensors file.

    Returns the 25 tensors keyed as in :class:`~spikereveal.engine.ldn.LDN` (float32, CPU),
    ready for ``LDN().load_state_dict(state, strict=True)``. Raises WeightsError when the file
    is missing, unreadable, refuses to load safely, or is not an LDN.
    """
    path = _check_file(path)
    kind = _sniff(path)
    if kind == "safetensors":
        state, _ = _load_safetensors(path)
    else:
        state = _load_torch(path)
    return validate_ldn_state(state, str(path))


def load_ldn_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata stored with the weights: the safetensors header's, or ``{"format": "pytorch"}``.

    Cheap for safetensors (reads only the header); a PyTorch checkpoint carries no metadata.
    """
    path = _check_file(path)
    if _sniff(path) != "safetensors":
        return {"format": "pytorch"}
    _, metadata = _load_safetensors(path)
    return metadata


def state_digest(state: Mapping[str, torch.Tensor]) -> str:
    """SHA-256 (hex) over the keys, shapes, dtypes and bytes of ``state`` in key order.

    Identifies a set of weights independently of the file format, e.g. to key an export cache.
    """
    h = hashlib.sha256()
    for key in sorted(state):
        tensor = state[key].detach().to("cpu").contiguous()
        h.update(f"{key}|{tuple(tensor.shape)}|{tensor.dtype}|".encode())
        h.update(tensor.view(torch.uint8).numpy().tobytes() if tensor.numel() else b"")
    return h.hexdigest()


def file_sha256(path: str | os.PathLike[str]) -> str:
    """SHA-256 (hex) of a file's bytes, to record where imported weights came from."""
    h = hashlib.sha256()
    with Path(path).open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def save_ldn_state(
    path: str | os.PathLike[str],
    state: Mapping[str, torch.Tensor],
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Write checked LDN weights as safetensors with metadata; returns the path.

    ``metadata`` values are stored as strings (safetensors metadata is str -> str); the format
    name/version, architecture and parameter count are always added. The file is written next to
    its destination and renamed into place, so a crash never leaves a half-written file there.
    """

    path = Path(path)
    checked = validate_ldn_state(state, "state to save")
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update(
        format=FORMAT_NAME,
        format_version=FORMAT_VERSION,
        architecture=ARCHITECTURE,
        parameters=str(sum(t.numel() for t in checked.values())),
        weights_sha256=state_digest(checked),
    )
    return _write_atomically(path, checked, meta)


# ---- every architecture: save_net / load_net ----


def _architecture_class(architecture: str, where: str) -> type[nn.Module]:
    cls = ARCHITECTURES.get(architecture)
    if cls is None:
        known = ", ".join(sorted(ARCHITECTURES))
        raise WeightsError(f"{where}: unknown architecture {architecture!r}, expected one of {known}")
    return cls


def _build(architecture: str, config: str | None, source: str) -> nn.Module:
    """A fresh net of ``architecture`` from its stored constructor arguments (JSON object or None)."""
    cls = _architecture_class(architecture, source)
    if not config:
        return cls()
    try:
        kwargs = json.loads(config)
        if not isinstance(kwargs, dict):
            raise TypeError(f"a JSON {type(kwargs).__name__}, not an object")
        return cls(**kwargs)
    except (ValueError, TypeError) as exc:
        raise WeightsError(
            f"{source}: metadata net_config {config!r} does not build {_LABELS[architecture]} net ({exc})"
        ) from exc


def save_net(
    path: str | os.PathLike[str],
    net: nn.Module,
    architecture: str,
    metadata: Mapping[str, object] | None = None,
) -> Path:
    """Write ``net``'s weights as safetensors with string metadata; returns the path.

    ``architecture`` is a key of :data:`ARCHITECTURES` and ``net`` must be an instance of its class
    (a ``torch.compile`` wrapper is unwrapped). ``metadata`` may hold any string keys (data, steps,
    seed, spike_density, vth, command, teacher_loss...); values are stored as strings. The format,
    architecture, parameter count, digest and, for nets with a ``config()``, the constructor
    arguments (``net_config``, JSON) are always added. Written next to the destination and renamed
    into place, as :func:`save_ldn_state`.
    """

    path = Path(path)
    cls = _architecture_class(architecture, f"{path}")
    net = getattr(net, "_orig_mod", net)  # torch.compile's OptimizedModule
    if not isinstance(net, cls):
        raise WeightsError(f"{path}: cannot save a {type(net).__name__} as architecture {architecture!r}")
    bad_keys = [k for k in (metadata or {}) if not isinstance(k, str)]
    if bad_keys:
        raise WeightsError(f"{path}: metadata keys must be strings, got {bad_keys[0]!r}")
    if architecture == ARCHITECTURE:
        return save_ldn_state(path, net.state_dict(), metadata)
    config = net.config() if hasattr(net, "config") else None
    reference = _build(architecture, json.dumps(config) if config else None, "net to save")
    expected = {k: tuple(v.shape) for k, v in reference.state_dict().items()}
    checked = _validate_state(net.state_dict(), expected, "net to save", _LABELS[architecture])
    meta = {str(k): str(v) for k, v in (metadata or {}).items()}
    meta.update(
        format=f"spikereveal-{architecture}",
        format_version=FORMAT_VERSION,
        architecture=architecture,
        parameters=str(sum(t.numel() for t in checked.values())),
        weights_sha256=state_digest(checked),
    )
    if config:
        meta["net_config"] = json.dumps(config, sort_keys=True)
    return _write_atomically(path, checked, meta)


def read_metadata(path: str | os.PathLike[str]) -> dict[str, str]:
    """The metadata of any weights file, reading only a safetensors header (``{"format": "pytorch"}``
    for a checkpoint, which carries none). Unlike :func:`load_ldn_metadata`, any architecture."""
    path = _check_file(path)
    if _sniff(path) != "safetensors":
        return {"format": "pytorch"}
    return _read_safetensors(path, tensors=False)[1]


def load_net(
    path: str | os.PathLike[str], architecture: str | None = None
) -> tuple[nn.Module, dict[str, str]]:
    """Load a net of any architecture: (the net in eval mode, float32 on CPU; its metadata).

    ``architecture`` (a key of :data:`ARCHITECTURES`) is what the caller expects; a file holding
    another is a WeightsError "W: holds a bsn network, expected ldn". None takes what the file says.
    A safetensors file without an ``architecture`` entry, and a PyTorch checkpoint (the paper's),
    are read as ``architecture`` or, when None, as an LDN.
    """
    path = _check_file(path)
    if architecture is not None:
        _architecture_class(architecture, f"{path}")
    if _sniff(path) == "safetensors":
        state, metadata = _read_safetensors(path)
    else:
        state, metadata = _load_torch(path), {"format": "pytorch"}
    held = metadata.get("architecture") or architecture or ARCHITECTURE
    if held not in ARCHITECTURES:
        known = ", ".join(sorted(ARCHITECTURES))
        raise WeightsError(f"{path}: holds an unknown architecture {held!r}, expected one of {known}")
    if architecture is not None and held != architecture:
        raise WeightsError(f"{path}: holds a {held} network, expected {architecture}")
    net = _build(held, metadata.get("net_config"), str(path))
    expected = {k: tuple(v.shape) for k, v in net.state_dict().items()}
    net.load_state_dict(_validate_state(state, expected, str(path), _LABELS[held]), strict=True)
    return net.eval(), metadata


def resolve_weights(spec: str | os.PathLike[str]) -> Path:
    """``"default"`` -> :data:`DEFAULT_LDN_WEIGHTS`; anything else -> that path, checked to be a file.

    Raises WeightsError when the default weights are not installed or the file is missing/empty.
    """
    if isinstance(spec, str) and spec == DEFAULT_WEIGHTS:
        path = default_ldn_weights()
        if not path.is_file():
            raise WeightsError(missing_default_message(path))
        return path
    if isinstance(spec, str) and not spec.strip():
        raise WeightsError("empty weights path; expected a file or 'default'")
    return _check_file(spec)


def _write_atomically(path: Path, tensors: Mapping[str, torch.Tensor], meta: dict[str, str]) -> Path:
    """Write a safetensors file through a temporary name, so a reader never sees half a file."""
    from safetensors.torch import save_file

    if not path.parent.is_dir():
        raise WeightsError(f"{path}: folder {path.parent} does not exist")
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        save_file({k: t.clone() for k, t in tensors.items()}, str(tmp), metadata=meta)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path
