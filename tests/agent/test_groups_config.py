"""The ``groups`` and ``optimizer`` sections and the guard rails of ``control``: parsed, or located errors."""

from __future__ import annotations

import math
import textwrap
from pathlib import Path

import pytest

from agent.config import ControlMode, load_config
from agent.config.model import DemandSource, GroupControl
from agent.config.profile import Quantity
from agent.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]
PROCESS = REPO / "configs" / "plants" / "profiles" / "generic-process.yaml"

HEAD = """\
site: {name: t, grid_emission_factor_kg_per_kwh: 0.5, tariff: {currency: EUR, price_per_kwh: 0.2}}
buses: [{name: b, host: 127.0.0.1, port: 5020}]
drives:
"""


def drive(name: str, unit: int, profile: Path | str = PROCESS, kind: str = "pump",
          mode: str = "control") -> str:
    rated = "rated_head_m: 32" if kind == "pump" else "rated_pressure_pa: 800"
    return textwrap.indent(textwrap.dedent(f"""\
        - name: {name}
          bus: b
          unit: {unit}
          profile: {profile}
          rated_power_kw: 15
          rated_speed_rpm: 1470
          motor_efficiency_pct: 93
          load: {{kind: {kind}, rated_flow_m3h: 120, {rated}}}
          control: {{mode: {mode}, min_speed_pct: 30, max_slew_pct_per_min: 15, writes_per_hour: 60,
                     restore_on_stop: false, deadband_pct: 0.3}}
        """), "  ")


def write(tmp_path: Path, drives: str, groups: str, extra: str = "") -> Path:
    path = tmp_path / "site.yaml"
    path.write_text(HEAD + drives + extra + "groups:\n" + textwrap.indent(textwrap.dedent(groups), "  "),
                    encoding="utf-8")
    return path


def issues(path: Path) -> list[str]:
    with pytest.raises(ConfigError) as error:
        load_config(path)
    return [str(i) for i in error.value.issues]


def test_a_parallel_group_with_every_section(tmp_path):
    path = write(tmp_path, drive("p1", 1) + drive("p2", 2), """\
        - name: chw
          drives: [p1, p2]
          control: speed
          demand: {drive: p1, quantity: process_flow, margin_pct: 1.5, lookahead_s: 90}
          system: {static_head_m: 9.6, design_flow_m3h: 240, design_head_m: 32}
          staging: {min_run_s: 600, min_interval_s: 300, bep_window_pct: [50, 120], min_gain_pct: 2}
          conventional: {pressure_setpoint_m: 30, stage_up_speed_pct: 97, stage_down_speed_pct: 80,
                         stage_delay_s: 30}
        """, extra="optimizer: {interval_s: 30, min_samples: 100, min_r_squared: 0.95, "
                   "min_flow_span_pct: 20}\n")
    config = load_config(path)
    assert config.optimizer.interval == 30 and config.optimizer.min_samples == 100
    assert config.optimizer.min_flow_span == pytest.approx(0.2)
    (group,) = config.groups
    assert group.drives == ("p1", "p2") and group.control is GroupControl.SPEED and not group.fan
    assert group.demand.source is DemandSource.POINT and group.demand.quantity is Quantity.PROCESS_FLOW
    assert group.demand.margin == pytest.approx(0.015) and group.demand.lookahead == 90
    assert group.system.static == 9.6 and group.system.design_flow == pytest.approx(240 / 3600)
    assert group.system.k == pytest.approx((32 - 9.6) / (240 / 3600) ** 2)
    assert group.staging.bep_window == (0.5, 1.2) and group.staging.min_gain == pytest.approx(0.02)
    assert group.conventional.pressure_setpoint == 30
    assert group.conventional.stage_up_ratio == pytest.approx(0.97)
    # The setpoint section defaults to the system: never below the static head, never above the design.
    assert (group.setpoint.minimum, group.setpoint.maximum) == (9.6, 32.0)
    control = config.drives[0].control
    assert control.mode is ControlMode.CONTROL and control.slew_per_min == pytest.approx(0.15)
    assert control.writes_per_hour == 60 and control.restore is False
    assert control.deadband == pytest.approx(0.003)
    assert config.drives[0].motor_efficiency == pytest.approx(0.93)


def test_defaults_without_optimizer_staging_or_conventional_sections(tmp_path):
    path = write(tmp_path, drive("p1", 1), """\
        - name: booster
          drives: [p1]
          demand: {source: sensorless}
          system: {design_flow_m3h: 120, design_head_m: 32}
        """)
    config = load_config(path)
    (group,) = config.groups
    assert config.optimizer.interval == 60.0
    assert group.control is GroupControl.SPEED and group.setpoint_drive == "p1"
    assert group.demand.source is DemandSource.SENSORLESS and math.isnan(group.demand.lookahead)
    assert math.isnan(group.conventional.pressure_setpoint)  # read from the drive before the first write
    assert group.system.static == 0.0


