"""The ledger's M&V tables: intervals, baseline models and non-routine events (schema 4)."""

import math

from agent.energy.account import EnergyTotals
from agent.energy.ledger import (
    Event,
    EventKind,
    Ledger,
    MvInterval,
    StoredModel,
    open_readonly,
    read_events,
    read_intervals,
    read_models,
)

HOUR = 1_767_225_600  # 2026-01-01 00:00 UTC


def interval(grp, k, energy=3.6e6, flow=0.01):
    return MvInterval(grp, HOUR + 3600.0 * k, 3600.0, "monitor", energy, 3600.0, flow, 0.8, 1.0, None,
                      k % 168)


def test_intervals_and_events_are_flushed_with_the_energy_and_read_back_in_order(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger.open(path)
    ledger.flush([], {"p1": EnergyTotals(energy_j=1.0)}, 1.0,
                 intervals=[interval("g", 1), interval("g", 0), interval("h", 0, flow=None)],
                 events=[Event(5.0, EventKind.CONFIG, "", "sha256 ab12")])
    # A second record of a slot (the clock stepped back, a mode change mid-interval) never overwrites.
    ledger.flush([], {}, 2.0, intervals=[interval("g", 1, energy=7.2e6)],
                 events=[Event(6.0, EventKind.FAULT, "p1", "timeout")])
    assert [i.start for i in ledger.intervals("g")] == [HOUR, HOUR + 3600.0]
    ledger.close()
    db = open_readonly(path)
    got = read_intervals(db)
    assert [(i.grp, i.start, i.energy_j) for i in got] == [
        ("g", HOUR, 3.6e6), ("g", HOUR + 3600.0, 3.6e6), ("h", HOUR, 3.6e6)]
    assert got[2].flow is None and got[2].pressure_pa is None and got[0].hour_of_week == 0
    assert read_intervals(db, "g", start=HOUR + 1.0) == [interval("g", 1)]
    assert read_events(db) == [Event(5.0, EventKind.CONFIG, "", "sha256 ab12"),
                               Event(6.0, EventKind.FAULT, "p1", "timeout")]
    assert read_events(db, start=5.5) == [Event(6.0, EventKind.FAULT, "p1", "timeout")]
    db.close()


def test_a_model_and_its_event_are_stored_together_and_survive_reopening(tmp_path):
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger.open(path)
    model = StoredModel("g", 100.0, HOUR, HOUR + 7200.0, 3600.0, '{"coefficients": [1.0]}')
    ledger.store_model(model, Event(100.0, EventKind.BASELINE_FITTED, "g", "cv(rmse) 3 %"))
    ledger.close()
    reopened = Ledger.open(path)
    assert reopened.models("g") == [model] and reopened.models("other") == []
    reopened.close()
    db = open_readonly(path)
    assert read_models(db) == [model]
    assert [e.kind for e in read_events(db, -math.inf, math.inf)] == [EventKind.BASELINE_FITTED]
    db.close()
