"""A simulated drive's register image, encoded through the same profile the agent decodes.

Reads get the drive's current state encoded point by point with ``agent.modbus.codec``;
writes are decoded the same way. Out-of-range values saturate at the type's
limits, as a drive's display does, except the energy counter, which wraps at
the type's maximum like a real counter (or sticks at the profile's
``saturates_at``, as SINAMICS r0039 does at 32767 kWh). Only points the profile
marks writable accept writes; a written value is read back as written.

A drive serves its points in clusters: registers between points less than
``READABLE_GAP`` apart read 0, as on most drives; a read that reaches beyond a
cluster gets exception 2 (illegal data address), as from a drive whose map has
holes. The status word follows the profile's ``status_bits``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from enum import Enum, IntFlag

from agent.config.profile import Point, Quantity, RegisterTable
from agent.modbus.codec import DataType, Order, decode, encode
from agent.units import Dimension
from hil.model import DriveSnapshot
from hil.physics import RHO_G_WATER
from hil.plantfile import DriveSpec

FLOAT32_MAX = 3.4028234663852886e38
READABLE_GAP = 32  # unnamed registers between points closer than this read 0
DEFAULT_STATUS_BITS = {"ready": 0, "running": 1, "remote": 2, "fault": 3}
# The critical point of a drive's header circuit, served beyond its profile's points where
# the profile does not map it (generic-process maps it as critical_pressure and
# valve_position): input registers of float32, big-endian words, at fixed addresses. Drives
# outside a circuit serve nothing there.
CRITICAL_PRESSURE_ADDRESS = 200  # kPa: differential pressure across the critical branch (a remote DP)
CRITICAL_VALVE_ADDRESS = 202  # %: the critical load's valve opening
CRITICAL_POINT_TABLE = RegisterTable.INPUT


class StatusBit(IntFlag):
    """Bits of the simulated status word."""

    READY = 1 << 0
    RUNNING = 1 << 1
    REMOTE = 1 << 2  # fieldbus setpoints are accepted
    FAULT = 1 << 3


class DriveAnswer(Enum):
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


def status_word(snapshot: DriveSnapshot, remote: bool, bits: dict[str, int] | None = None) -> int:
    """Status word from the drive's state, with the profile's bit numbers (default: ``StatusBit``)."""
    bits = bits or DEFAULT_STATUS_BITS
    states = {"ready": True, "running": snapshot.running, "remote": remote,
              "fault": bool(snapshot.fault_code), "warning": False}
    word = 0
    for name, bit in bits.items():
        if states.get(name, False):
            word |= 1 << bit
    return word


def unavailable(point: Point) -> list[int]:
    """The value a drive shows for "not available": NaN for floats, else the type's extreme."""
    if point.dtype.is_float:
        return encode(math.nan, point.dtype, point.word_order, point.byte_order)
    low, high = point.dtype.bounds
    return encode(float(low if low < 0 else high), point.dtype, point.word_order, point.byte_order)


def clusters(points: Sequence[Point], readable_gap: int = READABLE_GAP) -> list[Span]:
    """Runs of registers a drive serves: points closer than ``readable_gap`` share a run."""
    runs: list[Span] = []
    for point in sorted(points, key=lambda p: p.address):
        if runs and point.address - (runs[-1].start + runs[-1].count) < readable_gap:
            last = runs[-1]
            runs[-1] = Span(last.start, max(last.start + last.count, point.end) - last.start)
        else:
            runs.append(Span(point.address, point.registers))
    return runs


