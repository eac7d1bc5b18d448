"""``spikereveal bench transport``: one-way latency of a real bundle between two processes.

The message is what a replay sends per blurry frame: a 1000x1600 BGR image and 137 packed spike
frames of 250x400 (12,500 B each), 6.5 MB in all, encoded by ``stream.protocol`` and sent over the
lossless channel of ``stream.transport`` to a receiver in another process (multiprocessing, spawn).
The sender stamps ``time.monotonic_ns()`` just before sending; the receiver stamps on arrival
(after ``recv`` returned the decoded bundle) and records the difference (monotonic time is shared by
all processes on a host). The credit window is 1, so each bundle travels alone: this is latency,
not queueing behind the previous bundle.

Paths: tcp loopback and ipc, each zero-copy (``copy=False``: pyzmq hands the numpy buffers to
libzmq) and copy (pyzmq copies into and out of ZeroMQ messages). Baseline, measured in the same
run between the transport runs: a plain memcpy of the same bytes (``np.copyto`` into preallocated
arrays) and ``np.copy`` (fresh arrays, so page faults included, as a receiver pays them).

Goal: p50 <= 3 ms and p99 <= 10 ms for the bundle over tcp loopback (zero-copy).
"""

from __future__ import annotations

import multiprocessing as mp
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import click
import numpy as np
import zmq

from spikereveal.stream.latency import percentiles_ms
from spikereveal.stream.protocol import Bundle
from spikereveal.stream.spikes import SpikeGeometry
from spikereveal.stream.transport import LosslessReceiver, LosslessSender, SocketConfig
from spikereveal.tools.bench_common import format_table, json_option, machine_info, write_json
from spikereveal.tools.cli_types import SIZE

TRANSPORTS = ("tcp", "ipc")
MODES = ("zero-copy", "copy")
GOAL_P50_MS = 3.0
GOAL_P99_MS = 10.0
GOAL_SIZES = ((1000, 1600), (250, 400), 137)  # the goal is stated for the real RSB bundle only


@dataclass(frozen=True)
class TransportBenchConfig:
    """Sizes and counts of one ``bench transport`` run."""

    rgb: tuple[int, int] = (1000, 1600)
    spikes: tuple[int, int] = (250, 400)
    spike_frames: int = 137
    iterations: int = 200  # bundles per path per run
    runs: int = 3
    warmup: int = 20  # bundles per path before the first run, not recorded
    transports: tuple[str, ...] = TRANSPORTS
    modes: tuple[str, ...] = MODES
    seed: int = 0
    timeout_s: float = 60.0  # per message: a stuck receiver ends the bench instead of hanging it

    paths: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        for name, chosen, allowed in (
            ("transports", self.transports, TRANSPORTS),
            ("modes", self.modes, MODES),
        ):
            unknown = sorted(set(chosen) - set(allowed))
            if unknown or not chosen:
                raise ValueError(f"{name}: got {list(chosen)}, expected some of {list(allowed)}")
        if min(self.iterations, self.runs, self.spike_frames) < 1 or self.warmup < 0:
            raise ValueError("iterations, runs and spike_frames must be >= 1 and warmup >= 0")
        object.__setattr__(self, "paths", tuple(f"{t}/{m}" for t in self.transports for m in self.modes))

    @property
    def messages_per_path(self) -> int:
        return self.warmup + self.runs * self.iterations


def make_bundle(config: TransportBenchConfig) -> Bundle:
    """A bundle of the configured sizes filled with random bytes (content does not matter)."""
    rng = np.random.default_rng(config.seed)
    geometry = SpikeGeometry(*config.spikes)
    h, w = config.rgb
    t = config.spike_frames
    return Bundle(
        seq=0,
        source_id="bench",
        blur=rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        spikes_packed=rng.integers(0, 256, (t, geometry.frame_bytes), dtype=np.uint8),
        geometry=geometry,
        exposure=(min(20, t - 1), max(min(20, t - 1), t - 21)),
        spike_rate_hz=20_000.0,
    )


def _receive(endpoint: str, zero_copy: bool, count: int, timeout_s: float, conn: Any) -> None:
    """Receiver process: one-way latency (ns) of ``count`` bundles, sent back through ``conn``."""
    latencies = []
    config = SocketConfig(zero_copy=zero_copy)
    with LosslessReceiver(endpoint, node="bench-receiver", window=1, config=config) as receiver:
        for _ in range(count):
            msg = receiver.recv(timeout_s=timeout_s)
            arrived = time.monotonic_ns()
            if msg is None:
                break
            latencies.append(arrived - msg.stamps[-1][1])
        receiver.recv(timeout_s=0.0)  # acknowledge the last bundle so the sender can flush
    conn.send(latencies)
    conn.close()


