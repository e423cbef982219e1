"""M&V on the running agent (IPMVP option B): the interval record, the baseline fit, bounded savings.

Per group (and per drive outside every group, a group of one) the agent records each interval
(``MvConfig.interval``, hourly on site) its energy beside the independent variables: delivered
flow or demand proxy, speed, pumps running, critical-point pressure, hour of week. Intervals
recorded in monitor or advise mode are the baseline period: once ``baseline_intervals`` of them
have passed since the first, the agent fits a regression of power on what was recorded
(agent.mv.baseline) and stores it with its Guideline 14 statistics, passing or not. Every later
interval is the reporting period: its avoided energy against the model, with 68/90 % bounds from
the fit's residuals and the power reading's declared accuracy (the profile's ``power_accuracy``).

The record is written in the ledger's flush transaction (the intervals) and the fit and the
savings are computed on the flush's worker thread, after the flush, from the ledger's rows: a
restarted agent finds its baseline period, its model and its savings where it left them. A group
with A/B blocks labels each interval one strategy ran through (``GroupSample.ab``); the A/B
estimate is made from those stored rows after the flush too (``ab_figure``).

Long because the interval record, the option B fit and the A/B estimate are one pass over the
same ledger rows on the flush's worker thread; split, each would read the rows again.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone, tzinfo

import numpy as np

from agent.config.model import AgentConfig, ControlMode, MvConfig
from agent.config.profile import DEFAULT_POWER_ACCURACY
from agent.energy.ledger import Event, EventKind, Ledger, MvInterval, StoredModel
from agent.mv.abtest import MIN_CLUSTERS, AbEstimate, Strategy, ab_estimate
from agent.mv.baseline import (
    AvoidedEnergy,
    BaselineModel,
    DesignSpec,
    Intervals,
    TimeOfWeek,
    avoided_energy,
    fit_baseline,
    time_of_week_group,
)
from agent.mv.estimate import Estimate
from agent.mv.stats import Check, FitStatistics, MvError
from agent.mv.uncertainty import savings_with_meter

log = logging.getLogger(__name__)

BASELINE_MODES = frozenset({ControlMode.MONITOR.value, ControlMode.ADVISE.value})
MIN_COVER = 0.5
"""An interval sampled for less than this share of its length is left out (counted as missing)."""


@dataclass(frozen=True)
class GroupSample:
    """A group's state at one poll, every drive fresh; NaN where a variable is not measured."""

    power_w: float
    flow: float
    speed_ratio: float  # mean over the running drives
    running: float  # drives running
    pressure_pa: float  # the critical point's
    mode: str  # ControlMode value
    ab: tuple[Strategy, int] | None = None  # A/B blocks: the strategy in force and its block; None: no label


@dataclass
class _Open:
    """An interval being recorded: time-weighted sums."""

    start: float
    mode: str
    energy_j: float = 0.0
    covered_s: float = 0.0
    sums: dict[str, float] = field(default_factory=dict)
    known_s: dict[str, float] = field(default_factory=dict)
    ab: tuple[Strategy, int] | None = None  # the A/B label every sample so far carried
    ab_mixed: bool = False  # a sample without it, or with another: the interval has no label

    def label(self, sample: GroupSample) -> None:
        """Keep the A/B label only if every sample of the interval carries the same one."""
        if self.ab_mixed:
            return
        if sample.ab is None or self.ab is not None and sample.ab != self.ab:
            self.ab, self.ab_mixed = None, True
        else:
            self.ab = sample.ab

    def add(self, sample: GroupSample, dt: float) -> None:
        self.energy_j += sample.power_w * dt
        self.covered_s += dt
        for name in ("flow", "speed_ratio", "running", "pressure_pa"):
            value = getattr(sample, name)
            if math.isfinite(value):
                self.sums[name] = self.sums.get(name, 0.0) + value * dt
                self.known_s[name] = self.known_s.get(name, 0.0) + dt

    def mean(self, name: str) -> float | None:
        """The variable's time mean, or None when it was known for under half the covered time."""
        known = self.known_s.get(name, 0.0)
        return self.sums[name] / known if known > 0 and known >= 0.5 * self.covered_s else None


def hour_of_week(start: float, tz: tzinfo) -> int:
    """0 = Monday 00:00 in the site's time zone."""
    local = datetime.fromtimestamp(start, timezone.utc).astimezone(tz)
    return local.weekday() * 24 + local.hour


