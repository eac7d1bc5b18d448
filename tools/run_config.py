"""Settings of a whole pipeline run (``spikereveal run``), from a YAML file and command-line flags.

A rig's settings live in one YAML file with a section per node; flags given on the command line
override the file. Unknown keys are errors (they are nearly always typos), named with the file
and the section.

Example ``rig.yaml``::

    policy: lossless          # lossless (replay) | latest (live)
    endpoints:                # default: free tcp ports on 127.0.0.1
      bundles: tcp://127.0.0.1:5555
      results: tcp://127.0.0.1:5556
    capture: {source: "gopro:/data/GOPRO/test", rate: realtime, loop: false}
    engine:  {model: ldn, weights: weights/ldn.safetensors, backend: onnxruntime, times: 5}
    display: {window: true, record: out/run.mp4, summary: out/latency.json}
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml


class RunConfigError(ValueError):
    """A run configuration file or value that cannot be used."""


@dataclass(frozen=True)
class CaptureSettings:
    source: str = "sample"
    rate: str = "realtime"
    loop: bool = False
    count: int | None = None
    flip: bool = True
    calibration: str | None = None


@dataclass(frozen=True)
class EngineSettings:
    model: str | None = None  # ldn with weights, else sdm
    weights: str | None = None
    backend: str = "torch"
    times: int = 5
    threads: int | None = None


@dataclass(frozen=True)
class DisplaySettings:
    window: bool | None = None  # None: a window where there is a screen, else a video file
    record: str | None = None
    png_dir: str | None = None
    summary: str = "build/run/latency.json"
    warmup: int = 5  # results left out of the latency percentiles (connection set-up, lazy init)


@dataclass(frozen=True)
class Endpoints:
    bundles: str | None = None  # capture -> engine; None: a free loopback port
    results: str | None = None  # engine -> display


@dataclass(frozen=True)
class RunConfig:
    policy: str = "lossless"
    allow_remote: bool = False
    endpoints: Endpoints = field(default_factory=Endpoints)
    capture: CaptureSettings = field(default_factory=CaptureSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    display: DisplaySettings = field(default_factory=DisplaySettings)

    def __post_init__(self) -> None:
        if self.policy not in ("lossless", "latest"):
            raise RunConfigError(f"policy: got {self.policy!r}, expected lossless or latest")
        if self.engine.times < 1:
            raise RunConfigError(f"engine.times: got {self.engine.times}, expected >= 1")

    def with_overrides(self, overrides: dict[str, Any]) -> RunConfig:
        """A copy with dotted keys replaced (``{"capture.source": "sample"}``); None values are ignored."""
        config = self
        for key, value in overrides.items():
            if value is None:
                continue
            section, _, name = key.rpartition(".")
            if section:
                updated = dataclasses.replace(getattr(config, section), **{name: value})
                config = dataclasses.replace(config, **{section: updated})
            else:
                config = dataclasses.replace(config, **{name: value})
        return config


_SECTIONS = {
    "endpoints": Endpoints,
    "capture": CaptureSettings,
    "engine": EngineSettings,
    "display": DisplaySettings,
}


def _section(cls: type, data: Any, where: str) -> Any:
    if data is None:
        return cls()
    if not isinstance(data, dict):
        raise RunConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    known = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RunConfigError(
            f"{where}: unknown key(s) {', '.join(map(str, unknown))}; known: {', '.join(sorted(known))}"
        )
    try:
        return cls(**data)
    except (TypeError, ValueError) as exc:
        raise RunConfigError(f"{where}: {exc}") from None


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
    known = {"policy", "allow_remote", *_SECTIONS}
    unknown = sorted(set(data) - known)
    if unknown:
        raise RunConfigError(
            f"{path}: unknown key(s) {', '.join(map(str, unknown))}; known: {', '.join(sorted(known))}"
        )
    sections = {name: _section(cls, data.get(name), f"{path}: {name}") for name, cls in _SECTIONS.items()}
    try:
        return RunConfig(
            policy=data.get("policy", "lossless"),
            allow_remote=bool(data.get("allow_remote", False)),
            **sections,
        )
    except RunConfigError as exc:
        raise RunConfigError(f"{path}: {exc}") from None
