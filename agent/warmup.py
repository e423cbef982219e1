"""``vfd-agent warmup``'s compiling: kernels into Numba's cache, in processes of their own.

``vfd-agent warmup`` reads the config and decides the cache directory, then becomes
``python -m agent.warmup`` (``main``), so the parent of the compiling processes holds only
what this module imports (the standard library and ``agent.numba_cache``: 14 MiB), not the
CLI's (42 MiB). The compiling happens in workers (``_warm_plan``, ``_warm_chunk``), which
import numba.
"""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from agent.numba_cache import cache_fallback, configure_numba_cache

EXIT_OK = 0
WARMUP_RSS_BUDGET = 215 * 2**20  # a warm-up process starts no compile it would not finish under this RSS ...
LOADED_PER_FUNCTION = 1 * 2**20  # ... at about this per function it loads or compiles, ...
GROWTH_PER_LINKED_BYTE = 1536  # ... and this per byte of bytecode in the modules it compiles
MEMORY_SHARE = 0.5  # of MemAvailable, the most the compiling processes may hold together (``warmup_jobs``)


def compile_kernels(config_path: str | None, jobs: int | None, used: str | None) -> int:
    """Compile every kernel, or only those the config at ``config_path`` calls (``kernels_for``).

    A warm cache loads every kernel in one process (the unit's ExecStartPre runs this before
    each start): a load never starts another process, whatever its RSS (``_warm_chunk``).
    What must compile is shared out over ``jobs`` lanes (``warmup_jobs`` if None) that run
    side by side, each a series of fresh processes, each going on while its next compile is
    expected to fit under ``WARMUP_RSS_BUDGET``: LLVM keeps every module it compiled until
    its process exits, so one process compiling all of them peaked near 400 MB. Two lanes
    never compile the same function (``warmup_lanes``), since two processes compiling one
    callee for different argument types would both write its cache index and could pair an
    entry with the other's code. ``used``: the cache directory, as shown.
    """
    jobs = warmup_jobs() if jobs is None else jobs
    timings: dict[str, float] = {}
    loaded: list[str] = []  # kernels the cache held when called (an earlier process may have compiled them)
    fallbacks: list[str] = []
    processes: list[int] = []  # kernels each worker process did
    started = time.monotonic()
    # Even the plan is made in a worker: numba in this process would sit beside every
    # worker's peak (~100 MB). It says the plan, then goes on with the first lane.
    planner = _Worker("_warm_plan", config_path, jobs, WARMUP_RSS_BUDGET)
    plan = planner.said()
    lanes: list[list[str]] = plan["lanes"]

    def run_lane(lane: int) -> None:
        names = lanes[lane]
        worker = planner if lane == 0 else None
        while names:  # one process after the other: a lane's kernels share callees
            worker = worker or _Worker("_warm_chunk", names, WARMUP_RSS_BUDGET)
            done, from_cache, fallback = worker.result()
            processes.append(len(done))
            timings.update(done)
            loaded.extend(from_cache)
            fallbacks.extend([fallback] if fallback else [])
            names, worker = names[len(done):], None

    with ThreadPoolExecutor(max(1, len(lanes))) as lane_threads:
        list(lane_threads.map(run_lane, range(len(lanes))))  # re-raises a worker's error
    if not lanes:
        planner.result()
    for name, seconds in sorted(timings.items()):
        print(f"{name:40s} {seconds * 1e3:10.1f} ms")
    what = "kernels" if config_path is None else f"kernels of {config_path}"
    print(f"{len(timings)} {what} ready in {time.monotonic() - started:.1f} s "
          f"({sum(timings.values()):.1f} s of calls, {len(processes)} processes in {len(lanes)} lane(s), "
          f"--jobs {jobs}); cache: {used or 'beside the kernels source'}")
    print(f"{len(loaded)} loaded from the cache, {len(timings) - len(loaded)} compiled"
          + (f"; {plan['seeding']}" if plan["seeding"] else ""))
    if fallbacks:
        # Not a failure of the service: the agent compiles in memory at each start instead.
        print(f"vfd-agent warmup: warning: nothing was cached ({fallbacks[0]}); the agent will compile the "
              "kernels at each start", file=sys.stderr)
    return EXIT_OK


