"""``spikereveal bench pool``: bundles per second of the real pipeline with 1, 2 and 4 engines.

Each row is one real ``spikereveal run`` (:func:`~spikereveal.tools.run_cmd.run_pipeline`: capture,
N engine processes and the display, over ZeroMQ) on the same stream, at ``rate max`` under the
lossless policy, headless (the display writes its video and summary to a temporary folder).
Lossless dealing by credit keeps every engine busy, so the display's steady output rate is the
pool's throughput.

The source must not be the bottleneck. ``sim:`` URIs simulate each bundle inside the capture node
(~285 ms at 64x96, against ~11 ms of SDM), which capped every row at ~3.4 bundles/s whatever the
pool. So by default the bench simulates a small dataset once (``spikereveal simulate``'s
:func:`~spikereveal.tools.simulate.simulate_dataset`, the built-in pan) into a temporary folder
and the capture node replays it as ``gopro:DIR``, looped, at full speed (reading one sample is
~25 ms at 64x96). ``--source URI`` measures any other source instead (looped the same way).

The engine must be what costs. The display re-encodes every sharp frame into its video, so its
cost grows with frame size x K exactly as the SDM's does (at 64x96 spikes: SDM ~11 ms and the
video ~11 ms per bundle of K=5): with ``--model sdm`` the pool cannot outgrow the display on a
small machine. The default is therefore the LDN (the shipped weights), one CPU thread per engine:
~0.6 s per bundle of K=5 at 64x96, some 20x what the capture (~25 ms) and the display (~11 ms)
spend on it.

What limits it on 2 cores: each engine is a process with ``--threads`` threads, so N engines
can use at most min(N x threads, cores) cores; beyond that they share the cores and the rate
stays flat (the ``ceiling`` column: the best ratio the cores allow, before the capture's and the
display's own CPU). With 2 cores, 2 engines approach 2x and 4 engines stay near the 2-engine
rate (or slightly below: more processes, more switching). On a machine shared with other work a
row can pass the ceiling: the kernel shares the cores among processes, so four engine processes
win a larger share from the other jobs than one does (the JSON keeps the load average). The p50
latency grows with N under ``rate max``: the capture fills every engine's credit window, so a
bundle waits behind the window's others. On a machine with one GPU per engine
(``run --devices``) the engine's work leaves the CPU and the ceiling is the GPUs' count instead.

The rate is the display's ``fps_out`` (results per second between the first and last result
after its warm-up): process start-up and torch import stay out of it, which a wall clock from
start to summary would not (that figure is kept too, as ``wall_s`` and ``wall_bundles_per_s``).
The ratio is each row's rate over the one-engine row's. ``cores used`` is the CPU time of all
the row's nodes over its wall time (start-up included): how much of the machine the pipeline held.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import statistics
import tempfile
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click

from spikereveal.capture.node import CaptureNodeConfig
from spikereveal.engine.node import EngineNodeConfig
from spikereveal.stream.display import DisplayConfig
from spikereveal.stream.errors import SpikeRevealError
from spikereveal.tools.bench_common import format_table, json_option, machine_info, plot_option, write_json
from spikereveal.tools.cli_types import SIZE
from spikereveal.tools.run_config import RunConfig

DEFAULT_ENGINES = (1, 2, 4)
MODELS = ("ldn", "sdm")


class PoolBenchError(SpikeRevealError):
    """A ``bench pool`` run that could not measure a row."""


@dataclass(frozen=True)
class PoolBenchConfig:
    """What one ``bench pool`` run measures.

    ``source``: a source URI the capture node opens, or None: the built-in pan simulated once at
    ``size`` (``samples`` exposures) into a temporary dataset and replayed looped. ``threads``:
    CPU threads of each engine's model (1: one core per engine, so the ratio shows the pool).
    """

    engines: tuple[int, ...] = DEFAULT_ENGINES
    count: int = 30  # bundles per row
    size: tuple[int, int] = (64, 96)  # spike frame size HxW of the simulated dataset
    times: int = 5  # sharp frames K per bundle
    model: str = "ldn"
    threads: int | None = 1
    samples: int = 4  # exposures in the simulated dataset (replayed looped up to ``count``)
    repeats: int = 1  # runs per engine count (the row: their median)
    source: str | None = None
    # Results the display leaves out of its rate (set-up, lazy first calls). None: 5, or a third
    # of a short run, so that a run of a few bundles still has a steady part to measure.
    warmup: int | None = None

    def __post_init__(self) -> None:
        if not self.engines or min(self.engines) < 1:
            raise ValueError(f"engines: got {list(self.engines)}, expected counts >= 1")
        if self.model not in MODELS:
            raise ValueError(f"model: got {self.model!r}, expected one of {', '.join(MODELS)}")
        if self.samples < 1:
            raise ValueError(f"samples: got {self.samples}, expected >= 1")
        if self.repeats < 1:
            raise ValueError(f"repeats: got {self.repeats}, expected >= 1")
        if self.warmup is None:
            object.__setattr__(self, "warmup", min(5, max(1, self.count // 3)))
        if self.count < self.warmup + 2:
            raise ValueError(f"count: got {self.count}, expected >= warmup + 2 = {self.warmup + 2}")

    def describe_source(self) -> str:
        """The source as the table names it."""
        if self.source is not None:
            return self.source
        h, w = self.size
        return f"simulated pan {h}x{w} ({self.samples} exposures, replayed looped)"

    def ceiling(self, engines: int, cores: int) -> float:
        """The best ratio to one engine that ``cores`` allow: min(N x threads, cores) / min(threads, cores)."""
        threads = self.threads or cores  # None: each engine takes every core
        return min(engines * threads, cores) / min(threads, cores)


@contextlib.contextmanager
def bench_source(config: PoolBenchConfig, progress: bool = False) -> Iterator[str]:
    """The source URI every row replays: ``config.source``, or a dataset simulated once for this run.

    The dataset (``spikereveal simulate``'s writer, GOPRO-spike layout) lives in a temporary
    folder removed at the end; its captures are what ``sim:pan`` would give, minus the ~0.3 s of
    simulation per exposure that the capture node would otherwise spend on every bundle.
    """
    if config.source is not None:
        yield config.source
        return
    from spikereveal.capture.scenes import pan_scene
    from spikereveal.tools.simulate import SimulationConfig, simulate_dataset

    with tempfile.TemporaryDirectory(prefix="bench-pool-data-") as tmp:
        data = Path(tmp) / "data"
        sim = SimulationConfig(spike_size=config.size, seed=0)
        if progress:
            click.echo(
                f"simulating {config.samples} exposures at {config.size[0]}x{config.size[1]} ...", err=True
            )
        frames = pan_scene(sim.frames_per_sample * config.samples, sim.blur_size)
        simulate_dataset(frames, sim, data, samples=config.samples, source="builtin:pan", progress=False)
        yield f"gopro:{data}"


def row_warmup(config: PoolBenchConfig, engines: int) -> int:
    """Warm-up of one row: at least two results per engine (each engine's first calls are slow)."""
    return min(max(int(config.warmup or 0), 2 * engines), config.count - 2)


def run_config_for(config: PoolBenchConfig, engines: int, folder: Path, source: str) -> RunConfig:
    """The run of one row: ``source`` looped to ``count`` bundles, ``engines`` engines, headless."""
    return RunConfig(
        policy="lossless",
        engines=engines,
        capture=CaptureNodeConfig(source=source, rate="max", loop=True, count=config.count),
        engine=EngineNodeConfig(model=config.model, times=config.times, threads=config.threads),
        display=DisplayConfig(
            sub=EngineNodeConfig().pub,  # wiring placeholder; ``run`` replaces it
            window=False,
            record=folder / "display.mp4",
            summary=folder / "summary.json",
            warmup=row_warmup(config, engines),
        ),
    )


def measure(config: PoolBenchConfig, engines: int, source: str) -> dict[str, Any]:
    """One row: run the pipeline with ``engines`` engines, read the display's summary."""
    from spikereveal.tools.run_cmd import run_pipeline  # starts processes: imported when used

    with tempfile.TemporaryDirectory(prefix=f"bench-pool-{engines}-") as tmp:
        folder = Path(tmp)
        run = run_config_for(config, engines, folder, source)
        log = io.StringIO()
        cpu0 = _children_cpu_s()
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(log):  # the nodes' logs: shown only when the row fails
            outcome = run_pipeline(run, verbose=0)
        wall_s = time.perf_counter() - t0
        cpu_s = _children_cpu_s() - cpu0
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
        "warmup": run.display.warmup,
        "bundles_per_s": float(rate),
        "wall_s": wall_s,
        "wall_bundles_per_s": config.count / wall_s,
        # CPU seconds of every node of the row (capture, engines, display; start-up included)
        # over its wall time: the cores the pipeline held, whatever else ran on the machine.
        "cpu_s": cpu_s,
        "cores_used": cpu_s / wall_s if wall_s > 0 else None,
        "end_to_end_p50_ms": summary.get("end_to_end", {}).get("p50_ms"),
        "duplicates": summary.get("duplicates"),
        "dropped": summary.get("dropped"),
    }


def _children_cpu_s() -> float:
    """User + system CPU seconds of this process's finished children (the row's nodes, once waited)."""
    import resource

    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def median_row(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """One engine count's row from its runs: the run of median rate, with every run's rate beside it."""
    ordered = sorted(runs, key=lambda r: r["bundles_per_s"])
    row = dict(ordered[(len(ordered) - 1) // 2])
    rates = [r["bundles_per_s"] for r in runs]
    row["bundles_per_s"] = statistics.median(rates)
    row["runs_bundles_per_s"] = rates
    return row


def run_pool_bench(config: PoolBenchConfig, progress: bool = False) -> dict[str, Any]:
    """Measure every engine count in turn; returns the JSON payload (rows with ratios to one engine)."""
    machine = machine_info(["pyzmq", "torch"])
    cores = int(machine.get("cpu_usable") or os.cpu_count() or 1)
    runs: dict[int, list[dict[str, Any]]] = {n: [] for n in config.engines}
    with bench_source(config, progress) as source:
        # Rounds over every engine count (1, 2, 4, 1, 2, 4, ...), not each count R times in a row:
        # on a shared machine the load drifts, and interleaving spreads the drift over every row.
        for round_ in range(config.repeats):
            for n in config.engines:
                if progress:
                    click.echo(
                        f"engines={n}: running {config.count} bundles (run {round_ + 1}/{config.repeats}) ...",
                        err=True,
                    )
                runs[n].append(measure(config, n, source))
    rows = [median_row(runs[n]) for n in config.engines]
    base = next((r["bundles_per_s"] for r in rows if r["engines"] == 1), None)
    for row in rows:
        row["ratio"] = row["bundles_per_s"] / base if base else None
        row["efficiency"] = row["ratio"] / row["engines"] if row["ratio"] is not None else None
        row["ceiling"] = config.ceiling(row["engines"], cores)
    return {
        "bench": "pool",
        "machine": machine,
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "config": {**asdict(config), "source": config.describe_source()},
        "method": "spikereveal run (capture, N engines, display as processes), lossless, rate max, "
        "headless, the source looped to count bundles; bundles/s = display fps_out after its warm-up",
        "limit": limit_note(config, cores),
        "rows": rows,
    }


def limit_note(config: PoolBenchConfig, cores: int) -> str:
    """What bounds the ratio on this machine, in one sentence (printed under the table)."""
    threads = "all cores" if config.threads is None else f"{config.threads} thread(s)"
    return (
        f"limit: {cores} usable core(s); each engine runs its model on {threads}, so N engines can use "
        f"at most min(N x threads, {cores}) cores ('ceiling'), less what the capture (reading and "
        "sending each exposure) and the display (encoding every sharp frame into its video) take; "
        "engines beyond that share the cores and the rate stays flat (on a machine shared with other jobs "
        "more engine processes win a larger share of the cores, so a row can pass its ceiling)"
    )


def format_pool_table(payload: dict[str, Any]) -> str:
    """The human summary of :func:`run_pool_bench`'s payload."""

    def num(v: float | None, fmt: str) -> str:
        return "-" if v is None else format(v, fmt)

    rows = [
        [
            str(r["engines"]),
            str(r["results"]),
            f"{r['bundles_per_s']:.2f}"
            + (
                f" ({min(r['runs_bundles_per_s']):.2f}-{max(r['runs_bundles_per_s']):.2f})"
                if len(r.get("runs_bundles_per_s", [])) > 1
                else ""
            ),
            num(r["ratio"], ".2f") + ("x" if r["ratio"] is not None else ""),
            num(r.get("ceiling"), ".1f") + ("x" if r.get("ceiling") is not None else ""),
            num(r["efficiency"], ".0%"),
            num(r.get("cores_used"), ".2f"),
            f"{r['wall_s']:.1f}",
            num(r["end_to_end_p50_ms"], ".1f"),
        ]
        for r in payload["rows"]
    ]
    cfg = payload["config"]
    headers = [
        "engines",
        "results",
        "bundles/s",
        "x 1 engine",
        "ceiling",
        "per engine",
        "cores used",
        "wall s",
        "p50 ms",
    ]
    text = (
        f"engine pool on {cfg['source']} ({cfg['model']}, K={cfg['times']}, lossless, rate max), "
        f"{payload['machine']['cpu_usable']} usable cores\n" + format_table(headers, rows)
    )
    if payload.get("limit"):
        text += "\n" + payload["limit"]
    return text


def plot_pool(payload: dict[str, Any], path: Path) -> Path:
    """Bundles/s against engines, with the ideal line (N x the one-engine rate) and the cores' ceiling."""
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
        if all(r.get("ceiling") is not None for r in rows):
            ax.plot(ns, [r["ceiling"] * base for r in rows], ":", color="red", label="cores' ceiling")
    ax.set_xlabel("engines")
    ax.set_ylabel("bundles / s")
    ax.set_xticks(ns)
    ax.set_title(f"engine pool, {payload['config']['model']}, {payload['machine']['cpu_usable']} cores")
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
    "--source",
    default=None,
    help="Source URI to replay (looped to --count). Default: the built-in pan simulated once at --size "
    "into a temporary dataset, so that simulation stays out of the capture node.",
)
@click.option(
    "--size", type=SIZE, default="64x96", show_default=True, help="Spike size HxW of the simulated dataset."
)
@click.option(
    "--samples",
    type=click.IntRange(min=1),
    default=4,
    show_default=True,
    help="Exposures in the simulated dataset.",
)
@click.option(
    "--count", type=click.IntRange(min=3), default=30, show_default=True, help="Bundles per engine count."
)
@click.option("--times", type=click.IntRange(min=1), default=5, show_default=True, help="Sharp frames K.")
@click.option(
    "--repeats",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="Runs per engine count, interleaved; each row is their median (min-max beside it).",
)
@click.option(
    "--model",
    type=click.Choice(MODELS),
    default="ldn",
    show_default=True,
    help="ldn (default weights): the engine dominates; sdm costs about what the display's video does.",
)
@click.option(
    "--threads",
    type=click.IntRange(min=1),
    default=1,
    show_default=True,
    help="CPU threads per engine's model.",
)
@plot_option()
@json_option("pool", "--out")
def pool_command(
    engines: tuple[int, ...],
    source: str | None,
    size: tuple[int, int],
    samples: int,
    count: int,
    times: int,
    repeats: int,
    model: str,
    threads: int,
    plot: Path | None,
    out: Path,
) -> None:
    """Bundles/s of the real pipeline with 1, 2 and 4 engines on one stream, and the ratio to one."""
    try:
        config = PoolBenchConfig(
            engines=engines,
            count=count,
            size=size,
            times=times,
            model=model,
            threads=threads,
            samples=samples,
            source=source,
            repeats=repeats,
        )
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    payload = run_pool_bench(config, progress=True)
    click.echo(format_pool_table(payload))
    click.echo(f"wrote {write_json(out, payload)}")
    click.echo(f"wrote {plot_pool(payload, plot or out.with_suffix('.png'))}")
