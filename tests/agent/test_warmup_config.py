"""``vfd-agent warmup``: every kernel by default (install.sh), only a config's with ``--config``.

What the agent calls is read from the modules that import kernels (``agent.numba_cache``);
these tests check that list covers the agent, and that a config's warm-up runs its kernels
and no others. They run on the suite's Numba cache: a cold cache would compile each kernel
again (seconds each), and the suite compiles every kernel once per run.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

import kernels
from agent.config import load_config
from agent.numba_cache import (
    ENERGY_MODULES,
    OPTIMIZER_MODULES,
    SENSORLESS_MODULES,
    callees,
    kernels_for,
    kernels_in,
    linked_sizes,
)
from agent.warmup import WARMUP_RSS_BUDGET, _warm_plan, mem_available, warmup_jobs, warmup_lanes
from tests.support import REPO, finish, spawn

PROCESS = REPO / "configs" / "plants" / "profiles" / "generic-process.yaml"


def _site(tmp_path: Path, groups: bool, baseline: str = "characteristic") -> Path:
    text = textwrap.dedent(f"""\
        site: {{name: t, grid_emission_factor_kg_per_kwh: 0.5, tariff: {{currency: EUR, price_per_kwh: 0.2}}}}
        storage: {{path: {tmp_path / 'state'}}}
        buses: [{{name: b, host: 127.0.0.1, port: 5020}}]
        drives:
          - name: p1
            bus: b
            unit: 1
            profile: {PROCESS}
            rated_power_kw: 15
            rated_speed_rpm: 1470
            load: {{kind: pump, rated_flow_m3h: 120, rated_head_m: 32}}
            baseline: {{method: {baseline}}}
        """)
    if groups:
        text += textwrap.dedent("""\
            groups:
              - name: g
                drives: [p1]
                demand: {drive: p1, quantity: process_flow}
                system: {static_head_m: 9.6, design_flow_m3h: 120, design_head_m: 32}
            """)
    path = tmp_path / "site.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def _with_callees(names: frozenset[str]) -> set[str]:
    """``names`` and every public kernel they call, directly or through private helpers.

    Compiling a kernel compiles its callees for the types it passes them (and caches them).
    """
    from numba.core.dispatcher import Dispatcher

    public = set(kernels.kernel_names())
    seen: set[int] = set()
    found: set[str] = set()
    todo = [getattr(kernels, n) for n in names]
    while todo:
        func = todo.pop()
        if id(func) in seen:
            continue
        seen.add(id(func))
        if func.py_func.__name__ in public:
            found.add(func.py_func.__name__)
        py = func.py_func
        todo.extend(v for n in py.__code__.co_names
                    if isinstance(v := py.__globals__.get(n), Dispatcher))
    return found


def test_every_agent_module_that_imports_a_kernel_is_listed():
    """A module missing from the lists would have its kernels neither warmed nor preloaded."""
    from numba.core.dispatcher import Dispatcher

    import agent.service  # noqa: F401  (imports every module the running agent uses)

    holding = {name for name, module in sys.modules.items()
               if name.startswith("agent.") and any(isinstance(v, Dispatcher) for v in vars(module).values())}
    assert holding == set(ENERGY_MODULES) | set(SENSORLESS_MODULES) | set(OPTIMIZER_MODULES)


def test_a_config_without_groups_needs_only_the_energy_kernels(tmp_path):
    plain = kernels_for(load_config(_site(tmp_path, groups=False)))
    grouped = kernels_for(load_config(_site(tmp_path, groups=True)))
    assert plain == kernels_in(ENERGY_MODULES + SENSORLESS_MODULES)  # a pump: its flow estimate
    assert "characteristic_baseline_power" in plain and "fit_pump_curves_tuned" not in plain
    assert {"flow_from_power", "flow_from_head", "curve_band"} <= plain
    assert grouped == plain | kernels_in(OPTIMIZER_MODULES)
    assert {"fit_pump_curves_tuned", "fit_system_curve_tuned", "stage_pumps_tables"} <= grouped
    # The agent calls the tuned fits with the wrappers' settings: the wrappers (a compile of
    # their own each) and the fan fit (the same fit) are not compiled for it.
    assert not grouped & {"fit_pump_curves", "fit_fan_curves", "fit_system_curve", "estimate_flow"}
    assert not any(name.startswith("rls_") for name in grouped)  # RLS: unused


def test_a_fan_needs_no_flow_estimate_kernels(tmp_path):
    text = _site(tmp_path, groups=False).read_text(encoding="utf-8").replace(
        "load: {kind: pump, rated_flow_m3h: 120, rated_head_m: 32}",
        "load: {kind: fan, rated_flow_m3h: 20000, rated_pressure_pa: 800}")
    path = tmp_path / "fan.yaml"
    path.write_text(text, encoding="utf-8")
    assert kernels_for(load_config(path)) == kernels_in(ENERGY_MODULES)


def test_warmup_config_runs_exactly_the_kernels_the_config_calls(tmp_path):
    """The command end to end, on the suite's cache (each kernel compiles once per run)."""
    path = _site(tmp_path, groups=False)
    code, out, err = finish(spawn("agent.cli", "warmup", "--config", str(path)), timeout=600)
    assert code == 0, err
    wanted = kernels_for(load_config(path))
    assert f"{len(wanted)} kernels of {path} ready" in out
    ran = {line.split()[0] for line in out.splitlines() if line.endswith(" ms")}
    assert ran == wanted
    assert str(REPO / ".numba_cache") in out  # NUMBA_CACHE_DIR wins over the config's default


