"""Every shipped profile: it loads, the agent and the simulator agree on every point, its quirks hold."""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import pytest

from agent.config import BusConfig, Transport
from agent.config.profile import (
    BUILTIN_PROFILES,
    PowerMeasuredAt,
    Quantity,
    RegisterTable,
    available_profiles,
    load_profile,
)
from agent.config.yamlsource import Issues
from agent.modbus.codec import DataType, Order, decode, encode
from agent.modbus.readplan import decode_blocks, plan_for, plan_reads
from agent.units import KWH_TO_J, RPM_TO_RAD_S
from hil.model import PlantModel
from hil.plantfile import load_plant
from hil.registers import DriveAnswer, DriveRegisters, status_word

REPO = Path(__file__).resolve().parents[2]
DEMO = REPO / "configs" / "plants" / "demo.yaml"
SHIPPED = ["abb-acs580", "danfoss-fc102", "generic", "schneider-atv320", "sinamics-g120"]
RTU_19200 = BusConfig("line", Transport.RTU, "", 0, 1.0, 0.2, 0, 5.0, device="/dev/null")
TCP = BusConfig("gw", Transport.TCP, "127.0.0.1", 502, 1.0, 0.2, 0, 5.0)


def profile(name):
    issues = Issues()
    loaded = load_profile(BUILTIN_PROFILES / f"{name}.yaml", issues)
    assert not issues.items, issues.items
    assert loaded is not None
    return loaded


def drive_with(name, **changes):
    """The demo's first pump served through a profile, the model and its registers."""
    plant = load_plant(DEMO)
    spec = dataclasses.replace(plant.drives[0], profile=profile(name), **changes)
    plant = dataclasses.replace(plant, drives=(spec,))
    return PlantModel(plant), DriveRegisters(spec)


def served(regs, model, bus=RTU_19200):
    """Decode what the simulator serves, through the agent's own plan for the bus."""
    snapshot = model.snapshot(regs.spec.name)
    blocks = plan_for(bus, regs.profile)
    images = [regs.read(b.table, b.start, b.count, snapshot) for b in blocks]
    assert all(image is not None for image in images), "a planned read falls outside what the drive serves"
    return decode_blocks(blocks, images)


def test_every_shipped_profile_loads_with_status_bits_and_control_words():
    assert sorted(available_profiles(None)) == SHIPPED
    for name in SHIPPED:
        loaded = profile(name)
        assert loaded.name == name
        assert {"ready", "running", "remote"} <= set(loaded.status_bits), name
        assert {"stop", "run"} <= set(loaded.control_words), name
        for needed in (Quantity.POWER, Quantity.SPEED, Quantity.STATUS_WORD, Quantity.SPEED_SETPOINT,
                       Quantity.CONTROL_WORD):
            assert loaded.point(needed) is not None, (name, needed)
        assert loaded.point(Quantity.SPEED_SETPOINT).writable and loaded.point(Quantity.CONTROL_WORD).writable
        assert not loaded.point(Quantity.POWER).writable


@pytest.mark.parametrize("name", SHIPPED)
@pytest.mark.parametrize("bus", [RTU_19200, TCP], ids=["rtu", "tcp"])
def test_agent_and_simulator_round_trip_every_point(name, bus):
    model, regs = drive_with(name)
    model.advance_to(30.0)
    s, spec = model.snapshot(regs.spec.name), regs.spec
    values = served(regs, model, bus)
    loaded = regs.profile
    assert set(values) == set(loaded.points)
    for quantity, point in loaded.points.items():
        expected = regs.value(point, s)
        resolution = point.resolution
        if quantity is Quantity.ENERGY:
            assert 0.0 <= expected - values[quantity] <= resolution + 1e-9, (name, quantity)
        elif point.dtype.is_float:
            assert values[quantity] == pytest.approx(expected, rel=1e-6), (name, quantity)
        else:
            assert values[quantity] == pytest.approx(expected, abs=0.5 * resolution + 1e-9), (name, quantity)
    assert values[Quantity.POWER] == pytest.approx(s.measured.power, abs=0.01 * 1e3)
    speed = values[Quantity.SPEED]
    ratio = speed if loaded.point(Quantity.SPEED).unit == "%" else speed / spec.rated_speed
    assert ratio == pytest.approx(s.measured.speed_ratio, abs=1.0 * RPM_TO_RAD_S / spec.rated_speed + 1e-3)
    word = int(values[Quantity.STATUS_WORD])
    for state, expected in (("ready", True), ("running", s.running), ("remote", spec.remote)):
        assert bool(word >> loaded.status_bits[state] & 1) is expected, (name, state)


