"""A live rig: one RGB camera and one spike camera paired by a calibration, as one :class:`Source`.

The spike camera streams continuously; the RGB camera exposes frame by frame. For each RGB
exposure the rig cuts the spike frames from ``start - margin`` to ``end + margin`` out of the
stream. Exposures at 30 fps with margins overlap in the spike stream, so the stream is kept once,
in a ring of large segments keyed by absolute frame index (:class:`SpikeRing`), and every window
is a read-only *view* of one segment: no frame is copied into two windows. When a segment is full
the next starts with only the frames a pending exposure still needs (bounded), the one copy the
design pays for contiguous windows.

Times: the spike stream's clock model maps spike frame index -> host ns (fitted as blocks arrive);
the calibration's ``time_offset_ns`` (spike clock = RGB clock + offset) shifts the RGB exposure
onto it. Spike frame ``i`` integrates ``((i-1)/rate, i/rate]``, so exposure ``[t0, t1]`` covers
frames ``floor(x0) + 1 .. ceil(x1)`` where ``x = clock.to_index(t + offset)``.

Faults never reach the engine as wrong data: an exposure whose window holds lost frames, spans a
clock jump (or comes before the fit settled again), whose spikes do not arrive within
``coverage_timeout_s``, or whose frames already left the ring is skipped, counted by reason in the
:class:`~spikereveal.capture.sync.SyncReport` that every capture carries, and logged.

A rig file (``rig:PATH.yaml``) describes it all::

    rgb: 0                          # device index, video file or GStreamer/V4L2 pipeline string
    spikes: spikes:tcp://127.0.0.1:7000?size=120x160&rate=20000
    calibration: calib.yaml         # optional; relative paths are relative to the rig file
    margin_frames: 20
    exposure_ms: 33.3               # optional (default: one frame period)
    fps: 30                         # optional (default: what the camera reports)
    realtime: true                  # a video file plays at its own rate (a camera stand-in)
    coverage_timeout_s: 0.5
    count: 100                      # optional: stop after this many RGB frames

The same keys may sit in a ``rig:`` section of a ``spikereveal run`` file (tools/run_config.py):
``rig:RUN.yaml`` then reads that section, relative paths still relative to the file. The rig's
calibration id (:attr:`RigSource.calibration_id`) goes into every bundle, so an engine holding
another calibration refuses them rather than deblurring with the wrong one.
"""

from __future__ import annotations

import logging
import math
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import yaml

from spikereveal.calibration.model import Calibration, CalibrationError, load_calibration
from spikereveal.capture.sample import Sample
from spikereveal.capture.sources import Capture, SourceError
from spikereveal.capture.sync import SyncReport, SyncTally, worth_logging

__all__ = ["RigConfig", "RigSource", "SpikeRing", "load_rig_config", "open_rig"]

log = logging.getLogger(__name__)


class _Frame(Protocol):  # capture.rgb_camera.RgbFrame
    index: int
    image: np.ndarray
    start_ns: int
    end_ns: int


class _Block(Protocol):  # capture.spike_stream.SpikeBlock
    first_index: int
    frames: np.ndarray
    host_t_ns: int
    lost_before: int


@dataclass(frozen=True)
class RigConfig:
    """What a rig file says (see the module docstring); paths already resolved."""

    rgb: str
    spikes: str
    calibration: str | None = None
    margin_frames: int = 20
    exposure_ms: float | None = None
    fps: float | None = None
    realtime: bool = True
    coverage_timeout_s: float = 0.5
    count: int | None = None
    segment_frames: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.rgb, str) or not self.rgb:
            raise SourceError(f"rig rgb: {self.rgb!r} must be a device index, a video file or a pipeline")
        if not isinstance(self.spikes, str) or not self.spikes.startswith("spikes:"):
            raise SourceError(
                f"rig spikes: {self.spikes!r} must be a spike stream URI (spikes:tcp://..., ...)"
            )
        _check_int("margin_frames", self.margin_frames, 0)
        _check_number("coverage_timeout_s", self.coverage_timeout_s, positive=True)
        for name in ("exposure_ms", "fps"):
            if getattr(self, name) is not None:
                _check_number(name, getattr(self, name), positive=True)
        if self.count is not None:
            _check_int("count", self.count, 1)
        if self.segment_frames is not None:
            _check_int("segment_frames", self.segment_frames, 2)
        if not isinstance(self.realtime, bool):
            raise SourceError(f"rig realtime: {self.realtime!r} must be true or false")


