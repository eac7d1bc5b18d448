"""``--backend auto`` and explicit backends/devices: what is chosen, why, and one line when absent.

On this CPU-only machine the real resolution is checked as it is (no GPU: torch on the CPU), and
what it refuses. Where TensorRT or a GPU would have to be present, the two probes the resolver
uses (its GPU lookup and the ``tensorrt`` import) are replaced for that test only: nothing else
of a GPU machine is imitated, and no backend is built on the pretend GPU.
"""

from __future__ import annotations

import logging
import sys
import types

import numpy as np
import pytest
import torch

import spikereveal.engine.backends as backends
from spikereveal.engine.backends import BackendError, choose_backend, create_backend, resolve_backend
from spikereveal.engine.backends.tensorrt_backend import tensorrt_available
from spikereveal.engine.ldn import LDN

no_gpu = pytest.mark.skipif(torch.cuda.is_available(), reason="a CUDA GPU is present")
no_trt = pytest.mark.skipif(tensorrt_available(), reason="TensorRT is installed here")


@pytest.fixture
def pretend_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    """The resolver sees one GPU named "Test GPU" (only its probe; nothing runs on it)."""
    monkeypatch.setattr(backends, "_gpu_name", lambda device: "Test GPU")


@pytest.fixture
def pretend_tensorrt(monkeypatch: pytest.MonkeyPatch) -> None:
    """``import tensorrt`` gives a module with a version (only the resolver's probe imports it)."""
    monkeypatch.setitem(sys.modules, "tensorrt", types.SimpleNamespace(__version__="10.16.1"))


@no_gpu
def test_auto_without_a_gpu_is_torch_on_the_cpu() -> None:
    choice = choose_backend("auto", "auto")
    assert (choice.name, choice.device) == ("torch", "cpu")
    assert resolve_backend("auto", "auto") == ("torch", choice.reason)
    assert "no CUDA GPU" in choice.reason
    assert choose_backend("auto", "cpu").device == "cpu"
    assert choose_backend("torch", "auto").device == "cpu"  # an explicit backend: its own default here


@no_trt
def test_auto_with_a_gpu_but_no_tensorrt_is_torch_on_cuda_in_fp16(pretend_gpu) -> None:
    choice = choose_backend("auto")
    assert (choice.name, choice.device, choice.options) == ("torch", "cuda", {"precision": "fp16"})
    assert "GPU Test GPU but no TensorRT" in choice.reason
    assert choose_backend("torch").device == "cuda"  # device auto: the GPU where the backend uses one
    assert choose_backend("onnxruntime").device == "cpu"
    assert choose_backend("auto", "cpu").name == "torch"  # a CPU asked for: no GPU backend


def test_auto_with_a_gpu_and_tensorrt_is_tensorrt(pretend_gpu, pretend_tensorrt) -> None:
    choice = choose_backend("auto", "auto")
    assert (choice.name, choice.device) == ("tensorrt", "cuda")
    assert choice.reason == "TensorRT 10.16.1 and GPU Test GPU present"
    assert choose_backend("trt", "cuda").name == "tensorrt"  # the alias, explicitly


@no_trt
def test_explicit_tensorrt_without_it_is_one_line_and_no_fallback(pretend_gpu) -> None:
    with pytest.raises(BackendError) as info:
        resolve_backend("tensorrt", "auto")
    assert "TensorRT is not installed here" in str(info.value) and "\n" not in str(info.value)


@no_gpu
def test_an_absent_gpu_asked_for_is_one_line_and_no_fallback() -> None:
    for name in ("auto", "torch", "onnxruntime"):
        with pytest.raises(BackendError, match="device 'cuda' asked for, but torch sees no CUDA device here"):
            resolve_backend(name, "cuda")
    with pytest.raises(BackendError, match="device 'cuda' asked for"):
        create_backend("auto", LDN().state_dict(), device="cuda")


def test_tensorrt_on_the_cpu_and_bad_names_are_refused(pretend_tensorrt) -> None:
    with pytest.raises(BackendError, match="runs on a CUDA GPU only, not on device 'cpu'"):
        resolve_backend("tensorrt", "cpu")
    with pytest.raises(BackendError, match="device 'tpu' is not one of: auto, cpu, cuda, cuda:N"):
        resolve_backend("auto", "tpu")
    with pytest.raises(BackendError, match="unknown backend 'tensorflow'; choose one of: auto, onnxruntime"):
        resolve_backend("tensorflow")


@no_gpu
def test_create_backend_auto_logs_what_runs_and_why(caplog: pytest.LogCaptureFixture) -> None:
    torch.manual_seed(0)
    with caplog.at_level(logging.INFO, logger="spikereveal.engine.backends"):
        backend = create_backend("auto", LDN().state_dict(), threads=1)
    with backend:
        assert backend.name == "torch" and backend.describe()["device"] == "cpu"
        out = backend.run(np.full((1, 3, 16, 16), 0.5, np.float32), np.zeros((1, 21, 4, 4), np.float32))
        assert out.shape == (1, 3, 16, 16)
    lines = [r.getMessage() for r in caplog.records if r.name == "spikereveal.engine.backends"]
    assert lines == [f"backend auto: torch on cpu ({choose_backend('auto').reason})"]
