"""Regression statistics for measurement and verification, after ASHRAE Guideline 14-2014.

Everything here is a pure function of arrays. Fractions stay fractions (0.3, not 30).

Formulas and editions
---------------------
ASHRAE Guideline 14-2014, "Measurement of Energy, Demand, and Water Savings", Annex B:

- CV(RMSE) = sqrt(Σ(yᵢ − ŷᵢ)² / (n − p)) / ȳ
- NMBE     = Σ(yᵢ − ŷᵢ) / ((n − p) · ȳ)

with p the number of fitted parameters (the 2014 edition divides both by n − p; the 2002
edition's NMBE used the same denominator). For an OLS fit with an intercept the in-sample
residuals sum to zero, so the NMBE of a baseline on its own data is ~0 by construction; it
becomes informative on data the model did not see (a hold-out, or the reporting period of a
model that should predict it). Hourly calibration limits: CV(RMSE) ≤ 30 %, |NMBE| ≤ 10 %.

Fractional savings uncertainty, Guideline 14-2014 Annex B, in the form that corrects for
autocorrelated residuals (as implemented by kW Engineering's nmecr,
``R/calculate_savings_and_uncertainty.R``, citing G14-2014 p. 91)::

    ΔE_save / E_save = 1.26 · t(1 − α/2, n' − p) · sqrt(MSE' · (1 + 2/n') · m) / (m · ȳ · F)

    n'   = n (1 − ρ) / (1 + ρ)       effective number of baseline intervals
    MSE' = Σ(yᵢ − ŷᵢ)² / (n' − p)    residual variance on the effective degrees of freedom
    m    = number of reporting intervals, F = E_save / E_baseline (savings fraction)

``savings_uncertainty`` returns the absolute half-width FSU · E_save (units of y summed over
the m intervals), from which the FSU of any saving follows. 1.26 is the
guideline's empirical correction for hourly (and 15-minute) models. Unlike nmecr, which
corrects only when ρ ≥ 0.5, the correction is applied for every ρ > 0 (the conservative
reading); ρ ≤ 0 counts as 0 (n' = n).

Data coverage follows CalTRACK 2.0 §2.2.1.2 (hourly methods): more than 90 % of the
baseline intervals must hold data.

Long because the Guideline 14 formulas, their editions and the tests of a baseline model are
one reference an auditor reads top to bottom; split, the formulas would lose their sources.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from statistics import NormalDist

import numpy as np
import numpy.typing as npt

from agent.errors import AgentError

FloatArray = npt.NDArray[np.float64]

G14_FACTOR_HOURLY = 1.26
"""Guideline 14's empirical factor for hourly and sub-hourly models."""

CONFIDENCE_LEVELS = (0.68, 0.90)
"""The two confidence levels every savings figure carries."""


class MvError(AgentError, ValueError):
    """Data that cannot support the statistic asked for (too few intervals, collinear columns)."""


# --------------------------------------------------------------------------- Student t

_NORMAL = NormalDist()


def _betacf(a: float, b: float, x: float) -> float:
    """Continued fraction of the incomplete beta function (modified Lentz's method)."""
    tiny = 1e-300
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = tiny if abs(d) < tiny else d
    d = 1.0 / d
    h = d
    for m in range(1, 20000):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = tiny if abs(d) < tiny else d
        c = 1.0 + aa / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = tiny if abs(d) < tiny else d
        c = 1.0 + aa / c
        c = tiny if abs(c) < tiny else c
        d = 1.0 / d
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < 1e-15:
            return h
    raise ArithmeticError(f"incomplete beta did not converge (a={a}, b={b}, x={x})")


def regularized_incomplete_beta(a: float, b: float, x: float) -> float:
    """I_x(a, b), the regularized incomplete beta function, for a, b > 0 and 0 ≤ x ≤ 1."""
    if not (a > 0 and b > 0 and 0.0 <= x <= 1.0):
        raise ValueError(f"incomplete beta needs a, b > 0 and 0 <= x <= 1, got {a}, {b}, {x}")
    if x in (0.0, 1.0):
        return x
    log_front = (math.lgamma(a + b) - math.lgamma(a) - math.lgamma(b)
                 + a * math.log(x) + b * math.log1p(-x))
    front = math.exp(log_front)
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _betacf(a, b, x) / a
    return 1.0 - front * _betacf(b, a, 1.0 - x) / b


