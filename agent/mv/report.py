"""The auditor's report: one self-contained HTML page per group (inline CSS and SVG, no assets).

Input is plain dataclasses built by the caller from the ledger; this module only formats.
Figures are kWh, kg and currency at this edge (SI inside). A model that fails a test is shown
failing at the top of the page, never left out.
"""

from __future__ import annotations

import hashlib
import html
import json
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone

import numpy as np

from agent.mv.abtest import AbEstimate
from agent.mv.baseline import AvoidedEnergy, BaselineModel
from agent.mv.estimate import Estimate
from agent.mv.stats import CONFIDENCE_LEVELS, Check, FloatArray, effective_sample_size

J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class NonRoutineEvent:
    """Something that may have changed the energy use other than the measure (IPMVP)."""

    t_s: float
    kind: str
    """config_change, hand_back, fault, clock_step, …"""
    detail: str


@dataclass(frozen=True)
class EmissionFactor:
    """The grid factor applied and where it comes from."""

    kg_per_kwh: float
    source: str


@dataclass(frozen=True)
class TariffInfo:
    """The tariff applied, as the auditor should read it."""

    currency: str
    description: str


@dataclass(frozen=True)
class MvReport:
    """Everything the page shows. Arrays are per interval, in time order."""

    group: str
    ipmvp_option: str
    method: str
    model: BaselineModel
    baseline_t_s: FloatArray
    baseline_actual_w: FloatArray
    baseline_fitted_w: FloatArray
    reporting_start_s: float
    reporting_end_s: float
    reporting_t_s: FloatArray
    reporting_actual_w: FloatArray
    savings: AvoidedEnergy
    savings_total_j: Estimate
    """The savings with the power reading's accuracy combined in (uncertainty.savings_with_meter)."""
    power_accuracy: float
    co2_kg: Estimate
    emission: EmissionFactor
    money: Estimate
    tariff: TariffInfo
    software_version: str
    ledger_sha256: str
    ledger_rows: int
    events: tuple[NonRoutineEvent, ...] = field(default=())
    ab: AbEstimate | None = None
    ab_blocks: tuple[NonRoutineEvent, ...] = field(default=())
    """The planned A/B hand-backs: routine, part of the measurement (listed apart from the non-routine)."""


def ledger_digest(rows: Iterable[Sequence[object]]) -> str:
    """SHA-256 of ledger rows in a canonical form (one compact JSON array per row, in order)."""
    h = hashlib.sha256()
    for row in rows:
        h.update(json.dumps(list(row), separators=(",", ":"), sort_keys=True, default=str).encode())
        h.update(b"\n")
    return h.hexdigest()


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _utc(t_s: float) -> str:
    return datetime.fromtimestamp(t_s, tz=timezone.utc).strftime("%Y-%m-%d %H:%M UTC")


def _num(x: float, digits: int = 1) -> str:
    if math.isnan(x):
        return "n/a"
    if math.isinf(x):
        return "∞"
    return f"{x:,.{digits}f}"


def _tick(v: float, span: float) -> str:
    """An axis label with the decimals the axis' span needs (a scaled-down run's kWh are small)."""
    digits = max(0, min(6, 2 - math.floor(math.log10(span)))) if span > 0 else 0
    return _num(v, digits) if abs(v) >= 0.5 * 10.0**-digits else _num(0.0, digits)


def _duration(seconds: float) -> str:
    """An interval's length in the unit a reader expects."""
    return f"{seconds / 3600:g} h" if seconds >= 3600 else f"{seconds / 60:g} min" if seconds >= 60 \
        else f"{seconds:g} s"


def _pct(x: float) -> str:
    if math.isinf(x):
        return "∞"
    v = round(100.0 * x, 1)
    return f"{v if v != 0 else 0.0:.1f} %"  # never "-0.0 %"


def _interval_row(name: str, est: Estimate, scale: float, unit: str, digits: int = 1) -> str:
    cells = [f"<th>{_e(name)}</th>", f"<td>{_num(est.value * scale, digits)} {_e(unit)}</td>"]
    for c in CONFIDENCE_LEVELS:
        lo, hi = sorted((est.lower(c) * scale, est.upper(c) * scale))
        cells.append(f"<td>{_num(lo, digits)} … {_num(hi, digits)}</td>")
    return "<tr>" + "".join(cells) + "</tr>"


