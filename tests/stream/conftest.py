"""Fixtures of the channel tests: the report socket and child peers (see channel_harness.py)."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import stop_processes
from tests.stream.channel_harness import Reports

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def reports() -> Iterator[Reports]:
    r = Reports()
    yield r
    r.close()


@pytest.fixture
def spawn_child() -> Iterator[Callable[..., subprocess.Popen]]:
    """Start ``python -m tests.stream.channel_harness ROLE ...`` peers; all stopped at teardown."""
    procs: list[subprocess.Popen] = []

    def start(*args: object) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "tests.stream.channel_harness", *map(str, args)], cwd=REPO
        )
        procs.append(proc)
        return proc

    yield start
    stop_processes(procs, timeout_s=3)