def warmup_jobs(cores: int | None = None, available: int | None = None) -> int:
    """Lanes to compile in by default: one per core, as many as fit in ``MEMORY_SHARE`` of MemAvailable.

    Each lane's process peaks near ``WARMUP_RSS_BUDGET``: on a 1 GB gateway (~700 MB
    available) one lane, on 2 GB three, on 4 GB four cores' worth. Half, not all: the page
    cache (the agent's venv, the journal) and whatever else runs keep the rest, and a
    gateway must not swap. Without /proc/meminfo: one.
    """
    cores = len(os.sched_getaffinity(0)) if cores is None else cores
    available = mem_available() if available is None else available
    fit = int(MEMORY_SHARE * available) // WARMUP_RSS_BUDGET if available else 1
    return max(1, min(cores, fit))


def mem_available(meminfo: Path = Path("/proc/meminfo")) -> int | None:
    """The kernel's estimate of the memory that can be given to new processes without swapping."""
    try:
        for line in meminfo.read_text(encoding="ascii").splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def warmup_lanes(names: Sequence[str], callees: Mapping[str, frozenset[str]],
                 cost: Mapping[str, int], jobs: int) -> list[list[str]]:
    """``names`` in at most ``jobs`` lanes that share no compiled function, each in ``names``' order.

    ``callees``: every function each kernel compiles (itself included); ``cost``: what
    compiling each function costs (``linked_sizes``: a compile's seconds and memory grow
    with its linked code). Kernels that share a function are kept in one lane, whose
    processes run one after the other; the groups go costliest first, each to the lane
    with the least cost so far (the fits' group alone is ~40 % of a config's compile).
    """
    groups: list[set[str]] = []
    reach: list[set[str]] = []
    for name in names:
        joined, funcs = {name}, set(callees[name])
        for i in reversed(range(len(groups))):
            if reach[i] & funcs:
                joined |= groups.pop(i)
                funcs |= reach.pop(i)
        groups.append(joined)
        reach.append(funcs)
    lanes: list[tuple[int, set[str]]] = [(0, set()) for _ in range(max(1, min(jobs, len(groups))))]
    weights = [sum(cost[f] for f in funcs) for funcs in reach]
    weighed = sorted(zip(weights, groups, strict=True), key=lambda pair: pair[0], reverse=True)
    for weight, group in weighed:
        least = min(range(len(lanes)), key=lambda i: lanes[i][0])
        lanes[least] = (lanes[least][0] + weight, lanes[least][1] | group)
    order = {name: i for i, name in enumerate(names)}
    return [sorted(lane, key=order.__getitem__) for _, lane in lanes if lane]


class _Worker:
    """``function(*args)`` of this module in a fresh Python process; what it says, through JSON.

    A plain child process rather than a multiprocessing pool: the pool's resource tracker
    is one more Python process (12 MB) beside every worker's peak. A worker may say one
    line before its result (``said``): the plan, so other lanes start while it goes on.
    """

    def __init__(self, function: str, *args: Any) -> None:
        code = ("import json, sys; from agent import warmup; "
                "print(json.dumps(getattr(warmup, sys.argv[1])(*json.loads(sys.argv[2]))))")
        self._proc = subprocess.Popen([sys.executable, "-c", code, function, json.dumps(args)],
                                      stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)

    def said(self) -> Any:
        """The first line the worker printed (it flushes it); its error if it died first."""
        assert self._proc.stdout is not None
        line = self._proc.stdout.readline()
        return json.loads(line) if line else self.result()

    def result(self) -> Any:
        """What the function returned (the last line printed)."""
        out, err = self._proc.communicate()
        if self._proc.returncode != 0:
            raise RuntimeError(f"warm-up worker failed ({self._proc.returncode}): {err.strip()}")
        return json.loads(out.splitlines()[-1])


