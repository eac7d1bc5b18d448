"""A stand-in engine for the pool tests: a real process that relays bundles in order.

``python -m tests.stream.pool_harness SUB PUB NODE SLOW_MS HANG_AFTER REPORTS`` takes bundles from
the lossless sender at SUB as consumer NODE, waits SLOW_MS per bundle (a model's work), and sends
each on through its own lossless sender bound at PUB (as an engine sends its results). Like the
engine, it acknowledges a bundle upstream only once its own consumer has acknowledged what it
sent on (``RelayAcks``, the engine's window). After HANG_AFTER bundles (0: never) it reports
``hanging`` and hangs, holding its window, until killed. It reports ``{"node", "seq"}`` per
bundle to the PULL socket REPORTS. No torch: it starts fast.
"""

from __future__ import annotations

import sys

import zmq

from spikereveal.stream.lossless import LosslessReceiver, LosslessSender, RelayAcks
from spikereveal.stream.stopping import StopFlag

#: The engine's upstream window (engine/node.py ``LOSSLESS_WINDOW``; not imported: it loads the models).
LOSSLESS_WINDOW = 4


def main(sub: str, pub: str, node: str, slow_ms: str, hang_after: str, reports: str) -> int:
    stop = StopFlag()
    report = zmq.Context.instance().socket(zmq.PUSH)
    report.setsockopt(zmq.LINGER, 2000)
    report.connect(reports)
    with stop.handle_signals():
        sender = LosslessSender(pub, node=node, heartbeat_s=0.1)
        receiver = LosslessReceiver(
            sub, node=node, heartbeat_s=0.1, peer_timeout_s=2.0, window=LOSSLESS_WINDOW, manual_ack=True
        )
        relay = RelayAcks()
        count = 0
        try:
            while not stop.is_set():
                msg = receiver.recv(timeout_s=0.1, stop=stop)
                if msg is None:
                    sender.service(0.0)
                    relay.forward(receiver, sender)
                    continue
                delivery = receiver.last_delivery
                count += 1
                report.send_json({"node": node, "seq": msg.seq})
                if count == int(hang_after):
                    report.send_json({"node": node, "event": "hanging"})
                    stop.wait(60)  # "processing" forever: killed by the test
                    return 0
                stop.wait(int(slow_ms) / 1000)
                if not sender.send(msg, timeout_s=None, stop=stop):
                    break
                relay.add(delivery, sender.counters.sent)
                relay.forward(receiver, sender)
        finally:
            relay.forward(receiver, sender)
            receiver.close()
            sender.close()
            report.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(*sys.argv[1:]))
