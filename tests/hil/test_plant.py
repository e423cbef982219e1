"""Physics, demand and dynamics of the simulated plant, against closed forms."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from agent.config import BaselineMethod, LoadKind
from hil.demand import DemandProfile
from hil.model import PlantModel
from hil.physics import (
    GRAVITY,
    PUMP_SHAPE,
    WATER_DENSITY,
    MachineCurves,
    SystemCurve,
    curves_from_rated,
    electrical_power,
    operating_flow,
    ratio_for_flow,
    system_from_rated,
)
from hil.plantfile import load_plant

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "plants" / "demo.yaml"
RHO_G = WATER_DENSITY * GRAVITY
Q_R, H_R, P_R = 120.0 / 3600.0, 32.0, 13_500.0


def pump() -> MachineCurves:
    return curves_from_rated(Q_R, H_R, P_R, RHO_G)


def write_plant(tmp_path: Path, drive: str, top: str = "day_s: 100\nstep_s: 0.05\n") -> Path:
    path = tmp_path / "plant.yaml"
    path.write_text(top + "drives:\n" + drive, encoding="utf-8")
    return path


PUMP_DRIVE = """\
  - name: p1
    unit: 1
    profile: generic
    rated_power_kw: 15
    rated_speed_rpm: 1470
    load: {kind: pump, rated_flow_m3h: 120, rated_head_m: 32}
