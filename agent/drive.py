"""One drive's live state: decode a poll, check it, account its energy, record its history."""

from __future__ import annotations

import logging
import math
from collections import Counter
from dataclasses import dataclass, replace

import numpy as np

from agent.config import BaselineMethod, DriveConfig, SiteConfig
from agent.config.model import SensorConfig
from agent.config.profile import NegativePower, PowerMeasuredAt, Quantity
from agent.energy.account import EnergyAccount, EnergySample
from agent.energy.baseline import BaselineModel
from agent.errors import DriveError, ImplausibleReadingError, StuckReadingError
from agent.history import Channel, RingBuffer
from agent.modbus.readplan import Block, plan_reads
from agent.motor_tables import drive_losses_behind_output, motor_full_load
from agent.sensorless import FlowEstimate, FlowEstimator
from agent.units import MAX_POWER_OVER_RATED, RPM_TO_RAD_S, Dimension, is_running

log = logging.getLogger(__name__)

MAX_SPEED_RATIO = 2.0  # a speed beyond this is a wrong scale or word order, not physics
# The one freshness rule (control, metrics and tests all ask ``DriveRuntime.is_fresh``): a
# reading is fresh for two poll intervals of its bus. One missed poll is tolerated (a single
# timeout must not hand a group back), two are not: the agent then acts on data that no longer
# describes the drive. ``timeout × (retries + 1)`` is below the interval (checked at load), so a
# poll that answers at all lands well inside the window.
FRESH_INTERVALS = 2.0
# Power above -this × rated is a stopped drive's measurement noise, taken as zero.
NEGATIVE_POWER_NOISE = 0.01


def stale_after(poll_interval: float) -> float:
    """Age [s] beyond which a drive's data is stale, for a bus polled every ``poll_interval`` s."""
    return FRESH_INTERVALS * poll_interval


COUNTER_RESET = "counter_reset"  # error kind: the energy counter went backwards (drive restarted?)


@dataclass(frozen=True)
class Reading:
    """One accepted poll of a drive, in SI units."""

    t: float  # monotonic s
    wall: float  # Unix s
    values: dict[Quantity, float]
    speed_ratio: float
    power: float  # W
    baseline_power: float  # W
    running: bool


class DeviceRuntime:
    """A polled device's live state: its reads, its latest accepted poll, freshness and faults.

    A sensor (``SensorConfig``: a remote I/O module or a BMS gateway read for a group's critical
    point) is one as it is; ``DriveRuntime`` adds a drive's energy, history and checks. The
    poller polls both alike, and both are fresh by the one rule (``is_fresh``).
    """

    config: DriveConfig | SensorConfig
    kind = "sensor"  # what the log calls it

    def __init__(self, config: DriveConfig | SensorConfig) -> None:
        self.config = config
        self.blocks: tuple[Block, ...] = plan_reads(config.profile.points.values())
        self.up: bool | None = None  # None until the first poll
        self.fault = ""  # what ended the device's last good run (the first failed poll's error)
        self.errors: Counter[str] = Counter()
        self.last: Reading | None = None
        self.polls = 0
        # Freshness (see is_fresh); the poller sets stale_after from its bus's interval.
        self.stale_after = stale_after(1.0)  # s

    @property
    def name(self) -> str:
        """The device's configured name."""
        return self.config.name

    def is_fresh(self, now: float) -> bool:
        """The one test before acting on this device's data (see ``FRESH_INTERVALS``).

        True if the last poll succeeded, passed every plausibility check, and is at most
        ``stale_after`` s old at ``now``: the caller's clock, the same injected monotonic clock
        the poller stamps readings with.
        """
        return bool(self.up) and self.last is not None and now - self.last.t <= self.stale_after

    def accept(self, t: float, wall: float, values: dict[Quantity, float]) -> Reading:
        """Take a sensor's successful poll; ImplausibleReadingError if a value must not be used."""
        self.polls += 1
        bad = next((q for q, v in values.items() if not math.isfinite(v)), None)
        if bad is not None:
            error = ImplausibleReadingError(f"{bad.value} is {values[bad]} (a 'not available' value?)")
            self.fail(error)
            raise error
        self.last = Reading(t, wall, values, math.nan, math.nan, math.nan, False)
        self._answering()
        return self.last

    def _answering(self) -> None:
        if self.up is False:
            log.info("%s %s: answering again", self.kind, self.name)
        self.up = True

    def fail(self, error: DriveError) -> None:
        """Record a failed poll: count it, mark the device down; logged once per outage."""
        self.errors[error.kind] += 1
        if self.up is not False:
            log.error("%s %s: %s (%s)", self.kind, self.name, error, error.kind)
            self.fault = f"{error} ({error.kind})"
        else:
            log.debug("%s %s still failing: %s", self.kind, self.name, error)
        self.up = False


