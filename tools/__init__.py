"""tools: the ``spikereveal`` command and its subcommands, benchmarks and offline jobs.

The only folder that may import every other one, and the only one that speaks in command-line
flags. Nothing imports it. Names are imported on first use (see :mod:`spikereveal.stream.exports`),
so ``python -m spikereveal.tools.cli`` finds its module not yet loaded.
"""

from __future__ import annotations

from spikereveal.stream.exports import lazy_exports

_EXPORTS = {
    "spikereveal.tools.cli": ("main",),
}
__all__ = sorted(name for names in _EXPORTS.values() for name in names)
__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
