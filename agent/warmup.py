"""``vfd-agent warmup``'s compiling: kernels into Numba's cache, in processes of their own.

``vfd-agent warmup`` reads the config and decides the cache directory, then becomes
``python -m agent.warmup`` (``main``), so the parent of the compiling processes holds only
what this module imports (the standard library and ``agent.numba_cache``: 14 MiB), not the
CLI's (42 MiB). The compiling happens in workers (``_warm_plan``, ``_warm_chunk``), which
import numba.
"""

from __future__ import annotations

import json
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
WARMUP_RSS_BUDGET = 215 * 2**20  # a warm-up process starts no kernel it would not finish under this RSS ...
LOADED_PER_FUNCTION = 1 * 2**20  # ... at about this per function it loads or compiles, ...
GROWTH_PER_LINKED_BYTE = 1536  # ... and this per byte of bytecode in the modules it compiles


def compile_kernels(config_path: str | None, jobs: int, used: str | None) -> int:
    """Compile every kernel, or only those the config at ``config_path`` calls (``kernels_for``).

    The kernels are compiled in fresh processes, one after the other, each going on while
    the next kernel is expected to fit under ``WARMUP_RSS_BUDGET``: LLVM keeps every module
    it compiled until its process exits, so one process compiling all of them peaked near
    400 MB, and one process per few kernels spent a second of start-up on each. A warm
    cache loads every kernel in one process (the unit's ExecStartPre runs this before each
    start). With ``jobs`` > 1, that many lanes of processes run side by side
    (``warmup_lanes``): two lanes never compile the same function, since two processes
    compiling one callee for different argument types would both write its cache index
    and could pair an entry with the other's code. ``used``: the cache directory, as shown.
    """
    timings: dict[str, float] = {}
    fallbacks: list[str] = []
    processes: list[int] = []  # kernels each worker process did
    started = time.monotonic()
    # Even the plan is made in a worker: numba in this process would sit beside every
    # worker's peak (~100 MB). It goes on with the first lane: a warm cache, one process.
    lanes, first = _in_worker("_warm_plan", config_path, jobs, WARMUP_RSS_BUDGET)

    def record(done: dict[str, float], fallback: str | None) -> None:
        processes.append(len(done))
        timings.update(done)
        fallbacks.extend([fallback] if fallback else [])

    def run_lane(names: list[str], before: list[str]) -> None:
        while names:  # one process after the other: a lane's kernels share callees
            done, fallback = _in_worker("_warm_chunk", names, WARMUP_RSS_BUDGET, before)
            record(done, fallback)
            names, before = names[len(done):], before + list(done)

    record(*first)
    befores = [list(first[0]) if i == 0 else [] for i in range(len(lanes))]
    lanes = [lane[len(first[0]):] if i == 0 else lane for i, lane in enumerate(lanes)]
    with ThreadPoolExecutor(max(1, len(lanes))) as lane_threads:
        list(lane_threads.map(run_lane, lanes, befores))  # re-raises a worker's error
    for name, seconds in sorted(timings.items()):
        print(f"{name:40s} {seconds * 1e3:10.1f} ms")
    what = "kernels" if config_path is None else f"kernels of {config_path}"
    print(f"{len(timings)} {what} ready in {time.monotonic() - started:.1f} s "
          f"({sum(timings.values()):.1f} s of calls, {len(processes)} processes in {len(lanes)} lane(s)); "
          f"cache: {used or 'beside the kernels source'}")
    if fallbacks:
        # Not a failure of the service: the agent compiles in memory at each start instead.
        print(f"vfd-agent warmup: warning: nothing was cached ({fallbacks[0]}); the agent will compile the "
              "kernels at each start", file=sys.stderr)
    return EXIT_OK


