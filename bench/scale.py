"""Scale: the agent's CPU share, RSS and all-up time per drive count, against a bare pymodbus floor.

    python bench/scale.py                       # 50/200/1,000 drives, 3 repeats, cold warm-up too
    python bench/scale.py --drives 200 --repeats 1 --no-warmup
    git archive main | tar -x -C /tmp/before && python bench/scale.py --before /tmp/before

Per drive count N, ``ceil(N / 100)`` ``vfd-sim`` processes each serve up to 100 drives
(pumps of configs/plants/chw-3pump.yaml, three to a header circuit) on their own port. Then,
alternately and ``--repeats`` times each:

- ``vfd-agent run`` with every drive in an optimizer group of three (advise mode: the
  optimizer fits and plans, nothing is written), polled at 1 Hz;
- the floor: one process that imports only pymodbus and reads the same register blocks of
  the same drives at 1 Hz, one task per bus, as the agent's pollers do.

For each: all-up time (start of the process until every drive has answered: the agent's
``vfd_up`` all 1, the floor's every drive read once; NaN if not within 180 s), then over
``--window`` seconds the CPU share of one core (user + system ticks) and the RSS at the
end, split into its anonymous part (RssAnon: the process's own, the real cost), the
file-backed part (RssFile: clean code and data, shared and reclaimable; before the agent
unmapped it, two thirds of it libllvmlite.so's code) and shared memory (RssShmem).
Medians over the repeats.

Cold warm-up: ``vfd-agent warmup`` (``--warmup-args`` added, e.g. ``"--config site.yaml"``)
into an empty NUMBA_CACHE_DIR: wall time, CPU time and the peak RSS summed over its process
tree (sampled every 20 ms), median of ``--warmup-repeats``.

``--before DIR``: another tree of the agent (another commit, unpacked) measured alongside in
the same run, against the same simulators and floor, each repeat in turn: before-and-after
figures made under the same load. Its cold warm-up runs without ``--warmup-args``.

The machine may be shared: the load average is printed with the figures; compare runs made
under similar load, and never read one run's figure as exact.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import resource
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import yaml

REPO = Path(__file__).resolve().parent.parent
PLANTS = REPO / "configs" / "plants"
PROFILE = PLANTS / "profiles" / "generic-process.yaml"
PER_SIM = 100  # drives per simulator process (one bus each)
GROUP = 3  # drives per header circuit / optimizer group
CLK_TCK = os.sysconf("SC_CLK_TCK")
MIB = 1024 * 1024
PYTHON = [sys.executable]  # the agent's, the floor's and warm-up's interpreter (--python)


@dataclass
class Run:
    """One measured process."""

    up_s: float  # start until every drive answered
    cpu_share: float  # of one core over the window
    rss_bytes: int  # at the end of the window
    anon_bytes: int = 0  # of which the process's own (RssAnon): the real cost
    file_bytes: int = 0  # file-backed (RssFile): clean code and data, shared and reclaimable
    shmem_bytes: int = 0  # shared memory (RssShmem)


@dataclass
class Warmup:
    """One cold ``vfd-agent warmup``."""

    seconds: float
    cpu_s: float  # user + system over the process tree: what a busy machine does not change much
    peak_rss_bytes: int  # summed over the process tree
    process_peak_bytes: int = 0  # the largest one process's own peak (VmHWM)
    processes: int = 0  # processes seen in the tree, the parent included


# --- process figures ------------------------------------------------------------------------------

def _children(pid: int) -> list[int]:
    """Children of every thread of ``pid`` (a process pool starts its workers from a thread)."""
    found: list[int] = []
    for task in Path(f"/proc/{pid}/task").glob("*"):
        try:
            found.extend(int(c) for c in (task / "children").read_text().split())
        except OSError:
            pass
    return found


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        p = todo.pop()
        pids.append(p)
        todo.extend(_children(p))
    return pids


def rss_bytes(pid: int, field: str = "VmRSS") -> int:
    """Resident set size of one process (0 once it is gone); ``RssAnon``: its anonymous part."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of one process so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK  # utime, stime (fields 14, 15)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


# --- the plant, the agent's config, the floor's spec ---------------------------------------------

