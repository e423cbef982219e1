"""Site configuration: parsed once from YAML into frozen, SI-unit objects.

Friendly units live only in the YAML keys (``rated_power_kw``, ``rated_flow_m3h``);
everything this module returns is SI. Every problem in the config and the
profiles it names is reported at once, located, by ``ConfigError``.

Long because it is the one parser of the site file's sections (site, tariff, polling, buses of
three transports, drives, baselines, loads): each is a short function beside the others, and
splitting them would scatter one file's grammar over several modules.
"""

from __future__ import annotations

import math
import re
from datetime import tzinfo
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from agent.config.groups import parse_groups, parse_optimizer
from agent.config.model import (
    BASELINE_TEST_REF,
    TABLE_BASELINES,
    AgentConfig,
    BaselineConfig,
    BaselineMethod,
    BusConfig,
    ControlConfig,
    ControlMode,
    DriveConfig,
    LoadConfig,
    LoadKind,
    MvConfig,
    SensorConfig,
    SiteConfig,
    Tariff,
    Transport,
)
from agent.config.profile import PollRate, Profile, Quantity, profile_for
from agent.config.schedule import MINUTES_PER_DAY, Period, Schedule
from agent.config.sensorless import parse_sensorless
from agent.config.yamlsource import Issues, Section, load_yaml
from agent.errors import ConfigError
from agent.modbus.rtu import STANDARD_BAUDRATES
from agent.mv.baseline import TimeOfWeek
from agent.units import KWH_TO_J, RPM_TO_RAD_S

DEFAULT_METRICS_PORT = 9847
# s a drive is assumed to take to answer, beyond the wire time, until the poller has measured it
# (real drives: 5..45 ms, a busy one up to 500 ms). None unless configured, so a budget that fit
# before still fits; check-config says which turnaround it charged.
DEFAULT_TURNAROUND_S = 0.0


WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_TIME_OF_DAY = re.compile(r"^([01]?\d|2[0-4]):([0-5]\d)$")



def parse_listen(text: str) -> tuple[str, int]:
    """Split ``HOST:PORT`` (IPv6 as ``[::1]:PORT``); ValueError says why not."""
    host, sep, port_text = text.rpartition(":")
    if not sep or not host or not port_text.isdigit():
        raise ValueError(f"expected HOST:PORT, got {text!r}")
    port = int(port_text)
    if not 0 <= port <= 65535:
        raise ValueError(f"port must be in 0..65535, got {port}")
    return host.strip("[]"), port


def _local_timezone() -> tzinfo:
    from datetime import datetime

    return datetime.now().astimezone().tzinfo or ZoneInfo("UTC")


def _minutes(sec: Section, key: str, text: object) -> int | None:
    match = _TIME_OF_DAY.match(text) if isinstance(text, str) else None
    if match is None or int(match.group(1)) * 60 + int(match.group(2)) > MINUTES_PER_DAY:
        sec.error(key, f"must be a time of day \"HH:MM\" between 00:00 and 24:00, got {text!r}")
        return None
    return int(match.group(1)) * 60 + int(match.group(2))


def _schedule(sec: Section, default: float, periods_key: str, value_key: str, factor: float) -> Schedule:
    """A default value (already in SI) and optional daily periods, each ``value_key`` × factor."""
    periods: list[Period] = []
    for period in sec.sections(periods_key, required=False):
        period.check_keys({"start", "end", "days", value_key})
        start = _minutes(period, "start", period.raw("start"))
        end = _minutes(period, "end", period.raw("end"))
        value = period.number(value_key, minimum=0.0)
        days_raw = period.raw("days", list(WEEKDAYS))
        days: set[int] = set()
        if not isinstance(days_raw, list) or not days_raw:
            period.error("days", f"must be a list of weekdays ({', '.join(WEEKDAYS)})")
        else:
            for day in days_raw:
                if day in WEEKDAYS:
                    days.add(WEEKDAYS.index(day))
                else:
                    period.error("days", f"unknown weekday {day!r}; use {', '.join(WEEKDAYS)}")
        if start is not None and end is not None and start % MINUTES_PER_DAY == end % MINUTES_PER_DAY:
            period.error("end", "must differ from start")
        elif start is not None and end is not None and math.isfinite(value) and days:
            periods.append(Period(start, end, frozenset(days), value * factor))
    return Schedule(default, tuple(periods))


