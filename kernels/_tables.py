"""Piecewise-linear lookup tables shared by baselines and part-load efficiency."""

from __future__ import annotations

import numpy as np

from kernels._numba import jit
from kernels._typing import FloatArray


@jit
def table_is_valid(xp: FloatArray, fp: FloatArray) -> bool:
    """True if ``xp`` is strictly increasing, finite, and as long as finite ``fp``."""
    n = xp.shape[0]
    if n == 0 or fp.shape[0] != n:
        return False
    for i in range(n):
        if not (np.isfinite(xp[i]) and np.isfinite(fp[i])):
            return False
        if i > 0 and not xp[i] > xp[i - 1]:
            return False
    return True


@jit
def interp_clamped(x: float, xp: FloatArray, fp: FloatArray) -> float:
    """Linear interpolation of ``fp(xp)`` at ``x``, held constant beyond the ends.

    Returns NaN for NaN ``x`` or an invalid table (empty, unequal lengths, non-finite or
    not strictly increasing ``xp``), where ``np.interp`` would silently return garbage.
    """
    if not table_is_valid(xp, fp):
        return np.nan
    return interp_valid(x, xp, fp)


@jit
def interp_valid(x: float, xp: FloatArray, fp: FloatArray) -> float:
    """``interp_clamped`` for a table already checked by ``table_is_valid`` (hot loops)."""
    if np.isnan(x):
        return np.nan
    n = xp.shape[0]
    if x <= xp[0]:
        return float(fp[0])
    if x >= xp[n - 1]:
        return float(fp[n - 1])
    # Tables hold 5-20 points: a linear scan beats bisection's branches.
    i = 1
    while xp[i] < x:
        i += 1
    w = (x - xp[i - 1]) / (xp[i] - xp[i - 1])
    return float(fp[i - 1] + w * (fp[i] - fp[i - 1]))
