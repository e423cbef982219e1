"""The agent's M&V record: time-weighted intervals, the baseline fit on a real ledger, the savings' bounds."""

import dataclasses
import math
import sqlite3
from zoneinfo import ZoneInfo

import numpy as np
import pytest

from agent.config.model import MvConfig
from agent.energy.ledger import EventKind, Ledger, MvInterval, read_events
from agent.energy.verification import (
    GroupSample,
    IntervalRecorder,
    Verifier,
    fit_group,
    hour_of_week,
    model_from_json,
    model_to_json,
    to_intervals,
)
from agent.mv.baseline import TimeOfWeek

UTC = ZoneInfo("UTC")
MONDAY = 1_767_571_200  # 2026-01-05 00:00 UTC, a Monday


def sample(power, flow=0.02, mode="monitor", running=1.0):
    return GroupSample(power, flow, 0.8, running, math.nan, mode)


def test_intervals_are_time_weighted_and_a_stale_poll_covers_nothing():
    rec = IntervalRecorder(60.0, UTC, max_step_s=3.0)
    t = 0.0
    for k in range(240):  # two minutes at 0.5 s
        t = 0.5 * k
        stale = 50 <= k < 60  # 5 s without fresh data: nothing covered across it
        rec.sample("g", t, MONDAY + t, None if stale else sample(1000.0, flow=0.01 * (1 + (k >= 120))))
    closed = rec.take(MONDAY + 120.0)
    assert [i.start for i in closed] == [MONDAY, MONDAY + 60.0]
    first, second = closed
    assert first.covered_s == pytest.approx(60.0 - 0.5 - 5.5, abs=1e-9)  # the first poll and the gap
    assert first.energy_j == pytest.approx(1000.0 * first.covered_s)
    assert first.flow == pytest.approx(0.01) and second.flow == pytest.approx(0.02)
    assert first.hour_of_week == 0 and first.pressure_pa is None and first.mode == "monitor"
    assert rec.take(MONDAY + 200.0) == []


def test_a_mode_change_ends_the_interval_so_baseline_and_reporting_never_mix():
    rec = IntervalRecorder(3600.0, UTC, max_step_s=3.0)
    for k in range(20):
        rec.sample("g", float(k), MONDAY + k, sample(500.0, mode="monitor" if k < 10 else "control"))
    rec.sample("g", 20.0, MONDAY + 3600.0 + 1, sample(500.0, mode="control"))
    modes = [(i.mode, i.start, i.covered_s) for i in rec.take(MONDAY + 3600.0 + 2)]
    # Each step between two samples is covered once, with the later sample's values (and mode).
    assert modes == [("monitor", MONDAY, 9.0), ("control", MONDAY, 10.0)]


def test_hour_of_week_is_site_time():
    assert hour_of_week(MONDAY, UTC) == 0
    # 2026-01-05 00:00 UTC is Monday 01:00 in Berlin; Sunday 23:00 UTC is Monday 00:00 there.
    assert hour_of_week(MONDAY, ZoneInfo("Europe/Berlin")) == 1
    assert hour_of_week(MONDAY - 3600, ZoneInfo("Europe/Berlin")) == 0


def rows(n, start, mode, power_of_flow, seed, interval=3600.0, pumps=1.0):
    rng = np.random.default_rng(seed)
    out = []
    for k in range(n):
        s = start + k * interval
        flow = 0.02 + 0.01 * math.sin(2 * math.pi * k / 24) + rng.normal(0, 0.001)
        power = power_of_flow(flow) + rng.normal(0, 60.0)
        out.append(MvInterval("g", s, interval, mode, power * interval, interval, flow, 0.6 + 10 * flow,
                              pumps, None, hour_of_week(s, UTC)))
    return out


