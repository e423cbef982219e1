"""Sweep the offered load on one RTU line: eight SINAMICS G120 over a pty, the simulator emulating wire time.

    python bench/rtu_sweep.py [--baud 19200 115200] [--step-s 10] [--rates] [--loads 0.96 1.2]

The simulator runs in a child process (so its event loop never competes with the poller's)
on the master side of a pseudo-terminal (no relay process such as socat between the two, whose
wake-ups would add to every frame), with the frames' wire time emulated at the baud rate and an
emulated turnaround of 2.0 + 0.5·i ms for drive i (the plant file's ``turnaround_ms``). The
agent's ``BusPoller`` polls the other end. The line's capacity is one cycle every C seconds,
where C = Σ (read time on the wire + the drive's emulated turnaround) over a cycle's reads;
each step asks for an interval of C / load, for loads from 50 % to 120 %, and prints the
cycles/s asked and achieved, the share of the asked rate achieved, the share of the line's
capacity achieved (= the line's utilization, turnaround included: achieved × C), the wire
utilization (frames and silences only, as ``vfd_bus_utilization_ratio``), the deadline
misses, the simulator's CPU time per second of the step (``sim_cpu``: its physics, its frames
and the spin that ends each reply's wire time), and the load average of the machine during the
step (a loaded machine delays the two processes' wake-ups, which costs line time).

With ``--rates`` status word and fault code are polled slow (every 10 intervals) and the
sweep also prints the fast class's cycles/s and the slow reads per second per drive.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from agent.config import load_config  # noqa: E402
from agent.config.profile import BUILTIN_PROFILES, load_profile  # noqa: E402
from agent.config.yamlsource import Issues  # noqa: E402
from agent.drive import DriveRuntime  # noqa: E402
from agent.modbus.client import BusClient  # noqa: E402
from agent.modbus.rtu import LineTiming  # noqa: E402
from agent.poller import BusPoller  # noqa: E402

DRIVES = 8
LOADS = (0.5, 0.6, 0.7, 0.76, 0.83, 0.88, 0.92, 0.96, 1.0, 1.05, 1.1, 1.2)
SLOW = ("status_word", "fault_code")


def turnaround(i: int) -> float:
    """The emulated turnaround of drive i (0-based) [s]."""
    return 0.002 + 0.0005 * i


def serve(baud: int) -> None:
    """Child process: eight G120 on an RTU line, each with its emulated turnaround; prints the line's path."""
    import tty

    from hil import SimulatedPlant, load_plant

    demo = load_plant(REPO / "configs" / "plants" / "demo.yaml")
    g120 = load_profile(BUILTIN_PROFILES / "sinamics-g120.yaml", Issues())
    drives = tuple(dataclasses.replace(demo.drives[i % 3], name=f"g120-{i + 1}", unit=i + 1, profile=g120,
                                       turnaround=turnaround(i))
                   for i in range(DRIVES))
    plant = dataclasses.replace(demo, drives=drives)

    master, slave = os.openpty()
    tty.setraw(slave)  # kept open, so the master side never reads end-of-file between steps

    async def main() -> None:
        sim = SimulatedPlant(plant, seed=1)
        await sim.start_rtu(master, baudrate=baud, parity="N", stopbits=2)
        print(f"ready {os.ttyname(slave)}", flush=True)
        await asyncio.Event().wait()

    asyncio.run(main())


def site(directory: Path, device: str, baud: int, interval: float, rates: bool) -> Path:
    """A site config for the line at one interval."""
    text = textwrap.dedent(f"""\
        site: {{name: sweep, grid_emission_factor_kg_per_kwh: 0.5,
                tariff: {{currency: EUR, price_per_kwh: 0.2}}}}
        storage: {{path: {directory}}}
        buses:
          - {{name: line, transport: rtu, device: {device}, baudrate: {baud}, parity: N, stopbits: 2,
             poll_interval_s: {interval:.6f}, timeout_s: {min(0.1, interval * 0.9):.6f}}}
        drives:
        """)
    extra = f", poll: {{rates: {{{', '.join(f'{q}: slow' for q in SLOW)}}}, slow_every: 10}}" if rates else ""
    for i in range(DRIVES):
        text += (f"  - {{name: g120-{i + 1}, bus: line, unit: {i + 1}, profile: sinamics-g120, "
                 f"rated_power_kw: 15, rated_speed_rpm: 1470,\n"
                 f"     load: {{kind: pump, rated_flow_m3h: 120, rated_head_m: 32}}{extra}}}\n")
    path = directory / "site.yaml"
    path.write_text(text)
    return path


def cycle_cost(baud: int, rates: bool) -> tuple[float, float]:
    """Line time of one cycle with every class due, and of the fast class alone [s]."""
    g120 = load_profile(BUILTIN_PROFILES / "sinamics-g120.yaml", Issues())
    assert g120 is not None
    timing = LineTiming.for_settings(baud, "N", 2)
    from agent.config import BusConfig, Transport
    from agent.modbus.readplan import plan_for
    bus = BusConfig("line", Transport.RTU, "", 0, 1.0, 0.1, 0, 5.0, device="x", baudrate=baud, parity="N",
                    stopbits=2)
    every = sum(timing.read_time(b.count) for b in plan_for(bus, g120))
    total = sum(every + len(plan_for(bus, g120)) * turnaround(i) for i in range(DRIVES))
    if not rates:
        return total, total
    fast_points = [p for q, p in g120.points.items() if q.value not in SLOW]
    from agent.modbus.readplan import max_gap_for, plan_reads
    fast = plan_reads(fast_points, max_gap=max_gap_for(bus, g120))
    fast_total = sum(sum(timing.read_time(b.count) + turnaround(i) for b in fast) for i in range(DRIVES))
    return total, fast_total