class IntervalRecorder:
    """Time-weighted intervals per group, from the samples taken after each poll cycle.

    Only time between two samples of a group with every drive fresh, at most ``max_step_s``
    apart, is covered; energy is power × that time (the same rule as a gap in the energy account).
    """

    def __init__(self, interval_s: float, tz: tzinfo, max_step_s: float) -> None:
        self.interval_s = interval_s
        self.tz = tz
        self.max_step_s = max_step_s
        self._open: dict[str, _Open] = {}
        self._last: dict[str, float] = {}  # monotonic time of the group's last sample
        self._closed: list[MvInterval] = []

    def sample(self, grp: str, now: float, wall: float, sample: GroupSample | None) -> None:
        """A group after a poll; ``None`` (a drive stale) or an untrusted wall time (NaN) cover nothing."""
        if sample is None or not math.isfinite(wall):
            self._last.pop(grp, None)
            return
        start = math.floor(wall / self.interval_s) * self.interval_s
        current = self._open.get(grp)
        if current is not None and (current.start != start or current.mode != sample.mode):
            self._close(grp)  # a mode change ends the interval: baseline and reporting never mix
            current = None
        last = self._last.get(grp)
        self._last[grp] = now
        if current is None:
            current = self._open[grp] = _Open(start, sample.mode)
        current.label(sample)
        if last is not None and 0.0 < now - last <= self.max_step_s:
            current.add(sample, now - last)

    def _close(self, grp: str) -> None:
        done = self._open.pop(grp)
        if done.covered_s <= 0.0:
            return
        self._closed.append(MvInterval(
            grp, done.start, self.interval_s, done.mode, done.energy_j, done.covered_s, done.mean("flow"),
            done.mean("speed_ratio"), done.mean("running"), done.mean("pressure_pa"),
            hour_of_week(done.start, self.tz), done.ab[0].value if done.ab else None,
            done.ab[1] if done.ab else None))

    def take(self, wall: float) -> list[MvInterval]:
        """The intervals closed so far, and those whose end ``wall`` has passed; the caller writes them."""
        if math.isfinite(wall):
            for grp in [g for g, o in self._open.items() if o.start + self.interval_s <= wall]:
                self._close(grp)
        closed, self._closed = self._closed, []
        return closed

    def give_back(self, intervals: Sequence[MvInterval]) -> None:
        """Intervals a failed flush did not write: written with the next one."""
        self._closed[:0] = intervals


# --------------------------------------------------------------------------- model and savings


def to_intervals(rows: Sequence[MvInterval]) -> Intervals:
    """The regression's records from ledger rows (mean power over the covered time)."""
    def column(name: str) -> np.ndarray | None:
        values = [getattr(r, name) for r in rows]
        return None if any(v is None for v in values) else np.asarray(values, dtype=np.float64)
    return Intervals(
        np.asarray([r.start for r in rows], dtype=np.float64),
        np.asarray([r.energy_j / r.covered_s for r in rows], dtype=np.float64),
        np.asarray([r.hour_of_week for r in rows], dtype=np.int64),
        column("flow"), column("speed_ratio"), column("pumps_running"), column("pressure_pa"))


def usable(rows: Sequence[MvInterval]) -> list[MvInterval]:
    """The intervals covered for at least ``MIN_COVER`` of their length."""
    return [r for r in rows if r.covered_s >= MIN_COVER * r.length_s and r.covered_s > 0]


def _varies(column: np.ndarray | None) -> bool:
    return column is not None and len(column) > 1 and float(np.ptp(column)) > 1e-9 * max(
        1.0, float(np.max(np.abs(column))))


def candidate_specs(data: Intervals, tow: TimeOfWeek) -> list[DesignSpec]:
    """Designs to try, richest first: measured flow (if it varies) and the time of week, then fewer.

    Only what the measure does not change may explain the baseline's power: the flow the process
    asks for and the operator's schedule. Speed, pumps running and the critical point's pressure
    are what the agent (or the VFD itself) changes; a model on them would predict the agent's own
    power in the reporting period and hide the saving. They are recorded for the report and the
    A/B estimate, never regressors of the baseline here.
    """
    flow = 2 if _varies(data.flow_m3s) else 0
    degrees, groupings = (flow, min(flow, 1)), (tow, TimeOfWeek.NONE)
    specs = [DesignSpec(d, time_of_week=g) for d in degrees for g in groupings]
    specs += [DesignSpec(0, time_of_week=g) for g in groupings]
    return list(dict.fromkeys(specs))


def fit_group(rows: Sequence[MvInterval], config: MvConfig, start: float) -> BaselineModel:
    """The richest design that fits the baseline intervals in [start, start + period); MvError if none."""
    end = start + config.baseline_s
    data = to_intervals(usable(rows))
    last: MvError | None = None
    for spec in candidate_specs(data, config.time_of_week):
        try:
            return fit_baseline(data, spec, config.interval, start, end)
        except MvError as exc:
            last = exc
    raise last or MvError("no baseline interval")


