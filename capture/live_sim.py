"""A live simulated spike camera watching any RGB source (a webcam or a video), and the ``livesim:`` source.

Anyone with a webcam can try the whole pipeline: each RGB frame is downscaled to the spike size
and turned to grey; between the middles of two consecutive exposures the grey image is
interpolated linearly at the spike rate (20 kHz: ~667 spike frames per 30 fps frame) and fed to
an integrate-and-fire sensor with the threshold convention of
:mod:`spikereveal.capture.spike_camera` (charge += 1.985 g per frame against 2 Vth, seeded
uniform initial charge, optional noise).

No per-frame Python loop: under linear interpolation the charge after frame i of an interval is
closed-form, ``C_i = c0 + n_i A + W_i D`` (A: the increment at the interval's start, D: its change
across the interval, n_i and W_i: frame count and running sum of interpolation weights), in units
of the threshold; the number of spikes so far is ``floor(C_i)`` and a frame fires where that floor
steps. That is exactly :meth:`SpikeCamera.step` while one frame's increment stays below the
threshold (any Vth >= 1 at grey <= 1); below Vth ~0.99 a saturated pixel still fires every frame
but keeps the whole remainder instead of step's cap (float32 rounding may flip a rare bit).

Spike frame ``i`` integrates the light around ``t_begin + i * period`` and is read out half a
period later; ``t_begin`` is the first exposure's start minus ``lead_ns``, with the first image held
before its middle, so the first exposure is covered too. Frames of an interval can be made only
once its second RGB frame exists: the stream lags the RGB by one frame, like any interpolation.

Every capture carries a :class:`~spikereveal.capture.sync.SyncReport` as a rig's does (counted by
the same :class:`~spikereveal.capture.sync.SyncTally`): exposures, RGB frames the camera dropped,
exposures skipped (``no_coverage``: shorter than one spike frame); a simulated stream loses no
block and its clock is exact (residual 0, drift 0).
"""

from __future__ import annotations

import itertools
import math
import time
import urllib.parse
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from spikereveal.capture.fire_jit import AVAILABLE as JIT_AVAILABLE
from spikereveal.capture.fire_jit import fire_interpolated_jit
from spikereveal.capture.rgb_camera import OpenCVCamera, RgbFrame
from spikereveal.capture.sample import Sample
from spikereveal.capture.sources import Capture, SourceError
from spikereveal.capture.spike_camera import CODE_UNITS_PER_VTH, DEFAULT_INCREMENT_PER_FRAME
from spikereveal.capture.spike_stream import SpikeBlock
from spikereveal.capture.sync import SyncTally
from spikereveal.stream.errors import SpikeRevealError
from spikereveal.stream.spikes import parse_size

__all__ = ["LiveSimSource", "LiveSpikeSimulator", "bench", "fire_interpolated", "open_livesim", "rgb_to_grey"]

#: Spike frames computed per NumPy pass: bounds the temporaries (128 x 120 x 160 float32 = 10 MB).
CHUNK_FRAMES = 128


def rgb_to_grey(image: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """(h, w) float32 grey 0..1 of an RGB uint8 image resized to ``size`` (area average):
    0.3 R + 0.59 G + 0.11 B, the weights of :func:`spike_camera.bgr_to_grey`."""
    import cv2

    h, w = size
    small = image if image.shape[:2] == (h, w) else cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA)
    small = small.astype(np.float32) * np.float32(1 / 255)
    return 0.3 * small[..., 0] + 0.59 * small[..., 1] + 0.11 * small[..., 2]


