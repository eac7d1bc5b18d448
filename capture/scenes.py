"""Sharp frame sources at the spike rate: a built-in panning scene, a video file, an image folder.

Everything yields BGR uint8 frames (as OpenCV reads them), one per spike frame, so the spike
simulator and blur synthesis take any source alike.

- ``PanScene`` / ``pan_scene``: a textured image moved along a known trajectory (linear drift plus
  a slow sinusoidal bend), rendered by sub-pixel warping. No downloads: the textures are the test
  images that ship inside the scikit-image wheel, or a procedural pattern drawn with OpenCV.
- ``MotionScene`` / ``motion_scene``: the same idea with a similarity transform per spike frame
  (translation, rotation and zoom along smooth ``MotionTrajectory`` curves), the varied motion a
  training set needs (pans, rotation, zoom, mixed); the texture may also be any image file.
  ``HELD_OUT_TEXTURES`` are kept for evaluation: the project's default weights never train on them.
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
SKIMAGE_TEXTURES = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "immunohistochemistry",
    "camera",
    "coins",
    "horse",
    "hubble_deep_field",
    "moon",
    "page",
    "text",
    "retina",
    "brick",
    "grass",
    "gravel",
    "colorwheel",
    "cell",
    "clock",
    "microaneurysms",
)
#: Photos kept for independent evaluation (``cat`` is ``chelsea`` again): never train on them.
HELD_OUT_TEXTURES = ("astronaut", "chelsea", "cat", "coffee", "rocket")
#: The built-in textures a training set may use: the rest of the wheel's images and the pattern.
TRAINING_TEXTURES = (*(n for n in SKIMAGE_TEXTURES if n not in HELD_OUT_TEXTURES), "procedural")
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


def is_texture_file(spec: str) -> bool:
    """Whether a texture spec names an image file rather than a built-in texture."""
    return "/" in spec or "\\" in spec or Path(spec).suffix.lower() in IMAGE_SUFFIXES


def check_texture(spec: str) -> str:
    """Return ``spec`` if it names a texture (see :func:`load_texture`), else raise ValueError.

    Cheap (no image is decoded), so a CLI can refuse a bad ``--texture`` before any work.
    """
    if is_texture_file(spec):
        if not Path(spec).is_file():
            raise DatasetError(f"{spec}: texture image file not found")
        return spec
    if spec in SKIMAGE_TEXTURES or spec == "procedural":
        return spec
    if spec.startswith("procedural:") and spec.removeprefix("procedural:").isdigit():
        return spec
    raise ValueError(
        f"texture {spec!r} is not one of {', '.join(SKIMAGE_TEXTURES)}, procedural, "
        "procedural:SEED or an image file (.png, .jpg, ...)"
    )


def load_texture(name: str) -> np.ndarray:
    """A texture as BGR uint8 (grey images as three equal channels).

    ``name`` is one of ``SKIMAGE_TEXTURES``, ``"procedural"`` (seed 0), ``"procedural:SEED"``, or
    the path of an image file (any photo: a path has a ``/`` or an image suffix).
    """
    check_texture(name)
    if is_texture_file(name):
        return read_dataset_image(Path(name))
    if name.startswith("procedural"):
        _, _, seed = name.partition(":")
        return procedural_texture(seed=int(seed or 0))
    import skimage.data

    image = np.asarray(getattr(skimage.data, name)())
    if image.dtype == bool:  # horse: a binary silhouette
        image = image.astype(np.uint8) * 255
    if image.ndim == 2:
        image = np.stack([image] * 3, axis=-1)
    return np.ascontiguousarray(image[..., 2::-1].astype(np.uint8))


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
        return warp_texture(self._source, matrix, (height, width))

    def frames(self, start: int, stop: int) -> Iterator[np.ndarray]:
        """Frames ``start .. stop-1``."""
        for t in range(start, stop):
            yield self.frame(t)


def warp_texture(texture: np.ndarray, matrix: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """The (H, W) view of ``texture`` where output pixel (x, y) samples ``matrix @ (x, y, 1)``.

    Bilinear, with mirrored borders (BORDER_REFLECT_101) so a view past the edge is never black.
    """
    height, width = size
    return cv2.warpAffine(
        texture,
        matrix,
        (width, height),
        flags=cv2.INTER_LINEAR | cv2.WARP_INVERSE_MAP,
        borderMode=cv2.BORDER_REFLECT_101,
    )


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


MOTIONS = ("pan", "rotate", "zoom", "mixed")
# The motion scenes' window covers this fraction of the texture region (less than the pan's 0.6)
# so that rotated corners and zoomed-out views stay mostly inside it; beyond, it is mirrored.
_MOTION_WINDOW_FRACTION = 0.5
# Peak image speed at the frame's edge drawn per scene, output pixels per spike frame at 384 px
# (the demo's pan moves 0.25): 10..40 px of blur over the 97-frame exposure, GOPRO-like.
_SPEED_RANGE = (0.1, 0.4)
_REFERENCE_SIDE = 384.0


@dataclass(frozen=True)
class Wave:
    """A smooth curve of spike frame ``t``: ``offset + rate * t + amplitude * sin(2 pi t / period + phase)``.

    A drift plus a back-and-forth: bounded when ``rate`` is 0 (a pan that never leaves its
    texture, a zoom that breathes), and its speed varies smoothly, so one scene blurs by
    different amounts at different times.
    """

    offset: float = 0.0
    rate: float = 0.0  # units per spike frame
    amplitude: float = 0.0
    period: float = 1000.0  # spike frames
    phase: float = 0.0  # radians

    def __post_init__(self) -> None:
        if not self.period > 0:
            raise ValueError(f"wave period {self.period!r} must be > 0 spike frames")

    def __call__(self, t: float) -> float:
        wave = self.amplitude * math.sin(2.0 * math.pi * t / self.period + self.phase)
        return self.offset + self.rate * t + wave

    def peak_speed(self) -> float:
        """The largest ``|d/dt|`` of the curve, units per spike frame."""
        return abs(self.rate) + abs(self.amplitude) * 2.0 * math.pi / self.period


@dataclass(frozen=True)
class MotionTrajectory:
    """The view at spike frame ``t`` as a similarity transform about the frame centre.

    ``dy``, ``dx``: where the view centre sits, in texture pixels from the texture centre;
    ``angle``: the view's rotation in radians; ``log_zoom``: ln of the magnification (> 0 zooms
    in). All zero is a still view of the texture's centre. Known exactly for every frame.
    """

    dy: Wave = field(default_factory=Wave)
    dx: Wave = field(default_factory=Wave)
    angle: Wave = field(default_factory=Wave)
    log_zoom: Wave = field(default_factory=Wave)

    def pose(self, t: float) -> tuple[float, float, float, float]:
        """(dy, dx, angle, zoom) at spike frame ``t`` (may be fractional)."""
        return self.dy(t), self.dx(t), self.angle(t), math.exp(self.log_zoom(t))

    def matrix(self, t: float, size: tuple[int, int], source_size: tuple[int, int]) -> np.ndarray:
        """The 2x3 map from output pixel (x, y) to texture pixel, for ``cv2.WARP_INVERSE_MAP``.

        ``q = c_src + (dx, dy) + R(angle) (p - c_out) / zoom`` with pixel centres at integers, so
        all zero maps the output's centre onto the texture's.
        """
        dy, dx, angle, zoom = self.pose(t)
        height, width = size
        sh, sw = source_size
        cos, sin = math.cos(angle) / zoom, math.sin(angle) / zoom
        cx_out, cy_out = (width - 1) / 2.0, (height - 1) / 2.0
        cx_src, cy_src = (sw - 1) / 2.0 + dx, (sh - 1) / 2.0 + dy
        return np.array(
            [
                [cos, -sin, cx_src - cos * cx_out + sin * cy_out],
                [sin, cos, cy_src - sin * cx_out - cos * cy_out],
            ],
            dtype=np.float64,
        )

    def peak_edge_speed(self, size: tuple[int, int]) -> float:
        """An upper bound of the image speed at the frame's corners, pixels per spike frame."""
        radius = 0.5 * math.hypot(*size)
        shift = math.hypot(self.dy.peak_speed(), self.dx.peak_speed())
        return shift + radius * (self.angle.peak_speed() + self.log_zoom.peak_speed())


