"""The hand-backs the agent owes, in the ledger: migration from a version-1 ledger, and their life cycle."""

import sqlite3

from agent.energy.account import EnergyTotals
from agent.energy.ledger import (
    MIGRATIONS,
    SCHEMA_VERSION,
    HandbackStore,
    Ledger,
    PendingHandback,
    _statements,
)


def test_a_version_1_ledger_migrates_keeping_its_totals_and_owes_no_hand_back(tmp_path):
    path = tmp_path / "ledger.sqlite"
    with sqlite3.connect(path) as old:  # a ledger as the agent wrote it before hand-backs were kept
        old.execute("CREATE TABLE schema_version (version INTEGER NOT NULL)")
        for statement in _statements(MIGRATIONS[0]):
            old.execute(statement)
        old.execute("INSERT INTO schema_version (version) VALUES (1)")
        old.execute("INSERT INTO totals VALUES ('p1', 5.0, 6.0, 1.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0, "
                    "7.0, 0, 0.0, 7.0, 1.0)")
    ledger = Ledger.open(path)
    try:
        assert ledger._db.execute("SELECT version FROM schema_version").fetchone()[0] == SCHEMA_VERSION >= 3
        # Schema 4: a saving booked before the ledger knew what backed its baseline is stipulated.
        expected = EnergyTotals(energy_j=5.0, baseline_energy_j=6.0, saved_stipulated_j=1.0, covered_s=7.0,
                                power_s=7.0)
        assert ledger.load_totals()["p1"] == expected
        store = HandbackStore.open(ledger)
        assert store.pending() == []
        store.close()
    finally:
        ledger.close()


def test_a_hand_back_is_owed_from_before_the_first_write_until_it_is_handed_back(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger.open(path)
    store = HandbackStore.open(ledger)
    store.keep("p1", "speed_setpoint", 0.9053, 0.9, now=100.0)  # before the first write goes out
    store.written("p1", "speed_setpoint", 0.9)
    store.sending("p1", "speed_setpoint", 0.85)
    store.keep("p1", "speed_setpoint", 0.5, 0.8, now=200.0)  # a second keep never replaces the operator's
    store.close()
    ledger.close()  # as a SIGKILL leaves it: nothing handed back

    # Another process (the next start) reads it straight from the file.
    with sqlite3.connect(path) as db:
        rows = db.execute("SELECT drive, quantity, operator, agent, sending, taken_at "
                          "FROM handback").fetchall()
    assert rows == [("p1", "speed_setpoint", 0.9053, 0.9, 0.8, 100.0)]

    ledger = Ledger.open(path)
    store = HandbackStore.open(ledger)
    assert store.pending() == [PendingHandback("p1", "speed_setpoint", 0.9053, 0.9, 0.8, 100.0)]
    store.operator_changed("p1", "speed_setpoint", 0.7)
    assert store.pending() == [PendingHandback("p1", "speed_setpoint", 0.7, None, None, 100.0)]
    store.handed_back("p1", "speed_setpoint")
    assert store.pending() == []
    store.close()
    ledger.close()
