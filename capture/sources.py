"""One source API over recorded datasets, the simulated spike camera and (later) live rigs.

Like OpenEB's ``EventsIterator``, a source is opened from one string, a URI, and yields the same
thing whatever is behind it: :class:`Capture`, one RGB exposure with the spike frames around it
and the sensor times of both. Pacing (:func:`paced`) and repetition (:func:`looped`) are wrappers,
not flags inside every reader.

URIs::

    sample                       the built-in simulated pan (what ``make demo`` shows), endless
    sim:pan?vth=2&seed=3&size=64x96&count=10
                                 the same with settings (count: stop after that many exposures)
    gopro:PATH[?scene=NAME]      a GOPRO-spike layout set (or what ``spikereveal simulate`` wrote)
    rsb:PATH[?scene=NAME]        an RSB layout set
    rec:DIR[?rate=max|realtime|FACTOR]
                                 a recording made by ``spikereveal record`` (capture/recording.py),
                                 replayed with its recorded times (rate: pacing of its own; default max)
    livesim:DEVICE|VIDEO|PIPELINE[?size=120x160&vth=1&rate=20000&fps=30&exposure_ms=33&margin=20&realtime=1&count=N]
                                 an RGB camera (device index, video file, GStreamer pipeline) and a
                                 spike camera simulated live from it (capture/live_sim.py)
    rig:RIG.yaml                 a live rig: an RGB camera and a spike stream paired by a calibration
                                 (capture/rig.py), with a sync report in every capture
    PATH                         a set (layout detected), one scene folder ``<set>/spike_data/<scene>``,
                                 or one ``.dat`` inside it (just that exposure)
"""

from __future__ import annotations

import itertools
import time
import urllib.parse
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from spikereveal.calibration.model import Calibration
from spikereveal.capture.datasets import DatasetError, open_dataset
from spikereveal.capture.sample import Sample
from spikereveal.capture.sync import SyncReport
from spikereveal.stream.errors import SpikeRevealError
from spikereveal.stream.spikes import parse_size

#: Spike read-out rate assumed for recordings that do not say otherwise (the RSB camera's rate).
DEFAULT_SPIKE_RATE_HZ = 20_000.0


class SourceError(SpikeRevealError):
    """A source URI that cannot be opened, named with what was expected."""


@dataclass(frozen=True)
class Capture:
    """One RGB exposure and its spike frames, with sensor times.

    ``rgb_t_ns`` and ``spike_t0_ns`` are on the source's clock (``time.monotonic_ns()`` for live
    devices; synthetic, starting at 0, for recordings): spike frame i was read out at
    ``spike_t0_ns + i * 1e9 / spike_rate_hz``.
    """

    index: int
    sample: Sample
    rgb_t_ns: int
    spike_t0_ns: int
    spike_rate_hz: float
    #: Sync quality of a live rig at this exposure (capture/rig.py); None for recordings.
    sync: SyncReport | None = None


class Source(Protocol):
    """What every source offers: an id, its nominal timing, and captures in order."""

    source_id: str
    spike_rate_hz: float

    def __iter__(self) -> Iterator[Capture]: ...

    def close(self) -> None: ...


def _captures(samples: Iterable[Sample], rate_hz: float) -> Iterator[Capture]:
    """Stamp consecutive samples as consecutive stretches of one spike stream."""
    t_frames = 0
    period_ns = 1e9 / rate_hz
    for index, sample in enumerate(samples):
        spike_t0 = round(t_frames * period_ns)
        rgb_t = spike_t0 + round(sample.exposure[0] * period_ns)
        yield Capture(index, sample, rgb_t, spike_t0, rate_hz)
        t_frames += sample.num_frames


@dataclass
class DatasetSource:
    """Every sample of a recorded set, in order (lazy: one sample's files read at a time)."""

    path: Path
    layout: str = "auto"
    scene: str | None = None
    stem: str | None = None
    flip: bool = True
    calibration: Calibration | None = None
    spike_rate_hz: float = DEFAULT_SPIKE_RATE_HZ

    def __post_init__(self) -> None:
        self.dataset = open_dataset(
            self.path, self.layout, flip=self.flip, calibration=self.calibration, scene=self.scene
        )
        self.source_id = f"{self.dataset.layout}:{self.path}" + (f"#{self.scene}" if self.scene else "")
        if self.stem is not None:
            keep = [i for i in range(len(self.dataset)) if self.dataset.entries[i].name == self.stem]
            if not keep:
                raise SourceError(f"{self.path}: no sample named {self.stem!r} in scene {self.scene!r}")
            self._indices = keep
        else:
            self._indices = list(range(len(self.dataset)))
        if not self._indices:
            raise SourceError(f"{self.path}: the set holds no samples")

    def __len__(self) -> int:
        return len(self._indices)

    def __iter__(self) -> Iterator[Capture]:
        return _captures((self.dataset[i] for i in self._indices), self.spike_rate_hz)

    def close(self) -> None:
        return None


