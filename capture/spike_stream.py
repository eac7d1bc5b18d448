"""A live raw spike stream: packed ``.dat`` frames from a growing file, a FIFO, TCP or a callback.

Vendor SDKs are closed, but every one can hand over bytes: write the raw stream to a file, a named
pipe or a socket, or call a Python function with a block of frames (the SpikeCV SDK's shape). The
bytes are the ``.dat`` frame layout of :mod:`spikereveal.stream.spikes` (rows bottom-up unless
``flip`` is off, LSB first, optional tag bits per row). Whatever the transport, the output is one
iterator of :class:`SpikeBlock`: whole frames only, upright, stamped with the host time they
arrived and the index of their first frame on the camera's count.

Faults are reported, not raised, so a rig keeps running: a stall (no bytes for ``stall_s``), a
disconnect (TCP reconnects with backoff, a FIFO is reopened for the next writer) and an end in the
middle of a frame (the partial frame is dropped, never emitted) each add a :class:`StreamEvent`
and a log line naming how many frames had arrived and since when. Lost frames show in the clock
model: a host time far later than the frames in hand explain (see :func:`lost_frames`) means the
producer dropped frames; they are counted in ``lost_before`` of the next block, whose
``first_index`` skips them, so downstream indices stay on the camera's clock.

URIs (``open_spike_stream``)::

    spikes:file:PATH?size=HxW&rate=HZ&flip=0|1&tags=BITS&stall_s=S&end_s=S
    spikes:pipe:PATH?...
    spikes:tcp://HOST:PORT?...
"""

from __future__ import annotations

import errno
import logging
import os
import queue
import select
import socket
import threading
import time
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import numpy as np

from spikereveal.capture.clock import ClockModel
from spikereveal.stream.errors import SpikeRevealError
from spikereveal.stream.spikes import SpikeGeometry, parse_size, unpack_frames

__all__ = [
    "CallbackSpikeSource",
    "FifoBytes",
    "FileBytes",
    "SpikeBlock",
    "SpikeStream",
    "SpikeStreamError",
    "StreamCounters",
    "StreamEvent",
    "TcpBytes",
    "lost_frames",
    "open_spike_stream",
]

log = logging.getLogger(__name__)

#: Bytes asked for per read: enough to drain a backlog at once (so a late burst is not mistaken
#: for lost frames, see :func:`lost_frames`), small enough to stay cheap: 8 MiB.
READ_BYTES = 8 << 20


class SpikeStreamError(SpikeRevealError):
    """A spike stream URI or setting that cannot be used."""


@dataclass(frozen=True, eq=False)
class SpikeBlock:
    """Consecutive spike frames as they arrived.

    Attributes:
        first_index: camera frame index of ``frames[0]`` (lost frames before it are skipped).
        frames: (n, h, w) bool, upright (the stored flip undone).
        host_t_ns: ``time.monotonic_ns()`` when the block's last frame was in hand.
        lost_before: frames the producer dropped just before this block (0 normally).
    """

    first_index: int
    frames: np.ndarray
    host_t_ns: int
    lost_before: int = 0

    def __post_init__(self) -> None:
        f = self.frames
        if not isinstance(f, np.ndarray) or f.dtype != np.bool_ or f.ndim != 3 or f.shape[0] == 0:
            raise ValueError(f"spike block: frames must be a non-empty (n, h, w) bool array, got {f!r:.80}")
        if self.first_index < 0 or self.lost_before < 0:
            raise ValueError("spike block: first_index and lost_before must be >= 0")

    @property
    def end_index(self) -> int:
        """One past the last frame's index."""
        return self.first_index + int(self.frames.shape[0])


@dataclass(frozen=True)
class StreamEvent:
    """One fault or state change: ``kind`` (stall, resumed, connected, disconnect, partial_frame,
    lost, clock_jump, end), when (host ns), the frames received by then, and a sentence."""

    kind: str
    t_ns: int
    frames: int
    detail: str


@dataclass
class StreamCounters:
    """Running totals of one stream (what a sync report shows)."""

    frames: int = 0
    blocks: int = 0
    bytes: int = 0
    lost_frames: int = 0
    lost_blocks: int = 0
    stalls: int = 0
    disconnects: int = 0
    connects: int = 0
    partial_frames: int = 0
    clock_jumps: int = 0