class _Path:
    """One sender socket and its receiver process."""

    def __init__(
        self, name: str, config: TransportBenchConfig, ctx: mp.context.BaseContext, tmp: str
    ) -> None:
        transport, mode = name.split("/")
        self.name = name
        zero_copy = mode == "zero-copy"
        endpoint = "tcp://127.0.0.1:*" if transport == "tcp" else f"ipc://{tmp}/{transport}-{mode}.sock"
        self.sender = LosslessSender(endpoint, node="bench-sender", config=SocketConfig(zero_copy=zero_copy))
        self.results, child_conn = ctx.Pipe(duplex=False)
        self.proc = ctx.Process(
            target=_receive,
            args=(self.sender.endpoint, zero_copy, config.messages_per_path, config.timeout_s, child_conn),
            daemon=True,
        )
        self.proc.start()
        child_conn.close()
        self.seq = 0

    def send(self, bundle: Bundle, n: int, timeout_s: float) -> None:
        for _ in range(n):
            if not self.sender.wait_for_credit(timeout_s):
                raise RuntimeError(
                    f"{self.name}: receiver did not ask for bundle {self.seq} within {timeout_s} s"
                )
            self.sender.send(bundle.stamped("send"), timeout_s=timeout_s)  # stamp after the wait
            self.seq += 1

    def finish(self, timeout_s: float) -> list[int]:
        self.sender.flush(timeout_s)
        latencies = self.results.recv() if self.results.poll(timeout_s) else []
        self.proc.join(timeout_s)
        return latencies

    def close(self) -> None:
        self.sender.close()
        if self.proc.is_alive():
            self.proc.terminate()
            self.proc.join(5)
            if self.proc.is_alive():
                self.proc.kill()


def _memcpy_runs(bundle: Bundle, iterations: int) -> tuple[list[int], list[int]]:
    """ns per bundle for np.copyto into preallocated arrays, and for np.copy (fresh arrays)."""
    dst_blur, dst_spikes = np.empty_like(bundle.blur), np.empty_like(bundle.spikes_packed)
    copyto, fresh = [], []
    for _ in range(iterations):
        t0 = time.perf_counter_ns()
        np.copyto(dst_blur, bundle.blur)
        np.copyto(dst_spikes, bundle.spikes_packed)
        t1 = time.perf_counter_ns()
        a, b = bundle.blur.copy(), bundle.spikes_packed.copy()
        t2 = time.perf_counter_ns()
        del a, b
        copyto.append(t1 - t0)
        fresh.append(t2 - t1)
    return copyto, fresh


def _summarise(per_run: list[list[int]]) -> dict[str, Any]:
    """Pooled percentiles over all runs, plus each run's and the median/spread of run p50s."""
    runs = [percentiles_ms(r) for r in per_run]
    p50s = [r["p50_ms"] for r in runs if r["n"]]
    pooled = percentiles_ms([x for r in per_run for x in r])
    return {
        **pooled,
        "median_run_p50_ms": float(np.median(p50s)) if p50s else None,
        "run_p50_min_ms": min(p50s) if p50s else None,
        "run_p50_max_ms": max(p50s) if p50s else None,
        "runs": runs,
    }


def run_transport_bench(config: TransportBenchConfig, progress: bool = False) -> dict[str, Any]:
    """Measure every path and the memcpy baselines, interleaved run by run; returns the JSON payload."""
    bundle = make_bundle(config)
    nbytes = bundle.blur.nbytes + bundle.spikes_packed.nbytes
    ctx = mp.get_context("spawn")
    copyto_runs: list[list[int]] = []
    fresh_runs: list[list[int]] = []
    with tempfile.TemporaryDirectory(prefix="bench-transport-") as tmp:
        paths: list[_Path] = []
        try:
            for name in config.paths:
                paths.append(_Path(name, config, ctx, tmp))
            for path in paths:
                path.send(bundle, config.warmup, config.timeout_s)
            _memcpy_runs(bundle, max(1, config.warmup))  # warm the baseline too
            for run in range(config.runs):
                copyto, fresh = _memcpy_runs(bundle, config.iterations)
                copyto_runs.append(copyto)
                fresh_runs.append(fresh)
                for path in paths:
                    path.send(bundle, config.iterations, config.timeout_s)
                if progress:
                    click.echo(f"run {run + 1}/{config.runs} done", err=True)
            latencies = {path.name: path.finish(config.timeout_s) for path in paths}
        finally:
            for path in paths:
                path.close()

    results: dict[str, Any] = {}
    for name, values in latencies.items():
        if len(values) != config.messages_per_path:
            raise RuntimeError(f"{name}: received {len(values)} of {config.messages_per_path} bundles")
        recorded = values[config.warmup :]
        per_run = [recorded[i * config.iterations : (i + 1) * config.iterations] for i in range(config.runs)]
        results[name] = _summarise(per_run)
    memcpy = _summarise(copyto_runs)
    fresh_copy = _summarise(fresh_runs)
    for entry in results.values():
        entry["ratio_p50_vs_memcpy"] = entry["p50_ms"] / memcpy["p50_ms"] if memcpy["p50_ms"] else None
        entry["throughput_gb_s_at_p50"] = nbytes / (entry["p50_ms"] * 1e6) if entry["p50_ms"] else None
    goal = None
    if "tcp/zero-copy" in results and (config.rgb, config.spikes, config.spike_frames) == GOAL_SIZES:
        tcp = results["tcp/zero-copy"]
        goal = {
            "path": "tcp/zero-copy",
            "p50_ms": tcp["p50_ms"],
            "p99_ms": tcp["p99_ms"],
            "p50_goal_ms": GOAL_P50_MS,
            "p99_goal_ms": GOAL_P99_MS,
            "met": bool(tcp["p50_ms"] <= GOAL_P50_MS and tcp["p99_ms"] <= GOAL_P99_MS),
        }
    return {
        "bench": "transport",
        "machine": machine_info(["pyzmq", "msgpack"]),
        "libzmq": zmq.zmq_version(),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "config": {k: v for k, v in asdict(config).items() if k != "paths"},
        "sizes": {
            "rgb": list(config.rgb),
            "spikes": list(config.spikes),
            "spike_frames": config.spike_frames,
            "frame_bytes": bundle.geometry.frame_bytes,
            "blur_bytes": bundle.blur.nbytes,
            "spike_bytes": bundle.spikes_packed.nbytes,
            "bundle_bytes": nbytes,
        },
        "method": "one-way: sender monotonic_ns before send -> receiver monotonic_ns after recv+decode; "
        "credit window 1 (no queueing); baseline in the same run between transport runs",
        "baseline": {"memcpy": memcpy, "np_copy_fresh": fresh_copy},
        "results": results,
        "goal": goal,
    }


