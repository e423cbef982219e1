"""The poll schedule's pure parts: the turnaround estimate and its store, rate-class config errors,
and the turnaround check-config charges (configured before any measurement, learned after)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from agent.config import load_config
from agent.modbus.readplan import line_timing, read_cost
from agent.modbus.turnaround import TURNAROUND_FILE, TurnaroundEstimate, load_turnarounds, save_turnarounds
from tests.support import REPO


def test_the_turnaround_estimate_shrugs_off_a_500_ms_outlier():
    estimate = TurnaroundEstimate(default=0.02)
    assert not estimate.measured and estimate.value == 0.02  # the configured default before any read
    for residual in (0.005, 0.006, 0.005, 0.007, 0.006, 0.005):
        estimate.add(residual)
    estimate.add(0.5)  # a drive busy with its own work, once
    assert estimate.measured and 0.005 <= estimate.value <= 0.007
    for _ in range(3):
        estimate.add(0.006)
    assert 0.005 <= estimate.value <= 0.007
    estimate.add(-0.001)  # a reply parsed a hair before the wire model says: no negative turnaround
    assert estimate.value >= 0.0


def test_a_slower_drive_moves_the_estimate_within_a_window():
    estimate = TurnaroundEstimate(default=0.0, window=15)
    for _ in range(15):
        estimate.add(0.005)
    for _ in range(8):  # the drive got busier for good: the majority of the window says so
        estimate.add(0.040)
    assert estimate.value == pytest.approx(0.040)


def test_the_turnaround_store_round_trips_and_ignores_a_damaged_file(tmp_path):
    path = tmp_path / "state" / TURNAROUND_FILE
    assert load_turnarounds(path) == {}  # none yet
    save_turnarounds(path, {"p2": 0.012, "p1": 0.004})
    assert load_turnarounds(path) == {"p1": 0.004, "p2": 0.012}
    for damaged in ("{", '{"drives": [1, 2]}', '{"drives": {"p1": "fast", "p2": -1, "p3": 1e9, "p4": 0.01}}'):
        path.write_text(damaged)
        assert load_turnarounds(path) == ({"p4": 0.01} if "p4" in damaged else {})


SITE = """\
site: {{name: s, grid_emission_factor_kg_per_kwh: 0.5, tariff: {{currency: EUR, price_per_kwh: 0.2}}}}
storage: {{path: {storage}}}
polling: {{turnaround_s: 0.02}}
buses:
  - {{name: line, transport: rtu, device: /dev/ttyUSB0, baudrate: 19200, timeout_s: 0.2}}
drives:
  - name: p1
    bus: line
    unit: 1
    profile: sinamics-g120
    rated_power_kw: 15
    rated_speed_rpm: 1470
    load: {{kind: pump, rated_flow_m3h: 120, rated_head_m: 32}}
    poll:
      rates: {{status_word: {rate}, fault_code: slow}}
      slow_every: {every}
"""


def check_config(tmp_path, rate="slow", every="10"):
    path = tmp_path / "site.yaml"
    path.write_text(SITE.format(storage=tmp_path / "state", rate=rate, every=every))
    result = subprocess.run([sys.executable, "-m", "agent.cli", "check-config", str(path)],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert "Traceback" not in result.stderr
    return path, result


@pytest.mark.parametrize(("rate", "every", "line", "field", "message"), [
    ("sometimes", "10", 15, "drives[0].poll.rates.status_word",
     "must be one of: fast, slow, connect; got 'sometimes'"),
    ("slow", "0", 16, "drives[0].poll.slow_every", "must be in [1, 3600], got 0"),
    ("slow", "2.5", 16, "drives[0].poll.slow_every", "must be a whole number, got 2.5"),
    ("slow", "ten", 16, "drives[0].poll.slow_every", "must be a whole number, got 'ten'"),
])
def test_a_bad_rate_class_or_slow_period_names_file_line_and_field(tmp_path, rate, every, line, field,
                                                                    message):
    path, result = check_config(tmp_path, rate, every)
    assert result.returncode == 2
    assert f"{path}:{line}: {field}: {message}" in result.stderr, result.stderr


def test_a_rate_for_a_point_the_profile_lacks_is_refused(tmp_path):
    path = tmp_path / "site.yaml"
    text = SITE.format(storage=tmp_path, rate="slow", every="10")
    path.write_text(text.replace("fault_code:", "fault_codes:"))
    result = subprocess.run([sys.executable, "-m", "agent.cli", "check-config", str(path)],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert (f"{path}:15: drives[0].poll.rates.fault_codes: profile 'sinamics-g120' has no fault_codes point"
            in result.stderr)


def test_check_config_charges_the_configured_turnaround_then_the_learned_one(tmp_path):
    _, before = check_config(tmp_path)
    assert before.returncode == 0, before.stderr
    assert "turnaround 20.0 ms per read, configured, none measured yet" in before.stdout
    # What the agent stores after measuring (agent.service: at every stop, reload and every 10 min).
    save_turnarounds(tmp_path / "state" / TURNAROUND_FILE, {"p1": 0.045})
    _, after = check_config(tmp_path)
    assert after.returncode == 0, after.stderr
    assert "turnaround 45.0 ms per read, learned on 1 of 1 devices" in after.stdout
    # 2 fast reads and 2 slow ones every 10 cycles, 25 ms more each than with the configured 20 ms.
    line_ms = [float(w) for w in (before.stdout.split(" ms of line time")[0].split()[-1],
                                  after.stdout.split(" ms of line time")[0].split()[-1])]
    assert line_ms[1] - line_ms[0] == pytest.approx(25 * 2.2, abs=0.2)


def test_check_config_charges_a_sensors_reads_to_the_line_it_shares(tmp_path):
    _, alone = check_config(tmp_path)
    path = tmp_path / "site.yaml"
    path.write_text(path.read_text() + textwrap.dedent(f"""\
        sensors:
          - {{name: dp, bus: line, unit: 9, profile: {REPO / "configs/plants/profiles/remote-dp.yaml"}}}
        """))
    save_turnarounds(tmp_path / "state" / TURNAROUND_FILE, {"dp": 0.03})
    result = subprocess.run([sys.executable, "-m", "agent.cli", "check-config", str(path)],
                            capture_output=True, text=True, cwd=REPO, timeout=60)
    assert result.returncode == 0 and "Traceback" not in result.stderr, result.stderr
    assert "3 reads per cycle" in result.stdout and "learned on 1 of 2 devices" in result.stdout
    assert result.stdout.rstrip().endswith("1 bus(es), 1 drive(s), 1 sensor(s)")
    # The sensor's one read of two registers, with its learned 30 ms turnaround, on top of the drive's.
    line_ms = [float(r.stdout.split(" ms of line time")[0].split()[-1]) for r in (alone, result)]
    sensor_wire_ms = 1000 * read_cost(line_timing(load_config(path).buses[0]), 2, 0.0)
    assert line_ms[1] - line_ms[0] == pytest.approx(30 + sensor_wire_ms, abs=0.2)
