"""Commissioning: read one drive once and judge every value (``probe``), find who answers (``scan``).

A value far outside what any drive of its kind could show is almost always a
commissioning mistake, not physics: a wrong scale, a swapped word order, or a
register that holds something else on this firmware. ``judge`` says which, where
it can tell: it tries the other word order and scales 10, 100 and 1000 times
smaller or larger, and names the one that would make sense.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import numpy as np

from agent.config import BusConfig
from agent.config.profile import Point, Profile, Quantity
from agent.errors import DriveError, DriveReplyError
from agent.modbus.client import BusClient
from agent.modbus.codec import DataType, Order, decode
from agent.modbus.readplan import Block, plan_for
from agent.units import RPM_TO_RAD_S, Dimension

# Absolute limits (SI) no pump or fan drive's reading should pass, whatever its size.
_LIMITS: dict[Quantity, tuple[float, float]] = {
    Quantity.SPEED: (-10000.0 * RPM_TO_RAD_S, 10000.0 * RPM_TO_RAD_S),
    Quantity.SPEED_SETPOINT: (-10000.0 * RPM_TO_RAD_S, 10000.0 * RPM_TO_RAD_S),
    Quantity.OUTPUT_FREQUENCY: (-600.0, 600.0),
    Quantity.POWER: (-10e6, 10e6),
    Quantity.CURRENT: (-5000.0, 5000.0),
    Quantity.DC_VOLTAGE: (0.0, 1500.0),
    Quantity.TORQUE: (-1e5, 1e5),
    Quantity.ENERGY: (0.0, 1e15),
    Quantity.FLOW: (0.0, 100.0),
    Quantity.PRESSURE: (-1e6, 1e7),
}
_RATIO_LIMITS = (-2.0, 2.0)  # speed and setpoints given as a ratio or %
# Gateways answer for units they cannot reach with these (Modbus: 10 path unavailable, 11 no response).
GATEWAY_CODES = frozenset({10, 11})


@dataclass(frozen=True)
class Rating:
    """What the user knows of the drive, to judge readings against (NaN: unknown)."""

    power: float = math.nan  # W
    speed: float = math.nan  # rad/s


@dataclass(frozen=True)
class ProbedValue:
    """One decoded point and what is wrong with it, if anything."""

    point: Point
    raw: tuple[int, ...]
    value: float  # SI
    problems: tuple[str, ...]

    @property
    def shown(self) -> float:
        """The value in the profile's own unit."""
        return self.value / self.point.unit_factor


FLOAT32_DIGITS = 7  # significant digits a float32 register carries; more would show its rounding noise


def plain(value: float, digits: int = 12) -> str:
    """A number in plain notation (1234567.89, never 1.23457e+06), zeros trimmed.

    A commissioning engineer compares it digit by digit with the drive's display.
    """
    if not math.isfinite(value):
        return str(value)
    return str(np.format_float_positional(value, precision=digits, unique=True, fractional=False, trim="-"))


def _limits(point: Point, rating: Rating) -> tuple[float, float] | None:
    quantity = point.quantity
    if point.dimension is Dimension.BITS:
        return None
    if point.dimension is Dimension.RATIO:
        return _RATIO_LIMITS
    low, high = _LIMITS.get(quantity, (-math.inf, math.inf))
    if quantity is Quantity.POWER and math.isfinite(rating.power):
        return -3.0 * rating.power, 3.0 * rating.power
    if quantity in (Quantity.SPEED, Quantity.SPEED_SETPOINT) and math.isfinite(rating.speed):
        return -0.1 * rating.speed, 2.0 * rating.speed
    return low, high


def _inside(value: float, limits: tuple[float, float] | None) -> bool:
    return limits is None or (math.isfinite(value) and limits[0] <= value <= limits[1])


def _sensible(point: Point, value: float, limits: tuple[float, float] | None) -> bool:
    """Inside the limits; and a float, unless zero, not absurdly tiny (what swapped words look like)."""
    if not _inside(value, limits):
        return False
    return not (point.dtype.is_float and limits is not None and 0.0 < abs(value / point.unit_factor) < 1e-9)


def judge(point: Point, raw: Sequence[int], rating: Rating = Rating()) -> ProbedValue:
    """Decode one point's registers and say what looks wrong, with the likely cause."""
    value = point.to_si(decode(raw, point.dtype, point.word_order, point.byte_order))
    limits = _limits(point, rating)
    problems: list[str] = []
    if not _sensible(point, value, limits):
        assert limits is not None
        unit, factor = point.unit, point.unit_factor
        shown = value / factor
        low, high = plain(limits[0] / factor), plain(limits[1] / factor)
        what = "is not a number" if not math.isfinite(value) else (
            f"{plain(shown)} {unit} is outside {low}..{high} {unit}")
        hints = _hints(point, raw, limits)
        problems.append(f"{point.quantity.value} {what}: implausible, usually a wrong scale or word order"
                        + (f"; {hints}" if hints else "; check the register address and type"))
    if point.quantity is Quantity.ENERGY and point.saturates_at is not None:
        number = decode(raw, point.dtype, point.word_order, point.byte_order)
        if number >= point.saturates_at:
            problems.append(f"energy counter stuck at its maximum {plain(point.saturates_at)}: "
                            "the agent integrates power instead")
    return ProbedValue(point, tuple(raw), value, tuple(problems))


