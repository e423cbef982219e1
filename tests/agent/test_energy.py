import math
from datetime import datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from agent.config import (
    BaselineConfig,
    BaselineMethod,
    ControlConfig,
    ControlMode,
    DriveConfig,
    LoadConfig,
    LoadKind,
)
from agent.config.profile import BUILTIN_PROFILES, Point, Quantity, RegisterTable
from agent.config.schedule import Period, Schedule, TimeOfUse
from agent.config.yamlsource import Issues
from agent.drive import DriveRuntime
from agent.energy.account import EnergyAccount, EnergySample, EnergySource
from agent.energy.baseline import BaselineModel
from agent.energy.counter import CounterEvent, EnergyCounter
from agent.modbus.codec import DataType, Order
from agent.optimizer.datasheet import datasheet_curves
from agent.units import KWH_TO_J, Dimension

KWH = KWH_TO_J
UTC = ZoneInfo("UTC")
T0 = datetime(2026, 3, 2, 6, 0, tzinfo=UTC).timestamp()  # a Monday, 06:00 UTC


def flat_rates(kg_per_kwh=0.5, price_per_kwh=0.2):
    return TimeOfUse(Schedule(price_per_kwh / KWH), Schedule(kg_per_kwh / KWH), UTC)


def site():
    from agent.config.model import SiteConfig, Tariff

    return SiteConfig("s", Schedule(0.5 / KWH), Tariff("EUR", Schedule(0.2 / KWH)), UTC)


def account(max_gap=5.0, rates=None, counter=None, measured=True):
    """An account whose baseline is backed by a measurement (its savings earn CO2 and money)."""
    return EnergyAccount(max_gap, rates or flat_rates(), counter, measured)


def sample(t, power, baseline, counter=math.nan, counterfactual=math.nan):
    return EnergySample(t, T0 + t, power, baseline, counter, counterfactual)


def counter_point(dtype=DataType.UINT32, scale=0.01, unit_factor=KWH, saturates_at=None):
    return Point(Quantity.ENERGY, RegisterTable.HOLDING, 6, dtype, Order.BIG, Order.BIG, scale, 0.0, "kWh",
                 Dimension.ENERGY, unit_factor, False, saturates_at)


def test_trapezoid_matches_analytic_integral_within_the_error_bound():
    # P(t) = P0 + A·sin(ωt): exact energy over [0, T] and the trapezoid error bound T·h²·max|P''|/12.
    p0, amp, omega, h, duration = 10_000.0, 3_000.0, 2 * math.pi / 120.0, 1.0, 600.0
    acc = account()
    for t in np.arange(0.0, duration + h / 2, h):
        power = p0 + amp * math.sin(omega * t)
        acc.add(sample(float(t), power, 1.5 * power))
    exact = p0 * duration + amp / omega * (1 - math.cos(omega * duration))
    bound = duration * h**2 * amp * omega**2 / 12
    assert abs(acc.totals.energy_j - exact) <= bound
    assert acc.totals.covered_s == pytest.approx(duration)
    assert acc.totals.power_s == pytest.approx(duration)
    assert acc.totals.baseline_energy_j == pytest.approx(1.5 * acc.totals.energy_j)
    acc.close_window()
    assert acc.totals.saved_vfd_j == pytest.approx(0.5 * acc.totals.energy_j)


def test_gaps_longer_than_max_gap_are_counted_not_integrated():
    acc = account(max_gap=5.0)
    for t in (0.0, 1.0, 2.0, 12.0, 13.0):  # a 10 s gap between 2 and 12
        acc.add(sample(t, 1000.0, 2000.0))
    assert acc.totals.energy_j == pytest.approx(3 * 1000.0)
    assert acc.totals.covered_s == pytest.approx(3.0)
    assert acc.totals.gaps == 1
    assert sum(h.gaps for h in acc.close_window().values()) == 1


def test_a_broken_chain_and_unusable_samples_do_not_bridge():
    acc = account()
    acc.add(sample(0.0, 1000.0, 1000.0))
    acc.break_chain()
    acc.add(sample(1.0, 1000.0, 1000.0))
    acc.add(sample(2.0, math.nan, 1000.0))
    acc.add(sample(3.0, 1000.0, 1000.0))
    acc.add(sample(3.0, 1000.0, 1000.0))  # repeated timestamp: ignored
    acc.add(sample(4.0, 1000.0, 1000.0))
    assert acc.totals.energy_j == pytest.approx(1000.0)


