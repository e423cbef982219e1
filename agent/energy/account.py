"""Energy accounting per drive: energy drawn, baseline energy, savings, CO2 and money.

Energy comes from the drive's own counter where its profile has one and the
counter can be trusted, otherwise from the trapezoid integral of power; which
source served each second is recorded. A counter is exact over hours but coarse
over seconds (0.01 kWh is 36 kJ), and a power register is the other way round,
so with a counter the booked energy follows the power integral but is held
within one counter step of the counter: the long-run total is the counter's,
the fine structure is the power's. An interval longer than ``max_gap`` is not
integrated (nobody knows what the drive drew then) and is counted.

Savings against the no-VFD baseline count as ``vfd_measured`` only when a measurement backs
the baseline (``agent.energy.baseline.baseline_evidence``); otherwise they are
``vfd_stipulated``, kept apart and never turned into CO2 or money. The optimizer's savings
(against the operator's strategy) are booked per drive as the group's share and attributed
per group by the bookkeeper; where the counterfactual knows the operator's setpoint at the
agent's staging, the staging part is booked apart from the pressure reset. An output
reading's savings against the no-VFD baseline are net of the drive's own losses, modelled
per poll (``EnergySample.drive_losses``) and kept apart: the mains pays them, the no-VFD
motor would not, and a signed claim must not be high by them.

Savings are split at every hour boundary (the ledger keeps one row per drive per
hour) and at every tariff or emission-factor edge, so money and CO2 are applied
at the moment the energy was saved, never retroactively.

Prometheus counters may not go down, so at each window close (each ledger flush)
the window's net saving goes to a ``saved`` counter when positive and to a
``penalty`` counter when negative: net = saved − penalty, exactly, for energy,
CO2 and money alike.

Energy counters never go down either: power below zero (a regenerative drive
feeding back) is booked in its own ``regenerated`` figure, never subtracted from
the energy drawn and never credited as savings, so saved ≤ baseline always.

Hours are filed by the wall clock only while it is trustworthy (``agent.wallclock``;
a sample's ``wall`` is NaN while it is not). Until then the intervals are held in
memory, by monotonic time, and filed at the hours they really happened as soon as
a sample brings a trusted wall time; the counters catch up then.

The baseline power comes from ``agent.energy.baseline``, the counter's steps from
``agent.energy.counter``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, fields
from enum import Enum

from agent.config import DriveConfig, SiteConfig
from agent.config.profile import Quantity
from agent.config.schedule import TimeOfUse, hour_start
from agent.energy.baseline import baseline_evidence
from agent.energy.counter import EnergyCounter

GRAMS_PER_KG = 1000.0
# Intervals held per drive while the wall clock is untrusted (4 h at a 1 s poll, about 2 MB);
# beyond it the oldest are dropped and counted as a gap rather than filed at a wrong hour.
MAX_HELD_INTERVALS = 14_400
class EnergySource(Enum):
    """Where a drive's energy figure came from."""

    COUNTER = "counter"
    POWER = "power"


@dataclass
class Coverage:
    """What every record of a drive's energy keeps, an hour's delta or the running totals.

    Each field adds up: a later record of the same drive is ``merge``d field by field.
    """

    energy_j: float = 0.0
    baseline_energy_j: float = 0.0
    covered_s: float = 0.0
    gaps: int = 0
    counter_s: float = 0.0  # seconds booked from the drive's energy counter ...
    power_s: float = 0.0  # ... and from the power integral
    regenerated_j: float = 0.0  # energy the drive fed back (negative power), booked apart
    drive_losses_j: float = 0.0  # the drive's own losses, modelled, where its reading is its output

    def merge(self, other: Coverage) -> None:
        """Add the fields ``other`` shares with this record (all of them, for the same type)."""
        for f in fields(other):
            if hasattr(self, f.name):
                setattr(self, f.name, getattr(self, f.name) + getattr(other, f.name))


@dataclass
class HourDelta(Coverage):
    """What one drive added to one ledger hour since the last flush; savings signed.

    The current window's signed savings are one too (only its savings fields are used).
    """

    saved_vfd_j: float = 0.0  # against a baseline backed by a measurement
    saved_optimizer_j: float = 0.0
    co2_g: float = 0.0  # of saved_vfd_j only
    cost: float = 0.0  # of saved_vfd_j only
    saved_stipulated_j: float = 0.0  # against a stipulated baseline: no CO2, no money
    saved_staging_j: float = 0.0  # part of saved_optimizer_j from staging (operator's vs agent's pumps)
    saved_unsplit_j: float = 0.0  # part of saved_optimizer_j the counterfactual could not split


