"""Seeded synthetic hourly pump-group data with a known saving and AR(1) noise, for the M&V tests."""

import numpy as np

from agent.mv.abtest import BlockPlan, Strategy, schedule
from agent.mv.baseline import Intervals

HOUR = 3600.0


def ar1(rng, n, rho, sigma):
    """Stationary AR(1) noise with marginal standard deviation sigma."""
    e = np.empty(n)
    e[0] = rng.normal(0, sigma)
    innovations = rng.normal(0, sigma * np.sqrt(1 - rho**2), n)
    for i in range(1, n):
        e[i] = rho * e[i - 1] + innovations[i]
    return e


def plant(seed, weeks=8, rho=0.7, sigma=600.0, saving_w=1500.0, block_h=24, start_s=0.0, operator=None):
    """Hourly intervals of a group whose operator strategy draws ``saving_w`` more at the same flow.

    Returns (intervals, operator mask, block index); ``operator`` forces the mask (e.g. all
    True for a baseline period).
    """
    rng = np.random.default_rng(seed)
    n = weeks * 168
    t = start_s + np.arange(n) * HOUR
    how = (np.arange(n) % 168).astype(np.int64)
    hod = how % 24
    flow = np.clip(0.03 + 0.015 * np.sin((hod - 6) / 24 * 2 * np.pi) + rng.normal(0, 0.003, n), 0.005, None)
    if operator is None:
        plan = BlockPlan(seed=seed, block_s=block_h * HOUR, operator_share=0.5, epoch_s=start_s)
        blocks_plan = schedule(plan, t[0], t[-1] + HOUR)
        per_block = np.array([b.strategy is Strategy.OPERATOR for b in blocks_plan])
        blocks = ((t - start_s) // plan.block_s).astype(np.int64)
        operator = per_block[blocks - blocks[0]]
    else:
        operator = np.broadcast_to(np.asarray(operator, dtype=bool), (n,)).copy()
        blocks = ((t - start_s) // (block_h * HOUR)).astype(np.int64)
    power = (3000 + 1e5 * flow + 2e6 * flow**2 + 400.0 * (how // 24 >= 5) + saving_w * operator
             + ar1(rng, n, rho, sigma))
    return Intervals(t, power, how, flow_m3s=flow), operator, blocks


def sample_report(seed=7, fail=False):
    """A full report of a synthetic group: 4 weeks of baseline, 2 of reporting (for tests and bench)."""
    from agent.mv.abtest import ab_estimate
    from agent.mv.baseline import DesignSpec, TimeOfWeek, avoided_energy, fit_baseline
    from agent.mv.report import EmissionFactor, MvReport, NonRoutineEvent, TariffInfo, ledger_digest
    from agent.mv.uncertainty import co2_kg, money, savings_with_meter

    spec = DesignSpec(flow_degree=2, time_of_week=TimeOfWeek.DAYPART)
    start = 1_767_225_600.0  # 2026-01-01 00:00 UTC, a Thursday; hour_of_week here is synthetic
    base, _, _ = plant(seed, weeks=4, rho=0.5, operator=True, start_s=start, sigma=4000.0 if fail else 600.0)
    end_b = start + 4 * 168 * HOUR
    rep, _, _ = plant(seed + 1, weeks=2, rho=0.5, operator=False, start_s=end_b)
    end_r = end_b + 2 * 168 * HOUR
    model = fit_baseline(base, spec, HOUR, start, end_b)
    result = avoided_energy(model, rep, end_b, end_r)
    total = savings_with_meter(result.savings_j, 0.02, baseline_measured=True)
    ab_data, operator, blocks = plant(seed + 2, weeks=4, start_s=end_r)
    rows = [(float(t), float(p)) for t, p in zip(base.t_s, base.power_w, strict=True)]
    return MvReport(
        group="chw-loop", ipmvp_option="B (retrofit isolation, all parameters measured)",
        method="regression baseline (Guideline 14 whole-group path)", model=model,
        baseline_t_s=base.t_s, baseline_actual_w=base.power_w, baseline_fitted_w=model.predict_w(base),
        reporting_start_s=end_b, reporting_end_s=end_r, reporting_t_s=rep.t_s, reporting_actual_w=rep.power_w,
        savings=result, savings_total_j=total, power_accuracy=0.02,
        co2_kg=co2_kg(total, 0.5703 / 3.6e6),
        emission=EmissionFactor(0.5703, "MEE 2022 national grid average <enterprise GHG reporting>"),
        money=money(total, 0.12 / 3.6e6), tariff=TariffInfo("EUR", "0.12 EUR/kWh flat"),
        software_version="0.1.0", ledger_sha256=ledger_digest(rows), ledger_rows=len(rows),
        events=(NonRoutineEvent(end_b + 3 * 86400.0, "config_change", "pressure setpoint limits widened"),
                NonRoutineEvent(end_b + 5 * 86400.0, "clock_step", "wall clock stepped +42 s")),
        ab=ab_estimate(ab_data, operator, blocks, spec, HOUR),
    )
