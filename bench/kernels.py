"""Benchmark: each kernel against its NumPy/SciPy equivalent, plus compile and cache-load times.

Run as ``python bench/kernels.py``. Prints median wall times per call and the speed-up,
then the per-drive optimizer cycle (refit from 3600 samples, operating point, minimum
speed, staging of 4 pumps), then cold-compile and cached-load times measured in fresh
subprocesses with a temporary NUMBA_CACHE_DIR. Figures only; nothing is asserted.
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from scipy import optimize  # noqa: E402

import kernels as k  # noqa: E402

RNG = np.random.default_rng(42)
HC = np.array([50.0, 40.0, -4800.0])
PC = np.array([8000.0, 4.0e5, -2.0e6, 5.0e6])
MOTOR, DRIVE = k.default_efficiency_tables()


def median_time(func, *args, repeat=200, min_time=0.2):
    func(*args)  # compile / warm
    times = []
    start = time.perf_counter()
    while len(times) < repeat or time.perf_counter() - start < min_time:
        t0 = time.perf_counter()
        func(*args)
        times.append(time.perf_counter() - t0)
        if len(times) >= 20 * repeat:
            break
    return statistics.median(times)


# --- data ------------------------------------------------------------------------------

N = 3600
R = RNG.uniform(0.6, 1.0, N)
FLOW = RNG.uniform(0.01, 0.075, N) * R
HEAD = (HC[0] * R**2 + HC[1] * R * FLOW + HC[2] * FLOW**2) * (1 + 0.01 * RNG.standard_normal(N))
POWER = (PC[0] * R**3 + PC[1] * R**2 * FLOW + PC[2] * R * FLOW**2 + PC[3] * FLOW**3) * (
    1 + 0.01 * RNG.standard_normal(N)
)
BAD = RNG.random(N) < 0.05
HEAD[BAD] *= RNG.uniform(0, 3, BAD.sum())
POWER[BAD] *= RNG.uniform(0, 3, BAD.sum())
W = np.ones(N)
HS, KSYS = 18.0, 550.0


def scaled(sq, sh):
    return (np.array([sh * HC[j] / sq**j for j in range(3)]),
            np.array([sh * sq * PC[j] / sq**j for j in range(4)]))


PUMPS = [scaled(*v) for v in [(1.0, 1.0), (1.3, 1.05), (0.8, 0.97), (1.1, 1.1)]]
HCS = np.array([p[0] for p in PUMPS])
PCS = np.array([p[1] for p in PUMPS])
RATED = np.array([1.15 * k.shaft_power(p, k.bep_flow(h, p, 1.0), 1.0) for h, p in PUMPS])
RMIN = np.array([0.5, 0.45, 0.55, 0.5])
RMAX = np.array([1.0, 1.0, 1.05, 0.95])
QMIN = np.array([0.6, 0.5, 0.6, 0.7])
QMAX = np.array([1.3, 1.25, 1.2, 1.3])
DEMAND = 0.16


# --- NumPy / SciPy equivalents ---------------------------------------------------------


def np_huber_fit(flow, y, r, w, exponent, degree, c=1.345, max_iter=50, tol=1e-6):
    ok = np.isfinite(flow) & np.isfinite(y) & (r >= 0.2) & (w > 0)
    q = flow[ok] / r[ok]
    yc = y[ok] / r[ok] ** exponent
    ww = w[ok] * r[ok] ** (2 * exponent)
    centre, half = (q.max() + q.min()) / 2, (q.max() - q.min()) / 2
    x = np.vander((q - centre) / half, degree + 1, increasing=True)
    scale_y = np.abs(yc).max()
    ys = yc / scale_y
    sw = np.sqrt(ww)
    beta = np.linalg.lstsq(x * sw[:, None], ys * sw, rcond=None)[0]
    for _ in range(max_iter):
        u = np.abs(ys - x @ beta) * sw
        s = 1.4826 * np.median(u)
        wt = ww * np.minimum(1.0, c * s / np.maximum(u, 1e-300))
        sq = np.sqrt(wt)
        new = np.linalg.lstsq(x * sq[:, None], ys * sq, rcond=None)[0]
        done = np.max(np.abs(new - beta)) <= tol
        beta = new
        if done:
            break
    poly = np.polynomial.Polynomial(beta)(np.polynomial.Polynomial([-centre / half, 1 / half]))
    return poly.coef * scale_y


def np_fit_pump(flow, head, power, r, w):
    return np_huber_fit(flow, head, r, w, 2, 2), np_huber_fit(flow, power, r, w, 3, 3)


def np_polyfit_pump(flow, head, power, r, w):
    q = flow / r
    return np.polyfit(q, head / r**2, 2), np.polyfit(q, power / r**3, 3)


def sp_operating_point(hc, hs, kk, r):
    def f(q):
        return hc[0] * r * r + hc[1] * r * q + hc[2] * q * q - hs - kk * q * q
    return optimize.brentq(f, 0.0, 1.0)


def sp_min_speed(hc, hs, kk, q, r_min, r_max):
    def f(r):
        return hc[0] * r * r + hc[1] * r * q + hc[2] * q * q - hs - kk * q * q
    if f(r_min) >= 0:
        return r_min
    return optimize.brentq(f, r_min, r_max)


def sp_estimate_flow(pc, p, r):
    return optimize.brentq(
        lambda q: pc[0] * r**3 + pc[1] * r * r * q + pc[2] * r * q * q + pc[3] * q**3 - p,
        0.0, 0.075 * r,
    )


def _bep(hc, pc):
    res = optimize.minimize_scalar(
        lambda q: -q * (hc[0] + hc[1] * q + hc[2] * q * q) / (pc[0] + pc[1] * q + pc[2] * q * q
                                                           + pc[3] * q**3),
        bounds=(1e-6, 0.2), method="bounded",
    )
    return res.x


def sp_stage(hcs, pcs, rated, hs, kk, demand, rmin, rmax, qmin, qmax):
    """SciPy path: per pump, the feasible flow window at the shared head by brentq; per
    subset, SLSQP over the running pumps' flows with sum(Q) = demand."""
    head = hs + kk * demand**2
    n = len(hcs)

    def speed(i, q):
        a0, a1, a2 = hcs[i]
        return (-a1 * q + math.sqrt((a1 * q) ** 2 - 4 * a0 * (a2 * q * q - head))) / (2 * a0)

    def cost(i, q):
        r = speed(i, q)
        p = pcs[i][0] * r**3 + pcs[i][1] * r * r * q + pcs[i][2] * r * q * q + pcs[i][3] * q**3
        load = p / rated[i]
        return p / (np.interp(load, MOTOR[0], MOTOR[1]) * np.interp(load, DRIVE[0], DRIVE[1]))

    windows = []
    for i in range(n):
        bep = _bep(hcs[i], pcs[i])
        q_top = 0.5  # beyond any pump here
        lo, hi = 1e-9, q_top
        for g in [lambda q, i=i: speed(i, q) - rmin[i],
                  lambda q, i=i, b=bep: q / speed(i, q) - qmin[i] * b]:
            if g(1e-9) < 0 < g(q_top):
                lo = max(lo, optimize.brentq(g, 1e-9, q_top))
        for g in [lambda q, i=i: speed(i, q) - rmax[i],
                  lambda q, i=i, b=bep: q / speed(i, q) - qmax[i] * b]:
            if g(1e-9) < 0 < g(q_top):
                hi = min(hi, optimize.brentq(g, 1e-9, q_top))
        windows.append((lo, hi) if lo < hi else None)

    best = math.inf
    for m in range(1, n + 1):
        for sub in itertools.combinations(range(n), m):
            if any(windows[i] is None for i in sub):
                continue
            bounds = [windows[i] for i in sub]
            if sum(b[0] for b in bounds) > demand or sum(b[1] for b in bounds) < demand:
                continue
            x0 = np.array([b[0] + (b[1] - b[0]) * 0.5 for b in bounds])
            x0 *= demand / x0.sum()
            res = optimize.minimize(
                lambda x, s=sub: sum(cost(i, xi) for i, xi in zip(s, x, strict=True)), x0,
                method="SLSQP", bounds=bounds,
                constraints=[{"type": "eq", "fun": lambda x: x.sum() - demand}],
            )
            if res.success and res.fun < best:
                best = res.fun
    return best


