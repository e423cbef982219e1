"""``vfd-agent baseline-test`` against vfd-sim: consent, a ramp at the slew limit, the hand-back, the record.

The operator runs chw-pump-1 at 80 % over the fieldbus. The test ramps it to rated speed at the
drive's slew limit, holds it there, and hands the operator's 80 % back, read back from the
simulator over Modbus; the ledger owes nothing and holds the measurement.
"""

from __future__ import annotations

import json
import signal
import sqlite3
import subprocess
import sys
import threading

import pytest
from pymodbus.client import ModbusTcpClient

from agent.energy.ledger import EventKind, read_events
from tests.agent.test_ledger_process import plant  # noqa: F401  (the fixture: the demo plant in vfd-sim)
from tests.support import DRIVE_DATA, REPO, site_config, spawn, stop, wait_until

SPEED_SETPOINT = 101  # generic profile: uint16, 0.01 %
OPERATOR = 8000  # 80.00 %
RATED = 10000
SLEW = "max_slew_pct_per_min: 240"  # 4 %/s: a 20 % ramp in about five writes


@pytest.fixture
def client(plant):  # noqa: F811
    modbus = ModbusTcpClient("127.0.0.1", port=plant, timeout=2.0, retries=1)
    assert modbus.connect()
    assert not modbus.write_register(SPEED_SETPOINT, OPERATOR, device_id=1).isError()  # the operator's
    yield modbus
    modbus.close()


def setpoint(modbus):
    reply = modbus.read_holding_registers(SPEED_SETPOINT, count=1, device_id=1)
    assert not reply.isError(), reply
    return int(reply.registers[0])


def config_for(tmp_path, port):
    data = DRIVE_DATA["chw-pump-1"] + f"control: {{{SLEW}}}\n"
    return site_config(tmp_path, [("plant", port)], [("chw-pump-1", "plant", 1, data)],
                       storage=tmp_path / "state")


def handbacks(tmp_path):
    with sqlite3.connect(tmp_path / "state" / "ledger.sqlite") as db:
        return db.execute("SELECT * FROM handback").fetchall()


def watch(modbus, seen, done):
    """Every setpoint the drive shows while the test runs (the ramp's steps)."""
    while not done.is_set():
        value = setpoint(modbus)
        if not seen or seen[-1] != value:
            seen.append(value)
        done.wait(0.02)


def test_ramps_to_rated_measures_and_hands_the_operators_setpoint_back(tmp_path, plant, client):  # noqa: F811
    config = config_for(tmp_path, plant)
    seen, done = [], threading.Event()
    watcher = threading.Thread(target=watch, args=(client, seen, done))
    watcher.start()
    try:
        run = subprocess.run([sys.executable, "-m", "agent.cli", "baseline-test", "--config", str(config),
                              "--drive", "chw-pump-1", "--minutes", "0.05", "--yes"],
                             cwd=REPO, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    finally:
        done.set()
        watcher.join()
    assert run.returncode == 0, run.stderr
    assert setpoint(client) == OPERATOR and handbacks(tmp_path) == []
    assert RATED in seen
    up = seen[:seen.index(RATED) + 1]
    # A ramp, not a jump: 20 % at 4 %/s in writes about 1.25 s apart (the step's size depends on the
    # time between writes, so a loaded machine takes fewer, larger steps: at least two show).
    assert sum(OPERATOR < v < RATED for v in up) >= 2, seen
    assert "measured_by" in run.stdout and "Traceback" not in run.stderr
    with sqlite3.connect(tmp_path / "state" / "ledger.sqlite") as db:
        (event,) = [e for e in read_events(db) if e.kind is EventKind.BASELINE_TEST]
    result = json.loads(event.detail)
    assert result["aborted"] == "" and result["samples"] >= 3 and result["mean_speed_ratio"] > 0.97
    assert 0.3 * 15_000 < result["mean_power_w"] < 1.5 * 15_000


def test_without_consent_nothing_is_written(tmp_path, plant, client):  # noqa: F811
    config = config_for(tmp_path, plant)
    run = subprocess.run([sys.executable, "-m", "agent.cli", "baseline-test", "--config", str(config),
                          "--drive", "chw-pump-1", "--minutes", "1"],
                         cwd=REPO, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert run.returncode == 2 and "--yes" in run.stderr and "Traceback" not in run.stderr
    assert setpoint(client) == OPERATOR
    assert not (tmp_path / "state" / "ledger.sqlite").exists()


def test_sigterm_while_at_rated_speed_hands_back_at_once(tmp_path, plant, client):  # noqa: F811
    config = config_for(tmp_path, plant)
    test = spawn("agent.cli", "baseline-test", "--config", str(config), "--drive", "chw-pump-1",
                 "--minutes", "10", "--yes")
    try:
        wait_until(lambda: setpoint(client) == RATED, 60, interval=0.05, what="the drive at rated speed")
        assert handbacks(tmp_path), "the operator's value is on disk while the drive runs at rated"
        test.send_signal(signal.SIGTERM)
        code, _, err = stop(test, timeout=60)
    finally:
        if test.poll() is None:
            test.kill()
            stop(test)
    assert code == 1 and "aborted: stopped by a signal" in err and "Traceback" not in err
    assert setpoint(client) == OPERATOR and handbacks(tmp_path) == []


def test_after_a_sigkill_the_next_test_hands_the_operators_setpoint_back_first(tmp_path, plant, client):  # noqa: F811
    config = config_for(tmp_path, plant)
    test = spawn("agent.cli", "baseline-test", "--config", str(config), "--drive", "chw-pump-1",
                 "--minutes", "10", "--yes")
    try:
        wait_until(lambda: setpoint(client) == RATED, 60, interval=0.05, what="the drive at rated speed")
    finally:
        test.send_signal(signal.SIGKILL)
        stop(test)
    assert setpoint(client) == RATED and handbacks(tmp_path)  # left at rated, the operator's value on disk
    run = subprocess.run([sys.executable, "-m", "agent.cli", "baseline-test", "--config", str(config),
                          "--drive", "chw-pump-1", "--minutes", "10", "--yes"],
                         cwd=REPO, capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert run.returncode == 1 and "hand-back was owed" in run.stderr, run.stderr
    assert setpoint(client) == OPERATOR and handbacks(tmp_path) == []
