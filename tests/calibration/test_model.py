"""Calibration records: defaults, size checks, YAML/JSON files and their errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from spikereveal.calibration.model import (
    Calibration,
    CalibrationError,
    calibration_from_dict,
    load_calibration,
    save_calibration,
)


def test_defaults_are_the_nominal_rig() -> None:
    cal = Calibration()
    assert cal.scale == 4.0
    assert cal.offset == (0.0, 0.0)
    assert cal.spike_offset_frames == 0
    assert cal.id == "nominal"
    assert cal.expected_spike_size((720, 1280)) == (180, 320)
    assert cal.expected_spike_size((1000, 1600)) == (250, 400)


def test_check_sizes_accepts_public_datasets() -> None:
    cal = Calibration()
    cal.check_sizes((720, 1280), (180, 320))
    cal.check_sizes((1000, 1600), (250, 400))


def test_check_sizes_message_names_both_sizes_and_ratio() -> None:
    with pytest.raises(CalibrationError) as info:
        Calibration().check_sizes((720, 1280), (250, 400))
    text = str(info.value)
    assert "250x400" in text and "720x1280" in text
    assert "expected 180x320" in text and "1/4 per side" in text and "'nominal'" in text


def test_check_sizes_rejects_blur_not_a_whole_multiple() -> None:
    # A fractional "expected 250.25x400" named a size no file can have (issue 6, B7): the message
    # says why no spike size fits and which RGB size these spikes need instead.
    with pytest.raises(CalibrationError) as info:
        Calibration().check_sizes((1001, 1600), (250, 400))
    text = str(info.value)
    assert "no whole spike size fits RGB 1001x1600" in text and "1001/4 = 250.25" in text
    assert "need RGB 1000x1600" in text and "expected 250.25" not in text


def test_size_error_of_a_250x400_blur_names_the_rgb_size_the_spikes_need() -> None:
    # GIVEN the 62x100 spikes a 250x400 blur cannot have (62.5 rows at 1/4)
    with pytest.raises(CalibrationError) as info:
        Calibration().check_sizes((250, 400), (62, 100))
    text = str(info.value)
    # THEN the message names the RGB size 4x the spikes, explains the ratio, quotes no fraction as a size
    assert "need RGB 248x400" in text and "RGB is 4x the spike size per side" in text
    assert "62.5x100" not in text and "250/4 = 62.5" in text


def test_rgb_size_for_is_scale_times_the_spikes() -> None:
    assert Calibration().rgb_size_for((250, 400)) == (1000, 1600)
    assert Calibration(scale=3.97).rgb_size_for((250, 400)) == (992, 1588)
    assert Calibration().fits((1000, 1600), (250, 400)) and not Calibration().fits((1001, 1600), (250, 400))


@pytest.mark.parametrize("text", ["off", "no", "yes", "on", "2024", "1.50", "0x1F"])
def test_yaml_id_is_the_text_written(tmp_path: Path, text: str) -> None:
    # GIVEN an unquoted id that YAML 1.1 would read as a bool or a number
    path = tmp_path / "rig.yaml"
    path.write_text(f"id: {text}\nscale: 4\n")
    # THEN the id is the text as written, and the other fields keep their YAML types
    cal = load_calibration(path)
    assert cal.id == text and cal.scale == 4.0


@pytest.mark.parametrize("value", ["~", "[a, b]", ""])
def test_yaml_id_that_is_no_text_is_named_with_a_hint(tmp_path: Path, value: str) -> None:
    path = tmp_path / "rig.yaml"
    path.write_text(f"id: {value}\n")
    with pytest.raises(CalibrationError) as info:
        load_calibration(path)
    text = str(info.value)
    assert "rig.yaml: calibration id" in text and "quotes" in text


def test_json_id_must_be_a_string(tmp_path: Path) -> None:
    path = tmp_path / "rig.json"
    path.write_text('{"id": false}')
    with pytest.raises(CalibrationError, match=r"rig\.json: calibration id: False.*quotes"):
        load_calibration(path)


def test_other_scale() -> None:
    cal = Calibration(scale=2, id="half")
    assert cal.scale == 2.0 and isinstance(cal.scale, float)
    cal.check_sizes((20, 32), (10, 16))
    with pytest.raises(CalibrationError, match="1/2 per side, calibration 'half'"):
        cal.check_sizes((40, 64), (10, 16))
    # A measured, non-integer scale fits within half an RGB pixel.
    Calibration(scale=3.97).check_sizes((993, 1588), (250, 400))


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"scale": 0}, "scale"),
        ({"scale": -4.0}, "scale"),
        ({"scale": float("nan")}, "scale"),
        ({"scale": "4"}, "scale"),
        ({"scale": True}, "scale"),
        ({"offset": (1.0,)}, "offset"),
        ({"offset": ("a", 0)}, "offset"),
        ({"offset": 3}, "offset"),
        ({"spike_offset_frames": 1.5}, "spike_offset_frames"),
        ({"id": ""}, "id"),
    ],
)
def test_invalid_values(kwargs: dict, field: str) -> None:
    with pytest.raises(CalibrationError, match=f"calibration {field}"):
        Calibration(**kwargs)


def test_golden_yaml_by_hand(tmp_path: Path) -> None:
    path = tmp_path / "rig.yaml"
    path.write_text("id: rig-a\nscale: 4\noffset: [1.5, -2]\nspike_offset_frames: -3\n")
    cal = load_calibration(path)
    assert cal == Calibration(scale=4.0, offset=(1.5, -2.0), spike_offset_frames=-3, id="rig-a")


def test_empty_yaml_is_the_default(tmp_path: Path) -> None:
    path = tmp_path / "empty.yml"
    path.write_text("")
    assert load_calibration(path) == Calibration()


@pytest.mark.parametrize("suffix", [".yaml", ".yml", ".json"])
def test_round_trip(tmp_path: Path, suffix: str) -> None:
    cal = Calibration(scale=3.97, offset=(0.25, -1.0), spike_offset_frames=2, id="measured")
    path = save_calibration(tmp_path / f"cal{suffix}", cal)
    assert path.is_file()
    assert load_calibration(path) == cal
    if suffix == ".json":
        assert json.loads(path.read_text())["offset"] == [0.25, -1.0]


@settings(max_examples=25, deadline=None)
@given(
    scale=st.floats(min_value=0.1, max_value=64, allow_nan=False),
    dy=st.floats(-1e3, 1e3, allow_nan=False),
    dx=st.floats(-1e3, 1e3, allow_nan=False),
    shift=st.integers(-1000, 1000),
    name=st.text(alphabet="abcdefgh-_0123456789", min_size=1, max_size=12),
)
def test_round_trip_property(tmp_path_factory: pytest.TempPathFactory, scale, dy, dx, shift, name) -> None:
    cal = Calibration(scale=scale, offset=(dy, dx), spike_offset_frames=shift, id=name)
    folder = tmp_path_factory.mktemp("cal")
    for suffix in (".yaml", ".json"):
        assert load_calibration(save_calibration(folder / f"c{suffix}", cal)) == cal


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("a.yaml", "scale: 4\nscael: 3\n", r"a\.yaml: unknown field\(s\) scael"),
        ("b.json", '{"scale": -1}', r"b\.json: calibration scale: -1"),
        ("c.yaml", "offset: 3\n", r"c\.yaml: calibration offset"),
        ("d.yaml", "scale: [1, 2\n", r"d\.yaml: not valid YAML"),
        ("e.json", "{scale: 4}", r"e\.json: not valid JSON"),
        ("f.yaml", "- 1\n- 2\n", r"f\.yaml: expected a mapping"),
    ],
)
def test_file_errors_name_the_file_and_field(tmp_path: Path, name: str, text: str, message: str) -> None:
    path = tmp_path / name
    path.write_text(text)
    with pytest.raises(CalibrationError, match=message):
        load_calibration(path)


def test_missing_and_unknown_files_are_named(tmp_path: Path) -> None:
    with pytest.raises(CalibrationError, match=r"missing\.yaml: calibration file not found"):
        load_calibration(tmp_path / "missing.yaml")
    with pytest.raises(CalibrationError, match=r"unknown calibration file type '\.txt'"):
        load_calibration(tmp_path / "cal.txt")
    with pytest.raises(CalibrationError, match=r"unknown calibration file type '\.toml'"):
        save_calibration(tmp_path / "cal.toml", Calibration())


def test_from_dict_source_in_message() -> None:
    with pytest.raises(CalibrationError, match="rig.json: calibration spike_offset_frames"):
        calibration_from_dict({"spike_offset_frames": "x"}, source="rig.json")
