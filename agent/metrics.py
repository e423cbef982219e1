"""Prometheus exposition: one collector that reads the agent's state at scrape time.

Counters and gauges are not pushed per sample; ``AgentCollector.collect`` builds
the metric families from the drives' current state whenever Prometheus scrapes.
Instantaneous values (power, speed) are only exported while a drive is up, so a
dead drive never shows stale numbers as if they were live. Cumulative series the
ledger restores (energy, savings, ...) are absent until it has restored them: a
counter shown from zero and then jumping by the stored history would make
``increase()`` count that history twice.

Long because every family's name, unit and help text is the contract with the dashboards,
rules and alerts (``configs/monitoring``), reviewed together in one place.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from enum import Enum
from importlib import metadata
from typing import Protocol

from prometheus_client import CollectorRegistry, GCCollector, Histogram, PlatformCollector, ProcessCollector
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric
from prometheus_client.registry import Collector

from agent.config.profile import STATUS_BITS, NegativePower, PollRate, Quantity
from agent.control.abblocks import AbSnapshot
from agent.control.writer import WriteResult
from agent.drive import COUNTER_RESET, DeviceRuntime, DriveRuntime
from agent.energy.bookkeeping import Bookkeeper
from agent.energy.counter import CounterEvent
from agent.energy.verification import AbFigure, Verifier
from agent.errors import (
    DriveConnectionError,
    DriveProtocolError,
    DriveTimeoutError,
    ImplausibleReadingError,
    LineNoiseError,
    StuckReadingError,
    UnknownReplyError,
)
from agent.modbus.client import KNOWN_EXCEPTION_CODES
from agent.mv.stats import CONFIDENCE_LEVELS
from agent.mv.uncertainty import vfd_basis_saving
from agent.optimizer.loop import Optimizer, OptimizerSnapshot
from agent.sensorless import CALIBRATIONS
from agent.units import Clock
from agent.wallclock import WallClock

# Every kind of failed poll a drive can show, so each ``vfd_poll_errors_total{kind}`` series exists at 0
# from the start and ``increase()`` sees the first error. The kinds are the error classes' own.
POLL_ERROR_KINDS: tuple[str, ...] = (
    DriveTimeoutError.kind, DriveConnectionError.kind, LineNoiseError.kind, DriveProtocolError.kind,
    ImplausibleReadingError.kind, StuckReadingError.kind, COUNTER_RESET,
    *(f"exception_{code}" for code in sorted(KNOWN_EXCEPTION_CODES)), UnknownReplyError.kind,
)

POLL_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)


def add_poll_errors(family: CounterMetricFamily, device: DeviceRuntime) -> None:
    """A drive's or sensor's failed polls by kind, every known kind at 0 from the start."""
    # dict() copies at C level, so the poller adding a kind mid-scrape cannot break iteration.
    counts = dict(device.errors)
    for kind in sorted(set(POLL_ERROR_KINDS) | set(counts)):
        family.add_metric([device.name, kind], float(counts.get(kind, 0)))


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "unknown"


def agent_version() -> str:
    """The installed vfd-agent's version."""
    return _version("vfd-agent")


