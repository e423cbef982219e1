"""Sensorless flow with its uncertainty, and the calibrations a site without a flow meter can make.

Curves in the kernels' layout (``kernels.curves``): collapsed to rated speed with
x = Q / r they are polynomials, h(x) = H / r^2 = a0 + a1 x + a2 x^2 and
p(x) = P / r^3 = b0 + b1 x + b2 x^2 + b3 x^3. A coefficient array of length n is a
polynomial of degree n - 1 whose value scales with r^(n - 1); the one-point
correction below works on either.

The uncertainty of a curve is a *band*, a 5-array (u_in, u_out, x_lo, x_hi, x_ref):
relative standard uncertainty u_in of the curve's value inside the calibrated range
[x_lo, x_hi] of collapsed flow, growing by u_out per x_ref outside it. A datasheet curve
is anchored at its rated point only (x_lo = x_hi = rated flow); a calibration widens the
range it has seen. ``curve_band`` builds one.

Every estimate is (flow, standard uncertainty) in m^3/s: the measurement's relative
uncertainty, the speed's, and the curve's band, propagated through the local slope of
the curve (u_Q = u_y / |dy/dQ|, first order). Where the flow is not identifiable (the
curve too flat for the reading, the reading off the curve, an ambiguous drooping head
curve) both are NaN; the caller then has no estimate for that drive, not a wrong one.

Identifiability without a flow meter: from head, power and speed alone the flow scale
is not observable. By the affinity laws every sample (H, P, r) is a point
(H / r^2, P / r^3) of the curve x -> (h(x), p(x)), and replacing x by c x in both curves
gives the same points for any c. So one curve must be trusted in flow units: the head
curve (datasheet, shut-off calibrated), and ``calibrate_power_from_head`` moves the power
curve onto it. A clamp-on reading or the shut-off point anchors the flow axis itself.
"""

from __future__ import annotations

import numpy as np

from kernels._numba import jit
from kernels._typing import FloatArray
from kernels.operating import estimate_flow_tuned


@jit
def curve_band(u_in: float, u_out: float, x_lo: float, x_hi: float, x_ref: float) -> FloatArray:
    """A curve's uncertainty band (see the module docstring)."""
    band = np.empty(5)
    band[0] = u_in
    band[1] = u_out
    band[2] = x_lo
    band[3] = x_hi
    band[4] = x_ref
    return band


@jit
def band_uncertainty(band: FloatArray, x: float) -> float:
    """Relative standard uncertainty of a curve's value at collapsed flow x."""
    outside = max(band[2] - x, x - band[3], 0.0)
    return float(band[0] + band[1] * outside / band[4])


@jit
def _poly(coeffs: FloatArray, x: float) -> float:
    value = 0.0
    for j in range(coeffs.shape[0] - 1, -1, -1):
        value = value * x + coeffs[j]
    return value


@jit
def _dpoly(coeffs: FloatArray, x: float) -> float:
    value = 0.0
    for j in range(coeffs.shape[0] - 1, 0, -1):
        value = value * x + j * coeffs[j]
    return value


@jit
def _flow_uncertainty(
    coeffs: FloatArray, x: float, y: float, r: float, rel_y_u: float, rel_speed_u: float, band: FloatArray
) -> float:
    """u_Q for a flow read off curve ``coeffs`` at collapsed flow x from a reading y at speed r.

    The reading y / r^k = c(x) (k = degree); Q = r x. The reading's and the curve's
    relative uncertainties act on y; the speed's moves both r and the collapsed reading.
    """
    k = coeffs.shape[0] - 1
    slope = _dpoly(coeffs, x)  # dc/dx, collapsed
    u_c = band_uncertainty(band, x)
    collapsed = y / r**k
    u_x_meas = np.sqrt(rel_y_u * rel_y_u + u_c * u_c) * collapsed / abs(slope)
    # dQ/dr at a fixed reading: x + r dx/dr, dx/dr = -k c / (r c'(x)).
    dq_dr = x - k * collapsed / slope
    return float(np.sqrt((r * u_x_meas) ** 2 + (dq_dr * rel_speed_u * r) ** 2))


