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

from numba.core import config, types
from numba.core.registry import CPUDispatcher

F = TypeVar("F", bound=Callable[..., Any])
_unliteral: Callable[[Any], Any] = types.unliteral  # numba is untyped
_config: Any = config

NUMBA_OPTIONS: dict[str, Any] = {
    "cache": True,
    "fastmath": False,
    "error_model": "numpy",
    "nogil": True,
}


class _Dispatcher(CPUDispatcher):
    """Numba's dispatcher, but a kernel called from a kernel compiles for its argument types only.

    Numba types a constant argument of a call between kernels as its literal value
    (``Literal[int](2)``) and compiles the callee once per constant, again for the same
    types called from Python: ``_fit_collapsed`` compiled twice for one pump fit, each
    ``*_tuned`` kernel once more for the agent. The arguments are widened to their types
    before the callee is compiled; the literal still converts to it, so the results are the
    same (no fastmath: LLVM may not reorder the arithmetic either way).
    """

    def get_call_template(self, args: Any, kws: Any) -> Any:
        return super().get_call_template(tuple(_unliteral(a) for a in args),
                                         {k: _unliteral(v) for k, v in kws.items()})


def jit(func: F) -> F:
    """Compile ``func`` with the project's Numba policy; keeps its static type for mypy.

    What ``njit(**NUMBA_OPTIONS)`` does, with the dispatcher above.
    """
    if _config.DISABLE_JIT:  # plain Python (the kernel tests' second run)
        return func
    options = {k: v for k, v in NUMBA_OPTIONS.items() if k != "cache"}
    dispatcher = _Dispatcher(py_func=func, locals={},
                             targetoptions={**options, "nopython": True, "boundscheck": None})
    if NUMBA_OPTIONS["cache"]:
        dispatcher.enable_caching()
    return cast(F, dispatcher)
