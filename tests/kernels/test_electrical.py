import math

import numpy as np
import pytest

import kernels as k
from tests import naive


def test_measur_motor_points_and_hand_value():
    motor, drive = k.default_efficiency_tables()
    flat = np.array([[0.0, 1.0], [1.0, 1.0]])
    # the MEASUR premium motor figures are reproduced at their load points
    for load, eta in [(0.25, 0.935), (0.5, 0.964), (0.75, 0.965), (1.0, 0.961)]:
        assert k.electrical_power(load * 1e5, 1e5, motor, flat) == pytest.approx(load * 1e5 / eta)
    # hand value: 60 % load -> eta_m = 0.964 + 0.4 * (0.965 - 0.964), eta_d = 0.965 + 0.4 * 0.01
    eta_m = 0.964 + 0.4 * 0.001
    eta_d = 0.965 + 0.4 * 0.010
    assert k.electrical_power(6e4, 1e5, motor, drive) == pytest.approx(6e4 / (eta_m * eta_d))


def test_electrical_edges_and_naive():
    motor, drive = k.default_efficiency_tables()
    assert k.electrical_power(0.0, 1e5, motor, drive) == 0.0
    assert math.isnan(k.electrical_power(-1.0, 1e5, motor, drive))
    assert math.isnan(k.electrical_power(1.0, 0.0, motor, drive))
    assert math.isnan(k.electrical_power(math.nan, 1e5, motor, drive))
    assert math.isnan(k.electrical_power(1.0, 1e5, motor[:, ::-1].copy(), drive))
    assert math.isnan(k.electrical_power(1.0, 1e5, np.array([[0.0, 1.0], [0.0, 0.9]]), drive))
    for p in np.linspace(1e3, 1.4e5, 29):
        assert k.electrical_power(p, 1e5, motor, drive) == pytest.approx(
            naive.electrical_power(p, 1e5, motor, drive), rel=1e-12
        )
