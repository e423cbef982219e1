import math

import numpy as np
import pytest

import kernels as k
from tests import naive
from tests.kernels.conftest import PUMP_H, PUMP_P, pump_samples


def _curve_error(hc, pc, r_lo=0.6):
    """Max relative error of fitted H and P over the sampled domain."""
    r, q = np.meshgrid(np.linspace(r_lo, 1.0, 9), np.linspace(0.01, 0.075, 27))
    flow = q * r
    h_err = np.abs(naive.head(hc, flow, r) / naive.head(PUMP_H, flow, r) - 1).max()
    p_err = np.abs(naive.shaft_power(pc, flow, r) / naive.shaft_power(PUMP_P, flow, r) - 1).max()
    return h_err, p_err


def test_recovers_curves_from_noisy_multi_speed_data():
    rng = np.random.default_rng(11)
    flow, head, power, r = pump_samples(rng, 3600, 0.01)
    hc, pc, r2h, r2p = k.fit_pump_curves(flow, head, power, r, np.ones(flow.size))
    h_err, p_err = _curve_error(hc, pc)
    assert h_err < 0.005 and p_err < 0.005
    # the dominant coefficients themselves, too
    assert hc[0] == pytest.approx(PUMP_H[0], rel=0.005)
    assert pc[0] == pytest.approx(PUMP_P[0], rel=0.01)
    assert 0.99 < r2h <= 1.0 and 0.99 < r2p <= 1.0


def test_exact_data_are_reproduced_to_rounding():
    rng = np.random.default_rng(1)
    flow, head, power, r = pump_samples(rng, 200, 0.0)
    hc, pc, r2h, r2p = k.fit_pump_curves(flow, head, power, r, np.ones(flow.size))
    np.testing.assert_allclose(hc, PUMP_H, rtol=1e-7)
    np.testing.assert_allclose(pc, PUMP_P, rtol=1e-6)
    assert r2h == pytest.approx(1.0) and r2p == pytest.approx(1.0)


def test_gross_outliers_stay_bounded():
    rng = np.random.default_rng(5)
    flow, head, power, r = pump_samples(rng, 3600, 0.01)
    bad = rng.random(flow.size) < 0.05
    head[bad] *= rng.uniform(0.0, 3.0, bad.sum())
    power[bad] *= rng.uniform(0.0, 3.0, bad.sum())
    w = np.ones(flow.size)
    hc, pc, _, _ = k.fit_pump_curves(flow, head, power, r, w)
    h_err, p_err = _curve_error(hc, pc)
    assert h_err < 0.01 and p_err < 0.01
    # and the robust fit beats plain least squares on the same data
    hc0, pc0, _, _ = k.fit_pump_curves_tuned(flow, head, power, r, w, 0.0, 50, 1e-5, 0.2, 0.1)
    assert max(h_err, p_err) < max(_curve_error(hc0, pc0))


def test_matches_naive_reference_including_nan_samples():
    rng = np.random.default_rng(2)
    flow, head, power, r = pump_samples(rng, 600, 0.02)
    flow[::37] = np.nan
    head[5::41] = np.nan
    r[7::53] = 0.1  # below min_speed_ratio: ignored
    w = rng.uniform(0.5, 2.0, flow.size)
    for c in (0.0, 1.345):
        hc, pc, _, _ = k.fit_pump_curves_tuned(flow, head, power, r, w, c, 200, 1e-10, 0.2, 0.1)
        np.testing.assert_allclose(
            hc, naive.fit_collapsed(flow, head, r, w, 2, 2, c), rtol=1e-5, atol=1e-6
        )
        np.testing.assert_allclose(
            pc, naive.fit_collapsed(flow, power, r, w, 3, 3, c), rtol=1e-5, atol=1e-3
        )


def test_one_speed_with_varied_flow_is_a_valid_fit():
    rng = np.random.default_rng(3)
    flow, head, power, r = pump_samples(rng, 300, 0.0, r_lo=0.9, r_hi=0.9)
    hc, pc, _, _ = k.fit_pump_curves(flow, head, power, r, np.ones(flow.size))
    np.testing.assert_allclose(hc, PUMP_H, rtol=1e-6)


@pytest.mark.parametrize(
    "case",
    ["too_few", "all_equal_flow", "friction_only_system", "all_nan", "zero_weights", "mismatch"],
)
def test_degenerate_inputs_give_nan(case):
    rng = np.random.default_rng(4)
    flow, head, power, r = pump_samples(rng, 200, 0.01)
    w = np.ones(flow.size)
    if case == "too_few":
        flow, head, power, r, w = flow[:4], head[:4], power[:4], r[:4], w[:4]
    elif case == "all_equal_flow":
        r[:] = 0.9
        flow[:] = 0.04
    elif case == "friction_only_system":
        # speed varies but Q/r is constant: the pump curve is not observable
        flow = 0.045 * r
    elif case == "all_nan":
        head[:] = np.nan
        power[:] = np.nan
    elif case == "zero_weights":
        w[:] = 0.0
    elif case == "mismatch":
        r = r[:-1]
    hc, pc, r2h, r2p = k.fit_pump_curves(flow, head, power, r, w)
    assert np.all(np.isnan(hc)) and np.all(np.isnan(pc))
    assert math.isnan(r2h) and math.isnan(r2p)