def _site(sec: Section | None) -> SiteConfig:
    if sec is None:
        return SiteConfig("", Schedule(math.nan), Tariff("", Schedule(math.nan)), ZoneInfo("UTC"))
    sec.check_keys({"name", "timezone", "grid_emission_factor_kg_per_kwh", "grid_emission_periods", "tariff"})
    name = sec.string("name")
    timezone: tzinfo = _local_timezone()
    if sec.has("timezone"):
        zone = sec.string("timezone")
        try:
            timezone = ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            sec.error("timezone", f"unknown time zone {zone!r}; use an IANA name such as Europe/Berlin")
    factor = sec.number("grid_emission_factor_kg_per_kwh", minimum=0.0, maximum=5.0)
    emission = _schedule(sec, factor / KWH_TO_J, "grid_emission_periods", "kg_per_kwh", 1.0 / KWH_TO_J)
    tariff_sec = sec.section("tariff")
    tariff = Tariff("", Schedule(math.nan))
    if tariff_sec is not None:
        tariff_sec.check_keys({"currency", "price_per_kwh", "periods"})
        currency = tariff_sec.string("currency")
        if currency and not (currency.isalpha() and len(currency) == 3 and currency.isupper()):
            tariff_sec.error("currency", f"must be an ISO 4217 code such as EUR, got {currency!r}")
        price = tariff_sec.number("price_per_kwh", minimum=0.0)
        tariff = Tariff(currency, _schedule(tariff_sec, price / KWH_TO_J, "periods", "price_per_kwh",
                                            1.0 / KWH_TO_J))
    return SiteConfig(name, emission, tariff, timezone)


_LINE_KEYS = ("baudrate", "parity", "stopbits", "inter_frame_delay_s")  # an RS-485 line's settings
_FIELDS = {  # the fields of each transport beside the common ones
    Transport.TCP: ("host", "port"),
    Transport.RTU: ("device", *_LINE_KEYS),
    Transport.RTU_OVER_TCP: ("host", "port", *_LINE_KEYS),
}


