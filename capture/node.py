"""The capture node: read a source, wrap each capture in a Bundle, publish it over ZeroMQ.

A thin loop (Holoscan's replayer operator; OpenEB's iterator with pacing as a wrapper) around one
pure function, :func:`bundle_from_capture`. The loop owns the socket, the pacing, the stop flag
and the end of the stream:

- **lossless** (replays and the simulator): wait for the consumer's credit *before* reading the
  next capture, so its ``capture.read`` stamp does not include time spent waiting for the engine;
  at the source's end wait until every bundle is acknowledged, then close with ``"finished"``.
- **latest** (live devices): wait for the first subscriber, then publish and never block (a
  bundle sent while nobody listens is dropped and counted); at the end close with ``"finished"``.

Both go through the one :class:`~spikereveal.stream.endpoint.Sender` interface. While no consumer
is there the node says so every few seconds; a paced replay (``rate`` realtime or a factor) that
reads and sends slower than the source's rate says so once (``stream.nodes.RealTimeCheck``).

SIGINT/SIGTERM (the :class:`StopFlag`) stop the loop within one bounded wait (pacing sleeps at
most one capture period) and close with ``"stopping"``.

Every bundle names its calibration (``Bundle.calibration_id``, :func:`resolve_calibration_id`): the
node's ``calibration`` file's id, else the source's own (a rig applies the calibration of its rig
file: ``RigSource.calibration_id``), else "". A node file and a source calibration that differ
are an error at start, before a socket is bound: the engine would refuse every bundle.
"""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import zmq

from spikereveal.calibration.model import Calibration, CalibrationError
from spikereveal.capture.sources import Capture, Source, looped, open_source, paced, parse_rate, rate_factor
from spikereveal.stream.nodes import NodeReport, RealTimeCheck, WaitNotice, wait_noting
from spikereveal.stream.protocol import Bundle
from spikereveal.stream.settings import SettingError, setting, validate
from spikereveal.stream.spikes import SpikeGeometry, pack_frames
from spikereveal.stream.transport import Sender, StopFlag, open_sender

log = logging.getLogger(__name__)

#: ``--policy`` values; "auto" picks lossless for recordings and the simulator, latest for live devices.
CAPTURE_POLICIES = ("auto", "lossless", "latest")
#: Longest wait for a pool's engines to join before the first bundle (then: stream to those there).
JOIN_WAIT_S = 60.0


@dataclass(frozen=True)
class CaptureNodeConfig:
    """Everything the capture node needs; validated here, once.

    ``rate``: "realtime", "max" or a speed factor; ``count``: stop after that many captures
    (None: the whole source, forever with ``loop``); ``flip``: the source's spike files are stored
    upside down (``--no-flip`` for cameras that store rows top-down); ``log_every``: one info line
    per that many bundles; ``flush_idle_s``: at the end, give up waiting for acknowledgements
    after this long without progress.
    """

    source: str = setting(
        help="Source URI: sample, sim:pan?size=64x96&count=10, gopro:PATH[?scene=S], rsb:PATH, or a path."
    )
    pub: str = setting(
        "tcp://127.0.0.1:5555",
        help="Endpoint to bind and publish bundles on (tcp://HOST:PORT, ipc://PATH).",
        yaml=False,  # wiring: ``run`` picks the endpoints
    )
    rate: str | float = setting(
        "realtime",
        help="Replay speed: realtime, max (no waiting) or a factor (0.5 = half speed).",
        parse=parse_rate,
        metavar="realtime|max|FACTOR",
    )
    loop: bool = setting(False, help="Start the source again at its end (sequence numbers keep rising).")
    policy: str = setting(
        "auto",
        help="lossless (every bundle, backpressure), latest (live: drop stale), auto: lossless for recordings.",
        choices=CAPTURE_POLICIES,
        yaml=False,  # ``run`` sets one policy for every node
    )
    count: int | None = setting(None, help="Stop after N captures.", min=1)
    flip: bool = setting(True, help="Spike files are stored upright (some cameras).", flag="--no-flip")
    calibration: Path | None = setting(
        None,
        help="Spike/RGB calibration file (YAML or JSON); its id travels with every bundle "
        "(default: the source's own, e.g. a rig file's).",
    )
    allow_remote: bool = setting(
        False, help="Allow binding beyond loopback (other hosts can connect).", yaml=False
    )
    node: str = setting("capture", help="Node name in statuses and logs.", yaml=False)
    # A short stream can end before a slow-starting engine has joined; that engine would then never
    # hear the end, and a display waiting for every engine's "finished" would wait for ever.
    engines: int = setting(
        1,
        help="Engines to wait for (lossless) before the first bundle; `run --engines N` sets it.",
        min=1,
        yaml=False,
    )
    log_every: int = setting(100, help="Info line every N bundles.", min=1)
    flush_idle_s: float = setting(
        60.0, help="At the end, give up waiting for acknowledgements after this long idle.", min=0, cli=False
    )

    def __post_init__(self) -> None:
        validate(self)  # types, choices and ranges as declared above; ``rate`` parsed
        if not self.node:
            raise SettingError("node", "the node name must not be empty")


