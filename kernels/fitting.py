"""Curve fits from field data: pump and fan curves, system curve, load characteristic.

All fits are robust (Huber IRLS) weighted least squares solved by Householder QR on
centred, scaled variables, so flows of 0.01 m^3/s and heads of 50 m produce a system
with condition number of order ten, not 1e12. They never raise: on degenerate input (too
few valid samples, collapsed flows that do not span a range, rank deficiency) they return
NaN coefficients.

Long because the three fits share one robust core and one weighted R² (private kernels
that Numba inlines best from the same module); split, each would reach into the others.
"""

from __future__ import annotations

import numpy as np

from kernels._linalg import robust_lstsq
from kernels._numba import jit
from kernels._typing import FloatArray

# The untuned fits' settings, for a caller that wants them without compiling the untuned
# wrapper too (a kernel of its own: ~0.8 s of a cold warm-up each): huber_c, max_iter, tol,
# min_speed_ratio (pump curves only), min_relative_span. The wrappers use these.
PUMP_FIT_DEFAULTS = (1.345, 50, 1e-5, 0.2, 0.1)
SYSTEM_FIT_DEFAULTS = (1.345, 50, 1e-5, 0.1)


@jit
def _binomial(n: int, k: int) -> float:
    out = 1.0
    for i in range(k):
        out = out * (n - i) / (i + 1)
    return out


@jit
def _extent(values: FloatArray) -> tuple[float, float, float]:
    """(min, max, max |v|) of finite ``values`` in one loop.

    Not ``values.min()`` etc.: Numba compiles its NaN-aware array reductions anew into
    every process that compiles a fit (~0.6 s of a cold warm-up); the fits filter NaN out
    first, so a plain loop gives the same numbers.
    """
    lo = np.inf
    hi = -np.inf
    top = 0.0
    for i in range(values.shape[0]):
        v = values[i]
        lo = min(lo, v)
        hi = max(hi, v)
        top = max(top, abs(v))
    return lo, hi, top


@jit
def _weighted_r2(x: FloatArray, ys: FloatArray, beta: FloatArray, wt: FloatArray) -> float:
    """R² of ``ys ≈ betaᵀx`` under the robust weights, so outliers the fit discounted don't count."""
    m, n = x.shape
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
    return 1.0 - ss_res / ss_tot if ss_tot > 0.0 else np.nan


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
    q_lo, q_hi, _ = _extent(q)
    if not (q_hi - q_lo > min_relative_span * q_hi):
        return coeffs, np.nan
    centre = 0.5 * (q_hi + q_lo)
    half = 0.5 * (q_hi - q_lo)
    y_scale = _extent(yc)[2]
    if not (y_scale > 0.0):
        y_scale = 1.0
    w_scale = _extent(w)[1]
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
    r2 = _weighted_r2(x, ys, beta, wt)
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
) -> tuple[FloatArray, FloatArray, float, float]:
    """Fit affinity-law pump curves with default tolerances (see ``fit_pump_curves_tuned``).

    Huber c = 1.345, at most 50 IRLS passes, tol 1e-5, samples below 0.2 speed ignored,
    collapsed flows must span at least 10 % of their maximum.
    """
    return fit_pump_curves_tuned(flow, head, power, speed_ratio, weights, *PUMP_FIT_DEFAULTS)


@jit
def fit_pump_curves_tuned(
    flow: FloatArray,
    head: FloatArray,
    power: FloatArray,
    speed_ratio: FloatArray,
    weights: FloatArray,
    huber_c: float,
    max_iter: int,
    tol: float,
    min_speed_ratio: float,
    min_relative_span: float,
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
) -> tuple[FloatArray, FloatArray, float, float]:
    """Fan counterpart of ``fit_pump_curves``: pressure rise [Pa] in place of head [m].

    The fan laws are the pump affinity laws (dp ~ r^2, P ~ r^3 at constant density), so
    the fit is identical; coefficients are for dp(Q, r) and P(Q, r) in the same form.
    Use ``fit_pump_curves_tuned`` to change the tolerances.
    """
    return fit_pump_curves(flow, pressure, power, speed_ratio, weights)


@jit
def fit_system_curve(flow: FloatArray, head: FloatArray) -> tuple[float, float]:
    """``fit_system_curve_tuned`` with Huber c = 1.345, 50 passes, tol 1e-5, span 10 %."""
    return fit_system_curve_tuned(flow, head, *SYSTEM_FIT_DEFAULTS)


@jit
def system_curve_r_squared(flow: FloatArray, head: FloatArray, h_static: float, k: float) -> float:
    """R² of the system curve H_st + k Q^2 over operating points (the fits' own R², unweighted).

    NaN when the heads do not vary (nothing for a curve to explain).
    """
    n = flow.shape[0]
    x = np.empty((2, n))
    for i in range(n):
        x[0, i] = 1.0
        x[1, i] = flow[i] * flow[i]
    return _weighted_r2(x, head, np.array([h_static, k]), np.ones(n))