@pytest.mark.parametrize("name", SHIPPED)
def test_a_written_setpoint_and_control_word_read_back(name):
    model, regs = drive_with(name)
    loaded = regs.profile
    setpoint, control = loaded.point(Quantity.SPEED_SETPOINT), loaded.point(Quantity.CONTROL_WORD)
    target = 0.5 * (regs.spec.rated_speed if setpoint.unit == "rpm" else 1.0)
    words = encode(setpoint.from_si(target), setpoint.dtype, setpoint.word_order, setpoint.byte_order)
    result, ratio = regs.write(setpoint.address, words, model.snapshot(regs.spec.name))
    assert result is DriveAnswer.OK and ratio == pytest.approx(0.5, abs=1e-3)
    result, _ = regs.write(control.address, [loaded.control_words["run"]], model.snapshot(regs.spec.name))
    assert result is DriveAnswer.OK
    values = served(regs, model)
    assert values[Quantity.CONTROL_WORD] == loaded.control_words["run"]
    status = loaded.point(Quantity.STATUS_WORD)
    assert regs.write(status.address, [0], model.snapshot(regs.spec.name))[0] is DriveAnswer.ILLEGAL_ADDRESS


def test_sinamics_energy_counter_saturates_at_32767_kwh_and_power_at_327_67_kw():
    model, regs = drive_with("sinamics-g120", energy_counter_start=40000 * KWH_TO_J)
    energy = regs.profile.point(Quantity.ENERGY)
    assert energy.address == 347 and energy.saturates_at == 32767  # 40348 r0039
    model.advance_to(5.0)
    assert served(regs, model)[Quantity.ENERGY] == 32767 * KWH_TO_J  # stuck, not wrapped
    power = regs.profile.point(Quantity.POWER)
    assert (power.address, power.scale, power.dtype) == (346, 0.01, DataType.INT16)  # 40347 r0032
    regs.power_factor = 1e4  # far beyond what 16 bits of 10 W can hold
    assert served(regs, model)[Quantity.POWER] == pytest.approx(327.67e3)
    g120 = regs.profile
    assert (g120.point(Quantity.CONTROL_WORD).address, g120.point(Quantity.STATUS_WORD).address) == (99, 109)
    assert g120.control_words == {"stop": 0x047E, "run": 0x047F, "fault_reset": 0x04FE}


def test_sinamics_and_danfoss_setpoints_scale_0x4000_to_100_percent():
    for name in ("sinamics-g120", "danfoss-fc102"):
        point = profile(name).point(Quantity.SPEED_SETPOINT)
        assert encode(point.from_si(1.0), point.dtype) == [0x4000]
        assert point.to_si(decode([0xC000], point.dtype)) == -1.0  # signed


def test_abb_addresses_32_bit_low_word_first_and_20000_scaling():
    abb = profile("abb-acs580")
    # 16-bit parameter g.i at 400000 + 100 g + i: address 100 g + i - 1 (04.01 -> 400).
    assert abb.point(Quantity.FAULT_CODE).address == 100 * 4 + 1 - 1
    # 32-bit g.i at 420000 + 200 g + 2 i: address 20000 + 200 g + 2 i - 1 (01.01, 01.14).
    assert abb.point(Quantity.SPEED).address == 20000 + 200 * 1 + 2 * 1 - 1
    assert abb.point(Quantity.POWER).address == 20000 + 200 * 1 + 2 * 14 - 1
    for point in abb.points.values():
        if point.registers == 2:
            assert point.word_order is Order.LITTLE and point.byte_order is Order.BIG
    model, regs = drive_with("abb-acs580")
    model.advance_to(10.0)
    snapshot = model.snapshot(regs.spec.name)
    power = abb.point(Quantity.POWER)
    raw = regs.read(RegisterTable.HOLDING, power.address, 2, snapshot)
    counts = round(snapshot.measured.power / 10.0)  # 0.01 kW per count
    assert raw == [counts & 0xFFFF, counts >> 16]  # low word first
    setpoint = abb.point(Quantity.SPEED_SETPOINT)
    assert encode(setpoint.from_si(1.0), setpoint.dtype) == [20000]
    assert encode(setpoint.from_si(-1.0), setpoint.dtype) == [(-20000) & 0xFFFF]


def test_danfoss_addresses_are_one_below_ten_times_the_parameter():
    parameters = {Quantity.ENERGY: "15-02", Quantity.POWER: "16-10", Quantity.CURRENT: "16-14",
                  Quantity.OUTPUT_FREQUENCY: "16-13", Quantity.SPEED: "16-17", Quantity.DC_VOLTAGE: "16-30"}
    danfoss = profile("danfoss-fc102")
    for quantity, parameter in parameters.items():
        group, index = parameter.split("-")
        assert danfoss.point(quantity).address == 10 * int(group + index) - 1, quantity
    process = {Quantity.CONTROL_WORD: 50000, Quantity.SPEED_SETPOINT: 50010, Quantity.STATUS_WORD: 50200}
    for quantity, register in process.items():
        assert danfoss.point(quantity).address == register - 1


