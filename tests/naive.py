"""Slow, obviously-correct NumPy references for the kernels.

Each function mirrors one kernel with the simplest code that could be right: dense loops,
``np.interp``, ``np.linalg.lstsq``, closed forms. Tests compare the compiled kernels with
these on ordinary, NaN and degenerate inputs.
"""

from __future__ import annotations

import math

import numpy as np


def _valid_table(xp, fp):
    xp = np.asarray(xp, dtype=float)
    fp = np.asarray(fp, dtype=float)
    return (
        xp.size > 0
        and xp.size == fp.size
        and bool(np.all(np.isfinite(xp)))
        and bool(np.all(np.isfinite(fp)))
        and bool(np.all(np.diff(xp) > 0))
    )


def interp_clamped(x, xp, fp):
    if not _valid_table(xp, fp) or math.isnan(x):
        return math.nan
    return float(np.interp(x, xp, fp))


def characteristic_baseline_power(speed_ratio, rated_power, speed_pct, power_pct):
    if not (math.isfinite(rated_power) and rated_power >= 0):
        return math.nan
    return rated_power * interp_clamped(100 * speed_ratio, speed_pct, power_pct) / 100


def table_baseline_power(flow_ratio, rated_power, flow_pct, power_pct):
    if not (math.isfinite(rated_power) and rated_power >= 0):
        return math.nan
    return rated_power * interp_clamped(100 * flow_ratio, flow_pct, power_pct) / 100


def integrate_energy(t, p, max_gap):
    t = np.asarray(t, dtype=float)
    p = np.asarray(p, dtype=float)
    if t.size != p.size:
        return math.nan, math.nan
    joules = 0.0
    covered = 0.0
    for i in range(t.size - 1):
        dt = t[i + 1] - t[i]
        ok = (
            math.isfinite(dt)
            and 0 < dt <= max_gap
            and math.isfinite(p[i])
            and math.isfinite(p[i + 1])
        )
        if ok:
            joules += (p[i] + p[i + 1]) / 2 * dt
            covered += dt
    return joules, covered


# --- curves ---------------------------------------------------------------------------

G = 9.80665


def head(hc, q, r):
    return hc[0] * r**2 + hc[1] * r * q + hc[2] * q**2


def shaft_power(pc, q, r):
    return pc[0] * r**3 + pc[1] * r**2 * q + pc[2] * r * q**2 + pc[3] * q**3


def efficiency(hc, pc, q, r, rho):
    h = head(hc, q, r)
    p = shaft_power(pc, q, r)
    if not (q >= 0 and h >= 0 and p > 0 and rho > 0):
        return math.nan
    return rho * G * q * h / p


def bep_flow(hc, pc, r):
    """Dense scan of the rated-speed efficiency up to run-out, times r."""
    roots = np.roots([hc[2], hc[1], hc[0]]) if hc[2] != 0 else np.roots([hc[1], hc[0]])
    pos = [z.real for z in roots if abs(z.imag) < 1e-12 and z.real > 0]
    if not pos:
        return math.nan
    q = np.linspace(0, min(pos), 200_001)[1:-1]
    eta = q * head(hc, q, 1.0) / shaft_power(pc, q, 1.0)
    return r * q[np.argmax(eta)]


# --- operating points ------------------------------------------------------------------


def operating_point(hc, hs, k, r):
    if not (hs >= 0 and k >= 0 and r >= 0):
        return math.nan
    a, b, c = hc[2] - k, hc[1] * r, hc[0] * r**2 - hs
    roots = np.roots([a, b, c]) if a != 0 else np.roots([b, c])
    ok = [
        z.real
        for z in roots
        if abs(z.imag) <= 1e-9 * max(1.0, abs(z.real))
        and z.real >= -1e-15
        and 2 * a * z.real + b <= 1e-9 * max(1.0, abs(b))
    ]
    return max(ok) if ok else math.nan


