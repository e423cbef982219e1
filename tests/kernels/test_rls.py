import math

import numpy as np
import pytest

import kernels as k
from tests import naive


@pytest.mark.parametrize("forgetting", [1.0, 0.995])
def test_rls_equals_weighted_batch_least_squares(forgetting):
    rng = np.random.default_rng(9)
    x = np.column_stack([np.ones(300), rng.uniform(0, 1, 300), rng.uniform(0, 1, 300) ** 2])
    y = x @ np.array([2.0, -1.0, 0.5]) + 0.01 * rng.standard_normal(300)
    state = k.rls_init(3, 1e4)
    for xi, yi in zip(x, y, strict=True):
        k.rls_update(state, xi, yi, forgetting)
    np.testing.assert_allclose(
        k.rls_coeffs(state), naive.rls_batch(x, y, 1e4, forgetting), rtol=1e-6, atol=1e-9
    )
    p = state[1:]
    np.testing.assert_array_equal(p, p.T)
    assert np.all(np.linalg.eigvalsh(p) > 0)


def test_rls_tracks_a_change_with_forgetting():
    rng = np.random.default_rng(10)
    state = k.rls_init(2, 1e3)
    for i in range(2000):
        xi = np.array([1.0, rng.uniform(0, 1)])
        theta = np.array([1.0, 2.0]) if i < 1000 else np.array([1.5, 1.0])
        k.rls_update(state, xi, float(xi @ theta), 0.98)
    np.testing.assert_allclose(k.rls_coeffs(state), [1.5, 1.0], rtol=1e-6)


def test_rls_rejects_bad_samples_and_bounds_windup():
    state = k.rls_init(2, 1.0)
    before = state.copy()
    assert math.isnan(k.rls_update(state, np.array([1.0, np.nan]), 1.0, 0.99))
    assert math.isnan(k.rls_update(state, np.array([1.0, 1.0]), np.inf, 0.99))
    assert math.isnan(k.rls_update(state, np.array([1.0, 1.0]), 1.0, 0.0))
    assert math.isnan(k.rls_update(state, np.array([1.0, 1.0, 1.0]), 1.0, 0.99))
    np.testing.assert_array_equal(state, before)
    # no excitation in the second direction for a long time: P stays bounded
    for _ in range(20000):
        k.rls_update_bounded(state, np.array([1.0, 0.0]), 1.0, 0.9, 1e6)
    assert np.trace(state[1:]) < 1e6 / 0.9 + 1
    assert np.all(np.isfinite(state))
