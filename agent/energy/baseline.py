"""Baseline power: what a drive's load would draw without the VFD (DESIGN.md, baselines).

``constant`` and ``characteristic`` follow the drive vendors' own comparison powers; ``throttle``
is the pump at rated speed throttled to the same flow (measured, or the drive's sensorless
estimate) on its datasheet curve (``agent.optimizer.datasheet``); ``damper`` and ``inlet_vane``
are a fan's part-load tables.

Each of these is *stipulated* (a vendor's table, a nameplate, a datasheet) unless a measurement
backs it (``baseline_evidence``): a comparison power measured on the machine before the VFD, or
the flow the table is read at measured by the drive's own flow point. Only a backed baseline's
savings earn CO2 and money (``agent.energy.account``); a stipulated one's are shown apart.
"""

from __future__ import annotations

import math
from enum import Enum

import numpy as np

from agent.config import BaselineConfig, BaselineMethod, DriveConfig
from agent.config.model import BASELINE_TEST_REF
from agent.config.profile import Quantity
from agent.optimizer.datasheet import datasheet_curves
from kernels import (
    BASELINE_CHARACTERISTIC,
    BASELINE_DAMPER,
    BASELINE_INLET_VANE,
    DEFAULT_TABLES,
    characteristic_baseline_power,
    default_efficiency_tables,
    electrical_power,
    table_baseline_power,
    throttle_baseline_power,
)

_TABLE_CODES = {
    BaselineMethod.CHARACTERISTIC: BASELINE_CHARACTERISTIC,
    BaselineMethod.DAMPER: BASELINE_DAMPER,
    BaselineMethod.INLET_VANE: BASELINE_INLET_VANE,
}


class BaselineEvidence(Enum):
    """What backs a drive's baseline: nothing (stipulated) or a measurement."""

    STIPULATED = "stipulated"
    MEASURED_POWER = "measured_power"  # constant: the comparison power was metered (baseline.measured_by)
    MEASURED_FLOW = "measured_flow"  # throttle, damper, inlet_vane: read at the flow the drive measures

    @property
    def measured(self) -> bool:
        """True if a measurement backs the baseline (its savings may be claimed as CO2 and money)."""
        return self is not BaselineEvidence.STIPULATED


_FLOW_BASELINES = (BaselineMethod.THROTTLE, BaselineMethod.DAMPER, BaselineMethod.INLET_VANE)


def baseline_evidence(drive: DriveConfig) -> BaselineEvidence:
    """The evidence behind ``drive``'s baseline, from its config and its profile's points.

    A characteristic (speed) table is always stipulated: speed says nothing about what the
    machine drew before the VFD. A flow table estimated from power and speed is too, and so is
    ``measured_by: baseline_test`` while the ledger holds no complete test of the drive
    (``agent.control.baseline_test.backed_by_baseline_tests`` replaces it with the test's power).
    """
    method = drive.baseline.method
    if method is BaselineMethod.CONSTANT and drive.baseline.measured_by not in ("", BASELINE_TEST_REF):
        return BaselineEvidence.MEASURED_POWER
    if method in _FLOW_BASELINES and drive.profile.point(Quantity.FLOW) is not None:
        return BaselineEvidence.MEASURED_FLOW
    return BaselineEvidence.STIPULATED


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
        self.power(1.0, 0.5 * self.rated_flow, running=True)

    def power(self, speed_ratio: float, flow: float, running: bool) -> float:
        """Baseline power; zero while stopped, NaN when the inputs cannot give one.

        ``flow`` [m³/s] may be NaN: a pump's throttle baseline then has none (the drive passes
        its sensorless estimate, ``agent.sensorless``, where there is no flow point: one flow
        rule), fans take flow ratio = speed ratio (fan law on a system without static pressure).
        """
        if not running:
            return 0.0
        if self.method is BaselineMethod.CONSTANT:
            return self.constant_power
        if self.method is BaselineMethod.CHARACTERISTIC:
            return float(characteristic_baseline_power(speed_ratio, self.rated_power, self._table_x,
                                                       self._table_y))
        if self.method is BaselineMethod.THROTTLE:
            shaft = float(throttle_baseline_power(self._head, self._power, flow))
            return float(electrical_power(shaft, self.rated_power, self._motor, self._direct_on_line))
        flow_ratio = flow / self.rated_flow if math.isfinite(flow) else speed_ratio
        return float(table_baseline_power(flow_ratio, self.rated_power, self._table_x, self._table_y))
