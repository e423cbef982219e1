"""Baseline models, avoided energy and the uncertainty combination."""

import math

import numpy as np
import pytest
import statsmodels.api as sm

from agent.mv.baseline import (
    DesignSpec,
    Intervals,
    TimeOfWeek,
    avoided_energy,
    design_matrix,
    fit_baseline,
    time_of_week_group,
)
from agent.mv.estimate import Estimate
from agent.mv.stats import MvError
from agent.mv.uncertainty import co2_kg, combine, measured_energy, money, savings_with_meter, weighted_factor
from tests.agent.mv_synth import HOUR, plant

SPEC = DesignSpec(flow_degree=2, time_of_week=TimeOfWeek.DAYPART)


def _periods(seed, saving_w=1500.0, rho=0.5):
    base, _, _ = plant(seed, weeks=4, rho=rho, operator=True, saving_w=saving_w)
    start_r = 4 * 168 * HOUR
    rep, _, _ = plant(seed + 1000, weeks=2, rho=rho, operator=False, start_s=start_r, saving_w=saving_w)
    return base, rep, start_r


def test_time_of_week_groups():
    how = np.array([0, 5, 6, 23, 24 * 5, 24 * 5 + 13, 167])
    assert time_of_week_group(how, TimeOfWeek.DAYPART).tolist() == [0, 0, 1, 3, 4, 6, 7]
    assert time_of_week_group(how, TimeOfWeek.HOUR_OF_WEEK).tolist() == how.tolist()
    with pytest.raises(MvError, match="0..167"):
        time_of_week_group(np.array([168]), TimeOfWeek.DAYPART)


def test_baseline_fit_matches_statsmodels_and_passes_g14():
    base, _, _ = _periods(3)
    model = fit_baseline(base, SPEC, HOUR, 0.0, 4 * 168 * HOUR)
    X, names = design_matrix(model.spec, base)
    assert names == ("intercept", "flow", "flow^2", *(f"tow[{g}]" for g in range(1, 8)))
    ref = sm.OLS(base.power_w, X).fit()
    np.testing.assert_allclose(model.coefficients, ref.params, rtol=1e-8)
    assert model.stats.r_squared == pytest.approx(ref.rsquared, rel=1e-10)
    assert model.coverage == 1.0 and model.passed
    assert 0.35 < model.rho < 0.65  # the synthetic noise's rho is 0.5


def test_missing_intervals_lower_coverage_and_fail_openly():
    base, _, _ = _periods(4)
    keep = np.ones(len(base), dtype=bool)
    keep[100:180] = False  # 80 of 672 hours lost: 88 % coverage
    model = fit_baseline(base.subset(keep), SPEC, HOUR, 0.0, 4 * 168 * HOUR)
    assert model.coverage == pytest.approx(592 / 672)
    assert not model.passed
    assert [c.name for c in model.checks if not c.passed] == ["data coverage"]


def test_avoided_energy_interval_holds_the_truth():
    hits = 0
    for seed in range(40):
        base, rep, start_r = _periods(seed)
        model = fit_baseline(base, SPEC, HOUR, 0.0, start_r)
        result = avoided_energy(model, rep, start_r, start_r + 2 * 168 * HOUR)
        truth = 1500.0 * len(rep) * HOUR
        hits += result.savings_j.lower(0.90) <= truth <= result.savings_j.upper(0.90)
        assert result.savings_j.value == pytest.approx(result.adjusted_baseline_j - result.actual_j)
        assert result.fsu[0.68] < result.fsu[0.90]
        assert len(result.cumulative_half_width90_j) == result.m
        assert result.cumulative_half_width90_j[-1] == pytest.approx(result.savings_j.half_width(0.9))
    assert hits >= 32  # 90 % nominal; 40 runs, binomial lower 0.1 % tail is 30


def test_prediction_refuses_a_time_of_week_group_the_baseline_never_saw():
    base, rep, start_r = _periods(5)
    weekdays = base.hour_of_week < 24 * 5
    model = fit_baseline(base.subset(weekdays), SPEC, HOUR, 0.0, start_r)
    with pytest.raises(MvError, match="never occur in the baseline"):
        model.predict_w(rep)


def test_meter_accuracy_scales_a_measured_saving_not_the_baseline():
    s = Estimate(1000.0, 100.0, 30)
    measured = savings_with_meter(s, 0.02, baseline_measured=True)
    assert measured.std == pytest.approx(math.hypot(100.0, 20.0 / math.sqrt(3)))
    stipulated = savings_with_meter(s, 0.02, baseline_measured=False, actual_energy_j=50_000.0)
    assert stipulated.std == pytest.approx(math.hypot(100.0, 1000.0 / math.sqrt(3)))
    # Welch-Satterthwaite: more dof once an infinite-dof component joins.
    assert measured.dof == pytest.approx(measured.std**4 / (100.0**4 / 30))
    assert combine(Estimate(5.0, 0.0), 3.0).std == pytest.approx(3.0 / math.sqrt(3))
    assert measured_energy(3.6e6, 0.01).upper(0.68) > 3.6e6
    with pytest.raises(MvError):
        measured_energy(1.0, 1.5)


def test_co2_and_money_bounds_follow_the_energy_bounds():
    e = Estimate(3.6e9, 3.6e8, 40)  # 1000 kWh +- 100 kWh
    co2 = co2_kg(e, 0.5703 / 3.6e6)
    assert co2.value == pytest.approx(570.3)
    assert co2.lower(0.9) == pytest.approx(e.lower(0.9) * 0.5703 / 3.6e6)
    m = money(e, weighted_factor(np.array([1.0, 3.0]), np.array([0.1, 0.2])) / 3.6e6)
    assert m.value == pytest.approx(1000 * 0.175)
    with pytest.raises(MvError):
        weighted_factor(np.array([0.0]), np.array([1.0]))


def test_intervals_check_their_columns():
    with pytest.raises(MvError, match="flow_m3s has 2 values for 3 intervals"):
        Intervals(np.zeros(3), np.zeros(3), np.zeros(3, dtype=np.int64), flow_m3s=np.zeros(2))
    with pytest.raises(MvError, match="needs flow_m3s"):
        design_matrix(SPEC, Intervals(np.zeros(3), np.zeros(3), np.zeros(3, dtype=np.int64)))
