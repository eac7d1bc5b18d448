"""tools/run_config.py: YAML rig files, overrides and their errors."""

from pathlib import Path

import pytest

from spikereveal.capture.sources import SourceError
from spikereveal.tools.run_config import RunConfig, RunConfigError, load_run_config


def test_yaml_sections_are_read(tmp_path):
    path = tmp_path / "rig.yaml"
    path.write_text(
        "policy: latest\n"
        "endpoints: {bundles: 'tcp://127.0.0.1:6001'}\n"
        "capture: {source: 'sim:pan?count=2', rate: max}\n"
        "engine: {times: 3, backend: onnxruntime}\n"
        "display: {window: false, record: out.mp4}\n"
    )
    config = load_run_config(path)
    assert config.policy == "latest"
    assert config.endpoints.bundles == "tcp://127.0.0.1:6001" and config.endpoints.results is None
    assert config.capture.source == "sim:pan?count=2" and config.capture.rate == "max"
    assert config.engine.times == 3 and config.engine.backend == "onnxruntime"
    assert config.display.window is False and config.display.record == Path(
        "out.mp4"
    )  # bound to DisplayConfig


def test_flags_override_the_file_and_none_keeps_it():
    config = RunConfig().with_overrides(
        {"capture.source": "gopro:/x", "engine.times": None, "policy": "latest"}
    )
    assert config.capture.source == "gopro:/x" and config.engine.times == 5 and config.policy == "latest"


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("captur: {source: x}\n", "unknown key(s) captur"),
        ("engine: {time: 3}\n", "engine: unknown key(s) time"),
        ("policy: sometimes\n", "policy: got 'sometimes'"),
        ("engine: {times: 0}\n", "engine.times"),
        ("engine: [1, 2]\n", "engine: expected a mapping"),
        ("- a\n- b\n", "top level"),
        ("capture: {source: [unclosed\n", "not valid YAML"),
    ],
)
def test_bad_files_name_file_and_key(tmp_path, text, needle):
    path = tmp_path / "rig.yaml"
    path.write_text(text)
    with pytest.raises(RunConfigError) as info:
        load_run_config(path)
    assert needle in str(info.value) and "rig.yaml" in str(info.value)


def test_missing_file_is_named(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.yaml"):
        load_run_config(tmp_path / "nope.yaml")


def test_a_rig_section_becomes_the_capture_source(tmp_path):
    from spikereveal.capture.rig import load_rig_config

    (tmp_path / "cam.avi").write_bytes(b"")
    path = tmp_path / "run.yaml"
    path.write_text(
        "policy: latest\n"
        "rig: {rgb: cam.avi, spikes: 'spikes:file:s.dat?size=4x16', calibration: c.yaml, margin_frames: 3}\n"
        "engine: {times: 2}\n"
    )
    config = load_run_config(path)
    assert config.rig == path.resolve() and config.capture.source == f"rig:{path.resolve()}"
    # the capture node reads the section back from the run file, paths relative to that file
    rig = load_rig_config(path)
    assert rig.rgb == str(tmp_path / "cam.avi") and rig.calibration == str(tmp_path / "c.yaml")
    assert rig.spikes == f"spikes:file:{tmp_path / 's.dat'}?size=4x16" and rig.margin_frames == 3
    # a source given on the command line as well: one clear error
    with pytest.raises(RunConfigError, match=r"run\.yaml: the rig: section is the capture source"):
        config.with_overrides({"capture.source": "sample"})
    assert config.with_overrides({"capture.source": None, "engine.times": 3}).engine.times == 3


@pytest.mark.parametrize(
    ("text", "error", "needle"),
    [
        (
            "rig: {rgb: 0, spikes: 'spikes:tcp://h:1?size=4x16'}\ncapture: {source: sample}\n",
            RunConfigError,
            "a rig: section and capture.source ('sample') together",
        ),
        ("rig: [1]\n", RunConfigError, "rig: expected a mapping"),
        (
            "rig: {rgb: 0, spikes: 'spikes:tcp://h:1?size=4x16', margins: 2}\n",
            SourceError,
            "unknown key 'margins'",
        ),
        ("rig: {rgb: 0}\n", SourceError, "the key 'spikes' is required"),
    ],
)
def test_bad_rig_sections_name_the_file(tmp_path, text, error, needle):
    path = tmp_path / "run.yaml"
    path.write_text(text)
    with pytest.raises(error) as info:
        load_run_config(path)
    assert needle in str(info.value) and "run.yaml" in str(info.value)
