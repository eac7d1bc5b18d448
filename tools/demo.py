"""``spikereveal demo``: the whole offline job on the built-in sample, with pictures and numbers.

It simulates a spike camera watching the built-in panning scene (deterministic, no downloads,
nothing from ../shared), deblurs each blurry frame into K sharp frames with the LDN on the
project's own default weights and with SDM, and writes what a person wants to see: the LDN's
sharp sequence, a contact sheet (blur | SDM | LDN | ground truth) and a PSNR/SSIM table against
ground truth. The scene's photo (astronaut) is one the default weights never trained on.
"""

from __future__ import annotations

import dataclasses
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import click
import numpy as np

from spikereveal.capture.images import write_image
from spikereveal.tools.contact_sheet import contact_sheet
from spikereveal.tools.deblur_cmd import write_sequence
from spikereveal.tools.metrics import psnr, ssim

log = logging.getLogger(__name__)

METHODS = ("blur", "sdm", "ldn")


@dataclass
class Scores:
    """PSNR/SSIM per method, accumulated over samples and times."""

    psnr: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METHODS})
    ssim: dict[str, list[float]] = field(default_factory=lambda: {m: [] for m in METHODS})

    def add(self, method: str, estimate: np.ndarray, truth: np.ndarray) -> None:
        self.psnr[method].append(psnr(estimate, truth))
        self.ssim[method].append(ssim(estimate, truth))

    def table(self) -> dict[str, dict[str, float | int]]:
        return {
            m: {
                "psnr_db": float(np.mean(self.psnr[m])),
                "ssim": float(np.mean(self.ssim[m])),
                "n": len(self.psnr[m]),
            }
            for m in METHODS
            if self.psnr[m]
        }


def format_table(table: dict[str, dict[str, float | int]]) -> str:
    lines = [f"{'method':<8}{'PSNR (dB)':>11}{'SSIM':>8}{'frames':>8}"]
    lines += [f"{m:<8}{r['psnr_db']:>11.2f}{r['ssim']:>8.3f}{r['n']:>8d}" for m, r in table.items()]
    return "\n".join(lines)


