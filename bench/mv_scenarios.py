"""The 10-seed M&V table: per shipped scenario, the A/B estimate's 90 % interval against the truth.

``python bench/mv_scenarios.py [--seeds 10] [--duration 24] [--jobs 2] [SCENARIO ...]`` runs
``python -m hil.scenario NAME --mv --seed N`` for each scenario and seed (``--jobs`` processes at
once: every run is in real time, two days of ``--duration`` seconds each), prints one line per run
(baseline CV(RMSE) and NMBE, the estimate with its 90 % interval, the truth, inside or not, what a
hand-back restores), then per scenario how many of the intervals held the truth and whether every
baseline met Guideline 14. The load average is printed before and after: closed loops under CPU
load are a harder test (stale polls, late hand-backs), and a figure means little without it.
Acceptance (issue 15): the truth inside the interval in at least 9 of 10 runs of each scenario.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
SHIPPED = ("chw-3pump", "ahu-fan", "booster-static")


def run_one(name: str, seed: int, duration: float) -> dict[str, Any] | None:
    """One ``--mv`` run; None (and the error printed) if it failed."""
    command = [sys.executable, "-m", "hil.scenario", name, "--mv", "--seed", str(seed),
               "--duration", str(duration)]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=duration * 8 + 300)
    if done.returncode != 0:
        print(f"{name} seed {seed}: exit {done.returncode}: {done.stderr.strip()[-400:]}", file=sys.stderr)
        return None
    mv: dict[str, Any] = json.loads(done.stdout)["mv"]
    mv["scenario"] = name
    base = mv["baseline"]
    if "ab_estimate_joules" not in mv:
        print(f"{name:15s} seed {seed:2d}: no estimate: {mv.get('error')}", flush=True)
        return mv
    est = mv["ab_estimate_joules"]
    truth = mv["true_saving_joules"] / 1e3
    print(f"{name:15s} seed {seed:2d}  CV(RMSE) {base['cv_rmse_pct']:5.2f} %  "
          f"NMBE {base['nmbe_pct']:+6.3f} %  G14 {'pass' if base['passes_guideline_14'] else 'FAIL'}  "
          f"estimate {est['value'] / 1e3:8.2f} kJ "
          f"[{est['lower90'] / 1e3:8.2f}, {est['upper90'] / 1e3:8.2f}]  "
          f"truth {truth:8.2f} kJ "
          f"{'inside' if mv['truth_inside_90'] else 'OUTSIDE'}  blocks {mv['blocks']} "
          f"(overridden {mv['overridden_blocks']})  operator - conventional "
          f"{mv['operator_minus_conventional_joules'] / 1e3:+.2f} kJ", flush=True)
    return mv


def main() -> int:
    """Run the table and print the summary per scenario as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("scenarios", nargs="*", default=list(SHIPPED))
    parser.add_argument("--seeds", type=int, default=10)
    parser.add_argument("--duration", type=float, default=24.0)
    parser.add_argument("--jobs", type=int, default=2)
    args = parser.parse_args()
    print(f"load average before: {' '.join(f'{x:.2f}' for x in os.getloadavg())} on {os.cpu_count()} cores; "
          f"days of {args.duration:g} s, {args.jobs} runs at once", flush=True)
    runs = [(name, seed) for name in args.scenarios for seed in range(1, args.seeds + 1)]
    with ThreadPoolExecutor(args.jobs) as pool:
        found = list(pool.map(lambda r: run_one(r[0], r[1], args.duration), runs))
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    summary = {}
    for name in args.scenarios:
        mine = [m for m in found if m is not None and m["scenario"] == name]
        estimated = [m for m in mine if "ab_estimate_joules" in m]
        summary[name] = {
            "runs": len(mine), "failed": args.seeds - len(mine),
            "truth_inside_90": sum(bool(m["truth_inside_90"]) for m in estimated),
            "baselines_meeting_guideline_14": sum(bool(m["baseline"]["passes_guideline_14"]) for m in mine),
            "worst_cv_rmse_pct": max((m["baseline"]["cv_rmse_pct"] for m in mine), default=None),
            "worst_abs_nmbe_pct": max((abs(m["baseline"]["nmbe_pct"]) for m in mine), default=None),
        }
    json.dump(summary, sys.stdout, indent=2)
    print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
