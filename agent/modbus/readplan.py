"""Plan a drive's reads into the fewest Modbus block reads.

Every read costs a round trip (a frame pair and two silent intervals on RTU),
so points are merged into contiguous blocks per register table (function code
3 or 4), up to the 125-register limit. Gaps up to ``max_gap`` registers are
bridged, since reading a few unused registers can be cheaper than a frame.

``plan_for`` picks ``max_gap`` for a drive on a bus: the bus's ``max_gap``, else
the profile's (what the drive tolerates), else on RTU the frame-time model's
break-even gap (``agent.modbus.rtu``: at 19200 baud 8E1, 10 registers; RTU through a
serial server too, at its serial side's speed), and on Modbus TCP 0,
which never reads an address the profile does not name; on RTU a configured
``max_gap`` is a ceiling the cost model stays under. Some drives answer reads
of unnamed registers with exception 2; the poller then re-plans with 0.

Points are planned per rate class (``PollRate``: fast, slow, connect), so a frame
never mixes what is read every interval with what is read every N intervals; the
budget (``bus_budget``) charges the slow class 1/N of its reads per cycle, and every
read the drive's turnaround (assumed, or as the poller measured it).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from agent.config import BusConfig
from agent.config.profile import Point, PollRate, Profile, Quantity, RegisterTable
from agent.modbus.codec import decode
from agent.modbus.rtu import LineTiming

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
    points = tuple(points)  # read once per table: a generator would serve only the first table
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


def line_timing(bus: BusConfig) -> LineTiming | None:
    """The wire timing of a bus's RS-485 line (rtu, rtu_over_tcp: the serial side's); None for TCP."""
    if not bus.transport.serial_line:
        return None
    return LineTiming.for_settings(bus.baudrate, bus.parity, bus.stopbits, bus.inter_frame_delay)


def max_gap_for(bus: BusConfig, profile: Profile) -> int:
    """The largest gap a block read of this drive on this bus bridges (see the module doc)."""
    configured = bus.max_gap if bus.max_gap is not None else profile.max_gap
    timing = line_timing(bus)
    if timing is None:
        return configured or 0
    cheapest = timing.break_even_gap()
    return cheapest if configured is None else min(configured, cheapest)


def plan_for(bus: BusConfig, profile: Profile) -> tuple[Block, ...]:
    """A drive's reads of every point, planned for the bus it hangs on."""
    return plan_reads(profile.points.values(), max_gap=max_gap_for(bus, profile))


@dataclass(frozen=True)
class ReadPlan:
    """A drive's reads per rate class, each class coalesced on its own."""

    fast: tuple[Block, ...]
    slow: tuple[Block, ...]
    connect: tuple[Block, ...]
    slow_every: int  # poll intervals between two reads of the slow class

    def blocks(self, rate: PollRate) -> tuple[Block, ...]:
        """The reads of one class."""
        return {PollRate.FAST: self.fast, PollRate.SLOW: self.slow, PollRate.CONNECT: self.connect}[rate]


def plan_classes(bus: BusConfig, profile: Profile, max_gap: int | None = None) -> ReadPlan:
    """A drive's reads per rate class, for the bus it hangs on (``max_gap`` overrides the bus's choice)."""
    gap = max_gap_for(bus, profile) if max_gap is None else max_gap
    by_rate = {rate: plan_reads((p for p in profile.points.values() if p.rate is rate), max_gap=gap)
               for rate in PollRate}
    return ReadPlan(by_rate[PollRate.FAST], by_rate[PollRate.SLOW], by_rate[PollRate.CONNECT],
                    profile.slow_every)