"""


def steady_pump(tmp_path: Path, extra: str = "", baseline: str = "{method: characteristic}") -> PlantModel:
    """A pump with constant demand: in steady state from t = 0, so its power never changes."""
    drive = PUMP_DRIVE + f"""\
    baseline: {baseline}
    static_pct: 20
    min_demand_pct: 70
    max_demand_pct: 70
    ramp_time_s: 2
{extra}"""
    return PlantModel(load_plant(write_plant(tmp_path, drive)))


# --- steady-state physics -------------------------------------------------------------------------


def test_curves_pass_through_the_rated_point_with_best_efficiency_there():
    c = pump()
    assert c.head(Q_R, 1.0) == pytest.approx(H_R, rel=1e-12)
    assert c.shaft_power(Q_R, 1.0) == pytest.approx(P_R, rel=1e-12)
    assert c.head(0.0, 1.0) == pytest.approx(PUMP_SHAPE[0] * H_R)
    bep = c.efficiency(Q_R, 1.0)
    assert bep == pytest.approx(RHO_G * Q_R * H_R / P_R)
    flows = np.linspace(0.2, 1.4, 121) * Q_R
    assert max(c.efficiency(float(q), 1.0) for q in flows) == pytest.approx(bep, rel=1e-6)
    # Radial pump: power rises with flow, so sensorless flow estimation is identifiable.
    powers = [c.shaft_power(float(q), 1.0) for q in flows]
    assert all(b > a for a, b in zip(powers, powers[1:], strict=False))


def test_operating_point_matches_the_closed_form_without_a_linear_term():
    c = MachineCurves(a0=40.0, a1=0.0, a2=-5000.0, b0=1.0, b1=0.0, b2=0.0, b3=0.0, rho_g=RHO_G)
    s = SystemCurve(static=10.0, k=15000.0)
    for r in (0.6, 0.8, 1.0):
        expected = math.sqrt((c.a0 * r * r - s.static) / (s.k - c.a2))
        assert operating_flow(c, s, r) == pytest.approx(expected, rel=1e-12)
    # Below sqrt(H_st / a0) the pump cannot lift the static head.
    assert operating_flow(c, s, 0.49) == 0.0


@given(r=st.floats(0.05, 1.2), static_share=st.floats(0.0, 0.9))
def test_operating_point_lies_on_both_curves(r, static_share):
    c, s = pump(), system_from_rated(Q_R, H_R, static_share)
    q = operating_flow(c, s, r)
    if c.a0 * r * r <= s.static:
        assert q == 0.0
    else:
        assert q > 0.0
        assert c.head(q, r) == pytest.approx(s.head(q), rel=1e-9, abs=1e-9)
        assert ratio_for_flow(c, s, q) == pytest.approx(r, rel=1e-9)


def test_rated_speed_on_the_design_system_curve_gives_the_rated_point():
    for share in (0.0, 0.3, 0.7):
        assert operating_flow(pump(), system_from_rated(Q_R, H_R, share), 1.0) == pytest.approx(Q_R)


@pytest.mark.parametrize("r", [0.4, 0.7, 0.9])
def test_affinity_laws_hold_without_static_head(r):
    c, s = pump(), system_from_rated(Q_R, H_R, 0.0)
    q1, q = operating_flow(c, s, 1.0), operating_flow(c, s, r)
    assert q / q1 == pytest.approx(r, rel=1e-12)
    assert c.head(q, r) / c.head(q1, 1.0) == pytest.approx(r**2, rel=1e-12)
    assert c.shaft_power(q, r) / c.shaft_power(q1, 1.0) == pytest.approx(r**3, rel=1e-12)


def test_static_head_shrinks_the_savings_below_the_cube_law():
    c = pump()
    with_static = system_from_rated(Q_R, H_R, 0.5)
    r = ratio_for_flow(c, with_static, 0.6 * Q_R)
    assert r > 0.6  # more speed than the flow ratio
    assert c.shaft_power(0.6 * Q_R, r) > 0.6**3 * P_R


def test_demand_spans_its_range_smoothly_and_repeats_every_day():
    d = DemandProfile(0.01, 0.03, day_length=120.0, seed=3)
    t = np.linspace(0.0, 120.0, 4001)
    flows = np.array([d.flow(float(x)) for x in t])
    assert flows.min() == pytest.approx(0.01, abs=2e-5)
    assert flows.max() == pytest.approx(0.03, abs=2e-5)
    assert np.abs(np.diff(flows)).max() < 0.005 * 0.02  # smooth: under 0.5 % of the range per 0.03 s
    assert d.flow(17.0) == pytest.approx(d.flow(137.0), rel=1e-12)
    assert DemandProfile(0.01, 0.03, 120.0, seed=3).flow(50.0) == d.flow(50.0)
    assert DemandProfile(0.01, 0.03, 120.0, seed=4).flow(50.0) != d.flow(50.0)


# --- dynamics and ground truth --------------------------------------------------------------------


def test_ground_truth_energy_of_a_constant_power_period_is_power_times_time(tmp_path):
    model = steady_pump(tmp_path)
    start = model.snapshot("p1")
    model.advance_to(60.0)
    end = model.snapshot("p1")
    assert end.t == pytest.approx(60.0)
    assert end.power == start.power > 0.0  # noise never touches the truth
    assert end.energy == pytest.approx(start.power * 60.0, rel=1e-12)
    # The plant file gives no table: the SINAMICS factory points (speed %, power %) are the formula.
    pct = np.interp(100.0 * start.speed_ratio, [0, 25, 50, 75, 100], [25, 50, 77, 92, 100])
    expected_formula = 15_000.0 * pct / 100.0
    assert end.formula_baseline_power == pytest.approx(expected_formula, rel=1e-12)
    assert end.formula_baseline_energy == pytest.approx(expected_formula * 60.0, rel=1e-12)
    # The truth is the throttled pump it describes: rated speed, the same flow, direct on line.
    shaft = pump().shaft_power(end.flow, 1.0)
    expected_baseline = electrical_power(shaft, 15_000.0, 0.921, 1.0, inverter=False)
    assert end.baseline_power == pytest.approx(expected_baseline, rel=1e-9)
    assert end.baseline_energy == pytest.approx(expected_baseline * 60.0, rel=1e-9)
    # The drive's own counter integrates its noisy power, so it tracks the truth closely.
    assert end.measured.energy_counter == pytest.approx(end.energy, rel=1e-3)


def test_constant_baseline_is_the_pump_at_rated_speed_on_its_system_not_the_configured_figure(tmp_path):
    model = steady_pump(tmp_path, baseline="{method: constant, power_kw: 12.5}")
    model.advance_to(10.0)
    assert model.spec.drives[0].baseline.method is BaselineMethod.CONSTANT
    snapshot = model.snapshot("p1")
    assert snapshot.formula_baseline_energy == pytest.approx(12_500.0 * 10.0, rel=1e-12)
    drive = model.drives["p1"]
    flow = operating_flow(drive.curves, drive.system, 1.0)  # where the curve meets the system
    assert flow > snapshot.flow  # without the drive it over-delivers
    shaft = drive.curves.shaft_power(flow, 1.0)
    expected = electrical_power(shaft, 15_000.0, 0.921, 1.0, inverter=False)
    assert snapshot.baseline_power == pytest.approx(expected, rel=1e-9)
    assert expected != pytest.approx(12_500.0, rel=0.01)
    assert snapshot.baseline_energy == pytest.approx(expected * 10.0, rel=1e-9)


def test_noise_is_on_measured_values_only_with_the_configured_spread(tmp_path):
    model = steady_pump(tmp_path, "    noise_pct: {power: 0.5, speed: 0}\n")
    measured, true = [], set()
    for k in range(1, 2001):
        model.advance_to(k * 0.05)
        snapshot = model.snapshot("p1")
        measured.append(snapshot.measured.power)
        true.add(snapshot.power)
        assert snapshot.measured.speed_ratio == snapshot.speed_ratio
    assert len(true) == 1
    spread = float(np.std(measured) / np.mean(measured))
    assert spread == pytest.approx(0.005, rel=0.1)


def test_speed_ramps_to_a_remote_setpoint_with_the_stated_time_constant(tmp_path):
    model = steady_pump(tmp_path, "    min_speed_pct: 30\n    max_speed_pct: 100\n")
    drive = model.drives["p1"]
    r0 = drive.speed_ratio
    model.advance_to(5.0)
    assert drive.speed_ratio == pytest.approx(r0, rel=1e-12)  # steady state holds
    drive.remote_setpoint = 0.5
    tau = model.spec.drives[0].ramp_time
    model.advance_to(5.0 + tau)
    assert drive.speed_ratio == pytest.approx(0.5 + (r0 - 0.5) * math.exp(-1.0), rel=1e-9)
    model.advance_to(5.0 + 3 * tau)
    assert drive.speed_ratio == pytest.approx(0.5 + (r0 - 0.5) * math.exp(-3.0), rel=1e-9)
    # Clamped to the drive's limits; the process loop takes over again once released.
    drive.remote_setpoint = 0.0
    model.advance_to(100.0)
    assert drive.speed_ratio == pytest.approx(0.30, abs=1e-6)
    drive.remote_setpoint = None
    model.advance_to(150.0)
    assert drive.speed_ratio == pytest.approx(r0, rel=1e-6)


def test_the_process_loop_meets_the_demanded_flow(tmp_path):
    model = steady_pump(tmp_path)
    snapshot = model.snapshot("p1")
    assert snapshot.flow == pytest.approx(0.70 * Q_R, rel=1e-9)
    assert snapshot.demand_flow == pytest.approx(0.70 * Q_R, rel=1e-12)


def test_stepping_is_deterministic_however_the_clock_is_read():
    one, two = PlantModel(load_plant(DEMO)), PlantModel(load_plant(DEMO))
    one.advance_to(30.0)
    for k in range(1, 301):
        two.advance_to(k * 0.1 + 1e-4)
    assert one.steps == two.steps == 600
    for name in one.drives:
        assert one.snapshot(name) == two.snapshot(name)


def test_a_drive_stopped_by_a_zero_setpoint_draws_no_power_and_no_constant_baseline(tmp_path):
    model = steady_pump(tmp_path, baseline="{method: constant}")
    model.drives["p1"].remote_setpoint = 0.0
    model.advance_to(60.0)
    before = model.snapshot("p1")
    assert not before.running
    model.advance_to(70.0)
    after = model.snapshot("p1")
    assert after.power == after.baseline_power == 0.0
    assert after.energy == before.energy and after.baseline_energy == before.baseline_energy


def test_demo_plant_has_the_example_drives():
    plant = load_plant(DEMO)
    assert [(d.name, d.unit, d.profile.name) for d in plant.drives] == [
        ("chw-pump-1", 1, "generic"), ("cw-pump-1", 2, "generic"), ("supply-fan", 3, "generic"),
    ]
    fan = plant.drive("supply-fan")
    assert fan.load.kind is LoadKind.FAN and fan.static_ratio == 0.0
    assert fan.baseline.method is BaselineMethod.CONSTANT and fan.baseline.constant_power == 11_000.0
    assert plant.drive("chw-pump-1").baseline.method is BaselineMethod.CHARACTERISTIC
    assert plant.day_length == 120.0
    model = PlantModel(plant)
    for k in range(1, 25):
        model.advance_to(k * 5.0)
        for name in model.drives:
            s = model.snapshot(name)
            assert 0.0 < s.power < 1.2 * plant.drive(name).rated_power
            assert s.running
