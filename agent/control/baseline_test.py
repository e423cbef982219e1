"""``vfd-agent baseline-test``: a drive run at rated speed for a while, with consent, to measure its baseline.

What a constant-speed machine would draw is the vfd basis's baseline. Stipulated, it is a
vendor table or a nameplate; measured, it is the drive itself at rated speed on today's system.
The operator confirms (a prompt or ``--yes``), and the test runs within the agent's guard rails:
the operator's speed setpoint is kept in the ledger before the first write (``HandbackStore``,
through the one ``DriveWriter``), every write passes the writer's guards (fresh data, status
word, limits, slew, budget), the speed ramps up and back down at the drive's configured slew
limit, and the operator's value is written back and read back at the end, after an abort
(stale data, a refused write, SIGINT or SIGTERM) too. An earlier test killed half-way left its
hand-back in the ledger (an agent whose config does not control the drive only warns about it):
the next test writes it back first and stops, so the value restored is the operator's.

The agent itself must not run meanwhile (it holds the ledger's lock). The result (mean power and
flow at rated speed, power against flow) goes into the ledger as a ``baseline_test`` event, and
is printed with the baseline section that books the drive's vfd savings as measured: either the
figure pasted in (``power_kw`` with ``measured_by``) or ``measured_by: baseline_test``, which the
agent resolves at each start and reload from the ledger's newest complete test of the drive
(``backed_by_baseline_tests``), so the test's own record backs the vfd basis.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import math
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from agent.config.model import BASELINE_TEST_REF, AgentConfig, BaselineMethod, ControlMode
from agent.config.profile import Quantity
from agent.control.writer import DriveWriter, Limits
from agent.drive import DriveRuntime
from agent.energy.ledger import (
    LEDGER_FILE,
    Event,
    EventKind,
    HandbackStore,
    Ledger,
    open_readonly,
    read_events,
)
from agent.errors import AgentError, LedgerError
from agent.modbus.client import BusClient
from agent.poller import BusPoller

log = logging.getLogger(__name__)

AT_RATED = 0.97  # a measured speed ratio at least this is "at rated speed"
STEP_FRACTION = 0.05  # each ramp write moves at most this much of rated speed ...
MAX_STEP_S = 10.0  # ... and comes at most this long after the one before
SETTLE_S = 120.0  # the drive's own ramp to rated speed after the last write may take this long
FIRST_DATA_POLLS = 20  # poll intervals to wait for the drive's first fresh reading


class BaselineTestError(AgentError):
    """The test cannot start: nothing was written."""


@dataclass(frozen=True)
class BaselineTestResult:
    """What the test measured at rated speed (SI units), or why it stopped early."""

    drive: str
    started: float  # wall time
    seconds_at_rated: float
    samples: int
    mean_power_w: float
    mean_speed_ratio: float
    mean_flow: float  # m³/s, NaN without a flow point
    power_per_flow: tuple[float, float]  # P = a + b·Q at rated speed; NaN if the flow did not vary
    aborted: str  # "" when it ran its full length

    def detail(self) -> str:
        """The event's detail: the result as JSON."""
        return json.dumps(dataclasses.asdict(self), allow_nan=True)


def plan(config: AgentConfig, name: str) -> DriveRuntime:
    """The drive's runtime under the operator's consent (control mode for the test); BaselineTestError."""
    drive_config = next((d for d in config.drives if d.name == name), None)
    if drive_config is None:
        raise BaselineTestError(f"no drive {name!r} in {config.source}; drives: "
                                f"{', '.join(d.name for d in config.drives)}")
    point = drive_config.profile.point(Quantity.SPEED_SETPOINT)
    if point is None or not point.writable:
        raise BaselineTestError(f"drive {name}: profile {drive_config.profile.name!r} has no writable "
                                "speed_setpoint")
    if drive_config.control.max_speed_ratio < 1.0:
        raise BaselineTestError(f"drive {name}: max_speed_pct {drive_config.control.max_speed_ratio:.0%} "
                                "keeps it below rated speed; the test needs 100 %")
    consented = dataclasses.replace(drive_config, control=dataclasses.replace(drive_config.control,
                                                                                mode=ControlMode.CONTROL))
    return DriveRuntime(consented, config.site, config.max_gap)


