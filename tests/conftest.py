"""Test-wide settings, in one place.

Numba compiles each kernel once per run into the on-disk cache below, shared
by this process and every agent or simulator process the tests start.
"""

from __future__ import annotations

import os
from pathlib import Path

from agent.numba_cache import choose_cpu

REPO = Path(__file__).resolve().parent.parent
os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
choose_cpu()  # the agent's machine code (generic), so its processes load what this one compiled
