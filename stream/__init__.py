"""stream: the bottom layer every folder may import: the spike format, the wire, errors, sockets.

Bytes, timestamps and values only: nothing here knows a model, a camera or the CLI, and nothing
imports torch. Names are imported on first use (see :mod:`spikereveal.stream.exports`).
"""

from __future__ import annotations

from spikereveal.stream.exports import lazy_exports

_EXPORTS = {
    "spikereveal.stream.spikes": (
        "SpikeFormatError",
        "SpikeGeometry",
        "pack_frames",
        "parse_size",
        "unpack_frames",
    ),
    "spikereveal.stream.errors": ("SpikeRevealError",),
    "spikereveal.stream.protocol": (
        "Bundle",
        "Credit",
        "Limits",
        "ProtocolError",
        "Result",
        "Status",
        "decode",
        "encode",
    ),
    "spikereveal.stream.transport": ("POLICIES", "open_receiver", "open_sender"),
    "spikereveal.stream.sockets": ("EndpointError", "SocketConfig"),
    "spikereveal.stream.stopping": ("StopFlag",),
    "spikereveal.stream.latency": ("LatencyStats",),
    "spikereveal.stream.video": ("VideoError", "VideoRecorder"),
}
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
