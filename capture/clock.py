"""Spike frame index -> host time: an online least-squares clock model with jump detection.

A spike camera counts frames on its own crystal; the host stamps blocks when they arrive. The
two clocks differ by an offset, and the camera's rate differs from its nominal value by a drift
of tens of ppm, which at 20 kHz is one frame every few seconds: a fixed ``index / rate`` mapping
walks off the RGB exposures within a minute. So the mapping is fitted as data arrives:

    host_t_ns(index) = offset_ns + index * period_ns,   rate_hz = 1e9 / period_ns

by a (optionally forgetting) weighted least-squares line, updated in O(1) per pair with
Welford-style centred sums (raw sums of index**2 lose all precision after a few hours at 20 kHz).
A pair whose residual is far above the running spread is a clock jump (the host clock stepped,
or the stream restarted): it is counted and the fit starts again from that pair rather than
bending the line through it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["ClockModel", "ClockUpdate"]


@dataclass(frozen=True)
class ClockUpdate:
    """What one :meth:`ClockModel.update` saw: the residual of the pair against the fit before
    it (0 for the first pair) and whether it was taken as a clock jump."""

    residual_ns: float
    jump: bool


class ClockModel:
    """Online fit of offset, rate and drift mapping spike frame index to host time in ns.

    Args:
        nominal_rate_hz: the camera's nominal read-out rate; used until two pairs are in, and the
            reference of :attr:`drift_ppm`.
        memory: effective number of recent pairs the fit weighs (exponential forgetting, so a
            drift that changes with temperature is tracked); None weighs all pairs equally.
        jump_factor: a residual above ``jump_factor`` x the running spread (and above
            ``min_jump_ns``) is a clock jump.
        min_jump_ns: the smallest residual ever taken as a jump (default 4 frame periods), so
            that a very quiet clock does not call ordinary scheduling noise a jump.
        warmup: pairs needed before jumps are looked for (the spread is not known before).

    Examples:
        >>> clock = ClockModel(1000.0)  # 1 kHz nominal, the camera runs 100 ppm fast
        >>> for i in range(0, 5000, 100):
        ...     _ = clock.update(i, 7_000 + round(i * 1e6 / 1.0001))
        >>> round(clock.drift_ppm), round(clock.to_host_ns(10_000) - 7_000 - 10_000 * 1e6 / 1.0001)
        (100, 0)
    """

    def __init__(
        self,
        nominal_rate_hz: float,
        *,
        memory: float | None = None,
        jump_factor: float = 20.0,
        min_jump_ns: float | None = None,
        warmup: int = 8,
    ) -> None:
        if not (math.isfinite(nominal_rate_hz) and nominal_rate_hz > 0):
            raise ValueError(f"nominal_rate_hz: {nominal_rate_hz!r} must be a finite number > 0")
        if memory is not None and not memory > 1:
            raise ValueError(f"memory: {memory!r} must be > 1 pairs (or None for no forgetting)")
        if not jump_factor > 1:
            raise ValueError(f"jump_factor: {jump_factor!r} must be > 1")
        self.nominal_rate_hz = float(nominal_rate_hz)
        self.nominal_period_ns = 1e9 / self.nominal_rate_hz
        self.memory = memory
        self.jump_factor = float(jump_factor)
        self.min_jump_ns = 4 * self.nominal_period_ns if min_jump_ns is None else float(min_jump_ns)
        self.warmup = int(warmup)
        self.jumps = 0
        self.samples = 0
        self.last_jump: tuple[int, int] | None = None
        self._restart()

    def _restart(self) -> None:
        self._n = 0  # pairs in the current fit (since the start or the last jump)
        self._w = 0.0
        self._mx = self._my = 0.0  # weighted means of index and host time (relative to the anchor)
        self._cxx = self._cxy = self._cyy = 0.0
        self._anchor: tuple[int, int] | None = None
        self._spread_ns = 0.0  # running mean |residual|

    # -- fitting ---------------------------------------------------------------------------------

    def update(self, index: int, host_t_ns: int) -> ClockUpdate:
        """Add one pair (frame ``index`` was seen at host time ``host_t_ns``); returns its residual."""
        index, host_t_ns = int(index), int(host_t_ns)
        self.samples += 1
        if self._anchor is None:
            self._anchor = (index, host_t_ns)
            self._add(0.0, 0.0)
            return ClockUpdate(0.0, False)
        residual = host_t_ns - self.to_host_ns_float(index)
        if self._n >= self.warmup:
            limit = max(self.min_jump_ns, self.jump_factor * self._spread_ns)
            if abs(residual) > limit:
                self.jumps += 1
                self.last_jump = (index, host_t_ns)
                self._restart()
                self._anchor = (index, host_t_ns)
                self._add(0.0, 0.0)
                return ClockUpdate(residual, True)
        x, y = index - self._anchor[0], host_t_ns - self._anchor[1]
        self._add(float(x), float(y))
        # The spread follows the residuals with a short memory (it is a noise scale, not a fit).
        alpha = 1.0 / min(self._n, 32)
        self._spread_ns += alpha * (abs(residual) - self._spread_ns)
        return ClockUpdate(residual, False)

    def _add(self, x: float, y: float) -> None:
        lam = 1.0 if self.memory is None else 1.0 - 1.0 / self.memory
        self._w = lam * self._w + 1.0
        dx, dy = x - self._mx, y - self._my
        self._mx += dx / self._w
        self._my += dy / self._w
        self._cxx = lam * self._cxx + dx * (x - self._mx)
        self._cxy = lam * self._cxy + dx * (y - self._my)
        self._cyy = lam * self._cyy + dy * (y - self._my)
        self._n += 1

    # -- the fitted line -----------------------------------------------------------------------

    @property
    def fitted(self) -> bool:
        """At least one pair is in (offset known); the rate is fitted from two pairs on."""
        return self._anchor is not None

    @property
    def period_ns(self) -> float:
        """Fitted host ns per spike frame (nominal until the fit has two distinct indices)."""
        if self._n < 2 or self._cxx <= 0:
            return self.nominal_period_ns
        return self._cxy / self._cxx

    @property
    def rate_hz(self) -> float:
        """Fitted frames per host second."""
        return 1e9 / self.period_ns

    @property
    def drift_ppm(self) -> float:
        """How much faster than nominal the camera runs, in parts per million."""
        return (self.rate_hz / self.nominal_rate_hz - 1.0) * 1e6

    @property
    def offset_ns(self) -> float:
        """Host time of spike frame index 0 on the fitted line."""
        return self.to_host_ns_float(0)

    @property
    def residual_ns(self) -> float:
        """RMS distance of the current fit's pairs from the line (0 with fewer than 3 pairs)."""
        if self._n < 3 or self._w <= 0:
            return 0.0
        slope = self.period_ns
        sse = max(self._cyy - slope * self._cxy, 0.0)  # weighted sum of squared residuals
        return math.sqrt(sse / self._w)

    @property
    def spread_ns(self) -> float:
        """Running mean |residual| of new pairs against the fit (what jumps are measured against)."""
        return self._spread_ns

    def to_host_ns_float(self, index: float) -> float:
        """Host time of spike frame ``index`` (float ns); needs one pair."""
        if self._anchor is None:
            raise ValueError("clock model: no (index, host time) pair yet")
        x = index - self._anchor[0]
        return self._anchor[1] + self._my + (x - self._mx) * self.period_ns

    def to_host_ns(self, index: float) -> int:
        """Host time of spike frame ``index``, rounded to whole ns."""
        return round(self.to_host_ns_float(index))

    def to_index(self, host_ns: float) -> float:
        """The (fractional) spike frame index read out at ``host_ns``; the inverse of :meth:`to_host_ns`."""
        if self._anchor is None:
            raise ValueError("clock model: no (index, host time) pair yet")
        y = host_ns - self._anchor[1]
        return self._anchor[0] + self._mx + (y - self._my) / self.period_ns

    def report(self) -> dict[str, float | int]:
        """The sync-report fields: rate, drift, offset, residual, jumps, pairs."""
        return {
            "rate_hz": self.rate_hz,
            "drift_ppm": self.drift_ppm,
            "offset_ns": self.offset_ns if self.fitted else 0.0,
            "residual_ns": self.residual_ns,
            "clock_jumps": self.jumps,
            "clock_pairs": self.samples,
        }
