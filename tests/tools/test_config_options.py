"""tools/config_options.py: each node setting declared once, as a field of the node's config.

The click options of ``spikereveal capture|engine|display``, the YAML sections of ``spikereveal
run`` and the argv ``run`` starts its nodes with are all derived from the config dataclasses;
these tests hold the derivations to the declarations.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import click
import click.testing
import pytest

from spikereveal.capture.node import CaptureNodeConfig
from spikereveal.engine.node import EngineNodeConfig
from spikereveal.stream.display import DisplayConfig
from spikereveal.stream.settings import SettingError, settings_of
from spikereveal.tools.capture_cmd import capture_command
from spikereveal.tools.config_options import config_argv, config_command
from spikereveal.tools.display_cmd import display_command
from spikereveal.tools.engine_cmd import engine_command
from spikereveal.tools.pipeline import NodeEndpoints, node_commands, wired_configs
from spikereveal.tools.run_cmd import run_command
from spikereveal.tools.run_config import RunConfig, RunConfigError, load_run_config, yaml_keys

NODES = {
    "capture": (CaptureNodeConfig, capture_command),
    "engine": (EngineNodeConfig, engine_command),
    "display": (DisplayConfig, display_command),
}
EP = NodeEndpoints("tcp://127.0.0.1:7001", "tcp://127.0.0.1:7002")

#: The option names the node commands had before they were derived: none may change meaning.
FLAGS = {
    "capture": "--source --pub --rate --loop --policy --count --no-flip --calibration --allow-remote --node --engines "
    "--log-every",
    "engine": "--sub --pub --policy --model --backend --device --weights --calibration --times --threads --send-blur --no-send-blur "
    "--density-norm --no-density-norm --allow-remote --node --share --exit-on-finish --no-exit-on-finish --log-every --min-period-ms",
    "display": "--sub --policy --window --no-window --record --png-dir --summary --exit-on-finish "
    "--no-exit-on-finish --node --rgb-fps --warmup --allow-remote --web",
}


def _options(command: click.Command) -> dict[str, click.Option]:
    return {p.name: p for p in command.params if isinstance(p, click.Option)}


@pytest.mark.parametrize("node", list(NODES))
def test_every_setting_is_an_option_of_its_command_with_the_same_default(node: str) -> None:
    cls, command = NODES[node]
    options = _options(command)
    for f, s in settings_of(cls):
        if not s.cli:
            assert f.name not in options
            continue
        option = options[f.name]
        if f.default is dataclasses.MISSING:
            assert option.required, f.name
        else:
            assert option.default == f.default, f.name
        assert option.help == s.help and option.hidden == s.hidden
    spelled = {name for o in options.values() for name in (*o.opts, *o.secondary_opts)}
    assert spelled == set(FLAGS[node].split())
    assert options.get("min_period_ms") is None or options["min_period_ms"].hidden


@pytest.mark.parametrize("node", list(NODES))
def test_every_yaml_setting_is_a_key_of_its_run_section_with_the_same_default(node: str) -> None:
    cls, _ = NODES[node]
    section = getattr(RunConfig(), node)
    assert type(section) is cls  # bound to the node's own config, not a copy of its fields
    for f, s in settings_of(cls):
        if s.yaml and f.default is not dataclasses.MISSING:
            assert getattr(section, f.name) == f.default, f.name
    assert set(yaml_keys(cls)) == {f.name for f, s in settings_of(cls) if s.yaml}
    assert RunConfig().capture.source == "sample"  # run's own default for the one required setting


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ("capture: {pub: 'tcp://127.0.0.1:1'}\n", "capture: unknown key(s) pub"),  # wiring: run's
        ("engine: {node: e2}\n", "engine: unknown key(s) node"),
        ("display: {sub: x, colour: red}\n", "display: unknown key(s) colour, sub"),
        ("display: {warmup: -1}\n", "display.warmup: got -1, expected >= 0"),
        ("capture: {count: many}\n", "capture.count: got 'many', expected an integer or null"),
        ("capture: {rate: fast}\n", "capture: rate 'fast'"),
        ("display: {record: out.gif}\n", "out.gif"),
    ],
)
def test_a_key_that_is_no_setting_or_a_bad_value_names_file_and_key(tmp_path: Path, text, needle) -> None:
    path = tmp_path / "rig.yaml"
    path.write_text(text)
    with pytest.raises(RunConfigError) as info:
        load_run_config(path)
    assert needle in str(info.value) and str(path) in str(info.value)


def test_yaml_values_are_bound_by_name_with_their_types(tmp_path: Path) -> None:
    path = tmp_path / "rig.yaml"
    path.write_text(
        "capture: {rate: 0.5, flip: false, calibration: cal.yaml, log_every: 7}\n"
        "engine: {min_period_ms: 20, send_blur: false, threads: 2}\n"
        "display: {png_dir: pngs, rgb_fps: 30, exit_on_finish: false}\n"
    )
    config = load_run_config(path)
    assert config.capture.rate == 0.5 and config.capture.flip is False
    assert config.capture.calibration == Path("cal.yaml") and config.capture.log_every == 7
    assert config.engine.min_period_ms == 20.0 and config.engine.send_blur is False
    assert config.display.png_dir == Path("pngs") and config.display.rgb_fps == 30.0


ROUND_TRIPS = [
    {},
    {
        "capture.source": "sim:pan?count=3&size=16x24",
        "capture.rate": 2.5,
        "capture.loop": True,
        "capture.count": 3,
        "capture.flip": False,
        "capture.calibration": Path("cal.yaml"),
        "engine.model": "ldn",
        "engine.weights": Path("w dir/ldn.safetensors"),
        "engine.backend": "onnxruntime",
        "engine.times": 7,
        "engine.threads": 2,
        "engine.send_blur": False,
        "engine.exit_on_finish": False,
        "engine.min_period_ms": 12.5,
        "display.window": False,
        "display.record": Path("o.mp4"),
        "display.png_dir": Path("pngs"),
        "display.summary": Path("s.json"),
        "display.rgb_fps": 29.97,
        "display.warmup": 0,
        "policy": "latest",
        "allow_remote": True,
    },
]


@pytest.mark.parametrize("overrides", ROUND_TRIPS)
def test_the_argv_run_derives_parses_back_into_an_equal_config(overrides: dict) -> None:
    config = RunConfig().with_overrides(overrides)
    wired = wired_configs(config, EP)
    for name, argv in node_commands(config, EP).items():
        cls, _ = NODES[name]
        node_argv = argv[argv.index(name) + 1 :]  # after "python -m spikereveal.tools.cli -v <node>"
        parsed = config_command(cls).main(node_argv, standalone_mode=False)
        assert parsed == wired[name], (name, node_argv)
        assert config_command(cls).main(config_argv(parsed), standalone_mode=False) == parsed


def test_run_flags_are_the_nodes_declarations() -> None:
    options = _options(run_command)
    assert options["engine__times"].type.max == 256  # the range declared by EngineNodeConfig.times
    assert all(o.default is None for o in options.values())  # not given: the file's value stays
    spelled = {name for o in options.values() for name in (*o.opts, *o.secondary_opts)}
    for flag in [
        "--config",
        "--source",
        "--rate",
        "--model",
        "--weights",
        "--backend",
        "--times",
        "--window",
        "--no-window",
        "--record",
        "--summary",
        "--warmup",
        "--loop",
        "--no-loop",
        "--count",
        "--policy",
        "--allow-remote",
    ]:
        assert flag in spelled, flag


def test_times_is_checked_in_one_place_whichever_way_it_comes() -> None:
    with pytest.raises(SettingError, match=r"times: got 0, expected 1\.\.256"):
        EngineNodeConfig(times=0)
    with pytest.raises(SettingError, match="times"):
        RunConfig().with_overrides({"engine.times": 300})
    res = click.testing.CliRunner().invoke(engine_command, ["--times", "0"])
    assert res.exit_code == 2 and "--times" in res.output