def test_fan_fit_is_the_pump_fit():
    rng = np.random.default_rng(6)
    flow, head, power, r = pump_samples(rng, 300, 0.01)
    w = np.ones(flow.size)
    a = k.fit_fan_curves(flow, head * 1000, power, r, w)
    b = k.fit_pump_curves(flow, head * 1000, power, r, w)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


# --- system curve ----------------------------------------------------------------------


def test_system_curve_closed_form_and_nnls():
    rng = np.random.default_rng(7)
    q = rng.uniform(0.01, 0.08, 400)
    h = (12.0 + 4500.0 * q**2) * (1 + 0.005 * rng.standard_normal(q.size))
    hs, kk = k.fit_system_curve(q, h)
    assert hs == pytest.approx(12.0, rel=0.01) and kk == pytest.approx(4500.0, rel=0.01)
    hs0, k0 = k.fit_system_curve_tuned(q, h, 0.0, 50, 1e-5, 0.1)
    ref = naive.fit_system_curve_lsq(q, h)
    assert hs0 == pytest.approx(ref[0], rel=1e-8) and k0 == pytest.approx(ref[1], rel=1e-8)


@pytest.mark.parametrize(("hs_true", "k_true"), [(-3.0, 5000.0), (25.0, -800.0)])
def test_system_curve_constraints_match_nnls(hs_true, k_true):
    q = np.linspace(0.02, 0.08, 50)
    h = hs_true + k_true * q**2
    hs, kk = k.fit_system_curve_tuned(q, h, 0.0, 50, 1e-5, 0.1)
    ref = naive.fit_system_curve_lsq(q, h)
    assert hs >= 0.0 and kk >= 0.0
    assert hs == pytest.approx(ref[0], rel=1e-7, abs=1e-9)
    assert kk == pytest.approx(ref[1], rel=1e-7, abs=1e-9)


def test_system_curve_degenerate():
    assert all(math.isnan(v) for v in k.fit_system_curve(np.full(20, 0.04), np.full(20, 30.0)))
    assert all(math.isnan(v) for v in k.fit_system_curve(np.array([0.01, 0.02]), np.ones(2)))
    q = np.linspace(0.01, 0.08, 20)
    assert all(math.isnan(v) for v in k.fit_system_curve(q, np.full(19, 1.0)))


# --- load characteristic (no flow or pressure sensor) ---------------------------------


def _plant_power(rng, share, n=2000, r_lo=0.55):
    hc = np.array([50.0, 0.0, -4800.0])
    h_duty = hc[0] + hc[2] * 0.05**2
    hs = share * h_duty
    kk = (h_duty - hs) / 0.05**2
    r = rng.uniform(r_lo, 1.0, n)
    q = np.array([k.operating_point(hc, hs, kk, ri) for ri in r])
    p = 998.0 * 9.80665 * q * (hs + kk * q**2) / 0.8 * (1 + 0.01 * rng.standard_normal(n))
    return r, p, math.sqrt(hs / hc[0])


@pytest.mark.parametrize("share", [0.3, 0.6])
def test_load_characteristic_reads_static_share(share):
    rng = np.random.default_rng(8)
    r, p, r0 = _plant_power(rng, share, r_lo=0.55 if share < 0.5 else 0.75)
    coeffs, r2 = k.fit_load_characteristic(r, p)
    assert r2 > 0.99
    assert k.static_head_share(coeffs, 0.2) == pytest.approx(share, abs=0.03)
    assert coeffs[0] == pytest.approx(r0, abs=0.05)
    # the model reproduces the data it was fitted to
    pred = np.array([k.load_power(coeffs, ri) for ri in r])
    assert np.median(np.abs(pred / p - 1)) < 0.01


def test_load_characteristic_degenerate():
    coeffs, r2 = k.fit_load_characteristic(np.full(50, 0.8), np.full(50, 1e4))
    assert np.all(np.isnan(coeffs)) and math.isnan(r2)
    assert math.isnan(k.static_head_share(coeffs, 0.2))
    coeffs, _ = k.fit_load_characteristic(np.linspace(0.5, 1, 5), np.linspace(1, 2, 5))
    assert np.all(np.isnan(coeffs))


def test_system_curve_r_squared_matches_the_textbook_formula():
    rng = np.random.default_rng(3)
    flow = rng.uniform(0.01, 0.08, 50)
    head_ = 12.0 + 3000.0 * flow**2 + rng.normal(0.0, 0.3, 50)
    got = k.system_curve_r_squared(flow, head_, 12.0, 3000.0)
    assert got == pytest.approx(naive.system_curve_r_squared(flow, head_, 12.0, 3000.0), rel=1e-12)
    assert math.isnan(k.system_curve_r_squared(flow, np.full(50, 5.0), 5.0, 0.0))  # nothing to explain
