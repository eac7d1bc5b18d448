"""Sample: the one type every reader and the simulator produce."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from spikereveal.capture.sample import Sample


def _blur(h: int = 8, w: int = 12) -> np.ndarray:
    return np.zeros((h, w, 3), dtype=np.uint8)


def _spikes(t: int = 9, h: int = 2, w: int = 3) -> np.ndarray:
    return np.zeros((t, h, w), dtype=np.uint8)


def test_smoke_properties() -> None:
    sample = Sample("pan/0000", _blur(), _spikes(), (2, 6), {4: _blur()})
    assert sample.num_frames == 9
    assert sample.spike_size == (2, 3)
    assert sample.blur_size == (8, 12)
    assert sample.exposure == (2, 6)
    assert sample.exposure_frames == 5
    assert list(sample.sharp) == [4]


def test_default_sharp_is_empty_and_exposure_normalised() -> None:
    sample = Sample("x", _blur(), _spikes(), [np.int64(0), np.int64(8)])  # type: ignore[arg-type]
    assert sample.exposure == (0, 8)
    assert type(sample.exposure[0]) is int
    assert dict(sample.sharp) == {}


def test_frozen_and_sharp_read_only() -> None:
    sample = Sample("x", _blur(), _spikes(), (0, 8), {1: _blur()})
    with pytest.raises(dataclasses.FrozenInstanceError):
        sample.name = "y"  # type: ignore[misc]
    with pytest.raises(TypeError):
        sample.sharp[2] = _blur()  # type: ignore[index]


def test_sharp_sorted_by_index() -> None:
    sample = Sample("x", _blur(), _spikes(), (0, 8), {7: _blur(), 1: _blur(), 4: _blur()})
    assert list(sample.sharp) == [1, 4, 7]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"blur": np.zeros((8, 12), np.uint8)}, "blur must be (H, W, 3) uint8"),
        ({"blur": np.zeros((8, 12, 3), np.float32)}, "blur must be (H, W, 3) uint8"),
        ({"blur": np.zeros((8, 12, 4), np.uint8)}, "blur must be (H, W, 3) uint8"),
        ({"spikes": np.zeros((2, 3), np.uint8)}, "spikes must be (T, h, w) uint8"),
        ({"spikes": np.zeros((9, 2, 3), bool)}, "spikes must be (T, h, w) uint8"),
        ({"spikes": np.zeros((0, 2, 3), np.uint8)}, "no frames"),
        ({"spikes": np.full((9, 2, 3), 2, np.uint8)}, "must be 0/1"),
        ({"exposure": (5, 3)}, "0 <= start <= end <= 8"),
        ({"exposure": (-1, 3)}, "0 <= start <= end <= 8"),
        ({"exposure": (0, 9)}, "0 <= start <= end <= 8"),
        ({"exposure": 3}, "exposure must be a pair"),
        ({"sharp": {9: _blur()}}, "outside 0..8"),
        ({"sharp": {3: np.zeros((8, 11, 3), np.uint8)}}, "sharp frame 3 must be (8, 12, 3) uint8"),
        ({"sharp": {3: np.zeros((8, 12, 3), np.uint16)}}, "sharp frame 3"),
    ],
)
def test_errors(kwargs: dict, message: str) -> None:
    args = {"name": "pan/0001", "blur": _blur(), "spikes": _spikes(), "exposure": (0, 8), **kwargs}
    with pytest.raises(ValueError, match="sample 'pan/0001'") as info:
        Sample(**args)
    assert message in str(info.value)
