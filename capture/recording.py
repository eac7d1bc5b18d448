"""Crash-safe recordings of any source, in the RSB layout, and their replay (``rec:DIR``).

A recording is a folder that three kinds of reader understand::

    DIR/meta.json                      layout "rsb", spike size, rate, flip, exposure (the RSB reader
                                       and this module read it)
    DIR/spike_data/<scene>/<n>.dat     one exposure window, packed, rows bottom-up (``flip``)
    DIR/blur_data/<scene>/<n>.png      its RGB frame, lossless PNG (BGR as captured)
    DIR/stream/<scene>.dat (+ .json)   the continuous spike stream of the scene: every frame once
    DIR/index.jsonl                    one JSON line per bundle: times, exposure, file sizes and
                                       SHA-256, the stream position and the capture's sync report

Why this order of writes: a SIGKILL may land anywhere, and the recording must stay readable.
Each bundle's PNG then ``.dat`` are written under a temporary name, fsync'ed and renamed (the RSB
reader keys on ``*.dat``, so a ``.dat`` never exists without its PNG); the stream grows by whole
frames; only then is the index line written, flushed and fsync'ed. A kill therefore loses at most
the bundle in flight: its index line is missing or torn (no newline), which the reader tolerates
and reports. Anything else that disagrees (a missing file, a size or hash mismatch, a malformed
line before the last) is one :class:`RecordingError` naming the file.

Replay (:class:`RecordingSource`) gives back the very :class:`Capture` objects that were recorded:
same index, sample name, BGR image and spike frames bit for bit, same exposure and sensor times
(ground-truth ``sharp`` frames, which only simulations have, are not recorded). It does not pace
by default (the capture node's ``rate`` does); ``?rate=realtime|FACTOR`` paces it for readers
that do not, with :func:`paced` on the recorded ``rgb_t_ns``.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spikereveal.capture.sample import Sample
from spikereveal.capture.sources import Capture, SourceError, paced, parse_rate
from spikereveal.stream.spikes import SpikeGeometry, pack_frames, unpack_frames

log = logging.getLogger(__name__)

INDEX_NAME = "index.jsonl"
META_NAME = "meta.json"
#: ``meta.json`` key that marks a folder as a recording (and its format version).
FORMAT_KEY = "spikereveal_recording"
FORMAT_VERSION = 1


class RecordingError(SourceError):
    """A folder that is not a recording, or an index that disagrees with its files."""


#: zlib level of the recorded PNGs (see ``write``).
PNG_LEVEL = 1


def _sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fsync_dir(path: Path) -> None:
    """Make a rename durable: the directory entry is data too."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    """Write ``path`` so that it either does not exist or is complete (temp file, fsync, rename)."""
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def scene_of(sample_name: str) -> str:
    """The scene folder for a sample name (``"pan/0003"`` -> ``"pan"``), safe as a folder name."""
    head = sample_name.split("/")[0] if "/" in sample_name else "rec"
    return re.sub(r"[^A-Za-z0-9._-]", "_", head) or "rec"


def window_start_frame(capture: Capture, origin_ns: int) -> int:
    """Absolute stream frame index of the capture's first spike frame, from its sensor time."""
    return round((capture.spike_t0_ns - origin_ns) * capture.spike_rate_hz / 1e9)


@dataclass
class _SceneStream:
    """The continuous stream of one scene as written so far (the last window kept to check overlaps)."""

    path: Path
    origin_ns: int
    frames: int = 0
    gaps: list[list[int]] = field(default_factory=list)
    tail: np.ndarray | None = None  # packed frames [frames - len(tail), frames)
    conflicts: int = 0


@dataclass(frozen=True)
class BundleRecord:
    """What one index line says about one recorded bundle."""

    line: dict[str, Any]

    @property
    def seq(self) -> int:
        return int(self.line["seq"])


