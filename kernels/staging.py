"""Parallel pump staging: which pumps run, at which speeds, for least electrical power.

Parallel pumps on one header share the head H = H_st + k D^2 the system needs at the
demanded flow D, so at that head each pump's speed, shaft power and electrical power are
functions of its own flow only. Staging is then a separable allocation problem: choose a
subset S and flows Q_i, sum Q_i = D, each Q_i inside the pump's feasible window, to
minimise sum c_i(Q_i). For every pump the kernel

1. finds its feasible flow window at head H: speed within [r_min, r_max] and collapsed
   flow Q/r within [q_min_ratio, q_max_ratio] x its best-efficiency flow (the window
   moves with speed because BEP flow scales with r);
2. tabulates c_i on a grid of flows over that window and takes the lower convex hull.

For each of the 2^n - 1 subsets the convex, piecewise-linear problem is solved exactly
by filling hull segments in order of increasing marginal power (equal marginal cost at
the optimum). With 48 grid points per window the hull's interpolation error is far below
0.1 % of the power (a pairwise exact-cost polish was tried and gained < 0.001 %), and the
reported total is always the exact electrical power at the returned speeds.

Electrical power: shaft power through the part-load motor and drive efficiency tables of
``kernels.electrical`` (defaults there, or pass your own to ``stage_pumps_tables``), so
lightly loaded pumps pay their real part-load penalty.
"""

from __future__ import annotations

import numpy as np

from kernels._numba import jit
from kernels._typing import FloatArray
from kernels.curves import bep_flow, shaft_power
from kernels.electrical import (
    DRIVE_EFFICIENCY_TABLE,
    MOTOR_EFFICIENCY_TABLE,
    efficiency_tables_valid,
    electrical_power_unchecked,
)

_GRID = 48
_MAX_PUMPS = 8


@jit
def _speed_at_head(hc: FloatArray, flow: float, head: float) -> float:
    """Speed ratio at which the pump delivers ``flow`` against ``head`` (larger root)."""
    a0 = hc[0]
    b = hc[1] * flow
    c = hc[2] * flow * flow - head
    disc = b * b - 4.0 * a0 * c
    if disc < 0.0 or a0 <= 0.0:
        return np.nan
    sq = np.sqrt(disc)
    return float((-b + sq) / (2.0 * a0) if b <= 0.0 else (2.0 * c) / (-b - sq))


@jit
def _collapsed_flow_at(hc: FloatArray, h: float) -> float:
    """Collapsed flow q on the falling branch (a2 < 0) where a0 + a1 q + a2 q^2 = h."""
    a0 = hc[0]
    a1 = hc[1]
    a2 = hc[2]
    disc = a1 * a1 - 4.0 * a2 * (a0 - h)
    if disc < 0.0:
        return np.nan
    return float((-a1 - np.sqrt(disc)) / (2.0 * a2))


@jit
def _pump_cost(
    hc: FloatArray,
    pc: FloatArray,
    rated_power: float,
    flow: float,
    head: float,
    motor: FloatArray,
    drive: FloatArray,
) -> tuple[float, float]:
    """(electrical power [W], speed ratio) of one pump delivering ``flow`` at ``head``."""
    r = _speed_at_head(hc, flow, head)
    p = shaft_power(pc, flow, r)
    return electrical_power_unchecked(p, rated_power, motor, drive), r


@jit
def _flow_window(
    hc: FloatArray,
    pc: FloatArray,
    head: float,
    r_min: float,
    r_max: float,
    q_min_ratio: float,
    q_max_ratio: float,
) -> tuple[float, float]:
    """Feasible flow window [Q_lo, Q_hi] (m^3/s) of one pump at ``head``; NaN if none.

    Worked in collapsed flow q = Q/r: at fixed head, r = sqrt(head / h(q)) rises with q
    on the falling branch of h, so speed limits and the BEP window are both q-intervals,
    and Q = q r is increasing in q.
    """
    a0 = hc[0]
    a1 = hc[1]
    a2 = hc[2]
    ok = (
        np.isfinite(a0)
        and np.isfinite(a1)
        and np.isfinite(a2)
        and a0 > 0.0
        and a2 < 0.0
        and head > 0.0
        and 0.0 <= r_min <= r_max
        and r_max > 0.0
        and np.isfinite(r_max)
        and 0.0 <= q_min_ratio <= q_max_ratio
    )
    if not ok:
        return np.nan, np.nan
    q_star = bep_flow(hc, pc, 1.0)
    if not np.isfinite(q_star):
        return np.nan, np.nan
    q_peak = max(0.0, -a1 / (2.0 * a2))
    h_peak = a0 + a1 * q_peak + a2 * q_peak * q_peak
    # Speed limits: h(q) in [head / r_max^2, head / r_min^2].
    h_at_rmax = head / (r_max * r_max)
    if h_at_rmax > h_peak:
        return np.nan, np.nan  # cannot make the head even at r_max
    q_hi = _collapsed_flow_at(hc, h_at_rmax)
    q_lo = q_peak
    if r_min > 0.0:
        h_at_rmin = head / (r_min * r_min)
        if h_at_rmin < h_peak:
            q_lo = max(q_lo, _collapsed_flow_at(hc, h_at_rmin))
    q_lo = max(q_lo, q_min_ratio * q_star)
    q_hi = min(q_hi, q_max_ratio * q_star)
    if not (q_lo <= q_hi) or q_hi <= 0.0:
        return np.nan, np.nan
    r_lo = np.sqrt(head / (a0 + a1 * q_lo + a2 * q_lo * q_lo))
    r_hi = np.sqrt(head / (a0 + a1 * q_hi + a2 * q_hi * q_hi))
    return q_lo * r_lo, q_hi * r_hi


