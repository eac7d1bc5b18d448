"""The engine node: bundles in over ZeroMQ, K sharp frames out, one bundle at a time.

A thin loop around one pure function, :func:`process_bundle` (unpack -> output times -> deblur ->
uint8 -> Result), that tests and benchmarks call directly. The loop owns the sockets and the
end of the stream:

- it receives with ``open_receiver(policy, sub)`` (connecting to the capture node) and publishes
  with ``open_sender(policy, pub)`` (binding its own endpoint), the same policy on both sides;
- a bundle that cannot be processed (spike windows outside its spikes, spikes that are not 1/4 of
  the blur per side, a corrupt buffer) is counted, logged without flooding, and skipped: it is
  acknowledged like any other, so it is never redelivered and never stops the stream;
- with the lossless policy a bundle is acknowledged only once its result has been handed on
  (the receiver acknowledges on the next ``recv``), so an engine killed mid-bundle gets it
  redelivered to its successor;
- when the producer reports ``"finished"`` and nothing is pending, it waits for its own consumer
  to acknowledge every result, closes with ``"finished"`` and returns (unless
  ``exit_on_finish=False``, for a node that serves stream after stream).

Status counters sent with the engine's heartbeats (``Status.counters``, beside the channel's own):
``bundles_in``, ``results_out``, ``errors`` (bundles that failed), ``bad_in`` (messages that did
not decode), ``dropped_in`` and ``missed_in`` (stale bundles discarded by latest-wins, and gaps).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from spikereveal.calibration.model import Calibration, CalibrationError
from spikereveal.capture.dat import unpack_frames
from spikereveal.engine.deblur import MODELS, Deblurrer, make_deblurrer, to_uint8
from spikereveal.engine.threads import usable_cores
from spikereveal.engine.windows import exposure_times
from spikereveal.stream.protocol import DEFAULT_LIMITS, Bundle, Result
from spikereveal.stream.transport import (
    POLICIES,
    LosslessReceiver,
    LosslessSender,
    StopFlag,
    flush_patiently,
    open_receiver,
    open_sender,
)

log = logging.getLogger(__name__)

#: The sensor relation every public dataset has: spikes at 1/4 of the RGB size per side.
NOMINAL = Calibration()

#: How long one receive waits before the loop looks at the producer's state and heartbeats.
IDLE_S = 0.1


def check_bundle_sizes(bundle: Bundle, calibration: Calibration = NOMINAL) -> None:
    """Raise CalibrationError (a ValueError) unless the spike frames fit the blur under ``calibration``."""
    try:
        calibration.check_sizes(bundle.blur.shape[:2], (bundle.geometry.height, bundle.geometry.width))
    except CalibrationError as exc:
        raise CalibrationError(f"bundle {bundle.seq}: {exc}") from None


def process_bundle(
    bundle: Bundle,
    deblurrer: Deblurrer,
    k: int,
    send_blur: bool = True,
    *,
    model: str | None = None,
    recv_t_ns: int | None = None,
    stamp_send: bool = True,
) -> Result:
    """Deblur one bundle into K sharp frames spread evenly over its exposure.

    Unpacks the spikes (``unpack_frames(bundle.spikes_packed, bundle.geometry)``: (T, h, w) 0/1
    upright), picks ``exposure_times(*bundle.exposure, k)`` and runs ``deblurrer.sequence``.
    Returns a Result with ``frames`` (K, H, W, 3) uint8 BGR, ``spike_times`` those K indices,
    the blur when ``send_blur``, ``model`` (default: the deblurrer's name) and the bundle's stamps
    followed by ``engine.recv`` (``recv_t_ns``, default now), ``engine.done`` (after the model)
    and, if ``stamp_send``, ``engine.send`` (the node stamps that itself, right before sending).
    Raises ValueError for a bundle that cannot be processed (sizes, windows outside the spikes).
    """
    recv_ns = time.monotonic_ns() if recv_t_ns is None else int(recv_t_ns)
    check_bundle_sizes(bundle)
    spikes = unpack_frames(bundle.spikes_packed, bundle.geometry)
    times = exposure_times(*bundle.exposure, k)
    sharp = deblurrer.sequence(bundle.blur, spikes, bundle.exposure, times)
    done_ns = time.monotonic_ns()
    result = Result(
        seq=bundle.seq,
        source_id=bundle.source_id,
        frames=to_uint8(sharp),
        spike_times=tuple(times),
        model=model or deblurrer.name,
        blur=bundle.blur if send_blur else None,
        stamps=(*bundle.stamps, ("engine.recv", recv_ns), ("engine.done", done_ns)),
    )
    return result.stamped("engine.send") if stamp_send else result


@dataclass
class PacedDeblurrer:
    """A deblurrer made deliberately slow: each sequence takes at least ``min_period_s``.

    For tests and benchmarks of the live policy (a slow engine must drop, not lag); the wait
    is stop-aware, so a signal still ends the node promptly.
    """

    inner: Deblurrer
    min_period_s: float
    stop: StopFlag = field(default_factory=StopFlag)

    @property
    def name(self) -> str:
        return self.inner.name

    def sequence(
        self, blur_bgr: np.ndarray, spikes: np.ndarray, exposure: tuple[int, int], times: list[int]
    ) -> np.ndarray:
        t0 = time.monotonic()
        frames = self.inner.sequence(blur_bgr, spikes, exposure, times)
        self.stop.wait(max(0.0, self.min_period_s - (time.monotonic() - t0)))
        return frames

    def close(self) -> None:
        self.inner.close()


@dataclass(frozen=True)
class EngineNodeConfig:
    """Everything the engine node needs; validated here, once.

    ``model``: "ldn" or "sdm" (None: ldn when ``weights`` is given, else sdm); ``times``: K
    output frames per bundle; ``threads``: CPU threads for the model (None: every usable core);
    ``min_period_ms``: make each bundle take at least this long (tests and benchmarks only);
    ``flush_idle_s``: at the end, give up waiting for result acknowledgements after this long
    without progress.
    """

    sub: str = "tcp://127.0.0.1:5555"
    pub: str = "tcp://127.0.0.1:5556"
    policy: str = "lossless"
    model: str | None = None
    backend: str = "torch"
    weights: Path | None = None
    times: int = 5
    threads: int | None = None
    send_blur: bool = True
    allow_remote: bool = False
    node: str = "engine"
    exit_on_finish: bool = True
    min_period_ms: float = 0.0
    log_every: int = 100
    flush_idle_s: float = 60.0

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise ValueError(f"policy: got {self.policy!r}, expected one of {', '.join(POLICIES)}")
        if self.model is not None and self.model not in MODELS:
            raise ValueError(f"model: got {self.model!r}, expected one of {', '.join(MODELS)}")
        if self.model == "sdm" and self.weights is not None:
            raise ValueError("weights: only the ldn model uses weights; drop them or choose --model ldn")
        if not 1 <= self.times <= DEFAULT_LIMITS.max_times:
            raise ValueError(f"times: got {self.times}, expected 1..{DEFAULT_LIMITS.max_times} frames")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads: got {self.threads}, expected >= 1")
        if self.min_period_ms < 0 or self.log_every < 1 or not self.node:
            raise ValueError("min_period_ms must be >= 0, log_every >= 1 and node not empty")

    @property
    def model_name(self) -> str:
        """The model that runs: the one asked for, else ldn with weights and sdm without."""
        return self.model or ("ldn" if self.weights is not None else "sdm")

    @property
    def model_label(self) -> str:
        """What results say made them: ``sdm`` or ``ldn/<backend>/<weights file name>``."""
        if self.model_name == "sdm":
            return "sdm"
        return f"ldn/{self.backend}/{Path(self.weights).name if self.weights else '?'}"[:200]


@dataclass(frozen=True)
class EngineReport:
    """What one run of the node did."""

    model: str
    policy: str
    final_state: str  # "finished" (the producer finished) or "stopping" (a signal)
    bundles_in: int
    results_out: int
    errors: int
    bad_in: int
    dropped_in: int
    missed_in: int
    unacknowledged: int
    elapsed_s: float

    @property
    def rate_hz(self) -> float:
        """Results sent per second of the run."""
        return self.results_out / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def exit_code(self) -> int:
        """0, or 1 when a finished stream's results could not all be delivered."""
        return 1 if self.final_state == "finished" and self.unacknowledged else 0

    def summary(self) -> str:
        """One line for the log: counts, time and rate."""
        return (
            f"{self.final_state}: {self.bundles_in} bundles in, {self.results_out} results out "
            f"({self.model}, {self.policy}), {self.errors} failed, {self.bad_in} bad messages, "
            f"{self.dropped_in} dropped, {self.missed_in} missed, {self.unacknowledged} unacknowledged, "
            f"{self.elapsed_s:.1f} s, {self.rate_hz:.2f} results/s"
        )


class _FailureLog:
    """Log failed bundles without flooding: the first ten, then every hundredth."""

    def __init__(self, node: str) -> None:
        self.node = node

    def __call__(self, count: int, bundle: Bundle, error: Exception) -> None:
        if count <= 10 or count % 100 == 0:
            log.warning(
                "%s: bundle %d from %r skipped (failure #%d): %s",
                self.node,
                bundle.seq,
                bundle.source_id,
                count,
                error,
                exc_info=not isinstance(error, ValueError) and count == 1,
            )


def build_deblurrer(config: EngineNodeConfig, stop: StopFlag | None = None) -> Deblurrer:
    """The model of ``config`` on its backend, using ``config.threads`` or every usable core."""
    threads = config.threads or usable_cores()
    model = config.model_name
    deblurrer = make_deblurrer(model, weights=config.weights, backend=config.backend, threads=threads)
    if model == "sdm":
        log.info("%s: model sdm (the closed form: no weights; --weights selects the ldn)", config.node)
    else:
        log.info(
            "%s: model ldn on %s, %d threads, weights %s",
            config.node,
            config.backend,
            threads,
            config.weights,
        )
    if config.min_period_ms > 0:
        deblurrer = PacedDeblurrer(
            deblurrer, config.min_period_ms / 1000, stop if stop is not None else StopFlag()
        )
    return deblurrer


def run_engine(
    config: EngineNodeConfig,
    stop: StopFlag,
    *,
    ctx: zmq.Context | None = None,
    deblurrer: Deblurrer | None = None,
) -> EngineReport:
    """Run the node until its producer finishes (``exit_on_finish``) or ``stop`` is set.

    The model is built (``deblurrer`` overrides it) before any socket opens, so bad weights fail
    before a peer is kept waiting. Errors in the config or the endpoints raise at once.
    """
    deblurrer = deblurrer or build_deblurrer(config, stop)
    label = config.model_label if deblurrer.name == config.model_name else deblurrer.name
    options = {"node": config.node, "role": "engine", "allow_remote": config.allow_remote, "ctx": ctx}
    receiver = sender = None
    bundles_in = results_out = errors = 0
    unacknowledged = 0
    on_failure = _FailureLog(config.node)
    finished_seen = False  # the producer's "finished" handled (with exit_on_finish=False)
    handed_on = True  # the last bundle received has its result sent (or failed): safe to acknowledge
    final_state = "stopping"
    t0 = time.monotonic()
    try:
        receiver = open_receiver(config.policy, config.sub, **options)
        sender = open_sender(config.policy, config.pub, **options)
        log.info("%s: %s -> %s -> %s (%s)", config.node, config.sub, label, sender.endpoint, config.policy)

        def publish_counters() -> None:
            c = receiver.counters
            sender.status_counters.update(
                bundles_in=bundles_in,
                results_out=results_out,
                errors=errors,
                bad_in=c.bad,
                dropped_in=c.dropped,
                missed_in=c.missed,
            )

        while not stop.is_set():
            msg = receiver.recv(timeout_s=IDLE_S, stop=stop)
            if msg is None:
                publish_counters()  # bad messages may have come in meanwhile
                sender.service(0.0, stop)  # heartbeats and credits while idle
                producer = receiver.producer
                if producer is None or producer.state != "finished" or finished_seen:
                    continue
                # The producer sent everything and this node has processed it all.
                if config.exit_on_finish:
                    final_state = "finished"
                    break
                finished_seen = True  # results still in flight are acknowledged while serving the next
                log.info(
                    "%s: stream finished after %d bundles; waiting for the next", config.node, bundles_in
                )
                continue
            recv_ns = time.monotonic_ns()
            finished_seen = False
            if not isinstance(msg, Bundle):
                errors += 1
                on_failure(errors, msg, ValueError(f"expected a bundle, got a {msg.kind}"))  # type: ignore[arg-type]
                publish_counters()
                continue
            bundles_in += 1
            handed_on = False
            try:
                result = process_bundle(
                    msg,
                    deblurrer,
                    config.times,
                    config.send_blur,
                    model=label,
                    recv_t_ns=recv_ns,
                    stamp_send=False,
                )
            except (ValueError, RuntimeError) as exc:  # RuntimeError: a backend's own shape checks
                errors += 1
                handed_on = True  # nothing to hand on: acknowledge it, never redeliver a poison bundle
                on_failure(errors, msg, exc)
                publish_counters()
                continue
            # Lossless: wait for room first, so "engine.done->engine.send" shows the backpressure.
            if isinstance(sender, LosslessSender) and not sender.wait_for_credit(None, stop):
                break
            if not sender.send(result.stamped("engine.send"), timeout_s=None, stop=stop):
                break
            handed_on = True
            results_out += 1
            publish_counters()
            if results_out % config.log_every == 0:
                rate = results_out / (time.monotonic() - t0)
                log.info("%s: %d results out (%.2f/s), %d failed", config.node, results_out, rate, errors)
        if final_state == "finished":
            publish_counters()
            if not flush_patiently(sender, idle_timeout_s=config.flush_idle_s, stop=stop):
                unacknowledged = sender.in_flight if isinstance(sender, LosslessSender) else 0
                log.error("%s: %d results were never acknowledged", config.node, unacknowledged)
                if stop.is_set():
                    final_state = "stopping"
    finally:
        if sender is not None:
            sender.close(final_state=final_state)
        if receiver is not None:
            if isinstance(receiver, LosslessReceiver):
                # A bundle whose result never left goes to the next engine instead of being lost.
                receiver.close(acknowledge=handed_on)
            else:
                receiver.close()
        deblurrer.close()
    c = receiver.counters
    return EngineReport(
        model=label,
        policy=config.policy,
        final_state=final_state,
        bundles_in=bundles_in,
        results_out=results_out,
        errors=errors,
        bad_in=c.bad,
        dropped_in=c.dropped,
        missed_in=c.missed,
        unacknowledged=unacknowledged,
        elapsed_s=time.monotonic() - t0,
    )