def _bus(sec: Section, polling: dict[str, float]) -> BusConfig:
    sec.check_keys({
        "name", "transport", "host", "port", "poll_interval_s", "timeout_s", "retries",
        "reconnect_delay_max_s", "max_gap", "turnaround_s", "device", *_LINE_KEYS,
    })
    name = sec.string("name")
    chosen = sec.choice("transport", Transport, Transport.TCP)
    transport = chosen or Transport.TCP
    for key in ("device", *_FIELDS[Transport.RTU_OVER_TCP]) if chosen else ():
        sec.validate(key, key in _FIELDS[transport] or not sec.has(key),
                     f"is not a field of a {transport.value} bus")
    host = sec.string("host") if chosen and transport.socket else ""
    if chosen is Transport.RTU_OVER_TCP:
        # No default: a serial server's raw TCP port is its own (4001 on a Moxa NPort), and 502
        # is likely a Modbus TCP service that would take RTU frames for garbage.
        sec.validate("port", sec.has("port"), "is required for an rtu_over_tcp bus: the serial server's "
                     "TCP port for this serial port (e.g. 4001 on a Moxa NPort in TCP server mode)")
    port = sec.integer("port", 502, minimum=1, maximum=65535) if transport.socket else 0
    device = sec.string("device") if chosen is Transport.RTU else ""
    baudrate = sec.integer("baudrate", 19200, minimum=1200, maximum=115200)
    if baudrate > 0:
        sec.validate("baudrate", baudrate in STANDARD_BAUDRATES,
                     f"must be one of {', '.join(map(str, STANDARD_BAUDRATES))}, got {baudrate}")
    parity = sec.string("parity", "E")
    if parity:
        sec.validate("parity", parity in ("N", "E", "O"), f"must be N, E or O, got {parity!r}")
    stopbits = sec.integer("stopbits", 1, minimum=1, maximum=2)
    frame_delay = sec.number("inter_frame_delay_s", 0.0, minimum=0.0, maximum=1.0)
    max_gap = sec.integer("max_gap", 0, minimum=0, maximum=124) if sec.has("max_gap") else None
    interval = sec.number("poll_interval_s", polling["interval"], minimum=0.05, maximum=3600.0)
    timeout = sec.number("timeout_s", polling["timeout"], minimum=0.01, maximum=60.0)
    retries = sec.integer("retries", int(polling["retries"]), minimum=0, maximum=10)
    if all(math.isfinite(v) for v in (interval, timeout)) and retries >= 0:
        sec.validate(
            "timeout_s", timeout * (retries + 1) < interval,
            f"timeout_s × (retries + 1) = {timeout * (retries + 1):g} s must be below "
            f"poll_interval_s = {interval:g} s, or one dead drive overruns every cycle",
        )
    backoff = sec.number("reconnect_delay_max_s", 30.0, minimum=0.1, maximum=3600.0)
    turnaround = sec.number("turnaround_s", polling["turnaround"], minimum=0.0, maximum=10.0)
    return BusConfig(name, transport, host, port, interval, timeout, retries,
                     backoff, device, max(baudrate, 0), parity or "E", max(stopbits, 1),
                     frame_delay if math.isfinite(frame_delay) else 0.0,
                     max_gap if max_gap is None or max_gap >= 0 else None,
                     turnaround if math.isfinite(turnaround) else DEFAULT_TURNAROUND_S)


def parse_load(sec: Section | None) -> LoadConfig:
    if sec is None:
        return LoadConfig(LoadKind.PUMP, math.nan, math.nan, math.nan)
    kind = sec.choice("kind", LoadKind)
    if kind is LoadKind.FAN:
        sec.check_keys({"kind", "rated_flow_m3h", "rated_pressure_pa"})
        head, pressure = math.nan, sec.number("rated_pressure_pa", minimum=0.0, exclusive_minimum=True)
    else:
        sec.check_keys({"kind", "rated_flow_m3h", "rated_head_m"})
        head, pressure = sec.number("rated_head_m", minimum=0.0, exclusive_minimum=True), math.nan
    flow = sec.number("rated_flow_m3h", minimum=0.0, exclusive_minimum=True) / 3600.0
    return LoadConfig(kind or LoadKind.PUMP, flow, head, pressure)


