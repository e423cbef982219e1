"""Register images: encoded through the same profile the agent decodes, saturating, wrapping."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from agent.config.profile import Point, Quantity, RegisterTable
from agent.modbus.codec import DataType, Order, decode, encode
from agent.modbus.readplan import decode_blocks, plan_reads
from agent.units import KWH_TO_J, RPM_TO_RAD_S, Dimension
from hil.model import PlantModel
from hil.plantfile import load_plant
from hil.registers import DriveAnswer, DriveRegisters, StatusBit, saturated, wrapped

DEMO = Path(__file__).resolve().parents[2] / "configs" / "plants" / "demo.yaml"


def decoded(regs: DriveRegisters, model: PlantModel, name: str) -> dict[Quantity, float]:
    """What the agent would decode from the drive's holding registers."""
    image = regs.image(RegisterTable.HOLDING, model.snapshot(name))
    start = regs.spans[RegisterTable.HOLDING].start
    blocks = plan_reads(regs.profile.points.values())
    return decode_blocks(blocks, [image[b.start - start : b.start - start + b.count] for b in blocks])


def demo(name: str = "chw-pump-1", **changes: object) -> tuple[PlantModel, DriveRegisters]:
    plant = load_plant(DEMO)
    drives = tuple(dataclasses.replace(d, **changes) if d.name == name else d for d in plant.drives)
    plant = dataclasses.replace(plant, drives=drives)
    return PlantModel(plant), DriveRegisters(plant.drive(name))


def test_the_agent_decodes_the_physics_through_the_profile():
    model, regs = demo()
    model.advance_to(40.0)
    s, spec = model.snapshot("chw-pump-1"), regs.spec
    values = decoded(regs, model, "chw-pump-1")
    speed = s.measured.speed_ratio * 1470 * RPM_TO_RAD_S
    assert values[Quantity.SPEED] == pytest.approx(speed, abs=0.1 * RPM_TO_RAD_S)
    assert values[Quantity.POWER] == pytest.approx(s.measured.power, rel=1e-6)  # float32
    assert values[Quantity.OUTPUT_FREQUENCY] == pytest.approx(50.0 * s.speed_ratio, abs=0.005)
    assert values[Quantity.CURRENT] == pytest.approx(s.measured.current, abs=0.005)
    assert values[Quantity.DC_VOLTAGE] == pytest.approx(s.measured.dc_voltage, abs=0.05)
    assert values[Quantity.ENERGY] == pytest.approx(s.measured.energy_counter, abs=0.01 * KWH_TO_J)
    assert values[Quantity.SPEED_SETPOINT] == pytest.approx(s.setpoint_ratio, abs=1e-4)
    assert values[Quantity.STATUS_WORD] == StatusBit.READY | StatusBit.RUNNING | StatusBit.REMOTE
    assert values[Quantity.FAULT_CODE] == 0.0 and values[Quantity.CONTROL_WORD] == 0.0
    assert spec.profile.name == "generic"


def test_out_of_range_values_saturate_and_never_crash():
    point = Point(Quantity.CURRENT, RegisterTable.HOLDING, 0, DataType.UINT16, Order.BIG, Order.BIG,
                  0.01, 0.0, "A", Dimension.CURRENT, 1.0, False)
    assert saturated(point, 1e6) == [0xFFFF]
    assert saturated(point, -5.0) == [0]
    assert saturated(point, math.nan) == [0]
    signed = dataclasses.replace(point, dtype=DataType.INT16)
    assert decode(saturated(signed, -1e6), DataType.INT16) == -32768
    real = dataclasses.replace(point, dtype=DataType.FLOAT32)
    assert decode(saturated(real, 1e300), DataType.FLOAT32) == pytest.approx(3.4028234663852886e38)


def test_the_energy_counter_wraps_at_its_types_maximum():
    point = Point(Quantity.ENERGY, RegisterTable.HOLDING, 6, DataType.UINT32, Order.BIG, Order.BIG,
                  0.01, 0.0, "kWh", Dimension.ENERGY, KWH_TO_J, False)
    top = (2**32 - 1) * 0.01 * KWH_TO_J
    assert decode(wrapped(point, top), DataType.UINT32) == 2**32 - 1
    assert decode(wrapped(point, top + 0.015 * KWH_TO_J), DataType.UINT32) == 0  # truncates, then wraps
    small = dataclasses.replace(point, dtype=DataType.INT16, scale=1.0)
    assert decode(wrapped(small, 32768 * KWH_TO_J), DataType.INT16) == -32768


