"""stream/protocol.py: round trips, hand-built golden messages, every rejection, and fuzzing."""

from __future__ import annotations

import contextlib
import dataclasses
import math

import msgpack
import numpy as np
import pytest
import zmq
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from spikereveal.stream.protocol import (
    DEFAULT_LIMITS,
    PROTOCOL_VERSION,
    Bundle,
    Credit,
    Limits,
    ProtocolError,
    Result,
    Status,
    decode,
    encode,
)
from spikereveal.stream.spikes import SpikeGeometry, pack_frames, unpack_frames

GEOMETRY = SpikeGeometry(8, 16)  # 16 bytes per frame


def make_bundle(
    seq: int = 3, t: int = 5, h: int = 4, w: int = 6, geometry: SpikeGeometry = GEOMETRY
) -> Bundle:
    rng = np.random.default_rng(seq)
    return Bundle(
        seq=seq,
        source_id="scene-1",
        blur=rng.integers(0, 256, (h, w, 3), dtype=np.uint8),
        spikes_packed=rng.integers(0, 256, (t, geometry.frame_bytes), dtype=np.uint8),
        geometry=geometry,
        exposure=(1, t - 2),
        rgb_t_ns=123_456_789,
        spike_t0_ns=-5,
        spike_rate_hz=20_000.0,
        calibration_id="rig-a",
        stamps=(("capture.read", 10), ("capture.send", 25)),
    )


def make_result(k: int = 3, with_blur: bool = True) -> Result:
    rng = np.random.default_rng(k)
    return Result(
        seq=7,
        source_id="scene-1",
        frames=rng.integers(0, 256, (k, 4, 6, 3), dtype=np.uint8),
        spike_times=tuple(range(20, 20 + 10 * k, 10)),
        model="ldn-torch",
        blur=rng.integers(0, 256, (4, 6, 3), dtype=np.uint8) if with_blur else None,
        stamps=(("capture.read", 1), ("engine.done", 9)),
    )


def header_of(frames: list) -> dict:
    return msgpack.unpackb(bytes(frames[0]), raw=False)


def with_header(frames: list, **changes: object) -> list:
    header = header_of(frames)
    for key, value in changes.items():
        if value is _DELETE:
            del header[key]
        else:
            header[key] = value
    return [msgpack.packb(header, use_bin_type=True), *frames[1:]]


_DELETE = object()


def assert_bundles_equal(a: Bundle, b: Bundle) -> None:
    for name in ("seq", "source_id", "geometry", "exposure", "rgb_t_ns", "spike_t0_ns", "spike_rate_hz"):
        assert getattr(a, name) == getattr(b, name), name
    assert a.calibration_id == b.calibration_id and a.stamps == b.stamps
    np.testing.assert_array_equal(a.blur, b.blur)
    np.testing.assert_array_equal(a.spikes_packed, b.spikes_packed)


# -- smoke / round trips --------------------------------------------------------------------------


def test_bundle_round_trip_from_bytes() -> None:
    bundle = make_bundle()
    frames = [bytes(f) for f in encode(bundle)]
    assert len(frames) == 3 and len(frames[1]) == 4 * 6 * 3 and len(frames[2]) == 5 * 16
    out = decode(frames)
    assert isinstance(out, Bundle) and out.kind == "bundle" and out.version == PROTOCOL_VERSION
    assert_bundles_equal(bundle, out)


def test_bundle_sync_round_trip_and_checks() -> None:
    sync = {"exposures": 4, "offset_residual_ns": 812.5, "skipped.lost_block": 1}
    bundle = dataclasses.replace(make_bundle(), sync=sync)
    frames = [bytes(f) for f in encode(bundle)]
    out = decode(frames)
    assert isinstance(out, Bundle) and out.sync == sync
    assert_bundles_equal(bundle, out)
    plain = encode(make_bundle())  # no sync: the header leaves the key out (older peers read it)
    assert "sync" not in header_of(plain) and decode(plain).sync == {}
    expect_error(with_header(frames, sync={"exposures": "many"}), "bundle.sync", "'many'")
    expect_error(with_header(frames, sync=[1]), "bundle.sync", "a map")
    with pytest.raises(ProtocolError, match="bundle.sync"):
        dataclasses.replace(make_bundle(), sync={"x": None})