def lost_frames(clock: ClockModel, next_index: int, n_new: int, host_t_ns: int, *, min_lost: int = 8) -> int:
    """Frames the producer dropped before ``n_new`` frames that arrived at ``host_t_ns``.

    By ``host_t_ns`` the camera had read out about ``clock.to_index(host_t_ns)`` frames; we hold
    ``next_index + n_new``. A shortfall of more than ``min_lost`` frames and of 4x the clock's
    spread means frames went missing. A late *burst* (the transport held bytes back) is not a
    loss: the backlog arrives with it, so the count catches up, which is why reads drain all that
    is available (:data:`READ_BYTES`). Before the clock has a few pairs nothing is called lost.
    """
    if clock.samples < clock.warmup:
        return 0
    shortfall = clock.to_index(host_t_ns) + 1 - (next_index + n_new)  # the clock holds last frames
    noise = 4 * clock.spread_ns / clock.period_ns
    if shortfall > max(min_lost, noise):
        return int(round(shortfall))
    return 0


class _BlockMaker:
    """Turns whole upright frames into SpikeBlocks: indices, loss detection, the clock, events."""

    def __init__(
        self, rate_hz: float, events: list[StreamEvent], counters: StreamCounters, name: str
    ) -> None:
        self.clock = ClockModel(rate_hz)
        self.next_index = 0
        self.events, self.counters, self.name = events, counters, name

    def event(self, kind: str, t_ns: int, detail: str) -> None:
        self.events.append(StreamEvent(kind, t_ns, self.counters.frames, detail))
        level = logging.INFO if kind in ("connected", "resumed", "end") else logging.WARNING
        log.log(level, "%s: %s (%d frames so far)", self.name, detail, self.counters.frames)

    def make(self, frames: np.ndarray, host_t_ns: int) -> SpikeBlock:
        n = int(frames.shape[0])
        lost = lost_frames(self.clock, self.next_index, n, host_t_ns)
        if lost:
            self.counters.lost_frames += lost
            self.counters.lost_blocks += 1
            self.event("lost", host_t_ns, f"{lost} frames lost before frame {self.next_index + lost}")
        block = SpikeBlock(self.next_index + lost, frames, host_t_ns, lost)
        self.next_index = block.end_index
        # The last frame of a read is the freshest: its arrival bounds its read-out time best.
        if self.clock.update(block.end_index - 1, host_t_ns).jump:
            self.counters.clock_jumps += 1
            self.event("clock_jump", host_t_ns, f"clock jump at frame {block.end_index - 1}")
        self.counters.frames += n
        self.counters.blocks += 1
        return block


# -- byte sources ------------------------------------------------------------------------------


class ByteSource(Protocol):
    """Where packed bytes come from. ``read`` returns bytes, ``None`` when nothing came within
    ``timeout_s``, or ``b""`` when the producer went away (end of a FIFO writer, TCP close)."""

    name: str

    def read(self, timeout_s: float) -> bytes | None: ...

    def reopen(self, timeout_s: float) -> bool: ...

    def close(self) -> None: ...


class FileBytes:
    """A file that is still being written: read to its end, then wait for more (never ``b""``)."""

    def __init__(self, path: str | os.PathLike[str], poll_s: float = 0.005) -> None:
        self.path = Path(path)
        self.name = f"spikes:file:{self.path}"
        self.poll_s = poll_s
        self._f = None

    def read(self, timeout_s: float) -> bytes | None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self._f is None and self.path.exists():
                self._f = open(self.path, "rb")  # noqa: SIM115 - held open while the file grows
            if self._f is not None:
                data = self._f.read(READ_BYTES)
                if data:
                    return data
            if time.monotonic() >= deadline:
                return None
            time.sleep(self.poll_s)

    def reopen(self, timeout_s: float) -> bool:
        return True  # a file does not disconnect

    def close(self) -> None:
        if self._f is not None:
            self._f.close()
            self._f = None