@jit
def fit_system_curve_tuned(
    flow: FloatArray,
    head: FloatArray,
    huber_c: float,
    max_iter: int,
    tol: float,
    min_relative_span: float,
) -> tuple[float, float]:
    """Fit H_sys = H_st + k Q^2 to operating points; returns (h_static [m], k [s^2/m^5]).

    Robust (Huber) least squares in u = Q^2, then the constraints H_st >= 0, k >= 0: if
    the free fit violates one, the better of the two one-parameter fits on the boundary
    (same robust weights) is taken, which is the exact solution of the two-variable
    non-negative problem. NaN for fewer than 4 valid samples (finite, Q >= 0) or when
    Q^2 spans less than ``min_relative_span`` of its maximum: with one operating point
    static head and friction cannot be told apart.
    """
    n_all = flow.shape[0]
    if head.shape[0] != n_all:
        return np.nan, np.nan
    u = np.empty(n_all)
    h = np.empty(n_all)
    n = 0
    for i in range(n_all):
        if np.isfinite(flow[i]) and np.isfinite(head[i]) and flow[i] >= 0.0:
            u[n] = flow[i] * flow[i]
            h[n] = head[i]
            n += 1
    if n < 4:
        return np.nan, np.nan
    u = u[:n]
    h = h[:n]
    u_lo, u_hi, _ = _extent(u)
    if not (u_hi - u_lo > min_relative_span * u_hi):
        return np.nan, np.nan
    centre = 0.5 * (u_hi + u_lo)
    half = 0.5 * (u_hi - u_lo)
    h_scale = _extent(h)[2]
    if not (h_scale > 0.0):
        h_scale = 1.0
    x = np.empty((2, n))
    ys = np.empty(n)
    for i in range(n):
        x[0, i] = 1.0
        x[1, i] = (u[i] - centre) / half
        ys[i] = h[i] / h_scale
    beta, wt, ok = robust_lstsq(x, ys, np.ones(n), huber_c, max_iter, tol, 1e-9)
    if not ok:
        return np.nan, np.nan
    k_s = beta[1] / half  # per unit of u, in scaled head
    hs_s = beta[0] - beta[1] * centre / half
    if hs_s >= 0.0 and k_s >= 0.0:
        return hs_s * h_scale, k_s * h_scale
    # Boundary candidates with the robust weights: H_st = 0, or k = 0.
    swuu = 0.0
    swuy = 0.0
    sw = 0.0
    swy = 0.0
    for i in range(n):
        swuu += wt[i] * u[i] * u[i]
        swuy += wt[i] * u[i] * ys[i]
        sw += wt[i]
        swy += wt[i] * ys[i]
    k_only = max(0.0, swuy / swuu) if swuu > 0.0 else 0.0
    hs_only = max(0.0, swy / sw)
    sse_k = 0.0
    sse_h = 0.0
    for i in range(n):
        sse_k += wt[i] * (ys[i] - k_only * u[i]) ** 2
        sse_h += wt[i] * (ys[i] - hs_only) ** 2
    if sse_k <= sse_h:
        return 0.0, k_only * h_scale
    return hs_only * h_scale, 0.0


@jit
def _load_basis(r: float, r0: float) -> float:
    """Flow-like variable x = sqrt((r^2 - r0^2) / (1 - r0^2)), 0 below r0 (x(1) = 1)."""
    if r <= r0:
        return 0.0
    return float(np.sqrt((r * r - r0 * r0) / (1.0 - r0 * r0)))


@jit
def load_power(load_coeffs: FloatArray, r: float) -> float:
    """Power [W] at speed ratio r from ``fit_load_characteristic`` coefficients."""
    x = _load_basis(r, load_coeffs[0])
    return float(load_coeffs[1] + (load_coeffs[2] + load_coeffs[3] * x * x) * x)


@jit
def fit_load_characteristic(speed_ratio: FloatArray, power: FloatArray) -> tuple[FloatArray, float]:
    """``fit_load_characteristic_tuned`` with Huber c = 1.345, 50 passes, tol 1e-5, 10 %."""
    return fit_load_characteristic_tuned(speed_ratio, power, 1.345, 50, 1e-5, 0.1)


