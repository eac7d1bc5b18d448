"""The engine node: bundles in over ZeroMQ, K sharp frames out, one bundle at a time.

A thin loop around one pure function, :func:`process_bundle` (unpack -> output times -> deblur ->
uint8 -> Result), that tests and benchmarks call directly. The loop owns the sockets and the
end of the stream:

- it receives with ``open_receiver(policy, sub)`` (connecting to the capture node) and publishes
  with ``open_sender(policy, pub)`` (binding its own endpoint), the same policy on both sides;
- a bundle that cannot be processed (spike windows outside its spikes, sizes that do not fit the
  engine's calibration, a corrupt buffer) is counted, logged without flooding, and skipped: it is
  acknowledged as soon as the results before it are (at once when none wait), so it is never
  redelivered and never stops the stream;
- ``calibration`` (a calib.yaml/json; default none: the nominal 1/4 per side) sets how sizes are
  checked (:func:`check_bundle_sizes`): with a homography the rig warped the blur onto 4x the
  spike grid, so it must be exactly that; otherwise the calibration's ``scale``. A bundle naming
  another calibration (``Bundle.calibration_id``) is refused the same way, and counted in
  ``wrong_calibration`` too: deblurring it would pair the spikes with the wrong pixels. The file
  is read when the node starts: a missing or malformed one is one error line naming it;
- the bundle's ``sync`` report (a live rig's health) is copied into its Result for the display;
- with the lossless policy the acknowledgement is end to end: a bundle is acknowledged upstream
  only once the display (the consumer of this engine's results) has acknowledged its result
  (:class:`~spikereveal.stream.lossless.RelayAcks`, checked on every loop turn), so an engine
  killed mid-bundle, or with results still queued in its socket, gets those bundles redelivered
  to another engine or its successor; a result that then comes twice is dropped by the display.
  The upstream window (:data:`LOSSLESS_WINDOW`) leaves room for the results still waiting;
- when the producer reports ``"finished"`` and nothing is pending, it waits for its own consumer
  to acknowledge every result, closes with ``"finished"`` and returns (unless
  ``exit_on_finish=False``, for a node that serves stream after stream);
- while no producer (or no consumer) is there it says so every few seconds, and when its own
  processing rate is below the rate of the bundles' sensor times it says so once, with both rates.

Status counters sent with the engine's heartbeats (``Status.counters``, beside the channel's own):
``bundles_in``, ``results_out``, ``errors`` (bundles that failed), ``wrong_calibration`` (of those,
bundles refused for naming another calibration), ``bad_in`` (messages that did not decode),
``dropped_in`` and ``missed_in`` (stale bundles discarded by latest-wins, and gaps).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import zmq

from spikereveal.calibration.model import Calibration, CalibrationError, load_calibration
from spikereveal.engine.backends import BACKEND_CHOICES, DEVICES, resolve_backend
from spikereveal.engine.cpu_decode import AVAILABLE as CPU_DECODE
from spikereveal.engine.cpu_decode import decode_exposure
from spikereveal.engine.deblur import (
    DEFAULT_WEIGHTS,
    MODELS,
    Deblurrer,
    SDMDeblurrer,
    default_model,
    is_default_weights,
    ldn_weights,
    make_deblurrer,
    missing_default_message,
    to_uint8,
)
from spikereveal.engine.density import DensityNorm, density_from_counts, estimate_density
from spikereveal.engine.sdm import sdm_uint8_from_tfps
from spikereveal.engine.threads import usable_cores
from spikereveal.engine.windows import exposure_times
from spikereveal.stream.channel import RateLimitedLog
from spikereveal.stream.latest import parse_share, share_of
from spikereveal.stream.lossless import LosslessReceiver, LosslessSender, RelayAcks
from spikereveal.stream.nodes import NodeReport, RealTimeCheck, WaitNotice, wait_noting
from spikereveal.stream.protocol import DEFAULT_LIMITS, Bundle, Result
from spikereveal.stream.settings import SettingError, setting, validate
from spikereveal.stream.spikes import unpack_frames
from spikereveal.stream.transport import POLICIES, Receiver, Sender, StopFlag, open_receiver, open_sender

log = logging.getLogger(__name__)

#: The sensor relation every public dataset has: spikes at 1/4 of the RGB size per side.
NOMINAL = Calibration()

#: How long one receive waits before the loop looks at the producer's state and heartbeats.
IDLE_S = 0.1

#: Bundles the capture may have in flight to one lossless engine: the results waiting for the
#: display's acknowledgement (its receiver's default window, 2) plus the bundle being processed
#: plus one prefetched, so end-to-end acknowledgement keeps the old one-bundle prefetch.
LOSSLESS_WINDOW = 4

#: A rig with a homography warps the RGB onto this many times the spike grid per side
#: (calibration/warp.py ``rgb_on_spike_grid``: the LDN's blur input).
WARP_SCALE = 4


class WrongCalibration(CalibrationError):
    """A bundle made under another calibration than the engine's (``Bundle.calibration_id``)."""


