"""Pump curves the agent did not design: catalogue-shaped families and shape-changing wear.

The simulator's default pump is the agent's own construction (a quadratic head and a
quadratic power curve through the rated point, ``hil.physics.curves_from_rated``), so
the agent's model is exact on it. A plant may instead give a pump one of the families
below, which are *not* polynomials: each is a table of (flow, head, shaft power) relative
to the best-efficiency point, read through a monotone piecewise-cubic (Fritsch-Carlson,
the PCHIP of SciPy) and scaled to other speeds by the affinity laws
H(Q, r) = r² H1(Q / r), P(Q, r) = r³ P1(Q / r). The agent's polynomials can only
approximate them.

Sources. The first four families are constructed, honestly, from the typical ratios
pump handbooks give for radial pumps by specific speed (shut-off head 1.1-1.35 × the
best-efficiency head, higher for higher specific speed; shut-off power 40-60 % of the
best-efficiency power for radial impellers, approaching and exceeding it toward
mixed flow; a drooping, "unstable" head curve for low specific speeds with many vanes),
with the efficiency q·h/p peaking at q = 1 within 2 % (tests/hil/test_catalogue.py
checks each family's shape). The Wilo families are digitized from real pumps'
published curves (``DIGITIZED``: the numbers, their source and how they were read);
their relative shape is derived from the numbers alone (``shape_from_digitized``), never
fitted to the agent's construction.

Wear that changes the shape (``Wear``), all in the collapsed flow x = Q / r:
- impeller wear: head lost growing with the square of the internal flow (zero at
  shut-off, ``impeller`` × the best-efficiency head at best-efficiency flow);
- internal leakage: the impeller moves x + L while x is delivered (L = ``leakage`` ×
  the best-efficiency flow), so head and power are those of the larger internal flow
  and the shut-off point moves;
- part-load loss: extra shaft power (recirculation, disc friction of opened
  clearances) of ``part_load`` × the best-efficiency power at shut-off, falling with
  the square of the flow to nothing at best-efficiency flow.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from enum import Enum

_BISECTIONS = 60
_GRID = 200  # points of the search for a curve's top


class Family(str, Enum):
    """Curve families a plant file may choose (``curve: {family: ...}``)."""

    QUADRATIC = "quadratic"  # the agent's own construction (the default)
    RADIAL_STEEP = "radial-steep"
    RADIAL_FLAT = "radial-flat"
    DROOPING = "drooping"
    FLAT_POWER = "flat-power"
    WILO_IL80 = "wilo-il80"  # digitized: Wilo CronoLine-IL 80/220-4/4, 4 kW dry-rotor inline pump
    WILO_STRATOS80 = "wilo-stratos80"  # digitized: Wilo Stratos 80/1-12, wet-rotor circulator


@dataclass(frozen=True)
class Shape:
    """A family's rated-speed curve relative to its best-efficiency point (q = Q/Q_bep)."""

    q: tuple[float, ...]
    h: tuple[float, ...]  # head / best-efficiency head
    p: tuple[float, ...]  # shaft power / best-efficiency shaft power
    note: str
    printed_from: float = 0.0  # the lowest q the published curve shows (below it: extrapolated)


_Q = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0, 1.2, 1.4, 1.6)
_CONSTRUCTED: dict[Family, Shape] = {
    Family.RADIAL_STEEP: Shape(
        _Q, (1.30, 1.29, 1.26, 1.20, 1.11, 1.00, 0.86, 0.69, 0.49),
        (0.42, 0.55, 0.67, 0.79, 0.90, 1.00, 1.09, 1.16, 1.21),
        "low specific speed radial pump (n_q about 15): steep stable head curve, shut-off head 1.30, "
        "shut-off power 42 %",
    ),
    Family.RADIAL_FLAT: Shape(
        _Q, (1.12, 1.12, 1.11, 1.09, 1.05, 1.00, 0.92, 0.82, 0.70),
        (0.55, 0.63, 0.72, 0.81, 0.905, 1.00, 1.11, 1.20, 1.28),
        "medium specific speed radial pump (n_q about 35): flat head curve, shut-off head 1.12, "
        "shut-off power 55 %: head says little about flow at part load",
    ),
    Family.DROOPING: Shape(
        _Q, (1.06, 1.10, 1.11, 1.09, 1.05, 1.00, 0.92, 0.81, 0.68),
        (0.48, 0.58, 0.69, 0.80, 0.90, 1.00, 1.11, 1.19, 1.27),
        "radial pump with an unstable (drooping) head curve: the head peaks at 1.11 near 40 % flow "
        "above a shut-off head of 1.06; shut-off power 48 %",
    ),
    Family.FLAT_POWER: Shape(
        _Q, (1.35, 1.30, 1.23, 1.16, 1.08, 1.00, 0.90, 0.78, 0.64),
        (0.80, 0.81, 0.84, 0.88, 0.94, 1.00, 1.08, 1.14, 1.19),
        "high specific speed radial / mixed-flow pump (n_q about 60): shut-off head 1.35, shut-off "
        "power 80 % and nearly flat at low flow: power says little about flow there",
    ),
}