def make_trajectory(
    motion: str, size: tuple[int, int], seed: int = 0, speed: float | None = None
) -> MotionTrajectory:
    """A smooth random trajectory of one kind of ``MOTIONS``; the same arguments give the same one.

    Args:
        motion: ``pan`` (the view travels a Lissajous path), ``rotate`` (it spins at a varying
            rate), ``zoom`` (it breathes in and out, with a slight drift) or ``mixed`` (all three,
            the speed split at random).
        size: (H, W) of the output frames; the pan stays inside the texture's margin.
        seed: draws the start angle, periods, phases, directions and (without ``speed``) the speed.
        speed: peak image speed at the frame's edge in output pixels per spike frame (default:
            random, 10..40 px of blur over an exposure at 384 px, proportionally more when larger).

    Example:
        >>> traj = make_trajectory("rotate", (64, 96), seed=1, speed=0.2)
        >>> round(traj.peak_edge_speed((64, 96)), 6)
        0.2
    """
    if motion not in MOTIONS:
        raise ValueError(f"motion {motion!r} is not one of {', '.join(MOTIONS)}")
    if speed is not None and not speed >= 0:
        raise ValueError(f"speed {speed!r} must be >= 0 pixels per spike frame")
    height, width = size
    rng = np.random.default_rng([seed, MOTIONS.index(motion)])
    start_angle = float(rng.uniform(0.0, 2.0 * math.pi))
    drawn = float(rng.uniform(*_SPEED_RANGE)) * max(height, width) / _REFERENCE_SIDE
    speed = drawn if speed is None else speed
    if motion == "mixed":
        shares = tuple(float(v) for v in rng.dirichlet((2.0, 2.0, 2.0)))
    else:
        shares = {"pan": (1.0, 0.0, 0.0), "rotate": (0.0, 1.0, 0.0), "zoom": (0.15, 0.0, 0.85)}[motion]
    pan_speed, spin_speed, zoom_speed = (share * speed for share in shares)
    radius = 0.5 * math.hypot(height, width)

    def period() -> float:
        return float(rng.uniform(700.0, 2000.0))

    def phase() -> float:
        return float(rng.uniform(0.0, 2.0 * math.pi))

    # Pan: a sine per axis, amplitude = speed * period / 2 pi; one that would leave the margin
    # gets a shorter period instead, so the speed stays what was asked.
    margin = (1.0 / _MOTION_WINDOW_FRACTION - 1.0) / 2.0  # per side, in window sizes
    direction = float(rng.uniform(0.0, 2.0 * math.pi))
    # Split so that the two axes' peak speeds add up (in quadrature) to the pan's speed.
    axes = []
    for axis_speed, extent in (
        (pan_speed * math.sin(direction), height),
        (pan_speed * math.cos(direction), width),
    ):
        p, axis_phase = period(), phase()
        amplitude = abs(axis_speed) * p / (2.0 * math.pi)
        limit = 0.6 * margin * extent
        if amplitude > limit:
            amplitude, p = limit, 2.0 * math.pi * limit / abs(axis_speed)
        axes.append(Wave(amplitude=amplitude, period=p, phase=axis_phase))
    # Rotation: a steady spin in a random sense, its rate varying between 1/3 and all of the peak.
    omega = spin_speed / radius
    p, spin_phase = period(), phase()
    sense = 1.0 if rng.random() < 0.5 else -1.0
    angle = Wave(
        offset=start_angle,
        rate=sense * omega / 1.5,
        amplitude=0.5 * omega / 1.5 * p / (2.0 * math.pi),
        period=p,
        phase=spin_phase,
    )
    # Zoom: ln(zoom) a sine around a slight zoom-in, so that zoomed-out views rarely reach the
    # mirrored border; at most x1.5 either way (a shorter period keeps the speed).
    zoom_rate = zoom_speed / radius
    p, zoom_phase = period(), phase()
    amplitude = zoom_rate * p / (2.0 * math.pi)
    if amplitude > 0.4:
        amplitude, p = 0.4, 2.0 * math.pi * 0.4 / zoom_rate
    log_zoom = Wave(offset=0.5 * amplitude, amplitude=amplitude, period=p, phase=zoom_phase)
    return MotionTrajectory(dy=axes[0], dx=axes[1], angle=angle, log_zoom=log_zoom)