def flow_at_head(hc, h, r):
    """The positive root of a2 Q^2 + a1 r Q + (a0 r^2 - h) = 0 by numpy's roots; 0 if it cannot lift h."""
    if not (r > 0 and hc[0] * r * r > h and hc[2] < 0 and h >= 0):
        return 0.0
    roots = np.roots([hc[2], hc[1] * r, hc[0] * r * r - h])
    return max(z.real for z in roots if abs(z.imag) < 1e-12 and z.real >= 0)


def common_speed(hcs, h, q, r_max):
    """A fine grid of speeds, then the first one whose total flow reaches q (brute force)."""
    grid = np.linspace(0.0, r_max, 200_001)
    totals = np.array([sum(flow_at_head(hc, h, r) for hc in hcs) for r in grid[::1000]])
    if len(hcs) == 0 or totals[-1] <= q:
        return r_max
    coarse = int(np.argmax(totals >= q))  # first coarse grid point that delivers
    fine = grid[max(coarse - 1, 0) * 1000 : coarse * 1000 + 1]
    ok = [r for r in fine if sum(flow_at_head(hc, h, r) for hc in hcs) >= q]
    return ok[0]


def system_curve_r_squared(flow, head_, hs, k):
    predicted = hs + k * np.asarray(flow) ** 2
    total = np.sum((head_ - np.mean(head_)) ** 2)
    return 1.0 - np.sum((head_ - predicted) ** 2) / total if total > 0 else math.nan


def min_speed_for_flow(hc, hs, k, q, r_min, r_max):
    """Smallest r on a fine grid (refined by bisection) where pump head >= system head."""
    def surplus(r):
        return head(hc, q, r) - (hs + k * q * q)

    rs = np.linspace(r_min, r_max, 20_001)
    s = surplus(rs)
    # the kernel takes the upper branch: surplus rising with r
    idx = np.nonzero((s >= 0) & (2 * hc[0] * rs + hc[1] * q >= 0))[0]
    if idx.size == 0:
        return math.nan
    i = idx[0]
    if i == 0:
        return r_min
    lo, hi = rs[i - 1], rs[i]
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if surplus(mid) < 0 else (lo, mid)
    return hi


def estimate_flow(pc, power, r, q_max=math.inf, min_sensitivity=0.2):
    """Invert P on a dense grid of its rising branch from q = 0."""
    if not (r > 0 and pc[1] > 0):
        return math.nan
    q_end = q_max
    dp = np.roots([3 * pc[3], 2 * pc[2], pc[1]]) if pc[3] != 0 else np.roots([2 * pc[2], pc[1]])
    for z in dp:
        if abs(z.imag) < 1e-12 and z.real > 0:
            q_end = min(q_end, z.real)
    q_ref = q_end
    if not math.isfinite(q_end):
        q_end = 1.0
        while shaft_power(pc, q_end, 1.0) < power / r**3 and q_end < 1e30:
            q_end *= 2
    q = np.linspace(0, q_end, 400_001)
    p = shaft_power(pc, q, 1.0)
    target = power / r**3
    if not (p[0] <= target <= p[-1]):
        return math.nan
    qs = float(np.interp(target, p, q))
    slope = pc[1] + 2 * pc[2] * qs + 3 * pc[3] * qs**2
    q_ref = q_ref if math.isfinite(q_ref) else qs
    if slope * q_ref / shaft_power(pc, qs, 1.0) < min_sensitivity:
        return math.nan
    return qs * r


# --- fits ------------------------------------------------------------------------------


def huber_irls(x, y, w, c=1.345, max_iter=200, tol=1e-10):
    """Textbook Huber IRLS with lstsq and a full MAD; x is (n, m)."""
    sw = np.sqrt(w)
    beta = np.linalg.lstsq(x * sw[:, None], y * sw, rcond=None)[0]
    wt = w.copy()
    if c > 0:
        for _ in range(max_iter):
            u = np.abs(y - x @ beta) * sw
            s = 1.482602218505602 * np.median(u)
            if not s > 0:
                break
            wt = w * np.minimum(1.0, c * s / np.maximum(u, 1e-300))
            sq = np.sqrt(wt)
            new = np.linalg.lstsq(x * sq[:, None], y * sq, rcond=None)[0]
            done = np.max(np.abs(new - beta)) <= tol
            beta = new
            if done:
                break
    sq = np.sqrt(wt)
    beta = np.linalg.lstsq(x * sq[:, None], y * sq, rcond=None)[0]
    return beta, wt