def _hints(point: Point, raw: Sequence[int], limits: tuple[float, float]) -> str:
    hints: list[str] = []
    if point.registers > 1:
        other = Order.LITTLE if point.word_order is Order.BIG else Order.BIG
        swapped = point.to_si(decode(raw, point.dtype, other, point.byte_order))
        if _sensible(point, swapped, limits):
            shown = swapped / point.unit_factor
            hints.append(f"word_order: {other.value} would give {plain(shown)} {point.unit}")
    value = point.to_si(decode(raw, point.dtype, point.word_order, point.byte_order))
    if math.isfinite(value) and value != 0.0:
        for factor in (0.1, 0.01, 0.001, 10.0, 100.0, 1000.0):
            if _sensible(point, value * factor, limits):
                shown = value * factor / point.unit_factor
                hints.append(f"scale {plain(point.scale * factor)} would give {plain(shown)} {point.unit}")
                break
    return "; ".join(hints)


async def probe(bus: BusConfig, unit: int, profile: Profile, rating: Rating = Rating()) -> list[ProbedValue]:
    """Read every point of one drive once; DriveError if it does not answer."""
    client = BusClient(bus)
    await client.connect()
    try:
        blocks = plan_for(bus, profile)
        registers: list[list[int]] = []
        for block in blocks:
            try:
                registers.append(await client.read(unit, block))
            except DriveReplyError as exc:
                if exc.exception_code != 2 or block.count == sum(p.registers for p in block.points):
                    raise
                # The drive refuses reads of unnamed registers: read its points one by one.
                registers.append(await _read_points(client, unit, block))
    finally:
        client.close()
    return [
        judge(point, regs[point.address - block.start : point.end - block.start], rating)
        for block, regs in zip(blocks, registers, strict=True)
        for point in sorted(block.points, key=lambda p: p.address)
    ]


async def _read_points(client: BusClient, unit: int, block: Block) -> list[int]:
    registers = [0] * block.count
    for point in block.points:
        single = Block(block.table, point.address, point.registers, (point,))
        words = await client.read(unit, single)
        registers[point.address - block.start : point.end - block.start] = words
    return registers


def describe_bits(profile: Profile, word: float) -> str:
    """The named status bits that are set in a status word."""
    if not math.isfinite(word):
        return ""
    return " ".join(name for name, bit in sorted(profile.status_bits.items(), key=lambda kv: kv[1])
                    if int(word) >> bit & 1)


def format_probe(values: Sequence[ProbedValue], profile: Profile, where: str, unit: int) -> str:
    """A table of every point, then every problem found."""
    lines = [f"unit {unit} on {where}, profile {profile.name}"]
    for item in values:
        point = item.point
        table = "" if point.table.value == "holding" else " (input)"
        extra = ""
        if point.quantity is Quantity.STATUS_WORD:
            extra = f"0x{int(item.shown) & 0xFFFF:04X} {describe_bits(profile, item.shown)}"
        elif point.quantity is Quantity.CONTROL_WORD:
            extra = f"0x{int(item.shown) & 0xFFFF:04X}"
        flag = "  !" if item.problems else ""
        shown = plain(item.shown, FLOAT32_DIGITS if point.dtype is DataType.FLOAT32 else 12)
        lines.append(f"  {point.quantity.value:17s} {shown:>16s} {point.unit:5s} "
                     f"@{point.address}{table} {extra}{flag}".rstrip())
    problems = [p for item in values for p in item.problems]
    lines.extend(f"! {problem}" for problem in problems)
    lines.append(f"{len(values)} value(s), {len(problems)} problem(s)")
    return "\n".join(lines)


async def scan(bus: BusConfig, units: Iterable[int], block: Block) -> list[tuple[int, str]]:
    """Which units answer a read of ``block`` (an exception reply is an answer), with how."""
    client = BusClient(bus)
    await client.connect()
    found: list[tuple[int, str]] = []
    try:
        for unit in units:
            try:
                await client.read(unit, block)
                found.append((unit, "answers"))
            except DriveReplyError as exc:
                if exc.exception_code not in GATEWAY_CODES:
                    found.append((unit, f"answers with exception {exc.exception_code}"))
            except DriveError:
                if not client.connected:
                    await client.connect()
    finally:
        client.close()
    return found
