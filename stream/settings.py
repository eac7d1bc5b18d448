"""One declaration per setting: a config dataclass field with its help, checks and CLI spelling.

Each node's frozen config dataclass (``CaptureNodeConfig``, ``EngineNodeConfig``,
``DisplayConfig``) declares every setting once with :func:`setting`: name and type (the field),
default, help text, allowed values or range, and how it is spelled on the command line. The rest
is derived from that declaration (Holoscan declares an operator's parameters once in
``setup(spec)`` and binds a YAML section to them by name):

- :func:`validate`, called by the dataclass's ``__post_init__``, checks types, choices and
  ranges, with messages that name the field (``times: got 0, expected 1..256``);
- ``tools/config_options.py`` turns the fields into click options and back into argv, and
  ``tools/run_config.py`` binds a YAML section of ``spikereveal run`` to the same dataclass.

This module is the bottom layer: no click, no YAML, nothing from tools/.

Examples:
    >>> from dataclasses import dataclass
    >>> @dataclass(frozen=True)
    ... class Demo:
    ...     times: int = setting(5, help="Sharp frames per bundle.", min=1, max=256)
    ...     def __post_init__(self) -> None:
    ...         validate(self)
    >>> Demo(times=3).times
    3
    >>> Demo(times=0)
    Traceback (most recent call last):
    ...
    spikereveal.stream.settings.SettingError: times: got 0, expected 1..256
"""

from __future__ import annotations

import dataclasses
import functools
import math
import types
import typing
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from spikereveal.stream.errors import SpikeRevealError

__all__ = ["Setting", "SettingError", "field_types", "setting", "setting_of", "settings_of", "validate"]

_METADATA_KEY = "spikereveal.setting"


class SettingError(SpikeRevealError):
    """A config value of the wrong type or outside its declared choices or range.

    ``field`` names the setting, so a caller can say where it came from (``rig.yaml: engine.times``).
    """

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"{field}: {problem}")
        self.field, self.problem = field, problem


@dataclass(frozen=True)
class Setting:
    """What a field declares beyond its name, type and default: the keywords of :func:`setting`.

    ``choices``: the allowed values (any sequence; kept as a tuple); ``min``/``max``: an inclusive
    range (``min_open``: > min); ``parse``: turns text (a flag, a YAML value) into the value and
    raises its own family's error (``parse_rate``); ``flag``: the CLI spelling when it is not
    ``--field-name`` (``"--no-flip"`` for a True default switched off, ``"--window/--no-window"``);
    ``cli``/``yaml``: whether the setting is a command-line option / a key of its ``run`` YAML
    section (the wiring that ``run`` sets itself, endpoints and node names, is not a YAML key);
    ``hidden``: left out of ``--help``; ``path``: ``"file"`` or ``"dir"`` for Path settings.
    """

    help: str
    choices: tuple[Any, ...] | None = None
    min: float | None = None
    max: float | None = None
    min_open: bool = False
    flag: str | None = None
    cli: bool = True
    yaml: bool = True
    hidden: bool = False
    parse: Callable[[Any], Any] | None = None
    metavar: str | None = None
    path: str = "file"

    def __post_init__(self) -> None:
        if self.path not in ("file", "dir"):
            raise ValueError(f"path: got {self.path!r}, expected 'file' or 'dir'")
        if self.choices is not None:
            object.__setattr__(self, "choices", tuple(self.choices))


