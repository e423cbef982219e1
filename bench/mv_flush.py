"""Cost of the agent's M&V work after a flush: a year of hourly intervals per group, on a real ledger.

python -m bench.mv_flush [GROUPS]

Times ``Verifier.after_flush`` (read every interval, fit a due baseline, the savings with bounds)
on a ledger holding 8760 hourly intervals per group, the first fit and a later flush's recompute;
prints the load average it ran at (the machine is shared).
"""

import math
import os
import sys
import tempfile
import time
from pathlib import Path
from zoneinfo import ZoneInfo

import numpy as np

from agent.config.model import MvConfig
from agent.energy.ledger import Ledger, MvInterval
from agent.energy.verification import Verifier, hour_of_week

UTC = ZoneInfo("UTC")
MONDAY = 1_767_571_200  # 2026-01-05 00:00 UTC


def year(group: str, rng: np.random.Generator) -> list[MvInterval]:
    rows = []
    for k in range(8760):
        start = MONDAY + 3600.0 * k
        flow = 0.02 + 0.01 * math.sin(2 * math.pi * k / 24) + rng.normal(0, 0.001)
        power = (2000.0 + 3e6 * flow * flow) * (0.9 if k >= 336 else 1.0) + rng.normal(0, 60.0)
        mode = "monitor" if k < 336 else "control"
        rows.append(MvInterval(group, start, 3600.0, mode, power * 3600.0, 3600.0, flow, 0.6 + 10 * flow,
                               1.0 + (k % 5 == 0), None, hour_of_week(start, UTC)))
    return rows


if __name__ == "__main__":
    groups = int(sys.argv[1]) if len(sys.argv) > 1 else 4
    rng = np.random.default_rng(1)
    with tempfile.TemporaryDirectory() as tmp:
        ledger = Ledger.open(Path(tmp) / "ledger.sqlite")
        ledger.flush([], {}, 0.0, intervals=[r for g in range(groups) for r in year(f"g{g}", rng)])
        verifier = Verifier(MvConfig(), UTC, 3.0)
        end = MONDAY + 8760 * 3600.0
        t0 = time.perf_counter()
        verifier.after_flush(ledger, end)
        first = time.perf_counter() - t0
        verifier._seen.clear()  # as after a new interval in every group
        t0 = time.perf_counter()
        verifier.after_flush(ledger, end)
        later = time.perf_counter() - t0
        ledger.close()
    saved = verifier.figures["g0"].savings_j
    assert saved is not None
    print(f"{groups} groups x 8760 hourly intervals: first flush (fit + savings) {first * 1e3:.0f} ms, "
          f"a later flush (savings) {later * 1e3:.0f} ms; g0 saved {saved.value / 3.6e6:,.0f} kWh "
          f"(90 %: {saved.lower(0.9) / 3.6e6:,.0f} .. {saved.upper(0.9) / 3.6e6:,.0f}); "
          f"load average {os.getloadavg()[0]:.2f}")
