"""A large batch of generated plants through the closed loop: the distribution of the agent's grades.

``python bench/scenario_batch.py [--count 40] [--duration 60] [--jobs 2] [--misconfigured]``
generates plants from seeds (``hil.generator``), runs each as ``python -m hil.scenario --plant``
(in ``--jobs`` processes at once: every run is in real time) and prints every plant's line and
then the distribution: median and 5th percentile of the share of the oracle's savings, the worst
unmet demand after settling, the worst claim error. ``--misconfigured`` hands the agent each
plant's drawn error in the configured system curve (up to ±30 % in static head and resistance).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from hil.generator import distribution, generate  # noqa: E402


def run_one(seed: int, directory: Path, duration: float, misconfigured: bool) -> dict[str, Any] | None:
    """One generated plant through ``python -m hil.scenario``; None (and the error printed) if it failed."""
    plant = generate(seed)
    path = plant.write(directory)
    command = [sys.executable, "-m", "hil.scenario", "--plant", str(path), "--duration", str(duration)]
    if misconfigured:
        error = f"static={plant.static_error:+.3f},resistance={plant.resistance_error:+.3f}"
        command += ["--system-error", error]
    done = subprocess.run(command, cwd=REPO, capture_output=True, text=True, timeout=duration * 4 + 300)
    if done.returncode != 0:
        print(f"seed {seed}: exit {done.returncode}: {done.stderr.strip()[-400:]}", file=sys.stderr)
        return None
    result: dict[str, Any] = json.loads(done.stdout)
    print(f"seed {seed:3d} {plant.summary}: oracle {result['fraction_of_oracle_savings']}, unmet "
          f"{result['demand_unmet_seconds_after_settling']} s, claim {result['saving_claim_error']} "
          f"(extrapolated share {result['extrapolated_share_of_claim']}, with it "
          f"{result['claim_with_extrapolated_error']}), control from {result['agent_took_control_at_s']} s, "
          f"beyond good practice {result['saving_vs_good_practice_pct']} %", flush=True)
    return result


def main() -> int:
    """Run the batch and print the distribution as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=40)
    parser.add_argument("--first-seed", type=int, default=1000)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--misconfigured", action="store_true")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="vfd-batch-") as tmp:
        seeds = range(args.first_seed, args.first_seed + args.count)
        with ThreadPoolExecutor(args.jobs) as pool:
            found = list(pool.map(lambda s: run_one(s, Path(tmp), args.duration, args.misconfigured), seeds))
    results = [r for r in found if r is not None]
    summary = distribution(results)
    summary.update(duration_s=args.duration, misconfigured=args.misconfigured,
                   failed_runs=len(found) - len(results))
    print(json.dumps(summary, indent=2))
    return 0 if results else 1


if __name__ == "__main__":
    sys.exit(main())
