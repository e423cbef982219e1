"""Steady-state physics of a pump or fan on its system, and of its motor and drive.

Everything here is SI and stateless: flow Q [m³/s], speed ratio r = n/n_rated,
"head" y in the machine's own unit (pump: head [m]; fan: total pressure [Pa]),
power [W]. ``rho_g`` turns Q·y into hydraulic (or air) power: ρ·g for a pump,
1 for a fan whose y is already a pressure.

This module is the plant's truth, so it keeps its own operating-point algebra and its own
bisections (``flow_at_head``, ``header_operating_point``, ``common_ratio_for``) on purpose,
although ``kernels.operating`` has the same ones for the agent: the simulator is an
independent oracle, and an error in a kernel must show as a disagreement with the plant,
not be copied into it.

Long because the plant's physics stay in one place on purpose: pump, fan, system, motor and
drive losses are the independent truth the agent is graded against.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
from numpy.typing import NDArray

FloatArray = NDArray[np.float64]
FloatLike = FloatArray  # the loss formulas take arrays (one formula for the plant and the oracle)

WATER_DENSITY = 998.0  # kg/m³ at about 20 °C
GRAVITY = 9.80665  # m/s²
RHO_G_WATER = WATER_DENSITY * GRAVITY  # Pa per metre of water column (the plant's own, see above)

# Dimensionless curve shapes of the default ("quadratic") family: (shut-off head ratio,
# linear head term, shut-off power ratio). Radial pumps: shut-off head 1.25 × rated,
# shut-off power about 45 % of rated power; fans: shut-off pressure 1.3 × rated, shut-off
# power about 35 %. The power curve is then fixed by two conditions: it passes through the
# rated point, and the efficiency Q·y/P peaks there (best-efficiency point at rated flow).
# These are the same figures as agent.optimizer.datasheet's curves, kept here on purpose
# (the simulator does not import the agent's model): on this family the agent's prior is
# exact; hil.catalogue has the families it is not.
PUMP_SHAPE = (1.25, -0.10, 0.45)
FAN_SHAPE = (1.30, -0.10, 0.35)

# Motor and inverter losses: the simulator's own model, by size, speed and torque (the
# agent keeps its own tables; nothing here is imported from it). The motor's full-load
# losses L_r = P_r (1/η_r − 1) split into copper (stator and rotor, ∝ current²), iron
# (∝ frequency^1.5) and friction-windage (∝ speed³, the shaft fan). The current is
# I/I_r = √(m² + (1 − m²)·τ²) with τ the torque over rated torque and m the magnetizing
# (no-load) current share, which falls with size: about 0.43 at 1.5 kW, 0.33 at 15 kW,
# 0.22 at 200 kW (catalogue no-load currents of 4-pole IE3 motors). Friction and windage
# grow with size (5-15 % of the losses), iron takes 22 %. So a small motor's efficiency
# falls faster at part load than a large one's, and at low speed the iron and
# magnetizing losses no longer shrink with the load.
IRON_LOSS_SHARE = 0.22
# Inverter losses at rated current: 3 % of the rated input, split into fixed (control,
# fans: 15 %), conduction ∝ I (50 %) and switching-resistive ∝ I² (35 %), in the spirit
# of the IEC 61800-9-2 reference drive: at low speed the current does not fall with the
# power, so neither do the losses.
DRIVE_RATED_LOSS = 0.03
DRIVE_LOSS_SHARES = (0.15, 0.50, 0.35)
# The drive's current limit: the motor's rated current (continuous duty). Beyond it the
# drive lowers its output frequency until the current is back at the limit.
CURRENT_LIMIT = 1.0
MIN_EFFICIENCY_SPEED = 0.05  # below this the torque of a running motor is taken at this speed


def magnetizing_share(rated_power: float) -> float:
    """No-load current over rated current of a cage motor of ``rated_power`` [W]."""
    return min(max(0.45 - 0.1 * math.log10(rated_power / 1e3), 0.2), 0.5)


def friction_share(rated_power: float) -> float:
    """Friction and windage share of the full-load losses of a motor of ``rated_power`` [W]."""
    return min(max(0.06 + 0.03 * math.log10(rated_power / 1e3), 0.05), 0.15)


def motor_current(load: FloatLike, speed: FloatLike, rated_power: float) -> FloatLike:
    """Motor current over rated current at a load (shaft / rated power) and speed ratio."""
    m = magnetizing_share(rated_power)
    torque = load / np.maximum(speed, MIN_EFFICIENCY_SPEED)
    return np.sqrt(m * m + (1.0 - m * m) * torque * torque)


def motor_losses(load: FloatLike, speed: FloatLike, rated_power: float,
                 full_load_efficiency: float) -> FloatLike:
    """Motor losses [W] at a load (shaft / rated power) and speed ratio."""
    rated_loss = rated_power * (1.0 / full_load_efficiency - 1.0)
    fw = friction_share(rated_power)
    copper = 1.0 - IRON_LOSS_SHARE - fw
    current = motor_current(load, speed, rated_power)
    speed = np.maximum(speed, 0.0)
    return rated_loss * (copper * current * current + IRON_LOSS_SHARE * speed**1.5 + fw * speed**3)


def drive_losses(current: FloatLike, rated_power: float, full_load_efficiency: float) -> FloatLike:
    """Inverter losses [W] at a motor current over rated current."""
    rated_input = rated_power / full_load_efficiency
    fixed, linear, square = DRIVE_LOSS_SHARES
    return DRIVE_RATED_LOSS * rated_input * (fixed + linear * current + square * current * current)


def electrical_power_array(shaft: FloatArray, speed: FloatArray, rated_power: float,
                           full_load_motor_efficiency: float, inverter: bool = True) -> FloatArray:
    """Power drawn from the mains [W]: shaft power plus motor losses plus (with a VFD) inverter losses.

    Zero where the shaft power is not positive (a stopped machine).
    """
    load = shaft / rated_power
    losses = motor_losses(load, speed, rated_power, full_load_motor_efficiency)
    if inverter:
        losses = losses + drive_losses(motor_current(load, speed, rated_power), rated_power,
                                       full_load_motor_efficiency)
    result: FloatArray = np.where(shaft > 0.0, shaft + losses, 0.0)
    return result


class Curves(Protocol):
    """What the plant's solvers need of a machine's curves (MachineCurves, hil.catalogue.TableCurves)."""

    @property
    def rho_g(self) -> float:
        """Factor turning flow × head into hydraulic power."""
        ...  # pragma: no cover - protocol

    def head(self, flow: float, ratio: float) -> float:
        """Head (pump, m) or pressure (fan, Pa) at a flow and speed ratio."""
        ...  # pragma: no cover - protocol

    def shaft_power(self, flow: float, ratio: float) -> float:
        """Shaft power [W]."""
        ...  # pragma: no cover - protocol

    def efficiency(self, flow: float, ratio: float) -> float:
        """Hydraulic efficiency."""
        ...  # pragma: no cover - protocol

    def max_head(self, ratio: float) -> float:
        """The highest head the machine makes at this speed."""
        ...  # pragma: no cover - protocol

    def flow_at_head(self, head: float, ratio: float) -> float:
        """Flow delivered against a head; 0 above the curve."""
        ...  # pragma: no cover - protocol

    def ratio_at(self, head: float, flow: float) -> float:
        """Speed ratio delivering a flow against a head."""
        ...  # pragma: no cover - protocol


@dataclass(frozen=True)
class MachineCurves:
    """Affinity-law curves of one pump or fan.

    y(Q, r) = a0·r² + a1·r·Q + a2·Q²;  P(Q, r) = b0·r³ + b1·r²·Q + b2·r·Q² + b3·Q³.
    """

    a0: float
    a1: float
    a2: float
    b0: float
    b1: float
    b2: float
    b3: float
    rho_g: float

    def head(self, flow: float, ratio: float) -> float:
        """Head (pump, m) or pressure (fan, Pa) at a flow and speed ratio."""
        return self.a0 * ratio * ratio + self.a1 * ratio * flow + self.a2 * flow * flow

    def shaft_power(self, flow: float, ratio: float) -> float:
        """Shaft power [W]; never negative."""
        power = (
            self.b0 * ratio**3 + self.b1 * ratio**2 * flow + self.b2 * ratio * flow**2 + self.b3 * flow**3
        )
        return max(power, 0.0)

    def efficiency(self, flow: float, ratio: float) -> float:
        """Hydraulic efficiency ρ·g·Q·H / P_shaft (0 at zero flow or power)."""
        power = self.shaft_power(flow, ratio)
        return self.rho_g * flow * self.head(flow, ratio) / power if power > 0.0 else 0.0

    def max_head(self, ratio: float) -> float:
        """Shut-off head a0·r² (what the check valve holds against)."""
        return self.a0 * ratio * ratio

    def flow_at_head(self, head: float, ratio: float) -> float:
        """Flow at ``ratio`` against ``head``; 0 once its shut-off head is reached.

        The positive root of a2·Q² + a1·r·Q + (a0·r² − H) = 0 on the falling curve (a2 < 0);
        below the shut-off head the check valve holds the flow at zero.
        """
        c = self.a0 * ratio * ratio - head
        if ratio <= 0.0 or c <= 0.0 or self.a2 >= 0.0:
            return 0.0
        b = self.a1 * ratio
        return (b + math.sqrt(b * b - 4.0 * self.a2 * c)) / (-2.0 * self.a2)

    def ratio_at(self, head: float, flow: float) -> float:
        """Speed ratio at which the machine delivers ``flow`` against ``head`` (larger root)."""
        b = self.a1 * flow
        c = self.a2 * flow * flow - head
        disc = b * b - 4.0 * self.a0 * c
        return max((-b + math.sqrt(max(disc, 0.0))) / (2.0 * self.a0), 0.0)


@dataclass(frozen=True)
class SystemCurve:
    """What the circuit needs: y_sys(Q) = static + k·Q²."""

    static: float
    k: float

    def head(self, flow: float) -> float:
        """Head or pressure the system needs to pass a flow."""
        return self.static + self.k * flow * flow


def curves_from_rated(
    rated_flow: float,
    rated_head: float,
    shaft_power: float,
    rho_g: float,
    shape: tuple[float, float, float] = PUMP_SHAPE,
) -> MachineCurves:
    """Curves through the rated point (Q_r, y_r, P_r) with the best efficiency at Q_r.

    The same construction as the agent's datasheet curves (written again here), so that
    an unworn machine of the default family is exactly what the agent assumes before it
    has fitted anything. h(q) = s + h1·q + h2·q² with h(1) = 1; p(q) = p0 + p1·q + p2·q²
    with p(1) = 1 and dη/dq = 0 at q = 1, i.e. p'(1) = 1 + h'(1).
    """
    shutoff, h1, p0 = shape
    h2 = 1.0 - shutoff - h1
    p2 = 1.0 + h1 + 2.0 * h2 - (1.0 - p0)
    p1 = 1.0 - p0 - p2
    q, y, p = rated_flow, rated_head, shaft_power
    return MachineCurves(a0=shutoff * y, a1=h1 * y / q, a2=h2 * y / (q * q), b0=p0 * p, b1=p1 * p / q,
                         b2=p2 * p / (q * q), b3=0.0, rho_g=rho_g)


def system_from_rated(rated_flow: float, rated_head: float, static_ratio: float) -> SystemCurve:
    """System curve through the rated point with the given static share of the rated head."""
    static = static_ratio * rated_head
    return SystemCurve(static=static, k=(rated_head - static) / (rated_flow * rated_flow))


def operating_flow(curves: Curves, system: SystemCurve, ratio: float) -> float:
    """Flow where the machine at ``ratio`` meets the system; 0 if it cannot lift the static head.

    Quadratic curves: the positive root of (a2 − k)·Q² + a1·r·Q + (a0·r² − H_st) = 0
    (DESIGN.md); other curves: bisection on the falling branch, where the surplus of the
    machine's head over the system's falls with flow.
    """
    if not isinstance(curves, MachineCurves):
        high = curves.flow_at_head(system.static, ratio)
        if high <= 0.0:
            return 0.0
        low = 0.0
        for _ in range(_BISECTIONS):
            mid = 0.5 * (low + high)
            if curves.flow_at_head(system.head(mid), ratio) > mid:
                low = mid
            else:
                high = mid
        return 0.5 * (low + high)
    a = curves.a2 - system.k
    b = curves.a1 * ratio
    c = curves.a0 * ratio * ratio - system.static
    if a == 0.0:
        return max(-c / b, 0.0) if b != 0.0 else 0.0
    disc = b * b - 4.0 * a * c
    if disc < 0.0:
        return 0.0
    root = math.sqrt(disc)
    flow = max((-b + root) / (2.0 * a), (-b - root) / (2.0 * a))
    return max(flow, 0.0)


def ratio_for_flow(curves: Curves, system: SystemCurve, flow: float) -> float:
    """Speed ratio at which the machine delivers ``flow`` into the system (inverse of the above).

    Quadratic curves: a0·r² + a1·Q·r + (a2·Q² − y_sys(Q)) = 0 for the positive r.
    """
    return curves.ratio_at(system.head(flow), flow)


def electrical_power(shaft_power: float, rated_power: float, full_load_motor_efficiency: float,
                     speed_ratio: float = 1.0, inverter: bool = True) -> float:
    """Power drawn from the mains [W] by a machine at ``speed_ratio`` (``electrical_power_array``)."""
    if shaft_power <= 0.0:
        return 0.0
    return float(electrical_power_array(np.array([shaft_power]), np.array([speed_ratio]), rated_power,
                                        full_load_motor_efficiency, inverter)[0])


def motor_efficiency(load: float, full_load_efficiency: float, rated_power: float,
                     speed_ratio: float = 1.0) -> float:
    """Motor efficiency at a load fraction (shaft / rated power) and speed ratio."""
    if load <= 0.0:
        return 0.0
    losses = float(motor_losses(np.array([load]), np.array([speed_ratio]), rated_power,
                                full_load_efficiency)[0])
    return load / (load + losses / rated_power)


def torque_limit(rated_power: float, current_limit: float = CURRENT_LIMIT) -> float:
    """Torque over rated torque at which the motor draws ``current_limit`` × its rated current."""
    m = magnetizing_share(rated_power)
    return math.sqrt(max(current_limit**2 - m * m, 0.0) / (1.0 - m * m))


_BISECTIONS = 60


def slip_speed(frequency_ratio: float, shaft_power: float, rated_power: float, rated_slip: float) -> float:
    """Shaft speed ratio of an induction motor fed at ``frequency_ratio`` of its rated frequency.

    The slip speed is proportional to torque (constant flux): with n_sync / n_rated =
    1 / (1 − s_r), r = f / (1 − s_r) − s_r / (1 − s_r) · (P / P_rated) / r; the larger root.
    An overload beyond the breakdown this model cannot show gives the no-load speed's half.
    """
    if rated_slip <= 0.0 or frequency_ratio <= 0.0:
        return frequency_ratio
    a = frequency_ratio / (1.0 - rated_slip)
    c = rated_slip / (1.0 - rated_slip) * max(shaft_power, 0.0) / rated_power
    return 0.5 * (a + math.sqrt(max(a * a - 4.0 * c, 0.0)))


def frequency_for_speed(shaft_ratio: float, shaft_power: float, rated_power: float,
                        rated_slip: float) -> float:
    """Frequency ratio at which the motor turns at ``shaft_ratio`` delivering ``shaft_power`` (inverse)."""
    if rated_slip <= 0.0 or shaft_ratio <= 0.0:
        return shaft_ratio
    torque = max(shaft_power, 0.0) / rated_power / shaft_ratio
    return (1.0 - rated_slip) * shaft_ratio + rated_slip * torque


def ramp(ratio: float, setpoint: float, dt: float, time_constant: float) -> float:
    """Exact first-order response over ``dt`` toward a setpoint held constant over the step."""
    return setpoint + (ratio - setpoint) * math.exp(-dt / time_constant)


def worn(curves: MachineCurves, head_factor: float, efficiency_factor: float) -> MachineCurves:
    """A worn machine: head × ``head_factor`` at every flow and speed, efficiency × ``efficiency_factor``.

    Wear (opened clearances, an eroded impeller) costs head and efficiency at once; the
    shaft power curve is scaled so that ρ·g·Q·H / P drops by exactly ``efficiency_factor``.
    """
    power = head_factor / efficiency_factor
    return MachineCurves(
        a0=curves.a0 * head_factor, a1=curves.a1 * head_factor, a2=curves.a2 * head_factor,
        b0=curves.b0 * power, b1=curves.b1 * power, b2=curves.b2 * power, b3=curves.b3 * power,
        rho_g=curves.rho_g,
    )


def flow_at_head(curves: Curves, head: float, ratio: float) -> float:
    """Flow the machine at ``ratio`` delivers against ``head``; 0 once its shut-off head is reached."""
    return curves.flow_at_head(head, ratio)


def ratio_at(curves: Curves, head: float, flow: float) -> float:
    """Speed ratio at which the machine delivers ``flow`` against ``head``."""
    return curves.ratio_at(head, flow)


def header_flows(machines: Sequence[tuple[Curves, float]], head: float) -> list[float]:
    """Flow of each machine (curves, speed ratio) on a common header at ``head``."""
    return [flow_at_head(c, head, r) for c, r in machines]


def header_head_for_flow(machines: Sequence[tuple[Curves, float]], flow: float) -> float:
    """Header head at which the machines together deliver ``flow`` (valves take the rest)."""
    high = max((c.max_head(r) for c, r in machines), default=0.0)
    low = 0.0
    if sum(header_flows(machines, low)) <= flow:
        return low
    for _ in range(_BISECTIONS):
        mid = 0.5 * (low + high)
        if sum(header_flows(machines, mid)) > flow:
            low = mid
        else:
            high = mid
    return 0.5 * (low + high)


def header_operating_point(
    machines: Sequence[tuple[Curves, float]], system: SystemCurve, demand: float
) -> tuple[float, float]:
    """(head, delivered flow) of parallel machines on one header feeding valve-controlled loads.

    The loads' control valves open no further than the system curve allows: with the
    valves wide open the machines meet the system curve at the open flow. If that is at
    least the demand, the valves throttle the surplus head away and exactly the demand
    flows; otherwise the demand is not met and the open flow is delivered.
    """
    shutoff = max((c.max_head(r) for c, r in machines), default=0.0)
    if shutoff <= system.static or system.k <= 0.0:
        open_flow, open_head = 0.0, shutoff
    else:
        low, high = system.static, shutoff  # surplus flow falls with head, system flow rises
        for _ in range(_BISECTIONS):
            mid = 0.5 * (low + high)
            if sum(header_flows(machines, mid)) > math.sqrt((mid - system.static) / system.k):
                low = mid
            else:
                high = mid
        open_head = 0.5 * (low + high)
        open_flow = sum(header_flows(machines, open_head))
    if open_flow >= demand:
        return header_head_for_flow(machines, demand), demand
    return open_head, open_flow


def common_ratio_for(
    machines: Sequence[Curves], others: Sequence[tuple[Curves, float]], head: float,
    flow: float, max_ratio: float,
) -> float:
    """Common speed at which ``machines`` (with ``others`` at their own speeds) pass ``flow`` at ``head``.

    This is what a pressure PI converges to: the speed that holds the header at ``head``
    while the loads draw ``flow``. ``max_ratio`` if even that is not enough.
    """
    fixed = sum(header_flows(others, head))

    def total(ratio: float) -> float:
        return fixed + sum(flow_at_head(c, head, ratio) for c in machines)

    if not machines or total(max_ratio) <= flow:
        return max_ratio
    low, high = 0.0, max_ratio
    for _ in range(_BISECTIONS):
        mid = 0.5 * (low + high)
        if total(mid) >= flow:
            high = mid
        else:
            low = mid
    return high
