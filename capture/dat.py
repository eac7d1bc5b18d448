"""Raw spike-camera ``.dat`` files: memory-mapped reading, writing, following a growing file, sidecars.

Format (no header): frames are concatenated, ``frame_bytes`` each; the layout inside a frame (rows
bottom-up, least significant bit first, optional tag bits per row) and the bit-exact packing are
the pure spike format of :mod:`spikereveal.stream.spikes`, re-exported here. This module adds the
file I/O around it: the ``<file>.json`` sidecar with the geometry and rate, ``open_dat``,
``write_dat`` and ``follow_dat``.

Every function here returns spikes *upright* (row 0 at the top) unless the geometry says
``flip=False`` (cameras that already store rows top-down).
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np

# The pure format lives at the bottom (stream/spikes.py); re-exported for callers of this module.
from spikereveal.stream.spikes import SpikeFormatError, SpikeGeometry, pack_frames, unpack_frames

__all__ = [
    "DatFile",
    "SpikeFormatError",
    "SpikeGeometry",
    "follow_dat",
    "open_dat",
    "pack_frames",
    "read_sidecar",
    "resolve_geometry",
    "sidecar_path",
    "unpack_frames",
    "write_dat",
]

# Frames packed/unpacked per step when writing; bounds the temporary memory to ~12 MB at 250x400.
_WRITE_CHUNK_FRAMES = 128


def sidecar_path(path: str | os.PathLike[str]) -> Path:
    """The JSON sidecar that describes ``path``: ``spikes.dat`` -> ``spikes.dat.json``."""
    path = Path(path)
    return path.with_name(path.name + ".json")


def read_sidecar(path: str | os.PathLike[str]) -> dict[str, object] | None:
    """The sidecar of spike file ``path`` as a dict, or None when there is none."""
    side = sidecar_path(path)
    if not side.is_file():
        return None
    try:
        data = json.loads(side.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SpikeFormatError(f"{side}: not a readable JSON sidecar ({exc})") from exc
    if not isinstance(data, dict):
        raise SpikeFormatError(f"{side}: expected a JSON object with height and width")
    return data


def resolve_geometry(
    path: str | os.PathLike[str],
    height: int | None = None,
    width: int | None = None,
    *,
    flip: bool | None = None,
    row_tag_bits: int | None = None,
) -> tuple[SpikeGeometry, float | None]:
    """The geometry (and rate in Hz, if known) to read ``path`` with.

    Explicit arguments win; anything left as None comes from the sidecar ``<path>.json``, then from
    the defaults (``flip=True``, ``row_tag_bits=0``). Height and width have no default: without
    them and without a sidecar this is a :class:`SpikeFormatError`.
    """
    if (height is None) != (width is None):
        raise SpikeFormatError(f"{path}: give both height and width (got height={height}, width={width})")
    side = read_sidecar(path)
    rate_hz: float | None = None
    if side is not None:
        rate = side.get("rate_hz")
        if rate is not None:
            if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
                raise SpikeFormatError(
                    f"{sidecar_path(path)}: rate_hz must be a positive number, got {rate!r}"
                )
            rate_hz = float(rate)
    if height is None:
        if side is None:
            raise SpikeFormatError(
                f"{path}: unknown frame size: pass the spike size (e.g. 250x400) or add a sidecar "
                f"{sidecar_path(path).name} with height and width"
            )
        if "height" not in side or "width" not in side:
            raise SpikeFormatError(f"{sidecar_path(path)}: missing height and/or width")
        height, width = side["height"], side["width"]  # type: ignore[assignment]
    if flip is None:
        flip = side.get("flip", True) if side is not None else True
        if not isinstance(flip, bool):
            raise SpikeFormatError(f"{sidecar_path(path)}: flip must be true or false, got {flip!r}")
    if row_tag_bits is None:
        row_tag_bits = side.get("row_tag_bits", 0) if side is not None else 0  # type: ignore[assignment]
    try:
        geometry = SpikeGeometry(height, width, flip, row_tag_bits)  # type: ignore[arg-type]
    except SpikeFormatError as exc:
        raise SpikeFormatError(f"{path}: {exc}") from exc
    return geometry, rate_hz


def _whole_frames(path: Path, size: int, geometry: SpikeGeometry) -> int:
    """Number of frames in a file of ``size`` bytes; a partial last frame is an error."""
    fb = geometry.frame_bytes
    if size % fb:
        raise SpikeFormatError(
            f"{path}: {size} bytes is not a whole number of {geometry.describe()} frames ({fb} bytes each)"
        )
    return size // fb


class DatFile:
    """A memory-mapped spike file: frames are decoded only when asked for.

    ``len(f)`` frames; ``f.packed(start, stop)`` is a zero-copy (n, frame_bytes) view of frames
    ``start..stop-1``; ``f.read(start, stop)`` decodes them to (n, H, W) uint8 0/1, upright.
    The frame count is fixed when the file is opened (use :func:`follow_dat` for growing files).
    """

    def __init__(self, path: str | os.PathLike[str], geometry: SpikeGeometry, rate_hz: float | None = None):
        self.path = Path(path)
        self.geometry = geometry
        self.rate_hz = rate_hz
        if not self.path.is_file():
            raise FileNotFoundError(f"{self.path}: no such spike file")
        n = _whole_frames(self.path, self.path.stat().st_size, geometry)
        self._closed = False
        self._n_frames = n
        self._frames: np.ndarray
        if n == 0:
            self._frames = np.empty((0, geometry.frame_bytes), dtype=np.uint8)  # mmap cannot map 0 bytes
        else:
            self._frames = np.memmap(self.path, dtype=np.uint8, mode="r", shape=(n, geometry.frame_bytes))

    def __len__(self) -> int:
        return self._n_frames

    def __repr__(self) -> str:
        return f"DatFile({str(self.path)!r}, {self.geometry.describe()}, {len(self)} frames)"

    def __enter__(self) -> DatFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Drop the mapping (views handed out earlier keep it alive until they go)."""
        self._closed = True
        self._frames = np.empty((0, self.geometry.frame_bytes), dtype=np.uint8)

    def _check_range(self, start: int, stop: int | None) -> tuple[int, int]:
        if self._closed:
            raise ValueError(f"{self.path}: spike file is closed")
        n = len(self)
        stop = n if stop is None else stop
        if not (0 <= start <= stop <= n):
            raise IndexError(
                f"{self.path}: frames {start}..{stop - 1} (start={start}, stop={stop}) are out of range; "
                f"the file has {n} frames (0..{n - 1})"
            )
        return start, stop

    def packed(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames ``start..stop-1`` as stored: a read-only (n, frame_bytes) uint8 view of the file."""
        start, stop = self._check_range(start, stop)
        return self._frames[start:stop]

    def read(self, start: int = 0, stop: int | None = None) -> np.ndarray:
        """Frames ``start..stop-1`` decoded: (n, H, W) uint8 of 0/1, upright, in memory."""
        return unpack_frames(self.packed(start, stop), self.geometry)

    def frame(self, index: int) -> np.ndarray:
        """One decoded frame, (H, W) uint8 of 0/1."""
        return self.read(index, index + 1)[0]


def open_dat(
    path: str | os.PathLike[str],
    height: int | None = None,
    width: int | None = None,
    *,
    flip: bool | None = None,
    row_tag_bits: int | None = None,
) -> DatFile:
    """Memory-map a spike file; sizes from the arguments or the sidecar (see :func:`resolve_geometry`).

    ``flip`` and ``row_tag_bits`` left as None take the sidecar's value, else True and 0.
    """
    geometry, rate_hz = resolve_geometry(path, height, width, flip=flip, row_tag_bits=row_tag_bits)
    return DatFile(path, geometry, rate_hz)


def write_dat(
    path: str | os.PathLike[str],
    spikes: np.ndarray,
    geometry: SpikeGeometry,
    *,
    sidecar: bool = True,
    rate_hz: float | None = None,
) -> Path:
    """Write upright spikes (T, H, W) 0/1 as a raw ``.dat`` file (and its JSON sidecar); returns the path.

    Frames are packed in chunks, so a long array does not need a second full-size copy.
    """
    path = Path(path)
    spikes = np.asarray(spikes)
    if spikes.ndim != 3 or spikes.shape[1:] != (geometry.height, geometry.width):
        raise SpikeFormatError(
            f"{path}: spikes of shape {spikes.shape} do not match the {geometry.describe()} geometry"
        )
    with open(path, "wb") as out:
        for start in range(0, spikes.shape[0], _WRITE_CHUNK_FRAMES):
            out.write(pack_frames(spikes[start : start + _WRITE_CHUNK_FRAMES], geometry).tobytes())
    if sidecar:
        meta: dict[str, object] = {**geometry.to_json_dict(), "rate_hz": rate_hz}
        sidecar_path(path).write_text(json.dumps(meta, indent=2) + "\n")
    return path


def follow_dat(
    path: str | os.PathLike[str],
    geometry: SpikeGeometry | None = None,
    *,
    start_frame: int = 0,
    poll_s: float = 0.01,
    idle_timeout_s: float = 1.0,
    max_chunk_frames: int = 1024,
) -> Iterator[np.ndarray]:
    """Yield the frames of a file that is still being written, as they appear.

    Yields **packed** chunks: read-only (n, frame_bytes) uint8 arrays (1 <= n <= ``max_chunk_frames``)
    of whole frames, in order, starting at ``start_frame``; decode them with :func:`unpack_frames`
    (packed chunks are 8x smaller to queue or send). Polls every ``poll_s`` seconds and stops once
    the file has not grown for ``idle_timeout_s`` (also while waiting for it to appear). A partial
    frame left at the end when it goes idle is a :class:`SpikeFormatError` (the writer died mid-frame).
    ``geometry`` None reads it from the sidecar.
    """
    path = Path(path)
    if geometry is None:
        geometry, _ = resolve_geometry(path)
    fb = geometry.frame_bytes
    last_progress = time.monotonic()
    while not path.exists():
        if time.monotonic() - last_progress > idle_timeout_s:
            raise FileNotFoundError(f"{path}: no such spike file (waited {idle_timeout_s} s)")
        time.sleep(poll_s)
    with open(path, "rb") as f:
        f.seek(start_frame * fb)
        pending = b""
        last_progress = time.monotonic()
        while True:
            # Read at most one chunk's worth; the remainder (a partial frame) waits for more bytes.
            data = f.read(max_chunk_frames * fb - len(pending))
            if data:
                last_progress = time.monotonic()
                pending += data
                whole = len(pending) // fb
                if whole:
                    chunk = np.frombuffer(pending[: whole * fb], dtype=np.uint8).reshape(whole, fb)
                    pending = pending[whole * fb :]
                    yield chunk
                continue
            if time.monotonic() - last_progress > idle_timeout_s:
                break
            time.sleep(poll_s)
    if pending:
        raise SpikeFormatError(
            f"{path}: {path.stat().st_size} bytes is not a whole number of {geometry.describe()} frames "
            f"({fb} bytes each); {len(pending)} bytes of a partial frame at the end"
        )
