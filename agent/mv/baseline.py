"""Measured baselines (IPMVP Option B): power regressed on the independent variables.

The dependent variable is the mean electrical power of each interval [W] (hourly on site),
so energy is power × interval. The regressors are what drives a pump group's power: the
delivered flow (or a demand proxy) as a polynomial, the speed ratio cubed (affinity),
the number of pumps running, the pressure held at the critical point, and a time-of-week
grouping standing in for the operator's schedule (CalTRACK's hourly "time-of-week and
temperature" model uses 168 hour-of-week indicators; a coarser grouping costs fewer degrees
of freedom for short baselines).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from enum import Enum

import numpy as np
import numpy.typing as npt

from agent.mv.estimate import Estimate
from agent.mv.stats import (
    CONFIDENCE_LEVELS,
    G14_FACTOR_HOURLY,
    G14_HOURLY,
    Check,
    FitStatistics,
    FloatArray,
    G14Limits,
    MvError,
    coverage,
    fit_statistics,
    fractional_savings_uncertainty,
    fsu_check,
    g14_checks,
    lag1_autocorrelation,
    ols,
    savings_uncertainty,
)

IntArray = npt.NDArray[np.int64]

HOURS_PER_WEEK = 168


class TimeOfWeek(Enum):
    """How the hour of the week enters the model as indicator columns."""

    NONE = "none"
    DAYPART = "daypart"
    """Weekday or weekend × four six-hour parts of the day: 8 groups."""
    HOUR_OF_WEEK = "hour_of_week"
    """CalTRACK's 168 hour-of-week groups."""


