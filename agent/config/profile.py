"""Drive register-map profiles: which register holds what, and how to decode it.

A profile is a YAML file in ``configs/profiles/`` (or next to a site config in
``profiles/``). The agent and the simulator both read profiles through this
module, so the two can never disagree about a map silently.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum
from pathlib import Path

from agent.config.yamlsource import Issues, Section, load_yaml
from agent.modbus.codec import DataType, Order
from agent.units import UNITS, Dimension

BUILTIN_CONFIGS = Path(__file__).resolve().parents[2] / "configs"
BUILTIN_PROFILES = BUILTIN_CONFIGS / "profiles"
MAX_ADDRESS = 0xFFFF


class Quantity(Enum):
    """What a register point measures; the agent knows points by these names."""

    SPEED = "speed"
    OUTPUT_FREQUENCY = "output_frequency"
    POWER = "power"
    ENERGY = "energy"
    CURRENT = "current"
    DC_VOLTAGE = "dc_voltage"
    TORQUE = "torque"
    MOTOR_TEMPERATURE = "motor_temperature"
    FLOW = "flow"
    PRESSURE = "pressure"
    # A flow measured elsewhere in the process and brought to the drive (an analog input, or
    # a value the BMS writes): a header flow meter, or the loads' demanded flow.
    PROCESS_FLOW = "process_flow"
    # A group's critical point, brought to a drive or read from another device (the BMS): the
    # differential pressure across the critical (hydraulically remotest) load, and the opening
    # of its valve, the most open one (see agent.optimizer.system.excess_head).
    CRITICAL_PRESSURE = "critical_pressure"
    VALVE_POSITION = "valve_position"
    SPEED_SETPOINT = "speed_setpoint"
    # The setpoint of the drive's own process (PI) controller: the pressure it holds.
    PRESSURE_SETPOINT = "pressure_setpoint"
    STATUS_WORD = "status_word"
    CONTROL_WORD = "control_word"
    FAULT_CODE = "fault_code"


_DIMENSIONS: dict[Quantity, tuple[Dimension, ...]] = {
    Quantity.SPEED: (Dimension.ANGULAR_SPEED, Dimension.RATIO),
    Quantity.OUTPUT_FREQUENCY: (Dimension.FREQUENCY,),
    Quantity.POWER: (Dimension.POWER,),
    Quantity.ENERGY: (Dimension.ENERGY,),
    Quantity.CURRENT: (Dimension.CURRENT,),
    Quantity.DC_VOLTAGE: (Dimension.VOLTAGE,),
    Quantity.TORQUE: (Dimension.TORQUE,),
    Quantity.MOTOR_TEMPERATURE: (Dimension.TEMPERATURE,),
    Quantity.FLOW: (Dimension.FLOW,),
    Quantity.PRESSURE: (Dimension.PRESSURE, Dimension.HEAD),
    Quantity.PROCESS_FLOW: (Dimension.FLOW,),
    Quantity.CRITICAL_PRESSURE: (Dimension.PRESSURE, Dimension.HEAD),
    Quantity.VALVE_POSITION: (Dimension.RATIO,),
    Quantity.SPEED_SETPOINT: (Dimension.ANGULAR_SPEED, Dimension.RATIO),
    Quantity.PRESSURE_SETPOINT: (Dimension.PRESSURE, Dimension.HEAD),
    Quantity.STATUS_WORD: (Dimension.BITS,),
    Quantity.CONTROL_WORD: (Dimension.BITS,),
    Quantity.FAULT_CODE: (Dimension.BITS, Dimension.RATIO),
}


class NegativePower(Enum):
    """What a negative power reading (beyond standstill noise) means for this drive.

    ``implausible`` (the default): a sign or type error; the reading is refused and counted,
    nothing is booked. ``regenerated``: the drive feeds energy back (a regenerative or
    active-front-end drive); it is booked apart from the energy drawn, never as savings.
    """

    IMPLAUSIBLE = "implausible"
    REGENERATED = "regenerated"


class PowerMeasuredAt(Enum):
    """Which side of the drive its power reading is measured on: what the agent subtracts from it.

    ``drive_output`` (the default): the drive's output, the motor's input; the power parameter
    of most drives (SINAMICS r0032, ACS580 01.14, FC 102 16-10: ``configs/profiles``), so the
    drive's own losses are not in it and the shaft power behind it is the reading less the
    motor's losses. ``drive_input``: the mains side (a drive that measures its input, a meter
    in front of it), which holds the drive's losses too. Assuming the output where the reading
    is the input reads the flow high by the drive's losses (more delivered than needed), the
    other way low (less): the default errs on the side that serves the load.
    """

    DRIVE_OUTPUT = "drive_output"
    DRIVE_INPUT = "drive_input"


class PollRate(Enum):
    """How often a point is read (its rate class); the read planner coalesces per class.

    ``fast``: every poll interval (power, speed, the energy counter: what energy and control
    need). ``slow``: every ``slow_every`` intervals (status and fault words, temperatures: what
    changes slowly); under overload the slow class is stretched first, so the fast class keeps
    its rate. ``connect``: once after the bus (re)connects or the drive answers again (rated data).
    """

    FAST = "fast"
    SLOW = "slow"
    CONNECT = "connect"


DEFAULT_SLOW_EVERY = 10  # intervals between two reads of the slow class
DEFAULT_POWER_ACCURACY = 0.05  # ±5 % of reading: assumed where a profile declares no accuracy


class RegisterTable(Enum):
    """Modbus table a point lives in; decides the read function code."""

    HOLDING = "holding"
    INPUT = "input"

    @property
    def read_function(self) -> int:
        """Modbus function code that reads this table."""
        return 3 if self is RegisterTable.HOLDING else 4


@dataclass(frozen=True)
class Point:
    """One decoded value of a drive: where it is, how it is encoded, its SI scaling.

    value in SI = (raw × scale + offset) × unit factor.
    """

    quantity: Quantity
    table: RegisterTable
    address: int
    dtype: DataType
    word_order: Order
    byte_order: Order
    scale: float
    offset: float
    unit: str
    dimension: Dimension
    unit_factor: float
    writable: bool
    # Raw value at which a counter sticks instead of wrapping (e.g. SINAMICS r0039 at 32767 kWh).
    saturates_at: float | None = None
    rate: PollRate = PollRate.FAST  # a profile that says nothing reads every point every interval

    @property
    def registers(self) -> int:
        """Registers the point occupies."""
        return self.dtype.registers

    @property
    def counter_modulus(self) -> float:
        """SI value at which a counter of this point wraps to zero (unsigned range + 1)."""
        low, high = self.dtype.bounds
        span = high - low + 1 if not self.dtype.is_float else math.inf
        return span * abs(self.scale) * self.unit_factor

    @property
    def resolution(self) -> float:
        """SI value of one least-significant step of the raw value."""
        return abs(self.scale) * self.unit_factor

    @property
    def end(self) -> int:
        """First address after the point."""
        return self.address + self.dtype.registers

    def to_si(self, raw: float) -> float:
        """Decoded register number to SI."""
        return (raw * self.scale + self.offset) * self.unit_factor

    def from_si(self, value: float) -> float:
        """SI value to the register number (before encoding)."""
        return (value / self.unit_factor - self.offset) / self.scale


@dataclass(frozen=True)
class Profile:
    """A drive's register map."""

    name: str
    description: str
    points: dict[Quantity, Point]
    source: str = ""
    notes: tuple[str, ...] = field(default_factory=tuple)
    # Bit number of each known state in the status word (``ready``, ``running``, ``remote``, ...).
    status_bits: dict[str, int] = field(default_factory=dict)
    # Named values of the control word (``stop``, ``run``, ``fault_reset``), as the vendor defines them.
    control_words: dict[str, int] = field(default_factory=dict)
    # Largest gap of unused registers the drive lets a block read bridge; None: the bus decides.
    max_gap: int | None = None
    # What a negative power reading means (see NegativePower); conservative by default.
    negative_power: NegativePower = NegativePower.IMPLAUSIBLE
    # Poll intervals between two reads of the slow class (PollRate.SLOW).
    slow_every: int = DEFAULT_SLOW_EVERY
    # Declared accuracy of the power reading, a bound relative to the reading (0.02: ±2 %); the
    # M&V savings' bounds include it. A profile that declares none is taken at the conservative
    # DEFAULT_POWER_ACCURACY.
    power_accuracy: float = DEFAULT_POWER_ACCURACY
    # Which side of the drive the power reading is measured on (see PowerMeasuredAt).
    power_measured_at: PowerMeasuredAt = PowerMeasuredAt.DRIVE_OUTPUT

    def point(self, quantity: Quantity) -> Point | None:
        """The point for a quantity, if the profile maps it."""
        return self.points.get(quantity)

    def with_rates(self, rates: dict[Quantity, PollRate], slow_every: int | None) -> Profile:
        """The profile with some points' rate classes (and the slow period) set by a drive's config."""
        points = {q: replace(p, rate=rates.get(q, p.rate)) for q, p in self.points.items()}
        return replace(self, points=points, slow_every=self.slow_every if slow_every is None else slow_every)