def parse_baseline(sec: Section | None, rated_power: float, kind: LoadKind | None = None) -> BaselineConfig:
    """The baseline section of a drive (or of a simulated drive).

    Without a ``table`` the method's default table applies (kernels.baselines: the
    SINAMICS factory characteristic, and fan-practice damper and inlet-vane curves).
    """
    if sec is None:
        return BaselineConfig(BaselineMethod.CHARACTERISTIC, math.nan, (), ())
    sec.check_keys({"method", "power_kw", "table", "measured_by", "accuracy_pct"})
    method = sec.choice("method", BaselineMethod)
    if method is BaselineMethod.THROTTLE and kind is LoadKind.FAN:
        sec.error("method", "throttle is for pumps; a fan's baseline is damper or inlet_vane")
    if method in (BaselineMethod.DAMPER, BaselineMethod.INLET_VANE) and kind is LoadKind.PUMP:
        sec.error("method", f"{method.value} is for fans; a pump's baseline is throttle")
    power = math.nan
    table: tuple[tuple[float, float], ...] = ()
    if method is BaselineMethod.CONSTANT:
        power = sec.number("power_kw", rated_power / 1e3, minimum=0.0) * 1e3
    measured_by = sec.string("measured_by", None)
    if measured_by and method is not BaselineMethod.CONSTANT:
        sec.error("measured_by", "only a constant baseline's power_kw can be a measured comparison power")
    elif measured_by == BASELINE_TEST_REF and sec.has("power_kw"):
        sec.error("power_kw", "measured_by: baseline_test takes the power from the ledger's newest baseline "
                              "test of the drive; give one or the other")
    elif measured_by and measured_by != BASELINE_TEST_REF and not sec.has("power_kw"):
        sec.error("measured_by", "a measured comparison power needs its power_kw (or measured_by: "
                                 "baseline_test)")
    if method in TABLE_BASELINES and sec.has("table"):
        axis = "speed" if method is BaselineMethod.CHARACTERISTIC else "flow"
        pairs = sec.number_pairs("table")
        xs = [p[0] for p in pairs]
        if not pairs:
            pass  # number_pairs reported why
        elif len(pairs) < 2 or any(b <= a for a, b in zip(xs, xs[1:], strict=False)):
            sec.error("table", f"needs at least 2 points with strictly increasing {axis} %")
        elif xs[0] < 0 or xs[-1] > 200 or any(p[1] < 0 for p in pairs):
            sec.error("table", f"{axis} % must lie in 0..200 and power % must not be negative")
        else:
            table = tuple(pairs)
    elif sec.has("table"):
        sec.error("table", f"only {', '.join(m.value for m in TABLE_BASELINES)} baselines take a table")
    xs_pct, ys_pct = (tuple(x) for x in zip(*table, strict=True)) if table else ((), ())
    accuracy = sec.number("accuracy_pct", 100.0 * BaselineConfig.accuracy, minimum=0.0, maximum=50.0) / 100.0
    return BaselineConfig(method or BaselineMethod.CHARACTERISTIC, power, xs_pct, ys_pct, measured_by,
                          accuracy if math.isfinite(accuracy) else BaselineConfig.accuracy)


def _control(sec: Section | None) -> ControlConfig:
    if sec is None:
        return ControlConfig(ControlMode.MONITOR, 0.0, 1.0)
    sec.check_keys({"mode", "min_speed_pct", "max_speed_pct", "max_slew_pct_per_min", "writes_per_hour",
                    "restore_on_stop", "deadband_pct"})
    mode = sec.choice("mode", ControlMode, ControlMode.MONITOR)
    low = sec.number("min_speed_pct", 0.0, minimum=0.0, maximum=120.0)
    high = sec.number("max_speed_pct", 100.0, minimum=0.0, maximum=120.0)
    if math.isfinite(low) and math.isfinite(high):
        sec.validate("min_speed_pct", low < high, f"must be below max_speed_pct ({high:g})")
    slew = sec.number("max_slew_pct_per_min", 20.0, minimum=0.0, maximum=1e5, exclusive_minimum=True)
    budget = sec.integer("writes_per_hour", 120, minimum=1, maximum=100000)
    restore = sec.boolean("restore_on_stop", True)
    deadband = sec.number("deadband_pct", 0.5, minimum=0.0, maximum=10.0)
    return ControlConfig(mode or ControlMode.MONITOR, low / 100.0, high / 100.0, slew / 100.0, max(budget, 1),
                         restore, deadband / 100.0)


