"""An RGB camera through OpenCV ``VideoCapture``: a device index, a video file or a pipeline string.

Each frame comes with its exposure start and end in host ns, because pairing it with the spike
stream needs *when the light was collected*, not when the frame reached Python:

- video files: the frame's own presentation time (``CAP_PROP_POS_MSEC``) on a timeline that starts
  at the host time the file was opened, and the configured exposure (default: one frame period,
  what a video's frame stands for). A file stands in for a camera (``realtime=True`` releases
  each frame at its time) or runs as fast as it decodes; the timestamps are the same either way.
- devices and pipelines: the driver's buffer timestamp where it gives one on the host's monotonic
  clock (V4L2 does, through ``CAP_PROP_POS_MSEC``), taken as the end of the exposure; else the host
  time at which ``read`` returned. Start = end - exposure (default one frame period at the fps the
  driver reports, else 30 fps).

Opening never half-succeeds: a camera that cannot be opened is a :class:`SourceError` naming the
device, file or pipeline string.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from spikereveal.capture.sources import SourceError

__all__ = ["OpenCVCamera", "RgbFrame", "parse_camera_spec"]

#: Frame rate assumed when neither the driver nor the settings give one.
FALLBACK_FPS = 30.0
#: A driver timestamp further than this from the host's monotonic clock is on some other clock.
_DRIVER_CLOCK_TOLERANCE_NS = 5_000_000_000


@dataclass(frozen=True, eq=False)
class RgbFrame:
    """One RGB frame and its exposure.

    Attributes:
        index: frame number from 0, in order.
        image: (H, W, 3) uint8 **RGB** (OpenCV's BGR converted once, here).
        start_ns, end_ns: exposure start and end, host ns (``time.monotonic_ns`` timeline).
        time_source: where the times came from: "file", "driver" or "host".
    """

    index: int
    image: np.ndarray
    start_ns: int
    end_ns: int
    time_source: str = "host"

    def __post_init__(self) -> None:
        img = self.image
        if not isinstance(img, np.ndarray) or img.dtype != np.uint8 or img.ndim != 3 or img.shape[2] != 3:
            raise ValueError(f"rgb frame {self.index}: image must be (H, W, 3) uint8, got {img!r:.60}")
        if self.end_ns < self.start_ns:
            raise ValueError(
                f"rgb frame {self.index}: exposure ends ({self.end_ns}) before it starts ({self.start_ns})"
            )

    @property
    def mid_ns(self) -> float:
        """Middle of the exposure: the time a blurred frame stands for."""
        return (self.start_ns + self.end_ns) / 2


def parse_camera_spec(spec: str | int) -> tuple[str, str | int]:
    """("device", 0) for ``0`` or ``"0"``; ("file", path) for an existing file; else ("pipeline", text)."""
    if isinstance(spec, int) or (isinstance(spec, str) and spec.strip().isdigit()):
        return "device", int(spec)
    if Path(spec).expanduser().is_file():
        return "file", str(Path(spec).expanduser())
    return "pipeline", spec


class OpenCVCamera:
    """Frames of an OpenCV ``VideoCapture`` as :class:`RgbFrame` s.

    Args:
        spec: device index, video file path, or a GStreamer/V4L2 pipeline string (or device path).
        exposure_ms: exposure time; default one frame period.
        fps: frame rate to assume (overrides what the driver or file reports).
        realtime: for a file, release each frame at its presentation time (a camera stand-in).
        count: stop after this many frames.
        clock, sleep: host clock in ns and the sleep used for ``realtime`` (tests and nodes swap
            in a stop flag's wait).
    """

    def __init__(
        self,
        spec: str | int,
        *,
        exposure_ms: float | None = None,
        fps: float | None = None,
        realtime: bool = False,
        count: int | None = None,
        clock: Callable[[], int] = time.monotonic_ns,
        sleep: Callable[[float], object] = time.sleep,
    ) -> None:
        import cv2

        self.kind, target = parse_camera_spec(spec)
        self.spec = spec
        if fps is not None and not fps > 0:
            raise SourceError(f"camera {spec!r}: fps {fps!r} must be > 0")
        if exposure_ms is not None and not exposure_ms > 0:
            raise SourceError(f"camera {spec!r}: exposure_ms {exposure_ms!r} must be > 0")
        if count is not None and count < 1:
            raise SourceError(f"camera {spec!r}: count {count!r} must be >= 1")
        if self.kind == "pipeline" and "!" in str(target):
            cap = cv2.VideoCapture(str(target), cv2.CAP_GSTREAMER)
        else:
            cap = cv2.VideoCapture(target)
        if not cap.isOpened():
            cap.release()
            what = {"device": "camera device", "file": "video file", "pipeline": "camera or pipeline"}[
                self.kind
            ]
            raise SourceError(f"{what} {spec!r}: cannot be opened by OpenCV VideoCapture")
        self._cap, self._cv2 = cap, cv2
        reported = float(cap.get(cv2.CAP_PROP_FPS) or 0.0)
        self.fps = float(fps) if fps is not None else (reported if 0 < reported < 10_000 else FALLBACK_FPS)
        self.exposure_ns = round((exposure_ms * 1e6) if exposure_ms is not None else 1e9 / self.fps)
        self.realtime, self.count = realtime, count
        self.clock, self.sleep = clock, sleep
        self.size = (int(cap.get(cv2.CAP_PROP_FRAME_HEIGHT)), int(cap.get(cv2.CAP_PROP_FRAME_WIDTH)))
        self.live = self.kind != "file" or realtime
        self.source_id = f"cam:{spec}"

    def __iter__(self) -> Iterator[RgbFrame]:
        cv2, cap = self._cv2, self._cap
        origin = self.clock()
        index = 0
        while self.count is None or index < self.count:
            ok, bgr = cap.read()
            now = self.clock()
            if not ok or bgr is None:
                return
            if bgr.ndim == 2:
                bgr = cv2.cvtColor(bgr, cv2.COLOR_GRAY2BGR)
            # cvtColor, not a reversed-stride copy: ~10x faster on a 640x480 frame.
            image = cv2.cvtColor(bgr, cv2.COLOR_BGRA2RGB if bgr.shape[2] == 4 else cv2.COLOR_BGR2RGB)
            if self.kind == "file":
                pts_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
                if not pts_ms >= 0 or (index and pts_ms == 0):
                    pts_ms = index * 1e3 / self.fps  # containers without timestamps
                start = origin + round(pts_ms * 1e6)
                if self.realtime:
                    delay = (start + self.exposure_ns - self.clock()) / 1e9
                    if delay > 0 and self.sleep(delay) is True:
                        return
                yield RgbFrame(index, image, start, start + self.exposure_ns, "file")
            else:
                driver_ms = cap.get(cv2.CAP_PROP_POS_MSEC)
                driver_ns = round(driver_ms * 1e6) if driver_ms and driver_ms > 0 else 0
                if driver_ns and abs(driver_ns - now) < _DRIVER_CLOCK_TOLERANCE_NS:
                    end, source = driver_ns, "driver"
                else:
                    end, source = now, "host"
                yield RgbFrame(index, image, end - self.exposure_ns, end, source)
            index += 1

    def close(self) -> None:
        self._cap.release()
