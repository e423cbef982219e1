"""``report --mv`` and ``baseline-test`` on bad input: a clear message, the right exit code, no traceback."""

import subprocess
import sys

from agent.energy.ledger import Ledger
from tests.support import DRIVE_DATA, REPO, site_config


def cli(*args, stdin=subprocess.DEVNULL):
    done = subprocess.run([sys.executable, "-m", "agent.cli", *args], cwd=REPO, capture_output=True,
                          text=True, timeout=120, stdin=stdin)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, done.stdout, done.stderr


def config(tmp_path, extra=""):
    drive = ("chw-pump-1", "plant", 1, DRIVE_DATA["chw-pump-1"] + extra)
    return site_config(tmp_path, [("plant", 1)], [drive], storage=tmp_path / "state")


def test_report_mv_needs_a_config_and_a_ledger(tmp_path):
    code, _, err = cli("report", "--mv", "--db", str(tmp_path / "ledger.sqlite"))
    assert code == 2 and "needs --config" in err
    code, _, err = cli("report", "--mv", "--config", str(config(tmp_path)))
    assert code == 2 and "no ledger at" in err


def test_report_mv_names_each_group_without_a_model(tmp_path):
    path = config(tmp_path)
    Ledger.open(tmp_path / "state" / "ledger.sqlite").close()
    code, out, err = cli("report", "--mv", "--config", str(path), "-o", str(tmp_path / "pages"))
    assert code == 1 and "chw-pump-1: no baseline model yet" in err and out == ""


def test_baseline_test_refuses_what_it_cannot_do_before_asking(tmp_path):
    code, _, err = cli("baseline-test", "--config", str(config(tmp_path)), "--drive", "nope", "--yes")
    assert code == 2 and "no drive 'nope'" in err and "chw-pump-1" in err
    limited = config(tmp_path, "control: {max_speed_pct: 90}\n")
    code, _, err = cli("baseline-test", "--config", str(limited), "--drive", "chw-pump-1", "--yes")
    assert code == 2 and "max_speed_pct 90%" in err
    code, _, err = cli("baseline-test", "--config", str(config(tmp_path)), "--drive", "chw-pump-1",
                       "--minutes", "0")
    assert code == 2 and "--minutes" in err


def test_baseline_test_while_the_agent_keeps_the_ledger_writes_nothing(tmp_path):
    path = config(tmp_path)
    held = Ledger.open(tmp_path / "state" / "ledger.sqlite")  # as a running agent holds it
    try:
        code, _, err = cli("baseline-test", "--config", str(path), "--drive", "chw-pump-1", "--yes")
    finally:
        held.close()
    assert code == 1 and "already keeping the ledger" in err


def test_a_bad_mv_section_is_located(tmp_path):
    path = config(tmp_path)
    bad = "mv: {interval_s: 0, baseline_intervals: 5, time_of_week: weekly, x: 1}\n"
    path.write_text(path.read_text() + bad)
    line = len(path.read_text().splitlines())
    code, _, err = cli("check-config", str(path))
    assert code == 2
    for field in ("interval_s", "baseline_intervals", "time_of_week", "x"):
        assert any(f"{path}:{line}" in row and field in row for row in err.splitlines()), (field, err)


def test_a_bad_power_accuracy_is_located(tmp_path):
    profile = (REPO / "configs" / "profiles" / "generic.yaml").read_text()
    bad = profile.replace("name: generic", "name: acc") + "power_accuracy_pct: 80\n"
    (tmp_path / "acc.yaml").write_text(bad)
    path = site_config(tmp_path, [("plant", 1)], [("p", "plant", 1, DRIVE_DATA["chw-pump-1"],
                                                   str(tmp_path / "acc.yaml"))])
    code, _, err = cli("check-config", str(path))
    assert code == 2 and "acc.yaml" in err and "power_accuracy_pct" in err
