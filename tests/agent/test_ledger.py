import asyncio
import logging
import sqlite3
from dataclasses import replace

import pytest

from agent.energy.account import EnergyTotals, HourDelta
from agent.energy.bookkeeping import Bookkeeper, add_totals
from agent.energy.ledger import (
    SCHEMA_VERSION,
    HourRow,
    Ledger,
    LedgerError,
    LedgerLockedError,
    migrate,
    open_readonly,
)

HOUR = 1_767_225_600  # 2026-01-01 00:00 UTC


def delta(energy, saved=0.0, cost=0.0, covered=1.0):
    return HourDelta(energy_j=energy, baseline_energy_j=energy + saved, saved_vfd_j=saved, cost=cost,
                     covered_s=covered, power_s=covered)


def test_flushes_add_up_per_hour_and_totals_are_replaced(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger.open(path)
    ledger.flush([HourRow("p1", HOUR, "EUR", delta(100.0, 10.0, 0.5))],
                 {"p1": EnergyTotals(energy_j=100.0, saved_vfd_j=10.0)}, 1.0)
    ledger.flush([HourRow("p1", HOUR, "EUR", delta(50.0, 5.0, 0.25)),
                  HourRow("p1", HOUR + 3600, "EUR", replace(delta(7.0), drive_losses_j=0.5))],
                 {"p1": EnergyTotals(energy_j=157.0, saved_vfd_j=15.0, drive_losses_j=0.5)}, 2.0)
    ledger.close()
    db = open_readonly(path)
    query = "SELECT hour, energy_j, saved_vfd_j, cost, covered_s, drive_losses_j FROM hourly ORDER BY hour"
    rows = db.execute(query).fetchall()
    assert rows == [(HOUR, 150.0, 15.0, 0.75, 2.0, 0.0), (HOUR + 3600, 7.0, 0.0, 0.0, 1.0, 0.5)]
    db.close()
    reopened = Ledger.open(path)
    stored = EnergyTotals(energy_j=157.0, saved_vfd_j=15.0, drive_losses_j=0.5)
    assert reopened.load_totals() == {"p1": stored}
    assert reopened._db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    reopened.close()


def test_schema_is_versioned_and_migrated_forward(tmp_path):
    path = tmp_path / "old.sqlite"
    with sqlite3.connect(path) as old:
        old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")  # a version-0 ledger
    db = sqlite3.connect(path, isolation_level=None)
    assert migrate(db) == 0
    assert db.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION
    assert migrate(db) == SCHEMA_VERSION  # idempotent
    db.execute("UPDATE schema_version SET version = ?", (SCHEMA_VERSION + 1,))
    with pytest.raises(sqlite3.DatabaseError, match="newer than this agent"):
        migrate(db)
    db.close()


def test_a_second_keeper_of_the_same_ledger_is_refused(tmp_path):
    path = tmp_path / "ledger.sqlite"
    first = Ledger.open(path)
    with pytest.raises(LedgerLockedError, match=r"another vfd-agent \(pid \d+\)"):
        Ledger.open(path)
    first.close()
    Ledger.open(path).close()  # free again once the first has gone


def test_an_unwritable_path_is_a_ledger_error(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where a directory should be")
    with pytest.raises(LedgerError, match="cannot open"):
        Ledger.open(blocker / "ledger.sqlite")


class FakeAccount:
    """An account with a fixed window to hand over: the bookkeeper's only interface to energy."""

    def __init__(self, hours):
        self.hours = hours
        self.totals = EnergyTotals()

    def close_window(self):
        hours, self.hours = self.hours, {}
        return hours


class Drive:
    def __init__(self, name, hours):
        self.name = name
        self.account = FakeAccount(hours)


def test_a_full_disk_keeps_the_energy_and_writes_it_when_space_returns(tmp_path, caplog):
    caplog.set_level(logging.INFO, logger="agent.energy.bookkeeping")
    path = tmp_path / "ledger.sqlite"
    drive = Drive("p1", {HOUR: delta(100.0)})
    keeper = Bookkeeper([drive], path, 10.0, "EUR")
    keeper.open()
    assert keeper.ledger is not None
    db = keeper.ledger._db
    pages = db.execute("PRAGMA page_count").fetchone()[0]
    db.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full: no page may be added
    drive.account.hours.update({HOUR + 3600 * i: delta(1.0) for i in range(1, 201)})
    assert asyncio.run(keeper.flush()) is False
    assert keeper.flushes_failed == 1 and keeper.unwritten_hours == 201
    assert "database or disk is full" in caplog.text
    drive.account.hours = {HOUR: delta(5.0)}
    assert asyncio.run(keeper.flush()) is False  # still full: merged, not lost
    assert keeper.unwritten_hours == 201
    db.execute("PRAGMA max_page_count = 1073741823")
    assert asyncio.run(keeper.flush()) is True
    assert keeper.unwritten_hours == 0
    total = db.execute("SELECT SUM(energy_j) FROM hourly").fetchone()[0]
    assert total == pytest.approx(100.0 + 200 * 1.0 + 5.0)
    assert "writing again" in caplog.text
    asyncio.run(keeper.close())


def test_restored_totals_add_to_what_this_run_booked():
    stored = EnergyTotals(energy_j=10.0, gaps=2, saved_vfd_j=3.0)
    current = EnergyTotals(energy_j=1.0, gaps=1)
    assert add_totals(stored, current) == EnergyTotals(energy_j=11.0, gaps=3, saved_vfd_j=3.0)


def test_a_ledger_that_opens_late_restores_before_its_first_flush_stores_the_totals(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger.open(path)
    ledger.flush([HourRow("p1", HOUR, "EUR", delta(1000.0))], {"p1": EnergyTotals(energy_j=1000.0)}, 1.0)
    ledger.close()
    holder = sqlite3.connect(path, isolation_level=None)  # another connection keeps the file locked
    holder.execute("PRAGMA locking_mode=EXCLUSIVE")
    holder.execute("BEGIN EXCLUSIVE")
    drive = Drive("p1", {HOUR + 3600: delta(10.0)})
    drive.account.totals = EnergyTotals(energy_j=10.0)
    keeper = Bookkeeper([drive], path, 10.0, "EUR")
    keeper.open()
    assert keeper.ledger is None and not keeper.restored
    holder.execute("ROLLBACK")
    holder.close()
    assert asyncio.run(keeper.flush()) is True
    assert keeper.restored and drive.account.totals.energy_j == 1010.0
    stored = keeper.ledger.load_totals()["p1"].energy_j
    asyncio.run(keeper.close())
    assert stored == 1010.0  # not 10: the first flush after the late open kept the history
