"""engine/cpu_decode.py: the one-pass decode equals unpack_frames + ldn_inputs / engine.tfp bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikereveal.engine.cpu_decode import AVAILABLE, counts_to_tfp, decode_exposure, ldn_inputs_packed
from spikereveal.engine.tfp import tfp, tfp_range
from spikereveal.engine.windows import ExposureError, exposure_times, ldn_inputs, spike_window
from spikereveal.stream.spikes import SpikeFormatError, SpikeGeometry, pack_frames, unpack_frames

pytestmark = pytest.mark.skipif(not AVAILABLE, reason="numba is not installed")

GEOMETRIES = [
    SpikeGeometry(6, 16),  # byte-aligned rows: the bit-sliced fast path
    SpikeGeometry(6, 16, flip=False),
    SpikeGeometry(5, 8, row_tag_bits=16),  # tag bits stripped, fast path
    SpikeGeometry(4, 12),  # width not a multiple of 8: rows not byte aligned
    SpikeGeometry(4, 10, flip=False, row_tag_bits=6),  # aligned rows, width not a multiple of 8
    SpikeGeometry(8, 7, row_tag_bits=1),  # 8-bit rows: odd width plus a tag bit
]
#: A value no decode writes: the outputs are poisoned with it first, never tested on zeros.
POISON_F32 = np.float32(-7.5)
POISON_U8 = np.uint8(0xA5)


def _packed(geometry: SpikeGeometry, frames: int, seed: int, density: float = 0.5) -> np.ndarray:
    """Random stored frames with random tag bits (which must never reach the output)."""
    rng = np.random.default_rng(seed)
    spikes = (rng.random((frames, geometry.height, geometry.width)) < density).astype(np.uint8)
    packed = pack_frames(spikes, geometry)
    if geometry.row_tag_bits:  # random tag bits too: every byte is random, and none may reach the output
        packed = rng.integers(0, 256, size=packed.shape, dtype=np.uint8)
    return packed


def _check(packed: np.ndarray, geometry: SpikeGeometry, exposure, times, scale: float = 1.0) -> None:
    spikes = unpack_frames(packed, geometry)
    blur = np.zeros((1, 1, 3), np.uint8)
    ref_windows = ldn_inputs(blur, spikes, times, spike_scale=scale)[1]
    shape = ref_windows.shape
    out = np.full(shape, POISON_F32, np.float32)
    got = decode_exposure(packed, geometry, exposure, times, scale=scale, windows_out=out)
    assert got.windows is out
    assert np.array_equal(got.windows, ref_windows)
    assert got.tfp_long().dtype == np.float32
    assert np.array_equal(got.tfp_long(), tfp_range(spikes, *exposure))
    assert np.array_equal(got.tfp_short(), np.stack([tfp(spikes, t, 9) for t in times]))
    assert np.array_equal(got.long_counts, spikes[exposure[0] : exposure[1] + 1].sum(0))
    out_u8 = np.full(shape, POISON_U8, np.uint8)
    got_u8 = decode_exposure(packed, geometry, exposure, times, dtype=np.uint8, windows_out=out_u8)
    assert np.array_equal(got_u8.windows, np.stack([spike_window(spikes, t) for t in times]))
    sdm = decode_exposure(packed, geometry, exposure, times, window=None)
    assert sdm.windows is None
    assert np.array_equal(sdm.short_counts, got.short_counts)
    assert np.array_equal(sdm.long_counts, got.long_counts)


@pytest.mark.parametrize("geometry", GEOMETRIES, ids=lambda g: f"{g.describe()}-flip{int(g.flip)}")
@pytest.mark.parametrize("k", [1, 5, 7])
def test_matches_unpack_frames_and_the_tfps(geometry: SpikeGeometry, k: int) -> None:
    packed = _packed(geometry, 137, seed=k)
    times = exposure_times(20, 116, k)
    _check(packed, geometry, (20, 116), times, scale=1.0 if k == 5 else 2.37)


def test_one_pixel_golden() -> None:
    """One spike at upright (0, 9) of frame 68, flipped storage: lands in row 0, column 9 only."""
    geometry = SpikeGeometry(3, 16)
    stored = np.zeros((137, geometry.frame_bytes), np.uint8)
    stored[68, 2 * 2 + 1] = 0b10  # stored row 2 (bottom-up) = upright row 0; byte 1 bit 1 = column 9
    got = decode_exposure(stored, geometry, (20, 116), [68], dtype=np.uint8)
    assert got.windows[0, 10, 0, 9] == 1 and int(got.windows.sum()) == 1
    assert got.long_counts[0, 9] == 1 and int(got.long_counts.sum()) == 1
    assert got.short_counts[0, 0, 9] == 1 and int(got.short_counts.sum()) == 1


def test_long_exposure_counts_past_255() -> None:
    """An exposure of 300 frames of all-ones: counts above the 8-bit lanes and the 8th bit plane."""
    geometry = SpikeGeometry(2, 16)
    packed = np.full((340, geometry.frame_bytes), 0xFF, np.uint8)
    packed[:, 1] = 0x0F  # half the pixels of the bottom row never fire after bit 3
    got = decode_exposure(packed, geometry, (20, 319), [100, 250], window=None)
    spikes = unpack_frames(packed, geometry)
    assert np.array_equal(got.long_counts, spikes[20:320].sum(0))
    assert got.long_counts.max() == 300
    assert np.array_equal(got.tfp_long(), tfp_range(spikes, 20, 319))


@settings(max_examples=25, deadline=None)
@given(
    h=st.integers(1, 6),
    w=st.integers(1, 20),
    tag=st.sampled_from([0, 3, 16]),
    flip=st.booleans(),
    k=st.integers(1, 7),
    density=st.floats(0.0, 1.0),
    seed=st.integers(0, 2**31 - 1),
)
def test_property_any_geometry(h, w, tag, flip, k, density, seed) -> None:
    if (h * (w + tag)) % 8:
        h *= 8  # every frame must be whole bytes
    geometry = SpikeGeometry(h, w, flip=flip, row_tag_bits=tag)
    n = 41 + 2 * k
    packed = _packed(geometry, n, seed, density)
    times = exposure_times(10, n - 11, k)
    _check(packed, geometry, (10, n - 11), times, scale=0.5 + seed % 7)


def test_ldn_inputs_packed_equals_ldn_inputs() -> None:
    geometry = SpikeGeometry(8, 16)
    packed = _packed(geometry, 137, seed=3)
    blur = np.random.default_rng(3).integers(0, 256, (32, 64, 3), dtype=np.uint8)
    times = exposure_times(20, 116, 5)
    ref_blur, ref_windows = ldn_inputs(blur, unpack_frames(packed, geometry), times, spike_scale=1.7)
    got_blur, got_windows, counts = ldn_inputs_packed(
        blur, packed, geometry, (20, 116), times, spike_scale=1.7
    )
    assert np.array_equal(got_blur, ref_blur) and np.array_equal(got_windows, ref_windows)
    assert counts.short_counts.shape == (5, 8, 16)


def test_counts_to_tfp_rounding_is_tfps() -> None:
    spikes = (np.random.default_rng(1).random((97, 5, 5)) < 0.3).astype(np.uint8)
    assert np.array_equal(counts_to_tfp(spikes.sum(0).astype(np.int32), 97), tfp_range(spikes, 0, 96))


def test_bad_inputs_are_one_clear_error() -> None:
    geometry = SpikeGeometry(4, 16)
    packed = np.zeros((137, geometry.frame_bytes), np.uint8)
    with pytest.raises(SpikeFormatError, match="not a whole number of 4x16 frames"):
        decode_exposure(packed[:, :5], geometry, (20, 116), [68])
    with pytest.raises(SpikeFormatError, match="uint8"):
        decode_exposure(packed.astype(np.int16), geometry, (20, 116), [68])
    with pytest.raises(ExposureError, match="output time 5 needs spike frames"):
        decode_exposure(packed, geometry, (5, 116), [5])
    with pytest.raises(ExposureError, match="outside"):
        decode_exposure(packed, geometry, (20, 200), [68])
    with pytest.raises(ExposureError, match="at least one output time"):
        decode_exposure(packed, geometry, (20, 116), [])
    with pytest.raises(ValueError, match="windows_out"):
        decode_exposure(packed, geometry, (20, 116), [68], windows_out=np.empty((1, 21, 4, 15), np.float32))
    with pytest.raises(ValueError, match="uint8 windows hold 0/1 only"):
        decode_exposure(packed, geometry, (20, 116), [68], dtype=np.uint8, scale=2.0)
    with pytest.raises(ValueError, match="float32 or uint8"):
        decode_exposure(packed, geometry, (20, 116), [68], dtype=np.float16)
