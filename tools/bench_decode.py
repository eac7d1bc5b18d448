"""``spikereveal bench decode``: how fast the spike decode path runs on one CPU core.

A synthetic stream (random bits; unpacking does not depend on the data) is written to a temporary
``.dat`` file and memory-mapped, as a replayed recording would be. Timed, per 137-frame bundle
(GOPRO-spike convention: exposure frames 20..116):

- ``unpack``: decode the bundle to (137, H, W) uint8 (:func:`unpack_frames`);
- ``exposure``: what the engine does per blurry frame before the network: decode the frames the
  models read (:func:`frames_needed`: 10..126 for K=5), cut the K 21-frame LDN windows (each a
  contiguous view of the decoded block, as :func:`spike_window` returns them) and the TFP over
  the whole exposure;
- ``exposure + batch copy``: the same with the K windows copied into one (K, 21, H, W) array
  (what a batched backend input costs before its float conversion);
- the full per-exposure inputs of the models, each measured twice, in NumPy (the project's
  CPU functions: :func:`unpack_frames`, then :func:`spike_window`, ``ldn_inputs``' float cast,
  :func:`tfp_range`, :func:`tfp`) and in one pass from the packed bytes
  (:func:`~spikereveal.engine.cpu_decode.decode_exposure`, Numba, single-threaded):
  ``sdm``: TFP_long + the K 9-frame TFP_short (what SDM and the density estimate read);
  ``full``: those plus the K 21-frame windows as one (K, 21, h, w) uint8 batch;
  ``ldn``: those plus the windows as the LDN's float32 input. The one-pass forms write into a
  buffer kept across bundles, as a backend's input buffer is;
- ``baseline unpack``: a straightforward NumPy decode (shift every byte by 0..7 and mask, then
  flip), measured in the same run for the ratio.

Frames per second are compared with the sensor's read-out rate (20 kHz by default): a real-time
factor of 1 keeps up exactly. Everything runs on the calling thread (NumPy's unpackbits, sums
and copies are single-threaded; the Numba pass has no parallel loop, and Numba's thread count is
set to 1 besides). A PNG plot (ms per bundle of each run, and the real-time factors) is written
beside the JSON.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import numpy as np

from spikereveal.capture.dat import DatFile
from spikereveal.engine import cpu_decode
from spikereveal.engine.tfp import tfp, tfp_range
from spikereveal.engine.windows import (
    LDN_WINDOW,
    SDM_SHORT_WINDOW,
    default_exposure,
    exposure_times,
    frames_needed,
    spike_window,
)
from spikereveal.stream.spikes import SpikeGeometry, unpack_frames
from spikereveal.tools.bench_common import format_table, json_option, machine_info, time_repeats, write_json
from spikereveal.tools.cli_types import SIZE

#: Spike frames per blurry frame in the GOPRO-spike convention (20 + 97 + 20).
BUNDLE_FRAMES = 137
#: The issue's goal for the full per-exposure path on one core (x real time).
GOAL_REALTIME = 5.0
#: Each one-pass work and the NumPy form of the same work it is compared with.
ONE_PASS_PAIRS = {"one_pass_sdm": "numpy_sdm", "one_pass_full": "numpy_full", "one_pass_ldn": "numpy_ldn"}
LABELS = {
    "unpack": "unpack (unpackbits)",
    "exposure": "exposure: unpack + K windows (views) + TFP_long",
    "exposure_batch": "exposure + batch copy of the windows",
    "numpy_sdm": "numpy sdm: unpack + TFP_long + K TFP_short",
    "one_pass_sdm": "one-pass sdm: TFP_long + K TFP_short counts",
    "numpy_full": "numpy full: unpack + K uint8 windows + TFPs",
    "one_pass_full": "one-pass full: K uint8 windows + TFP counts",
    "numpy_ldn": "numpy ldn: unpack + K float32 windows + TFPs",
    "one_pass_ldn": "one-pass ldn: K float32 windows + TFP counts",
    "baseline_unpack": "baseline unpack (shift + mask)",
}


@dataclass(frozen=True)
class DecodeBenchConfig:
    """Sizes of one ``bench decode`` run."""

    height: int = 250
    width: int = 400
    frames: int = 20 * BUNDLE_FRAMES
    repeats: int = 7
    rate_hz: float = 20_000.0
    outputs: int = 5  # K output frames per exposure
    seed: int = 0

    @property
    def bundles(self) -> int:
        return self.frames // BUNDLE_FRAMES


def naive_unpack(packed: np.ndarray, geometry: SpikeGeometry) -> np.ndarray:
    """Baseline decode: shift each byte right by 0..7 and mask (one uint8 per bit), reshape, flip.

    The obvious NumPy formulation without ``np.unpackbits``; same output as :func:`unpack_frames`.
    """
    t = packed.shape[0]
    shifts = np.arange(8, dtype=np.uint8)
    bits = np.bitwise_and(np.right_shift(packed[:, :, None], shifts), np.uint8(1))
    frames = bits.reshape(t, geometry.height, geometry.row_bits)[:, :, : geometry.width]
    if geometry.flip:
        frames = frames[:, ::-1]
    return np.ascontiguousarray(frames)


def _write_random_dat(path: Path, geometry: SpikeGeometry, frames: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    with open(path, "wb") as out:
        for start in range(0, frames, BUNDLE_FRAMES):
            n = min(BUNDLE_FRAMES, frames - start)
            out.write(rng.integers(0, 256, size=(n, geometry.frame_bytes), dtype=np.uint8).tobytes())


def run_decode_bench(config: DecodeBenchConfig) -> dict[str, object]:
    """Time the decode path as described in the module docstring; returns the JSON payload."""
    if config.bundles < 1:
        raise ValueError(f"need at least {BUNDLE_FRAMES} frames (one bundle), got {config.frames}")
    geometry = SpikeGeometry(config.height, config.width)
    exposure = default_exposure(BUNDLE_FRAMES)
    times = exposure_times(*exposure, config.outputs)
    frames = config.bundles * BUNDLE_FRAMES
    starts = range(0, frames, BUNDLE_FRAMES)

    with tempfile.TemporaryDirectory(prefix="bench-decode-") as tmp:
        path = Path(tmp) / "stream.dat"
        _write_random_dat(path, geometry, frames, config.seed)
        with DatFile(path, geometry) as dat:

            def unpack() -> None:
                for s in starts:
                    unpack_frames(dat.packed(s, s + BUNDLE_FRAMES), geometry)

            def baseline() -> None:
                for s in starts:
                    naive_unpack(dat.packed(s, s + BUNDLE_FRAMES), geometry)

            first_frame, last_frame = frames_needed(exposure, times, LDN_WINDOW)
            span_exposure = (exposure[0] - first_frame, exposure[1] - first_frame)
            span_times = [t - first_frame for t in times]

            def per_exposure(batch: bool) -> None:
                for s in starts:
                    block = unpack_frames(dat.packed(s + first_frame, s + last_frame + 1), geometry)
                    windows = [spike_window(block, t, LDN_WINDOW) for t in span_times]
                    if batch:
                        np.stack(windows)
                    tfp_range(block, *span_exposure)

            def numpy_inputs(windows: str) -> None:
                for s in starts:
                    block = unpack_frames(dat.packed(s + first_frame, s + last_frame + 1), geometry)
                    if windows != "none":
                        batch = np.stack([spike_window(block, t, LDN_WINDOW) for t in span_times])
                        if windows == "float32":
                            batch.astype(np.float32)  # ldn_inputs' cast (its scale is a further pass)
                    tfp_range(block, *span_exposure)
                    for t in span_times:
                        tfp(block, t, SDM_SHORT_WINDOW)

            k = len(times)
            buffers = {
                np.uint8: np.empty((k, LDN_WINDOW, geometry.height, geometry.width), np.uint8),
                np.float32: np.empty((k, LDN_WINDOW, geometry.height, geometry.width), np.float32),
            }

            def one_pass(dtype: type | None) -> None:
                for s in starts:
                    cpu_decode.decode_exposure(
                        dat.packed(s, s + BUNDLE_FRAMES),
                        geometry,
                        exposure,
                        times,
                        window=None if dtype is None else LDN_WINDOW,
                        dtype=dtype or np.float32,
                        windows_out=None if dtype is None else buffers[dtype],
                    )

            first = dat.packed(0, BUNDLE_FRAMES)
            baseline_matches = bool(
                np.array_equal(naive_unpack(first, geometry), unpack_frames(first, geometry))
            )
            works = {
                "unpack": unpack,
                "exposure": lambda: per_exposure(False),
                "exposure_batch": lambda: per_exposure(True),
                "numpy_sdm": lambda: numpy_inputs("none"),
                "numpy_full": lambda: numpy_inputs("uint8"),
                "numpy_ldn": lambda: numpy_inputs("float32"),
            }
            one_pass_matches = None
            if cpu_decode.AVAILABLE:
                one_pass_matches = _one_pass_matches(first, geometry, exposure, times)
                previous_threads = _numba_threads(1)
                works |= {
                    "one_pass_sdm": lambda: one_pass(None),
                    "one_pass_full": lambda: one_pass(np.uint8),
                    "one_pass_ldn": lambda: one_pass(np.float32),
                }
            works["baseline_unpack"] = baseline
            try:
                timings = {name: time_repeats(work, repeats=config.repeats) for name, work in works.items()}
            finally:
                if cpu_decode.AVAILABLE:
                    _numba_threads(previous_threads)

    results: dict[str, object] = {}
    for name, timing in timings.items():
        fps = timing.per_second(frames)
        results[name] = {
            **timing.to_dict(),
            "frames": frames,
            "frames_per_s": fps,
            "realtime_factor": fps / config.rate_hz,
            "ms_per_bundle": 1e3 * timing.median_s / config.bundles,
        }
    ratios = {
        name: {
            "versus": numpy_name,
            "ratio_vs_numpy": timings[numpy_name].median_s / timings[name].median_s,
            "ratio_vs_exposure": timings["exposure"].median_s / timings[name].median_s,
        }
        for name, numpy_name in ONE_PASS_PAIRS.items()
        if name in timings
    }
    return {
        "bench": "decode",
        "machine": machine_info(packages=["numba"]),
        "threads": 1,
        "threads_note": "NumPy unpackbits, sums and copies run on the calling thread only; the Numba "
        "one-pass decode has no parallel loop and numba.set_num_threads(1) is set while it is timed",
        "load_average_1min": _load_average(),
        "config": asdict(config),
        "sizes": {
            "height": geometry.height,
            "width": geometry.width,
            "frame_bytes": geometry.frame_bytes,
            "frames": frames,
            "bundle_frames": BUNDLE_FRAMES,
            "bundles": config.bundles,
            "exposure": list(exposure),
            "window": LDN_WINDOW,
            "short_window": SDM_SHORT_WINDOW,
            "times": times,
            "decoded_frames": [first_frame, last_frame],
            "rate_hz": config.rate_hz,
            "bundle_budget_ms": 1e3 * BUNDLE_FRAMES / config.rate_hz,
        },
        "repeats": config.repeats,
        "baseline": "naive_unpack: np.right_shift by 0..7 + np.bitwise_and per byte, reshape, flip copy",
        "baseline_matches": baseline_matches,
        "one_pass_available": cpu_decode.AVAILABLE,
        "one_pass_matches": one_pass_matches,
        "goal_realtime_factor": GOAL_REALTIME,
        "results": results,
        "ratio_unpack_vs_baseline": timings["baseline_unpack"].median_s / timings["unpack"].median_s,
        "one_pass_ratios": ratios,
    }


def _one_pass_matches(
    packed: np.ndarray, geometry: SpikeGeometry, exposure: tuple[int, int], times: list[int]
) -> bool:
    """Whether the one-pass outputs equal the NumPy ones on this run's first bundle (a sanity check)."""
    spikes = unpack_frames(packed, geometry)
    got = cpu_decode.decode_exposure(packed, geometry, exposure, times)
    windows = np.stack([spike_window(spikes, t, LDN_WINDOW) for t in times]).astype(np.float32)
    shorts = np.stack([tfp(spikes, t, SDM_SHORT_WINDOW) for t in times])
    return bool(
        np.array_equal(got.windows, windows)
        and np.array_equal(got.tfp_long(), tfp_range(spikes, *exposure))
        and np.array_equal(got.tfp_short(), shorts)
    )


