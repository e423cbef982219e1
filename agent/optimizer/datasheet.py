"""Datasheet curves of a pump or fan, from the rated point in the config.

Without measured curves the agent assumes the usual shape of a radial pump or a
fan through its rated duty point, with the best efficiency there: shut-off head
1.25 × rated (fans: 1.30) and shut-off power 45 % (fans: 35 %) of the rated
shaft power. The throttle baseline uses these curves, and the optimizer uses
them as its prior until it has fitted the machine's real curves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from agent.config import LoadConfig, LoadKind

PUMP_SHAPE = (1.25, -0.10, 0.45)  # shut-off head ratio, linear head term, shut-off power ratio
FAN_SHAPE = (1.30, -0.10, 0.35)
DEFAULT_SHAFT_POWER_RATIO = 0.9  # shaft power at the duty point / motor rating: a usual sizing margin


@dataclass(frozen=True)
class DatasheetCurves:
    """Affinity-law coefficients in the kernels' layout (SI units)."""

    head: NDArray[np.float64]  # a0, a1, a2: H(Q, r) = a0·r² + a1·r·Q + a2·Q²  [m or Pa]
    power: NDArray[np.float64]  # b0..b3: P(Q, r) = b0·r³ + b1·r²·Q + b2·r·Q² + b3·Q³  [W]


def curves_from_rated(
    rated_flow: float, rated_head: float, rated_shaft_power: float, shape: tuple[float, float, float]
) -> DatasheetCurves:
    """Curves through (Q_r, H_r, P_r) whose efficiency Q·H/P peaks at Q_r."""
    shutoff, h1, p0 = shape
    h2 = 1.0 - shutoff - h1  # h(1) = 1
    # dη/dq = 0 at q = 1  <=>  p'(1) = 1 + h'(1), with p(1) = 1, p(0) = p0 and no cubic term.
    slope = 1.0 + h1 + 2.0 * h2
    p2 = slope - (1.0 - p0)
    p1 = 1.0 - p0 - p2
    q, y, p = rated_flow, rated_head, rated_shaft_power
    return DatasheetCurves(
        head=np.array([shutoff * y, h1 * y / q, h2 * y / (q * q)]),
        power=np.array([p0 * p, p1 * p / q, p2 * p / (q * q), 0.0]),
    )


def datasheet_curves(load: LoadConfig, rated_power: float) -> DatasheetCurves:
    """The assumed curves of a configured load (rated power: the motor's, in W)."""
    if load.kind is LoadKind.FAN:
        return curves_from_rated(load.rated_flow, load.rated_pressure,
                                 DEFAULT_SHAFT_POWER_RATIO * rated_power, FAN_SHAPE)
    return curves_from_rated(load.rated_flow, load.rated_head, DEFAULT_SHAFT_POWER_RATIO * rated_power,
                             PUMP_SHAPE)
