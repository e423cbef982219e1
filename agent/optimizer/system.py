"""The group's system curve H = static + k·Q²: the configured prior, refined by starved points."""

from __future__ import annotations

import math
from collections import deque

import numpy as np

from kernels import fit_system_curve, system_curve_r_squared

SATURATION_SHORTFALL = 0.03  # delivered flow this far below the demand: the valves were wide open


class SystemModel:
    """The group's system curve H = static + k·Q²: the configured prior, refined by starved points.

    An operating point says something about the system curve only when the loads were
    starved: their valves were then wide open, so the point lies on the curve. Noise alone
    can make a throttled point look starved, so a point counts only when the shortfall,
    averaged over a few polls, exceeds ``SATURATION_SHORTFALL``; and the curve moves only
    on many such points, by a robust fit or, with too few for a fit, by their median,
    never beyond ``MAX_LIFT`` times the configured friction.
    """

    SMOOTHING = 5  # polls averaged before a point is judged starved
    MAX_LIFT = 2.0

    def __init__(self, static: float, k: float, capacity: int = 3600) -> None:
        self.prior = (static, k)
        self.static, self.k = static, k
        self.r_squared = math.nan
        self.fitted = False
        self.samples: deque[tuple[float, float, float]] = deque(maxlen=capacity)  # delivered, head, demand
        self._recent: deque[tuple[float, float, float]] = deque(maxlen=self.SMOOTHING)

    def head(self, flow: float) -> float:
        """Head the system needs to pass ``flow``."""
        return self.static + self.k * flow * flow

    def add(self, delivered: float, head: float, demand: float) -> None:
        """One operating point of the group (flows m³/s, head m or Pa), averaged over the last polls."""
        if not all(map(math.isfinite, (delivered, head, demand))):
            self._recent.clear()
            return
        self._recent.append((delivered, head, demand))
        if len(self._recent) == self.SMOOTHING:
            mean = np.mean(np.array(self._recent), axis=0)
            self.samples.append((float(mean[0]), float(mean[1]), float(mean[2])))

    def refit(self, min_samples: int, min_r_squared: float) -> None:
        """Fit the curve to starved points; too few for a fit only lift the prior to cover them."""
        static, k = self.prior
        self.static, self.k, self.fitted = static, k, False
        if not self.samples:
            return
        data = np.array(self.samples)
        starved = data[(data[:, 2] > 0.0) & (data[:, 0] < (1.0 - SATURATION_SHORTFALL) * data[:, 2])
                       & (data[:, 0] > 0.0)]
        if len(starved) < max(min_samples // 4, 8):
            return
        h_st, k_fit = fit_system_curve(starved[:, 0], starved[:, 1])
        if math.isfinite(h_st) and math.isfinite(k_fit):
            r2 = float(system_curve_r_squared(starved[:, 0], starved[:, 1], h_st, k_fit))
            self.r_squared = r2
            if len(starved) >= min_samples and r2 >= min_r_squared and k / self.MAX_LIFT <= k_fit \
                    <= k * self.MAX_LIFT:
                self.static, self.k, self.fitted = float(h_st), float(k_fit), True
                return
        # Starved points lie on the real curve: the curve in use must not pass below most of them.
        needed = float(np.median((starved[:, 1] - static) / np.maximum(starved[:, 0] ** 2, 1e-12)))
        self.k = min(max(k, needed), k * self.MAX_LIFT)

