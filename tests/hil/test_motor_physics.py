"""Motor and drive losses by size and speed, and the drive's current limit."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hil.demand import DemandProfile
from hil.model import PlantModel
from hil.physics import (
    electrical_power,
    magnetizing_share,
    motor_current,
    motor_efficiency,
    torque_limit,
)
from hil.plantfile import load_plant
from hil.strategies import best_efficiency_flow

PLANTS = Path(__file__).resolve().parents[2] / "configs" / "plants"


def test_at_the_rated_point_the_motor_has_its_full_load_efficiency_and_the_drive_three_percent():
    for rated in (1_500.0, 15_000.0, 200_000.0):
        assert motor_efficiency(1.0, 0.92, rated) == pytest.approx(0.92, rel=1e-12)
        assert motor_current(np.array([1.0]), np.array([1.0]), rated)[0] == pytest.approx(1.0)
        drawn = electrical_power(rated, rated, 0.92)
        assert drawn == pytest.approx(rated / 0.92 + 0.03 * rated / 0.92, rel=1e-12)
    assert electrical_power(0.0, 15_000.0, 0.92, 0.5) == 0.0


def test_a_small_motor_falls_off_faster_at_part_load_than_a_large_one():
    small, large = 7_500.0, 200_000.0
    assert magnetizing_share(small) > magnetizing_share(large)
    for load in (0.1, 0.25):
        relative_small = motor_efficiency(load, 0.90, small) / 0.90
        relative_large = motor_efficiency(load, 0.90, large) / 0.90
        assert relative_small < relative_large < 1.0
    assert motor_efficiency(0.75, 0.92, 15_000.0) >= 0.99 * 0.92  # flat near full load


def test_a_pump_slowed_down_loses_drive_and_motor_efficiency():
    """On the cube law the magnetizing current, the iron losses and the drive's fixed losses shrink
    slower than the power: the efficiency of drive and motor together falls with the speed."""
    rated = 15_000.0
    overall = [shaft_r / electrical_power(shaft_r, rated, 0.92, r)
               for r in (1.0, 0.7, 0.5, 0.3) for shaft_r in [0.9 * rated * r**3]]
    assert overall == sorted(overall, reverse=True)
    assert overall[-1] < 0.8 < overall[0]


def test_the_current_limit_holds_a_run_out_pump_at_rated_current():
    """One pump of chw-3pump alone against a head far below its duty: it runs out and is held back."""
    plant = load_plant(PLANTS / "chw-3pump.yaml")
    model = PlantModel(plant)
    header = model.headers["chw"]
    small = model.drives["chw-pump-1"]
    bep = best_efficiency_flow(small.curves)
    # A run-out point at full speed: 140 % of the best-efficiency flow, against the head there.
    flow = 1.4 * bep
    shaft = small.curves.shaft_power(flow, 1.0)
    assert shaft / plant.drive("chw-pump-1").rated_power > 1.05  # the motor would be overloaded
    # Hand the pump the whole design demand alone with the others stopped: the header sags to run-out.
    for name in ("chw-pump-2", "chw-pump-3"):
        model.drives[name].fault_code = 1
    small.fault_code = 0
    header.setpoint_pa = 1e9  # the PI asks for full speed
    header.demand = DemandProfile(plant.circuits[0].design_flow, plant.circuits[0].design_flow, 100.0, 0)
    model.advance_to(5.0)
    snap = model.snapshot("chw-pump-1")
    assert snap.current_limited
    assert snap.current_limited_s > 0.0
    torque = snap.shaft_power / small.spec.rated_power / snap.shaft_speed_ratio
    assert torque <= torque_limit(small.spec.rated_power) * 1.001
    assert snap.speed_ratio < snap.setpoint_ratio  # the drive does not reach the speed it was told
    assert model.headers["chw"].truth.unmet_s > 0.0