def test_warming_some_kernels_loads_those_and_their_callees_only():
    """``kernels.warmup(names)`` builds no argument with another kernel (``curve_band`` once did).

    In a fresh process on the suite's cache: a kernel loaded from the cache has an overload
    and its callees none; one compiled here gives its callees theirs. Either way nothing else.
    """
    wanted = ["load_power", "static_head_share", "flow_from_head", "rls_coeffs"]  # the last two took a
    # curve_band and an rls_init compiled to build their arguments: lanes then both compiled those
    script = textwrap.dedent(f"""\
        import kernels
        kernels.warmup({wanted!r})
        print(" ".join(n for n in kernels.kernel_names() if getattr(kernels, n).signatures))
        """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=600, check=False)
    assert done.returncode == 0, done.stderr
    loaded = set(done.stdout.split())
    assert set(wanted) <= loaded <= _with_callees(frozenset(wanted))
    assert "curve_band" not in loaded and "rls_init" not in loaded  # other cases' argument makers


def _cache_without(tmp_path: Path, names: list[str]) -> Path:
    """A copy of the suite's cache (the kernels' directory) in which ``names`` are not cached.

    Their index files are removed: a call of one of them compiles, every other one loads.
    """
    kernels.warmup(["load_power", "static_head_share"])  # cached here whatever ran before
    source = Path(kernels.load_power._cache.cache_path)
    copy = tmp_path / "cache"
    shutil.copytree(source, copy / source.name)
    for name in names:
        (copy / source.name / Path(getattr(kernels, name)._cache._cache_file._index_path).name).unlink(
            missing_ok=True)
    return copy


def test_warmup_of_a_warm_cache_loads_every_kernel_in_one_process(capsys):
    """What install.sh runs, once the cache holds every kernel: one lane, whatever ``jobs``.

    The plan in this process, which then loads the whole lane: a load is started past any
    budget (0 here), since the budget is about what a compile adds. (Before, a process
    past its budget started no further kernel: under qemu-user, whose RSS passes it after
    the first load, a bundle's first warm-up took 26 processes and 106 s instead of 6 s.)
    """
    names = list(kernels.kernel_names())
    kernels.warmup()  # every kernel in the cache, as after a first warm-up (loads, on the suite's cache)
    for jobs in (1, 3):
        done, loaded, _ = _warm_plan(None, jobs, 0)
        assert json.loads(capsys.readouterr().out)["lanes"] == [names]
        assert loaded == names
        assert list(done) == names


def test_a_warm_up_process_loads_past_its_budget_but_compiles_only_under_it(tmp_path):
    """Real processes on a copy of the suite's cache with two kernels taken out of it."""
    cache = _cache_without(tmp_path, ["constant_baseline_power", "shift_curve"])
    script = textwrap.dedent(f"""\
        import json
        from agent.warmup import _warm_chunk
        from agent.numba_cache import will_load
        four = ["load_power", "static_head_share", "constant_baseline_power", "shift_curve"]
        steps = [_warm_chunk(four, 1),
                 _warm_chunk(["constant_baseline_power", "shift_curve", "load_power"], 1),
                 _warm_chunk(["shift_curve", "static_head_share"], {WARMUP_RSS_BUDGET * 1000})]
        print(json.dumps([list(done) for done, _, _ in steps] + [will_load("shift_curve")]
                         + [loaded for _, loaded, _ in steps]))
        """)
    done = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True, text=True,
                          timeout=600, check=False, env=dict(os.environ, NUMBA_CACHE_DIR=str(cache)))
    assert done.returncode == 0, done.stderr
    loads, first_compile, under = json.loads(done.stdout.splitlines()[-1])[:3]
    assert loads == ["load_power", "static_head_share"]  # both loaded past the budget; no compile
    assert first_compile == ["constant_baseline_power"]  # a process's first kernel always; no second compile
    assert under == ["shift_curve", "static_head_share"]
    assert json.loads(done.stdout.splitlines()[-1])[3] is True  # compiled into the cache
    # What each process reports as loaded (the warm-up's "N loaded from the cache, M compiled"):
    assert json.loads(done.stdout.splitlines()[-1])[4:] == [loads, [], ["static_head_share"]]


