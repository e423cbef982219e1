"""RTU line timing, bus budgets, bus URLs and the RTU fields of a site config."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import textwrap

import pytest

from agent.config import BusConfig, Transport, load_config
from agent.config.profile import BUILTIN_PROFILES, load_profile
from agent.config.yamlsource import Issues
from agent.errors import BusUrlError, ConfigError
from agent.modbus.bus_url import parse_bus_url
from agent.modbus.readplan import bus_budget, bus_warnings
from agent.modbus.rtu import LineTiming, crc16, crc_ok
from tests.support import REPO


def test_frame_times_at_19200_baud_match_the_modbus_serial_line_figures():
    line = LineTiming.for_settings(19200, "E", 1)
    assert line.bits_per_char == 11
    assert line.char_time == pytest.approx(0.573e-3, abs=1e-6)
    assert line.t35 == pytest.approx(2.005e-3, abs=1e-6)
    assert line.t15 == pytest.approx(0.859e-3, abs=1e-6)  # the longest silence inside a frame
    # A read of 10 registers: an 8-byte request and a 25-byte response, two silences.
    assert line.read_time(10) == pytest.approx(33 * 11 / 19200 + 2 * 3.5 * 11 / 19200)
    assert 0.0188 < line.frame_time(33) < 0.0190  # "about 19 ms on the wire"
    assert LineTiming.for_settings(19200, "N", 2).char_time == line.char_time  # 8N2 is 11 bits too
    assert LineTiming.for_settings(9600, "N", 1).bits_per_char == 10
    for fast in (38400, 57600, 115200):
        assert LineTiming(fast).t35 == 1.75e-3  # fixed above 19200
        assert LineTiming(fast).t15 == 0.75e-3
    assert LineTiming(19200, inter_frame_delay=0.01).gap == 0.01


def test_break_even_gap_weighs_a_frame_against_two_characters_per_register():
    assert LineTiming.for_settings(19200, "E", 1).break_even_gap() == 10
    assert LineTiming.for_settings(9600, "E", 1).break_even_gap() == 10
    assert LineTiming.for_settings(115200, "E", 1).break_even_gap() == 24
    assert LineTiming(19200, inter_frame_delay=0.02).break_even_gap() > 30


def test_eight_drives_at_19200_baud_fit_a_one_second_interval_and_warn_when_they_do_not():
    g120 = load_profile(BUILTIN_PROFILES / "sinamics-g120.yaml", Issues())
    bus = BusConfig("line", Transport.RTU, "", 0, 1.0, 0.2, 0, 5.0, device="/dev/ttyUSB0")
    budget = bus_budget(bus, [g120] * 8)
    assert budget is not None and budget.reads == 24 and budget.fits
    assert budget.utilization == pytest.approx(budget.cycle_time, rel=1e-12)
    assert 0.45 < budget.utilization < 0.47  # 8 G120s: 24 frames, 458 ms of line per second
    assert bus_warnings(bus, [g120] * 8) == []
    tight = BusConfig("line", Transport.RTU, "", 0, 0.25, 0.1, 0, 5.0, device="/dev/ttyUSB0")
    (warning,) = bus_warnings(tight, [g120] * 8)
    assert "cannot be polled every 0.25 s" in warning and "raise poll_interval_s to at least 0.5 s" in warning
    short = BusConfig("line", Transport.RTU, "", 0, 1.0, 0.01, 0, 5.0, device="/dev/ttyUSB0")
    assert any("shorter than the longest read" in w for w in bus_warnings(short, [g120]))


def test_crc16_matches_the_specification_example():
    frame = bytes.fromhex("0103000a0001")  # read 1 register at 10 from unit 1
    assert crc16(frame).to_bytes(2, "little") == bytes.fromhex("a408")
    assert crc_ok(frame + bytes.fromhex("a408")) and not crc_ok(frame + bytes.fromhex("a409"))


def test_bus_urls():
    tcp = parse_bus_url("tcp://10.0.0.5:5020")
    assert (tcp.transport, tcp.host, tcp.port) == (Transport.TCP, "10.0.0.5", 5020)
    assert parse_bus_url("tcp://gateway").port == 502
    assert parse_bus_url("tcp://[::1]:502").host == "::1"
    rtu = parse_bus_url("rtu:///dev/ttyUSB0?baudrate=9600&parity=N&stopbits=2&timeout=0.3")
    assert (rtu.transport, rtu.device, rtu.baudrate, rtu.parity, rtu.stopbits, rtu.timeout) == (
        Transport.RTU, "/dev/ttyUSB0", 9600, "N", 2, 0.3)
    assert parse_bus_url("rtu:///dev/ttyS1").parity == "E"  # Modbus's default 8E1
    for bad, says in [
        ("udp://host:1", "unknown scheme"), ("tcp://:502", "no host"), ("tcp://h:70000", "out of range"),
        ("tcp://h:0", "1..65535"), ("tcp://h:1/path", "only a host and a port"),
        ("rtu://dev/ttyUSB0", "three"),
        ("rtu:///dev/x?baud=9600", "unknown parameter"), ("rtu:///dev/x?baudrate=12345", "baudrate must"),
        ("rtu:///dev/x?parity=X", "parity"), ("rtu:///dev/x?stopbits=3", "stopbits"),
        ("rtu:///dev/x?timeout=-1", "timeout"), ("", "unknown scheme"), ("/dev/ttyUSB0", "unknown scheme"),
    ]:
        with pytest.raises(BusUrlError, match=says):
            parse_bus_url(bad)


def test_bad_bus_urls_on_the_command_line_exit_2_without_a_traceback():
    for args in (["probe", "--bus", "serial:COM1", "--unit", "1", "--profile", "generic"],
                 ["scan", "--bus", "tcp://host:port"],
                 ["scan", "--bus", "tcp://127.0.0.1:1", "--units", "0-300"],
                 ["probe", "--bus", "tcp://127.0.0.1:1", "--unit", "1", "--profile", "no-such-profile"]):
        result = subprocess.run([sys.executable, "-m", "agent.cli", *args], capture_output=True, text=True,
                                cwd=REPO, timeout=60)
        assert result.returncode == 2, (args, result.stderr)
        assert "Traceback" not in result.stderr and result.stderr.strip()


RTU_SITE = """\
    site: {name: s, grid_emission_factor_kg_per_kwh: 0.5, tariff: {currency: EUR, price_per_kwh: 0.2}}
    buses:
      - {name: line, transport: rtu, device: /dev/ttyUSB0, baudrate: 19200, parity: E, stopbits: 1,
         timeout_s: 0.2, poll_interval_s: 1, inter_frame_delay_s: 0.005, max_gap: 4}
    drives:
      - {name: p1, bus: line, unit: 1, profile: sinamics-g120, rated_power_kw: 15, rated_speed_rpm: 1470,
         load: {kind: pump, rated_flow_m3h: 120, rated_head_m: 32}}
