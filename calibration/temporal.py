"""Temporal calibration: the offset between the RGB clock and the spike clock, from brightness changes.

Each RGB frame's mean brightness is the scene's light averaged over its exposure; the spike
stream's firing rate is the same light on the other clock. For a candidate offset d (spike clock =
RGB clock + d) every exposure ``[start, end]`` maps to ``[start + d, end + d]`` on the spike clock,
where the spikes' mean firing rate over that interval is read off their cumulative count (linear
inside a frame, so sub-frame offsets are exact). The offset is the d that makes the two series
correlate best: a coarse scan of one spike frame per step, then a fine scan around the peak and a
parabola through its top. A bootstrap over the RGB frames gives the spread.

A scene that barely changes, or changes periodically (a pure flicker repeats every period), has no
single best d; that is an error that says so, never a number. Spike frame i is read out at
``i / rate`` and integrates ``((i-1)/rate, i/rate]`` (seconds on the spike clock).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from spikereveal.calibration.model import CalibrationError

# Below this relative spread of the RGB brightness (and of the spike rate) nothing can be matched.
MIN_RELATIVE_STD = 2e-3
# The best correlation must be at least this, and beat every other peak by MIN_PEAK_MARGIN.
MIN_PEAK_CORRELATION = 0.5
MIN_PEAK_MARGIN = 0.1
MIN_FRAMES = 8
# The coarse scan never takes more candidates than this (a long stream scans in bigger steps).
MAX_COARSE_CANDIDATES = 200_000
_FINE_STEPS_PER_COARSE = 16
_BOOTSTRAP = 200


@dataclass(frozen=True)
class TemporalFit:
    """The estimated clock offset and how sure it is.

    ``offset_ns``/``std_ns``: spike clock = RGB clock + offset. ``peak_correlation``: the
    correlation at the offset; ``runner_up``: the best correlation of any other peak.
    ``offsets_ns``/``correlation``: the coarse scan (NaN where too few frames were covered).
    """

    offset_ns: float
    std_ns: float
    peak_correlation: float
    runner_up: float
    frames_used: int
    offsets_ns: np.ndarray
    correlation: np.ndarray


def frame_means(frames: np.ndarray) -> np.ndarray:
    """Mean of every frame of a (T, H, W[, C]) stack, float64 (T,): spikes per pixel, or brightness."""
    frames = np.asarray(frames)
    return frames.reshape(frames.shape[0], -1).mean(axis=1, dtype=np.float64)


def check_exposures(exposures_ns: np.ndarray, source: str = "exposures") -> np.ndarray:
    """(N, 2) int64 ``start_ns, end_ns`` in order, each end after its start; a clear error otherwise."""
    exp = np.asarray(exposures_ns)
    if exp.ndim != 2 or exp.shape[1] != 2 or len(exp) == 0:
        raise CalibrationError(f"{source}: expected rows of start_ns,end_ns, got shape {exp.shape}")
    exp = exp.astype(np.int64)
    bad = np.flatnonzero(exp[:, 1] <= exp[:, 0])
    if bad.size:
        i = int(bad[0])
        raise CalibrationError(
            f"{source}: row {i + 1}: exposure ends at {exp[i, 1]} ns, not after its start {exp[i, 0]} ns"
        )
    back = np.flatnonzero(np.diff(exp[:, 0]) < 0)
    if back.size:
        i = int(back[0]) + 1
        raise CalibrationError(
            f"{source}: row {i + 1}: exposure starts before the previous one (not in order)"
        )
    return exp


def window_rates(spike_means: np.ndarray, x0: np.ndarray, x1: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean spikes per frame over spike-clock intervals ``[x0, x1]`` given in frame units (t * rate).

    Frame k integrates ``(k-1, k]``, so the cumulative count is linear between knots at k = -1..T-1.
    Returns (rates, covered) of the broadcast shape of x0/x1; uncovered intervals give NaN.
    """
    n = len(spike_means)
    cum = np.concatenate([[0.0], np.cumsum(spike_means, dtype=np.float64)])
    knots = np.arange(-1, n, dtype=np.float64)
    covered = (x0 >= -1.0) & (x1 <= n - 1.0)
    rates = (np.interp(x1, knots, cum) - np.interp(x0, knots, cum)) / (x1 - x0)
    return np.where(covered, rates, np.nan), covered