# --------------------------------------------------------------------------- SVG charts

_W, _H, _L, _R, _T, _B = 1000, 300, 80, 20, 30, 40


@dataclass(frozen=True)
class _Series:
    label: str
    color: str
    y: FloatArray
    dots: bool = False


def _chart(chart_id: str, title: str, unit: str, t_s: FloatArray, series: Sequence[_Series],
           band: tuple[FloatArray, FloatArray] | None = None, zero_line: bool = False) -> str:
    """An SVG chart of series against time, with an optional shaded band; each point is in the SVG.

    Long because axes, band, series and legend are one drawing: each step places its marks in
    the coordinates the steps before it fixed.
    """
    t = np.asarray(t_s, dtype=np.float64)
    values = [np.asarray(s.y, dtype=np.float64) for s in series]
    if band is not None:
        values += [np.asarray(band[0]), np.asarray(band[1])]
    stacked = np.concatenate(values) if values else np.zeros(1)
    y_min, y_max = float(np.min(stacked)), float(np.max(stacked))
    if zero_line:
        y_min, y_max = min(y_min, 0.0), max(y_max, 0.0)
    if y_max == y_min:
        y_max, y_min = y_max + 1.0, y_min - 1.0
    pad = 0.05 * (y_max - y_min)
    y_min, y_max = y_min - pad, y_max + pad
    t0, t1 = float(t[0]), float(t[-1]) if len(t) > 1 else float(t[0]) + 1.0

    def sx(v: FloatArray) -> FloatArray:
        return _L + (v - t0) / (t1 - t0) * (_W - _L - _R)

    def sy(v: FloatArray) -> FloatArray:
        return _T + (y_max - v) / (y_max - y_min) * (_H - _T - _B)

    def points(x: FloatArray, y: FloatArray) -> str:
        return " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(sx(x), sy(y), strict=True))

    parts = [f'<svg id="{_e(chart_id)}" class="chart" viewBox="0 0 {_W} {_H}" '
             f'xmlns="http://www.w3.org/2000/svg" role="img" aria-label="{_e(title)}">',
             f'<text x="{_L}" y="18" class="title">{_e(title)}</text>',
             f'<line x1="{_L}" y1="{_H - _B}" x2="{_W - _R}" y2="{_H - _B}" class="axis"/>',
             f'<line x1="{_L}" y1="{_T}" x2="{_L}" y2="{_H - _B}" class="axis"/>']
    for k in range(5):
        v = y_min + (y_max - y_min) * k / 4
        y_px = float(sy(np.array([v]))[0])
        parts.append(f'<line x1="{_L}" y1="{y_px:.1f}" x2="{_W - _R}" y2="{y_px:.1f}" class="grid"/>'
                     f'<text x="{_L - 6}" y="{y_px + 4:.1f}" class="tick" '
                     f'text-anchor="end">{_tick(v, y_max - y_min)}</text>')
    for k in range(5):
        v = t0 + (t1 - t0) * k / 4
        x_px = float(sx(np.array([v]))[0])
        label = datetime.fromtimestamp(v, tz=timezone.utc).strftime("%Y-%m-%d %H:%M")
        anchor = "start" if k == 0 else "end" if k == 4 else "middle"
        parts.append(f'<text x="{x_px:.1f}" y="{_H - _B + 16}" class="tick" '
                     f'text-anchor="{anchor}">{label}</text>')
    mid = _T + (_H - _T - _B) / 2
    parts.append(f'<text x="14" y="{mid:.0f}" class="tick" transform="rotate(-90 14 {mid:.0f})" '
                 f'text-anchor="middle">{_e(unit)}</text>')
    if zero_line:
        y0 = float(sy(np.array([0.0]))[0])
        parts.append(f'<line x1="{_L}" y1="{y0:.1f}" x2="{_W - _R}" y2="{y0:.1f}" class="zero"/>')
    if band is not None:
        lo, hi = np.asarray(band[0]), np.asarray(band[1])
        outline = points(t, hi) + " " + points(t[::-1], lo[::-1])
        parts.append(f'<polygon class="band" data-series="band90" points="{outline}"/>')
    legend_x = _W - _R
    legend: list[tuple[str, str]] = []
    for s, y in zip(series, values, strict=False):
        if s.dots:
            xs, ys = sx(t), sy(y)
            circles = "".join(f'<circle cx="{a:.1f}" cy="{b:.1f}" r="1.6"/>'
                              for a, b in zip(xs, ys, strict=True))
            parts.append(f'<g class="dots" data-series="{_e(s.label)}" data-n="{len(y)}" fill="{s.color}">'
                         f"{circles}</g>")
        else:
            parts.append(f'<polyline class="line" data-series="{_e(s.label)}" data-n="{len(y)}" '
                         f'stroke="{s.color}" points="{points(t, y)}"/>')
            if len(y) == 1:  # a line of one point draws nothing: mark it
                parts.append(f'<circle cx="{float(sx(t)[0]):.1f}" cy="{float(sy(y)[0]):.1f}" r="3" '
                             f'fill="{s.color}"/>')
        legend.append((s.label, s.color))
    if band is not None:
        legend.append(("shaded: 90 % interval", "#5b8fd9"))
    # The legend sits on the title row, right-aligned, so it never covers data.
    for label, color in reversed(legend):
        parts.append(f'<text x="{legend_x}" y="18" class="legend" text-anchor="end" '
                     f'style="fill:{color}">{_e(label)}</text>')
        legend_x -= 9 * len(label) + 24
    parts.append("</svg>")
    return "\n".join(parts)