@dataclass(frozen=True)
class Wear:
    """Shape-changing wear, as fractions of the best-efficiency point (0: as new)."""

    impeller: float = 0.0  # head lost at best-efficiency flow, of the best-efficiency head
    leakage: float = 0.0  # internal leakage, of the best-efficiency flow
    part_load: float = 0.0  # extra shaft power at shut-off, of the best-efficiency power

    @property
    def none(self) -> bool:
        """True for an unworn machine."""
        return self.impeller == 0.0 and self.leakage == 0.0 and self.part_load == 0.0


def pchip_slopes(x: tuple[float, ...], y: tuple[float, ...]) -> tuple[float, ...]:
    """Fritsch-Carlson derivatives at the knots (SciPy's PchipInterpolator's, one-sided ends)."""
    n = len(x)
    h = [x[i + 1] - x[i] for i in range(n - 1)]
    delta = [(y[i + 1] - y[i]) / h[i] for i in range(n - 1)]
    d = [0.0] * n
    for i in range(1, n - 1):
        if delta[i - 1] * delta[i] <= 0.0:
            d[i] = 0.0
        else:
            w1 = 2.0 * h[i] + h[i - 1]
            w2 = h[i] + 2.0 * h[i - 1]
            d[i] = (w1 + w2) / (w1 / delta[i - 1] + w2 / delta[i])
    d[0] = _end_slope(h[0], h[1], delta[0], delta[1])
    d[-1] = _end_slope(h[-1], h[-2], delta[-1], delta[-2])
    return tuple(d)


def _end_slope(h0: float, h1: float, m0: float, m1: float) -> float:
    d = ((2.0 * h0 + h1) * m0 - h0 * m1) / (h0 + h1)
    if math.copysign(1.0, d) != math.copysign(1.0, m0):
        return 0.0
    if math.copysign(1.0, m0) != math.copysign(1.0, m1) and abs(d) > abs(3.0 * m0):
        return 3.0 * m0
    return d


@dataclass(frozen=True)
class Pchip:
    """A monotone piecewise-cubic through tabulated points; straight beyond the last point."""

    x: tuple[float, ...]
    y: tuple[float, ...]
    d: tuple[float, ...] = field(default=())

    def __post_init__(self) -> None:
        if not self.d:
            object.__setattr__(self, "d", pchip_slopes(self.x, self.y))

    def __call__(self, t: float) -> float:
        """Value at t (the first point's value below it, a straight line past the last)."""
        x, y, d = self.x, self.y, self.d
        if t <= x[0]:
            return y[0]
        if t >= x[-1]:
            return y[-1] + d[-1] * (t - x[-1])
        i = bisect.bisect_right(x, t) - 1
        h = x[i + 1] - x[i]
        s = (t - x[i]) / h
        h00 = (1.0 + 2.0 * s) * (1.0 - s) ** 2
        h10 = s * (1.0 - s) ** 2
        h01 = s * s * (3.0 - 2.0 * s)
        h11 = s * s * (s - 1.0)
        return h00 * y[i] + h10 * h * d[i] + h01 * y[i + 1] + h11 * h * d[i + 1]


@dataclass(frozen=True)
class Digitized:
    """A real pump's published rated-speed curves as digitized numbers (SI) and where they came from."""

    flow: tuple[float, ...]  # m³/s
    pressure: tuple[float, ...]  # Pa, the pump's pressure rise
    power: tuple[float, ...]  # W, as published (shaft or electrical: ``source`` says which and why)
    source: str


_SHUTOFF_ON_AXIS = 0.01  # a first point below this share of the largest flow was read on the zero-flow axis
_BEP_GRID = 2000  # points of the search for the best-efficiency point


