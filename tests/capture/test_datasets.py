"""Dataset readers: GOPRO-spike (ours and the official naming) and RSB, built by hand in tmp_path."""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from spikereveal.calibration.model import Calibration
from spikereveal.capture.dat import write_dat
from spikereveal.capture.datasets import DatasetError, SpikeDataset, detect_layout, open_dataset
from spikereveal.capture.sample import Sample
from spikereveal.stream.spikes import SpikeGeometry


def _spikes(t: int, h: int, w: int, seed: int = 0) -> np.ndarray:
    return (np.random.default_rng(seed).random((t, h, w)) < 0.3).astype(np.uint8)


def _image(h: int, w: int, value: int = 128) -> np.ndarray:
    image = np.full((h, w, 3), value, np.uint8)
    image[0, 0] = (0, 128, 255)  # a BGR marker
    return image


def _add(
    root: Path,
    scene: str,
    name: str,
    spikes: np.ndarray,
    blur: np.ndarray,
    *,
    blur_ext: str = ".png",
    sidecar: bool = True,
    sharp: dict[int, np.ndarray] | None = None,
    single_sharp: np.ndarray | None = None,
) -> Path:
    for folder in ("spike_data", "blur_data"):
        (root / folder / scene).mkdir(parents=True, exist_ok=True)
    dat = write_dat(
        root / "spike_data" / scene / f"{name}.dat",
        spikes,
        SpikeGeometry(spikes.shape[1], spikes.shape[2]),
        sidecar=sidecar,
    )
    assert cv2.imwrite(str(root / "blur_data" / scene / f"{name}{blur_ext}"), blur)
    if sharp:
        folder = root / "sharp_data" / scene / name
        folder.mkdir(parents=True, exist_ok=True)
        for t, image in sharp.items():
            cv2.imwrite(str(folder / f"{t:03d}.png"), image)
    if single_sharp is not None:
        (root / "sharp_data" / scene).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / "sharp_data" / scene / f"{name}.png"), single_sharp)
    return dat


# ---------------------------------------------------------------- gopro layout


def test_gopro_smoke_round_trip(tmp_path: Path) -> None:
    spikes = _spikes(137, 8, 12)
    blur = _image(32, 48)
    sharp = {20: _image(32, 48, 10), 68: _image(32, 48, 20)}
    _add(tmp_path, "scene_a", "0000", spikes, blur, sharp=sharp)
    _add(tmp_path, "scene_a", "0001", _spikes(137, 8, 12, seed=1), blur)
    ds = open_dataset(tmp_path)
    assert isinstance(ds, SpikeDataset)
    assert ds.layout == "gopro"
    assert len(ds) == 2
    sample = ds[0]
    assert isinstance(sample, Sample)
    assert sample.name == "scene_a/0000"
    assert np.array_equal(sample.spikes, spikes)  # upright after the flip round trip
    assert np.array_equal(sample.blur, blur)
    assert sample.exposure == (20, 116)
    assert sorted(sample.sharp) == [20, 68]
    assert np.array_equal(sample.sharp[68], sharp[68])
    assert dict(ds[1].sharp) == {}
    assert [s.name for s in ds] == ["scene_a/0000", "scene_a/0001"]
    assert [s.name for s in ds[-1:]] == ["scene_a/0001"]


def test_official_gopro_naming_at_true_size(tmp_path: Path) -> None:
    """GOPRO/test/spike_data/<scene>/<n>.dat without sidecar, 180x320 spikes, 720x1280 png, one sharp frame."""
    root = tmp_path / "GOPRO" / "test"
    spikes = np.zeros((137, 180, 320), np.uint8)
    spikes[:, 0, 0] = 1  # a one-pixel pattern: top-left when the flip is right
    blur = _image(720, 1280)
    centre = _image(720, 1280, 90)
    _add(root, "GOPR0384_11_00", "000006", spikes, blur, sidecar=False, single_sharp=centre)
    (tmp_path / "GOPRO" / "train" / "spike_data").mkdir(parents=True)
    ds = open_dataset(root)
    assert ds.layout == "gopro"
    sample = ds[0]
    assert sample.spike_size == (180, 320) and sample.blur_size == (720, 1280)
    assert sample.spikes[:, 0, 0].all() and sample.spikes.sum() == 137
    assert list(sample.sharp) == [68]  # the official single sharp frame sits at the exposure centre
    assert np.array_equal(sample.sharp[68], centre)
    unflipped = open_dataset(root, flip=False)[0]
    assert unflipped.spikes[:, -1, 0].all()
    with pytest.raises(DatasetError, match=r"holds the sets test, train: pass one of them"):
        open_dataset(tmp_path / "GOPRO")


