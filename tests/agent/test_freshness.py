"""The one freshness rule: ``DriveRuntime.is_fresh`` on the caller's clock; control and metrics obey it.

Before, three rules disagreed (2.5 intervals in the drive, 2.0 in the writer, and a property
that read the real clock rather than the injected one); here every check runs on a fake clock
that the test moves, and the writer refuses exactly when the drive says its data is stale.
Also the timing of a grouped drive's optimizer savings: each poll is booked with the
counterfactual priced from that same poll.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from agent.config import load_config
from agent.config.profile import Quantity
from agent.control.writer import DriveWriter, Limits, WriteResult
from agent.drive import FRESH_INTERVALS, DriveRuntime
from agent.errors import DriveTimeoutError
from agent.metrics import AgentCollector
from agent.modbus.client import BusClient
from agent.poller import BusPoller
from agent.units import RPM_TO_RAD_S

SITE = """\
site: {name: s, grid_emission_factor_kg_per_kwh: 0.5, tariff: {currency: EUR, price_per_kwh: 0.2}}
polling: {interval_s: 0.5, timeout_s: 0.2}
buses: [{name: gw, host: 127.0.0.1, port: 1}]
drives:
  - {name: p1, bus: gw, unit: 1, profile: generic, rated_power_kw: 15, rated_speed_rpm: 1470,
     load: {kind: pump, rated_flow_m3h: 120, rated_head_m: 32}, control: {mode: control}}
"""
RUNNING = 0b111  # ready, running, remote (the generic profile's bits 0, 1, 2)


class FakeClock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def rig(tmp_path: Path) -> tuple[DriveRuntime, DriveWriter, FakeClock]:
    path = tmp_path / "site.yaml"
    path.write_text(SITE)
    config = load_config(path)
    bus = config.buses[0]
    drive = DriveRuntime(config.drives[0], config.site, config.max_gap)
    clock = FakeClock()
    client = BusClient(bus)  # never connected: every refusal below is decided before any I/O
    BusPoller(bus, [drive], client, clock=clock)  # sets the drive's freshness from its bus
    writer = DriveWriter(drive, bus, client, clock=clock, dry_run=True)  # a dry run needs no ledger
    values = {Quantity.SPEED: 0.8 * 1470 * RPM_TO_RAD_S, Quantity.POWER: 9e3, Quantity.STATUS_WORD: RUNNING}
    drive.accept(clock(), 1e9, values)
    return drive, writer, clock


def test_fresh_for_two_poll_intervals_on_the_injected_clock(tmp_path):
    async def check() -> None:
        drive, _, clock = rig(tmp_path)
        limit = FRESH_INTERVALS * 0.5
        assert drive.stale_after == pytest.approx(limit)
        assert drive.is_fresh(clock.t + limit)
        assert not drive.is_fresh(clock.t + limit + 1e-6)
        drive.fail(DriveTimeoutError("no answer"))
        assert not drive.is_fresh(clock.t)  # down: stale however recent the last data

    asyncio.run(check())


@pytest.mark.parametrize("age, fresh", [(0.99, True), (1.01, False)])
def test_the_writer_and_the_metrics_follow_the_drive_s_freshness(tmp_path, age, fresh):
    async def check() -> None:
        drive, writer, clock = rig(tmp_path)
        clock.t += age
        assert drive.is_fresh(clock()) is fresh
        registry = CollectorRegistry()
        registry.register(AgentCollector([drive], "EUR", clock=clock))
        assert registry.get_sample_value("vfd_data_fresh", {"drive": "p1"}) == (1.0 if fresh else 0.0)
        result = await writer.write(Quantity.SPEED_SETPOINT, 2.0, Limits(0.3, 1.0))
        # A fresh drive passes the freshness guard and is refused further on (2.0 is out of range).
        assert result is (WriteResult.REFUSED_RANGE if fresh else WriteResult.REFUSED_STALE)

    asyncio.run(check())



def test_a_grouped_drive_books_each_poll_with_that_polls_counterfactual(tmp_path):
    """The optimizer prices a poll after it is accepted; the poll waits for that price.

    It used to travel optimizer -> ``DriveRuntime.counterfactual_power`` -> the next poll's
    sample, one poll late. Here two polls 2 s apart at 9 kW carry the counterfactuals 10 kW
    and 14 kW priced from themselves: the saving is their own trapezoid, 2 s × (12 − 9) kW.
    """
    path = tmp_path / "site.yaml"
    path.write_text(SITE)
    config = load_config(path)
    drive = DriveRuntime(config.drives[0], config.site, config.max_gap)
    drive.in_group = True  # the agent sets it for the drives of a group
    values = {Quantity.SPEED: 0.8 * 1470 * RPM_TO_RAD_S, Quantity.POWER: 9e3, Quantity.STATUS_WORD: RUNNING}
    for t, counterfactual in ((100.0, 10_000.0), (102.0, 14_000.0)):
        drive.accept(t, 1.7e9 + t, values)
        booked = drive.account.totals.covered_s
        drive.book(counterfactual)
    assert booked == 0.0  # the second poll waited for its own counterfactual ...
    assert drive.account.totals.covered_s == pytest.approx(2.0)  # ... and was booked with it
    drive.account.close_window()
    assert drive.account.totals.saved_optimizer_j == pytest.approx(2.0 * (12_000.0 - 9_000.0))
