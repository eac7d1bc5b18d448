"""Click parameter types shared by the subcommands (one parser per kind of value)."""

from __future__ import annotations

import re

import click

_SIZE_RE = re.compile(r"^\s*(\d+)\s*[xX]\s*(\d+)\s*$")


def parse_size(text: str) -> tuple[int, int]:
    """``"250x400"`` -> ``(250, 400)``, i.e. (height, width); ValueError on anything else."""
    match = _SIZE_RE.match(text)
    if match is None:
        raise ValueError(f"{text!r} is not a size HxW (height x width), e.g. 250x400")
    height, width = int(match.group(1)), int(match.group(2))
    if height == 0 or width == 0:
        raise ValueError(f"{text!r}: height and width must be positive")
    return height, width


class SizeType(click.ParamType):
    """A frame size written ``HxW`` (height first, as in "250x400"), converted to ``(H, W)``."""

    name = "HxW"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value  # already converted (a default given as a tuple)
        try:
            return parse_size(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


SIZE = SizeType()


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


class ExposureType(click.ParamType):
    """An exposure written ``A:B`` in spike frames (inclusive), converted to ``(A, B)``."""

    name = "A:B"

    def convert(
        self, value: object, param: click.Parameter | None, ctx: click.Context | None
    ) -> tuple[int, int]:
        if isinstance(value, tuple):
            return value
        try:
            return parse_exposure(str(value))
        except ValueError as exc:
            self.fail(str(exc), param, ctx)


EXPOSURE = ExposureType()
