"""Plant files: which simulated drives a plant has, and the physics behind each.

A plant file is read with the agent's own YAML reader, and each drive's
``load`` and ``baseline`` sections with the agent's own parsers, so a plant
file and a site config describe a drive in the same words. Every mistake is
collected and raised at once as ``ConfigError`` (``FILE:LINE: field: message``).

Long because each section's spec type sits beside its parser, as in ``agent.config``'s
groups: a plant file is one format, read and reviewed in one place.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from agent.config import BaselineConfig, LoadConfig, LoadKind, parse_baseline, parse_load
from agent.config.profile import PowerMeasuredAt, Profile, profile_for
from agent.config.yamlsource import Issues, Section, load_yaml
from agent.errors import ConfigError
from agent.motor_tables import EfficiencyClass, full_load_efficiency, poles_from_speed, rated_slip
from agent.units import KWH_TO_J, RPM_TO_RAD_S
from hil.catalogue import Family, TableCurves, Wear
from hil.faults import FaultSpec, parse_faults
from hil.physics import (
    FAN_SHAPE,
    PUMP_SHAPE,
    RHO_G_WATER,
    Curves,
    MachineCurves,
    curves_from_rated,
    worn,
)

MAX_UNIT = 247  # unit 0 is the gateway itself, which answers for absent units
# A pump whose rated point implies an efficiency outside this range is a typo, not a pump.
MIN_MACHINE_EFFICIENCY = 0.2
MAX_MACHINE_EFFICIENCY = 0.92


@dataclass(frozen=True)
class NoiseSpec:
    """Relative standard deviation of each measured value (ground truth is never noisy)."""

    power: float = 0.003
    speed: float = 0.0005
    current: float = 0.005
    voltage: float = 0.001
    flow: float = 0.01
    pressure: float = 0.005


@dataclass(frozen=True)
class DriveSpec:
    """One simulated drive and the machine it turns, in SI units."""

    name: str
    unit: int
    profile: Profile
    rated_power: float  # W, motor
    rated_speed: float  # rad/s
    rated_frequency: float  # Hz
    rated_voltage: float  # V
    motor_efficiency: float  # at full load, ratio
    shaft_power_ratio: float  # shaft power at the rated duty point / rated power
    load: LoadConfig
    baseline: BaselineConfig
    static_ratio: float  # static share of the rated head (pump) or pressure (fan)
    min_demand_ratio: float  # of rated flow
    max_demand_ratio: float
    min_speed_ratio: float
    max_speed_ratio: float
    ramp_time: float  # s, first-order speed time constant
    noise: NoiseSpec
    remote: bool  # drive accepts the fieldbus speed setpoint
    energy_counter_start: float  # J, the drive's counter when the simulation starts
    seed: int
    head_wear: float = 1.0  # true head / datasheet head (1: as new)
    efficiency_wear: float = 1.0  # true efficiency / datasheet efficiency
    faults: tuple[FaultSpec, ...] = ()  # in force from the start (hil.faults)
    family: Family = Family.QUADRATIC  # the true curves' shape (hil.catalogue)
    shape_wear: Wear = Wear()  # impeller wear, leakage, part-load loss (catalogue families)
    slip: bool = False  # the shaft turns slower than the output frequency by the motor's slip
    turnaround: float = 0.0  # s an RTU drive takes to answer after the request's t3.5 (real ones: 5..45 ms)
    # Which side of the drive its power register measures; None: what its profile says.
    power_at: PowerMeasuredAt | None = None

    @property
    def reports_input(self) -> bool:
        """The power register holds the mains input (with the drive's losses), not the drive's output."""
        side = self.power_at or self.profile.power_measured_at
        return side is PowerMeasuredAt.DRIVE_INPUT

    @property
    def rated_slip(self) -> float:
        """(n_sync − n_rated) / n_sync from the rated speed and frequency; 0 without slip."""
        if not self.slip:
            return 0.0
        return rated_slip(self.rated_speed / RPM_TO_RAD_S, self.rated_frequency)

    @property
    def rated_head(self) -> float:
        """Rated head [m] of a pump or rated pressure [Pa] of a fan."""
        return self.load.rated_pressure if self.load.kind is LoadKind.FAN else self.load.rated_head

    @property
    def rho_g(self) -> float:
        """Factor turning flow × head into hydraulic power (1 for a fan's pressure)."""
        return 1.0 if self.load.kind is LoadKind.FAN else RHO_G_WATER

    def curves(self) -> MachineCurves:
        """The machine's datasheet (as new) affinity curves, derived from its rated point."""
        shape = FAN_SHAPE if self.load.kind is LoadKind.FAN else PUMP_SHAPE
        return curves_from_rated(self.load.rated_flow, self.rated_head,
                                 self.shaft_power_ratio * self.rated_power, self.rho_g, shape)

    def true_curves(self) -> Curves:
        """The curves the machine really has: its family's through the rated point, degraded by wear."""
        if self.family is not Family.QUADRATIC:
            return TableCurves(self.family, self.load.rated_flow, self.rated_head,
                               self.shaft_power_ratio * self.rated_power, self.rho_g, self.shape_wear)
        if self.head_wear == 1.0 and self.efficiency_wear == 1.0:
            return self.curves()
        return worn(self.curves(), self.head_wear, self.efficiency_wear)


@dataclass(frozen=True)
class LocalControlSpec:
    """What the drives of a circuit do on their own: the conventional strategy.

    A pressure PI holds the header at a fixed setpoint; a cascade starts the next pump
    (in the circuit's order) when the common speed stays above ``stage_up_ratio`` for
    ``stage_delay`` and stops the last one when it stays below ``stage_down_ratio``, as
    ABB's PFC or a SINAMICS cascade does.
    """

    pressure_setpoint: float  # machine units: m (pumps) or Pa (fans)
    stage_up_ratio: float
    stage_down_ratio: float
    stage_delay: float  # s


@dataclass(frozen=True)
class CircuitSpec:
    """Parallel machines on one header feeding loads with control valves."""

    name: str
    drives: tuple[str, ...]  # also the lead-lag order of the local cascade
    kind: LoadKind
    design_flow: float  # m³/s
    design_head: float  # m (pumps) or Pa (fans), the system's need at the design flow
    static_ratio: float  # static share of the design head
    min_demand_ratio: float  # of the design flow
    max_demand_ratio: float
    seed: int
    unmet_tolerance: float  # a delivered flow this much below the demand counts as unmet
    control: LocalControlSpec
    # Share of the dynamic head lost in the mains before the critical (remotest) branch; the
    # rest is the branch's coil and valve at full open, what the critical valve needs.
    critical_path_share: float = 0.6

    @property
    def rho_g(self) -> float:
        """Factor turning head into pressure [Pa] (1 for a fan)."""
        return 1.0 if self.kind is LoadKind.FAN else RHO_G_WATER


@dataclass(frozen=True)
class PlantSpec:
    """A whole simulated plant: its drives and the clock of its physics."""

    source: str
    name: str
    day_length: float  # s, one simulated day of demand
    step: float  # s, physics step
    drives: tuple[DriveSpec, ...]
    circuits: tuple[CircuitSpec, ...] = ()

    def drive(self, name: str) -> DriveSpec:
        """The drive with this name; KeyError names the known ones."""
        for drive in self.drives:
            if drive.name == name:
                return drive
        raise KeyError(f"no drive {name!r}; drives: {', '.join(d.name for d in self.drives)}")


_DRIVE_KEYS = {
    "name", "unit", "profile", "rated_power_kw", "rated_speed_rpm", "rated_frequency_hz",
    "rated_voltage_v", "motor_efficiency_pct", "shaft_power_pct", "load", "baseline", "static_pct",
    "min_demand_pct", "max_demand_pct", "min_speed_pct", "max_speed_pct", "ramp_time_s", "noise_pct",
    "remote", "energy_counter_start_kwh", "seed", "faults", "wear", "curve", "slip", "turnaround_ms",
    "power_measured_at",
}


def _noise(sec: Section | None) -> NoiseSpec:
    default = NoiseSpec()
    if sec is None:
        return default
    names = ("power", "speed", "current", "voltage", "flow", "pressure")
    sec.check_keys(set(names))
    values = {n: sec.number(n, getattr(default, n) * 100.0, minimum=0.0, maximum=10.0) / 100.0 for n in names}
    return NoiseSpec(**{n: v if math.isfinite(v) else 0.0 for n, v in values.items()})


def _pair(sec: Section, low_key: str, high_key: str, defaults: tuple[float, float],
          maximum: float) -> tuple[float, float]:
    low = sec.number(low_key, defaults[0], minimum=0.0, maximum=maximum)
    high = sec.number(high_key, defaults[1], minimum=0.0, maximum=maximum)
    if math.isfinite(low) and math.isfinite(high):
        sec.validate(low_key, low <= high, f"must not exceed {high_key} ({high:g})")
    return low / 100.0, high / 100.0


def _default_motor_pct(rated_power: float, rated_speed: float, frequency: float) -> float:
    """Full-load efficiency [%] of an IE3 motor of this size and poles (IEC 60034-30-1); 92 if unknown."""
    try:
        poles = poles_from_speed(rated_speed / RPM_TO_RAD_S, frequency)
        return 100.0 * full_load_efficiency(rated_power / 1e3, poles, EfficiencyClass.IE3)
    except ValueError:
        return 92.0


def _drive(sec: Section, plant_dir: Path, profiles: dict[Path, Profile | None], seed: int,
           issues: Issues) -> DriveSpec | None:
    sec.check_keys(_DRIVE_KEYS)
    name = sec.string("name")
    unit = sec.integer("unit", minimum=1, maximum=MAX_UNIT)
    rated_power = sec.number("rated_power_kw", minimum=0.0, exclusive_minimum=True) * 1e3
    rated_speed = sec.number("rated_speed_rpm", minimum=0.0, exclusive_minimum=True) * RPM_TO_RAD_S
    frequency = sec.number("rated_frequency_hz", 50.0, minimum=1.0, maximum=1000.0)
    voltage = sec.number("rated_voltage_v", 400.0, minimum=24.0, maximum=15000.0)
    motor_eff = sec.number("motor_efficiency_pct", _default_motor_pct(rated_power, rated_speed, frequency),
                           minimum=50.0, maximum=99.0) / 100.0
    shaft_ratio = sec.number("shaft_power_pct", 90.0, minimum=10.0, maximum=120.0) / 100.0
    load = parse_load(sec.section("load"))
    baseline = parse_baseline(sec.section("baseline", required=False), rated_power)
    static = sec.number("static_pct", 0.0, minimum=0.0, maximum=95.0) / 100.0
    min_demand, max_demand = _pair(sec, "min_demand_pct", "max_demand_pct", (50.0, 100.0), 150.0)
    min_speed, max_speed = _pair(sec, "min_speed_pct", "max_speed_pct", (0.0, 100.0), 120.0)
    if min_speed == max_speed:
        sec.error("min_speed_pct", "must be below max_speed_pct")
    ramp_time = sec.number("ramp_time_s", 3.0, minimum=0.0, maximum=600.0, exclusive_minimum=True)
    noise = _noise(sec.section("noise_pct", required=False))
    remote = sec.boolean("remote", True)
    counter_start = sec.number("energy_counter_start_kwh", 0.0, minimum=0.0) * KWH_TO_J
    drive_seed = sec.integer("seed", seed + max(unit, 0), minimum=0)
    family = _family(sec.section("curve", required=False), load.kind)
    head_wear, efficiency_wear, shape_wear = _wear(sec.section("wear", required=False), family)
    slip = sec.boolean("slip", False)
    turnaround = sec.number("turnaround_ms", 0.0, minimum=0.0, maximum=1000.0) / 1e3
    power_at = sec.choice("power_measured_at", PowerMeasuredAt, None)
    profile = _profile(sec, plant_dir, profiles, issues)
    values = (rated_power, rated_speed, frequency, voltage, motor_eff, shaft_ratio, static, min_demand,
              max_demand, min_speed, max_speed, ramp_time, counter_start, load.rated_flow,
              load.rated_pressure if load.kind is LoadKind.FAN else load.rated_head, turnaround)
    if profile is None or not name or unit < 0 or drive_seed < 0 or not all(map(math.isfinite, values)):
        return None
    spec = DriveSpec(
        name=name, unit=unit, profile=profile, rated_power=rated_power, rated_speed=rated_speed,
        rated_frequency=frequency, rated_voltage=voltage, motor_efficiency=motor_eff,
        shaft_power_ratio=shaft_ratio, load=load, baseline=baseline, static_ratio=static,
        min_demand_ratio=min_demand, max_demand_ratio=max_demand, min_speed_ratio=min_speed,
        max_speed_ratio=max_speed, ramp_time=ramp_time, noise=noise, remote=remote,
        energy_counter_start=counter_start, seed=drive_seed, faults=parse_faults(sec),
        head_wear=head_wear, efficiency_wear=efficiency_wear, family=family, shape_wear=shape_wear, slip=slip,
        turnaround=turnaround, power_at=power_at,
    )
    efficiency = spec.curves().efficiency(load.rated_flow, 1.0)
    if not MIN_MACHINE_EFFICIENCY <= efficiency <= MAX_MACHINE_EFFICIENCY:
        sec.error(
            "rated_power_kw",
            f"the rated duty point needs a {load.kind.value} efficiency of {efficiency:.2f} at "
            f"shaft_power_pct {shaft_ratio * 100:g} % of rated power; a real machine lies in "
            f"{MIN_MACHINE_EFFICIENCY:g}..{MAX_MACHINE_EFFICIENCY:g}: check the rated power, flow and head",
        )
        return None
    return spec


def _family(sec: Section | None, kind: LoadKind) -> Family:
    """The curve family of ``curve: {family: NAME}``; the quadratic default without one."""
    if sec is None:
        return Family.QUADRATIC
    sec.check_keys({"family"})
    names = [f.value for f in Family]
    name = sec.string("family", Family.QUADRATIC.value)
    if name not in names:
        sec.error("family", f"unknown curve family {name!r}; families: {', '.join(names)}")
        return Family.QUADRATIC
    family = Family(name)
    if family is not Family.QUADRATIC and kind is LoadKind.FAN:
        sec.error("family", "catalogue families are pump curves; a fan takes the quadratic family")
        return Family.QUADRATIC
    return family


_SHAPE_WEAR_KEYS = ("impeller_pct", "leakage_pct", "part_load_pct")


def _wear(sec: Section | None, family: Family) -> tuple[float, float, Wear]:
    """(head, efficiency) factors of a uniformly worn machine, and its shape-changing wear."""
    if sec is None:
        return 1.0, 1.0, Wear()
    sec.check_keys({"head_pct", "efficiency_pct", *_SHAPE_WEAR_KEYS})
    head = sec.number("head_pct", 100.0, minimum=50.0, maximum=100.0) / 100.0
    efficiency = sec.number("efficiency_pct", 100.0, minimum=50.0, maximum=100.0) / 100.0
    shape = [sec.number(key, 0.0, minimum=0.0, maximum=30.0) / 100.0 for key in _SHAPE_WEAR_KEYS]
    shape = [v if math.isfinite(v) else 0.0 for v in shape]
    uniform = [key for key in ("head_pct", "efficiency_pct") if sec.has(key)]
    shaped = [key for key in _SHAPE_WEAR_KEYS if sec.has(key)]
    if family is Family.QUADRATIC and shaped:
        sec.error(shaped[0], "shape-changing wear needs a catalogue curve family (curve: {family: ...})")
    if family is not Family.QUADRATIC and uniform:
        sec.error(uniform[0], "a catalogue curve family wears by impeller_pct, leakage_pct and part_load_pct")
    return ((head if math.isfinite(head) else 1.0), (efficiency if math.isfinite(efficiency) else 1.0),
            Wear(impeller=shape[0], leakage=shape[1], part_load=shape[2]))


_CIRCUIT_KEYS = {
    "name", "drives", "design_flow_m3h", "design_head_m", "design_pressure_pa", "static_pct",
    "min_demand_pct", "max_demand_pct", "seed", "unmet_tolerance_pct", "control", "critical_path_pct",
}


def _circuit(sec: Section, drives: dict[str, DriveSpec], seed: int) -> CircuitSpec | None:
    sec.check_keys(_CIRCUIT_KEYS)
    name = sec.string("name")
    names = sec.names("drives", drives, "circuit")
    members = [drives[n] for n in names if n in drives]
    kinds = {d.load.kind for d in members}
    if len(kinds) > 1:
        sec.error("drives", "pumps and fans cannot share a circuit")
    kind = kinds.pop() if len(kinds) == 1 else LoadKind.PUMP
    fan = kind is LoadKind.FAN
    head_key, unit_name = ("design_pressure_pa", "pressure_setpoint_pa") if fan else (
        "design_head_m", "pressure_setpoint_m")
    flow = sec.number("design_flow_m3h", minimum=0.0, exclusive_minimum=True) / 3600.0
    head = sec.number(head_key, minimum=0.0, exclusive_minimum=True)
    static = sec.number("static_pct", 0.0, minimum=0.0, maximum=95.0) / 100.0
    min_demand, max_demand = _pair(sec, "min_demand_pct", "max_demand_pct", (30.0, 100.0), 150.0)
    circuit_seed = sec.integer("seed", seed, minimum=0)
    tolerance = sec.number("unmet_tolerance_pct", 1.0, minimum=0.0, maximum=20.0) / 100.0
    path_share = sec.number("critical_path_pct", 60.0, minimum=0.0, maximum=95.0) / 100.0
    control_sec = sec.section("control")
    control = None
    if control_sec is not None:
        control_sec.check_keys({unit_name, "stage_up_speed_pct", "stage_down_speed_pct", "stage_delay_s"})
        setpoint = control_sec.number(unit_name, head, minimum=0.0, exclusive_minimum=True)
        up = control_sec.number("stage_up_speed_pct", 98.0, minimum=1.0, maximum=120.0) / 100.0
        down = control_sec.number("stage_down_speed_pct", 70.0, minimum=0.0, maximum=120.0) / 100.0
        if math.isfinite(up) and math.isfinite(down):
            control_sec.validate("stage_down_speed_pct", down < up,
                                 f"must be below stage_up_speed_pct ({up * 100:g})")
        delay = control_sec.number("stage_delay_s", 5.0, minimum=0.0)
        if all(math.isfinite(v) for v in (setpoint, up, down, delay)):
            control = LocalControlSpec(setpoint, up, down, delay)
    values = (flow, head, static, min_demand, max_demand, tolerance, path_share)
    if control is None or not name or not members or len(members) != len(names) or circuit_seed < 0 \
            or not all(map(math.isfinite, values)):
        return None
    return CircuitSpec(name=name, drives=tuple(names), kind=kind, design_flow=flow, design_head=head,
                       static_ratio=static, min_demand_ratio=min_demand, max_demand_ratio=max_demand,
                       seed=circuit_seed, unmet_tolerance=tolerance, control=control,
                       critical_path_share=path_share)


def _profile(sec: Section, plant_dir: Path, profiles: dict[Path, Profile | None],
             issues: Issues) -> Profile | None:
    profile_name = sec.string("profile")
    return profile_for(sec, profile_name, plant_dir, profiles, issues) if profile_name else None


def parse_plant(sec: Section, plant_dir: Path, issues: Issues) -> PlantSpec | None:
    """Build a plant from its top-level section; None if anything was wrong."""
    sec.check_keys({"name", "day_s", "step_s", "seed", "drives", "circuits"})
    name = sec.string("name", Path(sec.file).stem)
    day_length = sec.number("day_s", minimum=1.0, maximum=7 * 86400.0)
    step = sec.number("step_s", 0.05, minimum=0.001, maximum=1.0)
    seed = sec.integer("seed", 0, minimum=0)
    profiles: dict[Path, Profile | None] = {}
    drive_secs = list(sec.sections("drives"))
    drives = [_drive(d, plant_dir, profiles, max(seed, 0), issues) for d in drive_secs]
    seen_names: set[str] = set()
    seen_units: set[int] = set()
    for drive_sec, drive in zip(drive_secs, drives, strict=True):
        if drive is None:
            continue
        drive_sec.validate("name", drive.name not in seen_names, f"duplicate drive name {drive.name!r}")
        drive_sec.validate("unit", drive.unit not in seen_units, f"unit {drive.unit} is already used")
        seen_names.add(drive.name)
        seen_units.add(drive.unit)
    if not drive_secs and "drives" in sec.data:
        sec.error("drives", "must list at least one drive")
    by_name = {d.name: d for d in drives if d is not None}
    circuit_secs = list(sec.sections("circuits", required=False))
    circuits = [_circuit(c, by_name, max(seed, 0)) for c in circuit_secs]
    in_circuit: set[str] = set()
    for circuit_sec, circuit in zip(circuit_secs, circuits, strict=True):
        if circuit is not None:
            taken = in_circuit.intersection(circuit.drives)
            circuit_sec.validate("drives", not taken,
                                 f"{', '.join(sorted(taken))} already belong(s) to another circuit")
            in_circuit.update(circuit.drives)
    if issues.items or not math.isfinite(day_length + step):
        return None
    return PlantSpec(source=sec.file, name=name, day_length=day_length, step=step,
                     drives=tuple(d for d in drives if d is not None),
                     circuits=tuple(c for c in circuits if c is not None))


def load_plant(path: Path | str) -> PlantSpec:
    """Read and validate a plant file and every profile it names; ConfigError on any problem."""
    path = Path(path)
    issues = Issues()
    sec = load_yaml(path, issues)
    plant = parse_plant(sec, path.resolve().parent, issues) if sec is not None else None
    issues.raise_if_any()
    if plant is None:  # pragma: no cover - parse_plant returns None only with issues
        raise ConfigError([])
    return plant
