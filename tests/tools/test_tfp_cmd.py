"""Tests for tools/tfp_cmd.py: ``spikereveal tfp``.

One real process per outcome (success, user error); the other cases go in-process through
``spikereveal.tools.cli.main``, the same entry point as the console script, because starting the
CLI costs seconds here (its error families import torch).
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from spikereveal.capture.dat import write_dat
from spikereveal.stream.spikes import SpikeGeometry
from spikereveal.tools.cli import main
from spikereveal.tools.tfp_cmd import to_png_levels


def run_cli(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "spikereveal.tools.cli", *map(str, args)],
        capture_output=True,
        text=True,
        timeout=60,
    )


def run_main(*args: str | Path) -> int:
    return main([str(a) for a in args])


@pytest.fixture
def clip(tmp_path: Path) -> tuple[Path, np.ndarray]:
    """A 30-frame 8x16 clip without sidecar; the firing rate grows along each row."""
    rng = np.random.default_rng(1)
    rates = np.linspace(0.0, 1.0, 16)[None, :].repeat(8, axis=0)
    spikes = (rng.random((30, 8, 16)) < rates).astype(np.uint8)
    spikes[:, 0, 0] = 1  # a bright corner, top-left when upright
    path = write_dat(tmp_path / "clip.dat", spikes, SpikeGeometry(8, 16), sidecar=False)
    return path, spikes


def test_tfp_npy_in_a_real_process(clip: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, spikes = clip
    # WHEN `spikereveal tfp` writes .npy THEN it is the float32 mean of frames 10..20
    args = ["--spike-size", "8x16", "--center", "15", "--window", "11"]
    result = run_cli("tfp", "--spikes", path, *args, "--out", tmp_path / "t.npy")
    assert result.returncode == 0, result.stderr
    assert "frames 10..20 (11 frames" in result.stdout
    image = np.load(tmp_path / "t.npy")
    assert image.dtype == np.float32
    assert image.shape == (8, 16)
    np.testing.assert_allclose(image, spikes[10:21].mean(axis=0), rtol=1e-6)
    assert image[0, 0] == 1.0


def test_tfp_png(clip: tuple[Path, np.ndarray], tmp_path: Path) -> None:
    path, spikes = clip
    # WHEN written as .png (into a folder that does not exist yet) THEN it is round(255 * TFP), 8-bit grey
    out = tmp_path / "sub" / "t.png"
    assert (
        run_main(
            "tfp", "--spikes", path, "--spike-size", "8x16", "--center", "15", "--window", "11", "--out", out
        )
        == 0
    )
    png = cv2.imread(str(out), cv2.IMREAD_UNCHANGED)
    assert png.dtype == np.uint8
    assert png.shape == (8, 16)
    np.testing.assert_array_equal(png, np.round(255 * spikes[10:21].mean(axis=0)).astype(np.uint8))


def test_tfp_uses_sidecar_and_no_flip(tmp_path: Path) -> None:
    spikes = np.zeros((5, 8, 16), dtype=np.uint8)
    spikes[:, 0, 3] = 1
    path = write_dat(tmp_path / "s.dat", spikes, SpikeGeometry(8, 16))
    assert (
        run_main("tfp", "--spikes", path, "--center", "2", "--window", "5", "--out", tmp_path / "up.npy") == 0
    )
    assert np.load(tmp_path / "up.npy")[0, 3] == 1.0
    assert (
        run_main(
            "tfp",
            "--spikes",
            path,
            "--center",
            "2",
            "--window",
            "5",
            "--no-flip",
            "--out",
            tmp_path / "dn.npy",
        )
        == 0
    )
    assert np.load(tmp_path / "dn.npy")[7, 3] == 1.0


def _error_line(returncode: int, stderr: str) -> str:
    assert returncode == 2, stderr
    assert "Traceback" not in stderr
    lines = [line for line in stderr.splitlines() if line.lower().startswith("error")]
    assert len(lines) == 1, stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (
            ["--spike-size", "8x16", "--center", "15", "--out", "{tmp}/t.jpg"],
            "unknown output type '.jpg'; use .npy or .png",
        ),
        (["--spike-size", "8x16", "--center", "15", "--out", "{tmp}/t"], "(no extension)"),
        (
            ["--spike-size", "8x16", "--center", "2", "--window", "11", "--out", "{tmp}/t.npy"],
            "spike frames -3..7",
        ),
        (
            ["--spike-size", "8x16", "--center", "15", "--window", "4", "--out", "{tmp}/t.npy"],
            "positive odd number",
        ),
        (["--spike-size", "8by16", "--center", "15", "--out", "{tmp}/t.npy"], "'8by16' is not a size HxW"),
        (["--spike-size", "5x5", "--center", "15", "--out", "{tmp}/t.npy"], "5x5: 25 bits per frame"),
        (
            ["--spike-size", "8x56", "--center", "15", "--out", "{tmp}/t.npy"],
            "480 bytes is not a whole number of 8x56 frames (56 bytes each)",
        ),
        (["--center", "15", "--out", "{tmp}/t.npy"], "unknown frame size"),
        # windows and geometry that do not fit the tiny clip (30 frames of 8x16)
        (
            ["--spike-size", "8x16", "--center", "5", "--window", "-3", "--out", "{tmp}/t.npy"],
            "positive odd number",
        ),
        (
            ["--spike-size", "8x16", "--center", "-1", "--window", "1", "--out", "{tmp}/t.npy"],
            "spike frames -1..-1",
        ),
        (
            ["--spike-size", "8x16", "--center", "29", "--window", "3", "--out", "{tmp}/t.npy"],
            "outside the spike stream of 30 frames",
        ),
        (
            ["--spike-size", "8x16", "--center", "5", "--row-tag-bits", "-1", "--out", "{tmp}/t.npy"],
            "row_tag_bits must be >= 0",
        ),
    ],
)
def test_bad_inputs_exit_2_with_one_error_line(
    clip: tuple[Path, np.ndarray],
    tmp_path: Path,
    args: list[str],
    expected: str,
    capsys: pytest.CaptureFixture[str],
) -> None:
    path, _ = clip
    returncode = run_main("tfp", "--spikes", path, *(a.format(tmp=tmp_path) for a in args))
    assert expected in _error_line(returncode, capsys.readouterr().err)
    assert not list(tmp_path.glob("t*"))


def test_missing_spike_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    returncode = run_main(
        "tfp", "--spikes", tmp_path / "nope.dat", "--center", "1", "--out", tmp_path / "t.npy"
    )
    assert "nope.dat" in _error_line(returncode, capsys.readouterr().err)


def test_empty_clip_and_unwritable_out(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "empty.dat").write_bytes(b"")
    args = ["--spike-size", "8x8", "--center", "0", "--window", "1"]
    returncode = run_main("tfp", "--spikes", tmp_path / "empty.dat", *args, "--out", tmp_path / "t.npy")
    assert "spike stream of 0 frames (none)" in _error_line(returncode, capsys.readouterr().err)
    # An --out whose folder cannot be made (its parent is a file) names --out and the folder.
    (tmp_path / "s.dat").write_bytes(bytes(80))
    (tmp_path / "afile").write_text("x")
    returncode = run_main("tfp", "--spikes", tmp_path / "s.dat", *args, "--out", tmp_path / "afile/sub/t.npy")
    line = _error_line(returncode, capsys.readouterr().err)
    assert "--out" in line and "cannot create its folder" in line


def test_user_error_in_a_real_process(tmp_path: Path) -> None:
    (tmp_path / "s.dat").write_bytes(bytes(100))
    args = ["--spike-size", "8x8", "--center", "1", "--out", tmp_path / "t.npy"]
    result = run_cli("tfp", "--spikes", tmp_path / "s.dat", *args)
    line = _error_line(result.returncode, result.stderr)
    assert (
        line == f"error: {tmp_path / 's.dat'}: 100 bytes is not a whole number of 8x8 frames (8 bytes each)"
    )


def test_png_levels_round_and_clip() -> None:
    levels = to_png_levels(np.array([[-0.5, 0.0, 0.5 / 255, 1.5 / 255, 0.5, 1.0, 2.0]], dtype=np.float32))
    np.testing.assert_array_equal(levels, [[0, 0, 0, 2, 128, 255, 255]])