def _drive(
    sec: Section, config_dir: Path, profiles: dict[Path, Profile | None], issues: Issues
) -> DriveConfig | None:
    sec.check_keys({
        "name", "bus", "unit", "profile", "rated_power_kw", "rated_speed_rpm", "load", "baseline",
        "control", "motor_efficiency_pct", "poll", "sensorless",
    })
    name = sec.string("name")
    bus = sec.string("bus")
    unit = sec.unit_id("unit")
    profile_name = sec.string("profile")
    rated_power = sec.number("rated_power_kw", minimum=0.0, exclusive_minimum=True) * 1e3
    rated_speed = sec.number("rated_speed_rpm", minimum=0.0, exclusive_minimum=True) * RPM_TO_RAD_S
    load = parse_load(sec.section("load"))
    baseline = parse_baseline(sec.section("baseline", required=False), rated_power, load.kind)
    control = _control(sec.section("control", required=False))
    motor_efficiency = sec.number("motor_efficiency_pct", math.nan, minimum=50.0, maximum=99.9) / 100.0 \
        if sec.has("motor_efficiency_pct") else math.nan
    sensorless = parse_sensorless(sec.section("sensorless", required=False), load.kind)
    profile = profile_for(sec, profile_name, config_dir, profiles, issues) if profile_name else None
    if profile is not None:
        profile = _poll_rates(sec, profile)
    if profile is not None:
        status = profile.point(Quantity.STATUS_WORD)
        control_mode = control.mode is ControlMode.CONTROL
        if control_mode and status is not None and status.rate is not PollRate.FAST:
            sec.error("poll", "a drive in control mode needs its status_word read fast: its fault bit "
                              "hands control back")
        _check_profile_fits(sec, profile, baseline)
    if profile is None or not name or not bus or unit < 0 or not math.isfinite(rated_power + rated_speed):
        return None
    return DriveConfig(name, bus, unit, profile, rated_power, rated_speed, load, baseline, control,
                       motor_efficiency, sensorless)


def _sensor(sec: Section, config_dir: Path, profiles: dict[Path, Profile | None],
            issues: Issues) -> SensorConfig | None:
    """A device polled for its points only (a group's critical point): no energy, no control.

    Its profile maps the critical point (``critical_pressure``, ``valve_position``); a sensor is
    polled by its bus's poller and its data is fresh by the drives' one rule.
    """
    sec.check_keys({"name", "bus", "unit", "profile"})
    name, bus, unit = sec.string("name"), sec.string("bus"), sec.unit_id("unit")
    profile_name = sec.string("profile")
    profile = profile_for(sec, profile_name, config_dir, profiles, issues) if profile_name else None
    critical = (Quantity.CRITICAL_PRESSURE, Quantity.VALVE_POSITION)
    if profile is not None and all(profile.point(q) is None for q in critical):
        sec.error("profile", f"profile {profile.name!r} maps neither critical_pressure nor valve_position: "
                             "a sensor is read for a group's critical point")
        profile = None
    if profile is None or not name or not bus or unit < 0:
        return None
    return SensorConfig(name, bus, unit, profile)


def _poll_rates(sec: Section, profile: Profile) -> Profile | None:
    """The drive's ``poll`` section: rate classes of its profile's points, and the slow class's period.

    ``poll: {rates: {status_word: slow, fault_code: slow}, slow_every: 10}``; a quantity the
    profile does not map is an error, as is a control drive whose status word is not read fast
    (its fault bit hands control back: it must be as fresh as the speed it guards).
    """
    poll = sec.section("poll", required=False)
    if poll is None:
        return profile
    poll.check_keys({"rates", "slow_every"})
    slow_every = poll.integer("slow_every", minimum=1, maximum=3600) if poll.has("slow_every") else None
    rates: dict[Quantity, PollRate] = {}
    rates_sec = poll.section("rates", required=False)
    if rates_sec is not None:
        for key in rates_sec.data:
            quantity = next((q for q in Quantity if q.value == key), None)
            if quantity is None or profile.point(quantity) is None:
                rates_sec.error(str(key), f"profile {profile.name!r} has no {key} point")
                continue
            rate = rates_sec.choice(str(key), PollRate)
            if rate is not None:
                rates[quantity] = rate
    if slow_every is not None and slow_every < 1:
        return None
    return profile.with_rates(rates, slow_every)