# --------------------------------------------------------------------------- page

_CSS = """
body { font: 14px/1.45 system-ui, sans-serif; color: #1b1b1b; max-width: 1060px;
       margin: 24px auto; padding: 0 16px; }
h1 { font-size: 22px; margin-bottom: 4px; }
h2 { font-size: 17px; border-bottom: 1px solid #ccc; padding-bottom: 3px; }
table { border-collapse: collapse; margin: 6px 0 12px; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: left; }
td { font-variant-numeric: tabular-nums; }
.pass { color: #17692f; font-weight: 600; }
.fail { color: #a3141f; font-weight: 600; }
.verdict { padding: 10px 14px; border-radius: 4px; margin: 10px 0; }
.verdict.pass { background: #e5f4e8; }
.verdict.fail { background: #fbe4e6; }
.chart { width: 100%; height: auto; border: 1px solid #ddd; margin: 6px 0 14px; background: #fff; }
.chart .axis { stroke: #444; }
.chart .grid { stroke: #eee; }
.chart .zero { stroke: #888; stroke-dasharray: 4 3; }
.chart .line { fill: none; stroke-width: 1.4; }
.chart .band { fill: #5b8fd9; fill-opacity: 0.22; stroke: none; }
.chart text { font-size: 11px; fill: #333; }
.chart .title { font-size: 13px; font-weight: 600; }
.chart .legend { font-size: 12px; font-weight: 600; }
code { font-size: 12px; }
@media print { body { margin: 0; }
.chart { page-break-inside: avoid; }
"""


def _check_rows(checks: Iterable[Check]) -> str:
    rows = []
    for c in checks:
        value = _pct(c.value)
        verdict = '<span class="pass">pass</span>' if c.passed else '<span class="fail">FAIL</span>'
        rows.append(f"<tr><th>{_e(c.name)}</th><td>{value}</td><td>{_e(c.limit)}</td><td>{verdict}</td></tr>")
    return "".join(rows)