@click.command("demo")
@click.option(
    "--out", "out_dir", default=Path("build/demo"), type=click.Path(path_type=Path), show_default=True
)
@click.option(
    "--samples", default=2, show_default=True, type=click.IntRange(min=1), help="Blurry frames to make."
)
@click.option(
    "--times", "count", default=5, show_default=True, type=click.IntRange(min=1), help="Sharp frames each."
)
@click.option("--vth", default=1.0, show_default=True, type=click.FloatRange(min=0, min_open=True))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option(
    "--weights",
    type=click.Path(path_type=Path),
    default=None,
    help="LDN weights to compare (default: the project's own default weights).",
)
@click.option("--backend", type=click.Choice(["torch", "onnxruntime"]), default="torch", show_default=True)
@click.option(
    "--live/--no-live",
    default=True,
    show_default=True,
    help="Then stream the sample through capture -> engine -> display processes.",
)
@click.option(
    "--live-count", default=16, show_default=True, type=click.IntRange(min=1), help="Exposures to stream."
)
def demo_command(
    out_dir: Path,
    samples: int,
    count: int,
    vth: float,
    seed: int,
    weights: Path | None,
    backend: str,
    live: bool,
    live_count: int,
) -> None:
    """Simulate the built-in sample, deblur it, write pictures and a PSNR/SSIM table, then stream it live."""
    from spikereveal.capture.datasets import open_dataset
    from spikereveal.capture.scenes import pan_scene
    from spikereveal.engine.deblur import (
        default_model,
        ldn_weights,
        make_deblurrer,
        missing_default_message,
        to_uint8,
    )
    from spikereveal.engine.windows import exposure_times
    from spikereveal.tools.simulate import SimulationConfig, simulate_dataset

    config = SimulationConfig(vth=vth, seed=seed, sharp_times=None)  # keep every ground-truth frame
    data_dir = out_dir / "data"
    frames = pan_scene(samples * config.frames_per_sample, config.blur_size)
    simulate_dataset(frames, config, data_dir, samples=samples, source="builtin:pan", overwrite=True)
    dataset = open_dataset(data_dir)

    sdm = make_deblurrer("sdm")
    if default_model(weights) == "ldn":
        weights = ldn_weights(weights)  # None / "default": the shipped weights
        ldn = make_deblurrer("ldn", weights=weights, backend=backend)
    else:  # a tree where `make default-weights` has not run: still a demo, and it says why
        ldn = None
        click.echo(f"note: {missing_default_message()}; the demo shows SDM only.")
    scores = Scores()
    sheet_path = out_dir / "contact_sheet.png"
    for i, sample in enumerate(dataset):
        times = exposure_times(*sample.exposure, count)
        estimates = {"sdm": to_uint8(sdm.sequence(sample.blur, sample.spikes, sample.exposure, times))}
        if ldn is not None:
            estimates["ldn"] = to_uint8(ldn.sequence(sample.blur, sample.spikes, sample.exposure, times))
        best = "ldn" if ldn is not None else "sdm"
        write_sequence(
            out_dir / "sharp" / sample.name,
            estimates[best],
            times,
            {"model": best, "sample": sample.name, "exposure": list(sample.exposure)},
        )
        truths = [sample.sharp.get(t) for t in times]
        for k, truth in enumerate(truths):
            if truth is None:
                continue
            scores.add("blur", sample.blur, truth)
            for method, frames in estimates.items():
                scores.add(method, frames[k], truth)
        if i == 0:
            columns = [
                ("blur", [sample.blur] * len(times)),
                ("SDM", list(estimates["sdm"])),
                ("LDN", list(estimates["ldn"]) if "ldn" in estimates else [None] * len(times)),
                ("truth", truths),
            ]
            write_image(sheet_path, contact_sheet(columns, [f"t={t}" for t in times]))
    sdm.close()
    if ldn is not None:
        ldn.close()

    table = scores.table()
    metrics = {
        "samples": len(dataset),
        "times_per_sample": count,
        "vth": vth,
        "seed": seed,
        "ldn_weights": str(weights) if ldn is not None else None,
        "metrics": table,
    }
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    click.echo(format_table(table))
    if ldn is not None:
        click.echo(f"ldn: weights {weights}")
    click.echo(f"wrote {out_dir}/sharp/, {sheet_path.name} and metrics.json under {out_dir}")
    if live:
        _stream_live(out_dir, live_count, count, vth, seed, weights if ldn is not None else None, backend)


def _stream_live(
    out_dir: Path, exposures: int, count: int, vth: float, seed: int, weights: Path | None, backend: str
) -> None:
    """The product's main job on the same built-in scene: three processes over ZeroMQ, in real time."""
    from spikereveal.capture.node import CaptureNodeConfig
    from spikereveal.engine.node import EngineNodeConfig
    from spikereveal.stream.display import screen_available
    from spikereveal.tools.run_cmd import run_pipeline
    from spikereveal.tools.run_config import RunConfig

    window = screen_available()
    defaults = RunConfig()
    config = RunConfig(
        capture=CaptureNodeConfig(
            source=f"sim:pan?count={exposures}&vth={vth:g}&seed={seed}", rate="realtime"
        ),
        engine=EngineNodeConfig(
            model="ldn" if weights else "sdm", weights=weights, backend=backend, times=count
        ),
        display=dataclasses.replace(
            defaults.display,
            window=window,
            record=None if window else out_dir / "live.mp4",
            summary=out_dir / "latency.json",
        ),
    )
    click.echo(f"streaming {exposures} exposures through capture -> engine -> display ...")
    outcome = run_pipeline(config)
    if outcome.code != 0:
        raise click.ClickException(f"live pipeline failed: {outcome.reason or outcome.code}")
    if not window:
        click.echo(f"no screen here: the live sequence is in {out_dir / 'live.mp4'}")
