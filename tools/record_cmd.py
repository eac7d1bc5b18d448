"""``spikereveal record``: record any source, losslessly and crash-safe, as an RSB-layout folder.

The folder (see :mod:`spikereveal.capture.recording`) replays through ``rec:DIR`` with its
recorded times, and opens as a dataset (``rsb:DIR`` or plain ``DIR``) for training and eval.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import click
from tqdm import tqdm

from spikereveal.capture.recording import RecordingWriter
from spikereveal.capture.sources import Capture, open_source, paced, parse_rate
from spikereveal.stream.stopping import StopFlag


@dataclass(frozen=True)
class RecordSummary:
    """What one recording run wrote."""

    out: Path
    bundles: int
    stream_frames: dict[str, int]
    gap_frames: int
    conflicts: int
    stopped: bool

    def line(self) -> str:
        frames = ", ".join(f"{scene} {n}" for scene, n in self.stream_frames.items()) or "none"
        why = " (stopped)" if self.stopped else ""
        return (
            f"recorded {self.bundles} bundles to {self.out}{why}; stream frames: {frames}; "
            f"{self.gap_frames} gap frames, {self.conflicts} overlap conflicts"
        )


def _limited(captures: Iterator[Capture], count: int | None, seconds: float | None) -> Iterator[Capture]:
    """At most ``count`` captures, and only those within ``seconds`` of source time of the first."""
    if count is not None:
        captures = itertools.islice(captures, count)
    if seconds is None:
        yield from captures
        return
    first: int | None = None
    for capture in captures:
        first = capture.rgb_t_ns if first is None else first
        if capture.rgb_t_ns - first >= seconds * 1e9:
            return
        yield capture


def record(
    source: str,
    out: Path,
    *,
    count: int | None = None,
    seconds: float | None = None,
    rate: str | float = "max",
    flip: bool = True,
    stop: StopFlag | None = None,
    progress: bool = True,
) -> RecordSummary:
    """Record ``source`` into ``out`` until it ends, ``count``/``seconds`` are reached or ``stop`` is set.

    ``seconds`` counts source time (``rgb_t_ns``), which is wall time for live devices and
    reproducible for replays; ``rate`` paces sources that do not pace themselves (``sim:``).
    """
    stop = StopFlag() if stop is None else stop
    opened = open_source(source, flip=flip)
    stopped = False
    try:
        with RecordingWriter(out, source_id=getattr(opened, "source_id", source)) as writer:
            captures = paced(_limited(iter(opened), count, seconds), parse_rate(rate), wait=stop.wait)
            total = count
            if total is None and seconds is None:
                try:
                    total = len(opened)  # type: ignore[arg-type]
                except TypeError:  # endless or live: no total
                    total = None
            with tqdm(total=total, desc="record", unit="bundle", disable=not progress) as bar:
                for capture in captures:
                    sync = getattr(capture, "sync", None)
                    writer.write(capture, sync.to_dict() if sync is not None else None)
                    bar.update(1)
                    if stop.is_set():
                        stopped = True
                        break
            stopped = stopped or stop.is_set()
            streams = writer.streams
            return RecordSummary(
                out,
                writer.count,
                {scene: s.frames for scene, s in streams.items()},
                sum(g[1] for s in streams.values() for g in s.gaps),
                sum(s.conflicts for s in streams.values()),
                stopped,
            )
    finally:
        opened.close()


@click.command("record")
@click.option(
    "--source", required=True, help="Source URI: sim:pan?..., rsb:PATH, rec:DIR, livesim:..., a path."
)
@click.option(
    "--out",
    required=True,
    type=click.Path(path_type=Path, file_okay=False),
    help="New folder for the recording (must be absent or empty).",
)
@click.option("--count", type=click.IntRange(min=1), default=None, help="Stop after N bundles.")
@click.option(
    "--seconds",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="Stop after S seconds of source time.",
)
@click.option(
    "--rate",
    default="max",
    show_default=True,
    metavar="realtime|max|FACTOR",
    help="Pace sources that do not pace themselves (sim:, rec:); live devices pace themselves.",
)
@click.option(
    "--no-flip", "flip", flag_value=False, default=True, help="Source spike files are stored upright."
)
def record_command(
    source: str, out: Path, count: int | None, seconds: float | None, rate: str, flip: bool
) -> None:
    """Record a source losslessly (RSB layout + index + continuous stream); SIGKILL loses one bundle at most."""
    stop = StopFlag()
    with stop.handle_signals():
        summary = record(
            source, out, count=count, seconds=seconds, rate=parse_rate(rate), flip=flip, stop=stop
        )
    click.echo(summary.line(), err=True)
