"""Command-line surface and log output: help, option placement, journald priorities, logfmt/JSON, report."""

import argparse
import json
import logging
import os
import socket
import sqlite3
import subprocess
import sys
from datetime import timezone

import pytest

from agent.cli import build_parser
from agent.energy import report
from agent.energy.ledger import Ledger
from agent.logs import AgentFormatter, LogFormat, syslog_priority
from tests.support import REPO, finish, spawn

COMMANDS = {"run", "check-config", "demo", "report", "baseline-test", "warmup", "probe", "scan"}


def subparsers(parser):
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return action.choices


def test_help_lists_every_command_and_every_option_has_help_without_markup():
    parser = build_parser()
    text = parser.format_help()
    assert "``" not in text
    commands = subparsers(parser)
    assert set(commands) == COMMANDS
    for name in COMMANDS:
        assert name in text
    for name, sub in [("vfd-agent", parser), *commands.items()]:
        assert "``" not in sub.format_help(), name
        for action in sub._actions:
            skip = argparse._SubParsersAction | argparse._HelpAction | argparse._VersionAction
            if isinstance(action, skip):
                continue
            assert action.help, f"{name} {action.option_strings or action.dest} has no help"


@pytest.mark.parametrize("argv", [["--dry-run", "run", "-c", "x.yaml"], ["run", "-c", "x.yaml", "--dry-run"]])
def test_dry_run_before_or_after_the_command(argv):
    assert build_parser().parse_args(argv).dry_run is True


def test_options_after_the_command_override_and_absent_keep_the_global_value():
    parser = build_parser()
    assert parser.parse_args(["run", "-c", "x"]).dry_run is False
    args = parser.parse_args(["--log-format", "json", "run", "-c", "x", "--log-level", "DEBUG"])
    assert args.log_format is LogFormat.JSON and args.log_level == "DEBUG"


def record(level, message, exc=False):
    exc_info = None
    if exc:
        try:
            raise ValueError("boom")
        except ValueError:
            exc_info = sys.exc_info()
    return logging.LogRecord("agent.poller", level, __file__, 1, message, (), exc_info)


def test_priorities_follow_syslog():
    assert [syslog_priority(level) for level in (logging.DEBUG, logging.INFO, logging.WARNING,
                                                 logging.ERROR, logging.CRITICAL)] == [7, 6, 4, 3, 2]


def test_logfmt_and_json_lines():
    line = AgentFormatter(LogFormat.LOGFMT, False).format(record(logging.WARNING, 'drive "a" slow = 2 s'))
    assert 'level=warning logger=agent.poller msg="drive \\"a\\" slow = 2 s"' in line
    assert line.startswith("time=")
    data = json.loads(AgentFormatter(LogFormat.JSON, False).format(record(logging.ERROR, "bad", exc=True)))
    assert data["level"] == "error" and data["msg"] == "bad" and "ValueError: boom" in data["exc"]


def test_under_journald_every_line_carries_its_priority(tmp_path):
    """A real agent process whose stderr is the stream JOURNAL_STREAM names: <3> on its error."""
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    port = busy.getsockname()[1]
    config = (REPO / "configs" / "example.yaml").read_text()
    site = tmp_path / "site.yaml"
    site.write_text(config.replace("127.0.0.1:9847", f"127.0.0.1:{port}").replace(
        "/var/lib/vfd-agent", str(tmp_path / "state")))
    read_end, write_end = os.pipe()
    st = os.fstat(write_end)
    env = dict(os.environ, JOURNAL_STREAM=f"{st.st_dev}:{st.st_ino}")
    try:
        process = subprocess.Popen([sys.executable, "-m", "agent.cli", "run", "--config", str(site)],
                                   cwd=REPO, env=env, stdout=subprocess.DEVNULL, stderr=write_end)
        os.close(write_end)
        with os.fdopen(read_end) as stream:
            lines = stream.read().splitlines()
        assert process.wait(timeout=60) == 1
    finally:
        busy.close()
    errors = [line for line in lines if "cannot serve metrics" in line]
    assert errors and all(line.startswith("<3>") for line in errors), lines
    assert all(line[:3] in {"<3>", "<4>", "<6>", "<7>"} for line in lines), lines
    # Not under journald (a pipe JOURNAL_STREAM does not name): no prefixes.
    code, _, err = finish(spawn("agent.cli", "check-config", str(tmp_path / "missing.yaml")))
    assert code == 2 and not err.startswith("<")


