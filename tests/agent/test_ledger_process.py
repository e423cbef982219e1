"""The ledger with real agent processes: SIGKILL, a second agent, an unusable disk, the report."""

import csv
import io
import json
import random
import signal
import sqlite3
import subprocess
import sys
import time

import pytest

from tests.support import (
    DRIVE_DATA,
    REPO,
    finish,
    free_port,
    scrape,
    site_config,
    spawn,
    stop,
    value,
    wait_until,
)

DRIVES = ("chw-pump-1", "cw-pump-1", "supply-fan")
UNITS = {"chw-pump-1": 1, "cw-pump-1": 2, "supply-fan": 3}
RATED_W = {"chw-pump-1": 15_000.0, "cw-pump-1": 7_500.0, "supply-fan": 11_000.0}
FLUSH_S = 1.0
KILLS = 10


@pytest.fixture
def plant():
    """The demo plant served by a real vfd-sim process; yields its Modbus port."""
    sim = spawn("hil.cli", "--plant", str(REPO / "configs" / "plants" / "demo.yaml"),
                "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
    line = sim.stdout.readline()
    assert line.startswith("vfd-sim: modbus"), line + sim.stderr.read()
    port = int(line.split()[2].rsplit(":", 1)[1])
    yield port
    stop(sim)


def config_for(tmp_path, port, metrics_port, storage, name="site.yaml"):
    return site_config(tmp_path, [("plant", port)], [(d, "plant", UNITS[d], DRIVE_DATA[d]) for d in DRIVES],
                       metrics_port=metrics_port, storage=storage, flush_interval_s=FLUSH_S, name=name)


def ledger_totals(path):
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        rows = db.execute("SELECT drive, energy_j, saved_stipulated_j, co2_avoided_g, cost_saved FROM totals")
        totals = {r[0]: r[1:] for r in rows}
        hourly = dict(db.execute("SELECT drive, SUM(energy_j) FROM hourly GROUP BY drive"))
    finally:
        db.close()
    return totals, hourly


def test_sigkill_at_random_moments_loses_at_most_one_flush_and_never_goes_backwards(tmp_path, plant):
    rng = random.Random(20261124)
    metrics_port = free_port()
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    storage = tmp_path / "state"
    config = config_for(tmp_path, plant, metrics_port, storage)
    previous = dict.fromkeys(DRIVES, (0.0, 0.0, 0.0, 0.0))
    worst_loss_s = 0.0
    for _ in range(KILLS):
        agent = spawn("agent.cli", "run", "--config", str(config))
        try:
            # Restored, then counting on: every total is at least what the ledger held.
            def running_past_restored():
                samples = scrape(url)
                energy = {d: value(samples, "vfd_energy_joules_total", drive=d) for d in DRIVES}
                return samples if all(energy[d] > previous[d][0] for d in DRIVES) else None
            samples = wait_until(running_past_restored, 30, what="agent counting past its restored totals")
            for drive in DRIVES:
                saved = value(samples, "vfd_energy_saved_joules_total", drive=drive, basis="vfd_stipulated")
                assert saved >= previous[drive][1]
            time.sleep(rng.uniform(0.0, 2.5))  # the random moment is the point here, not a wait
            before_kill = scrape(url)
        finally:
            agent.send_signal(signal.SIGKILL)
            stop(agent)
        totals, hourly = ledger_totals(storage / "ledger.sqlite")
        for drive in DRIVES:
            energy, saved, co2, cost = totals[drive]
            assert energy >= previous[drive][0]
            assert saved >= previous[drive][1] and co2 >= previous[drive][2] and cost >= previous[drive][3]
            assert hourly[drive] == pytest.approx(energy)  # the rows and the totals agree
            in_memory = value(before_kill, "vfd_energy_joules_total", drive=drive)
            lost = in_memory - energy
            power = value(before_kill, "vfd_power_watts", drive=drive) or RATED_W[drive]
            worst_loss_s = max(worst_loss_s, lost / power)
            assert lost <= RATED_W[drive] * (FLUSH_S + 0.5)  # one flush interval, plus a poll
            previous[drive] = (energy, saved, co2, cost)
    print(f"\nworst loss after SIGKILL: {worst_loss_s:.2f} s of energy (flush interval {FLUSH_S} s)")


def test_a_second_agent_on_the_same_ledger_refuses_to_start(tmp_path, plant):
    storage = tmp_path / "state"
    first_port = free_port()
    first = spawn("agent.cli", "run", "--config", str(config_for(tmp_path, plant, first_port, storage)))
    try:
        wait_until(lambda: scrape(f"http://127.0.0.1:{first_port}/metrics"), 30, what="first agent up")
        second_config = config_for(tmp_path, plant, free_port(), storage, name="second.yaml")
        code, _, err = finish(spawn("agent.cli", "run", "--config", str(second_config)))
        assert code == 1
        assert f"another vfd-agent (pid {first.pid}) is already keeping the ledger" in err
        assert "Traceback" not in err
    finally:
        code, _, err = stop(first)
    assert code == 0, err


def test_an_unusable_ledger_is_reported_loudly_while_polling_goes_on(tmp_path, plant):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the state directory should be")
    metrics_port = free_port()
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    config = config_for(tmp_path, plant, metrics_port, blocker / "state")
    agent = spawn("agent.cli", "run", "--config", str(config))
    try:
        def failing_flushes_counted():
            samples = scrape(url)
            failed = value(samples, "vfd_ledger_flushes_total", result="error") or 0
            return samples if failed >= 2 else None
        samples = wait_until(failing_flushes_counted, 30, what="failed flushes counted")
        assert all(value(samples, "vfd_up", drive=d) == 1.0 for d in DRIVES)
        assert value(samples, "vfd_ledger_unwritten_seconds") > 0
        # Energy is booked and held, but a total without the ledger's history is not exported.
        assert all(value(samples, "vfd_energy_joules_total", drive=d) is None for d in DRIVES)
    finally:
        code, _, err = stop(agent)
    assert code == 0
    assert err.count("cannot open the ledger lock") == 1  # loud once, not once per flush
    assert "Traceback" not in err


def test_report_totals_equal_the_sum_of_ledger_rows(tmp_path, plant):
    storage = tmp_path / "state"
    metrics_port = free_port()
    config = config_for(tmp_path, plant, metrics_port, storage)
    agent = spawn("agent.cli", "run", "--config", str(config))
    try:
        wait_until(lambda: (value(scrape(f"http://127.0.0.1:{metrics_port}/metrics"),
                                  "vfd_ledger_flushes_total", result="ok") or 0) >= 3, 30)
        # The report reads the ledger while the agent writes it.
        code, out, err = finish(spawn("agent.cli", "report", "--config", str(config), "--format", "json"))
        assert code == 0, err
        live = json.loads(out)
        assert {row["drive"] for row in live["drives"]} == set(DRIVES)
        assert live["site"]["drive"] == "(site)"
    finally:
        stop(agent)
    db = sqlite3.connect(storage / "ledger.sqlite")
    sums = {d: (e, s, c, m) for d, e, s, c, m in db.execute(
        "SELECT drive, SUM(energy_j), SUM(saved_stipulated_j), SUM(co2_g), SUM(cost) FROM hourly "
        "GROUP BY drive")}
    db.close()
    code, out, err = finish(spawn("agent.cli", "report", "--db", str(storage / "ledger.sqlite"),
                                  "--format", "json", "--plot", str(tmp_path / "report.png")))
    assert code == 0, err
    body = json.loads(out)
    rows = {row["drive"]: row for row in body["drives"]}
    for drive, (energy, saved, co2, money) in sums.items():
        assert rows[drive]["energy_kwh"] == pytest.approx(energy / 3.6e6)
        assert rows[drive]["stipulated_kwh"] == pytest.approx(saved / 3.6e6)
        assert saved > 0 and rows[drive]["saved_kwh"] == 0.0  # stipulated baselines: nothing claimed
        assert co2 == 0.0 and money == 0.0
        assert rows[drive]["co2_avoided_kg"] == pytest.approx(co2 / 1000)
        assert rows[drive]["money_saved"] == pytest.approx(money)
        assert rows[drive]["currency"] == "EUR"
    site = body["site"]
    assert site["energy_kwh"] == pytest.approx(sum(v[0] for v in sums.values()) / 3.6e6)
    assert site["money_saved"] == pytest.approx(sum(v[3] for v in sums.values()))
    assert (tmp_path / "report.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    ledger = str(storage / "ledger.sqlite")
    code, out, _ = finish(spawn("agent.cli", "report", "--db", ledger, "--format", "csv"))
    table = list(csv.DictReader(io.StringIO(out)))
    assert {r["drive"] for r in table} == set(DRIVES)  # the site is not a row: summing never counts it twice
    assert float(next(r for r in table if r["drive"] == "supply-fan")["energy_kwh"]) == pytest.approx(
        rows["supply-fan"]["energy_kwh"])
    code, out, _ = finish(spawn("agent.cli", "report", "--db", str(storage / "ledger.sqlite"),
                                "--from", "2000-01-01", "--to", "2000-01-02"))
    assert code == 0 and "no ledger rows in this period" in out
    code, _, err = finish(spawn("agent.cli", "report", "--db", str(tmp_path / "missing.sqlite")))
    assert code == 2 and "no ledger at" in err and "Traceback" not in err


def test_demo_restarted_on_the_same_state_dir_continues_its_totals(tmp_path):
    state = tmp_path / "demo-state"
    totals = []
    for _ in range(2):
        code, out, err = finish(spawn("agent.cli", "demo", "--listen", "127.0.0.1:0", "--duration", "4",
                                      "--state-dir", str(state)), timeout=120)
        assert code == 0, err
        assert "[final]" in out
        energy, _ = ledger_totals(state / "ledger.sqlite")
        totals.append(sum(v[0] for v in energy.values()))
    assert 0 < totals[0] < totals[1]


STORED_J = 4.0e8  # each drive's energy in the ledger from earlier runs (111 kWh)
LOCK_HOLDER = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("PRAGMA locking_mode=EXCLUSIVE")
db.execute("BEGIN EXCLUSIVE")
print("locked", flush=True)
sys.stdin.read()
"""


def ledger_with_history(path):
    """A ledger as earlier runs left it: one old hour row and the totals per drive."""
    from agent.energy.account import EnergyTotals, HourDelta
    from agent.energy.ledger import HourRow, Ledger

    ledger = Ledger.open(path)
    old_hour = 1_790_000_000 // 3600 * 3600  # 2026-09
    ledger.flush([HourRow(d, old_hour, "EUR", HourDelta(energy_j=STORED_J, covered_s=1.0)) for d in DRIVES],
                 {d: EnergyTotals(energy_j=STORED_J, covered_s=1.0) for d in DRIVES}, float(old_hour))
    ledger.close()


def watch_energy(url, until, timeout=60):
    """Scrape until ``until(samples)``; every scrape's energy per drive (None: the series is absent)."""
    seen = []

    def check():
        samples = scrape(url)
        seen.append({d: value(samples, "vfd_energy_joules_total", drive=d) for d in DRIVES})
        return samples if until(samples) else None
    samples = wait_until(check, timeout, interval=0.1, what="the agent's series")
    return samples, seen


def assert_continues_from_history(seen):
    """Absent or at least the stored history, never less; never decreasing."""
    for drive in DRIVES:
        series = [s[drive] for s in seen if s[drive] is not None]
        assert series, "the energy series never appeared"
        assert series[0] >= STORED_J, f"{drive}: exported {series[0]:g} J before the history was restored"
        assert series == sorted(series)


@pytest.mark.parametrize("available_at_start", [True, False], ids=["ledger-available", "ledger-locked"])
def test_cumulative_series_are_absent_until_the_ledger_is_restored_and_never_jump(tmp_path, plant,
                                                                                  available_at_start):
    storage = tmp_path / "state"
    storage.mkdir()
    ledger_with_history(storage / "ledger.sqlite")
    metrics_port = free_port()
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    holder = None
    if not available_at_start:  # another process holds SQLite's exclusive lock on the ledger file
        holder = subprocess.Popen([sys.executable, "-c", LOCK_HOLDER, str(storage / "ledger.sqlite")],
                                  stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert holder.stdout.readline().strip() == "locked"
    agent = spawn("agent.cli", "run", "--config", str(config_for(tmp_path, plant, metrics_port, storage)))
    try:
        seen = []
        if holder is not None:
            def polling_without_ledger(samples):
                return ((value(samples, "vfd_ledger_flushes_total", result="error") or 0) >= 1
                        and all(value(samples, "vfd_up", drive=d) == 1.0 for d in DRIVES))
            samples, seen = watch_energy(url, polling_without_ledger)
            for drive in DRIVES:  # absent, not zero, while the history cannot be read
                assert value(samples, "vfd_energy_joules_total", drive=drive) is None
                saved = value(samples, "vfd_energy_saved_joules_total", drive=drive, basis="vfd_stipulated")
                assert saved is None
                # Not from the ledger: poll errors exist from the start, at 0.
                assert value(samples, "vfd_poll_errors_total", drive=drive, kind="timeout") == 0.0
            holder.stdin.close()  # the other process lets go of the ledger
            assert holder.wait(timeout=10) == 0
        _, more = watch_energy(url, lambda s: (value(s, "vfd_ledger_flushes_total", result="ok") or 0) >= 3)
        assert_continues_from_history(seen + more)
    finally:
        if holder is not None:
            if holder.poll() is None:
                holder.kill()
                holder.wait()
            holder.stdout.close()
        code, _, err = stop(agent)
    assert code == 0, err
    assert "Traceback" not in err
    totals, hourly = ledger_totals(storage / "ledger.sqlite")
    for drive in DRIVES:
        assert totals[drive][0] > STORED_J
        assert hourly[drive] == pytest.approx(totals[drive][0])  # this run's energy, once, with the old
