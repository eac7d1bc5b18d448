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


def has_screen() -> bool:
    """Whether an OpenCV window can open here (an X or Wayland display on Linux)."""
    if sys.platform.startswith("linux"):
        return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    return True


def node_commands(config: RunConfig, endpoints: NodeEndpoints, *, verbose: int = 1) -> dict[str, list[str]]:
    """The command line of each node (pure: what ``run`` starts, in :data:`NODES` order)."""
    base = [sys.executable, "-m", "spikereveal.tools.cli", *(["-v"] * verbose)]
    common = ["--policy", config.policy, *(["--allow-remote"] if config.allow_remote else [])]
    cap, eng, dis = config.capture, config.engine, config.display

    display = [
        *base,
        "display",
        "--sub",
        endpoints.results,
        *common,
        "--node",
        "display",
        "--summary",
        dis.summary,
    ]
    window = has_screen() if dis.window is None else dis.window
    if not window:
        display.append("--no-window")
    if dis.record:
        display += ["--record", dis.record]
    if dis.png_dir:
        display += ["--png-dir", dis.png_dir]

    engine = [
        *base,
        "engine",
        "--sub",
        endpoints.bundles,
        "--pub",
        endpoints.results,
        *common,
        "--node",
        "engine",
    ]
    engine += ["--backend", eng.backend, "--times", str(eng.times)]
    if eng.model:
        engine += ["--model", eng.model]
    if eng.weights:
        engine += ["--weights", str(eng.weights)]
    if eng.threads:
        engine += ["--threads", str(eng.threads)]

    capture = [
        *base,
        "capture",
        "--source",
        cap.source,
        "--pub",
        endpoints.bundles,
        *common,
        "--node",
        "capture",
    ]
    capture += ["--rate", str(cap.rate)]
    if cap.loop:
        capture.append("--loop")
    if cap.count is not None:
        capture += ["--count", str(cap.count)]
    if not cap.flip:
        capture.append("--no-flip")
    if cap.calibration:
        capture += ["--calibration", str(cap.calibration)]
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