class AgentCollector(Collector):
    """Per-drive energy, savings and health, read from the live ``DriveRuntime`` objects."""

    def __init__(self, drives: Sequence[DriveRuntime], currency: str,
                 totals_restored: Callable[[], bool] | None = None, clock: Clock = time.monotonic) -> None:
        self.drives = drives
        self.currency = currency
        self.totals_restored = totals_restored
        self.clock = clock  # the pollers' clock: freshness is judged on the clock readings are stamped with

    def collect(self) -> Iterator[Metric]:
        """Build every family from the current state.

        Long because every per-drive family is declared and filled in one pass over the
        drives, so one scrape shows one consistent state.
        """
        labels = ["drive"]
        up = GaugeMetricFamily("vfd_up", "1 if the last poll of the drive succeeded, else 0", labels=labels)
        fresh = GaugeMetricFamily("vfd_data_fresh", "1 while the drive's data may be acted on (up, "
                                  "plausible, at most two poll intervals old: control's rule), else 0",
                                  labels=labels)
        power = GaugeMetricFamily("vfd_power_watts", "Electrical power drawn by the drive", labels=labels)
        speed = GaugeMetricFamily("vfd_speed_ratio", "Motor speed as a fraction of rated speed",
                                  labels=labels)
        freq = GaugeMetricFamily("vfd_output_frequency_hertz", "Drive output frequency", labels=labels)
        baseline_power = GaugeMetricFamily(
            "vfd_baseline_power_watts", "Power the load would draw without the VFD (baseline)", labels=labels
        )
        energy = CounterMetricFamily("vfd_energy_joules", "Electrical energy drawn by the drive",
                                     labels=labels)
        baseline_energy = CounterMetricFamily(
            "vfd_baseline_energy_joules", "Energy the load would have drawn without the VFD", labels=labels
        )
        saved = CounterMetricFamily(
            "vfd_energy_saved_joules",
            "Energy saved against the no-VFD baseline, over flush windows where the drive drew less than it. "
            "basis=vfd_measured: a measurement backs the baseline (the only basis of CO2 and money); "
            "vfd_stipulated: a vendor table, nameplate or datasheet does (shown, never claimed). "
            "Never add the two bases",
            labels=["drive", "basis"],
        )
        penalty = CounterMetricFamily(
            "vfd_energy_penalty_joules",
            "Energy drawn above the baseline, by basis as vfd_energy_saved_joules; net = saved - penalty",
            labels=["drive", "basis"],
        )
        measured_lower = GaugeMetricFamily(
            "vfd_energy_saved_measured_lower_joules", "Lower end of the net saving on the vfd_measured basis "
            "(saved - penalty) at the confidence given, from the declared accuracies of the baseline's "
            "measurement (baseline accuracy_pct) and of the drive's power reading (profile "
            "power_accuracy_pct)",
            labels=["drive", "confidence"])
        measured_upper = GaugeMetricFamily(
            "vfd_energy_saved_measured_upper_joules", "Upper end of the net saving on the vfd_measured basis "
            "at the confidence given", labels=["drive", "confidence"])
        co2 = CounterMetricFamily("vfd_co2_avoided_grams", "CO2 avoided by the energy saved on the basis "
                                  "named (vfd_measured only: a stipulated saving earns none)",
                                  labels=["drive", "basis"])
        cost = CounterMetricFamily("vfd_cost_saved", "Money saved at the site tariff on the basis named "
                                   "(vfd_measured only)", labels=["drive", "currency", "basis"])
        covered = CounterMetricFamily(
            "vfd_energy_covered_seconds", "Seconds of running time covered by integrated samples",
            labels=labels,
        )
        gaps = CounterMetricFamily(
            "vfd_energy_gaps", "Sampling gaps longer than max_gap_s that were not integrated", labels=labels
        )
        errors = CounterMetricFamily("vfd_poll_errors", "Failed polls by kind", labels=["drive", "kind"])
        source = CounterMetricFamily(
            "vfd_energy_source_seconds", "Seconds of energy booked from each source",
            labels=["drive", "source"],
        )
        counter_events = CounterMetricFamily(
            "vfd_energy_meter_events", "Energy-counter wraps, resets, jumps and saturation",
            labels=["drive", "event"],
        )
        regenerated = CounterMetricFamily(
            "vfd_energy_regenerated_joules", "Energy fed back by the drive (negative power), booked apart "
            "from the energy drawn and never as savings", labels=labels,
        )
        losses = CounterMetricFamily(
            "vfd_drive_losses_modelled_joules", "The drive's own losses, modelled at each poll's operating "
            "point (agent.motor_tables), where its power reading is its output (the motor's input): not in "
            "vfd_energy_joules, netted out of vfd_energy_saved_joules; none for a mains-side reading",
            labels=labels,
        )
        last = GaugeMetricFamily(
            "vfd_last_poll_timestamp_seconds", "Unix time of the last successful poll", labels=labels
        )
        restored = self.totals_restored is None or self.totals_restored()
        now = self.clock()
        for drive in self.drives:
            name = [drive.name]
            up.add_metric(name, 1.0 if drive.up else 0.0)
            fresh.add_metric(name, 1.0 if drive.is_fresh(now) else 0.0)
            if drive.account.counter is not None:
                events = dict(drive.account.counter.events)
                for event in CounterEvent:
                    counter_events.add_metric([drive.name, event.value], float(events.get(event, 0)))
            add_poll_errors(errors, drive)
            reading = drive.last
            if reading is not None and math.isfinite(reading.wall):
                last.add_metric(name, reading.wall)
            if drive.up and reading is not None:
                power.add_metric(name, reading.power)
                baseline_power.add_metric(name, reading.baseline_power)
                if reading.speed_ratio == reading.speed_ratio:  # not NaN
                    speed.add_metric(name, reading.speed_ratio)
                if Quantity.OUTPUT_FREQUENCY in reading.values:
                    freq.add_metric(name, reading.values[Quantity.OUTPUT_FREQUENCY])
            if not restored:
                continue
            totals = drive.account.totals
            if drive.config.profile.negative_power is NegativePower.REGENERATED:
                regenerated.add_metric(name, totals.regenerated_j)
            energy.add_metric(name, totals.energy_j)
            losses.add_metric(name, totals.drive_losses_j)
            baseline_energy.add_metric(name, totals.baseline_energy_j)
            for basis, saved_j, penalty_j in (
                (SavingsBasis.VFD_MEASURED, totals.saved_vfd_j, totals.penalty_vfd_j),
                (SavingsBasis.VFD_STIPULATED, totals.saved_stipulated_j, totals.penalty_stipulated_j),
            ):
                saved.add_metric([drive.name, basis.value], saved_j)
                penalty.add_metric([drive.name, basis.value], penalty_j)
            if drive.account.measured:  # the claimed basis: its bounds from the declared accuracies
                net = vfd_basis_saving(totals.saved_vfd_j - totals.penalty_vfd_j, totals.baseline_energy_j,
                                       drive.config.baseline.accuracy, totals.energy_j,
                                       drive.config.profile.power_accuracy)
                for level in CONFIDENCE_LEVELS:
                    measured_lower.add_metric([drive.name, f"{level:g}"], net.lower(level))
                    measured_upper.add_metric([drive.name, f"{level:g}"], net.upper(level))
            co2.add_metric([drive.name, SavingsBasis.VFD_MEASURED.value], totals.co2_avoided_g)
            cost.add_metric([drive.name, self.currency, SavingsBasis.VFD_MEASURED.value], totals.cost_saved)
            covered.add_metric(name, totals.covered_s)
            source.add_metric([drive.name, "counter"], totals.counter_s)
            source.add_metric([drive.name, "power"], totals.power_s)
            gaps.add_metric(name, float(totals.gaps))
        yield from (up, fresh, power, speed, freq, baseline_power, energy, baseline_energy, saved, penalty,
                    measured_lower, measured_upper, co2, cost, covered, gaps, errors, last, source,
                    counter_events, regenerated, losses)


