"""``measured_by: baseline_test``: the ledger's newest complete baseline test backs a drive's vfd basis.

No hand-pasting: the consented test's own record (a ``baseline_test`` event) sets the constant
baseline's power at each start, and the savings become ``vfd_measured`` (CO2 and money); without
a complete test the drive stays stipulated and the agent runs on.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import math

from prometheus_client import CollectorRegistry

from agent.config import load_config
from agent.control.baseline_test import BaselineTestResult, backed_by_baseline_tests
from agent.energy.baseline import BaselineEvidence, baseline_evidence
from agent.energy.ledger import LEDGER_FILE, Event, EventKind, Ledger
from agent.service import Agent
from tests.agent.test_groups_config import issues
from tests.support import DRIVE_DATA, site_config


def config_path(tmp_path, baseline="baseline: {method: constant, measured_by: baseline_test}\n"):
    data = DRIVE_DATA["chw-pump-1"].replace("baseline: {method: characteristic}", baseline.strip())
    drives = [("chw-pump-1", "plant", 1, data)]
    return site_config(tmp_path, [("plant", 1)], drives, storage=tmp_path / "state")


def a_result(started, power_w, aborted=""):
    return BaselineTestResult("chw-pump-1", started, 300.0, 600, power_w, 1.0, 0.02, (math.nan, math.nan),
                              aborted)


def record(tmp_path, *results):
    ledger = Ledger.open(tmp_path / "state" / LEDGER_FILE)
    try:
        ledger.flush([], {}, 1.79e9, events=[Event(r.started, EventKind.BASELINE_TEST, r.drive, r.detail())
                                             for r in results])
    finally:
        ledger.close()


def test_the_newest_complete_test_backs_the_vfd_basis_at_start(tmp_path):
    path = config_path(tmp_path)
    record(tmp_path, a_result(1.79e9, 11_000.0), a_result(1.79e9 + 86400, 12_500.0),
           a_result(1.79e9 + 2 * 86400, 14_000.0, aborted="stopped by a signal"))
    config = load_config(path)
    (drive,) = config.drives
    assert baseline_evidence(drive) is BaselineEvidence.STIPULATED  # unresolved: nothing measured yet
    (resolved,) = backed_by_baseline_tests(config).drives
    assert resolved.baseline.constant_power == 12_500.0  # the newest complete one, not the aborted one
    assert "vfd-agent baseline-test" in resolved.baseline.measured_by
    assert baseline_evidence(resolved) is BaselineEvidence.MEASURED_POWER
    # The running agent resolves it itself: its energy account claims the measured basis.
    async def build() -> Agent:  # the bus clients are made on the event loop
        return Agent(config, registry=CollectorRegistry(), time_synchronized=lambda: None)

    (runtime,) = asyncio.run(build()).drives
    assert runtime.account.measured and runtime.config.baseline.constant_power == 12_500.0


def test_without_a_complete_test_the_drive_stays_stipulated_and_says_so(tmp_path, caplog):
    path = config_path(tmp_path)
    record(tmp_path, a_result(1.79e9, 14_000.0, aborted="the drive's data went stale"))
    config = load_config(path)
    with caplog.at_level(logging.ERROR):
        (drive,) = backed_by_baseline_tests(config).drives
    assert drive == config.drives[0] and baseline_evidence(drive) is BaselineEvidence.STIPULATED
    assert "holds no complete baseline test" in caplog.text
    no_ledger = dataclasses.replace(config, storage_path=tmp_path / "elsewhere")
    assert backed_by_baseline_tests(no_ledger).drives == config.drives


def test_a_pasted_power_with_baseline_test_is_a_located_error(tmp_path):
    path = config_path(tmp_path, "baseline: {method: constant, power_kw: 12, measured_by: baseline_test}\n")
    found = issues(path)
    assert any("power_kw" in i and "baseline_test" in i and "site.yaml:" in i for i in found), found