def test_lanes_side_by_side_never_compile_the_same_function():
    """Two processes compiling one callee could pair its cache index entry with the other's code."""
    names = kernels.kernel_names()
    cost = {f: size for name in names for f, size in linked_sizes(name).items()}
    for jobs in (2, 3):
        lanes = warmup_lanes(names, {name: callees(name) for name in names}, cost, jobs)
        assert len(lanes) == jobs
        assert sorted(n for lane in lanes for n in lane) == sorted(names)
        compiled = [set().union(*(callees(n) for n in lane)) for lane in lanes]
        for i, mine in enumerate(compiled):
            for other in compiled[i + 1:]:
                assert not mine & other
    assert callees("fit_fan_curves") >= {"kernels.fitting.fit_pump_curves", "kernels._linalg.robust_lstsq"}


def test_a_functions_linked_size_is_its_code_and_everything_it_calls():
    """What a warm-up process expects a compile to cost grows with the callees Numba links in."""
    sizes = linked_sizes("fit_pump_curves_tuned")
    assert sizes.keys() == callees("fit_pump_curves_tuned")
    from kernels import _linalg

    own = len(_linalg.robust_lstsq.py_func.__code__.co_code)
    parts = ("householder_lstsq", "mad_scale", "_weighted_gram_solve")  # disjoint callee trees
    assert sizes["kernels._linalg.robust_lstsq"] == own + sum(sizes[f"kernels._linalg.{p}"] for p in parts)
    assert sizes["kernels._linalg.householder_lstsq"] > sizes["kernels._linalg._row_dot"] > 0
    assert max(sizes.values()) == sizes["kernels.fitting.fit_pump_curves_tuned"]


def test_lanes_keep_kernels_that_share_a_callee_together_and_balance_their_cost():
    shared = {"a": frozenset({"x", "a"}), "b": frozenset({"b"}), "c": frozenset({"c", "x"}),
              "d": frozenset({"d"}), "e": frozenset({"e"})}
    even = dict.fromkeys("abcdex", 1)
    lanes = warmup_lanes(["a", "b", "c", "d"], shared, even, 2)
    assert sorted(lanes) == [["a", "c"], ["b", "d"]]
    assert warmup_lanes(["a", "b"], shared, even, 8) == [["a"], ["b"]]  # no more lanes than groups
    assert warmup_lanes(["a", "b", "c", "d"], shared, even, 1) == [["a", "b", "c", "d"]]
    # By cost, not count: the heavy one alone (counted, it would share a lane with one light one).
    heavy = dict(even, b=10)
    assert sorted(warmup_lanes(["a", "b", "c", "d", "e"], shared, heavy, 2)) == [["a", "c", "d", "e"], ["b"]]


def test_warmup_jobs_one_per_core_while_they_fit_in_half_the_available_memory(tmp_path):
    mib = 2**20
    assert warmup_jobs(cores=4, available=700 * mib) == 1  # a 1 GB gateway
    assert warmup_jobs(cores=4, available=1700 * mib) == 3  # 2 GB
    assert warmup_jobs(cores=4, available=3500 * mib) == 4  # 4 GB: the cores
    assert warmup_jobs(cores=2, available=300 * mib) == 1  # never none
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:  1000000 kB\nMemFree:  10 kB\nMemAvailable:  716800 kB\n")
    assert mem_available(meminfo) == 700 * mib
    assert mem_available(tmp_path / "missing") is None


def test_warmup_jobs_runs_the_lanes_side_by_side_then_loads_in_one_process(tmp_path):
    """Two of the config's kernels (in two lanes' groups) not cached: two lanes; then, warm, one process."""
    path = _site(tmp_path, groups=True)
    cache = _cache_without(tmp_path, ["shift_curve", "min_speed_for_flow"])
    env = {"NUMBA_CACHE_DIR": str(cache)}
    wanted = kernels_for(load_config(path))
    assert {"shift_curve", "min_speed_for_flow"} <= wanted
    for lanes in ("2 lane(s)", "1 processes in 1 lane(s)"):
        code, out, err = finish(spawn("agent.cli", "warmup", "--config", str(path), "--jobs", "2", env=env),
                                timeout=600)
        assert code == 0, err
        assert f"{len(wanted)} kernels of {path} ready" in out and lanes in out
        assert {line.split()[0] for line in out.splitlines() if line.endswith(" ms")} == wanted
    code, _, err = finish(spawn("agent.cli", "warmup", "--jobs", "0"), timeout=60)
    assert code == 2 and "--jobs" in err and "Traceback" not in err