def shape_from_digitized(d: Digitized) -> Shape:
    """A digitized curve's shape relative to its best-efficiency point, by two stated rules.

    Shut-off: a first point on the zero-flow axis is the shut-off point; otherwise the head
    is extrapolated as the parabola with a level tangent at zero flow through the first two
    points (a stable radial curve near shut-off) and the power as the straight line through
    them (a radial pump's power rises about linearly from shut-off). Best efficiency: the
    largest Q·Δp/P on the piecewise cubics through the points; a constant motor efficiency
    cancels there and in every ratio, so only its load dependence could change the shape.
    """
    q, dp, p = list(d.flow), list(d.pressure), list(d.power)
    on_axis = q[0] < _SHUTOFF_ON_AXIS * q[-1]
    if on_axis:
        q[0] = 0.0
    else:
        curvature = (dp[0] - dp[1]) / (q[1] ** 2 - q[0] ** 2)
        slope = (p[1] - p[0]) / (q[1] - q[0])
        q, dp, p = [0.0, *q], [dp[0] + curvature * q[0] ** 2, *dp], [p[0] - slope * q[0], *p]
    head, power = Pchip(tuple(q), tuple(dp)), Pchip(tuple(q), tuple(p))
    grid = [q[1] + (q[-1] - q[1]) * i / _BEP_GRID for i in range(_BEP_GRID + 1)]
    bep = max(grid, key=lambda x: x * head(x) / power(x))
    h_bep, p_bep = head(bep), power(bep)
    return Shape(tuple(x / bep for x in q), tuple(y / h_bep for y in dp), tuple(y / p_bep for y in p),
                 d.source, 0.0 if on_axis else d.flow[0] / bep)


_BUILDINGS = ("lbl-srg/modelica-buildings (the Modelica Buildings library, LBNL, BSD-3 licence) at commit "
              "c4117ccec1f288ee6bc7f0ee0cb40a45d6940b0c, Buildings/Fluid/Movers/Data/Pumps/Wilo/")
# The records' numbers as they stand there (V_flow m³/s, dp Pa, P W), digitized by F. Jorissen
# (2014) from Wilo's online product finder with WebPlotDigitizer; copied, not refitted.
DIGITIZED: dict[Family, Digitized] = {
    Family.WILO_IL80: Digitized(
        (0.00303454715219, 0.00578898225957, 0.00863678804855, 0.0113912231559, 0.0146125116713,
         0.0181605975724, 0.0214285714286, 0.0248366013072, 0.0274042950514, 0.0282446311858),
        (168215.17064, 166653.242326, 164291.843595, 161128.282627, 154367.77774,
         142807.085577, 128439.498542, 108468.216086, 92889.3102384, 86895.3009775),
        (1905.29339941, 2202.03582759, 2548.86483304, 2812.07908132, 3146.06691483,
         3435.07911022, 3592.75276695, 3710.09774539, 3774.78991597, 3793.34692457),
        _BUILDINGS + "CronolineIL80slash220dash4slash4.mo: Wilo CronoLine-IL 80/220-4/4, a 4 kW "
        "1450 rpm dry-rotor inline pump, 10 points (11-102 m³/h, 17.2-8.9 m). The record calls the "
        "power total (P1); it is taken as the shaft power P2 that Wilo plots for dry-rotor pumps, "
        "because as P1 its best point's 76.7 % wire-to-water would need an 88 % pump behind the "
        "IE2 4 kW 4-pole motor of 2014 (86.6 %, IEC 60034-30-1), above what a pump of this size "
        "reaches (about 80 %). Read as P1 through the simulator's own IE2 4 kW motor the shut-off "
        "power ratio would be 0.42, not 0.44. Best efficiency at 74.8 m³/h, 13.4 m; shut-off "
        "extrapolated from 11 m³/h (head 1.28, power 0.44 of the best point's)",
    ),
    Family.WILO_STRATOS80: Digitized(
        (8.79043600562e-06, 0.00277777777778, 0.00556874120956, 0.00776635021097, 0.00978815049226,
         0.0113484528833, 0.0127329465541, 0.013985583685, 0.0154360056259),
        (78355.8975904, 78243.6144578, 78054.5060241, 75596.0963855, 70490.1686747,
         63682.2650602, 55361.4939759, 45527.8554217, 30966.5060241),
        (437.425146701, 588.954435301, 792.603370491, 931.705429399, 1048.15648043,
         1115.77190985, 1154.92222088, 1171.51603429, 1166.47479929),
        _BUILDINGS + "Stratos80slash1to12.mo: Wilo Stratos 80/1-12, a wet-rotor circulator with an "
        "electronically commutated motor, its maximum-speed curve, 9 points (0-56 m³/h, 8.0-3.2 m). "
        "The power is P1 (Wilo plots the input power of glandless pumps), taken at a constant "
        "motor-and-electronics efficiency, which cancels in the shape (its load dependence is not "
        "published). The first point is on the zero-flow axis. Best efficiency at 36.3 m³/h, 7.1 m "
        "(66 % wire-to-water, high for a circulator: the shape is used, not the level); shut-off "
        "head 1.13, power 0.41; the power peaks near 1.4 × the best-efficiency flow and then falls",
    ),
}