@dataclass(frozen=True)
class PollBudget:
    """What one poll cycle of an RTU bus needs from its line, rate classes and turnaround included."""

    bus: str
    interval: float  # s
    fast_time: float  # s of line per cycle for the fast class (every interval)
    slow_time: float  # s of line per cycle for the slow class, averaged over its period
    fast_reads: int  # frames per cycle
    slow_reads: int  # frames per slow period (every drive's slow class once)
    turnaround: float  # s per read charged on top of the wire time (largest of the drives')
    learned: int = 0  # devices whose turnaround was measured (the others: the configured default)
    devices: int = 0  # drives and sensors the bus polls

    @property
    def cycle_time(self) -> float:
        """Line time of an average cycle [s]."""
        return self.fast_time + self.slow_time

    @property
    def reads(self) -> int:
        """Frames of a cycle that reads the fast class (the slow class is spread over its period)."""
        return self.fast_reads

    @property
    def utilization(self) -> float:
        """Share of the interval the line is busy."""
        return self.cycle_time / self.interval

    @property
    def fits(self) -> bool:
        """True if every class can be read at its rate."""
        return self.cycle_time <= self.interval

    def describe(self) -> str:
        """One line for ``check-config``."""
        slow = f" + {self.slow_reads} slow reads spread over their period" if self.slow_reads else ""
        source = (f"learned on {self.learned} of {self.devices} devices" if self.learned
                  else "configured, none measured yet")
        return (f"bus {self.bus}: {self.fast_reads} reads per cycle{slow} need "
                f"{self.cycle_time * 1e3:.1f} ms of line time every {self.interval:g} s "
                f"({self.utilization:.0%}; turnaround {self.turnaround * 1e3:.1f} ms per read, {source})")

    def warning(self) -> str | None:
        """A user-facing warning when the line is overbooked, else None."""
        if self.fits:
            return None
        fast_only = "; the fast class alone does not fit either" if self.fast_time > self.interval else (
            "; the fast class fits, the slow class will be stretched")
        return (
            f"bus {self.bus}: the drives cannot be polled every {self.interval:g} s: one cycle of "
            f"{self.fast_reads} reads needs {self.cycle_time * 1e3:.1f} ms on the line "
            f"({self.utilization:.0%} of the interval) with a turnaround of {self.turnaround * 1e3:.1f} ms "
            f"per read{fast_only}; raise poll_interval_s to at least "
            f"{math.ceil(self.cycle_time * 20) / 20:g} s, raise the baud rate, poll status and fault "
            "words slow, or move drives to another line"
        )


def read_cost(timing: LineTiming | None, registers: int, turnaround: float) -> float:
    """Line time one read is expected to take [s]: its frames on an RTU wire, plus the drive's turnaround."""
    return (timing.read_time(registers) if timing is not None else 0.0) + turnaround


def bus_budget(bus: BusConfig, profiles: Iterable[Profile],
               turnarounds: Sequence[float] | None = None, learned: int = 0) -> PollBudget | None:
    """An RTU bus's line time per cycle for these devices' plans (drives and sensors); None for TCP.

    ``turnarounds``: each device's turnaround [s], ``learned`` of them measured; the bus's
    configured one otherwise.
    """
    timing = line_timing(bus)
    if timing is None:
        return None
    fast = slow = 0.0
    fast_reads = slow_reads = 0
    profiles = list(profiles)
    waits = list(turnarounds) if turnarounds is not None else [bus.turnaround] * len(profiles)
    for profile, wait in zip(profiles, waits, strict=True):
        plan = plan_classes(bus, profile)
        fast += sum(read_cost(timing, b.count, wait) for b in plan.fast)
        slow += sum(read_cost(timing, b.count, wait) for b in plan.slow) / plan.slow_every
        fast_reads += len(plan.fast)
        slow_reads += len(plan.slow)
    return PollBudget(bus.name, bus.poll_interval, fast, slow, fast_reads, slow_reads,
                      max(waits, default=0.0), learned, len(profiles))


def bus_warnings(bus: BusConfig, profiles: Sequence[Profile],
                 turnarounds: Sequence[float] | None = None, learned: int = 0) -> list[str]:
    """What is wrong with polling these drives on this bus, though the config is valid."""
    budget, timing = bus_budget(bus, profiles, turnarounds, learned), line_timing(bus)
    if budget is None or timing is None:
        return []
    warnings = [w for w in [budget.warning()] if w]
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