def test_schneider_uses_wire_addresses_and_tenths_of_hertz():
    atv = profile("schneider-atv320")
    assert atv.point(Quantity.CONTROL_WORD).address == 8501
    assert atv.point(Quantity.STATUS_WORD).address == 3201
    frequency = atv.point(Quantity.OUTPUT_FREQUENCY)
    assert (frequency.address, frequency.scale, frequency.unit) == (3202, 0.1, "Hz")


def test_status_words_follow_each_profile_s_bits():
    model, regs = drive_with("danfoss-fc102")
    snapshot = model.snapshot(regs.spec.name)
    word = status_word(snapshot, remote=True, bits=regs.profile.status_bits)
    assert word == (1 << 1) | (1 << 9) | (1 << 11) if snapshot.running else (1 << 1) | (1 << 9)


def test_reads_are_coalesced_by_the_frame_time_model_on_rtu_and_never_bridge_on_tcp():
    g120 = profile("sinamics-g120")
    rtu = [(b.start, b.count) for b in plan_for(RTU_19200, g120)]
    assert rtu == [(99, 11), (340, 8), (399, 1)]  # the 8-register gap 101..108 is cheaper to read
    tcp = [(b.start, b.count) for b in plan_for(TCP, g120)]
    assert tcp == [(99, 2), (109, 1), (340, 2), (343, 5), (399, 1)]
    # A profile's max_gap (what the drive tolerates) caps the model; the bus's max_gap overrides both.
    capped = dataclasses.replace(g120, max_gap=0)
    assert [(b.start, b.count) for b in plan_for(RTU_19200, capped)] == tcp
    bus_gap = dataclasses.replace(RTU_19200, max_gap=2)
    assert [(b.start, b.count) for b in plan_for(bus_gap, g120)][:3] == [(99, 2), (109, 1), (340, 8)]
    # Holding and input registers are never mixed, and no block exceeds 125 registers.
    for name in SHIPPED:
        for block in plan_for(RTU_19200, profile(name)):
            assert block.count <= 125 and all(p.table is block.table for p in block.points)


def test_the_cost_model_bridges_more_at_higher_baud_rates():
    atv = profile("schneider-atv320")  # ETA..OPr end at 3211, APH at 3230: an 18-register gap
    slow = [(b.start, b.count) for b in plan_for(RTU_19200, atv)]
    fast = [(b.start, b.count) for b in plan_for(dataclasses.replace(RTU_19200, baudrate=115200), atv)]
    assert slow[:2] == [(3201, 11), (3230, 1)] and fast[0] == (3201, 30)
    assert len(plan_reads(atv.points.values())) > len(slow) > len(fast)


def test_reads_beyond_what_a_drive_serves_are_refused_like_a_real_drive():
    model, regs = drive_with("danfoss-fc102")
    snapshot = model.snapshot(regs.spec.name)
    assert regs.read(RegisterTable.HOLDING, 16099, 2, snapshot) is not None
    assert regs.read(RegisterTable.HOLDING, 16099, 120, snapshot) is None  # reaches into a hole
    assert math.isfinite(served(regs, model)[Quantity.POWER])


def test_which_side_of_the_drive_the_power_is_read_on_is_declared_and_checked(tmp_path):
    """Issue 18: the vendors' power parameters are the drive's output; the generic map (the simulator's)
    is its mains input; a misspelt side is located (file, line, field), not taken for either."""
    assert profile("generic").power_measured_at is PowerMeasuredAt.DRIVE_INPUT
    for name in ("abb-acs580", "danfoss-fc102", "schneider-atv320", "sinamics-g120"):
        assert profile(name).power_measured_at is PowerMeasuredAt.DRIVE_OUTPUT, name
    text = (BUILTIN_PROFILES / "generic.yaml").read_text()
    silent = tmp_path / "silent.yaml"
    silent.write_text(text.replace("power_measured_at: drive_input\n", ""))
    loaded = load_profile(silent, Issues())
    assert loaded is not None and loaded.power_measured_at is PowerMeasuredAt.DRIVE_OUTPUT  # the default
    bad = tmp_path / "bad.yaml"
    bad.write_text(text.replace("power_measured_at: drive_input", "power_measured_at: mains"))
    line = 1 + text.splitlines().index("power_measured_at: drive_input")
    issues = Issues()
    assert load_profile(bad, issues) is None
    [issue] = issues.items
    assert (issue.file, issue.line, issue.field) == (str(bad), line, "power_measured_at")
    assert "drive_output" in str(issue) and "drive_input" in str(issue) and "mains" in str(issue)
