"""``vfd-agent warmup``: every kernel by default (install.sh), only a config's with ``--config``.

What the agent calls is read from the modules that import kernels (``agent.numba_cache``);
these tests check that list covers the agent, and that a config's warm-up runs its kernels
and no others. They run on the suite's Numba cache: a cold cache would compile each kernel
again (seconds each), and the suite compiles every kernel once per run.
"""

from __future__ import annotations

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
from agent.warmup import WARMUP_RSS_BUDGET, _warm_chunk, _warm_plan, warmup_lanes
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
    wanted = ["load_power", "static_head_share"]
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
    assert "curve_band" not in loaded and "rls_init" not in loaded  # other cases' argument builders


def test_warmup_without_a_config_plans_every_kernel():
    """What install.sh runs: every public kernel, in one lane by default.

    The plan only (made in this process): the command itself is the one run above with
    ``--config``; run every kernel again here and the suite would load all 50 once more.
    """
    names = list(kernels.kernel_names())
    lanes, (done, _) = _warm_plan(None, 1, 0)  # then the first lane's first run: one kernel, loaded
    assert lanes == [names]
    assert list(done) == names[:1]


def test_a_warm_up_process_stops_starting_kernels_past_its_budget():
    """In this process (its kernels loaded already): past the budget after the first kernel."""
    names = ["load_power", "static_head_share"]
    done, _ = _warm_chunk(names, 1)
    assert list(done) == names[:1]
    done, _ = _warm_chunk(names, WARMUP_RSS_BUDGET * 1000)
    assert list(done) == names
    done, _ = _warm_chunk(names, WARMUP_RSS_BUDGET * 1000, names)  # done before: cached
    assert list(done) == names


def test_lanes_side_by_side_never_compile_the_same_function():
    """Two processes compiling one callee could pair its cache index entry with the other's code."""
    names = kernels.kernel_names()
    for jobs in (2, 3):
        lanes, _ = _warm_plan(None, jobs, 0)
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


def test_lanes_keep_kernels_that_share_a_callee_together():
    shared = {"a": frozenset({"x", "a"}), "b": frozenset({"b"}), "c": frozenset({"c", "x"}),
              "d": frozenset({"d"})}
    lanes = warmup_lanes(["a", "b", "c", "d"], shared, 2)
    assert sorted(lanes) == [["a", "c"], ["b", "d"]]
    assert warmup_lanes(["a", "b"], shared, 8) == [["a"], ["b"]]  # no more lanes than groups
    assert warmup_lanes(["a", "b", "c", "d"], shared, 1) == [["a", "b", "c", "d"]]


def test_warmup_jobs_runs_the_lanes_side_by_side(tmp_path):
    path = _site(tmp_path, groups=True)
    code, out, err = finish(spawn("agent.cli", "warmup", "--config", str(path), "--jobs", "2"), timeout=600)
    assert code == 0, err
    wanted = kernels_for(load_config(path))
    assert f"{len(wanted)} kernels of {path} ready" in out and "2 lane(s)" in out
    assert {line.split()[0] for line in out.splitlines() if line.endswith(" ms")} == wanted
    code, _, err = finish(spawn("agent.cli", "warmup", "--jobs", "0"), timeout=60)
    assert code == 2 and "--jobs" in err and "Traceback" not in err