class SavingsBasis(Enum):
    """The ``basis`` label of the per-drive savings, CO2 and money counters."""

    VFD_MEASURED = "vfd_measured"
    VFD_STIPULATED = "vfd_stipulated"


class GroupSavingsCollector(Collector):
    """The optimizer's savings against the operator's strategy, per group and part (never per drive).

    A group's pumps share one flow: the operator's strategy would run them differently, so one
    pump's share of the saving may be negative while the group saves. Only the group's sum means
    anything, split into pressure reset and staging where the counterfactual can tell them apart.
    """

    def __init__(self, bookkeeper: Bookkeeper) -> None:
        self.bookkeeper = bookkeeper

    def collect(self) -> Iterator[Metric]:
        """Saved and penalty per group and part; absent until the ledger has restored them."""
        labels = ["group", "part"]
        saved = CounterMetricFamily(
            "vfd_optimizer_energy_saved_joules", "Energy the optimizer saved against the operator's strategy "
            "(modelled counterfactual), per group and part (pressure_reset, staging, unsplit), over flush "
            "windows where the group drew less than it; not the same basis as vfd_energy_saved_joules",
            labels=labels)
        penalty = CounterMetricFamily(
            "vfd_optimizer_energy_penalty_joules", "Energy drawn above the operator's strategy per group and "
            "part; net = saved - penalty", labels=labels)
        if self.bookkeeper.restored:
            for (group, part), totals in sorted(self.bookkeeper.group_totals.items(),
                                                key=lambda item: (item[0][0], item[0][1].value)):
                saved.add_metric([group, part.value], totals.saved_j)
                penalty.add_metric([group, part.value], totals.penalty_j)
        yield from (saved, penalty)


