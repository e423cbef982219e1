"""Affinity-scaled pump and fan curves: head, shaft power, efficiency, best-efficiency flow.

Coefficient conventions (DESIGN.md), valid for pumps (head H [m]) and fans (pressure
[Pa] in place of head):

    H(Q, r) = a0 r^2 + a1 r Q + a2 Q^2               head_coeffs  = (a0, a1, a2)
    P(Q, r) = b0 r^3 + b1 r^2 Q + b2 r Q^2 + b3 Q^3  power_coeffs = (b0, b1, b2, b3)

with Q [m^3/s], P [W] shaft power and r = n / n_rated. Both are the rated-speed curves
H1(q), P1(q) scaled by the affinity laws: H = r^2 H1(Q/r), P = r^3 P1(Q/r). Hence
efficiency depends on Q/r only, and the best-efficiency flow scales with r.
"""

from __future__ import annotations

import numpy as np

from kernels._numba import jit
from kernels._typing import FloatArray

G = 9.80665  # standard gravity [m/s^2]


@jit
def head(head_coeffs: FloatArray, flow: float, r: float) -> float:
    """Pump head [m] (or fan pressure [Pa]) at flow [m^3/s] and speed ratio r."""
    return float(
        head_coeffs[0] * r * r + head_coeffs[1] * r * flow + head_coeffs[2] * flow * flow
    )


@jit
def shaft_power(power_coeffs: FloatArray, flow: float, r: float) -> float:
    """Shaft power [W] at flow [m^3/s] and speed ratio r (Horner form in Q)."""
    return float(
        ((power_coeffs[3] * flow + power_coeffs[2] * r) * flow + power_coeffs[1] * r * r) * flow
        + power_coeffs[0] * r * r * r
    )


@jit
def efficiency(
    head_coeffs: FloatArray, power_coeffs: FloatArray, flow: float, r: float, density: float
) -> float:
    """Pump hydraulic efficiency rho g Q H / P [-]; density in kg/m^3.

    NaN outside the physical region (negative flow, head or shaft power), where the
    ratio would be a number without meaning.
    """
    h = head(head_coeffs, flow, r)
    p = shaft_power(power_coeffs, flow, r)
    if not (flow >= 0.0 and h >= 0.0 and p > 0.0 and density > 0.0):
        return np.nan
    eta = density * G * flow * h / p
    return eta if np.isfinite(eta) else np.nan  # p can be positive yet subnormal


@jit
def fan_pressure(pressure_coeffs: FloatArray, flow: float, r: float) -> float:
    """Fan pressure rise [Pa] at flow [m^3/s] and speed ratio r (same form as head)."""
    return head(pressure_coeffs, flow, r)


@jit
def fan_efficiency(
    pressure_coeffs: FloatArray, power_coeffs: FloatArray, flow: float, r: float
) -> float:
    """Fan efficiency Q dp / P [-] (pressure in Pa already carries the density)."""
    dp = head(pressure_coeffs, flow, r)
    p = shaft_power(power_coeffs, flow, r)
    if not (flow >= 0.0 and dp >= 0.0 and p > 0.0):
        return np.nan
    eta = flow * dp / p
    return eta if np.isfinite(eta) else np.nan


@jit
def runout_flow(head_coeffs: FloatArray) -> float:
    """Flow [m^3/s] at rated speed where the head falls to zero; NaN if it never does."""
    a0 = head_coeffs[0]
    a1 = head_coeffs[1]
    a2 = head_coeffs[2]
    if not (np.isfinite(a0) and np.isfinite(a1) and np.isfinite(a2)) or a0 <= 0.0:
        return np.nan
    if a2 == 0.0:
        q = -a0 / a1 if a1 < 0.0 else np.nan
        return q if np.isfinite(q) else np.nan  # a subnormal a1 overflows the division
    disc = a1 * a1 - 4.0 * a2 * a0
    if disc < 0.0:
        return np.nan
    # a0 > 0: H(0) > 0, so the first sign change is the smallest positive root.
    s = -0.5 * (a1 + np.copysign(np.sqrt(disc), a1))
    q1 = s / a2
    q2 = a0 / s if s != 0.0 else np.nan
    best = np.inf
    if q1 > 0.0:
        best = q1
    if q2 > 0.0 and q2 < best:
        best = q2
    return best if np.isfinite(best) else np.nan


@jit
def _eta1(head_coeffs: FloatArray, power_coeffs: FloatArray, q: float) -> float:
    """Rated-speed efficiency up to the constant rho g: q H1(q) / P1(q); -inf if invalid."""
    h = head(head_coeffs, q, 1.0)
    p = shaft_power(power_coeffs, q, 1.0)
    if not (p > 0.0):
        return -np.inf
    return q * h / p


@jit
def bep_flow(head_coeffs: FloatArray, power_coeffs: FloatArray, r: float) -> float:
    """Best-efficiency flow [m^3/s] at speed ratio r: r times the rated-speed BEP flow.

    Searched on (0, run-out flow) by a 32-point scan then golden section, so a fitted
    curve with a second local maximum cannot trap it. NaN if the head curve has no
    run-out, the shaft power is not positive over the range, or r is not positive.
    """
    q_end = runout_flow(head_coeffs)
    if not (np.isfinite(q_end) and r > 0.0 and np.isfinite(r)):
        return np.nan
    for j in range(4):
        if not np.isfinite(power_coeffs[j]):
            return np.nan
    n = 32
    step = q_end / n
    best_i = 1
    best_v = -np.inf
    for i in range(1, n):
        q = i * step
        if shaft_power(power_coeffs, q, 1.0) <= 0.0:
            return np.nan
        v = _eta1(head_coeffs, power_coeffs, q)
        if v > best_v:
            best_v = v
            best_i = i
    lo = (best_i - 1) * step
    hi = (best_i + 1) * step
    inv_phi = 0.6180339887498949
    x1 = hi - inv_phi * (hi - lo)
    x2 = lo + inv_phi * (hi - lo)
    f1 = _eta1(head_coeffs, power_coeffs, x1)
    f2 = _eta1(head_coeffs, power_coeffs, x2)
    for _ in range(60):
        if hi - lo <= 1e-12 * q_end:
            break
        if f1 >= f2:
            hi = x2
            x2 = x1
            f2 = f1
            x1 = hi - inv_phi * (hi - lo)
            f1 = _eta1(head_coeffs, power_coeffs, x1)
        else:
            lo = x1
            x1 = x2
            f1 = f2
            x2 = lo + inv_phi * (hi - lo)
            f2 = _eta1(head_coeffs, power_coeffs, x2)
    return r * 0.5 * (lo + hi)
