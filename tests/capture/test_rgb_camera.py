"""capture/rgb_camera.py: a real MP4 (cv2.VideoWriter) through the same OpenCV path as a camera."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from spikereveal.capture.rgb_camera import OpenCVCamera, RgbFrame, parse_camera_spec
from spikereveal.capture.sources import SourceError


def write_video(path: Path, n: int = 8, fps: float = 25.0, size: tuple[int, int] = (48, 64)) -> Path:
    """Frames with a known colour each: red rises, blue falls (BGR written, RGB expected back)."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"mp4v"), fps, (size[1], size[0]))
    for i in range(n):
        bgr = np.zeros((*size, 3), np.uint8)
        bgr[..., 2] = 30 * i  # red
        bgr[..., 0] = 220 - 20 * i  # blue
        writer.write(bgr)
    writer.release()
    return path


def test_file_gives_rgb_frames_with_their_presentation_times(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4")
    camera = OpenCVCamera(str(video), exposure_ms=10)
    frames = list(camera)
    camera.close()
    assert [f.index for f in frames] == list(range(8)) and camera.size == (48, 64)
    assert all(
        isinstance(f, RgbFrame) and f.image.shape == (48, 64, 3) and f.time_source == "file" for f in frames
    )
    red = [int(f.image[..., 0].mean()) for f in frames]
    blue = [int(f.image[..., 2].mean()) for f in frames]
    assert red == pytest.approx([30 * i for i in range(8)], abs=6)  # RGB order, not BGR
    assert blue == pytest.approx([220 - 20 * i for i in range(8)], abs=6)
    starts = np.array([f.start_ns for f in frames])
    np.testing.assert_allclose(np.diff(starts), 40_000_000, atol=1_000_000)  # 25 fps from the file
    assert all(f.end_ns - f.start_ns == 10_000_000 for f in frames)


def test_default_exposure_is_one_frame_period_and_count_stops(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4", fps=20.0)
    camera = OpenCVCamera(str(video), count=3)
    frames = list(camera)
    assert len(frames) == 3 and camera.fps == pytest.approx(20.0)
    assert frames[0].end_ns - frames[0].start_ns == 50_000_000


def test_realtime_plays_the_file_at_its_own_rate(tmp_path: Path) -> None:
    """With a fake clock and sleep: each frame is released at its exposure end, not earlier."""
    video = write_video(tmp_path / "v.mp4", n=4, fps=10.0)
    now = [1_000_000_000]
    slept: list[float] = []

    def sleep(seconds: float) -> None:
        slept.append(seconds)
        now[0] += round(seconds * 1e9)

    camera = OpenCVCamera(str(video), realtime=True, clock=lambda: now[0], sleep=sleep)
    frames = list(camera)
    assert len(frames) == 4 and camera.live
    assert sum(slept) == pytest.approx(0.4, abs=1e-3)  # 4 frames of 100 ms each
    assert frames[-1].end_ns == now[0]


def test_camera_that_cannot_be_opened_names_the_device_or_pipeline(tmp_path: Path) -> None:
    with pytest.raises(SourceError, match="camera device 57: cannot be opened"):
        OpenCVCamera(57)
    with pytest.raises(SourceError, match="'nosuchsrc ! appsink'"):
        OpenCVCamera("nosuchsrc ! appsink")
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"not a video")
    with pytest.raises(SourceError, match="video file .*broken.mp4"):
        OpenCVCamera(str(broken))
    with pytest.raises(SourceError, match="exposure_ms"):
        OpenCVCamera(str(write_video(tmp_path / "v.mp4")), exposure_ms=0)


def test_spec_kinds(tmp_path: Path) -> None:
    video = write_video(tmp_path / "v.mp4")
    assert parse_camera_spec(0) == ("device", 0) and parse_camera_spec("2") == ("device", 2)
    assert parse_camera_spec(str(video)) == ("file", str(video))
    assert parse_camera_spec("v4l2src ! appsink")[0] == "pipeline"
