"""M&V with real agent processes against vfd-sim: the baseline recorded, fitted and kept across SIGKILL."""

import signal
import sqlite3
import subprocess
import sys
from dataclasses import astuple
from html.parser import HTMLParser

import pytest

from agent.energy.ledger import EventKind, read_events, read_intervals, read_models
from agent.energy.verification import model_from_json
from agent.mv.report import ledger_digest
from hil.scenario import PROCESS_PROFILE
from tests.agent.test_ledger_process import DRIVES, UNITS
from tests.support import DRIVE_DATA, REPO, free_port, scrape, site_config, spawn, stop, value, wait_until

INTERVAL_S = 0.5
BASELINE = 40  # intervals: enough independent ones for three parameters at the plant's rho up to 0.8


@pytest.fixture
def plant(tmp_path):
    """The demo plant with flow meters (the generic-process map) in a real vfd-sim process; its port."""
    text = (REPO / "configs" / "plants" / "demo.yaml").read_text(encoding="utf-8")
    plant_file = tmp_path / "demo-metered.yaml"
    plant_file.write_text(text.replace("profile: generic", f"profile: {PROCESS_PROFILE}"), encoding="utf-8")
    sim = spawn("hil.cli", "--plant", str(plant_file), "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
    line = sim.stdout.readline()
    assert line.startswith("vfd-sim: modbus"), line + sim.stderr.read()
    yield int(line.split()[2].rsplit(":", 1)[1])
    stop(sim)


def mv_config(tmp_path, port, metrics_port):
    drives = [(d, "plant", UNITS[d], DRIVE_DATA[d], str(PROCESS_PROFILE)) for d in DRIVES]
    path = site_config(tmp_path, [("plant", port)], drives, metrics_port=metrics_port,
                       storage=tmp_path / "state", flush_interval_s=1.0)
    text = path.read_text().replace("interval_s: 0.5,", "interval_s: 0.25,")  # two polls or more per interval
    path.write_text(text + f"mv: {{interval_s: {INTERVAL_S}, baseline_intervals: {BASELINE}}}\n")
    return path


def read(path, query):
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
    try:
        return query(db)
    finally:
        db.close()


def test_the_baseline_is_recorded_fitted_once_and_survives_sigkill(tmp_path, plant):
    metrics_port = free_port()
    url = f"http://127.0.0.1:{metrics_port}/metrics"
    config = mv_config(tmp_path, plant, metrics_port)
    ledger = tmp_path / "state" / "ledger.sqlite"
    agent = spawn("agent.cli", "run", "--config", str(config))
    try:
        # A drive outside every group is a group of one: each gets a model once its period has passed.
        def a_model_per_drive():
            try:
                found = read(ledger, read_models)
            except sqlite3.OperationalError:  # not created or not migrated yet
                return None
            return found if {m.grp for m in found} == set(DRIVES) else None
        models = wait_until(a_model_per_drive, 180, what="a baseline model per drive")
    finally:
        agent.send_signal(signal.SIGKILL)
        stop(agent)
    intervals = read(ledger, read_intervals)
    for model in models:
        fitted = model_from_json(model.model)
        baseline = [i for i in intervals if i.grp == model.grp and i.start < model.period_end]
        assert model.period_end - model.period_start == BASELINE * INTERVAL_S
        assert all(i.mode == "monitor" and i.energy_j > 0 and i.speed_ratio is not None and i.flow
                   for i in baseline)
        # The fit saw what the ledger holds: n intervals, the coverage of the period's slots.
        usable = [i for i in baseline if i.covered_s >= 0.5 * i.length_s]
        assert fitted.stats.n == len(usable) and fitted.expected_intervals == BASELINE
        assert fitted.coverage == len(usable) / BASELINE
    first = {m.grp: m.fitted_at for m in models}

    agent = spawn("agent.cli", "run", "--config", str(config))
    try:
        def savings_with_bounds():
            samples = scrape(url)
            got = {}
            for d in DRIVES:
                saved = value(samples, "vfd_mv_energy_saved_joules", group=d)
                lo = value(samples, "vfd_mv_energy_saved_lower_joules", group=d, confidence="0.9")
                hi = value(samples, "vfd_mv_energy_saved_upper_joules", group=d, confidence="0.9")
                if None in (saved, lo, hi):
                    return None
                got[d] = (lo, saved, hi)
            return got
        try:
            bounds = wait_until(savings_with_bounds, 180, what="M&V savings with bounds after the restart")
        except AssertionError:
            agent.send_signal(signal.SIGKILL)
            raise AssertionError(stop(agent)[2][-3000:]) from None
        for lo, saved, hi in bounds.values():
            assert lo < saved < hi
    finally:
        code, _, err = stop(agent)
    assert code == 0, err
    # The model is the one fitted before the kill: never refitted, never duplicated.
    after = read(ledger, read_models)
    assert {m.grp: m.fitted_at for m in after} == first
    events = read(ledger, read_events)
    configs = [e for e in events if e.kind is EventKind.CONFIG]
    assert len(configs) == 2 and configs[0].detail.split(": ")[1] == configs[1].detail.split(": ")[1]
    assert configs[0].detail.startswith("start: sha256 ")
    assert sorted(e.subject for e in events if e.kind is EventKind.BASELINE_FITTED) == sorted(DRIVES)
    later = [i for i in read(ledger, read_intervals) if i.start >= max(m.period_end for m in after)]
    assert later, "the reporting period is recorded after the restart"

    # The auditor's page of each drive, from the ledger the two runs left.
    out = tmp_path / "pages"
    done = subprocess.run([sys.executable, "-m", "agent.cli", "report", "--mv", "--config", str(config),
                           "--output", str(out)], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    for d in DRIVES:
        page = (out / f"mv-{d}.html").read_text()
        parser = _Elements()
        parser.feed(page)
        model = next(m for m in after if m.grp == d)
        rows = [r for r in read(ledger, lambda db, d=d: read_intervals(db, d))]
        reporting = [r for r in rows if r.start >= model.period_end and r.covered_s >= 0.5 * r.length_s]
        lines = {a["data-series"]: a for tag, a in parser.elements if tag == "polyline"}
        # The charts carry one point per reporting interval (time-of-week groups seen in the baseline).
        assert int(lines["measured"]["data-n"]) == len(reporting) > 0
        assert len(lines["cumulative savings"]["points"].split()) == len(reporting)
        assert ledger_digest([astuple(model), *(astuple(r) for r in rows)]) in page
        assert "IPMVP option" in page
        assert ("Meets ASHRAE Guideline 14" in page) != ("Not signable" in page)
        # The config in force (its hash at the first start) and the restart's among the events.
        assert page.count(configs[0].detail) == 2 and "baseline_fitted" in page


class _Elements(HTMLParser):
    def __init__(self):
        super().__init__()
        self.elements = []

    def handle_starttag(self, tag, attrs):
        self.elements.append((tag, dict(attrs)))

    handle_startendtag = handle_starttag
