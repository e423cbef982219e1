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
BAND = s.curve_band(0.02, 0.05, X_BEP, X_BEP, X_BEP, 0.0, 0.0, 0.0)
X_MAX = 0.09


def test_band_grows_outside_the_calibrated_range():
    band = s.curve_band(0.01, 0.04, 0.02, 0.05, 0.05, 0.0, 0.0, 0.0)
    assert s.band_uncertainty(band, 0.03) == pytest.approx(0.01)
    assert s.band_uncertainty(band, 0.0) == pytest.approx(0.01 + 0.04 * 0.4)
    assert s.band_uncertainty(band, 0.075) == pytest.approx(0.01 + 0.04 * 0.5)
    assert s.band_uncertainty(band, 0.0) == pytest.approx(naive.band_uncertainty(band, 0.0))


def test_band_grows_with_the_square_of_the_distance_below_the_printed_curve():
    """A curve printed from x_printed: its cubic extrapolated below, the error faster than the distance."""
    band = s.curve_band(0.01, 0.04, 0.02, 0.05, 0.05, 0.0, 0.0125, 0.4)
    assert s.band_uncertainty(band, 0.03) == pytest.approx(0.01)
    assert s.band_uncertainty(band, 0.0) == pytest.approx(0.01 + 0.04 * 0.4 + 0.4 * 0.25**2)
    assert s.band_uncertainty(band, 0.0) == pytest.approx(naive.band_uncertainty(band, 0.0))


@pytest.mark.parametrize("r", [0.5, 0.8, 1.0])
@pytest.mark.parametrize("x", [0.02, 0.04, 0.06])
def test_flow_from_power_value_and_uncertainty(r, x):
    p = power_at(PUMP_P, x * r, r)
    q, u = s.flow_from_power(PUMP_P, p, r, 0.01, 0.002, BAND, X_MAX, 0.05, np.inf)
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
    band = s.curve_band(0.0, 0.0, 0.0, 1.0, 1.0, 0.0, 0.0, 0.0)
    _, u = s.flow_from_power(PUMP_P, p, r, rel, 0.0, band, X_MAX, 0.05, np.inf)
    qs = np.array([s.flow_from_power(PUMP_P, p * (1 + rel * z), r, rel, 0.0, band, X_MAX, 0.05, np.inf)[0]
                   for z in rng.standard_normal(4000)])
    assert np.std(qs) == pytest.approx(u, rel=0.05)
    assert np.mean(np.abs(qs - q_true) <= 1.645 * u) == pytest.approx(0.90, abs=0.02)


def test_flow_from_power_not_identifiable_is_nan():
    flat = np.array([20000.0, 1.0e4, 0.0, 0.0])  # power hardly depends on flow
    p = power_at(flat, 0.03, 1.0)
    assert all(math.isnan(v) for v in s.flow_from_power(flat, p, 1.0, 0.01, 0.0, BAND, 0.08, 0.2, np.inf))
    for p, r in ((-5.0, 1.0), (1e4, 0.0)):
        q, u = s.flow_from_power(PUMP_P, p, r, 0.01, 0.0, BAND, X_MAX, 0.05, np.inf)
        assert math.isnan(q) and math.isnan(u)


@pytest.mark.parametrize("r", [0.6, 1.0])
@pytest.mark.parametrize("x", [0.02, 0.05, 0.07])
def test_flow_from_head_value_and_uncertainty(r, x):
    h = head_at(PUMP_H, x * r, r)
    q, u = s.flow_from_head(PUMP_H, h, r, 0.005, 0.001, BAND, X_MAX, 0.05, np.inf)
    assert q == pytest.approx(naive.flow_from_head(PUMP_H, h, r), rel=1e-9)
    assert q == pytest.approx(x * r, rel=1e-9)
    def invert(y, rr):
        return naive.flow_from_head(PUMP_H, y, rr)
    ref = naive.flow_uncertainty_numeric(PUMP_H, q, h, r, 0.005, 0.001, BAND, invert)
    assert u == pytest.approx(ref, rel=1e-4)


def test_flow_from_head_refuses_ambiguous_flat_or_impossible_heads():
    def est(h, min_sensitivity):
        return s.flow_from_head(PUMP_H, h, 1.0, 0.0, 0.0, BAND, X_MAX, min_sensitivity, np.inf)

    # PUMP_H droops: its top is at x = 40 / 9600; above the shut-off head two flows give the head.
    top = PUMP_H[0] + PUMP_H[1] ** 2 / (-4 * PUMP_H[2])
    between = 0.5 * (PUMP_H[0] + top)
    assert all(math.isnan(v) for v in est(between, 0.0))
    assert all(math.isnan(v) for v in est(top + 1.0, 0.0))
    # Just below shut-off the stable part is flat: refused by the sensitivity threshold.
    q, _ = est(PUMP_H[0] - 0.01, 0.5)
    assert math.isnan(q)
    assert math.isnan(est(-1.0, 0.0)[0])


def test_combine_estimates_is_inverse_variance():
    q, u = s.combine_estimates(1.0, 0.1, 2.0, 0.2)
    assert q == pytest.approx((1.0 / 0.01 + 2.0 / 0.04) / (1 / 0.01 + 1 / 0.04))
    assert u == pytest.approx(1 / math.sqrt(1 / 0.01 + 1 / 0.04))
    assert s.combine_estimates(math.nan, math.nan, 2.0, 0.2) == (2.0, 0.2)
    assert all(math.isnan(v) for v in s.combine_estimates(math.nan, 1.0, 2.0, math.nan))


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