_POINT_KEYS = {
    "address", "table", "type", "word_order", "byte_order", "scale", "offset", "unit", "writable",
    "saturates_at", "rate",
}


def _parse_point(quantity: Quantity, sec: Section, defaults: dict[str, object]) -> Point | None:
    sec.check_keys(_POINT_KEYS)
    address = sec.integer("address", minimum=0, maximum=MAX_ADDRESS)
    table = sec.choice("table", RegisterTable, defaults.get("table", RegisterTable.HOLDING))
    dtype = sec.choice("type", DataType)
    word_order = sec.choice("word_order", Order, defaults.get("word_order", Order.BIG))
    byte_order = sec.choice("byte_order", Order, defaults.get("byte_order", Order.BIG))
    scale = sec.number("scale", 1.0)
    if scale == 0.0:
        sec.error("scale", "must not be zero")
    offset = sec.number("offset", 0.0)
    unit = sec.string("unit")
    writable = sec.boolean("writable", False)
    saturates_at = sec.number("saturates_at") if sec.has("saturates_at") else None
    rate = sec.choice("rate", PollRate, PollRate.FAST)
    dimension, factor = UNITS.get(unit, (None, math.nan))
    if unit and dimension is None:
        sec.error("unit", f"unknown unit {unit!r}; known: {', '.join(UNITS)}")
    elif dimension is not None and dimension not in _DIMENSIONS[quantity]:
        allowed = " or ".join(d.value for d in _DIMENSIONS[quantity])
        sec.error("unit", f"{quantity.value} needs a unit of {allowed}, got {unit!r} ({dimension.value})")
        dimension = None
    if writable and table is RegisterTable.INPUT:
        sec.error("writable", "input registers cannot be written")
    if dtype is not None and address >= 0 and address + dtype.registers - 1 > MAX_ADDRESS:
        sec.error("address", "point runs past the last Modbus address 65535")
    if (
        address < 0 or table is None or dtype is None or word_order is None
        or byte_order is None or dimension is None or math.isnan(scale) or scale == 0.0
        or math.isnan(offset) or rate is None
    ):
        return None
    return Point(
        quantity=quantity, table=table, address=address, dtype=dtype, word_order=word_order,
        byte_order=byte_order, scale=scale, offset=offset, unit=unit, dimension=dimension,
        unit_factor=factor, writable=writable,
        saturates_at=saturates_at if saturates_at is not None and math.isfinite(saturates_at) else None,
        rate=rate,
    )


