"""Recursive least squares with exponential forgetting, for online refits.

State layout: one float64 array of shape (m + 1, m) for m parameters,

    state[0]      theta, the current coefficient estimate (m,)
    state[1:]     P, the m x m covariance matrix (scaled by the noise variance)

so the agent stores one array per drive and curve, with no history. Regressors should be
scaled to O(1) (e.g. Q / Q_rated instead of m^3/s), otherwise P spans many decades and
the update loses precision; the returned coefficients are then in those scaled units.
"""

from __future__ import annotations

import numpy as np

from kernels._numba import jit
from kernels._typing import FloatArray


@jit
def rls_init(n_params: int, p0: float) -> FloatArray:
    """Fresh RLS state: theta = 0 and P = p0 I (large p0 = little trust in theta = 0)."""
    state = np.zeros((n_params + 1, n_params))
    for i in range(n_params):
        state[1 + i, i] = p0
    return state


@jit
def rls_update(state: FloatArray, x: FloatArray, y: float, forgetting: float) -> float:
    """``rls_update_bounded`` with a covariance trace bound of 1e9 (O(1) regressors)."""
    return rls_update_bounded(state, x, y, forgetting, 1e9)


@jit
def rls_update_bounded(
    state: FloatArray, x: FloatArray, y: float, forgetting: float, max_trace: float
) -> float:
    """Fold one sample y ~ theta . x into ``state`` in place; returns the a-priori error.

    ``forgetting`` lambda in (0, 1]: the effective memory is about 1 / (1 - lambda)
    samples. P is kept symmetric, and it is divided by lambda only while its trace is
    below ``max_trace``: without new excitation (a drive parked at one speed) plain
    exponential forgetting lets P grow without bound ("wind-up"), after which one noisy
    sample would throw theta anywhere. Samples with a non-finite value, or an invalid
    lambda or state shape, leave the state untouched and return NaN.
    """
    m = x.shape[0]
    if state.shape[0] != m + 1 or state.shape[1] != m:
        return np.nan
    if not (0.0 < forgetting <= 1.0) or not np.isfinite(y):
        return np.nan
    for i in range(m):
        if not np.isfinite(x[i]):
            return np.nan
    theta = state[0]
    p = state[1:]
    px = np.zeros(m)
    for i in range(m):
        s = 0.0
        for j in range(m):
            s += p[i, j] * x[j]
        px[i] = s
    denom = forgetting
    err = y
    for i in range(m):
        denom += x[i] * px[i]
        err -= theta[i] * x[i]
    if not (denom > 0.0 and np.isfinite(denom)):
        return np.nan
    trace = 0.0
    for i in range(m):
        theta[i] += px[i] * err / denom
    for i in range(m):
        for j in range(i, m):
            v = p[i, j] - px[i] * px[j] / denom
            p[i, j] = v
            p[j, i] = v
        trace += p[i, i]
    if trace < max_trace:
        for i in range(m):
            for j in range(m):
                p[i, j] /= forgetting
    return err


@jit
def rls_coeffs(state: FloatArray) -> FloatArray:
    """Copy of the current coefficient estimate theta from an RLS state."""
    theta: FloatArray = state[0].copy()
    return theta