def setting(default: Any = dataclasses.MISSING, **declaration: Any) -> Any:
    """A dataclass field declaring one setting; no ``default``: the setting is required.

    ``declaration``: the fields of :class:`Setting` as keywords (``help`` is required), taken
    as they are so that each is declared once, there.
    """
    meta = {_METADATA_KEY: Setting(**declaration)}
    if default is dataclasses.MISSING:
        return dataclasses.field(metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def setting_of(f: dataclasses.Field) -> Setting | None:
    """The declaration of one field (None for a field declared without :func:`setting`)."""
    return f.metadata.get(_METADATA_KEY)


def settings_of(cls: type) -> list[tuple[dataclasses.Field, Setting]]:
    """Every declared setting of a config class, in field order."""
    return [(f, s) for f in dataclasses.fields(cls) if (s := setting_of(f)) is not None]


@functools.cache
def field_types(cls: type) -> dict[str, tuple[tuple[type, ...], bool]]:
    """``{field: (types, optional)}``: the annotation resolved (``int | None`` -> ``((int,), True)``)."""
    hints = typing.get_type_hints(cls)
    out: dict[str, tuple[tuple[type, ...], bool]] = {}
    for f in dataclasses.fields(cls):
        hint = hints.get(f.name, Any)
        if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
            members = typing.get_args(hint)
        else:
            members = (hint,)
        optional = type(None) in members
        out[f.name] = (tuple(m for m in members if m is not type(None)), optional)
    return out


_NAMES = {int: "an integer", float: "a number", bool: "true or false", str: "text", Path: "a path"}


def _expected(kinds: tuple[type, ...], optional: bool) -> str:
    words = [_NAMES.get(k, getattr(k, "__name__", str(k))) for k in kinds]
    return " or ".join(words + (["null"] if optional else []))


def _typed(name: str, value: Any, kinds: tuple[type, ...], optional: bool) -> Any:
    """``value`` as one of ``kinds`` (text -> Path, int -> float), or SettingError."""
    if not kinds or not all(k in _NAMES for k in kinds):
        return value  # a type this module does not check (the dataclass checks it itself)
    if isinstance(value, bool):  # bool is an int subclass; True is not the number 1
        if bool in kinds:
            return value
    elif isinstance(value, int) and int in kinds:
        return value
    elif isinstance(value, (int, float)) and float in kinds:
        if not math.isfinite(value):
            raise SettingError(name, f"got {value}, expected a finite number")
        return float(value)
    elif isinstance(value, Path) and Path in kinds or isinstance(value, str) and str in kinds:
        return value
    elif isinstance(value, str) and Path in kinds:
        return Path(value)
    raise SettingError(name, f"got {value!r}, expected {_expected(kinds, optional)}")


def _range(s: Setting) -> str:
    if s.min is not None and s.max is not None:
        return f"{s.min:g}..{s.max:g}"
    if s.min is not None:
        return f"{'>' if s.min_open else '>='} {s.min:g}"
    return f"<= {s.max:g}"


def validate(config: Any) -> None:
    """Check (and normalise) every field of a frozen config dataclass; call it in ``__post_init__``.

    Types follow the annotations (text becomes a Path for Path fields, an integer a float for
    float fields); declared settings are parsed (``parse``) and checked against their choices and
    range. Raises :class:`SettingError` naming the field, or the ``parse`` function's own error.
    """
    kinds_of = field_types(type(config))
    for f in dataclasses.fields(config):
        value = original = getattr(config, f.name)
        s = setting_of(f)
        kinds, optional = kinds_of[f.name]
        if value is None:
            if optional or not all(k in _NAMES for k in kinds):
                continue
            raise SettingError(f.name, f"got null, expected {_expected(kinds, False)}")
        if s is not None and s.parse is not None:
            value = s.parse(value)
        value = _typed(f.name, value, kinds, optional)
        if s is not None:
            if s.choices is not None and value not in s.choices:
                allowed = ", ".join(map(str, s.choices))
                raise SettingError(f.name, f"got {value!r}, expected one of {allowed}")
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                low_ok = s.min is None or (value > s.min if s.min_open else value >= s.min)
                high_ok = s.max is None or value <= s.max
                if not (low_ok and high_ok):
                    raise SettingError(f.name, f"got {value:g}, expected {_range(s)}")
        if value is not original:
            object.__setattr__(config, f.name, value)
