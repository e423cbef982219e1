"""Every guard rail of ``agent.control.writer`` refuses its write, against a simulated drive over Modbus.

Each test polls a real ``SimulatedPlant`` (booster-static: one pump whose drive holds a
pressure setpoint) through the agent's own poller and bus client, asks the writer for a
write that one guard must refuse, and checks both sides: the result and its count on the
agent, and no command at all on the drive.
"""

from __future__ import annotations

import asyncio
import dataclasses
import math
import textwrap
import time
from pathlib import Path

import pytest

from agent.config import load_config
from agent.config.profile import Quantity
from agent.control.writer import Command, DriveWriter, Limits, WriteResult
from agent.drive import DriveRuntime
from agent.energy.ledger import LEDGER_FILE, HandbackStore, Ledger, PendingHandback
from agent.modbus.client import BusClient
from agent.modbus.codec import encode
from agent.poller import BusPoller
from hil import SimulatedPlant, load_plant
from hil.registers import DriveAnswer
from tests.support import REPO

PLANT = REPO / "configs" / "plants" / "booster-static.yaml"
PROFILE = REPO / "configs" / "plants" / "profiles" / "generic-process.yaml"
NAME = "booster"
SPEED = Limits(0.4, 1.0, slew_per_min=30.0)  # ratio; a generous slew unless a test says otherwise
HEAD = Limits(35.0, 50.0)  # m; no slew limit unless a test says otherwise


def site(tmp_path: Path, port: int, mode: str = "control", budget: int = 100,
         profile: Path = PROFILE) -> Path:
    text = textwrap.dedent(f"""\
        site: {{name: guards, grid_emission_factor_kg_per_kwh: 0.5,
                tariff: {{currency: EUR, price_per_kwh: 0.2}}}}
        storage: {{path: {tmp_path}}}
        polling: {{interval_s: 0.5, timeout_s: 0.2, retries: 0}}
        buses: [{{name: plant, host: 127.0.0.1, port: {port}}}]
        drives:
          - name: {NAME}
            bus: plant
            unit: 1
            profile: {profile}
            rated_power_kw: 7.5
            rated_speed_rpm: 2900
            load: {{kind: pump, rated_flow_m3h: 40, rated_head_m: 50}}
            control: {{mode: {mode}, min_speed_pct: 40, max_speed_pct: 100, writes_per_hour: {budget}}}
        """)
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


class Rig:
    """A simulated booster, and the agent's drive, poller and writer for it.

    Clocks: the agent's (poller and writer) runs ``ahead`` seconds ahead of real time and the
    writer a further ``writer_ahead``; the plant's physics runs ``plant_ahead`` ahead.
    """

    def __init__(self) -> None:
        self.ahead = self.writer_ahead = self.plant_ahead = 0.0
        self.sim: SimulatedPlant
        self.drive: DriveRuntime
        self.poller: BusPoller
        self.writer: DriveWriter
        self.ledger: Ledger | None = None
        self.handbacks: HandbackStore | None = None

    def agent_clock(self) -> float:
        return time.monotonic() + self.ahead

    def writer_clock(self) -> float:
        return time.monotonic() + self.ahead + self.writer_ahead

    def plant_clock(self) -> float:
        return time.monotonic() + self.plant_ahead

    @property
    def commands(self) -> list:
        """What the simulated drive has been told, over the wire."""
        return self.sim.model.drives[NAME].writes

    async def poll(self) -> None:
        await self.poller.poll_once()
        assert self.drive.up, self.drive.errors


async def rig(tmp_path: Path, *, remote: bool = True, mode: str = "control", budget: int = 100,
              profile: Path = PROFILE, dry_run: bool = False, ledger: bool = True) -> Rig:
    plant = load_plant(PLANT)
    drives = tuple(dataclasses.replace(d, remote=remote) for d in plant.drives)
    plant = dataclasses.replace(plant, drives=drives)
    r = Rig()
    r.sim = SimulatedPlant(plant, clock=r.plant_clock)
    await r.sim.start("127.0.0.1", 0)
    config = load_config(site(tmp_path, r.sim.port, mode, budget, profile))
    r.drive = DriveRuntime(config.drives[0], config.site, config.max_gap)
    bus = config.buses[0]
    client = BusClient(bus)
    r.poller = BusPoller(bus, [r.drive], client, clock=r.agent_clock)
    if ledger:
        r.ledger = Ledger.open(tmp_path / LEDGER_FILE)
        r.handbacks = HandbackStore.open(r.ledger)
    r.writer = DriveWriter(r.drive, bus, client, clock=r.writer_clock, dry_run=dry_run, handbacks=r.handbacks)
    await r.poll()
    return r


