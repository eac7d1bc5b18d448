"""Weights files: the paper's .pth and the project's .safetensors load, round-trip and fail clearly."""

from __future__ import annotations

import os
import pickle
from pathlib import Path

import pytest
import torch

from spikereveal.engine.bsn import BSN
from spikereveal.engine.ldn import LDN
from spikereveal.engine.sr import EDSR
from spikereveal.engine.weights import (
    ARCHITECTURE,
    ARCHITECTURES,
    DEFAULT_LDN_WEIGHTS,
    FORMAT_NAME,
    WeightsError,
    load_ldn_metadata,
    load_ldn_state,
    load_net,
    read_metadata,
    resolve_weights,
    save_ldn_state,
    save_net,
    state_digest,
)


@pytest.fixture
def state() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return LDN().state_dict()


def _assert_same(a: dict[str, torch.Tensor], b: dict[str, torch.Tensor]) -> None:
    assert list(a) == list(b)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_safetensors_round_trip_keeps_tensors_and_metadata(tmp_path: Path, state) -> None:
    path = save_ldn_state(tmp_path / "w.safetensors", state, {"source": "unit test", "spike_threshold": 2})
    _assert_same(load_ldn_state(path), state)
    meta = load_ldn_metadata(path)
    assert meta["format"] == FORMAT_NAME
    assert meta["format_version"] == "1"
    assert meta["architecture"] == ARCHITECTURE
    assert meta["source"] == "unit test"
    assert meta["spike_threshold"] == "2"
    assert meta["parameters"] == "234158"
    assert meta["weights_sha256"] == state_digest(state)
    assert not list(tmp_path.glob(".*tmp*"))  # the temporary file was renamed away


def test_pth_plain_wrapped_and_dataparallel_all_load(tmp_path: Path, state) -> None:
    torch.save(state, tmp_path / "plain.pth")
    torch.save({"state_dict": state, "epoch": 3}, tmp_path / "wrapped.pth")
    torch.save({"module." + k: v for k, v in state.items()}, tmp_path / "dp.pth")
    for name in ("plain.pth", "wrapped.pth", "dp.pth"):
        _assert_same(load_ldn_state(tmp_path / name), state)
    assert load_ldn_metadata(tmp_path / "plain.pth") == {"format": "pytorch"}


def test_format_is_recognised_by_content_not_extension(tmp_path: Path, state) -> None:
    save_ldn_state(tmp_path / "w.safetensors", state)
    (tmp_path / "w.safetensors").rename(tmp_path / "w.bin")
    _assert_same(load_ldn_state(tmp_path / "w.bin"), state)


def test_half_precision_is_widened_to_float32(tmp_path: Path, state) -> None:
    torch.save({k: v.half() for k, v in state.items()}, tmp_path / "half.pth")
    loaded = load_ldn_state(tmp_path / "half.pth")
    assert all(t.dtype == torch.float32 for t in loaded.values())


def test_paper_checkpoint_loads_and_survives_conversion(tmp_path: Path, paper_weights) -> None:
    paper = load_ldn_state(paper_weights)
    reference = torch.load(paper_weights, map_location="cpu", weights_only=True)
    _assert_same(paper, dict(reference))
    out = save_ldn_state(tmp_path / "paper.safetensors", paper, {"source": paper_weights.name})
    _assert_same(load_ldn_state(out), paper)


def test_digest_depends_on_values_not_on_order(state) -> None:
    shuffled = dict(reversed(list(state.items())))
    assert state_digest(shuffled) == state_digest(state)
    changed = dict(state)
    changed["pred.bias"] = state["pred.bias"] + 1e-3
    assert state_digest(changed) != state_digest(state)


# ---- errors: each names the file and what was expected ----


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"nope\.pth: weights file not found"):
        load_ldn_state(tmp_path / "nope.pth")


def test_empty_and_foreign_files(tmp_path: Path) -> None:
    (tmp_path / "empty.pth").write_bytes(b"")
    (tmp_path / "text.pth").write_text("hello, not weights")
    with pytest.raises(WeightsError, match="empty"):
        load_ldn_state(tmp_path / "empty.pth")
    with pytest.raises(WeightsError, match="not a PyTorch checkpoint or safetensors"):
        load_ldn_state(tmp_path / "text.pth")


def test_wrong_keys_are_listed(tmp_path: Path, state) -> None:
    bad = dict(state)
    del bad["pred.bias"]
    bad["extra.weight"] = torch.zeros(1)
    torch.save(bad, tmp_path / "bad.pth")
    with pytest.raises(WeightsError) as info:
        load_ldn_state(tmp_path / "bad.pth")
    message = str(info.value)
    assert "bad.pth" in message
    assert "missing 1 keys: pred.bias" in message
    assert "unexpected 1 keys: extra.weight" in message


def test_wrong_shape_is_named(tmp_path: Path, state) -> None:
    bad = dict(state)
    bad["pred.weight"] = torch.zeros(3, 16, 1, 1)
    torch.save(bad, tmp_path / "shape.pth")
    with pytest.raises(WeightsError, match=r"pred\.weight \(3, 16, 1, 1\) \(expected \(3, 19, 1, 1\)\)"):
        load_ldn_state(tmp_path / "shape.pth")


