"""The group's system curve H = static + k·Q², learned online; the configured curve is only a prior.

Two kinds of operating point teach it, each averaged over a few polls so that noise
alone does not decide:

- a **short** point (the loads got less than they asked for) lies *on* the curve: their
  valves were wide open. The curve in use is lifted to pass through it at once, and with
  short points spread over enough flow, static head and friction are fitted to them.
- a **satisfied** point (Q, H) proves that head H passes at least Q. The lowest such head
  at a flow (extrapolated along the steeper of the prior's and the learned friction) is
  what the plant has shown to be enough (``proven``).

The agent never goes further below what was proven than one probe step, whose size grows
with the confidence (``confidence``: satisfied intervals since the last shortfall); a
shortfall zeroes the confidence, forgets the proven points it contradicts and raises the
curve. So a prior that is too low costs one short interval, and a prior that is too high
costs a few probe steps of savings: the recommendation walks down to what the loads
accept and never rests below what the satisfied points support.
"""

from __future__ import annotations

import math
from collections import deque
from enum import Enum

import numpy as np

from kernels import fit_system_curve, system_curve_r_squared

SHORT_SHARE = 0.015  # delivered flow this far below the demand (averaged): the loads are short
SATISFIED_SHARE = 0.01  # within this of the demand (or above): satisfied (the lag of readings on a ramp)
SMOOTHING = 4  # polls averaged before a point is judged
PERSIST = 12  # polls short in a row at a proven head: the plant changed, not the readings' lag
PROVEN_SLACK = 0.01  # a short point this far below the proven head is credible at once
PROBE_STEP = (0.04, 0.15)  # probe step below the proven head, of the design head, at confidence 0 and 1
CONFIDENT_INTERVALS = 10  # satisfied intervals in a row for full confidence
MIN_FIT_SPAN = 0.15  # short points spanning this share of the design flow fit both parameters


class Service(Enum):
    """Whether the loads get what they ask for, as the latest averaged polls show it."""

    UNKNOWN = "unknown"
    SATISFIED = "satisfied"
    SHORT = "short"


class SystemModel:
    """The learned system curve, the satisfied points that bound it, and the confidence in it."""

    def __init__(self, static: float, k: float, design_flow: float, design_head: float,
                 capacity: int = 2000) -> None:
        self.prior = (static, k)
        self.static, self.k = static, k
        self.design_flow, self.design_head = design_flow, design_head
        self.r_squared = math.nan
        self.fitted = False
        self.confidence = 0.0
        self.service = Service.UNKNOWN
        self.on_curve: deque[tuple[float, float]] = deque(maxlen=capacity)  # short points (Q, H)
        self.satisfied: deque[tuple[float, float]] = deque(maxlen=capacity)  # (Q, H)
        self._recent: deque[tuple[float, float, float]] = deque(maxlen=SMOOTHING)
        self._interval_short = False
        self._interval_satisfied = False
        self._short_polls = 0  # averaged polls short in a row

    def head(self, flow: float) -> float:
        """Head the system needs to pass ``flow`` on the curve in use."""
        return self.static + self.k * flow * flow

    def add(self, delivered: float, head: float, demand: float) -> Service:
        """One poll's operating point (flows m³/s, head m or Pa); returns the service it shows."""
        if not all(map(math.isfinite, (delivered, head, demand))) or demand <= 0.0:
            self._recent.clear()
            self.service = Service.UNKNOWN
            return self.service
        self._recent.append((delivered, head, demand))
        if len(self._recent) < SMOOTHING:
            return self.service
        q, h, d = (float(v) for v in np.mean(np.array(self._recent), axis=0))
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
            self.service = Service.SATISFIED
            self.satisfied.append((q, h))
            self._interval_satisfied = True
        else:
            self.service = Service.UNKNOWN
        return self.service

    def learn_short(self, flow: float, head: float) -> None:
        """A short point lies on the curve: lift the curve through it, forget what it contradicts."""
        self._interval_short = True
        self.confidence = 0.0
        if flow <= 0.0:
            return
        self.on_curve.append((flow, head))
        if self.head(flow) < head:
            self.static = head - self.k * flow * flow
        # Satisfied points at or below the curve now in use were luck, or the plant changed.
        self.satisfied = deque(((q, h) for q, h in self.satisfied if h > self.head(q)),
                               maxlen=self.satisfied.maxlen)

    def refit(self) -> None:
        """Once per optimizer interval: fit short points spread over flow; move the confidence."""
        if self._interval_short:
            self.confidence = 0.0
        elif self._interval_satisfied:
            self.confidence = min(1.0, self.confidence + 1.0 / CONFIDENT_INTERVALS)
        self._interval_short = self._interval_satisfied = False
        self._lower_to_satisfied()
        if len(self.on_curve) < 8:
            return
        data = np.array(self.on_curve)
        if np.ptp(data[:, 0]) < MIN_FIT_SPAN * self.design_flow:
            return
        h_st, k_fit = fit_system_curve(data[:, 0], data[:, 1])
        if not (math.isfinite(h_st) and math.isfinite(k_fit) and k_fit > 0.0 and h_st >= 0.0):
            return
        self.r_squared = float(system_curve_r_squared(data[:, 0], data[:, 1], h_st, k_fit))
        self.k, self.fitted = float(k_fit), True
        # The curve in use passes on or above every short point: a fit through their middle would not.
        self.static = max(float(h_st), float(np.max(data[:, 1] - k_fit * data[:, 0] ** 2)))

    def _lower_to_satisfied(self) -> None:
        """A satisfied point below the curve proves it too high there: lower it, never below a short point."""
        if not self.satisfied:
            return
        sat = np.array(self.satisfied)
        upper = float(np.min(sat[:, 1] - self.k * sat[:, 0] ** 2))
        if upper >= self.static:
            return
        lower = -math.inf
        if self.on_curve:
            short = np.array(self.on_curve)
            lower = float(np.max(short[:, 1] - self.k * short[:, 0] ** 2))
        self.static = max(upper, lower)

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
        at which the plant ran before the agent took over).
        """
        proven = self.proven(flow)
        if not math.isfinite(proven):
            proven = fallback
        curve = self.head(flow)
        return max(curve, proven - self.probe_step()) if math.isfinite(proven) else curve