def model_to_json(model: BaselineModel) -> str:
    """Everything needed to predict and to judge the model again, as JSON."""
    spec = asdict(model.spec)
    spec["time_of_week"] = model.spec.time_of_week.value
    return json.dumps({
        "spec": spec, "names": model.names, "coefficients": model.coefficients,
        "interval_s": model.interval_s, "period_start_s": model.period_start_s,
        "period_end_s": model.period_end_s, "expected_intervals": model.expected_intervals,
        "stats": asdict(model.stats), "coverage": model.coverage,
        "rho": model.rho, "sse": model.sse, "checks": [asdict(c) for c in model.checks],
    }, allow_nan=True)


def model_from_json(text: str) -> BaselineModel:
    """The model ``model_to_json`` stored; MvError if the JSON is not one."""
    try:
        d = json.loads(text)
        spec = d["spec"]
        return BaselineModel(
            DesignSpec(int(spec["flow_degree"]), bool(spec["speed_cubed"]), bool(spec["pumps_running"]),
                       bool(spec["pressure"]), TimeOfWeek(spec["time_of_week"]),
                       tuple(int(x) for x in spec["tow_levels"])),
            tuple(d["names"]), tuple(float(b) for b in d["coefficients"]), float(d["interval_s"]),
            float(d["period_start_s"]), float(d["period_end_s"]), int(d["expected_intervals"]),
            FitStatistics(**d["stats"]), float(d["coverage"]), float(d["rho"]), float(d["sse"]),
            tuple(Check(**c) for c in d["checks"]))
    except (ValueError, KeyError, TypeError) as exc:
        raise MvError(f"not a stored baseline model: {exc}") from exc


@dataclass(frozen=True)
class MvFigure:
    """A group's M&V state as exported: its model's verdict and the savings so far, bounded."""

    group: str
    model: BaselineModel
    savings: AvoidedEnergy | None  # None: no reporting interval yet
    savings_j: Estimate | None  # with the power reading's accuracy combined in


def reporting(model: BaselineModel, rows: Sequence[MvInterval]) -> tuple[Intervals, float] | None:
    """The reporting intervals the model can predict (time-of-week groups it saw) and the period's end."""
    kept = [r for r in usable(rows) if r.start >= model.period_end_s]
    if model.spec.time_of_week is not TimeOfWeek.NONE and kept:
        groups = time_of_week_group(np.asarray([r.hour_of_week for r in kept], dtype=np.int64),
                                    model.spec.time_of_week)
        kept = [r for r, g in zip(kept, groups, strict=True) if int(g) in model.spec.tow_levels]
    if not kept:
        return None
    end = max(r.start + r.length_s for r in rows)
    return to_intervals(kept), end


def savings_figure(group: str, model: BaselineModel, rows: Sequence[MvInterval], accuracy: float) -> MvFigure:
    """The model's avoided energy over the reporting intervals in ``rows``, with its bounds."""
    found = reporting(model, rows)
    if found is None:
        return MvFigure(group, model, None, None)
    data, end = found
    saved = avoided_energy(model, data, model.period_end_s, end)
    bounded = savings_with_meter(saved.savings_j, accuracy, baseline_measured=True)
    return MvFigure(group, model, saved, bounded)


# --------------------------------------------------------------------------- A/B blocks

AB_MAX_INTERVALS = 24 * 7 * 26
"""Labelled intervals the estimate uses (the newest): half a year of hours."""
AB_SPEC = DesignSpec(flow_degree=2, time_of_week=TimeOfWeek.NONE)
"""Power on a quadratic in flow. The randomized blocks balance the time of day between the
strategies, so time-of-week columns would only spend degrees of freedom."""


@dataclass(frozen=True)
class AbFigure:
    """A group's A/B estimate from its labelled intervals, or why there is none yet."""

    estimate: AbEstimate | None
    why_not: str
    intervals: int  # labelled intervals analysed


def ab_figure(rows: Sequence[MvInterval]) -> AbFigure | None:
    """The A/B estimate from a group's recorded intervals (the labelled, covered ones); None: no label."""
    kept = [r for r in usable(rows) if r.strategy is not None and r.block is not None and r.flow is not None]
    if not any(r.strategy is not None for r in rows):
        return None
    kept = kept[-AB_MAX_INTERVALS:]
    blocks = np.array([r.block for r in kept], dtype=np.int64)
    count = len(np.unique(blocks))
    if count < MIN_CLUSTERS:
        return AbFigure(None, f"{count} blocks so far, the estimate needs {MIN_CLUSTERS}", len(kept))
    data = to_intervals(kept)
    operator = np.array([r.strategy == Strategy.OPERATOR.value for r in kept])
    try:
        return AbFigure(ab_estimate(data, operator, blocks, AB_SPEC, kept[0].length_s), "", len(kept))
    except MvError as exc:
        return AbFigure(None, str(exc), len(kept))


