"""Sensorless flow with its uncertainty, and the calibrations a site without a flow meter can make.

Curves in the kernels' layout (``kernels.curves``): collapsed to rated speed with
x = Q / r they are polynomials in x, the head h(x) = H / r^2 and the shaft power
p(x) = P / r^3, coefficients in ascending order of any length (a datasheet's quadratic
head, or cubics fitted to the catalogue curve by ``fit_catalogue_curve``). The affinity
exponent (2 for head, 3 for power) is passed where a reading is collapsed.

The uncertainty of a curve is a *band*, an 8-array (u_in, u_out, x_lo, x_hi, x_ref, u_shift,
x_printed, u_printed): relative standard uncertainty u_in of the curve's value inside the
calibrated range [x_lo, x_hi] of collapsed flow, growing by u_out per x_ref outside it and by
u_printed (d / x_ref)^2 at a distance d below x_printed, the first flow the published curve
shows (a fitted polynomial extrapolated: its error grows faster than the distance), and
u_shift, the standard uncertainty of the curve's flow axis as a fraction of x_ref. The last is the
wear nothing but a flow reading sees: internal leakage moves a pump's head and power
curves along the flow axis together, so head, power and speed cannot tell it from the
new pump (see below); only a clamp-on reading (``correct_flow_offset``) removes it.
``curve_band`` builds one.

Every estimate is (flow, standard uncertainty) in m^3/s: the readings' relative
uncertainties, the speed's, the curve's band and the flow-axis shift, propagated
through the local slope (first order). Where the flow is not identifiable (the curve
too flat for the reading, the reading off the curve, an ambiguous drooping head curve,
or a stated 90 % interval wider than ``max_rel_u`` times the estimate) both are NaN:
the caller then has no estimate for that drive, not a wrong one.

Identifiability without a flow meter: by the affinity laws every sample (H, P, r) is a
point (H / r^2, P / r^3) of the curve x -> (h(x), p(x)), and replacing x by x + s or c x
in both curves gives the same points. So with a DP transmitter the flow comes from the
ratio h(x) / p(x) (``flow_from_ratio``: Q = eta(x) P / (rho g H), the efficiency's
shape), trusted in flow units only as far as the catalogue curve is; a clamp-on reading
or nothing anchors the flow axis.

Long because the estimates, their uncertainty bands and the calibrations share the
private polynomial helpers on the monotone branch, which Numba inlines best from one module.
"""

from __future__ import annotations

import numpy as np

from kernels._linalg import householder_lstsq
from kernels._numba import jit
from kernels._typing import FloatArray

_BISECTIONS = 80
_RATIO_GRID = 64  # points on which the head-to-power ratio is checked for monotony


@jit
def curve_band(
    u_in: float, u_out: float, x_lo: float, x_hi: float, x_ref: float, u_shift: float,
    x_printed: float, u_printed: float,
) -> FloatArray:
    """A curve's uncertainty band (see the module docstring)."""
    band = np.empty(8)
    band[0] = u_in
    band[1] = u_out
    band[2] = x_lo
    band[3] = x_hi
    band[4] = x_ref
    band[5] = u_shift
    band[6] = x_printed
    band[7] = u_printed
    return band


@jit
def band_uncertainty(band: FloatArray, x: float) -> float:
    """Relative standard uncertainty of a curve's value at collapsed flow x."""
    outside = max(band[2] - x, x - band[3], 0.0)
    below = max(band[6] - x, 0.0) / band[4]
    return float(band[0] + band[1] * outside / band[4] + band[7] * below * below)


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
def _finite(coeffs: FloatArray) -> bool:
    for j in range(coeffs.shape[0]):
        if not np.isfinite(coeffs[j]):
            return False
    return True


@jit
def _stationary(coeffs: FloatArray, after: float, x_max: float) -> float:
    """First x in (after, x_max) where the derivative changes sign; x_max if none.

    Scanned on a fine grid and refined by bisection (any degree).
    """
    n = 256
    step = (x_max - after) / n
    prev = _dpoly(coeffs, after + 1e-6 * step)
    for i in range(1, n + 1):
        x = after + i * step
        cur = _dpoly(coeffs, x)
        if prev * cur <= 0.0 and cur != prev:
            lo = x - step
            hi = x
            for _ in range(_BISECTIONS):
                mid = 0.5 * (lo + hi)
                if _dpoly(coeffs, mid) * prev > 0.0:
                    lo = mid
                else:
                    hi = mid
            return 0.5 * (lo + hi)
        prev = cur
    return x_max


