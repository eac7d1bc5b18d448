"""Click options and argv derived from a node's config dataclass (each setting declared once).

A node's settings are declared once, as fields of its frozen config dataclass with
:func:`spikereveal.stream.settings.setting` (name, type, default, help, choices, range, flag).
This module derives the rest from those declarations:

- :func:`config_options`: the click options of ``spikereveal capture|engine|display`` (and the
  subset that ``spikereveal run`` offers as overrides), one per field;
- :func:`config_from_options`: the config built from what click parsed;
- :func:`config_argv`: the argv that makes a node parse back into an equal config, which is how
  ``run`` starts its nodes (:func:`spikereveal.tools.pipeline.node_commands`).

Field -> option: ``--field-name`` unless the declaration names a ``flag``; a bool is a switch
(``--loop``; ``--no-flip`` for a True default turned off; ``--window/--no-window`` when declared
so); an ``X | None`` field defaults to None; ranges become ``IntRange``/``FloatRange``, choices
``Choice``, Paths ``click.Path``, a declared ``parse`` function a :class:`ParsedType`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from spikereveal.stream.settings import Setting, field_types, settings_of
from spikereveal.tools.cli_types import ParsedType

F = TypeVar("F", bound=Callable[..., Any])
C = TypeVar("C")


def _flag(f: dataclasses.Field, s: Setting) -> str:
    return s.flag or "--" + f.name.replace("_", "-")


def _switches(f: dataclasses.Field, s: Setting) -> tuple[str | None, str | None]:
    """(the flag that sets True, the flag that sets False) of a bool setting; None: no such flag."""
    flag = _flag(f, s)
    if "/" in flag:
        on, off = flag.split("/", 1)
        return on, off
    if f.default is True:
        if flag.startswith("--no-"):
            return None, flag  # ``--no-flip``: the default is on, the flag turns it off
        return flag, "--no-" + flag[2:]
    return flag, None


def _is_bool(cls: type, f: dataclasses.Field) -> bool:
    kinds, _ = field_types(cls)[f.name]
    return kinds == (bool,)


def _value_type(cls: type, f: dataclasses.Field, s: Setting) -> Any:
    kinds, _ = field_types(cls)[f.name]
    if s.choices is not None:
        return click.Choice([str(c) for c in s.choices])
    if s.parse is not None:
        return ParsedType(s.metavar or f.name.upper(), s.parse)
    if Path in kinds:
        return click.Path(path_type=Path, dir_okay=s.path == "dir", file_okay=s.path == "file")
    if kinds == (int,):
        if s.min is None and s.max is None:
            return int
        return click.IntRange(
            None if s.min is None else int(s.min), None if s.max is None else int(s.max), min_open=s.min_open
        )
    if kinds == (float,):
        if s.min is None and s.max is None:
            return float
        return click.FloatRange(s.min, s.max, min_open=s.min_open)
    return str


def _option(
    cls: type, f: dataclasses.Field, s: Setting, dest: str, overrides: bool, shown: Any = None
) -> Callable[[F], F]:
    """The ``click.option`` for one field; ``overrides``: every default None (not given = keep),
    ``shown`` the default that ``--help`` names then."""
    has_default = f.default is not dataclasses.MISSING
    default = None if overrides or not has_default else f.default
    show: bool | str = not overrides and has_default and f.default is not None
    if overrides and shown is not None and not isinstance(shown, bool):
        show = str(shown)
    if _is_bool(cls, f):
        on, off = _switches(f, s)
        if on is not None and off is not None:
            return click.option(
                f"{on}/{off}", dest, default=default, show_default=show, help=s.help, hidden=s.hidden
            )
        if overrides:  # a run flag must say "keep the file's value" too, so both spellings
            name = "--" + f.name.replace("_", "-")
            return click.option(
                f"{name}/--no-{name[2:]}", dest, default=None, show_default=show, help=s.help, hidden=s.hidden
            )
        only = on or off
        return click.option(
            only, dest, is_flag=True, flag_value=on is not None, default=default, help=s.help, hidden=s.hidden
        )
    return click.option(
        _flag(f, s),
        dest,
        type=_value_type(cls, f, s),
        default=default,
        required=not overrides and not has_default,
        show_default=show,
        help=s.help,
        hidden=s.hidden,
    )


def config_options(
    cls: type,
    *,
    only: Iterable[str] | None = None,
    overrides: bool = False,
    prefix: str = "",
    defaults: Any = None,
) -> Callable[[F], F]:
    """Decorate a click command with one option per command-line setting of ``cls``.

    ``only``: just these fields (in this order); ``overrides``: options default to None, so a
    command can tell "not given" from a value (``run`` over its YAML file), and ``--help`` names
    the values of ``defaults`` (a ``cls`` instance) as the defaults; ``prefix``: added to each
    option's parameter name (``capture__source``), to keep several configs apart.
    """
    declared = {f.name: (f, s) for f, s in settings_of(cls) if s.cli}
    names = list(declared) if only is None else list(only)
    unknown = [n for n in names if n not in declared]
    if unknown:
        raise ValueError(f"{cls.__name__}: no command-line setting(s) {', '.join(unknown)}")

    def decorate(command: F) -> F:
        # click lists options in the order they were attached, last first: attach in reverse.
        for name in reversed(names):
            f, s = declared[name]
            shown = None if defaults is None else getattr(defaults, name)
            command = _option(cls, f, s, prefix + name, overrides, shown)(command)
        return command

    return decorate


def config_from_options(cls: type[C], options: Mapping[str, Any], *, prefix: str = "", **fixed: Any) -> C:
    """The config from parsed options (``config_options``' parameter names); ``fixed`` fills the rest.

    Errors in the values are the config's own (:class:`~spikereveal.stream.settings.SettingError`
    and other families under the project's root), which the CLI prints as one line.
    """
    values = {
        f.name: options[prefix + f.name] for f, s in settings_of(cls) if s.cli and prefix + f.name in options
    }
    return cls(**{**values, **fixed})


def _text(value: Any) -> str:
    if isinstance(value, float):
        return repr(value)  # round-trips exactly (str() of a float does too since 3.x; be explicit)
    return str(value)


def config_argv(config: Any, *, always: Iterable[str] = ()) -> list[str]:
    """The command-line options that parse back into ``config`` (the inverse of the options).

    Spells each setting that differs from its default, each required one, and those named in
    ``always`` (the wiring ``run`` sets: endpoints, policy, node name), so a reader of the argv
    sees what was chosen. A setting that is None is left out (its default is None: only then can
    it be None without the config refusing it); a switch is spelled by its flag.
    """
    cls = type(config)
    keep = set(always)
    argv: list[str] = []
    for f, s in settings_of(cls):
        if not s.cli:
            if getattr(config, f.name) != f.default:
                raise ValueError(f"{cls.__name__}.{f.name}: not a command-line setting, cannot be passed")
            continue
        value = getattr(config, f.name)
        required = f.default is dataclasses.MISSING
        if not required and value == f.default and f.name not in keep:
            continue
        if value is None:
            if f.default is not None:
                raise ValueError(f"{cls.__name__}.{f.name}: None cannot be spelled on a command line")
            continue
        if _is_bool(cls, f):
            on, off = _switches(f, s)
            switch = on if value else off
            if switch is not None:  # None: the value is the default, which needs no flag
                argv.append(switch)
            continue
        argv += [_flag(f, s), _text(value)]
    return argv


def config_command(cls: type[C], name: str = "parse") -> click.Command:
    """A click command whose options are ``cls``'s and whose result is the config (tests, tools).

    ``config_command(EngineNodeConfig).main(argv, standalone_mode=False)`` parses an engine's argv.
    """

    @click.command(name)
    @config_options(cls)
    def parse(**options: Any) -> C:
        return config_from_options(cls, options)

    return parse
