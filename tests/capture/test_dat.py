"""Tests for capture/dat.py: the raw spike .dat codec."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikereveal.capture import dat
from spikereveal.capture.dat import DatFile, follow_dat, open_dat, read_sidecar, sidecar_path, write_dat
from spikereveal.engine.tfp import tfp
from spikereveal.stream import spikes
from spikereveal.stream.spikes import SpikeFormatError, SpikeGeometry, pack_frames, unpack_frames

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
SPIKEZOO = SHARED / "data" / "spikezoo"


def one_pixel(height: int, width: int, row: int, col: int) -> np.ndarray:
    frame = np.zeros((1, height, width), dtype=np.uint8)
    frame[0, row, col] = 1
    return frame


def random_spikes(shape: tuple[int, int, int], seed: int = 0, density: float = 0.3) -> np.ndarray:
    return (np.random.default_rng(seed).random(shape) < density).astype(np.uint8)


# ---- golden one-pixel patterns -------------------------------------------------------------


@pytest.mark.parametrize(
    ("flip", "row", "col", "byte", "value"),
    [
        # 8x16: 2 bytes per row. Upright row 0 is stored last (row 7 -> bits 112..127); col 3 is bit 3.
        (True, 0, 3, 14, 0b0000_1000),
        # Upright row 2 is stored row 5 -> bit 5*16 + 9 = 89 = byte 11, bit 1.
        (True, 2, 9, 11, 0b0000_0010),
        # Bottom-right pixel is stored first: bit 15 = byte 1, bit 7 (the most significant).
        (True, 7, 15, 1, 0b1000_0000),
        (False, 0, 3, 0, 0b0000_1000),
        (False, 2, 9, 5, 0b0000_0010),  # bit 2*16 + 9 = 41 = byte 5, bit 1
        (False, 7, 15, 15, 0b1000_0000),
    ],
)
def test_one_pixel_golden_bytes(flip: bool, row: int, col: int, byte: int, value: int) -> None:
    # GIVEN an 8x16 frame with exactly one spike
    geometry = SpikeGeometry(8, 16, flip=flip)
    expected = np.zeros((1, 16), dtype=np.uint8)
    expected[0, byte] = value
    # WHEN it is packed THEN exactly that byte/bit is set (LSB first, rows bottom-up when flipped)
    np.testing.assert_array_equal(pack_frames(one_pixel(8, 16, row, col), geometry), expected)
    # AND decoding the hand-made bytes gives back exactly that pixel
    np.testing.assert_array_equal(unpack_frames(expected.tobytes(), geometry), one_pixel(8, 16, row, col))


def test_one_pixel_golden_with_row_tag_bits() -> None:
    # GIVEN 8x16 frames whose stored rows carry 16 tag bits (32 bits = 4 bytes per row, tags last)
    geometry = SpikeGeometry(8, 16, row_tag_bits=16)
    assert geometry.frame_bytes == 32
    # WHEN pixel (0, 3) is packed THEN it lands in stored row 7 (bytes 28..31), bit 3; tags are zero
    expected = np.zeros((1, 32), dtype=np.uint8)
    expected[0, 28] = 0b0000_1000
    np.testing.assert_array_equal(pack_frames(one_pixel(8, 16, 0, 3), geometry), expected)
    # AND on reading, tag bytes full of ones are ignored
    stored = expected.copy().reshape(1, 8, 4)
    stored[:, :, 2:] = 0xFF
    np.testing.assert_array_equal(unpack_frames(stored.reshape(1, 32), geometry), one_pixel(8, 16, 0, 3))


def test_unaligned_rows_golden() -> None:
    # GIVEN a 2x12 frame (24 bits: rows are not byte aligned, the frame is)
    geometry = SpikeGeometry(2, 12)
    # WHEN pixel (0, 0) is packed THEN it is stored row 1 -> bit 12 = byte 1, bit 4
    np.testing.assert_array_equal(pack_frames(one_pixel(2, 12, 0, 0), geometry), [[0, 0b0001_0000, 0]])
    np.testing.assert_array_equal(unpack_frames(bytes([0, 0b0001_0000, 0]), geometry), one_pixel(2, 12, 0, 0))


# ---- geometry --------------------------------------------------------------------------------


def test_geometry_frame_bytes() -> None:
    assert SpikeGeometry(250, 400).frame_bytes == 12_500
    assert SpikeGeometry(250, 400, row_tag_bits=16).frame_bytes == 13_000
    assert SpikeGeometry(1000, 1000).frame_bytes == 125_000


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"height": 5, "width": 5}, r"5x5: 25 bits per frame is not a whole number of bytes"),
        ({"height": 3, "width": 5, "row_tag_bits": 2}, r"3 rows of 7 bits = 21 bits"),
        ({"height": 0, "width": 8}, "must be positive"),
        ({"height": 8, "width": 8, "row_tag_bits": -8}, "row_tag_bits must be >= 0"),
        ({"height": 8.0, "width": 8}, "height must be an integer"),
    ],
)
def test_geometry_errors(kwargs: dict, match: str) -> None:
    with pytest.raises(SpikeFormatError, match=match):
        SpikeGeometry(**kwargs)


# ---- round trip ------------------------------------------------------------------------------


@st.composite
def geometries(draw: st.DrawFn) -> SpikeGeometry:
    tag = draw(st.sampled_from([0, 0, 16, 3]))
    height = draw(st.integers(1, 12))
    width = draw(st.integers(1, 24))
    # Make the frame byte aligned by padding the width to the next valid size.
    while (height * (width + tag)) % 8:
        width += 1
    return SpikeGeometry(height, width, flip=draw(st.booleans()), row_tag_bits=tag)


@settings(max_examples=60, deadline=None)
@given(geometry=geometries(), frames=st.integers(0, 5), seed=st.integers(0, 2**32 - 1))
def test_pack_unpack_round_trip(geometry: SpikeGeometry, frames: int, seed: int) -> None:
    spikes = random_spikes((frames, geometry.height, geometry.width), seed, density=0.5)
    packed = pack_frames(spikes, geometry)
    assert packed.shape == (frames, geometry.frame_bytes)
    assert packed.dtype == np.uint8
    decoded = unpack_frames(packed, geometry)
    assert decoded.dtype == np.uint8
    assert decoded.flags.c_contiguous
    np.testing.assert_array_equal(decoded, spikes)
    # and the other way round for tag-free bytes: any stored bytes survive decode + encode
    if geometry.row_tag_bits == 0:
        raw = np.random.default_rng(seed).integers(0, 256, (frames, geometry.frame_bytes), dtype=np.uint8)
        np.testing.assert_array_equal(pack_frames(unpack_frames(raw, geometry), geometry), raw)


def test_unpack_accepts_flat_buffers() -> None:
    geometry = SpikeGeometry(4, 8)
    spikes = random_spikes((3, 4, 8))
    packed = pack_frames(spikes, geometry)
    for buffer in (
        packed.tobytes(),
        bytearray(packed.tobytes()),
        memoryview(packed.tobytes()),
        packed.ravel(),
    ):
        np.testing.assert_array_equal(unpack_frames(buffer, geometry), spikes)


def test_unpack_and_pack_errors() -> None:
    geometry = SpikeGeometry(4, 8)
    with pytest.raises(
        SpikeFormatError, match=r"5 bytes is not a whole number of 4x8 frames \(4 bytes each\)"
    ):
        unpack_frames(bytes(5), geometry)
    with pytest.raises(SpikeFormatError, match="must be uint8"):
        unpack_frames(np.zeros((1, 4), dtype=np.int16), geometry)
    with pytest.raises(SpikeFormatError, match=r"\(2, 4, 9\) do not match the 4x8 geometry"):
        pack_frames(np.zeros((2, 4, 9), dtype=np.uint8), geometry)


# ---- files -----------------------------------------------------------------------------------


def test_write_and_open_with_sidecar(tmp_path: Path) -> None:
    # GIVEN spikes written with a sidecar
    geometry = SpikeGeometry(8, 16, flip=False, row_tag_bits=16)
    spikes = random_spikes((7, 8, 16))
    path = write_dat(tmp_path / "s.dat", spikes, geometry, rate_hz=20_000)
    # THEN the file is raw frames and the sidecar describes them
    assert path.stat().st_size == 7 * geometry.frame_bytes
    assert sidecar_path(path).name == "s.dat.json"
    assert read_sidecar(path) == {
        "height": 8,
        "width": 16,
        "flip": False,
        "row_tag_bits": 16,
        "rate_hz": 20_000,
    }
    # WHEN opened without sizes THEN the sidecar supplies the geometry and rate
    with open_dat(path) as f:
        assert isinstance(f, DatFile)
        assert len(f) == 7
        assert f.geometry == geometry
        assert f.rate_hz == 20_000
        np.testing.assert_array_equal(f.read(), spikes)
        np.testing.assert_array_equal(f.frame(3), spikes[3])
    with pytest.raises(ValueError, match="closed"):
        f.read(0, 1)


def test_write_without_sidecar_needs_sizes(tmp_path: Path) -> None:
    spikes = random_spikes((300, 8, 8))  # more than one write chunk
    path = write_dat(tmp_path / "s.dat", spikes, SpikeGeometry(8, 8), sidecar=False)
    assert not sidecar_path(path).exists()
    with pytest.raises(SpikeFormatError, match=r"s\.dat: unknown frame size: pass the spike size"):
        open_dat(path)
    f = open_dat(path, 8, 8)
    assert f.rate_hz is None
    np.testing.assert_array_equal(f.read(), spikes)


def test_arguments_override_sidecar(tmp_path: Path) -> None:
    spikes = random_spikes((4, 8, 8))
    path = write_dat(tmp_path / "s.dat", spikes, SpikeGeometry(8, 8))
    # flip=False read of a flipped file gives the frames upside down
    np.testing.assert_array_equal(open_dat(path, flip=False).read(), spikes[:, ::-1])
    # explicit sizes win over the sidecar (4x16 has the same frame size as 8x8)
    assert open_dat(path, 4, 16).geometry == SpikeGeometry(4, 16)


def test_memmap_partial_ranges_equal_full_read(tmp_path: Path) -> None:
    spikes = random_spikes((40, 16, 24))
    path = write_dat(tmp_path / "s.dat", spikes, SpikeGeometry(16, 24))
    f = open_dat(path)
    full = f.read()
    for start, stop in [(0, 1), (5, 17), (39, 40), (0, 40), (12, 12)]:
        np.testing.assert_array_equal(f.read(start, stop), full[start:stop])
        assert f.packed(start, stop).shape == (stop - start, 48)
    assert isinstance(f.packed(0, 2), np.memmap)  # a view of the mapping, not a copy


@pytest.mark.parametrize(("start", "stop"), [(-1, 3), (0, 41), (10, 5), (41, None)])
def test_out_of_range_frames(tmp_path: Path, start: int, stop: int | None) -> None:
    path = write_dat(tmp_path / "s.dat", random_spikes((40, 8, 8)), SpikeGeometry(8, 8))
    with pytest.raises(IndexError, match=r"out of range; the file has 40 frames \(0\.\.39\)"):
        open_dat(path).read(start, stop)


def test_truncated_file_error_names_everything(tmp_path: Path) -> None:
    # GIVEN a 96x160 file missing part of its last frame
    geometry = SpikeGeometry(96, 160)
    path = write_dat(tmp_path / "spikes.dat", random_spikes((3, 96, 160)), geometry, sidecar=False)
    data = path.read_bytes()
    path.write_bytes(data[:-7])
    # THEN the error names the file, its size, the geometry and the frame size
    with pytest.raises(SpikeFormatError) as info:
        open_dat(path, 96, 160)
    assert str(info.value) == (
        f"{path}: {3 * 1920 - 7} bytes is not a whole number of 96x160 frames (1920 bytes each)"
    )


def test_wrong_resolution_error(tmp_path: Path) -> None:
    path = write_dat(tmp_path / "s.dat", random_spikes((3, 8, 16)), SpikeGeometry(8, 16), sidecar=False)
    with pytest.raises(
        SpikeFormatError, match=r"48 bytes is not a whole number of 10x16 frames \(20 bytes each\)"
    ):
        open_dat(path, 10, 16)


def test_sidecar_and_argument_errors(tmp_path: Path) -> None:
    path = tmp_path / "s.dat"
    path.write_bytes(bytes(16))
    with pytest.raises(SpikeFormatError, match="give both height and width"):
        open_dat(path, 8, None)
    sidecar_path(path).write_text("{not json")
    with pytest.raises(SpikeFormatError, match=r"s\.dat\.json: not a readable JSON sidecar"):
        open_dat(path)
    sidecar_path(path).write_text(json.dumps({"height": 8}))
    with pytest.raises(SpikeFormatError, match="missing height and/or width"):
        open_dat(path)
    sidecar_path(path).write_text(json.dumps({"height": 8, "width": 16, "flip": "yes"}))
    with pytest.raises(SpikeFormatError, match="flip must be true or false"):
        open_dat(path)
    with pytest.raises(FileNotFoundError, match="no such spike file"):
        open_dat(tmp_path / "missing.dat", 8, 8)


def test_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "empty.dat"
    path.write_bytes(b"")
    f = open_dat(path, 8, 8)
    assert len(f) == 0
    assert f.read().shape == (0, 8, 8)


# ---- following a growing file ----------------------------------------------------------------


def test_follow_dat_while_a_thread_appends(tmp_path: Path) -> None:
    # GIVEN a writer thread that appends frames in uneven pieces (splitting frames across writes)
    geometry = SpikeGeometry(8, 16)
    spikes = random_spikes((50, 8, 16), seed=3)
    data = pack_frames(spikes, geometry).tobytes()
    path = tmp_path / "live.dat"
    path.write_bytes(b"")

    def writer() -> None:
        with open(path, "ab") as out:
            for start in range(0, len(data), 37):
                out.write(data[start : start + 37])
                out.flush()
                time.sleep(0.002)

    thread = threading.Thread(target=writer)
    thread.start()
    try:
        # WHEN following it THEN every frame arrives exactly once, in order, in whole-frame chunks
        chunks = list(follow_dat(path, geometry, poll_s=0.002, idle_timeout_s=1.0, max_chunk_frames=8))
    finally:
        thread.join(timeout=10)
    assert not thread.is_alive()
    assert all(1 <= c.shape[0] <= 8 and c.shape[1] == geometry.frame_bytes for c in chunks)
    np.testing.assert_array_equal(unpack_frames(np.concatenate(chunks), geometry), spikes)


def test_follow_dat_sidecar_start_frame_and_idle_stop(tmp_path: Path) -> None:
    spikes = random_spikes((10, 8, 8))
    path = write_dat(tmp_path / "s.dat", spikes, SpikeGeometry(8, 8))
    t0 = time.monotonic()
    chunks = list(follow_dat(path, start_frame=4, poll_s=0.005, idle_timeout_s=0.1))
    assert time.monotonic() - t0 < 5
    np.testing.assert_array_equal(unpack_frames(np.concatenate(chunks), SpikeGeometry(8, 8)), spikes[4:])


def test_follow_dat_partial_frame_at_end_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "s.dat"
    path.write_bytes(bytes(8 * 2 + 3))
    follower = follow_dat(path, SpikeGeometry(8, 8), poll_s=0.005, idle_timeout_s=0.1)
    assert next(follower).shape == (2, 8)
    with pytest.raises(
        SpikeFormatError, match=r"19 bytes is not a whole number of 8x8 frames .*3 bytes of a partial"
    ):
        next(follower)


def test_follow_dat_missing_file_times_out(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="waited"):
        list(follow_dat(tmp_path / "never.dat", SpikeGeometry(8, 8), poll_s=0.005, idle_timeout_s=0.05))


# ---- the real clips --------------------------------------------------------------------------


def _clip_correlation(name: str, flip: bool) -> tuple[float, float]:
    import cv2

    truth = cv2.imread(str(SPIKEZOO / f"{name}.png"), cv2.IMREAD_GRAYSCALE).astype(np.float64) / 255.0
    with open_dat(SPIKEZOO / f"{name}.dat", 250, 400, flip=flip) as f:
        assert len(f) == 301
        image = tfp(f.read(), 151, 41)
    assert image.shape == truth.shape == (250, 400)
    return float(np.corrcoef(image.ravel(), truth.ravel())[0, 1]), float(image.mean() / truth.mean())


@pytest.mark.skipif(not SPIKEZOO.is_dir(), reason="shared spikezoo data absent")
@pytest.mark.parametrize(("name", "min_corr"), [("200_part1_key_id151", 0.98), ("203_part2_key_id151", 0.95)])
def test_real_clip_tfp_matches_ground_truth(name: str, min_corr: float) -> None:
    # GIVEN a real 250x400 clip and its grey ground truth at frame 151
    # WHEN the 41-frame TFP around frame 151 is decoded THEN it matches the scene closely
    corr, ratio = _clip_correlation(name, flip=True)
    assert corr >= min_corr
    assert ratio == pytest.approx(0.60, abs=0.05)
    # AND without the flip the match collapses (regression guard for the row order)
    corr_unflipped, _ = _clip_correlation(name, flip=False)
    assert corr_unflipped < 0.5


def test_dat_re_exports_the_spike_format() -> None:
    """Callers written against capture/dat.py get the very objects of stream/spikes.py."""
    for name in ("SpikeFormatError", "SpikeGeometry", "pack_frames", "unpack_frames"):
        assert getattr(dat, name) is getattr(spikes, name)
