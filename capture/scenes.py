"""Sharp frame sources at the spike rate: a built-in panning scene, a video file, an image folder.

Everything yields BGR uint8 frames (as OpenCV reads them), one per spike frame, so the spike
simulator and blur synthesis take any source alike.

- ``PanScene`` / ``pan_scene``: a textured image moved along a known trajectory (linear drift plus
  a slow sinusoidal bend), rendered by sub-pixel warping. No downloads: the textures are the test
  images that ship inside the scikit-image wheel, or a procedural pattern drawn with OpenCV.
- ``video_frames`` and ``image_folder_frames`` read recorded footage; ``interpolate_frames``
  raises their rate towards the spike rate by **linear blending** of neighbouring frames. Blending
  is not motion-compensated: a moving edge becomes a cross-fade (ghosting) instead of moving, so
  keep per-frame motion small, or interpolate beforehand with a video-interpolation network (the
  GOPRO-spike authors used XVFI, 8x) and pass the result as an image folder.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import cv2
import numpy as np

from spikereveal.capture.datasets import DatasetError, natural_key, read_dataset_image

# Textures that load from files inside the scikit-image wheel (no pooch download).
SKIMAGE_TEXTURES = ("astronaut", "coffee", "chelsea", "rocket", "immunohistochemistry")
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff")
# Fraction of the (scaled) texture the output window covers, leaving room to pan before the
# border is reached; beyond it the texture is mirrored (BORDER_REFLECT_101), never black.
_WINDOW_FRACTION = 0.6


def procedural_texture(size: tuple[int, int] = (512, 512), seed: int = 0) -> np.ndarray:
    """A deterministic textured BGR uint8 image: a colour gradient with random shapes and lines.

    Used when a scikit-image texture is unavailable and by tests that want a synthetic image.
    """
    height, width = size
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    image = np.stack(
        [60 + 120 * xx / max(width - 1, 1), 60 + 120 * yy / max(height - 1, 1), 90 + 60 * np.sin(xx / 37.0)],
        axis=-1,
    ).astype(np.uint8)
    for _ in range(60):
        colour = tuple(int(c) for c in rng.integers(0, 256, size=3))
        centre = (int(rng.integers(0, width)), int(rng.integers(0, height)))
        if rng.random() < 0.5:
            cv2.circle(image, centre, int(rng.integers(4, max(5, min(size) // 8))), colour, -1, cv2.LINE_AA)
        else:
            end = (int(rng.integers(0, width)), int(rng.integers(0, height)))
            cv2.line(image, centre, end, colour, int(rng.integers(1, 4)), cv2.LINE_AA)
    return image


def load_texture(name: str) -> np.ndarray:
    """A named texture as BGR uint8: one of ``SKIMAGE_TEXTURES`` or ``"procedural"``."""
    if name == "procedural":
        return procedural_texture()
    if name not in SKIMAGE_TEXTURES:
        raise ValueError(f"texture {name!r} is not one of {', '.join((*SKIMAGE_TEXTURES, 'procedural'))}")
    import skimage.data

    rgb = np.asarray(getattr(skimage.data, name)())
    if rgb.ndim == 2:
        rgb = np.stack([rgb] * 3, axis=-1)
    return np.ascontiguousarray(rgb[..., 2::-1].astype(np.uint8))


@dataclass(frozen=True)
class PanTrajectory:
    """Where the view window sits at spike frame ``t``, in output pixels relative to frame 0.

    ``dy(t) = vy * t + bend * sin(2 pi t / bend_period)``, ``dx(t) = vx * t``: a steady pan with a
    slight curve, so that the motion is known exactly for every frame (ground truth for flow and
    for checking where a sharp frame sits in time).
    """

    velocity: tuple[float, float] = (0.04, 0.25)  # (vy, vx) output pixels per spike frame
    bend: float = 4.0  # output pixels
    bend_period: float = 600.0  # spike frames

    def __post_init__(self) -> None:
        if self.bend_period <= 0:
            raise ValueError(f"bend_period: {self.bend_period!r} must be > 0 frames")

    def offset(self, t: float) -> tuple[float, float]:
        """(dy, dx) of the view at spike frame ``t`` (may be fractional)."""
        vy, vx = self.velocity
        return vy * t + self.bend * math.sin(2.0 * math.pi * t / self.bend_period), vx * t


@dataclass(frozen=True)
class PanScene:
    """A textured image seen through a window that pans along a ``PanTrajectory``.

    ``frame(t)`` renders the view at spike frame ``t`` as (H, W, 3) BGR uint8 with bilinear
    sub-pixel warping; the same ``t`` always gives the same image.
    """

    size: tuple[int, int] = (256, 384)  # (H, W) of the rendered frames
    texture: str = "astronaut"
    trajectory: PanTrajectory = field(default_factory=PanTrajectory)
    _source: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        height, width = self.size
        if height < 1 or width < 1:
            raise ValueError(f"scene size {self.size} must be positive")
        texture = load_texture(self.texture)
        th, tw = texture.shape[:2]
        # Scale the texture once (INTER_AREA when shrinking avoids aliasing) so that the window
        # covers _WINDOW_FRACTION of it; the per-frame warp is then a pure translation.
        scale = max(height / (_WINDOW_FRACTION * th), width / (_WINDOW_FRACTION * tw))
        new_size = (max(width + 2, round(tw * scale)), max(height + 2, round(th * scale)))
        interp = cv2.INTER_AREA if scale < 1 else cv2.INTER_CUBIC
        object.__setattr__(self, "_source", cv2.resize(texture, new_size, interpolation=interp))

    def frame(self, t: float) -> np.ndarray:
        """The view at spike frame ``t``: (H, W, 3) BGR uint8."""
        height, width = self.size
        sh, sw = self._source.shape[:2]
        dy, dx = self.trajectory.offset(t)
        y0 = (sh - height) / 2.0 + dy
        x0 = (sw - width) / 2.0 + dx
        # Output pixel (x, y) samples the source at (x + x0, y + y0).
        matrix = np.array([[1.0, 0.0, x0], [0.0, 1.0, y0]], dtype=np.float64)
        return cv2.warpAffine(
            self._source,
            matrix,
            (width, height),
            flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
            borderMode=cv2.BORDER_REFLECT_101,
        )

    def frames(self, start: int, stop: int) -> Iterator[np.ndarray]:
        """Frames ``start .. stop-1``."""
        for t in range(start, stop):
            yield self.frame(t)


def pan_scene(
    num_frames: int,
    size: tuple[int, int] = (256, 384),
    *,
    texture: str = "astronaut",
    trajectory: PanTrajectory | None = None,
    start: int = 0,
) -> Iterator[np.ndarray]:
    """``num_frames`` consecutive frames of a ``PanScene`` from spike frame ``start`` (BGR uint8)."""
    scene = PanScene(size=size, texture=texture, trajectory=trajectory or PanTrajectory())
    return scene.frames(start, start + num_frames)


def list_image_files(folder: str | Path) -> list[Path]:
    """Image files in ``folder`` in natural order (``2.png`` before ``10.png``)."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DatasetError(f"{folder}: image folder not found")
    files = sorted(
        (p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES),
        key=lambda p: natural_key(p.name),
    )
    if not files:
        raise DatasetError(f"{folder}: no images ({', '.join(IMAGE_SUFFIXES)}) in the folder")
    return files