def warmup_lanes(names: Sequence[str], callees: Mapping[str, frozenset[str]],
                 jobs: int) -> list[list[str]]:
    """``names`` in at most ``jobs`` lanes that share no compiled function, each in ``names``' order.

    ``callees``: every function each kernel compiles (itself included). Kernels that share
    one are kept in one lane, whose processes run one after the other; lanes are filled
    largest group first, each to the lane with the fewest kernels so far.
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
    lanes: list[set[str]] = [set() for _ in range(max(1, min(jobs, len(groups))))]
    for group in sorted(groups, key=len, reverse=True):
        min(lanes, key=len).update(group)
    order = {name: i for i, name in enumerate(names)}
    return [sorted(lane, key=order.__getitem__) for lane in lanes if lane]


def _in_worker(function: str, *args: Any) -> Any:
    """``function(*args)`` of this module in a fresh Python process; its result, through JSON.

    A plain child process rather than a multiprocessing pool: the pool's resource tracker
    is one more Python process (12 MB) beside every worker's peak.
    """
    code = ("import json, sys; from agent import warmup; "
            "print(json.dumps(getattr(warmup, sys.argv[1])(*json.loads(sys.argv[2]))))")
    done = subprocess.run([sys.executable, "-c", code, function, json.dumps(args)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"warm-up worker failed ({done.returncode}): {done.stderr.strip()}")
    return json.loads(done.stdout.splitlines()[-1])


def _warm_plan(config_path: str | None, jobs: int,
               budget: int) -> tuple[list[list[str]], tuple[dict[str, float], str | None]]:
    """In a worker process: the lanes of kernels to compile, every kernel or a config's.

    Then the first lane's first run (``_warm_chunk``), in this same process.
    """
    configure_numba_cache(None)
    import kernels
    from agent.config import load_config
    from agent.numba_cache import callees, kernels_for

    names = kernels.kernel_names()
    if config_path is not None:
        wanted = kernels_for(load_config(Path(config_path)))
        names = tuple(name for name in names if name in wanted)  # in module order: related runs
    lanes = warmup_lanes(names, {name: callees(name) for name in names}, jobs)
    return lanes, _warm_chunk(lanes[0], budget) if lanes else ({}, None)


def _warm_chunk(names: list[str], budget: int,
                before: Sequence[str] = ()) -> tuple[dict[str, float], str | None]:
    """In a worker process: compile (or load) ``names`` in order while each is expected to fit.

    A kernel is started if it is the first, or if the peak RSS so far plus what its new
    functions are expected to add stays under ``budget``: ``GROWTH_PER_LINKED_BYTE`` per byte
    of each one's linked code (``linked_sizes``: the memory LLVM keeps grows with that more
    than with their count: ``fit_pump_curves_tuned`` added 42 MiB, ``flow_from_power`` with
    about as many functions 16), unless every kernel so far was a cache hit (a warm cache),
    and ``LOADED_PER_FUNCTION`` each. A function of a kernel in ``before`` (done by an
    earlier process of this lane) is in the cache: loading it costs ``LOADED_PER_FUNCTION``.
    Returns the timings of those done and the cache's fallback, if any.
    """
    configure_numba_cache(None)  # the parent's NUMBA_CACHE_DIR is inherited; installs the fallback
    import kernels
    from agent.numba_cache import linked_sizes

    cached = {f for kernel in before for f in linked_sizes(kernel)}
    timings: dict[str, float] = {}
    compiled: set[str] = set()
    warm = True
    for name in names:
        sizes = linked_sizes(name)
        new = sizes.keys() - compiled
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
        linked = 0 if warm else sum(sizes[f] for f in new - cached)
        expected = LOADED_PER_FUNCTION * len(new) + GROWTH_PER_LINKED_BYTE * linked
        if timings and peak + expected > budget:
            break
        timings.update(kernels.warmup([name]))
        compiled |= sizes.keys()
        warm = warm and not getattr(kernels, name).stats.cache_misses
    return timings, cache_fallback()


def main(argv: list[str] | None = None) -> int:
    """``python -m agent.warmup '[config path or null, jobs, cache dir or null]'``, as the CLI execs it."""
    config_path, jobs, used = json.loads((sys.argv[1:] if argv is None else argv)[0])
    return compile_kernels(config_path, int(jobs), used)


if __name__ == "__main__":
    sys.exit(main())
