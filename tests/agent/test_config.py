import math
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from agent.config import BaselineMethod, ControlMode, LoadKind, load_config
from agent.config.profile import Quantity
from agent.errors import ConfigError

REPO = Path(__file__).resolve().parents[2]

GOOD = """\
site:
  name: Test site
  grid_emission_factor_kg_per_kwh: 0.5
  tariff: {currency: EUR, price_per_kwh: 0.2}
metrics: {listen: "127.0.0.1:0"}
buses:
  - {name: line, host: 127.0.0.1, port: 5020}
drives:
  - name: p1
    bus: line
    unit: 1
    profile: generic
    rated_power_kw: 15
    rated_speed_rpm: 1500
    load: {kind: pump, rated_flow_m3h: 36, rated_head_m: 20}
    baseline: {method: constant, power_kw: 12}
    control: {mode: advise, min_speed_pct: 30, max_speed_pct: 95}
"""


def write(tmp_path, text, name="site.yaml"):
    path = tmp_path / name
    path.write_text(textwrap.dedent(text))
    return path


def issues_of(path):
    with pytest.raises(ConfigError) as info:
        load_config(path)
    return [(i.line, i.field) for i in info.value.issues], [str(i) for i in info.value.issues]


def test_good_config_is_converted_to_si(tmp_path):
    config = load_config(write(tmp_path, GOOD))
    drive = config.drives[0]
    assert config.site.emission_kg_per_joule.default == pytest.approx(0.5 / 3.6e6)
    assert config.site.tariff.price_per_joule.default == pytest.approx(0.2 / 3.6e6)
    assert config.flush_interval == 10.0
    assert drive.rated_power == 15_000.0
    assert drive.rated_speed == pytest.approx(1500 * 2 * math.pi / 60)
    assert drive.load.kind is LoadKind.PUMP
    assert drive.load.rated_flow == pytest.approx(0.01)
    assert drive.baseline.method is BaselineMethod.CONSTANT
    assert drive.baseline.constant_power == 12_000.0
    assert drive.control.mode is ControlMode.ADVISE
    assert (drive.control.min_speed_ratio, drive.control.max_speed_ratio) == (0.3, 0.95)
    assert drive.profile.point(Quantity.POWER) is not None
    assert config.buses[0].poll_interval == 1.0


def test_every_problem_is_reported_with_file_line_and_field(tmp_path):
    text = GOOD.replace("grid_emission_factor_kg_per_kwh: 0.5", "grid_emission_factor_kg_per_kwh: -2")
    text = text.replace("rated_power_kw: 15", "rated_power_kw: fifteen")
    text = text.replace("kind: pump", "kind: turbine")
    text = text.replace("    control:", "    colour: red\n    control:")
    path = write(tmp_path, text)
    located, lines = issues_of(path)
    assert (3, "site.grid_emission_factor_kg_per_kwh") in located
    assert (13, "drives[0].rated_power_kw") in located
    assert (15, "drives[0].load.kind") in located
    assert (17, "drives[0].colour") in located
    assert all(line.startswith(f"{path}:") for line in lines)


def test_cross_field_checks(tmp_path):
    text = GOOD + textwrap.indent(textwrap.dedent("""\
        - name: p1
          bus: nowhere
          unit: 1
          profile: generic
          rated_power_kw: 5
          rated_speed_rpm: 1500
          load: {kind: fan, rated_flow_m3h: 100, rated_pressure_pa: 500}
        - name: p3
          bus: line
          unit: 1
          profile: generic
          rated_power_kw: 5
          rated_speed_rpm: 1500
          load: {kind: fan, rated_flow_m3h: 100, rated_pressure_pa: 500}
          control: {min_speed_pct: 80, max_speed_pct: 50}
        """), "  ")
    text = text.replace("port: 5020}", "port: 5020, timeout_s: 0.6, retries: 1}")
    located, lines = issues_of(write(tmp_path, text))
    fields = {f for _, f in located}
    assert {"drives[1].name", "drives[1].bus", "drives[2].unit", "drives[2].control.min_speed_pct",
            "buses[0].timeout_s"} <= fields
    assert any("already used on bus 'line'" in line for line in lines)


def test_time_of_use_tariff_and_timezone(tmp_path):
    text = GOOD.replace(
        "  tariff: {currency: EUR, price_per_kwh: 0.2}",
        "  timezone: Europe/Berlin\n"
        "  tariff:\n"
        "    currency: EUR\n"
        "    price_per_kwh: 0.1\n"
        "    periods:\n"
        "      - {start: \"07:00\", end: \"22:00\", days: [mon, tue, wed, thu, fri], price_per_kwh: 0.3}\n",
    )
    config = load_config(write(tmp_path, text))
    from datetime import datetime

    site = config.site
    monday_noon = datetime(2026, 3, 2, 12, 0, tzinfo=site.timezone)
    sunday_noon = datetime(2026, 3, 1, 12, 0, tzinfo=site.timezone)
    assert site.tariff.price_per_joule.value_at(monday_noon) == pytest.approx(0.3 / 3.6e6)
    assert site.tariff.price_per_joule.value_at(sunday_noon) == pytest.approx(0.1 / 3.6e6)


