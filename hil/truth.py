"""Ground truth of a simulated plant as Prometheus metrics, read at scrape time.

HIL tests and the demo compare these with what the agent reports: the agent's
``vfd_energy_joules_total`` should track ``hil_true_energy_joules_total``. Two baselines
are kept apart: ``hil_true_baseline_*`` is what the machine the baseline describes would
draw by its own physics (a constant-speed pump on its curve, a throttled pump, a damper or
inlet vanes on a fixed-speed fan), never the agent's formula; ``hil_formula_baseline_*`` is
the baseline method's formula on the true state, what a correct agent books. The first
grades the claim, the second the bookkeeping. The
collector reads only immutable snapshots, so a scrape from the HTTP server's
thread never races the physics on the event loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from hil.model import DriveSnapshot
from hil.server import SimulatedPlant

_Reader = Callable[[DriveSnapshot], float]


class GroundTruthCollector(Collector):
    """Exports every drive's true energies, powers and operating point, labelled by drive."""

    def __init__(self, sim: SimulatedPlant) -> None:
        self.sim = sim

    def collect(self) -> Iterator[Metric]:
        """One family per quantity, one sample per drive."""
        snapshots = {name: self.sim.snapshot(name) for name in self.sim.drive_names}
        counters: tuple[tuple[str, str, _Reader], ...] = (
            ("hil_true_energy_joules", "True electrical energy drawn since the simulation started.",
             lambda s: s.energy),
            ("hil_true_baseline_energy_joules",
             "Energy the machine without a VFD would have drawn since the start, by its physics.",
             lambda s: s.baseline_energy),
            ("hil_formula_baseline_energy_joules",
             "The baseline method's formula on the true state, integrated since the start.",
             lambda s: s.formula_baseline_energy),
        )
        for name, doc, read in counters:
            counter = CounterMetricFamily(name, doc, labels=["drive"])
            for drive, snapshot in snapshots.items():
                counter.add_metric([drive], read(snapshot))
            yield counter
        gauges: tuple[tuple[str, str, _Reader], ...] = (
            ("hil_true_power_watts", "True electrical power.", lambda s: s.power),
            ("hil_true_baseline_power_watts", "Power the machine without a VFD would draw, by its physics.",
             lambda s: s.baseline_power),
            ("hil_formula_baseline_power_watts", "The baseline method's formula on the true state.",
             lambda s: s.formula_baseline_power),
            ("hil_true_shaft_power_watts", "True shaft power.", lambda s: s.shaft_power),
            ("hil_true_speed_ratio", "True speed over rated speed.", lambda s: s.speed_ratio),
            ("hil_speed_setpoint_ratio", "Speed setpoint in force, over rated speed.",
             lambda s: s.setpoint_ratio),
            ("hil_remote_setpoint_active", "1 while a fieldbus speed setpoint is in force.",
             lambda s: float(s.remote_active)),
            ("hil_demand_flow_cubic_meters_per_second", "Flow the process demands.",
             lambda s: s.demand_flow),
            ("hil_true_flow_cubic_meters_per_second", "True flow delivered.", lambda s: s.flow),
            ("hil_true_pressure_pascals", "True pressure rise across the pump or fan.", lambda s: s.pressure),
        )
        for name, doc, read in gauges:
            gauge = GaugeMetricFamily(name, doc, labels=["drive"])
            for drive, snapshot in snapshots.items():
                gauge.add_metric([drive], read(snapshot))
            yield gauge
        times = [s.t for s in snapshots.values()]
        yield GaugeMetricFamily("hil_physics_time_seconds",
                                "Time of the latest physics step since the simulation started.",
                                value=max(times, default=0.0))

