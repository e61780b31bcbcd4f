"""How much memory this machine has free: the bound for what a file or a batch may make
us allocate."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def available_memory() -> int | None:
    """Bytes of memory this machine has available now (``MemAvailable``), or None."""
    with contextlib.suppress(OSError, ValueError, IndexError):
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    with contextlib.suppress(OSError, ValueError, AttributeError):
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    return None


def gib(n: float) -> str:
    """Bytes as ``"3.2 GiB"`` (or TiB, MiB)."""
    for unit, scale in (("TiB", 2**40), ("GiB", 2**30)):
        if n >= scale:
            return f"{n / scale:.1f} {unit}"
    return f"{n / 2**20:.0f} MiB"