def _check_profile_fits(sec: Section, profile: Profile, baseline: BaselineConfig) -> None:
    """The profile must provide what the drive's features read."""
    if profile.point(Quantity.POWER) is None:
        sec.error("profile", f"profile {profile.name!r} has no power point; energy needs one")
    for quantity in (Quantity.POWER, Quantity.ENERGY):
        point = profile.point(quantity)
        if point is not None and point.rate is not PollRate.FAST:
            sec.error("poll", f"{quantity.value} must be read fast (every interval): energy is integrated "
                              f"from it, and is {point.rate.value} in profile {profile.name!r} or poll.rates")
    needs_speed = baseline.method is not BaselineMethod.CONSTANT and profile.point(Quantity.FLOW) is None
    if needs_speed and profile.point(Quantity.SPEED) is None:
        sec.error("profile", f"profile {profile.name!r} has neither a speed nor a flow point; "
                             f"the {baseline.method.value} baseline needs one")


def parse_config(sec: Section, config_dir: Path, issues: Issues) -> AgentConfig | None:
    """Build the config from the top-level section; None if anything was wrong."""
    sec.check_keys({"site", "metrics", "storage", "polling", "buses", "drives", "sensors", "optimizer",
                    "groups", "mv"})
    site = _site(sec.section("site"))
    host, port = "127.0.0.1", DEFAULT_METRICS_PORT
    metrics = sec.section("metrics", required=False)
    if metrics is not None:
        metrics.check_keys({"listen"})
        listen = metrics.string("listen", f"{host}:{port}")
        try:
            host, port = parse_listen(listen)
        except ValueError as exc:
            metrics.error("listen", str(exc))
    storage = sec.section("storage", required=False)
    storage_path = Path("/var/lib/vfd-agent")
    flush_interval = 10.0
    if storage is not None:
        storage.check_keys({"path", "flush_interval_s"})
        flush_interval = storage.number("flush_interval_s", 10.0, minimum=0.5, maximum=3600.0)
        storage_path = Path(storage.string("path", str(storage_path)))
        if not storage_path.is_absolute():
            storage_path = config_dir / storage_path
    polling_sec = sec.section("polling", required=False)
    polling = {"interval": 1.0, "timeout": 0.5, "retries": 0.0, "max_gap": 5.0,
               "turnaround": DEFAULT_TURNAROUND_S}
    if polling_sec is not None:
        polling_sec.check_keys({"interval_s", "timeout_s", "retries", "max_gap_s", "turnaround_s"})
        polling["turnaround"] = polling_sec.number("turnaround_s", DEFAULT_TURNAROUND_S, minimum=0.0,
                                                   maximum=10.0)
        polling["interval"] = polling_sec.number("interval_s", 1.0, minimum=0.05, maximum=3600.0)
        polling["timeout"] = polling_sec.number("timeout_s", 0.5, minimum=0.01, maximum=60.0)
        polling["retries"] = float(polling_sec.integer("retries", 0, minimum=0, maximum=10))
        polling["max_gap"] = polling_sec.number("max_gap_s", 5.0, minimum=0.0, exclusive_minimum=True)
    bus_secs = list(sec.sections("buses"))
    buses = [_bus(b, polling) for b in bus_secs]
    profiles: dict[Path, Profile | None] = {}
    drive_secs = list(sec.sections("drives"))
    drives = [_drive(d, config_dir, profiles, issues) for d in drive_secs]
    sensor_secs = list(sec.sections("sensors", required=False))
    parsed = (_sensor(s, config_dir, profiles, issues) for s in sensor_secs)
    sensors = tuple(s for s in parsed if s is not None)
    _cross_checks(sec, bus_secs, drive_secs, sensor_secs)
    optimizer = parse_optimizer(sec.section("optimizer", required=False))
    mv = _mv(sec.section("mv", required=False))
    groups = parse_groups(list(sec.sections("groups", required=False)), [d for d in drives if d is not None],
                          buses, config_dir, profiles, issues, mv.interval, sensors)
    if issues.items:
        return None
    return AgentConfig(
        source=sec.file, site=site, metrics_host=host, metrics_port=port,
        storage_path=storage_path, flush_interval=flush_interval, max_gap=polling["max_gap"],
        buses=tuple(buses),
        drives=tuple(d for d in drives if d is not None), groups=groups, optimizer=optimizer, mv=mv,
        sensors=sensors,
    )


