"""Plumbing shared by the ``spikereveal bench`` commands: timing, machine facts, table, JSON.

Each bench times its work with :func:`time_repeats`, describes the run with :func:`machine_info`,
prints :func:`format_table` and saves the numbers with :func:`write_json` where its
:func:`json_option` says; the arithmetic stays in the bench, the bookkeeping here.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any, TypeVar

import click
import numpy as np

F = TypeVar("F", bound=Callable[..., Any])


@dataclass(frozen=True)
class Timing:
    """Wall-clock seconds of each timed run of one piece of work (warm-up runs excluded)."""

    seconds: tuple[float, ...]

    @property
    def median_s(self) -> float:
        return float(np.median(self.seconds))

    @property
    def min_s(self) -> float:
        return float(min(self.seconds))

    @property
    def max_s(self) -> float:
        return float(max(self.seconds))

    @property
    def iqr_s(self) -> tuple[float, float]:
        """First and third quartiles (the middle half of the runs)."""
        q1, q3 = np.percentile(self.seconds, [25, 75])
        return float(q1), float(q3)

    def per_second(self, items: float) -> float:
        """Throughput at the median: ``items`` processed per run / median seconds."""
        return items / self.median_s if self.median_s > 0 else float("inf")

    def to_dict(self) -> dict[str, object]:
        q1, q3 = self.iqr_s
        return {
            "runs": len(self.seconds),
            "median_s": self.median_s,
            "min_s": self.min_s,
            "max_s": self.max_s,
            "q1_s": q1,
            "q3_s": q3,
            "seconds": list(self.seconds),
        }


def time_repeats(work: Callable[[], object], *, repeats: int = 5, warmup: int = 1) -> Timing:
    """Run ``work`` ``warmup`` times untimed (caches, page faults, lazy init), then ``repeats`` times timed."""
    if repeats < 1:
        raise ValueError(f"repeats must be >= 1, got {repeats}")
    for _ in range(warmup):
        work()
    seconds = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        work()
        seconds.append(time.perf_counter() - t0)
    return Timing(tuple(seconds))


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine_info(packages: Iterable[str] = ()) -> dict[str, object]:
    """Where and with what a bench ran: OS, CPU, cores, Python, NumPy and ``packages``' versions."""
    usable = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    versions: dict[str, str | None] = {"numpy": np.__version__}
    for name in packages:
        try:
            versions[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            versions[name] = None
    return {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "cpu_usable": usable,
        "python": platform.python_version(),
        "versions": versions,
        "time_utc": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
    }


def format_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> str:
    """A plain aligned text table: first column left-aligned, the others right-aligned."""
    cells = [[str(h) for h in headers]] + [[str(c) for c in row] for row in rows]
    if any(len(row) != len(headers) for row in cells):
        raise ValueError(f"every row needs {len(headers)} cells (one per header)")
    widths = [max(len(row[i]) for row in cells) for i in range(len(headers))]

    def line(row: list[str]) -> str:
        return "  ".join(
            c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(row, widths, strict=True))
        )

    rule = "  ".join("-" * w for w in widths)
    return "\n".join([line(cells[0]), rule, *(line(r) for r in cells[1:])])


def write_json(path: str | os.PathLike[str], payload: dict[str, object]) -> Path:
    """Write ``payload`` as indented JSON (creating folders); returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(payload, indent=2) + "\n")
    return path


def json_option(bench: str, *decls: str) -> Callable[[F], F]:
    """The click option naming where ``bench <bench>`` writes its JSON (``build/bench/<bench>.json``).

    ``decls``: the option's click declarations, ``("--json", "json_path")`` unless given
    (``bench transport`` spells it ``--out``).
    """
    return click.option(
        *(decls or ("--json", "json_path")),
        type=click.Path(dir_okay=False, path_type=Path),
        default=Path(f"build/bench/{bench}.json"),
        show_default=True,
    )


def plot_option() -> Callable[[F], F]:
    """The click option ``--plot PNG`` of a bench that draws its figures (default: beside its JSON)."""
    return click.option(
        "--plot",
        type=click.Path(dir_okay=False, path_type=Path),
        default=None,
        help="PNG plot (default: next to the JSON).",
    )