def test_bad_schedule_and_timezone_are_located(tmp_path):
    text = GOOD.replace(
        "  tariff: {currency: EUR, price_per_kwh: 0.2}",
        "  timezone: Mars/Olympus\n"
        "  tariff:\n"
        "    currency: EUR\n"
        "    price_per_kwh: 0.1\n"
        "    periods:\n"
        "      - {start: \"7am\", end: \"22:00\", days: [someday], price_per_kwh: 0.3}\n",
    )
    located, _ = issues_of(write(tmp_path, text))
    assert (4, "site.timezone") in located
    assert (9, "site.tariff.periods[0].start") in located
    assert (9, "site.tariff.periods[0].days") in located


def test_baseline_methods_must_suit_the_load(tmp_path):
    text = GOOD.replace("baseline: {method: constant, power_kw: 12}", "baseline: {method: damper}")
    located, _ = issues_of(write(tmp_path, text))
    assert (16, "drives[0].baseline.method") in located
    ok = load_config(write(tmp_path, GOOD.replace("baseline: {method: constant, power_kw: 12}",
                                                  "baseline: {method: throttle}")))
    assert ok.drives[0].baseline.method is BaselineMethod.THROTTLE


def test_yaml_syntax_error_is_located(tmp_path):
    path = write(tmp_path, "site:\n  name: [unclosed\nbuses: []\n")
    located, _ = issues_of(path)
    assert located[0][1] == "(syntax)"
    assert located[0][0] in (2, 3)


def test_bad_profile_is_reported_in_the_profile_file(tmp_path):
    (tmp_path / "profiles").mkdir()
    write(tmp_path, """\
        name: broken
        points:
          power: {address: 0, type: uint32, unit: furlongs}
          speed: {address: 1, type: uint16, unit: rpm}
          energy: {address: 10, type: int24, unit: kWh}
        """, "profiles/broken.yaml")
    path = write(tmp_path, GOOD.replace("profile: generic", "profile: broken"))
    with pytest.raises(ConfigError) as info:
        load_config(path)
    messages = [str(i) for i in info.value.issues]
    profile_file = str(tmp_path / "profiles" / "broken.yaml")
    assert any(m.startswith(f"{profile_file}:3: points.power.unit: unknown unit") for m in messages)
    assert any(m.startswith(f"{profile_file}:5: points.energy.type: must be one of") for m in messages)


def test_overlapping_points_are_refused(tmp_path):
    (tmp_path / "profiles").mkdir()
    write(tmp_path, """\
        name: overlap
        points:
          power: {address: 0, type: uint32, unit: W}
          speed: {address: 1, type: uint16, unit: rpm}
        """, "profiles/overlap.yaml")
    path = write(tmp_path, GOOD.replace("profile: generic", "profile: overlap"))
    with pytest.raises(ConfigError, match="overlap power"):
        load_config(path)


def test_check_config_cli_exits_2_without_traceback(tmp_path):
    path = write(tmp_path, GOOD.replace("unit: 1", "unit: 300"))
    result = subprocess.run([sys.executable, "-m", "agent.cli", "check-config", str(path)],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2
    assert f"{path}:11: drives[0].unit: must be in [1, 247], got 300" in result.stderr
    assert "Traceback" not in result.stderr


def test_check_config_cli_accepts_the_shipped_example():
    result = subprocess.run([sys.executable, "-m", "agent.cli", "check-config", "configs/example.yaml"],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "3 drive(s)" in result.stdout


def test_missing_file_is_a_clear_error(tmp_path):
    result = subprocess.run([sys.executable, "-m", "agent.cli", "check-config", str(tmp_path / "no.yaml")],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2
    assert "cannot read" in result.stderr and "Traceback" not in result.stderr


@pytest.mark.parametrize("transport", ["tcp", "rtu"])
def test_unit_zero_is_broadcast_and_refused_for_polling(tmp_path, transport):
    bus = ("{name: line, host: 127.0.0.1, port: 5020}" if transport == "tcp"
           else "{name: line, transport: rtu, device: /dev/ttyUSB0}")
    path = write(tmp_path, GOOD.replace("unit: 1", "unit: 0").replace(
        "{name: line, host: 127.0.0.1, port: 5020}", bus))
    _, messages = issues_of(path)
    assert messages == [f"{path}:11: drives[0].unit: unit 0 is the broadcast address, which no drive "
                        "answers; use 1..247"]


@pytest.mark.parametrize("argv", [["probe", "--unit", "0", "--profile", "generic"],
                                  ["scan", "--units", "0-3"]])
def test_probe_and_scan_refuse_unit_zero_as_a_usage_error(argv):
    command = [sys.executable, "-m", "agent.cli", argv[0], "--bus", "tcp://127.0.0.1:1", *argv[1:]]
    result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2
    assert "unit 0 is the broadcast address" in result.stderr
    assert "Traceback" not in result.stderr
