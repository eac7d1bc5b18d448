"""``spikereveal bench live``: the whole live path on this machine, in real time, with its latency summary.

A webcam-sized simulated rig: a 640x480 video at 30 fps played at its own rate through the same
OpenCV path as a camera (``livesim:VIDEO``), a simulated 160x120 spike camera at 20 kHz fed from
it (integrate-and-fire on interpolated frames, :mod:`spikereveal.capture.live_sim`), one SDM
engine and a headless display, each a process of a real ``spikereveal run`` over ZeroMQ under the
latest-wins policy a live rig uses.

"Real time" is read off the display's summary, not asserted: the output rate against the RGB
rate, the end-to-end latency percentiles (first stamp at capture to display), how it moves from
the first to the last third of the run (a pipeline that falls behind shows a latency that grows
without bound), bundles dropped by latest-wins, and the sync report's lost spike blocks and
skipped exposures. The scene is the project's own procedural texture under mixed motion, rendered
once into a temporary MJPG file (no data from outside the project).
"""

from __future__ import annotations

import contextlib
import io
import json
import math
import os
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import click
import numpy as np

from spikereveal.capture.node import CaptureNodeConfig
from spikereveal.engine.node import EngineNodeConfig
from spikereveal.stream.display import DisplayConfig
from spikereveal.stream.errors import SpikeRevealError
from spikereveal.tools.bench_common import format_table, json_option, machine_info, plot_option, write_json
from spikereveal.tools.run_config import RunConfig

DISPLAYS = ("web", "video")


class LiveBenchError(SpikeRevealError):
    """A ``bench live`` run that did not produce a display summary."""


@dataclass(frozen=True)
class LiveBenchConfig:
    """The rig ``bench live`` simulates and how long it runs."""

    seconds: float = 20.0
    rgb_size: tuple[int, int] = (480, 640)  # H, W of the RGB camera
    fps: float = 30.0
    spike_size: tuple[int, int] = (120, 160)  # H, W of the spike camera
    spike_rate_hz: float = 20_000.0
    model: str = "sdm"
    times: int = 5  # sharp frames K per exposure
    warmup: int = 10  # results the display leaves out of its percentiles
    # "web": the page a headless box serves, watched by a viewer that pulls the MJPEG stream as a
    # browser does; "video": the headless display writing every frame to an MP4.
    display: str = "web"

    def __post_init__(self) -> None:
        if self.display not in DISPLAYS:
            raise ValueError(f"display: got {self.display!r}, expected one of {', '.join(DISPLAYS)}")
        if not (math.isfinite(self.seconds) and self.seconds > 0):
            raise ValueError(f"seconds: got {self.seconds!r}, expected > 0")
        if self.frames < self.warmup + 3:
            raise ValueError(
                f"seconds: {self.seconds:g} s at {self.fps:g} fps is {self.frames} frames; "
                f"need at least warmup + 3 = {self.warmup + 3}"
            )

    @property
    def frames(self) -> int:
        return int(round(self.seconds * self.fps))

    def source(self, video: Path) -> str:
        h, w = self.spike_size
        return f"livesim:{video}?size={h}x{w}&rate={self.spike_rate_hz:g}&fps={self.fps:g}&realtime=1"


def write_scene_video(path: Path, config: LiveBenchConfig) -> Path:
    """The bench's camera stand-in: ``config.frames`` frames of a moving procedural scene, MJPG."""
    import cv2

    from spikereveal.capture.scenes import MotionScene, make_trajectory

    h, w = config.rgb_size
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), config.fps, (w, h))
    if not writer.isOpened():
        raise LiveBenchError(f"{path}: OpenCV cannot write an MJPG video here")
    # Scene time is in spike frames: RGB frame i shows the scene at i * rate / fps, so the motion
    # between frames is what a 20 kHz sensor would see (about a dozen pixels per frame here).
    step = config.spike_rate_hz / config.fps
    scene = MotionScene(size=(h, w), trajectory=make_trajectory("mixed", (h, w), 3, 0.02), seed=3)
    try:
        for i in range(config.frames):
            writer.write(scene.frame(i * step))
    finally:
        writer.release()
    return path


def run_config_for(config: LiveBenchConfig, video: Path, folder: Path, web_port: int = 0) -> RunConfig:
    """The run: capture from the live simulated rig, one engine, a display without a window."""
    display = DisplayConfig(
        sub=EngineNodeConfig().pub,  # wiring placeholder; ``run`` replaces it
        window=False,
        summary=folder / "latency.json",
        warmup=config.warmup,
        web=f"127.0.0.1:{web_port}" if config.display == "web" else None,
        record=folder / "display.mp4" if config.display == "video" else None,
    )
    return RunConfig(
        policy="latest",
        capture=CaptureNodeConfig(source=config.source(video)),
        engine=EngineNodeConfig(model=config.model, times=config.times),
        display=display,
    )