def test_a_fan_pressure_loop_in_pascals(tmp_path):
    path = write(tmp_path, drive("fan", 1, kind="fan"), """\
        - name: duct
          drives: [fan]
          control: pressure_setpoint
          demand: {drive: fan, quantity: process_flow}
          system: {static_pressure_pa: 200, design_flow_m3h: 30000, design_pressure_pa: 800}
          setpoint: {min_pressure_pa: 250, max_pressure_pa: 750, max_slew_pct_per_min: 10}
        """)
    (group,) = load_config(path).groups
    assert group.fan and group.control is GroupControl.PRESSURE_SETPOINT
    assert (group.setpoint.minimum, group.setpoint.maximum) == (250.0, 750.0)
    assert group.setpoint.slew_per_min == pytest.approx(80.0)  # 10 % of the design pressure per minute


def test_a_critical_point_and_a_demand_without_a_flow_meter(tmp_path):
    path = write(tmp_path, drive("p1", 1), """\
        - name: chw
          drives: [p1]
          demand: {source: critical}
          system: {design_flow_m3h: 120, design_head_m: 32}
          service: {critical_drive: p1, restore_s: 30}
        """)
    (group,) = load_config(path).groups
    assert group.demand.source is DemandSource.CRITICAL and group.demand.quantity is Quantity.PRESSURE
    assert group.service.critical_drive == "p1" and group.service.restore_s == 30.0


def test_a_demand_from_another_device_on_a_bus(tmp_path):
    path = write(tmp_path, drive("p1", 1), """\
        - name: g
          drives: [p1]
          demand: {bus: b, unit: 9, profile: generic-process, quantity: flow}
          system: {design_flow_m3h: 120, design_head_m: 32}
        """)
    (profiles := tmp_path / "profiles").mkdir()
    (profiles / "generic-process.yaml").write_text(PROCESS.read_text(encoding="utf-8"), encoding="utf-8")
    (group,) = load_config(path).groups
    assert (group.demand.bus, group.demand.unit, group.demand.drive) == ("b", 9, "")
    assert group.demand.profile is not None and group.demand.quantity is Quantity.FLOW


@pytest.mark.parametrize(("fields", "message"), [
    ({"drives": "[p1, ghost]"}, "groups[0].drives: no drive 'ghost'"),
    ({"drives": "[p1, p1]"}, "groups[0].drives: a drive is listed twice"),
    ({"control": "sideways"}, "groups[0].control: must be one of"),
    ({"control": "pressure_setpoint", "setpoint_drive": "p2"}, "groups[0].setpoint_drive: must be one of"),
    ({"service": "{critical_drive: ghost}"}, "groups[0].service.critical_drive: no drive or sensor 'ghost'"),
    ({"service": "{critical_drive: p3}"}, "groups[0].service.critical_drive: profile 'generic' of 'p3' "
                                          "has no valve_position point"),
    ({"service": "{critical_setpoint_m: 4}"},
     "groups[0].service.critical_setpoint_m: is the critical point's"),
    ({"service": "{critical_drive: p1, critical_setpoint_pa: 4}"},
     "groups[0].service.critical_setpoint_pa: unknown field"),
    ({"demand": "{source: critical}"}, "groups[0].demand: source: critical needs service.critical_drive"),
])
def test_group_mistakes_are_located(tmp_path, fields, message):
    group = {"name": "g", "drives": "[p1]", "demand": "{drive: p1}",
             "system": "{static_head_m: 5, design_flow_m3h: 120, design_head_m: 32}", **fields}
    lines = [f"{'- ' if i == 0 else '  '}{key}: {value}" for i, (key, value) in enumerate(group.items())]
    path = write(tmp_path, drive("p1", 1) + drive("p2", 2) + drive("p3", 3, "generic", mode="monitor"),
                 "\n".join(lines) + "\n")
    found = issues(path)
    assert any(message in i for i in found), found


def test_control_needs_writable_points_status_and_control_words(tmp_path):
    path = write(tmp_path, drive("p1", 1, profile="generic") + drive("p2", 2, profile="generic"), """\
        - name: g
          drives: [p1, p2]
          control: pressure_setpoint
          demand: {drive: p1, quantity: process_flow}
          system: {design_flow_m3h: 240, design_head_m: 32}
        """)
    found = issues(path)
    assert any("no writable pressure_setpoint point" in i for i in found), found
    assert any("has no process_flow point" in i for i in found), found


