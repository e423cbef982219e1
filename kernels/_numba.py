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
imported): it needs I/O and logging, which kernels never do. How the cache is keyed is
decided here (``_KernelsCacheLocator``): by what the code is made of, not where the files
are or when they were touched, so a cache compiled where the offline bundle is built loads
on the gateway (machine code for ``NUMBA_CPU_NAME=generic``, set by the agent).
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

import numba
import numpy
from numba.core import caching, config, types
from numba.core.registry import CPUDispatcher

F = TypeVar("F", bound=Callable[..., Any])
_unliteral: Callable[[Any], Any] = types.unliteral  # numba is untyped
_config: Any = config
_caching: Any = caching

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


KERNELS_DIR = Path(__file__).resolve().parent


@functools.cache
def cache_name() -> str:
    """The name of the kernels' directory in the cache: what their machine code is made of.

    A hash of every source file of ``kernels/`` (a kernel links the code of the kernels it
    calls, which may be in another file: numba's own stamp is the caller's file alone) and
    of the versions of the compiler and of what the code calls into (numba, llvmlite,
    NumPy). Not the install path (numba's own subdirectory hashes it) nor mtimes (numba
    0.60 stamps those; pip and copies change them). Numba still checks its own version
    in each index, the Python version in each file name and the CPU (its magic tuple) in
    each entry's key: anything else is a miss, and a miss compiles.
    """
    digest = hashlib.sha256()
    llvmlite = importlib.import_module("llvmlite").__version__  # untyped
    for version in (numba.__version__, llvmlite, numpy.__version__, sys.implementation.cache_tag):
        digest.update(f"{version}\0".encode())
    for source in sorted(KERNELS_DIR.glob("*.py")):
        digest.update(f"{source.relative_to(KERNELS_DIR).as_posix()}\0".encode())
        digest.update(hashlib.sha256(source.read_bytes()).digest())
    return f"kernels-{digest.hexdigest()[:24]}"


class _KernelsCacheLocator(_caching._CacheLocator):  # type: ignore[misc]  # numba 0.60 .. 0.68
    """Numba's cache locator for the kernels in NUMBA_CACHE_DIR: ``cache_name()`` is the key.

    Registered first among numba's locators; it claims the functions of ``kernels/`` only
    and only with a cache directory set (else numba's own locators, beside the source).
    """

    def __init__(self, py_func: Any, py_file: str) -> None:
        self._py_file = py_file  # numba's warning about an uncachable function names it
        self._lineno = py_func.__code__.co_firstlineno
        self._cache_path = os.path.join(_config.CACHE_DIR, cache_name())

    def get_cache_path(self) -> str:
        return self._cache_path

    def get_source_stamp(self) -> str:
        return cache_name()

    def get_disambiguator(self) -> str:
        return str(self._lineno)

    @classmethod
    def from_function(cls, py_func: Any, py_file: str) -> _KernelsCacheLocator | None:
        if not _config.CACHE_DIR or Path(py_file).resolve().parent != KERNELS_DIR:
            return None
        self = cls(py_func, py_file)
        try:
            self.ensure_cache_path()
        except OSError:
            return None  # the next locator, as numba's own do; with none, the agent's fallback
        return self


if _KernelsCacheLocator not in _caching.CacheImpl._locator_classes:
    _caching.CacheImpl._locator_classes.insert(0, _KernelsCacheLocator)


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
