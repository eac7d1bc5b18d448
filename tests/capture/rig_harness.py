"""A small real rig for tests: a video file as the RGB camera and a growing ``.dat`` file as the
spike camera (``spikes:file:``), written at the spike rate by a thread, as a camera SDK would."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import cv2
import numpy as np

from spikereveal.calibration.model import Calibration, save_calibration
from spikereveal.stream.spikes import SpikeGeometry, pack_frames

SPIKE_HW = (16, 24)
RATE_HZ = 2000.0  # few frames per exposure: small files, fast tests
#: A measured calibration: spike pixel (x, y) -> RGB (3x + 1, 3y + 1): the video is 3x the spike
#: grid, and the rig warps it onto the 4x grid the engine takes.
WARP = Calibration(id="rig-test", homography=((3.0, 0.0, 1.0), (0.0, 3.0, 1.0), (0.0, 0.0, 1.0)))


def write_video(path: Path, n: int, size: tuple[int, int], fps: float = 30.0) -> Path:
    """``n`` frames of (H, W) = ``size``, each a different grey (MJPG: every OpenCV build reads it)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), fps, (size[1], size[0]))
    for k in range(n):
        frame = np.full((*size, 3), 30 + 20 * k, np.uint8)
        frame[:, : size[1] // 3] = 200
        writer.write(frame)
    writer.release()
    return path


class SpikeFileWriter:
    """Appends random packed frames to ``path`` as the camera would read them out: at ``rate_hz``.

    Use as a context manager; the file grows from ``start`` until the block ends.
    """

    def __init__(self, path: Path, rate_hz: float = RATE_HZ, spike_hw: tuple[int, int] = SPIKE_HW) -> None:
        self.path, self.rate_hz = path, rate_hz
        self.geometry = SpikeGeometry(*spike_hw, flip=False)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._write, daemon=True)
        self.frames = 0

    def _write(self) -> None:
        rng = np.random.default_rng(0)
        h, w = self.geometry.height, self.geometry.width
        t0 = time.monotonic()
        with self.path.open("ab") as f:
            while not self._stop.is_set():
                due = int((time.monotonic() - t0) * self.rate_hz) + 1
                if due > self.frames:
                    block = (rng.random((due - self.frames, h, w)) < 0.2).astype(np.uint8)
                    f.write(pack_frames(block, self.geometry).tobytes())
                    f.flush()
                    self.frames = due
                time.sleep(0.004)

    def __enter__(self) -> SpikeFileWriter:
        self.path.touch()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


def rig_keys(folder: Path, *, frames: int = 8, calibration: Calibration | None = WARP) -> str:
    """The YAML keys of a rig in ``folder`` (video, spike file and calibration written there,
    named relative to it): paste them into a rig file or a run file's ``rig:`` section."""
    scale = 3 if calibration is not None and calibration.homography is not None else 4
    write_video(folder / "cam.avi", frames, (SPIKE_HW[0] * scale, SPIKE_HW[1] * scale))
    lines = [
        "rgb: cam.avi",
        f'spikes: "spikes:file:spikes.dat?size={SPIKE_HW[0]}x{SPIKE_HW[1]}&rate={RATE_HZ:g}&flip=0&end_s=1"',
        "margin_frames: 6",
        "coverage_timeout_s: 1.0",
    ]
    if calibration is not None:
        save_calibration(folder / "calib.yaml", calibration)
        lines.append("calibration: calib.yaml")
    return "\n".join(lines) + "\n"