# Each signed saving of a window, and the totals' (saved, penalty) pair it is split into.
_SIGNED = (
    ("saved_vfd_j", "saved_vfd_j", "penalty_vfd_j"),
    ("saved_optimizer_j", "saved_optimizer_j", "penalty_optimizer_j"),
    ("co2_g", "co2_avoided_g", "co2_penalty_g"),
    ("cost", "cost_saved", "cost_penalty"),
    ("saved_stipulated_j", "saved_stipulated_j", "penalty_stipulated_j"),
)


@dataclass
class EnergyTotals(Coverage):
    """Cumulative figures of one drive, as exported and as persisted by the ledger.

    Counters never go down: each window's net saving is added to the saved field when
    positive and to the penalty field when negative.
    """

    saved_vfd_j: float = 0.0
    penalty_vfd_j: float = 0.0
    saved_optimizer_j: float = 0.0
    penalty_optimizer_j: float = 0.0
    co2_avoided_g: float = 0.0
    co2_penalty_g: float = 0.0
    cost_saved: float = 0.0
    cost_penalty: float = 0.0
    saved_stipulated_j: float = 0.0
    penalty_stipulated_j: float = 0.0

    def close(self, window: HourDelta) -> None:
        """Split a window's signed savings by sign into saved and penalty."""
        for signed, saved, penalty in _SIGNED:
            value = getattr(window, signed)
            setattr(self, saved, getattr(self, saved) + max(value, 0.0))
            setattr(self, penalty, getattr(self, penalty) + max(-value, 0.0))


class OptimizerPart(Enum):
    """The parts of a group's optimizer saving: the header pressure lowered, the pumps staged."""

    PRESSURE_RESET = "pressure_reset"
    STAGING = "staging"
    UNSPLIT = "unsplit"  # booked while the counterfactual could not price the agent's staging


def optimizer_parts(window: HourDelta) -> dict[OptimizerPart, float]:
    """A window's signed optimizer saving [J] by part (they add up to ``saved_optimizer_j``)."""
    staging, unsplit = window.saved_staging_j, window.saved_unsplit_j
    return {OptimizerPart.PRESSURE_RESET: window.saved_optimizer_j - staging - unsplit,
            OptimizerPart.STAGING: staging, OptimizerPart.UNSPLIT: unsplit}


@dataclass
class SavedPenalty:
    """A cumulative saving that never goes down: each window's net goes to one side by its sign."""

    saved_j: float = 0.0
    penalty_j: float = 0.0

    def add(self, net: float) -> None:
        """Book one window's signed net saving."""
        self.saved_j += max(net, 0.0)
        self.penalty_j += max(-net, 0.0)


@dataclass(frozen=True)
class EnergySample:
    """What the account needs from one accepted poll."""

    t: float  # monotonic s
    wall: float  # Unix s; NaN while the wall clock cannot be trusted (the interval is held)
    power: float  # W, electrical
    baseline_power: float  # W
    counter: float = math.nan  # J, the drive's energy counter, NaN if none
    counterfactual_power: float = math.nan  # W the operator's setpoint would draw (optimizer)
    staged_power: float = math.nan  # W at the operator's setpoint with the pumps the agent runs
    drive_losses: float = 0.0  # W the drive itself draws beyond its reading (an output reading), modelled


@dataclass(frozen=True)
class _Held:
    """An interval (or, with ``a`` None, a gap ending at ``b``) waiting for a trusted wall clock."""

    a: EnergySample | None
    b: EnergySample
    counted: float | None = None