class MvCollector(Collector):
    """M&V per group: the baseline model's Guideline 14 figures and the measured savings with bounds.

    The savings are the reporting period's avoided energy against the group's fitted baseline
    (IPMVP option B), their bounds from the fit's residuals and the power reading's declared
    accuracy. Lower and upper are separate names so no query adds a bound to an estimate.
    """

    def __init__(self, verifier: Verifier) -> None:
        self.verifier = verifier

    def collect(self) -> Iterator[Metric]:
        """One series per group with a model (the savings once a reporting interval is recorded)."""
        labels = ["group"]
        saved = GaugeMetricFamily("vfd_mv_energy_saved_joules", "Energy saved in the reporting period "
                                  "against the group's measured baseline model (IPMVP option B); may be "
                                  "negative",
                                  labels=labels)
        lower = GaugeMetricFamily("vfd_mv_energy_saved_lower_joules", "Lower end of the savings' interval at "
                                  "the confidence given (fit residuals and power accuracy)",
                                  labels=["group", "confidence"])
        upper = GaugeMetricFamily("vfd_mv_energy_saved_upper_joules", "Upper end of the savings' interval at "
                                  "the confidence given", labels=["group", "confidence"])
        cv = GaugeMetricFamily("vfd_mv_baseline_cv_rmse_ratio", "CV(RMSE) of the group's baseline model "
                               "(Guideline 14 hourly limit 0.30)", labels=labels)
        nmbe = GaugeMetricFamily("vfd_mv_baseline_nmbe_ratio", "NMBE of the group's baseline model "
                                 "(Guideline 14 limit ±0.10)", labels=labels)
        cover = GaugeMetricFamily("vfd_mv_baseline_coverage_ratio", "Share of the baseline period's "
                                  "intervals with data (CalTRACK: above 0.90)", labels=labels)
        passed = GaugeMetricFamily("vfd_mv_baseline_passed", "1 if the baseline model meets every Guideline "
                                   "14 and coverage test, else 0 (its savings are then not signable)",
                                   labels=labels)
        for group, figure in sorted(self.verifier.figures.items()):
            model = figure.model
            cv.add_metric([group], model.stats.cv_rmse)
            nmbe.add_metric([group], model.stats.nmbe)
            cover.add_metric([group], model.coverage)
            passed.add_metric([group], 1.0 if model.passed else 0.0)
            if figure.savings_j is not None:
                saved.add_metric([group], figure.savings_j.value)
                for level in CONFIDENCE_LEVELS:
                    lower.add_metric([group, f"{level:g}"], figure.savings_j.lower(level))
                    upper.add_metric([group, f"{level:g}"], figure.savings_j.upper(level))
        yield from (saved, lower, upper, cv, nmbe, cover, passed)
        yield from ab_estimate_families(self.verifier.ab)


class LedgerCollector(Collector):
    """Health of the durable ledger: a failing disk must be visible, not silent."""

    def __init__(self, bookkeeper: Bookkeeper) -> None:
        self.bookkeeper = bookkeeper

    def collect(self) -> Iterator[Metric]:
        """Flush counts by result, last successful flush, rows waiting."""
        keeper = self.bookkeeper
        flushes = CounterMetricFamily("vfd_ledger_flushes", "Ledger flushes by result", labels=["result"])
        flushes.add_metric(["ok"], float(keeper.flushes_ok))
        flushes.add_metric(["error"], float(keeper.flushes_failed))
        yield flushes
        yield GaugeMetricFamily("vfd_ledger_last_flush_timestamp_seconds",
                                "Unix time of the last successful ledger flush", value=keeper.last_flush_wall)
        yield GaugeMetricFamily("vfd_ledger_unwritten_seconds",
                                "Running time whose energy is held in memory because the ledger refused it "
                                "(summed over drives): what a crash would lose now",
                                value=keeper.unwritten_seconds)


class ClockCollector(Collector):
    """The wall clock: its steps, and whether energy may be filed by it (``agent.wallclock``)."""

    def __init__(self, clock: WallClock) -> None:
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        """Steps counted, and 1 while the clock is trusted."""
        yield CounterMetricFamily("vfd_clock_steps", "Steps of the wall clock (wall - monotonic moved by "
                                  "more than 1 s between readings)", value=float(self.clock.steps))
        trusted = 1.0 if self.clock.trusted else 0.0
        yield GaugeMetricFamily("vfd_clock_trusted", "1 while the wall clock is trusted to file energy into "
                                "hours; 0 while energy is held in memory", value=trusted)


class BuildInfoCollector(Collector):
    """``vfd_agent_build_info``: versions of the agent and the libraries it depends on."""

    def collect(self) -> Iterable[Metric]:
        """One info family."""
        info = InfoMetricFamily("vfd_agent_build", "Versions of vfd-agent and its key dependencies")
        info.add_metric([], {
            "version": _version("vfd-agent"),
            "python": platform.python_version(),
            "pymodbus": _version("pymodbus"),
            "numba": _version("numba"),
            "numpy": _version("numpy"),
        })
        yield info


class BusLike(Protocol):
    """What ``BusCollector`` reads from a bus poller."""

    @property
    def name(self) -> str:
        """The bus's configured name."""
        ...  # pragma: no cover - protocol

    def utilization(self) -> float:
        """Share of the recent past the line was busy; NaN before it is known."""
        ...  # pragma: no cover - protocol

    def lag(self, rate: PollRate) -> float:
        """How far behind its schedule a rate class is [s]; 0 on time."""
        ...  # pragma: no cover - protocol

    def turnarounds(self) -> dict[str, float]:
        """Each measured drive's turnaround [s]."""
        ...  # pragma: no cover - protocol

    def counts(self) -> tuple[int, int, int, int]:
        """Cycles, cycles started late, connections opened, attempts to open one that failed."""
        ...  # pragma: no cover - protocol