@jit
def monotone_branch(coeffs: FloatArray, rising: bool, x_max: float) -> tuple[float, float]:
    """The branch [x_start, x_end] of collapsed flow on which a curve is read.

    A power curve is read where it rises, a head curve where it falls: from the first
    stationary point of the wrong sense (the top of a drooping head curve, the dip of a
    power curve) or 0, to the next stationary point or ``x_max`` (the catalogue's end:
    a curve is not extrapolated).
    """
    sign = 1.0 if rising else -1.0
    start = 0.0
    if sign * _dpoly(coeffs, 1e-6 * x_max) <= 0.0:
        start = _stationary(coeffs, 0.0, x_max)
    end = _stationary(coeffs, start, x_max) if start < x_max else x_max
    return start, end


@jit
def _invert(coeffs: FloatArray, target: float, rising: bool, x_max: float) -> float:
    """Collapsed flow where the curve takes ``target`` on its branch; NaN off it or ambiguous."""
    start, end = monotone_branch(coeffs, rising, x_max)
    if not (end > start):
        return np.nan
    sign = 1.0 if rising else -1.0
    if sign * (target - _poly(coeffs, start)) < 0.0 or sign * (target - _poly(coeffs, end)) > 0.0:
        return np.nan
    # Between zero flow and the branch's start the curve takes the same values again.
    if start > 0.0 and sign * (target - _poly(coeffs, 0.0)) < 0.0:
        return np.nan
    lo = start
    hi = end
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo + hi)
        if sign * (_poly(coeffs, mid) - target) < 0.0:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


@jit
def _finish(q: float, u: float, max_rel_u: float) -> tuple[float, float]:
    """NaN for both where the stated 90 % interval is wider than ``max_rel_u`` of the estimate."""
    if not (np.isfinite(q) and np.isfinite(u) and q > 0.0 and 1.645 * u <= max_rel_u * q):
        return np.nan, np.nan
    return q, u


@jit
def flow_from_curve(
    coeffs: FloatArray,
    exponent: int,
    rising: bool,
    reading: float,
    r: float,
    rel_u: float,
    rel_speed_u: float,
    band: FloatArray,
    x_max: float,
    min_sensitivity: float,
    max_rel_u: float,
) -> tuple[float, float]:
    """Flow [m^3/s] and its standard uncertainty from one reading on one curve at speed ratio r.

    The power curve (``exponent`` 3, ``rising``) or the head curve (2, falling) is
    inverted on its branch (``monotone_branch``). ``rel_u`` is the reading's relative
    standard uncertainty (for shaft power: the meter's and the motor efficiency's
    together). NaN where the relative sensitivity |c'(x)| x_end / c(x) is below
    ``min_sensitivity`` or the interval is too wide (``max_rel_u``).
    """
    if not (
        r > 0.0 and np.isfinite(r) and np.isfinite(reading) and reading > 0.0 and _finite(coeffs)
        and rel_u >= 0.0 and rel_speed_u >= 0.0 and x_max > 0.0
    ):
        return np.nan, np.nan
    target = reading / r**exponent
    x = _invert(coeffs, target, rising, x_max)
    if not (np.isfinite(x) and x > 0.0):
        return np.nan, np.nan
    _, end = monotone_branch(coeffs, rising, x_max)
    slope = _dpoly(coeffs, x)
    if not (abs(slope) * end / target >= min_sensitivity and slope != 0.0):
        return np.nan, np.nan
    u_c = band_uncertainty(band, x)
    u_x = np.sqrt(rel_u * rel_u + u_c * u_c) * target / abs(slope)
    # dQ/dr at a fixed reading: x + r dx/dr, dx/dr = -k c / (r c'(x)).
    dq_dr = x - exponent * target / slope
    u_shift = band[5] * band[4]
    u = np.sqrt((r * u_x) ** 2 + (r * u_shift) ** 2 + (dq_dr * rel_speed_u * r) ** 2)
    return _finish(x * r, u, max_rel_u)


@jit
def flow_from_power(
    power_coeffs: FloatArray,
    shaft_power: float,
    r: float,
    rel_power_u: float,
    rel_speed_u: float,
    band: FloatArray,
    x_max: float,
    min_sensitivity: float,
    max_rel_u: float,
) -> tuple[float, float]:
    """Flow from shaft power [W] on the rising branch of the power curve (``flow_from_curve``)."""
    return flow_from_curve(power_coeffs, 3, True, shaft_power, r, rel_power_u, rel_speed_u, band, x_max,
                           min_sensitivity, max_rel_u)


