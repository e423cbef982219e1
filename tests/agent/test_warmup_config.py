"""``vfd-agent warmup``: every kernel by default (install.sh), only a config's with ``--config``.

What the agent calls is read from the modules that import kernels (``agent.numba_cache``);
these tests check that list covers the agent, and that a config's warm-up compiles its
kernels and no others, by the index files Numba writes per compiled function.
"""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path

import kernels
from agent.cli import warmup_chunks
from agent.config import load_config
from agent.numba_cache import ENERGY_MODULES, OPTIMIZER_MODULES, kernels_for, kernels_in
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


def _compiled(cache: Path) -> set[str]:
    """Public kernels with an index file in a Numba cache (``<module>.<function>-<line>.pyXY.nbi``)."""
    public = set(kernels.kernel_names())
    found = {p.name.split(".")[1].rsplit("-", 1)[0] for p in cache.rglob("*.nbi")}
    return found & public


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
    assert holding == set(ENERGY_MODULES) | set(OPTIMIZER_MODULES)


def test_a_config_without_groups_needs_only_the_energy_kernels(tmp_path):
    plain = kernels_for(load_config(_site(tmp_path, groups=False)))
    grouped = kernels_for(load_config(_site(tmp_path, groups=True)))
    assert plain == kernels_in(ENERGY_MODULES)
    assert "characteristic_baseline_power" in plain and "fit_pump_curves" not in plain
    assert grouped == plain | kernels_in(OPTIMIZER_MODULES)
    assert {"fit_pump_curves", "fit_system_curve", "stage_pumps_tables"} <= grouped
    assert not any(name.startswith(("flow_from_", "rls_")) for name in grouped)  # sensorless, RLS: unused


def test_warmup_config_compiles_exactly_the_kernels_the_config_calls(tmp_path):
    """A cold cache: the index files afterwards name the config's kernels (and their callees)."""
    path = _site(tmp_path, groups=False)
    cache = tmp_path / "cold-cache"
    code, out, err = finish(spawn("agent.cli", "warmup", "--config", str(path), "--cache-dir", str(cache)),
                            timeout=600)
    assert code == 0, err
    wanted = kernels_for(load_config(path))
    assert f"{len(wanted)} kernels of {path} ready" in out
    compiled = _compiled(cache)
    assert wanted <= compiled
    assert compiled == _with_callees(wanted)
    assert not any(name.startswith(("fit_", "stage_", "flow_from_", "rls_")) for name in compiled)


def test_warmup_without_a_config_covers_every_kernel(tmp_path):
    """What install.sh runs: every public kernel, in processes of a few modules each."""
    names = kernels.kernel_names()
    chunks = warmup_chunks(names)
    assert [n for chunk in chunks for n in chunk] == list(names)
    assert len(chunks) > 1
    code, out, err = finish(spawn("agent.cli", "warmup"), timeout=600)  # the suite's (warm) cache
    assert code == 0, err
    assert f"{len(names)} kernels ready" in out
    for name in names:
        assert f"\n{name} " in f"\n{out}"