def plant_text(first: int, count: int, index: int) -> str:
    """A plant of ``count`` pumps (names p<first>..), units 1..count, in circuits of three."""
    template = yaml.safe_load((PLANTS / "chw-3pump.yaml").read_text())
    pumps, circuits = [], []
    circuit = template["circuits"][0]
    for i in range(count):
        drive = dict(template["drives"][i % len(template["drives"])])
        drive.update(name=f"p{first + i}", unit=i + 1)
        drive.pop("wear", None)
        pumps.append(drive)
    for start in range(0, count, GROUP):
        names = [p["name"] for p in pumps[start:start + GROUP]]
        circuits.append(dict(circuit, name=f"c{first + start}", drives=names,
                             design_flow_m3h=circuit["design_flow_m3h"] * len(names) / 3))
    plant = dict(template, name=f"scale-{index}", step_s=0.5, seed=index + 1, drives=pumps, circuits=circuits)
    return yaml.safe_dump(plant, sort_keys=False)


def agent_config(state: Path, metrics_port: int, buses: list[tuple[int, int, int]]) -> str:
    """``buses``: (port, first drive number, drive count) per simulator."""
    lines = [
        "site: {name: scale, grid_emission_factor_kg_per_kwh: 0.5703,",
        "       tariff: {currency: EUR, price_per_kwh: 0.2}}",
        f'metrics: {{listen: "127.0.0.1:{metrics_port}"}}',
        f"storage: {{path: {state}, flush_interval_s: 60}}",
        "polling: {interval_s: 1, timeout_s: 0.4, retries: 0, max_gap_s: 5}",
        "optimizer: {interval_s: 10, min_samples: 40, min_r_squared: 0.9}",
        "buses:",
        *(f"  - {{name: bus{i}, host: 127.0.0.1, port: {port}, reconnect_delay_max_s: 1}}"
          for i, (port, _, _) in enumerate(buses)),
        "drives:",
    ]
    groups = ["groups:"]
    template = yaml.safe_load((PLANTS / "chw-3pump.yaml").read_text())
    for i, (_, first, count) in enumerate(buses):
        for k in range(count):
            d = template["drives"][k % len(template["drives"])]
            load = d["load"]
            lines.append(
                f"  - {{name: p{first + k}, bus: bus{i}, unit: {k + 1}, profile: {PROFILE}, "
                f"rated_power_kw: {d['rated_power_kw']}, rated_speed_rpm: {d['rated_speed_rpm']}, "
                f"load: {{kind: pump, rated_flow_m3h: {load['rated_flow_m3h']}, "
                f"rated_head_m: {load['rated_head_m']}}}, "
                "baseline: {method: characteristic}, control: {mode: advise, min_speed_pct: 30}}")
        for start in range(0, count, GROUP):
            names = [f"p{first + k}" for k in range(start, min(count, start + GROUP))]
            flow = 380 * len(names) / 3
            groups.append(
                f"  - {{name: g{first + start}, drives: [{', '.join(names)}], control: speed, "
                f"demand: {{drive: {names[0]}, quantity: process_flow}}, "
                f"system: {{static_head_m: 9.6, design_flow_m3h: {flow:g}, design_head_m: 32}}}}")
    return "\n".join(lines + groups) + "\n"


def floor_spec(buses: list[tuple[int, int, int]]) -> dict[str, Any]:
    """The register blocks the agent reads per drive, as the floor process needs them."""
    sys.path.insert(0, str(REPO))
    from agent.config.profile import load_profile
    from agent.config.yamlsource import Issues
    from agent.modbus.readplan import plan_reads

    profile = load_profile(PROFILE, Issues())
    blocks = [(b.table.value, b.start, b.count) for b in plan_reads(profile.points.values())]
    return {"buses": [{"port": port, "units": list(range(1, count + 1))} for port, _, count in buses],
            "blocks": blocks, "marker": ""}


# --- the floor: bare pymodbus ---------------------------------------------------------------------