def test_window_net_savings_are_split_by_sign_for_energy_co2_and_money():
    acc = account(rates=flat_rates(kg_per_kwh=0.5703, price_per_kwh=0.25))
    acc.add(sample(0.0, 10_000.0, 15_000.0))
    acc.add(sample(3.0, 10_000.0, 15_000.0))  # 15 kJ saved
    acc.close_window()
    acc.add(sample(4.0, 12_000.0, 10_000.0))  # 1 s at mixed powers, then 2 s drawing more than baseline
    acc.add(sample(6.0, 12_000.0, 10_000.0))
    acc.close_window()
    t = acc.totals
    first = 15_000.0
    second = 0.5 * (5_000 - 2_000) * 1.0 - 2_000 * 2.0  # +1.5 kJ then -4 kJ: -2.5 kJ net
    assert t.saved_vfd_j == pytest.approx(first)
    assert t.penalty_vfd_j == pytest.approx(-second)
    assert t.co2_avoided_g == pytest.approx(first / KWH * 570.3)
    assert t.co2_penalty_g == pytest.approx(-second / KWH * 570.3)
    assert t.cost_saved == pytest.approx(first / KWH * 0.25)
    assert t.cost_penalty == pytest.approx(-second / KWH * 0.25)
    assert t.baseline_energy_j - t.energy_j == pytest.approx(t.saved_vfd_j - t.penalty_vfd_j)


def test_a_stipulated_baseline_saves_energy_apart_and_earns_no_co2_or_money():
    acc = account(measured=False)
    acc.add(sample(0.0, 10_000.0, 15_000.0))
    acc.add(sample(3.0, 10_000.0, 15_000.0))  # 15 kJ below a vendor table's baseline
    hours = acc.close_window()
    t = acc.totals
    assert t.saved_stipulated_j == pytest.approx(15_000.0) and t.penalty_stipulated_j == 0.0
    assert (t.saved_vfd_j, t.co2_avoided_g, t.cost_saved) == (0.0, 0.0, 0.0)
    (hour,) = hours.values()
    assert hour.saved_stipulated_j == pytest.approx(15_000.0)
    assert (hour.saved_vfd_j, hour.co2_g, hour.cost) == (0.0, 0.0, 0.0)


def test_savings_against_the_no_vfd_baseline_are_net_of_the_drives_modelled_losses():
    """An output reading leaves the drive's own losses out; the mains pays them, the no-VFD motor would not.

    The energy booked stays the reading's; both bases' savings, and CO2 and money, are lower by
    the losses the samples carry (modelled by the drive runtime), which are kept in their own figure.
    """
    from dataclasses import replace

    for measured in (True, False):
        accounts = []
        for first, second in ((0.0, 0.0), (300.0, 500.0), (500.0, 700.0)):  # W, linear between the samples
            acc = account(measured=measured)
            acc.add(replace(sample(0.0, 10_000.0, 15_000.0), drive_losses=first))
            acc.add(replace(sample(4.0, 10_000.0, 15_000.0), drive_losses=second))
            hours = acc.close_window()
            accounts.append((acc.totals, hours[int(T0)]))
        (plain, plain_hour), (lossy, lossy_hour), (lossier, _) = accounts
        assert lossy.energy_j == plain.energy_j == pytest.approx(40_000.0)  # the reading's energy, unchanged
        assert lossy.baseline_energy_j == plain.baseline_energy_j
        assert (plain.drive_losses_j, lossy.drive_losses_j) == (0.0, pytest.approx(4 * 400.0))
        assert lossy_hour.drive_losses_j == pytest.approx(1_600.0)
        saved = ("saved_vfd_j", "co2_avoided_g", "cost_saved") if measured else ("saved_stipulated_j",)
        for name in saved:
            net, less = getattr(plain, name), getattr(lossy, name)
            assert less == pytest.approx(net * (20_000.0 - 1_600.0) / 20_000.0)  # on the old code: equal
        assert lossy_hour.saved_vfd_j + lossy_hour.saved_stipulated_j == pytest.approx(20_000.0 - 1_600.0)
        assert plain_hour.saved_vfd_j + plain_hour.saved_stipulated_j == pytest.approx(20_000.0)
        assert lossier.drive_losses_j == pytest.approx(4 * 600.0)