def render_html(r: MvReport) -> str:
    """The report page as one HTML string (write it with an atomic file write).

    Long because the page is one document read top to bottom by an auditor; its sections are
    kept in the order they are shown.
    """
    s = r.savings
    checks = s.checks
    failed = [c.name for c in checks if not c.passed]
    if failed:
        verdict = (f'<div class="verdict fail" id="verdict"><b>Not signable:</b> the claim fails '
                   f'{_e(", ".join(failed))}. The figures below are shown for review, '
                   'not as a verified saving.</div>')
    else:
        verdict = ('<div class="verdict pass" id="verdict"><b>Meets ASHRAE Guideline 14</b> '
                   '(hourly model limits, CalTRACK data coverage, savings uncertainty below 50 % '
                   'at 68 % confidence).</div>')
    m = r.model
    coef_rows = "".join(f"<tr><th><code>{_e(n)}</code></th><td>{b:.6g}</td></tr>"
                        for n, b in zip(m.names, m.coefficients, strict=True))
    spec = m.spec
    terms = (f"flow polynomial degree {spec.flow_degree}; speed³ {'yes' if spec.speed_cubed else 'no'}; "
             f"pumps running {'yes' if spec.pumps_running else 'no'}; critical-point pressure "
             f"{'yes' if spec.pressure else 'no'}; time of week: {spec.time_of_week.value}")
    reporting_actual_j = np.asarray(r.reporting_actual_w) * m.interval_s / J_PER_KWH
    reporting_baseline_j = np.asarray(s.predicted_w) * m.interval_s / J_PER_KWH
    cumulative = np.cumsum(reporting_baseline_j - reporting_actual_j)
    half = np.asarray(s.cumulative_half_width90_j) / J_PER_KWH
    residuals = np.asarray(r.baseline_actual_w) - np.asarray(r.baseline_fitted_w)
    events = "".join(f"<tr><td>{_e(_utc(ev.t_s))}</td><td>{_e(ev.kind)}</td><td>{_e(ev.detail)}</td></tr>"
                     for ev in r.events) or '<tr><td colspan="3">none recorded</td></tr>'
    ab = ""
    planned = "".join(f"<tr><td>{_e(_utc(ev.t_s))}</td><td>{_e(ev.kind)}</td><td>{_e(ev.detail)}</td></tr>"
                      for ev in r.ab_blocks)
    if r.ab is not None:
        a = r.ab
        ab = (f'<section id="ab"><h2>A/B blocks</h2><p>Regression of power on flow and an '
              f'operator indicator over {a.n} intervals in {a.clusters} randomized blocks; standard error '
              f'{_e(a.covariance.value.replace("_", " "))}. Beside it, the option B figure of the same '
              'reporting period (against the baseline model; it covers all of the period, the A/B '
              'estimate the agent\'s time in the analysed intervals).</p><table><tr><th></th>'
              '<th>estimate</th><th>68 % interval</th><th>90 % interval</th></tr>'
              f'{_interval_row("A/B: saving rate", a.saving_rate_w, 1e-3, "kW", 2)}'
              f'{_interval_row("A/B: saved while the agent ran", a.saving_j, 1 / J_PER_KWH, "kWh")}'
              f'{_interval_row("option B: energy saved", r.savings_total_j, 1 / J_PER_KWH, "kWh")}'
              "</table></section>")
    if planned:
        ab += ('<section id="ab-blocks"><h2>Planned A/B hand-backs</h2><p>Routine events: the randomized '
               f"blocks handed to the operator's strategy ({len(r.ab_blocks)}), part of the measurement, "
               'not changes to adjust for.</p><table><tr><th>time</th><th>kind</th><th>detail</th></tr>'
               f"{planned}</table></section>")
    ci_head = "<tr><th></th><th>estimate</th>" + "".join(
        f"<th>{c:.0%} interval</th>" for c in CONFIDENCE_LEVELS) + "</tr>"
    body = f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>M&amp;V report: {_e(r.group)}</title>