@jit
def fit_load_characteristic_tuned(
    speed_ratio: FloatArray,
    power: FloatArray,
    huber_c: float,
    max_iter: int,
    tol: float,
    min_relative_span: float,
) -> tuple[FloatArray, float]:
    """Fit power [W] against speed ratio along the plant's own system curve.

    For drives without flow or pressure sensors. Model (ideal radial pump on
    H_sys = H_st + k Q^2, constant efficiency): flow starts at the speed r0 where the
    shut-off head reaches H_st, and the flow ratio is x = sqrt((r^2 - r0^2)/(1 - r0^2));
    hydraulic power ~ Q H_sys = x (s + (1 - s) x^2) with s = H_st / H_duty, so

        P(r) = c_loss + c1 x + c3 x^3,     s = c1 / (c1 + c3).

    r0 is found by a 41-point profile search over [0, 0.98 min r] with robust weights,
    the linear part by Huber IRLS. Returns ``(coeffs[6], r2)`` with coeffs = (r0,
    c_loss, c1, c3, s_min, s_max), where [s_min, s_max] is the range of s over the r0
    values whose fit is not significantly worse (about a 95 % profile interval).
    All NaN for fewer than 6 valid samples (finite, r > 0) or speeds spanning less than
    ``min_relative_span`` of the highest: one speed says nothing about the shape.
    """
    out = np.full(6, np.nan)
    n_all = speed_ratio.shape[0]
    if power.shape[0] != n_all:
        return out, np.nan
    r = np.empty(n_all)
    p = np.empty(n_all)
    n = 0
    for i in range(n_all):
        if np.isfinite(speed_ratio[i]) and np.isfinite(power[i]) and speed_ratio[i] > 0.0:
            r[n] = speed_ratio[i]
            p[n] = power[i]
            n += 1
    if n < 6:
        return out, np.nan
    r = r[:n]
    p = p[:n]
    r_lo, r_hi, _ = _extent(r)
    if not (r_hi - r_lo > min_relative_span * r_hi) or r_lo >= 1.0:
        return out, np.nan
    p_scale = _extent(p)[2]
    if not (p_scale > 0.0):
        p_scale = 1.0
    ys = p / p_scale
    x = np.empty((3, n))
    n_grid = 41
    sse = np.empty(n_grid)
    share = np.empty(n_grid)
    r0s = np.empty(n_grid)
    weights = np.ones(n)
    for g in range(n_grid):
        r0 = 0.98 * r_lo * g / (n_grid - 1)
        r0s[g] = r0
        for i in range(n):
            xi = _load_basis(r[i], r0)
            x[0, i] = 1.0
            x[1, i] = xi
            x[2, i] = xi * xi * xi
        # Robust weights from the r0 = 0 fit, then fixed, so profiles are comparable.
        beta, wt, ok = robust_lstsq(x, ys, weights, huber_c if g == 0 else 0.0,
                                    max_iter, tol, 1e-9)
        if g == 0:
            if not ok:
                return out, np.nan
            weights = wt
        s = 0.0
        for i in range(n):
            e = ys[i] - beta[0] - beta[1] * x[1, i] - beta[2] * x[2, i]
            s += weights[i] * e * e
        sse[g] = s if ok else np.inf
        share[g] = beta[1] / (beta[1] + beta[2]) if ok else np.nan
    best = int(np.argmin(sse))
    if not np.isfinite(sse[best]):
        return out, np.nan
    limit = sse[best] * (1.0 + 4.0 / max(1, n - 4))
    s_min = np.inf
    s_max = -np.inf
    for g in range(n_grid):
        if sse[g] <= limit:
            s_min = min(s_min, share[g])
            s_max = max(s_max, share[g])
    if not (s_min <= s_max):  # s undefined anywhere in the interval (e.g. c1 + c3 = 0)
        s_min = np.nan
        s_max = np.nan
    r0 = r0s[best]
    for i in range(n):
        xi = _load_basis(r[i], r0)
        x[0, i] = 1.0
        x[1, i] = xi
        x[2, i] = xi * xi * xi
    beta, wt, ok = robust_lstsq(x, ys, np.ones(n), huber_c, max_iter, tol, 1e-9)
    if not ok:
        return out, np.nan
    r2 = _weighted_r2(x, ys, beta, wt)
    out[0] = r0
    out[1] = beta[0] * p_scale
    out[2] = beta[1] * p_scale
    out[3] = beta[2] * p_scale
    out[4] = s_min
    out[5] = s_max
    return out, r2


@jit
def static_head_share(load_coeffs: FloatArray, max_spread: float) -> float:
    """Static share H_st / H_duty [-] of the duty head, read from a load characteristic.

    s = c1 / (c1 + c3) from ``fit_load_characteristic``. NaN when the data do not pin it
    down (the profile range s_max - s_min exceeds ``max_spread``, 0.2 is a sensible
    choice; typical when the drive
    never ran near the zero-flow speed) or when s falls clearly outside [0, 1]; values
    just outside are clipped. Below about 0.7 speed control still saves much; above it
    savings shrink fast (DESIGN.md).
    """
    c1 = load_coeffs[2]
    c3 = load_coeffs[3]
    spread = load_coeffs[5] - load_coeffs[4]
    if not (spread <= max_spread) or not (c1 + c3 > 0.0):
        return np.nan
    s = c1 / (c1 + c3)
    if not (-0.1 <= s <= 1.1):
        return np.nan
    return float(min(1.0, max(0.0, s)))