def test_result_sync_round_trip_and_old_headers_still_decode() -> None:
    # GIVEN a result carrying a rig's sync report (forwarded from its bundle)
    sync = {"exposures": 12, "offset_residual_ns": 430.25, "skipped.clock_jump": 2, "lost_blocks": 1}
    result = dataclasses.replace(make_result(), sync=sync)
    frames = [bytes(f) for f in encode(result)]
    # THEN it comes back as sent, numbers keeping their kind
    out = decode(frames)
    assert isinstance(out, Result) and out.sync == sync
    assert isinstance(out.sync["exposures"], int) and isinstance(out.sync["offset_residual_ns"], float)
    # AND a result without one leaves the key out, and a header from before the field decodes to {}
    plain = encode(make_result())
    assert "sync" not in header_of(plain) and decode(plain).sync == {}
    old = with_header(frames, sync=_DELETE, rgb_t_ns=_DELETE, spike_density=_DELETE)
    assert decode(old).sync == {} and decode(old).seq == result.seq
    # AND a bad report is one error naming the field
    expect_error(with_header(frames, sync={"exposures": "many"}), "result.sync", "'many'")
    expect_error(with_header(frames, sync=[1]), "result.sync", "a map")
    with pytest.raises(ProtocolError, match="result.sync"):
        dataclasses.replace(make_result(), sync={"x": None})


def test_result_round_trip_with_and_without_blur() -> None:
    for with_blur in (True, False):
        result = make_result(with_blur=with_blur)
        out = decode(encode(result))
        assert isinstance(out, Result)
        assert out.seq == 7 and out.spike_times == (20, 30, 40) and out.model == "ldn-torch" and out.k == 3
        np.testing.assert_array_equal(out.frames, result.frames)
        assert (out.blur is None) == (not with_blur)
        if with_blur:
            np.testing.assert_array_equal(out.blur, result.blur)
        assert out.stamps == result.stamps


def test_status_and_credit_round_trip() -> None:
    status = Status("engine", "engine", 4242, "alive", {"in": 3, "fps": 2.5}, 99)
    assert decode(encode(status)) == status
    assert len(encode(status)) == 1
    credit = Credit("engine", "ab" * 8, "cd" * 8, 17, 2, 5)
    assert decode(encode(credit)) == credit
    now = Status.now("cap", "capture", "ready")
    assert now.pid > 0 and now.t_ns > 0 and now.counters == {}


def test_decode_is_zero_copy_and_read_only() -> None:
    bundle = make_bundle()
    frames = [bytearray(f) for f in encode(bundle)]  # writable buffers, like a received zmq.Frame
    out = decode(frames)
    assert np.shares_memory(out.blur, np.frombuffer(frames[1], np.uint8))
    assert not out.blur.flags.writeable and not out.spikes_packed.flags.writeable
    with pytest.raises(ValueError):
        out.blur[0, 0, 0] = 1


def test_encode_does_not_copy_contiguous_arrays() -> None:
    bundle = make_bundle()
    frames = encode(bundle)
    assert np.shares_memory(np.frombuffer(frames[1], np.uint8), bundle.blur)
    # A non-contiguous array is made contiguous (copied) rather than sent wrong.
    strided = np.zeros((4, 12, 3), np.uint8)[:, ::2]
    frames = encode(Bundle(0, "s", strided, bundle.spikes_packed, GEOMETRY, (0, 1)))
    assert len(frames[1]) == 4 * 6 * 3