def student_t_sf(t: float, df: float) -> float:
    """Upper tail P(T > t) of Student's t with ``df`` (real, > 0) degrees of freedom."""
    if df <= 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    # Both forms are exact; each is accurate when its own argument is the small one
    # (1 − x computed from x would lose the digits of a small t).
    x = df / (df + t * t)
    y = t * t / (df + t * t)
    if x < y:
        tail = 0.5 * regularized_incomplete_beta(df / 2.0, 0.5, x)
    else:
        tail = 0.5 - 0.5 * regularized_incomplete_beta(0.5, df / 2.0, y)
    return tail if t >= 0 else 1.0 - tail


def _student_t_pdf(t: float, df: float) -> float:
    log_pdf = (math.lgamma((df + 1.0) / 2.0) - math.lgamma(df / 2.0) - 0.5 * math.log(df * math.pi)
               - (df + 1.0) / 2.0 * math.log1p(t * t / df))
    return math.exp(log_pdf)


def student_t_ppf(p: float, df: float) -> float:
    """Quantile of Student's t: the t with P(T ≤ t) = p, for 0 < p < 1 and real df > 0.

    A Cornish–Fisher start from the normal quantile, then Newton steps on the upper tail
    (computed from the regularized incomplete beta) kept inside a bracket, falling back to
    bisection when a step would leave it. Agrees with scipy to ~1e-12 relative (tested);
    scipy is only a test dependency.
    """
    if not 0.0 < p < 1.0:
        raise ValueError(f"probability must be strictly between 0 and 1, got {p}")
    if not df > 0:
        raise ValueError(f"degrees of freedom must be positive, got {df}")
    if p == 0.5:
        return 0.0
    if p < 0.5:
        return -student_t_ppf(1.0 - p, df)
    q = 1.0 - p
    z = _NORMAL.inv_cdf(p)
    g1 = (z**3 + z) / 4.0
    g2 = (5 * z**5 + 16 * z**3 + 3 * z) / 96.0
    g3 = (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / 384.0
    g4 = (79 * z**9 + 776 * z**7 + 1482 * z**5 - 1920 * z**3 - 945 * z) / 92160.0
    cornish_fisher = z + g1 / df + g2 / df**2 + g3 / df**3 + g4 / df**4
    if df > 1e5:
        # The expansion's next term is O(z¹¹/df⁵): below 1e-15 here, and the continued
        # fraction converges slowly for such large parameters.
        return cornish_fisher
    if df == 1.0:
        guess = math.tan(math.pi * (p - 0.5))
    elif df == 2.0:
        guess = (2.0 * p - 1.0) / math.sqrt(2.0 * p * q)
    else:
        guess = cornish_fisher
    lo, hi = 0.0, max(2.0 * guess, 1.0)
    while student_t_sf(hi, df) > q:
        lo, hi = hi, 2.0 * hi
    t = min(max(guess, lo), hi)
    for _ in range(200):
        excess = student_t_sf(t, df) - q  # > 0 while t is too small
        if excess > 0:
            lo = t
        else:
            hi = t
        step = excess / _student_t_pdf(t, df)
        candidate = t + step
        if not lo < candidate < hi:
            candidate = 0.5 * (lo + hi)
        if abs(candidate - t) <= 1e-14 * max(1.0, abs(t)):
            return candidate
        t = candidate
    return t


def two_sided_t(confidence: float, df: float) -> float:
    """The t with a two-sided ``confidence`` interval: t(1 − α/2, df), α = 1 − confidence."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be strictly between 0 and 1, got {confidence}")
    return student_t_ppf(0.5 + confidence / 2.0, df)


# --------------------------------------------------------------------------- OLS


@dataclass(frozen=True)
class OlsFit:
    """An ordinary-least-squares fit; arrays are owned by the fit (copies of the inputs)."""

    names: tuple[str, ...]
    coefficients: FloatArray
    fitted: FloatArray
    residuals: FloatArray
    xtx_inv: FloatArray
    """(XᵀX)⁻¹, kept for sandwich (robust) covariances."""

    @property
    def n(self) -> int:
        """Number of observations."""
        return int(self.residuals.shape[0])

    @property
    def p(self) -> int:
        """Number of fitted parameters (columns of the design matrix)."""
        return int(self.coefficients.shape[0])

    @property
    def sse(self) -> float:
        """Sum of squared residuals."""
        return float(self.residuals @ self.residuals)

    @property
    def mse(self) -> float:
        """Residual variance on n − p degrees of freedom."""
        return self.sse / (self.n - self.p)

    @property
    def std_errors(self) -> FloatArray:
        """Classical (i.i.d.) standard errors of the coefficients."""
        return np.sqrt(np.diag(self.xtx_inv) * self.mse)


def ols(X: FloatArray, y: FloatArray, names: tuple[str, ...]) -> OlsFit:
    """Least squares of y on the columns of X, by QR (no normal equations, so no squared condition).

    Refuses what would give a meaningless fit: non-finite values, fewer observations than
    parameters plus one, or collinear columns (named in the error).
    """
    X = np.asarray(X, dtype=np.float64)
    y = np.asarray(y, dtype=np.float64)
    if X.ndim != 2 or y.ndim != 1 or X.shape[0] != y.shape[0] or X.shape[1] != len(names):
        raise MvError(f"design {X.shape} does not match y {y.shape} and {len(names)} names")
    n, p = X.shape
    if n <= p:
        raise MvError(f"{n} intervals cannot fit {p} parameters (need more than {p})")
    if not (np.all(np.isfinite(X)) and np.all(np.isfinite(y))):
        raise MvError("the regression data holds NaN or infinite values")
    scale = np.sqrt(np.sum(X * X, axis=0))
    scale[scale == 0.0] = 1.0
    Q, R = np.linalg.qr(X / scale)
    diag = np.abs(np.diag(R))
    weak = [names[i] for i in range(p) if diag[i] < 1e-10 * max(float(diag.max()), 1e-300)]
    if weak:
        raise MvError(f"collinear or empty regression columns: {', '.join(weak)}")
    beta_scaled = np.linalg.solve(R, Q.T @ y)
    beta = beta_scaled / scale
    r_inv = np.linalg.inv(R)
    xtx_inv = (r_inv @ r_inv.T) / np.outer(scale, scale)
    fitted = X @ beta
    return OlsFit(names, beta, fitted, y - fitted, xtx_inv)


# --------------------------------------------------------------------------- Guideline 14


@dataclass(frozen=True)
class FitStatistics:
    """Goodness of fit of a model on n intervals with p parameters (fractions, not percent)."""

    n: int
    p: int
    r_squared: float
    cv_rmse: float
    nmbe: float
    mean_y: float


def fit_statistics(y: FloatArray, predicted: FloatArray, p: int) -> FitStatistics:
    """R², CV(RMSE) and NMBE of ``predicted`` against ``y`` per Guideline 14-2014 (n − p)."""
    y = np.asarray(y, dtype=np.float64)
    e = y - np.asarray(predicted, dtype=np.float64)
    n = int(y.shape[0])
    if n <= p:
        raise MvError(f"{n} intervals leave no degrees of freedom for {p} parameters")
    mean_y = float(np.mean(y))
    if mean_y == 0.0:
        raise MvError("mean of the measured values is zero: CV(RMSE) and NMBE are undefined")
    sst = float(np.sum((y - mean_y) ** 2))
    sse = float(e @ e)
    r_squared = 1.0 - sse / sst if sst > 0 else math.nan
    cv_rmse = math.sqrt(sse / (n - p)) / mean_y
    nmbe = float(np.sum(e)) / ((n - p) * mean_y)
    return FitStatistics(n, p, r_squared, cv_rmse, nmbe, mean_y)


@dataclass(frozen=True)
class G14Limits:
    """Acceptance limits; the defaults are Guideline 14's hourly limits and CalTRACK's coverage."""

    cv_rmse_max: float = 0.30
    nmbe_abs_max: float = 0.10
    coverage_min: float = 0.90
    """CalTRACK: coverage must exceed this (strictly)."""
    fsu68_max: float = 0.50
    """Guideline 14: savings uncertainty below 50 % of the savings at 68 % confidence."""


@dataclass(frozen=True)
class Check:
    """One acceptance test, with the figure, the limit and the outcome, for the report."""

    name: str
    value: float
    limit: str
    passed: bool


G14_HOURLY = G14Limits()
"""Guideline 14's hourly limits with CalTRACK's coverage rule."""


def g14_checks(stats: FitStatistics, coverage: float, limits: G14Limits = G14_HOURLY) -> tuple[Check, ...]:
    """The model's acceptance tests. A failing model is reported as failing, never dropped."""
    return (
        Check("CV(RMSE)", stats.cv_rmse, f"≤ {limits.cv_rmse_max:.0%}",
              bool(stats.cv_rmse <= limits.cv_rmse_max)),
        Check("NMBE", stats.nmbe, f"within ±{limits.nmbe_abs_max:.0%}",
              bool(abs(stats.nmbe) <= limits.nmbe_abs_max)),
        Check("data coverage", coverage, f"> {limits.coverage_min:.0%}",
              bool(coverage > limits.coverage_min)),
    )


def fsu_check(fsu68: float, limits: G14Limits = G14_HOURLY) -> Check:
    """Guideline 14's test on the savings: uncertainty at 68 % below half the savings."""
    return Check("savings uncertainty at 68 %", fsu68, f"< {limits.fsu68_max:.0%}",
                 bool(fsu68 < limits.fsu68_max))


def coverage(present: int, expected: int) -> float:
    """Share of the expected intervals that hold data (CalTRACK: must exceed 0.9)."""
    if expected <= 0:
        raise MvError("a period with no expected intervals has no coverage")
    if not 0 <= present <= expected:
        raise MvError(f"{present} intervals present of {expected} expected")
    return present / expected


# --------------------------------------------------------------------------- autocorrelation


def lag1_autocorrelation(residuals: FloatArray) -> float:
    """ρ, the lag-1 autocorrelation of residuals in time order (the usual biased estimator).

    ρ = mean(eₜ eₜ₋₁) / mean(eₜ²), with e demeaned. Gaps in the record are NaN (the caller puts
    the residuals on the period's full grid); pairs with a NaN are skipped.
    """
    e = np.asarray(residuals, dtype=np.float64)
    e = e - np.nanmean(e)
    products = e[1:] * e[:-1]
    pairs = int(np.sum(np.isfinite(products)))
    values = int(np.sum(np.isfinite(e)))
    variance = np.nansum(e * e) / values if values else 0.0
    if pairs == 0 or variance == 0.0:
        return 0.0
    # Each sum over its own count, so gaps (fewer pairs than values) do not bias ρ towards 0.
    return float(np.nansum(products) / pairs / variance)


def effective_sample_size(n: int, rho: float) -> float:
    """Effective sample size n' = n (1 − ρ) / (1 + ρ); a negative ρ counts as zero (n' ≤ n)."""
    rho = min(max(rho, 0.0), 0.999999)
    return n * (1.0 - rho) / (1.0 + rho)


# --------------------------------------------------------------------------- savings uncertainty


@dataclass(frozen=True)
class SavingsUncertainty:
    """The Guideline 14 uncertainty of the avoided energy of m reporting intervals."""

    n: int
    p: int
    rho: float
    n_eff: float
    m: int
    mse_eff: float
    """MSE' = SSE / (n' − p)."""
    std: float
    """1.26 · sqrt(MSE' (1 + 2/n') m) · adjusted / (m ȳ): the half-width is t · std (units of y)."""

    @property
    def dof(self) -> float:
        """Degrees of freedom n' − p of freedom of the t-statistic."""
        return self.n_eff - self.p

    def half_width(self, confidence: float) -> float:
        """Absolute half-width (units of y summed over the m intervals) at ``confidence``."""
        return two_sided_t(confidence, self.dof) * self.std


def savings_uncertainty(sse: float, n: int, p: int, rho: float, mean_y: float, m: int,
                        adjusted_baseline: float, factor: float = G14_FACTOR_HOURLY) -> SavingsUncertainty:
    """Half-widths of the avoided energy of m reporting intervals (G14-2014 Annex B, see module).

    ``sse``, ``n``, ``p``, ``rho`` and ``mean_y`` (ȳ) describe the baseline fit;
    ``adjusted_baseline`` is the model's prediction summed over the m reporting intervals.
    The half-width is FSU · E_save with E_save/F = adjusted_baseline, i.e.
    1.26 · t · sqrt(MSE' (1 + 2/n') m) · adjusted_baseline / (m ȳ): Guideline 14 scales the
    baseline's error with the level of the reporting period (a constant CV), so it does not
    depend on the size of the saving, only on the baseline it is taken from.

    Refuses a model whose effective sample size leaves less than one degree of freedom:
    the honest answer is "not enough independent data", not a tiny interval.
    """
    if m <= 0:
        raise MvError("no reporting intervals: nothing to bound")
    if mean_y <= 0:
        raise MvError(f"baseline mean {mean_y} is not positive: the relative uncertainty is undefined")
    n_eff = effective_sample_size(n, rho)
    dof = n_eff - p
    if dof < 1.0:
        raise MvError(f"effective sample size {n_eff:.1f} (n={n}, rho={rho:.2f}) "
                      f"leaves no degrees of freedom for {p} parameters")
    mse_eff = sse / dof
    base = math.sqrt(mse_eff * (1.0 + 2.0 / n_eff) * m) * abs(adjusted_baseline) / (m * mean_y)
    return SavingsUncertainty(n, p, rho, n_eff, m, mse_eff, factor * base)


def fractional_savings_uncertainty(half_width: float, savings: float) -> float:
    """ΔE_save / E_save; infinite when there is no saving to divide by."""
    return abs(half_width / savings) if savings != 0 else math.inf
