"""onnxruntime runs the project's own ONNX export and agrees with torch to 1e-4."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from spikereveal.engine.backends import BackendError, create_backend
from spikereveal.engine.ldn import LDN


@pytest.fixture(scope="module")
def random_state() -> dict[str, torch.Tensor]:
    torch.manual_seed(7)
    return LDN().state_dict()


@pytest.fixture(params=["random", "paper"])
def state(request, random_state) -> dict[str, torch.Tensor]:
    """Random-init weights always; the paper's where ../shared has them."""
    if request.param == "random":
        return random_state
    from spikereveal.engine.weights import load_ldn_state

    return load_ldn_state(request.getfixturevalue("paper_weights"))


def _inputs(n: int = 1, h: int = 64, w: int = 96, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    blur = rng.random((n, 3, h, w), dtype=np.float32)
    spikes = (rng.random((n, 21, h // 4, w // 4)) < 0.5).astype(np.float32)
    return blur, spikes


def test_agrees_with_torch_to_1e4(state, tmp_path) -> None:
    blur, spikes = _inputs(2, seed=1)
    with create_backend("torch", state, threads=1) as reference:
        expected = reference.run(blur, spikes)
    with create_backend("onnxruntime", state, threads=1, cache_dir=tmp_path) as backend:
        out = backend.run(blur, spikes)
    assert out.shape == expected.shape == (2, 3, 64, 96)
    assert out.dtype == np.float32
    assert np.abs(out - expected).max() <= 1e-4


def test_one_export_serves_every_size(random_state, tmp_path) -> None:
    with create_backend("onnxruntime", random_state, threads=1, cache_dir=tmp_path) as backend:
        for n, h, w in [(1, 32, 48), (2, 64, 40)]:
            assert backend.run(*_inputs(n, h, w)).shape == (n, 3, h, w)
    assert len(list(tmp_path.glob("*.onnx"))) == 1


def test_export_is_cached_by_weights_hash(random_state, tmp_path) -> None:
    first = create_backend("onnxruntime", random_state, threads=1, cache_dir=tmp_path)
    path = first.model_path
    stamp = path.stat().st_mtime_ns
    first.close()
    again = create_backend("onnxruntime", random_state, threads=1, cache_dir=tmp_path)
    assert again.model_path == path
    assert path.stat().st_mtime_ns == stamp  # reused, not re-exported
    again.close()
    other = dict(random_state, **{"pred.bias": random_state["pred.bias"] + 1.0})
    with create_backend("onnxruntime", other, threads=1, cache_dir=tmp_path) as third:
        assert third.model_path != path


def test_option_errors(random_state, tmp_path) -> None:
    with pytest.raises(BackendError, match="device 'tpu'"):
        create_backend("onnxruntime", random_state, device="tpu", cache_dir=tmp_path)
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        # Without a GPU the device check refuses first; with one, onnxruntime's own provider check.
        with pytest.raises(BackendError, match="CUDAExecutionProvider is not available|no CUDA device"):
            create_backend("onnxruntime", random_state, device="cuda", cache_dir=tmp_path)


def test_alias_and_run_after_close(random_state, tmp_path) -> None:
    backend = create_backend("ort", random_state, threads=1, cache_dir=tmp_path)
    assert backend.name == "onnxruntime"
    backend.close()
    with pytest.raises(BackendError, match="after close"):
        backend.run(*_inputs())
