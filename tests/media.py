"""Reading back the media files the project writes (videos), for assertions in several test folders."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


def read_video_with_fps(path: Path) -> tuple[list[np.ndarray], float]:
    """Every decoded frame of a video and its frame rate (AssertionError if it does not open)."""
    cap = cv2.VideoCapture(str(path))
    assert cap.isOpened(), f"{path} is not a readable video"
    frames = []
    while True:
        ok, frame = cap.read()
        if not ok:
            break
        frames.append(frame)
    fps = cap.get(cv2.CAP_PROP_FPS)
    cap.release()
    return frames, fps


def read_video(path: Path) -> list[np.ndarray]:
    """Every decoded frame of a video."""
    return read_video_with_fps(path)[0]
