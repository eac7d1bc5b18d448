"""Tests for tools/cli.py: one error line for every family under the root, and ``--version``."""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest

from spikereveal.tools.cli import main


def _one_error_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert "Traceback" not in err
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ")
    return lines[0]


def test_spike_format_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spikes = tmp_path / "s.dat"
    spikes.write_bytes(b"abc")
    code = main(
        [
            "tfp",
            "--spikes",
            str(spikes),
            "--spike-size",
            "2x8",
            "--center",
            "0",
            "--out",
            str(tmp_path / "o.npy"),
        ]
    )
    assert code == 2
    assert "s.dat: 3 bytes is not a whole number of 2x8 frames" in _one_error_line(capsys)


def test_image_file_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    spikes = tmp_path / "s.dat"
    spikes.write_bytes(bytes(2 * 4))
    args = ["deblur", "--blur", str(tmp_path / "nope.png"), "--spikes", str(spikes), "--spike-size", "2x8"]
    assert main([*args, "--out", str(tmp_path / "out")]) == 2
    assert "nope.png: cannot read the image" in _one_error_line(capsys)


def test_source_error_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["capture", "--source", "sim:nope"]) == 2
    assert "source 'sim:nope': unknown simulated scene 'nope'" in _one_error_line(capsys)


def test_run_config_error_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "bad.yaml"
    config.write_text("bogus: 1\n")
    assert main(["run", "--config", str(config)]) == 2
    assert "bad.yaml: unknown key(s) bogus" in _one_error_line(capsys)


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    out = capsys.readouterr().out
    assert out.strip() == f"spikereveal, version {importlib.metadata.version('spikereveal-rt')}"


def test_version_in_a_real_process(cli) -> None:
    result = cli("--version")
    assert result.returncode == 0
    assert result.stdout.startswith("spikereveal, version ")