def test_the_evidence_behind_a_baseline_follows_its_method_and_the_points_measured():
    from dataclasses import replace

    from agent.energy.baseline import BaselineEvidence, baseline_evidence

    flow_point = Point(Quantity.FLOW, RegisterTable.HOLDING, 9, DataType.UINT16, Order.BIG, Order.BIG, 0.1,
                       0.0, "m3/h", Dimension.FLOW, 1 / 3600, False, None)
    base = drive(BaselineMethod.CONSTANT, constant=5000.0)
    assert baseline_evidence(base) is BaselineEvidence.STIPULATED  # a nameplate figure
    metered = replace(base, baseline=replace(base.baseline, measured_by="clamp meter, 2026-02-01"))
    assert baseline_evidence(metered) is BaselineEvidence.MEASURED_POWER
    throttle = drive(BaselineMethod.THROTTLE)
    assert baseline_evidence(throttle) is BaselineEvidence.STIPULATED  # flow estimated from power and speed
    points = {**throttle.profile.points, Quantity.FLOW: flow_point}
    with_flow = replace(throttle, profile=replace(throttle.profile, points=points))
    assert baseline_evidence(with_flow) is BaselineEvidence.MEASURED_FLOW
    assert baseline_evidence(drive(BaselineMethod.CHARACTERISTIC)) is BaselineEvidence.STIPULATED
    assert EnergyAccount.for_drive(with_flow, site(), 5.0).measured
    assert not EnergyAccount.for_drive(throttle, site(), 5.0).measured


def test_a_tariff_change_mid_hour_is_split_at_the_edge():
    # 0.10/kWh until 06:30, 0.30/kWh from 06:30 on weekdays; one 60 s interval straddles the edge.
    price = Schedule(0.10 / KWH, (Period(6 * 60 + 30, 22 * 60, frozenset(range(5)), 0.30 / KWH),))
    acc = account(max_gap=120.0, rates=TimeOfUse(price, Schedule(0.5 / KWH), UTC))
    start = 30 * 60 - 20.0  # 06:29:40
    acc.add(sample(start, 0.0, 36_000.0))
    acc.add(sample(start + 60.0, 0.0, 36_000.0))  # 36 kW saved for 60 s = 0.6 kWh
    hours = acc.close_window()
    assert list(hours) == [int(T0)]
    money = hours[int(T0)].cost
    assert money == pytest.approx(36.0 * (20 / 3600) * 0.10 + 36.0 * (40 / 3600) * 0.30)
    assert acc.totals.cost_saved == pytest.approx(money)


def test_an_interval_across_the_hour_goes_to_both_hour_rows():
    acc = account(max_gap=120.0)
    acc.add(sample(3600.0 - 30.0, 1000.0, 2000.0))
    acc.add(sample(3600.0 + 60.0, 4000.0, 2000.0))  # power ramps 1 kW -> 4 kW over 90 s
    hours = acc.close_window()
    first, second = hours[int(T0)], hours[int(T0) + 3600]
    # Linear power: mean over the first third is 1.5 kW, over the last two thirds 3 kW.
    assert first.energy_j == pytest.approx(1500.0 * 30)
    assert second.energy_j == pytest.approx(3000.0 * 60)
    assert first.covered_s == pytest.approx(30.0) and second.covered_s == pytest.approx(60.0)


def truncated_kwh(joules, step_kwh):
    """What a drive's counter register shows: the energy truncated to its step, in J."""
    return math.floor(joules / KWH / step_kwh) * step_kwh * KWH


def test_counter_disciplines_a_biased_power_register():
    # 10 kW for 100 s = 1 MJ by the 1 Wh counter, while the power register reads 1 % low.
    acc = account(counter=EnergyCounter(counter_point(scale=0.001), 15_000.0))
    start = 100.0 * KWH
    for i in range(101):
        acc.add(sample(float(i), 9_900.0, 12_000.0, counter=truncated_kwh(start + i * 10_000.0, 0.001)))
    assert acc.source is EnergySource.COUNTER
    assert acc.totals.counter_s + acc.totals.power_s == pytest.approx(100.0)
    assert acc.totals.counter_s > 95.0  # power alone only until the counter's first step
    # Within one counter step (3.6 kJ) of the truth, where the power register alone is 10 kJ short.
    assert acc.totals.energy_j == pytest.approx(1_000_000.0, abs=3600.0)