async def run(config: AgentConfig, drive: DriveRuntime, duration_s: float, ledger: Ledger,
              stop: asyncio.Event) -> BaselineTestResult:
    """Ramp to rated speed, measure for ``duration_s``, ramp back, hand back; the result to the ledger."""
    bus = next(b for b in config.buses if b.name == drive.config.bus)
    client = BusClient(bus)
    store = HandbackStore.open(ledger)
    writer = DriveWriter(drive, bus, client, handbacks=store)
    owed = [row for row in store.pending() if row.drive == drive.name]
    for row in owed:
        writer.resume(row)  # an interrupted test's: its operator's value is the one to restore
    samples: list[tuple[float, float, float]] = []  # power, speed ratio, flow
    measuring = asyncio.Event()

    def on_cycle(_poller: BusPoller, _duration: float) -> None:
        reading = drive.last
        if measuring.is_set() and reading is not None and drive.is_fresh(time.monotonic()):
            samples.append((reading.power, reading.speed_ratio, reading.values.get(Quantity.FLOW, math.nan)))

    stop_polling = asyncio.Event()
    poller = BusPoller(bus, [drive], client, on_cycle=on_cycle)
    polling = asyncio.create_task(poller.run(stop_polling), name=f"poll {bus.name}")
    started, at_rated_since, aborted = time.time(), math.nan, ""
    try:
        aborted = await _first_data(drive, bus.poll_interval, stop)
        if not aborted and owed:
            aborted = ("an interrupted run's hand-back was owed; the operator's value is written back "
                       "first: run the test again")
        elif not aborted:
            aborted = await _ramp(writer, drive, 1.0, stop, bus.poll_interval)
        if not aborted:
            measuring.set()
            at_rated_since = time.monotonic()
            aborted = await _hold(drive, duration_s, stop)
            measuring.clear()
        if not aborted or stop.is_set():
            operator = writer.operator.get(Quantity.SPEED_SETPOINT, math.nan)
            if math.isfinite(operator) and drive.is_fresh(time.monotonic()):
                await _ramp(writer, drive, operator, asyncio.Event(), bus.poll_interval, settle=False)
    finally:
        results = await writer.restore(f"baseline test {'aborted: ' + aborted if aborted else 'done'}")
        if writer.holds:
            log.error("drive %s: the operator's speed setpoint did not read back (%s); it stays owed in the "
                      "ledger and the agent hands it back at its next start", drive.name,
                      ", ".join(r.value for r in results))
        stop_polling.set()
        await asyncio.gather(polling, return_exceptions=True)
        store.close()
    seconds = time.monotonic() - at_rated_since if math.isfinite(at_rated_since) else 0.0
    result = summarize(drive.name, started, min(seconds, duration_s), samples, aborted)
    ledger.flush([], {}, time.time(), events=[Event(time.time(), EventKind.BASELINE_TEST, drive.name,
                                                    result.detail())])
    return result


async def _first_data(drive: DriveRuntime, poll: float, stop: asyncio.Event) -> str:
    for _ in range(FIRST_DATA_POLLS):
        if drive.is_fresh(time.monotonic()):
            return ""
        if await _stopped(stop, poll):
            return "stopped by a signal"
    return f"no fresh data from the drive in {FIRST_DATA_POLLS * poll:g} s"


async def _ramp(writer: DriveWriter, drive: DriveRuntime, target: float, stop: asyncio.Event, poll: float,
                *, settle: bool = True) -> str:
    """Move the speed setpoint to ``target`` within the slew limit; "" once there, else why it stopped."""
    control = drive.config.control
    limits = Limits(control.min_speed_ratio, control.max_speed_ratio, control.slew_per_min)
    step_s = min(max(poll, 60.0 * STEP_FRACTION / control.slew_per_min), MAX_STEP_S)
    settle_until = math.inf
    while True:
        now = time.monotonic()
        if not drive.is_fresh(now):
            return "the drive's data went stale"
        if writer.last.get(Quantity.SPEED_SETPOINT, (math.nan, 0.0))[0] != target:
            value = writer.slew_bounded(Quantity.SPEED_SETPOINT, target, limits)
            result = await writer.write(Quantity.SPEED_SETPOINT, value, limits, reason="baseline test")
            if not result.written:
                return f"a write was refused ({result.value})"
            if value != target:
                if await _stopped(stop, step_s):
                    return "stopped by a signal"
                continue
            settle_until = now + SETTLE_S
        reading = drive.last
        if not settle or reading is not None and reading.speed_ratio >= AT_RATED:
            return ""
        if now > settle_until:
            return f"the drive did not reach {AT_RATED:.0%} of rated speed within {SETTLE_S:g} s"
        if await _stopped(stop, poll):
            return "stopped by a signal"


async def _hold(drive: DriveRuntime, duration_s: float, stop: asyncio.Event) -> str:
    """Stay at rated speed for ``duration_s``; "" when done, else why it stopped."""
    end = time.monotonic() + duration_s
    while (left := end - time.monotonic()) > 0:
        if await _stopped(stop, min(left, 1.0)):
            return "stopped by a signal"
        if not drive.is_fresh(time.monotonic()):
            return "the drive's data went stale"
        if drive.status("running") is False or drive.status("fault") is True:
            return "the drive stopped running or reports a fault"
    return ""


