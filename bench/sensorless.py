"""Sweep: sensorless flow on pumps the agent did not design, before and after.

Run as ``python bench/sensorless.py [--points N] [--seed S]``. For each of the
simulator's independent curve families (hil.catalogue), healthy and worn (impeller wear
3 % of head, leakage 4 % of flow, part-load loss 6 % of power), it sweeps the shaft speed
over 40-100 % and the flow over 10-120 % of the best-efficiency flow at that speed, with
the simulator's measurement noise (power 0.3 %, speed 0.05 %, pressure 0.5 %) and
motor slip (the drive reports its output frequency; the shaft turns slower), and
estimates the flow through

- ``main``: the agent's path as it is on main: ``ElectricalModel.shaft`` (no nameplate
  efficiency, as in the example config) then ``estimate_flow`` on the datasheet power
  curve, at the reported speed;
- ``none``, ``shut-off``, ``dp``, ``clamp-on``, ``clamp-on+shut-off``: the new kernels
  (kernels.sensorless) with the IEC 60034-30-1 IE3 motor, slip corrected from the rated
  speed, and each calibration: none (datasheet curves), a shut-off test (closed valve
  at rated speed), a differential-pressure transmitter across the pump (the power curve
  calibrated from a day of DP samples onto the datasheet head curve), one
  clamp-on reading (2 % flow accuracy) at 80 % flow and 90 % speed.

One table per case: mean relative error above and below half the best-efficiency
flow, the 95th percentile of the absolute error as % of the maximum flow (1.2 × the
best-efficiency flow at rated speed), the share of points with an estimate, and the
share where the stated 90 % interval (1.645 u) covers the truth. Figures only.
"""

from __future__ import annotations

import argparse
import math
import sys
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
from numpy.typing import NDArray  # noqa: E402

import kernels as k  # noqa: E402
from agent.motor_tables import EfficiencyClass, full_load_efficiency, part_load_table, rated_slip  # noqa: E402
from agent.optimizer.datasheet import PUMP_SHAPE, curves_from_rated  # noqa: E402
from agent.optimizer.machine import ElectricalModel  # noqa: E402
from hil.catalogue import SHAPES, Family, TableCurves, Wear  # noqa: E402
from hil.physics import GRAVITY, WATER_DENSITY, electrical_power, frequency_for_speed  # noqa: E402

FloatArray = NDArray[np.float64]
RHO_G = WATER_DENSITY * GRAVITY

# The pump: chw-pump-1 of the shipped plants (120 m³/h at 32 m, 15 kW 4-pole motor, shaft
# power at the duty point 90 % of rating, the simulator's motor of 92 % full-load efficiency).
Q_BEP = 120.0 / 3600.0
H_BEP = 32.0
RATED_POWER = 15_000.0
RATED_RPM = 1470.0
P_BEP = 0.9 * RATED_POWER
SIM_MOTOR_EFFICIENCY = 0.92
WORN = Wear(impeller=0.03, leakage=0.04, part_load=0.06)
NOISE_POWER, NOISE_SPEED, NOISE_HEAD = 0.003, 0.0005, 0.005
MIN_SENSITIVITY = 0.3  # p'(x) x_end / p(x) below which power says too little about flow
CLAMP_ON_ACCURACY = 0.02  # relative standard uncertainty of a portable ultrasonic meter

# Uncertainty budget by calibration state (relative standard uncertainties). Shaft power:
# the power reading (drive's estimate, ~1 %), the motor's efficiency (IEC 60034-1 lets a
# motor miss its class by 15 % of its losses, ~1.2 points at 92 %), the inverter's (~1 %).
REL_POWER_U = 0.02
REL_HEAD_U = 0.006  # a DP transmitter, 0.5 % noise plus calibration
REL_SPEED_U = 0.002  # after the slip correction: the motor's rated speed is ±20 % of its slip
# Curve bands (u_in, u_out per best-efficiency flow away from the calibrated range).
DATASHEET_POWER_BAND = (0.04, 0.15)  # ISO 9906 grade 2B: ±8 % power at the guarantee point
SHUTOFF_POWER_BAND = (0.04, 0.15)
CALIBRATED_POWER_BAND = (0.04, 0.15)  # plus the fit's residual
CLAMP_POWER_BAND = (0.03, 0.15)


@dataclass(frozen=True)
class Case:
    """A pump of one family, healthy or worn."""

    family: Family
    wear: Wear

    @property
    def label(self) -> str:
        """Family and state."""
        return f"{self.family.value}, {'worn' if not self.wear.none else 'healthy'}"

    def curves(self) -> TableCurves:
        """The pump's true curves."""
        return TableCurves(self.family, Q_BEP, H_BEP, P_BEP, RHO_G, self.wear)


@dataclass(frozen=True)
class Samples:
    """What the drive and a DP transmitter report over a sweep, and the truth."""

    flow: FloatArray  # m³/s, true
    q_rel: FloatArray  # flow / best-efficiency flow at that speed
    electrical: FloatArray  # W, measured
    frequency: FloatArray  # output frequency / rated, measured
    head: FloatArray  # m, measured


