"""Tests for tools/cli_types.py: the shared HxW size parameter."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from spikereveal.tools.cli_types import SIZE, parse_size


@pytest.mark.parametrize(
    ("text", "size"), [("250x400", (250, 400)), (" 8X16 ", (8, 16)), ("1000x1000", (1000, 1000))]
)
def test_parse_size(text: str, size: tuple[int, int]) -> None:
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["250", "250x", "x400", "250*400", "-1x5", "0x8", "2.5x4", ""])
def test_parse_size_rejects(text: str) -> None:
    with pytest.raises(ValueError, match="HxW|positive"):
        parse_size(text)


def test_size_param_in_a_command() -> None:
    @click.command()
    @click.option("--size", type=SIZE, default="4x8")
    def show(size: tuple[int, int]) -> None:
        click.echo(f"{size[0]},{size[1]}")

    runner = CliRunner()
    assert runner.invoke(show, []).output == "4,8\n"
    assert runner.invoke(show, ["--size", "250x400"]).output == "250,400\n"
    bad = runner.invoke(show, ["--size", "250by400"])
    assert bad.exit_code == 2
    assert "'250by400' is not a size HxW" in bad.output