class BusCollector(Collector):
    """Each bus's line and schedule, read from its poller.

    ``vfd_bus_utilization_ratio{bus}``, ``vfd_poll_lag_seconds{bus,rate}``,
    ``vfd_drive_turnaround_seconds{drive}`` and the bus's counters (cycles, late cycles, connects,
    failed connects).
    """

    def __init__(self, buses: Sequence[BusLike]) -> None:
        self.buses = buses

    def collect(self) -> Iterator[Metric]:
        """One gauge sample per bus whose utilization is known."""
        family = GaugeMetricFamily(
            "vfd_bus_utilization_ratio",
            "Share of the last 10 s a bus was busy: on RTU the theoretical line time (11 bits per "
            "character, t3.5 silences) of the transactions made, on TCP the time a request was in flight",
            labels=["bus"],
        )
        lag = GaugeMetricFamily(
            "vfd_poll_lag_seconds",
            "How far a bus's poll schedule is behind: fast, how late the last cycle started after its "
            "tick; slow, how overdue the most overdue drive's slow class is (stretched under overload)",
            labels=["bus", "rate"],
        )
        turnaround = GaugeMetricFamily(
            "vfd_drive_turnaround_seconds",
            "Time a drive takes to answer beyond the frames' wire time (TCP: the whole round trip), "
            "the median of its recent reads; absent until measured",
            labels=["drive"],
        )
        counters = [CounterMetricFamily(name, text, labels=["bus"]) for name, text in (
            ("vfd_bus_cycles", "Poll cycles a bus has run"),
            ("vfd_bus_late_cycles", "Cycles that started late because the one before overran (see "
                                    "vfd_poll_lag_seconds)"),
            ("vfd_bus_connects", "Connections opened (RTU: the serial port; TCP: the socket), reopenings "
                                 "after a timeout included"),
            ("vfd_bus_connect_failures", "Attempts to open the connection that failed (a port the OS "
                                         "refuses, a host down), each retried with backoff"),
        )]
        for bus in self.buses:
            for counter, count in zip(counters, bus.counts(), strict=True):
                counter.add_metric([bus.name], float(count))
            value = bus.utilization()
            if math.isfinite(value):
                family.add_metric([bus.name], value)
            for rate in (PollRate.FAST, PollRate.SLOW):
                lag.add_metric([bus.name, rate.value], bus.lag(rate))
            for drive, seconds in bus.turnarounds().items():
                turnaround.add_metric([drive], seconds)
        yield family
        yield lag
        yield turnaround
        yield from counters


def _group_service(snapshot: OptimizerSnapshot) -> Iterator[Metric]:
    """Per group: the time its loads were short, and the saving it labelled and did not book."""
    shortfall = CounterMetricFamily("vfd_service_shortfall_seconds", "Time the group's loads were short "
                                    "(no optimizer savings are booked meanwhile)", labels=["group"])
    extrapolated = CounterMetricFamily(
        "vfd_optimizer_extrapolated_saving_joules", "The model's saving against the operator's strategy "
        "at flows where that strategy was never seen: labelled, not booked in vfd_optimizer_energy_saved",
        labels=["group"])
    for group in snapshot.groups:
        shortfall.add_metric([group.name], group.service_shortfall_seconds)
        extrapolated.add_metric([group.name], group.extrapolated_saving_joules)
    yield shortfall
    yield extrapolated


