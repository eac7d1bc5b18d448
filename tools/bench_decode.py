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
- ``baseline unpack``: a straightforward NumPy decode (shift every byte by 0..7 and mask, then
  flip), measured in the same run for the ratio.

Frames per second are compared with the sensor's read-out rate (20 kHz by default): a real-time
factor of 1 keeps up exactly. Everything runs on the calling thread (NumPy's unpackbits, sums
and copies are single-threaded).
"""

from __future__ import annotations

import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

import click
import numpy as np

from spikereveal.capture.dat import DatFile
from spikereveal.engine.tfp import tfp_range
from spikereveal.engine.windows import (
    LDN_WINDOW,
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

            first = dat.packed(0, BUNDLE_FRAMES)
            baseline_matches = bool(
                np.array_equal(naive_unpack(first, geometry), unpack_frames(first, geometry))
            )
            timings = {  # work -> Timing
                "unpack": time_repeats(unpack, repeats=config.repeats),
                "exposure": time_repeats(lambda: per_exposure(False), repeats=config.repeats),
                "exposure_batch": time_repeats(lambda: per_exposure(True), repeats=config.repeats),
                "baseline_unpack": time_repeats(baseline, repeats=config.repeats),
            }

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
    return {
        "bench": "decode",
        "machine": machine_info(),
        "threads": 1,
        "threads_note": "NumPy unpackbits, sums and copies run on the calling thread only",
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
            "times": times,
            "decoded_frames": [first_frame, last_frame],
            "rate_hz": config.rate_hz,
            "bundle_budget_ms": 1e3 * BUNDLE_FRAMES / config.rate_hz,
        },
        "repeats": config.repeats,
        "baseline": "naive_unpack: np.right_shift by 0..7 + np.bitwise_and per byte, reshape, flip copy",
        "baseline_matches": baseline_matches,
        "results": results,
        "ratio_unpack_vs_baseline": timings["baseline_unpack"].median_s / timings["unpack"].median_s,
    }


def format_decode_table(payload: dict[str, object]) -> str:
    """The human summary of :func:`run_decode_bench`'s payload."""
    labels = {
        "unpack": "unpack (unpackbits)",
        "exposure": "exposure: unpack + K windows + TFP_long",
        "exposure_batch": "exposure + batch copy of the windows",
        "baseline_unpack": "baseline unpack (shift + mask)",
    }
    rows = []
    for name, label in labels.items():
        r = payload["results"][name]  # type: ignore[index]
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
    """Spike decode speed on one core: unpack, per-exposure windows + TFP, naive baseline."""
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