def run(tmp_path: Path, scenario, **options) -> Rig:
    async def main() -> Rig:
        r = await rig(tmp_path, **options)
        try:
            await scenario(r)
        finally:
            r.poller.client.close()
            await r.sim.stop()
            if r.handbacks is not None and r.ledger is not None:
                r.handbacks.close()
                r.ledger.close()
        return r

    return asyncio.run(main())


def refused(r: Rig, result: WriteResult, expected: WriteResult) -> None:
    assert result is expected
    assert r.writer.results[expected.value] >= 1
    assert r.commands == []  # nothing reached the drive


def test_a_write_that_passes_every_guard_is_read_back_and_reaches_the_drive(tmp_path):
    async def scenario(r: Rig) -> None:
        before = r.writer.current(Quantity.PRESSURE_SETPOINT)
        assert before == pytest.approx(50.0, rel=1e-4)  # the operator's setpoint, read over Modbus
        assert await r.writer.write(Quantity.PRESSURE_SETPOINT, 45.0, HEAD) is WriteResult.OK
        assert r.commands[-1].quantity is Quantity.PRESSURE_SETPOINT
        assert r.commands[-1].value == pytest.approx(45.0 * 998.0 * 9.80665, rel=1e-6)
        assert r.sim.model.headers["riser"].setpoint == pytest.approx(45.0, rel=1e-6)
        assert r.writer.operator[Quantity.PRESSURE_SETPOINT] == pytest.approx(50.0, rel=1e-4)
        # The hand-back writes the operator's value again, read back like any write.
        assert await r.writer.restore("test") == [WriteResult.OK]
        assert r.sim.model.headers["riser"].setpoint == pytest.approx(50.0, rel=1e-4)

    r = run(tmp_path, scenario)
    assert r.writer.results == {"ok": 2}


def test_monitor_and_advise_modes_never_write(tmp_path):
    async def scenario(r: Rig) -> None:
        refused(r, await r.writer.write(Quantity.PRESSURE_SETPOINT, 45.0, HEAD), WriteResult.REFUSED_MODE)
        refused(r, await r.writer.command(Command.STOP), WriteResult.REFUSED_MODE)

    run(tmp_path, scenario, mode="advise")


def test_a_point_the_profile_does_not_mark_writable_is_never_written(tmp_path):
    generic = REPO / "configs" / "profiles" / "generic.yaml"  # no pressure setpoint point at all

    async def scenario(r: Rig) -> None:
        not_writable = WriteResult.REFUSED_NOT_WRITABLE
        refused(r, await r.writer.write(Quantity.PRESSURE_SETPOINT, 45.0, HEAD), not_writable)
        refused(r, await r.writer.write(Quantity.SPEED, 0.8, SPEED), not_writable)

    run(tmp_path, scenario, profile=generic)


def test_stale_data_refuses_the_write(tmp_path):
    async def scenario(r: Rig) -> None:
        r.writer_ahead = 2.0 * r.writer.bus.poll_interval + 0.01  # the last poll: just over two intervals old
        refused(r, await r.writer.write(Quantity.PRESSURE_SETPOINT, 45.0, HEAD), WriteResult.REFUSED_STALE)
        r.writer_ahead = 0.0
        await r.sim.stop()  # the drive stops answering: down, so stale however recent its last data
        await r.poller.poll_once()
        assert r.drive.up is False
        refused(r, await r.writer.write(Quantity.PRESSURE_SETPOINT, 45.0, HEAD), WriteResult.REFUSED_STALE)

    run(tmp_path, scenario)


@pytest.mark.parametrize("fault, params", [("nan", {}), ("implausible", {"factor": 1000.0})])
def test_implausible_data_refuses_the_write_however_recent(tmp_path, fault, params):
    async def scenario(r: Rig) -> None:
        r.sim.inject(NAME, fault, **params)  # the drive serves NaN, or power ×1000, from now on
        await r.poller.poll_once()
        assert r.drive.up is False and r.drive.errors["implausible"] >= 1
        # The last plausible reading is still well within two poll intervals: age alone would pass.
        assert r.writer_clock() - r.drive.last.t < r.writer.bus.poll_interval
        refused(r, await r.writer.write(Quantity.PRESSURE_SETPOINT, 45.0, HEAD), WriteResult.REFUSED_STALE)
        refused(r, await r.writer.command(Command.RUN), WriteResult.REFUSED_STALE)
        r.sim.clear(NAME)  # plausible again: the same write passes
        await r.poll()
        assert await r.writer.write(Quantity.PRESSURE_SETPOINT, 45.0, HEAD) is WriteResult.OK

    run(tmp_path, scenario)


