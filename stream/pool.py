"""Results of an engine pool back in capture order: a bounded reorder buffer and a merging receiver.

Several engines serve one capture stream (the lossless sender deals bundles by credit to whichever
engine has room, ``stream/lossless.py``), so their results reach the display out of order: engine
A may finish bundle 7 before engine B finishes bundle 6, and a bundle given back by an engine that
died is processed again, late, by another. The display wants them in sequence order, once.

:class:`ReorderBuffer` holds results that arrive early until the ones before them have come, at
most ``max_held`` of them (a bound, so a bundle that never comes costs a counted gap, not memory
nor an endless stall), and drops what comes again. :class:`PoolReceiver` reads several engines'
results channels (one per engine: each engine binds its own, so each one keeps its own credit
window and exactly-once numbering) and hands out the merged stream through the buffer, under
the :class:`~spikereveal.stream.endpoint.Receiver` interface the display already uses.

Under latest-wins nothing is held: a result newer than the last one handed out goes out at once,
an older one is ``late`` and dropped (the display shows results in order and never goes back).
Under the lossless policy a late result (its place was skipped as a gap) still goes out, counted,
because lossless never drops data.
"""

from __future__ import annotations

import time
from collections import OrderedDict, deque
from dataclasses import asdict, dataclass, fields
from typing import Any

from spikereveal.stream.channel import ChannelCounters, DataMessage, PeerInfo
from spikereveal.stream.endpoint import Receiver
from spikereveal.stream.protocol import FINAL_STATES
from spikereveal.stream.stopping import Deadline, StopFlag, stopped

#: How long the head of the buffer may wait for a missing result once the producers are idle
#: (nothing arrives) before it is given up as a gap; longer than an engine's peer timeout would
#: be safest, but a display should not freeze that long: a late one still goes out (lossless).
DEFAULT_STALL_S = 5.0


@dataclass
class ReorderCounters:
    """``reordered``: results that waited for an earlier one; ``held_max``: the most held at once;
    ``gaps``: sequence numbers given up (never came while ``max_held`` waited, or a stall);
    ``duplicates``: results that came again; ``late``: results older than one already handed out
    (dropped under latest-wins, handed out out of order under lossless)."""

    reordered: int = 0
    held_max: int = 0
    gaps: int = 0
    duplicates: int = 0
    late: int = 0

    def as_dict(self) -> dict[str, int]:
        return asdict(self)


class ReorderBuffer:
    """Put results back in ``seq`` order, bounded; see the module docstring.

    ``start_after``: before the first release, wait until this many results are held (the first
    results of N engines come in any order; the smallest seq among them starts the stream), or
    until :meth:`release_stalled` says the producers went idle. ``remember``: how many handed-out
    sequence numbers are remembered to recognise duplicates.
    """

    def __init__(
        self, *, max_held: int = 64, latest: bool = False, start_after: int = 1, remember: int = 4096
    ) -> None:
        if max_held < 1:
            raise ValueError(f"max_held: got {max_held}, expected >= 1")
        self.max_held, self.latest, self.start_after = max_held, latest, max(1, start_after)
        self.counters = ReorderCounters()
        self.expected: int | None = None  # the next seq to hand out (lossless)
        self.last_out: int | None = None
        self._source: str | None = None
        self._held: dict[int, DataMessage] = {}
        self._seen: OrderedDict[int, None] = OrderedDict()
        self._remember = remember

    @property
    def held(self) -> int:
        return len(self._held)

    def push(self, msg: DataMessage) -> list[DataMessage]:
        """Take ``msg``; return what can go out now, in order (maybe nothing, maybe several)."""
        if self._source is not None and msg.source_id != self._source:
            out = self.flush()  # a new stream (another source or a restarted capture): start over
            self.expected = self.last_out = None
            self._seen.clear()
        else:
            out = []
        self._source = msg.source_id
        seq = msg.seq
        if seq in self._seen or seq in self._held:
            self.counters.duplicates += 1
            return out
        if self.latest:
            if self.last_out is not None and seq < self.last_out:
                self.counters.late += 1
                return out
            return [*out, self._out(msg)]
        if self.expected is not None and seq < self.expected:
            self.counters.late += 1  # its place was given up as a gap; lossless still hands it out
            return [*out, self._out(msg, keep_order=True)]
        self._held[seq] = msg
        if self.expected is not None and seq > self.expected:
            self.counters.reordered += 1  # came before an earlier one: it waits for it
        self.counters.held_max = max(self.counters.held_max, len(self._held))
        if self.expected is None:
            if len(self._held) < self.start_after:
                return out
            self.expected = min(self._held)
        out += self._release()
        while len(self._held) > self.max_held:  # bounded: give up the missing ones before the head
            head = min(self._held)
            self.counters.gaps += head - self.expected
            self.expected = head
            out += self._release()
        return out

    def release_stalled(self) -> list[DataMessage]:
        """The producers are idle: give up what the head waits for (counted gaps) and hand out."""
        if not self._held:
            return []
        head = min(self._held)
        if self.expected is not None:
            self.counters.gaps += max(0, head - self.expected)
        self.expected = head
        return self._release()

    def flush(self) -> list[DataMessage]:
        """Everything held, in order (the stream ended): missing ones count as gaps."""
        out: list[DataMessage] = []
        while self._held:
            out += self.release_stalled()
        return out

    def _release(self) -> list[DataMessage]:
        out = []
        while self.expected in self._held:
            msg = self._held.pop(self.expected)
            out.append(self._out(msg))
            self.expected += 1
        return out

    def _out(self, msg: DataMessage, *, keep_order: bool = False) -> DataMessage:
        self._seen[msg.seq] = None
        while len(self._seen) > self._remember:
            self._seen.popitem(last=False)
        if not keep_order:
            self.last_out = msg.seq if self.last_out is None else max(self.last_out, msg.seq)
        return msg


