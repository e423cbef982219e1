"""Header circuits: parallel machines, valve-controlled loads, the drives' own control, wear, the oracle."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from agent.config.profile import Quantity
from agent.errors import ConfigError
from hil.model import PlantModel
from hil.physics import (
    GRAVITY,
    WATER_DENSITY,
    curves_from_rated,
    electrical_power,
    flow_at_head,
    header_head_for_flow,
    header_operating_point,
    ratio_at,
    system_from_rated,
    torque_limit,
    worn,
)
from hil.plantfile import load_plant
from hil.strategies import Oracle, best_efficiency_flow, conventional_run, oracle_energy

REPO = Path(__file__).resolve().parents[2]
PLANTS = REPO / "configs" / "plants"
RHO_G = WATER_DENSITY * GRAVITY
Q1, Q3 = 120.0 / 3600.0, 180.0 / 3600.0


def pumps():
    small = curves_from_rated(Q1, 32.0, 13_500.0, RHO_G)
    big = curves_from_rated(Q3, 32.0, 19_800.0, RHO_G)
    return small, big


def test_a_worn_machine_loses_head_and_efficiency_by_the_stated_factors():
    small, _ = pumps()
    tired = worn(small, 0.94, 0.88)
    for q in (0.3 * Q1, Q1, 1.2 * Q1):
        for r in (0.6, 1.0):
            assert tired.head(q, r) == pytest.approx(0.94 * small.head(q, r), rel=1e-12)
            assert tired.efficiency(q, r) == pytest.approx(0.88 * small.efficiency(q, r), rel=1e-12)


def test_flow_at_head_inverts_the_head_curve_and_stops_at_the_shut_off_head():
    small, _ = pumps()
    for r in (0.5, 0.8, 1.0):
        for q in (0.1 * Q1, 0.7 * Q1, 1.3 * Q1):
            assert flow_at_head(small, small.head(q, r), r) == pytest.approx(q, rel=1e-10)
            assert ratio_at(small, small.head(q, r), q) == pytest.approx(r, rel=1e-10)
        assert flow_at_head(small, small.a0 * r * r + 0.1, r) == 0.0  # check valve shut


def test_parallel_machines_on_the_open_system_curve_share_its_head():
    small, big = pumps()
    system = system_from_rated(380.0 / 3600.0, 32.0, 0.3)
    machines = [(small, 0.9), (big, 0.8)]
    head, delivered = header_operating_point(machines, system, demand=1.0)  # more than they can give
    assert head == pytest.approx(system.head(delivered), rel=1e-9)
    assert flow_at_head(small, head, 0.9) + flow_at_head(big, head, 0.8) == pytest.approx(delivered, rel=1e-9)


def test_valves_throttle_the_surplus_so_exactly_the_demand_flows():
    small, big = pumps()
    system = system_from_rated(380.0 / 3600.0, 32.0, 0.3)
    machines = [(small, 0.9), (big, 0.8)]
    demand = 150.0 / 3600.0
    head, delivered = header_operating_point(machines, system, demand)
    assert delivered == demand
    assert head > system.head(demand)  # the valves take the difference
    assert head == pytest.approx(header_head_for_flow(machines, demand), rel=1e-12)


def test_the_local_pi_holds_the_setpoint_and_the_cascade_stages_with_hysteresis():
    plant = load_plant(PLANTS / "chw-3pump.yaml")
    model = conventional_run(plant, plant.day_length)
    header = model.headers["chw"]
    assert header.truth.unmet_s == 0.0
    # Up in the morning, down in the evening: each step a single pump, never flapping.
    assert header.truth.stage_changes == header.truth.local_stage_changes >= 2
    starts = [t for t, _, running in header.truth.transitions if running]
    delay = plant.circuits[0].control.stage_delay
    assert all(b - a > 5 * delay for a, b in zip(starts, starts[1:], strict=False))
    # Where the demand is met, the header is held at the setpoint.
    assert header.head == pytest.approx(32.0, rel=0.01)


def test_a_pressure_setpoint_write_moves_what_the_pi_holds():
    plant = load_plant(PLANTS / "ahu-fan.yaml")
    model = PlantModel(plant)
    model.advance_to(5.0)
    assert model.snapshot("supply-fan").pressure_setpoint == pytest.approx(800.0)
    model.command("supply-fan", Quantity.PRESSURE_SETPOINT, 500.0)
    model.advance_to(20.0)
    snapshot = model.snapshot("supply-fan")
    assert snapshot.pressure_setpoint == 500.0
    assert snapshot.pressure == pytest.approx(500.0, rel=0.01)
    assert model.headers["supply-duct"].truth.unmet_s == 0.0  # still above what the ducts need


def test_control_words_take_a_pump_under_fieldbus_control_stop_it_and_hand_it_back():
    plant = load_plant(PLANTS / "chw-3pump.yaml")
    model = PlantModel(plant)
    model.advance_to(1.0)
    lead = model.drives["chw-pump-1"]
    assert lead.speed_ratio > 0.8 and not lead.remote_active
    model.command("chw-pump-1", Quantity.CONTROL_WORD, 0x047F)  # run, under the fieldbus
    model.command("chw-pump-1", Quantity.SPEED_SETPOINT, 0.7)
    model.advance_to(20.0)
    assert lead.remote_active and lead.fieldbus
    assert lead.speed_ratio == pytest.approx(0.7, rel=1e-4)  # ramped there (time constant 2 s)
    model.command("chw-pump-1", Quantity.CONTROL_WORD, 0x047E)  # stop
    model.advance_to(40.0)
    assert lead.speed_ratio < 0.005
    # With the lead pump held off, the cascade runs the next one to hold the setpoint.
    assert model.drives["chw-pump-2"].speed_ratio > 0.8
    model.command("chw-pump-1", Quantity.CONTROL_WORD, 0)  # back to its own control
    model.advance_to(60.0)
    assert not lead.remote_active
    assert [w.quantity for w in lead.writes] == [Quantity.CONTROL_WORD, Quantity.SPEED_SETPOINT,
                                                 Quantity.CONTROL_WORD, Quantity.CONTROL_WORD]


def test_a_tripped_drive_stops_and_reports_its_fault():
    model = PlantModel(load_plant(PLANTS / "booster-static.yaml"))
    model.drives["booster"].fault_code = 7
    model.advance_to(20.0)
    snapshot = model.snapshot("booster")
    assert snapshot.fault_code == 7 and not snapshot.running


def test_the_oracle_of_one_pump_is_the_speed_that_meets_the_system_curve():
    plant = load_plant(PLANTS / "booster-static.yaml")
    circuit, drive = plant.circuits[0], plant.drives[0]
    oracle = Oracle(circuit, [drive])
    curves = drive.true_curves()
    for share in (0.3, 0.6, 0.9):
        demand = share * circuit.design_flow
        head = oracle.system.head(demand)
        ratio = ratio_at(curves, head, demand)
        shaft = curves.shaft_power(demand, ratio)
        expected = electrical_power(shaft, drive.rated_power, drive.motor_efficiency, ratio)
        assert oracle.power(demand) == pytest.approx(expected, rel=1e-9)


def test_the_oracle_never_draws_more_than_any_single_staging_it_could_choose():
    plant = load_plant(PLANTS / "chw-3pump.yaml")
    circuit = plant.circuits[0]
    drives = [plant.drive(n) for n in circuit.drives]
    oracle = Oracle(circuit, drives)
    for share in (0.3, 0.5, 0.8, 0.95):
        demand = share * circuit.design_flow
        head = oracle.system.head(demand)
        best = oracle.power(demand)
        assert math.isfinite(best)
        for drive in drives:  # each pump alone, where it can
            curves = drive.true_curves()
            ratio = ratio_at(curves, head, demand)
            shaft = curves.shaft_power(demand, ratio)
            within_current = shaft <= torque_limit(drive.rated_power) * drive.rated_power * ratio
            if drive.min_speed_ratio <= ratio <= drive.max_speed_ratio and within_current:
                alone = electrical_power(shaft, drive.rated_power, drive.motor_efficiency, ratio)
                assert best <= alone * (1 + 1e-9)


def test_a_best_efficiency_window_only_makes_the_oracle_draw_more():
    plant = load_plant(PLANTS / "chw-3pump.yaml")
    circuit = plant.circuits[0]
    drives = [plant.drive(n) for n in circuit.drives]
    free, bounded = Oracle(circuit, drives), Oracle(circuit, drives, (0.3, 1.4))
    for share in np.linspace(0.25, 0.95, 8):
        demand = float(share) * circuit.design_flow
        assert free.power(demand) <= bounded.power(demand) * (1 + 1e-9)
    assert best_efficiency_flow(drives[0].true_curves()) == pytest.approx(Q1, rel=1e-3)


def test_the_oracle_saves_most_with_little_static_head_and_little_with_much():
    savings = {}
    for name in ("ahu-fan", "booster-static"):
        plant = load_plant(PLANTS / f"{name}.yaml")
        plant = dataclasses.replace(plant, day_length=60.0)
        conventional = conventional_run(plant, 60.0)
        energy = sum(d.snapshot.energy for d in conventional.drives.values())
        savings[name] = 1.0 - oracle_energy(plant, plant.circuits[0], 60.0) / energy
    assert savings["ahu-fan"] > 0.3
    assert 0.0 < savings["booster-static"] < 0.2


@pytest.mark.parametrize(("circuit", "message"), [
    ("drives: [p1, nobody]", "drives: no drive 'nobody'"),
    ("drives: [p1, p1]", "drives: a drive is listed twice"),
    ("drives: [p1, fan]", "drives: pumps and fans cannot share a circuit"),
])
def test_circuit_mistakes_are_located(tmp_path, circuit, message):
    text = f"""\