class DriveRegisters:
    """Encodes one drive's state into register images and decodes writes to it."""

    def __init__(self, spec: DriveSpec, in_circuit: bool = False) -> None:
        self.spec = spec
        self.profile = spec.profile
        self.spans: dict[RegisterTable, Span] = {}
        for table in RegisterTable:
            points = [p for p in self.profile.points.values() if p.table is table]
            if points:
                start = min(p.address for p in points)
                self.spans[table] = Span(start, max(p.end for p in points) - start)
        self.held: dict[Quantity, list[int]] = {}  # registers of written points, read back as written
        # SI values of the points the last accepted write set (speed as a ratio, pressure in Pa),
        # for the physics to act on (hil.model.PlantModel.command).
        self.last_write: dict[Quantity, float] = {}
        self.clusters = {
            table: clusters([p for p in self.profile.points.values() if p.table is table])
            for table in self.spans
        }
        self.critical_point = in_circuit and not any(
            p.table is CRITICAL_POINT_TABLE and p.address < CRITICAL_VALVE_ADDRESS + 2
            and CRITICAL_PRESSURE_ADDRESS < p.end for p in self.profile.points.values())
        if self.critical_point:
            self.clusters.setdefault(CRITICAL_POINT_TABLE, []).append(Span(CRITICAL_PRESSURE_ADDRESS, 4))
        # Faults of the values served (hil.faults): set by the server, cleared with the fault.
        self.stuck_at: DriveSnapshot | None = None  # every value frozen at this state
        self.power_unavailable = False  # power reads NaN or the type's "not available" value
        self.power_factor = 1.0  # a wrong scale
        self.counter_offset = 0.0  # J, subtracted from the energy counter since a restart

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
            return m.pressure / RHO_G_WATER  # metres of water column
        if q is Quantity.CRITICAL_PRESSURE and point.dimension is Dimension.HEAD:
            return m.critical_pressure / RHO_G_WATER
        if q is Quantity.PRESSURE_SETPOINT:
            pa = snapshot.pressure_setpoint
            return pa / RHO_G_WATER if point.dimension is Dimension.HEAD else pa
        if q is Quantity.STATUS_WORD:
            return float(status_word(snapshot, self.spec.remote, self.profile.status_bits))
        if q is Quantity.FAULT_CODE:
            return float(snapshot.fault_code)
        simple = {
            Quantity.POWER: m.power * self.power_factor,
            Quantity.ENERGY: max(m.energy_counter - self.counter_offset, 0.0), Quantity.CURRENT: m.current,
            Quantity.DC_VOLTAGE: m.dc_voltage, Quantity.FLOW: m.flow, Quantity.PRESSURE: m.pressure,
            Quantity.CONTROL_WORD: 0.0, Quantity.PROCESS_FLOW: m.process_flow,
            Quantity.CRITICAL_PRESSURE: m.critical_pressure, Quantity.VALVE_POSITION: m.critical_valve,
        }
        return simple[q]

    def words(self, point: Point, snapshot: DriveSnapshot) -> list[int]:
        """The registers of one point as the drive serves them now."""
        held = self.held.get(point.quantity)
        if held is not None:
            return held
        if self.stuck_at is not None:
            snapshot = self.stuck_at
        if point.quantity is Quantity.POWER and self.power_unavailable:
            return unavailable(point)
        if point.quantity is Quantity.ENERGY:
            value = self.value(point, snapshot)
            if point.saturates_at is not None and point.from_si(value) >= point.saturates_at:
                raw = point.saturates_at
                return encode(raw, point.dtype, point.word_order, point.byte_order)
            return wrapped(point, value)
        return saturated(point, self.value(point, snapshot))

    def image(self, table: RegisterTable, snapshot: DriveSnapshot) -> list[int]:
        """Every register of a table's span; addresses no point names read 0."""
        span = self.spans[table]
        registers = [0] * span.count
        for point in self.profile.points.values():
            if point.table is table:
                offset = point.address - span.start
                registers[offset : offset + point.registers] = self.words(point, snapshot)
        return registers

    def read(
        self, table: RegisterTable, address: int, count: int, snapshot: DriveSnapshot
    ) -> list[int] | None:
        """Registers ``address .. address + count - 1``; None if they reach beyond what the drive serves."""
        if not any(c.start <= address and address + count <= c.start + c.count
                   for c in self.clusters.get(table, ())):
            return None
        registers = [0] * count
        if self.critical_point and table is CRITICAL_POINT_TABLE:
            source = self.stuck_at or snapshot
            m = source.measured
            for start, value in ((CRITICAL_PRESSURE_ADDRESS, m.critical_pressure / 1e3),
                                 (CRITICAL_VALVE_ADDRESS, 100.0 * m.critical_valve)):
                for index, word in enumerate(encode(value, DataType.FLOAT32, Order.BIG, Order.BIG)):
                    if 0 <= start + index - address < count:
                        registers[start + index - address] = word
        for point in self.profile.points.values():
            if point.table is table and point.address < address + count and address < point.end:
                for index, word in enumerate(self.words(point, snapshot)):
                    offset = point.address + index - address
                    if 0 <= offset < count:
                        registers[offset] = word
        return registers

    def write(
        self, address: int, values: Sequence[int], snapshot: DriveSnapshot
    ) -> tuple[DriveAnswer, float | None]:
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
            return DriveAnswer.ILLEGAL_ADDRESS, None
        updates: dict[Quantity, list[int]] = {}
        commands: dict[Quantity, float] = {}
        new_ratio: float | None = None
        for point in touched:
            current = self.held.get(point.quantity) or saturated(point, self.value(point, snapshot))
            words = list(current)
            for a in range(max(address, point.address), min(end, point.end)):
                words[a - point.address] = values[a - address]
            si = point.to_si(decode(words, point.dtype, point.word_order, point.byte_order))
            if not math.isfinite(si):
                return DriveAnswer.ILLEGAL_VALUE, None
            if point.quantity is Quantity.SPEED_SETPOINT:
                new_ratio = si / self.spec.rated_speed if point.dimension is Dimension.ANGULAR_SPEED else si
                commands[point.quantity] = new_ratio
            elif point.quantity is Quantity.PRESSURE_SETPOINT and point.dimension is Dimension.HEAD:
                commands[point.quantity] = si * RHO_G_WATER
            else:
                commands[point.quantity] = si
            updates[point.quantity] = words
        self.held.update(updates)
        self.last_write = commands
        return DriveAnswer.OK, new_ratio
