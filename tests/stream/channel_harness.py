"""Helpers for the channel tests: small bundles, and peers run as child processes.

The peers run as ``python -m tests.stream.channel_harness ROLE ...`` from the repository root and
report what they saw over a PUSH socket to a :class:`Reports` PULL socket in the test.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from collections.abc import Callable

import numpy as np
import zmq

from spikereveal.stream.protocol import Bundle
from spikereveal.stream.spikes import SpikeGeometry
from spikereveal.stream.transport import (
    EndpointError,
    LatestSubscriber,
    LosslessReceiver,
    LosslessSender,
    StopFlag,
)

GEOMETRY = SpikeGeometry(8, 16)
WAIT_S = 10.0  # generous bound for anything a loaded 2-core machine must do; never a sleep


def bundle(seq: int, source: str = "test", blur_bytes: int = 4 * 6 * 3) -> Bundle:
    h = max(1, blur_bytes // (512 * 3)) if blur_bytes > 4096 else 4
    w = max(1, blur_bytes // (h * 3))
    return Bundle(
        seq=seq,
        source_id=source,
        blur=np.full((h, w, 3), seq % 256, np.uint8),
        spikes_packed=np.full((3, GEOMETRY.frame_bytes), seq % 256, np.uint8),
        geometry=GEOMETRY,
        exposure=(0, 2),
        stamps=(("send", time.monotonic_ns()),),
    )


# -- child processes and their reports ------------------------------------------------------------


def bind_retrying(endpoint: str) -> LosslessSender:
    """A lossless producer on a fixed port; libzmq releases the previous socket on it asynchronously."""
    deadline = time.monotonic() + WAIT_S
    while True:
        try:
            return LosslessSender(endpoint, node="capture", heartbeat_s=0.1)
        except EndpointError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


# -- child processes and their reports ------------------------------------------------------------


class Reports:
    """The PULL end the children report to (one JSON object per message)."""

    def __init__(self) -> None:
        self.sock = zmq.Context.instance().socket(zmq.PULL)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.bind("tcp://127.0.0.1:*")
        self.endpoint = self.sock.getsockopt(zmq.LAST_ENDPOINT).decode()

    def next(self, timeout_s: float = WAIT_S) -> dict:
        if not self.sock.poll(int(timeout_s * 1000)):
            raise AssertionError(f"no report from a child within {timeout_s} s")
        return self.sock.recv_json()

    def until(self, predicate: Callable[[dict], bool], timeout_s: float = WAIT_S) -> list[dict]:
        """All reports up to and including the first one that satisfies ``predicate``."""
        deadline = time.monotonic() + timeout_s
        seen = []
        while True:
            seen.append(self.next(max(0.01, deadline - time.monotonic())))
            if predicate(seen[-1]):
                return seen

    def close(self) -> None:
        self.sock.close(0)


def _child(role: str, endpoint: str, report_endpoint: str, *args: str) -> int:
    logging.basicConfig(level=logging.INFO, format=f"child {role} %(levelname)s: %(message)s")
    ctx = zmq.Context.instance()
    report = ctx.socket(zmq.PUSH)
    report.setsockopt(zmq.LINGER, 2000)
    report.connect(report_endpoint)
    send = report.send_json
    stop = StopFlag()
    with stop.handle_signals():
        if role == "lossless_consumer":
            node, count, slow_ms, hang_after = args[0], int(args[1]), int(args[2]), int(args[3])
            with LosslessReceiver(endpoint, node=node, heartbeat_s=0.1) as receiver:
                received = 0
                while received < count and not stop.is_set():
                    msg = receiver.recv(timeout_s=0.2, stop=stop)
                    if msg is None:
                        continue
                    received += 1
                    c = receiver.counters
                    send(
                        {
                            "event": "msg",
                            "seq": msg.seq,
                            "source": msg.source_id,
                            "bad": c.bad,
                            "dup": c.duplicates,
                        }
                    )
                    if received == hang_after:
                        send({"event": "hanging"})
                        stop.wait(60)  # "processing" forever: killed by the test
                    stop.wait(slow_ms / 1000)
                receiver.recv(timeout_s=0.0)  # acknowledge the last one before leaving
            send({"event": "done"})
        elif role == "latest_consumer":
            slow_s = int(args[0]) / 1000
            with LatestSubscriber(endpoint, node="slow") as subscriber:
                while not stop.is_set():
                    msg = subscriber.recv_latest(timeout_s=0.2, stop=stop)
                    if msg is None:
                        continue
                    c = subscriber.counters
                    send(
                        {
                            "seq": msg.seq,
                            "dropped": c.dropped,
                            "missed": c.missed,
                            "received": c.received,
                            "pid": os.getpid(),
                        }
                    )
                    stop.wait(slow_s)  # the slow engine
        elif role == "latest_lockstep":
            go = ctx.socket(zmq.PULL)
            go.setsockopt(zmq.LINGER, 0)
            go.connect(args[0])
            with LatestSubscriber(endpoint, node="slow") as subscriber:
                while not stop.is_set():
                    if not go.poll(200):
                        continue
                    go.recv()
                    stop.wait(int(args[1]) / 1000)  # the slow engine's work on the previous message
                    msg = subscriber.recv_latest(timeout_s=WAIT_S, stop=stop)
                    if msg is not None:
                        c = subscriber.counters
                        send(
                            {"seq": msg.seq, "dropped": c.dropped, "missed": c.missed, "received": c.received}
                        )
            go.close()
        elif role == "wait_forever":
            with LosslessReceiver(endpoint, node="engine") as receiver:
                send({"event": "ready"})
                receiver.recv(timeout_s=None, stop=stop)
            send({"event": "stopped"})
    report.close()
    return 0


if __name__ == "__main__":
    sys.exit(_child(*sys.argv[1:]))
