"""create_backend and the input checks every backend shares."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikereveal.engine.backends import BACKENDS, BackendError, check_inputs, create_backend
from spikereveal.engine.ldn import LDN


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    torch.manual_seed(7)
    return LDN().state_dict()


def test_registry_names_the_cpu_backends() -> None:
    assert {"torch", "onnxruntime"} <= set(BACKENDS)


def test_unknown_backend_lists_the_choices(state) -> None:
    with pytest.raises(
        BackendError, match=r"unknown backend 'tensorflow'; choose one of: auto, onnxruntime, tensorrt, torch"
    ):
        create_backend("tensorflow", state)


def test_unknown_option_lists_the_valid_ones(state) -> None:
    with pytest.raises(BackendError, match=r"no option 'fast'.*options are: .*channels_last"):
        create_backend("torch", state, fast=True)


def test_bad_thread_count(state) -> None:
    with pytest.raises(BackendError, match="threads must be >= 1"):
        create_backend("torch", state, threads=0)


def test_check_inputs_converts_spike_windows_to_float32() -> None:
    blur = np.zeros((2, 3, 8, 12), np.float64)
    spikes = np.ones((2, 21, 2, 3), np.uint8)
    b, s = check_inputs(blur, spikes)
    assert b.dtype == s.dtype == np.float32
    assert b.flags["C_CONTIGUOUS"] and s.flags["C_CONTIGUOUS"]
    assert s.sum() == 2 * 21 * 2 * 3


@pytest.mark.parametrize(
    ("blur_shape", "spike_shape", "message"),
    [
        ((3, 8, 12), (21, 2, 3), r"blur: shape \(3, 8, 12\) is not \(N, 3, H, W\)"),
        ((1, 4, 8, 12), (1, 21, 2, 3), r"is not \(N, 3, H, W\)"),
        ((1, 3, 10, 12), (1, 21, 2, 3), "multiples of 4"),
        ((1, 3, 8, 12), (1, 20, 2, 3), r"expected \(1, 21, 2, 3\) \(21 frames at exactly 1/4"),
        ((1, 3, 8, 12), (1, 21, 4, 6), r"spikes: shape \(1, 21, 4, 6\) does not fit blur"),
        ((2, 3, 8, 12), (1, 21, 2, 3), r"expected \(2, 21, 2, 3\)"),
    ],
)
def test_shape_errors_say_what_was_expected(blur_shape, spike_shape, message: str) -> None:
    with pytest.raises(BackendError, match=message):
        check_inputs(np.zeros(blur_shape, np.float32), np.zeros(spike_shape, np.float32))


def test_integer_blur_is_refused() -> None:
    # A uint8 image passed as-is would be 255x too bright.
    with pytest.raises(BackendError, match="blur: dtype uint8 is not floating point"):
        check_inputs(np.zeros((1, 3, 8, 12), np.uint8), np.zeros((1, 21, 2, 3), np.float32))


@pytest.mark.parametrize("name", ["torch", "onnxruntime"])
def test_every_backend_rejects_bad_inputs_before_running(state, tmp_path, name: str) -> None:
    opts = {"cache_dir": tmp_path} if name == "onnxruntime" else {}
    with (
        create_backend(name, state, threads=1, **opts) as backend,
        pytest.raises(BackendError, match="21 frames"),
    ):
        backend.run(np.zeros((1, 3, 16, 16), np.float32), np.zeros((1, 21, 8, 8), np.float32))
