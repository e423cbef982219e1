import pytest

from agent.config.profile import Point, Quantity, RegisterTable
from agent.modbus.codec import DataType, Order, encode
from agent.modbus.readplan import MAX_READ_REGISTERS, decode_blocks, plan_reads
from agent.units import Dimension


def point(quantity, address, dtype=DataType.UINT16, table=RegisterTable.HOLDING, scale=1.0):
    return Point(quantity, table, address, dtype, Order.BIG, Order.BIG, scale, 0.0, "W", Dimension.POWER,
                 1.0, False)


def test_contiguous_points_share_one_block_and_tables_are_separate():
    points = [
        point(Quantity.POWER, 4, DataType.UINT32),
        point(Quantity.SPEED, 1),
        point(Quantity.STATUS_WORD, 0),
        point(Quantity.CURRENT, 2),
        point(Quantity.TORQUE, 3),
        point(Quantity.FLOW, 0, table=RegisterTable.INPUT),
    ]
    blocks = plan_reads(points)
    assert [(b.table, b.start, b.count) for b in blocks] == [
        (RegisterTable.HOLDING, 0, 6),
        (RegisterTable.INPUT, 0, 1),
    ]
    # Points handed over once, as a generator (the rate classes' planner does): every table still read.
    assert plan_reads(p for p in points) == blocks


def test_a_drive_reads_its_input_register_points_in_every_rate_class_plan():
    """generic-process maps the critical point in input registers: they were planned out of every read."""
    from agent.config.model import BusConfig, Transport
    from agent.config.profile import load_profile
    from agent.config.yamlsource import Issues
    from agent.modbus.readplan import plan_classes
    from tests.support import REPO

    profile = load_profile(REPO / "configs" / "plants" / "profiles" / "generic-process.yaml", Issues())
    assert profile is not None
    plan = plan_classes(BusConfig("gw", Transport.TCP, "127.0.0.1", 502, 1.0, 0.2, 0, 5.0), profile)
    read = {p.quantity for b in plan.fast for p in b.points}
    assert {Quantity.CRITICAL_PRESSURE, Quantity.VALVE_POSITION, Quantity.POWER} <= read


def test_gaps_split_blocks_unless_bridged():
    points = [point(Quantity.POWER, 0), point(Quantity.SPEED, 4)]
    assert [(b.start, b.count) for b in plan_reads(points)] == [(0, 1), (4, 1)]
    assert [(b.start, b.count) for b in plan_reads(points, max_gap=3)] == [(0, 5)]


def test_blocks_never_exceed_the_modbus_limit():
    points = [point(Quantity.POWER, 0), point(Quantity.SPEED, 200), point(Quantity.CURRENT, 124)]
    blocks = plan_reads(points, max_gap=500)
    assert all(b.count <= MAX_READ_REGISTERS for b in blocks)
    assert [(b.start, b.count) for b in blocks] == [(0, 125), (200, 1)]


def test_decode_blocks_applies_offsets_and_scale():
    points = [point(Quantity.SPEED, 10, scale=0.1), point(Quantity.POWER, 11, DataType.INT32)]
    blocks = plan_reads(points)
    registers = [[1234] + encode(-5000, DataType.INT32)]
    values = decode_blocks(blocks, registers)
    assert values[Quantity.SPEED] == pytest.approx(123.4)
    assert values[Quantity.POWER] == -5000.0
    with pytest.raises(ValueError, match="expected 3 registers"):
        decode_blocks(blocks, [[1, 2]])