def _measure(curves: TableCurves, shaft_r: FloatArray, flow: FloatArray, rng: np.random.Generator) -> Samples:
    slip = rated_slip(RATED_RPM)
    shaft = np.array([curves.shaft_power(float(q), float(r)) for q, r in zip(flow, shaft_r, strict=True)])
    head = np.array([curves.head(float(q), float(r)) for q, r in zip(flow, shaft_r, strict=True)])
    pairs = zip(shaft_r, shaft, strict=True)
    freq = np.array([frequency_for_speed(float(r), float(p), RATED_POWER, slip) for r, p in pairs])
    elec = np.array([electrical_power(float(p), RATED_POWER, SIM_MOTOR_EFFICIENCY) for p in shaft])
    n = flow.size
    return Samples(
        flow=flow, q_rel=flow / (Q_BEP * shaft_r),
        electrical=elec * (1.0 + NOISE_POWER * rng.standard_normal(n)),
        frequency=freq * (1.0 + NOISE_SPEED * rng.standard_normal(n)),
        head=head * (1.0 + NOISE_HEAD * rng.standard_normal(n)),
    )


def sweep(case: Case, points: int, rng: np.random.Generator) -> Samples:
    """Speed 40-100 %, flow 10-120 % of the best-efficiency flow at that speed, random in both."""
    curves = case.curves()
    r = rng.uniform(0.4, 1.0, points)
    q = rng.uniform(0.1, 1.2, points)
    flow = q * Q_BEP * r
    keep = np.array([curves.head(float(f), float(s)) > 0.0 for f, s in zip(flow, r, strict=True)])
    return _measure(curves, r[keep], flow[keep], rng)


def site_day(case: Case, rng: np.random.Generator) -> Samples:
    """A day of a DP-equipped pump on a system with 30 % static head: 300 samples over its range."""
    curves = case.curves()
    r = rng.uniform(0.6, 1.0, 300)
    # Operating points along the system curve (static 30 % of the rated head).
    static, kk = 0.3 * H_BEP, 0.7 * H_BEP / Q_BEP**2
    flow = np.array([_on_system(curves, float(s), static, kk) for s in r])
    return _measure(curves, r, flow, rng)


def _on_system(curves: TableCurves, r: float, static: float, kk: float) -> float:
    lo, hi = 0.0, curves.flow_at_head(static, r)
    for _ in range(60):
        mid = 0.5 * (lo + hi)
        if curves.head(mid, r) > static + kk * mid * mid:
            lo = mid
        else:
            hi = mid
    return 0.5 * (lo + hi)


class NewPath:
    """The new kernels with one calibration state."""

    def __init__(self, calibration: str, case: Case, rng: np.random.Generator) -> None:
        datasheet = curves_from_rated(Q_BEP, H_BEP, P_BEP, PUMP_SHAPE)
        self.head = datasheet.head
        self.power = datasheet.power
        self.electrical = ElectricalModel(RATED_POWER)
        ie3 = full_load_efficiency(RATED_POWER / 1e3, 4, EfficiencyClass.IE3)
        self.electrical.motor = part_load_table(ie3)
        self.slip = rated_slip(RATED_RPM)
        self.power_band = k.curve_band(*DATASHEET_POWER_BAND, Q_BEP, Q_BEP, Q_BEP)
        curves = case.curves()
        if "shut-off" in calibration:  # closed valve at rated frequency: flow 0
            s = _measure(curves, np.array([1.0]), np.array([0.0]), rng)
            shaft, r = self._shaft_and_speed(s)
            self.head, self.power = k.calibrate_shutoff(self.head, self.power, float(s.head[0]),
                                                        float(shaft[0]), float(r[0]), Q_BEP)
            self.power_band = k.curve_band(*SHUTOFF_POWER_BAND, 0.0, Q_BEP, Q_BEP)
        if calibration == "dp":
            s = site_day(case, rng)
            shaft, r = self._shaft_and_speed(s)
            power, lo, hi, rms, used = k.calibrate_power_from_head(self.head, self.power, s.head, shaft, r,
                                                                 REL_HEAD_U, REL_POWER_U, Q_BEP, 1e-3)
            if used:
                self.power = power
                self.power_band = k.curve_band(math.hypot(CALIBRATED_POWER_BAND[0], rms),
                                               CALIBRATED_POWER_BAND[1], lo, hi, Q_BEP)
        if calibration.startswith("clamp-on"):
            r_c, q_c = 0.9, 0.8 * Q_BEP * 0.9
            s = _measure(curves, np.array([r_c]), np.array([q_c]), rng)
            shaft, r = self._shaft_and_speed(s)
            read = q_c * (1.0 + CLAMP_ON_ACCURACY * float(rng.standard_normal()))
            self.power = k.correct_one_point(self.power, read, float(shaft[0]), float(r[0]),
                                             "shut-off" in calibration)
            x_c = read / float(r[0])
            lo = 0.0 if "shut-off" in calibration else x_c
            # The reading's flow error moves the curve by p'(x) u_Q: fold it into u_in.
            slope = k.shaft_power(self.power, x_c * 1.001, 1.0) - k.shaft_power(self.power, x_c * 0.999, 1.0)
            rel = slope / (0.002 * x_c) * CLAMP_ON_ACCURACY * x_c / k.shaft_power(self.power, x_c, 1.0)
            self.power_band = k.curve_band(math.hypot(CLAMP_POWER_BAND[0], rel), CLAMP_POWER_BAND[1], lo, x_c,
                                           Q_BEP)

    def _shaft_and_speed(self, s: Samples) -> tuple[FloatArray, FloatArray]:
        shaft = self.electrical.shaft(s.electrical)
        r = np.array([k.shaft_speed_ratio(float(f), float(p), RATED_POWER, self.slip)
                      for f, p in zip(s.frequency, shaft, strict=True)])
        return shaft, r

    def estimate(self, s: Samples) -> tuple[FloatArray, FloatArray]:
        """Flow and its standard uncertainty per sample (NaN where not identifiable)."""
        shaft, r = self._shaft_and_speed(s)
        q = np.full(s.flow.size, np.nan)
        u = np.full(s.flow.size, np.nan)
        for i in range(s.flow.size):
            qp, up = k.flow_from_power(self.power, float(shaft[i]), float(r[i]), REL_POWER_U, REL_SPEED_U,
                                       self.power_band, 1.6 * Q_BEP, MIN_SENSITIVITY)
            q[i], u[i] = qp, up
        return q, u


