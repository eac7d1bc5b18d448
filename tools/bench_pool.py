"""``spikereveal bench pool``: bundles per second of the real pipeline with 1, 2 and 4 engines.

Each row is one real ``spikereveal run`` (:func:`~spikereveal.tools.run_cmd.run_pipeline`: capture,
N engine processes and the display, over ZeroMQ) on the same simulated stream, at ``rate max`` under
the lossless policy with the SDM model, headless (the display writes its video and summary to a
temporary folder). Lossless dealing by credit keeps every engine busy, so the display's steady
output rate is the pool's throughput.

The rate is the display's ``fps_out`` (results per second between the first and last result after
its warm-up): process start-up and torch import stay out of it, which a wall clock from start to
summary would not (that figure is kept too, as ``wall_s`` and ``wall_bundles_per_s``). The ratio
is each row's rate over the one-engine row's. On a machine with few cores the capture and the
display share the cores with the engines, so the ratio falls short of N there.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from spikereveal.capture.node import CaptureNodeConfig
from spikereveal.engine.node import EngineNodeConfig
from spikereveal.stream.display import DisplayConfig
from spikereveal.stream.errors import SpikeRevealError
from spikereveal.tools.bench_common import format_table, json_option, machine_info, write_json
from spikereveal.tools.run_config import RunConfig

DEFAULT_ENGINES = (1, 2, 4)


class PoolBenchError(SpikeRevealError):
    """A ``bench pool`` run that could not measure a row."""


@dataclass(frozen=True)
class PoolBenchConfig:
    """What one ``bench pool`` run measures."""

    engines: tuple[int, ...] = DEFAULT_ENGINES
    count: int = 40  # bundles per row
    size: tuple[int, int] = (64, 96)  # simulated spike frame size HxW
    times: int = 5  # sharp frames K per bundle
    # Results the display leaves out of its rate (set-up, lazy first calls). None: 5, or a third
    # of a short run, so that a run of a few bundles still has a steady part to measure.
    warmup: int | None = None

    def __post_init__(self) -> None:
        if not self.engines or min(self.engines) < 1:
            raise ValueError(f"engines: got {list(self.engines)}, expected counts >= 1")
        if self.warmup is None:
            object.__setattr__(self, "warmup", min(5, max(1, self.count // 3)))
        if self.count < self.warmup + 2:
            raise ValueError(f"count: got {self.count}, expected >= warmup + 2 = {self.warmup + 2}")

    @property
    def source(self) -> str:
        h, w = self.size
        return f"sim:pan?size={h}x{w}&count={self.count}"


def run_config_for(config: PoolBenchConfig, engines: int, folder: Path) -> RunConfig:
    """The run of one row: the bench's stream served by ``engines`` SDM engines, headless."""
    return RunConfig(
        policy="lossless",
        engines=engines,
        capture=CaptureNodeConfig(source=config.source, rate="max"),
        engine=EngineNodeConfig(model="sdm", times=config.times),
        display=DisplayConfig(
            sub=EngineNodeConfig().pub,  # wiring placeholder; ``run`` replaces it
            window=False,
            record=folder / "display.mp4",
            summary=folder / "summary.json",
            warmup=int(config.warmup or 0),
        ),
    )


def measure(config: PoolBenchConfig, engines: int) -> dict[str, Any]:
    """One row: run the pipeline with ``engines`` engines, read the display's summary."""
    from spikereveal.tools.run_cmd import run_pipeline  # starts processes: imported when used

    with tempfile.TemporaryDirectory(prefix=f"bench-pool-{engines}-") as tmp:
        folder = Path(tmp)
        run = run_config_for(config, engines, folder)
        log = io.StringIO()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(log):  # the nodes' logs: shown only when the row fails
            outcome = run_pipeline(run, verbose=0)
        wall_s = time.perf_counter() - t0
        summary_path = Path(run.display.summary)
        if outcome.code != 0 or not summary_path.is_file():
            tail = "\n".join(log.getvalue().splitlines()[-15:])
            raise PoolBenchError(
                f"engines={engines}: the run failed ({outcome.reason or 'no display summary'})\n{tail}"
            )
        summary = json.loads(summary_path.read_text())
    rate = summary.get("fps_out")
    if summary.get("results") != config.count or not rate:
        raise PoolBenchError(
            f"engines={engines}: display got {summary.get('results')} of {config.count} results "
            f"(fps_out {rate})"
        )
    return {
        "engines": engines,
        "results": summary["results"],
        "bundles_per_s": float(rate),
        "wall_s": wall_s,
        "wall_bundles_per_s": config.count / wall_s,
        "end_to_end_p50_ms": summary.get("end_to_end", {}).get("p50_ms"),
        "duplicates": summary.get("duplicates"),
        "dropped": summary.get("dropped"),
    }