class MjpegViewer:
    """A browser stand-in: pulls ``/stream.mjpg`` from the display's page and counts the frames.

    Runs in a thread of the bench process; it retries until the page is up (the display starts
    after the engine has loaded) and stops when the stream ends or :meth:`stop` is called.
    """

    def __init__(self, port: int) -> None:
        self.url = f"http://127.0.0.1:{port}/stream.mjpg"
        self.frames = 0
        self.bytes = 0
        self.first_ns: int | None = None
        self.last_ns: int | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="mjpeg-viewer", daemon=True)

    def start(self) -> MjpegViewer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=5.0)

    @property
    def fps(self) -> float | None:
        if self.frames < 2 or self.first_ns is None or self.last_ns is None or self.last_ns <= self.first_ns:
            return None
        return (self.frames - 1) * 1e9 / (self.last_ns - self.first_ns)

    def _run(self) -> None:
        import urllib.error
        import urllib.request

        from spikereveal.stream.web_display import BOUNDARY

        marker = f"--{BOUNDARY}".encode()
        while not self._stop.is_set():
            try:
                with urllib.request.urlopen(self.url, timeout=2.0) as stream:
                    tail = b""
                    while not self._stop.is_set():
                        chunk = stream.read1(1 << 16)
                        if not chunk:
                            return
                        data = tail + chunk
                        parts = data.count(marker)
                        if parts:
                            now = time.monotonic_ns()
                            self.first_ns = self.first_ns or now
                            self.last_ns = now
                            self.frames += parts
                        self.bytes += len(chunk)
                        tail = data[-len(marker) :]
            except (urllib.error.URLError, ConnectionError, TimeoutError, OSError):
                self._stop.wait(0.2)  # not up yet, or gone: try again until stopped


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def run_live_bench(config: LiveBenchConfig, progress: bool = False) -> dict[str, Any]:
    """Render the scene, run the live pipeline over it, and return the JSON payload."""
    from spikereveal.tools.run_cmd import run_pipeline  # starts processes: imported when used

    with tempfile.TemporaryDirectory(prefix="bench-live-") as tmp:
        folder = Path(tmp)
        if progress:
            click.echo(
                f"rendering {config.frames} frames of {config.rgb_size[1]}x{config.rgb_size[0]} ...", err=True
            )
        video = write_scene_video(folder / "rig.avi", config)
        port = _free_port() if config.display == "web" else 0
        run = run_config_for(config, video, folder, port)
        if progress:
            click.echo(f"running the live path for {config.seconds:g} s ...", err=True)
        viewer = MjpegViewer(port).start() if config.display == "web" else None
        log = io.StringIO()
        t0 = time.perf_counter()
        try:
            with contextlib.redirect_stdout(log):
                outcome = run_pipeline(run, verbose=0)
        finally:
            if viewer is not None:
                viewer.stop()
        wall_s = time.perf_counter() - t0
        summary_path = Path(run.display.summary)
        if outcome.code != 0 or not summary_path.is_file():
            tail = "\n".join(log.getvalue().splitlines()[-15:])
            raise LiveBenchError(f"the live run failed ({outcome.reason or 'no display summary'})\n{tail}")
        summary = json.loads(summary_path.read_text())
    return {
        "bench": "live",
        "machine": machine_info(["pyzmq", "torch", "opencv-python-headless"]),
        "load_average": list(os.getloadavg()) if hasattr(os, "getloadavg") else None,
        "config": asdict(config),
        "method": "spikereveal run (livesim capture of a realtime video, one engine, headless display as "
        "processes), latest-wins; figures from the display's latency summary",
        "wall_s": wall_s,
        "viewer": None
        if viewer is None
        else {"url": viewer.url, "frames": viewer.frames, "fps": viewer.fps, "bytes": viewer.bytes},
        "verdict": verdict(summary, config),
        "summary": summary,
    }


def verdict(summary: dict[str, Any], config: LiveBenchConfig) -> dict[str, Any]:
    """The figures that say whether the path kept up: rates, latency, what latest-wins skipped, losses."""
    e2e = summary.get("end_to_end") or {}
    sync = summary.get("sync") or {}
    fps_out = summary.get("fps_out")
    exposures = _total(sync, "exposures")
    lost = int(summary.get("dropped") or 0) + int(summary.get("missed") or 0)
    return {
        "exposures": exposures,
        "results": summary.get("results"),
        "fps_in": summary.get("fps_in"),
        "fps_out": fps_out,
        "rgb_fps": config.fps,
        # Real time: results come out at the camera's rate and latest-wins had (almost) nothing to skip.
        "keeps_up": bool(fps_out) and fps_out >= 0.95 * config.fps and lost <= 0.05 * (exposures or 0),
        "end_to_end_p50_ms": e2e.get("p50_ms"),
        "end_to_end_p95_ms": e2e.get("p95_ms"),
        "end_to_end_max_ms": e2e.get("max_ms"),
        "dropped": summary.get("dropped"),
        "missed": summary.get("missed"),
        "lost_blocks": _total(sync, "lost_blocks"),
        "skipped_exposures": _total(sync, "skipped"),
    }