def image_folder_frames(folder: str | Path) -> Iterator[np.ndarray]:
    """Read the images of ``folder`` in natural order as BGR uint8; all must share one size."""
    first_shape: tuple[int, ...] | None = None
    for path in list_image_files(folder):
        image = read_dataset_image(path)
        if first_shape is None:
            first_shape = image.shape
        elif image.shape != first_shape:
            raise DatasetError(
                f"{path}: image is {image.shape[0]}x{image.shape[1]}, the folder's first image is "
                f"{first_shape[0]}x{first_shape[1]}"
            )
        yield image


def _open_video(path: str | Path) -> cv2.VideoCapture:
    path = Path(path)
    if not path.is_file():
        raise DatasetError(f"{path}: video file not found")
    capture = cv2.VideoCapture(str(path))
    if not capture.isOpened():
        raise DatasetError(f"{path}: OpenCV cannot open the video")
    return capture


def count_video_frames(path: str | Path) -> int:
    """Number of frames in a video (container metadata, else by decoding)."""
    capture = _open_video(path)
    try:
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        if count <= 0:
            count = 0
            while capture.grab():
                count += 1
    finally:
        capture.release()
    return count


def video_frames(path: str | Path) -> Iterator[np.ndarray]:
    """Decode a video file frame by frame as BGR uint8."""
    capture = _open_video(path)
    try:
        produced = 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            produced += 1
            yield frame
        if produced == 0:
            raise DatasetError(f"{path}: the video holds no decodable frames")
    finally:
        capture.release()


def interpolate_frames(frames: Iterable[np.ndarray], factor: int) -> Iterator[np.ndarray]:
    """Raise the frame rate ``factor`` times by linear blending of neighbouring frames.

    N input frames give ``(N - 1) * factor + 1`` output frames: each input frame, then
    ``factor - 1`` blends ``(1 - a) * prev + a * next`` at ``a = k / factor``. See the module
    docstring for the ghosting this causes on fast motion.
    """
    if factor < 1:
        raise ValueError(f"interpolation factor {factor} must be >= 1")
    previous: np.ndarray | None = None
    for frame in frames:
        if previous is not None:
            yield previous
            if factor > 1:
                a_img = previous.astype(np.float32)
                b_img = frame.astype(np.float32)
                for k in range(1, factor):
                    alpha = k / factor
                    yield np.clip(np.rint((1.0 - alpha) * a_img + alpha * b_img), 0, 255).astype(np.uint8)
        previous = frame
    if previous is not None:
        yield previous


def interpolation_factor(available: int, needed: int) -> int:
    """Smallest factor such that ``available`` frames interpolated give at least ``needed`` frames."""
    if available < 1:
        raise ValueError("no source frames")
    if available >= needed:
        return 1
    if available == 1:
        raise ValueError(f"one source frame cannot be interpolated to {needed} frames")
    return math.ceil((needed - 1) / (available - 1))


def resize_frames(frames: Iterable[np.ndarray], size: tuple[int, int]) -> Iterator[np.ndarray]:
    """Resize frames to ``size`` (H, W) where they differ (INTER_AREA when shrinking, else linear)."""
    height, width = size
    for frame in frames:
        if frame.shape[:2] == (height, width):
            yield frame
            continue
        shrink = frame.shape[0] >= height and frame.shape[1] >= width
        yield cv2.resize(frame, (width, height), interpolation=cv2.INTER_AREA if shrink else cv2.INTER_LINEAR)