@jit
def _lower_hull(x: FloatArray, y: FloatArray, idx: FloatArray) -> int:
    """Lower convex hull of points sorted by x (monotone chain); writes indices, returns count."""
    count = 0
    for i in range(x.shape[0]):
        if not np.isfinite(y[i]):
            continue
        while count >= 2:
            o = int(idx[count - 2])
            a = int(idx[count - 1])
            cross = (x[a] - x[o]) * (y[i] - y[o]) - (y[a] - y[o]) * (x[i] - x[o])
            if cross <= 0.0:
                count -= 1
            else:
                break
        idx[count] = i
        count += 1
    return count


@jit
def _exact_total(
    head_coeffs: FloatArray,
    power_coeffs: FloatArray,
    rated_power: FloatArray,
    flows: FloatArray,
    head: float,
    motor: FloatArray,
    drive: FloatArray,
    speeds: FloatArray,
) -> float:
    total = 0.0
    for i in range(flows.shape[0]):
        if flows[i] > 0.0:
            c, r = _pump_cost(
                head_coeffs[i], power_coeffs[i], rated_power[i], flows[i], head, motor, drive
            )
            total += c
            speeds[i] = r
        else:
            speeds[i] = 0.0
    return total


@jit
def stage_pumps_tables(
    head_coeffs: FloatArray,
    power_coeffs: FloatArray,
    rated_power: FloatArray,
    h_static: float,
    k: float,
    demand_flow: float,
    r_min: FloatArray,
    r_max: FloatArray,
    q_min_ratio: FloatArray,
    q_max_ratio: FloatArray,
    motor_eff_table: FloatArray,
    drive_eff_table: FloatArray,
) -> tuple[FloatArray, float]:
    """``stage_pumps`` with explicit 2 x N motor and drive efficiency tables."""
    n = head_coeffs.shape[0]
    speeds = np.full(n, np.nan)
    shapes_ok = (
        1 <= n <= _MAX_PUMPS
        and head_coeffs.shape[1] == 3
        and power_coeffs.shape[0] == n
        and power_coeffs.shape[1] == 4
        and rated_power.shape[0] == n
        and r_min.shape[0] == n
        and r_max.shape[0] == n
        and q_min_ratio.shape[0] == n
        and q_max_ratio.shape[0] == n
    )
    if not shapes_ok or not (h_static >= 0.0 and k >= 0.0 and np.isfinite(h_static)):
        return speeds, np.nan
    if not (np.isfinite(k) and np.isfinite(demand_flow)):
        return speeds, np.nan
    if not efficiency_tables_valid(motor_eff_table, drive_eff_table):
        return speeds, np.nan
    if demand_flow <= 0.0:
        speeds[:] = 0.0
        return speeds, 0.0
    head = h_static + k * demand_flow * demand_flow
    motor = motor_eff_table
    drive = drive_eff_table

    # Per pump: feasible window, cost grid, lower convex hull of (flow, cost).
    grid_q = np.zeros((n, _GRID))
    grid_c = np.full((n, _GRID), np.nan)
    hull = np.zeros((n, _GRID))
    hull_len = np.zeros(n, dtype=np.int64)
    q_lo = np.full(n, np.nan)
    q_hi = np.full(n, np.nan)
    for i in range(n):
        lo, hi = _flow_window(
            head_coeffs[i], power_coeffs[i], head, r_min[i], r_max[i],
            q_min_ratio[i], q_max_ratio[i],
        )
        if not (np.isfinite(lo) and np.isfinite(hi) and rated_power[i] > 0.0):
            continue
        for g in range(_GRID):
            f = lo + (hi - lo) * g / (_GRID - 1)
            grid_q[i, g] = f
            grid_c[i, g] = _pump_cost(
                head_coeffs[i], power_coeffs[i], rated_power[i], f, head, motor, drive
            )[0]
        cnt = _lower_hull(grid_q[i], grid_c[i], hull[i])
        if cnt == 0:
            continue
        hull_len[i] = cnt
        q_lo[i] = grid_q[i, int(hull[i, 0])]
        q_hi[i] = grid_q[i, int(hull[i, cnt - 1])]

    best_total = np.inf
    best_flows = np.zeros(n)
    flows = np.zeros(n)
    trial_speeds = np.zeros(n)
    pos = np.zeros(n, dtype=np.int64)
    slack = 1e-12 * demand_flow
    for mask in range(1, 1 << n):
        lo_sum = 0.0
        hi_sum = 0.0
        usable = True
        for i in range(n):
            if mask >> i & 1:
                if hull_len[i] == 0:
                    usable = False
                    break
                lo_sum += q_lo[i]
                hi_sum += q_hi[i]
        if not usable or lo_sum > demand_flow + slack or hi_sum < demand_flow - slack:
            continue
        # Fill hull segments in order of increasing slope (marginal W per m^3/s).
        remaining = demand_flow - lo_sum
        for i in range(n):
            flows[i] = q_lo[i] if mask >> i & 1 else 0.0
            pos[i] = 0
        while remaining > 0.0:
            best_i = -1
            best_slope = np.inf
            for i in range(n):
                if mask >> i & 1 and pos[i] + 1 < hull_len[i]:
                    a = int(hull[i, pos[i]])
                    b = int(hull[i, pos[i] + 1])
                    slope = (grid_c[i, b] - grid_c[i, a]) / (grid_q[i, b] - grid_q[i, a])
                    if slope < best_slope:
                        best_slope = slope
                        best_i = i
            if best_i < 0:
                break
            a = int(hull[best_i, pos[best_i]])
            b = int(hull[best_i, pos[best_i] + 1])
            length = grid_q[best_i, b] - grid_q[best_i, a]
            if length <= remaining:
                flows[best_i] = grid_q[best_i, b]
                remaining -= length
                pos[best_i] += 1
            else:
                flows[best_i] = grid_q[best_i, a] + remaining
                remaining = 0.0
        total = _exact_total(
            head_coeffs, power_coeffs, rated_power, flows, head, motor, drive, trial_speeds
        )
        if total < best_total:
            best_total = total
            for i in range(n):  # not best_flows[:] = flows: an array-to-slice copy brings
                best_flows[i] = flows[i]  # Numba's shape-error message (~2 s of compile)

    if not np.isfinite(best_total):
        return speeds, np.nan
    total = _exact_total(
        head_coeffs, power_coeffs, rated_power, best_flows, head, motor, drive, speeds
    )
    return speeds, total