def _check_int(name: str, value: Any, lo: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < lo:
        raise SourceError(f"rig {name}: {value!r} must be a whole number >= {lo}")


def _check_number(name: str, value: Any, *, positive: bool) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        raise SourceError(f"rig {name}: {value!r} is not a number")
    if positive and not value > 0:
        raise SourceError(f"rig {name}: {value!r} must be > 0")


def load_rig_config(path: str | Path) -> RigConfig:
    """Read a rig YAML file, or the ``rig:`` section of a run file; every error names the file and the key."""
    path = Path(path).expanduser()
    try:
        data = yaml.safe_load(path.read_text())
    except OSError as exc:
        raise SourceError(f"rig file {path}: cannot be read ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise SourceError(f"rig file {path}: not valid YAML ({str(exc).splitlines()[0]})") from None
    if isinstance(data, dict) and "rig" in data:  # a run file (spikereveal run) with a rig section
        data = data["rig"]
    if not isinstance(data, dict):
        raise SourceError(f"rig file {path}: expected a mapping of keys (rgb, spikes, ...)")
    known = [f.name for f in fields(RigConfig)]
    for key in data:
        if key not in known:
            raise SourceError(f"rig file {path}: unknown key {key!r}; known: {', '.join(known)}")
    for key in ("rgb", "spikes"):
        if key not in data:
            raise SourceError(f"rig file {path}: the key {key!r} is required")
    base = path.parent
    values = dict(data)
    rgb = str(values["rgb"])
    if (
        not rgb.strip().isdigit()
        and "!" not in rgb
        and not Path(rgb).is_absolute()
        and (base / rgb).is_file()
    ):
        rgb = str(base / rgb)
    values["rgb"] = rgb
    if values.get("calibration") is not None:
        calib = Path(str(values["calibration"])).expanduser()
        values["calibration"] = str(calib if calib.is_absolute() else base / calib)
    spikes = values["spikes"]
    if isinstance(spikes, str) and spikes.startswith(("spikes:file:", "spikes:pipe:")):
        kind, _, rest = spikes[len("spikes:") :].partition(":")
        if rest and not rest.startswith("/"):
            values["spikes"] = f"spikes:{kind}:{base / rest}"
    try:
        return RigConfig(**values)
    except SourceError as exc:
        raise SourceError(f"rig file {path}: {str(exc).removeprefix('rig ')}") from None


class SpikeRing:
    """The continuous spike stream by absolute frame index; windows are read-only views.

    Frames are written once into a segment of ``segment_frames``. When it is full, a new segment
    starts with the frames from ``keep_from`` on (the oldest frame a pending exposure may still
    need, at most ``segment_frames // 2`` frames), so every window that starts at or after
    ``keep_from`` is contiguous in one segment. Old segments are never written again: a view
    handed out stays valid (NumPy keeps its segment alive) however long a consumer holds it.
    Lost frames are zeros in the segment and remembered as gaps, so windows over them are refused.
    """

    def __init__(self, spike_hw: tuple[int, int], segment_frames: int) -> None:
        if segment_frames < 2:
            raise ValueError(f"segment_frames {segment_frames} must be >= 2")
        self.spike_hw = (int(spike_hw[0]), int(spike_hw[1]))
        self.segment_frames = int(segment_frames)
        self._seg = np.zeros((self.segment_frames, *self.spike_hw), np.uint8)
        self.first_index = 0  # absolute index of self._seg[0]
        self.end_index = 0  # one past the newest frame held
        self.started = False
        self.origin_index = 0  # the first frame ever held (windows before it were never covered)
        self.keep_from = 0  # frames before this are not needed any more (set by the rig)
        self.gaps: deque[tuple[int, int]] = deque()  # [a, b) absolute ranges of lost frames
        self.segments = 1
        self.carried_frames = 0  # frames copied into a new segment (the only second copies)

    @property
    def oldest_index(self) -> int:
        """The oldest frame still held."""
        return self.first_index

    def append(self, first_index: int, frames: np.ndarray) -> None:
        """Write ``frames`` (n, h, w) bool/uint8 whose first frame has ``first_index``."""
        n = int(frames.shape[0])
        if frames.shape[1:] != self.spike_hw:
            raise ValueError(f"spike block of {frames.shape[1:]} frames in a ring of {self.spike_hw}")
        if not self.started:
            self.started = True
            self.first_index = self.end_index = self.keep_from = int(first_index)
            self.origin_index = int(first_index)
        if first_index < self.end_index:  # the camera's count went back (a restart): start afresh
            self._new_segment(first_index, carry=False)
            self.gaps.clear()
            self.origin_index = int(first_index)
        elif first_index > self.end_index:
            self.gaps.append((self.end_index, int(first_index)))
            if first_index - self.end_index >= self.segment_frames // 2:
                self._new_segment(first_index, carry=False)
            else:
                self._write_zeros(first_index - self.end_index)
        data = frames.view(np.uint8) if frames.dtype == np.bool_ else frames
        done = 0
        while done < n:
            pos = self.end_index - self.first_index
            if pos == self.segment_frames:
                self._new_segment(self.end_index, carry=True)
                pos = self.end_index - self.first_index
            take = min(n - done, self.segment_frames - pos)
            self._seg[pos : pos + take] = data[done : done + take]
            self.end_index += take
            done += take
        while self.gaps and self.gaps[0][1] <= self.first_index:
            self.gaps.popleft()

    def _write_zeros(self, count: int) -> None:
        while count:
            pos = self.end_index - self.first_index
            if pos == self.segment_frames:
                self._new_segment(self.end_index, carry=True)
                pos = self.end_index - self.first_index
            take = min(count, self.segment_frames - pos)
            self._seg[pos : pos + take] = 0
            self.end_index += take
            count -= take

    def _new_segment(self, next_index: int, *, carry: bool) -> None:
        seg = np.empty_like(self._seg)
        kept = 0
        if carry:
            start = max(self.keep_from, self.end_index - self.segment_frames // 2, self.first_index)
            kept = self.end_index - start
            if kept > 0:
                seg[:kept] = self._seg[start - self.first_index : self.end_index - self.first_index]
                self.carried_frames += kept
            else:
                kept = 0
        self._seg = seg
        self.segments += 1
        self.first_index = next_index - kept
        self.end_index = next_index

    def lost_in(self, start: int, stop: int) -> int:
        """Lost frames in ``[start, stop)``."""
        return sum(max(0, min(b, stop) - max(a, start)) for a, b in self.gaps)

    def window(self, start: int, stop: int) -> np.ndarray:
        """Frames ``[start, stop)`` as a read-only view (the caller checked they are held)."""
        if not self.first_index <= start < stop <= self.end_index:
            raise IndexError(
                f"spike window {start}..{stop} is not held (ring holds {self.first_index}..{self.end_index})"
            )
        view = self._seg[start - self.first_index : stop - self.first_index]
        view.flags.writeable = False
        return view


def exposure_frames(x0: float, x1: float) -> tuple[int, int]:
    """Spike frames (first, last) inclusive covering an exposure from fractional index x0 to x1.

    Frame i integrates ``(i-1, i]`` in index units, so it overlaps ``[x0, x1]`` when
    ``x0 < i < x1 + 1``.

    Examples:
        >>> exposure_frames(10.0, 20.0), exposure_frames(10.5, 19.5)
        ((11, 20), (11, 20))
    """
    first = math.floor(x0) + 1
    last = max(first, math.ceil(x1))
    return first, last


class RigSource:
    """Captures of a rig: each RGB exposure with its spike window, skips counted by reason.

    ``rgb``: an iterable of RGB frames (``OpenCVCamera``); ``spikes``: an iterable of spike blocks
    (``SpikeStream``) with ``geometry``, ``rate_hz``, ``clock_model``, ``counters`` and
    ``close()``; it is read on a thread of its own. ``clock``: the host clock (ns).
    """

    live = True

    def __init__(
        self,
        rgb: Iterable[_Frame],
        spikes: Any,
        *,
        calibration: Calibration | None = None,
        margin_frames: int = 20,
        coverage_timeout_s: float = 0.5,
        segment_frames: int | None = None,
        settle_blocks: int | None = None,
        source_id: str = "rig",
        clock: Callable[[], int] = time.monotonic_ns,
    ) -> None:
        self.rgb, self.spikes = rgb, spikes
        self.calibration = calibration
        self.margin_frames = int(margin_frames)
        self.coverage_timeout_s = float(coverage_timeout_s)
        self.spike_rate_hz = float(spikes.rate_hz)
        self.spike_hw = (int(spikes.geometry.height), int(spikes.geometry.width))
        self.offset_ns = int(getattr(calibration, "time_offset_ns", 0) or 0)
        self.source_id = source_id
        self.clock = clock
        exposure_s = 0.05  # a long webcam exposure; the segment must hold a few windows
        default_segment = max(4 * (round(exposure_s * self.spike_rate_hz) + 2 * self.margin_frames), 1024)
        self.ring = SpikeRing(self.spike_hw, segment_frames or default_segment)
        model = spikes.clock_model
        self.settle_blocks = int(getattr(model, "warmup", 8) if settle_blocks is None else settle_blocks)
        self._cond = threading.Condition()
        self._ended = False
        self._error: str | None = None
        self._jumps: deque[tuple[int, int]] = deque(maxlen=64)  # [a, b) frames around each jump
        self._blocks_since_jump = 0
        self._jumps_seen = 0
        self._jump_host_ns: int | None = None  # host time of the newest jump's pair (the new fit's anchor)
        self.tally = SyncTally()  # exposures, RGB frames dropped, skips by reason
        self._reader: threading.Thread | None = None
        self._closed = False

    @property
    def calibration_id(self) -> str:
        """The id of the calibration the rig applies ("" without one); every bundle carries it."""
        return "" if self.calibration is None else self.calibration.id

    # -- the spike side (reader thread) ----------------------------------------------------------

    def _read_spikes(self) -> None:
        try:
            for block in self.spikes:
                self._take_block(block)
                if self._closed:
                    break
        except Exception as exc:  # a reader fault ends coverage; exposures are then skipped, not wrong
            log.error("%s: spike stream failed: %s", self.source_id, exc)
            self._error = str(exc)
        finally:
            with self._cond:
                self._ended = True
                self._cond.notify_all()

    def _take_block(self, block: _Block) -> None:
        model = self.spikes.clock_model
        with self._cond:
            self.ring.append(block.first_index, block.frames)
            if model.jumps != self._jumps_seen:
                self._jumps_seen = model.jumps
                # The step happened somewhere after the previous pair: this block's frames are on
                # neither fit for sure, so a window touching them is refused.
                self._jumps.append((block.first_index - 1, block.end_index))
                self._jump_host_ns = int(block.host_t_ns)
                self._blocks_since_jump = 0
            else:
                self._blocks_since_jump += 1
            self._cond.notify_all()

    # -- the RGB side ------------------------------------------------------------------------------

    def _window(self, frame: _Frame) -> tuple[int, int, int, int]:
        """(window start, window stop exclusive, exposure first, exposure last), absolute indices."""
        model = self.spikes.clock_model
        first, last = exposure_frames(
            model.to_index(frame.start_ns + self.offset_ns), model.to_index(frame.end_ns + self.offset_ns)
        )
        return first - self.margin_frames, last + self.margin_frames + 1, first, last

    def _cut(self, frame: _Frame) -> tuple[str | None, Capture | None, int]:
        """Wait (bounded) for the frame's spike window; (skip reason, capture, waited ns)."""
        t_begin = self.clock()
        deadline = t_begin + round(self.coverage_timeout_s * 1e9)
        with self._cond:
            while True:
                fitted = self.ring.started and getattr(self.spikes.clock_model, "fitted", True)
                if fitted:
                    start, stop, first, last = self._window(frame)
                    if start < self.ring.oldest_index:
                        before_stream = start < self.ring.origin_index
                        return ("no_coverage" if before_stream else "evicted"), None, 0
                    if stop <= self.ring.end_index:
                        break
                now = self.clock()
                if self._ended or now >= deadline:
                    return "no_coverage", None, now - t_begin
                self._cond.wait(min((deadline - now) / 1e9, 0.05))
            waited = self.clock() - t_begin
            before_jump = (
                self._jump_host_ns is not None and frame.end_ns + self.offset_ns < self._jump_host_ns
            )
            if (
                before_jump
                or any(a < stop and start < b for a, b in self._jumps)
                or (self._jumps_seen and self._blocks_since_jump < self.settle_blocks)
            ):
                return "clock_jump", None, waited
            if self.ring.lost_in(start, stop):
                return "lost_block", None, waited
            spikes = self.ring.window(start, stop)
            self.ring.keep_from = start  # later exposures start later: older frames are not needed
            model = self.spikes.clock_model
            spike_t0 = model.to_host_ns(start) - self.offset_ns
            rate = float(model.rate_hz)
        bgr = self._blur(frame.image)
        sample = Sample(f"rig/{frame.index:06d}", bgr, spikes, (first - start, last - start))
        capture = Capture(self.tally.exposures, sample, int(frame.start_ns), int(spike_t0), rate)
        return None, capture, waited

    def report(self, waited_ns: int = 0) -> SyncReport:
        """The sync report now (running totals)."""
        model = self.spikes.clock_model
        counters = getattr(self.spikes, "counters", None)
        fitted = getattr(model, "fitted", True)
        return self.tally.report(
            offset_residual_ns=float(model.residual_ns) if fitted else 0.0,
            rate_hz=float(model.rate_hz),
            drift_ppm=float(model.drift_ppm),
            missing_frames=int(getattr(counters, "lost_frames", 0)),
            lost_blocks=int(getattr(counters, "lost_blocks", 0)),
            clock_jumps=int(model.jumps),
            stalls=int(getattr(counters, "stalls", 0)),
            disconnects=int(getattr(counters, "disconnects", 0)),
            partial_frames=int(getattr(counters, "partial_frames", 0)),
            coverage_wait_ns=max(0, int(waited_ns)),
        )

    def __iter__(self) -> Iterator[Capture]:
        if self._reader is not None:
            raise SourceError(f"{self.source_id}: a live rig can be iterated once")
        self._reader = threading.Thread(target=self._read_spikes, name="rig-spikes", daemon=True)
        self._reader.start()
        try:
            for frame in self.rgb:
                self.tally.frame(frame.index)
                self._check_sizes(frame)
                reason, capture, waited = self._cut(frame)
                if reason is not None:
                    count = self.tally.skip(reason)
                    if worth_logging(count):
                        log.warning(
                            "%s: RGB frame %d skipped (%s; %d so far for this reason)",
                            self.source_id,
                            frame.index,
                            reason,
                            count,
                        )
                    continue
                assert capture is not None
                self.tally.deliver()
                capture = Capture(
                    capture.index,
                    capture.sample,
                    capture.rgb_t_ns,
                    capture.spike_t0_ns,
                    capture.spike_rate_hz,
                    sync=self.report(waited),
                )
                yield capture
        finally:
            self.close()

    def _blur(self, rgb: np.ndarray) -> np.ndarray:
        """The BGR blur the engine takes: the RGB as is, or warped onto 4x the spike grid when the
        calibration has a homography (calibration/warp.py)."""
        if getattr(self.calibration, "homography", None) is not None:
            from spikereveal.calibration.warp import rgb_on_spike_grid

            rgb = rgb_on_spike_grid(rgb, self.calibration, self.spike_hw)
        return np.ascontiguousarray(rgb[..., ::-1])

    def _check_sizes(self, frame: _Frame) -> None:
        h, w = frame.image.shape[:2]
        calibration = self.calibration or Calibration()
        if getattr(calibration, "homography", None) is not None:
            return  # warped onto the spike grid's 4x (calibration.warp), which fits by construction
        if not calibration.fits((h, w), self.spike_hw):
            raise SourceError(
                f"{self.source_id}: RGB frames {h}x{w} do not fit spike frames "
                f"{self.spike_hw[0]}x{self.spike_hw[1]} (calibration '{calibration.id}', "
                f"scale {calibration.scale:g})"
            )

    def close(self) -> None:
        """Stop the spike reader and release both sensors (idempotent)."""
        if self._closed:
            return
        self._closed = True
        self.spikes.close()
        close_rgb = getattr(self.rgb, "close", None)
        if close_rgb is not None:
            close_rgb()
        if self._reader is not None and self._reader is not threading.current_thread():
            self._reader.join(timeout=2.0)


def open_rig(path: str | Path) -> RigSource:
    """A :class:`RigSource` from a rig YAML file (``rig:PATH.yaml``); errors name the file."""
    from spikereveal.capture.rgb_camera import OpenCVCamera
    from spikereveal.capture.spike_stream import open_spike_stream

    config = load_rig_config(path)
    calibration = None
    if config.calibration is not None:
        try:
            calibration = load_calibration(config.calibration)
        except CalibrationError as exc:
            raise SourceError(f"rig file {path}: calibration: {exc}") from None
    spikes = open_spike_stream(config.spikes)
    camera = OpenCVCamera(
        config.rgb,
        exposure_ms=config.exposure_ms,
        fps=config.fps,
        realtime=config.realtime,
        count=config.count,
    )
    return RigSource(
        camera,
        spikes,
        calibration=calibration,
        margin_frames=config.margin_frames,
        coverage_timeout_s=config.coverage_timeout_s,
        segment_frames=config.segment_frames,
        source_id=f"rig:{path}",
    )