@dataclass
class SimulatedSource:
    """A simulated spike camera watching the built-in pan: one continuous, reproducible stream."""

    spike_size: tuple[int, int] = (64, 96)
    vth: float = 1.0
    seed: int = 0
    noise_prob: float = 0.0
    count: int | None = None
    spike_rate_hz: float = DEFAULT_SPIKE_RATE_HZ
    texture: str = "astronaut"

    def __post_init__(self) -> None:
        from spikereveal.capture.simulation import SimulationConfig

        # Check the sizes and sensor settings now, when the URI is opened, not at the first read:
        # a spike size whose frames are not whole bytes must be one error line before any
        # process starts (``run``) or any socket is bound (the capture node), not a traceback.
        SimulationConfig(spike_size=self.spike_size, vth=self.vth, seed=self.seed, noise_prob=self.noise_prob)
        if self.count is not None and self.count < 1:
            raise ValueError(f"count {self.count} must be >= 1")
        if not self.spike_rate_hz > 0:
            raise ValueError(f"rate {self.spike_rate_hz} must be > 0 spike frames per second")
        self.source_id = (
            f"sim:pan?vth={self.vth:g}&seed={self.seed}&size={self.spike_size[0]}x{self.spike_size[1]}"
        )

    def __len__(self) -> int:
        if self.count is None:
            raise TypeError("an endless simulated source has no length")
        return self.count

    def __iter__(self) -> Iterator[Capture]:
        from spikereveal.capture.scenes import PanScene, PanTrajectory
        from spikereveal.capture.simulation import SimulationConfig, simulate_sample

        config = SimulationConfig(
            spike_size=self.spike_size, vth=self.vth, seed=self.seed, noise_prob=self.noise_prob
        )
        scene = PanScene(size=config.blur_size, texture=self.texture, trajectory=PanTrajectory())
        camera = config.new_camera()
        per = config.frames_per_sample

        def samples() -> Iterator[Sample]:
            for i in itertools.count() if self.count is None else range(self.count):
                frames = scene.frames(i * per, (i + 1) * per)
                yield simulate_sample(frames, camera, config, name=f"pan/{i:04d}")

        return _captures(samples(), self.spike_rate_hz)

    def close(self) -> None:
        return None


def _query_value(query: dict[str, list[str]], key: str, cast: Callable[[str], object], uri: str) -> object:
    try:
        return cast(query[key][-1])
    except (ValueError, TypeError) as exc:
        raise SourceError(f"source {uri!r}: bad value for {key}: {query[key][-1]!r} ({exc})") from None