def _numba_threads(n: int) -> int:
    """Set Numba's thread count (for any parallel region); returns the previous one."""
    import numba

    previous = numba.get_num_threads()
    numba.set_num_threads(n)
    return previous


def _load_average() -> float | None:
    try:
        return os.getloadavg()[0]
    except OSError:
        return None


def plot_decode(payload: dict[str, object], path: Path) -> Path:
    """PNG: ms per bundle of every timed run (box per work, the budgets as lines) and x real time."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    results: dict[str, dict[str, object]] = payload["results"]  # type: ignore[assignment]
    sizes: dict[str, object] = payload["sizes"]  # type: ignore[assignment]
    names = list(results)
    bundles = float(sizes["bundles"])  # type: ignore[arg-type]
    per_bundle = [[1e3 * s / bundles for s in results[n]["seconds"]] for n in names]  # type: ignore[union-attr]
    budget = float(sizes["bundle_budget_ms"])  # type: ignore[arg-type]
    labels = [LABELS.get(n, n) for n in names]
    colors = ["tab:green" if n.startswith("one_pass") else "tab:blue" for n in names]
    fig, (left, right) = plt.subplots(1, 2, figsize=(13, 0.45 * len(names) + 2.2), sharey=True)
    box = left.boxplot(per_bundle, orientation="horizontal", patch_artist=True, widths=0.6)
    for patch, color in zip(box["boxes"], colors, strict=True):
        patch.set_facecolor(color)
        patch.set_alpha(0.5)
    left.axvline(budget, color="tab:red", linestyle="--", label=f"real time ({budget:.2f} ms)")
    left.axvline(
        budget / GOAL_REALTIME, color="tab:orange", linestyle=":", label=f"{GOAL_REALTIME:.0f}x real time"
    )
    left.set_yticks(range(1, len(names) + 1), labels, fontsize=8)
    left.set_xlabel("ms per 137-frame bundle (one value per timed run)")
    left.set_xscale("log")
    left.legend(fontsize=8, loc="lower right")
    factors = [float(results[n]["realtime_factor"]) for n in names]  # type: ignore[arg-type]
    right.barh(range(1, len(names) + 1), factors, color=colors, alpha=0.7)
    for y, f in enumerate(factors, start=1):
        right.text(f, y, f" {f:.2f}x", va="center", fontsize=8)
    right.axvline(1.0, color="tab:red", linestyle="--")
    right.axvline(GOAL_REALTIME, color="tab:orange", linestyle=":")
    right.set_xlabel(f"x real time at {float(sizes['rate_hz']):.0f} Hz (median), one core")  # type: ignore[arg-type]
    right.invert_yaxis()
    fig.suptitle(
        f"spikereveal bench decode: {sizes['height']}x{sizes['width']}, K={len(sizes['times'])}, "  # type: ignore[arg-type]
        f"{payload['repeats']} runs of {sizes['bundles']} bundles; green = one pass from packed bytes"
    )
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def format_decode_table(payload: dict[str, object]) -> str:
    """The human summary of :func:`run_decode_bench`'s payload."""
    rows = []
    for name, r in payload["results"].items():  # type: ignore[union-attr]
        label = LABELS.get(name, name)
        rows.append(
            [
                label,
                r["frames"],
                f"{1e3 * r['median_s']:.1f}",
                f"{1e3 * r['min_s']:.1f}..{1e3 * r['max_s']:.1f}",
                f"{r['ms_per_bundle']:.2f}",
                f"{r['frames_per_s']:,.0f}",
                f"{r['realtime_factor']:.2f}x",
            ]
        )
    sizes = payload["sizes"]
    headers = ["work", "frames", "median ms", "min..max ms", "ms/bundle", "frames/s", "x real time"]
    return (
        f"spike decode, {sizes['height']}x{sizes['width']}, {payload['repeats']} runs, 1 thread, "  # type: ignore[index]
        f"real time = {sizes['rate_hz']:.0f} Hz ({sizes['bundle_budget_ms']:.2f} ms per 137-frame bundle)\n"  # type: ignore[index]
        + format_table(headers, rows)
        + f"\nunpack vs baseline: {payload['ratio_unpack_vs_baseline']:.1f}x faster"
        + "".join(
            f"\n{LABELS[name].split(':')[0]}: {r['ratio_vs_numpy']:.2f}x the NumPy form, "
            f"{r['ratio_vs_exposure']:.2f}x today's exposure path"
            for name, r in payload["one_pass_ratios"].items()  # type: ignore[union-attr]
        )
        + (
            f"\nload average (1 min) at the end: {payload['load_average_1min']:.2f}"
            if payload.get("load_average_1min") is not None
            else ""
        )
    )