def test_flow_from_power_states_a_too_wide_interval_as_no_estimate():
    p = power_at(PUMP_P, 0.03, 1.0)
    q, u = s.flow_from_power(PUMP_P, p, 1.0, 0.02, 0.0, BAND, X_MAX, 0.0, np.inf)
    assert math.isfinite(q)
    assert all(math.isnan(v) for v in s.flow_from_power(PUMP_P, p, 1.0, 0.02, 0.0, BAND, X_MAX, 0.0,
                                                         0.99 * 1.645 * u / q))


def test_flow_shift_band_adds_in_quadrature():
    p = power_at(PUMP_P, 0.03, 0.8)
    _, u0 = s.flow_from_power(PUMP_P, p, 0.8, 0.01, 0.0, BAND, X_MAX, 0.0, np.inf)
    shifted = s.curve_band(0.02, 0.05, X_BEP, X_BEP, X_BEP, 0.1, 0.0, 0.0)
    _, u1 = s.flow_from_power(PUMP_P, p, 0.8, 0.01, 0.0, shifted, X_MAX, 0.0, np.inf)
    assert u1 == pytest.approx(math.hypot(u0, 0.8 * 0.1 * X_BEP), rel=1e-9)


def test_head_route_on_a_cubic_drooping_head_refuses_the_ambiguous_part():
    # A cubic head curve with its top at x = 0.02 above a shut-off head of 50.
    hc = np.array([50.0, 300.0, -5000.0, -1.0e4])
    start, end = s.monotone_branch(hc, False, X_MAX)
    assert start == pytest.approx(optimize.brentq(lambda x: hc[1] + 2 * hc[2] * x + 3 * hc[3] * x * x,
                                                  0.0, 0.05), rel=1e-9)
    assert end == X_MAX
    for x in (0.06, 0.07, 0.08):  # heads below the shut-off head: one flow each
        h = np.polynomial.polynomial.polyval(x, hc)
        q, _ = s.flow_from_head(hc, h, 1.0, 0.005, 0.0, BAND, X_MAX, 0.0, np.inf)
        assert q == pytest.approx(x, rel=1e-9)
    above_shutoff = np.polynomial.polynomial.polyval(0.04, hc)  # above the shut-off head: two flows
    assert math.isnan(s.flow_from_head(hc, above_shutoff, 1.0, 0.005, 0.0, BAND, X_MAX, 0.0, np.inf)[0])


def test_flow_from_ratio_inverts_head_over_power_and_its_uncertainty():
    r, x = 0.8, 0.045
    h, p = head_at(PUMP_H, x * r, r), power_at(PUMP_P, x * r, r)
    band = s.curve_band(0.01, 0.0, 0.0, X_MAX, X_BEP, 0.0, 0.0, 0.0)
    q, u = s.flow_from_ratio(PUMP_H, PUMP_P, h, p, r, 0.005, 0.01, 0.0, band, band, X_MAX, np.inf)
    assert q == pytest.approx(x * r, rel=1e-9)
    assert u == pytest.approx(naive.flow_from_ratio_uncertainty(PUMP_H, PUMP_P, h, p, r,
                                                                math.sqrt(0.005**2 + 0.01**2 + 2 * 0.01**2)),
                              rel=1e-4)
    assert math.isnan(s.flow_from_ratio(PUMP_H, PUMP_P, 10 * h, p, r, 0.005, 0.01, 0.0, band, band, X_MAX,
                                        np.inf)[0])


def test_catalogue_fit_and_shift_against_numpy():
    q = np.linspace(0.0, 0.09, 7)
    y = np.polynomial.polynomial.polyval(q, PUMP_P) * (1 + 0.01 * np.sin(40 * q))
    c = s.fit_catalogue_curve(q, y, 3)
    np.testing.assert_allclose(c, naive.fit_catalogue_curve(q, y, 3), rtol=1e-8)
    assert np.all(np.isnan(s.fit_catalogue_curve(q[:3], y[:3], 3)))
    shifted = s.shift_curve(PUMP_P, 0.004)
    xs = np.linspace(0.0, 0.08, 9)
    np.testing.assert_allclose(np.polynomial.polynomial.polyval(xs, shifted),
                               np.polynomial.polynomial.polyval(xs + 0.004, PUMP_P), rtol=1e-12)


@pytest.mark.parametrize(("coeffs", "exponent", "rising"), [(PUMP_P, 3, True), (PUMP_H, 2, False)])
def test_flow_offset_correction_passes_through_the_reading(coeffs, exponent, rising):
    r, q = 0.8, 0.035
    value = np.polynomial.polynomial.polyval(q / r + 0.003, coeffs) * r**exponent  # a 0.003 leak
    out = s.correct_flow_offset(coeffs, exponent, rising, q, value, r, X_MAX)
    assert np.polynomial.polynomial.polyval(q / r, out) * r**exponent == pytest.approx(value, rel=1e-12)
    np.testing.assert_allclose(out, s.shift_curve(coeffs, 0.003), rtol=1e-9, atol=1e-9)
    assert np.all(np.isnan(s.correct_flow_offset(coeffs, exponent, rising, 0.0, value, r, X_MAX)))


def test_shaft_power_uncertainty_grows_with_the_losses_share():
    assert s.shaft_power_uncertainty(0.9, 0.01, 0.15) == pytest.approx(math.hypot(0.01, 0.15 / 9))
    assert s.shaft_power_uncertainty(0.5, 0.01, 0.15) > 5 * s.shaft_power_uncertainty(0.9, 0.01, 0.15)
    assert math.isnan(s.shaft_power_uncertainty(0.0, 0.01, 0.15))