def time_of_week_group(hour_of_week: IntArray, grouping: TimeOfWeek) -> IntArray:
    """Group index of each interval; hour 0 is Monday 00:00 local time."""
    how = np.asarray(hour_of_week, dtype=np.int64)
    if np.any((how < 0) | (how >= HOURS_PER_WEEK)):
        raise MvError("hour of week must lie in 0..167 (0 = Monday 00:00 local)")
    if grouping is TimeOfWeek.HOUR_OF_WEEK:
        return how
    if grouping is TimeOfWeek.DAYPART:
        weekend = (how // 24 >= 5).astype(np.int64)
        return weekend * 4 + (how % 24) // 6
    return np.zeros_like(how)


@dataclass(frozen=True)
class Intervals:
    """Per-interval records in time order: the dependent variable and every candidate regressor.

    ``t_s`` is the start of each interval (UTC seconds); missing intervals are simply absent.
    Regressors a site does not measure stay ``None``.
    """

    t_s: FloatArray
    power_w: FloatArray
    hour_of_week: IntArray
    flow_m3s: FloatArray | None = None
    """Delivered flow [m³/s], or a demand proxy in any fixed unit."""
    speed_ratio: FloatArray | None = None
    pumps_running: FloatArray | None = None
    pressure_pa: FloatArray | None = None
    """Pressure held at the critical point [Pa]."""

    def __post_init__(self) -> None:
        """Check every column has one value per interval."""
        n = len(self.t_s)
        for name in ("power_w", "hour_of_week", "flow_m3s", "speed_ratio", "pumps_running", "pressure_pa"):
            column = getattr(self, name)
            if column is not None and len(column) != n:
                raise MvError(f"{name} has {len(column)} values for {n} intervals")

    def __len__(self) -> int:
        """Number of intervals."""
        return len(self.t_s)

    def subset(self, mask: npt.NDArray[np.bool_]) -> Intervals:
        """The intervals where ``mask`` is true."""
        def pick(a: npt.NDArray[np.generic] | None) -> npt.NDArray[np.generic] | None:
            return None if a is None else np.asarray(a)[mask]
        return Intervals(np.asarray(self.t_s)[mask], np.asarray(self.power_w)[mask],
                         np.asarray(self.hour_of_week)[mask], pick(self.flow_m3s),  # type: ignore[arg-type]
                         pick(self.speed_ratio), pick(self.pumps_running), pick(self.pressure_pa))  # type: ignore[arg-type]


@dataclass(frozen=True)
class DesignSpec:
    """Which terms the model has. ``tow_levels`` is fixed by the fit (the groups seen)."""

    flow_degree: int = 2
    speed_cubed: bool = False
    pumps_running: bool = False
    pressure: bool = False
    time_of_week: TimeOfWeek = TimeOfWeek.DAYPART
    tow_levels: tuple[int, ...] = field(default=())
    """Time-of-week groups of the baseline; the first is the reference (no column)."""

    def __post_init__(self) -> None:
        """Refuse a polynomial degree the physics does not call for."""
        if not 0 <= self.flow_degree <= 3:
            raise MvError(f"flow_degree must be 0..3 (power goes with flow up to the cube), "
                          f"got {self.flow_degree}")


def _column(data: Intervals, name: str) -> FloatArray:
    value = getattr(data, name)
    if value is None:
        raise MvError(f"the model needs {name}, which these intervals do not record")
    return np.asarray(value, dtype=np.float64)


def design_matrix(spec: DesignSpec, data: Intervals) -> tuple[FloatArray, tuple[str, ...]]:
    """The regression's columns and their names; one code path for fitting and predicting."""
    columns: list[FloatArray] = [np.ones(len(data))]
    names: list[str] = ["intercept"]
    if spec.flow_degree:
        flow = _column(data, "flow_m3s")
        for k in range(1, spec.flow_degree + 1):
            columns.append(flow**k)
            names.append("flow" if k == 1 else f"flow^{k}")
    if spec.speed_cubed:
        columns.append(_column(data, "speed_ratio") ** 3)
        names.append("speed^3")
    if spec.pumps_running:
        columns.append(_column(data, "pumps_running"))
        names.append("pumps_running")
    if spec.pressure:
        columns.append(_column(data, "pressure_pa"))
        names.append("pressure")
    if spec.time_of_week is not TimeOfWeek.NONE:
        groups = time_of_week_group(data.hour_of_week, spec.time_of_week)
        unseen = sorted(set(np.unique(groups).tolist()) - set(spec.tow_levels))
        if unseen:
            raise MvError(f"time-of-week groups {unseen} never occur in the baseline; "
                          "the model cannot predict them")
        for level in spec.tow_levels[1:]:
            columns.append((groups == level).astype(np.float64))
            names.append(f"tow[{level}]")
    return np.column_stack(columns), tuple(names)


def with_observed_levels(spec: DesignSpec, data: Intervals) -> DesignSpec:
    """The spec with the time-of-week groups these intervals hold (the first is the reference)."""
    if spec.time_of_week is TimeOfWeek.NONE:
        return spec
    groups = time_of_week_group(data.hour_of_week, spec.time_of_week)
    return replace(spec, tow_levels=tuple(int(g) for g in np.unique(groups)))


@dataclass(frozen=True)
class BaselineModel:
    """A fitted baseline: what the group would draw under the operator's strategy."""

    spec: DesignSpec
    names: tuple[str, ...]
    coefficients: tuple[float, ...]
    interval_s: float
    period_start_s: float
    period_end_s: float
    expected_intervals: int
    stats: FitStatistics
    coverage: float
    rho: float
    sse: float
    checks: tuple[Check, ...]

    @property
    def passed(self) -> bool:
        """All Guideline 14 / CalTRACK tests met."""
        return all(c.passed for c in self.checks)

    def predict_w(self, data: Intervals) -> FloatArray:
        """Baseline power [W] of each interval."""
        X, names = design_matrix(self.spec, data)
        if names != self.names:
            raise MvError(f"design columns {names} differ from the model's {self.names}")
        return np.asarray(X @ np.asarray(self.coefficients), dtype=np.float64)


def _series_on_grid(t_s: FloatArray, values: FloatArray, start_s: float, interval_s: float,
                    expected: int) -> FloatArray:
    """Values on the full interval grid of a period, NaN where an interval is missing."""
    index = np.rint((np.asarray(t_s) - start_s) / interval_s).astype(np.int64)
    if np.any((index < 0) | (index >= expected)):
        raise MvError("an interval lies outside its period")
    if len(np.unique(index)) != len(index):
        raise MvError("two intervals share one slot of the period")
    grid = np.full(expected, np.nan)
    grid[index] = values
    return grid


def expected_intervals(start_s: float, end_s: float, interval_s: float) -> int:
    """Number of interval slots in [start, end)."""
    if not end_s > start_s or interval_s <= 0:
        raise MvError(f"period [{start_s}, {end_s}) with interval {interval_s} s is empty")
    return int(math.ceil((end_s - start_s) / interval_s - 1e-9))


def fit_baseline(data: Intervals, spec: DesignSpec, interval_s: float, period_start_s: float,
                 period_end_s: float, limits: G14Limits = G14_HOURLY) -> BaselineModel:
    """Fit power on the spec's terms over a baseline period and judge it (never hide a failure).

    ρ comes from residuals placed on the period's full interval grid, so a gap never pairs
    two intervals that were not adjacent.
    """
    spec = with_observed_levels(spec, data)
    X, names = design_matrix(spec, data)
    y = np.asarray(data.power_w, dtype=np.float64)
    fit = ols(X, y, names)
    stats = fit_statistics(y, fit.fitted, fit.p)
    expected = expected_intervals(period_start_s, period_end_s, interval_s)
    cover = coverage(len(data), expected)
    rho = lag1_autocorrelation(_series_on_grid(data.t_s, fit.residuals, period_start_s, interval_s, expected))
    return BaselineModel(spec, names, tuple(float(b) for b in fit.coefficients), interval_s, period_start_s,
                         period_end_s, expected, stats, cover, rho, fit.sse, g14_checks(stats, cover, limits))


@dataclass(frozen=True)
class AvoidedEnergy:
    """Avoided energy of a reporting period against a baseline model, Guideline 14 style."""

    adjusted_baseline_j: float
    actual_j: float
    savings_j: Estimate
    """Adjusted baseline − actual [J], with the G14 uncertainty (ν = n' − p)."""
    fsu: dict[float, float]
    """Fractional savings uncertainty per confidence level."""
    m: int
    coverage: float
    checks: tuple[Check, ...]
    """The baseline model's checks plus Guideline 14's savings-uncertainty test."""
    predicted_w: FloatArray
    """Baseline power of each reporting interval [W] (for the report's charts)."""
    cumulative_half_width90_j: FloatArray
    """90 % half-width of the cumulative savings after each reporting interval [J]."""

    @property
    def savings_fraction(self) -> float:
        """F = savings / adjusted baseline."""
        return self.savings_j.value / self.adjusted_baseline_j if self.adjusted_baseline_j else math.nan

    @property
    def passed(self) -> bool:
        """Every test met: a claim to sign."""
        return all(c.passed for c in self.checks)


def avoided_energy(model: BaselineModel, data: Intervals, period_start_s: float, period_end_s: float,
                   limits: G14Limits = G14_HOURLY) -> AvoidedEnergy:
    """Savings of the reporting intervals: Σ (baseline − actual) × interval, with 68/90 % bounds."""
    predicted = model.predict_w(data)
    actual = np.asarray(data.power_w, dtype=np.float64)
    m = len(data)
    dt = model.interval_s
    adjusted = float(np.sum(predicted)) * dt
    actual_j = float(np.sum(actual)) * dt
    unc = savings_uncertainty(model.sse, model.stats.n, model.stats.p, model.rho, model.stats.mean_y, m,
                              adjusted / dt)
    savings = Estimate(adjusted - actual_j, unc.std * dt, unc.dof)
    fsu = {c: fractional_savings_uncertainty(savings.half_width(c), savings.value) for c in CONFIDENCE_LEVELS}
    k = np.arange(1, m + 1, dtype=np.float64)
    cum_pred = np.cumsum(predicted)
    cum_std = (G14_FACTOR_HOURLY * np.sqrt(unc.mse_eff * (1.0 + 2.0 / unc.n_eff) * k)
               * cum_pred / (k * model.stats.mean_y) * dt)
    half90 = cum_std * (savings.half_width(0.90) / savings.std if savings.std else 0.0)
    reporting_cover = coverage(m, expected_intervals(period_start_s, period_end_s, dt))
    checks = (*model.checks, fsu_check(fsu[0.68], limits))
    return AvoidedEnergy(adjusted, actual_j, savings, fsu, m, reporting_cover, checks, predicted, half90)