def test_other_mistakes_are_located(tmp_path):
    path = write(tmp_path, drive("p1", 1) + drive("fan", 2, kind="fan"), """\
        - name: g
          drives: [p1, fan]
          demand: {drive: p1, unit: 3}
          system: {static_head_m: 40, design_flow_m3h: 120, design_head_m: 32}
          staging: {bep_window_pct: [120, 50]}
        - name: h
          drives: [p1]
          demand: {drive: p1}
          system: {design_flow_m3h: 120, design_head_m: 32}
        - name: h
          drives: [p1]
          demand: {drive: p1}
          system: {design_flow_m3h: 120, design_head_m: 32}
        """)
    found = issues(path)
    for message in ("groups[0].drives: pumps and fans cannot share a group",
                    "groups[0].demand.drive: name either a drive",
                    "groups[0].system.static_head_m: must be below design_head_m",
                    "groups[0].staging.bep_window_pct: must be [low, high]",
                    "groups[2].name: duplicate group name 'h'",
                    "groups[2].drives: p1 already in another group"):
        assert any(message in i for i in found), (message, found)


SENSOR_PROFILE = REPO / "configs" / "plants" / "profiles" / "remote-dp.yaml"


def test_a_critical_point_read_from_a_sensor_on_its_own_bus(tmp_path):
    """Issue 13: a remote DP on an I/O module (no drive quantities), its setpoint, no valve, no flow meter."""
    extra = textwrap.dedent(f"""\
        sensors:
          - {{name: remote-dp, bus: io, unit: 7, profile: {SENSOR_PROFILE}}}
        """)
    path = write(tmp_path, drive("p1", 1), """\
        - name: chw
          drives: [p1]
          demand: {source: critical}
          system: {design_flow_m3h: 120, design_head_m: 32}
          service: {critical_drive: remote-dp, critical_setpoint_m: 4.5}
        """, extra)
    path.write_text(path.read_text(encoding="utf-8").replace(
        "buses: [{name: b, host: 127.0.0.1, port: 5020}]",
        "buses: [{name: b, host: 127.0.0.1, port: 5020}, {name: io, host: 127.0.0.2, port: 502}]"),
        encoding="utf-8")
    config = load_config(path)
    (sensor,) = config.sensors
    assert (sensor.name, sensor.bus, sensor.unit) == ("remote-dp", "io", 7)
    assert sensor.profile.point(Quantity.CRITICAL_PRESSURE) is not None
    (group,) = config.groups
    assert group.service.critical_drive == "remote-dp" and group.service.critical_setpoint == 4.5
    assert group.demand.source is DemandSource.CRITICAL


@pytest.mark.parametrize(("sensor", "service", "message"), [
    ("{name: dp, bus: b, unit: 7, profile: generic}", "{critical_drive: dp}",
     "sensors[0].profile: profile 'generic' maps neither critical_pressure nor valve_position"),
    ("{name: p1, bus: b, unit: 7, profile: remote-dp}", "{}",
     "sensors[0].name: duplicate drive or sensor name 'p1'"),
    ("{name: dp, bus: b, unit: 1, profile: remote-dp}", "{}",
     "sensors[0].unit: unit 1 is already used on bus 'b'"),
    ("{name: dp, bus: nowhere, unit: 7, profile: remote-dp}", "{}", "sensors[0].bus: no bus named 'nowhere'"),
    ("{name: dp, bus: b, unit: 7, profile: remote-dp, rated_power_kw: 1}", "{}",
     "sensors[0].rated_power_kw: unknown field"),
    ("{name: dp, bus: b, unit: 7, profile: remote-dp}", "{critical_drive: dp}",
     "groups[0].service.critical_drive: profile 'remote-dp' of 'dp' has no valve_position point "
     "(the critical valve), and no critical_pressure point with critical_setpoint_m beside it"),
])
def test_sensor_mistakes_are_located(tmp_path, sensor, service, message):
    (profiles := tmp_path / "profiles").mkdir()
    (profiles / "remote-dp.yaml").write_text(SENSOR_PROFILE.read_text(encoding="utf-8"), encoding="utf-8")
    path = write(tmp_path, drive("p1", 1), f"""\
        - name: g
          drives: [p1]
          demand: {{drive: p1}}
          system: {{design_flow_m3h: 120, design_head_m: 32}}
          service: {service}
        """, f"sensors:\n  - {sensor}\n")
    found = issues(path)
    assert any(message in i for i in found), found
    assert all(i.startswith(str(path)) for i in found), found  # each names the file (and line)