def test_the_baseline_explains_power_by_flow_and_schedule_only_and_recovers_the_physics():
    base = rows(336, MONDAY, "monitor", lambda q: 2000.0 + 3e6 * q * q, seed=1)
    model = fit_group(base, MvConfig(3600.0, 336, TimeOfWeek.NONE), MONDAY)
    # Speed varies (it follows the flow) but is what the measure changes: never a regressor.
    assert model.names == ("intercept", "flow", "flow^2")
    assert model.coefficients[2] == pytest.approx(3e6, rel=0.05)
    assert model.passed and model.stats.cv_rmse < 0.05
    unmetered = [dataclasses.replace(r, flow=None) for r in base]
    daily = fit_group(unmetered, MvConfig(3600.0, 336, TimeOfWeek.DAYPART), MONDAY)
    assert daily.names[0] == "intercept" and all(n.startswith("tow[") for n in daily.names[1:])
    again = model_from_json(model_to_json(model))
    data = to_intervals(base)
    assert np.allclose(again.predict_w(data), model.predict_w(data)) and again.checks == model.checks


def test_the_verifier_fits_once_stores_durably_and_bounds_a_known_saving(tmp_path):
    config = MvConfig(3600.0, 336, TimeOfWeek.DAYPART)
    law = lambda q: 2000.0 + 3e6 * q * q  # noqa: E731
    base = rows(336, MONDAY, "monitor", law, seed=2)
    after = rows(336, MONDAY + 336 * 3600.0, "control", lambda q: 0.9 * law(q), seed=3)
    truth = sum(law(r.flow) * 3600.0 - r.energy_j for r in after)  # the noise-free baseline - what was drawn
    path = tmp_path / "ledger.sqlite"
    ledger = Ledger.open(path)
    verifier = Verifier(config, UTC, 3.0)
    verifier.accuracy["g"] = 0.02
    ledger.flush([], {}, 0.0, intervals=base[:200])
    verifier.after_flush(ledger, MONDAY + 200 * 3600.0)
    assert ledger.models() == [] and verifier.figures == {}  # the baseline period has not ended
    ledger.flush([], {}, 0.0, intervals=base[200:] + after)
    verifier.after_flush(ledger, MONDAY + 672 * 3600.0)
    verifier.after_flush(ledger, MONDAY + 673 * 3600.0)
    ledger.close()
    reopened = Ledger.open(path)
    (stored,) = reopened.models("g")  # fitted once, whatever the number of flushes
    reopened.close()
    figure = verifier.figures["g"]
    assert figure.model.passed and model_from_json(stored.model).coefficients == figure.model.coefficients
    saved = figure.savings_j
    assert saved is not None and saved.lower(0.90) < truth < saved.upper(0.90)
    assert saved.lower(0.90) < saved.lower(0.68) < saved.value < saved.upper(0.68) < saved.upper(0.90)
    assert saved.std > figure.savings.savings_j.std  # the power accuracy widens the model's interval
    # A new agent on the same ledger finds the model and the same savings.
    fresh = Verifier(config, UTC, 3.0)
    fresh.accuracy["g"] = 0.02
    reopened = Ledger.open(path)
    fresh.after_flush(reopened, MONDAY + 700 * 3600.0)
    reopened.close()
    assert fresh.figures["g"].savings_j == saved
    db = sqlite3.connect(path)
    (event,) = [e for e in read_events(db) if e.kind is EventKind.BASELINE_FITTED]
    db.close()
    assert event.subject == "g" and "passes" in event.detail


def test_a_model_failing_guideline_14_is_stored_and_exported_as_failing(tmp_path):
    config = MvConfig(3600.0, 336, TimeOfWeek.NONE)
    rng = np.random.default_rng(5)
    base = [MvInterval("g", MONDAY + k * 3600.0, 3600.0, "advise", float(rng.uniform(100, 3000)) * 3600.0,
                       3600.0, 0.02 + 1e-4 * k % 0.01, 0.8, 1.0, None, 0) for k in range(336)]
    ledger = Ledger.open(tmp_path / "ledger.sqlite")
    ledger.flush([], {}, 0.0, intervals=base[::2])  # half the intervals: coverage fails too
    verifier = Verifier(config, UTC, 3.0)
    verifier.after_flush(ledger, MONDAY + 400 * 3600.0)
    (stored,) = ledger.models("g")
    ledger.close()
    model = model_from_json(stored.model)
    failed = {c.name for c in model.checks if not c.passed}
    assert not model.passed and "data coverage" in failed and any("CV" in name for name in failed)