class FifoBytes:
    """A named pipe: opened without blocking, read as bytes come; a writer that closes is a
    disconnect, and the next writer to open the FIFO is the reconnection."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self.name = f"spikes:pipe:{self.path}"
        self._fd: int | None = None
        self._had_writer = False

    def _open(self) -> None:
        if self._fd is None:
            self._fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK)
            self._had_writer = False

    def read(self, timeout_s: float) -> bytes | None:
        self._open()
        assert self._fd is not None
        ready, _, _ = select.select([self._fd], [], [], timeout_s)
        if not ready:
            return None
        try:
            data = os.read(self._fd, READ_BYTES)
        except BlockingIOError:
            return None
        if data:
            self._had_writer = True
            return data
        if not self._had_writer:
            # No writer has opened the FIFO yet: a non-blocking reader sees EOF at once. Wait.
            time.sleep(min(timeout_s, 0.005))
            return None
        return b""

    def reopen(self, timeout_s: float) -> bool:
        # Open the new end before closing the old one: with no reader at all for a moment, a
        # writer that opened just then would get EPIPE on its first write.
        old, self._fd = self._fd, None
        self._open()
        if old is not None:
            os.close(old)
        return True

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None


class TcpBytes:
    """A TCP client to ``host:port`` that reconnects with exponential backoff when it drops."""

    def __init__(self, host: str, port: int, *, backoff_s: float = 0.05, max_backoff_s: float = 2.0) -> None:
        self.host, self.port = host, int(port)
        self.name = f"spikes:tcp://{host}:{port}"
        self.backoff_s, self.max_backoff_s = backoff_s, max_backoff_s
        self._sock: socket.socket | None = None
        self._delay = backoff_s
        self._next_try = 0.0
        self.connects = 0

    def _connect(self, timeout_s: float) -> bool:
        now = time.monotonic()
        if now < self._next_try:
            time.sleep(min(self._next_try - now, timeout_s))
            if time.monotonic() < self._next_try:
                return False
        try:
            sock = socket.create_connection((self.host, self.port), timeout=max(timeout_s, 0.05))
        except OSError:
            self._next_try = time.monotonic() + self._delay
            self._delay = min(self._delay * 2, self.max_backoff_s)
            return False
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, READ_BYTES)
        self._sock, self._delay = sock, self.backoff_s
        self.connects += 1
        return True

    def read(self, timeout_s: float) -> bytes | None:
        if self._sock is None and not self._connect(timeout_s):
            return None
        assert self._sock is not None
        self._sock.settimeout(timeout_s)
        try:
            data = self._sock.recv(READ_BYTES)
        except TimeoutError:
            return None
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EWOULDBLOCK):
                return None
            data = b""
        if not data:
            self.close()
        return data

    def reopen(self, timeout_s: float) -> bool:
        self.close()
        return self._connect(timeout_s)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


# -- the stream --------------------------------------------------------------------------------


@dataclass
class SpikeStream:
    """Packed frames from a :class:`ByteSource` as :class:`SpikeBlock` s.

    Args:
        source: where the bytes come from.
        geometry: frame size, flip and row tag bits of the stored frames.
        rate_hz: the camera's nominal read-out rate (the clock model fits the true one).
        stall_s: no bytes for this long is reported as a stall (once per stall).
        end_s: stop iterating after this long with no bytes (None: wait until :meth:`close`).
        reconnect: reopen the source after a disconnect (FIFO, TCP); else a disconnect ends it.
        clock: host clock in ns (``time.monotonic_ns``).
    """

    source: ByteSource
    geometry: SpikeGeometry
    rate_hz: float
    stall_s: float = 1.0
    end_s: float | None = None
    reconnect: bool = True
    clock: Callable[[], int] = time.monotonic_ns
    events: list[StreamEvent] = field(default_factory=list)
    counters: StreamCounters = field(default_factory=StreamCounters)

    def __post_init__(self) -> None:
        if not self.rate_hz > 0:
            raise SpikeStreamError(f"{self.source.name}: rate {self.rate_hz!r} must be > 0 frames per second")
        self._maker = _BlockMaker(self.rate_hz, self.events, self.counters, self.source.name)
        self._closed = threading.Event()

    @property
    def clock_model(self) -> ClockModel:
        """The fitted index -> host time mapping."""
        return self._maker.clock

    def close(self) -> None:
        """Stop iterating (from any thread) and release the source."""
        self._closed.set()

    def __iter__(self) -> Iterator[SpikeBlock]:
        fb = self.geometry.frame_bytes
        pending = bytearray()
        last_bytes_t = self.clock()
        stalled = False
        maker = self._maker
        poll = min(0.05, self.stall_s / 4)
        try:
            while not self._closed.is_set():
                data = self.source.read(poll)
                now = self.clock()
                if data is None:
                    idle_s = (now - last_bytes_t) / 1e9
                    if not stalled and idle_s >= self.stall_s:
                        stalled = True
                        self.counters.stalls += 1
                        maker.event(
                            "stall", now, f"stalled: no bytes for {idle_s:.2f} s since {last_bytes_t} ns"
                        )
                    if self.end_s is not None and idle_s >= self.end_s:
                        break
                    continue
                if not data:  # the producer went away
                    self.counters.disconnects += 1
                    self._drop_partial(pending, now, "disconnect")
                    maker.event("disconnect", now, f"disconnected ({self.counters.disconnects} so far)")
                    if not self.reconnect:
                        break
                    self.source.reopen(poll)
                    continue
                connects = getattr(self.source, "connects", None)
                if connects is not None and connects != self.counters.connects:
                    self.counters.connects = connects
                    maker.event("connected", now, f"connected (connection {connects})")
                if stalled:
                    stalled = False
                    maker.event("resumed", now, f"bytes again after {(now - last_bytes_t) / 1e9:.2f} s")
                last_bytes_t = now
                self.counters.bytes += len(data)
                pending += data
                whole = len(pending) // fb
                if whole:
                    packed = np.frombuffer(bytes(pending[: whole * fb]), dtype=np.uint8).reshape(whole, fb)
                    del pending[: whole * fb]
                    frames = unpack_frames(packed, self.geometry).view(np.bool_)
                    yield maker.make(frames, now)
            self._drop_partial(pending, self.clock(), "end")
            maker.event("end", self.clock(), f"stream ended after {self.counters.frames} frames")
        finally:
            self.source.close()

    def _drop_partial(self, pending: bytearray, now: int, why: str) -> None:
        if pending:
            self.counters.partial_frames += 1
            self._maker.event(
                "partial_frame",
                now,
                f"{why} mid-frame: dropped {len(pending)} of {self.geometry.frame_bytes} bytes of frame "
                f"{self._maker.next_index}",
            )
            pending.clear()


class CallbackSpikeSource:
    """A stream fed by calls, the shape of a vendor SDK's callback (SpikeCV): ``push`` from the
    SDK's thread, iterate in another.

    ``push(data, host_t_ns=None)``: packed bytes (any length; a partial frame waits for the rest)
    or an upright (n, h, w) array of 0/1 or bool. ``host_t_ns`` defaults to the time of the push.
    ``close()`` ends the iteration once what was pushed is consumed.
    """

    def __init__(
        self, geometry: SpikeGeometry, rate_hz: float, *, stall_s: float = 1.0, maxsize: int = 0
    ) -> None:
        if not rate_hz > 0:
            raise SpikeStreamError(f"callback spike source: rate {rate_hz!r} must be > 0 frames per second")
        self.geometry, self.rate_hz, self.stall_s = geometry, float(rate_hz), stall_s
        self.name = f"spikes:callback:{geometry.describe()}"
        self.events: list[StreamEvent] = []
        self.counters = StreamCounters()
        self._maker = _BlockMaker(self.rate_hz, self.events, self.counters, self.name)
        self._queue: queue.Queue[tuple[object, int] | None] = queue.Queue(maxsize)
        self._pending = bytearray()

    @property
    def clock_model(self) -> ClockModel:
        return self._maker.clock

    def push(self, data: bytes | bytearray | memoryview | np.ndarray, host_t_ns: int | None = None) -> None:
        """Hand over frames (thread-safe); never blocks unless ``maxsize`` was set."""
        t = time.monotonic_ns() if host_t_ns is None else int(host_t_ns)
        if isinstance(data, np.ndarray) and data.ndim == 3:
            h, w = self.geometry.height, self.geometry.width
            if data.shape[1:] != (h, w):
                raise SpikeStreamError(
                    f"{self.name}: pushed frames of shape {data.shape}, expected (n, {h}, {w})"
                )
            self._queue.put((np.ascontiguousarray(data != 0), t))
        else:
            self._queue.put(
                (
                    bytes(np.asarray(data, dtype=np.uint8).tobytes())
                    if isinstance(data, np.ndarray)
                    else bytes(data),
                    t,
                )
            )

    def close(self) -> None:
        """End the stream after what was pushed so far."""
        self._queue.put(None)

    def __iter__(self) -> Iterator[SpikeBlock]:
        fb = self.geometry.frame_bytes
        stalled_since: int | None = None
        while True:
            try:
                item = self._queue.get(timeout=self.stall_s)
            except queue.Empty:
                if stalled_since is None:
                    stalled_since = time.monotonic_ns()
                    self.counters.stalls += 1
                    self._maker.event(
                        "stall", stalled_since, f"stalled: nothing pushed for {self.stall_s:g} s"
                    )
                continue
            if item is None:
                break
            stalled_since = None
            data, t = item
            if isinstance(data, np.ndarray):
                if self._pending:  # an array after a partial byte frame: the bytes cannot complete
                    self._drop_partial(t)
                frames = data
            else:
                self.counters.bytes += len(data)
                self._pending += data
                whole = len(self._pending) // fb
                if not whole:
                    continue
                packed = np.frombuffer(bytes(self._pending[: whole * fb]), dtype=np.uint8).reshape(whole, fb)
                del self._pending[: whole * fb]
                frames = unpack_frames(packed, self.geometry).view(np.bool_)
            if frames.shape[0]:
                yield self._maker.make(frames, t)
        now = time.monotonic_ns()
        if self._pending:
            self._drop_partial(now)
        self._maker.event("end", now, f"stream ended after {self.counters.frames} frames")

    def _drop_partial(self, now: int) -> None:
        self.counters.partial_frames += 1
        self._maker.event(
            "partial_frame",
            now,
            f"dropped {len(self._pending)} of {self.geometry.frame_bytes} bytes of a partial frame",
        )
        self._pending.clear()


# -- URIs --------------------------------------------------------------------------------------

_KNOWN = ("size", "rate", "flip", "tags", "stall_s", "end_s")


def _flag(text: str, key: str, uri: str) -> bool:
    if text in ("1", "true", "yes", "on"):
        return True
    if text in ("0", "false", "no", "off"):
        return False
    raise SpikeStreamError(f"spike stream {uri!r}: {key} must be 0 or 1, got {text!r}")


def open_spike_stream(uri: str) -> SpikeStream:
    """A :class:`SpikeStream` from its URI (see the module docstring); errors name the URI.

    ``size`` is required (HxW); ``rate`` defaults to 20000 Hz, ``flip`` to 1, ``tags`` (tag bits
    per row) to 0, ``stall_s`` to 1, ``end_s`` to none (files: wait for growth forever).

    Examples:
        >>> open_spike_stream("spikes:file:/tmp/x.dat?size=2x8&rate=1000").geometry
        SpikeGeometry(height=2, width=8, flip=True, row_tag_bits=0)
        >>> open_spike_stream("spikes:file:/tmp/x.dat")
        Traceback (most recent call last):
        ...
        spikereveal.capture.spike_stream.SpikeStreamError: spike stream 'spikes:file:/tmp/x.dat': size=HxW is required (e.g. size=250x400)
    """
    scheme, _, rest = uri.partition(":")
    if scheme != "spikes":
        raise SpikeStreamError(
            f"spike stream {uri!r}: expected spikes:file:PATH, spikes:pipe:PATH or spikes:tcp://HOST:PORT"
        )
    rest, _, query_text = rest.partition("?")
    query = {k: v[-1] for k, v in urllib.parse.parse_qs(query_text).items()}
    unknown = sorted(set(query) - set(_KNOWN))
    if unknown:
        raise SpikeStreamError(
            f"spike stream {uri!r}: unknown setting(s) {', '.join(unknown)}; known: {', '.join(_KNOWN)}"
        )
    if "size" not in query:
        raise SpikeStreamError(f"spike stream {uri!r}: size=HxW is required (e.g. size=250x400)")
    try:
        height, width = parse_size(query["size"])
        geometry = SpikeGeometry(
            height, width, _flag(query.get("flip", "1"), "flip", uri), int(query.get("tags", 0))
        )
        rate = float(query.get("rate", 20_000.0))
        stall_s = float(query.get("stall_s", 1.0))
        end_s = float(query["end_s"]) if "end_s" in query else None
    except (SpikeRevealError, ValueError) as exc:
        raise SpikeStreamError(f"spike stream {uri!r}: {exc}") from None
    kind, _, target = rest.partition(":")
    target = urllib.parse.unquote(target)
    source: ByteSource
    if kind == "file" and target:
        source = FileBytes(target)
    elif kind == "pipe" and target:
        source = FifoBytes(target)
    elif kind == "tcp" and target.startswith("//"):
        host, _, port = target[2:].rpartition(":")
        if not host or not port.isdigit():
            raise SpikeStreamError(f"spike stream {uri!r}: expected spikes:tcp://HOST:PORT")
        source = TcpBytes(host, int(port))
    else:
        raise SpikeStreamError(
            f"spike stream {uri!r}: expected spikes:file:PATH, spikes:pipe:PATH or spikes:tcp://HOST:PORT"
        )
    try:
        return SpikeStream(source, geometry, rate, stall_s=stall_s, end_s=end_s, reconnect=kind != "file")
    except SpikeStreamError as exc:
        raise SpikeStreamError(f"spike stream {uri!r}: {exc}") from None