def fit_collapsed(flow, y, r, w, exponent, degree, c=1.345, min_r=0.2):
    """Collapse, then fit in monomials of q on the centred/scaled variable via lstsq."""
    flow, y, r, w = map(np.asarray, (flow, y, r, w))
    ok = (
        np.isfinite(flow) & np.isfinite(y) & np.isfinite(r) & np.isfinite(w)
        & (w > 0) & (r >= min_r) & (flow >= 0)
    )
    q = flow[ok] / r[ok]
    yc = y[ok] / r[ok] ** exponent
    ww = w[ok] * r[ok] ** (2 * exponent)
    if q.size < degree + 3 or not (q.max() - q.min() > 0.1 * q.max()):
        return np.full(degree + 1, np.nan)
    centre, half = (q.max() + q.min()) / 2, (q.max() - q.min()) / 2
    t = (q - centre) / half
    ys = np.abs(yc).max()
    beta, _ = huber_irls(np.vander(t, degree + 1, increasing=True), yc / ys, ww / ww.max(), c)
    # back to monomials in q via numpy's polynomial composition
    poly = np.polynomial.Polynomial(beta)
    mono = poly(np.polynomial.Polynomial([-centre / half, 1 / half]))
    coeffs = np.zeros(degree + 1)
    coeffs[: mono.coef.size] = mono.coef
    return coeffs * ys


def fit_system_curve_lsq(flow, head_):
    """Plain non-negative least squares H = hs + k Q^2 (scipy nnls)."""
    from scipy.optimize import nnls

    u = np.asarray(flow) ** 2
    scale = u.max()
    sol, _ = nnls(np.column_stack([np.ones_like(u), u / scale]), np.asarray(head_))
    return sol[0], sol[1] / scale


# --- electrical, staging ---------------------------------------------------------------


def electrical_power(p, rated, motor, drive):
    if not (p >= 0 and rated > 0):
        return math.nan
    if p == 0:
        return 0.0
    load = p / rated
    return p / (np.interp(load, motor[0], motor[1]) * np.interp(load, drive[0], drive[1]))


def stage_brute_force(hc, pc, rated, hs, k, demand, r_min, r_max, qmin, qmax, motor, drive,
                      grid=240):
    """Exhaustive search: every subset, a fine grid over the flows of all but one running
    pump, the last pump's flow fixed by the demand; every constraint checked directly on
    speed and on Q/r against BEP. Returns the least total electrical power found."""
    import itertools

    n = len(hc)
    H = hs + k * demand**2
    bep = [bep_flow(hc[i], pc[i], 1.0) for i in range(n)]

    def speed(i, q):
        a0, a1, a2 = hc[i]
        disc = (a1 * q) ** 2 - 4 * a0 * (a2 * q**2 - H)
        return np.where(disc >= 0, (-a1 * q + np.sqrt(np.maximum(disc, 0))) / (2 * a0), np.nan)

    def cost(i, q):
        q = np.asarray(q, dtype=float)
        r = speed(i, q)
        with np.errstate(invalid="ignore", divide="ignore"):
            ok = (
                (r >= r_min[i] - 1e-12) & (r <= r_max[i] + 1e-12)
                & (q >= qmin[i] * bep[i] * r * (1 - 1e-9)) & (q <= qmax[i] * bep[i] * r * (1 + 1e-9))
                & (q > 0)
            )
        p = shaft_power(pc[i], q, r)
        load = p / rated[i]
        el = p / (np.interp(load, motor[0], motor[1]) * np.interp(load, drive[0], drive[1]))
        return np.where(ok, el, np.inf)

    # Each pump's feasible flows at this head, from a dense scan.
    window = []
    scan = np.linspace(0, demand, 200_001)
    for i in range(n):
        feasible = scan[np.isfinite(cost(i, scan))]
        window.append((feasible.min(), feasible.max()) if feasible.size else None)
    best = math.inf
    for m in range(1, n + 1):
        for sub in itertools.combinations(range(n), m):
            if any(window[i] is None for i in sub):
                continue
            free = sub[:-1]
            axes = [np.linspace(*window[i], grid) for i in free]
            if free:
                mesh = np.meshgrid(*axes, indexing="ij")
                total_free = sum(mesh)
                last = demand - total_free
                c = cost(sub[-1], last)
                for i, qi in zip(free, mesh, strict=True):
                    c = c + cost(i, qi)
            else:
                c = cost(sub[0], np.array([demand]))
            best = min(best, float(np.min(c)))
    return best


