"""A simulated drive's register image, encoded through the same profile the agent decodes.

Reads get the drive's current state encoded point by point with ``agent.codec``;
writes are decoded the same way. Out-of-range values saturate at the type's
limits, as a drive's display does, except the energy counter, which wraps at
the type's maximum like a real counter. Only points the profile marks writable
accept writes; a written value is read back as written.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, IntFlag

from agent.codec import DataType, decode, encode
from agent.profile import Point, Quantity, RegisterTable
from agent.units import Dimension
from hil.model import DriveSnapshot
from hil.physics import GRAVITY, WATER_DENSITY
from hil.plantfile import DriveSpec

FLOAT32_MAX = 3.4028234663852886e38


class StatusBit(IntFlag):
    """Bits of the simulated status word."""

    READY = 1 << 0
    RUNNING = 1 << 1
    REMOTE = 1 << 2  # fieldbus setpoints are accepted
    FAULT = 1 << 3


class WriteResult(Enum):
    """How a drive answers a write; the server maps these to Modbus exception codes."""

    OK = "ok"
    ILLEGAL_ADDRESS = "illegal_address"  # a register that is not a writable point
    ILLEGAL_VALUE = "illegal_value"  # a value the drive cannot use (NaN, infinite)


@dataclass(frozen=True)
class Span:
    """The contiguous run of registers a table of a profile covers."""

    start: int
    count: int


def saturated(point: Point, value: float) -> list[int]:
    """Encode an SI value into a point's registers, clamping to what its type holds."""
    raw = point.from_si(value)
    if point.dtype is DataType.FLOAT32 and math.isfinite(raw):
        raw = min(max(raw, -FLOAT32_MAX), FLOAT32_MAX)
    elif not point.dtype.is_float:
        low, high = point.dtype.bounds
        raw = float(min(max(round(raw), low), high)) if math.isfinite(raw) else 0.0
    return encode(raw, point.dtype, point.word_order, point.byte_order)


def wrapped(point: Point, value: float) -> list[int]:
    """Encode a counter: integer types truncate and wrap at the type's maximum, as drives do."""
    raw = point.from_si(value)
    if point.dtype.is_float or not math.isfinite(raw):
        return saturated(point, value)
    low, high = point.dtype.bounds
    modulus = high - low + 1 if low < 0 else high + 1
    count = math.floor(raw) % modulus
    if count > high:
        count -= modulus
    return encode(float(count), point.dtype, point.word_order, point.byte_order)


def status_word(snapshot: DriveSnapshot, remote: bool) -> int:
    """Status word from the drive's state."""
    word = StatusBit.READY
    if snapshot.running:
        word |= StatusBit.RUNNING
    if remote:
        word |= StatusBit.REMOTE
    if snapshot.fault_code:
        word |= StatusBit.FAULT
    return int(word)


class DriveRegisters:
    """Encodes one drive's state into register images and decodes writes to it."""

    def __init__(self, spec: DriveSpec) -> None:
        self.spec = spec
        self.profile = spec.profile
        self.spans: dict[RegisterTable, Span] = {}
        for table in RegisterTable:
            points = [p for p in self.profile.points.values() if p.table is table]
            if points:
                start = min(p.address for p in points)
                self.spans[table] = Span(start, max(p.end for p in points) - start)
        self.held: dict[Quantity, list[int]] = {}  # registers of written points, read back as written

    def _speed_si(self, point: Point, ratio: float) -> float:
        return ratio * self.spec.rated_speed if point.dimension is Dimension.ANGULAR_SPEED else ratio

    def value(self, point: Point, snapshot: DriveSnapshot) -> float:
        """SI value a point shows for a state (bit fields as plain numbers)."""
        m = snapshot.measured
        q = point.quantity
        if q is Quantity.SPEED:
            return self._speed_si(point, m.speed_ratio)
        if q is Quantity.SPEED_SETPOINT:
            return self._speed_si(point, snapshot.setpoint_ratio)
        if q is Quantity.OUTPUT_FREQUENCY:
            return snapshot.speed_ratio * self.spec.rated_frequency
        if q is Quantity.TORQUE:
            omega = snapshot.speed_ratio * self.spec.rated_speed
            return snapshot.shaft_power / omega if omega > 0.0 else 0.0
        if q is Quantity.PRESSURE and point.dimension is Dimension.HEAD:
            return m.pressure / (WATER_DENSITY * GRAVITY)  # metres of water column
        if q is Quantity.STATUS_WORD:
            return float(status_word(snapshot, self.spec.remote))
        if q is Quantity.FAULT_CODE:
            return float(snapshot.fault_code)
        simple = {
            Quantity.POWER: m.power, Quantity.ENERGY: m.energy_counter, Quantity.CURRENT: m.current,
            Quantity.DC_VOLTAGE: m.dc_voltage, Quantity.FLOW: m.flow, Quantity.PRESSURE: m.pressure,
            Quantity.CONTROL_WORD: 0.0,
        }
        return simple[q]

    def image(self, table: RegisterTable, snapshot: DriveSnapshot) -> list[int]:
        """Every register of a table's span; addresses no point names read 0."""
        span = self.spans[table]
        registers = [0] * span.count
        for point in self.profile.points.values():
            if point.table is not table:
                continue
            held = self.held.get(point.quantity)
            if held is not None:
                words = held
            elif point.quantity is Quantity.ENERGY:
                words = wrapped(point, self.value(point, snapshot))
            else:
                words = saturated(point, self.value(point, snapshot))
            offset = point.address - span.start
            registers[offset : offset + len(words)] = words
        return registers

    def write(
        self, address: int, values: Sequence[int], snapshot: DriveSnapshot
    ) -> tuple[WriteResult, float | None]:
        """Apply a write to holding registers; returns the result and any new speed setpoint ratio.

        Every register written must belong to a writable point; a point written only in
        part keeps its other registers.
        """
        end = address + len(values)
        touched = [
            p for p in self.profile.points.values()
            if p.table is RegisterTable.HOLDING and p.address < end and address < p.end
        ]
        covered = {a for p in touched if p.writable for a in range(p.address, p.end)}
        if any(p.writable is False for p in touched) or not covered.issuperset(range(address, end)):
            return WriteResult.ILLEGAL_ADDRESS, None
        updates: dict[Quantity, list[int]] = {}
        new_ratio: float | None = None
        for point in touched:
            current = self.held.get(point.quantity) or saturated(point, self.value(point, snapshot))
            words = list(current)
            for a in range(max(address, point.address), min(end, point.end)):
                words[a - point.address] = values[a - address]
            si = point.to_si(decode(words, point.dtype, point.word_order, point.byte_order))
            if not math.isfinite(si):
                return WriteResult.ILLEGAL_VALUE, None
            if point.quantity is Quantity.SPEED_SETPOINT:
                new_ratio = si / self.spec.rated_speed if point.dimension is Dimension.ANGULAR_SPEED else si
            updates[point.quantity] = words
        self.held.update(updates)
        return WriteResult.OK, new_ratio