class PoolReceiver(Receiver):
    """Several engines' results channels as one receiver, in order (see the module docstring).

    ``receivers``: one per engine, already open (``open_receiver(policy, endpoint)`` each); they
    are closed with this one. ``counters`` sums theirs; :attr:`reorder` has the buffer's own.
    """

    def __init__(
        self,
        receivers: list[Receiver],
        *,
        latest: bool = False,
        max_held: int = 64,
        stall_s: float = DEFAULT_STALL_S,
    ) -> None:
        # Not an Endpoint: it owns no socket, only the receivers it merges.
        if not receivers:
            raise ValueError("receivers: expected at least one")
        self.receivers = receivers
        self.node, self.role = receivers[0].node, receivers[0].role
        self.endpoint = ",".join(r.endpoint for r in receivers)
        self._where = f"{self.node} <- {self.endpoint}"
        self.buffer = ReorderBuffer(max_held=max_held, latest=latest, start_after=len(receivers))
        self.stall_s = stall_s
        self.counters = ChannelCounters()
        self._seen_counters = ChannelCounters()  # what the sum was last time (the caller may add)
        self._ready: deque[DataMessage] = deque()
        self._last_arrival = time.monotonic()

    @property
    def reorder(self) -> ReorderCounters:
        return self.buffer.counters

    @property
    def producer(self) -> PeerInfo | None:
        """ "finished" once every engine has said so; else the first one heard from."""
        peers = [r.producer for r in self.receivers]
        heard = [p for p in peers if p is not None]
        if not heard:
            return None
        if len(heard) == len(peers) and all(p.state == "finished" for p in heard):
            return heard[0]
        live = [p for p in heard if p.state not in FINAL_STATES] or heard
        best = next((p for p in live if p.alive), live[0])
        if best.state == "finished":  # some finished, some not: the stream is not over yet
            return PeerInfo(best.node, best.alive, "alive", best.last_seen_ns, best.status)
        return best

    def peer_missing(self) -> str | None:
        reasons = [r.peer_missing() for r in self.receivers]
        return None if any(why is None for why in reasons) else "; ".join(str(why) for why in reasons)

    def recv(self, timeout_s: float | None = None, stop: StopFlag | None = None) -> DataMessage | None:
        """The next result in order, or None on timeout/stop."""
        deadline = Deadline(timeout_s)
        while True:
            if self._ready:
                return self._ready.popleft()
            got = False
            for receiver in self.receivers:
                msg = receiver.recv(timeout_s=0.0, stop=stop)
                if msg is not None:
                    got = True
                    self._last_arrival = time.monotonic()
                    self._ready.extend(self.buffer.push(msg))
            self._sum_counters()
            if self._ready:
                continue
            if not got:
                if self.buffer.held and self._idle_or_finished():
                    self._ready.extend(self.buffer.release_stalled())
                    continue
                if stopped(stop) or deadline.expired():
                    return None
                time.sleep(max(0.0, min(0.005, deadline.remaining())))

    def _idle_or_finished(self) -> bool:
        peer = self.producer
        if peer is not None and peer.state == "finished":
            return True
        return time.monotonic() - self._last_arrival > self.stall_s

    def _sum_counters(self) -> None:
        # Keep what the caller added to ``counters`` (the display counts its own duplicates there).
        for f in fields(ChannelCounters):
            added = getattr(self.counters, f.name) - getattr(self._seen_counters, f.name)
            total = sum(getattr(r.counters, f.name) for r in self.receivers)
            if f.name == "duplicates":
                total += self.buffer.counters.duplicates
            elif f.name == "dropped":
                total += self.buffer.counters.late if self.buffer.latest else 0
            setattr(self._seen_counters, f.name, total)
            setattr(self.counters, f.name, total + added)

    def close(self, acknowledge: bool = True) -> None:  # type: ignore[override]
        for receiver in self.receivers:
            receiver.close(acknowledge)

    def __enter__(self) -> PoolReceiver:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def open_results_receiver(policy: str, endpoints: str, **options: Any) -> Receiver:
    """The display's receiver: ``endpoints`` is one engine's results endpoint, or several
    separated by commas (an engine pool), merged in order by a :class:`PoolReceiver`."""
    from spikereveal.stream.transport import open_receiver  # transport re-exports this module's peers

    parts = [e.strip() for e in endpoints.split(",") if e.strip()]
    if len(parts) <= 1:
        return open_receiver(policy, endpoints, **options)
    receivers: list[Receiver] = []
    try:
        for endpoint in parts:
            receivers.append(open_receiver(policy, endpoint, **options))
    except BaseException:
        for receiver in receivers:
            receiver.close()
        raise
    return PoolReceiver(receivers, latest=policy == "latest")
