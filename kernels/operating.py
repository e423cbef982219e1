"""Where a pump meets its system: operating point, minimum speed, sensorless flow.

System curve H_sys(Q) = H_st + k Q^2 (H_st [m] >= 0, k [s^2/m^5] >= 0); pump curves as in
``kernels.curves``. Quadratics are solved with the cancellation-free form
q = -(b + sign(b) sqrt(D)) / 2, roots q/a and c/q.
"""

from __future__ import annotations

import numpy as np

from kernels._numba import jit
from kernels._typing import FloatArray
from kernels.curves import shaft_power

# ``estimate_flow``'s settings (q_max, min_sensitivity), for a caller of ``estimate_flow_tuned``
# that wants them without compiling the wrapper too (a kernel of its own in a cold warm-up).
ESTIMATE_FLOW_DEFAULTS = (np.inf, 0.2)


@jit
def _stable_root(a: float, b: float, c: float) -> float:
    """Largest root x >= 0 of a x^2 + b x + c = 0 at which a x^2 + b x + c falls.

    For f = pump head - system head, a falling crossing (f' = 2 a x + b <= 0) is a
    stable operating point: more flow -> less surplus head. NaN if there is none.
    """
    if not (np.isfinite(a) and np.isfinite(b) and np.isfinite(c)):
        return np.nan
    if a == 0.0:
        if b < 0.0:
            x = -c / b
            return x if x >= 0.0 else np.nan
        if b == 0.0 and c == 0.0:
            return 0.0
        return np.nan
    disc = b * b - 4.0 * a * c
    if disc < 0.0:
        return np.nan
    sq = np.sqrt(disc)
    s = -0.5 * (b + (sq if b >= 0.0 else -sq))
    best = np.nan
    for x in (s / a, c / s if s != 0.0 else 0.0):
        # A subnormal a overflows s / a to inf: no operating point there (hypothesis found it).
        if np.isfinite(x) and x >= 0.0 and 2.0 * a * x + b <= 0.0 and not (x <= best):
            best = x
    return best


@jit
def operating_point(head_coeffs: FloatArray, h_static: float, k: float, r: float) -> float:
    """Flow [m^3/s] where the pump at speed ratio r meets the system curve.

    The stable root of (a2 - k) Q^2 + a1 r Q + (a0 r^2 - H_st) = 0: the largest
    non-negative root at which pump head minus system head is falling. NaN when there is
    none (e.g. shut-off head below the static head), or for negative H_st or k.
    """
    if not (h_static >= 0.0 and k >= 0.0 and r >= 0.0):
        return np.nan
    a0 = head_coeffs[0]
    a1 = head_coeffs[1]
    a2 = head_coeffs[2]
    return _stable_root(a2 - k, a1 * r, a0 * r * r - h_static)


@jit
def flow_at_head(head_coeffs: FloatArray, head: float, r: float) -> float:
    """Flow [m^3/s] a pump at speed ratio r passes against a fixed (header) head [m].

    The operating point on a flat system curve H_sys = ``head``; 0 where the pump cannot
    lift that head at all (its shut-off head at r is not above it, r <= 0, or a curve
    that does not fall), since a check valve then holds it at no flow.
    """
    a0 = head_coeffs[0]
    a2 = head_coeffs[2]
    if not (r > 0.0 and a0 * r * r - head > 0.0 and a2 < 0.0 and head >= 0.0):
        return 0.0
    q = operating_point(head_coeffs, head, 0.0, r)
    return q if np.isfinite(q) else 0.0


@jit
def common_speed(head_coeffs: FloatArray, head: float, flow: float, r_max: float) -> float:
    """Lowest common speed ratio at which parallel pumps together pass ``flow`` against ``head``.

    ``head_coeffs`` is N x 3, one row per pump. What a pressure loop converges to when it
    holds the header at ``head`` while the loads draw ``flow``. Bisection (50 halvings, to
    r_max / 2^50) on the total flow, which rises with the speed; ``r_max`` if even that is
    not enough, or for no pumps.
    """
    n = head_coeffs.shape[0]
    total = 0.0
    for i in range(n):
        total += flow_at_head(head_coeffs[i], head, r_max)
    if n == 0 or total <= flow:
        return r_max
    low = 0.0
    high = r_max
    for _ in range(50):
        mid = 0.5 * (low + high)
        total = 0.0
        for i in range(n):
            total += flow_at_head(head_coeffs[i], head, mid)
        if total >= flow:
            high = mid
        else:
            low = mid
    return high