day_s: 60
drives:
  - {{name: p1, unit: 1, profile: generic, rated_power_kw: 15, rated_speed_rpm: 1470,
      load: {{kind: pump, rated_flow_m3h: 120, rated_head_m: 32}}}}
  - {{name: fan, unit: 2, profile: generic, rated_power_kw: 11, rated_speed_rpm: 1460,
      load: {{kind: fan, rated_flow_m3h: 30000, rated_pressure_pa: 800}}}}
circuits:
  - name: c
    {circuit}
    design_flow_m3h: 120
    design_head_m: 32
    control: {{pressure_setpoint_m: 32}}
"""
    path = tmp_path / "plant.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as error:
        load_plant(path)
    assert any(message in str(issue) for issue in error.value.issues), error.value.issues


def test_where_no_staging_keeps_the_pumps_in_their_window_the_oracle_leaves_the_window(tmp_path):
    """Generated plant 1002: 2 % static, at a quarter of the design flow one pump at its minimum speed
    runs beyond 1.4 times its best-efficiency flow; the oracle still answers (was inf)."""
    from hil.generator import generate

    plant = load_plant(generate(1002).write(tmp_path))
    circuit = plant.circuits[0]
    drives = [plant.drive(n) for n in circuit.drives]
    windowed = Oracle(circuit, drives, (0.3, 1.4))
    free = Oracle(circuit, drives)
    demand = 0.23 * circuit.design_flow
    assert math.isfinite(windowed.power(demand))
    assert windowed.power(demand) == pytest.approx(free.power(demand), rel=1e-9)
    inside = 0.6 * circuit.design_flow  # where the window holds, it binds as before
    assert windowed.power(inside) >= free.power(inside) * (1 - 1e-9)
