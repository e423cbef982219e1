"""Soak: 50 simulated drives on several buses, random faults, and the agent polling them for a while.

    python bench/soak.py --duration 600

Five simulated gateways (Modbus TCP, 10 drives each; with --rtu one of them is an RTU line
over a socat pty pair instead) serve drives of every shipped profile. Every few seconds a
random drive gets a random fault (hil.faults) for a random while. At the end it prints the
memory growth (RSS after warm-up vs at the end, and tracemalloc's largest growth by line),
poll deadline misses, errors by kind, and whether every drive was polled.

``run_soak`` is what tests/test_soak.py calls for a short run.

tracemalloc slows every allocation several times over, and here the simulator (50 drives
of physics at 20 Hz) and the agent share one process and one event loop: poll deadline
misses are only meaningful from a run with ``--no-trace`` (RSS is still measured).
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import gc
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile
import time
import tracemalloc
from collections import Counter
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))

from agent.config import load_config  # noqa: E402
from agent.config.profile import BUILTIN_PROFILES, load_profile  # noqa: E402
from agent.config.yamlsource import Issues  # noqa: E402
from agent.service import Agent  # noqa: E402
from agent.units import RPM_TO_RAD_S  # noqa: E402
from hil import SimulatedPlant, load_plant  # noqa: E402
from hil.faults import Fault  # noqa: E402

PROFILES = ("generic", "sinamics-g120", "abb-acs580", "danfoss-fc102", "schneider-atv320")
RTU_SAFE = (Fault.TIMEOUT, Fault.SLOW, Fault.EXCEPTION, Fault.RESTART, Fault.GARBAGE, Fault.TRUNCATED,
            Fault.STUCK, Fault.NAN, Fault.IMPLAUSIBLE, Fault.NOISE)
DRIVE_DATA = {
    "pump": "rated_power_kw: {p}\n    rated_speed_rpm: {n}\n    load: {{kind: pump, rated_flow_m3h: {q}, "
            "rated_head_m: {h}}}\n    baseline: {{method: characteristic}}\n",
    "fan": "rated_power_kw: {p}\n    rated_speed_rpm: {n}\n    load: {{kind: fan, rated_flow_m3h: {q}, "
           "rated_pressure_pa: {h}}}\n    baseline: {{method: constant, power_kw: {p}}}\n",
}


def _rss_bytes() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    return 0


def _plant(count: int, bus_index: int) -> Any:
    """``count`` drives cloned from the demo plant, profiles in turn, units 1..count."""
    demo = load_plant(REPO / "configs" / "plants" / "demo.yaml")
    profiles = {n: load_profile(BUILTIN_PROFILES / f"{n}.yaml", Issues()) for n in PROFILES}
    drives = []
    for i in range(count):
        template = demo.drives[i % len(demo.drives)]
        profile = profiles[PROFILES[(i + bus_index) % len(PROFILES)]]
        drives.append(dataclasses.replace(
            template, name=f"b{bus_index}-d{i + 1}", unit=i + 1, profile=profile, seed=100 * bus_index + i,
        ))
    return dataclasses.replace(demo, name=f"soak-{bus_index}", drives=tuple(drives))


def _config_text(state: Path, plants: list[Any], buses: list[str], interval: float) -> str:
    lines = [
        "site: {name: soak, grid_emission_factor_kg_per_kwh: 0.5703,",
        "       tariff: {currency: EUR, price_per_kwh: 0.2}}",
        'metrics: {listen: "127.0.0.1:0"}',
        f"storage: {{path: {state}, flush_interval_s: 30}}",
        f"polling: {{interval_s: {interval}, timeout_s: 0.15, retries: 0, max_gap_s: 5}}",
        "buses:",
        *buses,
        "drives:",
    ]
    for bus_index, plant in enumerate(plants):
        for drive in plant.drives:
            kind = drive.load.kind.value
            head = drive.load.rated_pressure if kind == "fan" else drive.load.rated_head
            rpm = round(drive.rated_speed / RPM_TO_RAD_S)
            flow = round(drive.load.rated_flow * 3600, 3)
            data = DRIVE_DATA[kind].format(p=drive.rated_power / 1e3, n=rpm, q=flow, h=head)
            lines.append(f"  - name: {drive.name}\n    bus: bus{bus_index}\n    unit: {drive.unit}\n"
                         f"    profile: {drive.profile.name}\n    {data}")
    return "\n".join(lines) + "\n"


@dataclasses.dataclass
class SoakReport:
    """The figures a soak run ends with."""

    duration_s: float
    drives: int
    rss_warm_bytes: int
    rss_end_bytes: int
    traced_warm_bytes: int
    traced_end_bytes: int
    top_growth: list[str]
    cycles: int
    missed_deadlines: int
    errors: dict[str, int]
    faults_injected: dict[str, int]
    unpolled: list[str]
    polls_min: int
    utilization: dict[str, float]

    @property
    def rss_growth_bytes(self) -> int:
        """RSS at the end minus RSS after warm-up."""
        return self.rss_end_bytes - self.rss_warm_bytes


async def run_soak(
    duration: float, *, drives: int = 50, buses: int = 5, rtu: bool = False, warmup: float | None = None,
    fault_every: float = 3.0, interval: float = 1.0, seed: int = 1, state: Path | None = None,
    trace: bool = True,
) -> SoakReport:
    """Run the soak in this process; returns its figures."""
    rng = random.Random(seed)
    warmup = min(60.0, duration / 5) if warmup is None else warmup
    per_bus = drives // buses
    plants = [_plant(per_bus + (1 if i < drives % buses else 0), i) for i in range(buses)]
    import kernels  # compile (or load) every kernel before any clock starts

    kernels.warmup()
    sims = [SimulatedPlant(p, seed=seed + i) for i, p in enumerate(plants)]
    tmp = tempfile.TemporaryDirectory(prefix="vfd-soak-")
    state = state or Path(tmp.name)
    socat: subprocess.Popen[bytes] | None = None
    bus_lines = []
    for index, sim in enumerate(sims):
        if rtu and index == 0:
            a, b = Path(tmp.name) / "ttyA", Path(tmp.name) / "ttyB"
            socat = subprocess.Popen(["socat", f"pty,raw,echo=0,link={a}", f"pty,raw,echo=0,link={b}"],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            while not (a.exists() and b.exists()):
                await asyncio.sleep(0.01)
            # ptys take no parity: 8N2, still 11 bits per character.
            await sim.start_rtu(str(a), baudrate=38400, parity="N", stopbits=2)
            bus_lines.append(f"  - {{name: bus{index}, transport: rtu, device: {b}, baudrate: 38400, "
                             "parity: N, stopbits: 2, reconnect_delay_max_s: 2}")
        else:
            await sim.start("127.0.0.1", 0)
            bus_lines.append(f"  - {{name: bus{index}, host: 127.0.0.1, port: {sim.port}, "
                             "reconnect_delay_max_s: 2}")
    path = Path(tmp.name) / "soak.yaml"
    path.write_text(_config_text(state, plants, bus_lines, interval))
    config = load_config(path)
    agent = Agent(config)
    stop = asyncio.Event()
    injected: Counter[str] = Counter()
    names = [(sim, name) for sim in sims for name in sim.drive_names]

    async def chaos() -> None:
        while not stop.is_set():
            await asyncio.sleep(fault_every)
            sim, name = rng.choice(names)
            kinds = list(RTU_SAFE if sim.device else Fault)
            kind = rng.choice(kinds)
            sim.inject(name, kind)
            injected[kind.value] += 1
            asyncio.get_running_loop().call_later(rng.uniform(2.0, 12.0), sim.clear, name)

    started = time.monotonic()
    if trace:
        tracemalloc.start(1)
    runner = asyncio.create_task(agent.run(stop, serve_metrics=False))
    chaos_task = asyncio.create_task(chaos())
    await asyncio.sleep(warmup)
    gc.collect()
    rss_warm = _rss_bytes()
    warm_snapshot = tracemalloc.take_snapshot() if trace else None
    traced_warm = tracemalloc.get_traced_memory()[0] if trace else 0
    await asyncio.sleep(max(0.0, duration - warmup))
    chaos_task.cancel()
    gc.collect()
    rss_end = _rss_bytes()
    top: list[str] = []
    traced_end = 0
    if trace and warm_snapshot is not None:
        end_snapshot = tracemalloc.take_snapshot()
        traced_end = tracemalloc.get_traced_memory()[0]
        stats = end_snapshot.compare_to(warm_snapshot, "lineno")
        top = [str(s) for s in stats[:8]]
        tracemalloc.stop()
    stop.set()
    await runner
    for sim in sims:
        await sim.stop()
    if socat is not None:
        socat.terminate()
        socat.wait()
    errors: Counter[str] = Counter()
    for drive in agent.drives:
        errors.update(drive.errors)
    report = SoakReport(
        duration_s=time.monotonic() - started, drives=len(agent.drives), rss_warm_bytes=rss_warm,
        rss_end_bytes=rss_end, traced_warm_bytes=traced_warm, traced_end_bytes=traced_end, top_growth=top,
        cycles=sum(p.stats.cycles for p in agent.pollers),
        missed_deadlines=sum(p.stats.missed_deadlines for p in agent.pollers),
        errors=dict(sorted(errors.items())), faults_injected=dict(sorted(injected.items())),
        unpolled=[d.name for d in agent.drives if d.polls == 0], polls_min=min(d.polls for d in agent.drives),
        utilization={p.name: round(p.utilization(), 4) for p in agent.pollers},
    )
    tmp.cleanup()
    return report


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=float, default=600.0, help="seconds (default 600)")
    parser.add_argument("--drives", type=int, default=50)
    parser.add_argument("--buses", type=int, default=5)
    parser.add_argument("--no-rtu", action="store_true", help="all buses over TCP (no socat needed)")
    parser.add_argument("--warmup", type=float, default=None, help="seconds before the baseline (default "
                        "duration / 5, at most 60)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-trace", action="store_true", help="no tracemalloc (for deadline figures)")
    parser.add_argument("--json", action="store_true", help="print the report as JSON")
    args = parser.parse_args(argv)
    rtu = not args.no_rtu and shutil.which("socat") is not None
    report = asyncio.run(run_soak(args.duration, drives=args.drives, buses=args.buses, rtu=rtu,
                                  warmup=args.warmup, seed=args.seed, trace=not args.no_trace))
    if args.json:
        print(json.dumps(dataclasses.asdict(report), indent=2))
        return 0
    mib = 1024 * 1024
    print(f"soak: {report.drives} drives on {args.buses} buses ({'one RTU' if rtu else 'all TCP'}), "
          f"{report.duration_s:.0f} s")
    print(f"RSS after warm-up {report.rss_warm_bytes / mib:.1f} MiB, at the end "
          f"{report.rss_end_bytes / mib:.1f} MiB: growth {report.rss_growth_bytes / mib:+.2f} MiB")
    print(f"traced Python memory {report.traced_warm_bytes / mib:.2f} -> "
          f"{report.traced_end_bytes / mib:.2f} MiB")
    print("largest growth by line (tracemalloc):")
    for line in report.top_growth:
        print(f"  {line}")
    print(f"poll cycles {report.cycles}, deadline misses {report.missed_deadlines}")
    print(f"faults injected: {report.faults_injected}")
    print(f"poll errors by kind: {report.errors}")
    print(f"every drive polled: {not report.unpolled} (fewest polls of a drive: {report.polls_min})")
    print(f"bus utilization: {report.utilization}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