class OptimizerCollector(Collector):
    """Fits, recommendations and guarded writes of the optimizer, per drive, from its snapshot."""

    def __init__(self, optimizer: Optimizer) -> None:
        self.optimizer = optimizer

    def collect(self) -> Iterator[Metric]:
        """One family per quantity; a value the optimizer does not have is left out, never shown as 0."""
        fit_r2 = GaugeMetricFamily("vfd_fit_r_squared", "R² of the latest fit of a curve (head, power: the "
                                   "drive's machine; system: its group's)", labels=["drive", "curve"])
        fit_used = GaugeMetricFamily("vfd_fit_in_use", "1 if a fitted curve is used (the latest fit "
                                     "that passed), 0 if the datasheet (or configured) curve is",
                                     labels=["drive", "curve"])
        drift = GaugeMetricFamily("vfd_fit_efficiency_drift_ratio", "Efficiency of the curves in use over "
                                  "the datasheet's where the machine runs, minus 1 (negative: wear)",
                                  labels=["drive"])
        speed = GaugeMetricFamily("vfd_recommended_speed_ratio", "Recommended speed over rated speed",
                                  labels=["drive"])
        running = GaugeMetricFamily("vfd_recommended_running", "1 if the drive should run, 0 if it should "
                                    "stop", labels=["drive"])
        setpoint = GaugeMetricFamily("vfd_recommended_setpoint_pascals", "Recommended pressure setpoint "
                                     "of the drive's PI", labels=["drive"])
        saving = GaugeMetricFamily("vfd_expected_saving_watts", "Power the recommendation saves against the "
                                   "operator's setpoint, at the present demand", labels=["drive"])
        holding = GaugeMetricFamily("vfd_control_active", "1 while the agent's setpoints are in force on the "
                                    "drive", labels=["drive"])
        writes = CounterMetricFamily("vfd_setpoint_writes", "Attempted writes by result (ok, dry_run, "
                                     "refused_*, failed, verify_failed)", labels=["drive", "result"])
        stages = CounterMetricFamily("vfd_stage_changes", "Stage changes the agent made", labels=["group"])
        snapshot = self.optimizer.snapshot()
        errors = CounterMetricFamily("vfd_optimizer_cycle_errors", "Optimizer cycles that failed (a bug; "
                                     "every group was handed back to the operator)")
        errors.add_metric([], float(snapshot.cycle_errors))
        for group in snapshot.groups:
            stages.add_metric([group.name], float(group.stage_changes))
            for drive in group.drives:
                name = drive.name
                if drive.fitted:
                    for curve, r2, used in (("head", drive.r2_head, drive.head_fit_in_use),
                                            ("power", drive.r2_power, drive.power_fit_in_use)):
                        if math.isfinite(r2):
                            fit_r2.add_metric([name, curve], r2)
                        fit_used.add_metric([name, curve], 1.0 if used else 0.0)
                if math.isfinite(group.system_r_squared):
                    fit_r2.add_metric([name, "system"], group.system_r_squared)
                fit_used.add_metric([name, "system"], 1.0 if group.system_fitted else 0.0)
                if math.isfinite(drive.efficiency_drift):
                    drift.add_metric([name], drive.efficiency_drift)
                rec = drive.recommendation
                for family, number in ((speed, rec.speed_ratio), (running, rec.running),
                                       (setpoint, rec.setpoint_pa), (saving, rec.expected_saving_w)):
                    if math.isfinite(number):
                        family.add_metric([name], number)
                holding.add_metric([name], 1.0 if drive.holding else 0.0)
                if drive.controlled:  # every result at 0 from the start, so increase() sees the first
                    for result in WriteResult:
                        writes.add_metric([name, result.value], float(drive.writes.get(result.value, 0)))
        yield from (fit_r2, fit_used, drift, speed, running, setpoint, saving, holding, writes, stages)
        yield from _group_service(snapshot)
        yield errors
        yield from ab_block_counts(snapshot.ab_blocks)


def ab_block_counts(blocks: Mapping[str, AbSnapshot]) -> Iterator[Metric]:
    """The A/B blocks each group's schedule has decided so far (this run's)."""
    blocks_run = CounterMetricFamily("vfd_ab_blocks", "A/B blocks decided, by what ran (operator: handed "
                                     "back; overridden: an operator block the agent kept because the loads "
                                     "were short)", labels=["group", "decision"])
    for group, ab in blocks.items():
        blocks_run.add_metric([group, "operator"], float(ab.operator_blocks))
        blocks_run.add_metric([group, "overridden"], float(ab.overridden_blocks))
    yield blocks_run


