"""tools/run_config.py: YAML rig files, overrides and their errors."""

from pathlib import Path

import pytest

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
