"""How well a rig's two sensors are in step: one frozen :class:`SyncReport` per exposure.

A rig pairs an RGB camera with a spike camera on different clocks and transports. Whether a
deblurred frame can be trusted depends on things no single frame shows: how far the spike clock's
fit wanders (``offset_residual_ns``), frames the camera or the spike transport dropped, clock jumps,
and exposures the rig refused to cut (each with a reason). The report travels in every bundle
(``Bundle.sync``, a flat name -> number mapping: :meth:`SyncReport.to_dict`) and ends in the
latency summary, so a bad run is visible where its numbers are read.

Every live source (the rig, the ``livesim:`` simulator) keeps its counts in one :class:`SyncTally`
(exposures delivered, RGB frames dropped, exposures skipped by reason) and adds what its own
sensors know (clock fit, transport faults) when it makes a report, so the counting rules are
written once.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields
from types import MappingProxyType
from typing import Any

from spikereveal.stream.errors import SpikeRevealError

__all__ = ["SKIP_REASONS", "SyncError", "SyncReport", "SyncTally", "worth_logging"]

#: Why an exposure was not cut (never deblurred with the wrong spikes):
#: ``no_coverage``: the spike frames of its window did not arrive in time (or the stream ended),
#: or no spike frame lies inside it (an exposure shorter than one spike frame);
#: ``lost_block``: spike frames inside its window were lost by the producer or the transport;
#: ``clock_jump``: the spike clock jumped inside its window, or the fit has not settled since;
#: ``evicted``: its window's frames had already left the ring buffer (the RGB side lagged too far).
SKIP_REASONS = ("no_coverage", "lost_block", "clock_jump", "evicted")

_PREFIX = "skipped."


class SyncError(SpikeRevealError):
    """A sync report mapping that names an unknown field or holds a bad value."""


@dataclass(frozen=True)
class SyncReport:
    """Sync quality of a rig at one exposure (running totals since the rig opened).

    Attributes:
        exposures: exposures cut and delivered so far (this one included).
        offset_residual_ns: RMS residual of the spike clock fit (index -> host time), ns.
        rate_hz: fitted spike frames per host second; ``drift_ppm``: its deviation from nominal.
        dropped_frames: RGB frames the camera skipped (gaps in its frame numbers).
        missing_frames: spike frames lost before arriving; ``lost_blocks``: how many losses.
        clock_jumps: jumps of the spike clock (host clock stepped, stream restarted).
        stalls, disconnects, partial_frames: spike transport faults so far.
        skipped: reason -> exposures not cut for it (see :data:`SKIP_REASONS`).
        coverage_wait_ns: how long this exposure waited for its last spike frame.
    """

    exposures: int = 0
    offset_residual_ns: float = 0.0
    rate_hz: float = 0.0
    drift_ppm: float = 0.0
    dropped_frames: int = 0
    missing_frames: int = 0
    lost_blocks: int = 0
    clock_jumps: int = 0
    stalls: int = 0
    disconnects: int = 0
    partial_frames: int = 0
    skipped: Mapping[str, int] = field(default_factory=dict)
    coverage_wait_ns: int = 0

    def __post_init__(self) -> None:
        for f in fields(self):
            if f.name == "skipped":
                continue
            value = getattr(self, f.name)
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise SyncError(f"sync report {f.name}: {value!r} is not a number")
            if f.type == "int" and (int(value) != value or value < 0):
                raise SyncError(f"sync report {f.name}: {value!r} must be a whole number >= 0")
            object.__setattr__(self, f.name, int(value) if f.type == "int" else float(value))
        skipped: dict[str, int] = {}
        for reason, count in dict(self.skipped).items():
            if reason not in SKIP_REASONS:
                raise SyncError(
                    f"sync report skipped: unknown reason {reason!r}; known: {', '.join(SKIP_REASONS)}"
                )
            if isinstance(count, bool) or not isinstance(count, int) or count < 0:
                raise SyncError(f"sync report skipped[{reason!r}]: {count!r} must be a whole number >= 0")
            skipped[reason] = int(count)
        object.__setattr__(self, "skipped", MappingProxyType({r: skipped.get(r, 0) for r in SKIP_REASONS}))

    @property
    def skipped_total(self) -> int:
        """Exposures not cut, whatever the reason."""
        return sum(self.skipped.values())

    def to_dict(self) -> dict[str, int | float]:
        """A flat name -> number mapping (``skipped.<reason>`` per reason), as ``Bundle.sync`` carries.

        Examples:
            >>> report = SyncReport(exposures=3, missing_frames=40, skipped={"lost_block": 1})
            >>> d = report.to_dict()
            >>> d["missing_frames"], d["skipped.lost_block"], d["skipped.no_coverage"]
            (40, 1, 0)
            >>> SyncReport.from_dict(d) == report
            True
        """
        out: dict[str, int | float] = {}
        for f in fields(self):
            if f.name == "skipped":
                out.update({_PREFIX + r: n for r, n in self.skipped.items()})
            else:
                out[f.name] = getattr(self, f.name)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "sync report") -> SyncReport:
        """The report back from :meth:`to_dict`'s mapping (e.g. a received ``Bundle.sync``).

        Keys this version does not know are an error naming them (a newer sender, or a typo).
        """
        names = {f.name for f in fields(cls)} - {"skipped"}
        kwargs: dict[str, Any] = {}
        skipped: dict[str, Any] = {}
        for key, value in dict(data).items():
            if isinstance(key, str) and key.startswith(_PREFIX):
                skipped[key[len(_PREFIX) :]] = value
            elif key in names:
                kwargs[key] = value
            else:
                raise SyncError(
                    f"{source}: unknown key {key!r}; known: {', '.join(sorted(names))}, skipped.<reason>"
                )
        try:
            return cls(**kwargs, skipped=skipped)
        except SyncError as exc:
            raise SyncError(f"{source}: {exc}") from None

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SyncReport):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    def __hash__(self) -> int:
        return hash(tuple(self.to_dict().items()))


class SyncTally:
    """The running counts a live source keeps per RGB frame, turned into a :class:`SyncReport`.

    Call :meth:`frame` for every RGB frame in camera order (a gap in its numbers is dropped
    frames), then either :meth:`skip` (with a reason) or :meth:`deliver`.

    Examples:
        >>> tally = SyncTally()
        >>> for index in (0, 1, 4):
        ...     tally.frame(index)
        >>> tally.skip("lost_block"), tally.deliver(), tally.deliver()
        (1, 1, 2)
        >>> report = tally.report(rate_hz=20000.0)
        >>> report.exposures, report.dropped_frames, report.skipped["lost_block"]
        (2, 2, 1)
    """

    def __init__(self) -> None:
        self.exposures = 0
        self.dropped_frames = 0
        self.skipped: dict[str, int] = dict.fromkeys(SKIP_REASONS, 0)
        self._expected_index: int | None = None

    def frame(self, index: int) -> None:
        """One RGB frame arrived with the camera's ``index``; frames it skipped count as dropped."""
        if self._expected_index is not None and index > self._expected_index:
            self.dropped_frames += index - self._expected_index
        self._expected_index = int(index) + 1

    def skip(self, reason: str) -> int:
        """One exposure not cut for ``reason`` (one of :data:`SKIP_REASONS`); returns its count so far."""
        if reason not in self.skipped:
            raise SyncError(f"skip reason {reason!r} is not one of {', '.join(SKIP_REASONS)}")
        self.skipped[reason] += 1
        return self.skipped[reason]

    def deliver(self) -> int:
        """One exposure cut and delivered; returns how many so far."""
        self.exposures += 1
        return self.exposures

    def report(self, **sensor: Any) -> SyncReport:
        """The report now: these counts plus ``sensor``'s fields (clock fit, transport faults)."""
        return SyncReport(
            exposures=self.exposures,
            dropped_frames=self.dropped_frames,
            skipped=dict(self.skipped),
            **sensor,
        )


def worth_logging(count: int) -> bool:
    """Log the 1st, 10th, 100th and every 1000th occurrence: a fault seen, never a flood."""
    return count in (1, 10, 100) or count % 1000 == 0