@jit
def stage_pumps(
    head_coeffs: FloatArray,
    power_coeffs: FloatArray,
    rated_power: FloatArray,
    h_static: float,
    k: float,
    demand_flow: float,
    r_min: FloatArray,
    r_max: FloatArray,
    q_min_ratio: FloatArray,
    q_max_ratio: FloatArray,
) -> tuple[FloatArray, float]:
    """Least-power staging of n <= 8 parallel pumps (not necessarily identical).

    ``head_coeffs`` (n, 3) and ``power_coeffs`` (n, 4) per pump as in ``kernels.curves``;
    ``rated_power`` (n,) rated motor shaft power [W] (the load reference of the default
    motor and drive efficiency tables); ``h_static`` [m], ``k`` [s^2/m^5];
    ``demand_flow`` [m^3/s]; per pump speed limits ``r_min``/``r_max`` and flow window
    ``q_min_ratio``/``q_max_ratio`` as multiples of its best-efficiency flow at the
    running speed.

    Returns ``(speed_ratio[n], total_electrical_power [W])``: 0 for pumps that stay off.
    Zero demand gives all-off and 0 W. If no subset can deliver the demand within every
    limit (or inputs are invalid, or n > 8), speeds and total are all NaN. Pumps whose
    curves are NaN or not concave (a2 >= 0) are never started.
    """
    motor = np.array(MOTOR_EFFICIENCY_TABLE)
    drive = np.array(DRIVE_EFFICIENCY_TABLE)
    return stage_pumps_tables(
        head_coeffs, power_coeffs, rated_power, h_static, k, demand_flow,
        r_min, r_max, q_min_ratio, q_max_ratio, motor, drive,
    )
