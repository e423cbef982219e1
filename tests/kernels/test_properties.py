"""Property tests: no kernel raises or returns inf on arbitrary finite input (NaN is the
kernels' way to say "no answer")."""

import math

import numpy as np
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import kernels as k

FINITE = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False, allow_infinity=False)
SETTINGS = settings(max_examples=100, deadline=None,
                    suppress_health_check=[HealthCheck.too_slow])


def vec(n_min, n_max):
    return st.integers(n_min, n_max).flatmap(lambda n: arrays(np.float64, n, elements=FINITE))


def coeffs(n):
    return arrays(np.float64, n, elements=FINITE)


def no_inf(*values):
    for v in values:
        arr = np.atleast_1d(np.asarray(v, dtype=float))
        assert not np.any(np.isinf(arr)), values


@SETTINGS
@given(coeffs(3), coeffs(4), FINITE, FINITE, FINITE, FINITE, FINITE)
# Found by hypothesis in a clean-clone run: a subnormal a2 made s / a2 overflow to inf.
@example(np.array([0.0, 2.0, -1.11253693e-308]), np.zeros(4), 0.0, 1.0, 0.0, 0.0, 0.0)
def test_curves_and_operating_points(hc, pc, q, r, hs, kk, dens):
    no_inf(k.head(hc, q, r), k.shaft_power(pc, q, r), k.efficiency(hc, pc, q, r, dens))
    no_inf(k.fan_efficiency(hc, pc, q, r), k.runout_flow(hc), k.bep_flow(hc, pc, r))
    no_inf(k.operating_point(hc, hs, kk, r))
    no_inf(k.min_speed_for_flow(hc, hs, kk, q, min(abs(r), 1.0), 1.0))
    no_inf(k.estimate_flow(pc, q, r), k.throttle_baseline_power(hc, pc, q))


@SETTINGS
@given(vec(0, 60), st.data())
def test_fits(flow, data):
    n = flow.size
    head = data.draw(arrays(np.float64, n, elements=FINITE))
    power = data.draw(arrays(np.float64, n, elements=FINITE))
    r = data.draw(arrays(np.float64, n, elements=st.floats(0.0, 1.5)))
    w = data.draw(arrays(np.float64, n, elements=st.floats(0.0, 10.0)))
    hc, pc, r2h, r2p = k.fit_pump_curves(flow, head, power, r, w)
    no_inf(hc, pc, r2h, r2p)
    no_inf(*k.fit_system_curve(flow, head))
    coeffs_, r2 = k.fit_load_characteristic(r, power)
    no_inf(coeffs_, r2, k.static_head_share(coeffs_, 0.2))


@SETTINGS
@given(vec(0, 40), st.data(), FINITE)
def test_integrate_energy(t, data, max_gap):
    p = data.draw(arrays(np.float64, t.size, elements=FINITE))
    joules, covered = k.integrate_energy(np.sort(t) if data.draw(st.booleans()) else t, p,
                                         max_gap)
    no_inf(joules, covered)
    assert covered >= 0.0 or math.isnan(covered)


@SETTINGS
@given(FINITE, FINITE, vec(0, 8), vec(0, 8), st.integers(-1, 6), coeffs(3), coeffs(4))
def test_baselines_and_electrical(x, rated, tx, ty, method, hc, pc):
    no_inf(k.characteristic_baseline_power(x, rated, tx, ty))
    no_inf(k.table_baseline_power(x, rated, tx, ty))
    no_inf(k.constant_baseline_power(x))
    no_inf(k.baseline_power(method, x, abs(x), rated, 0.1, rated, tx, ty, hc, pc))
    motor, drive = k.default_efficiency_tables()
    no_inf(k.electrical_power(x, rated, motor, drive))


@SETTINGS
@given(st.integers(1, 4), st.data())
def test_staging(n, data):
    rng = np.random.default_rng(data.draw(st.integers(0, 2**32 - 1)))
    # realistic pumps, randomly distorted, plus fully arbitrary ones
    hc = np.array([50.0, 40.0, -4800.0]) * rng.uniform(0.5, 1.5, (n, 3))
    pc = np.array([8000.0, 4.0e5, -2.0e6, 5.0e6]) * rng.uniform(0.5, 1.5, (n, 4))
    if data.draw(st.booleans()):
        hc[0] = data.draw(coeffs(3))
        pc[0] = data.draw(coeffs(4))
    one = np.ones(n)
    speeds, total = k.stage_pumps(
        hc, pc, 3e4 * one, data.draw(FINITE), data.draw(FINITE), data.draw(FINITE),
        0.3 * one, one, 0.5 * one, 1.4 * one,
    )
    no_inf(speeds, total)


@SETTINGS
@given(vec(1, 4), FINITE, st.floats(0.5, 1.0))
def test_rls(x, y, lam):
    state = k.rls_init(x.size, 1e3)
    for _ in range(3):
        no_inf(k.rls_update(state, x, y, lam))
    no_inf(state)