"""


def test_an_rtu_bus_is_parsed_and_checked(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(RTU_SITE))
    config = load_config(path)
    (bus,) = config.buses
    assert (bus.transport, bus.device, bus.baudrate, bus.parity, bus.stopbits) == (
        Transport.RTU, "/dev/ttyUSB0", 19200, "E", 1)
    assert (bus.inter_frame_delay, bus.max_gap, bus.address) == (0.005, 4, "/dev/ttyUSB0")
    bad = textwrap.dedent(RTU_SITE).replace("baudrate: 19200", "baudrate: 14400").replace(
        "parity: E", "parity: M").replace("stopbits: 1", "stopbits: 3").replace(
        "device: /dev/ttyUSB0", "host: x")
    bad += "  - {name: p2, bus: line, unit: 2, profile: generic, rated_power_kw: 1, rated_speed_rpm: 1,\n"
    bad += "     load: {kind: pump, rated_flow_m3h: 1, rated_head_m: 1}}\n"
    path.write_text(bad)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    text = str(info.value)
    for says in ("buses[0].baudrate: must be one of", "buses[0].parity: must be N, E or O",
                 "buses[0].stopbits: must be in [1, 2]", "buses[0].device: is required",
                 "buses[0].host: is not a field of a rtu bus"):
        assert says in text, text
    two = textwrap.dedent(RTU_SITE) .replace("buses:\n", "buses:\n  - {name: other, transport: rtu, "
                                             "device: /dev/ttyUSB0}\n")
    path.write_text(two)
    with pytest.raises(ConfigError, match="device '/dev/ttyUSB0' is already a bus"):
        load_config(path)


def test_check_config_prints_the_line_budget_and_warns_when_overbooked(tmp_path):
    path = tmp_path / "site.yaml"
    text = textwrap.dedent(RTU_SITE).replace("poll_interval_s: 1", "poll_interval_s: 0.05").replace(
        "timeout_s: 0.2", "timeout_s: 0.04")
    path.write_text(text)
    result = subprocess.run([sys.executable, "-m", "agent.cli", "check-config", str(path)],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    assert "bus line: " in result.stdout and "reads per cycle need" in result.stdout
    assert "warning: bus line: the drives cannot be polled every 0.05 s" in result.stderr


def test_rtu_over_tcp_bus_urls_carry_the_serial_sides_settings():
    bus = parse_bus_url("rtu+tcp://10.0.0.9:4001?baudrate=9600&parity=N&stopbits=2&timeout=0.3")
    assert (bus.transport, bus.host, bus.port, bus.device, bus.baudrate, bus.parity, bus.stopbits,
            bus.timeout, bus.address) == (Transport.RTU_OVER_TCP, "10.0.0.9", 4001, "", 9600, "N", 2, 0.3,
                                          "10.0.0.9:4001")
    assert parse_bus_url("RTU+TCP://moxa:4001").baudrate == 19200
    for bad, says in [
        ("rtu+tcp://moxa", "no port"), ("rtu+tcp://:4001", "no host"), ("rtu+tcp://moxa:0", "1..65535"),
        ("rtu+tcp://moxa:4001/dev/ttyS0", "a host, a port and line settings"),
        ("rtu+tcp://moxa:4001?baudrate=14400", "baudrate must"), ("rtu+tcp://moxa:4001?speed=1", "unknown"),
    ]:
        with pytest.raises(BusUrlError, match=says):
            parse_bus_url(bad)


def test_an_rtu_over_tcp_bus_budgets_its_serial_side_like_an_rtu_line():
    g120 = load_profile(BUILTIN_PROFILES / "sinamics-g120.yaml", Issues())
    serial = BusConfig("line", Transport.RTU, "", 0, 1.0, 0.2, 0, 5.0, device="/dev/ttyUSB0")
    gateway = BusConfig("line", Transport.RTU_OVER_TCP, "10.0.0.9", 4001, 1.0, 0.2, 0, 5.0)
    assert bus_budget(gateway, [g120] * 8) == bus_budget(serial, [g120] * 8)
    # Every 0.75 s: 458 ms of line at 19200 baud fits; at 9600 baud the same frames need 917 ms.
    fast = dataclasses.replace(gateway, poll_interval=0.75)
    slow = dataclasses.replace(fast, baudrate=9600)
    assert bus_warnings(fast, [g120] * 8) == []
    budget = bus_budget(slow, [g120] * 8)
    assert budget is not None and not budget.fits and 0.9 < budget.cycle_time < 0.93
    assert any("cannot be polled every 0.75 s" in w for w in bus_warnings(slow, [g120] * 8))
    assert bus_budget(BusConfig("gw", Transport.TCP, "10.0.0.9", 502, 1.0, 0.2, 0, 5.0), [g120]) is None


RTU_OVER_TCP_SITE = """\
    site: {name: s, grid_emission_factor_kg_per_kwh: 0.5, tariff: {currency: EUR, price_per_kwh: 0.2}}
    buses:
      - {name: moxa, transport: rtu_over_tcp, host: 10.0.0.9, port: 4001, baudrate: 9600, parity: N,
         stopbits: 2, timeout_s: 0.3, inter_frame_delay_s: 0.004}
    drives:
      - {name: p1, bus: moxa, unit: 1, profile: sinamics-g120, rated_power_kw: 15, rated_speed_rpm: 1470,
         load: {kind: pump, rated_flow_m3h: 120, rated_head_m: 32}}
