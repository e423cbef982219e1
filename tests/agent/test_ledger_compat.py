"""Ledgers written by earlier releases open with today's code (upgrades migrate forward).

The direction that works: a newer agent reads an older ledger and migrates it forward when
it starts; an older agent refuses a newer ledger (test_ledger.py). That is why install.sh
copies the ledger before it switches releases and restores that copy when it switches back
(README, "Upgrade, rollback, uninstall"). Add a dump here for every schema version released.
"""

from __future__ import annotations

import re
import sqlite3
from pathlib import Path

import pytest

from agent.energy.ledger import LEDGER_FILE, SCHEMA_VERSION, Ledger

DATA = Path(__file__).parent / "data"
DUMPS = sorted(DATA.glob("ledger-schema-*.sql"))


def totals_in_dump(sql: str) -> dict[str, float]:
    """drive -> energy_j of the dump's totals rows (the second column)."""
    return {m[1]: float(m[2]) for m in re.finditer(r"INSERT INTO \"totals\" VALUES\('([^']+)',([^,]+),", sql)}


@pytest.mark.parametrize("dump", DUMPS, ids=[d.stem for d in DUMPS])
def test_a_released_ledger_opens_migrated_with_its_totals(dump, tmp_path):
    sql = dump.read_text()
    path = tmp_path / LEDGER_FILE
    with sqlite3.connect(path) as db:
        db.executescript(sql)
    db.close()
    expected = totals_in_dump(sql)
    assert len(expected) == 3  # the demo's drives

    ledger = Ledger.open(path)
    try:
        totals = ledger.load_totals()
    finally:
        ledger.close()
    assert {name: t.energy_j for name, t in totals.items()} == pytest.approx(expected)
    assert all(t.drive_losses_j == 0.0 for t in totals.values())  # schema 6: none modelled before it
    check = sqlite3.connect(path)
    assert check.execute("SELECT version FROM schema_version").fetchone() == (SCHEMA_VERSION,)
    assert check.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    check.close()


def test_every_earlier_schema_version_has_a_dump():
    dumped = {int(d.stem.rsplit("-", 1)[1]) for d in DUMPS}
    assert 1 in dumped and set(range(1, SCHEMA_VERSION)) <= dumped


def test_a_schema_4_ledger_keeps_its_intervals_without_an_ab_label(tmp_path):
    """Schema 5 adds the A/B label: an interval recorded before it has none (NULL), the rest unchanged."""
    path = tmp_path / LEDGER_FILE
    with sqlite3.connect(path) as db:
        db.executescript((DATA / "ledger-schema-4.sql").read_text())
    db.close()
    ledger = Ledger.open(path)
    try:
        (row,) = ledger.intervals()
    finally:
        ledger.close()
    assert (row.grp, row.mode, row.energy_j, row.flow) == ("circulation", "monitor", 7.2e6, 0.01)
    assert row.strategy is None and row.block is None
