"""The glibc 'keep freed memory' switch: applied once, reported, harmless to call again.

Its effect on speed is measured, not asserted: ``spikereveal bench model`` runs the eager baseline
with and without it (variant ``eager-keepmem``).
"""

from __future__ import annotations

import platform
import subprocess
import sys

CHILD = """
from spikereveal.engine.backends.malloc import freed_memory_kept, keep_freed_memory
before = freed_memory_kept()
first = keep_freed_memory()
second = keep_freed_memory()
print(before, first, second, freed_memory_kept())
"""


def test_applies_once_per_process_and_reports_it() -> None:
    # A fresh process: the setting is process-wide and never undone.
    out = subprocess.run(
        [sys.executable, "-c", CHILD], capture_output=True, text=True, timeout=60, check=True
    )
    before, first, second, after = out.stdout.split()
    glibc = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
    assert before == "False"
    assert first == second == after == str(glibc)


def test_torch_backend_reports_the_setting() -> None:
    from spikereveal.engine.backends import create_backend
    from spikereveal.engine.ldn import LDN

    with create_backend("torch", LDN().state_dict(), keep_memory=True) as backend:
        expected = platform.system() == "Linux" and platform.libc_ver()[0] == "glibc"
        assert backend.describe()["freed_memory_kept"] is expected