def fire_interpolated(
    charge: np.ndarray, start: np.ndarray, delta: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Integrate-and-fire over frames whose increment is ``start + w * delta`` (threshold units).

    Args:
        charge: (h, w) float32 charge in [0, 1) threshold units before the first frame.
        start, delta: (h, w) float32 increment per frame at weight 0 and its change at weight 1.
        weights: (n,) float interpolation weights of the frames, in order.

    Returns:
        (n, h, w) bool spikes and the (h, w) float32 charge after the last frame.
    """
    n = int(weights.shape[0])
    out = np.empty((n, *charge.shape), dtype=np.bool_)
    if n == 0:
        return out, charge
    counts = np.arange(1, n + 1, dtype=np.float32)
    sums = np.cumsum(weights, dtype=np.float64).astype(np.float32)
    base = charge.astype(np.float32)
    rows = min(n, CHUNK_FRAMES)
    c_buf = np.empty((rows, *charge.shape), dtype=np.float32)  # reused: no allocation per chunk
    t_buf = np.empty_like(c_buf)
    previous = np.zeros(charge.shape, dtype=np.float32)  # floor(charge) = 0
    last = base
    for lo in range(0, n, CHUNK_FRAMES):  # chunks of frames, not a loop over frames
        hi = min(lo + CHUNK_FRAMES, n)
        c, t = c_buf[: hi - lo], t_buf[: hi - lo]
        np.multiply.outer(counts[lo:hi], start, out=c)
        np.multiply.outer(sums[lo:hi], delta, out=t)
        c += t
        c += base
        last = c[-1].copy()
        np.floor(c, out=c)  # spikes fired so far
        np.not_equal(c[0], previous, out=out[lo])
        np.not_equal(c[1:], c[:-1], out=out[lo + 1 : hi])
        previous = c[-1].copy()
    return out, (last - previous).astype(np.float32)


@dataclass
class LiveSpikeSimulator:
    """Push RGB frames in, get spike blocks out (:meth:`feed`); :meth:`simulate` wraps an iterable.

    Args:
        spike_size: (h, w) of the spike frames (e.g. (120, 160) for a 480x640 webcam).
        vth: threshold in paper units (1: white fires on ~99 % of frames).
        rate_hz: spike read-out rate.
        seed, noise_prob: as :class:`~spikereveal.capture.spike_camera.SpikeCamera`.
        lead_ns: spike frames start this long before the first exposure.
    """

    spike_size: tuple[int, int]
    vth: float = 1.0
    rate_hz: float = 20_000.0
    seed: int | None = 0
    noise_prob: float = 0.0
    lead_ns: int = 0
    increment_per_frame: float = DEFAULT_INCREMENT_PER_FRAME

    def __post_init__(self) -> None:
        if not (math.isfinite(self.vth) and self.vth > 0):
            raise ValueError(f"vth {self.vth!r} must be a finite number > 0")
        if not (math.isfinite(self.rate_hz) and self.rate_hz > 0):
            raise ValueError(f"rate {self.rate_hz!r} must be > 0 spike frames per second")
        if not 0 <= self.noise_prob <= 1:
            raise ValueError(f"noise {self.noise_prob!r} must lie in [0, 1]")
        h, w = self.spike_size
        if h <= 0 or w <= 0:
            raise ValueError(f"size {h}x{w} must be positive")
        self.period_ns = 1e9 / self.rate_hz
        code_threshold = CODE_UNITS_PER_VTH * self.vth
        self._gain = np.float32(self.increment_per_frame / code_threshold)
        self._rng = np.random.default_rng(self.seed)
        # The same draw as SpikeCamera's first frame, so both start at the same phase.
        self._charge = (self._rng.uniform(0.0, code_threshold, size=(h, w)) / code_threshold).astype(
            np.float32
        )
        self._last: tuple[float, np.ndarray] | None = None  # (time ns, grey) of the previous key frame
        self.t_begin_ns: int | None = None
        self.next_index = 0

    @property
    def spike_t0_ns(self) -> float:
        """Read-out time of spike frame 0 (integration centre + half a period)."""
        if self.t_begin_ns is None:
            raise ValueError("live simulator: no RGB frame yet")
        return self.t_begin_ns + self.period_ns / 2

    def index_at(self, t_ns: float) -> float:
        """Fractional spike index whose integration centre is at ``t_ns``."""
        if self.t_begin_ns is None:
            raise ValueError("live simulator: no RGB frame yet")
        return (t_ns - self.t_begin_ns) / self.period_ns

    def feed(self, frame: RgbFrame) -> list[SpikeBlock]:
        """Add one RGB frame; returns the spike frames up to its exposure's middle (maybe none)."""
        grey = rgb_to_grey(frame.image, self.spike_size)
        mid = frame.mid_ns
        if self._last is None:
            self.t_begin_ns = int(frame.start_ns - self.lead_ns)
            self._last = (float(self.t_begin_ns), grey)  # hold the first image before its middle
        blocks = [self._interval(self._last, (mid, grey))]
        self._last = (mid, grey)
        return [b for b in blocks if b is not None]

    def _interval(self, a: tuple[float, np.ndarray], b: tuple[float, np.ndarray]) -> SpikeBlock | None:
        (ta, ga), (tb, gb) = a, b
        assert self.t_begin_ns is not None
        end = math.ceil((tb - self.t_begin_ns) / self.period_ns)  # frames with centre < tb
        first = self.next_index
        if end <= first or tb <= ta:
            return None
        centres = self.t_begin_ns + np.arange(first, end, dtype=np.float64) * self.period_ns
        weights = np.clip((centres - ta) / (tb - ta), 0.0, 1.0)
        fire = fire_interpolated_jit if JIT_AVAILABLE else fire_interpolated  # the same bits, ~8x faster
        spikes, self._charge = fire(self._charge, self._gain * ga, self._gain * (gb - ga), weights)
        if self.noise_prob > 0:
            spikes |= self._rng.random(spikes.shape) < self.noise_prob
        self.next_index = end
        host_t = round(self.spike_t0_ns + (end - 1) * self.period_ns)
        return SpikeBlock(first, spikes, host_t, 0)

    def simulate(self, frames: Iterable[RgbFrame]) -> Iterator[SpikeBlock]:
        """Spike blocks of a whole RGB sequence, as the frames come."""
        for frame in frames:
            yield from self.feed(frame)


class LiveSimSource:
    """``livesim:``: an RGB camera or video and its simulated spike camera, as :class:`Capture` s.

    For each RGB exposure, the spike frames whose integration centres lie in [start, end] are the
    exposure, and ``margin_frames`` more on either side make the window (the official layout has
    20); a capture is emitted once the continuous stream has reached the window's end. The first
    exposures are covered because the stream starts ``margin`` frames before the first one.
    """

    def __init__(
        self,
        spec: str | int,
        *,
        spike_size: tuple[int, int] | None = None,
        vth: float = 1.0,
        spike_rate_hz: float = 20_000.0,
        fps: float | None = None,
        exposure_ms: float | None = None,
        margin_frames: int = 20,
        realtime: bool = True,
        count: int | None = None,
        seed: int | None = 0,
        noise_prob: float = 0.0,
    ) -> None:
        if margin_frames < 0:
            raise SourceError(f"livesim {spec!r}: margin {margin_frames} must be >= 0")
        if count is not None and count < 1:
            raise SourceError(f"livesim {spec!r}: count {count} must be >= 1")
        self.camera = OpenCVCamera(spec, exposure_ms=exposure_ms, fps=fps, realtime=realtime)
        height, width = self.camera.size
        if spike_size is None:
            spike_size = (max(height // 4, 1), max(width // 4, 1))
        self.spike_size = spike_size
        self.spike_rate_hz = float(spike_rate_hz)
        try:
            self.simulator = LiveSpikeSimulator(
                spike_size,
                vth=vth,
                rate_hz=spike_rate_hz,
                seed=seed,
                noise_prob=noise_prob,
                lead_ns=round((margin_frames + 1) * 1e9 / spike_rate_hz),
            )
        except ValueError as exc:
            self.camera.close()
            raise SourceError(f"livesim {spec!r}: {exc}") from None
        self.margin = margin_frames
        self.count = count
        self.live = self.camera.live
        self.source_id = (
            f"livesim:{spec}?size={spike_size[0]}x{spike_size[1]}&vth={vth:g}&rate={spike_rate_hz:g}"
        )
        self.tally = SyncTally()

    @property
    def skipped(self) -> int:
        """Exposures not cut (shorter than one spike frame)."""
        return sum(self.tally.skipped.values())

    def __iter__(self) -> Iterator[Capture]:
        sim = self.simulator
        blocks: list[SpikeBlock] = []  # the continuous stream, from the oldest pending window on
        pending: list[tuple[RgbFrame, int, int]] = []  # frame, exposure first and last spike index
        made = 0
        for frame in self.camera:
            self.tally.frame(frame.index)
            for block in sim.feed(frame):
                blocks.append(block)
            s = math.ceil(sim.index_at(frame.start_ns))
            e = math.floor(sim.index_at(frame.end_ns))
            if e < s:  # an exposure shorter than one spike frame: nothing to cut
                self.tally.skip("no_coverage")
                continue
            pending.append((frame, s, e))
            while pending and blocks and blocks[-1].end_index > pending[0][2] + self.margin:
                rgb, s0, e0 = pending.pop(0)
                self.tally.deliver()
                yield self._capture(made, rgb, s0, e0, blocks)
                made += 1
                if self.count is not None and made >= self.count:
                    return
                keep_from = (pending[0][1] - self.margin) if pending else blocks[-1].end_index
                blocks = [b for b in blocks if b.end_index > keep_from]

    def _capture(self, index: int, rgb: RgbFrame, s: int, e: int, blocks: list[SpikeBlock]) -> Capture:
        import cv2

        lo, hi = s - self.margin, e + self.margin + 1
        parts = [
            b.frames[max(lo - b.first_index, 0) : hi - b.first_index]
            for b in blocks
            if b.end_index > lo and b.first_index < hi
        ]
        spikes = np.concatenate(parts).view(np.uint8) if len(parts) > 1 else parts[0].view(np.uint8)
        sample = Sample(
            name=f"livesim/{rgb.index:06d}",
            blur=cv2.cvtColor(rgb.image, cv2.COLOR_RGB2BGR),  # Sample blur is BGR
            spikes=spikes,
            exposure=(self.margin, self.margin + e - s),
        )
        spike_t0 = round(self.simulator.spike_t0_ns + lo * self.simulator.period_ns)
        sync = self.tally.report(rate_hz=self.spike_rate_hz)  # simulated: exact clock, nothing lost
        return Capture(index, sample, int(rgb.start_ns), spike_t0, self.spike_rate_hz, sync=sync)

    def close(self) -> None:
        self.camera.close()


def bench(size: tuple[int, int] = (120, 160), frames: int = 20_000, repeats: int = 3) -> dict[str, float]:
    """Spike frames simulated per second at ``size`` (one core, NumPy): the median of ``repeats``."""
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (size[0] * 4, size[1] * 4, 3), dtype=np.uint8) for _ in range(2)]
    rates = []
    for _ in range(repeats):
        sim = LiveSpikeSimulator(size)
        period = round(1e9 / 30)  # RGB frames at 30 fps
        made = 0
        t0 = time.perf_counter()
        for k in itertools.count():
            image = images[k % 2]
            made += sum(len(b.frames) for b in sim.feed(RgbFrame(k, image, k * period, k * period)))
            if made >= frames:
                break
        rates.append(made / (time.perf_counter() - t0))
    return {"frames_per_s": float(np.median(rates)), "min": float(min(rates)), "max": float(max(rates))}


_LIVESIM_KEYS = {
    "size": ("spike_size", parse_size),
    "vth": ("vth", float),
    "rate": ("spike_rate_hz", float),
    "fps": ("fps", float),
    "exposure_ms": ("exposure_ms", float),
    "margin": ("margin_frames", int),
    "realtime": ("realtime", lambda text: {"1": True, "0": False}[text]),
    "count": ("count", int),
    "seed": ("seed", int),
    "noise": ("noise_prob", float),
}


def open_livesim(uri: str, target: str, query: dict[str, list[str]]) -> LiveSimSource:
    """The ``livesim:`` branch of :func:`~spikereveal.capture.sources.open_source`.

    ``livesim:PATH_OR_DEVICE_OR_PIPELINE?size=HxW&vth=1&rate=20000&fps=30&exposure_ms=20&margin=20
    &realtime=0|1&count=N&seed=S&noise=P``; size defaults to a quarter of the RGB size per side,
    the exposure to one frame period, realtime to 1 (a file plays at its own rate).
    """
    unknown = sorted(set(query) - set(_LIVESIM_KEYS))
    if unknown:
        raise SourceError(
            f"source {uri!r}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(_LIVESIM_KEYS))}"
        )
    if not target:
        raise SourceError(
            f"source {uri!r}: expected livesim:DEVICE_INDEX, livesim:VIDEO_PATH or livesim:PIPELINE"
        )
    kwargs: dict[str, object] = {}
    for key, (name, cast) in _LIVESIM_KEYS.items():
        if key in query:
            text = query[key][-1]
            try:
                kwargs[name] = cast(text)
            except (ValueError, KeyError, SpikeRevealError) as exc:
                raise SourceError(f"source {uri!r}: bad value for {key}: {text!r} ({exc})") from None
    try:
        return LiveSimSource(urllib.parse.unquote(target), **kwargs)  # type: ignore[arg-type]
    except SourceError as exc:
        raise SourceError(f"source {uri!r}: {exc}") from None
