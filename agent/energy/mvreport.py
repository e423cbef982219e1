"""``vfd-agent report --mv``: the auditor's page of each group, built from the ledger's M&V rows.

Reads the group's stored baseline model, its intervals and the non-routine events, computes the
reporting period's avoided energy (agent.energy.verification, the same code the running agent
exports), and hands agent.mv.report the figures to render. CO2 and money are the savings times
the site's emission factor and tariff weighted by each interval's adjusted baseline energy.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from dataclasses import astuple
from datetime import datetime

import numpy as np

from agent.config.model import AgentConfig
from agent.config.profile import DEFAULT_POWER_ACCURACY
from agent.energy.ledger import (
    Event,
    EventKind,
    MvInterval,
    StoredModel,
    read_events,
    read_intervals,
    read_models,
)
from agent.energy.verification import (
    ab_figure,
    group_accuracy,
    model_from_json,
    mv_groups,
    reporting,
    savings_figure,
    to_intervals,
)
from agent.mv.report import EmissionFactor, MvReport, NonRoutineEvent, TariffInfo, ledger_digest
from agent.mv.stats import MvError
from agent.mv.uncertainty import co2_kg, money, weighted_factor
from agent.units import KWH_TO_J

METHOD = ("Retrofit isolation with all parameters measured: the group's electrical power from its drives, "
          "regressed on the independent variables recorded beside it in the baseline period (monitor or "
          "advise mode: the operator's own strategy)")


def build(db: sqlite3.Connection, config: AgentConfig, version: str,
          only: Sequence[str] | None = None) -> tuple[list[MvReport], list[str]]:
    """The report of every group with a model and a reporting interval; and why the others have none."""
    groups = mv_groups(config)
    models: dict[str, StoredModel] = {m.grp: m for m in read_models(db)}  # the newest per group
    accuracy = {d.name: d.profile.power_accuracy for d in config.drives}
    reports, missing = [], []
    for grp in sorted(set(models) | set(groups)):
        if only and grp not in only:
            continue
        stored = models.get(grp)
        if stored is None:
            missing.append(f"{grp}: no baseline model yet (its baseline period has not ended)")
            continue
        rows = read_intervals(db, grp)
        try:
            report = _group_report(db, config, grp, stored, rows,
                                   group_accuracy(accuracy, groups.get(grp, ())), version)
        except MvError as exc:
            missing.append(f"{grp}: no savings estimate: {exc}")
            continue
        if report is None:
            missing.append(f"{grp}: no reporting interval after the baseline period yet")
        else:
            reports.append(report)
    return reports, missing


def _events(db: sqlite3.Connection, start: float, end: float, members: set[str]) -> list[Event]:
    """The group's events in [start, end), after the config in force at ``start`` (its last hash before)."""
    events = [e for e in read_events(db, end=end) if e.subject in members]
    before = [e for e in events if e.wall < start and e.kind is EventKind.CONFIG]
    return before[-1:] + [e for e in events if e.wall >= start]


def _group_report(db: sqlite3.Connection, config: AgentConfig, grp: str, stored: StoredModel,
                  rows: list[MvInterval], accuracy: float, version: str) -> MvReport | None:
    model = model_from_json(stored.model)
    found = reporting(model, rows)
    if found is None:
        return None
    data, end = found
    figure = savings_figure(grp, model, rows, accuracy if accuracy > 0 else DEFAULT_POWER_ACCURACY)
    assert figure.savings is not None and figure.savings_j is not None
    saved = figure.savings
    baseline = to_intervals([r for r in rows if model.period_start_s <= r.start < model.period_end_s
                             and r.covered_s >= 0.5 * r.length_s])
    tz = config.site.timezone
    weights = np.asarray(saved.predicted_w) * model.interval_s
    local = [datetime.fromtimestamp(float(t), tz) for t in data.t_s]
    site = config.site
    kg_per_j = weighted_factor(weights, np.asarray([site.emission_kg_per_joule.value_at(t) for t in local]))
    prices = np.asarray([site.tariff.price_per_joule.value_at(t) for t in local])
    price_per_j = weighted_factor(weights, prices)
    members = set(mv_groups(config).get(grp, ())) | {grp, ""}
    found_events = _events(db, model.period_start_s, end, members)
    events = tuple(NonRoutineEvent(e.wall, e.kind.value, f"{e.subject}: {e.detail}" if e.subject
                                   else e.detail) for e in found_events if e.kind is not EventKind.AB_BLOCK)
    planned = tuple(NonRoutineEvent(e.wall, e.kind.value, e.detail) for e in found_events
                    if e.kind is EventKind.AB_BLOCK)
    ab = ab_figure(rows)
    summarized = [astuple(stored), *(astuple(r) for r in rows)]
    return MvReport(
        group=grp, ipmvp_option="B (retrofit isolation, all parameters measured)", method=METHOD, model=model,
        baseline_t_s=baseline.t_s, baseline_actual_w=baseline.power_w,
        baseline_fitted_w=model.predict_w(baseline), reporting_start_s=model.period_end_s,
        reporting_end_s=end, reporting_t_s=data.t_s, reporting_actual_w=data.power_w, savings=saved,
        savings_total_j=figure.savings_j, power_accuracy=accuracy, co2_kg=co2_kg(figure.savings_j, kg_per_j),
        emission=EmissionFactor(kg_per_j * KWH_TO_J, f"site config {config.source}: "
                                "site.grid_emission_factor_kg_per_kwh (and grid_emission_periods), "
                                "weighted by the adjusted baseline energy of each interval"),
        money=money(figure.savings_j, price_per_j),
        tariff=TariffInfo(config.site.tariff.currency,
                          f"{price_per_j * KWH_TO_J:.4g} {config.site.tariff.currency}/kWh from site config "
                          f"{config.source} (site.tariff, weighted by the adjusted baseline energy)"),
        software_version=version, ledger_sha256=ledger_digest(summarized), ledger_rows=len(summarized),
        events=events, ab=ab.estimate if ab is not None else None, ab_blocks=planned)
