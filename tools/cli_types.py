"""Click parameter types shared by the subcommands (one parser per kind of value)."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

import click

# The one HxW parser lives at the bottom, where capture's source URIs can use it too.
from spikereveal.stream.spikes import parse_size


class ParsedType(click.ParamType):
    """A click type around one text parser: ``ParsedType("HxW", parse_size)``.

    The parser is the library's own (a plain function that raises ValueError, or a family under
    it, naming the value); click shows its message as the option's error. A value that is not
    text is taken as already parsed (a default given as a tuple, a float rate).
    """

    def __init__(self, name: str, parse: Callable[[str], Any]) -> None:
        self.name, self.parse = name, parse

    def convert(self, value: object, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if not isinstance(value, str):
            return value
        try:
            return self.parse(value)
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


#: A frame size written ``HxW`` (height first, as in "250x400"), converted to ``(H, W)``.
SIZE = ParsedType("HxW", parse_size)


_EXPOSURE_RE = re.compile(r"^\s*(\d+)\s*:\s*(\d+)\s*$")


def parse_exposure(text: str) -> tuple[int, int]:
    """``"20:116"`` -> ``(20, 116)``: first and last spike frame of the exposure, inclusive."""
    match = _EXPOSURE_RE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not an exposure A:B (first and last spike frame), e.g. 20:116")
    start, end = int(match.group(1)), int(match.group(2))
    if end < start:
        raise ValueError(f"{text!r}: the exposure ends before it starts")
    return start, end


#: An exposure written ``A:B`` in spike frames (inclusive), converted to ``(A, B)``.
EXPOSURE = ParsedType("A:B", parse_exposure)