def cpu_s(pid: int) -> float:
    """CPU time a process has used so far, user and system [s] (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def step(config_path: Path, seconds: float, sim_pid: int) -> dict[str, float]:
    """Poll the line for ``seconds`` after a warm-up; cycles, line time and misses over that time."""
    config = load_config(config_path)
    (bus,) = config.buses
    drives = [DriveRuntime(d, config.site, config.max_gap) for d in config.drives]
    client = BusClient(bus)
    poller = BusPoller(bus, drives, client)
    stop = asyncio.Event()
    task = asyncio.create_task(poller.run(stop))
    deadline = time.monotonic() + 15
    while not all(d.up for d in drives):
        if time.monotonic() > deadline:
            raise RuntimeError(f"drives not up: {[d.name for d in drives if not d.up]}")
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    ends: list[tuple[float, float]] = []  # (cycle end, line time so far)
    poller.on_cycle = lambda p, _duration: ends.append((time.monotonic(), client.stats.busy_s))
    missed0, polls0 = poller.stats.missed_deadlines, {d.name: d.polls for d in drives}
    slow0 = sum(d.slow_polls for d in drives) if hasattr(drives[0], "slow_polls") else 0
    cpu0 = cpu_s(sim_pid)
    await asyncio.sleep(seconds)
    cpu1 = cpu_s(sim_pid)
    done = list(ends)  # a cycle under way when the step ends must not count without its span
    missed1, span = poller.stats.missed_deadlines, done[-1][0] - done[0][0]
    slow1 = sum(d.slow_polls for d in drives) if hasattr(drives[0], "slow_polls") else 0
    stop.set()
    await task
    errors = sum(sum(d.errors.values()) for d in drives)
    polls = min(d.polls - polls0[d.name] for d in drives)
    # Rates between the first and the last cycle's end: whole cycles, no quantization at the edges.
    return {"cycles_s": (len(done) - 1) / span, "utilization": (done[-1][1] - done[0][1]) / span,
            "missed": missed1 - missed0, "errors": errors, "polls_s": polls / seconds,
            "slow_s": (slow1 - slow0) / seconds / DRIVES, "sim_cpu": (cpu1 - cpu0) / seconds}


def sweep(baud: int, seconds: float, rates: bool, loads: tuple[float, ...]) -> None:
    """One baud rate's sweep, printed as a table."""
    total, fast = cycle_cost(baud, rates)
    with tempfile.TemporaryDirectory() as tmp:
        child = subprocess.Popen([sys.executable, __file__, "--serve", "--baud", str(baud)],
                                 stdout=subprocess.PIPE, text=True, cwd=REPO)
        try:
            assert child.stdout is not None
            said, b = child.stdout.readline().split()
            assert said == "ready"
            base = fast if rates else total
            alone = f"; the fast class alone {fast * 1e3:.1f} ms ({1 / fast:.2f} cycles/s)" if rates else ""
            print(f"\n{baud} baud, 8 x G120, turnaround 2.0..5.5 ms: a cycle of every read needs "
                  f"{total * 1e3:.1f} ms (capacity {1 / total:.2f} cycles/s)"
                  + alone)
            print("offered  interval_s  asked/s  achieved/s  of_asked  of_capacity  wire  missed  errors"
                  "  sim_cpu  load_avg" + ("  slow_reads/s/drive" if rates else ""))
            for load in loads:
                interval = base / load
                r = asyncio.run(step(site(Path(tmp), b, baud, interval, rates), seconds, child.pid))
                asked = 1 / interval
                print(f"{load:6.0%}  {interval:10.4f}  {asked:7.2f}  {r['cycles_s']:10.2f}  "
                      f"{r['cycles_s'] / asked:8.1%}  {r['cycles_s'] * base:11.1%}  {r['utilization']:4.2f}  "
                      f"{r['missed']:6.0f}  {r['errors']:6.0f}  {r['sim_cpu']:7.1%}  "
                      f"{os.getloadavg()[0]:8.2f}"
                      + (f"  {r['slow_s']:.3f}" if rates else ""), flush=True)
        finally:
            child.terminate()
            child.wait(timeout=10)
            if child.stdout is not None:
                child.stdout.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--baud", type=int, nargs="+", default=[19200, 115200])
    parser.add_argument("--step-s", type=float, default=10.0, help="measured seconds per step")
    parser.add_argument("--rates", action="store_true", help="status word and fault code slow")
    parser.add_argument("--loads", type=float, nargs="+", default=LOADS, help="offered loads (1.0: the line)")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.baud[0])
        return
    print(f"load average before: {' '.join(f'{v:.2f}' for v in os.getloadavg())} on {os.cpu_count()} cores")
    for baud in args.baud:
        sweep(baud, args.step_s, args.rates, tuple(args.loads))


if __name__ == "__main__":
    os.environ.setdefault("NUMBA_CACHE_DIR", str(REPO / ".numba_cache"))
    main()