def test_a_drive_not_in_remote_refuses_the_write(tmp_path):
    async def scenario(r: Rig) -> None:
        assert r.drive.status("remote") is False
        refused(r, await r.writer.write(Quantity.PRESSURE_SETPOINT, 45.0, HEAD), WriteResult.REFUSED_STATUS)
        refused(r, await r.writer.command(Command.RUN), WriteResult.REFUSED_STATUS)

    run(tmp_path, scenario, remote=False)


def test_a_faulted_drive_refuses_the_write(tmp_path):
    async def scenario(r: Rig) -> None:
        r.sim.model.drives[NAME].fault_code = 7160  # the drive trips ...
        r.plant_ahead += 0.1  # ... as of the next physics step
        await r.poll()
        assert r.drive.status("fault") is True
        refused(r, await r.writer.write(Quantity.PRESSURE_SETPOINT, 45.0, HEAD), WriteResult.REFUSED_STATUS)
        refused(r, await r.writer.command(Command.RUN), WriteResult.REFUSED_STATUS)

    run(tmp_path, scenario)


def test_a_stopped_drive_refuses_a_setpoint_but_may_be_started(tmp_path):
    async def scenario(r: Rig) -> None:
        assert await r.writer.command(Command.STOP) is WriteResult.OK  # held stopped from the fieldbus
        r.plant_ahead += 30.0  # the pump runs down
        r.ahead += 30.0
        r.commands.clear()
        await r.poll()
        assert r.drive.status("running") is False and r.drive.status("ready") is True
        refused(r, await r.writer.write(Quantity.SPEED_SETPOINT, 0.8, SPEED), WriteResult.REFUSED_STATUS)
        # A start is the one write a stopped drive takes: the speed it starts to, then run.
        # (as the optimizer starts a pump: the drive's own ramp takes it there, no slew limit).
        start = Limits(SPEED.minimum, SPEED.maximum)
        assert await r.writer.write(Quantity.SPEED_SETPOINT, 0.8, start, start=True) is WriteResult.OK
        assert await r.writer.command(Command.RUN) is WriteResult.OK
        assert [c.quantity for c in r.commands] == [Quantity.SPEED_SETPOINT, Quantity.CONTROL_WORD]

    run(tmp_path, scenario)


@pytest.mark.parametrize("value", [30.0, 50.5, math.nan, math.inf])
def test_a_value_outside_its_limits_is_refused(tmp_path, value):
    async def scenario(r: Rig) -> None:
        refused(r, await r.writer.write(Quantity.PRESSURE_SETPOINT, value, HEAD), WriteResult.REFUSED_RANGE)

    run(tmp_path, scenario)


def test_a_change_faster_than_the_slew_limit_is_refused(tmp_path):
    slow = Limits(35.0, 50.0, slew_per_min=6.0)  # 6 m per minute: 0.1 m per second

    async def scenario(r: Rig) -> None:
        r.writer_ahead = 0.5  # half a second since the drive's 50 m was read: 0.05 m allowed
        assert await r.writer.write(Quantity.PRESSURE_SETPOINT, 49.96, slow) is WriteResult.OK
        r.commands.clear()
        # Right after a write almost no change is allowed; 48 m is a 2 m step.
        refused_result = await r.writer.write(Quantity.PRESSURE_SETPOINT, 48.0, slow)
        assert refused_result is WriteResult.REFUSED_SLEW
        assert r.commands == []
        # The optimizer plans within the limit instead: a step it is allowed now.
        step = r.writer.slew_bounded(Quantity.PRESSURE_SETPOINT, 35.0, slow)
        assert 48.0 < step < 49.96

    r = run(tmp_path, scenario)
    assert r.writer.results["refused_slew"] == 1


