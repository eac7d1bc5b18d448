"""The torch backend reproduces the plain LDN module in every layout and precision it offers."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikereveal.engine.backends import BackendError, create_backend
from spikereveal.engine.ldn import LDN


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    torch.manual_seed(7)
    return LDN().state_dict()


def _inputs(n: int = 1, h: int = 64, w: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    blur = rng.random((n, 3, h, w), dtype=np.float32)
    spikes = (rng.random((n, 21, h // 4, w // 4)) < 0.5).astype(np.float32)
    return blur, spikes


def _atol(device: str) -> float:
    # CUDA convolutions may use TF32 by default: close to, not bit-equal with, the CPU reference.
    return 1e-5 if device == "cpu" else 2e-3


def _reference(state, blur: np.ndarray, spikes: np.ndarray) -> np.ndarray:
    model = LDN().eval()
    model.load_state_dict(state, strict=True)
    with torch.inference_mode():
        return model(torch.from_numpy(blur), torch.from_numpy(spikes)).numpy()


def test_smoke_output_is_fresh_nchw_float32(state, device: str) -> None:
    blur, spikes = _inputs(2)
    with create_backend("torch", state, threads=1, device=device) as backend:
        out = backend.run(blur, spikes)
        assert backend.describe()["device"] == device
    assert out.shape == (2, 3, 64, 96)
    assert out.dtype == np.float32
    assert out.flags["C_CONTIGUOUS"]


@pytest.mark.parametrize("channels_last", [True, False])
def test_matches_the_plain_module(state, channels_last: bool, device: str) -> None:
    blur, spikes = _inputs(2, seed=1)
    with create_backend("torch", state, threads=1, channels_last=channels_last, device=device) as backend:
        out = backend.run(blur, spikes)
        assert backend.describe()["channels_last"] is channels_last
    np.testing.assert_allclose(out, _reference(state, blur, spikes), atol=_atol(device), rtol=0)


def test_paper_weights_match_the_plain_module(paper_weights) -> None:
    from spikereveal.engine.weights import load_ldn_state

    state = load_ldn_state(paper_weights)
    blur, spikes = _inputs(1, seed=2)
    with create_backend("torch", state, threads=1) as backend:
        out = backend.run(blur, spikes)
    np.testing.assert_allclose(out, _reference(state, blur, spikes), atol=1e-5, rtol=0)


def test_batch_items_are_independent(state, device: str) -> None:
    # Property: running frames together or one by one gives the same frames (attention pools per item).
    blur, spikes = _inputs(3, seed=3)
    with create_backend("torch", state, threads=1, device=device) as backend:
        together = backend.run(blur, spikes)
        alone = np.concatenate([backend.run(blur[i : i + 1], spikes[i : i + 1]) for i in range(3)])
    np.testing.assert_allclose(together, alone, atol=_atol(device), rtol=0)


def test_bf16_stays_close_to_fp32(state) -> None:
    if not torch.backends.mkldnn.is_available():
        pytest.skip("no oneDNN")
    blur, spikes = _inputs(1, seed=4)
    with create_backend("torch", state, threads=1, precision="bf16", force_precision=True) as backend:
        out = backend.run(blur, spikes)
    assert out.dtype == np.float32
    assert np.abs(out - _reference(state, blur, spikes)).max() < 0.05


def test_bf16_is_refused_where_the_cpu_has_no_bf16_units(state) -> None:
    from spikereveal.engine.backends.torch_backend import cpu_bf16_fast

    if cpu_bf16_fast():
        pytest.skip("this CPU has bf16 units: bf16 is offered")
    with pytest.raises(BackendError, match="precision 'bf16' on this CPU .* use 'fp32'"):
        create_backend("torch", state, precision="bf16")


def test_option_errors(state) -> None:
    with pytest.raises(BackendError, match="device 'tpu'"):
        create_backend("torch", state, device="tpu")
    with pytest.raises(BackendError, match="precision 'int4'"):
        create_backend("torch", state, precision="int4")
    with pytest.raises(BackendError, match="'fp16' needs device 'cuda'"):
        create_backend("torch", state, precision="fp16")
    if not torch.cuda.is_available():
        with pytest.raises(BackendError, match="no CUDA device"):
            create_backend("torch", state, device="cuda")


def test_wrong_weights_are_a_weights_error(state) -> None:
    from spikereveal.engine.weights import WeightsError

    with pytest.raises(WeightsError, match="missing 1 keys: pred.bias"):
        create_backend("torch", {k: v for k, v in state.items() if k != "pred.bias"})


def test_run_after_close(state, device: str) -> None:
    backend = create_backend("torch", state, threads=1, device=device)
    backend.close()
    with pytest.raises(BackendError, match="after close"):
        backend.run(*_inputs())


def test_cuda_only_calls_are_refused_on_cpu(state) -> None:
    with create_backend("torch", state, threads=1) as backend:
        assert backend.describe()["cuda_graphs"] is False  # CPU behaviour unchanged: no graphs there
        with pytest.raises(BackendError, match="run_device\\(\\) needs device 'cuda'"):
            backend.run_device(torch.zeros(1, 3, 16, 16), torch.zeros(1, 21, 4, 4))
        with pytest.raises(BackendError, match="input_buffers\\(\\) needs device 'cuda'"):
            backend.input_buffers(1, 16, 16)


@pytest.mark.gpu
@pytest.mark.parametrize("cuda_graphs", [True, False])
def test_cuda_fp32_device_tensors_match_the_cpu_reference(state, cuda_graphs: bool) -> None:
    blur, spikes = _inputs(2, seed=5)
    with create_backend("torch", state, threads=1, device="cuda", cuda_graphs=cuda_graphs) as backend:
        first = backend.run_device(torch.from_numpy(blur).cuda(), torch.from_numpy(spikes).cuda())
        # A second run with other inputs must not change the first result (graph output is copied out).
        other = backend.run_device(
            torch.zeros(2, 3, 64, 96, device="cuda"), torch.ones(2, 21, 16, 24, device="cuda")
        )
        assert other.shape == first.shape
        assert first.is_cuda and first.dtype == torch.float32 and first.is_contiguous()
        np.testing.assert_allclose(first.cpu().numpy(), _reference(state, blur, spikes), atol=1e-4, rtol=0)
        assert (backend._static[(2, 64, 96)].graph is not None) is cuda_graphs


@pytest.mark.gpu
def test_cuda_fp16_input_buffers_take_the_inputs_in_place(state) -> None:
    blur, spikes = _inputs(1, seed=6)
    with create_backend("torch", state, threads=1, device="cuda", precision="fp16") as backend:
        b, s = backend.input_buffers(1, 64, 96)
        assert b.dtype == s.dtype == torch.float16 and b.is_contiguous() and s.is_contiguous()
        b.copy_(torch.from_numpy(blur))
        s.copy_(torch.from_numpy(spikes))
        out = torch.full((1, 3, 64, 96), float("nan"), device="cuda")  # poisoned
        assert backend.run_device(b, s, out=out) is out
        assert backend.input_buffers(1, 64, 96)[0].data_ptr() == b.data_ptr()
    assert np.abs(out.cpu().numpy() - _reference(state, blur, spikes)).max() < 1e-2


@pytest.mark.gpu
def test_cuda_device_input_errors(state) -> None:
    with create_backend("torch", state, threads=1, device="cuda") as backend:
        with pytest.raises(BackendError, match="blur: tensor on cpu"):
            backend.run_device(torch.zeros(1, 3, 16, 16), torch.zeros(1, 21, 4, 4, device="cuda"))
        with pytest.raises(BackendError, match="spikes: shape"):
            backend.run_device(
                torch.zeros(1, 3, 16, 16, device="cuda"), torch.zeros(1, 21, 8, 8, device="cuda")
            )
        with pytest.raises(BackendError, match="out: "):
            z = torch.zeros(1, 3, 16, 16, device="cuda")
            backend.run_device(z, torch.zeros(1, 21, 4, 4, device="cuda"), out=z.half())