def parse_profile(sec: Section) -> Profile | None:
    """Build a profile from its YAML section; issues are recorded, None if unusable."""
    sec.check_keys({"name", "description", "defaults", "points", "notes", "status_bits", "control_words",
                    "max_gap", "negative_power", "slow_every", "power_accuracy_pct",
                    "power_measured_at"})
    name = sec.string("name")
    description = sec.string("description", "")  # optional, null included
    defaults: dict[str, object] = {}
    default_sec = sec.section("defaults", required=False)
    if default_sec is not None:
        default_sec.check_keys({"table", "word_order", "byte_order"})
        for key, enum in (("table", RegisterTable), ("word_order", Order), ("byte_order", Order)):
            value = default_sec.choice(key, enum, None)
            if value is not None:
                defaults[key] = value
    points: dict[Quantity, Point] = {}
    ok = True
    for key, point_sec in sec.named_sections("points"):
        quantity = next((q for q in Quantity if q.value == key), None)
        if quantity is None:
            point_sec.error(None, f"unknown quantity; known: {', '.join(q.value for q in Quantity)}")
            ok = False
            continue
        point = _parse_point(quantity, point_sec, defaults)
        if point is None:
            ok = False
        else:
            points[quantity] = point
    ok = _check_overlaps(sec, points) and ok
    if not points and ok:
        sec.error("points", "a profile needs at least one point")
        ok = False
    notes = sec.raw("notes", [])
    status_bits = _named_numbers(sec, "status_bits", STATUS_BITS, 15, points, Quantity.STATUS_WORD)
    control_words = _named_numbers(sec, "control_words", CONTROL_WORDS, 0xFFFF, points, Quantity.CONTROL_WORD)
    max_gap = sec.integer("max_gap", minimum=0, maximum=124) if sec.has("max_gap") else None
    negative_power = sec.choice("negative_power", NegativePower, NegativePower.IMPLAUSIBLE)
    slow_every = sec.integer("slow_every", DEFAULT_SLOW_EVERY, minimum=1, maximum=3600)
    accuracy = sec.number("power_accuracy_pct", DEFAULT_POWER_ACCURACY * 100.0, minimum=0.0, maximum=50.0)
    measured_at = sec.choice("power_measured_at", PowerMeasuredAt, PowerMeasuredAt.DRIVE_OUTPUT)
    if (not ok or not name or status_bits is None or control_words is None or (max_gap or 0) < 0
            or negative_power is None or slow_every < 1 or not math.isfinite(accuracy)
            or measured_at is None):
        return None
    return Profile(name=name, description=description, points=points, source=sec.file,
                   notes=tuple(str(n) for n in notes) if isinstance(notes, list) else (),
                   status_bits=status_bits, control_words=control_words, max_gap=max_gap,
                   negative_power=negative_power, slow_every=slow_every, power_accuracy=accuracy / 100.0,
                   power_measured_at=measured_at)


