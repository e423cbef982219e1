"""The group's system curve H = static + k·Q², learned online; the configured curve is only a prior.

Two kinds of operating point teach it, each averaged over a few polls so that noise
alone does not decide:

- a point **on** the curve: a short point (the loads got less than they asked for: their
  valves were wide open), or, where the group names a critical point, any point: a critical
  valve wide open puts the header head on the curve, and a throttling one shows how far
  above it the header is (``excess_head``). A short point lifts the curve through it at
  once; at each refit the curve passes through the median of the recent points on it (one
  noisy point neither lifts it for good nor drops it), and with points spread over enough
  flow the friction is fitted to them.
- a **satisfied** point (Q, H) proves that head H passes at least Q. The lowest such head
  at a flow (extrapolated along the steeper of the prior's and the learned friction) is
  what the plant has shown to be enough (``proven``).

The agent never goes further below what was proven than one probe step, whose size grows
with the confidence (``confidence``: satisfied intervals since the last shortfall); a
shortfall zeroes the confidence, forgets the proven points it contradicts and raises the
curve. Without a point on the curve, satisfied points below the prior lower it. So a prior
that is too low costs one short interval, and a prior that is too high costs a few probe
steps of savings where a critical point shows the curve (without one, the agent stays on
the prior's safe side: it never goes below a curve no load has shown).
"""

from __future__ import annotations

import math
from collections import deque
from enum import Enum

import numpy as np

from kernels import SYSTEM_FIT_DEFAULTS, fit_system_curve_tuned, system_curve_r_squared

SHORT_SHARE = 0.015  # delivered flow this far below the demand (averaged): the loads are short
SATISFIED_SHARE = 0.01  # within this of the demand (or above): satisfied (the lag of readings on a ramp)
SMOOTHING = 4  # polls averaged before a point is judged
PERSIST = 12  # polls short in a row at a proven head: the plant changed, not the readings' lag
PROVEN_SLACK = 0.01  # a short point this far below the proven head is credible at once
PROBE_STEP = (0.04, 0.15)  # probe step below the proven head, of the design head, at confidence 0 and 1
CONFIDENT_INTERVALS = 10  # satisfied intervals in a row for full confidence
MIN_FIT_SPAN = 0.15  # points on the curve spanning this share of the design flow fit both parameters
RECENT = 24  # points on the curve whose median the curve passes through
RECENT_SHORTS = 8  # latest short points the curve stays on or above (each cost the loads)
STEADY = 0.02  # polls within this share of the design flow and head: one operating point
WIDE_OPEN = 0.97  # a critical valve at least this open passes no more at a lower head: on the curve
SATURATED = 0.995  # a critical valve this open sits at its limit: the header gives no more than the curve
CRITICAL_DEADBAND = 0.03  # of the critical setpoint: a differential pressure lower by more is a short load


def excess_head(valve: float, critical: float, setpoint: float = math.nan) -> float:
    """Header head above the system curve that a critical point shows [m or Pa]; NaN if it does not.

    ``valve`` is the critical valve's opening (0..1, as the share of its full flow coefficient; NaN
    without a valve reading), ``critical`` the differential pressure across the critical branch,
    ``setpoint`` the differential pressure that branch needs (NaN if not configured). A throttling
    valve passes the branch's flow at ``valve²`` of the pressure it is given (the flow goes with the
    opening times √ΔP), so the rest, ``(1 - valve²)·critical``, is head the header gives beyond the
    curve. Wide open, the header gives no more than the curve needs, and less by what the
    differential pressure lacks of its setpoint. Without a valve, the differential pressure beyond
    its setpoint is the excess (below it, a negative one: the head the loads lack).
    """
    lack = min(critical - setpoint, 0.0) if math.isfinite(critical) and math.isfinite(setpoint) else 0.0
    if math.isnan(valve):
        return critical - setpoint if math.isfinite(setpoint) else math.nan
    if valve >= WIDE_OPEN:
        return lack
    return max(critical, 0.0) * (1.0 - valve * valve) if math.isfinite(critical) else math.nan


class Service(Enum):
    """Whether the loads get what they ask for, as the latest averaged polls show it."""

    UNKNOWN = "unknown"
    SATISFIED = "satisfied"
    SHORT = "short"


