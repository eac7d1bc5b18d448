"""The project's default LDN weights: the recipe that makes them, and the wiring that runs them.

The suite's tree has no default weights (tests/conftest.py points ``$SPIKEREVEAL_DEFAULT_WEIGHTS``
at a missing file); the ``default_weights`` fixture puts a tiny random LDN there instead. The
real shipped file is checked by the last tests, which skip while it is not built.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from spikereveal.capture import scenes
from spikereveal.capture.datasets import open_dataset
from spikereveal.engine import deblur
from spikereveal.engine.node import EngineNodeConfig, build_deblurrer
from spikereveal.stream.errors import SpikeRevealError

REPO = Path(__file__).resolve().parents[2]
MAKEFILE = REPO / "Makefile"


def _make_variable(name: str) -> list[str]:
    """The words of a ``NAME ?= ...`` / ``NAME := ...`` line of the Makefile (continuations joined)."""
    text = MAKEFILE.read_text().replace("\\\n", " ")
    match = re.search(rf"^{name}\s*[?:]?=(.*)$", text, re.MULTILINE)
    assert match, f"{name} is not set in the Makefile"
    return match.group(1).split()


# -- the recipe ---------------------------------------------------------------------------------


def test_training_textures_never_include_the_held_out_photos() -> None:
    textures = _make_variable("TRAIN_TEXTURES")
    assert textures and not set(textures) & set(scenes.HELD_OUT_TEXTURES)
    for texture in textures:
        assert scenes.check_texture(texture) == texture
    photos = " ".join(_make_variable("TRAIN_PHOTOS"))
    assert "$(MATE)/" in photos and _make_variable("MATE") == ["/usr/share/backgrounds/mate"]
    assert not any(name in photos.lower() for name in scenes.HELD_OUT_TEXTURES)
    # The evaluation set is exactly the held-out photos (cat is chelsea again).
    assert set(_make_variable("EVAL_TEXTURES")) == set(scenes.HELD_OUT_TEXTURES) - {"cat"}


def test_the_recipe_trains_the_ldn_from_scratch_with_the_contract_command() -> None:
    text = MAKEFILE.read_text().replace("\\\n", " ")
    (line,) = [line for line in text.splitlines() if "train ldn" in line]
    words = line.split()
    assert words[words.index("--teacher") + 1] == "sdm"
    assert words[words.index("--data") + 1] == "$(TRAIN_DATA)"
    assert words[words.index("--seed") + 1] == "0"
    assert words[words.index("--minutes") + 1] == "$(MINUTES)"
    assert "--init" not in words  # from scratch, never from the paper's checkpoint
    assert "cp $(WEIGHTS_OUT) engine/default_weights/ldn.safetensors" in text
    assert _make_variable("TRAIN_VTHS") == ["1", "2", "4"]


@pytest.mark.skipif(shutil.which("make") is None, reason="needs GNU make")
def test_make_train_data_and_eval_data_build_one_set_each(tmp_path: Path) -> None:
    # GIVEN the Makefile's recipes, shrunk to two textures, two thresholds and tiny frames
    tiny = [
        f"TRAIN_DATA={tmp_path / 'train'}",
        f"EVAL_DATA={tmp_path / 'eval'}",
        "TRAIN_TEXTURES=moon procedural:1",
        "TRAIN_PHOTOS=",
        "TRAIN_VTHS=1 4",
        "TRAIN_SAMPLES=1",
        "EVAL_SAMPLES=1",
        "SPIKE_SIZE=8x16",
        "SIM_NEEDS=",  # the venv is there already; never reinstall it from a test
    ]
    # WHEN they run
    for target in ("train-data", "eval-data"):
        proc = subprocess.run(
            ["make", "-s", "-C", str(REPO), target, *tiny], capture_output=True, text=True, timeout=300
        )
        assert proc.returncode == 0, proc.stdout + proc.stderr
    # THEN the training set is one folder of 4 scenes, motions cycling, thresholds mixed
    train = open_dataset(tmp_path / "train")
    assert train.scenes == [
        "s000-pan-moon-vth1",
        "s001-rotate-procedural-1-vth1",
        "s002-zoom-moon-vth4",
        "s003-mixed-procedural-1-vth4",
    ]
    meta = json.loads((tmp_path / "train/meta.json").read_text())
    assert meta["vth"] == [1.0, 4.0] and meta["spike_size"] == [8, 16] and meta["seed"] == [0, 1, 2, 3]
    assert (tmp_path / "train/.complete").is_file()
    # AND the held-out set has one folder per threshold with the same four scenes and ground truth
    for vth in (1, 2, 4):
        ds = open_dataset(tmp_path / "eval" / f"vth{vth}")
        assert ds.scenes == ["astronaut-pan", "chelsea-rotate", "coffee-zoom", "rocket-mixed"]
        assert sorted(ds[0].sharp) == [20, 44, 68, 92, 116]
        assert json.loads((tmp_path / "eval" / f"vth{vth}" / "meta.json").read_text())["vth"] == vth
    first = [open_dataset(tmp_path / "eval" / f"vth{v}")[0] for v in (1, 4)]
    assert np.array_equal(first[0].blur, first[1].blur)  # the same scene at every threshold


# -- the wiring ----------------------------------------------------------------------------------


def test_the_default_path_is_the_one_engine_weights_ships() -> None:
    pytest.importorskip("torch")
    from spikereveal.engine.weights import DEFAULT_LDN_WEIGHTS

    assert deblur.SHIPPED_LDN_WEIGHTS == DEFAULT_LDN_WEIGHTS


def test_ldn_weights_resolves_default_and_paths(default_weights: Path, tmp_path: Path) -> None:
    assert deblur.ldn_weights(None) == default_weights
    assert deblur.ldn_weights("default") == default_weights
    assert deblur.ldn_weights(Path("default")) == default_weights
    assert deblur.ldn_weights(tmp_path / "w.pth") == tmp_path / "w.pth"
    assert deblur.default_model() == "ldn" and deblur.default_model(tmp_path / "w.pth") == "ldn"


def test_missing_default_is_one_line_naming_the_file_and_make() -> None:
    missing = deblur.default_ldn_weights()
    assert not missing.exists()  # the suite's tree (tests/conftest.py)
    assert deblur.default_model() == "sdm"
    for spec in (None, "default"):
        with pytest.raises(SpikeRevealError) as info:
            deblur.make_deblurrer("ldn", weights=spec)
        message = str(info.value)
        assert str(missing) in message and "make default-weights" in message and "\n" not in message


def test_make_deblurrer_runs_the_default_weights(default_weights: Path) -> None:
    ldn = deblur.make_deblurrer("ldn", threads=1)
    rng = np.random.default_rng(0)
    blur = rng.integers(0, 256, (64, 96, 3), dtype=np.uint8)
    spikes = (rng.random((137, 16, 24)) < 0.4).astype(np.uint8)
    frames = ldn.sequence(blur, spikes, (20, 116), [30, 68])
    ldn.close()
    assert ldn.name == "ldn" and frames.shape == (2, 64, 96, 3)


def test_engine_node_runs_the_ldn_by_default(default_weights: Path, tmp_path: Path) -> None:
    config = EngineNodeConfig(threads=1)
    assert config.model_name == "ldn" and config.model_label == "ldn/torch/default"
    assert EngineNodeConfig(weights=Path("default")).model_label == "ldn/torch/default"
    assert EngineNodeConfig(weights=tmp_path / "w.pth").model_label == "ldn/torch/w.pth"
    assert EngineNodeConfig(model="sdm").model_name == "sdm"
    deblurrer = build_deblurrer(config)
    try:
        assert deblurrer.name == "ldn"
    finally:
        deblurrer.close()


def test_engine_node_without_default_weights(caplog: pytest.LogCaptureFixture) -> None:
    # No model named: sdm, with a warning that names the missing file and how to build it.
    with caplog.at_level("WARNING"):
        deblurrer = build_deblurrer(EngineNodeConfig(threads=1))
    assert deblurrer.name == "sdm" and "make default-weights" in caplog.text
    # The ldn named: one clear error.
    with pytest.raises(SpikeRevealError, match="make default-weights"):
        build_deblurrer(EngineNodeConfig(model="ldn", threads=1))


def test_run_check_refuses_an_ldn_without_default_weights(default_weights: Path) -> None:
    from spikereveal.tools.pipeline import check_run
    from spikereveal.tools.run_config import RunConfig, RunConfigError

    config = RunConfig().with_overrides({"capture.source": "sim:pan?count=1&size=16x24"})
    check_run(config)  # the default weights are there
    check_run(config.with_overrides({"engine.weights": "default"}))
    default_weights.rename(default_weights.with_suffix(".gone"))
    try:
        with pytest.raises(RunConfigError, match=r"engine\.weights: .*make default-weights"):
            check_run(config.with_overrides({"engine.model": "ldn"}))
        check_run(config)  # no model named and no default: sdm
    finally:
        default_weights.with_suffix(".gone").rename(default_weights)


def _sample_args(sim_dataset: Path) -> list[object]:
    return [
        "--blur",
        sim_dataset / "blur_data/pan/0000.png",
        "--spikes",
        sim_dataset / "spike_data/pan/0000.dat",
        "--times",
        2,
    ]


def test_deblur_uses_the_default_weights(cli, sim_dataset: Path, tmp_path: Path, default_weights: Path):
    for extra, out in (([], tmp_path / "a"), (["--weights", "default"], tmp_path / "b")):
        res = cli("deblur", *_sample_args(sim_dataset), *extra, "--out", out)
        assert res.returncode == 0, res.stderr
        manifest = json.loads((out / "frames.json").read_text())
        assert manifest["model"] == "ldn" and manifest["weights"] == str(default_weights)
        assert "(ldn)" in res.stdout


def test_deblur_without_default_weights(cli, sim_dataset: Path, tmp_path: Path):
    res = cli("deblur", *_sample_args(sim_dataset), "--out", tmp_path / "a")
    assert res.returncode == 0, res.stderr
    assert "make default-weights" in res.stderr and "deblurred with sdm" in res.stderr
    assert json.loads((tmp_path / "a/frames.json").read_text())["model"] == "sdm"
    res = cli("deblur", *_sample_args(sim_dataset), "--weights", "default", "--out", tmp_path / "b")
    assert res.returncode == 2 and "make default-weights" in res.stderr and "Traceback" not in res.stderr


# -- the shipped file ----------------------------------------------------------------------------


#: The project's first default LDN (trained from scratch, 2026-12-02; engine/default_weights/README.md).
FIRST_DEFAULT_SHA256 = "41c44d2b07e6e2f78bbb9a06e11db7d62c3fb69d1dd8e1096afe92cc0bbcfb5e"


def test_shipped_default_weights_load_and_say_how_they_were_made() -> None:
    pytest.importorskip("torch")
    from spikereveal.engine.weights import DEFAULT_LDN_WEIGHTS, load_ldn_state, load_net, read_metadata

    if not DEFAULT_LDN_WEIGHTS.is_file():
        pytest.skip(f"{DEFAULT_LDN_WEIGHTS} is not built yet (make default-weights)")
    net, metadata = load_net(DEFAULT_LDN_WEIGHTS, "ldn")
    assert len(load_ldn_state(DEFAULT_LDN_WEIGHTS)) == 25
    assert metadata == read_metadata(DEFAULT_LDN_WEIGHTS)
    for key in ("architecture", "steps", "seed", "spike_density", "command", "teacher"):
        assert metadata.get(key), f"metadata has no {key}"
    assert metadata["architecture"] == "ldn" and metadata["seed"] == "0"
    # Trained from scratch by the project: either no init, or the project's own earlier default
    # (itself from scratch, recorded by its hash), never the paper's checkpoint.
    assert metadata.get("init", "default") == "default"
    assert "init" not in metadata or metadata["init_sha256"] == FIRST_DEFAULT_SHA256
    assert float(metadata["spike_density"]) > 0
    assert not any(name in metadata["command"] for name in scenes.HELD_OUT_TEXTURES)