async def _stopped(stop: asyncio.Event, seconds: float) -> bool:
    try:
        await asyncio.wait_for(stop.wait(), timeout=seconds)
    except asyncio.TimeoutError:
        return False
    return True


def summarize(drive: str, started: float, seconds: float, samples: list[tuple[float, float, float]],
              aborted: str) -> BaselineTestResult:
    """Means at rated speed and the power-against-flow line (least squares) where the flow varied."""
    if not samples:
        return BaselineTestResult(drive, started, 0.0, 0, math.nan, math.nan, math.nan, (math.nan, math.nan),
                                  aborted or "no sample at rated speed")
    data = np.asarray(samples, dtype=np.float64)
    power, speed, flow = data[:, 0], data[:, 1], data[:, 2]
    line = (math.nan, math.nan)
    known = np.isfinite(flow)
    if known.sum() >= 3 and float(np.ptp(flow[known])) > 1e-9:
        slope, intercept = np.polyfit(flow[known], power[known], 1)
        line = (float(intercept), float(slope))
    mean_flow = float(np.mean(flow[known])) if known.any() else math.nan
    return BaselineTestResult(drive, started, seconds, len(samples), float(np.mean(power)),
                              float(np.nanmean(speed)), mean_flow, line, aborted)


def newest_tests(path: Path) -> dict[str, BaselineTestResult]:
    """Each drive's newest complete baseline test in the ledger at ``path`` (none without a ledger)."""
    if not path.is_file():
        return {}
    db = open_readonly(path)
    try:
        events = read_events(db)
    finally:
        db.close()
    found: dict[str, BaselineTestResult] = {}
    for event in events:  # oldest first: a later test replaces an earlier one
        if event.kind is not EventKind.BASELINE_TEST:
            continue
        try:
            fields = json.loads(event.detail)
            result = BaselineTestResult(**{**fields, "power_per_flow": tuple(fields["power_per_flow"])})
        except (ValueError, TypeError, KeyError):
            log.warning("ledger %s: a baseline_test event of %s is not a result; skipped", path,
                        event.subject)
            continue
        if not result.aborted and math.isfinite(result.mean_power_w) and result.mean_power_w > 0:
            found[result.drive] = result
    return found


def backed_by_baseline_tests(config: AgentConfig) -> AgentConfig:
    """``config`` with each ``measured_by: baseline_test`` baseline set to the drive's newest test.

    A drive without a complete test in the ledger keeps its stipulated constant (rated power) and
    its vfd savings stay stipulated, said in an ERROR at each start; the agent runs on.
    """
    wanted = [d for d in config.drives if d.baseline.method is BaselineMethod.CONSTANT
              and d.baseline.measured_by == BASELINE_TEST_REF]
    if not wanted:
        return config
    path = config.storage_path / LEDGER_FILE
    try:
        tests = newest_tests(path)
    except LedgerError as exc:
        log.error("%s; the baseline tests cannot back any vfd basis", exc)
        tests = {}
    drives = {d.name: d for d in config.drives}
    for drive in wanted:
        result = tests.get(drive.name)
        if result is None:
            log.error("drive %s: measured_by: baseline_test, but the ledger %s holds no complete baseline "
                      "test of it; its vfd savings stay stipulated until `vfd-agent baseline-test` runs",
                      drive.name, path)
            continue
        stamp = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(result.started))
        baseline = dataclasses.replace(
            drive.baseline, constant_power=result.mean_power_w,
            measured_by=f"vfd-agent baseline-test {stamp}, {result.seconds_at_rated:.0f} s at rated speed "
                        f"({result.samples} samples, ledger {path})")
        drives[drive.name] = dataclasses.replace(drive, baseline=baseline)
        log.info("drive %s: vfd baseline %.3f kW from the baseline test of %s", drive.name,
                 result.mean_power_w / 1e3, stamp)
    return dataclasses.replace(config, drives=tuple(drives[d.name] for d in config.drives))


def baseline_snippet(result: BaselineTestResult) -> str:
    """The drive's baseline section that books its vfd savings as measured by this test."""
    stamp = time.strftime("%Y-%m-%dT%H:%MZ", time.gmtime(result.started))
    return (f"baseline: {{method: constant, power_kw: {result.mean_power_w / 1e3:.3f}, "
            f"measured_by: \"vfd-agent baseline-test {stamp}, {result.seconds_at_rated:.0f} s at rated "
            f"speed\"}}\n  (or baseline: {{method: constant, measured_by: {BASELINE_TEST_REF}}}: the agent "
            "reads the newest complete test from the ledger at each start)")

