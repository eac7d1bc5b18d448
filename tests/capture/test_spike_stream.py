"""capture/spike_stream.py: growing file, FIFO, TCP and callback deliver every frame bit-exact;
faults (stall, disconnect, end mid-frame, lost frames) are reported, never raised.

Writers are real: a thread appending to a real file, a child process writing a real FIFO, a real
TCP server on a free loopback port. Every wait is bounded (``end_s``, join timeouts).
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from spikereveal.capture.spike_stream import (
    CallbackSpikeSource,
    SpikeBlock,
    SpikeStreamError,
    open_spike_stream,
)
from spikereveal.stream.spikes import SpikeGeometry, pack_frames

pytestmark = pytest.mark.timeout(60)

H, W = 8, 16
GEOMETRY = SpikeGeometry(H, W)  # flip on: stored bottom-up, as cameras write


def frames(n: int, seed: int = 0) -> np.ndarray:
    """Random upright frames with a one-pixel marker per frame (catches flips and reorders)."""
    out = np.random.default_rng(seed).random((n, H, W)) < 0.3
    out[:, 0, :] = False
    out[np.arange(n), 0, np.arange(n) % W] = True
    return out


def chunks(data: bytes, seed: int = 1) -> list[bytes]:
    """``data`` cut at random places, mid-frame included (frames are 16 bytes)."""
    rng = np.random.default_rng(seed)
    cuts = np.sort(rng.choice(np.arange(1, len(data)), size=len(data) // 40, replace=False))
    return [bytes(c) for c in np.split(np.frombuffer(data, np.uint8), cuts)]


def joined(blocks: list[SpikeBlock]) -> np.ndarray:
    return np.concatenate([b.frames for b in blocks])


def test_growing_file_delivers_every_frame_bit_exact(tmp_path: Path) -> None:
    truth = frames(300)
    data = pack_frames(truth, GEOMETRY).tobytes()
    path = tmp_path / "live.dat"

    def writer() -> None:
        with open(path, "ab") as f:
            for piece in chunks(data):
                f.write(piece)
                f.flush()
                time.sleep(0.0005)

    stream = open_spike_stream(f"spikes:file:{path}?size={H}x{W}&rate=2000&end_s=0.5")
    thread = threading.Thread(target=writer)
    thread.start()
    try:
        blocks = list(stream)
    finally:
        thread.join(10)
    assert len(blocks) > 1  # it really followed the file as it grew
    np.testing.assert_array_equal(joined(blocks), truth)
    assert [b.first_index for b in blocks] == [0, *np.cumsum([len(b.frames) for b in blocks])[:-1]]
    assert stream.counters.frames == 300 and stream.counters.partial_frames == 0
    assert [e.kind for e in stream.events][-1] == "end"


def test_stall_is_reported_with_frames_so_far_and_resume(tmp_path: Path) -> None:
    path = tmp_path / "live.dat"
    truth = frames(20)
    path.write_bytes(pack_frames(truth[:10], GEOMETRY).tobytes())

    def late_writer() -> None:
        time.sleep(0.4)
        with open(path, "ab") as f:
            f.write(pack_frames(truth[10:], GEOMETRY).tobytes())

    stream = open_spike_stream(f"spikes:file:{path}?size={H}x{W}&stall_s=0.15&end_s=0.6")
    thread = threading.Thread(target=late_writer)
    thread.start()
    try:
        blocks = list(stream)
    finally:
        thread.join(10)
    np.testing.assert_array_equal(joined(blocks), truth)
    kinds = [e.kind for e in stream.events]
    assert kinds.index("stall") < kinds.index("resumed")
    stall = stream.events[kinds.index("stall")]
    assert stall.frames == 10 and "since" in stall.detail
    assert stream.counters.stalls == 2  # the pause, and the final idle before the end


def test_file_ending_mid_frame_drops_the_partial_frame_and_reports_it(tmp_path: Path) -> None:
    truth = frames(5)
    path = tmp_path / "cut.dat"
    path.write_bytes(pack_frames(truth, GEOMETRY).tobytes()[:-5])  # the writer died mid-frame 4
    stream = open_spike_stream(f"spikes:file:{path}?size={H}x{W}&end_s=0.2")
    blocks = list(stream)
    np.testing.assert_array_equal(joined(blocks), truth[:4])
    (partial,) = [e for e in stream.events if e.kind == "partial_frame"]
    assert partial.frames == 4 and "11 of 16 bytes of frame 4" in partial.detail
    assert stream.counters.partial_frames == 1


def test_fifo_from_a_writer_process_delivers_every_frame_and_reopens(tmp_path: Path) -> None:
    truth = frames(400, seed=3)
    data = pack_frames(truth, GEOMETRY).tobytes()
    fifo = tmp_path / "spikes.fifo"
    os.mkfifo(fifo)
    src = tmp_path / "src.bin"
    src.write_bytes(data)
    half = len(data) // 2 // GEOMETRY.frame_bytes * GEOMETRY.frame_bytes
    # Two writers one after the other: the second is the reconnection after the first closes.
    code = (
        "import sys, time\n"
        "data = open(sys.argv[1], 'rb').read()[int(sys.argv[3]):int(sys.argv[4])]\n"
        "with open(sys.argv[2], 'wb', buffering=0) as f:\n"
        "    for i in range(0, len(data), 37):\n"
        "        f.write(data[i:i + 37])\n"
    )
    stream = open_spike_stream(f"spikes:pipe:{fifo}?size={H}x{W}&end_s=5")
    got: list[SpikeBlock] = []
    procs = []

    def writers() -> None:
        for lo, hi in ((0, half), (half, len(data))):
            procs.append(
                subprocess.Popen([sys.executable, "-c", code, str(src), str(fifo), str(lo), str(hi)])
            )
            procs[-1].wait(20)
            # The second writer opens only once the reader saw the first go (else the FIFO
            # never has zero writers and there is no disconnect to see).
            deadline = time.monotonic() + 20
            while not stream.counters.disconnects and time.monotonic() < deadline:
                time.sleep(0.01)

    thread = threading.Thread(target=writers)
    thread.start()
    try:
        for block in stream:
            got.append(block)
            if sum(len(b.frames) for b in got) >= len(truth):
                break
    finally:
        stream.close()
        thread.join(30)
        for p in procs:
            p.kill()
    np.testing.assert_array_equal(joined(got), truth)
    assert stream.counters.disconnects == 1  # the first writer closed, the second reconnected


def _server(listener: socket.socket, payloads: list[bytes]) -> None:
    """Accept one connection per payload, send it in pieces, and drop the connection."""
    for payload in payloads:
        conn, _ = listener.accept()
        with conn:
            for piece in chunks(payload, seed=len(payload)):
                conn.sendall(piece)
    listener.close()


def _listener() -> socket.socket:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(1)
    listener.settimeout(20)
    return listener


def test_tcp_delivers_every_frame_and_reconnects_after_the_server_drops() -> None:
    truth = frames(500, seed=5)
    data = pack_frames(truth, GEOMETRY).tobytes()
    cut = 200 * GEOMETRY.frame_bytes
    listener = _listener()
    port = listener.getsockname()[1]
    server = threading.Thread(target=_server, args=(listener, [data[:cut], data[cut:]]))
    server.start()
    stream = open_spike_stream(f"spikes:tcp://127.0.0.1:{port}?size={H}x{W}&end_s=5")
    got: list[SpikeBlock] = []
    try:
        for block in stream:
            got.append(block)
            if sum(len(b.frames) for b in got) >= len(truth):
                break
    finally:
        stream.close()
        server.join(20)
    np.testing.assert_array_equal(joined(got), truth)
    assert stream.counters.disconnects == 1 and stream.counters.connects == 2
    (drop,) = [e for e in stream.events if e.kind == "disconnect"]
    assert drop.frames == 200


def test_tcp_connection_dropped_mid_frame_drops_the_partial_frame() -> None:
    truth = frames(10, seed=6)
    data = pack_frames(truth, GEOMETRY).tobytes()
    listener = _listener()
    port = listener.getsockname()[1]
    # First connection dies 3 bytes into frame 6; the producer restarts at a frame boundary.
    server = threading.Thread(target=_server, args=(listener, [data[: 6 * 16 + 3], data[6 * 16 :]]))
    server.start()
    stream = open_spike_stream(f"spikes:tcp://127.0.0.1:{port}?size={H}x{W}&end_s=5")
    got: list[SpikeBlock] = []
    try:
        for block in stream:
            got.append(block)
            if sum(len(b.frames) for b in got) >= 10:
                break
    finally:
        stream.close()
        server.join(20)
    np.testing.assert_array_equal(joined(got), truth)  # the 3 bytes were never used
    (partial,) = [e for e in stream.events if e.kind == "partial_frame"]
    assert partial.frames == 6 and "3 of 16 bytes" in partial.detail


def test_tcp_with_no_server_keeps_trying_and_ends_at_end_s() -> None:
    listener = _listener()
    port = listener.getsockname()[1]
    listener.close()  # nothing listens there now
    stream = open_spike_stream(f"spikes:tcp://127.0.0.1:{port}?size={H}x{W}&stall_s=0.1&end_s=0.4")
    assert list(stream) == []
    assert stream.counters.stalls == 1 and stream.counters.frames == 0


def test_callback_source_from_an_sdk_thread_with_bytes_and_arrays() -> None:
    truth = frames(64, seed=7)
    source = CallbackSpikeSource(GEOMETRY, 20_000.0)
    packed = pack_frames(truth[:32], GEOMETRY).tobytes()

    def sdk() -> None:
        source.push(packed[:100])  # a partial frame: waits for the rest
        source.push(packed[100:])
        source.push(truth[32:48].astype(np.uint8))
        source.push(truth[48:])
        source.close()

    thread = threading.Thread(target=sdk)
    thread.start()
    blocks = list(source)
    thread.join(10)
    np.testing.assert_array_equal(joined(blocks), truth)
    assert all(b.frames.dtype == np.bool_ and b.lost_before == 0 for b in blocks)
    with pytest.raises(SpikeStreamError, match=r"expected \(n, 8, 16\)"):
        source.push(np.zeros((1, 4, 4)))


def test_lost_frames_are_detected_from_the_clock_and_counted() -> None:
    """A producer at 20 kHz (+30 ppm) sends 100-frame blocks on time, then drops 300 frames."""
    rate, period = 20_000.0, 1e9 / 20_000.0 / (1 + 30e-6)
    source = CallbackSpikeSource(GEOMETRY, rate)
    rng = np.random.default_rng(0)
    sent = 0
    for k in range(40):
        if k == 25:
            sent += 300  # these frames never arrive
        block = frames(100, seed=k)
        sent += 100
        source.push(block, host_t_ns=round(1e9 + (sent - 1) * period + rng.normal(0, 5_000)))
    source.close()
    blocks = list(source)
    lost = [b.lost_before for b in blocks]
    assert lost[25] == pytest.approx(300, abs=1) and sum(lost) == lost[25]
    assert blocks[25].first_index == 25 * 100 + lost[25]
    assert source.counters.lost_blocks == 1 and source.counters.clock_jumps == 0
    assert source.clock_model.drift_ppm == pytest.approx(30.0, abs=15.0)


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("spikes:file:x.dat?rate=1", "size=HxW is required"),
        ("spikes:file:x.dat?size=3x3", "not a whole number of bytes"),
        ("spikes:file:x.dat?size=8x8&flip=2", "flip must be 0 or 1"),
        ("spikes:file:x.dat?size=8x8&speed=2", "unknown setting"),
        ("spikes:tcp://nohost?size=8x8", "spikes:tcp://HOST:PORT"),
        ("spikes:udp:x?size=8x8", "expected spikes:file:PATH"),
        ("spikes:file:x.dat?size=8x8&rate=0", "must be > 0"),
    ],
)
def test_bad_uris_are_one_clear_error(uri: str, message: str) -> None:
    with pytest.raises(SpikeStreamError, match=message):
        open_spike_stream(uri)
