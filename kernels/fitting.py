"""Curve fits from field data: pump and fan curves, system curve, load characteristic.

All fits are robust (Huber IRLS) weighted least squares solved by Householder QR on
centred, scaled variables, so flows of 0.01 m^3/s and heads of 50 m produce a system
with condition number of order ten, not 1e12. They never raise: on degenerate input (too
few valid samples, collapsed flows that do not span a range, rank deficiency) they return
NaN coefficients.
"""

from __future__ import annotations

import numpy as np

from kernels._linalg import robust_lstsq
from kernels._numba import jit
from kernels._typing import FloatArray


@jit
def _binomial(n: int, k: int) -> float:
    out = 1.0
    for i in range(k):
        out = out * (n - i) / (i + 1)
    return out


@jit
def _fit_collapsed(
    flow: FloatArray,
    y: FloatArray,
    speed_ratio: FloatArray,
    weights: FloatArray,
    exponent: int,
    degree: int,
    huber_c: float,
    max_iter: int,
    tol: float,
    min_speed_ratio: float,
    min_relative_span: float,
) -> tuple[FloatArray, float]:
    """Robust fit of y / r^exponent = sum_j c_j (Q/r)^j; returns (c[0..degree], R^2).

    Residuals are weighted by weights * r^(2 exponent), i.e. measured in the units of the
    sensor, not of the collapsed variable: a head sensor's noise does not grow at low
    speed, so dividing by r^2 must not inflate those samples' influence.
    """
    m = degree + 1
    coeffs = np.full(m, np.nan)
    n_all = flow.shape[0]
    if y.shape[0] != n_all or speed_ratio.shape[0] != n_all or weights.shape[0] != n_all:
        return coeffs, np.nan
    q = np.empty(n_all)
    yc = np.empty(n_all)
    w = np.empty(n_all)
    n = 0
    for i in range(n_all):
        r = speed_ratio[i]
        ok = (
            np.isfinite(flow[i])
            and np.isfinite(y[i])
            and np.isfinite(r)
            and np.isfinite(weights[i])
            and weights[i] > 0.0
            and r >= min_speed_ratio
            and flow[i] >= 0.0
        )
        if ok:
            rp = r
            for _ in range(exponent - 1):
                rp *= r
            q[n] = flow[i] / r
            yc[n] = y[i] / rp
            w[n] = weights[i] * rp * rp
            n += 1
    if n < m + 2:
        return coeffs, np.nan
    q = q[:n]
    yc = yc[:n]
    w = w[:n]
    q_lo = q.min()
    q_hi = q.max()
    if not (q_hi - q_lo > min_relative_span * q_hi):
        return coeffs, np.nan
    centre = 0.5 * (q_hi + q_lo)
    half = 0.5 * (q_hi - q_lo)
    y_scale = np.abs(yc).max()
    if not (y_scale > 0.0):
        y_scale = 1.0
    w_scale = w.max()
    x = np.empty((m, n))
    ys = np.empty(n)
    for i in range(n):
        t = (q[i] - centre) / half
        tj = 1.0
        for j in range(m):
            x[j, i] = tj
            tj *= t
        ys[i] = yc[i] / y_scale
        w[i] /= w_scale
    beta, wt, ok = robust_lstsq(x, ys, w, huber_c, max_iter, tol, 1e-9)
    if not ok:
        return coeffs, np.nan
    # The span must also hold for the samples the fit trusts (Huber weight >= 1/2):
    # a handful of gross outliers must not pass for a range of operating points.
    t_lo = np.inf
    t_hi = -np.inf
    for i in range(n):
        if wt[i] >= 0.5 * w[i]:
            t_lo = min(t_lo, q[i])
            t_hi = max(t_hi, q[i])
    if not (t_hi - t_lo > min_relative_span * t_hi):
        return coeffs, np.nan
    # Weighted R^2 of the collapsed data under the final robust weights.
    sw = 0.0
    swy = 0.0
    for i in range(n):
        sw += wt[i]
        swy += wt[i] * ys[i]
    mean = swy / sw
    ss_res = 0.0
    ss_tot = 0.0
    for i in range(n):
        e = ys[i]
        for j in range(m):
            e -= beta[j] * x[j, i]
        ss_res += wt[i] * e * e
        ss_tot += wt[i] * (ys[i] - mean) ** 2
    r2 = 1.0 - ss_res / ss_tot if ss_tot > 0.0 else np.nan
    # Back from t = (q - centre) / half to monomials in q.
    for j in range(m):
        s = 0.0
        for k in range(j, m):
            s += beta[k] * _binomial(k, j) * (-centre) ** (k - j) / half**k
        coeffs[j] = s * y_scale
    for j in range(m):
        if not np.isfinite(coeffs[j]):
            coeffs[:] = np.nan
            return coeffs, np.nan
    return coeffs, r2


@jit
def fit_pump_curves(
    flow: FloatArray,
    head: FloatArray,
    power: FloatArray,
    speed_ratio: FloatArray,
    weights: FloatArray,
    huber_c: float = 1.345,
    max_iter: int = 50,
    tol: float = 1e-6,
    min_speed_ratio: float = 0.2,
    min_relative_span: float = 0.1,
) -> tuple[FloatArray, FloatArray, float, float]:
    """Fit affinity-law pump curves to multi-speed samples.

    Inputs per sample: flow [m^3/s], head [m], shaft power [W], speed ratio [-] and a
    weight (inverse variance; 1.0 if unknown). Samples are collapsed with q = Q/r,
    h = H/r^2, p = P/r^3 and fitted robustly (Huber, ``huber_c`` in MAD units; 0 for
    plain least squares). Samples with a non-finite value, weight <= 0, negative flow or
    r < ``min_speed_ratio`` are ignored; head and power are fitted independently, so a
    NaN head does not discard that sample's power.

    Returns ``(head_coeffs[3], power_coeffs[4], r2_head, r2_power)`` for
    H = a0 r^2 + a1 r Q + a2 Q^2 and P = b0 r^3 + b1 r^2 Q + b2 r Q^2 + b3 Q^3, and
    weighted R^2 of the collapsed data. A curve is NaN when fewer than m + 2 samples are
    valid or the collapsed flows span less than ``min_relative_span`` of their maximum
    (e.g. one speed at one flow, or a friction-only system where Q/r is constant: the
    pump curve is then simply not observable).
    """
    hc, r2h = _fit_collapsed(
        flow, head, speed_ratio, weights, 2, 2,
        huber_c, max_iter, tol, min_speed_ratio, min_relative_span,
    )
    pc, r2p = _fit_collapsed(
        flow, power, speed_ratio, weights, 3, 3,
        huber_c, max_iter, tol, min_speed_ratio, min_relative_span,
    )
    return hc, pc, r2h, r2p


@jit
def fit_fan_curves(
    flow: FloatArray,
    pressure: FloatArray,
    power: FloatArray,
    speed_ratio: FloatArray,
    weights: FloatArray,
    huber_c: float = 1.345,
    max_iter: int = 50,
    tol: float = 1e-6,
    min_speed_ratio: float = 0.2,
    min_relative_span: float = 0.1,
) -> tuple[FloatArray, FloatArray, float, float]:
    """Fan counterpart of ``fit_pump_curves``: pressure rise [Pa] in place of head [m].

    The fan laws are the pump affinity laws (dp ~ r^2, P ~ r^3 at constant density), so
    the fit is identical; coefficients are for dp(Q, r) and P(Q, r) in the same form.
    """
    return fit_pump_curves(
        flow, pressure, power, speed_ratio, weights,
        huber_c, max_iter, tol, min_speed_ratio, min_relative_span,
    )
