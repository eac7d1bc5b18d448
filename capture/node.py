"""The capture node: read a source, wrap each capture in a Bundle, publish it over ZeroMQ.

A thin loop (Holoscan's replayer operator; OpenEB's iterator with pacing as a wrapper) around one
pure function, :func:`bundle_from_capture`. The loop owns the socket, the pacing, the stop flag
and the end of the stream:

- **lossless** (replays and the simulator): wait for the consumer's credit *before* reading the
  next capture, so its ``capture.read`` stamp does not include time spent waiting for the engine;
  at the source's end wait until every bundle is acknowledged, then close with ``"finished"``.
- **latest** (live devices): publish and never block; at the end close with ``"finished"`` too.

SIGINT/SIGTERM (the :class:`StopFlag`) stop the loop within one bounded wait (pacing sleeps at
most one capture period) and close with ``"stopping"``.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import zmq

from spikereveal.capture.dat import SpikeGeometry, pack_frames
from spikereveal.capture.sources import Capture, Source, looped, open_source, paced, parse_rate
from spikereveal.stream.protocol import Bundle
from spikereveal.stream.transport import (
    LatestPublisher,
    LosslessSender,
    StopFlag,
    flush_patiently,
    open_sender,
)

log = logging.getLogger(__name__)

#: ``--policy`` values; "auto" picks lossless for recordings and the simulator, latest for live devices.
CAPTURE_POLICIES = ("auto", "lossless", "latest")


@dataclass(frozen=True)
class CaptureNodeConfig:
    """Everything the capture node needs; validated here, once.

    ``rate``: "realtime", "max" or a speed factor; ``count``: stop after that many captures
    (None: the whole source, forever with ``loop``); ``flip``: the source's spike files are stored
    upside down (``--no-flip`` for cameras that store rows top-down); ``log_every``: one info line
    per that many bundles; ``flush_idle_s``: at the end, give up waiting for acknowledgements
    after this long without progress.
    """

    source: str
    pub: str = "tcp://127.0.0.1:5555"
    rate: str | float = "realtime"
    loop: bool = False
    policy: str = "auto"
    count: int | None = None
    flip: bool = True
    calibration: Path | None = None
    allow_remote: bool = False
    node: str = "capture"
    log_every: int = 100
    flush_idle_s: float = 60.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "rate", parse_rate(self.rate))
        if self.policy not in CAPTURE_POLICIES:
            raise ValueError(f"policy: got {self.policy!r}, expected one of {', '.join(CAPTURE_POLICIES)}")
        if self.count is not None and self.count < 1:
            raise ValueError(f"count: got {self.count}, expected at least 1 capture")
        if self.log_every < 1:
            raise ValueError(f"log_every: got {self.log_every}, expected >= 1")
        if not self.node:
            raise ValueError("node: the node name must not be empty")


@dataclass(frozen=True)
class CaptureReport:
    """What one run of the node did. ``unacknowledged``: bundles the consumer never confirmed."""

    source_id: str
    policy: str
    final_state: str  # "finished" (the source ended) or "stopping" (a signal)
    captures_read: int
    bundles_sent: int
    dropped: int
    unacknowledged: int
    elapsed_s: float

    @property
    def rate_hz(self) -> float:
        """Bundles sent per second of the run."""
        return self.bundles_sent / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """0, or 1 when a finished replay could not deliver everything (the consumer went away)."""
        return 1 if self.final_state == "finished" and self.unacknowledged else 0

    def summary(self) -> str:
        """One line for the log: counts, time and rate."""
        return (
            f"{self.final_state}: {self.bundles_sent} bundles sent ({self.policy}), "
            f"{self.dropped} dropped, {self.unacknowledged} unacknowledged, "
            f"{self.elapsed_s:.1f} s, {self.rate_hz:.1f} bundles/s from {self.source_id}"
        )


def bundle_from_capture(
    capture: Capture, source_id: str, calibration_id: str = "", *, read_t_ns: int | None = None
) -> Bundle:
    """The Bundle for one capture: BGR blur, packed spikes, exposure and sensor times.

    Sample spikes are upright (any sensor flip was undone by the reader), so they are packed with
    ``flip=False`` and the geometry says so: ``unpack_frames(bundle.spikes_packed,
    bundle.geometry)`` gives ``capture.sample.spikes`` back. ``seq`` is the capture index.
    ``read_t_ns``: when the capture was read (``time.monotonic_ns()``), stamped as
    ``"capture.read"``; the loop adds ``"capture.send"`` just before sending.
    """
    sample = capture.sample
    h, w = sample.spike_size
    geometry = SpikeGeometry(h, w, flip=False)
    stamps = () if read_t_ns is None else (("capture.read", int(read_t_ns)),)
    return Bundle(
        seq=capture.index,
        source_id=source_id,
        blur=sample.blur,
        spikes_packed=pack_frames(sample.spikes, geometry),
        geometry=geometry,
        exposure=sample.exposure,
        rgb_t_ns=capture.rgb_t_ns,
        spike_t0_ns=capture.spike_t0_ns,
        spike_rate_hz=capture.spike_rate_hz,
        calibration_id=calibration_id,
        stamps=stamps,
    )


def resolve_policy(policy: str, source: Source) -> str:
    """``auto`` -> lossless for recordings and the simulator, latest for live devices.

    A source is live when it says so (``source.live``); every source so far is recorded or
    simulated, and replaying those must not lose a bundle.
    """
    if policy != "auto":
        return policy
    return "latest" if getattr(source, "live", False) else "lossless"


def _captures(
    config: CaptureNodeConfig, first: Source, calibration: object, current: list[Source], stop: StopFlag
) -> Iterator[Capture]:
    """Looped (``loop``), counted (``count``) and paced (``rate``) captures.

    ``current`` holds the source being read (to close it on a signal); ``first``, opened to check
    the URI, serves the first pass.
    """
    unused = [first]

    def open_again() -> Source:
        current[:] = [
            unused.pop() if unused else open_source(config.source, flip=config.flip, calibration=calibration)
        ]
        return current[0]

    current[:] = [first]
    captures: Iterator[Capture] = looped(open_again, config.loop)
    if config.count is not None:
        captures = itertools.islice(captures, config.count)
    return paced(captures, config.rate, wait=stop.wait)


def run_capture(
    config: CaptureNodeConfig, stop: StopFlag, *, ctx: zmq.Context | None = None
) -> CaptureReport:
    """Run the node until the source ends or ``stop`` is set; errors in the config raise at once.

    Opens the source (SourceError names a bad URI) and binds ``config.pub`` (EndpointError for a
    non-loopback address without ``allow_remote``) before anything is read.
    """
    calibration = None
    if config.calibration is not None:
        from spikereveal.calibration.model import load_calibration

        calibration = load_calibration(config.calibration)
    source = open_source(config.source, flip=config.flip, calibration=calibration)
    source_id = source.source_id
    policy = resolve_policy(config.policy, source)
    calibration_id = calibration.id if calibration is not None else ""
    current: list[Source] = []
    captures = _captures(config, source, calibration, current, stop)
    try:
        sender = open_sender(
            policy, config.pub, node=config.node, role="capture", allow_remote=config.allow_remote, ctx=ctx
        )
    except BaseException:
        source.close()
        raise
    log.info(
        "%s: %s -> %s (%s, rate %s%s%s)",
        config.node,
        source_id,
        sender.endpoint,
        policy,
        config.rate,
        ", loop" if config.loop else "",
        f", count {config.count}" if config.count else "",
    )
    read = sent = dropped = unacknowledged = 0
    ended = False
    t0 = time.monotonic()
    try:
        if isinstance(sender, LatestPublisher):
            log.info("%s: waiting for a subscriber on %s", config.node, sender.endpoint)
            sender.wait_for_subscriber(None, stop)
        while not stop.is_set():
            # Lossless: the credit first, so the bundle's stamps exclude waiting for the engine.
            if isinstance(sender, LosslessSender) and not sender.wait_for_credit(None, stop):
                break
            capture = next(captures, None)
            if capture is None:
                ended = True
                break
            t_read = time.monotonic_ns()
            read += 1
            if isinstance(sender, LatestPublisher):
                sender.service(0.0)  # (un)subscriptions and heartbeats
            if isinstance(sender, LatestPublisher) and sender.subscribers == 0:
                dropped += 1  # nobody listens (a consumer restarting): XPUB would discard it anyway
            elif sender.send(
                bundle_from_capture(capture, source_id, calibration_id, read_t_ns=t_read).stamped(
                    "capture.send"
                ),
                timeout_s=None,
                stop=stop,
            ):
                sent += 1
                if sent % config.log_every == 0:
                    rate = sent / (time.monotonic() - t0)
                    log.info("%s: %d bundles sent (%.1f/s), %d dropped", config.node, sent, rate, dropped)
            else:
                dropped += 1  # stopped while the consumer had no room
            sender.status_counters.update(captures_read=read, captures_dropped=dropped)
        # The end of the source: every bundle acknowledged before saying "finished".
        if (
            ended
            and not flush_patiently(sender, idle_timeout_s=config.flush_idle_s, stop=stop)
            and not stop.is_set()
        ):
            log.error(
                "%s: %d bundles were never acknowledged (no progress for %.0f s)",
                config.node,
                sender.in_flight if isinstance(sender, LosslessSender) else 0,
                config.flush_idle_s,
            )
        unacknowledged = sender.in_flight if isinstance(sender, LosslessSender) else 0
    finally:
        final_state = "finished" if ended and not stop.is_set() else "stopping"
        sender.close(final_state=final_state)
        current[0].close()  # a device must be released on a signal too (closing twice is harmless)
    return CaptureReport(
        source_id=source_id,
        policy=policy,
        final_state=final_state,
        captures_read=read,
        bundles_sent=sent,
        dropped=dropped,
        unacknowledged=unacknowledged,
        elapsed_s=time.monotonic() - t0,
    )