Chunk = tuple[dict[str, float], list[str], str | None]  # a worker's timings, those loaded, the fallback


def _warm_plan(config_path: str | None, jobs: int, budget: int) -> Chunk:
    """In a worker process: print the lanes of kernels to warm, every kernel or a config's.

    The cache is seeded from the kernels wheel first, if installed (``configure_numba_cache``);
    the plan says how (``seeding``). One lane if every kernel loads from the cache (a warm
    cache: one process loads them all), else ``warmup_lanes``. Then the first lane's first
    run (``_warm_chunk``), in this same process, whose result is returned.
    """
    configure_numba_cache(None)
    import kernels
    from agent.config import load_config
    from agent.numba_cache import cache_seeding, callees, kernels_for, linked_sizes, will_load

    names = kernels.kernel_names()
    if config_path is not None:
        wanted = kernels_for(load_config(Path(config_path)))
        names = tuple(name for name in names if name in wanted)  # in module order: related runs
    if all(will_load(name) for name in names):
        lanes = [list(names)] if names else []
    else:
        cost = {f: size for name in names for f, size in linked_sizes(name).items()}
        lanes = warmup_lanes(names, {name: callees(name) for name in names}, cost, jobs)
    seeding = cache_seeding()
    print(json.dumps({"lanes": lanes, "seeding": seeding.detail if seeding else None}), flush=True)
    return _warm_chunk(lanes[0], budget) if lanes else ({}, [], None)


def _warm_chunk(names: list[str], budget: int) -> Chunk:
    """In a worker process: load or compile ``names`` in order while each compile is expected to fit.

    A kernel the cache holds (``will_load``) is always loaded here: a load adds ~1 MiB (the
    51 kernels together ~50 MiB), and its process's RSS says nothing of a compile's growth
    (under qemu-user it is past the budget after the first load). A kernel that compiles is
    started if it is the first, or if the peak RSS so far plus what its new functions are
    expected to add stays under ``budget``: ``GROWTH_PER_LINKED_BYTE`` per byte of each
    one's linked code (``linked_sizes``: the memory LLVM keeps grows with that more than
    with their count: ``fit_pump_curves_tuned`` added 42 MiB, ``flow_from_power`` with about
    as many functions 16) unless the cache holds it (``cached_functions``: an earlier process
    compiled it), and ``LOADED_PER_FUNCTION`` each.
    Returns the timings of those done, those of them loaded, and the cache's fallback, if any.
    """
    configure_numba_cache(None)  # the parent's NUMBA_CACHE_DIR is inherited; installs the fallback
    import kernels
    from agent.numba_cache import cached_functions, linked_sizes, will_load

    timings: dict[str, float] = {}
    loaded: list[str] = []
    done: set[str] = set()  # functions this process compiled or loaded
    for name in names:
        sizes = linked_sizes(name)
        loads = will_load(name)
        if timings and not loads:
            new = sizes.keys() - done
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
            linked = sum(sizes[f] for f in new - cached_functions(name))
            if peak + LOADED_PER_FUNCTION * len(new) + GROWTH_PER_LINKED_BYTE * linked > budget:
                break
        timings.update(kernels.warmup([name]))
        loaded.extend([name] if loads else [])
        done |= sizes.keys()
    return timings, loaded, cache_fallback()


def main(argv: list[str] | None = None) -> int:
    """``python -m agent.warmup '[config path or null, jobs or null, cache dir or null]'``: the CLI's exec."""
    config_path, jobs, used = json.loads((sys.argv[1:] if argv is None else argv)[0])
    return compile_kernels(config_path, None if jobs is None else int(jobs), used)


if __name__ == "__main__":
    sys.exit(main())
