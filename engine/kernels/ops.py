"""The spike kernels as Python functions: checked inputs, one launch each, and their CPU references.

Each wrapper checks shapes, dtypes, devices and contiguity *before* anything is launched (a
mismatched size must never reach the GPU), then launches the kernel of spikes.cu on ``runner``:
``"shim"`` (the CPU emulation, NumPy arrays) or a CUDA runner with the same
``launch(name, grid, block, args, shared_bytes=0)`` (torch CUDA tensors). Outputs are written in
place into the caller's buffers (the inference input buffer, on the GPU) and returned.

Small host tables (the K output times) are passed to ``launch`` as NumPy int32 arrays; a CUDA
runner that has an ``upload(array)`` method is asked to put them on the device first.

The references are the project's own CPU functions (stream/spikes.py ``unpack_frames``,
engine/windows.py ``ldn_inputs``, engine/tfp.py, engine/sdm.py ``sdm_sequence``), never copies.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from spikereveal.engine.sdm import sdm_sequence
from spikereveal.engine.tfp import tfp, tfp_range, window_bounds
from spikereveal.engine.windows import LDN_SCALE, LDN_WINDOW, SDM_SHORT_WINDOW, ldn_inputs
from spikereveal.stream.errors import SpikeRevealError
from spikereveal.stream.spikes import SpikeGeometry, unpack_frames

__all__ = [
    "MAX_SHARED_BYTES",
    "KernelInputError",
    "sdm_upsample",
    "sdm_upsample_reference",
    "tfp_counts",
    "tfp_counts_reference",
    "tfp_counts_shared_bytes",
    "unpack_windows",
    "unpack_windows_reference",
]

#: Static shared-memory limit per block without opting in (the same on sm_80..sm_90).
MAX_SHARED_BYTES = 48 * 1024
#: GPU defaults: 128 threads, a warp along x so that each warp reads one row segment.
DEFAULT_BLOCK = (32, 4)


class KernelInputError(SpikeRevealError):
    """Inputs to a spike kernel that do not fit together (shape, dtype, device, contiguity, range)."""


def _resolve(runner: object) -> object:
    if isinstance(runner, str):
        if runner != "shim":
            raise KernelInputError(f"runner {runner!r}: expected 'shim' or a CUDA runner object")
        from spikereveal.engine.kernels.shim import default_runner

        return default_runner()
    if not callable(getattr(runner, "launch", None)):
        raise KernelInputError(f"runner {runner!r} has no launch(name, grid, block, args, shared_bytes)")
    return runner


def _on_host(runner: object) -> bool:
    return getattr(runner, "device", None) == "cpu"


def _describe(array: object) -> tuple[tuple[int, ...], str, bool, str, bool]:
    """(shape, dtype name, C-contiguous, device, writable) of a NumPy array or a torch tensor."""
    if isinstance(array, np.ndarray):
        return (
            array.shape,
            array.dtype.name,
            bool(array.flags.c_contiguous),
            "cpu",
            bool(array.flags.writeable),
        )
    if callable(getattr(array, "data_ptr", None)) and callable(getattr(array, "is_contiguous", None)):
        dtype = str(array.dtype).removeprefix("torch.")
        return tuple(array.shape), dtype, bool(array.is_contiguous()), str(array.device), True
    raise KernelInputError(f"{type(array).__name__} is not a NumPy array or a torch tensor")


def _check(
    name: str,
    array: object,
    shape: tuple[int, ...],
    dtypes: Sequence[str],
    runner: object,
    what: str,
    output: bool = False,
) -> str:
    """Raise KernelInputError unless ``array`` is what the kernel reads/writes; return its dtype name."""
    try:
        got_shape, dtype, contiguous, device, writable = _describe(array)
    except KernelInputError as exc:
        raise KernelInputError(f"{name}: {exc}") from None
    host = _on_host(runner)
    if host and not isinstance(array, np.ndarray):
        raise KernelInputError(f"{name}: the CPU shim needs a NumPy array, got a tensor on {device}")
    if not host and not device.startswith("cuda"):
        raise KernelInputError(
            f"{name}: on {device}, but the kernel runs on the GPU (expected a CUDA tensor)"
        )
    if got_shape != tuple(shape):
        raise KernelInputError(f"{name}: shape {got_shape} is not {what} = {tuple(shape)}")
    if dtype not in dtypes:
        raise KernelInputError(f"{name}: dtype {dtype} is not {' or '.join(dtypes)}")
    if not contiguous:
        raise KernelInputError(f"{name}: shape {got_shape} is not C-contiguous (the kernel indexes it flat)")
    if output and not writable:
        raise KernelInputError(f"{name}: array is read-only (the kernel writes into it)")
    return dtype


def _geometry(geometry: SpikeGeometry) -> SpikeGeometry:
    if not isinstance(geometry, SpikeGeometry):
        raise KernelInputError(f"geometry: {geometry!r} is not a SpikeGeometry")
    return geometry


def _packed_frames(packed: object, geometry: SpikeGeometry, runner: object) -> int:
    shape = _describe(packed)[0]
    if len(shape) != 2 or shape[0] < 1:
        raise KernelInputError(
            f"packed: shape {shape} is not (T, frame_bytes) with T >= 1 ({geometry.describe()} frames of "
            f"{geometry.frame_bytes} bytes)"
        )
    what = f"(T, frame_bytes) for {geometry.describe()} frames of {geometry.frame_bytes} bytes"
    _check("packed", packed, (shape[0], geometry.frame_bytes), ("uint8",), runner, what)
    return shape[0]


def _times(times: Sequence[int], window: int, n_frames: int, what: str) -> np.ndarray:
    values = np.asarray(times)
    if values.ndim != 1 or values.size == 0 or values.dtype.kind not in "iu":
        raise KernelInputError(f"times: {times!r} is not a non-empty sequence of integer frame indices")
    try:
        for t in values.tolist():
            window_bounds(int(t), window, n_frames)
    except ValueError as exc:
        raise KernelInputError(f"times ({what}): {exc}") from None
    return np.ascontiguousarray(values, dtype=np.int32)


def _table(runner: object, array: np.ndarray) -> object:
    upload = getattr(runner, "upload", None)
    return upload(array) if callable(upload) else array


def _grid(width: int, height: int, block: tuple[int, int], depth: int = 1) -> tuple[int, int, int]:
    bx, by = block
    return (width + bx - 1) // bx, (height + by - 1) // by, depth


def _block(block: Sequence[int]) -> tuple[int, int]:
    if len(block) != 2 or any(isinstance(v, bool) or int(v) < 1 for v in block) or block[0] * block[1] > 1024:
        raise KernelInputError(f"block {tuple(block)!r}: expected (bx, by), positive, at most 1024 threads")
    return int(block[0]), int(block[1])


def _geometry_args(geometry: SpikeGeometry) -> tuple[np.int32, ...]:
    g = geometry
    return (
        np.int32(g.height),
        np.int32(g.width),
        np.int32(g.row_bits),
        np.int32(g.frame_bytes),
        np.int32(1 if g.flip else 0),
    )


# --------------------------------------------------------------------------------------------
def unpack_windows(
    packed: object,
    geometry: SpikeGeometry,
    times: Sequence[int],
    out: object,
    *,
    runner: object = "shim",
    window: int = LDN_WINDOW,
    scale: float = 1.0,
    block: Sequence[int] = DEFAULT_BLOCK,
) -> object:
    """Packed frames (T, frame_bytes) uint8 -> ``out`` (K, window, h, w) float32 or float16.

    ``out[k, j]`` is frame ``times[k] - window//2 + j``, upright, tag bits dropped, ``scale``
    where a spike fired and 0 elsewhere (the density normalization of ``ldn_inputs``). Every
    window must lie inside the T frames.
    """
    runner = _resolve(runner)
    geometry = _geometry(geometry)
    block = _block(block)
    n_frames = _packed_frames(packed, geometry, runner)
    table = _times(times, window, n_frames, f"{window}-frame windows")
    k = table.size
    shape = (k, window, geometry.height, geometry.width)
    dtype = _check(
        "windows out", out, shape, ("float32", "float16"), runner, "(K, window, h, w)", output=True
    )
    name = "unpack_windows_f32" if dtype == "float32" else "unpack_windows_f16"
    args = (
        packed,
        out,
        _table(runner, table),
        *_geometry_args(geometry),
        np.int32(window),
        np.float32(scale),
    )
    runner.launch(name, _grid(geometry.width, geometry.height, block, k), (*block, 1), args)
    return out


def unpack_windows_reference(
    packed: np.ndarray,
    geometry: SpikeGeometry,
    times: Sequence[int],
    window: int = LDN_WINDOW,
    scale: float = 1.0,
    dtype: type = np.float32,
) -> np.ndarray:
    """What :func:`unpack_windows` must write: ``ldn_inputs``' windows (rounded to ``dtype``)."""
    spikes = unpack_frames(packed, geometry)
    blur = np.zeros((1, 1, 3), dtype=np.uint8)  # ldn_inputs batches the blur too; only the windows matter
    windows = ldn_inputs(blur, spikes, list(times), window, spike_scale=scale)[1]
    return windows.astype(dtype)