@jit
def flow_from_head(
    head_coeffs: FloatArray,
    head: float,
    r: float,
    rel_head_u: float,
    rel_speed_u: float,
    band: FloatArray,
    x_max: float,
    min_sensitivity: float,
    max_rel_u: float,
) -> tuple[float, float]:
    """Flow from the pump's head [m] on the falling branch of the head curve (``flow_from_curve``).

    On a drooping curve a head above the shut-off head is refused: two flows give it.
    """
    return flow_from_curve(head_coeffs, 2, False, head, r, rel_head_u, rel_speed_u, band, x_max,
                           min_sensitivity, max_rel_u)


@jit
def shaft_power_uncertainty(efficiency: float, rel_meter_u: float, rel_loss_u: float) -> float:
    """Relative standard uncertainty of a shaft power derived from electrical power.

    P_shaft = eta P_el with eta the motor's and drive's efficiency from tables (IEC class,
    a default drive table): what is uncertain is the losses, (1 / eta - 1) of the shaft
    power, known to ``rel_loss_u`` (IEC 60034-1 lets a motor miss its losses by 15 %;
    a drive's light-load losses are known no better), so a lightly loaded motor, whose
    losses are a large share, gives a much less certain shaft power than one at rating.
    NaN for an efficiency outside (0, 1].
    """
    if not (0.0 < efficiency <= 1.0 and rel_meter_u >= 0.0 and rel_loss_u >= 0.0):
        return np.nan
    loss = rel_loss_u * (1.0 / efficiency - 1.0)
    return float(np.sqrt(rel_meter_u * rel_meter_u + loss * loss))


@jit
def _ratio(head_coeffs: FloatArray, power_coeffs: FloatArray, x: float) -> float:
    return _poly(head_coeffs, x) / _poly(power_coeffs, x)


@jit
def _dratio(head_coeffs: FloatArray, power_coeffs: FloatArray, x: float) -> float:
    p = _poly(power_coeffs, x)
    return (_dpoly(head_coeffs, x) * p - _poly(head_coeffs, x) * _dpoly(power_coeffs, x)) / (p * p)


@jit
def flow_from_ratio(
    head_coeffs: FloatArray,
    power_coeffs: FloatArray,
    head: float,
    shaft_power: float,
    r: float,
    rel_head_u: float,
    rel_power_u: float,
    rel_speed_u: float,
    head_band: FloatArray,
    power_band: FloatArray,
    x_max: float,
    max_rel_u: float,
) -> tuple[float, float]:
    """Flow [m^3/s] and its standard uncertainty from head and shaft power read together (DP).

    Q = eta(x) P / (rho g H) with eta(x) = rho g x h(x) / p(x) solves
    g(x) = h(x) / p(x) = (H / r^2) / (P / r^3): the head falls and the power rises with
    flow, so their ratio is steeper than either (on a flat-power pump the head carries it,
    on a flat head curve the power), and its error follows the efficiency's shape
    error rather than one curve's amplified by its flatness. g must fall monotonically
    over [0, x_max] (checked on a grid); NaN otherwise, or off the curve, or too wide.
    Both curves' flow-axis shift (leakage) moves the estimate one for one: the larger
    of the two bands' u_shift is stated.
    """
    if not (
        r > 0.0 and np.isfinite(r) and np.isfinite(head) and head > 0.0 and np.isfinite(shaft_power)
        and shaft_power > 0.0 and _finite(head_coeffs) and _finite(power_coeffs) and x_max > 0.0
        and rel_head_u >= 0.0 and rel_power_u >= 0.0 and rel_speed_u >= 0.0
    ):
        return np.nan, np.nan
    prev = _ratio(head_coeffs, power_coeffs, 0.0)
    if not (_poly(power_coeffs, 0.0) > 0.0 and _poly(power_coeffs, x_max) > 0.0):
        return np.nan, np.nan
    for i in range(1, _RATIO_GRID + 1):
        x = x_max * i / _RATIO_GRID
        if not (_poly(power_coeffs, x) > 0.0):
            return np.nan, np.nan
        cur = _ratio(head_coeffs, power_coeffs, x)
        if not (cur < prev):
            return np.nan, np.nan
        prev = cur
    target = (head / (r * r)) / (shaft_power / r**3)
    if not (target <= _ratio(head_coeffs, power_coeffs, 0.0) and target >= prev):
        return np.nan, np.nan
    lo = 0.0
    hi = x_max
    for _ in range(_BISECTIONS):
        mid = 0.5 * (lo + hi)
        if _ratio(head_coeffs, power_coeffs, mid) > target:
            lo = mid
        else:
            hi = mid
    x = 0.5 * (lo + hi)
    slope = _dratio(head_coeffs, power_coeffs, x)
    if not (slope < 0.0 and x > 0.0):
        return np.nan, np.nan
    u_h = band_uncertainty(head_band, x)
    u_p = band_uncertainty(power_band, x)
    rel = np.sqrt(rel_head_u**2 + rel_power_u**2 + u_h * u_h + u_p * u_p)
    u_x = rel * target / abs(slope)
    # The collapsed ratio is H r / P: dQ/dr = x + r dx/dr = x + g / g'(x).
    dq_dr = x + target / slope
    u_shift = max(head_band[5] * head_band[4], power_band[5] * power_band[4])
    u = np.sqrt((r * u_x) ** 2 + (r * u_shift) ** 2 + (dq_dr * rel_speed_u * r) ** 2)
    return _finish(x * r, u, max_rel_u)


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
def fit_catalogue_curve(flow: FloatArray, value: FloatArray, degree: int) -> FloatArray:
    """A polynomial (ascending coefficients, length degree + 1) through a catalogue curve's points.

    The points are (flow [m^3/s], head [m] or shaft power [W]) read off the pump's
    published curve at rated speed. Least squares on relative residuals (each point
    weighted by 1 / value), so the low values of a power curve count as much as the
    high. NaN coefficients with fewer points than coefficients, a non-positive value,
    or points that do not determine the polynomial.
    """
    n = flow.shape[0]
    m = degree + 1
    a = np.empty((m + 1, n))
    scale = 0.0
    for i in range(n):
        scale = max(scale, abs(flow[i]))
    for i in range(n):
        if not (np.isfinite(flow[i]) and np.isfinite(value[i]) and value[i] > 0.0 and scale > 0.0):
            return np.full(m, np.nan)
        w = 1.0 / value[i]
        t = flow[i] / scale
        for j in range(m):
            a[j, i] = w * t**j
        a[m, i] = 1.0
    beta, _, ok = householder_lstsq(a, m, 1e-12)
    if not ok:
        return np.full(m, np.nan)
    out = np.empty(m)
    for j in range(m):
        out[j] = beta[j] / scale**j
    return out