async def _floor(spec: dict[str, Any]) -> None:
    from pymodbus.client import AsyncModbusTcpClient

    total = sum(len(b["units"]) for b in spec["buses"])
    answered: set[tuple[int, int]] = set()

    async def bus(port: int, units: list[int]) -> None:
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=0.4, retries=0)
        await client.connect()
        loop = asyncio.get_running_loop()
        next_cycle = loop.time()
        while True:
            for unit in units:
                ok = True
                for table, start, count in spec["blocks"]:
                    holding = table == "holding"
                    read = client.read_holding_registers if holding else client.read_input_registers
                    try:
                        reply = await read(start, count=count, device_id=unit)
                        ok = ok and not reply.isError()
                    except Exception:  # noqa: BLE001 - the floor counts answers, nothing else
                        ok = False
                if ok and (port, unit) not in answered:
                    answered.add((port, unit))
                    if len(answered) == total:
                        Path(spec["marker"]).touch()
            next_cycle += 1.0
            await asyncio.sleep(max(0.0, next_cycle - loop.time()))

    await asyncio.gather(*(bus(b["port"], b["units"]) for b in spec["buses"]))


# --- measuring -----------------------------------------------------------------------------------

def _up_count(port: int) -> int:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
            text = reply.read().decode()
    except OSError:
        return -1
    return sum(1 for line in text.splitlines() if line.startswith("vfd_up{") and line.endswith(" 1.0"))


def _measure(proc: subprocess.Popen[str], started: float, is_up: Any, window: float, limit: float) -> Run:
    while not is_up():
        if proc.poll() is not None:
            why = proc.stderr.read() if proc.stderr else ""
            raise RuntimeError(f"process ended ({proc.returncode}): {why}")
        if time.monotonic() - started > limit:
            break  # measured all the same; the all-up time is NaN
        time.sleep(0.2)
    up = time.monotonic() - started if is_up() else math.nan
    time.sleep(3.0)  # the first optimizer cycle, the connection bursts
    cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
    time.sleep(window)
    cpu1, t1 = cpu_seconds(proc.pid), time.monotonic()
    return Run(up_s=up, cpu_share=(cpu1 - cpu0) / (t1 - t0), rss_bytes=rss_bytes(proc.pid),
               anon_bytes=rss_bytes(proc.pid, "RssAnon"), file_bytes=rss_bytes(proc.pid, "RssFile"),
               shmem_bytes=rss_bytes(proc.pid, "RssShmem"))


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


def tree_env(env: dict[str, str], tree: Path) -> dict[str, str]:
    """The environment of an agent (or warm-up) process from ``tree``, with that tree's Numba cache."""
    return dict(env, PYTHONPATH=str(tree), NUMBA_CACHE_DIR=str(tree / ".numba_cache"))