class Verifier:
    """The agent's M&V: the recorder, and after each flush the fits that are due and the savings."""

    def __init__(self, config: MvConfig, tz: tzinfo, max_step_s: float) -> None:
        self.config = config
        self.recorder = IntervalRecorder(config.interval, tz, max_step_s)
        self.accuracy: dict[str, float] = {}  # group -> its drives' worst declared power accuracy
        self.figures: dict[str, MvFigure] = {}
        self.ab: dict[str, AbFigure] = {}  # groups with labelled intervals: the A/B estimate
        self.events: list[Event] = []  # waiting for the next flush
        self.started = False  # after_flush has run once (it reads the ledger's rows of earlier runs)
        self.fit_failures = 0
        self._failed: set[str] = set()
        self._seen: dict[str, int] = {}
        self._unestimable: dict[str, str] = {}  # group -> why its savings cannot be estimated (logged once)

    def event(self, wall: float, kind: EventKind, subject: str, detail: str) -> None:
        """A non-routine event, written with the next flush."""
        self.events.append(Event(wall, kind, subject, detail))

    def after_flush(self, ledger: Ledger, wall: float) -> None:
        """Fit the models whose baseline period has ended; recompute savings where intervals came in.

        Runs on the flush's worker thread, with the ledger's own connection. A baseline period
        ends with an interval's end, so a flush that wrote no interval has nothing new to fit.
        """
        self.started = True
        rows_by_group: dict[str, list[MvInterval]] = {}
        for row in ledger.intervals():
            rows_by_group.setdefault(row.grp, []).append(row)
        stored = {m.grp: m for m in ledger.models()}  # the newest per group (oldest first)
        for grp, rows in rows_by_group.items():
            if self._seen.get(grp) != len(rows):
                ab = ab_figure(rows)
                if ab is not None:
                    self.ab[grp] = ab
            model = self._model(ledger, grp, rows, stored.get(grp), wall)
            if model is None or self._seen.get(grp) == len(rows) and grp in self.figures:
                continue
            self._seen[grp] = len(rows)
            accuracy = self.accuracy.get(grp, DEFAULT_POWER_ACCURACY)
            try:
                self.figures[grp] = savings_figure(grp, model, rows, accuracy)
                self._unestimable.pop(grp, None)
            except MvError as exc:  # e.g. too few independent intervals yet: the model without savings
                self.figures[grp] = MvFigure(grp, model, None, None)
                if self._unestimable.get(grp) != str(exc):
                    log.warning("M&V group %s: no savings estimate yet: %s", grp, exc)
                    self._unestimable[grp] = str(exc)

    def _model(self, ledger: Ledger, grp: str, rows: Sequence[MvInterval], stored: StoredModel | None,
               wall: float) -> BaselineModel | None:
        if stored is not None:
            return model_from_json(stored.model)
        baseline = [r for r in rows if r.mode in BASELINE_MODES]
        if not baseline or grp in self._failed:
            return None
        start = baseline[0].start
        end = start + self.config.baseline_s
        if not math.isfinite(wall) or wall < end:
            return None
        try:
            model = fit_group([r for r in baseline if r.start < end], self.config, start)
        except MvError as exc:
            self.fit_failures += 1
            self._failed.add(grp)
            log.error("M&V group %s: the baseline period ended but no model fits: %s", grp, exc)
            return None
        failed = ", ".join(c.name for c in model.checks if not c.passed)
        verdict = f"FAILS {failed}" if failed else "passes"
        detail = (f"{'+'.join(model.names)}; CV(RMSE) {model.stats.cv_rmse:.1%}, "
                  f"NMBE {model.stats.nmbe:+.1%}, coverage {model.coverage:.0%}: {verdict}")
        ledger.store_model(StoredModel(grp, wall, start, end, self.config.interval, model_to_json(model)),
                           Event(wall, EventKind.BASELINE_FITTED, grp, detail))
        log.info("M&V group %s: baseline model stored: %s", grp, detail)
        return model


def mv_groups(config: AgentConfig) -> dict[str, tuple[str, ...]]:
    """The M&V groups of a config: its optimizer groups, and each drive outside them as a group of one."""
    grouped = {name for g in config.groups for name in g.drives}
    groups = {g.name: tuple(g.drives) for g in config.groups}
    groups.update({d.name: (d.name,) for d in config.drives if d.name not in grouped})
    return groups


def group_accuracy(accuracies: Mapping[str, float], members: Sequence[str]) -> float:
    """A group's power accuracy: the worst of its drives' (a bound holds for the sum)."""
    return max((accuracies[m] for m in members if m in accuracies), default=DEFAULT_POWER_ACCURACY)

