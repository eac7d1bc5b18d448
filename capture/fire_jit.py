"""The live simulator's integrate-and-fire as one compiled pass (Numba), bit-identical to the NumPy form.

:func:`spikereveal.capture.live_sim.fire_interpolated` is the reference: per chunk of frames it
builds the closed-form charge ``C_i = (n_i A + W_i D) + c0`` as whole float32 arrays, floors them
and compares neighbours, about eight passes over (frames x pixels) memory. At 20 kHz a 640x480
webcam frame is ~667 spike frames of 160x120: that is most of the capture node's time on a small
CPU. Here the same float32 expression, in the same order, is evaluated pixel by pixel inside one
loop over frames, keeping only the previous floor per pixel, so the spikes are the reference's bit
for bit at a fraction of the memory traffic.

Numba is a dependency of the package; where it cannot be imported (an exotic platform)
:data:`AVAILABLE` is False and the simulator uses the NumPy form.
"""

from __future__ import annotations

import numpy as np

try:
    import numba
except ImportError:  # pragma: no cover - numba is a declared dependency
    numba = None

AVAILABLE = numba is not None

__all__ = ["AVAILABLE", "fire_interpolated_jit"]


def _kernel(
    base: np.ndarray,
    start: np.ndarray,
    delta: np.ndarray,
    counts: np.ndarray,
    sums: np.ndarray,
    out: np.ndarray,
) -> np.ndarray:
    """out[i, p] = floor(C_i[p]) != floor(C_{i-1}[p]); returns C_{n-1} - floor(C_{n-1}) (float32)."""
    n, pixels = out.shape
    previous = np.zeros(pixels, dtype=np.float32)
    for i in range(n):  # the inner loop has no branch, so it vectorizes
        ci, si = counts[i], sums[i]
        for p in range(pixels):
            f = np.floor((ci * start[p] + si * delta[p]) + base[p])
            out[i, p] = f != previous[p]
            previous[p] = f
    last = np.empty(pixels, dtype=np.float32)
    ci, si = counts[n - 1], sums[n - 1]
    for p in range(pixels):
        last[p] = ((ci * start[p] + si * delta[p]) + base[p]) - previous[p]
    return last


_compiled = numba.njit(cache=True, nogil=True)(_kernel) if AVAILABLE else None


def fire_interpolated_jit(
    charge: np.ndarray, start: np.ndarray, delta: np.ndarray, weights: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Same contract and the same bits as :func:`~spikereveal.capture.live_sim.fire_interpolated`.

    Args:
        charge: (h, w) float32 charge in [0, 1) threshold units before the first frame.
        start, delta: (h, w) float32 increment per frame at weight 0 and its change at weight 1.
        weights: (n,) interpolation weights of the frames, in order.

    Returns:
        (n, h, w) bool spikes and the (h, w) float32 charge after the last frame.
    """
    if _compiled is None:
        raise RuntimeError("numba is not installed: use live_sim.fire_interpolated")
    shape = charge.shape
    n = int(weights.shape[0])
    out = np.empty((n, *shape), dtype=np.bool_)
    if n == 0:
        return out, charge
    counts = np.arange(1, n + 1, dtype=np.float32)
    sums = np.cumsum(weights, dtype=np.float64).astype(np.float32)
    flat = out.reshape(n, -1)
    last = _compiled(
        np.ascontiguousarray(charge, dtype=np.float32).ravel(),
        np.ascontiguousarray(start, dtype=np.float32).ravel(),
        np.ascontiguousarray(delta, dtype=np.float32).ravel(),
        counts,
        sums,
        flat,
    )
    return out, last.reshape(shape)