class DriveRuntime(DeviceRuntime):
    """Everything the agent knows about one drive right now."""

    config: DriveConfig
    kind = "drive"

    def __init__(self, config: DriveConfig, site: SiteConfig, max_gap: float, history: int = 3600) -> None:
        super().__init__(config)
        self.config = config
        self.history = RingBuffer(history)
        self.account = EnergyAccount.for_drive(config, site, max_gap)
        self.baseline = BaselineModel(config)
        # A pump's sensorless flow (agent.sensorless): see ``flow_estimate``.
        self.flow_estimator = FlowEstimator.for_drive(config)
        # The motor's full-load efficiency where the drive reads its output, whose own losses the
        # energy account nets out of its savings (``modelled_losses``); NaN for a mains reading.
        rpm, motor = config.rated_speed / RPM_TO_RAD_S, config.sensorless
        self._full_load = math.nan if config.profile.power_measured_at is PowerMeasuredAt.DRIVE_INPUT \
            else motor_full_load(config.motor_efficiency, config.rated_power, rpm, motor.poles,
                                 motor.motor_class)
        self._flow_estimate: FlowEstimate | None = None
        self._estimated: Reading | None = None  # the reading ``_flow_estimate`` is of
        # A member of an optimizer group (the agent sets it from the config's groups) books each
        # poll's energy once the optimizer has priced that same poll's counterfactual (``book``)
        # and records the history its fits read; any other drive books at once and records none.
        self.in_group = False
        self._unbooked: EnergySample | None = None
        self.stuck_polls = 10  # identical polls of a running drive before its data counts as frozen ...
        self.stuck_min_s = 10.0  # ... and for at least this long
        self.counter_resets = 0
        self._same_count = 0
        self._same_since = math.nan
        self._previous: dict[Quantity, float] | None = None

    def speed_ratio(self, values: dict[Quantity, float]) -> float:
        """Speed as a fraction of rated speed, NaN if the profile has no speed point."""
        speed = values.get(Quantity.SPEED)
        point = self.config.profile.point(Quantity.SPEED)
        if speed is None or point is None:
            return math.nan
        if point.dimension is Dimension.RATIO:
            return speed
        return speed / self.config.rated_speed

    @property
    def flow_estimate(self) -> FlowEstimate | None:
        """The sensorless flow of the latest accepted poll; None for a fan, before a poll, or stopped.

        Estimated when first read after a poll and kept for that poll: most polls are never
        read (the endpoint is scraped every 15..60 s, and only a group without a flow point
        asks), and at ~0.27 ms a pump it cost 27 % of a core at 1,000 drives. A drive whose
        estimator learns from every poll (with DP) or whose throttle baseline reads it is
        estimated in ``accept``, once a poll (``_estimates_every_poll``).
        """
        return self._estimate_flow()

    def _estimate_flow(self) -> FlowEstimate | None:
        last = self.last
        if last is not self._estimated:
            self._estimated = last
            self._flow_estimate = None if self.flow_estimator is None or last is None or not last.running \
                else self.flow_estimator.estimate_values(last.values, last.power, last.speed_ratio)
        return self._flow_estimate

    def _estimates_every_poll(self, flow: float) -> bool:
        """Whether each poll's flow estimate is made as it is accepted, not when first read.

        With DP every poll teaches the estimator the head loss, and a throttle baseline
        without a flow reading is read at the estimate.
        """
        if self.flow_estimator is None:
            return False
        throttle = self.baseline.method is BaselineMethod.THROTTLE
        return self.flow_estimator.learns or (throttle and math.isnan(flow))

    def status(self, name: str) -> bool | None:
        """A named bit (profile ``status_bits``: ready, running, remote, fault) of the last status word."""
        bit = self.config.profile.status_bits.get(name)
        word = self.last.values.get(Quantity.STATUS_WORD) if self.last is not None else None
        if bit is None or word is None or not math.isfinite(word):
            return None
        return bool(int(word) >> bit & 1)

    def check(self, values: dict[Quantity, float]) -> tuple[float, float]:
        """Speed ratio and power of a poll, or ImplausibleReadingError naming the value."""
        for quantity, value in values.items():
            if not math.isfinite(value):
                raise ImplausibleReadingError(f"{quantity.value} is {value} (a 'not available' value?)")
        if values.get(Quantity.ENERGY, 0.0) < 0.0:
            raise ImplausibleReadingError("the energy counter is negative (wrong type or word order?)")
        power = values.get(Quantity.POWER, math.nan)
        if not math.isfinite(power) or abs(power) > MAX_POWER_OVER_RATED * self.config.rated_power:
            raise ImplausibleReadingError(
                f"power {power:g} W is outside ±{MAX_POWER_OVER_RATED:g} × rated "
                f"{self.config.rated_power:g} W (wrong scale or word order?)"
            )
        if power < 0.0:
            rated = self.config.rated_power
            if power >= -NEGATIVE_POWER_NOISE * rated:
                power = 0.0
            elif self.config.profile.negative_power is NegativePower.IMPLAUSIBLE:
                raise ImplausibleReadingError(
                    f"power {power:g} W is negative (sign or type error?); the profile's negative_power "
                    "is implausible (regenerated books it apart)"
                )
        ratio = self.speed_ratio(values)
        if math.isfinite(ratio) and not -0.1 <= ratio <= MAX_SPEED_RATIO:
            raise ImplausibleReadingError(f"speed ratio {ratio:.3g} is outside [-0.1, {MAX_SPEED_RATIO:g}]")
        if math.isnan(ratio) and Quantity.SPEED in values:
            raise ImplausibleReadingError("speed is not a number")
        return ratio, power

    def accept(self, t: float, wall: float, values: dict[Quantity, float]) -> Reading:
        """Take a successful poll; ImplausibleReadingError if it must not be used."""
        self.polls += 1
        try:
            ratio, power = self.check(values)
        except ImplausibleReadingError as exc:
            self.fail(exc)
            raise
        running = is_running(ratio, power, self.config.rated_power)
        self._check_stuck(t, values, running)
        self._check_counter(values)
        flow = values.get(Quantity.FLOW, math.nan)
        estimated = self._estimates_every_poll(flow)
        estimate = None
        if estimated and running and self.flow_estimator is not None:
            estimate = self.flow_estimator.estimate_values(values, power, ratio)
        # A throttle baseline without a flow point is read at this poll's sensorless flow.
        baseline_flow = estimate.flow if math.isnan(flow) and estimate is not None else flow
        baseline = self.baseline.power(ratio, baseline_flow, running)
        self.book()  # a previous poll nobody priced (no optimizer hook ran): without a counterfactual
        sample = EnergySample(t, wall, power, baseline, values.get(Quantity.ENERGY, math.nan),
                              drive_losses=self.modelled_losses(power, ratio, running))
        if self.in_group:
            self._unbooked = sample
        else:
            self.account.add(sample)
        if self.in_group:
            row = np.full(len(Channel), math.nan)
            row[Channel.SPEED_RATIO] = ratio
            row[Channel.POWER] = power
            row[Channel.FLOW] = flow
            row[Channel.PRESSURE] = values.get(Quantity.PRESSURE, math.nan)
            self.history.append(row)
        reading = Reading(t, wall, values, ratio, power, baseline, running)
        self.last = reading
        if estimated:
            self._estimated, self._flow_estimate = reading, estimate
        self._answering()
        return reading

    def modelled_losses(self, power: float, speed_ratio: float, running: bool) -> float:
        """The drive's own losses [W] beyond its power reading, netted out of its no-VFD savings.

        Modelled for an output reading while running (``agent.motor_tables``); none for a mains
        reading (they are in it) or a stopped drive (its standby draw is not modelled).
        """
        if not running or math.isnan(self._full_load):
            return 0.0
        return drive_losses_behind_output(power, speed_ratio, self.config.rated_power, self._full_load)

    def _check_stuck(self, t: float, values: dict[Quantity, float], running: bool) -> None:
        """A running drive's values never repeat exactly for long (noise); frozen data must not be used."""
        if running and values == self._previous:
            self._same_count += 1
            if math.isnan(self._same_since):
                self._same_since = t
        else:
            self._same_count, self._same_since = 0, math.nan
        self._previous = values
        if self._same_count >= self.stuck_polls and t - self._same_since >= self.stuck_min_s:
            error = StuckReadingError(f"every value unchanged for {self._same_count + 1} polls while running")
            self.fail(error)
            raise error

    def _check_counter(self, values: dict[Quantity, float]) -> None:
        """Count an energy counter that went backwards (not a wrap): the drive restarted or was reset."""
        point = self.config.profile.point(Quantity.ENERGY)
        before = self.last.values.get(Quantity.ENERGY) if self.last is not None else None
        now = values.get(Quantity.ENERGY)
        if point is None or before is None or now is None or now >= before - point.resolution:
            return
        wrapped = point.saturates_at is None and before - now > 0.5 * point.counter_modulus
        if not wrapped:
            self.counter_resets += 1
            self.errors[COUNTER_RESET] += 1
            log.warning("drive %s: energy counter went back from %g to %g J (drive restarted or reset?)",
                        self.name, before, now)

    def book(self, counterfactual_power: float = math.nan, staged_power: float = math.nan) -> None:
        """Book the latest accepted poll's energy, if it waits for it.

        ``counterfactual_power``: what the operator's strategy would draw at that poll [W], the
        optimizer's savings basis (NaN: none); ``staged_power``: the operator's setpoint with the
        pumps the agent runs (``agent.optimizer.counterfactual``), which splits it.
        """
        sample, self._unbooked = self._unbooked, None
        if sample is not None:
            self.account.add(replace(sample, counterfactual_power=counterfactual_power,
                                     staged_power=staged_power))

    def fail(self, error: DriveError) -> None:
        """Record a failed poll: count it, mark the drive down, stop integrating across it."""
        self.book()
        self.account.break_chain()
        super().fail(error)