def test_counter_steps_do_not_make_short_intervals_lumpy():
    # A coarse 0.01 kWh (36 kJ) counter and 1 s polls at 3 kW: the counter moves only every 12 s,
    # but every interval is booked close to 3 kJ because the power register gives the fine structure.
    acc = account(counter=EnergyCounter(counter_point(scale=0.01), 15_000.0))
    booked = []
    for i in range(61):
        before = acc.totals.energy_j
        acc.add(sample(float(i), 3_000.0, 5_000.0, counter=truncated_kwh(50.0 * KWH + i * 3_000.0, 0.01)))
        booked.append(acc.totals.energy_j - before)
    assert all(b == pytest.approx(3_000.0, abs=1.0) for b in booked[1:])
    assert acc.totals.energy_j == pytest.approx(180_000.0, abs=36_000.0)


def test_counter_wrap_is_booked_and_a_reset_falls_back_to_power():
    # uint16 in Wh: wraps at 65536 Wh.
    point = counter_point(dtype=DataType.UINT16, scale=1.0, unit_factor=3600.0)
    modulus = 65536 * 3600.0
    counter = EnergyCounter(point, 50_000.0)
    acc = account(counter=counter)
    acc.add(sample(0.0, 36_000.0, 40_000.0, counter=modulus - 10 * 3600.0))
    acc.add(sample(1.0, 36_000.0, 40_000.0, counter=0.0))  # +10 Wh across the wrap = 36 kJ
    assert acc.totals.energy_j == pytest.approx(36_000.0)
    assert counter.events[CounterEvent.WRAP] == 1
    acc.add(sample(2.0, 36_000.0, 40_000.0, counter=12_000 * 3600.0))  # drive restarted: counter elsewhere
    assert counter.events[CounterEvent.RESET] == 0 and counter.events[CounterEvent.JUMP] == 1
    acc.add(sample(3.0, 36_000.0, 40_000.0, counter=5 * 3600.0))  # went backwards: a reset
    assert counter.events[CounterEvent.RESET] == 1
    # Neither bogus step was booked: those intervals (and the one before the counter's phase was
    # known) were integrated from power instead.
    assert acc.totals.energy_j == pytest.approx(3 * 36_000.0)
    assert acc.totals.power_s == pytest.approx(3.0)


def test_a_saturated_counter_hands_over_to_power_integration():
    # SINAMICS r0039: a 16-bit kWh register that sticks at 32767.
    point = counter_point(dtype=DataType.INT16, scale=1.0, saturates_at=32767)
    counter = EnergyCounter(point, 100_000.0)
    acc = account(max_gap=120.0, counter=counter)
    acc.add(sample(0.0, 90_000.0, 100_000.0, counter=32766 * KWH))
    acc.add(sample(40.0, 90_000.0, 100_000.0, counter=32767 * KWH))  # reaches the ceiling: not trusted
    acc.add(sample(80.0, 90_000.0, 100_000.0, counter=32767 * KWH))
    assert counter.saturated and counter.events[CounterEvent.SATURATED] == 1
    assert acc.source is EnergySource.POWER
    assert acc.totals.energy_j == pytest.approx(90_000.0 * 80)


def test_optimizer_savings_integrate_the_counterfactual_minus_actual():
    acc = account(max_gap=30.0)
    acc.add(sample(0.0, 8_000.0, 12_000.0, counterfactual=10_000.0))
    acc.add(sample(10.0, 8_000.0, 12_000.0, counterfactual=10_000.0))
    acc.close_window()
    assert acc.totals.saved_optimizer_j == pytest.approx(20_000.0)
    assert acc.totals.saved_vfd_j == pytest.approx(40_000.0)


def drive(method, kind=LoadKind.PUMP, table=((), ()), constant=math.nan):
    from agent.config.profile import load_profile

    profile = load_profile(BUILTIN_PROFILES / "generic.yaml", Issues())
    load = LoadConfig(kind, 0.1, 30.0 if kind is LoadKind.PUMP else math.nan,
                      800.0 if kind is LoadKind.FAN else math.nan)
    return DriveConfig("d", "b", 1, profile, 40_000.0, 150.0, load,
                       BaselineConfig(method, constant, *table), ControlConfig(ControlMode.MONITOR, 0.0, 1.0))