class RecordingWriter:
    """Append captures to a new recording folder (see the module docstring for what goes where).

    ``with RecordingWriter(out) as rec: rec.write(capture)``; ``out`` must be absent or empty,
    so that a recording is never mixed with another.
    """

    def __init__(self, out: str | os.PathLike[str], *, source_id: str = "") -> None:
        self.root = Path(out)
        if self.root.exists() and (not self.root.is_dir() or any(self.root.iterdir())):
            raise RecordingError(f"{self.root}: output folder exists and is not empty; pick a new folder")
        self.root.mkdir(parents=True, exist_ok=True)
        self.source_id = source_id
        self.meta: dict[str, Any] | None = None
        self.streams: dict[str, _SceneStream] = {}
        self.count = 0
        self._index = open(self.root / INDEX_NAME, "ab")  # noqa: SIM115 - lives as long as the writer

    def __enter__(self) -> RecordingWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if not self._index.closed:
            self._index.close()

    def _start(self, capture: Capture) -> None:
        sample = capture.sample
        h, w = sample.spike_size
        self.geometry = SpikeGeometry(h, w, flip=True)  # the RSB convention: rows stored bottom-up
        self.meta = {
            FORMAT_KEY: FORMAT_VERSION,
            "layout": "rsb",
            "source_id": self.source_id,
            "spike_size": [h, w],
            "blur_size": list(sample.blur_size),
            "spike_rate_hz": capture.spike_rate_hz,
            "flip": True,
            "row_tag_bits": 0,
            "frame_bytes": self.geometry.frame_bytes,
            # The RSB reader takes one exposure for every sample; replay uses each line's own.
            "exposure": list(sample.exposure),
        }
        _write_atomic(self.root / META_NAME, (json.dumps(self.meta, indent=2) + "\n").encode())

    def _check_same_sensor(self, capture: Capture) -> None:
        assert self.meta is not None
        sample = capture.sample
        for key, value in (
            ("spike_size", list(sample.spike_size)),
            ("blur_size", list(sample.blur_size)),
            ("spike_rate_hz", capture.spike_rate_hz),
        ):
            if self.meta[key] != value:
                raise RecordingError(
                    f"capture {capture.index}: {key} {value} differs from the recording's {self.meta[key]}; "
                    "one recording holds one sensor setup"
                )
        if list(sample.exposure) != self.meta["exposure"] and not self.meta.get("exposure_varies"):
            self.meta["exposure_varies"] = True
            log.warning(
                "capture %d: exposure %s differs from the first %s; replay keeps each, the RSB "
                "dataset view uses the first",
                capture.index,
                sample.exposure,
                self.meta["exposure"],
            )
            _write_atomic(self.root / META_NAME, (json.dumps(self.meta, indent=2) + "\n").encode())

    def _stream_append(self, scene: str, capture: Capture, packed: np.ndarray) -> dict[str, Any]:
        """Append the frames of this window that the stream does not hold yet; returns the index entry."""
        stream = self.streams.get(scene)
        if stream is None:
            folder = self.root / "stream"
            folder.mkdir(exist_ok=True)
            stream = _SceneStream(folder / f"{scene}.dat", capture.spike_t0_ns)
            side = {
                **self.geometry.to_json_dict(),
                "rate_hz": capture.spike_rate_hz,
                "t0_ns": capture.spike_t0_ns,
            }
            _write_atomic(stream.path.with_name(stream.path.name + ".json"), json.dumps(side).encode())
            stream.path.touch()
            self.streams[scene] = stream
        start = window_start_frame(capture, stream.origin_ns)
        n = packed.shape[0]
        tail_start = stream.frames - (0 if stream.tail is None else len(stream.tail))
        if start < tail_start:
            raise RecordingError(
                f"capture {capture.index}: its spike window starts at stream frame {start}, before the "
                f"last window written (frame {tail_start}); sensor times must not go back"
            )
        overlap_to = min(start + n, stream.frames)
        if stream.tail is not None and overlap_to > start:
            old = stream.tail[start - tail_start : overlap_to - tail_start]
            if not np.array_equal(old, packed[: overlap_to - start]):
                stream.conflicts += 1
                log.warning("capture %d: overlapping spike frames differ from the stream's", capture.index)
        gap = max(0, start - stream.frames)
        if gap:
            # Frame index must stay time: a hole is filled with empty frames and listed as a gap.
            stream.gaps.append([stream.frames, gap])
        fresh = packed[max(0, stream.frames - start) :]
        if gap or len(fresh):
            data = bytes(gap * self.geometry.frame_bytes) + fresh.tobytes()
            with open(stream.path, "ab") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            stream.frames += gap + len(fresh)
            stream.tail = packed
        return {
            "path": f"stream/{scene}.dat",
            "window_start": start,
            "frames_after": stream.frames,
            "gap_frames": gap,
        }

    def write(self, capture: Capture, sync: dict[str, Any] | None = None) -> dict[str, Any]:
        """Record one capture durably; returns its index line (already on disk when this returns)."""
        if self.meta is None:
            self._start(capture)
        else:
            self._check_same_sensor(capture)
        sample = capture.sample
        scene = scene_of(sample.name)
        name = str(capture.index)
        # zlib level 1: lossless like any level, ~2.5x faster to encode than OpenCV's default 3 for
        # ~6 % more bytes; PNG encoding is most of a bundle's write time at RSB size.
        ok, png = cv2.imencode(".png", sample.blur, [cv2.IMWRITE_PNG_COMPRESSION, PNG_LEVEL])
        if not ok:
            raise RecordingError(f"capture {capture.index}: OpenCV could not encode its image as PNG")
        png_bytes = png.tobytes()
        packed = pack_frames(sample.spikes, self.geometry)
        dat_bytes = packed.tobytes()
        files: dict[str, dict[str, Any]] = {}
        for kind, folder, suffix, data in (
            ("blur", "blur_data", ".png", png_bytes),  # first: a .dat never exists without its image
            ("spikes", "spike_data", ".dat", dat_bytes),
        ):
            rel = f"{folder}/{scene}/{name}{suffix}"
            path = self.root / rel
            path.parent.mkdir(parents=True, exist_ok=True)
            _write_atomic(path, data)
            files[kind] = {"path": rel, "bytes": len(data), "sha256": _sha256(data)}
        line: dict[str, Any] = {
            "seq": capture.index,
            "scene": scene,
            "name": name,
            "sample_name": sample.name,
            "rgb_t_ns": capture.rgb_t_ns,
            "spike_t0_ns": capture.spike_t0_ns,
            "spike_rate_hz": capture.spike_rate_hz,
            "exposure": list(sample.exposure),
            "frames": sample.num_frames,
            "files": files,
            "stream": self._stream_append(scene, capture, packed),
            "sync": sync,
        }
        self._index.write((json.dumps(line, separators=(",", ":")) + "\n").encode())
        self._index.flush()
        os.fsync(self._index.fileno())
        self.count += 1
        return line