def test_decode_accepts_zmq_frames_and_memoryviews() -> None:
    ctx = zmq.Context.instance()
    a, b = ctx.socket(zmq.PAIR), ctx.socket(zmq.PAIR)
    try:
        a.bind("inproc://protocol-test")
        b.connect("inproc://protocol-test")
        bundle = make_bundle(t=6000 // 16 + 1)  # a buffer above the zero-copy threshold too
        a.send_multipart(encode(bundle), copy=False)
        assert b.poll(2000)
        frames = b.recv_multipart(copy=False)
        assert all(isinstance(f, zmq.Frame) for f in frames)
        assert_bundles_equal(bundle, decode(frames))
        assert_bundles_equal(bundle, decode([memoryview(bytes(f)) for f in frames]))
    finally:
        a.close(0)
        b.close(0)


def test_stamped_appends_and_keeps_arrays() -> None:
    bundle = make_bundle()
    later = bundle.stamped("engine.recv", 77).stamped("engine.done")
    assert later.stamps[:3] == (("capture.read", 10), ("capture.send", 25), ("engine.recv", 77))
    assert later.stamps[3][0] == "engine.done" and later.stamps[3][1] > 0
    assert later.blur is bundle.blur and bundle.stamps == (("capture.read", 10), ("capture.send", 25))
    result = make_result().stamped("display.recv", 5)
    assert result.stamps[-1] == ("display.recv", 5)


def test_repr_is_short() -> None:
    big = make_bundle(h=200, w=300)
    assert len(repr(big)) < 300 and "(200, 300, 3)" in repr(big)
    assert "(3, 4, 6, 3)" in repr(make_result())


def test_spike_time_ns() -> None:
    bundle = make_bundle()
    assert bundle.spike_time_ns(0) == -5
    assert bundle.spike_time_ns(20_000) == -5 + 1_000_000_000


# -- golden cases built by hand -------------------------------------------------------------------


def test_golden_bundle_from_hand_built_frames() -> None:
    """A header written out literally, and a one-pixel spike the engine must find upright."""
    geometry = SpikeGeometry(8, 16, flip=True, row_tag_bits=16)  # rows of 32 bits: 4 bytes; 32 B/frame
    spikes = np.zeros((2, 8, 16), np.uint8)
    spikes[1, 0, 3] = 1  # top row (stored last, upside down), column 3
    packed = pack_frames(spikes, geometry)
    assert packed.shape == (2, 32)
    header = {
        "v": 1,
        "kind": "bundle",
        "seq": 0,
        "source_id": "golden",
        "spike_height": 8,
        "spike_width": 16,
        "spike_flip": True,
        "spike_row_tag_bits": 16,
        "exposure": [0, 1],
        "rgb_t_ns": 1,
        "spike_t0_ns": 2,
        "spike_rate_hz": 40000,
        "calibration_id": "",
        "stamps": [["capture.read", 5]],
        "buffers": [
            {"name": "blur", "dtype": "uint8", "shape": [1, 2, 3]},
            {"name": "spikes_packed", "dtype": "uint8", "shape": [2, 32]},
        ],
    }
    blur = bytes([0, 0, 255, 0, 255, 0])  # pixel 0 red (BGR), pixel 1 green
    out = decode([msgpack.packb(header), blur, packed.tobytes()])
    assert isinstance(out, Bundle)
    assert out.geometry == geometry and out.spike_rate_hz == 40000.0 and out.exposure == (0, 1)
    assert out.blur[0, 0].tolist() == [0, 0, 255] and out.blur[0, 1].tolist() == [0, 255, 0]
    upright = unpack_frames(out.spikes_packed, out.geometry)  # the engine's single unpack path
    assert upright[1, 0, 3] == 1 and upright.sum() == 1
    # And the encoder writes that same header.
    assert header_of(encode(out)) == {**header, "spike_rate_hz": 40000.0}


def test_golden_status_bytes() -> None:
    frames = encode(Status("n", "r", 1, "ready", {}, 2))
    assert header_of(frames) == {
        "v": 1,
        "kind": "status",
        "node": "n",
        "role": "r",
        "pid": 1,
        "state": "ready",
        "counters": {},
        "t_ns": 2,
        "buffers": [],
    }


# -- error cases ----------------------------------------------------------------------------------


def expect_error(frames: list, *words: str, limits: Limits = DEFAULT_LIMITS) -> str:
    with pytest.raises(ProtocolError) as info:
        decode(frames, limits)
    text = str(info.value)
    for word in words:
        assert word in text, f"{word!r} not in {text!r}"
    return text


@pytest.mark.parametrize(
    ("changes", "words"),
    [
        ({"v": 2}, ["protocol version", "2", "expected 1"]),
        ({"v": 1.0}, ["protocol version"]),
        ({"v": _DELETE}, ["protocol version", "None"]),
        ({"kind": "video"}, ["header.kind", "'video'", "bundle"]),
        ({"kind": 3}, ["header.kind"]),
        ({"seq": _DELETE}, ["missing seq"]),
        ({"extra": 1}, ["unknown keys", "extra"]),
        ({"seq": "3"}, ["bundle.seq", "'3'", "integer"]),
        ({"seq": True}, ["bundle.seq", "True"]),
        ({"seq": -1}, ["bundle.seq", "-1"]),
        ({"source_id": 5}, ["bundle.source_id", "string"]),
        ({"source_id": "x" * 300}, ["bundle.source_id", "256"]),
        ({"spike_flip": 1}, ["bundle.spike_flip", "true or false"]),
        ({"spike_height": 3, "spike_width": 15}, ["not a whole number of bytes"]),
        ({"spike_width": 32}, ["bundle.spikes_packed.shape", "(5, 16)", "32"]),
        ({"spike_rate_hz": 0}, ["bundle.spike_rate_hz", "> 0"]),
        ({"spike_rate_hz": float("nan")}, ["bundle.spike_rate_hz"]),
        ({"exposure": [3, 2]}, ["bundle.exposure.end", "2"]),
        ({"exposure": [0, 5]}, ["bundle.exposure.end", "5", "[0, 4]"]),
        ({"exposure": [0]}, ["bundle.exposure", "pair"]),
        ({"stamps": [["a"]]}, ["bundle.stamps[0]", "pair"]),
        ({"stamps": [["a", "b"]]}, ["bundle.stamps[0].t_ns"]),
        ({"rgb_t_ns": 2**64 - 1}, ["bundle.rgb_t_ns"]),
        ({"buffers": "x"}, ["bundle.buffers"]),
        ({"calibration_id": None}, ["bundle.calibration_id"]),
    ],
)
def test_bundle_header_errors_name_the_field(changes: dict, words: list[str]) -> None:
    expect_error(with_header(encode(make_bundle()), **changes), *words)


def test_buffer_descriptor_errors() -> None:
    frames = encode(make_bundle())
    buffers = header_of(frames)["buffers"]
    blur, spikes = buffers
    expect_error(with_header(frames, buffers=[spikes, blur]), "buffers[0].name", "'blur'")
    expect_error(
        with_header(frames, buffers=[{**blur, "dtype": "float32"}, spikes]), "dtype", "float32", "uint8"
    )
    expect_error(
        with_header(frames, buffers=[{**blur, "shape": [4, 6, 4]}, spikes]), "blur bytes", "72", "96"
    )
    expect_error(with_header(frames, buffers=[{**blur, "shape": [72]}, spikes]), "bundle.blur.shape", "(72,)")
    expect_error(with_header(frames, buffers=[{**blur, "shape": [-4, 6, 3]}, spikes]), "shape[0]", "-4")
    expect_error(
        with_header(frames, buffers=[{**blur, "extra": 1}, spikes]), "buffers[0]", "name, dtype and shape"
    )
    expect_error(with_header(frames, buffers=[blur]), "buffers count", "1", "2..2")


def test_frame_count_and_type_errors() -> None:
    frames = encode(make_bundle())
    expect_error(frames[:2], "frame count", "2", "3")
    expect_error([*frames, b""], "frame count", "4", "1..3")
    expect_error([], "frame count", "0")
    expect_error([frames[0], frames[1], 12345], "frame 2", "int")
    expect_error("not a list", "message", "str")  # type: ignore[arg-type]
    expect_error([frames[0], frames[1], bytes(frames[2])[:-1]], "spikes_packed bytes", "79", "80")


def test_header_errors() -> None:
    expect_error([b"\xc1"], "header", "msgpack")
    expect_error([msgpack.packb([1, 2])], "header", "list", "map")
    expect_error([msgpack.packb({"v": 1, "kind": "status", b"node": 1})], "header")
    expect_error([b"\x00" * (DEFAULT_LIMITS.max_header_bytes + 1)], "header size")
    expect_error([msgpack.packb({"v": 1, "kind": "bundle", "seq": b"raw"})], "header")  # bin is refused


def test_result_errors() -> None:
    frames = encode(make_result())
    expect_error(with_header(frames, spike_times=[1, 2]), "result.spike_times length", "2", "3")
    expect_error(with_header(frames, spike_times=[1, 2, "x"]), "result.spike_times[2]")
    expect_error(with_header(frames, spike_times=5), "result.spike_times")
    blur_desc = header_of(frames)["buffers"][1]
    frames_desc = header_of(frames)["buffers"][0]
    bad_blur = with_header(frames, buffers=[frames_desc, {**blur_desc, "shape": [6, 4, 3]}])
    expect_error(bad_blur, "result.blur.shape", "(6, 4, 3)", "(4, 6, 3)")
    expect_error(with_header(frames, buffers=[frames_desc]), "frame count", "3", "2")


def test_status_errors() -> None:
    frames = encode(Status("n", "r", 1, "ready", {}, 2))
    expect_error(with_header(frames, state="sleeping"), "status.state", "sleeping", "ready, alive, stopping")
    expect_error(with_header(frames, counters=[1]), "status.counters")
    expect_error(with_header(frames, counters={"a": "b"}), "status.counters['a']")
    expect_error(with_header(frames, pid=-1), "status.pid")
    expect_error(with_header(encode(Credit("n", "s", "", 0, 2)), window=0), "credit.window", "0")


def test_limits_refuse_big_claims_on_decode_and_encode() -> None:
    small = Limits(max_image_side=5, max_spike_frames=4, max_times=2)
    expect_error(encode(make_bundle(w=6)), "bundle.blur.shape", "limit", limits=small)
    expect_error(encode(make_bundle(t=5, w=4)), "T <= 4", limits=small)
    expect_error(encode(make_result(k=3)), "K <= 2", limits=Limits(max_times=2))
    with pytest.raises(ProtocolError, match="limit"):
        encode(make_bundle(w=6), small)
    big = {"name": "blur", "dtype": "uint8", "shape": [8000, 8000, 3000]}
    frames = encode(make_bundle())
    expect_error(
        with_header(frames, buffers=[big, header_of(frames)["buffers"][1]]), "bundle.blur.shape", "limit"
    )


def test_constructor_validates() -> None:
    bundle = make_bundle()
    with pytest.raises(ProtocolError, match=r"bundle.blur.dtype.*float32"):
        Bundle(0, "s", bundle.blur.astype(np.float32), bundle.spikes_packed, GEOMETRY, (0, 1))
    with pytest.raises(ProtocolError, match=r"bundle.spikes_packed.shape.*\(5, 15\).*16"):
        Bundle(0, "s", bundle.blur, bundle.spikes_packed[:, :15], GEOMETRY, (0, 1))
    with pytest.raises(ProtocolError, match="bundle.geometry"):
        Bundle(0, "s", bundle.blur, bundle.spikes_packed, (8, 16), (0, 1))  # type: ignore[arg-type]
    with pytest.raises(ProtocolError, match="result.frames.shape"):
        Result(0, "s", np.zeros((2, 4, 6, 4), np.uint8), (1, 2))
    with pytest.raises(ProtocolError, match="message"):
        encode("hello")  # type: ignore[arg-type]
    # numpy integers are accepted and normalised to int
    b = Bundle(np.int64(4), "s", bundle.blur, bundle.spikes_packed, GEOMETRY, (np.int32(0), 1))
    assert type(b.seq) is int and b.exposure == (0, 1)


# -- properties -----------------------------------------------------------------------------------

FUZZ = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(
    seq=st.integers(0, 2**63 - 1),
    h=st.integers(1, 5),
    w=st.integers(1, 5),
    t=st.integers(1, 6),
    height=st.integers(1, 4),
    width8=st.integers(1, 3),
    tag=st.sampled_from([0, 8, 16]),
    flip=st.booleans(),
    rate=st.floats(1e-3, 1e7, allow_nan=False),
    stamps=st.lists(st.tuples(st.text(max_size=10), st.integers(-(2**63), 2**63 - 1)), max_size=5),
    data=st.data(),
)
def test_bundle_round_trip_property(seq, h, w, t, height, width8, tag, flip, rate, stamps, data) -> None:
    geometry = SpikeGeometry(height, 8 * width8, flip, tag)
    start = data.draw(st.integers(0, t - 1))
    end = data.draw(st.integers(start, t - 1))
    raw = data.draw(
        st.binary(
            min_size=h * w * 3 + t * geometry.frame_bytes, max_size=h * w * 3 + t * geometry.frame_bytes
        )
    )
    bundle = Bundle(
        seq=seq,
        source_id=data.draw(st.text(max_size=20)),
        blur=np.frombuffer(raw[: h * w * 3], np.uint8).reshape(h, w, 3),
        spikes_packed=np.frombuffer(raw[h * w * 3 :], np.uint8).reshape(t, geometry.frame_bytes),
        geometry=geometry,
        exposure=(start, end),
        rgb_t_ns=data.draw(st.integers(-(2**63), 2**63 - 1)),
        spike_rate_hz=rate,
        stamps=stamps,
    )
    assert_bundles_equal(bundle, decode(encode(bundle)))


@FUZZ
@given(frames=st.lists(st.binary(max_size=64), max_size=5))
def test_random_bytes_only_raise_protocol_error(frames: list[bytes]) -> None:
    with contextlib.suppress(ProtocolError):
        decode(frames)


_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**64), 2**64 - 1) | st.floats() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=6), inner, max_size=4),
    max_leaves=12,
)