def test_characteristic_baseline_interpolates_the_default_table():
    model = BaselineModel(drive(BaselineMethod.CHARACTERISTIC))
    assert model.power(0.5, math.nan, True) == pytest.approx(0.77 * 40_000.0)
    assert model.power(0.625, math.nan, True) == pytest.approx(40_000.0 * (0.77 + 0.5 * (0.92 - 0.77)))
    assert model.power(0.8, math.nan, False) == 0.0
    assert math.isnan(model.power(math.nan, math.nan, True))


def test_constant_baseline_only_while_running():
    model = BaselineModel(drive(BaselineMethod.CONSTANT, constant=11_000.0))
    assert model.power(0.3, math.nan, True) == 11_000.0
    assert model.power(0.0, math.nan, False) == 0.0


def test_damper_baseline_reads_the_table_at_the_flow_ratio_or_the_speed_ratio():
    model = BaselineModel(drive(BaselineMethod.DAMPER, LoadKind.FAN))
    assert model.power(0.9, 0.05, True) == pytest.approx(0.771 * 40_000.0)  # flow ratio 0.5
    assert model.power(0.5, math.nan, True) == pytest.approx(0.771 * 40_000.0)  # fan law Q ∝ n
    # A user table: (% flow) 0 -> 50 %, 100 -> 100 % of rated power; at 25 % flow, 62.5 %.
    table = ((0.0, 100.0), (50.0, 100.0))
    custom = BaselineModel(drive(BaselineMethod.INLET_VANE, LoadKind.FAN, table=table))
    assert custom.power(1.0, 0.025, True) == pytest.approx(0.625 * 40_000.0)


def test_throttle_baseline_is_the_rated_speed_pump_at_the_same_flow():
    config = drive(BaselineMethod.THROTTLE)
    model = BaselineModel(config)
    curves = datasheet_curves(config.load, config.rated_power)
    flow = 0.06
    shaft = curves.power[0] + curves.power[1] * flow + curves.power[2] * flow**2
    value = model.power(0.7, flow, True)
    # Electrical = shaft / motor efficiency only (no inverter without a VFD): between 85 % and 97 %.
    assert shaft / 0.97 < value < shaft / 0.85
    assert math.isnan(model.power(0.7, math.nan, True))  # no flow, no throttle baseline


def test_a_throttle_baseline_without_a_flow_point_is_read_at_the_sensorless_estimate():
    """One flow rule: the baseline had its own estimate (datasheet curve, a load-only motor table)."""
    config = drive(BaselineMethod.THROTTLE)
    assert config.profile.point(Quantity.FLOW) is None
    runtime = DriveRuntime(config, site(), 5.0)
    point = config.profile.point(Quantity.SPEED)
    assert point is not None and runtime.flow_estimator is not None
    speed = config.rated_speed if point.dimension is Dimension.ANGULAR_SPEED else 1.0
    estimates = []
    real = runtime.flow_estimator.estimate_values

    def counted(*args):  # type: ignore[no-untyped-def]
        estimates.append(real(*args))
        return estimates[-1]

    runtime.flow_estimator.estimate_values = counted  # type: ignore[method-assign]
    reading = runtime.accept(1.0, 1.0, {Quantity.POWER: 30_000.0, Quantity.SPEED: 0.9 * speed})
    assert len(estimates) == 1 and estimates[0].available
    assert reading.baseline_power == pytest.approx(runtime.baseline.power(0.9, estimates[0].flow, True))
    assert runtime.flow_estimate is estimates[0] and len(estimates) == 1  # read: the poll's own estimate
    off = runtime.accept(2.0, 2.0, {Quantity.POWER: 2_000.0, Quantity.SPEED: 0.9 * speed})
    assert not estimates[-1].available and math.isnan(off.baseline_power)  # off the curve: none, not a guess


def test_datasheet_curves_pass_through_the_rated_point_with_best_efficiency_there():
    config = drive(BaselineMethod.THROTTLE)
    curves = datasheet_curves(config.load, config.rated_power)
    q = np.linspace(0.02, 0.14, 121)
    head = curves.head[0] + curves.head[1] * q + curves.head[2] * q**2
    power = curves.power[0] + curves.power[1] * q + curves.power[2] * q**2
    assert np.interp(0.1, q, head) == pytest.approx(30.0)
    assert np.interp(0.1, q, power) == pytest.approx(0.9 * 40_000.0)
    assert q[np.argmax(q * head / power)] == pytest.approx(0.1, abs=0.002)
    assert Path(BUILTIN_PROFILES).is_dir()
