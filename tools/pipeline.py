"""Start the three nodes as processes, stream their logs, and stop them together.

``spikereveal run`` is a supervisor, not a node: each node is a separate process (any of them
could run on another host), started as ``python -m spikereveal.tools.cli <node> ...``. The
supervisor prefixes each node's log lines with its name, stops every node when one dies (and
says which), forwards Ctrl-C as one SIGINT per node, and kills what has not stopped in time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from spikereveal.stream.display import screen_available
from spikereveal.stream.settings import settings_of
from spikereveal.stream.transport import StopFlag, free_tcp_endpoint
from spikereveal.tools.config_options import config_argv
from spikereveal.tools.run_config import RunConfig, RunConfigError

#: Start order: downstream first, so each producer's consumer is already waiting.
NODES = ("display", "engine", "capture")


@dataclass(frozen=True)
class NodeEndpoints:
    """The two links of the pipeline, resolved to concrete addresses."""

    bundles: str
    results: str


def resolve_endpoints(config: RunConfig) -> NodeEndpoints:
    """Configured endpoints, or free loopback tcp ports (a child cannot report a ``:*`` port back).

    With several engines, ``results`` is one endpoint per engine, separated by commas (each engine
    binds its own; the display merges them back in order, ``stream/pool.py``).
    """
    results = config.endpoints.results or ",".join(free_tcp_endpoint() for _ in range(config.engines))
    if len(results.split(",")) != config.engines:
        raise RunConfigError(
            f"endpoints.results: got {results!r}, expected {config.engines} endpoint(s) separated by commas (one per engine)"
        )
    return NodeEndpoints(config.endpoints.bundles or free_tcp_endpoint(), results)


def engine_names(config: RunConfig) -> list[str]:
    """``["engine"]``, or ``engine-0 ... engine-<N-1>`` for a pool (the lossless sender tells its
    consumers apart by name)."""
    return ["engine"] if config.engines == 1 else [f"engine-{i}" for i in range(config.engines)]


def node_envs(config: RunConfig) -> dict[str, dict[str, str]]:
    """Extra environment per node: ``CUDA_VISIBLE_DEVICES`` of each engine when devices are given."""
    if not config.devices:
        return {}
    devices = [d.strip() for d in config.devices.split(",") if d.strip()]
    return {
        name: {"CUDA_VISIBLE_DEVICES": devices[i % len(devices)]}
        for i, name in enumerate(engine_names(config))
    }


def check_run(config: RunConfig) -> None:
    """Refuse, before any process starts, a run whose nodes would fail at once: one error line.

    The node configs were validated when they were built (types, choices, ranges, the video
    container). This checks what needs the file system: the calibration files (the capture's,
    the source's own, the engine's: their ids must agree, or the engine would refuse every
    bundle), the source URI and its sizes (a simulated source checks them when opened; a
    recording's first exposure is read and its spike frames must fit its RGB frames; a live
    source is only opened, as reading it would wait for its sensors), and the LDN's weights.
    """
    from spikereveal.calibration.model import Calibration, CalibrationError, load_calibration
    from spikereveal.capture.node import resolve_calibration_id
    from spikereveal.capture.sources import SimulatedSource, open_source
    from spikereveal.engine.deblur import is_default_weights, ldn_weights
    from spikereveal.stream.errors import SpikeRevealError

    capture, engine = config.capture, config.engine
    calibration = None if capture.calibration is None else load_calibration(capture.calibration)
    engine_calibration = None
    if engine.calibration is not None:
        try:
            engine_calibration = load_calibration(engine.calibration)
        except CalibrationError as exc:
            raise RunConfigError(f"engine.calibration: {exc}") from None
    source = open_source(capture.source, flip=capture.flip, calibration=calibration)
    try:
        bundle_id = resolve_calibration_id(calibration, source, capture.calibration)
        if engine_calibration is not None and bundle_id != engine_calibration.id:
            raise RunConfigError(
                f"engine.calibration: {engine.calibration} has id {engine_calibration.id!r}, but the "
                f"capture's bundles carry {bundle_id or 'no calibration'!r}; the engine would refuse "
                "them all (give both the same calibration file)"
            )
        live = getattr(source, "live", False)
        if not isinstance(source, SimulatedSource) and not live:  # the simulator fits by construction
            first = next(iter(source), None)
            if first is not None:
                sample = first.sample
                try:
                    (calibration or Calibration()).check_sizes(sample.blur.shape[:2], sample.spike_size)
                except ValueError as exc:
                    raise RunConfigError(f"source {capture.source!r}: {sample.name}: {exc}") from None
    finally:
        source.close()
    if not is_default_weights(engine.weights) and not Path(str(engine.weights)).is_file():
        raise RunConfigError(f"engine.weights: {engine.weights}: no such file")
    if engine.model_name == "ldn":
        try:
            ldn_weights(engine.weights)  # the default weights, when meant, must be there
        except SpikeRevealError as exc:
            raise RunConfigError(f"engine.weights: {exc}") from None


def wired_configs(config: RunConfig, endpoints: NodeEndpoints) -> dict[str, Any]:
    """Each node's config with the wiring ``run`` sets itself: endpoints, names, policy, remote.

    The display gets a window only where there is a screen (else it writes a video, as it would
    fall back to by itself, without first warning that it cannot open one).
    """
    common = {"policy": config.policy, "allow_remote": config.allow_remote}
    display = config.display
    # A latest-wins pool shares the stream by sequence number (each engine the newest of its share);
    # a lossless pool is dealt by credit and ignores it.
    n = config.engines
    engines = {
        name: dataclasses.replace(
            config.engine,
            sub=endpoints.bundles,
            pub=pub,
            node=name,
            share=f"{i}/{n}" if n > 1 else None,
            **common,
        )
        for i, (name, pub) in enumerate(zip(engine_names(config), endpoints.results.split(","), strict=True))
    }
    return {
        "display": dataclasses.replace(
            display,
            sub=endpoints.results,
            node="display",
            window=display.window and screen_available(),
            **common,
        ),
        **engines,
        "capture": dataclasses.replace(
            config.capture, pub=endpoints.bundles, node="capture", engines=config.engines, **common
        ),
    }


def wiring(config: Any) -> list[str]:
    """The settings of a node config that ``run`` sets (declared ``yaml=False``): always spelled."""
    return [f.name for f, s in settings_of(type(config)) if not s.yaml]


def node_commands(config: RunConfig, endpoints: NodeEndpoints, *, verbose: int = 1) -> dict[str, list[str]]:
    """The command line of each node (pure: what ``run`` starts, in :data:`NODES` order).

    Derived from each node's config (:func:`~spikereveal.tools.config_options.config_argv`), so
    the node parses it back into the very config ``run`` built: every setting that differs from
    the node's default, and the wiring.
    """
    base = [sys.executable, "-m", "spikereveal.tools.cli", *(["-v"] * verbose)]
    configs = wired_configs(config, endpoints)
    return {
        name: [*base, name.partition("-")[0], *config_argv(cfg, always=wiring(cfg))]
        for name, cfg in configs.items()
    }


def describe_exit(code: int) -> str:
    """``exited with code 3`` or ``was killed by SIGKILL``."""
    if code < 0:
        with contextlib.suppress(ValueError):
            return f"was killed by {signal.Signals(-code).name}"
        return f"was killed by signal {-code}"
    return f"exited with code {code}"


def _die_with_parent() -> None:
    """In the child: get SIGTERM if the supervisor dies, so no node is left orphaned (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        with contextlib.suppress(OSError, AttributeError):
            ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


@dataclass
class Outcome:
    """How a run ended: exit code 0 (all finished, or the user quit the window), 130 (stopped by a
    signal) or 1 (a node failed). ``user_quit``: the display ended first (q, Esc, window closed)."""

    code: int
    failed_node: str | None = None
    reason: str = ""
    user_quit: bool = False


#: What the display's exit reason (its summary's ``exit``) means for the run.
_DISPLAY_ENDS = {
    "quit": "the user quit the display (q or Esc)",
    "window closed": "the user closed the display window",
}


def display_exit_reason(summary_path: Path | None) -> str | None:
    """The ``exit`` the display wrote in its summary JSON (None: no readable summary)."""
    if summary_path is None:
        return None
    try:
        reason = json.loads(Path(summary_path).read_text()).get("exit")
    except (OSError, ValueError, AttributeError):
        return None
    return reason if isinstance(reason, str) else None


@dataclass
class Pipeline:
    """The running nodes of one ``spikereveal run``."""

    commands: dict[str, list[str]]
    out: TextIO = field(default_factory=lambda: sys.stdout)
    #: The display's summary JSON: its exit reason tells a user's quit from the stream's end.
    display_summary: Path | None = None
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    #: Extra environment per node (``node_envs``: an engine's GPU).
    envs: dict[str, dict[str, str]] = field(default_factory=dict)
    _readers: list[threading.Thread] = field(default_factory=list)
    _print_lock: threading.Lock = field(default_factory=threading.Lock)

    def say(self, name: str, line: str) -> None:
        with self._print_lock:
            self.out.write(f"[{name}] {line.rstrip()}\n")
            self.out.flush()

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for name in self.commands:
            proc = subprocess.Popen(
                self.commands[name],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                bufsize=1,
                env={**env, **self.envs.get(name, {})},
                # Own session: a terminal's Ctrl-C reaches only the supervisor, which forwards one
                # SIGINT per node (a second signal would make the nodes abort instead of finishing).
                start_new_session=True,
                preexec_fn=_die_with_parent,  # noqa: PLW1509 - no threads yet in the child
            )
            self.procs[name] = proc
            self.say("run", f"started {name} (pid {proc.pid})")
            reader = threading.Thread(target=self._pump, args=(name, proc), daemon=True)
            reader.start()
            self._readers.append(reader)

    def _pump(self, name: str, proc: subprocess.Popen) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            self.say(name, line)

    def wait(self, stop: StopFlag, poll_s: float = 0.1) -> Outcome:
        """Until every node has finished (0), one has failed (1), ``stop`` is set (130), or the
        display ended before the stream did (0, ``user_quit``: q, Esc or a closed window).

        A display that exits 0 saying "finished" is the stream's normal end: the other nodes are
        finishing too, and are waited for. Any other clean display exit (the user quit, a signal
        sent to the display alone) leaves nobody to take the results: the run ends, and
        :meth:`stop` stops the others.
        """
        while True:
            for name in self.procs:
                code = self.procs[name].poll()
                if code not in (None, 0):
                    return Outcome(1, name, f"node '{name}' {describe_exit(code)}")
            if all(p.poll() == 0 for p in self.procs.values()):
                return Outcome(0)
            if "display" in self.procs and self.procs["display"].poll() == 0:
                reason = display_exit_reason(self.display_summary)
                if reason != "finished":
                    why = _DISPLAY_ENDS.get(reason or "", f"the display ended ({reason or 'no summary'})")
                    return Outcome(0, None, why, user_quit=True)
            if stop.wait(poll_s):
                return Outcome(130, None, "stopped by signal")

    def stop(self, grace_s: float = 10.0, on_kill: Callable[[str], None] | None = None) -> None:
        """SIGINT every node still running, wait up to ``grace_s``, then SIGKILL the rest."""
        for proc in self.procs.values():
            if proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGINT)
        deadline = time.monotonic() + grace_s
        for name, proc in self.procs.items():
            try:
                proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                (on_kill or (lambda n: None))(name)
                proc.kill()
                proc.wait(timeout=5)
        for reader in self._readers:
            reader.join(timeout=2)