def test_meta_sets_frames_and_exposure(tmp_path: Path) -> None:
    _add(tmp_path, "s", "0", _spikes(30, 8, 8), _image(32, 32), sharp={5: _image(32, 32)})
    (tmp_path / "meta.json").write_text(
        json.dumps({"layout": "gopro-spike", "frames_per_sample": 30, "exposure": [5, 24]})
    )
    sample = open_dataset(tmp_path)[0]
    assert sample.exposure == (5, 24)


def test_gopro_wrong_frame_count(tmp_path: Path) -> None:
    _add(tmp_path, "s", "0007", _spikes(100, 8, 8), _image(32, 32), sharp={20: _image(32, 32)})
    ds = open_dataset(tmp_path)
    with pytest.raises(
        DatasetError, match=r"0007\.dat: 100 spike frames, the gopro layout here has 137 per sample"
    ):
        ds[0]


def test_without_sharp_never_lists_ground_truth(tmp_path: Path) -> None:
    # GIVEN ground truth that would fail to read (wrong size, a bad name), WHEN opened without it,
    # THEN nothing under sharp_data/ is listed or read: how training proves it never sees it.
    _add(tmp_path, "s", "0", _spikes(137, 8, 8), _image(32, 32), sharp={30: _image(16, 32)})
    (tmp_path / "sharp_data" / "s" / "0" / "center.png").write_bytes(b"x")
    dataset = open_dataset(tmp_path, with_sharp=False)
    assert dataset.layout == "gopro" and dataset.entries[0].sharp_paths == ()
    assert dict(dataset[0].sharp) == {}


def test_sharp_errors(tmp_path: Path) -> None:
    _add(tmp_path, "s", "0", _spikes(137, 8, 8), _image(32, 32), sharp={30: _image(16, 32)})
    with pytest.raises(DatasetError, match=r"030\.png: ground truth is 16x32, the blur 0\.png is 32x32"):
        open_dataset(tmp_path)[0]
    bad = tmp_path / "sharp_data" / "s" / "0" / "center.png"
    bad.write_bytes(b"x")
    with pytest.raises(DatasetError, match=r"center\.png: ground-truth file names must be spike indices"):
        open_dataset(tmp_path)


def test_sharp_index_beyond_frames(tmp_path: Path) -> None:
    _add(tmp_path, "s", "0", _spikes(137, 8, 8), _image(32, 32), sharp={140: _image(32, 32)})
    with pytest.raises(DatasetError, match=r"140\.png: spike index 140 is outside the 137 frames"):
        open_dataset(tmp_path)[0]


# ------------------------------------------------------------------ rsb layout


def test_rsb_small_with_calibration(tmp_path: Path) -> None:
    """RSB naming (.jpg blurs, no sharp_data) at a small size and a scale-2 calibration."""
    spikes = _spikes(61, 12, 20)
    _add(tmp_path, "outdoor", "3", spikes, _image(24, 40), blur_ext=".jpg", sidecar=False)
    _add(tmp_path, "outdoor", "12", _spikes(61, 12, 20, 1), _image(24, 40), blur_ext=".jpg", sidecar=False)
    cal = Calibration(scale=2.0, id="half")
    assert detect_layout(tmp_path) == "rsb"
    ds = open_dataset(tmp_path, calibration=cal)
    assert ds.layout == "rsb"
    assert [e.name for e in ds.entries] == ["3", "12"]  # natural order
    sample = ds[0]
    assert np.array_equal(sample.spikes, spikes)
    assert sample.exposure == (20, 40)  # all frames but 20 at each end
    assert dict(sample.sharp) == {}
    # Without the calibration the nominal 1/4 gives 6x10 spikes: not even whole bytes per frame.
    with pytest.raises(
        DatasetError, match=r"3\.dat: .*6x10.*\[spike size 6x10 from blur size / calibration scale"
    ):
        open_dataset(tmp_path)[0]


