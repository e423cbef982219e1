"""Configuration of drive groups and of the optimizer: what serves which demand, under which limits.

A group is one or more drives serving one process demand on one system curve:

- ``control: speed``: the agent writes each drive's speed setpoint (a single pump or
  fan: the lowest speed meeting the demand; parallel pumps: how many run and at which
  speeds, started and stopped with the profile's ``run`` and ``stop`` control words);
- ``control: pressure_setpoint``: the drive's own PI holds a pressure, and the agent
  resets its setpoint along the system curve.

The demand is a flow read from a point (of a drive of the group, or of another device
on a bus) or estimated sensorlessly from power and speed; a pressure point may be the
demand of a pressure loop. Heads are in metres for pumps and pascals for fans
throughout, as the machine curves are. This module parses the ``optimizer`` and
``groups`` sections; ``agent.config.site`` calls it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path

from agent.config.model import (
    AbBlocksConfig,
    BusConfig,
    ControlMode,
    ConventionalConfig,
    DemandConfig,
    DemandSource,
    DriveConfig,
    GroupConfig,
    GroupControl,
    LoadKind,
    MvConfig,
    OptimizerConfig,
    SensorConfig,
    ServiceConfig,
    SetpointConfig,
    StagingConfig,
    SystemConfig,
)
from agent.config.profile import Profile, Quantity, profile_for
from agent.config.yamlsource import Issues, Section
from agent.mv.abtest import BlockPlan
from agent.mv.stats import MvError


def parse_optimizer(sec: Section | None) -> OptimizerConfig:
    """The ``optimizer`` section (all defaults without one)."""
    if sec is None:
        return OptimizerConfig()
    sec.check_keys({"interval_s", "min_samples", "min_r_squared", "min_flow_span_pct"})
    default = OptimizerConfig()
    interval = sec.number("interval_s", default.interval, minimum=0.1, maximum=86400.0)
    samples = sec.integer("min_samples", default.min_samples, minimum=8, maximum=100000)
    r2 = sec.number("min_r_squared", default.min_r_squared, minimum=0.0, maximum=1.0)
    span = sec.number("min_flow_span_pct", default.min_flow_span * 100.0, minimum=1.0, maximum=100.0)
    values = (interval, r2, span)
    if not all(map(math.isfinite, values)) or samples < 0:
        return default
    return OptimizerConfig(interval, samples, r2, span / 100.0)


def _head_keys(fan: bool) -> tuple[str, float]:
    """Key suffix of heads for this kind of machine, and its factor to the internal unit (m or Pa)."""
    return ("pressure_pa", 1.0) if fan else ("head_m", 1.0)


def _demand(sec: Section | None, drives: dict[str, DriveConfig], members: Sequence[str],
            buses: set[str], config_dir: Path, profiles: dict[Path, Profile | None],
            issues: Issues) -> DemandConfig | None:
    if sec is None:
        return None
    sec.check_keys({"source", "drive", "quantity", "bus", "unit", "profile", "margin_pct", "lookahead_s"})
    source = sec.choice("source", DemandSource, DemandSource.POINT)
    margin = sec.number("margin_pct", 1.0, minimum=0.0, maximum=50.0) / 100.0
    lookahead = sec.number("lookahead_s", math.nan, minimum=0.0, maximum=86400.0) \
        if sec.has("lookahead_s") else math.nan
    if source is DemandSource.SENSORLESS:
        sec.check_keys({"source", "margin_pct", "lookahead_s"})
        return DemandConfig(DemandSource.SENSORLESS, Quantity.FLOW, "", "", -1, None, margin, lookahead)
    if source is DemandSource.CRITICAL:  # the critical point is service.critical_drive's (checked there)
        sec.check_keys({"source", "margin_pct", "lookahead_s"})
        return DemandConfig(DemandSource.CRITICAL, Quantity.PRESSURE, "", "", -1, None, margin, lookahead)
    choices = (Quantity.FLOW, Quantity.PROCESS_FLOW, Quantity.PRESSURE)
    name = sec.string("quantity", Quantity.PROCESS_FLOW.value)
    quantity = next((q for q in choices if q.value == name), None)
    if quantity is None:
        sec.error("quantity", f"must be one of {', '.join(q.value for q in choices)}, got {name!r}")
        return None
    if sec.has("drive") == sec.has("unit"):
        sec.error("drive", "name either a drive of the config (drive) or another device (bus, unit, profile)")
        return None
    if sec.has("drive"):
        drive = sec.string("drive")
        config = drives.get(drive)
        if config is None:
            sec.error("drive", f"no drive {drive!r}; drives: {', '.join(drives) or 'none'}")
            return None
        if config.profile.point(quantity) is None:
            sec.error("quantity", f"profile {config.profile.name!r} of drive {drive!r} has no "
                                  f"{quantity.value} point")
            return None
        del members  # any drive of the config may carry the demand
        return DemandConfig(DemandSource.POINT, quantity, drive, config.bus, config.unit, config.profile,
                            margin, lookahead)
    bus = sec.string("bus")
    if bus and bus not in buses:
        sec.error("bus", f"no bus named {bus!r}; buses: {', '.join(sorted(buses)) or 'none'}")
    unit = sec.unit_id("unit")
    profile_name = sec.string("profile")
    profile = profile_for(sec, profile_name, config_dir, profiles, issues) if profile_name else None
    if profile is not None and profile.point(quantity) is None:
        sec.error("quantity", f"profile {profile.name!r} has no {quantity.value} point")
        profile = None
    if profile is None or not bus or unit < 0:
        return None
    return DemandConfig(DemandSource.POINT, quantity, "", bus, unit, profile, margin, lookahead)


def _system(sec: Section | None, fan: bool) -> SystemConfig | None:
    if sec is None:
        return None
    suffix, _ = _head_keys(fan)
    sec.check_keys({f"static_{suffix}", "design_flow_m3h", f"design_{suffix}"})
    static = sec.number(f"static_{suffix}", 0.0, minimum=0.0)
    flow = sec.number("design_flow_m3h", minimum=0.0, exclusive_minimum=True) / 3600.0
    head = sec.number(f"design_{suffix}", minimum=0.0, exclusive_minimum=True)
    if math.isfinite(static) and math.isfinite(head):
        sec.validate(f"static_{suffix}", static < head, f"must be below design_{suffix} ({head:g})")
    if not all(map(math.isfinite, (static, flow, head))) or static >= head:
        return None
    return SystemConfig(static, flow, head)


def _setpoint(sec: Section | None, fan: bool, system: SystemConfig | None) -> SetpointConfig | None:
    suffix, _ = _head_keys(fan)
    low_default = system.static if system is not None else 0.0
    high_default = system.design_head if system is not None else math.inf
    if sec is None:
        if system is None:
            return None
        return SetpointConfig(low_default, high_default, 0.2 * system.design_head, 0.002 * system.design_head)
    sec.check_keys({f"min_{suffix}", f"max_{suffix}", "max_slew_pct_per_min", "deadband_pct"})
    low = sec.number(f"min_{suffix}", low_default, minimum=0.0)
    high = sec.number(f"max_{suffix}", high_default, minimum=0.0)
    if math.isfinite(low) and math.isfinite(high):
        sec.validate(f"min_{suffix}", low < high, f"must be below max_{suffix} ({high:g})")
    reference = system.design_head if system is not None else high
    slew = sec.number("max_slew_pct_per_min", 20.0, minimum=0.0, exclusive_minimum=True) / 100.0 * reference
    deadband = sec.number("deadband_pct", 0.2, minimum=0.0, maximum=10.0) / 100.0 * reference
    if not all(map(math.isfinite, (low, high, slew, deadband))) or low >= high:
        return None
    return SetpointConfig(low, high, slew, deadband)


def _staging(sec: Section | None) -> StagingConfig:
    default = StagingConfig(900.0, 600.0, (0.4, 1.3), 0.01)
    if sec is None:
        return default
    sec.check_keys({"min_run_s", "min_interval_s", "bep_window_pct", "min_gain_pct"})
    run = sec.number("min_run_s", default.min_run, minimum=0.0)
    interval = sec.number("min_interval_s", default.min_interval, minimum=0.0)
    gain = sec.number("min_gain_pct", default.min_gain * 100.0, minimum=0.0, maximum=50.0) / 100.0
    window = default.bep_window
    raw = sec.raw("bep_window_pct", None)
    if raw is not None:
        ok = (isinstance(raw, list) and len(raw) == 2
              and all(isinstance(v, int | float) and not isinstance(v, bool) for v in raw))
        if ok and 0.0 <= float(raw[0]) < float(raw[1]) <= 300.0:
            window = (float(raw[0]) / 100.0, float(raw[1]) / 100.0)
        else:
            sec.error("bep_window_pct", "must be [low, high] in % of best-efficiency flow, 0 <= low < high")
    if not all(map(math.isfinite, (run, interval, gain))):
        return default
    return StagingConfig(run, interval, window, gain)


def _conventional(sec: Section | None, fan: bool) -> ConventionalConfig:
    default = ConventionalConfig(math.nan, 0.98, 0.7, 5.0)
    if sec is None:
        return default
    suffix = "pa" if fan else "m"
    sec.check_keys({f"pressure_setpoint_{suffix}", "stage_up_speed_pct", "stage_down_speed_pct",
                    "stage_delay_s"})
    setpoint = sec.number(f"pressure_setpoint_{suffix}", math.nan, minimum=0.0, exclusive_minimum=True) \
        if sec.has(f"pressure_setpoint_{suffix}") else math.nan
    up = sec.number("stage_up_speed_pct", 98.0, minimum=1.0, maximum=120.0) / 100.0
    down = sec.number("stage_down_speed_pct", 70.0, minimum=0.0, maximum=120.0) / 100.0
    if math.isfinite(up) and math.isfinite(down):
        sec.validate("stage_down_speed_pct", down < up, f"must be below stage_up_speed_pct ({up * 100:g})")
    delay = sec.number("stage_delay_s", 5.0, minimum=0.0)
    if not all(map(math.isfinite, (up, down, delay))):
        return default
    return ConventionalConfig(setpoint, up, down, delay)


def _ab_blocks(sec: Section | None, configs: Sequence[DriveConfig],
               demand: DemandConfig | None, interval: float) -> AbBlocksConfig | None:
    """The ``ab_blocks`` section: None without one (the agent keeps control all the time).

    Its intervals are the M&V record's (``mv.interval_s``, ``interval``): one record of each
    interval, labelled with the strategy that ran through it, so a block holds whole ones.

    The saving is regressed on a measured flow: a sensorless flow (estimated from power) or a
    pressure (what the agent's strategy changes) would absorb the very difference measured.
    """
    if sec is None:
        return None
    sensorless = demand is not None and demand.source is DemandSource.SENSORLESS
    if sensorless or (demand is not None and demand.quantity is Quantity.PRESSURE):
        what = "a sensorless flow, estimated from power" if sensorless \
            else "a pressure, which the agent's strategy changes"
        sec.error(None, f"A/B blocks regress power on a measured flow; this group's demand is {what}")
        return None
    sec.check_keys({"operator_share_pct", "block_s", "seed", "round_blocks"})
    share = sec.number("operator_share_pct", minimum=0.0, exclusive_minimum=True, maximum=100.0) / 100.0
    block = sec.number("block_s", minimum=0.0, exclusive_minimum=True)
    seed = sec.integer("seed", minimum=0, maximum=2**31 - 1)
    rounds = sec.integer("round_blocks", 8, minimum=2, maximum=64)
    for config in configs:
        if config.control.mode is not ControlMode.CONTROL:
            sec.error(None, f"A/B blocks hand the group back from control mode; drive {config.name!r} is in "
                            f"{config.control.mode.value} mode")
            return None
    if not all(map(math.isfinite, (share, block, interval))) or seed < 0 or rounds < 0:
        return None
    per_block = block / interval
    if not sec.validate("block_s", per_block >= 2.0 and abs(per_block - round(per_block)) < 1e-9,
                        f"must hold two or more whole M&V intervals (mv.interval_s {interval:g})"):
        return None
    try:
        BlockPlan(seed, block, share, 0.0, rounds)
    except MvError as exc:
        sec.error("operator_share_pct", str(exc))
        return None
    return AbBlocksConfig(share, block, seed, interval, rounds)


def _service(sec: Section | None, devices: dict[str, DriveConfig | SensorConfig], fan: bool) -> ServiceConfig:
    """The ``service`` section: the critical point (a drive's or a sensor's) and the restore time."""
    if sec is None:
        return ServiceConfig()
    setpoint_key = "critical_setpoint_pa" if fan else "critical_setpoint_m"  # as the conventional setpoint
    sec.check_keys({"restore_s", "critical_drive", setpoint_key})
    restore = sec.number("restore_s", math.nan, minimum=0.0, exclusive_minimum=True) \
        if sec.has("restore_s") else math.nan
    setpoint = sec.number(setpoint_key, math.nan, minimum=0.0, exclusive_minimum=True) \
        if sec.has(setpoint_key) else math.nan
    critical = sec.string("critical_drive", "")
    if critical:
        config = devices.get(critical)
        if config is None:
            sec.error("critical_drive", f"no drive or sensor {critical!r}; drives and sensors: "
                                        f"{', '.join(devices) or 'none'}")
            return ServiceConfig(restore, "", setpoint)
        valve = config.profile.point(Quantity.VALVE_POSITION) is not None
        pressure = config.profile.point(Quantity.CRITICAL_PRESSURE) is not None
        if not valve and not (pressure and sec.has(setpoint_key)):
            sec.error("critical_drive", f"profile {config.profile.name!r} of {critical!r} has no "
                                        f"{Quantity.VALVE_POSITION.value} point (the critical valve), and no "
                                        f"{Quantity.CRITICAL_PRESSURE.value} point with {setpoint_key} "
                                        "beside it")
            critical = ""
    elif sec.has(setpoint_key):
        sec.error(setpoint_key, "is the critical point's setpoint: name the critical point (critical_drive)")
    return ServiceConfig(restore, critical, setpoint)


_GROUP_KEYS = {
    "name", "drives", "control", "setpoint_drive", "demand", "system", "setpoint", "staging", "conventional",
    "ab_blocks",
    "service",
}


def _group(sec: Section, drives: dict[str, DriveConfig], buses: set[str], config_dir: Path,  # noqa: PLR0913
           profiles: dict[Path, Profile | None], issues: Issues, mv_interval: float,
           sensors: dict[str, SensorConfig]) -> GroupConfig | None:
    sec.check_keys(_GROUP_KEYS)
    name = sec.string("name")
    members = sec.names("drives", drives, "group")
    configs = [drives[m] for m in members if m in drives]
    kinds = {d.load.kind for d in configs}
    if len(kinds) > 1:
        sec.error("drives", "pumps and fans cannot share a group")
    fan = kinds == {LoadKind.FAN}
    control = sec.choice("control", GroupControl, GroupControl.SPEED)
    setpoint_drive = sec.string("setpoint_drive", members[0] if members else "")
    if sec.has("setpoint_drive"):
        sec.validate("setpoint_drive", setpoint_drive in members, "must be one of the group's drives")
    if control is GroupControl.PRESSURE_SETPOINT and setpoint_drive in drives:
        point = drives[setpoint_drive].profile.point(Quantity.PRESSURE_SETPOINT)
        if point is None or not point.writable:
            sec.error("control", f"drive {setpoint_drive!r} has no writable pressure_setpoint point in "
                                 f"profile {drives[setpoint_drive].profile.name!r}")
        elif fan and point.dimension.value == "head":
            sec.error("control", "a fan's pressure setpoint must be a pressure, not a head in m")
    if control is GroupControl.SPEED:
        for config in configs:
            point = config.profile.point(Quantity.SPEED_SETPOINT)
            if point is None or not point.writable:
                sec.error("control", f"drive {config.name!r} has no writable speed_setpoint point in "
                                     f"profile {config.profile.name!r}")
            if len(configs) > 1 and not {"run", "stop"} <= set(config.profile.control_words):
                sec.error("control", f"staging starts and stops pumps: profile {config.profile.name!r} "
                                     "needs run and stop control_words")
    if len(configs) > 1 and fan:
        sec.error("drives", "parallel staging is for pumps; give each fan its own group")
    for config in configs:
        if config.profile.point(Quantity.STATUS_WORD) is None and config.control.mode.value == "control":
            sec.error("drives", f"drive {config.name!r} has no status_word point: control mode needs "
                                "the drive to report ready, remote and running")
    demand = _demand(sec.section("demand"), drives, members, buses, config_dir, profiles, issues)
    system = _system(sec.section("system"), fan)
    setpoint = _setpoint(sec.section("setpoint", required=False), fan, system)
    staging = _staging(sec.section("staging", required=False))
    conventional = _conventional(sec.section("conventional", required=False), fan)
    devices: dict[str, DriveConfig | SensorConfig] = {**drives, **sensors}
    service = _service(sec.section("service", required=False), devices, fan)
    if demand is not None and demand.source is DemandSource.CRITICAL:
        critical = service.critical_drive
        profile = devices[critical].profile if critical else None
        if profile is None or profile.point(Quantity.CRITICAL_PRESSURE) is None:
            sec.error("demand", "source: critical needs service.critical_drive, a drive or sensor whose "
                                "profile maps critical_pressure, and valve_position or "
                                "service.critical_setpoint_*")
            demand = None
    ab_blocks = _ab_blocks(sec.section("ab_blocks", required=False), configs, demand, mv_interval)
    if (not name or not configs or len(configs) != len(members) or control is None or demand is None
            or system is None or setpoint is None):
        return None
    return GroupConfig(name, tuple(members), control, setpoint_drive, demand, system, setpoint, staging,
                       conventional, fan, ab_blocks, service)


def parse_groups(secs: Sequence[Section], drives: Sequence[DriveConfig], buses: Sequence[BusConfig],
                 config_dir: Path, profiles: dict[Path, Profile | None],
                 issues: Issues, mv_interval: float = MvConfig.interval,
                 sensors: Sequence[SensorConfig] = ()) -> tuple[GroupConfig, ...]:
    """Every group of the ``groups`` section; problems are recorded in ``issues``."""
    by_name = {d.name: d for d in drives}
    bus_names = {b.name for b in buses}
    sensor_names = {s.name: s for s in sensors}
    groups = [_group(s, by_name, bus_names, config_dir, profiles, issues, mv_interval, sensor_names)
              for s in secs]
    seen_names: set[str] = set()
    seen_drives: set[str] = set()
    for sec, group in zip(secs, groups, strict=True):
        if group is None:
            continue
        sec.validate("name", group.name not in seen_names, f"duplicate group name {group.name!r}")
        taken = seen_drives.intersection(group.drives)
        sec.validate("drives", not taken, f"{', '.join(sorted(taken))} already in another group")
        seen_names.add(group.name)
        seen_drives.update(group.drives)
    return tuple(g for g in groups if g is not None)
