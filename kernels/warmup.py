"""Compile (or load from Numba's on-disk cache) every public kernel once."""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from typing import Any

import numpy as np

from kernels import baselines, curves, electrical, fitting, integration, operating, rls, sensorless, staging


def _cases() -> list[tuple[str, Callable[..., Any], tuple[Any, ...]]]:
    """One small valid call per public kernel, with the argument types the agent uses.

    No argument is built by calling a kernel, so warming a subset compiles that subset
    and nothing else, and two warm-up processes with no callee in common never compile
    the same function (``agent.warmup``'s lanes): an argument another kernel makes (the
    uncertainty band, an RLS state: arrays they fill) is made by that kernel's Python.
    """
    hc = np.array([50.0, 40.0, -4800.0])
    pc = np.array([8000.0, 4.0e5, -2.0e6, 5.0e6])
    n = 32
    r = np.linspace(0.6, 1.0, n)
    q = np.tile(np.linspace(0.01, 0.07, 8), n // 8) * r
    h = hc[0] * r * r + hc[1] * r * q + hc[2] * q * q
    p = pc[0] * r**3 + pc[1] * r * r * q + pc[2] * r * q * q + pc[3] * q**3
    w = np.ones(n)
    speed_pct = np.array(baselines.CHARACTERISTIC_SPEED_PCT)
    power_pct = np.array(baselines.CHARACTERISTIC_POWER_PCT)
    flow_pct = np.array(baselines.DAMPER_FLOW_PCT)
    damper_pct = np.array(baselines.DAMPER_POWER_PCT)
    motor, drive = electrical.default_efficiency_tables()
    hcs = np.stack([hc, hc])
    pcs = np.stack([pc, pc])
    two = np.ones(2)
    load = np.array([0.3, 0.0, 1.0e4, 2.0e4, 0.2, 0.4])
    t = np.linspace(0.0, 10.0, 11)

    band = _python(sensorless.curve_band)(0.03, 0.1, 0.05, 0.05, 0.05, 0.02, 0.01, 0.4)
    rls_init = _python(rls.rls_init)  # a fresh state per case: the updates write it

    return [
        ("characteristic_baseline_power", baselines.characteristic_baseline_power,
         (0.8, 1.0e4, speed_pct, power_pct)),
        ("table_baseline_power", baselines.table_baseline_power,
         (0.8, 1.0e4, flow_pct, damper_pct)),
        ("constant_baseline_power", baselines.constant_baseline_power, (1.0e4,)),
        ("throttle_baseline_power", baselines.throttle_baseline_power, (hc, pc, 0.04)),
        ("baseline_power", baselines.baseline_power,
         (baselines.BASELINE_DAMPER, 0.8, 0.04, 1.0e4, 0.05, 1.0e4, flow_pct, damper_pct,
          hc, pc)),
        ("integrate_energy", integration.integrate_energy, (t, t, 2.0)),
        ("head", curves.head, (hc, 0.04, 0.9)),
        ("shaft_power", curves.shaft_power, (pc, 0.04, 0.9)),
        ("efficiency", curves.efficiency, (hc, pc, 0.04, 0.9, 998.0)),
        ("fan_pressure", curves.fan_pressure, (hc, 0.04, 0.9)),
        ("fan_efficiency", curves.fan_efficiency, (hc, pc, 0.04, 0.9)),
        ("runout_flow", curves.runout_flow, (hc,)),
        ("bep_flow", curves.bep_flow, (hc, pc, 0.9)),
        # The system fit first: it compiles the robust core (robust_lstsq and below) alone, so
        # the pump fit's process, its cache holding that, peaks ~25 MiB lower (a cold warm-up's peak).
        ("fit_system_curve", fitting.fit_system_curve, (q, h)),
        ("fit_system_curve_tuned", fitting.fit_system_curve_tuned, (q, h, 1.345, 50, 1e-5, 0.1)),
        ("fit_pump_curves", fitting.fit_pump_curves, (q, h, p, r, w)),
        ("fit_fan_curves", fitting.fit_fan_curves, (q, h, p, r, w)),
        ("fit_pump_curves_tuned", fitting.fit_pump_curves_tuned,
         (q, h, p, r, w, 1.345, 50, 1e-5, 0.2, 0.1)),
        ("system_curve_r_squared", fitting.system_curve_r_squared, (q, h, 10.0, 8000.0)),
        ("fit_load_characteristic_tuned", fitting.fit_load_characteristic_tuned,
         (r, p, 1.345, 50, 1e-5, 0.1)),
        ("fit_load_characteristic", fitting.fit_load_characteristic, (r, p)),
        ("load_power", fitting.load_power, (load, 0.8)),
        ("static_head_share", fitting.static_head_share, (load, 0.2)),
        ("rls_init", rls.rls_init, (3, 1.0e3)),
        ("rls_update", rls.rls_update, (rls_init(3, 1.0e3), np.ones(3), 1.0, 0.99)),
        ("rls_update_bounded", rls.rls_update_bounded, (rls_init(3, 1.0e3), np.ones(3), 1.0, 0.99, 1e9)),
        ("rls_coeffs", rls.rls_coeffs, (rls_init(3, 1.0e3),)),
        ("operating_point", operating.operating_point, (hc, 10.0, 8000.0, 0.9)),
        ("flow_at_head", operating.flow_at_head, (hc, 30.0, 0.9)),
        ("common_speed", operating.common_speed, (hcs, 30.0, 0.08, 1.0)),
        ("min_speed_for_flow", operating.min_speed_for_flow,
         (hc, 10.0, 8000.0, 0.04, 0.3, 1.0)),
        ("estimate_flow", operating.estimate_flow, (pc, 2.0e4, 0.9)),
        ("estimate_flow_tuned", operating.estimate_flow_tuned, (pc, 2.0e4, 0.9, 0.08, 0.2)),
        ("curve_band", sensorless.curve_band, (0.03, 0.1, 0.05, 0.05, 0.05, 0.02, 0.01, 0.4)),
        ("band_uncertainty", sensorless.band_uncertainty, (band, 0.04)),
        ("monotone_branch", sensorless.monotone_branch, (pc, True, 0.08)),
        ("flow_from_curve", sensorless.flow_from_curve,
         (pc, 3, True, 2.0e4, 0.9, 0.01, 0.002, band, 0.08, 0.2, 0.5)),
        ("flow_from_power", sensorless.flow_from_power,
         (pc, 2.0e4, 0.9, 0.01, 0.002, band, 0.08, 0.2, 0.5)),
        ("flow_from_head", sensorless.flow_from_head,
         (hc, 40.0, 0.9, 0.005, 0.002, band, 0.08, 0.2, 0.5)),
        ("flow_from_ratio", sensorless.flow_from_ratio,
         (hc, pc, 40.0, 2.0e4, 0.9, 0.005, 0.01, 0.002, band, band, 0.08, 0.5)),
        ("combine_estimates", sensorless.combine_estimates, (0.04, 0.002, 0.042, 0.003)),
        ("fit_catalogue_curve", sensorless.fit_catalogue_curve, (q, p, 3)),
        ("shift_curve", sensorless.shift_curve, (pc, 0.002)),
        ("correct_flow_offset", sensorless.correct_flow_offset, (pc, 3, True, 0.04, 2.0e4, 0.9, 0.08)),
        ("flow_offset", sensorless.flow_offset, (pc, 3, True, 0.04, 2.0e4, 0.9, 0.08)),
        ("calibrate_shutoff", sensorless.calibrate_shutoff, (hc, pc, 45.0, 7000.0, 0.95, 0.05)),
        ("shaft_power_uncertainty", sensorless.shaft_power_uncertainty, (0.9, 0.01, 0.15)),
        ("shaft_speed_ratio", sensorless.shaft_speed_ratio, (0.9, 2.0e4, 3.0e4, 0.02)),
        ("electrical_power", electrical.electrical_power, (2.0e4, 3.0e4, motor, drive)),
        ("stage_pumps", staging.stage_pumps,
         (hcs, pcs, 3.0e4 * two, 10.0, 4000.0, 0.08, 0.5 * two, two, 0.6 * two, 1.3 * two)),
        ("stage_pumps_tables", staging.stage_pumps_tables,
         (hcs, pcs, 3.0e4 * two, 10.0, 4000.0, 0.08, 0.5 * two, two, 0.6 * two, 1.3 * two,
          motor, drive)),
    ]


def _python(kernel: Callable[..., Any]) -> Callable[..., Any]:
    """A kernel's own Python function: no compile (itself under ``NUMBA_DISABLE_JIT``)."""
    func: Callable[..., Any] = getattr(kernel, "py_func", kernel)
    return func


def kernel_names() -> tuple[str, ...]:
    """Every public kernel ``warmup`` compiles, in its order."""
    return tuple(name for name, _, _ in _cases())


def warmup(names: Collection[str] | None = None) -> dict[str, float]:
    """Call every public kernel (or only those in ``names``) once; returns seconds spent per kernel.

    The first call after installation compiles into the on-disk cache (NUMBA_CACHE_DIR,
    chosen by the caller before ``kernels`` is imported); later calls only load from it,
    so the figures tell which happened. A kernel compiled here also compiles the kernels
    it calls, for the argument types it calls them with. ValueError names an unknown kernel.
    """
    cases = _cases()
    if names is not None:
        unknown = sorted(set(names) - {name for name, _, _ in cases})
        if unknown:
            raise ValueError(f"no kernel named {', '.join(unknown)}")
        cases = [case for case in cases if case[0] in names]
    timings: dict[str, float] = {}
    for name, func, args in cases:
        start = time.perf_counter()
        func(*args)
        timings[name] = time.perf_counter() - start
    return timings