def _masked_corr(x: np.ndarray, y: np.ndarray, w: np.ndarray) -> np.ndarray:
    """Weighted Pearson correlation of x (N,) with each row of y (M, N), weights w (M, N) >= 0."""
    y = np.where(w > 0, y, 0.0)
    sw = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (w * x).sum(axis=1) / sw
        my = (w * y).sum(axis=1) / sw
        dx = x[None, :] - mx[:, None]
        dy = y - my[:, None]
        cov = (w * dx * dy).sum(axis=1)
        vx = (w * dx * dx).sum(axis=1)
        vy = (w * dy * dy).sum(axis=1)
        corr = cov / np.sqrt(vx * vy)
    return np.where((vx > 0) & (vy > 1e-12 * np.maximum(my**2, 1e-12)), corr, np.nan)


def _scan(
    brightness: np.ndarray, spike_means: np.ndarray, x0: np.ndarray, x1: np.ndarray, d_frames: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """Correlation at each candidate offset (frame units), in chunks; also the frames covered."""
    out = np.full(len(d_frames), np.nan)
    used = np.zeros(len(d_frames), dtype=np.int64)
    chunk = max(1, 2_000_000 // max(len(brightness), 1))
    for s in range(0, len(d_frames), chunk):
        d = d_frames[s : s + chunk, None]
        rates, covered = window_rates(spike_means, x0[None, :] + d, x1[None, :] + d)
        w = covered.astype(np.float64)
        used[s : s + chunk] = covered.sum(axis=1)
        corr = _masked_corr(brightness, rates, w)
        out[s : s + chunk] = np.where(used[s : s + chunk] >= MIN_FRAMES, corr, np.nan)
    return out, used


def _parabola_peak(values: np.ndarray, i: int) -> float:
    """Sub-step position of the maximum at index i from a parabola through i-1, i, i+1."""
    if i <= 0 or i >= len(values) - 1 or not np.all(np.isfinite(values[i - 1 : i + 2])):
        return float(i)
    a, b, c = values[i - 1], values[i], values[i + 1]
    den = a - 2 * b + c
    return float(i) if den >= 0 else float(i + 0.5 * (a - c) / den)


def estimate_offset(
    brightness: np.ndarray,
    exposures_ns: np.ndarray,
    spike_means: np.ndarray,
    spike_rate_hz: float,
    *,
    max_offset_ns: float | None = None,
    seed: int = 0,
) -> TemporalFit:
    """Clock offset (spike clock = RGB clock + offset) from brightness per RGB frame and spikes per frame.

    ``brightness``: (N,) mean brightness of each RGB frame (any linear-ish units). ``exposures_ns``:
    (N, 2) start and end of each exposure on the RGB clock. ``spike_means``: (T,) mean spikes per
    pixel of each spike frame (frame i read out at i / rate on the spike clock).
    ``max_offset_ns``: search only ``|offset| <= max_offset_ns`` (default: every offset at which at
    least 8 exposures lie inside the spike stream).
    """
    brightness = np.asarray(brightness, dtype=np.float64).ravel()
    exp = check_exposures(exposures_ns)
    spikes = np.asarray(spike_means, dtype=np.float64).ravel()
    if len(brightness) != len(exp):
        raise CalibrationError(
            f"exposures: {len(exp)} rows for {len(brightness)} RGB frames (one row per frame expected)"
        )
    if not (np.isfinite(spike_rate_hz) and spike_rate_hz > 0):
        raise CalibrationError(f"spike_rate_hz: {spike_rate_hz!r} must be a finite number > 0")
    if len(brightness) < MIN_FRAMES:
        raise CalibrationError(f"RGB frames: {len(brightness)} frames; need at least {MIN_FRAMES} to match")
    if len(spikes) < 2:
        raise CalibrationError(f"spikes: {len(spikes)} frames; need a stream covering the exposures")
    _check_varies(brightness, "RGB brightness")
    _check_varies(spikes, "spike rate")

    per_ns = spike_rate_hz / 1e9
    # Frame units relative to the first exposure keep the float64 arithmetic exact to far below a ns.
    origin = int(exp[0, 0])
    x0 = (exp[:, 0] - origin) * per_ns
    x1 = (exp[:, 1] - origin) * per_ns
    # Offsets in frames, relative to "first exposure at spike time origin * per_ns".
    base = origin * per_ns
    lo, hi = -1.0 - x1.max() - base, len(spikes) - 1.0 - x0.min() - base
    if max_offset_ns is not None:
        lo, hi = max(lo, -max_offset_ns * per_ns), min(hi, max_offset_ns * per_ns)
    if hi <= lo:
        raise CalibrationError(
            "spikes: the spike stream and the RGB exposures cannot overlap within the searched offsets"
        )
    step = max(1.0, (hi - lo) / MAX_COARSE_CANDIDATES)
    d = np.arange(lo, hi + step, step)
    corr, used = _scan(brightness, spikes, x0 + base, x1 + base, d)
    if not np.any(np.isfinite(corr)):
        raise CalibrationError(
            f"spikes: no offset puts {MIN_FRAMES} or more RGB exposures inside the spike stream "
            f"({len(spikes)} frames at {spike_rate_hz:g} Hz); record spikes across the RGB frames"
        )
    best = int(np.nanargmax(corr))
    peak, runner_up = float(corr[best]), _runner_up(corr, best)
    if peak < MIN_PEAK_CORRELATION:
        raise CalibrationError(
            f"brightness: RGB brightness and spike rate correlate at most {peak:.2f} (need "
            f"{MIN_PEAK_CORRELATION}); the scene does not change enough to tell the offset"
        )
    if peak - runner_up < MIN_PEAK_MARGIN:
        raise CalibrationError(
            f"brightness: the correlation peak is not distinct ({peak:.3f} vs {runner_up:.3f} at another "
            "offset); a periodic flicker repeats itself, use an irregular blink or motion"
        )

    fine = d[best] + np.linspace(-2 * step, 2 * step, 4 * _FINE_STEPS_PER_COARSE + 1)
    rates, covered = window_rates(
        spikes, x0[None, :] + base + fine[:, None], x1[None, :] + base + fine[:, None]
    )
    w = covered.astype(np.float64)
    fine_corr = _masked_corr(brightness, rates, w)
    fine_step = fine[1] - fine[0]
    i = int(np.nanargmax(fine_corr))
    offset_frames = fine[0] + _parabola_peak(fine_corr, i) * fine_step

    rng = np.random.default_rng(seed)
    counts = rng.multinomial(
        len(brightness), np.full(len(brightness), 1.0 / len(brightness)), size=_BOOTSTRAP
    )
    boots = []
    for c in counts:
        bc = _masked_corr(brightness, rates, w * c[None, :])
        if np.any(np.isfinite(bc)):
            j = int(np.nanargmax(bc))
            boots.append(fine[0] + _parabola_peak(bc, j) * fine_step)
    std_frames = float(np.std(boots)) if len(boots) > 1 else float(step)
    to_ns = 1.0 / per_ns
    return TemporalFit(
        offset_ns=float(offset_frames * to_ns),
        std_ns=std_frames * to_ns,
        peak_correlation=peak,
        runner_up=runner_up,
        frames_used=int(used[best]),
        offsets_ns=d * to_ns,
        correlation=corr,
    )


def _check_varies(values: np.ndarray, name: str) -> None:
    mean = float(np.mean(np.abs(values)))
    std = float(np.std(values))
    if not np.all(np.isfinite(values)):
        raise CalibrationError(f"{name}: holds NaN or infinite values")
    if mean == 0 or std / mean < MIN_RELATIVE_STD:
        raise CalibrationError(
            f"{name}: does not change enough across frames (relative spread {std / mean if mean else 0:.2g}, "
            f"need {MIN_RELATIVE_STD}); film a blinking light or a flicker to tell the clock offset"
        )


def _runner_up(corr: np.ndarray, best: int) -> float:
    """The best correlation outside the main peak's lobe (where the curve falls to its midpoint)."""
    finite = np.isfinite(corr)
    floor = float(np.nanmin(corr))
    mid = 0.5 * (corr[best] + floor)
    left = best
    while left > 0 and finite[left - 1] and corr[left - 1] >= mid:
        left -= 1
    right = best
    while right < len(corr) - 1 and finite[right + 1] and corr[right + 1] >= mid:
        right += 1
    # Leave the lobe's own descent out: walk on down to the first local minimum each side.
    while left > 0 and finite[left - 1] and corr[left - 1] <= corr[left]:
        left -= 1
    while right < len(corr) - 1 and finite[right + 1] and corr[right + 1] <= corr[right]:
        right += 1
    outside = np.concatenate([corr[:left], corr[right + 1 :]])
    outside = outside[np.isfinite(outside)]
    return float(outside.max()) if outside.size else floor