def ab_estimate_families(figures: Mapping[str, AbFigure]) -> Iterator[Metric]:
    """The measured A/B saving of each group with A/B blocks: estimate and its 68 % and 90 % intervals.

    From the labelled intervals in the ledger (so a restart keeps them). Named like the
    baseline's ``vfd_mv_energy_saved_*``: separate names for the bounds (never a ``bound`` label
    a sum() would add up), the level as a ``confidence`` label. The estimate's families are left
    out until the group has enough blocks for one.
    """
    families: dict[tuple[str, str], GaugeMetricFamily] = {}
    for key, base, what in (
            ("power", "vfd_ab_power_saved", "power the agent saves against the operator's strategy at the "
                                            "same flow [W]"),
            ("energy", "vfd_ab_energy_saved", "energy the agent saved over the time it ran (power saved × "
                                              "agent time) [J]")):
        unit = "watts" if key == "power" else "joules"
        families[key, ""] = GaugeMetricFamily(f"{base}_{unit}", f"A/B blocks: {what}", labels=["group"])
        for bound in ("lower", "upper"):
            families[key, bound] = GaugeMetricFamily(f"{base}_{bound}_{unit}", f"A/B blocks: {bound} end of "
                                                     f"the interval at confidence of the {what}",
                                                     labels=["group", "confidence"])
    seconds = GaugeMetricFamily("vfd_ab_strategy_seconds", "A/B blocks: time in the analysed intervals by "
                                "strategy (agent, operator)", labels=["group", "strategy"])
    for group, figure in sorted(figures.items()):
        estimate = figure.estimate
        if estimate is None:
            continue
        seconds.add_metric([group, "agent"], estimate.agent_time_s)
        seconds.add_metric([group, "operator"], estimate.operator_time_s)
        for key, number in (("power", estimate.saving_rate_w), ("energy", estimate.saving_j)):
            families[key, ""].add_metric([group], number.value)
            for confidence, (lower, upper) in number.intervals().items():
                families[key, "lower"].add_metric([group, f"{confidence:g}"], lower)
                families[key, "upper"].add_metric([group, f"{confidence:g}"], upper)
    yield from families.values()
    yield seconds


# Instantaneous health values a profile may map: exported while the drive is up, like power.
HEALTH_GAUGES: tuple[tuple[Quantity, str, str], ...] = (
    (Quantity.CURRENT, "vfd_current_amperes", "Motor (output) current"),
    (Quantity.DC_VOLTAGE, "vfd_dc_link_voltage_volts", "DC-link voltage of the drive"),
    (Quantity.TORQUE, "vfd_torque_newton_meters", "Motor torque"),
    (Quantity.MOTOR_TEMPERATURE, "vfd_motor_temperature_celsius", "Motor temperature (measured or modelled)"),
    (Quantity.FAULT_CODE, "vfd_drive_fault_code", "The drive's active fault number, 0 without a fault"),
)


class DriveHealthCollector(Collector):
    """What the drive says about itself: status bits, fault code, current, DC link, torque, temperature.

    Like power, these are only exported while the drive is up: a tripped drive still answers
    (``vfd_drive_status{state="fault"} 1``), a silent one shows ``vfd_up 0`` and nothing else.
    """

    def __init__(self, drives: Sequence[DriveRuntime]) -> None:
        self.drives = drives

    def collect(self) -> Iterator[Metric]:
        """Status per named bit, then one gauge per health quantity the profile maps."""
        status = GaugeMetricFamily(
            "vfd_drive_status", "1 if the state's bit (profile status_bits: "
            + ", ".join(STATUS_BITS) + ") is set in the drive's status word", labels=["drive", "state"])
        gauges = {q: GaugeMetricFamily(name, text, labels=["drive"]) for q, name, text in HEALTH_GAUGES}
        for drive in self.drives:
            reading = drive.last
            if not drive.up or reading is None:
                continue
            for state in drive.config.profile.status_bits:
                bit = drive.status(state)
                if bit is not None:
                    status.add_metric([drive.name, state], 1.0 if bit else 0.0)
            for quantity, family in gauges.items():
                number = reading.values.get(quantity)
                if number is not None and math.isfinite(number):
                    family.add_metric([drive.name], number)
        yield status
        yield from gauges.values()


class SensorCollector(Collector):
    """The devices read for a group's critical point (``sensors``): up, fresh, their errors and values.

    Their own families, not ``vfd_up``: a dashboard that counts drives must not count a remote
    I/O module. A group's hand-back for a stale critical point is read here (``vfd_sensor_data_fresh``).
    """

    def __init__(self, sensors: Sequence[DeviceRuntime], clock: Clock = time.monotonic) -> None:
        self.sensors = sensors
        self.clock = clock  # the pollers' clock, as for the drives' freshness

    def collect(self) -> Iterator[Metric]:
        """One pass over the sensors: one consistent state per scrape."""
        up = GaugeMetricFamily("vfd_sensor_up", "1 if the last poll of the sensor succeeded, else 0",
                               labels=["sensor"])
        fresh = GaugeMetricFamily("vfd_sensor_data_fresh", "1 while the sensor's data may be acted on (the "
                                  "drives' rule), else 0: a stale critical point hands its group back",
                                  labels=["sensor"])
        errors = CounterMetricFamily("vfd_sensor_poll_errors", "Failed polls of the sensor by kind",
                                     labels=["sensor", "kind"])
        value = GaugeMetricFamily("vfd_sensor_value", "The sensor's latest accepted reading in SI units "
                                  "(critical_pressure: Pa, or m where the point is a head; valve_position: "
                                  "ratio 0-1)", labels=["sensor", "quantity"])
        last = GaugeMetricFamily("vfd_sensor_last_poll_timestamp_seconds",
                                 "Unix time of the sensor's last successful poll", labels=["sensor"])
        now = self.clock()
        for sensor in self.sensors:
            up.add_metric([sensor.name], 1.0 if sensor.up else 0.0)
            fresh.add_metric([sensor.name], 1.0 if sensor.is_fresh(now) else 0.0)
            add_poll_errors(errors, sensor)
            reading = sensor.last
            if reading is None or not sensor.up:
                continue
            if math.isfinite(reading.wall):
                last.add_metric([sensor.name], reading.wall)
            for quantity, number in sorted(reading.values.items(), key=lambda item: item[0].value):
                if math.isfinite(number):
                    value.add_metric([sensor.name, quantity.value], number)
        yield from (up, fresh, errors, value, last)


