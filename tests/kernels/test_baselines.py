import math

import numpy as np
import pytest

import kernels as k
from tests import naive

SPEED = np.array(k.CHARACTERISTIC_SPEED_PCT)
POWER = np.array(k.CHARACTERISTIC_POWER_PCT)


@pytest.mark.parametrize(
    ("r", "expected_pct"),
    [
        (0.0, 25.0),
        (0.25, 50.0),
        (0.6, 77.0 + (92.0 - 77.0) * 10 / 25),  # 83 % by hand
        (1.0, 100.0),
        (1.2, 100.0),  # clamped above
        (-0.1, 25.0),  # clamped below
    ],
)
def test_characteristic_hand_values(r, expected_pct):
    got = k.characteristic_baseline_power(r, 7500.0, SPEED, POWER)
    assert got == pytest.approx(75.0 * expected_pct)


def test_characteristic_nan_and_bad_tables():
    assert math.isnan(k.characteristic_baseline_power(math.nan, 7500.0, SPEED, POWER))
    assert math.isnan(k.characteristic_baseline_power(0.5, math.nan, SPEED, POWER))
    assert math.isnan(k.characteristic_baseline_power(0.5, -1.0, SPEED, POWER))
    assert math.isnan(k.characteristic_baseline_power(0.5, 1.0, SPEED[::-1].copy(), POWER))
    assert math.isnan(k.characteristic_baseline_power(0.5, 1.0, SPEED[:4].copy(), POWER))
    empty = np.empty(0)
    assert math.isnan(k.characteristic_baseline_power(0.5, 1.0, empty, empty))


def test_damper_and_vane_tables_hand_values():
    flow = np.array(k.DAMPER_FLOW_PCT)
    damper = np.array(k.DAMPER_POWER_PCT)
    vane = np.array(k.INLET_VANE_POWER_PCT)
    assert k.table_baseline_power(0.5, 1000.0, flow, damper) == pytest.approx(771.0)
    assert k.table_baseline_power(0.55, 1000.0, flow, damper) == pytest.approx(800.5)
    assert k.table_baseline_power(1.0, 1000.0, flow, vane) == pytest.approx(1000.0)
    # Physics sanity of the defaults: both rise with flow, vanes never worse than a damper,
    # and both stay above the cube law of speed control.
    assert np.all(np.diff(damper) > 0) and np.all(np.diff(vane) > 0)
    assert np.all(vane <= damper)
    x = flow / 100
    assert np.all(vane / 100 >= x**3)


def test_defaults_match_energyplus_curves():
    x = np.array(k.DAMPER_FLOW_PCT) / 100
    dd = 0.37073425 + 0.97250253 * x - 0.34240761 * x**2
    iv = 0.35071223 + 0.30850535 * x - 0.54137364 * x**2 + 0.87198823 * x**3
    np.testing.assert_allclose(k.DAMPER_POWER_PCT, 100 * dd / dd[-1], atol=0.051)
    np.testing.assert_allclose(k.INLET_VANE_POWER_PCT, 100 * iv / iv[-1], atol=0.051)


def test_constant_baseline():
    assert k.constant_baseline_power(5500.0) == 5500.0
    assert math.isnan(k.constant_baseline_power(-1.0))
    assert math.isnan(k.constant_baseline_power(math.inf))


@pytest.mark.parametrize("x", [-1.0, 0.0, 0.07, 0.33, 0.5, 0.999, 1.0, 1.5, math.nan])
def test_table_baselines_match_naive(x):
    for xp, fp in [
        (SPEED, POWER),
        (np.array(k.DAMPER_FLOW_PCT), np.array(k.DAMPER_POWER_PCT)),
        (np.array(k.INLET_VANE_FLOW_PCT), np.array(k.INLET_VANE_POWER_PCT)),
    ]:
        got = k.table_baseline_power(x, 1234.0, xp, fp)
        want = naive.table_baseline_power(x, 1234.0, xp, fp)
        np.testing.assert_allclose(got, want, rtol=1e-12)
        got = k.characteristic_baseline_power(x, 1234.0, xp, fp)
        want = naive.characteristic_baseline_power(x, 1234.0, xp, fp)
        np.testing.assert_allclose(got, want, rtol=1e-12)


def test_throttle_baseline_is_rated_speed_power():
    from tests.kernels.conftest import PUMP_H, PUMP_P

    q = 0.03
    assert k.throttle_baseline_power(PUMP_H, PUMP_P, q) == pytest.approx(
        naive_shaft(PUMP_P, q), rel=1e-13
    )
    assert math.isnan(k.throttle_baseline_power(PUMP_H, PUMP_P, -0.01))
    assert math.isnan(k.throttle_baseline_power(PUMP_H, PUMP_P, 0.5))  # beyond run-out
    assert math.isnan(k.throttle_baseline_power(PUMP_H, PUMP_P, math.nan))


def naive_shaft(pc, q):
    return pc[0] + pc[1] * q + pc[2] * q**2 + pc[3] * q**3


def test_dispatcher_routes_every_method():
    from tests.kernels.conftest import PUMP_H, PUMP_P

    flow_pct = np.array(k.DAMPER_FLOW_PCT)
    damper = np.array(k.DAMPER_POWER_PCT)
    vane = np.array(k.INLET_VANE_POWER_PCT)
    args = (0.6, 0.03, 20e3, 0.06, 15e3)
    assert k.baseline_power(k.BASELINE_CONSTANT, *args, SPEED, POWER, PUMP_H, PUMP_P) == 15e3
    assert k.baseline_power(
        k.BASELINE_CHARACTERISTIC, *args, SPEED, POWER, PUMP_H, PUMP_P
    ) == pytest.approx(20e3 * 0.83)
    assert k.baseline_power(
        k.BASELINE_THROTTLE, *args, SPEED, POWER, PUMP_H, PUMP_P
    ) == pytest.approx(naive_shaft(PUMP_P, 0.03))
    assert k.baseline_power(
        k.BASELINE_DAMPER, *args, flow_pct, damper, PUMP_H, PUMP_P
    ) == pytest.approx(20e3 * 0.771)
    assert k.baseline_power(
        k.BASELINE_INLET_VANE, *args, flow_pct, vane, PUMP_H, PUMP_P
    ) == pytest.approx(20e3 * 0.484)
    assert math.isnan(k.baseline_power(99, *args, SPEED, POWER, PUMP_H, PUMP_P))
    bad_rated_flow = (0.6, 0.03, 20e3, 0.0, 15e3)
    assert math.isnan(
        k.baseline_power(k.BASELINE_DAMPER, *bad_rated_flow, flow_pct, damper, PUMP_H, PUMP_P)
    )