def _valid_messages() -> list[list[bytes]]:
    return [
        [bytes(f) for f in encode(m)]
        for m in (
            make_bundle(),
            make_result(),
            make_result(with_blur=False),
            Status.now("n", "r", "alive", {"a": 1}),
            Credit("n", "s", "", 0, 1),
        )
    ]


@FUZZ
@given(which=st.integers(0, 4), data=st.data())
def test_mutated_headers_only_raise_protocol_error(which: int, data: st.DataObject) -> None:
    frames = _valid_messages()[which]
    header = header_of(frames)
    key = data.draw(st.sampled_from(sorted(header)))
    header[key] = data.draw(_VALUES)
    if data.draw(st.booleans()):
        header[data.draw(st.text(max_size=5))] = data.draw(_VALUES)
    try:
        packed = msgpack.packb(header, use_bin_type=True)
    except (OverflowError, ValueError, TypeError):
        return  # hypothesis built something msgpack cannot write
    with contextlib.suppress(ProtocolError):
        decode([packed, *frames[1:]])


@FUZZ
@given(which=st.integers(0, 4), data=st.data())
def test_corrupted_frames_only_raise_protocol_error(which: int, data: st.DataObject) -> None:
    frames = list(_valid_messages()[which])
    action = data.draw(st.sampled_from(["flip", "truncate", "drop", "add", "swap"]))
    if action == "flip":
        i = data.draw(st.integers(0, len(frames) - 1))
        raw = bytearray(frames[i])
        if raw:
            pos = data.draw(st.integers(0, len(raw) - 1))
            raw[pos] ^= data.draw(st.integers(1, 255))
        frames[i] = bytes(raw)
    elif action == "truncate":
        i = data.draw(st.integers(0, len(frames) - 1))
        frames[i] = frames[i][: data.draw(st.integers(0, max(0, len(frames[i]) - 1)))]
    elif action == "drop":
        del frames[data.draw(st.integers(0, len(frames) - 1))]
    elif action == "add":
        frames.insert(data.draw(st.integers(0, len(frames))), data.draw(st.binary(max_size=100)))
    else:
        frames.reverse()
    try:
        msg = decode(frames)
    except ProtocolError:
        return
    # A flipped payload byte still decodes (buffers are opaque); the shape contract still holds.
    if isinstance(msg, Bundle):
        assert msg.spikes_packed.shape[1] == msg.geometry.frame_bytes
        assert math.prod(msg.blur.shape) == len(frames[1])