STATUS_BITS = ("ready", "running", "remote", "fault", "warning")
CONTROL_WORDS = ("stop", "run", "fault_reset")


def _named_numbers(
    sec: Section, key: str, names: tuple[str, ...], maximum: int, points: dict[Quantity, Point],
    needs: Quantity,
) -> dict[str, int] | None:
    """A mapping of known names to whole numbers in 0..maximum; None after a recorded issue."""
    child = sec.section(key, required=False)
    if child is None:
        return {} if not sec.has(key) or sec.data.get(key) is None else None
    child.check_keys(set(names))
    values = {name: child.integer(name, minimum=0, maximum=maximum) for name in names if child.has(name)}
    if values and needs not in points:
        sec.error(key, f"needs a {needs.value} point")
        return None
    if any(v < 0 for v in values.values()) or any(str(k) not in names for k in child.data):
        return None
    return values


def _check_overlaps(sec: Section, points: dict[Quantity, Point]) -> bool:
    ok = True
    ordered = sorted(points.values(), key=lambda p: (p.table.value, p.address))
    for before, after in zip(ordered, ordered[1:], strict=False):
        if before.table is after.table and after.address < before.end:
            sec.error(
                f"points.{after.quantity.value}",
                f"registers {after.address}..{after.end - 1} overlap {before.quantity.value}",
            )
            ok = False
    return ok


def resolve_profile_path(name: str, config_dir: Path | None) -> Path | None:
    """Find a profile by name or path: next to the config first, then the built-in ones."""
    if name.endswith((".yaml", ".yml")) or "/" in name:
        path = Path(name)
        if not path.is_absolute() and config_dir is not None:
            path = config_dir / path
        return path if path.is_file() else None
    candidates = [BUILTIN_PROFILES / f"{name}.yaml"]
    if config_dir is not None:
        candidates.insert(0, config_dir / "profiles" / f"{name}.yaml")
    return next((c for c in candidates if c.is_file()), None)


def available_profiles(config_dir: Path | None) -> list[str]:
    """Names of the profiles that ``resolve_profile_path`` can find."""
    dirs = [BUILTIN_PROFILES] + ([config_dir / "profiles"] if config_dir else [])
    return sorted({p.stem for d in dirs if d.is_dir() for p in d.glob("*.yaml")})


def profile_for(sec: Section, name: str, config_dir: Path | None, profiles: dict[Path, Profile | None],
                issues: Issues) -> Profile | None:
    """The profile a config section names (its ``profile`` field), each file read once per config.

    None with the error on the section's ``profile`` line if no such profile exists, or None
    if the file itself is wrong (its own errors are in ``issues``).
    """
    path = resolve_profile_path(name, config_dir)
    if path is None:
        sec.error("profile", f"no profile {name!r}; available: {', '.join(available_profiles(config_dir))}")
        return None
    if path not in profiles:
        profiles[path] = load_profile(path, issues)
    return profiles[path]


def load_profile(path: Path, issues: Issues) -> Profile | None:
    """Read and validate one profile file."""
    sec = load_yaml(path, issues)
    return parse_profile(sec) if sec is not None else None