def format_transport_table(payload: dict[str, Any]) -> str:
    """The human summary of :func:`run_transport_bench`'s payload."""
    rows = []

    def row(label: str, r: dict[str, Any], ratio: float | None) -> list[str]:
        spread = f"{r['run_p50_min_ms']:.3f}..{r['run_p50_max_ms']:.3f}"
        return [
            label,
            str(r["n"]),
            f"{r['p50_ms']:.3f}",
            f"{r['p95_ms']:.3f}",
            f"{r['p99_ms']:.3f}",
            f"{r['max_ms']:.3f}",
            spread,
            "-" if ratio is None else f"{ratio:.1f}x",
        ]

    for name, r in payload["results"].items():
        rows.append(row(name, r, r["ratio_p50_vs_memcpy"]))
    base = payload["baseline"]
    rows.append(row("baseline memcpy (np.copyto)", base["memcpy"], 1.0))
    fresh = base["np_copy_fresh"]
    rows.append(row("np.copy (fresh arrays)", fresh, fresh["p50_ms"] / base["memcpy"]["p50_ms"]))
    sizes = payload["sizes"]
    headers = ["path", "n", "p50 ms", "p95 ms", "p99 ms", "max ms", "run p50 spread", "x memcpy"]
    h, w = sizes["rgb"]
    sh, sw = sizes["spikes"]
    text = (
        f"one-way latency of a bundle: {h}x{w} BGR + {sizes['spike_frames']} spike frames {sh}x{sw} "
        f"({sizes['bundle_bytes'] / 1e6:.2f} MB), {payload['config']['runs']} runs x "
        f"{payload['config']['iterations']} after {payload['config']['warmup']} warm-up\n"
        + format_table(headers, rows)
    )
    goal = payload["goal"]
    if goal is not None:
        verdict = "met" if goal["met"] else "NOT met"
        text += (
            f"\ngoal tcp loopback p50 <= {goal['p50_goal_ms']:g} ms, p99 <= {goal['p99_goal_ms']:g} ms: {verdict} "
            f"(p50 {goal['p50_ms']:.2f} ms, p99 {goal['p99_ms']:.2f} ms)"
        )
    return text


@click.command("transport")
@click.option("--rgb", type=SIZE, default="1000x1600", show_default=True, help="RGB frame size HxW.")
@click.option("--spikes", type=SIZE, default="250x400", show_default=True, help="Spike frame size HxW.")
@click.option("--spike-frames", type=click.IntRange(min=1), default=137, show_default=True)
@click.option(
    "--iterations", type=click.IntRange(min=1), default=200, show_default=True, help="Bundles per run."
)
@click.option("--runs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--warmup", type=click.IntRange(min=0), default=20, show_default=True)
@click.option(
    "--transport",
    "transports",
    type=click.Choice(TRANSPORTS),
    multiple=True,
    default=TRANSPORTS,
    show_default=True,
)
@click.option("--mode", "modes", type=click.Choice(MODES), multiple=True, default=MODES, show_default=True)
@json_option("transport", "--out")
def transport_command(transports: tuple[str, ...], modes: tuple[str, ...], out: Path, **sizes: Any) -> None:
    """One-way latency of a bundle over tcp and ipc (zero-copy and copy) vs memcpy."""
    # The option names are the config's field names: ``sizes`` holds rgb, spikes, spike_frames,
    # iterations, runs and warmup as parsed; a path or mode given twice is measured once.
    config = TransportBenchConfig(
        transports=tuple(dict.fromkeys(transports)), modes=tuple(dict.fromkeys(modes)), **sizes
    )
    try:
        SpikeGeometry(*config.spikes)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--spikes") from None
    payload = run_transport_bench(config, progress=True)
    click.echo(format_transport_table(payload))
    click.echo(f"wrote {write_json(out, payload)}")