def _texture_region(texture: np.ndarray, size: tuple[int, int], rng: np.random.Generator) -> np.ndarray:
    """A random crop of ``texture`` with the output's aspect, as large as the window needs or more.

    A large photo thus gives a different region, at a different detail scale, for every seed
    (log-uniform between the smallest crop not upscaled and the largest that fits); a small
    texture gives its largest crop of that aspect.
    """
    height, width = size
    th, tw = texture.shape[:2]
    aspect = height / width
    max_h = min(th, tw * aspect)
    min_h = min(max_h, height / _MOTION_WINDOW_FRACTION)
    crop_h = math.exp(rng.uniform(math.log(min_h), math.log(max_h))) if max_h > min_h else max_h
    crop_h, crop_w = max(1, round(crop_h)), max(1, min(tw, round(crop_h / aspect)))
    y0 = int(rng.integers(0, th - crop_h + 1))
    x0 = int(rng.integers(0, tw - crop_w + 1))
    return texture[y0 : y0 + crop_h, x0 : x0 + crop_w]


def _tint_grey(texture: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Colour a grey texture (three equal channels) by a per-channel gain and gamma; else unchanged.

    Keeps grey photos' structure while giving the network colour to learn from: each channel is
    ``255 * gain * (grey / 255) ** gamma`` with gain in 0.7..1 and gamma in 0.8..1.25.
    """
    if not (
        np.array_equal(texture[..., 0], texture[..., 1]) and np.array_equal(texture[..., 1], texture[..., 2])
    ):
        return texture
    grey = texture[..., 0].astype(np.float32) / 255.0
    gains = rng.uniform(0.7, 1.0, size=3)
    gammas = rng.uniform(0.8, 1.25, size=3)
    channels = [255.0 * g * np.power(grey, y) for g, y in zip(gains, gammas, strict=True)]
    return np.clip(np.rint(np.stack(channels, axis=-1)), 0, 255).astype(np.uint8)


@dataclass(frozen=True)
class MotionScene:
    """A textured image seen through a window that pans, rotates and zooms along a trajectory.

    ``frame(t)`` renders the view at spike frame ``t`` as (H, W, 3) BGR uint8 with one bilinear
    sub-pixel ``cv2.warpAffine`` of the similarity transform (mirrored borders, never black);
    the same ``t`` always gives the same image. ``seed`` picks the texture region (see
    ``_texture_region``) and the tint of a grey texture, not the motion (``make_trajectory``).
    """

    size: tuple[int, int] = (256, 384)  # (H, W) of the rendered frames
    texture: str = "procedural"
    trajectory: MotionTrajectory = field(default_factory=MotionTrajectory)
    seed: int = 0
    _source: np.ndarray = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        height, width = self.size
        if height < 1 or width < 1:
            raise ValueError(f"scene size {self.size} must be positive")
        rng = np.random.default_rng([self.seed, 7])
        region = _tint_grey(_texture_region(load_texture(self.texture), self.size, rng), rng)
        new_size = (round(width / _MOTION_WINDOW_FRACTION), round(height / _MOTION_WINDOW_FRACTION))
        shrink = region.shape[1] > new_size[0]
        interp = cv2.INTER_AREA if shrink else cv2.INTER_CUBIC
        object.__setattr__(self, "_source", cv2.resize(region, new_size, interpolation=interp))

    def frame(self, t: float) -> np.ndarray:
        """The view at spike frame ``t``: (H, W, 3) BGR uint8."""
        height, width = self.size
        matrix = self.trajectory.matrix(t, self.size, self._source.shape[:2])
        return warp_texture(self._source, matrix, (height, width))

    def frames(self, start: int, stop: int) -> Iterator[np.ndarray]:
        """Frames ``start .. stop-1``."""
        for t in range(start, stop):
            yield self.frame(t)


def motion_scene(
    num_frames: int,
    size: tuple[int, int] = (256, 384),
    *,
    motion: str = "mixed",
    texture: str = "procedural",
    seed: int = 0,
    speed: float | None = None,
    start: int = 0,
) -> Iterator[np.ndarray]:
    """``num_frames`` frames of a ``MotionScene`` with ``make_trajectory(motion, size, seed, speed)``."""
    scene = MotionScene(
        size=size, texture=texture, trajectory=make_trajectory(motion, size, seed, speed), seed=seed
    )
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
