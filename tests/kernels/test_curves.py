import math

import numpy as np
import pytest

import kernels as k
from tests import naive
from tests.kernels.conftest import PUMP_H, PUMP_P


@pytest.mark.parametrize("r", [0.3, 0.55, 0.8, 1.0, 1.1])
@pytest.mark.parametrize("q", [0.0, 0.01, 0.04, 0.07])
def test_affinity_identities(q, r):
    # H(rQ, r) = r^2 H(Q, 1), P(rQ, r) = r^3 P(Q, 1), efficiency unchanged.
    assert k.head(PUMP_H, r * q, r) == pytest.approx(r**2 * k.head(PUMP_H, q, 1.0), rel=1e-12)
    assert k.shaft_power(PUMP_P, r * q, r) == pytest.approx(
        r**3 * k.shaft_power(PUMP_P, q, 1.0), rel=1e-12
    )
    e1 = k.efficiency(PUMP_H, PUMP_P, q, 1.0, 998.0)
    er = k.efficiency(PUMP_H, PUMP_P, r * q, r, 998.0)
    assert er == pytest.approx(e1, rel=1e-12, abs=1e-15)
    assert k.head(PUMP_H, q, r) == pytest.approx(naive.head(PUMP_H, q, r), rel=1e-13)
    assert k.shaft_power(PUMP_P, q, r) == pytest.approx(naive.shaft_power(PUMP_P, q, r), rel=1e-13)


def test_efficiency_matches_measur_hydraulic_power():
    # DOE MEASUR: 1000 gpm, 280 ft, SG 1.02 -> 53.78 kW hydraulic power.
    q = 1000 * 3.785411784e-3 / 60  # m^3/s
    h = 280 * 0.3048  # m
    hc = np.array([h, 0.0, 0.0])  # flat curve: head h at any flow
    pc = np.array([53.78e3, 0.0, 0.0, 0.0])  # shaft power equal to the hydraulic power
    assert k.efficiency(hc, pc, q, 1.0, 1020.0) == pytest.approx(1.0, rel=2e-3)


def test_efficiency_nan_outside_physical_region():
    assert math.isnan(k.efficiency(PUMP_H, PUMP_P, -0.01, 1.0, 998.0))
    assert math.isnan(k.efficiency(PUMP_H, PUMP_P, 0.2, 1.0, 998.0))  # beyond run-out
    assert math.isnan(k.efficiency(PUMP_H, PUMP_P, 0.04, 1.0, 0.0))
    assert k.efficiency(PUMP_H, PUMP_P, 0.0, 1.0, 998.0) == 0.0


def test_fan_efficiency_is_q_dp_over_p():
    pc = np.array([100.0, 0.0, 0.0, 0.0])
    dc = np.array([500.0, 0.0, 0.0])
    assert k.fan_pressure(dc, 0.1, 1.0) == 500.0
    assert k.fan_efficiency(dc, pc, 0.1, 1.0) == pytest.approx(0.5)


def test_runout_and_bep():
    q_end = k.runout_flow(PUMP_H)
    assert k.head(PUMP_H, q_end, 1.0) == pytest.approx(0.0, abs=1e-9)
    bep = k.bep_flow(PUMP_H, PUMP_P, 1.0)
    assert bep == pytest.approx(naive.bep_flow(PUMP_H, PUMP_P, 1.0), rel=1e-5)
    # BEP flow scales with speed
    assert k.bep_flow(PUMP_H, PUMP_P, 0.7) == pytest.approx(0.7 * bep, rel=1e-9)
    assert 0.8 < k.efficiency(PUMP_H, PUMP_P, bep, 1.0, 998.0) < 0.9
    assert math.isnan(k.runout_flow(np.array([50.0, 0.0, 100.0])))  # rising curve
    assert math.isnan(k.bep_flow(np.array([np.nan, 0.0, -1.0]), PUMP_P, 1.0))
    assert math.isnan(k.bep_flow(PUMP_H, PUMP_P, 0.0))