@jit
def flow_from_power(
    power_coeffs: FloatArray,
    shaft_power: float,
    r: float,
    rel_power_u: float,
    rel_speed_u: float,
    band: FloatArray,
    q_max: float,
    min_sensitivity: float,
) -> tuple[float, float]:
    """Flow [m^3/s] and its standard uncertainty from shaft power [W] at speed ratio r.

    The value is ``estimate_flow_tuned`` (rising branch of the power curve, NaN where its
    relative sensitivity p'(x) x_end / p(x) is below ``min_sensitivity``). ``rel_power_u``
    is the shaft power's relative standard uncertainty: the meter's and the motor
    efficiency's together.
    """
    q = estimate_flow_tuned(power_coeffs, shaft_power, r, q_max, min_sensitivity)
    if not (np.isfinite(q) and rel_power_u >= 0.0 and rel_speed_u >= 0.0):
        return np.nan, np.nan
    x = q / r
    if not (_dpoly(power_coeffs, x) > 0.0):
        return np.nan, np.nan
    u = _flow_uncertainty(power_coeffs, x, shaft_power, r, rel_power_u, rel_speed_u, band)
    return q, u


@jit
def flow_from_head(
    head_coeffs: FloatArray,
    head: float,
    r: float,
    rel_head_u: float,
    rel_speed_u: float,
    band: FloatArray,
    min_sensitivity: float,
) -> tuple[float, float]:
    """Flow [m^3/s] and its standard uncertainty from the pump's head [m] (or a fan's pressure) at r.

    Inverts h(x) = H / r^2 on the falling branch of the head curve. NaN when the head is
    above the curve's top, below zero flow's reach on a drooping curve (two flows give
    that head: ambiguous), past run-out, or where the curve is too flat: relative
    sensitivity -h'(x) x_run / h(x) below ``min_sensitivity`` (x_run the run-out flow).
    """
    a0 = head_coeffs[0]
    a1 = head_coeffs[1]
    a2 = head_coeffs[2]
    if not (
        r > 0.0 and np.isfinite(r) and np.isfinite(head) and head > 0.0 and np.isfinite(a0)
        and np.isfinite(a1) and np.isfinite(a2) and a2 < 0.0 and a0 > 0.0
        and rel_head_u >= 0.0 and rel_speed_u >= 0.0
    ):
        return np.nan, np.nan
    target = head / (r * r)
    x_top = max(-a1 / (2.0 * a2), 0.0)  # the head curve's maximum (0 on a stable curve)
    if target > a0 and x_top > 0.0:
        return np.nan, np.nan  # on a drooping curve above the shut-off head: two flows
    if target > a0 + (a1 + a2 * x_top) * x_top:
        return np.nan, np.nan
    disc = a1 * a1 - 4.0 * a2 * (a0 - target)
    if disc < 0.0:
        return np.nan, np.nan
    x = (-a1 - np.sqrt(disc)) / (2.0 * a2)  # the larger root: a2 < 0
    x_run = (-a1 - np.sqrt(a1 * a1 - 4.0 * a2 * a0)) / (2.0 * a2)
    slope = a1 + 2.0 * a2 * x
    if not (x >= 0.0 and slope < 0.0 and -slope * x_run / target >= min_sensitivity):
        return np.nan, np.nan
    u = _flow_uncertainty(head_coeffs, x, head, r, rel_head_u, rel_speed_u, band)
    return x * r, u


@jit
def combine_estimates(q1: float, u1: float, q2: float, u2: float) -> tuple[float, float]:
    """Inverse-variance mean of two independent estimates; either alone if the other is NaN."""
    ok1 = np.isfinite(q1) and np.isfinite(u1) and u1 > 0.0
    ok2 = np.isfinite(q2) and np.isfinite(u2) and u2 > 0.0
    if ok1 and ok2:
        w1 = 1.0 / (u1 * u1)
        w2 = 1.0 / (u2 * u2)
        return (w1 * q1 + w2 * q2) / (w1 + w2), 1.0 / np.sqrt(w1 + w2)
    if ok1:
        return q1, u1
    if ok2:
        return q2, u2
    return np.nan, np.nan