def test_result_carries_the_sensor_rgb_time_and_older_headers_still_decode() -> None:
    # GIVEN a result stamped with its bundle's sensor time of the RGB exposure
    result = dataclasses.replace(make_result(), rgb_t_ns=123_456_789)
    frames = encode(result)
    # THEN it travels in the header and comes back
    assert header_of(frames)["rgb_t_ns"] == 123_456_789
    assert decode(frames).rgb_t_ns == 123_456_789  # type: ignore[union-attr]
    # AND a sender from before the field existed (no key) decodes with 0 (unknown)
    assert decode(with_header(frames, rgb_t_ns=_DELETE)).rgb_t_ns == 0  # type: ignore[union-attr]
    # AND a wrong value is refused, naming the field
    expect_error(with_header(frames, rgb_t_ns="soon"), "result.rgb_t_ns")
    with pytest.raises(ProtocolError, match="result.rgb_t_ns"):
        dataclasses.replace(make_result(), rgb_t_ns=1.5)


def test_result_carries_the_spike_density_and_older_headers_still_decode() -> None:
    # GIVEN a result with the engine's estimate of its bundle's spike density
    result = dataclasses.replace(make_result(), spike_density=0.4963)
    frames = encode(result)
    # THEN it travels in the header and comes back exactly
    assert header_of(frames)["spike_density"] == 0.4963
    assert decode(frames).spike_density == 0.4963  # type: ignore[union-attr]
    # AND a sender from before the field existed (no key) decodes with 0.0 (unknown)
    assert decode(with_header(frames, spike_density=_DELETE)).spike_density == 0.0  # type: ignore[union-attr]
    # AND a wrong value is refused, naming the field
    expect_error(with_header(frames, spike_density="dense"), "result.spike_density")
    expect_error(with_header(frames, spike_density=float("nan")), "result.spike_density")
    with pytest.raises(ProtocolError, match="result.spike_density"):
        dataclasses.replace(make_result(), spike_density=-0.5)