def test_the_first_write_after_a_start_steps_no_further_than_the_slew_allows_since_the_read(tmp_path):
    """No write yet (a fresh start, or a restart after a crash) is no licence for a big step.

    The field case: 90.6 -> 77.0 % in one write at 20 %/min. The step is counted from the value
    read back from the drive, over the time since it was read (here half a second: 0.05 m).
    """
    slow = Limits(35.0, 50.0, slew_per_min=6.0)

    async def scenario(r: Rig) -> None:
        assert r.writer.last == {}  # the agent has written nothing in this run
        r.writer_ahead = 0.5
        refused(r, await r.writer.write(Quantity.PRESSURE_SETPOINT, 49.0, slow), WriteResult.REFUSED_SLEW)
        step = r.writer.slew_bounded(Quantity.PRESSURE_SETPOINT, 35.0, slow)
        assert 49.9 < step < 50.0  # 0.1 m/s for about half a second, from the 50 m read
        assert await r.writer.write(Quantity.PRESSURE_SETPOINT, step, slow) is WriteResult.OK
        assert r.sim.model.headers["riser"].setpoint == pytest.approx(step, rel=1e-6)

    r = run(tmp_path, scenario)
    assert r.writer.results == {"refused_slew": 1, "ok": 1}


def test_the_write_budget_per_hour_is_enforced(tmp_path):
    async def scenario(r: Rig) -> None:
        for value in (49.0, 48.0):
            r.ahead += 60.0  # a minute apart: the slew limit allows each step, and the data is fresh
            await r.poll()
            assert await r.writer.write(Quantity.PRESSURE_SETPOINT, value, HEAD) is WriteResult.OK
        r.ahead += 60.0
        await r.poll()
        count = len(r.commands)
        result = await r.writer.write(Quantity.PRESSURE_SETPOINT, 47.0, HEAD)
        assert result is WriteResult.REFUSED_BUDGET
        assert len(r.commands) == count
        r.ahead += 3600.0  # an hour on, the budget is there again
        await r.poll()
        assert await r.writer.write(Quantity.PRESSURE_SETPOINT, 47.0, HEAD) is WriteResult.OK

    r = run(tmp_path, scenario, budget=2)
    assert r.writer.results == {"ok": 3, "refused_budget": 1}


def test_a_write_the_drive_does_not_keep_fails_its_read_back(tmp_path):
    async def scenario(r: Rig) -> None:
        registers = r.sim._endpoints[NAME].registers
        # A drive that acknowledges a write and ignores it (as some do in local mode).
        registers.write = lambda address, values, snapshot: (DriveAnswer.OK, None)
        result = await r.writer.write(Quantity.PRESSURE_SETPOINT, 45.0, HEAD)
        assert result is WriteResult.VERIFY_FAILED
        assert r.sim.model.headers["riser"].setpoint == pytest.approx(50.0, rel=1e-6)

    r = run(tmp_path, scenario)
    assert r.writer.results == {"verify_failed": 1}


def test_a_write_the_drive_rejects_is_counted_as_failed(tmp_path):
    async def scenario(r: Rig) -> None:
        r.sim.inject(NAME, "exception", code=4)
        result = await r.writer.write(Quantity.PRESSURE_SETPOINT, 45.0, HEAD)
        assert result is WriteResult.FAILED
        assert r.commands == []

    r = run(tmp_path, scenario)
    assert r.writer.results == {"failed": 1}


def test_a_dry_run_logs_the_write_and_sends_nothing(tmp_path, caplog):
    async def scenario(r: Rig) -> None:
        with caplog.at_level("INFO", logger="agent.control.writer"):
            assert await r.writer.write(Quantity.PRESSURE_SETPOINT, 45.0, HEAD) is WriteResult.DRY_RUN
        assert r.commands == []
        assert r.sim.model.headers["riser"].setpoint == pytest.approx(50.0, rel=1e-6)

    r = run(tmp_path, scenario, dry_run=True)
    assert r.writer.results == {"dry_run": 1}
    assert "dry run: would write pressure_setpoint = 45" in caplog.text


def test_without_the_ledger_nothing_is_written(tmp_path, caplog):
    async def scenario(r: Rig) -> None:
        refused(r, await r.writer.write(Quantity.PRESSURE_SETPOINT, 45.0, HEAD), WriteResult.REFUSED_LEDGER)
        refused(r, await r.writer.command(Command.RUN), WriteResult.REFUSED_LEDGER)
        assert not r.writer.holds

    r = run(tmp_path, scenario, ledger=False)
    assert r.writer.results == {"refused_ledger": 2}
    assert "ERROR" in caplog.text and "the ledger is not open" in caplog.text


