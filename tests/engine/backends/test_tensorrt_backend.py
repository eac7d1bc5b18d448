"""The TensorRT backend without TensorRT: only API common to 10 and 11, its engine files, its errors.

TensorRT cannot be installed here, so the backend's source is checked statically: every attribute
read on the ``tensorrt`` module, or on an object a TensorRT call returned (builder, network, config,
parser, profile, runtime, engine, context...), must be a name both TensorRT 10 and 11 bind
(../shared/reference/tensorrt/names_both.txt). Planted sources show the checker catches what the
10-only or pre-10 API would use. The build and run paths are exercised by ``selftest --gpu`` on a
machine that has TensorRT, and by the ``gpu`` test below.
"""

from __future__ import annotations

import ast
import textwrap
from pathlib import Path

import numpy as np
import pytest
import torch

import spikereveal.engine.backends.tensorrt_backend as trt_backend
from spikereveal.engine.backends import BackendError, create_backend
from spikereveal.engine.backends.tensorrt_backend import (
    MAGIC,
    EngineCacheError,
    EngineKey,
    read_engine_file,
    tensorrt_available,
    write_engine_file,
)
from spikereveal.engine.ldn import LDN
from tests.conftest import SHARED

NAMES_BOTH = SHARED / "reference" / "tensorrt" / "names_both.txt"


def _key(expr: ast.AST) -> str | None:
    """``x`` -> "x", ``self.x`` -> "self.x": the names an assignment can bind a TensorRT object to."""
    if isinstance(expr, ast.Name):
        return expr.id
    if isinstance(expr, ast.Attribute) and isinstance(expr.value, ast.Name) and expr.value.id == "self":
        return f"self.{expr.attr}"
    return None


def _rooted(expr: ast.AST, tracked: set[str]) -> bool:
    """Whether ``expr`` is a tracked name, or an attribute / call / subscript chain on one."""
    while True:
        key = _key(expr)
        if key is not None and key in tracked:
            return True
        if isinstance(expr, ast.Attribute):
            expr = expr.value
        elif isinstance(expr, ast.Call):
            expr = expr.func
        elif isinstance(expr, ast.Subscript):
            expr = expr.value
        else:
            return False


def _loads_module(value: ast.AST) -> bool:
    if not isinstance(value, ast.Call):
        return False
    func = value.func
    name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""
    if name == "import_tensorrt":
        return True
    return name == "import_module" and any(
        isinstance(a, ast.Constant) and a.value == "tensorrt" for a in value.args
    )


def _bindings(node: ast.AST) -> list[tuple[ast.AST, ast.AST]]:
    """(target, value) pairs an assignment-like statement makes, tuples paired element by element."""
    pairs: list[tuple[ast.AST, ast.AST]] = []
    if isinstance(node, ast.Assign):
        for target in node.targets:
            if isinstance(target, ast.Tuple) and isinstance(node.value, ast.Tuple):
                pairs += list(zip(target.elts, node.value.elts, strict=False))
            else:
                pairs.append((target, node.value))
    elif isinstance(node, (ast.AnnAssign, ast.NamedExpr)) and node.value is not None:
        pairs.append((node.target, node.value))
    elif isinstance(node, ast.withitem) and node.optional_vars is not None:
        pairs.append((node.optional_vars, node.context_expr))
    elif isinstance(node, ast.For):
        pairs.append((node.target, node.iter))
    return pairs


def _track(scope: ast.AST, seeds: set[str]) -> set[str]:
    """The names in ``scope`` bound to TensorRT objects: ``seeds`` and what is assigned from them."""
    names = set(seeds)
    grew = True
    while grew:
        grew = False
        for node in ast.walk(scope):
            for target, value in _bindings(node):
                key = _key(target)
                if key is not None and key not in names and (_loads_module(value) or _rooted(value, names)):
                    names.add(key)
                    grew = True
    return names


