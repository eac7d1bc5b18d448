"""``spikereveal export onnx|tensorrt`` end to end, in a child process like a user would run it."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from spikereveal.engine.backends.tensorrt_backend import tensorrt_available
from spikereveal.engine.ldn import LDN
from spikereveal.engine.weights import load_ldn_state, state_digest


def _dims(value_info) -> list[object]:
    return [d.dim_param or d.dim_value for d in value_info.type.tensor_type.shape.dim]


@pytest.fixture
def random_pth(tmp_path: Path) -> Path:
    torch.manual_seed(4)
    path = tmp_path / "random.pth"
    torch.save({"state_dict": LDN().state_dict()}, path)
    return path


def test_export_onnx_fp16_fixed_shape_is_the_contract(cli, tmp_path: Path, random_pth: Path) -> None:
    out = tmp_path / "ldn16.onnx"
    args = ("--weights", random_pth, "--fp16", "--size", "32x48", "--batch", 3, "--out", out)
    result = cli("export", "onnx", *args)
    assert result.returncode == 0, result.stderr
    assert f"wrote {out}: fp16" in result.stdout
    model = onnx.load(str(out))
    half = onnx.TensorProto.FLOAT16
    inputs = {i.name: (_dims(i), i.type.tensor_type.elem_type) for i in model.graph.input}
    assert inputs == {"blur": ([3, 3, 32, 48], half), "spikes": ([3, 21, 8, 12], half)}
    assert [(o.name, _dims(o)) for o in model.graph.output] == [("sharp", [3, 3, 32, 48])]
    state = load_ldn_state(random_pth)
    assert {p.key: p.value for p in model.metadata_props}["weights_sha256"] == state_digest(state)
    rng = np.random.default_rng(3)
    blur = rng.random((3, 3, 32, 48), dtype=np.float32)
    spikes = (rng.random((3, 21, 8, 12)) < 0.4).astype(np.float32)
    (sharp,) = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(
        ["sharp"], {"blur": blur.astype(np.float16), "spikes": spikes.astype(np.float16)}
    )
    ldn = LDN().eval()
    ldn.load_state_dict(state)
    with torch.inference_mode():
        expected = ldn(torch.from_numpy(blur), torch.from_numpy(spikes)).numpy()
    assert np.abs(sharp.astype(np.float32) - expected).max() <= 1e-2


def test_export_onnx_defaults_to_the_default_weights_and_dynamic_fp32(
    cli, tmp_path: Path, default_weights: Path
) -> None:
    out = tmp_path / "ldn.onnx"
    result = cli("export", "onnx", "--out", out)
    assert result.returncode == 0, result.stderr
    model = onnx.load(str(out))
    assert _dims(model.graph.input[0]) == ["batch", 3, "height", "width"]
    assert model.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    meta = {p.key: p.value for p in model.metadata_props}
    assert meta["weights_sha256"] == state_digest(load_ldn_state(default_weights))
    assert meta["precision"] == "fp32"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("--size", "30x48"), "30x48 is not a multiple of 4"),
        (("--weights", "nowhere.safetensors"), "nowhere.safetensors"),
        ((), "make default-weights"),  # the default weights are not built in this test tree
    ],
)
def test_export_onnx_bad_input_is_one_line(cli, tmp_path: Path, args, needle: str) -> None:
    result = cli("export", "onnx", *args, "--out", tmp_path / "x.onnx")
    assert result.returncode == 2
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.lower().startswith("error")]
    assert len(errors) == 1 and needle in errors[0]  # click puts its usage lines above an option's error
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.skipif(tensorrt_available(), reason="TensorRT is installed here")
def test_export_tensorrt_without_tensorrt_is_one_line(cli, tmp_path: Path, random_pth: Path) -> None:
    result = cli(
        "export", "tensorrt", "--weights", random_pth, "--size", "32x48", "--out", tmp_path / "e.engine"
    )
    assert result.returncode == 2
    assert "TensorRT is not installed here" in result.stderr and "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) == 1
    assert not (tmp_path / "e.engine").exists()
