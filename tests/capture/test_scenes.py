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
    with pytest.raises(ValueError, match="texture 'moon' is not one of"):
        scenes.load_texture("moon")


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
