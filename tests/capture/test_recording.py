"""capture/recording.py: lossless, crash-safe recordings in the RSB layout and their replay (rec:)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from spikereveal.capture.dat import open_dat
from spikereveal.capture.recording import INDEX_NAME, RecordingError, RecordingSource, RecordingWriter
from spikereveal.capture.sample import Sample
from spikereveal.capture.sources import Capture, DatasetSource, open_source

SIM = "sim:pan?size=16x24&count=5&seed=2"


def assert_same_capture(replayed: Capture, live: Capture) -> None:
    """Everything a recording keeps, compared exactly (ground truth ``sharp`` is not recorded)."""
    assert replayed.index == live.index
    assert replayed.rgb_t_ns == live.rgb_t_ns and replayed.spike_t0_ns == live.spike_t0_ns
    assert replayed.spike_rate_hz == live.spike_rate_hz
    assert replayed.sample.name == live.sample.name
    assert replayed.sample.exposure == live.sample.exposure
    assert replayed.sample.blur.dtype == live.sample.blur.dtype
    assert np.array_equal(replayed.sample.blur, live.sample.blur)
    assert replayed.sample.spikes.dtype == live.sample.spikes.dtype
    assert np.array_equal(replayed.sample.spikes, live.sample.spikes)


def record_all(captures, out: Path) -> Path:
    with RecordingWriter(out) as writer:
        for capture in captures:
            writer.write(capture)
    return out


@pytest.fixture(scope="module")
def live() -> list[Capture]:
    return list(open_source(SIM))


@pytest.fixture(scope="module")
def recording(tmp_path_factory, live) -> Path:
    return record_all(live, tmp_path_factory.mktemp("rec") / "rec")


def test_replay_gives_the_live_captures_bit_exact(recording, live):
    source = open_source(f"rec:{recording}")
    assert isinstance(source, RecordingSource) and len(source) == len(live) and not source.torn
    replayed = list(source)
    assert len(replayed) == len(live)
    for r, c in zip(replayed, live, strict=True):
        assert_same_capture(r, c)


def test_the_rsb_reader_reads_a_recording_as_a_dataset(recording, live):
    for uri in (str(recording), f"rsb:{recording}"):
        source = open_source(uri)
        assert isinstance(source, DatasetSource) and source.dataset.layout == "rsb"
        samples = [c.sample for c in source]
        assert len(samples) == len(live)
        for sample, capture in zip(samples, live, strict=True):
            assert np.array_equal(sample.blur, capture.sample.blur)
            assert np.array_equal(sample.spikes, capture.sample.spikes)
            assert sample.exposure == capture.sample.exposure


def test_the_stream_is_the_union_of_the_windows(recording, live):
    with open_dat(recording / "stream" / "pan.dat") as dat:  # geometry and rate from its sidecar
        stream = dat.read()
        assert dat.rate_hz == live[0].spike_rate_hz
    period = 1e9 / live[0].spike_rate_hz
    end = max(round(c.spike_t0_ns / period) + c.sample.num_frames for c in live)
    assert stream.shape[0] == end
    for c in live:
        start = round((c.spike_t0_ns - live[0].spike_t0_ns) / period)
        assert np.array_equal(stream[start : start + c.sample.num_frames], c.sample.spikes)


def _window_capture(stream: np.ndarray, index: int, start: int, n: int, rate: float = 1000.0) -> Capture:
    """A capture cut from a known stream: frames start..start+n-1, times from the frame index."""
    blur = np.full((8 * 4, 8 * 4, 3), index, dtype=np.uint8)
    sample = Sample(f"s/{index}", blur, stream[start : start + n], (2, n - 3))
    t0 = round(start * 1e9 / rate)
    return Capture(index, sample, t0 + round(2 * 1e9 / rate), t0, rate)


def test_overlapping_windows_are_written_once_and_gaps_are_listed(tmp_path):
    rng = np.random.default_rng(0)
    truth = (rng.random((120, 8, 8)) < 0.3).astype(np.uint8)
    # Windows overlap by 10 frames, then one leaves a hole of 15 frames before the last.
    windows = [(0, 30), (20, 30), (40, 30), (85, 35)]
    captures = [_window_capture(truth, i, s, n) for i, (s, n) in enumerate(windows)]
    out = record_all(captures, tmp_path / "rec")
    with open_dat(out / "stream" / "s.dat") as dat:
        stream = dat.read()
    assert stream.shape[0] == 120  # nothing copied twice: 70 + the hole + 35
    assert np.array_equal(stream[:70], truth[:70]) and np.array_equal(stream[85:], truth[85:])
    assert not stream[70:85].any()  # the hole: empty frames keep frame index = time
    lines = [json.loads(t) for t in (out / INDEX_NAME).read_text().splitlines()]
    assert [line["stream"]["frames_after"] for line in lines] == [30, 50, 70, 120]
    assert [line["stream"]["gap_frames"] for line in lines] == [0, 0, 0, 15]
    for r, c in zip(open_source(f"rec:{out}"), captures, strict=True):
        assert_same_capture(r, c)


def test_a_window_that_goes_back_in_time_is_refused(tmp_path):
    truth = np.zeros((100, 8, 8), dtype=np.uint8)
    with RecordingWriter(tmp_path / "rec") as writer:
        writer.write(_window_capture(truth, 0, 50, 30))
        with pytest.raises(RecordingError, match="before the last window written"):
            writer.write(_window_capture(truth, 1, 10, 30))


def test_the_output_folder_must_be_new_or_empty(tmp_path):
    (tmp_path / "x").write_text("keep me")
    with pytest.raises(RecordingError, match="not empty"):
        RecordingWriter(tmp_path)


def _copy(recording: Path, tmp_path: Path) -> Path:
    import shutil

    return Path(shutil.copytree(recording, tmp_path / "copy"))


def test_a_folder_that_is_not_a_recording_is_named(tmp_path, sim_dataset):
    with pytest.raises(RecordingError, match=r"not a recording \(expected index.jsonl"):
        open_source(f"rec:{sim_dataset}")
    with pytest.raises(RecordingError, match="no such recording folder"):
        open_source(f"rec:{tmp_path / 'nope'}")


def test_a_missing_file_is_named(recording, tmp_path):
    copy = _copy(recording, tmp_path)
    (copy / "blur_data/pan/3.png").unlink()
    with pytest.raises(RecordingError, match=r"3\.png: listed in .*index.jsonl \(seq 3\) but missing"):
        open_source(f"rec:{copy}")


def test_a_size_mismatch_is_named(recording, tmp_path):
    copy = _copy(recording, tmp_path)
    with open(copy / "spike_data/pan/1.dat", "ab") as f:
        f.write(b"\0")
    with pytest.raises(RecordingError, match=r"1\.dat: 6577 bytes, .*index.jsonl \(seq 1\) says 6576"):
        open_source(f"rec:{copy}")


def test_changed_contents_are_found_when_read(recording, tmp_path):
    copy = _copy(recording, tmp_path)
    path = copy / "spike_data/pan/2.dat"
    data = bytearray(path.read_bytes())
    data[10] ^= 0x01  # same size, one bit flipped
    path.write_bytes(bytes(data))
    source = open_source(f"rec:{copy}")
    with pytest.raises(RecordingError, match=r"2\.dat: contents differ from .*SHA-256 mismatch"):
        list(source)


def test_a_malformed_line_is_named_with_its_number(recording, tmp_path):
    copy = _copy(recording, tmp_path)
    index = copy / INDEX_NAME
    lines = index.read_text().splitlines(keepends=True)
    lines[1] = '{"seq": 1}\n'
    index.write_text("".join(lines))
    with pytest.raises(RecordingError, match=r"index.jsonl: line 2 is malformed \(missing 'scene'\)"):
        open_source(f"rec:{copy}")


def test_a_torn_last_line_is_the_bundle_in_flight(recording, live, tmp_path, caplog):
    copy = _copy(recording, tmp_path)
    index = copy / INDEX_NAME
    text = index.read_text()
    index.write_text(text[: len(text) - 40])  # the writer died inside the last line
    source = open_source(f"rec:{copy}")
    assert source.torn and len(source) == len(live) - 1
    assert "torn" in caplog.text
    for r, c in zip(source, live, strict=False):
        assert_same_capture(r, c)


def test_rec_settings_are_checked(recording):
    from spikereveal.capture.sources import SourceError

    with pytest.raises(SourceError, match="unknown setting"):
        open_source(f"rec:{recording}?speed=2")
    with pytest.raises(SourceError, match="rate 'fast'"):
        open_source(f"rec:{recording}?rate=fast")
    assert len(list(open_source(f"rec:{recording}?rate=1000"))) == 5


def test_the_capture_node_sends_the_same_bundles_live_and_replayed(recording):
    """Through the real node and a real ZeroMQ socket: rec: gives the bundles the live run gave."""
    from spikereveal.capture.node import CaptureNodeConfig
    from spikereveal.stream.transport import free_tcp_endpoint
    from tests.capture.test_node import run_capture_in_thread

    runs = []
    for uri in (SIM, f"rec:{recording}"):
        config = CaptureNodeConfig(uri, pub=free_tcp_endpoint(), rate="max", node="cap")
        got, report, _ = run_capture_in_thread(config)
        assert report.final_state == "finished"
        runs.append(got)
    live, replayed = runs
    assert len(live) == len(replayed) == 5
    for a, b in zip(live, replayed, strict=True):
        assert (a.seq, a.exposure, a.geometry, a.rgb_t_ns, a.spike_t0_ns, a.spike_rate_hz) == (
            b.seq,
            b.exposure,
            b.geometry,
            b.rgb_t_ns,
            b.spike_t0_ns,
            b.spike_rate_hz,
        )
        assert np.array_equal(a.blur, b.blur) and np.array_equal(a.spikes_packed, b.spikes_packed)