def test_a_dry_run_needs_no_ledger(tmp_path):
    async def scenario(r: Rig) -> None:
        assert await r.writer.write(Quantity.PRESSURE_SETPOINT, 45.0, HEAD) is WriteResult.DRY_RUN
        assert r.commands == []

    run(tmp_path, scenario, ledger=False, dry_run=True)


async def restart(r: Rig, tmp_path: Path) -> list[PendingHandback]:
    """As after a SIGKILL: the writer and its memory are gone; a new one takes over from the ledger."""
    assert r.handbacks is not None and r.ledger is not None
    r.handbacks.close()
    r.ledger.close()
    r.ledger = Ledger.open(tmp_path / LEDGER_FILE)
    r.handbacks = HandbackStore.open(r.ledger)
    pending = r.handbacks.pending()
    r.writer = DriveWriter(r.drive, r.poller.bus, r.poller.client, clock=r.writer_clock,
                           handbacks=r.handbacks)
    for row in pending:
        r.writer.resume(row)
    await r.poll()
    return pending


def test_a_killed_agents_hand_back_writes_the_kept_operators_values_not_the_drives(tmp_path):
    async def scenario(r: Rig) -> None:
        assert await r.writer.command(Command.RUN) is WriteResult.OK  # reads 0 before: "no command"
        assert await r.writer.write(Quantity.PRESSURE_SETPOINT, 45.0, HEAD) is WriteResult.OK
        pending = await restart(r, tmp_path)
        owed = {(p.quantity, p.agent) for p in pending}
        assert owed == {("control_word", 0x047F), ("pressure_setpoint", 45.0)}
        assert r.writer.current(Quantity.PRESSURE_SETPOINT) == pytest.approx(45.0)  # the drive shows ours
        r.commands.clear()
        assert await r.writer.restore("start after a crash") == [WriteResult.OK, WriteResult.OK]
        assert [(c.quantity, c.value) for c in r.commands] == [
            (Quantity.CONTROL_WORD, 0.0), (Quantity.PRESSURE_SETPOINT, pytest.approx(50.0 * 998.0 * 9.80665))]
        assert r.sim.model.headers["riser"].setpoint == pytest.approx(50.0, rel=1e-4)
        assert r.handbacks is not None and r.handbacks.pending() == []
        assert not r.writer.holds

    run(tmp_path, scenario)


def test_a_setpoint_someone_changed_while_the_agent_was_away_is_the_operators_now(tmp_path, caplog):
    async def scenario(r: Rig) -> None:
        assert await r.writer.write(Quantity.PRESSURE_SETPOINT, 45.0, HEAD) is WriteResult.OK
        point = r.drive.config.profile.point(Quantity.PRESSURE_SETPOINT)
        assert point is not None
        # The agent is dead; the operator sets 47 m from the BMS.
        words = encode(point.from_si(47.0 * 998.0 * 9.80665), point.dtype, point.word_order, point.byte_order)
        await r.poller.client.write(1, point.address, words)
        await restart(r, tmp_path)
        assert await r.writer.restore("start after a crash") == [WriteResult.OK]
        assert r.sim.model.headers["riser"].setpoint == pytest.approx(47.0, rel=1e-4)  # not the old 50
        assert r.handbacks is not None and r.handbacks.pending() == []

    with caplog.at_level("WARNING", logger="agent.control.writer"):
        run(tmp_path, scenario)
    assert "someone set it while the agent was away" in caplog.text


def test_a_hand_back_the_drive_did_not_take_stays_owed_and_is_tried_again(tmp_path):
    async def scenario(r: Rig) -> None:
        assert await r.writer.write(Quantity.PRESSURE_SETPOINT, 45.0, HEAD) is WriteResult.OK
        r.sim.inject(NAME, "exception", code=4)
        assert await r.writer.restore("fault") == [WriteResult.FAILED]
        assert r.writer.holds
        assert r.handbacks is not None and len(r.handbacks.pending()) == 1
        r.sim.clear(NAME)
        await r.poll()
        assert await r.writer.restore("fault cleared") == [WriteResult.OK]
        assert r.sim.model.headers["riser"].setpoint == pytest.approx(50.0, rel=1e-4)
        assert r.handbacks.pending() == [] and not r.writer.holds

    run(tmp_path, scenario)
