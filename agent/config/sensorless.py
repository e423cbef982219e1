"""A pump drive's ``sensorless`` section: what its flow estimate may use (``agent.sensorless``).

Friendly units at the edge (m³/h, m, kW, %), SI inside. Every field is optional:

    sensorless:
      motor_class: IE3            # IEC 60034-30-1 class when motor_efficiency_pct is absent
      poles: 4                    # default: from rated_speed_rpm
      power_accuracy_pct: 2       # the drive's declared ± accuracy of its power reading
      dp_across_pump: true        # the pressure point is the pump's own differential pressure
      speed_is_shaft: false       # true if the speed point is slip compensated
      catalogue:                  # the published curve at rated speed, [m³/h, m] and [m³/h, shaft kW]
        head: [[0, 40], [30, 40.5], [60, 39], [90, 36], [120, 32], [150, 26]]
        power: [[0, 6.5], [30, 8.4], [60, 10.3], [90, 12.1], [120, 13.5], [150, 14.6]]
      clamp_on: {flow_m3h: 86.4, speed_pct: 90, power_kw: 9.8, head_m: 30.1, date: 2026-03-14}
      shutoff: {head_m: 40.2, speed_pct: 100, power_kw: 6.9, date: 2026-03-14}
"""

from __future__ import annotations

import datetime
import math

from agent.config.model import CurvePoints, LoadKind, SensorlessConfig, SpotReading
from agent.config.yamlsource import Section
from agent.motor_tables import DEFAULT_CLASS, POLES, EfficiencyClass

M3H = 1.0 / 3600.0
MIN_CATALOGUE_POINTS = 4  # a cubic through the published curve


def _curve(sec: Section, key: str, scale: float, unit: str) -> CurvePoints | None:
    if not sec.has(key):
        return None
    pairs = sec.number_pairs(key)
    if not pairs:
        return None  # number_pairs reported why
    flows = [p[0] for p in pairs]
    ok = sec.validate(key, len(pairs) >= MIN_CATALOGUE_POINTS,
                      f"needs at least {MIN_CATALOGUE_POINTS} [flow m³/h, {unit}] points, got {len(pairs)}")
    rising = all(b > a for a, b in zip(flows, flows[1:], strict=False)) and flows[0] >= 0.0
    ok = ok and sec.validate(key, rising, "flows must start at 0 or above and increase strictly")
    ok = ok and sec.validate(key, all(p[1] > 0.0 for p in pairs), f"every {unit} must be positive")
    if not ok:
        return None
    return CurvePoints(tuple(f * M3H for f in flows), tuple(p[1] * scale for p in pairs))


def _date(sec: Section) -> str:
    value = sec.raw("date", None)
    if value is None:
        sec.error("date", "is required: when the reading was taken (YYYY-MM-DD)")
        return ""
    if isinstance(value, datetime.date):
        return value.isoformat()
    if isinstance(value, str):
        try:
            return datetime.date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            pass
    sec.error("date", f"must be a date YYYY-MM-DD, got {value!r}")
    return ""


def _spot(sec: Section | None, shutoff: bool) -> SpotReading | None:
    if sec is None:
        return None
    if shutoff:
        sec.check_keys({"head_m", "speed_pct", "power_kw", "date"})
        flow = 0.0
        head = sec.number("head_m", math.nan, minimum=0.0, exclusive_minimum=True)
    else:
        sec.check_keys({"flow_m3h", "speed_pct", "power_kw", "head_m", "date"})
        flow = sec.number("flow_m3h", minimum=0.0, exclusive_minimum=True) * M3H
        head = sec.number("head_m", minimum=0.0, exclusive_minimum=True) if sec.has("head_m") else math.nan
    speed = sec.number("speed_pct", minimum=20.0, maximum=120.0) / 100.0
    power = sec.number("power_kw", minimum=0.0, exclusive_minimum=True) * 1e3
    date = _date(sec)
    if not (math.isfinite(flow) and math.isfinite(speed) and math.isfinite(power) and date):
        return None
    return SpotReading(flow, speed, power, head, date)


def parse_sensorless(sec: Section | None, kind: LoadKind) -> SensorlessConfig:
    """A drive's ``sensorless`` section (defaults without one); located issues for bad fields."""
    if sec is None:
        return SensorlessConfig()
    sec.check_keys({"motor_class", "poles", "power_accuracy_pct", "dp_across_pump", "speed_is_shaft",
                    "catalogue", "clamp_on", "shutoff"})
    if kind is LoadKind.FAN:
        sec.error(None, "sensorless flow is estimated for pumps only (a fan's load kind is fan)")
    motor_class = sec.choice("motor_class", EfficiencyClass, DEFAULT_CLASS) or DEFAULT_CLASS
    poles = sec.integer("poles", 0, minimum=2, maximum=6) if sec.has("poles") else 0
    if poles > 0:
        sec.validate("poles", poles in POLES, f"must be one of {', '.join(map(str, POLES))}, got {poles}")
    accuracy = sec.number("power_accuracy_pct", 2.0, minimum=0.1, maximum=20.0) / 100.0
    catalogue = sec.section("catalogue", required=False)
    head = power = None
    if catalogue is not None:
        catalogue.check_keys({"head", "power"})
        head = _curve(catalogue, "head", 1.0, "head m")
        power = _curve(catalogue, "power", 1e3, "shaft power kW")
    return SensorlessConfig(
        motor_class=motor_class,
        poles=poles if poles in POLES else 0,
        power_accuracy=accuracy if math.isfinite(accuracy) else 0.02,
        dp_across_pump=sec.boolean("dp_across_pump", False),
        speed_is_shaft=sec.boolean("speed_is_shaft", False),
        catalogue_head=head,
        catalogue_power=power,
        clamp_on=_spot(sec.section("clamp_on", required=False), shutoff=False),
        shutoff=_spot(sec.section("shutoff", required=False), shutoff=True),
    )
