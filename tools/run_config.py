"""Settings of a whole pipeline run (``spikereveal run``), from a YAML file and command-line flags.

A rig's settings live in one YAML file with a section per node; flags given on the command line
override the file. Each section is bound by name to its node's own config dataclass (Holoscan's
``**self.kwargs("replayer")``): ``capture:`` to ``CaptureNodeConfig``, ``engine:`` to
``EngineNodeConfig``, ``display:`` to ``DisplayConfig``, so a section's keys, defaults and checks
are the node's own (``spikereveal capture --help`` lists them). The wiring that ``run`` sets
itself (endpoints, node names, the policy, ``allow_remote``) is not a key of a section: those
settings are declared ``yaml=False``. Unknown keys are errors (they are nearly always typos),
named with the file and the section.

Example ``rig.yaml``::

    policy: lossless          # lossless (replay) | latest (live)
    endpoints:                # default: free tcp ports on 127.0.0.1
      bundles: tcp://127.0.0.1:5555
      results: tcp://127.0.0.1:5556
    capture: {source: "gopro:/data/GOPRO/test", rate: realtime, loop: false}
    engine:  {model: ldn, weights: weights/ldn.safetensors, backend: onnxruntime, times: 5}
    display: {window: true, record: out/run.mp4, summary: out/latency.json}

A live rig may be described in the same file: a ``rig:`` section holds the keys of a rig file
(capture/rig.py ``load_rig_config``: ``rgb``, ``spikes``, ``calibration``, ``margin_frames``...),
its relative paths relative to this file, and becomes the capture source, as if
``--source rig:FILE`` named a rig file (the capture node reads the section from this file).
A ``rig:`` section and a source (``capture.source`` or ``--source``) together are an error::

    policy: latest
    rig: {rgb: cam.avi, spikes: "spikes:file:spikes.dat?size=120x160&rate=20000", calibration: calib.yaml}
    engine: {calibration: calib.yaml}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from spikereveal.capture.node import CaptureNodeConfig
from spikereveal.engine.node import EngineNodeConfig
from spikereveal.stream.display import DisplayConfig
from spikereveal.stream.errors import SpikeRevealError
from spikereveal.stream.settings import SettingError, setting, settings_of, validate
from spikereveal.stream.transport import POLICIES


class RunConfigError(SpikeRevealError):
    """A run configuration file or value that cannot be used."""


@dataclass(frozen=True)
class Endpoints:
    bundles: str | None = None  # capture -> engine; None: a free loopback port
    results: str | None = None  # engine -> display


def _default_capture() -> CaptureNodeConfig:
    return CaptureNodeConfig(source="sample")  # what ``run`` shows without a source: the built-in pan


def _default_display() -> DisplayConfig:
    # ``sub`` is wiring: a placeholder (the engine's default endpoint) that ``run`` replaces with the
    # resolved results endpoint when it starts the node (tools/pipeline.py ``wired_configs``).
    return DisplayConfig(sub=EngineNodeConfig().pub)


@dataclass(frozen=True)
class RunConfig:
    """One run: the policy for every node, the links, and each node's own config."""

    policy: str = setting(
        "lossless", help="lossless: replay (every bundle); latest: live (drop stale).", choices=POLICIES
    )
    allow_remote: bool = setting(False, help="Allow endpoints beyond loopback.")
    engines: int = setting(
        1,
        help="Engine processes serving the one capture stream (a pool: bundles dealt by credit).",
        min=1,
        max=64,
    )
    devices: str | None = setting(
        None,
        help="GPUs for the engines, e.g. 0,1: engine i runs on device i mod their number (CUDA_VISIBLE_DEVICES).",
    )
    endpoints: Endpoints = field(default_factory=Endpoints)
    capture: CaptureNodeConfig = field(default_factory=_default_capture)
    engine: EngineNodeConfig = field(default_factory=EngineNodeConfig)
    display: DisplayConfig = field(default_factory=_default_display)
    #: The run file whose ``rig:`` section is the capture source (``capture.source`` is
    #: ``rig:`` this file); None when the source is given otherwise.
    rig: Path | None = None

    def __post_init__(self) -> None:
        validate(self)

    def with_overrides(self, overrides: dict[str, Any]) -> RunConfig:
        """A copy with dotted keys replaced (``{"capture.source": "sample"}``); None values are ignored."""
        config = self
        for key, value in overrides.items():
            if value is None:
                continue
            if key == "capture.source" and self.rig is not None:
                raise RunConfigError(
                    f"{self.rig}: the rig: section is the capture source; drop it or the source "
                    f"({value!r}), not both"
                )
            section, _, name = key.rpartition(".")
            if section:
                updated = dataclasses.replace(getattr(config, section), **{name: value})
                config = dataclasses.replace(config, **{section: updated})
            else:
                config = dataclasses.replace(config, **{name: value})
        return config


