"""stream/settings.py: a setting declared once on a config dataclass, checked by ``validate``."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from spikereveal.stream.errors import SpikeRevealError
from spikereveal.stream.settings import SettingError, setting, settings_of, validate


def _even(value: object) -> int:
    number = int(str(value))
    if number % 2:
        raise ValueError(f"{number} is odd")
    return number


@dataclass(frozen=True)
class Example:
    name: str = setting(help="Required text.")
    mode: str = setting("a", help="One of a, b.", choices=("a", "b"))
    count: int | None = setting(None, help="At least 1.", min=1)
    ratio: float = setting(0.5, help="In (0, 1].", min=0, max=1, min_open=True)
    out: Path | None = setting(None, help="A file.")
    on: bool = setting(True, help="A switch.", flag="--no-on")
    pair: int = setting(2, help="Even.", parse=_even)
    internal: int = setting(3, help="Not on the command line.", cli=False, yaml=False)

    def __post_init__(self) -> None:
        validate(self)


def test_values_are_normalised_to_their_declared_types() -> None:
    ex = Example(name="x", ratio=1, out="o.mp4", pair="4")
    assert ex.ratio == 1.0 and isinstance(ex.ratio, float)
    assert ex.out == Path("o.mp4") and ex.pair == 4
    assert [f.name for f, s in settings_of(Example) if s.cli] == [
        "name", "mode", "count", "ratio", "out", "on", "pair",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"mode": "c"}, "mode: got 'c', expected one of a, b"),
        ({"count": 0}, "count: got 0, expected >= 1"),
        ({"count": True}, "count: got True, expected an integer or null"),  # bool is not a number
        ({"ratio": 0.0}, "ratio: got 0, expected 0..1"),
        ({"ratio": float("inf")}, "ratio: got inf, expected a finite number"),
        ({"on": "yes"}, "on: got 'yes', expected true or false"),
        ({"name": None}, "name: got null, expected text"),
        ({"out": 3}, "out: got 3, expected a path or null"),
    ],
)
def test_errors_name_the_field_the_value_and_what_was_expected(changes: dict, message: str) -> None:
    with pytest.raises(SettingError) as info:
        Example(**{"name": "x", **changes})
    assert str(info.value) == message and isinstance(info.value, SpikeRevealError)
    assert info.value.field == next(iter(changes))


def test_a_parse_function_raises_its_own_error() -> None:
    with pytest.raises(ValueError, match="3 is odd"):
        Example(name="x", pair=3)