def main_path(s: Samples) -> FloatArray:
    """The agent's estimate as on main: datasheet power curve, default motor table, reported speed."""
    datasheet = curves_from_rated(Q_BEP, H_BEP, P_BEP, PUMP_SHAPE)
    shaft = ElectricalModel(RATED_POWER).shaft(s.electrical)
    return np.array([k.estimate_flow(datasheet.power, float(p), float(f))
                     for p, f in zip(shaft, s.frequency, strict=True)])


@dataclass(frozen=True)
class Row:
    """One line of the table."""

    path: str
    mean_high: float  # mean relative error, q >= 0.5 [%]
    mean_low: float  # q < 0.5 [%]
    p95_of_max: float  # 95th percentile |error| / max flow [%]
    available: float  # share of points with an estimate [%]
    coverage: float  # share of estimates whose 90 % interval holds the truth [%]; NaN without u


def score(path: str, s: Samples, q: FloatArray, u: FloatArray | None) -> Row:
    """Error figures of estimates against the truth."""
    ok = np.isfinite(q)
    rel = np.abs(q - s.flow) / s.flow
    high = ok & (s.q_rel >= 0.5)
    low = ok & (s.q_rel < 0.5)
    err_max = np.abs(q[ok] - s.flow[ok]) / (1.2 * Q_BEP)
    cover = math.nan
    if u is not None and ok.any():
        cover = 100.0 * float(np.mean(np.abs(q[ok] - s.flow[ok]) <= 1.645 * u[ok]))
    return Row(path, 100.0 * float(np.mean(rel[high])) if high.any() else math.nan,
               100.0 * float(np.mean(rel[low])) if low.any() else math.nan,
               100.0 * float(np.percentile(err_max, 95)) if ok.any() else math.nan,
               100.0 * float(np.mean(ok)), cover)


CALIBRATIONS = ("none", "shut-off", "dp", "clamp-on", "clamp-on+shut-off")


def run_case(case: Case, points: int, seed: int) -> list[Row]:
    """Every path on one sweep of one case."""
    rng = np.random.default_rng(seed)
    s = sweep(case, points, rng)
    rows = [score("main", s, main_path(s), None)]
    for calibration in CALIBRATIONS:
        path = NewPath(calibration, case, np.random.default_rng(seed + 1))
        q, u = path.estimate(s)
        rows.append(score(calibration, s, q, u))
    return rows


def cases() -> list[Case]:
    """Every family, healthy and worn."""
    return [Case(f, w) for f in SHAPES for w in (Wear(), WORN)]


def main() -> None:
    """Print the tables."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--points", type=int, default=1500)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    for case in cases():
        print(f"\n{case.label}")
        print(f"  {'path':<18} {'mean err >=0.5':>14} {'mean err <0.5':>13} {'p95 % max':>9} "
              f"{'has est.':>8} {'90% cover':>9}")
        for row in run_case(case, args.points, args.seed):
            print(f"  {row.path:<18} {row.mean_high:13.1f}% {row.mean_low:12.1f}% {row.p95_of_max:8.1f}% "
                  f"{row.available:7.0f}% {row.coverage:8.0f}%")


if __name__ == "__main__":
    main()
