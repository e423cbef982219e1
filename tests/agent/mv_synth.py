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