def ledger_with_rows(path):
    ledger = Ledger.open(path)
    ledger.close()
    db = sqlite3.connect(path)
    columns = [r[1] for r in db.execute("PRAGMA table_info(hourly)")]
    for drive, energy in (("pump-a", 7.2e6), ("pump-b", 3.6e6)):
        row = {c: 0 for c in columns}
        row.update(drive=drive, hour=1_700_000_000 // 3600 * 3600, currency="EUR", energy_j=energy,
                   baseline_energy_j=2 * energy, saved_vfd_j=energy, co2_g=500.0, cost=0.1, covered_s=3600.0)
        db.execute(f"INSERT INTO hourly ({', '.join(row)}) VALUES ({', '.join('?' * len(row))})",
                   list(row.values()))
    db.commit()
    db.close()


def test_the_report_shows_the_modelled_drive_losses_and_reads_a_ledger_without_them(tmp_path):
    """An output reading's no-VFD savings are net of the drive's modelled losses (ledger schema 6): the report
    shows them in a column of their own, labelled modelled; a ledger the agent has not migrated yet (it is
    read here read-only) has no such column and still reads, with none."""
    db_path = tmp_path / "ledger.sqlite"
    ledger_with_rows(db_path)
    db = sqlite3.connect(db_path)
    try:
        db.execute("UPDATE hourly SET drive_losses_j = 360000.0 WHERE drive = 'pump-a'")
        db.commit()
        summary = report.summarize(db, -(2**62), 2**62, timezone.utc)
    finally:
        db.close()
    assert [s.drive_losses_kwh for s in summary.drives] == pytest.approx([0.1, 0.0])
    assert summary.site is not None and summary.site.drive_losses_kwh == pytest.approx(0.1)
    table = report.render(summary, report.ReportFormat.TABLE)
    assert "losses kWh*" in table and "modelled, not measured" in table
    assert json.loads(report.render(summary, report.ReportFormat.JSON))["site"]["drive_losses_kwh"] == 0.1
    old = sqlite3.connect(tmp_path / "schema-5.sqlite")
    try:
        old.executescript((REPO / "tests" / "agent" / "data" / "ledger-schema-5.sql").read_text())
        before = report.summarize(old, -(2**62), 2**62, timezone.utc)
    finally:
        old.close()
    assert before.drives and all(s.drive_losses_kwh == 0.0 for s in before.drives)
    assert "modelled, not measured" not in report.render(before, report.ReportFormat.TABLE)


def test_report_keeps_the_site_apart_and_plots_a_line_for_one_day(tmp_path):
    db_path = tmp_path / "ledger.sqlite"
    ledger_with_rows(db_path)
    code, out, err = finish(spawn("agent.cli", "report", "--db", str(db_path), "--format", "json"))
    assert code == 0, err
    body = json.loads(out)
    assert [r["drive"] for r in body["drives"]] == ["pump-a", "pump-b"]
    assert body["site"]["energy_kwh"] == pytest.approx(3.0)
    assert sum(r["energy_kwh"] for r in body["drives"]) == pytest.approx(body["site"]["energy_kwh"])
    code, out, _ = finish(spawn("agent.cli", "report", "--db", str(db_path), "--format", "csv"))
    assert "(site)" not in out and len(out.strip().splitlines()) == 3
    db = sqlite3.connect(db_path)
    try:
        drawn = report.plot(db, -(2**62), 2**62, timezone.utc, tmp_path / "site.png", "EUR")
        per_drive = report.plot(db, -(2**62), 2**62, timezone.utc, tmp_path / "drives.png", "EUR",
                                ["pump-b"])
    finally:
        db.close()
    assert drawn == {"(site)": [0.0, pytest.approx(3.0)]}  # one day: a segment from zero, not a dot
    assert per_drive == {"pump-b": [0.0, pytest.approx(1.0)]}
    assert (tmp_path / "drives.png").read_bytes()[:4] == b"\x89PNG"


def test_report_plot_without_matplotlib_exits_2_before_printing(tmp_path):
    db_path = tmp_path / "ledger.sqlite"
    ledger_with_rows(db_path)
    blocker = tmp_path / "no-matplotlib" / "matplotlib"
    blocker.mkdir(parents=True)
    (blocker / "__init__.py").write_text("raise ImportError('matplotlib is not installed')\n")
    env = {"PYTHONPATH": str(blocker.parent)}
    code, out, err = finish(spawn("agent.cli", "report", "--db", str(db_path), "--plot",
                                  str(tmp_path / "x.png"), env=env))
    assert code == 2 and out == ""
    assert "pip install 'vfd-agent[plot]'" in err and "Traceback" not in err
