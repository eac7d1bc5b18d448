"""stream/video.py: real .mp4 files written with cv2.VideoWriter and read back with cv2.VideoCapture."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from spikereveal.stream.video import VIDEO_SUFFIXES, PngWriter, VideoError, VideoRecorder, pad_to_even
from tests.media import read_video_with_fps


def grey(level: int, h: int = 32, w: int = 48) -> np.ndarray:
    return np.full((h, w, 3), level, np.uint8)


def test_writes_an_mp4_that_reads_back_with_count_size_and_fps(tmp_path: Path) -> None:
    path = tmp_path / "out" / "video.mp4"  # the folder is created
    levels = [0, 60, 120, 180, 240]
    with VideoRecorder(path, 40.0) as video:
        for level in levels:
            video.write(grey(level))
    assert video.frames_written == 5 and video.size == (48, 32)
    frames, fps = read_video_with_fps(path)
    assert len(frames) == 5 and frames[0].shape == (32, 48, 3)
    assert fps == pytest.approx(40.0)
    # Lossy codec, but flat grey frames come back close to their level and in order.
    means = [float(f.mean()) for f in frames]
    assert means == pytest.approx(levels, abs=6)


def test_golden_left_right_colours_survive_the_codec(tmp_path: Path) -> None:
    frame = np.zeros((32, 64, 3), np.uint8)
    frame[:, :32] = (255, 0, 0)  # blue left (BGR)
    frame[:, 32:] = (0, 0, 255)  # red right
    path = tmp_path / "lr.mp4"
    with VideoRecorder(path, 10.0) as video:
        video.write(frame)
    (back,), _ = read_video_with_fps(path)
    left, right = back[8:24, 4:28].mean(axis=(0, 1)), back[8:24, 36:60].mean(axis=(0, 1))
    assert left[0] > 200 and left[2] < 60 and right[2] > 200 and right[0] < 60


def test_odd_sizes_are_padded_not_cropped(tmp_path: Path) -> None:
    path = tmp_path / "odd.mp4"
    with VideoRecorder(path, 10.0) as video:
        video.write(grey(200, 33, 47))
    frames, _ = read_video_with_fps(path)
    assert frames[0].shape == (34, 48, 3) and video.size == (48, 34)
    assert pad_to_even(grey(1, 4, 6)).shape == (4, 6, 3)
    padded = pad_to_even(grey(9, 3, 5))
    assert padded.shape == (4, 6, 3) and padded[3].sum() == 0 and padded[:, 5].sum() == 0


def test_a_frame_of_another_size_is_resized_and_counted(tmp_path: Path) -> None:
    path = tmp_path / "mixed.mp4"
    with VideoRecorder(path, 10.0) as video:
        video.write(grey(100))
        video.write(grey(100, 64, 96))
    assert video.resized == 1
    frames, _ = read_video_with_fps(path)
    assert [f.shape for f in frames] == [(32, 48, 3)] * 2


@pytest.mark.parametrize("suffix", VIDEO_SUFFIXES)
def test_every_listed_container_opens(tmp_path: Path, suffix: str) -> None:
    path = tmp_path / f"v{suffix}"
    with VideoRecorder(path, 10.0) as video:
        video.write(grey(50))
        video.write(grey(50))
    assert len(read_video_with_fps(path)[0]) == 2


def test_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(VideoError, match=r"x\.xyz.*\.mp4"):
        VideoRecorder(tmp_path / "x.xyz", 10.0)
    with pytest.raises(VideoError, match="frame rate"):
        VideoRecorder(tmp_path / "x.mp4", 0)
    with pytest.raises(VideoError, match="codec"):
        VideoRecorder(tmp_path / "x.mp4", 10.0, fourcc="h264x")
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(VideoError, match="cannot create the folder"):
        VideoRecorder(blocker / "x.mp4", 10.0).write(grey(0))
    with pytest.raises(ValueError, match="uint8"):
        VideoRecorder(tmp_path / "y.mp4", 10.0).write(np.zeros((4, 4, 3), np.float32))
    video = VideoRecorder(tmp_path / "z.mp4", 10.0)
    video.close()
    with pytest.raises(VideoError, match="after close"):
        video.write(grey(0))


def test_no_frame_no_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.mp4"
    VideoRecorder(path, 10.0).close()
    assert not path.exists()


def test_png_writer_round_trip_is_exact(tmp_path: Path) -> None:
    pngs = PngWriter(tmp_path / "png")
    image = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    path = pngs.write(image, seq=12, index=3)
    assert path.name == "00000012_003.png" and pngs.written == 1
    assert np.array_equal(cv2.imread(str(path)), image)  # PNG is lossless
    assert pngs.write(image, 1, 0, prefix="snapshot_").name == "snapshot_00000001_000.png"
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(VideoError, match="cannot create the folder"):
        PngWriter(blocker / "png").write(image, 0, 0)
