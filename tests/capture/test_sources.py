"""capture/sources.py: one source API over recorded sets and the simulated camera; pacing wrappers."""

import numpy as np
import pytest

from spikereveal.capture.sources import (
    Capture,
    DatasetSource,
    SimulatedSource,
    SourceError,
    looped,
    open_source,
    paced,
)


def test_dataset_source_yields_every_sample_with_stream_times(sim_dataset):
    source = open_source(f"gopro:{sim_dataset}")
    assert isinstance(source, DatasetSource) and len(source) == 1
    (capture,) = list(source)
    assert capture.index == 0 and capture.sample.exposure == (20, 116)
    assert capture.spike_t0_ns == 0
    assert capture.rgb_t_ns == round(20 * 1e9 / capture.spike_rate_hz)  # exposure starts at frame 20


def test_a_single_dat_file_is_one_exposure_of_its_set(sim_dataset):
    source = open_source(str(sim_dataset / "spike_data/pan/0000.dat"))
    (capture,) = list(source)
    assert capture.sample.name.endswith("0000")


def test_a_scene_folder_is_that_scene_of_its_set(sim_dataset):
    source = open_source(str(sim_dataset / "spike_data/pan"))
    assert source.scene == "pan" and len(source) == 1


def test_simulated_source_is_reproducible_and_continuous():
    first = [c.sample for c in open_source("sim:pan?size=16x24&count=2&seed=5")]
    again = [c.sample for c in open_source("sim:pan?size=16x24&count=2&seed=5")]
    assert len(first) == 2
    for a, b in zip(first, again, strict=True):
        np.testing.assert_array_equal(a.spikes, b.spikes)
        np.testing.assert_array_equal(a.blur, b.blur)
    assert first[0].spikes.shape == (137, 16, 24) and first[0].blur.shape == (64, 96, 3)
    # the second exposure continues the stream: different content, same camera
    assert not np.array_equal(first[0].spikes, first[1].spikes)


def test_sample_uri_is_the_endless_builtin_pan():
    source = open_source("sample")
    assert isinstance(source, SimulatedSource) and source.count is None
    capture = next(iter(source))
    assert capture.sample.spikes.shape[1:] == (64, 96)


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("ftp:somewhere", "unknown scheme 'ftp'"),
        ("sim:cube", "unknown simulated scene 'cube'"),
        ("sim:pan?speed=3", "unknown setting(s) speed"),
        ("sim:pan?vth=abc", "bad value for vth"),
        ("/no/such/folder", "is not a dataset folder"),
    ],
)
def test_bad_uris_are_named(uri, needle):
    with pytest.raises(SourceError) as info:
        open_source(uri)
    assert needle in str(info.value) and uri in str(info.value)


def test_missing_scene_is_named(sim_dataset):
    with pytest.raises(SourceError, match="nosuch"):
        list(open_source(f"gopro:{sim_dataset}?scene=nosuch"))


def test_looped_keeps_indices_and_times_rising():
    captures = list(
        c
        for c, _ in zip(
            looped(lambda: open_source("sim:pan?size=8x8&count=2"), loop=True), range(5), strict=False
        )
    )
    assert [c.index for c in captures] == [0, 1, 2, 3, 4]
    times = [c.spike_t0_ns for c in captures]
    assert times == sorted(times) and len(set(times)) == 5


def test_looped_once_stops_at_the_end():
    assert len(list(looped(lambda: open_source("sim:pan?size=8x8&count=3"), loop=False))) == 3


def _fake_captures(times_ns):
    sample = next(iter(open_source("sim:pan?size=8x8&count=1"))).sample
    return [Capture(i, sample, t, t, 20_000.0) for i, t in enumerate(times_ns)]


class FakeClock:
    """A clock that advances only when pacing waits on it (no real sleeping in tests)."""

    def __init__(self, stop_after: int | None = None) -> None:
        self.now_ns = 0
        self.waits: list[float] = []
        self.stop_after = stop_after

    def __call__(self) -> int:
        return self.now_ns

    def wait(self, seconds: float) -> bool:
        self.waits.append(seconds)
        self.now_ns += int(seconds * 1e9)
        return self.stop_after is not None and len(self.waits) >= self.stop_after


def test_paced_waits_for_sensor_time_scaled_by_factor():
    # GIVEN captures 10 ms apart on the sensor clock
    clock = FakeClock()
    caps = _fake_captures([0, 10_000_000, 20_000_000])
    # WHEN replaying at twice real time
    out = list(paced(caps, 2.0, clock=clock, wait=clock.wait))
    # THEN each capture waits 5 ms after the previous one, and none is lost
    assert [c.index for c in out] == [0, 1, 2]
    assert clock.waits == pytest.approx([0.005, 0.005])


def test_paced_realtime_ends_when_the_wait_is_interrupted():
    clock = FakeClock(stop_after=1)  # the stop flag is set during the first wait
    out = list(paced(_fake_captures([0, 10**9, 2 * 10**9]), "realtime", clock=clock, wait=clock.wait))
    assert [c.index for c in out] == [0]


def test_paced_max_never_waits():
    clock = FakeClock()
    assert len(list(paced(_fake_captures([0, 10**9]), "max", clock=clock, wait=clock.wait))) == 2
    assert clock.waits == []


@pytest.mark.parametrize("rate", ["fast", 0, -1])
def test_bad_rates_are_named(rate):
    with pytest.raises(SourceError, match="rate"):
        list(paced(_fake_captures([0]), rate))


@pytest.mark.parametrize(
    ("uri", "needle"),
    [
        ("sim:pan?size=63x95", "spike size 63x95: h*w must be a multiple of 8"),
        ("sim:pan?size=0x8", "height and width must be positive"),
        ("sim:pan?count=0", "count 0 must be >= 1"),
    ],
)
def test_simulated_sizes_are_checked_when_the_uri_is_opened(uri: str, needle: str) -> None:
    # Not at the first read: a node must refuse the URI before it binds a socket or waits for a peer.
    with pytest.raises(SourceError) as info:
        open_source(uri)
    assert needle in str(info.value) and uri in str(info.value)
