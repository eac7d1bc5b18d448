"""capture: where spikes and RGB come from: ``.dat`` files, dataset layouts, the simulator, sources.

Sources are opened from one URI (:func:`open_source`) and yield :class:`Capture` whatever is
behind them; the capture node publishes them as bundles. Never imports torch or the engine.
Names are imported on first use (see :mod:`spikereveal.stream.exports`).
"""

from __future__ import annotations

from spikereveal.stream.exports import lazy_exports

_EXPORTS = {
    "spikereveal.capture.dat": ("DatFile", "follow_dat", "open_dat", "write_dat"),
    "spikereveal.capture.datasets": ("DatasetError", "SpikeDataset", "open_dataset"),
    "spikereveal.capture.images": ("ImageFileError", "read_bgr", "write_image"),
    "spikereveal.capture.sample": ("Sample",),
    "spikereveal.capture.spike_camera": ("SpikeCamera",),
    "spikereveal.capture.simulation": ("SimulationConfig", "simulate_sample"),
    "spikereveal.capture.sources": ("Capture", "Source", "SourceError", "looped", "open_source", "paced"),
}
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