@jit
def correct_one_point(
    coeffs: FloatArray, flow: float, value: float, r: float, keep_shutoff: bool
) -> FloatArray:
    """A curve corrected to pass through one measured point (flow [m^3/s], value, speed ratio r).

    For a clamp-on flow reading: with the power (or head) read at the same moment, the
    curve is scaled so that it passes through the point. ``keep_shutoff`` keeps the
    zero-flow value (after a shut-off calibration) and scales only the flow-dependent
    part; otherwise the whole curve is scaled. NaN coefficients where the point cannot
    be honoured (non-positive flow, a scale that is not positive).
    """
    out: FloatArray = coeffs.copy()
    k = coeffs.shape[0] - 1
    if not (r > 0.0 and flow > 0.0 and np.isfinite(value) and value > 0.0 and np.isfinite(flow)):
        out[:] = np.nan
        return out
    x = flow / r
    target = value / r**k
    model = _poly(coeffs, x)
    if keep_shutoff:
        part = model - coeffs[0]
        scale = (target - coeffs[0]) / part if part != 0.0 else np.nan
        if not (scale > 0.0 and np.isfinite(scale)):
            out[:] = np.nan
            return out
        for j in range(1, k + 1):
            out[j] = coeffs[j] * scale
        return out
    scale = target / model if model != 0.0 else np.nan
    if not (scale > 0.0 and np.isfinite(scale)):
        out[:] = np.nan
        return out
    for j in range(k + 1):
        out[j] = coeffs[j] * scale
    return out


@jit
def calibrate_shutoff(
    head_coeffs: FloatArray,
    power_coeffs: FloatArray,
    shutoff_head: float,
    shutoff_power: float,
    r: float,
    x_ref: float,
) -> tuple[FloatArray, FloatArray]:
    """Curves through a measured shut-off point (closed valve, Q = 0) at speed ratio r.

    The shut-off head and shaft power give a0 = H0 / r^2 and b0 = P0 / r^3; the quadratic
    term moves by the same amount at the other end so that each curve keeps its value at
    the collapsed reference flow ``x_ref`` (the rated point the datasheet guarantees).
    A NaN reading leaves that curve as it was; NaN coefficients if r or x_ref is invalid.
    """
    head = head_coeffs.copy()
    power = power_coeffs.copy()
    if not (r > 0.0 and x_ref > 0.0 and np.isfinite(r) and np.isfinite(x_ref)):
        head[:] = np.nan
        power[:] = np.nan
        return head, power
    if np.isfinite(shutoff_head) and shutoff_head > 0.0:
        a0 = shutoff_head / (r * r)
        head[2] = head_coeffs[2] + (head_coeffs[0] - a0) / (x_ref * x_ref)
        head[0] = a0
    if np.isfinite(shutoff_power) and shutoff_power > 0.0:
        b0 = shutoff_power / (r * r * r)
        power[2] = power_coeffs[2] + (power_coeffs[0] - b0) / (x_ref * x_ref)
        power[0] = b0
    return head, power