def test_rsb_true_size(tmp_path: Path) -> None:
    spikes = np.zeros((41, 250, 400), np.uint8)
    spikes[:, 0, :8] = 1
    _add(tmp_path, "rsb_scene", "0", spikes, _image(1000, 1600), blur_ext=".jpg", sidecar=False)
    sample = open_dataset(tmp_path, layout="rsb")[0]
    assert sample.spike_size == (250, 400) and sample.blur_size == (1000, 1600)
    assert sample.exposure == (20, 20)
    assert sample.spikes[:, 0, :8].all() and sample.spikes.sum() == 41 * 8


def test_rsb_meta_margin_and_exposure(tmp_path: Path) -> None:
    _add(tmp_path, "s", "0", _spikes(50, 8, 8), _image(32, 32), blur_ext=".jpg")
    (tmp_path / "meta.json").write_text(json.dumps({"layout": "rsb", "margin_frames": 5}))
    assert open_dataset(tmp_path)[0].exposure == (5, 44)
    (tmp_path / "meta.json").write_text(json.dumps({"layout": "rsb", "exposure": [3, 9]}))
    assert open_dataset(tmp_path)[0].exposure == (3, 9)


def test_rsb_too_few_frames(tmp_path: Path) -> None:
    _add(tmp_path, "s", "0", _spikes(30, 8, 8), _image(32, 32), blur_ext=".jpg")
    with pytest.raises(DatasetError, match=r"30 spike frames leave no exposure after 20 margin frames"):
        open_dataset(tmp_path)[0]


def test_calibration_temporal_offset(tmp_path: Path) -> None:
    _add(tmp_path, "s", "0", _spikes(61, 8, 8), _image(32, 32), blur_ext=".jpg")
    assert open_dataset(tmp_path, calibration=Calibration(spike_offset_frames=-4))[0].exposure == (16, 36)
    with pytest.raises(
        DatasetError, match=r"exposure 45\.\.65 \(calibration 'late' shifts it by 25 frames\)"
    ):
        open_dataset(tmp_path, calibration=Calibration(spike_offset_frames=25, id="late"))[0]


# ---------------------------------------------------------------- shared rules


def test_scene_filter_and_order(tmp_path: Path) -> None:
    for scene in ("b", "a", "c10", "c2"):
        _add(tmp_path, scene, "0", _spikes(41, 8, 8), _image(32, 32), blur_ext=".jpg")
    assert open_dataset(tmp_path).scenes == ["a", "b", "c2", "c10"]
    assert [s.name for s in open_dataset(tmp_path, scene="b")] == ["b/0"]
    assert open_dataset(tmp_path, scene=["c10", "a"]).scenes == ["a", "c10"]
    with pytest.raises(DatasetError, match=r"no scene zz \(scenes: a, b, c2, c10\)"):
        open_dataset(tmp_path, scene="zz")


def test_lazy_reading(tmp_path: Path) -> None:
    _add(tmp_path, "s", "0", _spikes(41, 8, 8), _image(32, 32), blur_ext=".jpg")
    ds = open_dataset(tmp_path)
    (tmp_path / "blur_data" / "s" / "0.jpg").write_bytes(b"garbage")  # only read when indexed
    with pytest.raises(DatasetError, match=r"0\.jpg: cannot read the image"):
        ds[0]