class FlowEstimateCollector(Collector):
    """Each pump drive's sensorless flow, its 90 % uncertainty and its calibrations (``agent.sensorless``).

    The estimate is shown while the drive is up and running and its flow is identifiable
    there; otherwise the two gauges are absent for that drive only. The calibrations are
    config facts, shown always: ``vfd_flow_calibration`` 1 for each one the drive has had,
    ``vfd_flow_calibration_in_use`` 1 for the best, the one its estimate rests on.
    """

    def __init__(self, drives: Sequence[DriveRuntime]) -> None:
        self.drives = drives

    def collect(self) -> Iterator[Metric]:
        """The estimate families, then the calibration state families."""
        flow = GaugeMetricFamily("vfd_flow_estimate_m3_per_second", "Sensorless flow estimate of a pump "
                                 "drive (absent where not identifiable)", labels=["drive"])
        rel_u = GaugeMetricFamily("vfd_flow_estimate_relative_uncertainty", "Half-width of the flow "
                                  "estimate's 90 % interval over the estimate", labels=["drive"])
        had = GaugeMetricFamily("vfd_flow_calibration", "1 for each calibration the drive's flow estimate "
                                "has had, 0 for the others", labels=["drive", "calibration"])
        in_use = GaugeMetricFamily("vfd_flow_calibration_in_use", "1 for the calibration the drive's flow "
                                   "estimate rests on (the best it has had)", labels=["drive", "calibration"])
        for drive in self.drives:
            estimator = drive.flow_estimator
            if estimator is None:
                continue
            for calibration in CALIBRATIONS:
                had.add_metric([drive.name, calibration.value],
                               1.0 if calibration in estimator.calibrations else 0.0)
                in_use.add_metric([drive.name, calibration.value],
                                  1.0 if calibration is estimator.calibration else 0.0)
            estimate = drive.flow_estimate
            if drive.up and estimate is not None and estimate.available:
                flow.add_metric([drive.name], estimate.flow)
                rel_u.add_metric([drive.name], estimate.rel_u90)
        yield from (flow, rel_u, had, in_use)


class DriveInfoCollector(Collector):
    """Identity and ratings of every configured drive (constant: join on ``drive`` in PromQL)."""

    def __init__(self, drives: Sequence[DriveRuntime]) -> None:
        self.drives = drives

    def collect(self) -> Iterator[Metric]:
        """``vfd_drive_info`` = 1 with the identity labels, and the rated figures in base units."""
        info = GaugeMetricFamily("vfd_drive_info", "Identity of a configured drive (always 1)",
                                 labels=["drive", "bus", "unit", "profile", "load_kind", "baseline"])
        rated_power = GaugeMetricFamily("vfd_rated_power_watts", "Rated (nameplate) power of the motor",
                                        labels=["drive"])
        rated_speed = GaugeMetricFamily("vfd_rated_speed_radians_per_second",
                                        "Rated (nameplate) speed of the motor", labels=["drive"])
        for drive in self.drives:
            config = drive.config
            info.add_metric([config.name, config.bus, str(config.unit), config.profile.name,
                             config.load.kind.value, config.baseline.method.value], 1.0)
            rated_power.add_metric([config.name], config.rated_power)
            rated_speed.add_metric([config.name], config.rated_speed)
        yield from (info, rated_power, rated_speed)


def register_process_collectors(registry: CollectorRegistry) -> None:
    """``process_*``, ``python_gc_*`` and ``python_info`` on the agent's registry, as every exporter has."""
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)


def poll_duration_histogram(registry: CollectorRegistry) -> Histogram:
    """Duration of a whole poll cycle of a bus."""
    return Histogram(
        "vfd_poll_duration_seconds", "Duration of one poll cycle over every drive of a bus",
        labelnames=["bus"], buckets=POLL_BUCKETS, registry=registry,
    )