class SystemModel:
    """The learned system curve, the satisfied points that bound it, and the confidence in it."""

    def __init__(self, static: float, k: float, design_flow: float, design_head: float,
                 capacity: int = 2000, critical_setpoint: float = math.nan) -> None:
        self.prior = (static, k)
        self.critical_setpoint = critical_setpoint  # the DP the critical branch needs (NaN: not configured)
        self.static, self.k = static, k
        self.design_flow, self.design_head = design_flow, design_head
        self.r_squared = math.nan
        self.fitted = False
        self.confidence = 0.0
        self.service = Service.UNKNOWN
        self.on_curve: deque[tuple[float, float]] = deque(maxlen=capacity)  # points on the curve (Q, H)
        self.shorts: deque[tuple[float, float]] = deque(maxlen=RECENT_SHORTS)  # the latest short ones
        self.measured = False  # a critical point has shown the curve (not only the loads' shortfalls)
        self._interval_shorts: list[tuple[float, float]] = []  # short points since the last refit
        self.satisfied: deque[tuple[float, float]] = deque(maxlen=capacity)  # (Q, H)
        self._recent: deque[tuple[float, float, float, float, float]] = deque(maxlen=SMOOTHING)
        self._interval_short = False
        self._interval_satisfied = False
        self._short_polls = 0  # averaged polls short in a row
        self._open_polls = 0  # averaged polls with the critical valve at its limit, no flow to judge by

    def head(self, flow: float) -> float:
        """Head the system needs to pass ``flow`` on the curve in use."""
        return self.static + self.k * flow * flow

    def add(self, delivered: float, head: float, demand: float, valve: float = math.nan,
            critical: float = math.nan) -> Service:
        """One poll's operating point (flows m³/s, head m or Pa); returns the service it shows.

        ``valve`` (0..1) and ``critical`` (m or Pa) are the group's critical point, NaN without one.
        ``demand`` is NaN without a flow meter (``demand: {source: critical}``): the critical point
        alone judges the service then.
        """
        shows = math.isfinite(valve) or (math.isfinite(critical) and math.isfinite(self.critical_setpoint))
        metered = math.isfinite(demand) and demand > 0.0
        if not (math.isfinite(delivered) and math.isfinite(head) and (metered or shows)):
            self._recent.clear()
            self.service = Service.UNKNOWN
            return self.service
        self._recent.append((delivered, head, demand if metered else math.nan, valve, critical))
        if len(self._recent) < SMOOTHING:
            return self.service
        window = np.array(self._recent)
        q, h, d, v, p = (float(x) for x in np.mean(window, axis=0))
        if shows:
            flows, heads = np.ptp(window[:, 0]), np.ptp(window[:, 1])
            steady = flows <= STEADY * self.design_flow and heads <= STEADY * self.design_head
            return self._judge_critical(q, h, d, v, p, steady)
        if q < (1.0 - SHORT_SHARE) * d:
            self._short_polls += 1
            # Where a head at least this high was proven enough for this demand, the readings' lag on
            # a ramp (the demand read before the flow follows) or a transient explain it, unless it lasts.
            if h < (1.0 - PROVEN_SLACK) * self.proven(d) or self._short_polls >= PERSIST:
                self.service = Service.SHORT
                self.learn_short(q, h)
            else:
                self.service = Service.UNKNOWN
            return self.service
        self._short_polls = 0
        if q >= (1.0 - SATISFIED_SHARE) * d:
            self._satisfied(q, h)
        else:
            self.service = Service.UNKNOWN
        return self.service

    def _judge_critical(self, q: float, h: float, d: float, valve: float, critical: float,
                        steady: bool) -> Service:
        """The critical point decides: a throttling valve has what it needs, whatever the flows read.

        Short: the differential pressure below its setpoint by more than the deadband (with no
        valve reading, or the valve wide open); the valve wide open with the metered flow short
        of the demand; without a flow meter or a setpoint, the valve at its limit for ``PERSIST``
        polls (the respond steps meanwhile did not bring it off). A short point lies on the curve
        the lacking differential pressure higher. The critical point shows the curve only from
        polls at one operating point (``steady``): averaged across a step, the flows of one and
        the head of another make a point on no curve.
        """
        excess = excess_head(valve, critical, self.critical_setpoint)
        throttling = math.isfinite(valve) and valve < WIDE_OPEN
        lacking = not throttling and excess < -CRITICAL_DEADBAND * self.critical_setpoint
        self._open_polls = self._open_polls + 1 if valve >= SATURATED else 0
        flow_short = valve >= WIDE_OPEN and q < (1.0 - SHORT_SHARE) * d
        limit = math.isnan(d) and math.isnan(self.critical_setpoint) and self._open_polls >= PERSIST
        if lacking or flow_short or limit:
            self.service = Service.SHORT
            self.learn_short(q, h - min(excess, 0.0) if math.isfinite(excess) else h)
            return self.service
        if math.isfinite(excess) and q > 0.0 and steady:
            self.measured = True
            self._on_curve(q, h - excess)
        self._satisfied(q, h)
        return self.service

    def _satisfied(self, flow: float, head: float) -> None:
        self.service = Service.SATISFIED
        self.satisfied.append((flow, head))
        self._interval_satisfied = True

    def _on_curve(self, flow: float, head: float) -> None:
        self.on_curve.append((flow, head))

    def learn_short(self, flow: float, head: float) -> None:
        """A short point lies on the curve: lift the curve through it, forget what it contradicts."""
        self._interval_short = True
        self.confidence = 0.0
        if flow <= 0.0:
            return
        self._on_curve(flow, head)
        self.shorts.append((flow, head))
        self._interval_shorts.append((flow, head))
        if self.head(flow) < head:
            self.static = head - self.k * flow * flow
        # Satisfied points at or below the curve now in use were luck, or the plant changed.
        self.satisfied = deque(((q, h) for q, h in self.satisfied if h > self.head(q)),
                               maxlen=self.satisfied.maxlen)

    def refit(self) -> None:
        """Once per optimizer interval: the curve through the points on it, else bounded by satisfied ones."""
        if self._interval_short:
            self.confidence = 0.0
        elif self._interval_satisfied:
            self.confidence = min(1.0, self.confidence + 1.0 / CONFIDENT_INTERVALS)
        self._interval_short = self._interval_satisfied = False
        self._fit_friction()
        floor = self._floor()
        self._interval_shorts = []
        if math.isfinite(floor):
            self.static = max(floor, 0.0)
        else:
            self._lower_to_satisfied()

    def _floor(self) -> float:
        """Static head through the median of the recent points on the curve (NaN without any).

        Without a critical point, on or above the latest short ones: a shortfall, the only
        evidence, is not averaged away (nor kept for good). With one, on or above the short
        ones since the last refit only: read in a transient (a stage change, the flows and the
        head read apart) a short point may lie off the curve, and the critical point's many
        others outvote it from the next cycle on; a real change moves their median in a few.
        """
        if not self.on_curve:
            return math.nan
        recent = np.array(list(self.on_curve)[-RECENT:])
        floor = float(np.median(recent[:, 1] - self.k * recent[:, 0] ** 2))
        latest = self._interval_shorts if self.measured else self.shorts
        if latest:
            shorts = np.array(latest)
            floor = max(floor, float(np.max(shorts[:, 1] - self.k * shorts[:, 0] ** 2)))
        return floor

    def _fit_friction(self) -> None:
        """With points on the curve spread over enough flow, fit the friction to them."""
        if len(self.on_curve) < 8:
            return
        data = np.array(self.on_curve)
        if np.ptp(data[:, 0]) < MIN_FIT_SPAN * self.design_flow:
            return
        # Contiguous, as the warm-up compiled them: a column of ``data`` is another Numba type, and
        # its compile (seconds) ran at the first refit, mid-control (booster-static short 1.45 s).
        flow, head = np.ascontiguousarray(data[:, 0]), np.ascontiguousarray(data[:, 1])
        h_st, k_fit = fit_system_curve_tuned(flow, head, *SYSTEM_FIT_DEFAULTS)
        if not (math.isfinite(h_st) and math.isfinite(k_fit) and k_fit > 0.0 and h_st >= 0.0):
            return
        self.r_squared = float(system_curve_r_squared(flow, head, h_st, k_fit))
        self.k, self.fitted = float(k_fit), True

    def _lower_to_satisfied(self) -> None:
        """No point on the curve yet: a satisfied point below the prior proves it too high there."""
        if not self.satisfied:
            return
        sat = np.array(self.satisfied)
        self.static = min(self.static, float(np.min(sat[:, 1] - self.k * sat[:, 0] ** 2)))

    def proven(self, flow: float) -> float:
        """The lowest head the loads were satisfied at, for ``flow`` (inf if none proves it)."""
        if not self.satisfied:
            return math.inf
        data = np.array(self.satisfied)
        k = max(self.k, self.prior[1])
        return float(np.min(data[:, 1] + k * np.maximum(flow * flow - data[:, 0] ** 2, 0.0)))

    def probe_step(self) -> float:
        """How far below the proven head the agent may go this interval [m or Pa]."""
        low, high = PROBE_STEP
        return (low + (high - low) * self.confidence) * self.design_head

    def target_head(self, flow: float, fallback: float) -> float:
        """The head to plan for ``flow``: the curve, but at most one probe step below the proven head.

        ``fallback`` is the head proven before any satisfied point (the operator's setpoint,
        at which the plant ran before the agent took over). A measured curve is probed down to
        as well: planning on it at once left loads short for a fraction of a second on the
        booster and after hand-backs in the suite's scenarios.
        """
        curve = self.head(flow)
        proven = self.proven(flow)
        if not math.isfinite(proven):
            proven = fallback
        return max(curve, proven - self.probe_step()) if math.isfinite(proven) else curve
