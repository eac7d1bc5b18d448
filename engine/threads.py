"""How many CPU threads the engine may use (no torch here, so SDM-only nodes stay light)."""

from __future__ import annotations

import os


def usable_cores() -> int:
    """CPU cores this process may run on (affinity-aware): the default thread count of backends."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)