@jit
def calibrate_power_from_head(
    head_coeffs: FloatArray,
    power_coeffs: FloatArray,
    head: FloatArray,
    shaft_power: FloatArray,
    r: FloatArray,
    rel_head_u: float,
    rel_power_u: float,
    x_ref: float,
    ridge: float,
) -> tuple[FloatArray, float, float, float, int]:
    """The power curve moved onto the head curve from (head, shaft power, speed) samples.

    Each sample's flow is read off the head curve (``flow_from_head``, samples where that
    is not identifiable are skipped); the power curve gets an additive correction
    c0 + c1 x + c2 x^2 in collapsed flow, fitted by weighted least squares with each
    sample's variance (the power reading's plus the head-derived flow's, through p'(x)).
    The degree follows the span of x the samples cover (relative to ``x_ref``): below
    0.1 an offset only, below 0.4 a line, else a quadratic; ``ridge`` (relative to the
    data's weight) pulls the higher terms to zero. Needs at least 3 usable samples.

    Returns (power_coeffs, x_lo, x_hi, rms, n): the corrected curve, the calibrated
    range of collapsed flow, the weighted RMS of the relative residuals, and how many
    samples were used. NaN coefficients and n = 0 if there were too few.
    """
    n = head.shape[0]
    xs = np.full(n, np.nan)
    ys = np.full(n, np.nan)
    ws = np.zeros(n)
    band = curve_band(0.0, 0.0, 0.0, 0.0, 1.0)
    used = 0
    x_lo = np.inf
    x_hi = -np.inf
    for i in range(n):
        if not (r[i] > 0.0 and np.isfinite(shaft_power[i]) and shaft_power[i] > 0.0):
            continue
        q, u_q = flow_from_head(head_coeffs, head[i], r[i], rel_head_u, 0.0, band, 0.0)
        if not np.isfinite(q):
            continue
        x = q / r[i]
        pi = shaft_power[i] / r[i] ** 3
        u_pi = np.sqrt((rel_power_u * pi) ** 2 + (_dpoly(power_coeffs, x) * u_q / r[i]) ** 2)
        if not (u_pi > 0.0):
            continue
        xs[i] = x
        ys[i] = pi - _poly(power_coeffs, x)
        ws[i] = 1.0 / (u_pi * u_pi)
        used += 1
        x_lo = min(x_lo, x)
        x_hi = max(x_hi, x)
    out = power_coeffs.copy()
    if used < 3 or not (x_ref > 0.0):
        out[:] = np.nan
        return out, np.nan, np.nan, np.nan, 0
    span = (x_hi - x_lo) / x_ref
    m = 1 if span < 0.1 else (2 if span < 0.4 else 3)
    ata = np.zeros((m, m))
    atb = np.zeros(m)
    total_w = 0.0
    for i in range(n):
        if ws[i] == 0.0:
            continue
        t = xs[i] / x_ref
        for a in range(m):
            atb[a] += ws[i] * t**a * ys[i]
            for b in range(m):
                ata[a, b] += ws[i] * t ** (a + b)
        total_w += ws[i]
    for a in range(1, m):
        ata[a, a] += ridge * total_w
    c = np.linalg.solve(ata, atb)
    for a in range(m):
        out[a] += c[a] / x_ref**a
    ss = 0.0
    for i in range(n):
        if ws[i] == 0.0:
            continue
        t = xs[i] / x_ref
        fit = 0.0
        for a in range(m):
            fit += c[a] * t**a
        rel = (ys[i] - fit) / (ys[i] + _poly(power_coeffs, xs[i]))
        ss += ws[i] * rel * rel
    return out, x_lo, x_hi, np.sqrt(ss / total_w), used


@jit
def shaft_speed_ratio(
    frequency_ratio: float, shaft_power: float, rated_power: float, rated_slip: float
) -> float:
    """Shaft speed / rated speed of an induction motor from the drive's output frequency ratio.

    A drive without slip compensation reports its output frequency, but the shaft turns
    slower by the slip speed, proportional to torque (constant flux, small slip): with
    s_r the rated slip, n_sync / n_rated = 1 / (1 - s_r), and the torque ratio
    (P / P_rated) / r, r solves r = f / (1 - s_r) - s_r / (1 - s_r) (P / P_rated) / r,
    a quadratic whose larger root is the running speed. NaN where no running speed exists.
    """
    if not (frequency_ratio > 0.0 and rated_power > 0.0 and 0.0 <= rated_slip < 0.5 and shaft_power >= 0.0):
        return np.nan
    a = frequency_ratio / (1.0 - rated_slip)
    c = rated_slip / (1.0 - rated_slip) * shaft_power / rated_power
    disc = a * a - 4.0 * c
    if disc < 0.0:
        return np.nan
    return float(0.5 * (a + np.sqrt(disc)))