def tensorrt_attributes(source: str) -> list[tuple[int, str]]:
    """Every (line, attribute) read on the tensorrt module or on objects bound from TensorRT calls.

    Tracking: ``import tensorrt [as trt]``, ``trt = import_tensorrt()`` or
    ``importlib.import_module("tensorrt")`` bind the module; any name or ``self.x`` assigned from an
    expression rooted in a tracked name is tracked too (to a fixed point). Plain names are tracked
    per function, ``self.x`` across the module. Dunder attributes (``trt.__version__``: set by the
    package's Python ``__init__``, not a binding) are left out.
    """
    tree = ast.parse(source)
    module_names: set[str] = set()
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            module_names |= {a.asname or a.name for a in node.names if a.name == "tensorrt"}
        elif isinstance(node, ast.ImportFrom) and node.module == "tensorrt":
            found += [(node.lineno, a.name) for a in node.names]
            module_names |= {a.asname or a.name for a in node.names}
    functions = [n for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]
    self_tracked: set[str] = set()
    while True:  # a self.x bound in one method is used in another: repeat until nothing new
        scopes = {f: _track(f, module_names | self_tracked) for f in functions}
        bound = {k for names in scopes.values() for k in names if k.startswith("self.")}
        if bound <= self_tracked:
            break
        self_tracked |= bound
    module_level = [
        n for n in tree.body if not isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))
    ]
    top = ast.Module(body=module_level, type_ignores=[])
    scopes[top] = _track(top, module_names)
    for scope, names in scopes.items():
        for node in ast.walk(scope):
            dunder = (
                isinstance(node, ast.Attribute) and node.attr.startswith("__") and node.attr.endswith("__")
            )
            if isinstance(node, ast.Attribute) and not dunder and _rooted(node.value, names):
                found.append((node.lineno, node.attr))
    return sorted(set(found))


def unknown_names(source: str, allowed: set[str]) -> list[str]:
    """``line N: attr`` for each TensorRT attribute of ``source`` that is not in ``allowed``."""
    return [f"line {line}: {attr}" for line, attr in tensorrt_attributes(source) if attr not in allowed]


@pytest.fixture(scope="module")
def names_both() -> set[str]:
    if not NAMES_BOTH.is_file():
        pytest.skip(f"{NAMES_BOTH} is not present")
    return set(NAMES_BOTH.read_text().split())


def test_the_backend_uses_only_api_common_to_tensorrt_10_and_11(names_both: set[str]) -> None:
    source = Path(trt_backend.__file__).read_text()
    used = {attr for _, attr in tensorrt_attributes(source)}
    # Not vacuous: the checker sees the calls the build and the runtime are made of.
    for name in [
        "Builder",
        "create_network",
        "STRONGLY_TYPED",
        "parse_from_file",
        "set_memory_pool_limit",
        "create_timing_cache",
        "add_optimization_profile",
        "build_serialized_network",
        "deserialize_cuda_engine",
        "create_execution_context",
        "num_io_tensors",
        "get_tensor_dtype",
        "set_input_shape",
        "set_tensor_address",
        "execute_async_v3",
    ]:
        assert name in used, name
    assert unknown_names(source, names_both) == []


PLANTED = textwrap.dedent(
    """
    import tensorrt as trt

    def build(onnx):
        logger = trt.Logger(trt.Logger.WARNING)
        builder = trt.Builder(logger)
        network = builder.create_network(1 << int(trt.NetworkDefinitionCreationFlag.EXPLICIT_BATCH))
        config = builder.create_builder_config()
        config.set_flag(trt.BuilderFlag.FP16)
        fast = builder.platform_has_fast_fp16
        return builder.build_serialized_network(network, config)

    class Runner:
        def __init__(self, payload):
            from spikereveal.engine.backends.tensorrt_backend import import_tensorrt
            rt = import_tensorrt()
            self.engine = rt.Runtime(rt.Logger()).deserialize_cuda_engine(payload)
            self.context = self.engine.create_execution_context()

        def run(self, bindings, stream):
            shape = self.engine.get_binding_shape(0)
            size = self.engine.device_memory_size
            ok = self.context.execute_async_v2(bindings, stream)
            return self.context.execute_async_v3(stream)
    """
)


def test_the_checker_catches_api_that_is_not_in_both(names_both: set[str]) -> None:
    bad = {name.split(": ")[1] for name in unknown_names(PLANTED, names_both)}
    assert bad == {
        "EXPLICIT_BATCH",
        "FP16",
        "platform_has_fast_fp16",
        "get_binding_shape",
        "device_memory_size",
        "execute_async_v2",
    }
    # ...and the common calls around them are seen and allowed.
    seen = {attr for _, attr in tensorrt_attributes(PLANTED)}
    assert {"Builder", "create_builder_config", "set_flag", "execute_async_v3", "Runtime"} <= seen