def load_engine_calibration(path: str | Path | None) -> Calibration | None:
    """The engine's calibration from its file (None: no file, the nominal relation); the error
    names the setting and the file."""
    if path is None:
        return None
    try:
        return load_calibration(path)
    except CalibrationError as exc:
        raise CalibrationError(f"calibration: {exc}") from None


def check_bundle_sizes(bundle: Bundle, calibration: Calibration = NOMINAL) -> None:
    """Raise CalibrationError (a ValueError) unless the spike frames fit the blur under ``calibration``.

    With a ``homography`` the rig has already warped the blur onto the spike grid, so the blur
    must be exactly :data:`WARP_SCALE` times the spike size per side; without one the
    calibration's own rule holds (``Calibration.check_sizes``: ``scale`` per side).
    """
    blur_hw = bundle.blur.shape[:2]
    spike_hw = (bundle.geometry.height, bundle.geometry.width)
    if calibration.homography is not None:
        want = (spike_hw[0] * WARP_SCALE, spike_hw[1] * WARP_SCALE)
        if tuple(blur_hw) != want:
            raise CalibrationError(
                f"bundle {bundle.seq}: RGB {blur_hw[0]}x{blur_hw[1]} is not {WARP_SCALE}x the spike frames "
                f"{spike_hw[0]}x{spike_hw[1]} (expected {want[0]}x{want[1]}: calibration "
                f"'{calibration.id}' has a homography, so the rig warps the RGB onto the spike grid)"
            )
        return
    try:
        calibration.check_sizes(blur_hw, spike_hw)
    except CalibrationError as exc:
        raise CalibrationError(f"bundle {bundle.seq}: {exc}") from None


def check_bundle_calibration(bundle: Bundle, calibration: Calibration | None) -> None:
    """Raise WrongCalibration when the engine has a calibration file and the bundle names another.

    Without a file (``calibration`` None) the engine takes any bundle under the nominal relation.
    """
    if calibration is not None and bundle.calibration_id != calibration.id:
        named = repr(bundle.calibration_id) if bundle.calibration_id else "none"
        raise WrongCalibration(
            f"bundle {bundle.seq}: made under calibration {named}, but this engine uses "
            f"'{calibration.id}'; refused (give the engine the capture's calibration file)"
        )