<style>{_CSS}</style></head><body>
<h1>Measurement and verification: {_e(r.group)}</h1>
{verdict}
<section id="method"><h2>Method</h2><table>
<tr><th>IPMVP option</th><td>{_e(r.ipmvp_option)}</td></tr>
<tr><th>Method</th><td>{_e(r.method)}</td></tr>
<tr><th>Baseline period</th><td>{_e(_utc(m.period_start_s))} – {_e(_utc(m.period_end_s))}</td></tr>
<tr><th>Reporting period</th><td>{_e(_utc(r.reporting_start_s))} – {_e(_utc(r.reporting_end_s))}</td></tr>
<tr><th>Interval</th><td>{_duration(m.interval_s)}</td></tr></table></section>
<section id="model"><h2>Baseline model</h2>
<p>Ordinary least squares of mean electrical power [W] per interval on:
{_e(terms)}.</p><table>{coef_rows}</table>
<table><tr><th>n (intervals)</th><td>{m.stats.n}</td></tr><tr><th>p (parameters)</th><td>{m.stats.p}</td></tr>
<tr><th>R²</th><td>{m.stats.r_squared:.4f}</td></tr>
<tr><th>lag-1 autocorrelation ρ</th><td>{m.rho:.3f}</td></tr>
<tr><th>effective sample size n′</th><td>{_num(effective_sample_size(m.stats.n, m.rho))}</td></tr>
</table></section>
<section id="statistics"><h2>Statistics (ASHRAE Guideline 14-2014)</h2>
<table><tr><th>test</th><th>value</th><th>limit</th><th>result</th></tr>{_check_rows(checks)}</table>
<p>CV(RMSE) and NMBE divide by n − p (Guideline 14-2014, Annex B). Fractional savings uncertainty:
1.26 · t(n′ − p) · √(MSE′ (1 + 2/n′) m) / (m ȳ F), n′ = n(1 − ρ)/(1 + ρ).</p></section>
<section id="coverage"><h2>Data coverage</h2><table>
<tr><th>baseline</th><td>{_pct(m.coverage)} of {m.expected_intervals} intervals</td></tr>
<tr><th>reporting</th><td>{_pct(s.coverage)}</td></tr></table>
<p>CalTRACK 2.0 §2.2.1.2: more than 90 % of the hourly intervals must hold data.</p></section>
<section id="savings"><h2>Savings</h2><table>{ci_head}
<tr><th>adjusted baseline</th><td>{_num(s.adjusted_baseline_j / J_PER_KWH)} kWh</td><td colspan="2"></td></tr>
<tr><th>measured energy</th><td>{_num(s.actual_j / J_PER_KWH)} kWh</td><td colspan="2"></td></tr>
{_interval_row("energy saved (model only)", s.savings_j, 1 / J_PER_KWH, "kWh")}
{_interval_row("energy saved (with power accuracy)", r.savings_total_j, 1 / J_PER_KWH, "kWh")}
</table><p>Savings fraction F = {_pct(s.savings_fraction)}; fractional savings uncertainty
{_pct(s.fsu[0.68])} at 68 %, {_pct(s.fsu[0.90])} at 90 %. Declared accuracy of the drive's power reading:
±{_pct(r.power_accuracy)} (a bound, combined as a rectangular distribution; it scales the saving, since the
baseline was measured with the same reading).</p></section>
<section id="co2"><h2>CO2 avoided</h2><table>{ci_head}{_interval_row("CO2", r.co2_kg, 1.0, "kg")}</table>
<p>Emission factor {r.emission.kg_per_kwh:g} kg/kWh; source: {_e(r.emission.source)}.</p></section>
<section id="money"><h2>Money saved</h2><table>{ci_head}
{_interval_row("money", r.money, 1.0, r.tariff.currency, 2)}</table>
<p>Tariff: {_e(r.tariff.description)}.</p></section>
{ab}
<section id="charts"><h2>Charts</h2>
{_chart("chart-energy", "Energy per interval: baseline model against measured", "kWh", r.reporting_t_s,
        [_Series("baseline (model)", "#1f5fbf", reporting_baseline_j),
         _Series("measured", "#c2410c", reporting_actual_j)])}
{_chart("chart-cumulative", "Cumulative savings with the 90 % interval", "kWh", r.reporting_t_s,
        [_Series("cumulative savings", "#17692f", cumulative)], band=(cumulative - half, cumulative + half),
        zero_line=True)}
{_chart("chart-residuals", "Baseline-period residuals (measured − model)", "W", r.baseline_t_s,
        [_Series("residual", "#6b21a8", residuals, dots=True)], zero_line=True)}
</section>
<section id="events"><h2>Non-routine events</h2><table><tr><th>time</th><th>kind</th><th>detail</th></tr>
{events}</table></section>
<section id="provenance"><h2>Provenance</h2><table>
<tr><th>software</th><td>vfd-agent {_e(r.software_version)}</td></tr>
<tr><th>ledger rows summarized</th><td>{r.ledger_rows}</td></tr>
<tr><th>SHA-256 of those rows</th><td><code>{_e(r.ledger_sha256)}</code></td></tr></table></section>
</body></html>
"""
    return body