#: The node sections of a run file and the config each is bound to.
SECTIONS: dict[str, type] = {
    "capture": CaptureNodeConfig,
    "engine": EngineNodeConfig,
    "display": DisplayConfig,
}


def yaml_keys(cls: type) -> list[str]:
    """The keys a run file's section of ``cls`` may hold: its settings not declared ``yaml=False``."""
    return [f.name for f, s in settings_of(cls) if s.yaml]


def _unknown(where: str, data: dict[Any, Any], known: list[str]) -> None:
    unknown = sorted(map(str, set(data) - set(known)))
    if unknown:
        raise RunConfigError(
            f"{where}: unknown key(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )


def _section(name: str, base: Any, data: Any, path: Path) -> Any:
    """``base`` (the run's default for the section) with the file's keys of section ``name``."""
    if data is None:
        return base
    if not isinstance(data, dict):
        raise RunConfigError(f"{path}: {name}: expected a mapping, got {type(data).__name__}")
    cls = type(base)
    keys = yaml_keys(cls) if name in SECTIONS else [f.name for f in dataclasses.fields(cls)]
    _unknown(f"{path}: {name}", data, keys)
    try:
        return dataclasses.replace(base, **data)
    except SettingError as exc:
        raise RunConfigError(f"{path}: {name}.{exc.field}: {exc.problem}") from None
    except (TypeError, ValueError) as exc:
        raise RunConfigError(f"{path}: {name}: {exc}") from None


def load_run_config(path: str | Path) -> RunConfig:
    """Read a YAML run configuration (see the module docstring); errors name the file and key."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such run configuration file")
    try:
        data = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise RunConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(data, dict):
        raise RunConfigError(f"{path}: expected a mapping at the top level, got {type(data).__name__}")
    top = [f.name for f, _ in settings_of(RunConfig)]
    _unknown(str(path), data, [*top, "endpoints", "rig", *SECTIONS])
    defaults = RunConfig()
    sections = {
        name: _section(name, getattr(defaults, name), data.get(name), path)
        for name in ("endpoints", *SECTIONS)
    }
    rig = None
    if "rig" in data:
        rig = _rig_section(path, data)
        sections["capture"] = dataclasses.replace(sections["capture"], source=f"rig:{rig}")
    try:
        return RunConfig(**{k: data[k] for k in top if k in data}, **sections, rig=rig)
    except SpikeRevealError as exc:
        raise RunConfigError(f"{path}: {exc}") from None


def _rig_section(path: Path, data: dict[str, Any]) -> Path:
    """The run file (absolute) whose ``rig:`` section is checked now, so its errors come first."""
    from spikereveal.capture.rig import load_rig_config

    capture = data.get("capture")
    if isinstance(capture, dict) and "source" in capture:
        raise RunConfigError(
            f"{path}: a rig: section and capture.source ({capture['source']!r}) together; "
            "the rig section is the capture source: keep one"
        )
    if not isinstance(data["rig"], dict):
        raise RunConfigError(
            f"{path}: rig: expected a mapping of rig keys (rgb, spikes, ...), got {type(data['rig']).__name__}"
        )
    path = path.resolve()  # the capture node may start elsewhere; relative keys stay relative to it
    load_rig_config(path)  # SourceError naming the file and the key
    return path