# --- RLS -------------------------------------------------------------------------------


def rls_batch(x, y, p0, forgetting):
    """Exponentially weighted least squares with a ridge prior, solved directly."""
    n, m = x.shape
    lam = forgetting ** np.arange(n - 1, -1, -1)
    a = (x * lam[:, None]).T @ x + forgetting**n * np.eye(m) / p0
    b = (x * lam[:, None]).T @ y
    return np.linalg.solve(a, b)


# --- sensorless flow and calibration --------------------------------------------------


def band_uncertainty(band, x):
    u_in, u_out, lo, hi, ref, _shift, printed, u_printed = band
    return u_in + u_out * max(lo - x, x - hi, 0.0) / ref + u_printed * (max(printed - x, 0.0) / ref) ** 2


def flow_uncertainty_numeric(coeffs, q, y, r, rel_y_u, rel_speed_u, band, invert):
    """u_Q by central differences of the inverse ``invert(y, r)`` (first-order propagation)."""
    x = q / r
    u_y = y * math.hypot(rel_y_u, band_uncertainty(band, x))
    dy = 1e-6 * y
    dq_dy = (invert(y + dy, r) - invert(y - dy, r)) / (2 * dy)
    dr = 1e-6 * r
    dq_dr = (invert(y, r + dr) - invert(y, r - dr)) / (2 * dr)
    return math.hypot(dq_dy * u_y, dq_dr * rel_speed_u * r)


def flow_from_head(hc, head, r):
    """Largest root of the collapsed head curve (the falling branch), by numpy.roots."""
    roots = np.roots([hc[2], hc[1], hc[0] - head / r**2])
    real = [z.real for z in roots if abs(z.imag) < 1e-12 and z.real >= 0]
    return max(real) * r if real else math.nan


def flow_from_ratio_uncertainty(hc, pc, head, power, r, rel):
    """u_Q of Q = r x, h(x)/p(x) = H r / P, by central differences of a brentq inverse (no speed error)."""
    from scipy import optimize

    def ratio(x):
        return np.polynomial.polynomial.polyval(x, hc) / np.polynomial.polynomial.polyval(x, pc)

    def invert(target):
        return optimize.brentq(lambda x: ratio(x) - target, 0.0, 0.09, xtol=1e-16)

    target = head * r / power
    dt = 1e-6 * target
    return r * abs(invert(target + dt) - invert(target - dt)) / (2 * dt) * rel * target


def fit_catalogue_curve(q, y, degree):
    """Relative-residual least squares with numpy.linalg.lstsq."""
    a = np.vstack([q**j for j in range(degree + 1)]).T / y[:, None]
    return np.linalg.lstsq(a, np.ones_like(y), rcond=None)[0]


def shaft_speed_ratio(f, p, p_rated, s):
    """Fixed-point iteration of r = f / (1 - s) - s / (1 - s) (P / P_rated) / r."""
    r = f
    for _ in range(200):
        r = f / (1 - s) - s / (1 - s) * (p / p_rated) / r
    return r
