"""Start the three nodes as processes, stream their logs, and stop them together.

``spikereveal run`` is a supervisor, not a node: each node is a separate process (any of them
could run on another host), started as ``python -m spikereveal.tools.cli <node> ...``. The
supervisor prefixes each node's log lines with its name, stops every node when one dies (and
says which), forwards Ctrl-C as one SIGINT per node, and kills what has not stopped in time.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TextIO

from spikereveal.stream.display import screen_available
from spikereveal.stream.transport import StopFlag, free_tcp_endpoint
from spikereveal.tools.run_config import RunConfig

#: Start order: downstream first, so each producer's consumer is already waiting.
NODES = ("display", "engine", "capture")


@dataclass(frozen=True)
class NodeEndpoints:
    """The two links of the pipeline, resolved to concrete addresses."""

    bundles: str
    results: str


def resolve_endpoints(config: RunConfig) -> NodeEndpoints:
    """Configured endpoints, or free loopback tcp ports (a child cannot report a ``:*`` port back)."""
    return NodeEndpoints(
        config.endpoints.bundles or free_tcp_endpoint(),
        config.endpoints.results or free_tcp_endpoint(),
    )


def _opt(flag: str, value: object) -> list[str]:
    """``[flag, value]``, or nothing when the value is unset (None)."""
    return [] if value is None else [flag, str(value)]


def _flag(flag: str, on: bool) -> list[str]:
    return [flag] if on else []


def node_commands(config: RunConfig, endpoints: NodeEndpoints, *, verbose: int = 1) -> dict[str, list[str]]:
    """The command line of each node (pure: what ``run`` starts, in :data:`NODES` order)."""
    base = [sys.executable, "-m", "spikereveal.tools.cli", *(["-v"] * verbose)]
    common = ["--policy", config.policy, *_flag("--allow-remote", config.allow_remote)]
    cap, eng, dis = config.capture, config.engine, config.display
    window = screen_available() if dis.window is None else dis.window
    display = [
        *[*base, "display", "--sub", endpoints.results, *common, "--node", "display"],
        *_opt("--summary", dis.summary),
        *_opt("--warmup", dis.warmup),
        *_flag("--no-window", not window),
        *_opt("--record", dis.record),
        *_opt("--png-dir", dis.png_dir),
    ]
    engine = [
        *[
            *base,
            "engine",
            "--sub",
            endpoints.bundles,
            "--pub",
            endpoints.results,
            *common,
            "--node",
            "engine",
        ],
        *_opt("--backend", eng.backend),
        *_opt("--times", eng.times),
        *_opt("--model", eng.model),
        *_opt("--weights", eng.weights),
        *_opt("--threads", eng.threads),
    ]
    capture = [
        *[*base, "capture", "--source", cap.source, "--pub", endpoints.bundles, *common, "--node", "capture"],
        *_opt("--rate", cap.rate),
        *_flag("--loop", cap.loop),
        *_opt("--count", cap.count),
        *_flag("--no-flip", not cap.flip),
        *_opt("--calibration", cap.calibration),
    ]
    return {"display": display, "engine": engine, "capture": capture}


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
    """How a run ended: exit code 0 (all finished), 130 (stopped by the user) or 1 (a node failed)."""

    code: int
    failed_node: str | None = None
    reason: str = ""


@dataclass
class Pipeline:
    """The running nodes of one ``spikereveal run``."""

    commands: dict[str, list[str]]
    out: TextIO = field(default_factory=lambda: sys.stdout)
    procs: dict[str, subprocess.Popen] = field(default_factory=dict)
    _readers: list[threading.Thread] = field(default_factory=list)
    _print_lock: threading.Lock = field(default_factory=threading.Lock)

    def say(self, name: str, line: str) -> None:
        with self._print_lock:
            self.out.write(f"[{name}] {line.rstrip()}\n")
            self.out.flush()

    def start(self) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        for name in NODES:
            proc = subprocess.Popen(
                self.commands[name],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                text=True,
                bufsize=1,
                env=env,
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
        """Until every node has finished (0), one has failed (1), or ``stop`` is set (130)."""
        while True:
            for name in NODES:
                code = self.procs[name].poll()
                if code not in (None, 0):
                    return Outcome(1, name, f"node '{name}' {describe_exit(code)}")
            if all(p.poll() == 0 for p in self.procs.values()):
                return Outcome(0)
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