def test_size_mismatch_names_file_sizes_and_expected(tmp_path: Path) -> None:
    _add(tmp_path, "s", "0", _spikes(137, 10, 16), _image(44, 64))
    with pytest.raises(DatasetError) as info:
        open_dataset(tmp_path)[0]
    text = str(info.value)
    assert "0.dat" in text and "10x16" in text and "44x64" in text and "expected 11x16" in text
    assert "sidecar 0.dat.json" in text


def test_meta_spike_size_used_without_sidecar(tmp_path: Path) -> None:
    _add(tmp_path, "s", "0", _spikes(41, 8, 16), _image(32, 48), blur_ext=".jpg", sidecar=False)
    (tmp_path / "meta.json").write_text(json.dumps({"layout": "rsb", "spike_size": [8, 16]}))
    with pytest.raises(
        DatasetError, match=r"spike size 8x16 \(from .*meta\.json\) does not match blur 0\.jpg 32x48"
    ):
        open_dataset(tmp_path)[0]
    (tmp_path / "meta.json").write_text(json.dumps({"layout": "rsb", "blur_size": [32, 40]}))
    with pytest.raises(DatasetError, match=r"0\.jpg: image is 32x48, .*meta\.json says 32x40"):
        open_dataset(tmp_path)[0]


def test_missing_blur(tmp_path: Path) -> None:
    _add(tmp_path, "s", "0", _spikes(41, 8, 8), _image(32, 32))
    (tmp_path / "blur_data" / "s" / "0.png").unlink()
    with pytest.raises(
        DatasetError, match=r"0\.dat: no blurry image for it: expected .*blur_data/s/0\.png or \.jpg"
    ):
        open_dataset(tmp_path)


@pytest.mark.parametrize(
    ("setup", "message"),
    [
        (lambda r: None, "dataset folder not found"),
        (lambda r: r.mkdir(), "no spike_data/ folder"),
        (lambda r: (r / "spike_data").mkdir(parents=True), "has spike_data/ but no blur_data/"),
        (
            lambda r: [(r / d).mkdir(parents=True) for d in ("spike_data/s", "blur_data/s")],
            "no .dat files in any scene",
        ),
        (lambda r: r.write_text("x"), "not a folder"),
    ],
)
def test_folder_errors(tmp_path: Path, setup, message: str) -> None:
    root = tmp_path / "set"
    setup(root)
    with pytest.raises(DatasetError, match=message):
        open_dataset(root)


def test_wrong_folder_hints(tmp_path: Path) -> None:
    _add(tmp_path, "s", "0", _spikes(41, 8, 8), _image(32, 32))
    with pytest.raises(DatasetError, match="this is a data folder; pass its parent"):
        open_dataset(tmp_path / "spike_data")
    with pytest.raises(DatasetError, match=r"this is a scene folder; pass .* with scene='s'"):
        open_dataset(tmp_path / "spike_data" / "s")


def test_meta_errors(tmp_path: Path) -> None:
    _add(tmp_path, "s", "0", _spikes(41, 8, 8), _image(32, 32))
    meta = tmp_path / "meta.json"
    meta.write_text("{not json")
    with pytest.raises(DatasetError, match=r"meta\.json: not readable JSON"):
        open_dataset(tmp_path)
    meta.write_text(json.dumps({"layout": "kitti"}))
    with pytest.raises(DatasetError, match=r"unknown layout 'kitti'"):
        open_dataset(tmp_path)
    meta.write_text(json.dumps({"exposure": [1]}))
    with pytest.raises(DatasetError, match=r"exposure must be a pair of integers"):
        open_dataset(tmp_path)
    meta.unlink()
    with pytest.raises(DatasetError, match="layout 'nope' is not one of auto, gopro, rsb"):
        open_dataset(tmp_path, layout="nope")


def test_broken_sidecar(tmp_path: Path) -> None:
    dat = _add(tmp_path, "s", "0", _spikes(41, 8, 8), _image(32, 32), blur_ext=".jpg")
    Path(str(dat) + ".json").write_text("{")
    with pytest.raises(DatasetError, match=r"0\.dat\.json: not a readable JSON sidecar"):
        open_dataset(tmp_path)[0]