def test_the_checker_does_not_track_unrelated_objects() -> None:
    source = "import torch\nimport tensorrt as trt\nstream = torch.cuda.Stream()\nx = stream.cuda_stream\n"
    assert tensorrt_attributes(source) == []


# ---- engine files: a key in a one-line header, checked before anything deserializes ----


def _key_fields(**changes: object) -> EngineKey:
    fields = {
        "weights_sha256": "ab" * 32,
        "batch": 5,
        "height": 720,
        "width": 1280,
        "precision": "fp16",
        "tensorrt_version": "10.16.1",
        "gpu_name": "NVIDIA H200",
    }
    return EngineKey(**{**fields, **changes})


def test_an_engine_file_round_trips_its_key_and_payload(tmp_path: Path) -> None:
    key = _key_fields()
    payload = bytes(range(256)) * 3 + b"\n\n"  # newlines in the payload must survive
    path = write_engine_file(tmp_path / key.file_name(), key, payload)
    assert path.name == "ldn-abababababababab-k5-720x1280-fp16-trt10.16.1-nvidia-h200-v1.engine"
    assert read_engine_file(path, key) == (key, payload)
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temporary file left


@pytest.mark.parametrize(
    ("change", "needle"),
    [
        ({"tensorrt_version": "11.1.0"}, "built for tensorrt version 11.1.0, not 10.16.1"),
        ({"gpu_name": "NVIDIA A100"}, "built for gpu name NVIDIA A100, not NVIDIA H200"),
        ({"batch": 7}, "built for batch 7, not 5"),
        ({"weights_sha256": "cd" * 32}, "built for weights sha256 cdcd"),
    ],
)
def test_a_foreign_or_stale_engine_is_refused_in_one_line(tmp_path: Path, change, needle) -> None:
    path = write_engine_file(tmp_path / "x.engine", _key_fields(**change), b"payload")
    with pytest.raises(EngineCacheError) as info:
        read_engine_file(path, _key_fields())
    message = str(info.value)
    assert needle in message and str(path) in message and "\n" not in message


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"\x00\x01plain trtexec engine", "not an engine file written by spikereveal"),
        (MAGIC + b"{not json\npayload", "unreadable engine header"),
        (MAGIC + b'{"batch": 1}\npayload', "unreadable engine header"),
        (MAGIC + b"{}", "not an engine file"),  # header cut before its newline
    ],
)
def test_a_file_that_is_not_our_engine_is_one_line(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "bad.engine"
    path.write_bytes(content)
    with pytest.raises(EngineCacheError, match=needle):
        read_engine_file(path)


def test_a_truncated_engine_is_refused(tmp_path: Path) -> None:
    key = _key_fields()
    path = write_engine_file(tmp_path / "t.engine", key, b"x")
    path.write_bytes(path.read_bytes()[:-1])
    with pytest.raises(EngineCacheError, match="truncated"):
        read_engine_file(path, key)


# ---- without TensorRT: one clear line ----


@pytest.mark.skipif(tensorrt_available(), reason="TensorRT is installed here")
def test_asking_for_tensorrt_without_it_is_one_line() -> None:
    with pytest.raises(BackendError) as info:
        create_backend("tensorrt", LDN().state_dict())
    message = str(info.value)
    assert "TensorRT is not installed here" in message and "use the torch or auto backend" in message
    assert "\n" not in message


@pytest.mark.gpu
@pytest.mark.skipif(not tensorrt_available(), reason="TensorRT is not installed")
def test_tensorrt_matches_torch_fp32(tmp_path: Path) -> None:
    torch.manual_seed(5)
    state = LDN().state_dict()
    rng = np.random.default_rng(0)
    blur = rng.random((2, 3, 64, 96), dtype=np.float32)
    spikes = (rng.random((2, 21, 16, 24)) < 0.4).astype(np.float32)
    with create_backend("torch", state) as ref, create_backend("tensorrt", state, cache_dir=tmp_path) as trt:
        expected = ref.run(blur, spikes)
        assert np.abs(trt.run(blur, spikes) - expected).max() <= 1e-2
        assert np.abs(trt.run(blur, spikes) - expected).max() <= 1e-2  # the replayed graph too
    with create_backend("tensorrt", state, cache_dir=tmp_path) as again:  # from the engine cache
        assert np.abs(again.run(blur, spikes) - expected).max() <= 1e-2
