"""The pure simulation core: one sample from sharp frames, a dataset on disk, the config."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import cv2
import numpy as np
import pytest

from spikereveal.capture import scenes
from spikereveal.capture.datasets import DatasetError, open_dataset
from spikereveal.capture.spike_camera import SpikeCamera, bgr_to_grey
from spikereveal.tools.simulate import (
    IncompleteSampleError,
    SimulationConfig,
    simulate_dataset,
    simulate_sample,
)

TINY = SimulationConfig(spike_size=(8, 12), seed=3)


def _pan(n: int, config: SimulationConfig = TINY, start: int = 0) -> list[np.ndarray]:
    return list(scenes.pan_scene(n, config.blur_size, texture="procedural", start=start))


def test_config_defaults_and_validation() -> None:
    config = SimulationConfig()
    assert config.blur_size == (256, 384) and config.spike_size == (64, 96)
    assert config.frames_per_sample == 137 and config.exposure == (20, 116)
    assert config.sharp_times == (20, 44, 68, 92, 116)
    assert SimulationConfig(sharp_times=(68, 20, 68)).sharp_times == (20, 68)
    with pytest.raises(ValueError, match="sharp times 137"):
        SimulationConfig(sharp_times=(137,))
    with pytest.raises(ValueError, match="whole bytes"):
        SimulationConfig(spike_size=(3, 5))
    with pytest.raises(ValueError, match="vth"):
        SimulationConfig(vth=0)
    with pytest.raises(ValueError, match="exposure 20..140"):
        SimulationConfig(exposure=(20, 140))


def test_golden_constant_scene() -> None:
    """A flat grey scene: the blur is that grey, the spike rate follows 1.985 g / (2 Vth)."""
    frame = np.full((*TINY.blur_size, 3), 153, np.uint8)  # grey 0.6
    sample = simulate_sample([frame] * 137, TINY.new_camera(), TINY)
    assert np.array_equal(sample.blur, frame)
    assert sample.spikes.shape == (137, 8, 12) and sample.exposure == (20, 116)
    assert sample.spikes.mean() == pytest.approx(1.985 * 0.6 / 2, rel=0.03)
    assert list(sample.sharp) == [20, 44, 68, 92, 116]


def test_blur_is_mean_of_exposure_frames() -> None:
    config = SimulationConfig(spike_size=(8, 12), sharp_times=None)
    frames = _pan(137, config)
    sample = simulate_sample(iter(frames), config.new_camera(), config)
    assert len(sample.sharp) == 137
    mean = np.mean(np.stack(frames[20:117]).astype(np.float64), axis=0)
    assert np.abs(sample.blur.astype(np.float64) - mean).max() <= 0.5 + 1e-9
    assert np.array_equal(sample.sharp[44], frames[44])


def test_spikes_follow_the_downsampled_grey() -> None:
    frames = _pan(137)
    camera = TINY.new_camera()
    sample = simulate_sample(frames, camera, TINY)
    expected_camera = SpikeCamera(threshold=1.0, seed=3)
    greys = np.stack([cv2.resize(bgr_to_grey(f), (12, 8), interpolation=cv2.INTER_AREA) for f in frames])
    assert np.array_equal(sample.spikes, expected_camera.integrate(greys))


def test_incomplete_and_wrong_frames() -> None:
    with pytest.raises(IncompleteSampleError, match="ended after 10 frames of a sample that needs 137"):
        simulate_sample(_pan(10), TINY.new_camera(), TINY)
    bad = [np.zeros((8, 8, 3), np.uint8)]
    with pytest.raises(ValueError, match=r"frame 0 is uint8 \(8, 8, 3\), expected uint8 \(32, 48, 3\)"):
        simulate_sample(bad, TINY.new_camera(), TINY)


def test_dataset_on_disk_with_continuous_camera(tmp_path: Path) -> None:
    frames = _pan(3 * 137)
    result = simulate_dataset(iter(frames), TINY, tmp_path / "out", samples=3, scene="pan", progress=False)
    assert len(result.samples) == 3
    assert result.samples[1].spikes.name == "0001.dat"
    assert [p.name for p in result.samples[0].sharp] == [
        "020.png",
        "044.png",
        "068.png",
        "092.png",
        "116.png",
    ]
    meta = json.loads(result.meta.read_text())
    assert meta["layout"] == "gopro-spike" and meta["spike_size"] == [8, 12] and meta["blur_size"] == [32, 48]
    ds = open_dataset(tmp_path / "out")
    assert len(ds) == 3
    # One camera runs through all samples: the spikes equal one long integration.
    greys = np.stack([cv2.resize(bgr_to_grey(f), (12, 8), interpolation=cv2.INTER_AREA) for f in frames])
    stream = TINY.new_camera().integrate(greys)
    assert np.array_equal(np.concatenate([s.spikes for s in ds]), stream)
    assert np.array_equal(ds[2].sharp[20], frames[2 * 137 + 20])


def test_dataset_short_source(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING):
        result = simulate_dataset(_pan(200), TINY, tmp_path / "a", samples=3, source="clip", progress=False)
    assert len(result.samples) == 1
    assert "wrote 1 of 3 samples" in caplog.text
    with pytest.raises(DatasetError, match="clip: the source ended after 100 frames .* no sample written"):
        simulate_dataset(_pan(100), TINY, tmp_path / "b", samples=1, source="clip", progress=False)


def test_dataset_overwrite(tmp_path: Path) -> None:
    out = tmp_path / "out"
    simulate_dataset(_pan(274), TINY, out, samples=2, progress=False)
    with pytest.raises(DatasetError, match="already holds a dataset"):
        simulate_dataset(_pan(137), TINY, out, samples=1, progress=False)
    simulate_dataset(_pan(137), TINY, out, samples=1, scene="other", overwrite=True, progress=False)
    ds = open_dataset(out)
    assert [s.name for s in ds] == ["other/0000"]  # the old dataset is gone, not mixed in


def test_dataset_argument_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="samples 0"):
        simulate_dataset([], TINY, tmp_path, samples=0)
    with pytest.raises(ValueError, match="plain folder name"):
        simulate_dataset([], TINY, tmp_path, samples=1, scene="a/b")


def test_dataset_argument_errors_are_user_errors(tmp_path: Path) -> None:
    from spikereveal.stream.errors import SpikeRevealError

    with pytest.raises(SpikeRevealError, match="samples 0"):
        simulate_dataset([], TINY, tmp_path, samples=0)
    with pytest.raises(SpikeRevealError, match=r"scene name '\.\.'"):
        simulate_dataset([], TINY, tmp_path, samples=1, scene="..")


def test_append_adds_scenes_and_merges_meta(tmp_path: Path) -> None:
    # GIVEN a dataset of one scene at Vth 1
    out = tmp_path / "set"
    simulate_dataset(_pan(137), TINY, out, samples=1, scene="a", source="one", progress=False)
    # WHEN a scene at Vth 4 (other seed, other ground-truth times) is appended
    vth4 = SimulationConfig(spike_size=(8, 12), vth=4.0, seed=7, sharp_times=(68,))
    simulate_dataset(_pan(274), vth4, out, samples=2, scene="b", source="two", append=True, progress=False)
    # THEN both scenes read as one set, each with its own settings in meta.json
    ds = open_dataset(out)
    assert [s.name for s in ds] == ["a/0000", "b/0000", "b/0001"]
    assert ds[1].spikes.mean() < ds[0].spikes.mean() / 2
    meta = json.loads((out / "meta.json").read_text())
    assert meta["vth"] == [1.0, 4.0] and meta["seed"] == [3, 7] and meta["spike_size"] == [8, 12]
    assert meta["source"] == "2 sources (see scenes)"
    assert meta["sharp_times"] == [[20, 44, 68, 92, 116], [68]]
    assert meta["scenes"]["a"] == {
        "samples": 1,
        "vth": 1.0,
        "increment_per_frame": TINY.increment_per_frame,
        "noise_prob": 0.0,
        "seed": 3,
        "sharp_times": [20, 44, 68, 92, 116],
        "source": "one",
    }
    assert meta["scenes"]["b"]["vth"] == 4.0 and meta["scenes"]["b"]["samples"] == 2
    # One value where every scene agrees
    assert meta["noise_prob"] == 0.0


def test_append_starts_a_dataset_and_refuses_what_does_not_fit(tmp_path: Path) -> None:
    out = tmp_path / "set"
    simulate_dataset(_pan(137), TINY, out, samples=1, scene="a", append=True, progress=False)
    assert json.loads((out / "meta.json").read_text())["vth"] == 1.0
    before = (out / "meta.json").read_text()
    with pytest.raises(DatasetError, match="already holds scene 'a'; pick another --scene"):
        simulate_dataset(_pan(137), TINY, out, samples=1, scene="a", append=True, progress=False)
    other = SimulationConfig(spike_size=(8, 16))
    frames = list(scenes.pan_scene(137, other.blur_size, texture="procedural"))
    with pytest.raises(DatasetError, match=r"spike_size is \[8, 12\] there but \[8, 16\] in this run"):
        simulate_dataset(frames, other, out, samples=1, scene="c", append=True, progress=False)
    with pytest.raises(DatasetError, match="choose one"):
        simulate_dataset(_pan(137), TINY, out, samples=1, scene="d", append=True, overwrite=True)
    assert (out / "meta.json").read_text() == before  # refused before anything was written
    assert not (out / "spike_data" / "c").exists()


def test_merge_meta_of_a_dataset_without_scene_records(tmp_path: Path) -> None:
    from spikereveal.tools.simulate import build_meta, merge_meta

    old = build_meta(TINY, "a", "one", 2)
    old["scenes"] = {"a": {"samples": 2}}  # as datasets written before scenes kept settings
    new = build_meta(SimulationConfig(spike_size=(8, 12), vth=2.0), "b", "two", 1)
    merged = merge_meta(old, new, tmp_path / "meta.json")
    assert merged["scenes"]["a"]["vth"] == 1.0 and merged["scenes"]["a"]["seed"] == 3
    assert merged["vth"] == [1.0, 2.0]