@click.command("decode")
@click.option("--size", type=SIZE, default="250x400", show_default=True, help="Spike frame size HxW.")
@click.option(
    "--frames",
    type=click.IntRange(min=BUNDLE_FRAMES),
    default=DecodeBenchConfig.frames,
    show_default=True,
    help="Frames in the synthetic stream (used in whole 137-frame bundles).",
)
@click.option(
    "--repeats", type=click.IntRange(min=1), default=7, show_default=True, help="Timed runs of each work."
)
@click.option("--rate-hz", type=click.FloatRange(min=0, min_open=True), default=20_000.0, show_default=True)
@click.option(
    "--outputs", "-k", type=click.IntRange(min=1), default=5, show_default=True, help="Output frames K."
)
@click.option("--seed", type=int, default=0, show_default=True)
@json_option("decode")
def decode_command(
    size: tuple[int, int], frames: int, repeats: int, rate_hz: float, outputs: int, seed: int, json_path: Path
) -> None:
    """Spike decode speed on one core: NumPy and one-pass per-exposure inputs, naive baseline."""
    config = DecodeBenchConfig(
        height=size[0],
        width=size[1],
        frames=frames,
        repeats=repeats,
        rate_hz=rate_hz,
        outputs=outputs,
        seed=seed,
    )
    payload = run_decode_bench(config)
    click.echo(format_decode_table(payload))
    click.echo(f"wrote {write_json(json_path, payload)}")
    click.echo(f"wrote {plot_decode(payload, json_path.with_suffix('.png'))}")
