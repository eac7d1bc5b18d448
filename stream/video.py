"""Writing what the display shows: an MPEG-4 video (cv2.VideoWriter, codec 'mp4v') and PNG files.

The headless display node (and a window with ``--record``) writes every sharp frame, side by side
with its blur, at K x the RGB rate, so the file plays the scene at its real speed. 'mp4v' (MPEG-4
part 2) is the codec OpenCV's bundled FFmpeg can always encode; H.264 depends on the build.

A video has one frame size; it is taken from the first frame. Odd sizes are padded to even with
black (the encoder would otherwise crop a row or column silently), and a later frame of another
size is resized to the first (and counted) rather than being dropped by the writer without a word.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import cv2
import numpy as np

from spikereveal.stream.errors import SpikeRevealError

#: Containers cv2.VideoWriter muxes 'mp4v' into; anything else fails to open (or writes images).
VIDEO_SUFFIXES = (".mp4", ".m4v", ".mov", ".avi", ".mkv")


class VideoError(SpikeRevealError):
    """A video or image file cannot be written (path, container, size or codec)."""


def _even(n: int) -> int:
    return n + (n % 2)


def pad_to_even(frame: np.ndarray) -> np.ndarray:
    """``frame`` with a black row/column added where its height/width is odd (itself when even)."""
    h, w = frame.shape[:2]
    if h % 2 == 0 and w % 2 == 0:
        return frame
    out = np.zeros((_even(h), _even(w), *frame.shape[2:]), frame.dtype)
    out[:h, :w] = frame
    return out


class VideoRecorder:
    """An .mp4 (or .avi/.mov/.mkv) of (H, W, 3) uint8 BGR frames at ``fps`` frames per second.

    The file opens at the first :meth:`write` (its size is the video's); :meth:`close` must run for
    the file to be playable (it writes the index), so use it as a context manager or in ``finally``.
    Raises :class:`VideoError` with the path, size, fps and codec when the writer cannot open.
    """

    def __init__(self, path: str | os.PathLike[str], fps: float, *, fourcc: str = "mp4v") -> None:
        self.path = Path(path)
        if self.path.suffix.lower() not in VIDEO_SUFFIXES:
            raise VideoError(
                f"{self.path}: unknown video container {self.path.suffix or '(no extension)'!r}; "
                f"expected one of {', '.join(VIDEO_SUFFIXES)}"
            )
        if not (isinstance(fps, (int, float)) and math.isfinite(fps) and fps > 0):
            raise VideoError(f"{self.path}: frame rate {fps!r} fps, expected a number > 0")
        if len(fourcc) != 4:
            raise VideoError(f"{self.path}: codec {fourcc!r}, expected a four-character code such as 'mp4v'")
        self.fps, self.fourcc = float(fps), fourcc
        self.size: tuple[int, int] | None = None  # (width, height) as written, even
        self.frame_size: tuple[int, int] | None = None  # (height, width) of the first frame given
        self.frames_written = 0
        self.resized = 0
        self._writer: cv2.VideoWriter | None = None
        self._closed = False

    def _open(self, height: int, width: int) -> None:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VideoError(f"{self.path}: cannot create the folder ({exc})") from None
        size = (_even(width), _even(height))
        writer = cv2.VideoWriter(str(self.path), cv2.VideoWriter_fourcc(*self.fourcc), self.fps, size)
        if not writer.isOpened():
            writer.release()
            raise VideoError(
                f"{self.path}: cv2.VideoWriter cannot open a {size[0]}x{size[1]} video at {self.fps:g} fps "
                f"with codec {self.fourcc!r} (is the folder writable and the container supported?)"
            )
        self._writer, self.size, self.frame_size = writer, size, (height, width)

    def write(self, frame: np.ndarray) -> None:
        """Append one (H, W, 3) uint8 BGR frame."""
        if self._closed:
            raise VideoError(f"{self.path}: write after close")
        if (
            not isinstance(frame, np.ndarray)
            or frame.dtype != np.uint8
            or frame.ndim != 3
            or frame.shape[2] != 3
        ):
            raise ValueError(
                f"{self.path}: frame of {getattr(frame, 'dtype', type(frame).__name__)} "
                f"{getattr(frame, 'shape', None)}, expected (H, W, 3) uint8 BGR"
            )
        h, w = frame.shape[:2]
        if self._writer is None:
            self._open(h, w)
        assert self._writer is not None and self.frame_size is not None
        if (h, w) != self.frame_size:
            fh, fw = self.frame_size
            frame = cv2.resize(frame, (fw, fh), interpolation=cv2.INTER_AREA)
            self.resized += 1
        self._writer.write(np.ascontiguousarray(pad_to_even(frame)))
        self.frames_written += 1

    @property
    def opened(self) -> bool:
        return self._writer is not None

    def close(self) -> None:
        """Finish the file (idempotent). A recorder that never got a frame leaves no file."""
        self._closed = True
        if self._writer is not None:
            self._writer.release()
            self._writer = None

    def __enter__(self) -> VideoRecorder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PngWriter:
    """Numbered PNG files in one folder (created on first use): ``<seq>_<index>.png``."""

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.written = 0

    def path_for(self, seq: int, index: int, prefix: str = "") -> Path:
        return self.folder / f"{prefix}{seq:08d}_{index:03d}.png"

    def write(self, image: np.ndarray, seq: int, index: int, *, prefix: str = "") -> Path:
        """Write (H, W, 3) uint8 BGR ``image``; returns its path. :class:`VideoError` if that fails."""
        path = self.path_for(seq, index, prefix)
        return self.write_to(path, image)

    def write_to(self, path: Path, image: np.ndarray) -> Path:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise VideoError(f"{path.parent}: cannot create the folder ({exc})") from None
        ok = cv2.imwrite(str(path), image)
        if not ok:
            raise VideoError(f"{path}: cv2.imwrite failed (is the folder writable?)")
        self.written += 1
        return path
