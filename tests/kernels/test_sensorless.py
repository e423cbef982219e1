"""Sensorless flow, its uncertainty and the calibrations, against closed forms and naive references."""

import math

import numpy as np
import pytest
from scipy import optimize

import kernels.sensorless as s
from kernels.curves import head as head_at
from kernels.curves import shaft_power as power_at
from tests import naive
from tests.kernels.conftest import PUMP_H, PUMP_P

X_BEP = 0.05  # collapsed flow near the best efficiency of the conftest pump
BAND = s.curve_band(0.02, 0.05, X_BEP, X_BEP, X_BEP)


def test_band_grows_outside_the_calibrated_range():
    band = s.curve_band(0.01, 0.04, 0.02, 0.05, 0.05)
    assert s.band_uncertainty(band, 0.03) == pytest.approx(0.01)
    assert s.band_uncertainty(band, 0.0) == pytest.approx(0.01 + 0.04 * 0.4)
    assert s.band_uncertainty(band, 0.075) == pytest.approx(0.01 + 0.04 * 0.5)
    assert s.band_uncertainty(band, 0.0) == pytest.approx(naive.band_uncertainty(band, 0.0))


@pytest.mark.parametrize("r", [0.5, 0.8, 1.0])
@pytest.mark.parametrize("x", [0.02, 0.04, 0.06])
def test_flow_from_power_value_and_uncertainty(r, x):
    p = power_at(PUMP_P, x * r, r)
    q, u = s.flow_from_power(PUMP_P, p, r, 0.01, 0.002, BAND, np.inf, 0.05)
    assert q == pytest.approx(x * r, rel=1e-9)
    # u equals first-order propagation through the inverse, computed numerically.
    def invert(y, rr):
        return optimize.brentq(lambda qq: power_at(PUMP_P, qq, rr) - y, 0.0, 0.09 * rr, xtol=1e-15)
    ref = naive.flow_uncertainty_numeric(PUMP_P, q, p, r, 0.01, 0.002, BAND, invert)
    assert u == pytest.approx(ref, rel=1e-4)


def test_flow_from_power_uncertainty_covers_monte_carlo_noise():
    rng = np.random.default_rng(3)
    r, q_true, rel = 0.8, 0.03, 0.02
    p = power_at(PUMP_P, q_true, r)
    band = s.curve_band(0.0, 0.0, 0.0, 1.0, 1.0)
    _, u = s.flow_from_power(PUMP_P, p, r, rel, 0.0, band, np.inf, 0.05)
    qs = np.array([s.flow_from_power(PUMP_P, p * (1 + rel * z), r, rel, 0.0, band, np.inf, 0.05)[0]
                   for z in rng.standard_normal(4000)])
    assert np.std(qs) == pytest.approx(u, rel=0.05)
    assert np.mean(np.abs(qs - q_true) <= 1.645 * u) == pytest.approx(0.90, abs=0.02)


def test_flow_from_power_not_identifiable_is_nan():
    flat = np.array([20000.0, 1.0e4, 0.0, 0.0])  # power hardly depends on flow
    p = power_at(flat, 0.03, 1.0)
    assert all(math.isnan(v) for v in s.flow_from_power(flat, p, 1.0, 0.01, 0.0, BAND, 0.08, 0.2))
    assert all(math.isnan(v) for v in s.flow_from_power(PUMP_P, -5.0, 1.0, 0.01, 0.0, BAND, np.inf, 0.05))
    assert all(math.isnan(v) for v in s.flow_from_power(PUMP_P, 1e4, 0.0, 0.01, 0.0, BAND, np.inf, 0.05))


@pytest.mark.parametrize("r", [0.6, 1.0])
@pytest.mark.parametrize("x", [0.02, 0.05, 0.07])
def test_flow_from_head_value_and_uncertainty(r, x):
    h = head_at(PUMP_H, x * r, r)
    q, u = s.flow_from_head(PUMP_H, h, r, 0.005, 0.001, BAND, 0.05)
    assert q == pytest.approx(naive.flow_from_head(PUMP_H, h, r), rel=1e-9)
    assert q == pytest.approx(x * r, rel=1e-9)
    def invert(y, rr):
        return naive.flow_from_head(PUMP_H, y, rr)
    ref = naive.flow_uncertainty_numeric(PUMP_H, q, h, r, 0.005, 0.001, BAND, invert)
    assert u == pytest.approx(ref, rel=1e-4)


def test_flow_from_head_refuses_ambiguous_flat_or_impossible_heads():
    # PUMP_H droops: its top is at x = 40 / 9600; above the shut-off head two flows give the head.
    top = PUMP_H[0] + PUMP_H[1] ** 2 / (-4 * PUMP_H[2])
    between = 0.5 * (PUMP_H[0] + top)
    assert all(math.isnan(v) for v in s.flow_from_head(PUMP_H, between, 1.0, 0.0, 0.0, BAND, 0.0))
    assert all(math.isnan(v) for v in s.flow_from_head(PUMP_H, top + 1.0, 1.0, 0.0, 0.0, BAND, 0.0))
    # Just below shut-off the stable part is flat: refused by the sensitivity threshold.
    q, _ = s.flow_from_head(PUMP_H, PUMP_H[0] - 0.01, 1.0, 0.0, 0.0, BAND, 0.5)
    assert math.isnan(q)
    assert math.isnan(s.flow_from_head(PUMP_H, -1.0, 1.0, 0.0, 0.0, BAND, 0.0)[0])


