"""Plan a drive's reads into the fewest Modbus block reads.

Every read costs a round trip (a frame pair and two silent intervals on RTU),
so points are merged into contiguous blocks per register table (function code
3 or 4), up to the 125-register limit. Gaps up to ``max_gap`` registers are
bridged, since reading a few unused registers can be cheaper than a frame.

``plan_for`` picks ``max_gap`` for a drive on a bus: the bus's ``max_gap``, else
the profile's (what the drive tolerates), else on RTU the frame-time model's
break-even gap (``agent.modbus.rtu``: at 19200 baud 8E1, 10 registers), and on TCP 0,
which never reads an address the profile does not name; on RTU a configured
``max_gap`` is a ceiling the cost model stays under. Some drives answer reads
of unnamed registers with exception 2; the poller then re-plans with 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.config import BusConfig, Transport
from agent.config.profile import Point, Profile, Quantity, RegisterTable
from agent.modbus.codec import decode
from agent.modbus.rtu import LineBudget, LineTiming, line_budget

MAX_READ_REGISTERS = 125


@dataclass(frozen=True)
class Block:
    """One read request: a run of registers in one table."""

    table: RegisterTable
    start: int
    count: int
    points: tuple[Point, ...]


def plan_reads(
    points: Iterable[Point], max_gap: int = 0, max_registers: int = MAX_READ_REGISTERS
) -> tuple[Block, ...]:
    """Merge points into blocks, per table, in address order."""
    if max_registers < 1 or max_gap < 0:
        raise ValueError("max_registers must be >= 1 and max_gap >= 0")
    blocks: list[Block] = []
    for table in RegisterTable:
        current: list[Point] = []
        start = end = 0
        for point in sorted((p for p in points if p.table is table), key=lambda p: p.address):
            if point.registers > max_registers:
                raise ValueError(f"{point.quantity.value} needs more than {max_registers} registers")
            if current and point.address - end <= max_gap and point.end - start <= max_registers:
                current.append(point)
                end = max(end, point.end)
                continue
            if current:
                blocks.append(Block(table, start, end - start, tuple(current)))
            current, start, end = [point], point.address, point.end
        if current:
            blocks.append(Block(table, start, end - start, tuple(current)))
    return tuple(blocks)


def max_gap_for(bus: BusConfig, profile: Profile) -> int:
    """The largest gap a block read of this drive on this bus bridges (see the module doc)."""
    configured = bus.max_gap if bus.max_gap is not None else profile.max_gap
    if bus.transport is not Transport.RTU:
        return configured or 0
    timing = LineTiming.for_settings(bus.baudrate, bus.parity, bus.stopbits, bus.inter_frame_delay)
    cheapest = timing.break_even_gap()
    return cheapest if configured is None else min(configured, cheapest)


def plan_for(bus: BusConfig, profile: Profile) -> tuple[Block, ...]:
    """A drive's reads, planned for the bus it hangs on."""
    return plan_reads(profile.points.values(), max_gap=max_gap_for(bus, profile))


def bus_budget(bus: BusConfig, profiles: Iterable[Profile]) -> LineBudget | None:
    """An RTU bus's line time per cycle for these drives' plans; None for TCP."""
    if bus.transport is not Transport.RTU:
        return None
    timing = LineTiming.for_settings(bus.baudrate, bus.parity, bus.stopbits, bus.inter_frame_delay)
    return line_budget(bus.name, bus.poll_interval, timing,
                       (block.count for profile in profiles for block in plan_for(bus, profile)))


def bus_warnings(bus: BusConfig, profiles: Sequence[Profile]) -> list[str]:
    """What is wrong with polling these drives on this bus, though the config is valid."""
    budget = bus_budget(bus, profiles)
    if budget is None:
        return []
    warnings = [w for w in [budget.warning()] if w]
    timing = LineTiming.for_settings(bus.baudrate, bus.parity, bus.stopbits, bus.inter_frame_delay)
    longest = max((b.count for p in profiles for b in plan_for(bus, p)), default=0)
    if longest and bus.timeout <= timing.read_time(longest):
        warnings.append(f"bus {bus.name}: timeout_s {bus.timeout:g} s is shorter than the longest read "
                        f"({longest} registers) takes on the wire ({timing.read_time(longest) * 1e3:.0f} ms)")
    return warnings


def decode_blocks(blocks: Sequence[Block], registers: Sequence[Sequence[int]]) -> dict[Quantity, float]:
    """Decode every point of the blocks into SI values, given each block's registers."""
    values: dict[Quantity, float] = {}
    for block, regs in zip(blocks, registers, strict=True):
        if len(regs) != block.count:
            raise ValueError(f"block at {block.start} expected {block.count} registers, got {len(regs)}")
        for point in block.points:
            offset = point.address - block.start
            raw = decode(regs[offset : offset + point.registers], point.dtype, point.word_order,
                         point.byte_order)
            values[point.quantity] = point.to_si(raw)
    return values
