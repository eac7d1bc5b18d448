"""The kernel wrappers: a golden one-pixel case each, and bad inputs stopped before any launch."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from spikereveal.engine.kernels import ops
from spikereveal.engine.kernels.shim import default_runner
from spikereveal.stream.errors import SpikeRevealError
from spikereveal.stream.spikes import SpikeGeometry

pytestmark = pytest.mark.skipif(shutil.which("g++") is None, reason="the CPU shim needs g++")

GEOMETRY = SpikeGeometry(2, 8)  # one byte per row, stored bottom-up
T = 21


class CountingRunner:
    """The real CPU shim, counting launches (a bad input must never get one)."""

    device = "cpu"

    def __init__(self) -> None:
        self.launches = 0

    def launch(self, name, grid, block, args, shared_bytes=0):
        self.launches += 1
        default_runner().launch(name, grid, block, args, shared_bytes)


@pytest.fixture
def runner() -> CountingRunner:
    return CountingRunner()


def one_spike(frame: int = 10) -> np.ndarray:
    packed = np.zeros((T, GEOMETRY.frame_bytes), np.uint8)
    packed[frame, 0] = 0b00000001  # byte 0 = bottom row, bit 0 = its leftmost pixel
    return packed


def test_golden_one_pixel_window(runner):
    out = np.full((1, 21, 2, 8), np.nan, np.float32)
    ops.unpack_windows(one_spike(), GEOMETRY, [10], out, runner=runner, scale=2.5)
    assert runner.launches == 1
    assert out[0, 10, 1, 0] == 2.5  # frame 10 is the window's centre (index 10)
    out[0, 10, 1, 0] = 0
    assert not out.any()


def test_golden_one_pixel_counts(runner):
    long = np.full((2, 8), -1, np.int32)
    short = np.full((2, 2, 8), -1, np.int32)
    ops.tfp_counts(one_spike(10), GEOMETRY, (4, 16), [7, 12], long, short, runner=runner)
    assert long[1, 0] == 1 and long.sum() == 1
    assert short[:, 1, 0].tolist() == [1, 1] and short.sum() == 2  # 10 is in 3..11 and in 8..16
    ops.tfp_counts(one_spike(2), GEOMETRY, (4, 16), [7, 12], long, short, runner=runner)
    assert not long.any() and not short.any()


def test_golden_sdm_zero_guard_and_ratio(runner):
    long = np.array([[0, 4], [4, 4]], np.int32)  # pixel (0, 0) never fired
    short = np.array([[[0, 2], [2, 2]]], np.int32)
    blur = np.full((8, 8, 3), 255, np.uint8)  # (H, W, 3) = 4x (2, 2)
    out = np.full((1, 3, 8, 8), np.nan, np.float32)
    ops.sdm_upsample(long, short, blur, out, exposure_frames=8, short_window=4, runner=runner)
    assert out[0, :, 0, 0].tolist() == [0.0, 0.0, 0.0]  # zero guard, not NaN
    assert out[0, :, 7, 7].tolist() == [1.0, 1.0, 1.0]  # (2/4) / (4/8)
    assert np.isfinite(out).all()


def _windows_out(k: int = 1, dtype=np.float32) -> np.ndarray:
    return np.zeros((k, 21, 2, 8), dtype)


BAD_UNPACK = [
    (
        r"packed: shape \(21, 3\) is not \(T, frame_bytes\) for 2x8 frames of 2 bytes = \(21, 2\)",
        lambda: (np.zeros((T, 3), np.uint8), _windows_out(), [10]),
    ),
    ("packed: dtype int8 is not uint8", lambda: (one_spike().astype(np.int8), _windows_out(), [10])),
    (
        "packed: shape .* is not C-contiguous",
        lambda: (np.zeros((T, 4), np.uint8)[:, ::2], _windows_out(), [10]),
    ),
    (
        "packed: shape \\(21,\\) is not \\(T, frame_bytes\\)",
        lambda: (np.zeros(T, np.uint8), _windows_out(), [10]),
    ),
    ("windows out: shape \\(2, 21, 2, 8\\) is not", lambda: (one_spike(), _windows_out(2), [10])),
    (
        "windows out: dtype float64 is not float32 or float16",
        lambda: (one_spike(), _windows_out(1, np.float64), [10]),
    ),
    (
        "windows out: .* not C-contiguous",
        lambda: (one_spike(), np.zeros((1, 21, 2, 16), np.float32)[..., ::2], [10]),
    ),
    ("times .*spike frames -1..19", lambda: (one_spike(), _windows_out(), [9])),
    ("times: .* is not a non-empty sequence", lambda: (one_spike(), _windows_out(0), [])),
]


@pytest.mark.parametrize(("message", "make"), BAD_UNPACK, ids=[m[:40] for m, _ in BAD_UNPACK])
def test_bad_unpack_inputs_never_launch(runner, message, make):
    packed, out, times = make()
    with pytest.raises(ops.KernelInputError, match=message):
        ops.unpack_windows(packed, GEOMETRY, times, out, runner=runner)
    assert runner.launches == 0


def test_read_only_output_and_torch_tensor_are_refused(runner):
    out = _windows_out()
    out.flags.writeable = False
    with pytest.raises(ops.KernelInputError, match="windows out: array is read-only"):
        ops.unpack_windows(one_spike(), GEOMETRY, [10], out, runner=runner)
    torch = pytest.importorskip("torch")
    with pytest.raises(ops.KernelInputError, match="packed: the CPU shim needs a NumPy array"):
        ops.unpack_windows(torch.from_numpy(one_spike()), GEOMETRY, [10], _windows_out(), runner=runner)
    assert runner.launches == 0


def test_kernel_input_error_is_a_spikereveal_error():
    assert issubclass(ops.KernelInputError, SpikeRevealError)


BAD_TFP = [
    ("exposure 4:21 is outside the 21 spike frames", (4, 21), [10], np.int32, np.int32, 1),
    ("times .*9-frame TFP_short.*spike frames 17..25", (4, 16), [21], np.int32, np.int32, 1),
    ("short counts out: dtype float32 is not int32", (4, 16), [10], np.int32, np.float32, 1),
    ("long counts out: dtype int64 is not int32 or float32", (4, 16), [10], np.int64, np.int64, 1),
    ("short counts out: shape \\(2, 2, 8\\) is not", (4, 16), [10], np.int32, np.int32, 2),
]


@pytest.mark.parametrize(("message", "exposure", "times", "long_dtype", "short_dtype", "k"), BAD_TFP)
def test_bad_tfp_inputs_never_launch(runner, message, exposure, times, long_dtype, short_dtype, k):
    long = np.zeros((2, 8), long_dtype)
    short = np.zeros((k, 2, 8), short_dtype)
    with pytest.raises(ops.KernelInputError, match=message):
        ops.tfp_counts(one_spike(), GEOMETRY, exposure, times, long, short, runner=runner)
    assert runner.launches == 0


def test_tfp_shared_memory_limit_is_checked_before_launch(runner):
    times = list(range(4, 17))
    long = np.zeros((2, 8), np.int32)
    short = np.zeros((len(times), 2, 8), np.int32)
    with pytest.raises(
        ops.KernelInputError, match="K=13 times with a block of 1024 threads needs .* shared memory"
    ):
        ops.tfp_counts(one_spike(), GEOMETRY, (4, 16), times, long, short, runner=runner, block=(32, 32))
    assert runner.launches == 0


def _sdm_inputs():
    return (
        np.zeros((2, 8), np.int32),
        np.zeros((3, 2, 8), np.int32),
        np.zeros((8, 32, 3), np.uint8),
        np.zeros((3, 3, 8, 32), np.float32),
    )


@pytest.mark.parametrize(
    ("message", "index", "replacement"),
    [
        ("long counts: dtype int64 is not int32", 0, np.zeros((2, 8), np.int64)),
        ("short counts: shape \\(3, 2, 9\\) is not", 1, np.zeros((3, 2, 9), np.int32)),
        (
            "blur: shape \\(8, 30, 3\\) is not \\(H, W, 3\\) = 4x the spike size = \\(8, 32, 3\\)",
            2,
            np.zeros((8, 30, 3), np.uint8),
        ),
        ("blur: dtype float32 is not uint8", 2, np.zeros((8, 32, 3), np.float32)),
        ("sdm out: shape \\(1, 3, 8, 32\\) is not", 3, np.zeros((1, 3, 8, 32), np.float32)),
    ],
)
def test_bad_sdm_inputs_never_launch(runner, message, index, replacement):
    inputs = list(_sdm_inputs())
    inputs[index] = replacement
    with pytest.raises(ops.KernelInputError, match=message):
        ops.sdm_upsample(*inputs, exposure_frames=97, runner=runner)
    assert runner.launches == 0
    with pytest.raises(ops.KernelInputError, match="exposure_frames: 0 is not a positive number"):
        ops.sdm_upsample(*_sdm_inputs(), exposure_frames=0, runner=runner)


def test_unknown_runner_name_and_bad_block():
    with pytest.raises(ops.KernelInputError, match="runner 'gpu': expected 'shim'"):
        ops.unpack_windows(one_spike(), GEOMETRY, [10], _windows_out(), runner="gpu")
    with pytest.raises(ops.KernelInputError, match="block \\(64, 32\\)"):
        ops.unpack_windows(one_spike(), GEOMETRY, [10], _windows_out(), block=(64, 32))
