"""Frame sources: the built-in pan scene, image folders, videos, linear frame interpolation."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from spikereveal.capture import scenes
from spikereveal.capture.datasets import DatasetError


def test_skimage_textures_load_offline_as_bgr() -> None:
    import skimage.data

    for name in scenes.SKIMAGE_TEXTURES:
        image = scenes.load_texture(name)
        assert image.dtype == np.uint8 and image.ndim == 3 and image.shape[2] == 3
    # BGR: the first channel is the RGB image's last.
    rgb = skimage.data.astronaut()
    assert np.array_equal(scenes.load_texture("astronaut"), rgb[..., ::-1])


def test_unknown_texture() -> None:
    # (moon was the unknown name here until the wheel's other images became textures)
    with pytest.raises(ValueError, match="texture 'nope' is not one of"):
        scenes.load_texture("nope")
    with pytest.raises(ValueError, match="procedural:SEED"):
        scenes.load_texture("procedural:x")
    with pytest.raises(DatasetError, match="missing.png: texture image file not found"):
        scenes.load_texture("missing.png")


def test_held_out_photos_are_never_training_textures() -> None:
    assert set(scenes.HELD_OUT_TEXTURES) == {"astronaut", "chelsea", "cat", "coffee", "rocket"}
    assert not set(scenes.TRAINING_TEXTURES) & set(scenes.HELD_OUT_TEXTURES)
    assert set(scenes.TRAINING_TEXTURES) == {*scenes.SKIMAGE_TEXTURES, "procedural"} - set(
        scenes.HELD_OUT_TEXTURES
    )


def test_grey_binary_and_seeded_textures() -> None:
    horse = scenes.load_texture("horse")  # a bool silhouette in the wheel
    assert horse.dtype == np.uint8 and set(np.unique(horse)) == {0, 255}
    moon = scenes.load_texture("moon")
    assert np.array_equal(moon[..., 0], moon[..., 2])  # grey as three equal channels
    assert np.array_equal(scenes.load_texture("procedural:3"), scenes.procedural_texture(seed=3))
    assert np.array_equal(scenes.load_texture("procedural"), scenes.procedural_texture(seed=0))


def test_texture_from_an_image_file(tmp_path: Path) -> None:
    image = scenes.procedural_texture((40, 60), seed=5)
    cv2.imwrite(str(tmp_path / "photo.png"), image)
    assert np.array_equal(scenes.load_texture(str(tmp_path / "photo.png")), image)
    (tmp_path / "bad.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"bad\.png: cannot read the image"):
        scenes.load_texture(str(tmp_path / "bad.png"))


def test_procedural_texture_deterministic() -> None:
    a = scenes.procedural_texture((64, 80), seed=3)
    assert a.shape == (64, 80, 3) and a.dtype == np.uint8
    assert np.array_equal(a, scenes.procedural_texture((64, 80), seed=3))
    assert not np.array_equal(a, scenes.procedural_texture((64, 80), seed=4))
    assert a.std() > 20  # textured, not flat


def test_pan_scene_smoke_and_determinism() -> None:
    frames = list(scenes.pan_scene(5, (32, 48), texture="coffee"))
    assert len(frames) == 5
    assert all(f.shape == (32, 48, 3) and f.dtype == np.uint8 for f in frames)
    again = list(scenes.pan_scene(5, (32, 48), texture="coffee"))
    assert all(np.array_equal(a, b) for a, b in zip(frames, again, strict=True))
    # Starting later gives the same frames as the tail of a longer run.
    tail = list(scenes.pan_scene(2, (32, 48), texture="coffee", start=3))
    assert np.array_equal(tail[0], frames[3]) and np.array_equal(tail[1], frames[4])
    assert not np.array_equal(frames[0], frames[4])  # it moves


def test_trajectory_is_linear_plus_bend() -> None:
    traj = scenes.PanTrajectory(velocity=(0.1, 0.5), bend=2.0, bend_period=100.0)
    assert traj.offset(0) == (0.0, 0.0)
    dy, dx = traj.offset(25)
    assert dx == pytest.approx(12.5)
    assert dy == pytest.approx(2.5 + 2.0)  # sin(pi / 2) = 1
    with pytest.raises(ValueError, match="bend_period"):
        scenes.PanTrajectory(bend_period=0)


def test_golden_integer_motion_is_an_exact_shift() -> None:
    """With (vy, vx) = (1, 2) px/frame and no bend, frame t+1 is frame t moved up 1 and left 2."""
    scene = scenes.PanScene(
        size=(40, 60), texture="procedural", trajectory=scenes.PanTrajectory(velocity=(1.0, 2.0), bend=0.0)
    )
    a, b = scene.frame(3), scene.frame(4)
    assert np.array_equal(b[:-1, :-2], a[1:, 2:])


def test_subpixel_motion_blends() -> None:
    scene = scenes.PanScene(
        size=(40, 60), texture="procedural", trajectory=scenes.PanTrajectory(velocity=(0.0, 0.5), bend=0.0)
    )
    a, half, b = (scene.frame(t).astype(np.float64) for t in (0, 1, 2))
    # Bilinear warping: a half-pixel shift lies between the neighbours (away from the borders).
    assert np.abs(half[:, 2:-2] - (a[:, 2:-2] + b[:, 2:-2]) / 2).mean() < 3.0
    assert np.array_equal(b[:, :-1], a[:, 1:])


def test_pan_scene_rejects_bad_size() -> None:
    with pytest.raises(ValueError, match="scene size"):
        scenes.PanScene(size=(0, 10), texture="procedural")


def _write_images(folder: Path, names: list[str], size=(12, 16)) -> list[np.ndarray]:
    folder.mkdir(parents=True, exist_ok=True)
    images = []
    for i, name in enumerate(names):
        image = np.full((*size, 3), 10 * i, np.uint8)
        image[0, 0] = (i, 2 * i, 3 * i)
        cv2.imwrite(str(folder / name), image)
        images.append(image)
    return images


def test_image_folder_natural_order(tmp_path: Path) -> None:
    names = ["f1.png", "f2.png", "f10.png", "f3.jpg"]
    images = _write_images(tmp_path / "seq", names)
    (tmp_path / "seq" / "notes.txt").write_text("ignored")
    assert [p.name for p in scenes.list_image_files(tmp_path / "seq")] == [
        "f1.png",
        "f2.png",
        "f3.jpg",
        "f10.png",
    ]
    frames = list(scenes.image_folder_frames(tmp_path / "seq"))
    assert len(frames) == 4
    assert np.array_equal(frames[0], images[0]) and np.array_equal(frames[3], images[2])  # f10 is the last


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="image folder not found"):
        scenes.list_image_files(tmp_path / "nope")
    (tmp_path / "empty").mkdir()
    with pytest.raises(DatasetError, match=r"empty: no images"):
        scenes.list_image_files(tmp_path / "empty")
    _write_images(tmp_path / "mixed", ["a.png"])
    _write_images(tmp_path / "mixed", ["b.png"], size=(10, 16))
    with pytest.raises(DatasetError, match=r"b\.png: image is 10x16, the folder's first image is 12x16"):
        list(scenes.image_folder_frames(tmp_path / "mixed"))
    _write_images(tmp_path / "broken", ["a.png"])
    (tmp_path / "broken" / "b.png").write_bytes(b"not a png")
    with pytest.raises(DatasetError, match=r"b\.png: cannot read the image"):
        list(scenes.image_folder_frames(tmp_path / "broken"))


def _write_video(path: Path, count: int, size=(48, 64)) -> None:
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 30, (size[1], size[0]))
    assert writer.isOpened()
    for i in range(count):
        writer.write(np.full((*size, 3), 20 * i, np.uint8))
    writer.release()


def test_video_frames(tmp_path: Path) -> None:
    path = tmp_path / "clip.avi"
    _write_video(path, 6)
    assert scenes.count_video_frames(path) == 6
    frames = list(scenes.video_frames(path))
    assert len(frames) == 6
    assert frames[0].shape == (48, 64, 3) and frames[0].dtype == np.uint8
    means = [f.mean() for f in frames]
    assert all(abs(m - 20 * i) < 4 for i, m in enumerate(means))  # MJPG is lossy


def test_video_errors(tmp_path: Path) -> None:
    with pytest.raises(DatasetError, match="video file not found"):
        list(scenes.video_frames(tmp_path / "missing.avi"))
    bad = tmp_path / "bad.avi"
    bad.write_bytes(b"\x00" * 100)
    with pytest.raises(DatasetError, match=r"bad\.avi"):
        list(scenes.video_frames(bad))


def test_golden_linear_interpolation() -> None:
    frames = [np.full((2, 2, 3), v, np.uint8) for v in (0, 80, 40)]
    out = list(scenes.interpolate_frames(frames, 4))
    assert len(out) == (3 - 1) * 4 + 1
    assert [int(f[0, 0, 0]) for f in out] == [0, 20, 40, 60, 80, 70, 60, 50, 40]
    assert all(f.dtype == np.uint8 for f in out)


def test_interpolation_identity_and_errors() -> None:
    frames = [np.full((2, 2, 3), v, np.uint8) for v in (1, 2, 3)]
    assert [int(f[0, 0, 0]) for f in scenes.interpolate_frames(frames, 1)] == [1, 2, 3]
    assert list(scenes.interpolate_frames([], 3)) == []
    with pytest.raises(ValueError, match="factor 0"):
        list(scenes.interpolate_frames(frames, 0))


@pytest.mark.parametrize(
    ("available", "needed", "factor"), [(300, 137, 1), (137, 137, 1), (18, 137, 8), (2, 5, 4)]
)
def test_interpolation_factor(available: int, needed: int, factor: int) -> None:
    got = scenes.interpolation_factor(available, needed)
    assert got == factor
    assert (available - 1) * got + 1 >= needed or got == 1


def test_interpolation_factor_errors() -> None:
    with pytest.raises(ValueError, match="one source frame"):
        scenes.interpolation_factor(1, 5)
    with pytest.raises(ValueError, match="no source frames"):
        scenes.interpolation_factor(0, 5)


def test_resize_frames() -> None:
    frames = [np.full((10, 20, 3), 100, np.uint8), np.full((4, 8, 3), 50, np.uint8)]
    out = list(scenes.resize_frames(frames, (4, 8)))
    assert [f.shape for f in out] == [(4, 8, 3), (4, 8, 3)]
    assert out[1] is frames[1]  # already the right size: untouched
    assert int(out[0][0, 0, 0]) == 100


# -- motion scenes: rotation, zoom, mixed --------------------------------------------------------


def test_wave_golden() -> None:
    wave = scenes.Wave(offset=1.0, rate=0.5, amplitude=2.0, period=100.0)
    assert wave(0) == pytest.approx(1.0)
    assert wave(25) == pytest.approx(1.0 + 12.5 + 2.0)  # sin(pi / 2) = 1
    assert wave.peak_speed() == pytest.approx(0.5 + 2.0 * 2 * np.pi / 100)
    with pytest.raises(ValueError, match="wave period"):
        scenes.Wave(period=0)


def _still(size=(40, 40), **waves) -> scenes.MotionScene:
    return scenes.MotionScene(size=size, texture="procedural", trajectory=scenes.MotionTrajectory(**waves))


def test_golden_still_view_is_the_texture_centre() -> None:
    scene = _still()
    source = scene._source  # 80x80: the window is half the texture per side
    assert source.shape == (80, 80, 3)
    assert np.array_equal(scene.frame(0), source[20:60, 20:60])
    assert np.array_equal(scene.frame(0), scene.frame(500))  # no motion


def test_golden_shift_rotation_and_zoom() -> None:
    still = _still().frame(0)
    # A shift of 3 texture pixels to the right moves the view by exactly 3 pixels.
    shifted = _still(dx=scenes.Wave(offset=3.0)).frame(0)
    assert np.array_equal(shifted[:, :-3], still[:, 3:])
    # A quarter turn about the centre of an even-sided square maps pixel centres onto pixel centres.
    turned = _still(angle=scenes.Wave(offset=np.pi / 2)).frame(0).astype(int)
    assert np.abs(turned - np.rot90(still, 1).astype(int)).max() <= 1
    # Zoom x2: the view's centre half, enlarged.
    zoomed = _still(log_zoom=scenes.Wave(offset=np.log(2.0))).frame(0).astype(np.float64)
    enlarged = cv2.resize(still[10:30, 10:30], (40, 40), interpolation=cv2.INTER_LINEAR).astype(np.float64)
    assert np.abs(zoomed[4:-4, 4:-4] - enlarged[4:-4, 4:-4]).mean() < 6.0


@pytest.mark.parametrize("motion", scenes.MOTIONS)
def test_trajectories_have_the_asked_speed_and_are_deterministic(motion: str) -> None:
    size = (96, 128)
    traj = scenes.make_trajectory(motion, size, seed=4, speed=0.3)
    assert traj == scenes.make_trajectory(motion, size, seed=4, speed=0.3)
    assert traj != scenes.make_trajectory(motion, size, seed=5, speed=0.3)
    assert traj.peak_edge_speed(size) == pytest.approx(0.3)
    # Measured: corner pixels move at most the bound between two frames (a smooth trajectory).
    h, w = size
    corners = np.array([[0, 0, 1], [w - 1, 0, 1], [0, h - 1, 1], [w - 1, h - 1, 1]], dtype=np.float64).T
    source = (2 * h, 2 * w)
    steps = []
    for t in range(0, 3000, 50):
        a = traj.matrix(t, size, source) @ corners
        b = traj.matrix(t + 1, size, source) @ corners
        zoom = np.exp(traj.log_zoom(t))
        steps.append(np.hypot(*(b - a)).max() * zoom)  # texture pixels -> output pixels
    assert max(steps) <= 0.3 * 1.05 and max(steps) > 0.3 * 0.3
    kinds = {"pan": (True, False, False), "rotate": (False, True, False), "zoom": (True, False, True)}
    if motion in kinds:
        moves, spins, zooms = kinds[motion]
        assert (traj.dx.peak_speed() + traj.dy.peak_speed() > 0) == moves
        assert (traj.angle.peak_speed() > 0) == spins
        assert (traj.log_zoom.peak_speed() > 0) == zooms


def test_default_speed_scales_with_the_frame_and_errors() -> None:
    small = scenes.make_trajectory("mixed", (64, 96), seed=2).peak_edge_speed((64, 96))
    large = scenes.make_trajectory("mixed", (128, 192), seed=2).peak_edge_speed((128, 192))
    assert large == pytest.approx(2 * small) and 0.1 / 4 <= small <= 0.4
    with pytest.raises(ValueError, match="motion 'spin' is not one of pan, rotate, zoom, mixed"):
        scenes.make_trajectory("spin", (8, 8))
    with pytest.raises(ValueError, match="speed -1"):
        scenes.make_trajectory("pan", (8, 8), speed=-1)
    with pytest.raises(ValueError, match="scene size"):
        scenes.MotionScene(size=(0, 4))


def test_motion_scene_smoke_determinism_and_tail() -> None:
    frames = list(scenes.motion_scene(6, (32, 48), motion="mixed", texture="brick", seed=1))
    assert all(f.shape == (32, 48, 3) and f.dtype == np.uint8 for f in frames)
    again = list(scenes.motion_scene(6, (32, 48), motion="mixed", texture="brick", seed=1))
    assert all(np.array_equal(a, b) for a, b in zip(frames, again, strict=True))
    tail = list(scenes.motion_scene(2, (32, 48), motion="mixed", texture="brick", seed=1, start=4))
    assert np.array_equal(tail[0], frames[4]) and np.array_equal(tail[1], frames[5])
    fast = list(scenes.motion_scene(50, (32, 48), motion="rotate", texture="brick", seed=1, speed=1.0))
    assert not np.array_equal(fast[0], fast[49])  # it moves
    # A grey texture is tinted, differently per seed.
    tinted = frames[0].astype(int)
    assert np.abs(tinted[..., 0] - tinted[..., 2]).mean() > 1
    other = next(scenes.motion_scene(1, (32, 48), motion="mixed", texture="brick", seed=2))
    assert not np.array_equal(frames[0], other)


def test_large_photo_gives_a_different_region_per_seed(tmp_path: Path) -> None:
    photo = tmp_path / "big.png"
    cv2.imwrite(str(photo), scenes.procedural_texture((600, 900), seed=9))
    a, b = (scenes.MotionScene((32, 48), str(photo), seed=s).frame(0) for s in (0, 1))
    assert a.shape == (32, 48, 3) and not np.array_equal(a, b)


def test_mate_photo_renders_when_installed() -> None:
    photos = sorted(Path("/usr/share/backgrounds/mate/nature").glob("*.jpg"))
    if not photos:
        pytest.skip("Debian's mate-backgrounds photos are not installed")
    frames = list(scenes.motion_scene(3, (64, 96), motion="zoom", texture=str(photos[0]), seed=0))
    assert frames[0].shape == (64, 96, 3) and frames[0].std() > 1