@dataclass(frozen=True)
class CaptureReport(NodeReport):
    """What one run of the node did. ``unacknowledged``: bundles the consumer never confirmed;
    ``rate_hz``: bundles sent per second of the run."""

    source_id: str = ""
    captures_read: int = 0
    bundles_sent: int = 0
    dropped: int = 0

    @property
    def items_out(self) -> int:
        return self.bundles_sent

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
        sync={} if capture.sync is None else capture.sync.to_dict(),
    )


def resolve_calibration_id(
    calibration: Calibration | None, source: Source, calibration_path: object = None
) -> str:
    """The calibration id every bundle of ``source`` carries ("" = none).

    The node's own ``calibration`` (read from ``calibration_path``) where given, else the one the
    source applies itself (``source.calibration_id``: a rig's calibration, "" when it has none;
    sources without the attribute apply none). Both given with different ids: CalibrationError.

    Examples:
        >>> from spikereveal.capture.sources import open_source
        >>> resolve_calibration_id(Calibration(id="rig-1"), open_source("sim:pan?size=16x24&count=1"))
        'rig-1'
    """
    own = getattr(source, "calibration_id", "") or ""
    if calibration is None:
        return own
    if own and own != calibration.id:
        where = "" if calibration_path is None else f"{calibration_path} "
        raise CalibrationError(
            f"calibration: {where}has id {calibration.id!r} but the source {source.source_id} applies "
            f"calibration {own!r}; give one calibration (the rig file's, or make the ids the same)"
        )
    return calibration.id


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