def _total(sync: dict[str, Any], key: str) -> int | None:
    """A count from the display's sync section, whether it holds totals or the latest report."""
    for place in (sync.get("totals"), sync.get("latest"), sync):
        if isinstance(place, dict) and key in place:
            value = place[key]
            return int(sum(value.values())) if isinstance(value, dict) else int(value)
    return None


def format_live_table(payload: dict[str, Any]) -> str:
    """The human summary of :func:`run_live_bench`'s payload."""
    v, cfg = payload["verdict"], payload["config"]

    def num(value: Any, fmt: str) -> str:
        return "-" if value is None else format(value, fmt)

    rows = [
        ["exposures captured / shown", f"{num(v['exposures'], 'd')} / {num(v['results'], 'd')}"],
        ["fps in / out (RGB fps)", f"{num(v['fps_in'], '.2f')} / {num(v['fps_out'], '.2f')} ({cfg['fps']:g})"],
        ["end to end p50 / p95 / max ms", " / ".join(num(v[k], ".1f") for k in (
            "end_to_end_p50_ms", "end_to_end_p95_ms", "end_to_end_max_ms"))],
        ["skipped by latest-wins: engine / display", f"{num(v['missed'], 'd')} / {num(v['dropped'], 'd')}"],
        ["lost spike blocks", num(v["lost_blocks"], "d")],
        ["skipped exposures", num(v["skipped_exposures"], "d")],
        ["keeps up", "yes" if v["keeps_up"] else "no"],
    ]  # fmt: skip
    viewer = payload.get("viewer")
    if viewer is not None:
        rows.insert(-1, ["web viewer frames (fps)", f"{viewer['frames']} ({num(viewer['fps'], '.1f')})"])
    (h, w), (sh, sw) = cfg["rgb_size"], cfg["spike_size"]
    head = (
        f"live path: {w}x{h} RGB at {cfg['fps']:g} fps + simulated {sw}x{sh} spikes at "
        f"{cfg['spike_rate_hz'] / 1e3:g} kHz -> {cfg['model']} (K={cfg['times']}) -> {cfg['display']} display, "
        f"{cfg['seconds']:g} s, {payload['machine']['cpu_usable']} usable cores"
    )
    return head + "\n" + format_table(["figure", "value"], rows)


def plot_live(payload: dict[str, Any], path: Path) -> Path:
    """Per-stage p50 latency as bars, with the end-to-end p50/p95 marked."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stages = (payload["summary"].get("stages") or {}).items()
    names = [name for name, p in stages if p.get("n")]
    p50 = [p["p50_ms"] for name, p in stages if p.get("n")]
    p95 = [p["p95_ms"] for name, p in stages if p.get("n")]
    fig, ax = plt.subplots(figsize=(7, 0.45 * max(len(names), 3) + 1.2))
    y = np.arange(len(names))
    ax.barh(y, p95, color="#c6dbef", label="p95")
    ax.barh(y, p50, color="#2171b5", label="p50")
    ax.set_yticks(y, names)
    ax.invert_yaxis()
    ax.set_xlabel("ms")
    v = payload["verdict"]
    ax.set_title(
        f"live path, end to end p50 {v['end_to_end_p50_ms'] or 0:.1f} ms, p95 {v['end_to_end_p95_ms'] or 0:.1f} ms, "
        f"{v['fps_out'] or 0:.1f} fps out"
    )
    ax.legend(loc="lower right")
    ax.grid(axis="x", alpha=0.3)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


@click.command("live")
@click.option(
    "--seconds", type=click.FloatRange(min=1.0), default=20.0, show_default=True, help="Run length."
)
@click.option("--model", type=click.Choice(["sdm", "ldn"]), default="sdm", show_default=True)
@click.option("--times", type=click.IntRange(min=1), default=5, show_default=True, help="Sharp frames K.")
@click.option(
    "--display",
    type=click.Choice(DISPLAYS),
    default="web",
    show_default=True,
    help="web: the page, watched by an MJPEG viewer; video: every frame written to an MP4.",
)
@plot_option()
@json_option("live", "--out")
def live_command(seconds: float, model: str, times: int, display: str, plot: Path | None, out: Path) -> None:
    """The live path (640x480 RGB at 30 fps + simulated 160x120 spikes at 20 kHz) in real time: latency summary."""
    payload = run_live_bench(
        LiveBenchConfig(seconds=seconds, model=model, times=times, display=display), progress=True
    )
    click.echo(format_live_table(payload))
    click.echo(f"wrote {write_json(out, payload)}")
    click.echo(f"wrote {plot_live(payload, plot or out.with_suffix('.png'))}")
