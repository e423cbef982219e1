"""agent.mv.stats against independent implementations (scipy, statsmodels) and hand-worked figures."""

import math

import numpy as np
import pytest
import statsmodels.api as sm
from scipy import special
from scipy import stats as sps

from agent.mv.estimate import Estimate
from agent.mv.stats import (
    MvError,
    coverage,
    effective_sample_size,
    fit_statistics,
    fractional_savings_uncertainty,
    g14_checks,
    lag1_autocorrelation,
    ols,
    regularized_incomplete_beta,
    savings_uncertainty,
    student_t_ppf,
    student_t_sf,
    two_sided_t,
)


@pytest.mark.parametrize("df", [1, 1.5, 2, 3, 4.7, 10, 30, 47.3, 200, 5000, 1e6])
@pytest.mark.parametrize("p", [0.5001, 0.6, 0.84, 0.9, 0.95, 0.975, 0.995, 0.9999, 0.1, 0.025, 1e-6])
def test_t_quantile_matches_scipy(p, df):
    assert student_t_ppf(p, df) == pytest.approx(sps.t.ppf(p, df), rel=1e-10, abs=1e-12)


@pytest.mark.parametrize("df", [1, 2.5, 9, 123.4])
@pytest.mark.parametrize("t", [-30.0, -2.0, -0.3, 0.0, 0.7, 1.645, 5.0, 60.0])
def test_t_tail_matches_scipy(t, df):
    assert student_t_sf(t, df) == pytest.approx(sps.t.sf(t, df), rel=1e-11, abs=1e-15)


@pytest.mark.parametrize(("a", "b", "x"), [(0.5, 0.5, 0.3), (2.0, 3.0, 0.9), (50.0, 0.5, 0.97),
                                           (3000.0, 0.5, 0.9995), (1.0, 1.0, 0.42)])
def test_incomplete_beta_matches_scipy(a, b, x):
    assert regularized_incomplete_beta(a, b, x) == pytest.approx(special.betainc(a, b, x), rel=1e-12)


def test_two_sided_t_is_the_textbook_value():
    # Tables: t(0.95, 10) = 1.812, t(0.84, inf) ≈ 0.994 (68 %), t(0.975, 30) = 2.042.
    assert two_sided_t(0.90, 10) == pytest.approx(1.8125, abs=1e-4)
    assert two_sided_t(0.95, 30) == pytest.approx(2.0423, abs=1e-4)
    assert two_sided_t(0.68, 1e9) == pytest.approx(0.99446, abs=1e-5)
    with pytest.raises(ValueError):
        student_t_ppf(1.0, 3)
    with pytest.raises(ValueError):
        student_t_ppf(0.9, 0)


def _regression(seed, n=400):
    rng = np.random.default_rng(seed)
    flow = rng.uniform(0.01, 0.05, n)
    pumps = rng.integers(1, 4, n).astype(float)
    X = np.column_stack([np.ones(n), flow, flow**2, flow**3, pumps])
    y = 2000 + 5e4 * flow + 3e5 * flow**2 + 1e6 * flow**3 + 800 * pumps + rng.normal(0, 150, n)
    return X, y


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_ols_matches_statsmodels(seed):
    X, y = _regression(seed)
    fit = ols(X, y, ("c", "q", "q2", "q3", "pumps"))
    ref = sm.OLS(y, X).fit()
    np.testing.assert_allclose(fit.coefficients, ref.params, rtol=1e-8)
    np.testing.assert_allclose(fit.std_errors, ref.bse, rtol=1e-8)
    np.testing.assert_allclose(fit.residuals, ref.resid, rtol=1e-8, atol=1e-8)
    assert fit.mse == pytest.approx(ref.mse_resid, rel=1e-10)
    st = fit_statistics(y, fit.fitted, fit.p)
    assert st.r_squared == pytest.approx(ref.rsquared, rel=1e-10)
    # G14-2014: CV(RMSE) = sqrt(SSE/(n-p)) / ybar; statsmodels' mse_resid is SSE/(n-p).
    assert st.cv_rmse == pytest.approx(math.sqrt(ref.mse_resid) / y.mean(), rel=1e-10)
    assert abs(st.nmbe) < 1e-10  # in-sample OLS with an intercept: residuals sum to zero


def test_nmbe_uses_n_minus_p_and_the_sign_of_under_prediction():
    y = np.array([10.0, 12.0, 14.0, 16.0])
    predicted = y - 1.0  # the model predicts 1 too little everywhere
    st = fit_statistics(y, predicted, p=2)
    assert st.nmbe == pytest.approx(4.0 / ((4 - 2) * 13.0))
    assert st.cv_rmse == pytest.approx(math.sqrt(4.0 / 2) / 13.0)