def process_bundle(
    bundle: Bundle,
    deblurrer: Deblurrer,
    k: int,
    send_blur: bool = True,
    *,
    model: str | None = None,
    recv_t_ns: int | None = None,
    stamp_send: bool = True,
    calibration: Calibration | None = None,
) -> Result:
    """Deblur one bundle into K sharp frames spread evenly over its exposure.

    Unpacks the spikes (``unpack_frames(bundle.spikes_packed, bundle.geometry)``: (T, h, w) 0/1
    upright), picks ``exposure_times(*bundle.exposure, k)`` and runs ``deblurrer.sequence``.
    Returns a Result with ``frames`` (K, H, W, 3) uint8 BGR, ``spike_times`` those K indices,
    the blur when ``send_blur``, ``model`` (default: the deblurrer's name), the bundle's sensor
    ``rgb_t_ns``, the bundle's estimated ``spike_density`` (engine/density.py), and the bundle's stamps
    followed by ``engine.recv`` (``recv_t_ns``, default now), ``engine.done`` (after the model)
    and, if ``stamp_send``, ``engine.send`` (the node stamps that itself, right before sending),
    and the bundle's ``sync`` report.
    ``calibration``: the engine's (None: nominal sizes, any ``calibration_id``); a bundle naming
    another id raises :class:`WrongCalibration`.
    Raises ValueError for a bundle that cannot be processed (sizes, windows outside the spikes).
    """
    recv_ns = time.monotonic_ns() if recv_t_ns is None else int(recv_t_ns)
    check_bundle_calibration(bundle, calibration)
    check_bundle_sizes(bundle, NOMINAL if calibration is None else calibration)
    times = exposure_times(*bundle.exposure, k)
    if isinstance(deblurrer, SDMDeblurrer) and CPU_DECODE:
        # SDM reads only TFPs: one pass over the packed bytes gives them and the density's counts
        # (engine/cpu_decode.py), bit for bit what unpacking and summing would, no (T, h, w) array.
        decoded = decode_exposure(
            bundle.spikes_packed,
            bundle.geometry,
            bundle.exposure,
            times,
            window=None,
            short_window=deblurrer.short_window,
        )
        frames = sdm_uint8_from_tfps(bundle.blur, decoded.tfp_long(), list(decoded.tfp_short()))
        done_ns = time.monotonic_ns()
        density = density_from_counts(bundle.blur, decoded.long_counts, decoded.exposure_frames)
    else:
        spikes = unpack_frames(bundle.spikes_packed, bundle.geometry)
        # A deblurrer that makes 8-bit frames directly (SDM) skips the float stack and its conversion.
        direct = getattr(deblurrer, "sequence_uint8", None)
        if direct is not None:
            frames = direct(bundle.blur, spikes, bundle.exposure, times)
        else:
            frames = to_uint8(deblurrer.sequence(bundle.blur, spikes, bundle.exposure, times))
        done_ns = time.monotonic_ns()
        norm = getattr(deblurrer, "last_density", None)  # the LDN estimates it anyway; others: here
        density = (
            norm.estimated if norm is not None else estimate_density(bundle.blur, spikes, bundle.exposure)
        )
    result = Result(
        seq=bundle.seq,
        source_id=bundle.source_id,
        frames=frames,
        spike_times=tuple(times),
        model=model or deblurrer.name,
        blur=bundle.blur if send_blur else None,
        stamps=(*bundle.stamps, ("engine.recv", recv_ns), ("engine.done", done_ns)),
        rgb_t_ns=bundle.rgb_t_ns,  # the display times playback and video by the sensor, not arrivals
        spike_density=density,
        sync=bundle.sync,  # a live rig's health, for the display's summary
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

    @property
    def last_density(self) -> DensityNorm | None:
        """The inner deblurrer's density normalization of its last sequence (None if it has none)."""
        return getattr(self.inner, "last_density", None)

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

    ``model``: "ldn" or "sdm" (None: the ldn, on ``weights`` or else the project's default
    weights, and sdm only where the default weights are missing); ``weights``: a file or
    ``default`` (None: the default weights); ``times``: K
    output frames per bundle; ``threads``: CPU threads for the model (None: every usable core);
    ``min_period_ms``: make each bundle take at least this long (tests and benchmarks only);
    ``flush_idle_s``: at the end, give up waiting for result acknowledgements after this long
    without progress.
    """

    sub: str = setting("tcp://127.0.0.1:5555", help="The capture node's endpoint to connect to.", yaml=False)
    pub: str = setting("tcp://127.0.0.1:5556", help="Endpoint to bind and publish results on.", yaml=False)
    policy: str = setting(
        "lossless",
        help="lossless (replay: every bundle, in order) or latest (live: drop stale bundles); as the capture's.",
        choices=POLICIES,
        yaml=False,  # ``run`` sets one policy for every node
    )
    model: str | None = setting(
        None, help="Default: ldn (on the default weights unless --weights is given).", choices=MODELS
    )
    backend: str = setting(
        "auto",
        help="Where the LDN runs: auto (TensorRT on a GPU, else torch on CUDA, else torch on the CPU) or one backend.",
        choices=BACKEND_CHOICES,
    )
    device: str = setting(
        "auto",
        help="auto (the GPU where the backend can use one), cpu or cuda; an absent GPU is an error unless auto.",
        choices=DEVICES,
    )
    weights: Path | None = setting(
        None, help="LDN weights: a paper .pth, a .safetensors or 'default' (the project's own; the default)."
    )
    calibration: Path | None = setting(
        None,
        help="Spike/RGB calibration file (YAML or JSON) the bundles must be made under "
        "(default: none, spikes at 1/4 of the RGB size per side).",
    )
    times: int = setting(5, help="Sharp frames K per bundle.", min=1, max=DEFAULT_LIMITS.max_times)
    threads: int | None = setting(None, help="CPU threads for the model (default: all cores).", min=1)
    send_blur: bool = setting(
        True, help="Send the blurry input with each result.", flag="--send-blur/--no-send-blur"
    )
    density_norm: bool = setting(
        True,
        help="Scale the LDN's spike input to the spike density its weights were trained at "
        "(estimated per bundle from the blur and the spikes).",
        flag="--density-norm/--no-density-norm",
    )
    allow_remote: bool = setting(
        False, help="Allow binding beyond loopback (other hosts can connect).", yaml=False
    )
    node: str = setting("engine", help="Node name in statuses and logs.", yaml=False)
    share: str | None = setting(
        None,
        help="Latest-wins pool: take only the bundles whose seq mod N is I (I/N); `run --engines N` sets it.",
        parse=parse_share,
        metavar="I/N",
        yaml=False,
    )
    exit_on_finish: bool = setting(
        True,
        help="Exit when the capture node reports the end of its stream, or keep serving the next one.",
        flag="--exit-on-finish/--no-exit-on-finish",
    )
    min_period_ms: float = setting(
        0.0,
        help="For tests and benchmarks: make every bundle take at least this long (a slow model).",
        min=0,
        hidden=True,
    )
    log_every: int = setting(100, help="Info line every N results.", min=1)
    flush_idle_s: float = setting(
        60.0, help="At the end, give up waiting for acknowledgements after this long idle.", min=0, cli=False
    )

    def __post_init__(self) -> None:
        validate(self)  # types, choices and ranges as declared above
        if self.model == "sdm" and self.weights is not None:
            raise SettingError("weights", "only the ldn model uses weights; drop them or set model to ldn")
        if not self.node:
            raise SettingError("node", "the node name must not be empty")

    @property
    def model_name(self) -> str:
        """The model that runs: the one asked for, else ldn (given or default weights), else sdm.

        sdm only when neither weights nor the default weights file are there (a tree where
        ``make default-weights`` has not run), so a node without settings still deblurs.
        """
        return self.model or default_model(self.weights)

    @property
    def model_label(self) -> str:
        """What results say made them: ``sdm``, ``ldn/<backend>/<weights file name>`` or ``.../default``.

        ``<backend>`` is the one that runs: "auto" resolved here as the backend factory resolves it.
        """
        if self.model_name == "sdm":
            return "sdm"
        return self.label_for(resolve_backend(self.backend, self.device)[0])

    def label_for(self, backend: str) -> str:
        """:attr:`model_label` with the backend that was actually made (``Backend.name``)."""
        if self.model_name == "sdm":
            return "sdm"
        name = DEFAULT_WEIGHTS if is_default_weights(self.weights) else Path(str(self.weights)).name
        return f"ldn/{backend}/{name}"[:200]


@dataclass(frozen=True)
class EngineReport(NodeReport):
    """What one run of the node did; ``rate_hz``: results sent per second of the run."""

    model: str = ""
    bundles_in: int = 0
    results_out: int = 0
    errors: int = 0
    wrong_calibration: int = 0
    bad_in: int = 0
    dropped_in: int = 0
    missed_in: int = 0

    @property
    def items_out(self) -> int:
        return self.results_out

    def summary(self) -> str:
        """One line for the log: counts, time and rate."""
        return (
            f"{self.final_state}: {self.bundles_in} bundles in, {self.results_out} results out "
            f"({self.model}, {self.policy}), {self.errors} failed "
            f"({self.wrong_calibration} under another calibration), {self.bad_in} bad messages, "
            f"{self.dropped_in} dropped, {self.missed_in} missed, {self.unacknowledged} unacknowledged, "
            f"{self.elapsed_s:.1f} s, {self.rate_hz:.2f} results/s"
        )


def build_deblurrer(config: EngineNodeConfig, stop: StopFlag | None = None) -> Deblurrer:
    """The model of ``config`` on its backend, using ``config.threads`` or every usable core."""
    threads = config.threads or usable_cores()
    model = config.model_name
    deblurrer = make_deblurrer(
        model,
        weights=config.weights,
        backend=config.backend,
        device=config.device,
        threads=threads,
        density_norm=config.density_norm,
    )
    if model == "sdm" and config.model is None:
        log.warning("%s: %s; running sdm", config.node, missing_default_message())
    elif model == "sdm":
        log.info("%s: model sdm (the closed form: no weights)", config.node)
    else:
        log.info(
            "%s: model ldn on %s, %d threads, weights %s",
            config.node,
            _backend_name(deblurrer) or config.backend,
            threads,
            ldn_weights(config.weights),
        )
    if config.min_period_ms > 0:
        deblurrer = PacedDeblurrer(
            deblurrer, config.min_period_ms / 1000, stop if stop is not None else StopFlag()
        )
    return deblurrer


def _backend_name(deblurrer: Deblurrer) -> str | None:
    """The name of the backend a deblurrer runs on (the LDN's; None for SDM or a wrapper)."""
    return getattr(getattr(deblurrer, "backend", None), "name", None)


class EngineNode:
    """One engine node; :meth:`run` serves bundles until its producer finishes or ``stop`` is set.

    The calibration file is read and the model built in the constructor (``deblurrer``
    overrides the model), before any socket opens, so a bad file or bad weights fail before a
    peer is kept waiting. Errors in the config or the endpoints raise at once.
    """

    def __init__(
        self,
        config: EngineNodeConfig,
        stop: StopFlag,
        *,
        ctx: zmq.Context | None = None,
        deblurrer: Deblurrer | None = None,
    ) -> None:
        self.config, self.stop, self.ctx = config, stop, ctx
        self.calibration = load_engine_calibration(config.calibration)
        self.deblurrer = deblurrer or build_deblurrer(config, stop)
        backend = _backend_name(self.deblurrer)
        if self.deblurrer.name != config.model_name:
            self.label = self.deblurrer.name
        else:
            self.label = config.label_for(backend) if backend else config.model_label
        self.failures = RateLimitedLog(config.node, log)
        self.waiting = WaitNotice(config.node)
        self.bundles_in = self.results_out = self.errors = self.wrong_calibration = 0
        self._t0 = time.monotonic()
        consequence = (
            "the latest policy drops the rest"
            if config.policy == "latest"
            else "the lossless policy slows the source down to this rate"
        )
        self.realtime = RealTimeCheck(
            config.node, done="results/s", coming="bundles/s coming in", consequence=consequence
        )

    def run(self) -> EngineReport:
        """Serve to the end; always closes both channels and the model."""
        config, stop = self.config, self.stop
        options = {
            "node": config.node,
            "role": "engine",
            "allow_remote": config.allow_remote,
            "ctx": self.ctx,
        }
        receiver: Receiver | None = None
        sender: Sender | None = None
        relay: RelayAcks | None = None  # lossless: bundles whose results await the display's ack
        unacknowledged = 0
        finished_seen = False  # the producer's "finished" handled (with exit_on_finish=False)
        handed_on = True  # the last bundle received has its result sent (or failed): safe to acknowledge
        final_state = "stopping"
        t0 = self._t0 = time.monotonic()
        try:
            if config.policy == "latest":
                extra = {"share": share_of(config.share)} if config.share else {}
            else:  # lossless: acknowledged by hand, once the display has acknowledged the result
                extra = {"window": LOSSLESS_WINDOW, "manual_ack": True}
            receiver = open_receiver(config.policy, config.sub, **options, **extra)
            sender = open_sender(config.policy, config.pub, **options)
            relay = RelayAcks() if isinstance(receiver, LosslessReceiver) else None
            log.info(
                "%s: %s -> %s -> %s (%s, calibration %s)",
                config.node,
                config.sub,
                self.label,
                sender.endpoint,
                config.policy,
                "nominal 1/4" if self.calibration is None else repr(self.calibration.id),
            )
            while not stop.is_set():
                msg = receiver.recv(timeout_s=IDLE_S, stop=stop)
                if msg is None:
                    self._publish_counters(receiver, sender)  # bad messages may have come in meanwhile
                    sender.service(0.0, stop)  # heartbeats and credits while idle
                    self._forward_acks(relay, receiver, sender)
                    producer = receiver.producer
                    if producer is None or producer.state != "finished" or finished_seen:
                        why = receiver.peer_missing()
                        if why is not None:
                            self.waiting.still(f"bundles from {config.sub}", why)
                        continue
                    # The producer sent everything and this node has processed it all.
                    if config.exit_on_finish:
                        final_state = "finished"
                        break
                    finished_seen = True  # results still in flight are acknowledged while serving the next
                    log.info(
                        "%s: stream finished after %d bundles; waiting for the next",
                        config.node,
                        self.bundles_in,
                    )
                    continue
                self.waiting.over()
                finished_seen = False
                handed_on = False
                delivery = receiver.last_delivery if isinstance(receiver, LosslessReceiver) else None
                sent = self._serve(msg, sender)
                if sent is None:  # stopped while waiting for the consumer: it stays unacknowledged
                    break
                handed_on = True
                if relay is not None and delivery is not None:
                    # Its result is the last one sent; a failed bundle waits only for those before it.
                    relay.add(delivery, sender.counters.sent)
                self._forward_acks(relay, receiver, sender)
                self._publish_counters(receiver, sender)
            if final_state == "finished":
                self._publish_counters(receiver, sender)
                if not sender.flush_patiently(idle_timeout_s=config.flush_idle_s, stop=stop):
                    unacknowledged = sender.in_flight
                    log.error("%s: %d results were never acknowledged", config.node, unacknowledged)
                    if stop.is_set():
                        final_state = "stopping"
        finally:
            if sender is not None and receiver is not None:
                # What the display has acknowledged is done; the rest goes to another engine.
                self._forward_acks(relay, receiver, sender)
            if sender is not None:
                sender.close(final_state=final_state)
            if receiver is not None:
                # A bundle whose result never left goes to the next engine instead of being lost.
                receiver.close(acknowledge=handed_on)
            self.deblurrer.close()
        return EngineReport(
            model=self.label,
            policy=config.policy,
            final_state=final_state,
            unacknowledged=unacknowledged,
            elapsed_s=time.monotonic() - t0,
            **self._counts(receiver),
        )

    @staticmethod
    def _forward_acks(relay: RelayAcks | None, receiver: Receiver, sender: Sender) -> None:
        """Lossless: acknowledge upstream the bundles whose results the display has acknowledged."""
        lossless = isinstance(receiver, LosslessReceiver) and isinstance(sender, LosslessSender)
        if relay is not None and lossless:
            relay.forward(receiver, sender)

    def _serve(self, msg: object, sender: Sender) -> bool | None:
        """Process one message and send its result: True if sent, False if it failed or nobody
        took it (counted either way), None if the node stopped before it could send."""
        config = self.config
        recv_ns = time.monotonic_ns()
        if not isinstance(msg, Bundle):
            self.errors += 1
            self._failed(msg, ValueError(f"expected a bundle, got a {getattr(msg, 'kind', msg)}"))
            return False
        self.bundles_in += 1
        try:
            result = process_bundle(
                msg,
                self.deblurrer,
                config.times,
                config.send_blur,
                model=self.label,
                recv_t_ns=recv_ns,
                stamp_send=False,
                calibration=self.calibration,
            )
        except (ValueError, RuntimeError) as exc:  # RuntimeError: a backend's own shape checks
            # Nothing to hand on: acknowledge it, never redeliver a poison bundle.
            self.errors += 1
            self.wrong_calibration += isinstance(exc, WrongCalibration)
            self._failed(msg, exc)
            return False
        busy_s = (time.monotonic_ns() - recv_ns) / 1e9
        # Lossless: wait for room first, so "engine.done->engine.send" shows the backpressure.
        what = f"a consumer of results on {sender.endpoint}"
        if not wait_noting(sender.wait_ready, self.waiting, what, sender.peer_missing, self.stop):
            return None
        t_send = time.monotonic()
        if not sender.send(result.stamped("engine.send"), timeout_s=None, stop=self.stop):
            return None if self.stop.is_set() else False  # latest: the consumer left meanwhile
        self.realtime.add(msg.seq, msg.rgb_t_ns, busy_s + time.monotonic() - t_send)
        self.results_out += 1
        if self.results_out % config.log_every == 0:
            rate = self.results_out / max(1e-9, time.monotonic() - self._t0)
            log.info(
                "%s: %d results out (%.2f/s), %d failed", config.node, self.results_out, rate, self.errors
            )
        return True

    def _failed(self, msg: object, error: Exception) -> None:
        self.failures.warn(
            self.errors,
            "bundle %s from %r skipped (failure #%d): %s",
            getattr(msg, "seq", "?"),
            getattr(msg, "source_id", "?"),
            self.errors,
            error,
            exc_info=not isinstance(error, ValueError) and self.errors == 1,
        )

    def _counts(self, receiver: Receiver) -> dict[str, int]:
        """The node's counts, as in its Status heartbeats and its report."""
        c = receiver.counters
        return {
            "bundles_in": self.bundles_in,
            "results_out": self.results_out,
            "errors": self.errors,
            "wrong_calibration": self.wrong_calibration,
            "bad_in": c.bad,
            "dropped_in": c.dropped,
            "missed_in": c.missed,
        }

    def _publish_counters(self, receiver: Receiver, sender: Sender) -> None:
        sender.status_counters.update(self._counts(receiver))


def run_engine(
    config: EngineNodeConfig,
    stop: StopFlag,
    *,
    ctx: zmq.Context | None = None,
    deblurrer: Deblurrer | None = None,
) -> EngineReport:
    """Run an engine node until its producer finishes (``exit_on_finish``) or ``stop`` is set
    (see :class:`EngineNode`)."""
    return EngineNode(config, stop, ctx=ctx, deblurrer=deblurrer).run()
