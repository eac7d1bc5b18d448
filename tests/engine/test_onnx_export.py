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


# ---- the export contract: fixed batch K, fp16 for TensorRT's strongly typed networks ----


def _torch_fp32(state, blur: np.ndarray, spikes: np.ndarray) -> np.ndarray:
    model = LDN().eval()
    model.load_state_dict(state)
    with torch.inference_mode():
        return model(torch.from_numpy(blur), torch.from_numpy(spikes)).numpy()


def _contract_inputs(k: int, h: int, w: int, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    blur = rng.random((k, 3, h, w), dtype=np.float32)  # 0..1 images
    spikes = (rng.random((k, 21, h // 4, w // 4)) < 0.4).astype(np.float32)
    return blur, spikes


def test_a_fixed_batch_export_has_that_batch_and_matches_torch(state, tmp_path: Path) -> None:
    path = export_ldn_onnx(state, tmp_path / "k5.onnx", height=32, width=48, batch=5, dynamic=False)
    model = onnx.load(str(path))
    assert {i.name: _dims(i) for i in model.graph.input} == {"blur": [5, 3, 32, 48], "spikes": [5, 21, 8, 12]}
    assert _dims(model.graph.output[0]) == [5, 3, 32, 48]
    blur, spikes = _contract_inputs(5, 32, 48)
    (out,) = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(
        ["sharp"], {"blur": blur, "spikes": spikes}
    )
    assert np.abs(out - _torch_fp32(state, blur, spikes)).max() <= 1e-4
    # A dynamic export with a fixed batch keeps H and W dynamic.
    dyn = onnx.load(str(export_ldn_onnx(state, tmp_path / "k3.onnx", batch=3)))
    assert _dims(dyn.graph.input[0]) == [3, 3, "height", "width"]


def test_an_fp16_export_is_half_throughout_and_within_1e_2_of_torch_fp32(state, tmp_path: Path) -> None:
    path = export_ldn_onnx(
        state, tmp_path / "h.onnx", height=32, width=48, batch=2, dynamic=False, precision="fp16"
    )
    model = onnx.load(str(path))
    half = onnx.TensorProto.FLOAT16
    assert [i.type.tensor_type.elem_type for i in model.graph.input] == [half, half]
    assert model.graph.output[0].type.tensor_type.elem_type == half
    # Every weight is half: a strongly typed TensorRT network would otherwise run fp32 layers.
    assert model.graph.initializer and {t.data_type for t in model.graph.initializer} == {half}
    assert not [n for n in model.graph.node if n.op_type == "Cast"]
    assert {p.key: p.value for p in model.metadata_props}["precision"] == "fp16"
    blur, spikes = _contract_inputs(2, 32, 48, seed=2)
    # onnxruntime's CPU provider runs this fp16 graph (where it lacks an fp16 kernel it computes
    # in fp32 between inserted casts), so this checks the model's fp16 weights, inputs and output.
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(["sharp"], {"blur": blur.astype(np.float16), "spikes": spikes.astype(np.float16)})
    assert out.dtype == np.float16
    assert np.abs(out.astype(np.float32) - _torch_fp32(state, blur, spikes)).max() <= 1e-2


def test_export_refuses_an_unknown_precision_or_batch(state, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="precision 'int8' is not one of fp32, fp16"):
        export_ldn_onnx(state, tmp_path / "x.onnx", precision="int8")
    with pytest.raises(ValueError, match="batch 0 is not >= 1"):
        export_ldn_onnx(state, tmp_path / "x.onnx", batch=0)
    assert not list(tmp_path.iterdir())


def test_the_paper_weights_in_fp16_stay_within_1e_2(paper_weights: Path, tmp_path: Path) -> None:
    """Trained weights (larger activations than a random init) in fp16: measured 6e-4 here."""
    from spikereveal.engine.weights import load_ldn_state

    trained = load_ldn_state(paper_weights)
    path = export_ldn_onnx(
        trained, tmp_path / "p.onnx", height=64, width=96, batch=2, dynamic=False, precision="fp16"
    )
    blur, spikes = _contract_inputs(2, 64, 96, seed=3)
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (out,) = session.run(["sharp"], {"blur": blur.astype(np.float16), "spikes": spikes.astype(np.float16)})
    assert np.abs(out.astype(np.float32) - _torch_fp32(trained, blur, spikes)).max() <= 1e-2
