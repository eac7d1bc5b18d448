"""``spikereveal weights import|info`` end to end, in a child process like a user would run it."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from spikereveal.engine.ldn import LDN
from spikereveal.engine.weights import load_ldn_metadata, load_ldn_state, state_digest


@pytest.fixture
def random_pth(tmp_path: Path) -> Path:
    torch.manual_seed(3)
    path = tmp_path / "random.pth"
    torch.save({"state_dict": LDN().state_dict()}, path)
    return path


def test_import_then_info(cli, tmp_path: Path, random_pth: Path) -> None:
    out = tmp_path / "ldn.safetensors"
    result = cli("weights", "import", random_pth, out, "--spike-threshold", "2", "--note", "unit test")
    assert result.returncode == 0, result.stderr
    assert "234,158 parameters" in result.stdout
    state = load_ldn_state(out)
    assert state_digest(state) == state_digest(load_ldn_state(random_pth))
    meta = load_ldn_metadata(out)
    assert meta["source"] == "random.pth"
    assert meta["spike_threshold"] == "2"
    assert meta["note"] == "unit test"
    assert len(meta["source_sha256"]) == 64

    info = cli("weights", "info", out)
    assert info.returncode == 0, info.stderr
    assert "tensors: 25" in info.stdout
    assert "parameters: 234,158" in info.stdout
    assert "spike_threshold: 2" in info.stdout
    assert "format: spikereveal-ldn" in info.stdout


def test_import_the_paper_checkpoint(cli, tmp_path: Path, paper_weights: Path) -> None:
    out = tmp_path / "paper.safetensors"
    result = cli("weights", "import", paper_weights, out)
    assert result.returncode == 0, result.stderr
    meta = load_ldn_metadata(out)
    assert meta["source_sha256"] == "3a97fb5707675ddcf049409c8ca09db1452bdfcb31acae0fc4d9f62297eea2b9"
    assert meta["spike_threshold"] == "1"
    paper = torch.load(paper_weights, map_location="cpu", weights_only=True)
    loaded = load_ldn_state(out)
    assert all(torch.equal(loaded[k], paper[k]) for k in paper)


def _one_error_line(result) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.returncode == 2, result
    assert len(lines) == 1, result.stderr
    assert "Traceback" not in result.stderr
    return lines[0]


def test_missing_source_is_one_line(cli, tmp_path: Path) -> None:
    line = _one_error_line(cli("weights", "import", tmp_path / "nope.pth", tmp_path / "o.safetensors"))
    assert "nope.pth: weights file not found" in line


def test_not_an_ldn_is_one_line(cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.pth"
    torch.save({"conv.weight": torch.zeros(2)}, bad)
    line = _one_error_line(cli("weights", "info", bad))
    assert "bad.pth: not an LDN state_dict" in line
    assert "unexpected 1 keys: conv.weight" in line


def test_truncated_file_is_one_line(cli, tmp_path: Path, random_pth: Path) -> None:
    cut = tmp_path / "cut.pth"
    cut.write_bytes(random_pth.read_bytes()[:1000])
    line = _one_error_line(cli("weights", "import", cut, tmp_path / "o.safetensors"))
    assert "cut.pth: unreadable PyTorch checkpoint" in line


def test_existing_output_needs_force(cli, tmp_path: Path, random_pth: Path) -> None:
    out = tmp_path / "o.safetensors"
    out.write_bytes(b"old")
    again = cli("weights", "import", random_pth, out)
    assert again.returncode == 2
    assert "exists; pass --force" in again.stderr
    assert cli("weights", "import", random_pth, out, "--force").returncode == 0


def test_output_must_be_safetensors(cli, tmp_path: Path, random_pth: Path) -> None:
    result = cli("weights", "import", random_pth, tmp_path / "o.pth")
    assert result.returncode == 2
    assert "must end in .safetensors" in result.stderr
