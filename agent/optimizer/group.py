"""One group of drives that serve one demand: its models, its demand, its plan, and its hand-back.

Per poll cycle (``observe``): sample the demand and the operating point, feed the system
curve, and evaluate the counterfactual. Per optimizer cycle: ``refit`` the machines and the
system curve, then ``recommend`` a typed plan (``agent.optimizer.plans``): a single
machine's lowest speed meeting the demand a little ahead against the system curve
(``kernels.min_speed_for_flow``), a pressure loop's setpoint reset along the system curve,
or parallel pumps' staging (``agent.optimizer.staging``); ``publish`` keeps what the
metrics show. In control mode ``actuator`` (``agent.control.actuator``) writes the plan.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from agent.config import BusConfig, ControlMode
from agent.config.model import DemandSource, GroupConfig, GroupControl, OptimizerConfig
from agent.config.profile import Quantity
from agent.control.actuator import GroupActuator
from agent.control.writer import DriveWriter
from agent.drive import DeviceRuntime, DriveRuntime
from agent.optimizer.counterfactual import Counterfactual, flow_of
from agent.optimizer.demand import DemandTracker
from agent.optimizer.machine import MachineModel
from agent.optimizer.plans import DriveSpeed, Plan, Recommendation, SetpointPlan, SpeedPlan
from agent.optimizer.staging import Stager, StageState
from agent.optimizer.system import WIDE_OPEN, Service, SystemModel, excess_head
from agent.sensorless import Calibration, FlowEstimate, group_demand
from kernels import min_speed_for_flow

RESPOND = 0.02  # share of the design head asked for beyond the header's when the critical valve is wide open
LEVEL_K = 1.5  # the margin covers at least this many standard errors of the demand's level


class GroupRuntime:
    """One group: its drives, models, demand, plan and (in control mode) its actuator."""

    def __init__(self, config: GroupConfig, drives: Sequence[DriveRuntime],
                 writers: Mapping[str, DriveWriter], settings: OptimizerConfig,
                 bus_of: Mapping[str, BusConfig]) -> None:
        self.config = config
        self.drives = list(drives)
        self.machines = [MachineModel(d.config) for d in drives]
        self.writers = writers
        self.settings = settings
        self.system = SystemModel(config.system.static, config.system.k, config.system.design_flow,
                                  config.system.design_head,
                                  critical_setpoint=config.service.critical_setpoint)
        self.shortfall_s = 0.0  # seconds the loads were short (averaged polls), whoever was in control
        self.short_since = math.nan  # when the present shortfall began (NaN: the loads are not short)
        self.extrapolated_j = 0.0  # the model's saving where the operator was never seen (not booked)
        self.extrapolated_s = 0.0  # the time it was so
        self.priced_s = 0.0  # the time a saving was booked: the operator's strategy priced where it was seen
        self._priced = False  # the latest poll's counterfactual was priced
        self._last_observed = math.nan
        self._critical = (math.nan, math.nan)  # (valve 0..1, critical DP) as the latest poll shows them
        self._critical_carrier: DeviceRuntime | None = None  # the device the critical point is read from
        poll = max((bus_of[d.name].poll_interval for d in drives), default=1.0)
        restore = config.service.restore_s
        # Default: ten cycles, and for parallel pumps time for one more stage change (a shortfall only
        # a started pump can end is not the operator's to end sooner).
        staging = config.staging.min_interval + 2.0 * settings.interval if len(drives) > 1 else 0.0
        cycles = 10.0 * max(settings.interval, poll)
        self.restore_s = restore if math.isfinite(restore) else max(cycles, staging)
        window = max(2.0 * settings.interval, 20.0 * poll)
        self.demand = DemandTracker(window, trend_window=4.0 * window)
        # The demand until the next cycle's setpoints are in force: one interval and the data's age.
        lookahead = config.demand.lookahead
        self.lookahead = lookahead if math.isfinite(lookahead) else settings.interval + 2.0 * poll
        self.trend = DemandTracker(window, trend_window=max(config.staging.min_interval, 4.0 * window))
        self.recommendations = {d.name: Recommendation() for d in drives}
        self.stage = StageState()
        self.stager = Stager(config, self.drives, self.machines, writers, self.trend, self.stage)
        self.counterfactual = Counterfactual(config, self.drives, self.machines, writers)
        self.actuator = GroupActuator(config, self.drives, writers, self.stage)
        self.target_flow = math.nan
        # Relative 90 % uncertainty of the latest sensorless demand: widens the margin (0 otherwise).
        self.demand_u90 = 0.0
        modes = {d.config.control.mode for d in drives}
        self.mode = ControlMode.CONTROL if modes == {ControlMode.CONTROL} else (
            ControlMode.MONITOR if ControlMode.MONITOR in modes else ControlMode.ADVISE)

    @property
    def name(self) -> str:
        """The group's name."""
        return self.config.name

    @property
    def parallel(self) -> bool:
        """More than one machine: staging."""
        return len(self.machines) > 1

    @property
    def holding(self) -> bool:
        """The agent's values are in force."""
        return self.actuator.holding

    # --- per poll ----------------------------------------------------------------------------

    def demand_point(self) -> float:
        """The demand as the latest poll shows it (NaN if it does not)."""
        demand = self.config.demand
        if demand.source is DemandSource.SENSORLESS:
            none = FlowEstimate(math.nan, math.nan, Calibration.DATASHEET)
            running = [(d.flow_estimate or none, d.config.load.rated_flow)
                       for d in self.drives if d.last is not None and d.last.running]
            total = group_demand([e for e, _ in running], [share for _, share in running])
            self.demand_u90 = total.rel_u90 if total.available else self.demand_u90
            return total.flow
        if demand.source is DemandSource.CRITICAL:
            return self.needed_head()
        if not demand.drive:
            return math.nan  # another device: read in the cycle
        drive = next((d for d in self.drives if d.name == demand.drive), None)
        source = drive.last if drive is not None else None
        return source.values.get(demand.quantity, math.nan) if source is not None else math.nan

    def observe(self, now: float, external: Mapping[str, DeviceRuntime]) -> dict[str, tuple[float, float]]:
        """After a poll cycle: sample the demand and the operating point; the (counterfactual, staged) [W]."""
        demand = self.config.demand
        self._critical = self.critical_point(now, external)
        value = self.demand_point()
        if demand.source is DemandSource.POINT and demand.drive and math.isnan(value):
            carrier = external.get(demand.drive)
            if carrier is not None and carrier.last is not None:
                value = carrier.last.values.get(demand.quantity, math.nan)
        pressure_point = demand.source is DemandSource.POINT and demand.quantity is Quantity.PRESSURE
        if pressure_point and math.isfinite(value):
            value = self.machines[0].head_of(value)
        if math.isfinite(value):
            self.demand.add(now, value)
            self.trend.add(now, value)
        delivered, head = self.operating_point()
        service = Service.UNKNOWN
        if demand.source is DemandSource.CRITICAL:  # no flow meter: the critical point alone judges
            service = self.system.add(delivered, head, math.nan, *self._critical)
        elif demand.quantity is not Quantity.PRESSURE:
            service = self.system.add(delivered, head, value, *self._critical)
        dt = now - self._last_observed if math.isfinite(self._last_observed) else 0.0
        self._last_observed = now
        if service is Service.SHORT:
            self.shortfall_s += dt
            self.short_since = now if math.isnan(self.short_since) else self.short_since
        elif service is Service.SATISFIED:
            self.short_since = math.nan
        counterfactual = self.counterfactual.power(now, delivered, holding=self.holding)
        if service is Service.SHORT:  # a saving made by starving a load is no saving: none is booked
            self._priced = False
            return {name: (math.nan, math.nan) for name in counterfactual}
        extrapolated = self.counterfactual.extrapolated_w
        if math.isfinite(extrapolated):  # the operator never seen at this flow: labelled, not booked
            self.extrapolated_j += extrapolated * dt
            self.extrapolated_s += dt
        priced = all(math.isfinite(cf) for cf, _ in counterfactual.values())
        if priced and self._priced:  # the energy account books a stretch between two priced polls
            self.priced_s += dt
        self._priced = priced
        return counterfactual

    def critical_point(self, now: float, external: Mapping[str, DeviceRuntime]) -> tuple[float, float]:
        """(critical valve opening 0..1, critical differential pressure in m or Pa); NaN where unknown.

        ``external``: every drive and sensor by name, where the critical point may be read.
        """
        name = self.config.service.critical_drive
        carrier: DeviceRuntime | None = next((d for d in self.drives if d.name == name), None) \
            or external.get(name)
        self._critical_carrier = carrier
        if not name or carrier is None or carrier.last is None or not carrier.is_fresh(now):
            return math.nan, math.nan
        values = carrier.last.values
        critical = values.get(Quantity.CRITICAL_PRESSURE, math.nan)
        return values.get(Quantity.VALVE_POSITION, math.nan), self.machines[0].head_of(critical)

    def needed_head(self) -> float:
        """The head the loads need now, from the critical point (m or Pa; NaN if it does not show it).

        A throttling critical valve shows the header's head beyond the curve, a differential
        pressure off its setpoint (``service.critical_setpoint_*``) how far the header is above or
        below it; a wide-open valve that the loads may need more: ask for a respond step more
        (trim and respond).
        """
        valve, critical = self._critical
        _, head = self.operating_point()
        excess = excess_head(valve, critical, self.system.critical_setpoint)
        if not (math.isfinite(excess) and math.isfinite(head)):
            return math.nan
        respond = RESPOND * self.config.system.design_head if valve >= WIDE_OPEN else 0.0
        return head - excess + respond

    def critical_fresh(self, now: float) -> bool:
        """No critical point is configured, or its device's data is fresh (the drives' one rule)."""
        if not self.config.service.critical_drive:
            return True
        return self._critical_carrier is not None and self._critical_carrier.is_fresh(now)

    def service_lost(self, now: float) -> bool:
        """The loads have been short longer than the agent is given to restore them."""
        return math.isfinite(self.short_since) and now - self.short_since > self.restore_s

    def operating_point(self) -> tuple[float, float]:
        """(delivered flow, header head) from the latest polls; NaN where unknown."""
        flows, heads = [], []
        for machine, drive in zip(self.machines, self.drives, strict=True):
            reading = drive.last
            if reading is None or not drive.up:
                return math.nan, math.nan
            flows.append(flow_of(machine, drive) if reading.running else 0.0)
            if reading.running:
                heads.append(machine.head_of(reading.values.get(Quantity.PRESSURE, math.nan)))
        head = float(np.mean(heads)) if heads else math.nan
        return float(sum(flows)), head

    # --- per cycle -----------------------------------------------------------------------------

    def refit(self) -> None:
        """Refit every machine and the system curve; one never seen running borrows its siblings' gain."""
        for machine, drive in zip(self.machines, self.drives, strict=True):
            machine.refit(drive.history.snapshot(), self.settings)
        gains = [g for g in (m.efficiency_drift() for m in self.machines if m.observed) if math.isfinite(g)]
        if gains:
            gain = float(np.median(gains))
            for machine in self.machines:
                if not machine.observed:
                    machine.assume_efficiency_gain(gain)
        self.system.refit()

    def recommend(self, now: float) -> Plan | None:
        """The plan for the demand a little ahead; None in monitor mode or without a usable demand."""
        if self.mode is ControlMode.MONITOR:
            return None
        estimate = self.demand.estimate(now, self.lookahead)
        design = self.config.system
        limit = 3.0 * (design.design_head if self.config.demand.quantity is Quantity.PRESSURE
                       else design.design_flow)
        if not (math.isfinite(estimate) and 0.0 <= estimate <= limit):
            self.target_flow = math.nan
            return None
        margin = 1.0 + max(self.config.demand.margin, self.level_margin(now)) + self.demand_u90
        if self.config.demand.quantity is Quantity.PRESSURE:
            delivered, _ = self.operating_point()
            target_head = estimate * margin
            flow = delivered * margin if math.isfinite(delivered) else math.nan
            static, k = target_head, 0.0
        else:
            # Margins on both: the flow, and the head the system needs for the demand (where the
            # operating point is flat, near a high static head, a head error is a large flow error,
            # measured curve or not); never more than one probe step below the head the loads were
            # last satisfied at.
            flow = estimate * margin
            static, k = self.system.static, self.system.k
            operator = self.counterfactual.operator_setpoint
            fallback = operator if math.isfinite(operator) else self.config.system.design_head
            target_head = max(self.system.target_head(flow, fallback),
                              (static + k * estimate * estimate) * margin)
            static = target_head - k * flow * flow  # the curve through (flow, target head) for the kernels
        self.target_flow = flow
        if self.config.control is GroupControl.PRESSURE_SETPOINT:
            setpoint = self.config.setpoint
            head = min(max(target_head, setpoint.minimum), setpoint.maximum)
            return SetpointPlan(head, self.config.setpoint_drive)
        if not math.isfinite(flow):
            return None
        if not self.parallel:
            machine = self.machines[0]
            ratio = float(min_speed_for_flow(machine.head, static, k, flow, machine.min_ratio,
                                             machine.max_ratio))
            ratio = ratio if math.isfinite(ratio) else machine.max_ratio
            return SpeedPlan({self.drives[0].name: DriveSpeed(ratio, True)})
        return self.stager.plan(now, static, k, flow)

    def level_margin(self, now: float) -> float:
        """``LEVEL_K`` standard errors of the demand's level now, as a share of it (0 where unknown).

        The plan's margin is at least this: sized by the samples' own scatter, where the configured
        margin does not cover it. generated-1002's 1.7 % flow noise left the level read at a 1 s
        line's end 0.75 % uncertain, and the loads went short (their tolerance 1 %, the margin
        0.5 %) where it read 1.5-2 % low; a plant measured to 0.5 % or better keeps the configured
        margin alone.
        """
        level = self.demand.level(now)
        share = LEVEL_K * level.error / level.value if level.value > 0.0 else math.nan
        return share if math.isfinite(share) else 0.0

    def publish(self, plan: Plan | None) -> None:
        """Keep the plan for the metrics (nothing in monitor mode)."""
        if plan is None:
            self.recommendations = {d.name: Recommendation() for d in self.drives}
            return
        delivered, _ = self.operating_point()
        savings = self.counterfactual.expected_saving(plan, delivered, self.system.head(delivered))
        self.recommendations = {
            d.name: plan.recommendation(d.name, m, savings.get(d.name, math.nan))
            for d, m in zip(self.drives, self.machines, strict=True)
        }
