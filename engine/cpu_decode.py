"""Packed spike bytes -> the K LDN windows and the TFP counts in one compiled pass (Numba, CPU).

The GPU kernels of engine/kernels/ take the packed bits as they arrive and write what the models
read; this is the same design on a CPU core. The NumPy path unpacks every frame the models touch
to one uint8 per pixel (:func:`~spikereveal.stream.spikes.unpack_frames`), then cuts and copies
the windows (:func:`~spikereveal.engine.windows.ldn_inputs`) and sums the TFPs
(:mod:`spikereveal.engine.tfp`): several full-size passes over memory. Here the packed frames
the models read (``frames_needed``) are read once, in stored order, and go straight to their
destinations: each stored row into the window rows that hold that frame (8 pixels per table
look-up and store, flipped, tag bits skipped), and the whole frame, still packed, into bit-sliced
counters (one ripple-carry add per 32 pixels: TFP_long over the exposure, two frames at a time,
and the 9-frame TFP_short of every output time whose window holds the frame). The counters
become upright uint16 counts once per exposure. No (T, h, w) array is ever built.

Measured (``spikereveal bench decode``, 250x400, K=5, one core of a loaded 2-core VM): TFP_long +
the K TFP_short ~2.1-2.6x faster than the NumPy form; with the K windows as a uint8 batch ~2.2x;
with them as the LDN's float32 input ~2.1x (bound by writing 42 MB per bundle).
Byte-aligned rows of a width divisible by 8 (every real sensor) take that path; other shapes a
plain bit-by-bit loop with the same results (tests).

The references are the project's own functions, not copies: windows equal ``ldn_inputs(...)[1]``
(float32, scaled) or the stacked ``spike_window`` views (uint8), and ``counts / n`` equals
``tfp_range`` / ``tfp`` bit for bit (exact integer counts, one correctly rounded float32 division,
as engine/tfp.py does). tests/engine/test_cpu_decode.py checks this over flip, tag bits, widths
that are not byte aligned, and K = 1, 5, 7.

Single-threaded on purpose (no ``prange``): an engine process gets one core per bundle, and more
throughput comes from more engine processes (``bench pool``), not threads. Numba is a dependency of the package; where it
cannot be imported :data:`AVAILABLE` is False and callers use the NumPy path.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from spikereveal.engine.windows import LDN_WINDOW, SDM_SHORT_WINDOW, ExposureError, check_exposure
from spikereveal.stream.spikes import SpikeFormatError, SpikeGeometry

try:
    import numba
except ImportError:  # pragma: no cover - numba is a declared dependency
    numba = None

AVAILABLE = numba is not None

__all__ = ["AVAILABLE", "ExposureDecode", "counts_to_tfp", "decode_exposure", "ldn_inputs_packed"]

#: Largest exposure (frames) the uint16 counts hold: 3.3 s at 20 kHz.
MAX_COUNT = np.iinfo(np.uint16).max
#: Window dtypes the pass can write: float32 (the LDN input as ldn_inputs makes it) or uint8 0/1.
WINDOW_DTYPES = (np.float32, np.uint8)


def _kernel(
    packed: np.ndarray,
    first: int,
    last: int,
    height: int,
    width: int,
    row_bits: int,
    flip: bool,
    long_start: int,
    long_stop: int,
    win_k: np.ndarray,
    win_j: np.ndarray,
    win_n: np.ndarray,
    short_k: np.ndarray,
    short_n: np.ndarray,
    value: np.ndarray,
    windows: np.ndarray,
    long_counts: np.ndarray,
    short_counts: np.ndarray,
) -> None:
    """Decode frames ``first..last`` row by row into their destinations (see the module docstring).

    ``win_k/win_j[r, m]`` (m < ``win_n[r]``): frame ``first + r`` is frame j of window k;
    ``short_k[r, m]`` (m < ``short_n[r]``): it is inside time k's short window. ``value[0]`` is
    what a spike writes into a window (the scale, in the windows' dtype). Counts are uint16 and
    are overwritten, not added to.
    """
    bits = np.empty(width, dtype=np.uint8)
    spike = value[0]
    n_short = short_counts.shape[0]
    aligned = row_bits % 8 == 0
    for y in range(height):
        src = height - 1 - y if flip else y
        base = src * row_bits
        for x in range(width):
            long_counts[y, x] = 0
        for k in range(n_short):
            for x in range(width):
                short_counts[k, y, x] = 0
        for f in range(first, last + 1):
            frame = packed[f]
            if aligned:  # the row starts on a byte: no bit offset to carry (vectorizes)
                b0 = base >> 3
                for x in range(width):
                    bits[x] = (frame[b0 + (x >> 3)] >> (x & 7)) & 1
            else:
                for x in range(width):
                    p = base + x
                    bits[x] = (frame[p >> 3] >> (p & 7)) & 1
            r = f - first
            if long_start <= f <= long_stop:
                for x in range(width):
                    long_counts[y, x] += bits[x]
            for m in range(short_n[r]):
                k = short_k[r, m]
                for x in range(width):
                    short_counts[k, y, x] += bits[x]
            for m in range(win_n[r]):
                k, j = win_k[r, m], win_j[r, m]
                for x in range(width):
                    windows[k, j, y, x] = bits[x] * spike


#: Words per block of the bit-sliced add: the carries and the planes' slices stay in L1.
_BLOCK_WORDS = 512


def _add_sliced(planes: np.ndarray, frame: np.ndarray, carry: np.ndarray) -> None:
    """Add one frame's bits to a bit-sliced counter: ``planes[p]`` holds bit p of every count.

    A ripple-carry add of a 0/1 per bit position, 32 (or 8) pixels per word operation, in blocks
    so that the carries stay in L1; the loops have no branch and vectorize. The caller sizes P so
    that no count can exceed 2**P - 1.
    """
    # Loops run over range(m) on slices: indices LLVM can prove non-negative, so no wraparound
    # check is left in them and they vectorize (an index i0 + i kept them scalar, 3x slower).
    n = frame.shape[0]
    for i0 in range(0, n, _BLOCK_WORDS):
        m = min(n - i0, _BLOCK_WORDS)
        c = carry[:m]
        src = frame[i0 : i0 + m]
        for i in range(m):
            c[i] = src[i]
        for p in range(planes.shape[0]):
            plane = planes[p, i0 : i0 + m]
            for i in range(m):
                t = plane[i]
                plane[i] = t ^ c[i]
                c[i] = t & c[i]


def _add_pair_sliced(planes: np.ndarray, first: np.ndarray, second: np.ndarray, carry: np.ndarray) -> None:
    """:func:`_add_sliced` of two frames at once: their sum ``s + 2c`` (half adder) enters plane 0
    and plane 1 together (a full adder there), so the ripple runs once for two frames (~1.6x fewer
    word operations). Needs at least 2 planes; ``carry`` is (2, words)."""
    n = first.shape[0]
    for i0 in range(0, n, _BLOCK_WORDS):
        m = min(n - i0, _BLOCK_WORDS)
        c = carry[0, :m]
        d = carry[1, :m]
        x = first[i0 : i0 + m]
        y = second[i0 : i0 + m]
        for i in range(m):
            c[i] = x[i] ^ y[i]
            d[i] = x[i] & y[i]
        plane = planes[0, i0 : i0 + m]
        for i in range(m):
            t = plane[i]
            plane[i] = t ^ c[i]
            c[i] = t & c[i]
        plane = planes[1, i0 : i0 + m]
        for i in range(m):
            t, u, v = plane[i], c[i], d[i]
            plane[i] = t ^ u ^ v
            c[i] = (t & u) | (v & (t | u))
        for p in range(2, planes.shape[0]):
            plane = planes[p, i0 : i0 + m]
            for i in range(m):
                t = plane[i]
                plane[i] = t ^ c[i]
                c[i] = t & c[i]


def _kernel_sliced(
    words: np.ndarray,
    packed: np.ndarray,
    first: int,
    last: int,
    height: int,
    width: int,
    row_bytes: int,
    flip: bool,
    long_start: int,
    long_stop: int,
    win_k: np.ndarray,
    win_j: np.ndarray,
    win_n: np.ndarray,
    short_k: np.ndarray,
    short_n: np.ndarray,
    lut_bits: np.ndarray,
    lut_float: np.ndarray,
    windows_u64: np.ndarray,
    windows_f32: np.ndarray,
    float_out: bool,
    long_planes: np.ndarray,
    short_planes: np.ndarray,
    carry: np.ndarray,
) -> None:
    """The fast form of :func:`_kernel` for byte-aligned rows and a width divisible by 8.

    Frames are read once, in stored order. Counts are kept bit-sliced on the stored words
    (``words``: the same bytes as ``packed``, viewed as uint32 where frames allow), flip and tag
    bits are applied once at the end (:func:`_planes_to_counts`). Window rows are written 8
    pixels at a time: ``lut_bits[byte]`` is a uint64 of one 0/1 byte per pixel (little endian:
    lane b = pixel 8i+b), ``lut_float[byte]`` the 8 float32 values.
    """
    n_bytes = width // 8  # the tag bytes after them are never read
    pending = -1  # an exposure frame waiting for its pair
    for f in range(first, last + 1):
        r = f - first
        if long_start <= f <= long_stop:
            if pending < 0:
                pending = f
            else:
                _add_pair_sliced(long_planes, words[pending], words[f], carry)
                pending = -1
        for m in range(short_n[r]):
            _add_sliced(short_planes[short_k[r, m]], words[f], carry[0])
        frame = packed[f]
        for m in range(win_n[r]):
            k, j = win_k[r, m], win_j[r, m]
            for y in range(height):
                b0 = (height - 1 - y if flip else y) * row_bytes
                src = frame[b0 : b0 + n_bytes]
                if float_out:
                    row = windows_f32[k, j, y]
                    for i in range(n_bytes):
                        byte = src[i]  # 2-D indexing: a lut_float[byte] row view would cost a refcount
                        for b in range(8):
                            row[8 * i + b] = lut_float[byte, b]
                else:
                    row64 = windows_u64[k, j, y]
                    for i in range(n_bytes):
                        row64[i] = lut_bits[src[i]]
    if pending >= 0:
        _add_sliced(long_planes, words[pending], carry[0])


def _planes_to_counts(
    planes: np.ndarray,
    height: int,
    width: int,
    row_bytes: int,
    flip: bool,
    lut_planes: np.ndarray,
    counts: np.ndarray,
) -> None:
    """Bit-sliced ``planes`` (P, frame_bytes) uint8 -> upright uint16 ``counts`` (h, w), tags dropped.

    Planes 0..7 are gathered 8 pixels at a time into the 8-bit lanes of one uint64 (a count of
    at most 255 per lane; ``lut_planes[p, byte]`` is ``lut_bits[byte] << p``); higher planes (exposures of 256 frames or more) pixel by pixel.
    """
    n_planes = planes.shape[0]
    low = min(n_planes, 8)
    n_bytes = width // 8
    lanes = np.empty(n_bytes, dtype=np.uint64)
    lane_bytes = lanes.view(np.uint8)  # little endian: byte 8i+b is lane b of word i = pixel 8i+b
    for y in range(height):
        b0 = (height - 1 - y if flip else y) * row_bytes
        out = counts[y]
        rows = planes[:, b0 : b0 + n_bytes]  # indices from range() below: no wraparound checks
        for i in range(n_bytes):  # one register per 8 pixels, OR-ed over the planes
            lanes_i = np.uint64(0)
            for p in range(low):
                lanes_i |= lut_planes[p, rows[p, i]]
            lanes[i] = lanes_i
        for x in range(width):
            out[x] = lane_bytes[x]
        for p in range(8, n_planes):
            src = planes[p, b0 : b0 + n_bytes]
            for x in range(width):
                out[x] += np.uint16(((src[x >> 3] >> (x & 7)) & 1) << p)


#: Byte -> its 8 bits (bit b in column b), the tables below are built from it once.
_BYTE_BITS = np.unpackbits(np.arange(256, dtype=np.uint8)[:, None], axis=1, bitorder="little")
#: Byte -> uint64 holding one 0/1 byte per bit (little endian: lane b = bit b).
_LUT_BITS = np.ascontiguousarray(_BYTE_BITS).view(np.uint64).ravel()
#: ``_LUT_PLANES[p, byte]`` = ``_LUT_BITS[byte] << p``: plane p's share of 8 counts.
_LUT_PLANES = np.ascontiguousarray(_LUT_BITS[None, :] << np.arange(8, dtype=np.uint64)[:, None])


def _float_table(scale_value: np.ndarray) -> np.ndarray:
    """Byte -> its 8 float32 window values (0 or the scale)."""
    return np.ascontiguousarray(_BYTE_BITS.astype(np.float32) * scale_value.astype(np.float32)[0])


def _all_planes_to_counts(
    long_planes: np.ndarray,
    short_planes: np.ndarray,
    height: int,
    width: int,
    row_bytes: int,
    flip: bool,
    lut_planes: np.ndarray,
    long_counts: np.ndarray,
    short_counts: np.ndarray,
) -> None:
    """:func:`_planes_to_counts` for TFP_long and every TFP_short, in one call (one dispatch)."""
    _planes_to_counts(long_planes, height, width, row_bytes, flip, lut_planes, long_counts)
    for k in range(short_planes.shape[0]):
        _planes_to_counts(short_planes[k], height, width, row_bytes, flip, lut_planes, short_counts[k])


if AVAILABLE:
    _compiled = numba.njit(cache=True, nogil=True)(_kernel)
    _add_sliced = numba.njit(cache=True, nogil=True)(_add_sliced)
    _add_pair_sliced = numba.njit(cache=True, nogil=True)(_add_pair_sliced)
    _compiled_sliced = numba.njit(cache=True, nogil=True)(_kernel_sliced)
    _planes_to_counts = numba.njit(cache=True, nogil=True)(_planes_to_counts)
    _compiled_counts = numba.njit(cache=True, nogil=True)(_all_planes_to_counts)
else:  # pragma: no cover
    _compiled = _compiled_sliced = _compiled_counts = None


@dataclass(frozen=True)
class ExposureDecode:
    """What one pass over an exposure's packed frames gives.

    ``windows``: (K, window, h, w) float32 (0 or the scale) or uint8 (0/1), upright, tag bits
    dropped, ``windows[k, j]`` = frame ``times[k] - window//2 + j`` (None when not asked for);
    ``long_counts``: (h, w) uint16 spikes over the exposure; ``short_counts``: (K, h, w) uint16
    spikes over the ``short_window`` frames centred on each time.
    """

    windows: np.ndarray | None
    long_counts: np.ndarray
    short_counts: np.ndarray
    exposure_frames: int
    short_window: int

    def tfp_long(self) -> np.ndarray:
        """TFP_long (h, w) float32, equal to ``tfp_range(spikes, *exposure)``."""
        return counts_to_tfp(self.long_counts, self.exposure_frames)

    def tfp_short(self) -> np.ndarray:
        """TFP_short (K, h, w) float32, equal to ``tfp(spikes, t, short_window)`` at each time."""
        return counts_to_tfp(self.short_counts, self.short_window)


def counts_to_tfp(counts: np.ndarray, frames: int) -> np.ndarray:
    """Spike counts over ``frames`` frames -> TFP float32, rounded exactly as engine/tfp.py rounds.

    Examples:
        >>> import numpy as np
        >>> counts_to_tfp(np.array([0, 1, 3], dtype=np.uint16), 3)
        array([0.        , 0.33333334, 1.        ], dtype=float32)
    """
    out = counts.astype(np.float32)
    out /= np.float32(frames)  # count / n correctly rounded in float32, like tfp._mean_frames
    return out


def _packed_2d(packed: np.ndarray | bytes | bytearray | memoryview, geometry: SpikeGeometry) -> np.ndarray:
    if isinstance(packed, (bytes, bytearray, memoryview)):
        packed = np.frombuffer(packed, dtype=np.uint8)
    packed = np.asarray(packed)
    fb = geometry.frame_bytes
    if packed.dtype != np.uint8:
        raise SpikeFormatError(f"packed spikes must be uint8 bytes, got dtype {packed.dtype}")
    if packed.ndim == 1 and packed.size % fb == 0:
        packed = packed.reshape(-1, fb)
    if packed.ndim != 2 or packed.shape[1] != fb:
        raise SpikeFormatError(
            f"packed spikes of shape {packed.shape}: {packed.size} bytes is not a whole number of "
            f"{geometry.describe()} frames ({fb} bytes each)"
        )
    # Rows of a memory-mapped .dat are contiguous already; a strided view would be copied here.
    return np.ascontiguousarray(packed)


@functools.lru_cache(maxsize=64)
def _tables(times: tuple[int, ...], length: int, first: int, span: int) -> tuple[np.ndarray, ...]:
    """For each frame of the span: which (time k, frame j of its window) it feeds.

    Cached: a stream repeats the same times bundle after bundle (read-only, never written).
    """
    k_count = len(times)
    table_k = np.zeros((span, k_count), dtype=np.int64)
    table_j = np.zeros((span, k_count), dtype=np.int64)
    counts = np.zeros(span, dtype=np.int64)
    half = length // 2
    for k, t in enumerate(times):
        for j in range(length):
            r = t - half + j - first
            table_k[r, counts[r]] = k
            table_j[r, counts[r]] = j
            counts[r] += 1
    return table_k, table_j, counts


def decode_exposure(
    packed: np.ndarray | bytes | bytearray | memoryview,
    geometry: SpikeGeometry,
    exposure: tuple[int, int],
    times: Sequence[int],
    *,
    window: int | None = LDN_WINDOW,
    short_window: int = SDM_SHORT_WINDOW,
    scale: float = 1.0,
    dtype: type = np.float32,
    windows_out: np.ndarray | None = None,
) -> ExposureDecode:
    """One pass from packed frames to the K windows, TFP_long counts and TFP_short counts.

    Args:
        packed: (T, frame_bytes) uint8 stored frames of one bundle (or a flat buffer of them).
        geometry: their layout (flip, tag bits); any width, byte aligned or not.
        exposure: inclusive spike-frame range of the blur (TFP_long).
        times: the K output times (spike frame indices).
        window: LDN window length (21), or None to skip the windows (the SDM path).
        short_window: TFP_short length (9).
        scale: a spike's value in float32 windows (the density normalization of ``ldn_inputs``).
        dtype: np.float32 (the LDN input) or np.uint8 (0/1, ``scale`` must be 1).
        windows_out: a C-contiguous (K, window, h, w) array of ``dtype`` to write into (e.g. a
            backend's input buffer); a new one otherwise. Every element is written.

    Only frames from ``frames_needed`` are read. Raises ExposureError when the exposure or a
    window does not fit the T frames, SpikeFormatError for bytes that are not whole frames.
    """
    if _compiled is None:
        raise RuntimeError("numba is not installed: use unpack_frames + ldn_inputs / engine.tfp")
    frames = _packed_2d(packed, geometry)
    times = [int(t) for t in times]
    n_frames = frames.shape[0]
    if not times:
        raise ExposureError("times: need at least one output time")
    check_exposure(exposure, times, n_frames, short_window, "the TFP_short")
    if window is not None:
        check_exposure(exposure, times, n_frames, window)
    dtype = np.dtype(dtype)
    if dtype not in [np.dtype(d) for d in WINDOW_DTYPES]:
        raise ValueError(f"dtype: windows are float32 or uint8, got {dtype}")
    if dtype == np.uint8 and scale != 1.0:
        raise ValueError(f"scale: uint8 windows hold 0/1 only, got scale {scale}")
    start, stop = int(exposure[0]), int(exposure[1])
    if max(stop - start + 1, short_window) > MAX_COUNT:
        raise ExposureError(
            f"exposure {start}:{stop}: {stop - start + 1} frames is more than the {MAX_COUNT} a uint16 "
            "count holds"
        )
    reach = max(window or 0, short_window) // 2
    first, last = min(start, min(times) - reach), max(stop, max(times) + reach)
    span = last - first + 1
    k_count, h, w = len(times), geometry.height, geometry.width
    if window is None:
        windows = np.empty((k_count, 0, h, w), dtype=dtype)
        win = (np.zeros((span, 1), np.int64), np.zeros((span, 1), np.int64), np.zeros(span, np.int64))
    else:
        shape = (k_count, window, h, w)
        if windows_out is None:
            windows = np.empty(shape, dtype=dtype)
        else:
            if windows_out.shape != shape or windows_out.dtype != dtype or not windows_out.flags.c_contiguous:
                raise ValueError(
                    f"windows_out: {windows_out.shape} {windows_out.dtype} is not a C-contiguous "
                    f"{shape} {dtype} array"
                )
            windows = windows_out
        win = _tables(tuple(times), window, first, span)
    short = _tables(tuple(times), short_window, first, span)
    # uint16, as engine/density.py sums them: a quarter of int32's stores, the pass's largest output
    # after the windows, and it holds any exposure a sensor makes (checked above).
    long_counts = np.empty((h, w), dtype=np.uint16)
    short_counts = np.empty((k_count, h, w), dtype=np.uint16)
    value = np.array([scale], dtype=dtype)  # float32(scale), the same rounding as ldn_inputs
    if geometry.row_bits % 8 == 0 and w % 8 == 0:
        lut_float = _float_table(value)
        float_out = dtype == np.float32
        empty_f = np.empty((0, 0, 0, 0), dtype=np.float32)
        empty_u = np.empty((0, 0, 0, 0), dtype=np.uint64)
        fb = geometry.frame_bytes
        # 32 pixels per word operation where every frame starts on a 4-byte boundary.
        word = np.uint32 if fb % 4 == 0 and frames.ctypes.data % 4 == 0 else np.uint8
        words = frames.view(word)
        n_words = words.shape[1]
        long_planes = np.zeros((max(1, (stop - start + 1).bit_length()), n_words), dtype=word)
        short_planes = np.zeros((k_count, max(1, short_window.bit_length()), n_words), dtype=word)
        carry = np.empty((2, n_words), dtype=word)
        _compiled_sliced(
            words,
            frames,
            first,
            last,
            h,
            w,
            geometry.row_bits // 8,
            geometry.flip,
            start,
            stop,
            *win,
            short[0],
            short[2],
            _LUT_BITS,
            lut_float,
            empty_u if float_out or window is None else windows.view(np.uint64),
            windows if float_out and window is not None else empty_f,
            float_out,
            long_planes,
            short_planes,
            carry,
        )
        row_bytes = geometry.row_bits // 8
        _compiled_counts(
            long_planes.view(np.uint8),
            short_planes.view(np.uint8),
            h,
            w,
            row_bytes,
            geometry.flip,
            _LUT_PLANES,
            long_counts,
            short_counts,
        )
    else:
        _compiled(
            frames,
            first,
            last,
            h,
            w,
            geometry.row_bits,
            geometry.flip,
            start,
            stop,
            *win,
            short[0],
            short[2],
            value,
            windows,
            long_counts,
            short_counts,
        )
    return ExposureDecode(
        windows=windows if window is not None else None,
        long_counts=long_counts,
        short_counts=short_counts,
        exposure_frames=stop - start + 1,
        short_window=short_window,
    )


def ldn_inputs_packed(
    blur_bgr: np.ndarray,
    packed: np.ndarray | bytes | bytearray | memoryview,
    geometry: SpikeGeometry,
    exposure: tuple[int, int],
    times: Sequence[int],
    length: int = LDN_WINDOW,
    spike_scale: float = 1.0,
) -> tuple[np.ndarray, np.ndarray, ExposureDecode]:
    """:func:`~spikereveal.engine.windows.ldn_inputs` from packed bytes, without unpacking the bundle.

    Returns the same blur (K, 3, H, W) and windows (K, length, h, w) float32 as
    ``ldn_inputs(blur_bgr, unpack_frames(packed, geometry), times, length, spike_scale)``, bit
    for bit, plus the pass's TFP counts (TFP_long for the density estimate, TFP_short for SDM).
    """
    if blur_bgr.ndim != 3 or blur_bgr.shape[2] != 3:
        raise ValueError(f"blur must be (H, W, 3), got shape {blur_bgr.shape}")
    blur = np.ascontiguousarray(blur_bgr.transpose(2, 0, 1), dtype=np.float32) / np.float32(255.0)
    blur_batch = np.broadcast_to(blur, (len(times), *blur.shape)).copy()
    decoded = decode_exposure(packed, geometry, exposure, times, window=length, scale=spike_scale)
    assert decoded.windows is not None
    return blur_batch, decoded.windows, decoded
