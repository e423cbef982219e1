"""Coverage of the A/B estimate's 90 % interval on seeded synthetic plants (AR(1) noise), per method.

python -m bench.mv_ab_coverage [RUNS]
"""

import sys

import numpy as np

from agent.mv.abtest import Covariance, ab_estimate
from agent.mv.baseline import DesignSpec, TimeOfWeek
from tests.agent.mv_synth import HOUR, plant

SPEC = DesignSpec(flow_degree=2, time_of_week=TimeOfWeek.DAYPART)

if __name__ == "__main__":
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 200
    truth = 1500.0
    for rho in (0.0, 0.7):
        for block_h in (24, 6):
            for cov in Covariance:
                hits, widths = 0, []
                for seed in range(runs):
                    data, operator, blocks = plant(seed, rho=rho, block_h=block_h, saving_w=truth)
                    rate = ab_estimate(data, operator, blocks, SPEC, HOUR, cov).saving_rate_w
                    hits += rate.lower(0.9) <= truth <= rate.upper(0.9)
                    widths.append(2 * rate.half_width(0.9))
                print(f"rho {rho:.1f}  blocks {block_h:2d} h  {cov.value:13s}  coverage {hits / runs:.3f}  "
                      f"mean 90 % width {np.mean(widths):.0f} W (truth {truth:.0f} W, 8 weeks hourly)")
