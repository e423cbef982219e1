import math

import numpy as np
import pytest

import kernels as k
from tests import naive


def test_analytic_sine_power():
    # P(t) = 1000 + 200 sin(2 pi t / 600) over one hour: integral = 3.6e6 J exactly.
    t = np.linspace(0.0, 3600.0, 3601)
    p = 1000.0 + 200.0 * np.sin(2 * np.pi * t / 600.0)
    joules, covered = k.integrate_energy(t, p, 5.0)
    assert covered == pytest.approx(3600.0, rel=1e-12)
    # Trapezoid error bound for this step: h^2/12 * max|P''| * T ~ 7e1 J; far tighter here.
    assert joules == pytest.approx(3.6e6, rel=1e-6)


def test_gaps_backwards_time_and_nan_are_not_covered():
    t = np.array([0.0, 1.0, 2.0, 10.0, 11.0, 10.5, 12.0, 13.0, 14.0])
    p = np.array([100.0, 100.0, 100.0, 100.0, 100.0, 100.0, np.nan, 100.0, 100.0])
    joules, covered = k.integrate_energy(t, p, 2.0)
    # Kept: [0,1], [1,2], [10,11], [13,14]. Dropped: [2,10] gap, [11,10.5] backwards,
    # [10.5,12] and [12,13] touch the NaN sample.
    assert covered == pytest.approx(4.0)
    assert joules == pytest.approx(100.0 * covered)
    assert (joules, covered) == pytest.approx(naive.integrate_energy(t, p, 2.0))


def test_degenerate_inputs():
    e = np.empty(0)
    assert k.integrate_energy(e, e, 1.0) == (0.0, 0.0)
    one = np.array([1.0])
    assert k.integrate_energy(one, one, 1.0) == (0.0, 0.0)
    j, c = k.integrate_energy(np.arange(3.0), np.arange(2.0), 1.0)
    assert math.isnan(j) and math.isnan(c)
    t = np.arange(5.0)
    assert k.integrate_energy(t, t, math.nan) == (0.0, 0.0)
    p = np.array([1.0, math.inf, 1.0, 1.0, 1.0])
    assert k.integrate_energy(t, p, 1.0) == (2.0, 2.0)


def test_matches_naive_on_random_series():
    rng = np.random.default_rng(3)
    t = np.cumsum(rng.exponential(2.0, 500)) - 50
    p = rng.normal(1000, 300, 500)
    p[rng.integers(0, 500, 20)] = np.nan
    t[rng.integers(0, 500, 5)] -= 7.0
    got = k.integrate_energy(t, p, 4.0)
    want = naive.integrate_energy(t, p, 4.0)
    np.testing.assert_allclose(got, want, rtol=1e-12)


def test_compensated_sum_is_exact_for_many_small_steps():
    n = 1_000_001
    t = np.arange(n) * 0.1
    p = np.full(n, 0.1)
    joules, covered = k.integrate_energy(t, p, 1.0)
    assert covered == pytest.approx(1e5, rel=1e-14)
    assert joules == pytest.approx(1e4, rel=1e-14)