def test_combine_estimates_is_inverse_variance():
    q, u = s.combine_estimates(1.0, 0.1, 2.0, 0.2)
    assert q == pytest.approx((1.0 / 0.01 + 2.0 / 0.04) / (1 / 0.01 + 1 / 0.04))
    assert u == pytest.approx(1 / math.sqrt(1 / 0.01 + 1 / 0.04))
    assert s.combine_estimates(math.nan, math.nan, 2.0, 0.2) == (2.0, 0.2)
    assert all(math.isnan(v) for v in s.combine_estimates(math.nan, 1.0, 2.0, math.nan))


@pytest.mark.parametrize("keep", [False, True])
@pytest.mark.parametrize("coeffs", [PUMP_P, PUMP_H])
def test_one_point_correction_passes_through_the_point(keep, coeffs):
    r, q = 0.8, 0.035
    k = len(coeffs) - 1
    value = 1.07 * np.polynomial.polynomial.polyval(q / r, coeffs) * r**k
    out = s.correct_one_point(coeffs, q, value, r, keep)
    assert np.polynomial.polynomial.polyval(q / r, out) * r**k == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(out, naive.correct_one_point(coeffs, q, value, r, keep), rtol=1e-12)
    if keep:
        assert out[0] == coeffs[0]
    assert np.all(np.isnan(s.correct_one_point(coeffs, 0.0, value, r, keep)))


def test_shutoff_calibration_moves_the_ends_and_keeps_the_rated_point():
    r = 0.9
    h0, p0 = 0.95 * PUMP_H[0] * r * r, 1.2 * PUMP_P[0] * r**3
    head, power = s.calibrate_shutoff(PUMP_H, PUMP_P, h0, p0, r, X_BEP)
    assert head_at(head, 0.0, r) == pytest.approx(0.95 * PUMP_H[0] * r * r)
    assert power_at(power, 0.0, r) == pytest.approx(1.2 * PUMP_P[0] * r**3)
    assert head_at(head, X_BEP, 1.0) == pytest.approx(head_at(PUMP_H, X_BEP, 1.0))
    assert power_at(power, X_BEP, 1.0) == pytest.approx(power_at(PUMP_P, X_BEP, 1.0))
    same_head, _ = s.calibrate_shutoff(PUMP_H, PUMP_P, math.nan, 1.0e4, r, X_BEP)
    np.testing.assert_array_equal(same_head, PUMP_H)


def test_power_calibration_from_head_recovers_a_known_correction():
    rng = np.random.default_rng(5)
    n = 200
    r = rng.uniform(0.6, 1.0, n)
    x = rng.uniform(0.02, 0.07, n)
    truth = PUMP_P + np.array([1500.0, -2.0e4, 1.0e5, 0.0])  # prior + a quadratic in x
    head = np.array([head_at(PUMP_H, xi * ri, ri) for xi, ri in zip(x, r, strict=True)])
    power = np.array([power_at(truth, xi * ri, ri) for xi, ri in zip(x, r, strict=True)])
    out, lo, hi, rms, used = s.calibrate_power_from_head(PUMP_H, PUMP_P, head, power, r, 0.005, 0.01, X_BEP,
                                                         0.0)
    assert used == n and rms < 1e-9
    assert lo == pytest.approx(x.min()) and hi == pytest.approx(x.max())
    np.testing.assert_allclose(out[:3], truth[:3], rtol=1e-6)
    # With noise and a ridge: the same as numpy's least squares on the same weights.
    noisy = power * (1 + 0.01 * rng.standard_normal(n))
    out, *_ = s.calibrate_power_from_head(PUMP_H, PUMP_P, head, noisy, r, 0.005, 0.01, X_BEP, 1e-3)
    ref, _, _ = naive.calibrate_power_from_head(PUMP_H, PUMP_P, head, noisy, r, 0.005, 0.01, X_BEP, 1e-3)
    np.testing.assert_allclose(out, ref, rtol=1e-8)


def test_power_calibration_needs_usable_samples():
    out, lo, _, _, used = s.calibrate_power_from_head(PUMP_H, PUMP_P, np.full(2, 40.0), np.full(2, 2e4),
                                                     np.ones(2), 0.005, 0.01, X_BEP, 0.0)
    assert used == 0 and math.isnan(lo) and np.all(np.isnan(out))
    # A narrow span fits an offset only: a constant shift of the power curve.
    r = np.ones(5)
    x = np.linspace(0.049, 0.051, 5)
    head = np.array([head_at(PUMP_H, xi, 1.0) for xi in x])
    power = np.array([power_at(PUMP_P, xi, 1.0) + 700.0 for xi in x])
    out, *_ = s.calibrate_power_from_head(PUMP_H, PUMP_P, head, power, r, 0.005, 0.01, X_BEP, 0.0)
    np.testing.assert_allclose(out, PUMP_P + np.array([700.0, 0, 0, 0]), rtol=1e-9)


@pytest.mark.parametrize(("f", "load"), [(1.0, 1.0), (0.6, 0.2), (0.8, 0.5), (1.0, 0.0)])
def test_shaft_speed_with_slip(f, load):
    slip = 0.02
    r = s.shaft_speed_ratio(f, load * 1e4, 1e4, slip)
    assert r == pytest.approx(naive.shaft_speed_ratio(f, load * 1e4, 1e4, slip), rel=1e-12)
    if f == 1.0 and load == 1.0:
        assert r == pytest.approx(1.0)
    if load == 0.0:
        assert r == pytest.approx(f / (1 - slip))
    assert math.isnan(s.shaft_speed_ratio(0.0, 1e4, 1e4, slip))
