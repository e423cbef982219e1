"""A baseline's ground truth is the physics of the machine it describes, not the agent's formula.

Each case builds the machine without a VFD from the plant's true curves (worn where the plant
is worn) and compares what the simulator books as ``baseline_power``; the formula the agent
applies (``formula_baseline_power``) is kept beside it, and the two differ.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from hil.model import VANE_LOSS_SHARE, PlantModel
from hil.physics import electrical_power, flow_at_head, header_operating_point, operating_flow
from hil.plantfile import load_plant

REPO = Path(__file__).resolve().parents[2]
PLANTS = REPO / "configs" / "plants"
FAN_EFFICIENCY = 0.914  # IE3, 11 kW, 4 poles: the plant file's default


def direct_on_line(shaft: float, rated: float, full_load: float) -> float:
    return electrical_power(shaft, rated, full_load, 1.0, inverter=False)


def fan_plant(tmp_path: Path, method: str) -> PlantModel:
    path = tmp_path / "fan.yaml"
    path.write_text(f"""\
day_s: 100
drives:
  - name: fan
    unit: 1
    profile: generic
    rated_power_kw: 11
    rated_speed_rpm: 1460
    load: {{kind: fan, rated_flow_m3h: 30000, rated_pressure_pa: 800}}
    baseline: {{method: {method}}}
    static_pct: 10
    min_demand_pct: 50
    max_demand_pct: 50
""", encoding="utf-8")
    return PlantModel(load_plant(path))


def test_a_worn_pump_on_a_header_at_constant_speed_rides_its_curve_against_the_system():
    model = PlantModel(load_plant(PLANTS / "chw-3pump.yaml"))
    model.advance_to(30.0)
    header = model.headers["chw"]
    running = [d for d in header.drives if d.snapshot.running]
    assert running
    head, delivered = header_operating_point([(d.curves, 1.0) for d in running], header.system,
                                             header.demand.flow(model.t))
    assert delivered == pytest.approx(header.demand.flow(model.t), rel=1e-9)  # the valves pass the demand
    for drive in running:
        # chw-3pump's pumps are characteristic: throttled at rated speed to their present flow
        shaft = drive.curves.shaft_power(drive.flow, 1.0)
        expected = direct_on_line(shaft, drive.spec.rated_power, drive.spec.motor_efficiency)
        assert drive.snapshot.baseline_power == pytest.approx(expected, rel=1e-9)
        assert drive.snapshot.formula_baseline_power != pytest.approx(expected, rel=0.02)
        # and the constant-speed machine the plant would be: every running pump at rated speed
        at_rated = flow_at_head(drive.curves, head, 1.0)
        assert header.rated_speed_flow(drive) == pytest.approx(at_rated, rel=1e-9)


def test_constant_on_a_header_uses_the_rated_speed_operating_point(tmp_path):
    text = (PLANTS / "chw-3pump.yaml").read_text().replace("baseline: {method: characteristic}",
                                                            "baseline: {method: constant, power_kw: 15}")
    profile = PLANTS / "profiles" / "generic-process.yaml"
    text = text.replace("profile: generic-process", f"profile: {profile}")
    path = tmp_path / "chw.yaml"
    path.write_text(text, encoding="utf-8")
    model = PlantModel(load_plant(path))
    model.advance_to(20.0)
    header = model.headers["chw"]
    for drive in (d for d in header.drives if d.snapshot.running):
        flow = header.rated_speed_flow(drive)
        expected = direct_on_line(drive.curves.shaft_power(flow, 1.0), drive.spec.rated_power,
                                  drive.spec.motor_efficiency)
        assert drive.snapshot.baseline_power == pytest.approx(expected, rel=1e-9)
        assert drive.snapshot.formula_baseline_power == 15_000.0
        assert expected < 15_000.0  # a 15 kW motor at its rated point draws less than its nameplate


def test_a_damper_burns_the_surplus_pressure_of_the_fan_at_rated_speed(tmp_path):
    model = fan_plant(tmp_path, "damper")
    model.advance_to(5.0)
    drive = model.drives["fan"]
    snap = drive.snapshot
    shaft = drive.curves.shaft_power(snap.flow, 1.0)
    assert snap.baseline_power == pytest.approx(direct_on_line(shaft, 11_000.0, FAN_EFFICIENCY), rel=1e-9)
    assert snap.power < snap.baseline_power


def test_inlet_vanes_lie_between_speed_control_and_a_damper(tmp_path):
    vanes = fan_plant(tmp_path, "inlet_vane")
    vanes.advance_to(5.0)
    drive = vanes.drives["fan"]
    snap = drive.snapshot
    damper = drive.curves.shaft_power(snap.flow, 1.0)
    ratio = drive.curves.ratio_at(drive.system.head(snap.flow), snap.flow)
    speed = drive.curves.shaft_power(snap.flow, ratio)
    expected = speed + VANE_LOSS_SHARE * (damper - speed)
    assert snap.baseline_power == pytest.approx(direct_on_line(expected, 11_000.0, FAN_EFFICIENCY), rel=1e-9)
    assert snap.power < snap.baseline_power < direct_on_line(damper, 11_000.0, FAN_EFFICIENCY)


def test_constant_alone_is_the_machine_at_rated_speed_on_its_own_system(tmp_path):
    model = fan_plant(tmp_path, "constant, power_kw: 11")
    model.advance_to(5.0)
    drive = model.drives["fan"]
    flow = operating_flow(drive.curves, drive.system, 1.0)
    assert flow == pytest.approx(30000 / 3600, rel=1e-6)  # the system passes through the rated point
    expected = direct_on_line(drive.curves.shaft_power(flow, 1.0), 11_000.0, FAN_EFFICIENCY)
    assert drive.snapshot.baseline_power == pytest.approx(expected, rel=1e-9)
    assert drive.snapshot.formula_baseline_power == 11_000.0