# --------------------------------------------------------------------------------------------
def tfp_counts_shared_bytes(n_times: int, block: Sequence[int]) -> int:
    """Dynamic shared memory tfp_counts needs: K staged times + K counters per thread (int32)."""
    threads = int(block[0]) * int(block[1])
    return 4 * n_times * (threads + 1)


def tfp_counts(
    packed: object,
    geometry: SpikeGeometry,
    exposure: tuple[int, int],
    times: Sequence[int],
    long_out: object,
    short_out: object,
    *,
    runner: object = "shim",
    short_window: int = SDM_SHORT_WINDOW,
    block: Sequence[int] = DEFAULT_BLOCK,
) -> tuple[object, object]:
    """Spike counts over the exposure -> ``long_out`` (h, w), over ``short_window`` frames at each time -> ``short_out`` (K, h, w).

    Both int32 or both float32 (exact integer counts). Dividing by the number of frames gives
    engine/tfp.py's TFP_long and TFP_short exactly. ``exposure`` is an inclusive frame range.
    """
    runner = _resolve(runner)
    geometry = _geometry(geometry)
    block = _block(block)
    n_frames = _packed_frames(packed, geometry, runner)
    start, stop = (int(v) for v in exposure)
    if not 0 <= start <= stop < n_frames:
        raise KernelInputError(
            f"exposure {start}:{stop} is outside the {n_frames} spike frames (0..{n_frames - 1})"
        )
    table = _times(times, short_window, n_frames, f"{short_window}-frame TFP_short")
    k = table.size
    h, w = geometry.height, geometry.width
    dtype = _check("long counts out", long_out, (h, w), ("int32", "float32"), runner, "(h, w)", output=True)
    _check("short counts out", short_out, (k, h, w), (dtype,), runner, "(K, h, w)", output=True)
    shared = tfp_counts_shared_bytes(k, block)
    if shared > MAX_SHARED_BYTES:
        raise KernelInputError(
            f"tfp_counts: K={k} times with a block of {block[0] * block[1]} threads needs {shared} bytes of "
            f"shared memory, more than {MAX_SHARED_BYTES}: use a smaller block"
        )
    half = short_window // 2
    first, last = min(start, int(table.min()) - half), max(stop, int(table.max()) + half)
    name = "tfp_counts_i32" if dtype == "int32" else "tfp_counts_f32"
    args = (
        packed,
        long_out,
        short_out,
        _table(runner, table),
        *_geometry_args(geometry),
        np.int32(start),
        np.int32(stop),
        np.int32(k),
        np.int32(short_window),
        np.int32(first),
        np.int32(last),
    )
    runner.launch(name, _grid(w, h, block), (*block, 1), args, shared)
    return long_out, short_out


