"""Numba policy for every kernel: one decorator, one set of flags.

Why these flags:

- ``cache=True``: machine code is written to Numba's on-disk cache, whose location the
  agent chooses with the ``NUMBA_CACHE_DIR`` environment variable before ``kernels`` is
  imported. A gateway then compiles once per install (``vfd-agent warmup``), not per start.
- ``fastmath=False``: kernels rely on IEEE NaN and inf semantics (``x != x``, ``np.isnan``,
  comparisons that are false for NaN). fastmath's ``nnan``/``ninf`` flags would let LLVM
  delete exactly those checks, so it stays off; the kernels are small and not
  vectorisation-bound, so there is little to gain.
- ``error_model="numpy"``: a division by zero yields inf/NaN instead of raising
  ``ZeroDivisionError``. Kernels must never raise on field data; they test their results
  and return NaN where an answer does not exist.
- ``nogil=True``: lets the agent run a refit in a worker thread without holding the GIL.

Every kernel is compiled lazily (no explicit signatures) on first call and then loaded from
the cache; ``kernels.warmup()`` forces that for every public kernel, ``warmup(names)`` for
some. Each kernel loaded costs the process memory (LLVM keeps its code), so the agent
loads only those its config calls (``agent.numba_cache.kernels_for``).

Where the cache lives is the agent's decision (``agent.numba_cache``, before ``kernels`` is
imported): it needs I/O and logging, which kernels never do.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar, cast

from numba import njit

F = TypeVar("F", bound=Callable[..., Any])

NUMBA_OPTIONS: dict[str, Any] = {
    "cache": True,
    "fastmath": False,
    "error_model": "numpy",
    "nogil": True,
}


def jit(func: F) -> F:
    """Compile ``func`` with the project's Numba policy; keeps its static type for mypy."""
    return cast(F, njit(**NUMBA_OPTIONS)(func))