def test_integer_and_nan_tensors_are_refused(tmp_path: Path, state) -> None:
    ints = dict(state, **{"pred.bias": torch.zeros(3, dtype=torch.int64)})
    nans = dict(state, **{"pred.bias": torch.tensor([0.0, float("nan"), 0.0])})
    torch.save(ints, tmp_path / "ints.pth")
    torch.save(nans, tmp_path / "nans.pth")
    with pytest.raises(WeightsError, match="pred.bias has dtype torch.int64"):
        load_ldn_state(tmp_path / "ints.pth")
    with pytest.raises(WeightsError, match="NaN"):
        load_ldn_state(tmp_path / "nans.pth")


@pytest.mark.parametrize("kind", ["pth", "safetensors"])
def test_truncated_files(tmp_path: Path, state, kind: str) -> None:
    full = tmp_path / f"full.{kind}"
    if kind == "pth":
        torch.save(state, full)
    else:
        save_ldn_state(full, state)
    data = full.read_bytes()
    cut = tmp_path / f"cut.{kind}"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(WeightsError, match=r"cut\.\w+: unreadable .*(truncated|corrupt)"):
        load_ldn_state(cut)


class _RunsCode:
    """Unpickling this calls os.mkdir(marker): a stand-in for any code a malicious file would run."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.mkdir, (str(self.marker),))


@pytest.mark.parametrize("writer", ["torch.save", "pickle.dump"])
def test_pickle_carrying_code_is_refused_and_not_run(tmp_path: Path, writer: str) -> None:
    marker = tmp_path / "code-ran"
    path = tmp_path / "evil.pth"
    payload = {"pred.weight": _RunsCode(marker)}
    if writer == "torch.save":
        torch.save(payload, path)
    else:
        with path.open("wb") as f:
            pickle.dump(payload, f, protocol=2)
    with pytest.raises(WeightsError, match="refused to load"):
        load_ldn_state(path)
    assert not marker.exists()


def test_safetensors_of_another_architecture(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    save_file({"w": torch.zeros(2)}, str(tmp_path / "other.safetensors"), metadata={"architecture": "bsn"})
    with pytest.raises(WeightsError, match="architecture 'bsn', expected 'ldn'"):
        load_ldn_state(tmp_path / "other.safetensors")


def test_save_refuses_a_non_ldn_state_and_a_missing_folder(tmp_path: Path, state) -> None:
    with pytest.raises(WeightsError, match="missing"):
        save_ldn_state(tmp_path / "x.safetensors", {"a": torch.zeros(1)})
    with pytest.raises(WeightsError, match="does not exist"):
        save_ldn_state(tmp_path / "no" / "x.safetensors", state)


# ---- every architecture: save_net / load_net / resolve_weights ----

TRAINING_METADATA = {
    "data": "runs/sim-vth2",
    "steps": 1200,
    "seed": 7,
    "spike_density": 0.5,
    "vth": 2,
    "command": "spikereveal train bsn --data runs/sim-vth2 --out bsn.safetensors",
    "any key at all": "kept",
}


def _net(architecture: str, seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return ARCHITECTURES[architecture]()


def _inputs(architecture: str) -> tuple[torch.Tensor, ...]:
    torch.manual_seed(1)
    if architecture == "ldn":
        return torch.rand(1, 3, 32, 32), torch.rand(1, 21, 8, 8)
    return (torch.rand(1, 1, 8, 8),)


def test_architectures_name_the_three_nets() -> None:
    assert ARCHITECTURES == {"ldn": LDN, "bsn": BSN, "sr": EDSR}


@pytest.mark.parametrize("architecture", ["ldn", "bsn", "sr"])
def test_save_net_round_trip_keeps_weights_metadata_and_function(tmp_path: Path, architecture: str) -> None:
    net = _net(architecture)
    path = save_net(tmp_path / f"{architecture}.safetensors", net, architecture, TRAINING_METADATA)
    loaded, meta = load_net(path, architecture)
    assert type(loaded) is ARCHITECTURES[architecture]
    assert not loaded.training
    _assert_same(loaded.state_dict(), net.state_dict())
    with torch.no_grad():
        assert torch.equal(loaded(*_inputs(architecture)), net.eval()(*_inputs(architecture)))
    for key, value in TRAINING_METADATA.items():
        assert meta[key] == str(value)
    assert meta["architecture"] == architecture
    assert meta["format"] == f"spikereveal-{architecture}"
    assert meta["parameters"] == str(sum(p.numel() for p in net.parameters()))
    assert meta["weights_sha256"] == state_digest(net.state_dict())
    assert read_metadata(path) == meta
    assert load_net(path)[1]["architecture"] == architecture  # None: whatever the file holds
    assert not list(tmp_path.glob(".*tmp*"))


def test_an_ldn_saved_by_save_net_is_what_the_ldn_loaders_read(tmp_path: Path) -> None:
    net = _net("ldn")
    path = save_net(tmp_path / "ldn.safetensors", net, "ldn", {"steps": 3})
    _assert_same(load_ldn_state(path), net.state_dict())
    assert load_ldn_metadata(path)["steps"] == "3"


def test_non_default_sizes_are_rebuilt_from_the_metadata(tmp_path: Path) -> None:
    for architecture, net in (("bsn", BSN(features=8, dilations=(1, 2))), ("sr", EDSR(features=8, blocks=2))):
        path = save_net(tmp_path / f"{architecture}.safetensors", net, architecture)
        loaded, meta = load_net(path, architecture)
        assert loaded.config() == net.config()
        assert "net_config" in meta
        _assert_same(loaded.state_dict(), net.state_dict())


def test_the_paper_checkpoint_loads_as_an_ldn_net(tmp_path: Path, state) -> None:
    torch.save(state, tmp_path / "paper.pth")
    net, meta = load_net(tmp_path / "paper.pth", "ldn")
    assert isinstance(net, LDN)
    assert meta == {"format": "pytorch"}
    _assert_same(net.state_dict(), state)


@pytest.mark.parametrize(("held", "expected"), [("bsn", "ldn"), ("ldn", "sr"), ("sr", "bsn")])
def test_the_wrong_architecture_names_file_content_and_expectation(
    tmp_path: Path, held: str, expected: str
) -> None:
    path = save_net(tmp_path / "w.safetensors", _net(held), held)
    with pytest.raises(WeightsError, match=rf"w\.safetensors: holds a {held} network, expected {expected}$"):
        load_net(path, expected)


def test_the_ldn_loader_refuses_another_net_as_before(tmp_path: Path) -> None:
    path = save_net(tmp_path / "bsn.safetensors", _net("bsn"), "bsn")
    with pytest.raises(WeightsError, match="architecture 'bsn', expected 'ldn'"):
        load_ldn_state(path)


def test_load_net_errors(tmp_path: Path) -> None:
    from safetensors.torch import save_file

    path = save_net(tmp_path / "sr.safetensors", _net("sr"), "sr")
    with pytest.raises(WeightsError, match="unknown architecture 'unet', expected one of bsn, ldn, sr"):
        load_net(path, "unet")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "odd.safetensors"), metadata={"architecture": "gan"})
    with pytest.raises(WeightsError, match=r"odd\.safetensors: holds an unknown architecture 'gan'"):
        load_net(tmp_path / "odd.safetensors")
    save_file({"w": torch.zeros(2)}, str(tmp_path / "bare.safetensors"))
    with pytest.raises(WeightsError, match=r"bare\.safetensors: not a BSN state_dict \(missing"):
        load_net(tmp_path / "bare.safetensors", "bsn")
    meta = {"architecture": "bsn", "net_config": "[1, 2]"}
    save_file(dict(_net("bsn").state_dict()), str(tmp_path / "cfg.safetensors"), metadata=meta)
    with pytest.raises(
        WeightsError, match=r"cfg\.safetensors: metadata net_config '\[1, 2\]' does not build"
    ):
        load_net(tmp_path / "cfg.safetensors")
    with pytest.raises(WeightsError, match="weights file not found"):
        load_net(tmp_path / "nope.safetensors", "bsn")


def test_save_net_errors(tmp_path: Path) -> None:
    with pytest.raises(WeightsError, match=r"x\.safetensors: cannot save a BSN as architecture 'sr'"):
        save_net(tmp_path / "x.safetensors", BSN(), "sr")
    with pytest.raises(WeightsError, match="unknown architecture 'cnn'"):
        save_net(tmp_path / "x.safetensors", BSN(), "cnn")
    with pytest.raises(WeightsError, match="metadata keys must be strings, got 3"):
        save_net(tmp_path / "x.safetensors", BSN(), "bsn", {3: "three"})
    with pytest.raises(WeightsError, match="does not exist"):
        save_net(tmp_path / "no" / "x.safetensors", EDSR(), "sr")


def test_resolve_weights(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert DEFAULT_LDN_WEIGHTS.name == "ldn.safetensors"
    assert DEFAULT_LDN_WEIGHTS.parent.name == "default_weights"
    assert (DEFAULT_LDN_WEIGHTS.parent / "README.md").is_file()
    monkeypatch.setenv("SPIKEREVEAL_DEFAULT_WEIGHTS", str(tmp_path / "ldn.safetensors"))
    with pytest.raises(
        WeightsError, match=r"ldn\.safetensors: the project's default LDN weights are not there"
    ):
        resolve_weights("default")
    save_net(tmp_path / "ldn.safetensors", _net("ldn"), "ldn")
    assert resolve_weights("default") == tmp_path / "ldn.safetensors"
    assert resolve_weights(str(tmp_path / "ldn.safetensors")) == tmp_path / "ldn.safetensors"
    assert resolve_weights(tmp_path / "ldn.safetensors") == tmp_path / "ldn.safetensors"
    with pytest.raises(WeightsError, match=r"gone\.safetensors: weights file not found"):
        resolve_weights(tmp_path / "gone.safetensors")
    with pytest.raises(WeightsError, match="empty weights path"):
        resolve_weights("")