@jit
def shift_curve(coeffs: FloatArray, shift: float) -> FloatArray:
    """Coefficients of c(x + shift): the same curve moved along the flow axis by -shift."""
    n = coeffs.shape[0]
    out = np.zeros(n)
    for j in range(n):
        binom = 1.0
        for i in range(j + 1):  # c_j (x + s)^j = sum_i C(j, i) x^i s^(j - i)
            out[i] += coeffs[j] * binom * shift ** (j - i)
            binom = binom * (j - i) / (i + 1)
    return out


@jit
def flow_offset(
    coeffs: FloatArray, exponent: int, rising: bool, flow: float, reading: float, r: float, x_max: float
) -> float:
    """The shift s on the collapsed flow axis that makes c(x + s) pass through one measured point.

    With a portable flow meter's reading (flow [m^3/s]) and the power (or head) read at
    the same moment at speed ratio r, s is the distance on the flow axis between where
    the curve has that value and the measured flow. NaN where the point cannot be
    honoured (off the curve, non-positive flow).
    """
    if not (r > 0.0 and np.isfinite(r) and flow > 0.0 and np.isfinite(flow) and np.isfinite(reading)
            and reading > 0.0 and _finite(coeffs)):
        return np.nan
    x_curve = _invert(coeffs, reading / r**exponent, rising, x_max)
    if not np.isfinite(x_curve):
        return np.nan
    return x_curve - flow / r


@jit
def correct_flow_offset(
    coeffs: FloatArray, exponent: int, rising: bool, flow: float, reading: float, r: float, x_max: float
) -> FloatArray:
    """A curve moved along the flow axis to pass through one measured point (clamp-on reading).

    ``flow_offset``'s shift: a shift, not a scale, because internal leakage, the wear a
    reading can see that head and power cannot, moves the curves along the flow axis;
    the motor's and the curve's scale are in the band. NaN coefficients where the point
    cannot be honoured.
    """
    shift = flow_offset(coeffs, exponent, rising, flow, reading, r, x_max)
    if not np.isfinite(shift):
        return np.full(coeffs.shape[0], np.nan)
    return shift_curve(coeffs, shift)


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
    the collapsed reference flow ``x_ref`` (the rated point the datasheet guarantees):
    a correction concentrated at part load, where wear (recirculation, opened
    clearances) adds power. A NaN reading leaves that curve as it was; NaN coefficients
    if r or x_ref is invalid.
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