def test_ols_names_collinear_columns_and_refuses_short_data():
    X, y = _regression(0, n=50)
    X = np.column_stack([X, X[:, 4] * 2.0])
    with pytest.raises(MvError, match="collinear or empty regression columns: .*dup"):
        ols(X, y, ("c", "q", "q2", "q3", "pumps", "dup"))
    with pytest.raises(MvError, match="cannot fit"):
        ols(X[:5], y[:5], ("c", "q", "q2", "q3", "pumps", "dup"))
    X[3, 1] = np.nan
    with pytest.raises(MvError, match="NaN"):
        ols(X[:, :5], y, ("c", "q", "q2", "q3", "pumps"))


def test_checks_report_failure_not_hide_it():
    y = np.linspace(100, 200, 50)
    noisy = y + np.where(np.arange(50) % 2 == 0, 60.0, -60.0)
    st = fit_statistics(y, noisy, p=2)
    checks = {c.name: c for c in g14_checks(st, coverage=0.85)}
    assert not checks["CV(RMSE)"].passed and checks["CV(RMSE)"].value > 0.30
    assert checks["NMBE"].passed
    assert not checks["data coverage"].passed
    assert [c.passed for c in g14_checks(st, coverage=0.91)][2]
    assert not [c.passed for c in g14_checks(st, coverage=0.90)][2]  # CalTRACK: more than 90 %


def test_coverage_counts_and_refuses_nonsense():
    assert coverage(901, 1000) == pytest.approx(0.901)
    with pytest.raises(MvError):
        coverage(11, 10)
    with pytest.raises(MvError):
        coverage(0, 0)


def test_lag1_autocorrelation_of_an_ar1_series_and_gaps():
    rng = np.random.default_rng(7)
    e = np.zeros(20000)
    for i in range(1, len(e)):
        e[i] = 0.6 * e[i - 1] + rng.normal()
    assert lag1_autocorrelation(e) == pytest.approx(0.6, abs=0.02)
    # A NaN gap removes the pairs across it instead of pairing non-adjacent values.
    gappy = e.copy()
    gappy[::10] = np.nan
    assert lag1_autocorrelation(gappy) == pytest.approx(0.6, abs=0.03)
    assert effective_sample_size(100, 1 / 3) == pytest.approx(50.0)
    assert effective_sample_size(100, -0.2) == 100.0


def test_fsu_worked_example():
    # By hand: n = 100, rho = 1/3 -> n' = 100 (2/3)/(4/3) = 50; p = 2 -> dof 48;
    # SSE = 432 -> MSE' = 432/48 = 9; m = 24 intervals with adjusted baseline 2400 = m * ybar
    # (ybar = 100), so the CV-scaling is 1; base = sqrt(9 * (1 + 2/50) * 24) = sqrt(224.64).
    # t(0.95, 48) = 1.677224 (tables). Savings 240 (F = 0.10).
    unc = savings_uncertainty(sse=432.0, n=100, p=2, rho=1 / 3, mean_y=100.0, m=24, adjusted_baseline=2400.0)
    assert unc.n_eff == pytest.approx(50.0)
    assert unc.mse_eff == pytest.approx(9.0)
    half90 = 1.26 * 1.677224 * math.sqrt(224.64)
    assert unc.half_width(0.90) == pytest.approx(half90, rel=1e-6)
    fsu = fractional_savings_uncertainty(unc.half_width(0.90), 240.0)
    assert fsu == pytest.approx(half90 / 240, rel=1e-6)
    assert half90 / 240 == pytest.approx(0.13198, abs=1e-4)
    # The same in Guideline 14's own notation: 1.26 t sqrt(MSE'(1+2/n') m) / (m ybar F).
    assert unc.half_width(0.90) / 240 == pytest.approx(
        1.26 * sps.t.ppf(0.95, 48) * math.sqrt(9 * (1 + 2 / 50) * 24) / (24 * 100 * 0.10), rel=1e-9)
    # Reporting at twice the baseline level doubles the absolute half-width (constant CV).
    doubled = savings_uncertainty(432.0, 100, 2, 1 / 3, 100.0, 24, 4800.0)
    assert doubled.half_width(0.9) == pytest.approx(2 * half90, rel=1e-6)


def test_fsu_refuses_an_effective_sample_too_small():
    with pytest.raises(MvError, match="effective sample size"):
        savings_uncertainty(sse=10.0, n=20, p=5, rho=0.9, mean_y=1.0, m=10, adjusted_baseline=10.0)


def test_estimate_intervals():
    e = Estimate(100.0, 10.0, 48)
    assert e.upper(0.90) - e.value == pytest.approx(10 * sps.t.ppf(0.95, 48))
    assert Estimate(1.0, 1.0).half_width(0.68) == pytest.approx(sps.norm.ppf(0.84))
    s = e.scaled(-2.0)
    assert (s.value, s.std, s.dof) == (-200.0, 20.0, 48)
    assert e.intervals()[0.68][0] < e.value < e.intervals()[0.68][1]