def run_pool_bench(config: PoolBenchConfig, progress: bool = False) -> dict[str, Any]:
    """Measure every engine count in turn; returns the JSON payload (rows with ratios to one engine)."""
    rows = []
    for n in config.engines:
        if progress:
            click.echo(f"engines={n}: running {config.count} bundles ...", err=True)
        rows.append(measure(config, n))
    base = next((r["bundles_per_s"] for r in rows if r["engines"] == 1), None)
    for row in rows:
        row["ratio"] = row["bundles_per_s"] / base if base else None
        row["efficiency"] = row["ratio"] / row["engines"] if row["ratio"] is not None else None
    return {
        "bench": "pool",
        "machine": machine_info(["pyzmq", "torch"]),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "config": {**asdict(config), "source": config.source},
        "method": "spikereveal run (capture, N SDM engines, display as processes), lossless, rate max, "
        "headless; bundles/s = display fps_out after its warm-up",
        "rows": rows,
    }


def format_pool_table(payload: dict[str, Any]) -> str:
    """The human summary of :func:`run_pool_bench`'s payload."""

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    rows = [
        [
            str(r["engines"]),
            str(r["results"]),
            f"{r['bundles_per_s']:.2f}",
            num(r["ratio"], ".2f") + ("x" if r["ratio"] is not None else ""),
            num(r["efficiency"], ".0%"),
            f"{r['wall_s']:.1f}",
            num(r["end_to_end_p50_ms"], ".1f"),
        ]
        for r in payload["rows"]
    ]
    cfg = payload["config"]
    headers = ["engines", "results", "bundles/s", "x 1 engine", "per engine", "wall s", "p50 ms"]
    return (
        f"engine pool on {cfg['source']} (SDM, K={cfg['times']}, lossless, rate max), "
        f"{payload['machine']['cpu_usable']} usable cores\n" + format_table(headers, rows)
    )


def plot_pool(payload: dict[str, Any], path: Path) -> Path:
    """Bundles/s against engines, with the ideal line (N x the one-engine rate)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = payload["rows"]
    ns = [r["engines"] for r in rows]
    rates = [r["bundles_per_s"] for r in rows]
    fig, ax = plt.subplots(figsize=(5, 3.5))
    ax.plot(ns, rates, "o-", label="measured")
    base = next((r["bundles_per_s"] for r in rows if r["engines"] == 1), None)
    if base:
        ax.plot(ns, [n * base for n in ns], "--", color="grey", label="ideal (N x 1 engine)")
    ax.set_xlabel("engines")
    ax.set_ylabel("bundles / s")
    ax.set_xticks(ns)
    ax.set_title(f"engine pool, SDM, {payload['machine']['cpu_usable']} cores")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _engine_counts(ctx: click.Context, param: click.Parameter, value: str) -> tuple[int, ...]:
    try:
        counts = tuple(dict.fromkeys(int(v) for v in value.split(",") if v.strip()))
    except ValueError:
        counts = ()
    if not counts or min(counts) < 1:
        raise click.BadParameter(f"got {value!r}, expected engine counts >= 1 like 1,2,4")
    return counts


@click.command("pool")
@click.option(
    "--engines",
    default="1,2,4",
    show_default=True,
    callback=_engine_counts,
    help="Engine counts to measure, comma-separated.",
)
@click.option(
    "--count", type=click.IntRange(min=3), default=40, show_default=True, help="Bundles per engine count."
)
@click.option("--times", type=click.IntRange(min=1), default=5, show_default=True, help="Sharp frames K.")
@click.option(
    "--plot",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="PNG plot (default: next to the JSON).",
)
@json_option("pool", "--out")
def pool_command(engines: tuple[int, ...], count: int, times: int, plot: Path | None, out: Path) -> None:
    """Bundles/s of the real pipeline with 1, 2 and 4 SDM engines on one stream, and the ratio to one."""
    config = PoolBenchConfig(engines=engines, count=count, times=times)
    payload = run_pool_bench(config, progress=True)
    click.echo(format_pool_table(payload))
    click.echo(f"wrote {write_json(out, payload)}")
    click.echo(f"wrote {plot_pool(payload, plot or out.with_suffix('.png'))}")