SHAPES: dict[Family, Shape] = {**_CONSTRUCTED, **{f: shape_from_digitized(d) for f, d in DIGITIZED.items()}}


class TableCurves:
    """A pump of a catalogue-shaped family, rated (best-efficiency) point given, with wear.

    Duck-types ``hil.physics.MachineCurves`` (head, shaft_power, efficiency, rho_g, and the
    root-finding methods the plant's solvers call).
    """

    def __init__(self, family: Family, bep_flow: float, bep_head: float, bep_power: float, rho_g: float,
                 wear: Wear = Wear()) -> None:
        if family is Family.QUADRATIC:
            raise ValueError("the quadratic family is hil.physics.MachineCurves")
        self.family = family
        self.shape = SHAPES[family]
        self.bep_flow = bep_flow
        self.bep_head = bep_head
        self.bep_power = bep_power
        self.rho_g = rho_g
        self.wear = wear
        self._h = Pchip(self.shape.q, self.shape.h)
        self._p = Pchip(self.shape.q, self.shape.p)
        grid = [i / _GRID * self.shape.q[-1] * self.bep_flow for i in range(_GRID + 1)]
        heads = [self.head(q, 1.0) for q in grid]
        top = max(range(len(grid)), key=lambda i: heads[i])
        self._x_top = grid[top]
        self._h_top = heads[top]
        self._x_run = self._runout()

    def _internal(self, x: float) -> float:
        """Flow through the impeller [m³/s, rated speed] when x is delivered."""
        return x + self.wear.leakage * self.bep_flow

    def _head1(self, x: float) -> float:
        xi = self._internal(x) / self.bep_flow
        return self.bep_head * (self._h(xi) - self.wear.impeller * xi * xi)

    def _power1(self, x: float) -> float:
        xi = self._internal(x) / self.bep_flow
        part = max(1.0 - x / self.bep_flow, 0.0)
        return self.bep_power * (self._p(xi) + self.wear.part_load * part * part)

    def _runout(self) -> float:
        """Collapsed flow [m³/s] where the rated-speed head falls to zero."""
        low, high = self._x_top, self._x_top + self.bep_flow
        while self._head1(high) > 0.0:
            high += self.bep_flow
        for _ in range(_BISECTIONS):
            mid = 0.5 * (low + high)
            if self._head1(mid) > 0.0:
                low = mid
            else:
                high = mid
        return low

    def head(self, flow: float, ratio: float) -> float:
        """Head [m] at a flow [m³/s] and speed ratio."""
        if ratio <= 0.0:
            return 0.0
        return ratio * ratio * self._head1(flow / ratio)

    def shaft_power(self, flow: float, ratio: float) -> float:
        """Shaft power [W]; never negative."""
        if ratio <= 0.0:
            return 0.0
        return max(ratio**3 * self._power1(flow / ratio), 0.0)

    def efficiency(self, flow: float, ratio: float) -> float:
        """Hydraulic efficiency ρ·g·Q·H / P_shaft (0 at zero flow or power)."""
        power = self.shaft_power(flow, ratio)
        return self.rho_g * flow * self.head(flow, ratio) / power if power > 0.0 else 0.0

    def max_head(self, ratio: float) -> float:
        """The highest head the pump makes at this speed (its shut-off head on a stable curve)."""
        return ratio * ratio * self._h_top

    def flow_at_head(self, head: float, ratio: float) -> float:
        """Flow delivered against ``head`` on the falling branch; 0 above the curve's top."""
        if ratio <= 0.0 or head >= self.max_head(ratio):
            return 0.0
        target = head / (ratio * ratio)
        if target <= 0.0:
            return self._x_run * ratio
        low, high = self._x_top, self._x_run
        for _ in range(_BISECTIONS):
            mid = 0.5 * (low + high)
            if self._head1(mid) > target:
                low = mid
            else:
                high = mid
        return 0.5 * (low + high) * ratio

    def ratio_at(self, head: float, flow: float) -> float:
        """Speed ratio at which the pump delivers ``flow`` against ``head`` (head rises with speed)."""
        if flow <= 0.0:
            return math.sqrt(max(head, 0.0) / self._h_top)
        low, high = 0.0, 1.0
        while self.head(flow, high) < head and high < 64.0:
            high *= 2.0
        for _ in range(_BISECTIONS):
            mid = 0.5 * (low + high)
            if self.head(flow, mid) >= head:
                high = mid
            else:
                low = mid
        return high