def np_integrate(t, p, max_gap):
    dt = np.diff(t)
    ok = (dt > 0) & (dt <= max_gap) & np.isfinite(p[:-1]) & np.isfinite(p[1:])
    return float(np.sum(0.5 * (p[:-1] + p[1:])[ok] * dt[ok])), float(dt[ok].sum())


def np_characteristic(r, rated, sp, pp):
    return rated * np.interp(100 * r, sp, pp) / 100


def np_rls(theta, p, x, y, lam):
    px = p @ x
    denom = lam + x @ px
    err = y - theta @ x
    theta += px * err / denom
    p -= np.outer(px, px) / denom
    p /= lam
    return err


def main():
    t = np.cumsum(RNG.uniform(0.5, 1.5, N))
    p_series = RNG.uniform(1e4, 2e4, N)
    sp = np.array(k.CHARACTERISTIC_SPEED_PCT)
    pp = np.array(k.CHARACTERISTIC_POWER_PCT)
    x3 = np.array([1.0, 0.5, 0.25])
    state = k.rls_init(3, 1e3)
    theta_np, p_np = np.zeros(3), np.eye(3) * 1e3
    q_op = k.operating_point(HC, HS, KSYS, 0.9)
    p_meas = k.shaft_power(PC, 0.04, 0.9)

    rows = [
        ("fit_pump_curves (3600, Huber)", (k.fit_pump_curves, (FLOW, HEAD, POWER, R, W)),
         ("numpy lstsq IRLS", np_fit_pump, (FLOW, HEAD, POWER, R, W))),
        ("fit_pump_curves (3600, Huber)", (k.fit_pump_curves, (FLOW, HEAD, POWER, R, W)),
         ("numpy.polyfit (plain LS)", np_polyfit_pump, (FLOW, HEAD, POWER, R, W))),
        ("fit_system_curve (3600)", (k.fit_system_curve, (FLOW, HS + KSYS * FLOW**2)),
         ("scipy nnls", lambda q, h: optimize.nnls(np.column_stack([np.ones_like(q), q * q]),
                                                   h), (FLOW, HS + KSYS * FLOW**2))),
        ("operating_point", (k.operating_point, (HC, HS, KSYS, 0.9)),
         ("scipy brentq", sp_operating_point, (HC, HS, KSYS, 0.9))),
        ("min_speed_for_flow", (k.min_speed_for_flow, (HC, HS, KSYS, q_op, 0.3, 1.0)),
         ("scipy brentq", sp_min_speed, (HC, HS, KSYS, q_op, 0.3, 1.0))),
        ("estimate_flow", (k.estimate_flow, (PC, p_meas, 0.9)),
         ("scipy brentq", sp_estimate_flow, (PC, p_meas, 0.9))),
        ("bep_flow", (k.bep_flow, (HC, PC, 1.0)),
         ("scipy minimize_scalar", _bep, (HC, PC))),
        ("stage_pumps (4 pumps)", (k.stage_pumps, (HCS, PCS, RATED, HS, KSYS, DEMAND, RMIN,
                                                   RMAX, QMIN, QMAX)),
         ("scipy SLSQP per subset", sp_stage, (HCS, PCS, RATED, HS, KSYS, DEMAND, RMIN, RMAX,
                                               QMIN, QMAX))),
        ("integrate_energy (3600)", (k.integrate_energy, (t, p_series, 5.0)),
         ("numpy masked trapezoid", np_integrate, (t, p_series, 5.0))),
        ("characteristic_baseline_power", (k.characteristic_baseline_power, (0.7, 1e4, sp, pp)),
         ("numpy interp", np_characteristic, (0.7, 1e4, sp, pp))),
        ("rls_update (3 params)", (k.rls_update, (state, x3, 1.0, 0.999)),
         ("numpy", np_rls, (theta_np, p_np, x3, 1.0, 0.999))),
    ]
    print(f"{'kernel':34s} {'numba':>10s}   {'reference':26s} {'ref time':>10s} {'speed-up':>9s}")
    for name, (kf, kargs), (rname, rf, rargs) in rows:
        tk = median_time(kf, *kargs)
        tr = median_time(rf, *rargs, repeat=5 if "SLSQP" in rname else 50)
        print(f"{name:34s} {tk * 1e6:8.1f}us   {rname:26s} {tr * 1e6:8.0f}us {tr / tk:8.0f}x")

    def cycle_numba():
        hc, pc, _, _ = k.fit_pump_curves(FLOW, HEAD, POWER, R, W)
        k.operating_point(hc, HS, KSYS, 0.9)
        k.min_speed_for_flow(hc, HS, KSYS, q_op, 0.3, 1.0)
        return k.stage_pumps(HCS, PCS, RATED, HS, KSYS, DEMAND, RMIN, RMAX, QMIN, QMAX)

    def cycle_scipy():
        hc, pc = np_fit_pump(FLOW, HEAD, POWER, R, W)
        sp_operating_point(hc, HS, KSYS, 0.9)
        sp_min_speed(hc, HS, KSYS, q_op, 0.3, 1.0)
        return sp_stage(HCS, PCS, RATED, HS, KSYS, DEMAND, RMIN, RMAX, QMIN, QMAX)

    tn = median_time(cycle_numba, repeat=100)
    ts = median_time(cycle_scipy, repeat=5)
    print()
    print("optimizer cycle per drive (refit 3600 samples + operating point + min speed + "
          "staging of 4 pumps)")
    print(f"  numba {tn * 1e3:.3f} ms   numpy/scipy {ts * 1e3:.1f} ms   speed-up {ts / tn:.0f}x")
    print(f"  staging power: numba {cycle_numba()[1]:.1f} W, scipy SLSQP "
          f"{cycle_scipy():.1f} W")

    print()
    code = ("import time; t=time.perf_counter(); import kernels; t1=time.perf_counter(); "
            "w=kernels.warmup(); print(t1-t, sum(w.values()), max(w, key=w.get), max(w.values()))")
    with tempfile.TemporaryDirectory() as cache:
        env = dict(os.environ, NUMBA_CACHE_DIR=cache, PYTHONPATH=str(ROOT))
        for label in ("cold compile (empty cache)", "cached load"):
            out = subprocess.run([sys.executable, "-c", code], env=env, check=True,
                                 capture_output=True, text=True).stdout.split()
            print(f"{label:28s} import {float(out[0]):5.2f} s, warmup() {float(out[1]):6.2f} s "
                  f"(slowest: {out[2]} {float(out[3]):.2f} s)")


if __name__ == "__main__":
    main()