def test_a_counter_started_near_the_top_wraps_in_the_served_image():
    start_kwh = (2**32 - 1) * 0.01 - 0.02
    model, regs = demo(energy_counter_start=start_kwh * KWH_TO_J)
    first = decoded(regs, model, "chw-pump-1")[Quantity.ENERGY] / KWH_TO_J
    assert first == pytest.approx(start_kwh, abs=0.01)
    model.advance_to(60.0)  # more than 0.05 kWh later
    after = decoded(regs, model, "chw-pump-1")[Quantity.ENERGY] / KWH_TO_J
    assert 0.0 <= after < 0.2
    assert model.snapshot("chw-pump-1").measured.energy_counter / KWH_TO_J > start_kwh  # the truth goes on


def test_a_written_speed_setpoint_is_read_back_and_reaches_the_physics():
    model, regs = demo()
    snapshot = model.snapshot("chw-pump-1")
    result, ratio = regs.write(101, [5000], snapshot)
    assert (result, ratio) == (DriveAnswer.OK, pytest.approx(0.5))
    assert decoded(regs, model, "chw-pump-1")[Quantity.SPEED_SETPOINT] == pytest.approx(0.5)
    # 0xFFFF is not special: 655.35 %, which the drive clamps to its maximum speed.
    assert regs.write(101, [0xFFFF], snapshot) == (DriveAnswer.OK, pytest.approx(6.5535))
    model.drives["chw-pump-1"].remote_setpoint = 6.5535
    model.advance_to(1.0)
    assert model.snapshot("chw-pump-1").setpoint_ratio == 1.0
    assert regs.write(100, [0x047F, 2500], snapshot) == (DriveAnswer.OK, pytest.approx(0.25))
    assert decoded(regs, model, "chw-pump-1")[Quantity.CONTROL_WORD] == 0x047F


@pytest.mark.parametrize(
    ("address", "values"), [(1, [100]), (9, [0]), (50, [0]), (101, [0, 0]), (99, [0, 0])]
)
def test_writes_outside_writable_points_are_illegal_addresses(address, values):
    model, regs = demo()
    assert regs.write(address, values, model.snapshot("chw-pump-1")) == (DriveAnswer.ILLEGAL_ADDRESS, None)


def test_a_nan_setpoint_is_an_illegal_value():
    model, regs = demo()
    point = dataclasses.replace(regs.profile.points[Quantity.SPEED_SETPOINT], dtype=DataType.FLOAT32)
    points = {**regs.profile.points, Quantity.SPEED_SETPOINT: point}
    profile = dataclasses.replace(regs.profile, points=points)
    regs = DriveRegisters(dataclasses.replace(regs.spec, profile=profile))
    nan = encode(math.nan, DataType.FLOAT32)
    assert regs.write(101, nan, model.snapshot("chw-pump-1")) == (DriveAnswer.ILLEGAL_VALUE, None)
    # One half of a two-register point keeps the other half.
    high, low = encode(50.0 / 0.01, DataType.FLOAT32)
    assert regs.write(101, [high, low], model.snapshot("chw-pump-1"))[1] == pytest.approx(0.5)
    high, low = encode(25.0 / 0.01, DataType.FLOAT32)
    assert regs.write(101, [high], model.snapshot("chw-pump-1"))[1] != pytest.approx(0.5)


def test_a_speed_setpoint_in_rpm_is_scaled_by_the_rated_speed():
    model, regs = demo()
    point = dataclasses.replace(regs.profile.points[Quantity.SPEED_SETPOINT], scale=1.0, unit="rpm",
                                dimension=Dimension.ANGULAR_SPEED, unit_factor=RPM_TO_RAD_S)
    points = {**regs.profile.points, Quantity.SPEED_SETPOINT: point}
    profile = dataclasses.replace(regs.profile, points=points)
    regs = DriveRegisters(dataclasses.replace(regs.spec, profile=profile))
    assert regs.write(101, [735], model.snapshot("chw-pump-1")) == (DriveAnswer.OK, pytest.approx(0.5))


def test_a_drive_in_local_mode_clears_the_remote_bit_and_ignores_fieldbus_setpoints():
    model, regs = demo(remote=False)
    local = model.snapshot("chw-pump-1").setpoint_ratio
    assert decoded(regs, model, "chw-pump-1")[Quantity.STATUS_WORD] == StatusBit.READY | StatusBit.RUNNING
    model.drives["chw-pump-1"].remote_setpoint = 0.4
    model.advance_to(0.05)
    assert model.snapshot("chw-pump-1").setpoint_ratio == pytest.approx(local, rel=1e-3)
    assert not model.snapshot("chw-pump-1").remote_active
