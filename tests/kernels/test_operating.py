import math

import numpy as np
import pytest

import kernels as k
from tests import naive
from tests.kernels.conftest import PUMP_H, PUMP_P


@pytest.mark.parametrize("r", [0.5, 0.7, 0.85, 1.0])
@pytest.mark.parametrize(("hs", "kk"), [(0.0, 6000.0), (15.0, 4000.0), (30.0, 2000.0)])
def test_operating_point_closed_form(r, hs, kk):
    q = k.operating_point(PUMP_H, hs, kk, r)
    a, b, c = PUMP_H[2] - kk, PUMP_H[1] * r, PUMP_H[0] * r**2 - hs
    if c > 0:
        expected = (-b - math.sqrt(b * b - 4 * a * c)) / (2 * a)  # the positive root (a < 0)
        assert q == pytest.approx(expected, rel=1e-12)
        assert k.head(PUMP_H, q, r) == pytest.approx(hs + kk * q * q, rel=1e-10)
    ref = naive.operating_point(PUMP_H, hs, kk, r)
    np.testing.assert_allclose(q, ref, rtol=1e-9)


def test_operating_point_none_or_invalid():
    # shut-off head 0.5^2 * 50 = 12.5 m below a 20 m static head: no flow
    assert math.isnan(k.operating_point(PUMP_H, 20.0, 3000.0, 0.5))
    assert math.isnan(k.operating_point(PUMP_H, -1.0, 3000.0, 1.0))
    assert math.isnan(k.operating_point(PUMP_H, 1.0, -3000.0, 1.0))
    assert math.isnan(k.operating_point(np.full(3, np.nan), 1.0, 3000.0, 1.0))
    # exactly at shut-off: zero flow
    hc = np.array([50.0, 0.0, -4800.0])
    assert k.operating_point(hc, 50.0, 1000.0, 1.0) == 0.0


def test_operating_point_drooping_curve_takes_stable_root():
    hc = np.array([40.0, 400.0, -6000.0])  # head rises to a peak, then falls
    hs, kk, r = 42.0, 1000.0, 1.0  # static head above shut-off, below the peak
    q = k.operating_point(hc, hs, kk, r)
    assert q == pytest.approx(naive.operating_point(hc, hs, kk, r), rel=1e-12)
    slope_pump = hc[1] * r + 2 * hc[2] * q
    assert slope_pump < 2 * kk * q  # stable: the pump curve falls through the system curve


@pytest.mark.parametrize("flow", [0.0, 0.01, 0.03, 0.05])
@pytest.mark.parametrize(("hs", "kk"), [(0.0, 6000.0), (15.0, 4000.0)])
def test_min_speed_for_flow_closed_form(flow, hs, kk):
    r = k.min_speed_for_flow(PUMP_H, hs, kk, flow, 0.2, 1.0)
    a0, a1, a2 = PUMP_H
    b = a1 * flow
    c = (a2 - kk) * flow**2 - hs
    r_star = (-b + math.sqrt(b * b - 4 * a0 * c)) / (2 * a0)
    if r_star <= 0.2:
        assert r == 0.2
    else:
        assert r == pytest.approx(r_star, rel=1e-12)
        # at that speed the stable operating point is the demanded flow (at zero flow this
        # pump's slightly drooping curve lets it run a little beyond: "at least")
        q_op = k.operating_point(PUMP_H, hs, kk, r)
        if flow > 0:
            assert q_op == pytest.approx(flow, rel=1e-9)
        else:
            assert q_op >= 0.0
    assert r == pytest.approx(naive.min_speed_for_flow(PUMP_H, hs, kk, flow, 0.2, 1.0), rel=1e-9)


def test_min_speed_unreachable_and_invalid():
    assert math.isnan(k.min_speed_for_flow(PUMP_H, 30.0, 6000.0, 0.08, 0.2, 1.0))
    assert math.isnan(k.min_speed_for_flow(PUMP_H, 0.0, 6000.0, -0.01, 0.2, 1.0))
    assert math.isnan(k.min_speed_for_flow(PUMP_H, 0.0, 6000.0, 0.01, 0.9, 0.8))
    assert math.isnan(k.min_speed_for_flow(np.array([-1.0, 0, 0]), 0.0, 1.0, 0.01, 0.2, 1.0))


