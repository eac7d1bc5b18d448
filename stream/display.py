"""The display node: receive Results, play them beside their blur (window) or write them (video, PNG).

A thin loop around the pure parts in ``stream/player.py`` (canvas, overlay, playback timing) and the
writers in ``stream/video.py``. Per result it stamps ``("display.recv", t)``, feeds the stamps to
:class:`~spikereveal.stream.latency.LatencyStats` and then

- **window** (cv2.imshow): queues the result in a :class:`~spikereveal.stream.player.Playback`
  that plays its K frames at K x the RGB rate, with an overlay (rates, latency, drops, bad
  messages, pause state, seq and spike time). Keys: space pause/resume, ``n`` or ``.`` step one
  frame while paused, ``s`` save the canvas as PNG, ``q`` or Esc quit. Under the lossless policy
  the node stops taking results while ``max_pending`` wait to be played, so the replay upstream
  waits too (backpressure) and nothing is skipped; under latest-wins it skips to stay current.
- **headless** (``window=False``, or no screen): writes every frame, side by side with the blur,
  to the video at K x the RGB rate (and to PNGs if asked). Under lossless every result is written.

With ``record`` both happen. The node ends when its producer reports the state ``"finished"``
and nothing is left to play (unless ``exit_on_finish`` is off), on SIGINT/SIGTERM (the loop checks
its :class:`~spikereveal.stream.transport.StopFlag`), or on ``q``/Esc; every way out closes the
video properly (a killed writer leaves an unplayable .mp4) and writes the JSON summary:
``LatencyStats.summary()`` plus the channel counters, frames written and output paths. A live
source's sync report, which each result carries (``Result.sync``), goes to the summary's ``sync``
section (the latest report and totals); with several engines (``sub`` lists one endpoint each,
merged by ``stream/pool.py``'s PoolReceiver) the reorder buffer's counters go to ``reorder``.
A malformed message is counted by the receiver and never reaches this loop. Each capture is shown
once (``stream.nodes.OnceFilter``): a result that comes again after its producer restarted (lossless
delivery is at-least-once across a restart) is discarded and counted, as ``duplicates`` in the
summary and in ``counters.duplicates`` (which also counts the channel's own redeliveries). While no
producer is there the node says what it waits for, every few seconds.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from spikereveal.stream.latency import LatencyStats
from spikereveal.stream.nodes import OnceFilter, WaitNotice
from spikereveal.stream.player import (
    DEFAULT_RGB_FPS,
    OverlayInfo,
    Playback,
    PlayFrame,
    RateMeter,
    RgbRate,
    compose_canvas,
    draw_overlay,
    fit_for_screen,
    overlay_lines,
    window_limits,
)
from spikereveal.stream.pool import PoolReceiver, open_results_receiver
from spikereveal.stream.protocol import Result
from spikereveal.stream.settings import setting, validate
from spikereveal.stream.transport import POLICIES, Receiver, StopFlag
from spikereveal.stream.video import VIDEO_SUFFIXES, PngWriter, VideoError, VideoRecorder
from spikereveal.stream.web_display import WebView, parse_web_address

log = logging.getLogger("spikereveal.display")

#: The stage stamp this node adds (a contract: latency tables name this stage).
RECV_STAGE = "display.recv"
#: The producer state that means "no more data will come" (see stream/protocol.py STATES).
FINISHED = "finished"
DEFAULT_RECORD = Path("build/run/display.mp4")
DEFAULT_SUMMARY = Path("build/run/latency.json")
DEFAULT_SNAPSHOTS = Path("build/run/snapshots")
WINDOW_TITLE = "SpikeReveal-RT: blur | sharp"

KEY_ESC = 27
#: A size limit no picture reaches (a web page's canvas is scaled by the browser, not here).
UNBOUNDED = 1 << 20

#: Seconds a note (``saved PATH``) stays in the overlay.
NOTE_S = 4.0
#: Size of the placeholder shown before the first result (H, W, 3).
WAITING_SHAPE = (360, 960, 3)


@dataclass(frozen=True)
class DisplayConfig:
    """Settings of one display node (the CLI's options; see ``spikereveal display --help``).

    ``record``: also write a video (headless without ``record`` writes :data:`DEFAULT_RECORD`).
    ``png_dir``: write every frame as PNG there (snapshots go there too, else
    :data:`DEFAULT_SNAPSHOTS`). ``rgb_fps``: the RGB frame rate; None takes it from the results'
    sensor times (from their arrivals when they carry none). ``warmup``: results left out of the latency percentiles. ``probe_results``: results
    held back (when ``rgb_fps`` is None) to estimate the rate before the video's frame rate is
    fixed. ``max_pending``: results waiting to be played in the window before backpressure (lossless)
    or skipping (latest).
    """

    sub: str = setting(help="The engine's results endpoint, e.g. tcp://127.0.0.1:5556.", yaml=False)
    policy: str = setting(
        "lossless",
        help="lossless: every result, in order (replay); latest: newest only (live).",
        choices=POLICIES,
        yaml=False,  # ``run`` sets one policy for every node
    )
    window: bool = setting(
        True,
        help="Show an OpenCV window; --no-window writes a video instead (also the fallback without a screen).",
        flag="--window/--no-window",
    )
    record: Path | None = setting(
        None,
        help="Write blur | sharp frames to this video (.mp4). Default without a window: build/run/display.mp4.",
    )
    png_dir: Path | None = setting(
        None, help="Also write every frame as PNG here (window snapshots go here too).", path="dir"
    )
    summary: Path = setting(DEFAULT_SUMMARY, help="Latency and counters JSON written at exit.")
    exit_on_finish: bool = setting(
        True,
        help="Exit 0 when the engine reports that the stream is finished.",
        flag="--exit-on-finish/--no-exit-on-finish",
    )
    node: str = setting("display", help="This node's name (in logs and statuses).", yaml=False)
    rgb_fps: float | None = setting(
        None,
        help="RGB frame rate; sharp frames play at K times it. Default: from the sensor times of the results.",
        min=0,
        min_open=True,
    )
    # Five, not ten: the first results carry the connection set-up and the model's first (lazy)
    # call, and by the fifth the pipeline is steady; ten would leave a short run (the demo streams
    # 16 exposures) with few latency samples. One default for ``display`` and ``run`` alike.
    warmup: int = setting(5, help="Results left out of the latency percentiles.", min=0)
    allow_remote: bool = setting(
        False,
        help="Allow --web to listen beyond loopback (the display connects to the engine either way).",
        yaml=False,
    )
    # The page takes the window's place (same playback, overlay and keys): on a headless GPU box
    # there is no screen, and a window and a page at once would only halve the frame budget.
    web: str | None = setting(
        None,
        help="Serve the live view as a web page at HOST:PORT (e.g. 127.0.0.1:8080; port 0: any free "
        "one) instead of a window; loopback unless --allow-remote.",
        parse=parse_web_address,
        metavar="HOST:PORT",
    )
    probe_results: int = setting(
        8, help="Results held back to estimate the RGB rate before the video opens.", min=1, cli=False
    )
    max_pending: int = setting(
        4, help="Results waiting to be played before backpressure or skipping.", min=1, cli=False
    )

    def __post_init__(self) -> None:
        validate(self)  # types, choices and ranges as declared above
        if self.record is not None and Path(self.record).suffix.lower() not in VIDEO_SUFFIXES:
            raise VideoError(
                f"{self.record}: unknown video container {Path(self.record).suffix or '(no extension)'!r}; "
                f"expected one of {', '.join(VIDEO_SUFFIXES)}"
            )

    @property
    def snapshot_dir(self) -> Path:
        return self.png_dir if self.png_dir is not None else DEFAULT_SNAPSHOTS


def screen_available() -> bool:
    """Whether a window can open: on Linux an X or Wayland display must be named in the environment.

    Checked before touching the GUI because OpenCV's Qt backend aborts the whole process (not a
    catchable error) when it cannot reach a display.
    """
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def screen_size(display: str | None = None, timeout_s: float = 5.0) -> tuple[int, int] | None:
    """(height, width) in pixels of the X screen ``display`` (default: $DISPLAY); None if unknown.

    Asks ``xdpyinfo`` (X11's own tool, where installed) rather than a GUI toolkit: OpenCV has no
    portable query, and probing with a full-screen window would flash on the user's screen.
    """
    display = display if display is not None else os.environ.get("DISPLAY")
    exe = shutil.which("xdpyinfo")
    if not display or exe is None:
        return None
    try:
        done = subprocess.run(
            [exe, "-display", display], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    match = re.search(r"dimensions:\s+(\d+)x(\d+) pixels", done.stdout)
    if done.returncode != 0 or match is None:
        return None
    return int(match.group(2)), int(match.group(1))


def gui_probe(timeout_s: float = 20.0) -> str | None:
    """Open and close an OpenCV window in a child process: None if that works, else why not.

    A child, because OpenCV's Qt backend *aborts* the process when it cannot reach the display
    named in DISPLAY (a stale ssh forward, a stopped Xvfb) instead of raising cv2.error.
    """
    code = "import cv2; cv2.namedWindow('probe'); cv2.waitKey(1); cv2.destroyAllWindows()"
    try:
        done = subprocess.run(
            [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout_s, check=False
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"window probe failed: {exc}"
    if done.returncode == 0:
        return None
    lines = [line for line in done.stderr.strip().splitlines() if line.strip()]
    return lines[0] if lines else f"window probe exited with code {done.returncode}"


def producer_state(receiver: Receiver) -> str | None:
    """The state the producer last reported (None before it was heard from)."""
    peer = receiver.producer
    return None if peer is None else peer.state


# --------------------------------------------------------------------------------------------------
# Outputs


def writable_fps(fps: float) -> float:
    """``fps`` rounded so that an MPEG-4 writer accepts it: its time base is a fraction whose
    numerator and denominator must fit in 16 bits, so 29.97 stays 2997/100 but 729.93 (72993/100)
    is refused and becomes 729.9 (7299/10); rates that need it are rounded to whole frames.
    """
    for decimals in (2, 1):
        rounded = round(fps, decimals)
        if rounded * 10**decimals <= 65535:
            return rounded
    return float(round(fps))


class Recording:
    """Every received frame, as a blur | sharp canvas, into a video and/or numbered PNGs.

    A video's frame rate is fixed when it opens: K x the RGB rate. With ``rgb_fps`` given that is
    known at the first result. Otherwise it comes from the spacing of the results' sensor times
    (``Result.rgb_t_ns``), known from the second result: a slow engine or a burst of arrivals
    does not change how fast the video plays. Results without sensor times (an older engine)
    are held back, up to ``probe_results``, until their arrival rate gives an estimate (or the
    stream ends: :meth:`flush`), and only then written.
    """

    def __init__(
        self,
        video_path: Path | None,
        png_dir: Path | None,
        *,
        rgb_fps: float | None = None,
        probe_results: int = 8,
        default_rgb_fps: float = DEFAULT_RGB_FPS,
    ) -> None:
        self.video_path, self.png_dir = video_path, png_dir
        self.fixed_rgb_fps, self.probe_results, self.default_rgb_fps = rgb_fps, probe_results, default_rgb_fps
        self.pngs = None if png_dir is None else PngWriter(png_dir)
        self.video: VideoRecorder | None = None
        self.rates = RgbRate()
        self.rgb_fps: float | None = None  # the rate the video was opened with
        self.video_fps: float | None = None
        self.frames_written = 0
        self._held: list[Result] = []

    @property
    def enabled(self) -> bool:
        return self.video_path is not None or self.pngs is not None

    def add(self, result: Result, now_s: float) -> int:
        """Take one result that arrived at ``now_s``; returns the frames written now."""
        if not self.enabled:
            return 0
        self.rates.add(result, now_s)
        self._held.append(result)
        if (
            self.rgb_fps is None
            and self.fixed_rgb_fps is None
            and self.rates.sensor.rate_hz is None
            and len(self._held) < self.probe_results
        ):
            return 0
        return self.flush()

    def flush(self) -> int:
        """Write what is held back, fixing the frame rate now if it is not yet."""
        if not self._held:
            return 0
        if self.rgb_fps is None:
            self.rgb_fps = self.fixed_rgb_fps or self.rates.rate_hz or self.default_rgb_fps
            self.video_fps = writable_fps(self.rgb_fps * self._held[0].k)
            if self.video_path is not None:
                self.video = VideoRecorder(self.video_path, self.video_fps)
                log.info(
                    "recording %s at %.2f fps (K=%d x %.2f Hz)",
                    self.video_path,
                    self.video_fps,
                    self._held[0].k,
                    self.rgb_fps,
                )
        written = 0
        held, self._held = self._held, []
        for result in held:
            for i in range(result.k):
                canvas = compose_canvas(result.frames[i], result.blur)
                if self.video is not None:
                    self.video.write(canvas)
                if self.pngs is not None:
                    self.pngs.write(canvas, result.seq, i)
                written += 1
        self.frames_written += written
        return written

    def close(self) -> None:
        """Write what is held and finish the video file (idempotent; errors still close it)."""
        try:
            self.flush()
        finally:
            if self.video is not None:
                self.video.close()


class GuiUnavailable(RuntimeError):
    """OpenCV could not open a window here."""


class Window:
    """The OpenCV window: shows canvases, reads keys, knows when the user closed it."""

    def __init__(self, title: str = WINDOW_TITLE) -> None:
        self.title = title
        self._shape: tuple[int, ...] = ()
        try:
            cv2.namedWindow(title, cv2.WINDOW_NORMAL | cv2.WINDOW_KEEPRATIO | cv2.WINDOW_GUI_NORMAL)
        except cv2.error as exc:
            raise GuiUnavailable(f"cv2.namedWindow failed: {str(exc).strip()}") from None

    def show(self, image: Any) -> None:
        # WINDOW_NORMAL keeps whatever size the window has; fit it when the content's size changes
        # (placeholder -> first result), and otherwise leave the user's resizing alone.
        if image.shape[:2] != self._shape:
            cv2.resizeWindow(self.title, int(image.shape[1]), int(image.shape[0]))
            self._shape = image.shape[:2]
        cv2.imshow(self.title, image)

    def wait_key(self, wait_ms: int) -> int:
        """The key pressed within ``wait_ms`` (also runs the GUI event loop), or -1."""
        key = cv2.waitKey(max(1, wait_ms))
        return -1 if key < 0 else key & 0xFF

    @property
    def closed(self) -> bool:
        try:
            return cv2.getWindowProperty(self.title, cv2.WND_PROP_VISIBLE) < 1
        except cv2.error:
            return True

    def close(self) -> None:
        try:
            cv2.destroyWindow(self.title)
            cv2.waitKey(1)
        except cv2.error:
            pass


# --------------------------------------------------------------------------------------------------
# The loop


@dataclass
class DisplayRun:
    """What one run did (the JSON summary is built from it)."""

    exit_reason: str = ""
    results: int = 0
    window: bool = False
    k: int | None = None
    snapshots: list[str] = field(default_factory=list)
    summary_path: Path | None = None
    summary: dict[str, Any] = field(default_factory=dict)
    stats: LatencyStats | None = None


class DisplayNode:
    """One display node; :meth:`run` loops until the stream finishes, a signal, or a quit key.

    ``clock``: seconds, monotonic (playback timing); stamps use ``time.monotonic_ns`` as the
    protocol requires.
    """

    def __init__(
        self,
        config: DisplayConfig,
        stop: StopFlag | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.config, self.clock = config, clock
        self.stop = stop if stop is not None else StopFlag()
        self.stats = LatencyStats(warmup=config.warmup)
        self.playback = Playback(config.rgb_fps, max_pending=config.max_pending)
        self.in_meter, self.out_meter = RateMeter(), RateMeter()
        self.run_info = DisplayRun(stats=self.stats)
        self._last_latency_ms: float | None = None
        self._p50_ms: float | None = None
        self._p50_at_s = -math.inf
        self._drawn_at_s = -math.inf
        self._wrong_kind_logged = False
        self._note: tuple[str, float] = ("", -math.inf)  # (text, until when) for the overlay
        self._limits_hw = window_limits(None)  # (max H, max W) of the window's content
        # Exactly once to the user: a producer restarted mid-stream may send a result again.
        self.once = OnceFilter()
        self.waiting = WaitNotice(config.node)
        self.web_url: str | None = None  # the page's address while a web view serves

    # -- set-up --------------------------------------------------------------------------------
    def _make_window(self) -> Window | WebView | None:
        if self.config.web is not None:
            view = WebView(self.config.web, allow_remote=self.config.allow_remote, title=WINDOW_TITLE)
            self.web_url = view.start()
            return view
        if not self.config.window:
            return None
        if not screen_available():
            log.warning("no display (DISPLAY/WAYLAND_DISPLAY unset): running headless, writing a video")
            return None
        problem = gui_probe()
        if problem is not None:
            log.warning("cannot open a window (%s): running headless, writing a video", problem)
            return None
        try:
            window = Window()
        except GuiUnavailable as exc:
            log.warning("cannot open a window (%s): running headless, writing a video", exc)
            return None
        screen = screen_size()
        self._limits_hw = window_limits(screen)
        log.info(
            "%s: screen %s: the window shows at most %dx%d",
            self.config.node,
            "unknown" if screen is None else f"{screen[1]}x{screen[0]}",
            self._limits_hw[1],
            self._limits_hw[0],
        )
        return window

    def _video_path(self, window: bool) -> Path | None:
        if self.config.record is not None:
            return Path(self.config.record)
        return None if window else DEFAULT_RECORD

    # -- run -----------------------------------------------------------------------------------
    def run(self) -> DisplayRun:
        """Receive, show and/or write until done; always closes the outputs and writes the summary."""
        cfg = self.config
        # One engine's results endpoint, or several (an engine pool), merged back in order.
        receiver = open_results_receiver(
            cfg.policy, cfg.sub, node=cfg.node, role="display", allow_remote=cfg.allow_remote
        )
        window: Window | WebView | None = None
        recording = Recording(None, None)
        try:
            window = self._make_window()
            self.run_info.window = window is not None
            recording = Recording(
                self._video_path(window is not None),
                cfg.png_dir,
                rgb_fps=cfg.rgb_fps,
                probe_results=cfg.probe_results,
            )
            log.info(
                "%s: %s results from %s (%s)",
                cfg.node,
                cfg.policy,
                cfg.sub,
                self.web_url or ("window" if window else "headless"),
            )
            self.run_info.exit_reason = self._loop(receiver, recording, window)
        except KeyboardInterrupt:  # a second signal while stopping: still finish the files
            self.run_info.exit_reason = "interrupted"
        except Exception as exc:  # e.g. the video cannot be written: say so in the summary, then raise
            self.run_info.exit_reason = f"error: {exc}"
            raise
        finally:
            try:
                recording.close()
            finally:
                receiver.close()
                if window is not None:
                    window.close()
                self._write_summary(receiver, recording)
        return self.run_info

    def _loop(self, receiver: Receiver, recording: Recording, window: Window | WebView | None) -> str:
        cfg = self.config
        finished_seen = False
        while not self.stop.is_set():
            # Lossless + window: stop taking results while enough wait to be played, so the replay
            # upstream waits (backpressure) instead of the player skipping.
            take = window is None or cfg.policy == "latest" or self.playback.pending_results < cfg.max_pending
            msg = (
                receiver.recv(timeout_s=0.0 if window is not None else 0.1, stop=self.stop) if take else None
            )
            if isinstance(msg, Result):
                self.waiting.over()
                if self.once.first_time(msg):
                    self._on_result(msg, recording, window is not None)
                else:
                    receiver.counters.duplicates += 1
                    log.info("%s: result %d from %r again: not shown twice", cfg.node, msg.seq, msg.source_id)
            elif msg is not None:
                receiver.counters.bad += 1
                if not self._wrong_kind_logged:
                    log.warning(
                        "%s: got a %s, expected results (is --sub the engine's --pub?)", cfg.node, msg.kind
                    )
                    self._wrong_kind_logged = True
            self._count(receiver)
            if window is not None:
                reason = self._drive_window(window, receiver)
                if reason:
                    return reason
            state = producer_state(receiver)
            if state == FINISHED:
                if not finished_seen and (window is None or self.playback.idle):
                    finished_seen = True
                    log.info("%s: producer finished after %d results", cfg.node, self.run_info.results)
                    if cfg.exit_on_finish:
                        return "finished"
                    recording.flush()
                    self._write_summary(receiver, recording)
            else:
                finished_seen = False
                why = receiver.peer_missing() if msg is None else None
                if why is not None:
                    self.waiting.still(f"results from {cfg.sub}", why)
        return "signal" if self.stop.signum is not None else "stopped"

    def _on_result(self, result: Result, recording: Recording, window: bool) -> None:
        t_ns = time.monotonic_ns()
        now_s = self.clock()
        stamps = (*result.stamps, (RECV_STAGE, t_ns))
        self.stats.mark_in(t_ns)
        self.stats.add(stamps, frames=result.k)
        self.stats.note_sync(result.sync)
        self._last_latency_ms = (t_ns - stamps[0][1]) / 1e6 if len(stamps) > 1 else None
        self.run_info.results += 1
        self.run_info.k = result.k
        self.in_meter.mark(now_s)
        written = recording.add(result, now_s)
        if window:
            self.playback.push(result, now_s)
        elif written:
            self.out_meter.mark(now_s, written)

    def _count(self, receiver: Receiver) -> None:
        c = receiver.counters
        self.stats.dropped, self.stats.missed, self.stats.bad = c.dropped, c.missed, c.bad

    # -- window --------------------------------------------------------------------------------
    def _drive_window(self, window: Window | WebView, receiver: Receiver) -> str:
        now = self.clock()
        frame = self.playback.tick(now)
        if frame is not None:
            self.out_meter.mark(now)
        if frame is not None or now - self._drawn_at_s > 0.25:
            self._draw(window, receiver, now)
        due = self.playback.next_due_in_s(self.clock())
        wait_ms = 20 if due is None else int(min(20.0, max(1.0, due * 1000)))
        key = window.wait_key(wait_ms)
        if key in (ord("q"), KEY_ESC):
            return "quit"
        if key == ord(" "):
            paused = self.playback.toggle(self.clock())
            log.info("%s", "paused" if paused else "playing")
        elif key in (ord("n"), ord(".")):
            if self.playback.step() is not None:
                self.out_meter.mark(self.clock())
        elif key == ord("s"):
            self._snapshot()
        if key >= 0:
            self._draw(window, receiver, self.clock())
        if window.closed:
            return "window closed"
        return ""

    def _overlay(self, receiver: Receiver, now_s: float) -> OverlayInfo:
        if now_s - self._p50_at_s > 0.5:  # percentiles over many samples: not every frame
            self._p50_ms = self.stats.summary()["end_to_end"].get("p50_ms")  # type: ignore[union-attr]
            self._p50_at_s = now_s
        frame = self.playback.current
        c = receiver.counters
        return OverlayInfo(
            fps_in=self.in_meter.rate_hz(now_s),
            fps_out=self.out_meter.rate_hz(now_s),
            rgb_fps=self.playback.rgb_fps,
            latency_last_ms=self._last_latency_ms,
            latency_p50_ms=self._p50_ms,
            dropped=c.dropped,
            missed=c.missed,
            bad=c.bad,
            skipped=self.playback.skipped,
            paused=self.playback.paused,
            seq=None if frame is None else frame.seq,
            frame_index=0 if frame is None else frame.index,
            k=self.run_info.k or 0,
            spike_time=None if frame is None else frame.spike_time,
            producer=producer_state(receiver) or "",
            note=self._note[0] if now_s < self._note[1] else "",
        )

    def _draw(self, window: Window | WebView, receiver: Receiver, now_s: float) -> None:
        frame = self.playback.current
        info: OverlayInfo | None = None
        if frame is None:  # nothing yet: say what we wait for rather than show no window at all
            state = producer_state(receiver)
            lines = [
                f"waiting for results on {self.config.sub}",
                f"producer: {state or 'not heard from yet'}",
            ]
            window.show(draw_overlay(np.zeros(WAITING_SHAPE, np.uint8), lines))
        elif isinstance(window, WebView) and not window.wants_frame():
            pass  # nobody would be sent this frame: playback and the numbers go on without it
        else:
            # A page has no screen to fit: the browser scales the picture, so the display only
            # enlarges tiny sequences and never shrinks (a 15 ms area resize per frame at 640x480).
            max_h, max_w = (UNBOUNDED, UNBOUNDED) if isinstance(window, WebView) else self._limits_hw
            canvas = fit_for_screen(
                compose_canvas(frame.sharp, frame.blur), max_height=max_h, max_width=max_w
            )
            info = self._overlay(receiver, now_s)
            window.show(draw_overlay(canvas, overlay_lines(info)))
        if isinstance(window, WebView):  # the page prints the numbers and plots the latency too
            window.report(info if info is not None else self._overlay(receiver, now_s), self.run_info.results)
        self._drawn_at_s = now_s

    def _snapshot(self) -> None:
        frame: PlayFrame | None = self.playback.current
        if frame is None:
            return
        path = PngWriter(self.config.snapshot_dir).write(
            compose_canvas(frame.sharp, frame.blur), frame.seq, frame.index, prefix="snapshot_"
        )
        self.run_info.snapshots.append(str(path))
        log.info("%s: saved %s", self.config.node, path)
        # The user asked for it and must see where it went, -v or not: the overlay says so a while.
        self._note = (f"saved {path}", self.clock() + NOTE_S)

    # -- summary -------------------------------------------------------------------------------
    def _write_summary(self, receiver: Receiver, recording: Recording) -> None:
        self._count(receiver)
        run = self.run_info
        summary: dict[str, Any] = dict(self.stats.summary())
        video = recording.video
        summary.update(
            node=self.config.node,
            policy=self.config.policy,
            endpoint=self.config.sub,
            exit=run.exit_reason or "running",
            mode=("web" if self.web_url else "window") if run.window else "headless",
            results=run.results,
            duplicates=self.once.duplicates,
            k=run.k,
            frames_written=recording.frames_written,
            frames_shown=self.playback.shown,
            skipped=self.playback.skipped,
            rgb_fps=recording.rgb_fps if recording.rgb_fps is not None else self.playback.rgb_fps,
            video_fps=recording.video_fps,
            counters=receiver.counters.as_dict(),
            # An engine pool's results merged back in order: how much reordering that took.
            reorder=receiver.reorder.as_dict() if isinstance(receiver, PoolReceiver) else None,
            outputs={
                "video": None if video is None else str(video.path),
                "video_frames": 0 if video is None else video.frames_written,
                "png_dir": None if recording.pngs is None else str(recording.pngs.folder),
                "pngs": 0 if recording.pngs is None else recording.pngs.written,
                "snapshots": list(run.snapshots),
                "summary": str(self.config.summary),
                "web": self.web_url,
            },
        )
        path = Path(self.config.summary)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(summary, indent=2) + "\n")
        tmp.replace(path)  # a reader (``spikereveal run``) never sees half a file
        run.summary, run.summary_path = summary, path


def run_display(config: DisplayConfig, stop: StopFlag | None = None) -> DisplayRun:
    """Run a display node to the end (see :class:`DisplayNode`); the summary is in the result."""
    return DisplayNode(config, stop).run()