def _mv(sec: Section | None) -> MvConfig:
    """The ``mv`` section (all defaults without one)."""
    if sec is None:
        return MvConfig()
    sec.check_keys({"interval_s", "baseline_intervals", "time_of_week"})
    default = MvConfig()
    interval = sec.number("interval_s", default.interval, minimum=0.1, maximum=86400.0)  # scenarios scale it
    count = sec.integer("baseline_intervals", default.baseline_intervals, minimum=12, maximum=100000)
    tow = sec.choice("time_of_week", TimeOfWeek, default.time_of_week)
    if not math.isfinite(interval) or count < 12 or tow is None:
        return default  # the issue is recorded: the config is refused
    return MvConfig(interval, count, tow)


def _check_serial_server(bus_sec: Section, sockets: dict[tuple[str, int], str]) -> None:
    """A serial server's port is one RS-485 line: no second bus may share it (one line, one master)."""
    transport, host, port = (bus_sec.data.get(k) for k in ("transport", "host", "port"))
    transport = transport or Transport.TCP.value
    if not isinstance(host, str) or transport not in (Transport.TCP.value, Transport.RTU_OVER_TCP.value):
        return
    where = (host, port if isinstance(port, int) else 502)
    earlier = sockets.get(where)
    if earlier is None:
        sockets[where] = transport
    elif Transport.RTU_OVER_TCP.value in (transport, earlier):
        bus_sec.error("port", f"{host}:{where[1]} is already a bus; a serial server's port is one RS-485 "
                      "line, with one master")


def _cross_checks(sec: Section, bus_secs: list[Section], drive_secs: list[Section],
                  sensor_secs: list[Section]) -> None:
    seen_bus: set[str] = set()
    seen_devices: set[str] = set()
    sockets: dict[tuple[str, int], str] = {}  # HOST:PORT of each socket bus -> its transport
    for bus_sec in bus_secs:
        bus_name = bus_sec.data.get("name")
        if isinstance(bus_name, str):
            bus_sec.validate("name", bus_name not in seen_bus, f"duplicate bus name {bus_name!r}")
            seen_bus.add(bus_name)
        device = bus_sec.data.get("device")
        if isinstance(device, str) and bus_sec.data.get("transport") == "rtu":
            # One line, one master: two pollers on one port would garble each other's frames.
            bus_sec.validate("device", device not in seen_devices, f"device {device!r} is already a bus")
            seen_devices.add(device)
        _check_serial_server(bus_sec, sockets)
    bus_names = sorted(seen_bus)
    seen_names: set[str] = set()
    seen_units: set[tuple[str, int]] = set()
    for drive in drive_secs + sensor_secs:  # one name space and one unit per address, drives and sensors
        name, bus, unit = drive.data.get("name"), drive.data.get("bus"), drive.data.get("unit")
        if isinstance(name, str):
            drive.validate("name", name not in seen_names, f"duplicate drive or sensor name {name!r}")
            seen_names.add(name)
        if isinstance(bus, str) and bus not in seen_bus:
            drive.error("bus", f"no bus named {bus!r}; buses: {', '.join(bus_names) or 'none'}")
        if isinstance(bus, str) and isinstance(unit, int):
            drive.validate("unit", (bus, unit) not in seen_units,
                           f"unit {unit} is already used on bus {bus!r}")
            seen_units.add((bus, unit))
    if not drive_secs and "drives" in sec.data:
        sec.error("drives", "must list at least one drive")


def load_config(path: Path) -> AgentConfig:
    """Read and validate a site config and every profile it names; ConfigError on any problem."""
    issues = Issues()
    sec = load_yaml(path, issues)
    config = parse_config(sec, path.resolve().parent, issues) if sec is not None else None
    issues.raise_if_any()
    if config is None:  # pragma: no cover - parse_config returns None only with issues
        raise ConfigError([])
    return config