def tfp_counts_reference(
    packed: np.ndarray,
    geometry: SpikeGeometry,
    exposure: tuple[int, int],
    times: Sequence[int],
    short_window: int = SDM_SHORT_WINDOW,
) -> tuple[np.ndarray, np.ndarray]:
    """TFP_long (h, w) and TFP_short (K, h, w) float32 from engine/tfp.py: the kernel's counts / n."""
    spikes = unpack_frames(packed, geometry)
    long = tfp_range(spikes, exposure[0], exposure[1])
    short = np.stack([tfp(spikes, int(t), short_window) for t in times])
    return long, short


# --------------------------------------------------------------------------------------------
def sdm_upsample(
    long_counts: object,
    short_counts: object,
    blur_bgr: object,
    out: object,
    *,
    exposure_frames: int,
    short_window: int = SDM_SHORT_WINDOW,
    runner: object = "shim",
    block: Sequence[int] = DEFAULT_BLOCK,
) -> object:
    """SDM from tfp_counts' int32 counts and the uint8 BGR blur (H, W, 3) -> ``out`` (K, 3, H, W) float32.

    ``L = blur/255 * up(short/short_window) / up(long/exposure_frames)``, 0 where the upsampled
    TFP_long is 0; up() is OpenCV's bilinear x4 (engine/sdm.py), so H, W = 4h, 4w exactly.
    """
    runner = _resolve(runner)
    block = _block(block)
    shape = _describe(long_counts)[0]
    if len(shape) != 2:
        raise KernelInputError(f"long counts: shape {shape} is not (h, w)")
    h, w = shape
    _check("long counts", long_counts, (h, w), ("int32",), runner, "(h, w)")
    k_shape = _describe(short_counts)[0]
    k = k_shape[0] if len(k_shape) == 3 and k_shape[0] >= 1 else 0
    _check(
        "short counts",
        short_counts,
        (max(k, 1), h, w),
        ("int32",),
        runner,
        "(K, h, w) at the long counts' size",
    )
    size = (h * LDN_SCALE, w * LDN_SCALE, 3)
    _check("blur", blur_bgr, size, ("uint8",), runner, f"(H, W, 3) = {LDN_SCALE}x the spike size")
    _check("sdm out", out, (k, 3, size[0], size[1]), ("float32",), runner, "(K, 3, H, W)", output=True)
    for label, n in (("exposure_frames", exposure_frames), ("short_window", short_window)):
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            raise KernelInputError(f"{label}: {n!r} is not a positive number of frames")
    args = (long_counts, short_counts, blur_bgr, out, np.int32(h), np.int32(w), np.int32(k))
    args += (np.float32(exposure_frames), np.float32(short_window))
    runner.launch("sdm_upsample", _grid(size[1], size[0], block), (*block, 1), args)
    return out


def sdm_upsample_reference(
    blur_bgr: np.ndarray,
    packed: np.ndarray,
    geometry: SpikeGeometry,
    exposure: tuple[int, int],
    times: Sequence[int],
    short_window: int = SDM_SHORT_WINDOW,
) -> np.ndarray:
    """engine/sdm.py's ``sdm_sequence`` as (K, 3, H, W) float32.

    The kernel matches it bit for bit for h, w >= 2 with OpenCV 4.14 / 5.0 on x86 CPUs with FMA
    (OpenCV's float bilinear is ``a + (b - a) * f`` fused); see spikes.cu.
    """
    spikes = unpack_frames(packed, geometry)
    frames = sdm_sequence(blur_bgr, spikes, exposure, list(times), short_window)
    return np.ascontiguousarray(frames.transpose(0, 3, 1, 2))
