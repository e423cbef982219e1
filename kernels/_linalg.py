"""Small dense least-squares solvers written out for Numba (no LAPACK call).

Systems here are tall and thin (thousands of rows, at most four unknowns), so a
hand-written Householder QR on a row-major (columns-as-rows) matrix is faster to compile
and to run than a general LAPACK path, and stays accurate where normal equations square
the condition number.
"""

from __future__ import annotations

import numpy as np

from kernels._numba import jit
from kernels._typing import FloatArray


@jit
def _row_dot(a: FloatArray, j: int, k: int, start: int) -> float:
    """Sum of a[j, i] * a[k, i] for i >= start, with four accumulators.

    fastmath is off (see _numba), so LLVM may not reorder a single running sum; four
    independent partial sums recover most of the throughput with a fixed, deterministic
    summation order.
    """
    n = a.shape[1]
    s0 = 0.0
    s1 = 0.0
    s2 = 0.0
    s3 = 0.0
    i = start
    while i + 3 < n:
        s0 += a[j, i] * a[k, i]
        s1 += a[j, i + 1] * a[k, i + 1]
        s2 += a[j, i + 2] * a[k, i + 2]
        s3 += a[j, i + 3] * a[k, i + 3]
        i += 4
    while i < n:
        s0 += a[j, i] * a[k, i]
        i += 1
    return (s0 + s1) + (s2 + s3)


@jit
def householder_lstsq(a: FloatArray, m: int, rank_tol: float) -> tuple[FloatArray, float, bool]:
    """Solve min ||X beta - y|| by Householder QR, destroying ``a``.

    ``a`` has shape (m + 1, n): rows 0..m-1 are the columns of X, row m is y (already
    multiplied by the square roots of the weights), so every reflection runs along
    contiguous memory. Returns (beta, residual sum of squares, ok); ok is False when a
    column is numerically dependent on the previous ones (|R_jj| <= rank_tol * ||X_j||)
    or anything is non-finite, and beta is then NaN.
    """
    n = a.shape[1]
    beta = np.full(m, np.nan)
    if n < m:
        return beta, np.nan, False
    col_norm = np.empty(m)
    for j in range(m):
        col_norm[j] = np.sqrt(_row_dot(a, j, j, 0))
    diag = np.empty(m)
    for j in range(m):
        norm = np.sqrt(_row_dot(a, j, j, j))
        if not (np.isfinite(norm) and norm > rank_tol * col_norm[j] and norm > 0.0):
            return beta, np.nan, False
        x0 = a[j, j]
        alpha = -norm if x0 >= 0.0 else norm
        a[j, j] = x0 - alpha
        vtv = 2.0 * norm * (norm + abs(x0))
        for k in range(j + 1, m + 1):
            f = 2.0 * _row_dot(a, j, k, j) / vtv
            for i in range(j, n):
                a[k, i] -= f * a[j, i]
        diag[j] = alpha
    # Back substitution: R[j, k] = a[k, j] for k > j, R[j, j] = diag[j], (Q^T y)[j] = a[m, j].
    for j in range(m - 1, -1, -1):
        s = a[m, j]
        for k in range(j + 1, m):
            s -= a[k, j] * beta[k]
        beta[j] = s / diag[j]
    rss = _row_dot(a, m, m, m)
    for j in range(m):
        if not np.isfinite(beta[j]):
            beta[:] = np.nan
            return beta, np.nan, False
    return beta, rss, True


