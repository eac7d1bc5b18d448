"""The wire protocol between nodes: one msgpack header frame followed by raw buffer frames.

A message on the wire is a ZeroMQ multipart message ``[header, buffer_0, buffer_1, ...]``:

- ``header`` is a msgpack map: protocol version ``v``, ``kind``, the scalar fields of the message and
  a ``buffers`` list describing every following frame (``name``, ``dtype``, ``shape``).
- each buffer frame holds the raw bytes of one C-contiguous array, exactly ``prod(shape)`` bytes.

Arrays never go inside msgpack (that would copy them twice) and nothing is pickled: a peer can only
make :func:`decode` build the four dataclasses below, and every header is checked against its
buffers (count, names, dtype, shape, byte size, limits) before an array is made. Every failure is a
:class:`ProtocolError` whose message names the field, the value and what was expected.

Spikes travel exactly as the ``.dat`` file stores them (packed, upside down, tag bits included)
together with their :class:`~spikereveal.stream.spikes.SpikeGeometry`; the engine unpacks them with
``spikereveal.stream.spikes.unpack_frames(bundle.spikes_packed, bundle.geometry)``, the single place
where bits are unpacked. Packed frames are 8x smaller than unpacked ones.

``stamps`` is the per-stage list of ``(stage, time.monotonic_ns())`` pairs; ``monotonic_ns`` is
comparable across processes on one host, which is what the latency statistics need.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, NoReturn, Union

import msgpack
import numpy as np

from spikereveal.stream.errors import SpikeRevealError
from spikereveal.stream.spikes import SpikeFormatError, SpikeGeometry

PROTOCOL_VERSION = 1

# Status.state values: "ready" once a node can take messages, "alive" as a periodic heartbeat,
# "stopping" when it leaves on purpose (so peers need not wait for a timeout; it may come back),
# "finished" when a producer has sent all its data (a replay's end: no more will come).
STATES = ("ready", "alive", "stopping", "finished")
#: The states a node closes its channel with.
FINAL_STATES = ("stopping", "finished")

_INT64_MIN = -(2**63)
_INT64_MAX = 2**63 - 1


class ProtocolError(SpikeRevealError):
    """A message (or a field of one) does not follow the wire protocol."""


@dataclass(frozen=True)
class Limits:
    """What a receiver accepts; anything larger is a :class:`ProtocolError`, not an allocation.

    Sizes are generous for real sensors (1000x1600 RGB, 2000x1000 spikes, 137 spike frames per
    bundle) while keeping a corrupt or hostile header from claiming gigabytes. ``max_buffer_bytes``
    is also the socket's ``ZMQ_MAXMSGSIZE`` (which libzmq applies per frame).
    """

    max_image_side: int = 8192
    max_spike_side: int = 8192
    max_spike_frames: int = 4096
    max_times: int = 256
    max_buffer_bytes: int = 1 << 30
    max_header_bytes: int = 64 * 1024
    max_stamps: int = 64
    max_text: int = 256
    max_counters: int = 64


DEFAULT_LIMITS = Limits()


def _fail(where: str, value: Any, expected: str) -> NoReturn:
    text = repr(value)
    if len(text) > 80:
        text = text[:77] + "..."
    raise ProtocolError(f"{where}: got {text}, expected {expected}")


def _int(where: str, value: Any, lo: int = _INT64_MIN, hi: int = _INT64_MAX) -> int:
    # bool is an int subclass; a True seq is a bug on the sender, not the number 1.
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        _fail(where, value, f"an integer in [{lo}, {hi}]")
    value = int(value)
    if not lo <= value <= hi:
        _fail(where, value, f"an integer in [{lo}, {hi}]")
    return value


def _float(where: str, value: Any, *, positive: bool = False) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
        _fail(where, value, "a number")
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        _fail(where, value, "a finite number > 0" if positive else "a finite number")
    return value


def _str(where: str, value: Any, max_len: int = DEFAULT_LIMITS.max_text) -> str:
    if not isinstance(value, str):
        _fail(where, value, "a string")
    if len(value) > max_len:
        _fail(where, value, f"a string of at most {max_len} characters")
    return value


def _bool(where: str, value: Any) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        _fail(where, value, "true or false")
    return bool(value)


def _array(where: str, value: Any, ndim: int, shape_text: str) -> np.ndarray:
    if not isinstance(value, np.ndarray):
        _fail(where, type(value).__name__, f"a numpy uint8 array of shape {shape_text}")
    if value.dtype != np.uint8:
        _fail(f"{where}.dtype", str(value.dtype), "uint8")
    if value.ndim != ndim:
        _fail(f"{where}.shape", value.shape, shape_text)
    return value


def _stamps(
    where: str, value: Any, max_stamps: int = DEFAULT_LIMITS.max_stamps
) -> tuple[tuple[str, int], ...]:
    if not isinstance(value, (list, tuple)):
        _fail(where, value, "a list of [stage, t_ns] pairs")
    if len(value) > max_stamps:
        _fail(f"{where} length", len(value), f"at most {max_stamps} stamps")
    out = []
    for i, pair in enumerate(value):
        if not isinstance(pair, (list, tuple)) or len(pair) != 2:
            _fail(f"{where}[{i}]", pair, "a [stage, t_ns] pair")
        out.append((_str(f"{where}[{i}].stage", pair[0], 64), _int(f"{where}[{i}].t_ns", pair[1])))
    return tuple(out)


def _set(obj: Any, name: str, value: Any) -> None:
    # Frozen dataclasses normalise their own fields once, in __post_init__.
    object.__setattr__(obj, name, value)


def _append_stamp(stamps: tuple[tuple[str, int], ...], stage: str, t_ns: int | None) -> tuple:
    return (*stamps, (stage, time.monotonic_ns() if t_ns is None else int(t_ns)))


@dataclass(frozen=True, eq=False)
class Bundle:
    """One blurry RGB frame with the packed spike frames around its exposure (capture -> engine).

    ``blur``: (H, W, 3) uint8 **BGR**. ``spikes_packed``: (T, geometry.frame_bytes) uint8, the frames
    exactly as the ``.dat`` stores them (``unpack_frames(spikes_packed, geometry)`` gives (T, h, w)
    upright 0/1). ``exposure``: (start, end) inclusive spike-frame indices into these T frames.
    ``rgb_t_ns``: sensor time of the RGB exposure start; ``spike_t0_ns``: sensor time of spike frame 0;
    ``spike_rate_hz``: spike read-out rate (frame i is at ``spike_t0_ns + i * 1e9 / spike_rate_hz``).
    ``calibration_id`` names the calibration the engine must use ("" = none). ``stamps``: per-stage
    ``(stage, time.monotonic_ns())`` pairs. Arrays from :func:`decode` are read-only views.
    """

    kind: ClassVar[str] = "bundle"
    version: ClassVar[int] = PROTOCOL_VERSION

    seq: int
    source_id: str
    blur: np.ndarray
    spikes_packed: np.ndarray
    geometry: SpikeGeometry
    exposure: tuple[int, int]
    rgb_t_ns: int = 0
    spike_t0_ns: int = 0
    spike_rate_hz: float = 20000.0
    calibration_id: str = ""
    stamps: tuple[tuple[str, int], ...] = ()
    #: Sync quality of a live rig (capture/sync.py ``SyncReport.to_dict()``): name -> number; empty otherwise.
    sync: Mapping[str, int | float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _set(self, "seq", _int("bundle.seq", self.seq, 0))
        _set(self, "source_id", _str("bundle.source_id", self.source_id))
        blur = _array("bundle.blur", self.blur, 3, "(H, W, 3)")
        if blur.shape[2] != 3 or blur.shape[0] < 1 or blur.shape[1] < 1:
            _fail("bundle.blur.shape", blur.shape, "(H, W, 3) with H, W >= 1")
        if not isinstance(self.geometry, SpikeGeometry):
            _fail("bundle.geometry", self.geometry, "a SpikeGeometry")
        packed = _array("bundle.spikes_packed", self.spikes_packed, 2, "(T, frame_bytes)")
        fb = self.geometry.frame_bytes
        if packed.shape[0] < 1 or packed.shape[1] != fb:
            _fail(
                "bundle.spikes_packed.shape",
                packed.shape,
                f"(T >= 1, {fb}) for {self.geometry.describe()} spike frames",
            )
        exposure = self.exposure
        if not isinstance(exposure, (tuple, list)) or len(exposure) != 2:
            _fail("bundle.exposure", exposure, "a (start, end) pair")
        t = packed.shape[0]
        start = _int("bundle.exposure.start", exposure[0], 0, t - 1)
        end = _int("bundle.exposure.end", exposure[1], start, t - 1)
        _set(self, "exposure", (start, end))
        _set(self, "rgb_t_ns", _int("bundle.rgb_t_ns", self.rgb_t_ns))
        _set(self, "spike_t0_ns", _int("bundle.spike_t0_ns", self.spike_t0_ns))
        _set(self, "spike_rate_hz", _float("bundle.spike_rate_hz", self.spike_rate_hz, positive=True))
        _set(self, "calibration_id", _str("bundle.calibration_id", self.calibration_id))
        _set(self, "stamps", _stamps("bundle.stamps", self.stamps))
        _set(self, "sync", _counters("bundle.sync", self.sync))

    def __repr__(self) -> str:  # arrays by shape: a 6 MB bundle must not flood a log line
        return (
            f"Bundle(seq={self.seq}, source_id={self.source_id!r}, blur={self.blur.shape}, "
            f"spikes_packed={self.spikes_packed.shape}, geometry={self.geometry.describe()}, "
            f"exposure={self.exposure}, stamps={len(self.stamps)})"
        )

    @property
    def n_spike_frames(self) -> int:
        """T, the number of spike frames carried (margins included)."""
        return int(self.spikes_packed.shape[0])

    def spike_time_ns(self, index: int) -> int:
        """Sensor time (ns) of spike frame ``index`` of this bundle."""
        return self.spike_t0_ns + round(index * 1e9 / self.spike_rate_hz)

    def stamped(self, stage: str, t_ns: int | None = None) -> Bundle:
        """A copy with ``(stage, t_ns or time.monotonic_ns())`` appended to ``stamps`` (arrays shared)."""
        return dataclasses.replace(self, stamps=_append_stamp(self.stamps, stage, t_ns))


@dataclass(frozen=True, eq=False)
class Result:
    """The K sharp frames computed from one bundle (engine -> display and any other subscriber).

    ``frames``: (K, H, W, 3) uint8 **BGR**; ``spike_times``: K spike-frame indices (into the source
    bundle's spike frames) at which each frame is sharp; ``blur``: optional (H, W, 3) uint8 BGR input;
    ``seq``/``source_id``: those of the source bundle; ``model``: the backend/weights that made it;
    ``stamps``: the bundle's stamps followed by the engine's; ``rgb_t_ns``: the source bundle's
    sensor time of the RGB exposure (its spacing is the RGB frame rate, whatever the engine's
    speed; 0 = unknown, and absent from the header of older senders); ``spike_density``: the
    spikes per frame per unit grey the engine estimated from the bundle (engine/density.py;
    >= 0, 0 = unknown, absent from the header of older senders); ``sync``: the source bundle's
    ``sync`` report, forwarded so the display can summarise a live rig's health (empty for
    recordings, and absent from the header when empty or from older senders).
    """

    kind: ClassVar[str] = "result"
    version: ClassVar[int] = PROTOCOL_VERSION

    seq: int
    source_id: str
    frames: np.ndarray
    spike_times: tuple[int, ...]
    model: str = ""
    blur: np.ndarray | None = None
    stamps: tuple[tuple[str, int], ...] = ()
    rgb_t_ns: int = 0
    spike_density: float = 0.0
    #: The source bundle's sync report (``Bundle.sync``): name -> number; empty otherwise.
    sync: Mapping[str, int | float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        _set(self, "seq", _int("result.seq", self.seq, 0))
        _set(self, "sync", _counters("result.sync", self.sync))
        _set(self, "rgb_t_ns", _int("result.rgb_t_ns", self.rgb_t_ns))
        density = _float("result.spike_density", self.spike_density)
        if density < 0:
            _fail("result.spike_density", density, "a finite number >= 0")
        _set(self, "spike_density", density)
        _set(self, "source_id", _str("result.source_id", self.source_id))
        frames = _array("result.frames", self.frames, 4, "(K, H, W, 3)")
        k, h, w, c = frames.shape
        if c != 3 or min(k, h, w) < 1:
            _fail("result.frames.shape", frames.shape, "(K, H, W, 3) with K, H, W >= 1")
        times = self.spike_times
        if isinstance(times, np.ndarray):
            times = times.tolist()
        if not isinstance(times, (list, tuple)):
            _fail("result.spike_times", times, f"a list of {k} spike indices")
        if len(times) != k:
            _fail("result.spike_times length", len(times), f"{k} (one per frame)")
        _set(self, "spike_times", tuple(_int(f"result.spike_times[{i}]", t, 0) for i, t in enumerate(times)))
        _set(self, "model", _str("result.model", self.model))
        if self.blur is not None:
            blur = _array("result.blur", self.blur, 3, f"({h}, {w}, 3)")
            if blur.shape != (h, w, 3):
                _fail("result.blur.shape", blur.shape, f"({h}, {w}, 3) like the frames")
        _set(self, "stamps", _stamps("result.stamps", self.stamps))

    def __repr__(self) -> str:
        blur = None if self.blur is None else self.blur.shape
        return (
            f"Result(seq={self.seq}, source_id={self.source_id!r}, frames={self.frames.shape}, "
            f"spike_times={self.spike_times}, model={self.model!r}, blur={blur}, stamps={len(self.stamps)})"
        )

    @property
    def k(self) -> int:
        """Number of sharp frames."""
        return int(self.frames.shape[0])

    def stamped(self, stage: str, t_ns: int | None = None) -> Result:
        """A copy with ``(stage, t_ns or time.monotonic_ns())`` appended to ``stamps`` (arrays shared)."""
        return dataclasses.replace(self, stamps=_append_stamp(self.stamps, stage, t_ns))


@dataclass(frozen=True)
class Status:
    """A node's state, sent when it becomes ready, periodically as a heartbeat, and when it stops.

    ``counters``: small numeric counters (messages in/out, drops, bad messages...); ``t_ns``:
    ``time.monotonic_ns()`` when sent.
    """

    kind: ClassVar[str] = "status"
    version: ClassVar[int] = PROTOCOL_VERSION

    node: str
    role: str
    pid: int
    state: str
    counters: Mapping[str, int | float] = field(default_factory=dict)
    t_ns: int = 0

    def __post_init__(self) -> None:
        _set(self, "node", _str("status.node", self.node))
        _set(self, "role", _str("status.role", self.role))
        _set(self, "pid", _int("status.pid", self.pid, 0))
        if self.state not in STATES:
            _fail("status.state", self.state, f"one of {', '.join(STATES)}")
        _set(self, "counters", _counters("status.counters", self.counters))
        _set(self, "t_ns", _int("status.t_ns", self.t_ns))

    @classmethod
    def now(
        cls, node: str, role: str, state: str, counters: Mapping[str, int | float] | None = None
    ) -> Status:
        """A status of this process stamped with the current ``time.monotonic_ns()``."""
        return cls(node, role, os.getpid(), state, dict(counters or {}), time.monotonic_ns())


@dataclass(frozen=True)
class Credit:
    """Flow control for the lossless channel, sent by the consumer (see ``stream.transport``).

    ``node``: the consumer's name (the same name after a restart is the same logical consumer);
    ``session``: a random id of this consumer process; ``producer_session``: the producer session
    ``acked`` refers to ("" before the first delivery); ``acked``: delivery number of the last message
    the consumer has finished with (0 = none); ``window``: how many deliveries after ``acked`` the
    producer may have in flight. A credit states absolute facts, so repeating one is harmless.
    """

    kind: ClassVar[str] = "credit"
    version: ClassVar[int] = PROTOCOL_VERSION

    node: str
    session: str
    producer_session: str
    acked: int
    window: int
    t_ns: int = 0

    def __post_init__(self) -> None:
        _set(self, "node", _str("credit.node", self.node))
        _set(self, "session", _str("credit.session", self.session, 64))
        _set(self, "producer_session", _str("credit.producer_session", self.producer_session, 64))
        _set(self, "acked", _int("credit.acked", self.acked, 0))
        _set(self, "window", _int("credit.window", self.window, 1, 1024))
        _set(self, "t_ns", _int("credit.t_ns", self.t_ns))


def _counters(
    where: str, value: Any, max_counters: int = DEFAULT_LIMITS.max_counters
) -> dict[str, int | float]:
    if not isinstance(value, Mapping):
        _fail(where, value, "a map of counter name -> number")
    if len(value) > max_counters:
        _fail(f"{where} size", len(value), f"at most {max_counters} counters")
    out: dict[str, int | float] = {}
    for key, item in value.items():
        name = _str(f"{where} key", key, 64)
        if isinstance(item, (int, np.integer)) and not isinstance(item, (bool, np.bool_)):
            out[name] = _int(f"{where}[{name!r}]", item)
        else:
            out[name] = _float(f"{where}[{name!r}]", item)
    return out


Message = Union[Bundle, Result, Status, Credit]  # noqa: UP007 (a runtime alias, readable on 3.10)
KINDS: dict[str, type] = {cls.kind: cls for cls in (Bundle, Result, Status, Credit)}

# The buffers each kind carries, in order. Result.blur is optional and comes last.
_BUFFERS: dict[str, tuple[str, ...]] = {
    "bundle": ("blur", "spikes_packed"),
    "result": ("frames", "blur"),
    "status": (),
    "credit": (),
}
_MAX_FRAMES = 1 + max(len(v) for v in _BUFFERS.values())

_HEADER_KEYS: dict[str, frozenset[str]] = {
    "bundle": frozenset(
        {
            "v",
            "kind",
            "seq",
            "source_id",
            "spike_height",
            "spike_width",
            "spike_flip",
            "spike_row_tag_bits",
            "exposure",
            "rgb_t_ns",
            "spike_t0_ns",
            "spike_rate_hz",
            "calibration_id",
            "stamps",
            "buffers",
        }
    ),
    "result": frozenset({"v", "kind", "seq", "source_id", "spike_times", "model", "stamps", "buffers"}),
    "status": frozenset({"v", "kind", "node", "role", "pid", "state", "counters", "t_ns", "buffers"}),
    "credit": frozenset(
        {"v", "kind", "node", "session", "producer_session", "acked", "window", "t_ns", "buffers"}
    ),
}
#: Keys a header may leave out (added after v1 shipped; a missing one takes the field's default).
_OPTIONAL_HEADER_KEYS: dict[str, frozenset[str]] = {
    "result": frozenset({"rgb_t_ns", "spike_density", "sync"}),
    "bundle": frozenset({"sync"}),
}


def _check_limits(msg: Message, limits: Limits) -> None:
    """Sizes a receiver is willing to take; checked on encode too, so a sender fails first."""
    kind = msg.kind
    if isinstance(msg, Bundle):
        h, w, _ = msg.blur.shape
        if max(h, w) > limits.max_image_side:
            _fail("bundle.blur.shape", msg.blur.shape, f"H, W <= {limits.max_image_side} (limit)")
        g = msg.geometry
        if max(g.height, g.width) > limits.max_spike_side:
            _fail("bundle.geometry", g.describe(), f"spike height, width <= {limits.max_spike_side} (limit)")
        if msg.n_spike_frames > limits.max_spike_frames:
            _fail(
                "bundle.spikes_packed frames",
                msg.n_spike_frames,
                f"at most {limits.max_spike_frames} (limit)",
            )
        arrays = {"blur": msg.blur, "spikes_packed": msg.spikes_packed}
        stamps, texts = msg.stamps, {"source_id": msg.source_id, "calibration_id": msg.calibration_id}
    elif isinstance(msg, Result):
        k, h, w, _ = msg.frames.shape
        if k > limits.max_times:
            _fail("result.frames K", k, f"at most {limits.max_times} frames (limit)")
        if max(h, w) > limits.max_image_side:
            _fail("result.frames.shape", msg.frames.shape, f"H, W <= {limits.max_image_side} (limit)")
        arrays = {"frames": msg.frames} if msg.blur is None else {"frames": msg.frames, "blur": msg.blur}
        stamps, texts = msg.stamps, {"source_id": msg.source_id, "model": msg.model}
    elif isinstance(msg, Status):
        if len(msg.counters) > limits.max_counters:
            _fail("status.counters size", len(msg.counters), f"at most {limits.max_counters} (limit)")
        arrays, stamps, texts = {}, (), {"node": msg.node, "role": msg.role}
    else:
        arrays, stamps, texts = {}, (), {"node": msg.node}
    for name, arr in arrays.items():
        if arr.nbytes > limits.max_buffer_bytes:
            _fail(f"{kind}.{name} bytes", arr.nbytes, f"at most {limits.max_buffer_bytes} (limit)")
    if len(stamps) > limits.max_stamps:
        _fail(f"{kind}.stamps length", len(stamps), f"at most {limits.max_stamps} (limit)")
    for name, text in texts.items():
        if len(text) > limits.max_text:
            _fail(f"{kind}.{name}", text, f"at most {limits.max_text} characters (limit)")


def _header_of(msg: Message, buffers: list[tuple[str, np.ndarray]]) -> dict[str, Any]:
    header: dict[str, Any] = {"v": PROTOCOL_VERSION, "kind": msg.kind}
    if isinstance(msg, Bundle):
        g = msg.geometry
        header.update(
            seq=msg.seq,
            source_id=msg.source_id,
            spike_height=int(g.height),
            spike_width=int(g.width),
            spike_flip=bool(g.flip),
            spike_row_tag_bits=int(g.row_tag_bits),
            exposure=list(msg.exposure),
            rgb_t_ns=msg.rgb_t_ns,
            spike_t0_ns=msg.spike_t0_ns,
            spike_rate_hz=msg.spike_rate_hz,
            calibration_id=msg.calibration_id,
            stamps=[list(s) for s in msg.stamps],
        )
        if msg.sync:
            header["sync"] = dict(msg.sync)
    elif isinstance(msg, Result):
        header.update(
            seq=msg.seq,
            source_id=msg.source_id,
            spike_times=list(msg.spike_times),
            model=msg.model,
            stamps=[list(s) for s in msg.stamps],
            rgb_t_ns=msg.rgb_t_ns,
            spike_density=msg.spike_density,
        )
        if msg.sync:
            header["sync"] = dict(msg.sync)
    elif isinstance(msg, Status):
        header.update(
            node=msg.node,
            role=msg.role,
            pid=msg.pid,
            state=msg.state,
            counters=dict(msg.counters),
            t_ns=msg.t_ns,
        )
    else:
        header.update(
            node=msg.node,
            session=msg.session,
            producer_session=msg.producer_session,
            acked=msg.acked,
            window=msg.window,
            t_ns=msg.t_ns,
        )
    header["buffers"] = [{"name": n, "dtype": "uint8", "shape": list(a.shape)} for n, a in buffers]
    return header


def encode(msg: Message, limits: Limits = DEFAULT_LIMITS) -> list[bytes | memoryview]:
    """Frames for ``socket.send_multipart(frames, copy=False)``: header bytes, then one buffer per array.

    Buffers are flat views of the message's arrays (no copy unless an array is not C-contiguous),
    so the arrays must not be modified until ZeroMQ has sent them. Raises :class:`ProtocolError` if
    ``msg`` exceeds ``limits`` (the receiver would refuse it).

    Examples:
        A bundle of one 4x8 BGR image and two packed 2x8 spike frames: a header and two buffers.

        >>> import numpy as np
        >>> from spikereveal.stream.spikes import SpikeGeometry
        >>> bundle = Bundle(
        ...     seq=0,
        ...     source_id="doc",
        ...     blur=np.zeros((4, 8, 3), np.uint8),
        ...     spikes_packed=np.zeros((2, 2), np.uint8),
        ...     geometry=SpikeGeometry(2, 8),
        ...     exposure=(0, 1),
        ... )
        >>> frames = encode(bundle)
        >>> len(frames), [len(f) for f in frames[1:]]
        (3, [96, 4])
        >>> decode(frames).exposure
        (0, 1)
    """
    if not isinstance(msg, (Bundle, Result, Status, Credit)):
        _fail("message", type(msg).__name__, "a Bundle, Result, Status or Credit")
    _check_limits(msg, limits)
    if isinstance(msg, Bundle):
        buffers = [("blur", msg.blur), ("spikes_packed", msg.spikes_packed)]
    elif isinstance(msg, Result):
        buffers = [("frames", msg.frames)] + ([] if msg.blur is None else [("blur", msg.blur)])
    else:
        buffers = []
    header = msgpack.packb(_header_of(msg, buffers), use_bin_type=True)
    frames: list[bytes | memoryview] = [header]
    for _, arr in buffers:
        frames.append(memoryview(np.ascontiguousarray(arr).reshape(-1)))
    return frames


def _as_buffer(frame: Any, index: int) -> memoryview:
    """A flat byte view of one received frame, without copying."""
    if isinstance(frame, memoryview):
        view = frame
    elif isinstance(frame, (bytes, bytearray)):
        view = memoryview(frame)
    elif isinstance(getattr(frame, "buffer", None), memoryview):  # zmq.Frame (duck-typed: no zmq import)
        view = frame.buffer
    else:
        _fail(f"frame {index}", type(frame).__name__, "bytes, memoryview or zmq.Frame")
    if not view.c_contiguous:
        _fail(f"frame {index}", "a non-contiguous buffer", "a contiguous byte buffer")
    if view.format != "B" or view.ndim != 1:
        try:
            view = view.cast("B")
        except TypeError:
            _fail(f"frame {index}", f"a buffer of format {view.format!r}", "plain bytes")
    return view


def _unpack_header(raw: memoryview, limits: Limits) -> dict[str, Any]:
    if len(raw) > limits.max_header_bytes:
        _fail("header size", len(raw), f"at most {limits.max_header_bytes} bytes")
    try:
        header = msgpack.unpackb(
            raw,
            raw=False,
            strict_map_key=True,
            max_str_len=limits.max_header_bytes,
            max_bin_len=0,
            max_array_len=4 * limits.max_times + limits.max_stamps + 16,
            max_map_len=limits.max_counters + 32,
            max_ext_len=0,
        )
    except Exception as exc:  # msgpack raises several unrelated types for corrupt input
        raise ProtocolError(f"header: not a valid msgpack map ({type(exc).__name__}: {exc})") from None
    if not isinstance(header, dict):
        _fail("header", type(header).__name__, "a msgpack map")
    return header


def _descriptors(kind: str, header: dict[str, Any], n_frames: int, limits: Limits) -> list[tuple[str, tuple]]:
    specs = header["buffers"]
    if not isinstance(specs, list):
        _fail(f"{kind}.buffers", specs, "a list of buffer descriptors")
    allowed = _BUFFERS[kind]
    required = 1 if kind == "result" else len(allowed)  # result.blur is optional
    if not required <= len(specs) <= len(allowed):
        _fail(
            f"{kind}.buffers count", len(specs), f"{required}..{len(allowed)} buffers ({', '.join(allowed)})"
        )
    if n_frames != 1 + len(specs):
        _fail("message frame count", n_frames, f"{1 + len(specs)} (header + {len(specs)} declared buffers)")
    out = []
    for i, spec in enumerate(specs):
        where = f"{kind}.buffers[{i}]"
        if not isinstance(spec, dict) or set(spec) != {"name", "dtype", "shape"}:
            _fail(where, spec, "a map with name, dtype and shape")
        if spec["name"] != allowed[i]:
            _fail(f"{where}.name", spec["name"], repr(allowed[i]))
        if spec["dtype"] != "uint8":
            _fail(f"{where}.dtype", spec["dtype"], "'uint8'")
        shape = spec["shape"]
        if not isinstance(shape, list) or len(shape) > 4:
            _fail(f"{where}.shape", shape, "a list of at most 4 sizes")
        out.append(
            (allowed[i], tuple(_int(f"{where}.shape[{j}]", s, 0, _INT64_MAX) for j, s in enumerate(shape)))
        )
    return out


def _check_shape_limits(kind: str, name: str, shape: tuple[int, ...], limits: Limits) -> None:
    """Refuse absurd declared shapes before looking at the bytes (clear message, no big numbers)."""
    where = f"{kind}.{name}.shape"
    if name in ("blur", "frames") and any(s > limits.max_image_side for s in shape[-3:-1]):
        _fail(where, shape, f"H, W <= {limits.max_image_side} (limit)")
    if name == "frames" and shape and shape[0] > limits.max_times:
        _fail(where, shape, f"K <= {limits.max_times} frames (limit)")
    if name == "spikes_packed" and shape and shape[0] > limits.max_spike_frames:
        _fail(where, shape, f"T <= {limits.max_spike_frames} spike frames (limit)")
    if math.prod(shape) > limits.max_buffer_bytes:
        _fail(where, shape, f"at most {limits.max_buffer_bytes} bytes (limit)")


def decode(frames: Sequence[Any], limits: Limits = DEFAULT_LIMITS) -> Message:
    """Validate and decode one multipart message into a Bundle, Result, Status or Credit.

    ``frames``: what ``recv_multipart`` returned (bytes, ``zmq.Frame`` or memoryview). Arrays are
    ``np.frombuffer`` views of the received frames, not copies, and are **read-only**: copy one
    before changing it. Raises :class:`ProtocolError` (naming the field, the value and what was
    expected) for anything that does not follow the protocol; never another exception type.

    Examples:
        >>> status = decode(encode(Status(node="engine", role="engine", pid=1, state="ready")))
        >>> status.node, status.state
        ('engine', 'ready')
        >>> decode([b"not msgpack"])  # doctest: +ELLIPSIS
        Traceback (most recent call last):
        ...
        spikereveal.stream.protocol.ProtocolError: header: not a valid msgpack map (...)
    """
    if not isinstance(frames, (list, tuple)):
        _fail("message", type(frames).__name__, "a list of frames")
    if not 1 <= len(frames) <= _MAX_FRAMES:
        _fail("message frame count", len(frames), f"1..{_MAX_FRAMES} frames (header + buffers)")
    header = _unpack_header(_as_buffer(frames[0], 0), limits)
    version = header.get("v")
    if type(version) is not int or version != PROTOCOL_VERSION:
        _fail("header.v (protocol version)", version, f"{PROTOCOL_VERSION}")
    kind = header.get("kind")
    if not isinstance(kind, str) or kind not in KINDS:
        _fail("header.kind", kind, f"one of {', '.join(KINDS)}")
    keys = set(header)
    optional = _OPTIONAL_HEADER_KEYS.get(kind, frozenset())
    if not _HEADER_KEYS[kind] <= keys <= _HEADER_KEYS[kind] | optional:
        missing = sorted(_HEADER_KEYS[kind] - keys)
        extra = sorted(map(repr, keys - _HEADER_KEYS[kind] - optional))  # keys may be str or bytes
        if missing:
            _fail(
                f"{kind} header",
                f"missing {', '.join(missing)}",
                f"keys {', '.join(sorted(_HEADER_KEYS[kind]))}",
            )
        _fail(
            f"{kind} header",
            f"unknown keys {', '.join(map(str, extra))}",
            f"only protocol v{PROTOCOL_VERSION} keys",
        )
    arrays: dict[str, np.ndarray] = {}
    for i, (name, shape) in enumerate(_descriptors(kind, header, len(frames), limits), start=1):
        _check_shape_limits(kind, name, shape, limits)
        buf = _as_buffer(frames[i], i)
        expected = math.prod(shape)
        if len(buf) != expected:
            _fail(f"{kind}.{name} bytes", len(buf), f"{expected} for uint8 shape {shape}")
        arr = np.frombuffer(buf, dtype=np.uint8).reshape(shape)
        arr.flags.writeable = False  # a view of the received frame: changing it would be a surprise
        arrays[name] = arr
    msg = _build(kind, header, arrays, limits)
    _check_limits(msg, limits)
    return msg


def _build(kind: str, h: dict[str, Any], arrays: dict[str, np.ndarray], limits: Limits) -> Message:
    if kind == "bundle":
        try:
            geometry = SpikeGeometry(
                height=_int("bundle.spike_height", h["spike_height"], 1, limits.max_spike_side),
                width=_int("bundle.spike_width", h["spike_width"], 1, limits.max_spike_side),
                flip=_bool("bundle.spike_flip", h["spike_flip"]),
                row_tag_bits=_int("bundle.spike_row_tag_bits", h["spike_row_tag_bits"], 0, 64),
            )
        except SpikeFormatError as exc:
            raise ProtocolError(f"bundle: {exc}") from None
        return Bundle(
            seq=h["seq"],
            source_id=h["source_id"],
            blur=arrays["blur"],
            spikes_packed=arrays["spikes_packed"],
            geometry=geometry,
            exposure=h["exposure"],
            rgb_t_ns=h["rgb_t_ns"],
            spike_t0_ns=h["spike_t0_ns"],
            spike_rate_hz=h["spike_rate_hz"],
            calibration_id=h["calibration_id"],
            stamps=_stamps("bundle.stamps", h["stamps"], limits.max_stamps),
            sync=_counters("bundle.sync", h.get("sync", {}), limits.max_counters),
        )
    if kind == "result":
        times = h["spike_times"]
        if not isinstance(times, list):
            _fail("result.spike_times", times, "a list of spike indices")
        return Result(
            seq=h["seq"],
            source_id=h["source_id"],
            frames=arrays["frames"],
            spike_times=tuple(times),
            model=h["model"],
            blur=arrays.get("blur"),
            stamps=_stamps("result.stamps", h["stamps"], limits.max_stamps),
            rgb_t_ns=h.get("rgb_t_ns", 0),
            spike_density=h.get("spike_density", 0.0),
            sync=_counters("result.sync", h.get("sync", {}), limits.max_counters),
        )
    if kind == "status":
        return Status(
            node=h["node"],
            role=h["role"],
            pid=h["pid"],
            state=h["state"],
            counters=_counters("status.counters", h["counters"], limits.max_counters),
            t_ns=h["t_ns"],
        )
    return Credit(
        node=h["node"],
        session=h["session"],
        producer_session=h["producer_session"],
        acked=h["acked"],
        window=h["window"],
        t_ns=h["t_ns"],
    )
