"""ONNX export of the LDN: valid model, named dynamic axes, same numbers as torch, a working cache."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from spikereveal.engine.ldn import LDN
from spikereveal.engine.onnx_export import cached_ldn_onnx, default_cache_dir, export_ldn_onnx
from spikereveal.engine.weights import WeightsError, state_digest


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    torch.manual_seed(11)
    return LDN().state_dict()


def _dims(value_info) -> list[object]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


def test_dynamic_export_has_named_axes_and_metadata(state, tmp_path: Path) -> None:
    path = export_ldn_onnx(state, tmp_path / "ldn.onnx")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    inputs = {i.name: _dims(i) for i in model.graph.input}
    outputs = {o.name: _dims(o) for o in model.graph.output}
    assert inputs == {
        "blur": ["batch", 3, "height", "width"],
        "spikes": ["batch", 21, "spike_height", "spike_width"],
    }
    assert outputs == {"sharp": ["batch", 3, "height", "width"]}
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["weights_sha256"] == state_digest(state)
    assert meta["input_order"] == "BGR"


def test_static_export_runs_at_its_size_and_matches_torch(state, tmp_path: Path) -> None:
    path = export_ldn_onnx(state, tmp_path / "static.onnx", height=32, width=48, dynamic=False)
    rng = np.random.default_rng(0)
    blur = rng.random((1, 3, 32, 48), dtype=np.float32)
    spikes = (rng.random((1, 21, 8, 12)) < 0.5).astype(np.float32)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(None, {"blur": blur, "spikes": spikes})
    model = LDN().eval()
    model.load_state_dict(state)
    with torch.inference_mode():
        expected = model(torch.from_numpy(blur), torch.from_numpy(spikes)).numpy()
    assert np.abs(out - expected).max() <= 1e-4
    assert _dims(onnx.load(str(path)).graph.input[0]) == [1, 3, 32, 48]


def test_export_argument_errors(state, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="static export .* needs height and width"):
        export_ldn_onnx(state, tmp_path / "x.onnx", dynamic=False)
    with pytest.raises(ValueError, match="both height and width"):
        export_ldn_onnx(state, tmp_path / "x.onnx", height=32)
    with pytest.raises(ValueError, match="multiple of 4"):
        export_ldn_onnx(state, tmp_path / "x.onnx", height=30, width=48)
    with pytest.raises(WeightsError, match="missing"):
        export_ldn_onnx({"a": torch.zeros(1)}, tmp_path / "x.onnx")
    assert not list(tmp_path.iterdir())  # nothing half-written left behind


def test_cache_reuses_the_file_for_the_same_weights(state, tmp_path: Path) -> None:
    first = cached_ldn_onnx(state, cache_dir=tmp_path)
    assert first.name.startswith(f"ldn-{state_digest(state)[:16]}")
    assert cached_ldn_onnx(dict(state), cache_dir=tmp_path) == first
    assert len(list(tmp_path.iterdir())) == 1


def test_default_cache_dir_follows_the_environment(monkeypatch, tmp_path: Path) -> None:
    monkeypatch.setenv("SPIKEREVEAL_CACHE_DIR", str(tmp_path))
    assert default_cache_dir() == tmp_path / "onnx"
    monkeypatch.delenv("SPIKEREVEAL_CACHE_DIR")
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert default_cache_dir() == tmp_path / "xdg" / "spikereveal" / "onnx"