@jit
def mad_scale(absu: FloatArray, max_samples: int) -> float:
    """Normalised median absolute deviation of |residuals| (Gaussian-consistent sigma).

    Uses an evenly strided subsample of at most ``max_samples`` values: the scale only
    sets the Huber threshold, and a MAD from 1000 samples is already within a few percent,
    while a full selection on every IRLS pass would dominate the fit's run time.
    """
    n = absu.shape[0]
    if n == 0:
        return np.nan
    stride = max(1, (n + max_samples - 1) // max_samples)
    sample = np.empty((n + stride - 1) // stride)
    for i in range(sample.shape[0]):
        sample[i] = absu[i * stride]
    return 1.482602218505602 * median_destroying(sample)


@jit
def median_destroying(values: FloatArray) -> float:
    """``np.median(values)``, reordering ``values``; NaN if empty or any value is NaN.

    Hoare's selection, written out: Numba's ``np.median`` compiles its own selection and
    partition functions into every process that compiles a fit (~1.3 s of a cold warm-up).
    """
    n = values.shape[0]
    if n == 0:
        return np.nan
    for i in range(n):
        if values[i] != values[i]:
            return np.nan
    half = n // 2
    lo = 0
    hi = n - 1
    while lo < hi:  # afterwards values[:half] <= values[half] <= values[half + 1:]
        pivot = values[(lo + hi) // 2]
        i = lo
        j = hi
        while i <= j:
            while values[i] < pivot:
                i += 1
            while values[j] > pivot:
                j -= 1
            if i <= j:
                t = values[i]
                values[i] = values[j]
                values[j] = t
                i += 1
                j -= 1
        if half <= j:
            hi = j
        elif half >= i:
            lo = i
        else:
            break
    upper: float = values[half]
    if n % 2 == 1:
        return upper
    lower: float = values[0]
    for i in range(1, half):
        lower = max(lower, values[i])
    return (lower + upper) / 2


@jit
def _weighted_gram_solve(
    x: FloatArray, y: FloatArray, w: FloatArray, beta: FloatArray
) -> bool:
    """Cheap IRLS step: solve the weighted normal equations by Cholesky into ``beta``.

    Only used between IRLS passes on an O(1)-scaled basis, where the Gram matrix has a
    condition number of order 1e2-1e4, so squaring it costs nothing that matters; the
    final coefficients always come from QR. Accumulates into scalars (m <= 4) so the
    single pass over the samples stays in registers. Returns False if not positive
    definite (the caller then lets QR decide about rank).
    """
    m = x.shape[0]
    n = x.shape[1]
    g00 = g10 = g11 = g20 = g21 = g22 = g30 = g31 = g32 = g33 = 0.0
    c0 = c1 = c2 = c3 = 0.0
    for i in range(n):
        wi = w[i]
        x0 = x[0, i]
        x1 = x[1, i] if m > 1 else 0.0
        x2 = x[2, i] if m > 2 else 0.0
        x3 = x[3, i] if m > 3 else 0.0
        w0 = wi * x0
        w1 = wi * x1
        w2 = wi * x2
        w3 = wi * x3
        g00 += w0 * x0
        g10 += w1 * x0
        g11 += w1 * x1
        g20 += w2 * x0
        g21 += w2 * x1
        g22 += w2 * x2
        g30 += w3 * x0
        g31 += w3 * x1
        g32 += w3 * x2
        g33 += w3 * x3
        yi = y[i]
        c0 += w0 * yi
        c1 += w1 * yi
        c2 += w2 * yi
        c3 += w3 * yi
    g = np.empty((4, 4))
    g[0, 0] = g00
    g[1, 0] = g10
    g[1, 1] = g11
    g[2, 0] = g20
    g[2, 1] = g21
    g[2, 2] = g22
    g[3, 0] = g30
    g[3, 1] = g31
    g[3, 2] = g32
    g[3, 3] = g33
    c = np.array([c0, c1, c2, c3])
    # In-place Cholesky of the leading m x m block (lower triangle).
    for j in range(m):
        d = g[j, j]
        for k in range(j):
            d -= g[j, k] * g[j, k]
        if not (d > 1e-13 * g[j, j]) or not np.isfinite(d):
            return False
        d = np.sqrt(d)
        g[j, j] = d
        for i2 in range(j + 1, m):
            s = g[i2, j]
            for k in range(j):
                s -= g[i2, k] * g[j, k]
            g[i2, j] = s / d
    for j in range(m):
        s = c[j]
        for k in range(j):
            s -= g[j, k] * c[k]
        c[j] = s / g[j, j]
    for j in range(m - 1, -1, -1):
        s = c[j]
        for k in range(j + 1, m):
            s -= g[k, j] * beta[k]
        beta[j] = s / g[j, j]
    return True


@jit
def robust_lstsq(
    x: FloatArray,
    y: FloatArray,
    w: FloatArray,
    huber_c: float,
    max_iter: int,
    tol: float,
    rank_tol: float,
) -> tuple[FloatArray, FloatArray, bool]:
    """Huber M-estimate of y ~ beta . x by iteratively reweighted least squares.

    ``x`` is (m, n) basis values, m <= 4, one row per basis function, already scaled to
    O(1); ``y`` (n,) targets; ``w`` (n,) positive prior weights (inverse variances).
    The residual scale is re-estimated each pass by the normalised median absolute
    deviation, and samples beyond ``huber_c`` scales get weight c / |u|
    (``huber_c = 1.345``: 95 % efficiency on Gaussian noise; ``<= 0``: plain weighted
    least squares). Passes stop when no coefficient moves by more than ``tol`` (the basis
    is O(1), so this is relative) or after ``max_iter``. Intermediate passes use the
    normal equations (cheap, harmless at O(1) scaling); the returned coefficients are a
    Householder QR solve with the final weights, which also decides rank deficiency.

    Returns (beta, final weights = prior x Huber, ok).
    """
    m = x.shape[0]
    n = x.shape[1]
    wt = w.copy()
    beta = np.zeros(m)
    new = np.zeros(m)
    if huber_c > 0.0 and _weighted_gram_solve(x, y, wt, beta):
        sqrt_w = np.sqrt(w)
        absu = np.empty(n)
        for _ in range(max_iter):
            for i in range(n):
                e = y[i]
                for j in range(m):
                    e -= beta[j] * x[j, i]
                absu[i] = abs(e) * sqrt_w[i]
            scale = mad_scale(absu, 1024)
            if not (scale > 0.0):
                break  # at least half the samples fit exactly: nothing to down-weight
            cut = huber_c * scale
            for i in range(n):
                wt[i] = w[i] * min(1.0, cut / absu[i])
            if not _weighted_gram_solve(x, y, wt, new):
                break
            delta = 0.0
            for j in range(m):
                delta = max(delta, abs(new[j] - beta[j]))
                beta[j] = new[j]
            if delta <= tol:
                break
    a = np.empty((m + 1, n))
    for i in range(n):
        sw = np.sqrt(wt[i])
        for j in range(m):
            a[j, i] = sw * x[j, i]
        a[m, i] = sw * y[i]
    beta, _rss, ok = householder_lstsq(a, m, rank_tol)
    return beta, wt, ok
