"""The pure parts of the display: the side-by-side canvas, the overlay, rates and playback timing.

Nothing here opens a window, a socket or a file, and nothing reads a clock: the display loop
(``stream/display.py``) passes ``now_s`` in, so tests drive playback with a made-up clock and check
pixels of known colours. Images are (H, W, 3) uint8 **BGR**, as everywhere in the project.

Playback: each :class:`~spikereveal.stream.protocol.Result` carries K sharp frames spread
over one RGB exposure, so playing them at K x the RGB frame rate shows the scene in motion at its
real speed, each blurry frame unfolding into its sequence before the next one arrives. The RGB rate
is given (``--rgb-fps``) or estimated from the spacing of the results' sensor times
(:class:`SensorRate`), and only when those are missing from how fast results arrive (:class:`ArrivalRate`).
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

import cv2
import numpy as np

from spikereveal.stream.protocol import Result

#: Separator between the blur and the sharp panel: a thin dark band, so the two never read as one image.
GAP_PX = 4
GAP_BGR = (48, 48, 48)
#: Left panel when a result came without its blur (engine run with ``--no-send-blur``): keeps the
#: canvas size fixed, which a video file needs.
NO_BLUR_BGR = (24, 24, 24)
#: RGB rate assumed until two results have arrived (and no ``--rgb-fps`` was given).
DEFAULT_RGB_FPS = 10.0
#: Bounds of an estimated RGB rate. Results that arrive in a burst (a lossless backlog draining, a
#: replay at ``--rate max``) would otherwise "measure" thousands of Hz; 240 Hz is the fastest RGB
#: rate in common use (the GoPro footage GOPRO-spike is made from).
MIN_RGB_FPS, MAX_RGB_FPS = 0.5, 240.0


# --------------------------------------------------------------------------------------------------
# Canvas


def _check_image(name: str, image: np.ndarray) -> tuple[int, int]:
    if not isinstance(image, np.ndarray) or image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        shape = getattr(image, "shape", None)
        dtype = getattr(image, "dtype", type(image).__name__)
        raise ValueError(f"{name}: got {dtype} array of shape {shape}, expected (H, W, 3) uint8 BGR")
    return int(image.shape[0]), int(image.shape[1])


def canvas_size(height: int, width: int, gap_px: int = GAP_PX) -> tuple[int, int]:
    """(height, width) of the canvas for (height, width) frames: two panels and the gap."""
    return height, 2 * width + gap_px


def compose_canvas(sharp: np.ndarray, blur: np.ndarray | None = None, *, gap_px: int = GAP_PX) -> np.ndarray:
    """The blurry input beside the sharp frame: (H, 2W + gap_px, 3) uint8 BGR, a new array.

    ``sharp``: (H, W, 3) uint8 BGR. ``blur``: the same shape, or None (left panel filled with
    :data:`NO_BLUR_BGR`). Layout: columns ``[0, W)`` blur, ``[W, W + gap_px)`` separator
    (:data:`GAP_BGR`), ``[W + gap_px, 2W + gap_px)`` sharp.
    """
    h, w = _check_image("sharp", sharp)
    if blur is not None:
        bh, bw = _check_image("blur", blur)
        if (bh, bw) != (h, w):
            raise ValueError(f"blur: got shape {blur.shape}, expected {(h, w, 3)} like the sharp frame")
    if gap_px < 0:
        raise ValueError(f"gap_px: got {gap_px}, expected >= 0")
    ch, cw = canvas_size(h, w, gap_px)
    canvas = np.empty((ch, cw, 3), np.uint8)
    canvas[:, :w] = NO_BLUR_BGR if blur is None else blur
    canvas[:, w : w + gap_px] = GAP_BGR
    canvas[:, w + gap_px :] = sharp
    return canvas


#: The largest window content (H, W) when the screen's size is unknown: fits any laptop screen.
FALLBACK_LIMITS_HW = (720, 1280)
#: Share of the screen a window may take, and the pixels kept for its title bar and a task bar.
SCREEN_SHARE, CHROME_PX = 0.9, 80


def window_limits(screen_hw: tuple[int, int] | None) -> tuple[int, int]:
    """(max height, max width) of a window's content on a screen of ``screen_hw`` (None: unknown).

    A margin is kept on every side (:data:`SCREEN_SHARE`) and the title and task bars' height
    (:data:`CHROME_PX`), so the whole window, decorations included, is on the screen.
    """
    if screen_hw is None:
        return FALLBACK_LIMITS_HW
    height, width = screen_hw
    return max(1, int(height * SCREEN_SHARE) - CHROME_PX), max(1, int(width * SCREEN_SHARE))


def fit_size(
    height: int, width: int, *, min_height: int = 360, max_height: int = 720, max_width: int = 1280
) -> tuple[int, int]:
    """The (height, width) to show a ``height x width`` canvas at: within the limits, aspect kept.

    Small canvases are enlarged by a whole factor towards ``min_height`` (never beyond the
    limits); big ones are shrunk to fit ``max_height`` x ``max_width``; others stay as they are.
    """
    if height < 1 or width < 1:
        raise ValueError(f"canvas size: got {height}x{width}, expected positive sides")
    if height < min_height:
        factor = max(1, min_height // height + (min_height % height > 0))
        factor = max(1, min(factor, max_height // height, max_width // width))
        return height * factor, width * factor
    scale = min(max_height / height, max_width / width)
    if scale < 1.0:
        return max(1, round(height * scale)), max(1, round(width * scale))
    return height, width


def fit_for_screen(
    canvas: np.ndarray, *, min_height: int = 360, max_height: int = 720, max_width: int = 1280
) -> np.ndarray:
    """The canvas scaled for a window: small sequences enlarged, huge ones shrunk (aspect kept).

    Sizes as :func:`fit_size` (the limits: :func:`window_limits` of the screen). Enlarging uses
    whole factors with nearest-neighbour sampling (pixels stay square and exact, so a 64x96
    simulation is readable and the overlay fits); shrinking uses area averaging. Returns the
    input itself when it already fits.
    """
    h, w = _check_image("canvas", canvas)
    out_h, out_w = fit_size(h, w, min_height=min_height, max_height=max_height, max_width=max_width)
    if (out_h, out_w) == (h, w):
        return canvas
    interpolation = cv2.INTER_NEAREST if out_h > h else cv2.INTER_AREA
    return cv2.resize(canvas, (out_w, out_h), interpolation=interpolation)


# --------------------------------------------------------------------------------------------------
# Overlay


@dataclass(frozen=True)
class OverlayInfo:
    """What the overlay reports; None shows as "-" (not known yet).

    ``fps_in``: results arriving per second; ``fps_out``: sharp frames shown per second;
    ``latency_last_ms`` / ``latency_p50_ms``: end to end (first stamp to ``display.recv``);
    ``dropped``/``missed``: latest-wins drops here / sequence gaps upstream; ``bad``: malformed
    messages; ``skipped``: results the player skipped to stay current; ``seq``, ``frame_index`` of
    ``k`` and ``spike_time`` (spike-frame index) of the frame on screen; ``note``: a passing
    message for the user (``saved build/run/snapshots/...png``), "" for none.
    """

    fps_in: float | None = None
    fps_out: float | None = None
    rgb_fps: float | None = None
    latency_last_ms: float | None = None
    latency_p50_ms: float | None = None
    dropped: int = 0
    missed: int = 0
    bad: int = 0
    skipped: int = 0
    paused: bool = False
    seq: int | None = None
    frame_index: int = 0
    k: int = 0
    spike_time: int | None = None
    producer: str = ""
    note: str = ""


def _num(value: float | None, fmt: str) -> str:
    return "-" if value is None or not math.isfinite(value) else format(value, fmt)


def overlay_lines(info: OverlayInfo) -> list[str]:
    """The overlay as text lines (ASCII only: OpenCV's Hershey fonts have nothing else)."""
    rgb = "" if info.rgb_fps is None else f" (rgb {info.rgb_fps:.1f} Hz x K={info.k})"
    lines = [
        f"in {_num(info.fps_in, '.1f')} res/s  out {_num(info.fps_out, '.1f')} fr/s{rgb}",
        f"latency last {_num(info.latency_last_ms, '.1f')} ms  p50 {_num(info.latency_p50_ms, '.1f')} ms",
        f"dropped {info.dropped}  missed {info.missed}  bad {info.bad}  skipped {info.skipped}",
    ]
    where = "-" if info.seq is None else f"seq {info.seq}  frame {info.frame_index + 1}/{info.k}"
    if info.spike_time is not None:
        where += f"  spike t {info.spike_time}"
    state = ("PAUSED  " if info.paused else "") + (f"producer {info.producer}" if info.producer else "")
    lines.append(f"{where}  {state}".rstrip())
    if info.note:
        lines.append(info.note.encode("ascii", "replace").decode("ascii"))
    return lines


def draw_overlay(canvas: np.ndarray, lines: Sequence[str]) -> np.ndarray:
    """A copy of ``canvas`` with ``lines`` written top-left on a dimmed band (readable on any image).

    The text size follows the canvas height, so the overlay takes a similar share of any window.
    """
    _check_image("canvas", canvas)
    out = canvas.copy()
    if not lines:
        return out
    h, w = out.shape[:2]
    font = cv2.FONT_HERSHEY_SIMPLEX
    scale = float(np.clip(h / 800.0, 0.35, 1.2))
    thickness = 1 if scale < 0.8 else 2
    (_, text_h), baseline = cv2.getTextSize("Ag", font, scale, thickness)
    step = text_h + baseline + 4
    widest = max(cv2.getTextSize(line, font, scale, thickness)[0][0] for line in lines)
    band_h, band_w = min(h, 6 + step * len(lines)), min(w, widest + 12)
    # Dim the band instead of painting it black: the picture stays visible behind the numbers.
    out[:band_h, :band_w] = (out[:band_h, :band_w] // 3).astype(np.uint8)
    for i, line in enumerate(lines):
        y = 4 + text_h + i * step
        cv2.putText(out, line, (6, y), font, scale, (255, 255, 255), thickness, cv2.LINE_AA)
    return out


# --------------------------------------------------------------------------------------------------
# Rates


class RateMeter:
    """Events per second over the last ``window_s`` seconds.

    ``mark(now_s, n)`` records n events at once (K frames written together count K). Once a whole
    window has passed since the first event, the rate is the events in the last window divided by
    its length, so a bursty flow (results taken in batches under backpressure) reads as its mean
    and silence reads as 0. Before that, it is the events after the first one divided by the time
    they span.
    """

    def __init__(self, window_s: float = 2.0, max_marks: int = 4096) -> None:
        if not window_s > 0:
            raise ValueError(f"window_s: got {window_s}, expected > 0")
        self.window_s = window_s
        self._marks: deque[tuple[float, int]] = deque(maxlen=max_marks)
        self._first_s: float | None = None
        self._total = 0  # sum of n over _marks: the overlay asks for the rate on every frame drawn

    def mark(self, now_s: float, n: int = 1) -> None:
        if self._first_s is None:
            self._first_s = now_s
        if len(self._marks) == self._marks.maxlen:
            self._total -= self._marks[0][1]  # the deque drops its oldest
        self._marks.append((now_s, n))
        self._total += n

    def rate_hz(self, now_s: float) -> float | None:
        if self._first_s is None:
            return None
        while self._marks and self._marks[0][0] <= now_s - self.window_s:
            self._total -= self._marks.popleft()[1]
        if now_s - self._first_s >= self.window_s:
            return self._total / self.window_s
        if len(self._marks) < 2 or now_s <= self._first_s:
            return None
        return sum(n for _, n in list(self._marks)[1:]) / (now_s - self._first_s)


class ArrivalRate:
    """The RGB frame rate seen from result arrivals: 1 / median of the last ``history`` intervals.

    The median ignores the odd late result (a GC pause, a burst after a reconnect). Arrivals closer
    than ``min_interval_s`` (a backlog drained at once) say nothing about the source and are
    skipped, and the estimate is kept within [:data:`MIN_RGB_FPS`, :data:`MAX_RGB_FPS`].
    """

    def __init__(
        self,
        history: int = 16,
        min_interval_s: float = 1e-4,
        bounds_hz: tuple[float, float] = (MIN_RGB_FPS, MAX_RGB_FPS),
    ) -> None:
        self.min_interval_s, self.bounds_hz = min_interval_s, bounds_hz
        self._intervals: deque[float] = deque(maxlen=max(1, history))
        self._last_s: float | None = None
        self._rate: float | None = None  # cached until the next add: read on every frame drawn

    def add(self, now_s: float) -> None:
        if self._last_s is not None:
            interval = now_s - self._last_s
            if interval >= self.min_interval_s:
                self._intervals.append(interval)
                self._rate = None
        self._last_s = now_s

    @property
    def rate_hz(self) -> float | None:
        if not self._intervals:
            return None
        if self._rate is None:
            self._rate = _bounded(1.0 / statistics.median(self._intervals), self.bounds_hz)
        return self._rate


class SensorRate:
    """The RGB frame rate from the results' sensor times (``Result.rgb_t_ns``): 1 / median spacing.

    The sensor's clock says how fast the scene was captured, whatever the engine's or the
    network's speed: a slow model (results arriving at 2 Hz) or a burst (a backlog draining) does
    not change it, so a video recorded from it plays at the real speed. The spacing is per
    sequence number (a latest-wins drop between two results spans several frames). A time of 0
    (unknown: an older engine) or one that does not increase with the sequence number is ignored;
    :attr:`rate_hz` is None until two usable results, and then kept within ``bounds_hz``.
    """

    def __init__(
        self, history: int = 16, bounds_hz: tuple[float, float] = (MIN_RGB_FPS, MAX_RGB_FPS)
    ) -> None:
        self.bounds_hz = bounds_hz
        self._intervals_s: deque[float] = deque(maxlen=max(1, history))
        self._last: tuple[int, int] | None = None  # (seq, rgb_t_ns)
        self._rate: float | None = None  # cached until the next add

    def add(self, seq: int, rgb_t_ns: int) -> None:
        if rgb_t_ns <= 0:
            return
        if self._last is not None:
            last_seq, last_t = self._last
            if seq > last_seq and rgb_t_ns > last_t:
                self._intervals_s.append((rgb_t_ns - last_t) / (seq - last_seq) / 1e9)
                self._rate = None
        self._last = (seq, rgb_t_ns)

    @property
    def rate_hz(self) -> float | None:
        if not self._intervals_s:
            return None
        if self._rate is None:
            self._rate = _bounded(1.0 / statistics.median(self._intervals_s), self.bounds_hz)
        return self._rate


def _bounded(value: float, bounds: tuple[float, float]) -> float:
    """``value`` clipped to ``[lo, hi]``, as a float."""
    return float(min(max(value, bounds[0]), bounds[1]))


class RgbRate:
    """The RGB rate to play and record at: from the sensor times, else from arrivals.

    :meth:`add` each result with the time it arrived; :attr:`rate_hz` is the sensor rate
    (:class:`SensorRate`) once known, else the arrival rate (:class:`ArrivalRate`), else None.
    """

    def __init__(self) -> None:
        self.sensor, self.arrivals = SensorRate(), ArrivalRate()

    def add(self, result: Result, now_s: float) -> None:
        self.arrivals.add(now_s)
        self.sensor.add(result.seq, result.rgb_t_ns)

    @property
    def rate_hz(self) -> float | None:
        return self.sensor.rate_hz or self.arrivals.rate_hz


# --------------------------------------------------------------------------------------------------
# Playback


@dataclass(frozen=True)
class PlayFrame:
    """Frame ``index`` (0..K-1) of ``result``, as the player hands it to the screen."""

    result: Result
    index: int

    @property
    def sharp(self) -> np.ndarray:
        """(H, W, 3) uint8 BGR."""
        return self.result.frames[self.index]

    @property
    def blur(self) -> np.ndarray | None:
        return self.result.blur

    @property
    def k(self) -> int:
        return self.result.k

    @property
    def seq(self) -> int:
        return self.result.seq

    @property
    def spike_time(self) -> int:
        """Spike-frame index (in the source bundle) at which this frame is sharp."""
        return self.result.spike_times[self.index]


class Playback:
    """Plays each result's K frames at K x the RGB rate, one result after the other.

    The loop calls :meth:`push` when a result arrives and :meth:`tick` as often as it likes;
    ``tick`` returns the next frame when its time has come. Timing keeps a steady cadence (a frame
    shown a little late does not delay the following ones) but never bursts to catch up after a
    stall or an idle gap: late by a whole period or more, the cadence restarts from now.

    Latency stays bounded: with results waiting, playback speeds up by the number waiting (a
    backlog drains smoothly instead of growing), and beyond ``max_pending`` the oldest waiting
    result is skipped (counted in :attr:`skipped`). ``rgb_fps``: fixed RGB rate, or None to
    estimate it from the results' sensor times, else their arrivals (:class:`RgbRate`;
    :data:`DEFAULT_RGB_FPS` until known).
    """

    def __init__(
        self,
        rgb_fps: float | None = None,
        *,
        max_pending: int = 4,
        default_rgb_fps: float = DEFAULT_RGB_FPS,
        max_speedup: int = 4,
    ) -> None:
        if rgb_fps is not None and not (math.isfinite(rgb_fps) and rgb_fps > 0):
            raise ValueError(f"rgb_fps: got {rgb_fps}, expected a number > 0")
        if max_pending < 1:
            raise ValueError(f"max_pending: got {max_pending}, expected >= 1")
        self.fixed_rgb_fps = rgb_fps
        self.default_rgb_fps = default_rgb_fps
        self.max_pending, self.max_speedup = max_pending, max_speedup
        self.rates = RgbRate()
        self.paused = False
        self.skipped = 0
        self.shown = 0
        self._queue: deque[Result] = deque()
        self._current: PlayFrame | None = None
        self._due_s: float | None = None

    # -- state ---------------------------------------------------------------------------------
    @property
    def rgb_fps(self) -> float:
        """The RGB rate used now: fixed, else estimated, else the default."""
        if self.fixed_rgb_fps is not None:
            return self.fixed_rgb_fps
        return self.rates.rate_hz or self.default_rgb_fps

    @property
    def current(self) -> PlayFrame | None:
        """The frame on screen (None before the first)."""
        return self._current

    @property
    def pending_results(self) -> int:
        """Results received and not started yet."""
        return len(self._queue)

    @property
    def has_next(self) -> bool:
        cur = self._current
        return bool(self._queue) or (cur is not None and cur.index + 1 < cur.k)

    @property
    def idle(self) -> bool:
        """True when every frame received has been shown."""
        return not self.has_next

    def period_s(self, k: int) -> float:
        """Seconds between frames of a K-frame result now (speed-up for a backlog included)."""
        speedup = min(self.max_speedup, max(1, len(self._queue)))
        return 1.0 / (max(1, k) * self.rgb_fps * speedup)

    # -- input ---------------------------------------------------------------------------------
    def push(self, result: Result, now_s: float) -> None:
        """A result arrived at ``now_s`` (seconds, any monotonic origin)."""
        self.rates.add(result, now_s)
        self._queue.append(result)
        while len(self._queue) > self.max_pending:
            self._queue.popleft()
            self.skipped += 1

    # -- output --------------------------------------------------------------------------------
    def tick(self, now_s: float) -> PlayFrame | None:
        """The next frame if it is due at ``now_s`` (it becomes :attr:`current`), else None."""
        if self.paused or not self.has_next:
            return None
        if self._due_s is not None and now_s < self._due_s:
            return None
        frame = self._advance()
        period = self.period_s(frame.k)
        late = self._due_s is None or now_s - self._due_s >= period
        self._due_s = (now_s if late else self._due_s) + period
        return frame

    def next_due_in_s(self, now_s: float) -> float | None:
        """Seconds until :meth:`tick` will return a frame (0: now); None when paused or idle."""
        if self.paused or not self.has_next:
            return None
        return 0.0 if self._due_s is None else max(0.0, self._due_s - now_s)

    def pause(self) -> None:
        self.paused = True

    def resume(self, now_s: float) -> None:
        """Play on; the next frame is due at once."""
        self.paused = False
        self._due_s = now_s

    def toggle(self, now_s: float) -> bool:
        """Pause or resume; returns the new paused state."""
        if self.paused:
            self.resume(now_s)
        else:
            self.pause()
        return self.paused

    def step(self) -> PlayFrame | None:
        """While paused: show the next frame now (None if there is none, or when playing)."""
        if not self.paused or not self.has_next:
            return None
        return self._advance()

    def _advance(self) -> PlayFrame:
        cur = self._current
        if cur is not None and cur.index + 1 < cur.k:
            self._current = PlayFrame(cur.result, cur.index + 1)
        else:
            self._current = PlayFrame(self._queue.popleft(), 0)
        self.shown += 1
        return self._current
