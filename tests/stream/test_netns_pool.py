"""An engine on another (network) host: the lossless stream survives its link going down and up.

GIVEN a capture node in the root network namespace and an engine in a second namespace (its own
network stack, reached over a veth pair, as another machine would be over a cable), joined with
``spikereveal engine --sub tcp://IP:PORT --allow-remote``, and a lossless receiver of its results
in the root namespace;
WHEN the engine's link is cut (``ip link set ... down``) mid-stream for two seconds and restored;
THEN the stream stalls while it is down, resumes, and every bundle arrives once, in order.

Needs root and ``ip`` (iproute2) with network namespaces: it skips with the reason otherwise.
Every wait is bounded; the processes are killed and the namespace and link deleted at teardown.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from spikereveal.stream.lossless import LosslessReceiver
from tests.conftest import WAIT_S, stop_processes

pytestmark = pytest.mark.timeout(120)

REPO = Path(__file__).resolve().parents[2]
BUNDLES = 40
#: Replay speed: 137 spike frames at 20 kHz per exposure, at 0.05x: one bundle per ~0.14 s, so
#: the stream is still running when the link is cut (after CUT_AFTER results).
RATE = "0.05"
CUT_AFTER = 8
OUTAGE_S = 2.0


def _ip(*args: str, netns: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
    cmd = ["ip", *(["netns", "exec", netns, "ip"] if netns else []), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=check)


@dataclass(frozen=True)
class Link:
    """A namespace ``netns`` joined to the root namespace by a veth pair ``host_if`` <-> ``ns_if``."""

    netns: str
    host_if: str
    host_ip: str
    ns_ip: str


def _why_no_netns() -> str | None:
    if shutil.which("ip") is None:
        return "no `ip` command (iproute2)"
    if hasattr(os, "geteuid") and os.geteuid() != 0:
        return "network namespaces need root"
    return None


@pytest.fixture
def link() -> Iterator[Link]:
    """A fresh namespace and veth pair with unique names and a random /30; always deleted."""
    reason = _why_no_netns()
    if reason:
        pytest.skip(reason)
    tag = uuid.uuid4().hex[:6]
    netns, host_if, ns_if = f"srtest-{tag}", f"srh{tag}", f"srn{tag}"  # interface names: <= 15 chars
    a, b = random.randrange(16, 250), random.randrange(0, 63) * 4
    host_ip, ns_ip = f"10.{a}.{b // 4}.{b + 1}", f"10.{a}.{b // 4}.{b + 2}"
    made = _ip("netns", "add", netns, check=False)
    if made.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {made.stderr.strip()}")
    try:
        for args, where in (
            (("link", "add", host_if, "type", "veth", "peer", "name", ns_if), None),
            (("link", "set", ns_if, "netns", netns), None),
            (("addr", "add", f"{host_ip}/30", "dev", host_if), None),
            (("link", "set", host_if, "up"), None),
            (("addr", "add", f"{ns_ip}/30", "dev", ns_if), netns),
            (("link", "set", ns_if, "up"), netns),
            (("link", "set", "lo", "up"), netns),
        ):
            done = _ip(*args, netns=where, check=False)
            if done.returncode != 0:
                pytest.skip(f"cannot set up a veth pair here (ip {' '.join(args)}): {done.stderr.strip()}")
        yield Link(netns, host_if, host_ip, ns_ip)
    finally:
        pids = _ip("netns", "pids", netns, check=False).stdout.split()
        for pid in pids:  # only this test's processes live in its namespace
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        _ip("link", "del", host_if, check=False)  # deletes its peer too, wherever it is
        _ip("netns", "del", netns, check=False)


def _free_port(ip: str) -> int:
    with socket.socket() as s:
        s.bind((ip, 0))
        return s.getsockname()[1]


def _node(args: list[str], log: Path, netns: str | None = None) -> subprocess.Popen:
    prefix = ["ip", "netns", "exec", netns] if netns else []  # `ip netns exec` execs: same pid
    with log.open("w") as out:
        return subprocess.Popen(
            [*prefix, sys.executable, "-m", "spikereveal.tools.cli", "-v", *args],
            stdout=subprocess.DEVNULL,
            stderr=out,
            cwd=REPO,
        )


def test_engine_in_another_namespace_survives_a_cut_link_losslessly(link: Link, tmp_path: Path) -> None:
    bundles = f"tcp://{link.host_ip}:{_free_port(link.host_ip)}"
    # A fresh namespace has nothing bound: any port is free there.
    results = f"tcp://{link.ns_ip}:{random.randrange(20000, 60000)}"
    procs = [
        _node(
            ["capture", "--source", f"sim:pan?size=16x24&count={BUNDLES}", "--rate", RATE]
            + ["--pub", bundles, "--allow-remote"],
            tmp_path / "capture.log",
        ),
        _node(
            [
                "engine",
                "--sub",
                bundles,
                "--pub",
                results,
                "--allow-remote",
                "--model",
                "sdm",
                "--times",
                "3",
            ],
            tmp_path / "engine.log",
            netns=link.netns,
        ),
    ]
    seqs: list[int] = []
    arrived_ns: list[int] = []
    down_ns = up_ns = 0
    receiver = LosslessReceiver(results, node="display", heartbeat_s=0.2)
    try:
        deadline = time.monotonic() + 4 * WAIT_S
        while len(seqs) < BUNDLES and time.monotonic() < deadline:
            if not down_ns and len(seqs) >= CUT_AFTER:
                _ip("link", "set", link.host_if, "down")
                down_ns = time.monotonic_ns()
            if down_ns and not up_ns and time.monotonic_ns() - down_ns > OUTAGE_S * 1e9:
                _ip("link", "set", link.host_if, "up")
                up_ns = time.monotonic_ns()
            msg = receiver.recv(timeout_s=0.05)
            if msg is not None:
                seqs.append(msg.seq)
                arrived_ns.append(time.monotonic_ns())
            for proc in procs:
                assert proc.poll() in (None, 0), _logs(tmp_path)
    finally:
        receiver.close()
        stop_processes(procs)
    assert down_ns and up_ns, f"the link was never cut: {len(seqs)} results\n{_logs(tmp_path)}"
    # The stall: nothing crosses a downed link (a little slack for what was already in the
    # receiving socket's buffer when it went down).
    during = [t for t in arrived_ns if down_ns + 0.3e9 < t < up_ns]
    assert not during, f"{len(during)} results arrived while the link was down"
    after = [t for t in arrived_ns if t > up_ns]
    assert after, f"nothing after the link came back: {len(seqs)} results\n{_logs(tmp_path)}"
    # Lossless: every bundle, once, in order.
    assert seqs == list(range(BUNDLES)), f"got {seqs}\n{_logs(tmp_path)}"


def _logs(tmp_path: Path) -> str:
    return "\n".join(f"--- {p.name}\n{p.read_text()[-2000:]}" for p in sorted(tmp_path.glob("*.log")))
