"""Image files in and out, with OpenCV (BGR, as the released network expects) and clear errors.

The one image reader of the project: datasets, scene folders and the CLI all read through
:func:`read_bgr`, so a missing or unreadable image says the same thing wherever it is met.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from spikereveal.stream.errors import SpikeRevealError

__all__ = ["ImageFileError", "read_bgr", "write_image"]


class ImageFileError(SpikeRevealError):
    """An image that cannot be read or written."""


def read_bgr(path: str | Path) -> np.ndarray:
    """(H, W, 3) uint8 BGR from any file OpenCV reads; grey files are expanded to three channels.

    A missing file, or one OpenCV cannot decode, is an :class:`ImageFileError` naming the path.
    """
    path = Path(path)
    if not path.is_file():
        raise ImageFileError(f"{path}: cannot read the image: no such file")
    image = cv2.imread(str(path), cv2.IMREAD_COLOR)
    if image is None:
        raise ImageFileError(f"{path}: cannot read the image: not a file OpenCV decodes (PNG, JPEG, ...)")
    return image


def write_image(path: str | Path, image: np.ndarray) -> Path:
    """Write an 8-bit image, creating its folder; the format follows the extension (.png, .jpg)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), image):
        raise ImageFileError(
            f"{path}: OpenCV could not write this file (unknown extension or unwritable folder)"
        )
    return path