@jit
def min_speed_for_flow(
    head_coeffs: FloatArray, h_static: float, k: float, flow: float, r_min: float, r_max: float
) -> float:
    """Lowest speed ratio in [r_min, r_max] that delivers at least ``flow`` [m^3/s].

    Solves a0 r^2 + a1 Q r + (a2 - k) Q^2 - H_st = 0 for its larger root: above it the
    pump's head at that flow exceeds the system's, so the operating flow is at least Q.
    If even r_min over-delivers, r_min is returned (the flow is then met with margin).
    NaN if r_max is not enough, the inputs are invalid (a0 <= 0, negative flow, H_st or
    k, r_min > r_max) or anything is NaN.
    """
    a0 = head_coeffs[0]
    a1 = head_coeffs[1]
    a2 = head_coeffs[2]
    ok = (
        a0 > 0.0
        and np.isfinite(a0)
        and np.isfinite(a1)
        and np.isfinite(a2)
        and flow >= 0.0
        and np.isfinite(flow)
        and h_static >= 0.0
        and k >= 0.0
        and np.isfinite(h_static)
        and np.isfinite(k)
        and 0.0 <= r_min <= r_max
        and np.isfinite(r_max)
    )
    if not ok:
        return np.nan
    b = a1 * flow
    c = (a2 - k) * flow * flow - h_static
    disc = b * b - 4.0 * a0 * c
    if disc < 0.0:
        return r_min  # the pump out-heads the system at every speed
    sq = np.sqrt(disc)
    # Larger root of a0 r^2 + b r + c, cancellation-free.
    r_star = (-b + sq) / (2.0 * a0) if b <= 0.0 else (2.0 * c) / (-b - sq)
    if r_star <= r_min:
        return r_min
    if r_star <= r_max:
        return float(r_star)
    return np.nan


@jit
def estimate_flow(power_coeffs: FloatArray, power: float, r: float) -> float:
    """``estimate_flow_tuned`` with no flow cap and a minimum sensitivity of 0.2."""
    return estimate_flow_tuned(power_coeffs, power, r, *ESTIMATE_FLOW_DEFAULTS)


@jit
def estimate_flow_tuned(
    power_coeffs: FloatArray,
    power: float,
    r: float,
    q_max: float,
    min_sensitivity: float,
) -> float:
    """Sensorless flow [m^3/s] from measured shaft power [W] at speed ratio r.

    Inverts the collapsed curve p(q) = P / r^3 on its rising branch from q = 0 to the
    first stationary point of p (capped by ``q_max`` [m^3/s at rated speed], e.g. the end
    of the fitted data). Returns NaN when the flow is not identifiable:

    - p does not rise at q = 0 (mixed-flow or axial pumps, flat power curves);
    - the measured power lies outside p over that branch;
    - the local sensitivity p'(q) * q_end / p(q) is below ``min_sensitivity``: a 1 %
      power error would then move the estimate by more than 1 / min_sensitivity % of the
      branch (if p rises without a stationary point or cap, q itself replaces q_end).
    """
    b0 = power_coeffs[0]
    b1 = power_coeffs[1]
    b2 = power_coeffs[2]
    b3 = power_coeffs[3]
    if not (
        r > 0.0
        and np.isfinite(r)
        and np.isfinite(power)
        and np.isfinite(b0)
        and np.isfinite(b1)
        and np.isfinite(b2)
        and np.isfinite(b3)
        and b1 > 0.0
        and q_max > 0.0
    ):
        return np.nan
    # End of the rising branch: first positive root of p'(q) = b1 + 2 b2 q + 3 b3 q^2.
    q_end = q_max
    a = 3.0 * b3
    b = 2.0 * b2
    if a == 0.0:
        if b < 0.0:
            q_end = min(q_end, -b1 / b)
    else:
        disc = b * b - 4.0 * a * b1
        if disc >= 0.0:
            sq = np.sqrt(disc)
            s = -0.5 * (b + (sq if b >= 0.0 else -sq))
            for root in (s / a, b1 / s if s != 0.0 else np.inf):
                if root > 0.0:
                    q_end = min(q_end, root)
    target = power / (r * r * r)
    lo = 0.0
    if np.isfinite(q_end):
        hi = q_end
    else:
        # p rises for ever (no stationary point, no cap): grow a bracket from the flow
        # scale b0 / b1 until it holds the target.
        hi = b0 / b1 if b0 > 0.0 else 1.0
        for _ in range(200):
            if shaft_power(power_coeffs, hi, 1.0) >= target:
                break
            hi *= 2.0
    f_lo = shaft_power(power_coeffs, lo, 1.0) - target
    f_hi = shaft_power(power_coeffs, hi, 1.0) - target
    if not (f_lo <= 0.0 <= f_hi):
        return np.nan
    # Bisection: p is monotone on [lo, hi] by construction; 60 halvings reach 1e-18 q_end.
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        f_mid = shaft_power(power_coeffs, mid, 1.0) - target
        if f_mid <= 0.0:
            lo = mid
        else:
            hi = mid
        if hi - lo <= 1e-13 * hi:
            break
    q = 0.5 * (lo + hi)
    slope = b1 + (2.0 * b2 + 3.0 * b3 * q) * q
    p_q = shaft_power(power_coeffs, q, 1.0)
    q_ref = q_end if np.isfinite(q_end) else q
    if not (p_q > 0.0 and slope * q_ref / p_q >= min_sensitivity):
        return np.nan
    return q * r
