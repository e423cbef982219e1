import math

import numpy as np
import pytest

from agent.config import DEFAULT_CHARACTERISTIC, BaselineConfig, BaselineMethod
from agent.energy import BaselineModel, EnergyAccount, EnergyPoint

KWH = 3.6e6


def account(max_gap=5.0, kg_per_kwh=0.5, price_per_kwh=0.2):
    return EnergyAccount(max_gap, kg_per_kwh / KWH, price_per_kwh / KWH)


def test_trapezoid_matches_analytic_integral_within_the_error_bound():
    # P(t) = P0 + A·sin(ωt): exact energy over [0, T] and the trapezoid error bound T·h²·max|P''|/12.
    p0, amp, omega, h, duration = 10_000.0, 3_000.0, 2 * math.pi / 120.0, 1.0, 600.0
    acc = account()
    for t in np.arange(0.0, duration + h / 2, h):
        power = p0 + amp * math.sin(omega * t)
        acc.add(EnergyPoint(float(t), power, 1.5 * power))
    exact = p0 * duration + amp / omega * (1 - math.cos(omega * duration))
    bound = duration * h**2 * amp * omega**2 / 12
    assert abs(acc.totals.energy_j - exact) <= bound
    assert acc.totals.covered_s == pytest.approx(duration)
    assert acc.totals.baseline_energy_j == pytest.approx(1.5 * acc.totals.energy_j)
    assert acc.totals.saved_j == pytest.approx(0.5 * acc.totals.energy_j)


def test_gaps_longer_than_max_gap_are_counted_not_integrated():
    acc = account(max_gap=5.0)
    for t in (0.0, 1.0, 2.0, 12.0, 13.0):  # a 10 s gap between 2 and 12
        acc.add(EnergyPoint(t, 1000.0, 2000.0))
    assert acc.totals.energy_j == pytest.approx(3 * 1000.0)
    assert acc.totals.covered_s == pytest.approx(3.0)
    assert (acc.totals.gaps, acc.totals.gap_s) == (1, pytest.approx(10.0))


def test_a_broken_chain_and_unusable_samples_do_not_bridge():
    acc = account()
    acc.add(EnergyPoint(0.0, 1000.0, 1000.0))
    acc.break_chain()
    acc.add(EnergyPoint(1.0, 1000.0, 1000.0))
    acc.add(EnergyPoint(2.0, math.nan, 1000.0))
    acc.add(EnergyPoint(3.0, 1000.0, 1000.0))
    acc.add(EnergyPoint(3.0, 1000.0, 1000.0))  # repeated timestamp: ignored
    acc.add(EnergyPoint(4.0, 1000.0, 1000.0))
    assert acc.totals.energy_j == pytest.approx(1000.0)


def test_savings_penalty_co2_and_money_are_split_by_sign():
    acc = account(kg_per_kwh=0.5703, price_per_kwh=0.25)
    # 1 h at 10 kW against a 15 kW baseline, then 1 h at 12 kW against 10 kW.
    acc.add(EnergyPoint(0.0, 10_000.0, 15_000.0))
    acc.max_gap = 4000.0
    acc.add(EnergyPoint(3600.0, 10_000.0, 15_000.0))
    acc.add(EnergyPoint(3600.0 + 1e-9, 12_000.0, 10_000.0))
    acc.break_chain()
    acc.add(EnergyPoint(4000.0, 12_000.0, 10_000.0))
    acc.add(EnergyPoint(7600.0, 12_000.0, 10_000.0))
    totals = acc.totals
    assert totals.saved_j == pytest.approx(5 * KWH)
    assert totals.penalty_j == pytest.approx(2 * KWH)
    assert totals.co2_avoided_g == pytest.approx(5 * 570.3)
    assert totals.co2_penalty_g == pytest.approx(2 * 570.3)
    assert totals.cost_saved == pytest.approx(5 * 0.25)
    assert totals.cost_penalty == pytest.approx(2 * 0.25)


def test_characteristic_baseline_interpolates_the_table():
    speed, power = zip(*DEFAULT_CHARACTERISTIC, strict=True)
    model = BaselineModel(BaselineConfig(BaselineMethod.CHARACTERISTIC, math.nan, speed, power), 10_000.0)
    assert model.power(0.5, True) == pytest.approx(7_700.0)
    assert model.power(0.625, True) == pytest.approx(10_000.0 * (0.77 + 0.5 * (0.92 - 0.77)))
    assert model.power(1.0, True) == pytest.approx(10_000.0)
    assert model.power(0.8, False) == 0.0
    assert math.isnan(model.power(math.nan, True))


def test_constant_baseline_only_while_running():
    model = BaselineModel(BaselineConfig(BaselineMethod.CONSTANT, 11_000.0, (), ()), 11_000.0)
    assert model.power(0.3, True) == 11_000.0
    assert model.power(0.0, False) == 0.0