def run_agent(tmp: Path, buses: list[tuple[int, int, int]], window: float, env: dict[str, str],
              tree: Path = REPO) -> Run:
    state = Path(tempfile.mkdtemp(dir=tmp, prefix="state-"))
    port = _free_port()
    path = state / "site.yaml"
    path.write_text(agent_config(state, port, buses))
    total = sum(c for _, _, c in buses)
    started = time.monotonic()
    command = [PYTHON[0], "-m", "agent.cli", "--log-level", "WARNING", "run", "-c", str(path)]
    proc = subprocess.Popen(command, cwd=tree, env=tree_env(env, tree),
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        return _measure(proc, started, lambda: _up_count(port) == total, window, 180.0)
    finally:
        _stop(proc)
        shutil.rmtree(state, ignore_errors=True)


def run_floor(tmp: Path, buses: list[tuple[int, int, int]], window: float, env: dict[str, str]) -> Run:
    spec = tmp / "floor.json"
    spec.write_text(json.dumps(dict(floor_spec(buses), marker=str(spec.with_suffix(".up")))))
    started = time.monotonic()
    marker = spec.with_suffix(".up")
    marker.unlink(missing_ok=True)
    proc = subprocess.Popen([PYTHON[0], __file__, "--floor", str(spec)], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    is_up = marker.exists
    try:
        return _measure(proc, started, is_up, window, 180.0)
    finally:
        _stop(proc)


Sims = list[subprocess.Popen[str]]


def start_sims(tmp: Path, drives: int, env: dict[str, str]) -> tuple[Sims, list[tuple[int, int, int]]]:
    sims, buses = [], []
    plants = tmp / "plants"  # a plant names its profiles relative to its own folder
    if not plants.exists():
        plants.mkdir()
        (plants / "profiles").symlink_to(PLANTS / "profiles")
    for index, first in enumerate(range(0, drives, PER_SIM)):
        count = min(PER_SIM, drives - first)
        plant = plants / f"plant{index}.yaml"
        plant.write_text(plant_text(first, count, index))
        command = [sys.executable, "-m", "hil.cli", "--plant", str(plant), "--listen", "127.0.0.1:0",
                   "--metrics", "127.0.0.1:0", "--log-level", "ERROR"]
        proc = subprocess.Popen(command,
                                cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.startswith("vfd-sim: modbus"):
            raise RuntimeError(f"vfd-sim: {line}{proc.stderr.read() if proc.stderr else ''}")
        port = int(line.split()[2].rsplit(":", 1)[1])
        sims.append(proc)
        buses.append((port, first, count))
    return sims, buses


def cold_warmup(tmp: Path, env: dict[str, str], extra: list[str], tree: Path = REPO,
                seed: Path | None = None) -> Warmup:
    """One ``vfd-agent warmup`` into an empty cache, or into a copy of ``seed`` (a shipped cache)."""
    cache = Path(tempfile.mkdtemp(dir=tmp, prefix="cold-cache-"))
    if seed is not None:
        shutil.copytree(seed, cache, dirs_exist_ok=True)
    env = dict(tree_env(env, tree), NUMBA_CACHE_DIR=str(cache))
    started = time.monotonic()
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    proc = subprocess.Popen([PYTHON[0], "-m", "agent.cli", "warmup", *extra], cwd=tree, env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    peak = 0
    own: dict[int, int] = {}  # each process's peak, as the kernel kept it (VmHWM)
    while proc.poll() is None:
        pids = _tree(proc.pid)
        peak = max(peak, sum(rss_bytes(p) for p in pids))
        for p in pids:
            own[p] = max(own.get(p, 0), rss_bytes(p, "VmHWM"))
        time.sleep(0.02)
    seconds = time.monotonic() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
    if proc.returncode != 0:
        raise RuntimeError(f"warmup failed: {proc.stderr.read() if proc.stderr else ''}")
    shutil.rmtree(cache, ignore_errors=True)
    return Warmup(seconds=seconds, cpu_s=cpu, peak_rss_bytes=peak,
                  process_peak_bytes=max(own.values(), default=0), processes=len(own))


def _median_run(runs: list[Run]) -> Run:
    return Run(up_s=statistics.median(r.up_s for r in runs),
               cpu_share=statistics.median(r.cpu_share for r in runs),
               rss_bytes=int(statistics.median(r.rss_bytes for r in runs)),
               anon_bytes=int(statistics.median(r.anon_bytes for r in runs)),
               file_bytes=int(statistics.median(r.file_bytes for r in runs)),
               shmem_bytes=int(statistics.median(r.shmem_bytes for r in runs)))


def _load() -> str:
    return "/".join(f"{x:.1f}" for x in os.getloadavg())


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--drives", type=int, nargs="*", default=[50, 200, 1000],
                        help="drive counts (none: the warm-up figures only)")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--window", type=float, default=20.0, help="seconds of CPU measurement (default 20)")
    parser.add_argument("--warmup-repeats", type=int, default=3)
    parser.add_argument("--no-warmup", action="store_true", help="skip the cold warm-up figures")
    parser.add_argument("--warmup-args", default="", help="extra arguments of `vfd-agent warmup`, quoted")
    parser.add_argument("--warmup-config", action="store_true",
                        help="cold warm-up with --config (the scale config: pumps in optimizer groups)")
    parser.add_argument("--json", type=Path, default=None, help="also write every figure here")
    parser.add_argument("--python", default=sys.executable,
                        help="interpreter of the agent, the floor and the warm-up: a gateway-like venv "
                             "(pip install . without [test]: numba then imports no SciPy)")
    parser.add_argument("--before", type=Path, default=None,
                        help="another tree of the agent measured alongside (e.g. main, unpacked)")
    parser.add_argument("--floor", type=Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.floor is not None:
        asyncio.run(_floor(json.loads(args.floor.read_text())))
        return 0
    PYTHON[0] = args.python
    env = tree_env(dict(os.environ), REPO)
    trees = {"agent": REPO} if args.before is None else {"before": args.before.resolve(), "agent": REPO}
    results: dict[str, Any] = {"load_before": _load(), "cpus": os.cpu_count(),
                               "trees": {k: str(v) for k, v in trees.items()}}
    print(f"load average {results['load_before']} on {os.cpu_count()} CPUs; agent: {args.python}; "
          + ", ".join(f"{k}: {v}" for k, v in trees.items()))
    for tree in trees.values():
        subprocess.run([PYTHON[0], "-m", "agent.cli", "warmup"], cwd=tree, env=tree_env(env, tree),
                       check=True, stdout=subprocess.DEVNULL)
    with tempfile.TemporaryDirectory(prefix="vfd-scale-") as name:
        tmp = Path(name)
        if not args.no_warmup:
            for label, tree in trees.items():
                extra = args.warmup_args.split() if tree == REPO else []
                if args.warmup_config and tree == REPO:
                    site = tmp / "warmup-site.yaml"
                    site.write_text(agent_config(tmp / "warmup-state", _free_port(), [(5020, 0, 6)]))
                    extra += ["--config", str(site)]
                warm = [cold_warmup(tmp, env, extra, tree) for _ in range(args.warmup_repeats)]
                results[f"warmup_{label}"] = [asdict(w) for w in warm]
                runs = ", ".join(f"{w.seconds:.1f} s/{w.cpu_s:.1f} CPU s/{w.peak_rss_bytes / MIB:.0f} MiB"
                                 for w in warm)
                seconds = statistics.median(w.seconds for w in warm)
                cpu = statistics.median(w.cpu_s for w in warm)
                print(f"{label}: cold warmup {' '.join(extra)}: median {seconds:.1f} s ({cpu:.1f} CPU s), "
                      f"peak RSS {statistics.median(w.peak_rss_bytes for w in warm) / MIB:.0f} MiB "
                      f"(runs: {runs}); load {_load()}")
        print(f"{'drives':>6} {'process':>7} {'up s':>6} {'CPU %':>6} {'RSS MiB':>8} {'anon':>6} {'file':>6} "
              f"{'shmem':>6} {'CPU/floor':>9} {'RSS/floor':>9} {'anon/floor':>10}  load")
        for drives in args.drives:
            sims, buses = start_sims(tmp, drives, env)
            measured: dict[str, list[Run]] = {"floor": [], **{label: [] for label in trees}}
            try:
                for _ in range(args.repeats):
                    measured["floor"].append(run_floor(tmp, buses, args.window, env))
                    for label, tree in trees.items():
                        measured[label].append(run_agent(tmp, buses, args.window, env, tree))
            finally:
                for sim in sims:
                    _stop(sim)
            results[str(drives)] = {k: [asdict(r) for r in v] for k, v in measured.items()}
            f = _median_run(measured["floor"])
            load = _load()
            for label, runs in measured.items():
                r = _median_run(runs)
                print(f"{drives:>6} {label:>7} {r.up_s:6.1f} {100 * r.cpu_share:6.1f} "
                      f"{r.rss_bytes / MIB:8.0f} {r.anon_bytes / MIB:6.0f} "
                      f"{r.file_bytes / MIB:6.0f} {r.shmem_bytes / MIB:6.0f} "
                      f"{r.cpu_share / f.cpu_share if f.cpu_share else math.nan:9.1f} "
                      f"{r.rss_bytes / f.rss_bytes:9.1f} {r.anon_bytes / f.anon_bytes:10.1f}  {load}")
            for label in trees:
                each = ", ".join(f"{r.up_s:.1f} s/{100 * r.cpu_share:.1f} %/{r.rss_bytes / MIB:.0f} MiB"
                                 for r in measured[label])
                print(f"{'':>6} {'':>7} {label} runs: {each}")
    results["load_after"] = _load()
    if args.json is not None:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