class CaptureNode:
    """One capture node; :meth:`run` reads and sends until the source ends or ``stop`` is set.

    Opens the source (SourceError names a bad URI) and binds ``config.pub`` (EndpointError for a
    non-loopback address without ``allow_remote``) in :meth:`run`, before anything is read.
    """

    def __init__(self, config: CaptureNodeConfig, stop: StopFlag, *, ctx: zmq.Context | None = None) -> None:
        self.config, self.stop, self.ctx = config, stop, ctx
        self.waiting = WaitNotice(config.node)
        self.read = self.sent = self.dropped = 0

    def run(self) -> CaptureReport:
        """Run to the end; errors in the config raise at once."""
        config, stop = self.config, self.stop
        calibration = None
        if config.calibration is not None:
            from spikereveal.calibration.model import load_calibration

            calibration = load_calibration(config.calibration)
        source = open_source(config.source, flip=config.flip, calibration=calibration)
        source_id = source.source_id
        policy = resolve_policy(config.policy, source)
        try:
            calibration_id = resolve_calibration_id(calibration, source, config.calibration)
        except BaseException:
            source.close()
            raise
        current: list[Source] = []
        captures = _captures(config, source, calibration, current, stop)
        try:
            sender = open_sender(
                policy,
                config.pub,
                node=config.node,
                role="capture",
                allow_remote=config.allow_remote,
                ctx=self.ctx,
            )
        except BaseException:
            source.close()
            raise
        log.info(
            "%s: %s -> %s (%s, rate %s%s%s%s)",
            config.node,
            source_id,
            sender.endpoint,
            policy,
            config.rate,
            ", loop" if config.loop else "",
            f", count {config.count}" if config.count else "",
            f", calibration {calibration_id!r}" if calibration_id else "",
        )
        speed = rate_factor(config.rate)
        realtime = (
            None
            if speed is None
            else RealTimeCheck(
                config.node,
                done="captures/s read and sent",
                coming="captures/s at the source's rate",
                consequence=f"rate {config.rate}: reading the source or sending is the bottleneck",
                speed=speed,
            )
        )
        ended = False
        unacknowledged = 0
        t0 = time.monotonic()
        try:
            while not stop.is_set():
                # Lossless: the credit first, so the bundle's stamps exclude waiting for the engine;
                # latest: the first subscriber only (a live source never waits after that).
                if not self._wait_ready(sender):
                    break
                t_ready = time.monotonic()
                capture = next(captures, None)
                if capture is None:
                    ended = True
                    break
                t_read = time.monotonic_ns()
                self.read += 1
                sender.service(0.0)  # credits, (un)subscriptions and heartbeats
                bundle = bundle_from_capture(capture, source_id, calibration_id, read_t_ns=t_read)
                if sender.send(bundle.stamped("capture.send"), timeout_s=None, stop=stop):
                    self.sent += 1
                    if self.sent % config.log_every == 0:
                        rate = self.sent / (time.monotonic() - t0)
                        log.info(
                            "%s: %d bundles sent (%.1f/s), %d dropped",
                            config.node,
                            self.sent,
                            rate,
                            self.dropped,
                        )
                else:
                    self.dropped += 1  # nobody listens (latest), or stopped while the consumer had no room
                if realtime is not None:
                    realtime.add(capture.index, capture.rgb_t_ns, time.monotonic() - t_ready)
                sender.status_counters.update(captures_read=self.read, captures_dropped=self.dropped)
            # The end of the source: every bundle acknowledged before saying "finished".
            if (
                ended
                and not sender.flush_patiently(idle_timeout_s=config.flush_idle_s, stop=stop)
                and not stop.is_set()
            ):
                log.error(
                    "%s: %d bundles were never acknowledged (no progress for %.0f s)",
                    config.node,
                    sender.in_flight,
                    config.flush_idle_s,
                )
            unacknowledged = sender.in_flight
        finally:
            final_state = "finished" if ended and not stop.is_set() else "stopping"
            sender.close(final_state=final_state)
            current[0].close()  # a device must be released on a signal too (closing twice is harmless)
        return CaptureReport(
            source_id=source_id,
            policy=policy,
            final_state=final_state,
            captures_read=self.read,
            bundles_sent=self.sent,
            dropped=self.dropped,
            unacknowledged=unacknowledged,
            elapsed_s=time.monotonic() - t0,
        )

    def _wait_ready(self, sender: Sender) -> bool:
        """Wait for a consumer that can take a bundle now, saying so while none is there.

        Before the first bundle of a lossless pool, also wait (up to :data:`JOIN_WAIT_S`) until
        ``engines`` consumers have joined, so that every engine hears the stream's end.
        """
        what = f"a consumer of bundles on {sender.endpoint}"
        wanted = self.config.engines
        pool = hasattr(sender, "consumers")  # the lossless sender serves several by credit

        def consumers() -> list:
            return list(getattr(sender, "consumers", ()))

        if self.sent == 0 and wanted > 1 and pool:
            deadline = time.monotonic() + JOIN_WAIT_S

            def joined(slice_s: float) -> bool:
                sender.service(min(slice_s, max(deadline - time.monotonic(), 0.0)))
                return len(consumers()) >= wanted or time.monotonic() >= deadline

            def missing() -> str:
                return f"{len(consumers())} of {wanted} engines joined"

            if not wait_noting(
                joined, self.waiting, f"{wanted} engines on {sender.endpoint}", missing, self.stop
            ):
                return False
            if len(consumers()) < wanted:
                log.warning(
                    "%s: only %d of %d engines joined within %.0f s; streaming to those",
                    self.config.node,
                    len(consumers()),
                    wanted,
                    JOIN_WAIT_S,
                )
        return wait_noting(sender.wait_ready, self.waiting, what, sender.peer_missing, self.stop)


def run_capture(
    config: CaptureNodeConfig, stop: StopFlag, *, ctx: zmq.Context | None = None
) -> CaptureReport:
    """Run a capture node until the source ends or ``stop`` is set (see :class:`CaptureNode`)."""
    return CaptureNode(config, stop, ctx=ctx).run()
