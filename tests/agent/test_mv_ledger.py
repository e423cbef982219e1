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


def test_report_mv_shows_the_ab_estimate_beside_option_b_and_lists_planned_hand_backs_apart(tmp_path):
    """A ledger with a baseline period, then A/B-labelled control intervals: the page of report --mv."""
    import dataclasses
    from datetime import UTC

    import numpy as np

    from agent.config import load_config
    from agent.config.model import MvConfig
    from agent.energy.mvreport import build
    from agent.energy.verification import Verifier
    from agent.mv.baseline import TimeOfWeek
    from agent.mv.report import render_html
    from tests.agent.test_mv_cli import config

    grp = "chw-pump-1"
    rng = np.random.default_rng(3)
    mv = MvConfig(3600.0, 48, TimeOfWeek.NONE)
    rows = []
    for k in range(48 + 96):
        flow = 0.01 + 0.004 * math.sin(k / 3.0) + rng.normal(0.0, 0.0005)
        power = 2000.0 + 2e5 * flow + rng.normal(0.0, 30.0)
        row = dataclasses.replace(interval(grp, k, flow=flow), energy_j=power * 3600.0)
        if k >= 48:  # control mode, blocks of four hours, every other one the operator's
            block = k // 4
            operator = block % 2 == 1
            saved = 0.0 if operator else 300.0
            row = dataclasses.replace(row, mode="control", energy_j=(power - saved) * 3600.0,
                                      strategy="operator" if operator else "agent", block=block)
        rows.append(row)
    path = tmp_path / "state" / "ledger.sqlite"
    ledger = Ledger.open(path)
    ledger.flush([], {}, HOUR, intervals=rows, events=[
        Event(HOUR + 3600.0 * 53, EventKind.AB_BLOCK, grp, "planned A/B block: the operator's strategy runs"),
        Event(HOUR + 3600.0 * 60, EventKind.FAULT, grp, "timeout")])
    verifier = Verifier(mv, UTC, 3.0)
    verifier.after_flush(ledger, HOUR + 3600.0 * 200)
    ledger.close()
    assert verifier.ab[grp].estimate is not None  # the agent's own gauge source, from the same rows
    db = open_readonly(path)
    try:
        (report,), missing = build(db, load_config(config(tmp_path)), "test")
    finally:
        db.close()
    assert missing == [] and report.ab is not None
    rate = report.ab.saving_rate_w
    assert rate.lower(0.9) < 300.0 < rate.upper(0.9)
    assert [e.kind for e in report.events if e.kind in ("ab_block", "fault")] == ["fault"]
    assert [e.kind for e in report.ab_blocks] == ["ab_block"]
    page = render_html(report)
    ab_section = page[page.index('<section id="ab">'):page.index('<section id="charts">')]
    assert "A/B: saving rate" in ab_section and "option B: energy saved" in ab_section
    assert "Planned A/B hand-backs" in ab_section and "planned A/B block" in ab_section
    events = page[page.index('<section id="events">'):]
    assert "planned A/B block" not in events and "timeout" in events