@pytest.mark.parametrize("r", [0.6, 0.8, 1.0])
@pytest.mark.parametrize("q_rated", [0.005, 0.02, 0.04, 0.06])
def test_estimate_flow_round_trip(r, q_rated):
    flow = q_rated * r
    p = k.shaft_power(PUMP_P, flow, r)
    # at 0.005 m^3/s the shut-off power dominates: elasticity ~0.19, refused at the 0.2
    # default, accepted when the caller accepts 0.1
    sensitivity = 0.1 if q_rated < 0.01 else 0.2
    if q_rated < 0.01:
        assert math.isnan(k.estimate_flow(PUMP_P, p, r))
    est = k.estimate_flow_tuned(PUMP_P, p, r, math.inf, sensitivity)
    assert est == pytest.approx(flow, rel=1e-9)
    assert est == pytest.approx(
        naive.estimate_flow(PUMP_P, p, r, math.inf, sensitivity), rel=1e-6
    )


def test_estimate_flow_not_identifiable():
    # a power curve with a maximum at 0.05 m^3/s: refused near the top (p' -> 0) ...
    peaked = np.array([8000.0, 4.0e5, -4.0e6, 0.0])
    assert math.isnan(k.estimate_flow(peaked, k.shaft_power(peaked, 0.049, 1.0), 1.0))
    # ... accepted well below it
    assert k.estimate_flow(peaked, k.shaft_power(peaked, 0.02, 1.0), 1.0) == pytest.approx(0.02)
    # flat / falling power curve (axial pump): never invertible
    axial = np.array([30000.0, -1.0e5, 0.0, 0.0])
    assert math.isnan(k.estimate_flow(axial, 25000.0, 1.0))
    # below shut-off power or above the branch: no answer
    assert math.isnan(k.estimate_flow(PUMP_P, 100.0, 1.0))
    assert math.isnan(k.estimate_flow(peaked, 1e6, 1.0))
    # PUMP_P rises for ever: only a cap (e.g. the end of the fitted data) bounds it
    assert math.isnan(k.estimate_flow_tuned(PUMP_P, 1e6, 1.0, 0.08, 0.2))
    assert math.isnan(k.estimate_flow(PUMP_P, 2e4, 0.0))
    assert math.isnan(k.estimate_flow(PUMP_P, math.nan, 1.0))
    for p in (1e4, 1.5e4, 2.5e4):
        np.testing.assert_allclose(
            k.estimate_flow(PUMP_P, p, 1.0), naive.estimate_flow(PUMP_P, p, 1.0), rtol=1e-6
        )


@pytest.mark.parametrize("r, h", [(1.0, 30.0), (0.8, 20.0), (0.5, 12.0), (0.6, 40.0), (0.0, 10.0), (1, 0.0)])
def test_flow_at_head_matches_the_roots(r, h):
    expected = naive.flow_at_head(PUMP_H, h, r)
    assert k.flow_at_head(PUMP_H, h, r) == pytest.approx(expected, rel=1e-12, abs=1e-15)


@pytest.mark.parametrize("h, q", [(30.0, 0.05), (30.0, 0.12), (20.0, 0.01), (45.0, 0.3), (60.0, 0.01)])
def test_common_speed_matches_a_brute_force_search(h, q):
    hcs = np.stack([PUMP_H, 0.9 * PUMP_H])
    r = k.common_speed(hcs, h, q, 1.0)
    assert r == pytest.approx(naive.common_speed(hcs, h, q, 1.0), abs=1e-5)
    if r < 1.0:  # it delivers, and a hair less would not
        assert sum(k.flow_at_head(c, h, r) for c in hcs) >= q
        assert sum(k.flow_at_head(c, h, r - 1e-6) for c in hcs) < q


def test_common_speed_without_pumps_is_the_top_speed():
    assert k.common_speed(np.empty((0, 3)), 30.0, 0.05, 0.95) == 0.95