def _read_index(root: Path) -> tuple[list[dict[str, Any]], bool]:
    """The index lines, and whether a torn last line (the bundle in flight at a kill) was dropped."""
    path = root / INDEX_NAME
    raw = path.read_bytes()
    lines = raw.split(b"\n")
    torn = False
    if lines and lines[-1] != b"":
        torn = True  # written in one call with its newline: no newline means the writer died in it
    records: list[dict[str, Any]] = []
    for number, text in enumerate(lines[:-1], start=1):
        try:
            line = json.loads(text)
            if not isinstance(line, dict):
                raise ValueError("not a JSON object")
            for key in ("seq", "scene", "name", "sample_name", "rgb_t_ns", "spike_t0_ns", "exposure"):
                if key not in line:
                    raise ValueError(f"missing {key!r}")
            for kind in ("blur", "spikes"):
                entry = line["files"][kind]
                entry["path"], entry["bytes"], entry["sha256"]  # noqa: B018 - presence check
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise RecordingError(f"{path}: line {number} is malformed ({exc})") from None
        records.append(line)
    return records, torn


@dataclass
class RecordingSource:
    """Replay a recording folder as the captures it was made from (see the module docstring).

    Opening checks the folder, every index line and every file's presence and size; each file's
    SHA-256 is checked when its bundle is read. ``torn``: the last index line was cut by a kill
    (that bundle is left out, with a warning).
    """

    path: Path
    rate: str | float = "max"

    def __post_init__(self) -> None:
        self.path = Path(self.path)
        self.rate = parse_rate(self.rate)
        root = self.path
        if not root.is_dir():
            raise RecordingError(f"{root}: no such recording folder")
        meta_path = root / META_NAME
        if not (root / INDEX_NAME).is_file() or not meta_path.is_file():
            raise RecordingError(
                f"{root}: not a recording (expected {INDEX_NAME} and {META_NAME} written by spikereveal record)"
            )
        try:
            meta = json.loads(meta_path.read_text(encoding="utf-8"))
            if not isinstance(meta, dict) or meta.get(FORMAT_KEY) != FORMAT_VERSION:
                raise ValueError(f"no {FORMAT_KEY}: {FORMAT_VERSION}")
            h, w = meta["spike_size"]
            self.geometry = SpikeGeometry(
                int(h), int(w), flip=bool(meta["flip"]), row_tag_bits=int(meta["row_tag_bits"])
            )
            self.spike_rate_hz = float(meta["spike_rate_hz"])
        except (ValueError, KeyError, TypeError, UnicodeDecodeError) as exc:
            raise RecordingError(f"{meta_path}: not a recording's meta.json ({exc})") from None
        self.meta = meta
        self.records, self.torn = _read_index(root)
        if self.torn:
            log.warning(
                "%s: the last index line is torn (the bundle in flight when the recorder stopped); "
                "replaying the %d complete bundles",
                root / INDEX_NAME,
                len(self.records),
            )
        for line in self.records:
            for kind in ("blur", "spikes"):
                entry = line["files"][kind]
                file = root / entry["path"]
                if not file.is_file():
                    raise RecordingError(
                        f"{file}: listed in {root / INDEX_NAME} (seq {line['seq']}) but missing"
                    )
                size = file.stat().st_size
                if size != entry["bytes"]:
                    raise RecordingError(
                        f"{file}: {size} bytes, {root / INDEX_NAME} (seq {line['seq']}) says {entry['bytes']}"
                    )
        if not self.records:
            raise RecordingError(f"{root / INDEX_NAME}: the recording holds no complete bundle")
        self.source_id = f"rec:{root}"

    def __len__(self) -> int:
        return len(self.records)

    def _read_checked(self, line: dict[str, Any], kind: str) -> bytes:
        entry = line["files"][kind]
        file = self.path / entry["path"]
        data = file.read_bytes()
        if len(data) != entry["bytes"] or _sha256(data) != entry["sha256"]:
            raise RecordingError(
                f"{file}: contents differ from {self.path / INDEX_NAME} (seq {line['seq']}): SHA-256 mismatch"
            )
        return data

    def capture(self, line: dict[str, Any]) -> Capture:
        """The Capture one index line describes, its files read and checked."""
        png = self._read_checked(line, "blur")
        blur = cv2.imdecode(np.frombuffer(png, dtype=np.uint8), cv2.IMREAD_COLOR)
        if blur is None:
            raise RecordingError(f"{self.path / line['files']['blur']['path']}: not a PNG OpenCV decodes")
        dat = self._read_checked(line, "spikes")
        fb = self.geometry.frame_bytes
        if len(dat) % fb:
            raise RecordingError(
                f"{self.path / line['files']['spikes']['path']}: {len(dat)} bytes is not a whole number "
                f"of {self.geometry.describe()} frames ({fb} bytes each)"
            )
        spikes = unpack_frames(np.frombuffer(dat, dtype=np.uint8).reshape(-1, fb), self.geometry)
        try:
            sample = Sample(line["sample_name"], blur, spikes, tuple(line["exposure"]))
        except ValueError as exc:
            raise RecordingError(f"{self.path / INDEX_NAME} (seq {line['seq']}): {exc}") from None
        return Capture(
            int(line["seq"]),
            sample,
            int(line["rgb_t_ns"]),
            int(line["spike_t0_ns"]),
            float(line.get("spike_rate_hz", self.spike_rate_hz)),
        )

    def __iter__(self) -> Iterator[Capture]:
        return paced((self.capture(line) for line in self.records), self.rate)

    def close(self) -> None:
        return None
