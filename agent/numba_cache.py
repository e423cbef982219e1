"""Where Numba keeps compiled kernels: decided once, before ``kernels`` is imported.

On a gateway the first compile of every kernel takes far longer than a poll
interval, so the service compiles them once (``vfd-agent warmup``) into a
cache directory it can write under ``ProtectSystem=strict``. Precedence: an
explicit NUMBA_CACHE_DIR, then systemd's CACHE_DIRECTORY, then the caller's
default; with none of them Numba caches beside the kernels' source.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path


def configure_numba_cache(default: Path | None = None) -> Path | None:
    """Set NUMBA_CACHE_DIR for this process and its children; returns the directory used."""
    if "kernels" in sys.modules or "numba" in sys.modules:
        current = os.environ.get("NUMBA_CACHE_DIR")
        return Path(current) if current else None  # too late to change; report what is in force
    explicit = os.environ.get("NUMBA_CACHE_DIR")
    if explicit:
        return Path(explicit)
    systemd_cache = os.environ.get("CACHE_DIRECTORY")
    chosen = Path(systemd_cache.split(":")[0]) / "numba" if systemd_cache else default
    if chosen is not None:
        os.environ["NUMBA_CACHE_DIR"] = str(chosen)
    return chosen
