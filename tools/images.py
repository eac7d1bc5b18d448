"""Image files in and out, with OpenCV (BGR, as the released network expects) and clear errors."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np


class ImageFileError(ValueError):
    """An image that cannot be read or written."""


def read_bgr(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 BGR from any file OpenCV reads; grey files are expanded to three channels."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such image file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageFileError(f"{path}: not an image OpenCV can read (expected PNG, JPEG, ...)")
    return image


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write an 8-bit image; the format follows the extension (.png, .jpg)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise ImageFileError(
            f"{path}: OpenCV could not write this file (unknown extension or unwritable folder)"
        )
    return path