"""


def test_an_rtu_over_tcp_bus_is_parsed_and_checked(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(RTU_OVER_TCP_SITE))
    (bus,) = load_config(path).buses
    assert (bus.transport, bus.host, bus.port, bus.device, bus.baudrate, bus.parity, bus.stopbits,
            bus.inter_frame_delay, bus.address) == (
        Transport.RTU_OVER_TCP, "10.0.0.9", 4001, "", 9600, "N", 2, 0.004, "10.0.0.9:4001")
    cases = [
        (("port: 4001, ", ""), "buses[0].port: is required for an rtu_over_tcp bus"),
        (("host: 10.0.0.9, ", ""), "buses[0].host: is required"),
        (("port: 4001, ", "port: 4001, device: /dev/ttyS0, "), "buses[0].device: is not a field of a "
                                                                "rtu_over_tcp bus"),
        (("baudrate: 9600", "baudrate: 14400"), "buses[0].baudrate: must be one of"),
        (("buses:\n", "buses:\n  - {name: gw, host: 10.0.0.9, port: 4001}\n"),
         "buses[1].port: 10.0.0.9:4001 is already a bus"),
    ]
    for (old, new), says in cases:
        path.write_text(textwrap.dedent(RTU_OVER_TCP_SITE).replace(old, new, 1))
        with pytest.raises(ConfigError) as info:
            load_config(path)
        assert says in str(info.value), str(info.value)
    # A tcp bus keeps refusing the line settings, and two Modbus TCP buses may share a gateway.
    tcp = textwrap.dedent(RTU_OVER_TCP_SITE).replace("transport: rtu_over_tcp", "transport: tcp")
    path.write_text(tcp)
    with pytest.raises(ConfigError, match="buses\\[0\\].baudrate: is not a field of a tcp bus"):
        load_config(path)


def test_check_config_prints_an_rtu_over_tcp_line_budget_from_the_serial_baud_rate(tmp_path):
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(RTU_OVER_TCP_SITE))
    result = subprocess.run([sys.executable, "-m", "agent.cli", "check-config", str(path)],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0, result.stderr
    g120 = load_profile(BUILTIN_PROFILES / "sinamics-g120.yaml", Issues())
    (bus,) = load_config(path).buses
    budget = bus_budget(bus, [g120])
    assert budget is not None
    at_19200 = bus_budget(dataclasses.replace(bus, baudrate=19200), [g120])
    assert at_19200 is not None and budget.cycle_time > 1.5 * at_19200.cycle_time  # 9600 baud, not 19200
    assert (f"bus moxa: {budget.reads} reads per cycle need {budget.cycle_time * 1e3:.1f} ms of line time "
            "every 1 s") in result.stdout