def open_source(uri: str, *, flip: bool = True, calibration: Calibration | None = None) -> Source:
    """Open a source from its URI (see the module docstring); errors name the URI and what fits.

    Examples:
        Two exposures of the simulated pan at 16x24 spikes (the RGB frame is 4x that per side):

        >>> captures = list(open_source("sim:pan?size=16x24&count=2&seed=1"))
        >>> len(captures), captures[0].sample.blur.shape, captures[0].sample.spikes.shape
        (2, (64, 96, 3), (137, 16, 24))
        >>> captures[0].sample.exposure, captures[0].spike_rate_hz
        ((20, 116), 20000.0)
        >>> open_source("sim:pan?size=16")
        Traceback (most recent call last):
        ...
        spikereveal.capture.sources.SourceError: source 'sim:pan?size=16': bad value for size: '16' ('16' is not a size HxW (height x width), e.g. 250x400)
    """
    scheme, sep, rest = uri.partition(":")
    if uri in ("sample", "sim"):
        scheme, sep, rest = uri, ":", ""
    elif not sep or len(scheme) == 1:  # no scheme, or a Windows drive letter: a plain path
        scheme, rest = "path", uri
    rest, _, query_text = rest.partition("?")
    query = urllib.parse.parse_qs(query_text, keep_blank_values=False)
    if scheme in ("sample", "sim"):
        if rest not in ("", "pan"):
            raise SourceError(f"source {uri!r}: unknown simulated scene {rest!r}; expected 'pan'")
        known = {"vth", "seed", "size", "count", "noise", "rate"}
        unknown = sorted(set(query) - known)
        if unknown:
            raise SourceError(
                f"source {uri!r}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        kwargs: dict[str, object] = {}
        for key, field_name, cast in (
            ("vth", "vth", float),
            ("seed", "seed", int),
            ("size", "spike_size", parse_size),
            ("count", "count", int),
            ("noise", "noise_prob", float),
            ("rate", "spike_rate_hz", float),
        ):
            if key in query:
                kwargs[field_name] = _query_value(query, key, cast, uri)
        try:
            return SimulatedSource(**kwargs)  # type: ignore[arg-type]
        except ValueError as exc:
            raise SourceError(f"source {uri!r}: {exc}") from None
    if scheme == "rec":
        from spikereveal.capture.recording import RecordingSource  # it imports this module

        unknown = sorted(set(query) - {"rate"})
        if unknown:
            raise SourceError(f"source {uri!r}: unknown setting(s) {', '.join(unknown)}; known: rate")
        rate = query.get("rate", ["max"])[-1]
        return RecordingSource(Path(urllib.parse.unquote(rest)).expanduser(), rate=rate)
    if scheme == "rig":
        from spikereveal.capture.rig import open_rig  # it imports this module

        return open_rig(Path(urllib.parse.unquote(rest)).expanduser())
    if scheme == "livesim":
        from spikereveal.capture.live_sim import open_livesim  # it imports this module

        return open_livesim(uri, rest, query)
    if scheme not in ("gopro", "rsb", "path"):
        raise SourceError(
            f"source {uri!r}: unknown scheme {scheme!r}; expected sample, sim:, gopro:, rsb: or a path"
        )
    path = Path(urllib.parse.unquote(rest)).expanduser()
    scene = query.get("scene", [None])[-1]
    stem = None
    if path.is_file() and path.suffix == ".dat":
        # One exposure inside a set: <root>/spike_data/<scene>/<stem>.dat
        if path.parent.parent.name != "spike_data":
            raise SourceError(f"source {uri!r}: a single .dat must sit in <set>/spike_data/<scene>/")
        path, scene, stem = path.parents[2], path.parent.name, path.stem
    elif path.is_dir() and path.parent.name == "spike_data":
        # One scene of a set: <root>/spike_data/<scene>/
        path, scene = path.parents[1], path.name
    if not path.is_dir():
        raise SourceError(
            f"source {uri!r}: {path} is not a dataset folder (expected spike_data/ and blur_data/)"
        )
    layout = "auto" if scheme == "path" else scheme
    try:
        return DatasetSource(path, layout, scene=scene, stem=stem, flip=flip, calibration=calibration)
    except DatasetError as exc:
        raise SourceError(f"source {uri!r}: {exc}") from None


def looped(open_again: Callable[[], Source], loop: bool) -> Iterator[Capture]:
    """Captures of a source, from the start again after the end when ``loop``.

    Indices and sensor times keep rising across repetitions, so downstream nodes see one
    continuous stream (sequence numbers never go back).
    """
    index_offset = 0
    t_offset = 0
    while True:
        source = open_again()
        count = 0
        end_ns = 0
        for capture in source:
            count += 1
            period_ns = 1e9 / capture.spike_rate_hz
            end_ns = capture.spike_t0_ns + round(capture.sample.num_frames * period_ns)
            yield Capture(
                capture.index + index_offset,
                capture.sample,
                capture.rgb_t_ns + t_offset,
                capture.spike_t0_ns + t_offset,
                capture.spike_rate_hz,
                sync=capture.sync,  # a live source's report stays with its capture on every pass
            )
        source.close()
        if not loop or count == 0:
            return
        index_offset += count
        t_offset += end_ns


def paced(
    captures: Iterable[Capture],
    rate: str | float,
    *,
    clock: Callable[[], int] = time.monotonic_ns,
    wait: Callable[[float], object] = time.sleep,
) -> Iterator[Capture]:
    """Release captures at their sensor times: ``"realtime"``, ``"max"`` (no waiting) or a speed factor.

    The first capture goes at once; capture n waits until ``(t_n - t_0) / factor`` has passed since
    then, so a slow consumer does not make the replay run late forever (no drift accumulates).
    ``wait(seconds)`` sleeps; a node passes its stop flag's ``wait``, which returns True when the
    node is stopping, and pacing then ends at once instead of after the current period.
    """
    factor = rate_factor(rate)
    start_wall: int | None = None
    start_sensor = 0
    for capture in captures:
        if factor is not None:
            if start_wall is None:
                start_wall, start_sensor = clock(), capture.rgb_t_ns
            due = start_wall + (capture.rgb_t_ns - start_sensor) / factor
            delay = (due - clock()) / 1e9
            if delay > 0 and wait(delay) is True:
                return
        yield capture


def parse_rate(rate: str | float) -> str | float:
    """``"realtime"``, ``"max"`` or a speed factor > 0 (``"0.5"`` -> 0.5); SourceError otherwise."""
    if rate in ("realtime", "max"):
        return rate
    try:
        factor = float(rate)
    except (TypeError, ValueError):
        raise SourceError(
            f"rate {rate!r}: expected realtime, max or a speed factor such as 0.5 or 4"
        ) from None
    if not factor > 0 or factor == float("inf"):
        raise SourceError(f"rate {rate!r}: a speed factor must be a finite number > 0")
    return factor


def rate_factor(rate: str | float) -> float | None:
    """Speed-up over the sensor clock: None for "max" (no pacing), 1.0 for "realtime"."""
    parsed = parse_rate(rate)
    if parsed == "max":
        return None
    return 1.0 if parsed == "realtime" else float(parsed)
