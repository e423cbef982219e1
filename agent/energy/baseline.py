"""Baseline power: what a drive's load would draw without the VFD (DESIGN.md, baselines).

``constant`` and ``characteristic`` follow the drive vendors' own comparison powers; ``throttle``
is the pump at rated speed throttled to the same flow on its datasheet curve
(``agent.optimizer.datasheet``); ``damper`` and ``inlet_vane`` are a fan's part-load tables.
"""

from __future__ import annotations

import math

import numpy as np

from agent.config import BaselineConfig, BaselineMethod, DriveConfig
from agent.optimizer.datasheet import datasheet_curves
from kernels import (
    BASELINE_CHARACTERISTIC,
    BASELINE_DAMPER,
    BASELINE_INLET_VANE,
    DEFAULT_TABLES,
    characteristic_baseline_power,
    default_efficiency_tables,
    electrical_power,
    estimate_flow,
    table_baseline_power,
    throttle_baseline_power,
)

_TABLE_CODES = {
    BaselineMethod.CHARACTERISTIC: BASELINE_CHARACTERISTIC,
    BaselineMethod.DAMPER: BASELINE_DAMPER,
    BaselineMethod.INLET_VANE: BASELINE_INLET_VANE,
}


def baseline_table(baseline: BaselineConfig) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """The (x %, power %) table of a table baseline: the configured one, else the method's default."""
    if baseline.table_x_pct:
        return baseline.table_x_pct, baseline.table_y_pct
    code = _TABLE_CODES.get(baseline.method)
    return DEFAULT_TABLES[code] if code is not None else ((), ())


class BaselineModel:
    """Baseline electrical power [W] of one drive: what it would draw without the VFD."""

    def __init__(self, drive: DriveConfig) -> None:
        baseline: BaselineConfig = drive.baseline
        self.method = baseline.method
        self.constant_power = baseline.constant_power
        self.rated_power = drive.rated_power
        self.rated_flow = drive.load.rated_flow
        xs, ys = baseline_table(baseline)
        self._table_x = np.asarray(xs, dtype=np.float64)
        self._table_y = np.asarray(ys, dtype=np.float64)
        curves = datasheet_curves(drive.load, drive.rated_power)
        self._head, self._power = curves.head, curves.power
        self._motor, self._drive = default_efficiency_tables()
        self._direct_on_line = np.ones_like(self._drive)  # no VFD, no inverter losses
        self._direct_on_line[0] = self._drive[0]
        # Load (or compile) the kernels now, at start-up, rather than inside the first poll.
        self.power(1.0, math.nan, 0.5 * self.rated_power, running=True)

    def power(self, speed_ratio: float, flow: float, electrical: float, running: bool) -> float:
        """Baseline power; zero while stopped, NaN when the inputs cannot give one.

        ``flow`` [m³/s] may be NaN: pumps then estimate it from power and speed on the
        datasheet curve, fans take flow ratio = speed ratio (fan law on a system without
        static pressure).
        """
        if not running:
            return 0.0
        if self.method is BaselineMethod.CONSTANT:
            return self.constant_power
        if self.method is BaselineMethod.CHARACTERISTIC:
            return float(characteristic_baseline_power(speed_ratio, self.rated_power, self._table_x,
                                                       self._table_y))
        if self.method is BaselineMethod.THROTTLE:
            if math.isnan(flow):
                flow = self._estimate_flow(speed_ratio, electrical)
            shaft = float(throttle_baseline_power(self._head, self._power, flow))
            return float(electrical_power(shaft, self.rated_power, self._motor, self._direct_on_line))
        flow_ratio = flow / self.rated_flow if math.isfinite(flow) else speed_ratio
        return float(table_baseline_power(flow_ratio, self.rated_power, self._table_x, self._table_y))

    def _estimate_flow(self, speed_ratio: float, electrical: float) -> float:
        if not (math.isfinite(speed_ratio) and speed_ratio > 0 and math.isfinite(electrical)):
            return math.nan
        load = electrical / self.rated_power
        motor = float(np.interp(load, self._motor[0], self._motor[1]))
        drive = float(np.interp(load, self._drive[0], self._drive[1]))
        return float(estimate_flow(self._power, electrical * motor * drive, speed_ratio))