@dataclass
class EnergyAccount:
    """Integrates one drive's samples into totals and per-hour deltas."""

    max_gap: float
    rates: TimeOfUse
    counter: EnergyCounter | None = None
    measured: bool = False  # a measurement backs the baseline: its savings earn CO2 and money
    totals: EnergyTotals = field(default_factory=EnergyTotals)
    pending: dict[int, HourDelta] = field(default_factory=dict)
    source: EnergySource = EnergySource.POWER
    _window: HourDelta = field(default_factory=HourDelta)  # signed savings since the last close
    closed: HourDelta = field(default_factory=HourDelta)  # the window the last close ended
    _last: EnergySample | None = None
    _lead: float | None = None  # booked energy minus counter energy, kept within [0, one step]
    _edge: float = -math.inf  # next time a rate or the hour may change after the last split
    _edge_from: float = math.inf  # the time _edge was found from (a clock stepped back needs a new one)
    _held: list[_Held] = field(default_factory=list)
    _dropped: bool = False  # the hold overflowed since the clock was last trusted

    @classmethod
    def for_drive(cls, drive: DriveConfig, site: SiteConfig, max_gap: float) -> EnergyAccount:
        """An account with the site's rates and the drive's counter, if its profile has one."""
        point = drive.profile.point(Quantity.ENERGY)
        counter = EnergyCounter(point, drive.rated_power) if point is not None else None
        rates = TimeOfUse(site.tariff.price_per_joule, site.emission_kg_per_joule, site.timezone)
        return cls(max_gap, rates, counter, baseline_evidence(drive).measured,
                   source=EnergySource.COUNTER if counter else EnergySource.POWER)

    def add(self, sample: EnergySample) -> None:
        """Book the interval from the previous sample to this one, or start again after a gap."""
        last, self._last = self._last, sample
        if not (math.isfinite(sample.power) and math.isfinite(sample.baseline_power)):
            self.break_chain()  # an unusable sample breaks the chain like a gap
            return
        if last is None:
            if self.counter is not None:
                self.counter.step(sample.counter, 0.0)
            return
        dt = sample.t - last.t
        if dt <= 0.0:
            self._last = last
            return
        if dt > self.max_gap:
            self._file(_Held(None, sample))
            self._lead = None
            if self.counter is not None:
                self.counter.forget()
                self.counter.step(sample.counter, 0.0)
            return
        counted = self.counter.step(sample.counter, dt) if self.counter is not None else None
        drawn, _ = _signed_parts(last.power, sample.power, 0.0, 1.0)
        booked = self._disciplined(counted, drawn * dt)
        self.source = EnergySource.COUNTER if booked is not None else EnergySource.POWER
        self._file(_Held(last, sample, booked))

    def carry_over(self, old: EnergyAccount) -> None:
        """Keep what a config change must not lose: the totals and the intervals held for the clock."""
        self.totals = old.totals
        self._held, self._dropped = old._held, old._dropped

    @property
    def held_s(self) -> float:
        """Seconds of energy held in memory until the wall clock can be trusted."""
        return sum(h.b.t - h.a.t for h in self._held if h.a is not None)

    def _file(self, item: _Held) -> None:
        """Book an interval at its wall time, or hold it until the wall clock is trusted.

        The first trusted sample fixes wall − monotonic; every held interval is then
        filed at the wall time it really happened, in order, before this one.
        """
        if not math.isfinite(item.b.wall):
            self._held.append(item)
            if len(self._held) > MAX_HELD_INTERVALS:
                self._held.pop(0)
                if not self._dropped:
                    self._dropped = True
                    self.totals.gaps += 1  # energy that could not be filed at any known hour
            return
        offset = item.b.wall - item.b.t
        for held in self._held:
            self._book_at(held, held.b.t + offset)
        self._held.clear()
        self._dropped = False
        self._book_at(item, item.b.wall)

    def _book_at(self, item: _Held, wall_b: float) -> None:
        if item.a is None:
            self.totals.gaps += 1
            self._hour(wall_b).gaps += 1
            return
        self._book(item.a, item.b, item.b.t - item.a.t, item.counted, wall_b)

    def _disciplined(self, counted: float | None, integrated: float) -> float | None:
        """The interval's energy: the power integral, held within one counter step of the counter.

        A counter truncates, so the truth lies in [C, C + step). Until the counter has
        been seen to step, where the truth sits in that range is unknown and the power
        integral is booked alone (None); at the first step the truth has just crossed C,
        which fixes the phase to within this interval's energy.
        """
        if counted is None or self.counter is None:
            self._lead = None
            return None
        step = self.counter.resolution
        if self._lead is None:
            if counted > 0.0:
                self._lead = 0.5 * min(integrated, step)
            return None
        lead = min(max(self._lead + integrated - counted, 0.0), step)
        booked = counted + lead - self._lead
        self._lead = lead
        return booked

    def break_chain(self) -> None:
        """Forget the last sample, e.g. when the drive stops answering."""
        self._last = None
        self._lead = None
        if self.counter is not None:
            self.counter.forget()

    def close_window(self) -> dict[int, HourDelta]:
        """End the current window: split its net savings by sign into the totals; hand over the hours."""
        window, self._window = self._window, HourDelta()
        self.totals.close(window)
        self.closed = window
        pending, self.pending = self.pending, {}
        return pending

    def _hour(self, wall: float) -> HourDelta:
        return self.pending.setdefault(hour_start(wall), HourDelta())

    def _book(self, a: EnergySample, b: EnergySample, dt: float, counted: float | None,
              wall_b: float) -> None:
        """Split [a, b] at every rate or hour edge and book each piece at its own rates."""
        integrated = _signed_parts(a.power, b.power, 0.0, 1.0)[0] * dt  # drawn; regeneration apart
        cf_known = math.isfinite(a.counterfactual_power) and math.isfinite(b.counterfactual_power)
        split = cf_known and math.isfinite(a.staged_power) and math.isfinite(b.staged_power)
        wall_a = wall_b - dt  # the wall clock may step; the monotonic dt is the truth
        start = 0.0
        while start < dt:
            if not self._edge_from <= wall_a + start < self._edge:
                self._edge_from, self._edge = wall_a + start, self.rates.next_edge(wall_a + start)
            end = min(dt, self._edge - wall_a)
            if end <= start:  # an edge exactly at the start: move past it
                self._edge_from, self._edge = wall_a + start, self.rates.next_edge(wall_a + start)
                end = min(dt, self._edge - wall_a)
            x0, x1 = start / dt, end / dt
            piece = end - start
            drawn, fed_back = _signed_parts(a.power, b.power, x0, x1)
            power, regenerated = drawn * dt, -fed_back * dt
            baseline = _mean_linear(a.baseline_power, b.baseline_power, x0, x1) * piece
            losses = _mean_linear(a.drive_losses, b.drive_losses, x0, x1) * piece
            if counted is None:
                energy = power
            elif integrated > 0.0:
                energy = counted * power / integrated  # spread the counter step like the power
            else:
                energy = counted * piece / dt
            optimizer = staging = 0.0
            if cf_known:
                counterfactual = _mean_linear(a.counterfactual_power, b.counterfactual_power, x0, x1)
                optimizer = counterfactual * piece - energy
            if split:
                staging = (counterfactual - _mean_linear(a.staged_power, b.staged_power, x0, x1)) * piece
            self._add(wall_a + 0.5 * (start + end), (energy, losses), baseline, (optimizer, staging, split),
                      piece, counted is not None, regenerated)
            start = end

    def _add(self, wall: float, drawn: tuple[float, float], baseline: float,
             optimizer: tuple[float, float, bool], seconds: float, from_counter: bool,
             regenerated: float) -> None:
        """Book one piece: drawn (energy, modelled drive losses), optimizer (saving, staging, split)."""
        price, kg_per_j = self.rates.rates_at(wall)
        energy, losses = drawn
        saved = baseline - energy - losses  # net of the drive's losses; energy ≥ 0: regeneration no saving
        claimed = saved if self.measured else 0.0
        total, staging, split = optimizer
        piece = HourDelta(
            energy_j=energy, baseline_energy_j=baseline, covered_s=seconds,
            counter_s=seconds if from_counter else 0.0, power_s=0.0 if from_counter else seconds,
            regenerated_j=regenerated, drive_losses_j=losses,
            saved_vfd_j=claimed, saved_optimizer_j=total, co2_g=claimed * kg_per_j * GRAMS_PER_KG,
            cost=claimed * price, saved_stipulated_j=0.0 if self.measured else saved,
            saved_staging_j=staging, saved_unsplit_j=0.0 if split else total,
        )
        self._hour(wall).merge(piece)
        self._window.merge(piece)
        self.totals.merge(Coverage(**{f.name: getattr(piece, f.name) for f in fields(Coverage)}))


def _signed_parts(y0: float, y1: float, x0: float, x1: float) -> tuple[float, float]:
    """Integrals over [x0, x1] ⊂ [0, 1] of the positive and of the negative part of the line y0 → y1."""
    ya, yb = y0 + (y1 - y0) * x0, y0 + (y1 - y0) * x1
    if ya >= 0.0 and yb >= 0.0:
        return 0.5 * (ya + yb) * (x1 - x0), 0.0
    if ya <= 0.0 and yb <= 0.0:
        return 0.0, 0.5 * (ya + yb) * (x1 - x0)
    xr = x0 + (x1 - x0) * ya / (ya - yb)  # the zero crossing
    first, second = 0.5 * ya * (xr - x0), 0.5 * yb * (x1 - xr)
    return (first, second) if ya > 0.0 else (second, first)


def _mean_linear(y0: float, y1: float, x0: float, x1: float) -> float:
    """Mean over [x0, x1] ⊂ [0, 1] of the straight line from y0 (at 0) to y1 (at 1)."""
    return y0 + (y1 - y0) * 0.5 * (x0 + x1)
