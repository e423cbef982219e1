"""Write a sample M&V report of a synthetic group to look at.

python -m bench.mv_sample_report OUT.html [--fail]
"""

import sys
from pathlib import Path

from agent.mv.report import render_html
from tests.agent.mv_synth import sample_report

if __name__ == "__main__":
    out = Path(sys.argv[1] if len(sys.argv) > 1 else "mv-report.html")
    report = sample_report(fail="--fail" in sys.argv)
    out.write_text(render_html(report), encoding="utf-8")
    s = report.savings
    print(f"{out}: CV(RMSE) {report.model.stats.cv_rmse:.3f}, rho {report.model.rho:.2f}, "
          f"saved {s.savings_j.value / 3.6e6:.1f} kWh, "
          f"90 % +- {s.savings_j.half_width(0.9) / 3.6e6:.1f} kWh, "
          f"FSU68 {s.fsu[0.68]:.3f}, passed {s.passed}")
