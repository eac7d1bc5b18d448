"""``spikereveal simulate``: end to end in a child process once, the other cases through ``main()``.

CLI start-up in a child costs seconds on this machine, so only the main path runs as a real process;
the rest call the same entry point (``spikereveal.tools.cli.main``) in-process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from spikereveal.capture.datasets import open_dataset
from spikereveal.tools.cli import main


def _main(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["simulate", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "spikereveal.tools.cli", "simulate", *args],
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_builtin_pan_end_to_end(tmp_path: Path) -> None:
    out = tmp_path / "sim"
    args = ["--builtin", "pan", "--out", str(out), "--samples", "2", "--spike-size", "16x24", "--sharp-all"]
    proc = _run(*args, "--seed", "5", "--noise", "0.007")
    assert proc.returncode == 0, proc.stderr
    assert "wrote 2 samples of scene 'pan'" in proc.stdout
    assert "simulate pan" in proc.stderr  # the tqdm bar goes to stderr
    meta = json.loads((out / "meta.json").read_text())
    assert meta["layout"] == "gopro-spike" and meta["frames_per_sample"] == 137
    assert meta["exposure"] == [20, 116] and meta["spike_size"] == [16, 24] and meta["blur_size"] == [64, 96]
    assert meta["vth"] == 1.0 and meta["seed"] == 5 and meta["noise_prob"] == 0.007
    assert meta["source"].startswith("builtin:pan") and meta["generator_version"]
    assert (out / "spike_data" / "pan" / "0001.dat.json").is_file()

    ds = open_dataset(out)
    assert len(ds) == 2
    for sample in ds:
        assert sample.spikes.shape == (137, 16, 24) and sample.blur.shape == (64, 96, 3)
        assert sorted(sample.sharp) == list(range(137))
        # The blur is the mean of the 97 exposure frames (rounded once).
        mean = np.mean(np.stack([sample.sharp[t] for t in range(20, 117)]).astype(np.float64), axis=0)
        assert np.abs(sample.blur - mean).max() <= 0.5 + 1e-9
        # The long TFP over the exposure sees the same scene as the grey blur.
        tfp = sample.spikes[20:117].mean(axis=0)
        grey = cv2.resize(
            cv2.cvtColor(sample.blur, cv2.COLOR_BGR2GRAY).astype(np.float32),
            (24, 16),
            interpolation=cv2.INTER_AREA,
        )
        assert np.corrcoef(tfp.ravel(), grey.ravel())[0, 1] > 0.95
        assert tfp.mean() == pytest.approx(1.985 / 2 * grey.mean() / 255, rel=0.05)


def test_deterministic_and_vth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = (
        "--builtin",
        "pan",
        "--samples",
        "1",
        "--spike-size",
        "8x16",
        "--quiet",
        "--texture",
        "procedural",
    )
    assert _main(capsys, *args, "--out", str(tmp_path / "a"))[0] == 0
    assert _main(capsys, *args, "--out", str(tmp_path / "b"))[0] == 0
    assert _main(capsys, *args, "--out", str(tmp_path / "c"), "--vth", "4")[0] == 0
    a, b, c = (open_dataset(tmp_path / n)[0] for n in "abc")
    assert np.array_equal(a.spikes, b.spikes) and np.array_equal(a.blur, b.blur)
    assert np.array_equal(a.blur, c.blur)
    assert c.spikes.mean() == pytest.approx(a.spikes.mean() / 4, rel=0.1)


def test_images_source_is_interpolated(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    folder = tmp_path / "frames"
    folder.mkdir()
    for i in range(18):  # 17 intervals x 8 + 1 = 137 frames: exactly one sample
        cv2.imwrite(str(folder / f"{i}.png"), np.full((34, 66, 3), 10 * i, np.uint8))
    out = tmp_path / "sim"
    code, _, err = _main(capsys, "--images", str(folder), "--out", str(out), "--samples", "1", "--quiet")
    assert code == 0, err
    meta = json.loads((out / "meta.json").read_text())
    assert meta["spike_size"] == [8, 16] and meta["blur_size"] == [32, 64]  # frame // 4, resized to 4x
    assert "linear blend x8" in meta["source"]
    sample = open_dataset(out, scene="frames")[0]
    assert int(sample.sharp[20][0, 0, 0]) == 25  # 20 / 8 = 2.5 source frames in: 25


def test_video_source(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    video = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"MJPG"), 30, (64, 32))
    for i in range(40):
        writer.write(np.full((32, 64, 3), 4 * i, np.uint8))
    writer.release()
    out = tmp_path / "sim"
    code, _, err = _main(
        capsys, "--video", str(video), "--out", str(out), "--samples", "1", "--quiet", "--sharp-times", "68"
    )
    assert code == 0, err
    sample = open_dataset(out, scene="clip")[0]
    assert sample.spike_size == (8, 16) and list(sample.sharp) == [68]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--samples", "1"), "exactly one source"),
        (("--builtin", "pan", "--images", "x"), "exactly one source"),
        (("--builtin", "pan", "--spike-size", "64by96"), "is not a size HxW"),
        (("--builtin", "pan", "--spike-size", "3x5"), "whole bytes"),
        (("--builtin", "pan", "--sharp-times", "20,x"), "comma-separated list"),
        (("--builtin", "pan", "--sharp-times", "200"), "sharp times 200 are outside 0..136"),
        (("--builtin", "pan", "--vth", "0"), "--vth"),
        (("--video", "missing.avi"), "missing.avi: video file not found"),
    ],
)
def test_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, _, err = _main(capsys, *args, "--out", str(tmp_path / "o"), "--quiet")
    assert code == 2
    assert message in err
    assert "Traceback" not in err


def test_existing_dataset_needs_overwrite(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--builtin", "pan", "--samples", "1", "--spike-size", "8x8", "--quiet", "--out", str(tmp_path))
    assert _main(capsys, *args)[0] == 0
    code, _, err = _main(capsys, *args)
    assert code == 2 and "already holds a dataset" in err
    assert _main(capsys, *args, "--overwrite")[0] == 0


def test_spike_size_derived_from_the_frames_is_explained(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN images of 30x44, whose 1/4 (7x11) is no whole number of bytes per spike frame
    images = tmp_path / "imgs"
    images.mkdir()
    for i in range(3):
        cv2.imwrite(str(images / f"{i}.png"), np.full((30, 44, 3), 60 * i, np.uint8))
    # WHEN simulating without --spike-size
    code, _, err = _main(capsys, "--images", str(images), "--out", str(tmp_path / "o"), "--quiet")
    # THEN the message says where 7x11 came from and names --spike-size with a size that works
    assert code == 2 and "Traceback" not in err
    assert "30x44 frames at 1/4 per side give spike frames of 7x11" in err
    assert "pass --spike-size HxW" in err and "--spike-size 7x8" in err


def test_spike_size_the_user_gave_is_named_as_the_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = _main(
        capsys, "--builtin", "pan", "--spike-size", "3x5", "--out", str(tmp_path / "o"), "--quiet"
    )
    assert code == 2 and "'--spike-size'" in err and "frames at 1/4" not in err


def test_scene_name_with_a_slash_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = ("--builtin", "pan", "--spike-size", "8x8", "--scene", "a/b", "--quiet", "--out", str(tmp_path))
    code, _, err = _main(capsys, *args)
    assert code == 2 and "scene name 'a/b'" in err and "Traceback" not in err


def test_builtin_motion_scenes_append_into_one_set(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # GIVEN three motion scenes of different kinds, textures and thresholds appended into one folder
    out = tmp_path / "train"
    common = ("--builtin", "motion", "--samples", "1", "--spike-size", "16x24", "--quiet", "--append")
    runs = [
        ("--motion", "rotate", "--texture", "moon", "--vth", "1", "--scene", "r"),
        ("--motion", "zoom", "--texture", "procedural:4", "--vth", "2", "--scene", "z", "--speed", "0.5"),
        ("--texture", "brick", "--vth", "4", "--seed", "3"),  # default motion: mixed, scene 'mixed'
    ]
    for extra in runs:
        code, stdout, err = _main(capsys, *common, *extra, "--out", str(out))
        assert code == 0, err
    # THEN they read as one dataset with a per-scene record
    ds = open_dataset(out)
    assert ds.scenes == ["mixed", "r", "z"]
    assert all(s.blur.shape == (64, 96, 3) and s.spikes.shape == (137, 16, 24) for s in ds)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["vth"] == [1.0, 2.0, 4.0]
    assert "motion=rotate, texture=moon, seed=0" in meta["scenes"]["r"]["source"]
    assert "peak_speed=0.500px/frame" in meta["scenes"]["z"]["source"]
    assert "motion=mixed, texture=brick, seed=3" in meta["scenes"]["mixed"]["source"]
    # AND the same command gives the same data (the seed fixes motion, region and tint)
    again = tmp_path / "again"
    assert _main(capsys, *common, *runs[0], "--out", str(again))[0] == 0
    assert np.array_equal(open_dataset(again)[0].blur, open_dataset(out, scene="r")[0].blur)


def test_motion_texture_defaults_to_the_pattern_and_takes_a_photo_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    photo = tmp_path / "photo.jpg"
    cv2.imwrite(str(photo), np.random.default_rng(0).integers(0, 256, (120, 160, 3), dtype=np.uint8))
    base = ("--builtin", "motion", "--samples", "1", "--spike-size", "8x16", "--quiet")
    assert _main(capsys, *base, "--out", str(tmp_path / "a"))[0] == 0
    assert "texture=procedural" in json.loads((tmp_path / "a/meta.json").read_text())["source"]
    assert _main(capsys, *base, "--texture", str(photo), "--out", str(tmp_path / "b"))[0] == 0
    assert f"texture={photo}" in json.loads((tmp_path / "b/meta.json").read_text())["source"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--builtin", "pan", "--motion", "zoom"), "--motion is only used with --builtin motion"),
        (("--builtin", "pan", "--speed", "1"), "--speed is only used with --builtin motion"),
        (("--images", "x", "--texture", "moon"), "--texture is only used with --builtin"),
        (("--builtin", "motion", "--motion", "spin"), "'spin' is not one of"),
        (("--builtin", "motion", "--texture", "nope"), "texture 'nope' is not one of"),
        (("--builtin", "motion", "--texture", "gone/x.png"), "gone/x.png: texture image file not found"),
        (("--builtin", "motion", "--append", "--overwrite"), "--append adds a scene"),
    ],
)
def test_motion_errors_are_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: tuple[str, ...], message: str
) -> None:
    code, _, err = _main(capsys, *args, "--out", str(tmp_path / "o"), "--quiet")
    assert code == 2 and message in err and "Traceback" not in err


def test_append_of_another_size_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    base = ("--builtin", "motion", "--samples", "1", "--quiet", "--append", "--out", str(tmp_path))
    assert _main(capsys, *base, "--spike-size", "8x16", "--scene", "a")[0] == 0
    code, _, err = _main(capsys, *base, "--spike-size", "16x16", "--scene", "b")
    assert code == 2 and "spike_size is [8, 16] there but [16, 16]" in err and "Traceback" not in err
