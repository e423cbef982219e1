"""The site configuration's types: every frozen config dataclass and enum of the agent, in SI units.

``site`` and ``groups`` parse YAML into these; nothing downstream sees raw YAML. Being
here, apart from the parsers, they import no parser: ``groups`` needs the drive and bus
types and ``site`` needs the group types without importing each other (the parsers used
to, which forced string stand-ins such as ``FAN_KIND = "fan"``). The register-map types
(``Profile``, ``Point``, ``Quantity``) stay with their parser in ``profile``: a profile is
a file format of its own, read by the simulator too. Long because it is every config type in one
place: splitting it would bring back the import cycles it removed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import tzinfo
from enum import Enum
from pathlib import Path

from agent.config.profile import Profile, Quantity
from agent.config.schedule import Schedule
from agent.motor_tables import DEFAULT_CLASS, EfficiencyClass
from agent.mv.baseline import TimeOfWeek


class GroupControl(Enum):
    """What the agent writes for a group."""

    SPEED = "speed"
    PRESSURE_SETPOINT = "pressure_setpoint"


class DemandSource(Enum):
    """Where a group's demand comes from."""

    POINT = "point"  # a flow or pressure point read over Modbus
    SENSORLESS = "sensorless"  # flow estimated from each running drive's power and speed
    # No flow meter: the head the loads need, from the critical point (service.critical_drive):
    # the header head less what the throttling critical valve shows beyond the curve.
    CRITICAL = "critical"


@dataclass(frozen=True)
class OptimizerConfig:
    """How often and how carefully the optimizer refits and recommends."""

    interval: float = 60.0  # s between cycles
    min_samples: int = 60  # valid samples a fit needs
    min_r_squared: float = 0.9  # a poorer fit is rejected: the last that passed (or the datasheet) stays
    min_flow_span: float = 0.15  # excitation: collapsed flow must span this share of its maximum


@dataclass(frozen=True)
class MvConfig:
    """Measurement and verification: the interval record and the baseline period (README, M&V)."""

    interval: float = 3600.0  # s per recorded interval (hourly on site; scenarios scale it down)
    baseline_intervals: int = 336  # the baseline period's length in intervals (two weeks hourly)
    time_of_week: TimeOfWeek = TimeOfWeek.DAYPART  # how the operator's schedule enters the model

    @property
    def baseline_s(self) -> float:
        """The baseline period's length [s]."""
        return self.interval * self.baseline_intervals


@dataclass(frozen=True)
class DemandConfig:
    """A group's demand signal."""

    source: DemandSource
    quantity: Quantity  # FLOW, PROCESS_FLOW or PRESSURE (POINT); FLOW (SENSORLESS); PRESSURE (CRITICAL)
    drive: str  # the drive whose point carries it ("" for another device)
    bus: str  # another device: its bus, unit and profile
    unit: int
    profile: Profile | None
    margin: float  # ratio added to the demanded flow (or pressure)
    lookahead: float = math.nan  # s the demand is estimated ahead; NaN: 1.5 optimizer intervals


@dataclass(frozen=True)
class SystemConfig:
    """The system curve's prior: static head at no flow, design head at design flow."""

    static: float  # m or Pa
    design_flow: float  # m³/s
    design_head: float  # m or Pa

    @property
    def k(self) -> float:
        """Friction coefficient of H = static + k·Q²."""
        return (self.design_head - self.static) / (self.design_flow * self.design_flow)


@dataclass(frozen=True)
class SetpointConfig:
    """Limits of a pressure setpoint the agent writes (m or Pa)."""

    minimum: float
    maximum: float
    slew_per_min: float  # largest change per minute
    deadband: float  # smaller changes are not written


@dataclass(frozen=True)
class StagingConfig:
    """Limits of parallel-pump staging."""

    min_run: float  # s a started pump runs at least
    min_interval: float  # s between two stage changes
    bep_window: tuple[float, float]  # flow window around each pump's best-efficiency flow
    min_gain: float  # a stage change must save at least this share of the power


@dataclass(frozen=True)
class ConventionalConfig:
    """The operator's strategy the optimizer's savings are counted against (the drives' own)."""

    pressure_setpoint: float  # m or Pa; NaN: read it from the setpoint drive before the first write
    stage_up_ratio: float  # cascade thresholds on the common speed
    stage_down_ratio: float
    stage_delay: float  # s


@dataclass(frozen=True)
class AbBlocksConfig:
    """Randomized A/B blocks: a share of time handed back to the operator's strategy, to measure savings.

    Blocks of ``block_s`` start at whole multiples of ``block_s`` since the Unix epoch (UTC),
    so a restarted agent finds the same schedule; ``agent.mv.abtest`` draws which block is
    whose from ``seed``. Power and flow are averaged over intervals of ``interval_s`` (a
    whole fraction of the block) for the regression.
    """

    operator_share: float  # share of blocks handed back to the operator's strategy
    block_s: float
    seed: int
    interval_s: float
    round_blocks: int = 8  # the share holds exactly in every round of this many blocks


@dataclass(frozen=True)
class ServiceConfig:
    """How the agent sees the loads served, and how long it may take to restore a short one."""

    restore_s: float = math.nan  # NaN: ten optimizer intervals
    # The drive or sensor whose profile maps the critical point (valve_position, critical_pressure
    # or both): a critical valve wide open is a load at its limit. "": none (the flows judge).
    critical_drive: str = ""
    # The differential pressure the critical branch needs (m or Pa; NaN: not configured): below it
    # beyond a deadband the loads are short; a remote DP without a valve reading needs it.
    critical_setpoint: float = math.nan


@dataclass(frozen=True)
class GroupConfig:
    """Drives serving one demand on one system curve."""

    name: str
    drives: tuple[str, ...]  # also the conventional cascade's lead-lag order
    control: GroupControl
    setpoint_drive: str  # pressure loops: the drive whose PI setpoint is written
    demand: DemandConfig
    system: SystemConfig
    setpoint: SetpointConfig
    staging: StagingConfig
    conventional: ConventionalConfig
    fan: bool  # heads in Pa (fans) or m (pumps)
    ab_blocks: AbBlocksConfig | None = None  # randomized hand-back blocks (control mode only)
    service: ServiceConfig = ServiceConfig()


class Transport(Enum):
    """How a bus reaches its drives."""

    TCP = "tcp"  # Modbus TCP (MBAP framing) to drives or a Modbus gateway
    RTU = "rtu"  # RTU frames on a serial port of the gateway itself
    RTU_OVER_TCP = "rtu_over_tcp"  # RTU frames through a transparent Ethernet↔RS-485 serial server

    @property
    def serial_line(self) -> bool:
        """True if the drives hang on an RS-485 line: its baud rate sets the frame times."""
        return self is not Transport.TCP

    @property
    def socket(self) -> bool:
        """True if the agent reaches the bus through a TCP socket (host and port)."""
        return self is not Transport.RTU


class LoadKind(Enum):
    """The machine a drive turns."""

    PUMP = "pump"
    FAN = "fan"


class BaselineMethod(Enum):
    """What the load would draw without the VFD (DESIGN.md, baselines)."""

    CONSTANT = "constant"
    CHARACTERISTIC = "characteristic"
    THROTTLE = "throttle"
    DAMPER = "damper"
    INLET_VANE = "inlet_vane"


TABLE_BASELINES = (BaselineMethod.CHARACTERISTIC, BaselineMethod.DAMPER, BaselineMethod.INLET_VANE)


class ControlMode(Enum):
    """How far the agent may act on a drive."""

    MONITOR = "monitor"
    ADVISE = "advise"
    CONTROL = "control"


@dataclass(frozen=True)
class Tariff:
    """Price of electrical energy: a time-of-use schedule in currency per joule."""

    currency: str
    price_per_joule: Schedule


@dataclass(frozen=True)
class SiteConfig:
    """Site-wide rates for CO2 and money, applied in the site's local time."""

    name: str
    emission_kg_per_joule: Schedule
    tariff: Tariff
    timezone: tzinfo


@dataclass(frozen=True)
class BusConfig:
    """One Modbus connection shared by the drives on it."""

    name: str
    transport: Transport
    host: str
    port: int
    poll_interval: float
    timeout: float
    retries: int
    reconnect_delay_max: float
    # The serial line (rtu: the port and its settings; rtu_over_tcp: the serial server's line side,
    # for the frame-time model in agent.modbus.rtu).
    device: str = ""
    baudrate: int = 19200
    parity: str = "E"
    stopbits: int = 1
    inter_frame_delay: float = 0.0  # s of silence kept between frames, if longer than t3.5
    # Largest gap of unused registers a block read may bridge; None: decided by agent.modbus.readplan.
    max_gap: int | None = None
    # s a drive takes to answer beyond the wire time, assumed until the poller has measured it
    # (the site config's default is DEFAULT_TURNAROUND_S; 0 here: a bus built in code assumes none).
    turnaround: float = 0.0

    @property
    def address(self) -> str:
        """Where the bus is, for messages: HOST:PORT or the serial device."""
        return f"{self.host}:{self.port}" if self.transport.socket else self.device


@dataclass(frozen=True)
class LoadConfig:
    """The rated duty point of the pump or fan."""

    kind: LoadKind
    rated_flow: float
    rated_head: float
    rated_pressure: float


BASELINE_TEST_REF = "baseline_test"
"""``baseline.measured_by`` naming the ledger's newest complete baseline test of the drive as the power."""


@dataclass(frozen=True)
class BaselineConfig:
    """How the counterfactual without a VFD is computed.

    ``table_x_pct`` is % speed (characteristic) or % flow (damper, inlet_vane);
    ``table_y_pct`` is % of rated power. Empty for constant and throttle.
    """

    method: BaselineMethod
    constant_power: float
    table_x_pct: tuple[float, ...]
    table_y_pct: tuple[float, ...]
    # How ``constant_power`` was measured (meter, date); empty: it is stipulated (nameplate, estimate).
    # BASELINE_TEST_REF: the newest complete ``vfd-agent baseline-test`` of the drive in the ledger.
    measured_by: str = ""
    # Declared accuracy (± share of reading) of what backs a measured baseline: the comparison power's
    # meter, or the drive's flow meter a flow table is read at. 2 % is a class-1 meter on class-1 CTs,
    # or a clamp-on ultrasonic flow meter; a magnetic flow meter does better (declare it).
    accuracy: float = 0.02


@dataclass(frozen=True)
class ControlConfig:
    """Control mode, speed limits (speed ratios) and the guard rails of writes (``agent.control.writer``)."""

    mode: ControlMode
    min_speed_ratio: float
    max_speed_ratio: float
    slew_per_min: float = 0.2  # largest speed setpoint change per minute (ratio)
    writes_per_hour: int = 120  # write budget
    restore: bool = True  # write the operator's values back on stop, stale data or a fault
    deadband: float = 0.005  # smaller speed changes are not written (ratio)


@dataclass(frozen=True)
class CurvePoints:
    """Points read off a pump's published curve at rated speed (SI: m³/s against m or W)."""

    flow: tuple[float, ...]
    value: tuple[float, ...]


@dataclass(frozen=True)
class SpotReading:
    """A one-off reading at one operating point: a clamp-on meter's flow, or a closed-valve test.

    ``power`` is the electrical power the drive showed then [W], ``speed_ratio`` its speed
    reading; ``flow`` [m³/s] is the clamp-on meter's (0 for a shut-off test), ``head`` [m]
    the pump's head if read (NaN if not). ``date`` says when, for the record.
    """

    flow: float
    speed_ratio: float
    power: float
    head: float
    date: str


@dataclass(frozen=True)
class SensorlessConfig:
    """What a pump drive's sensorless flow estimate may use beyond the rated point (``agent.sensorless``)."""

    motor_class: EfficiencyClass = DEFAULT_CLASS  # IEC 60034-30-1, without a nameplate efficiency
    poles: int = 0  # 0: from the rated speed
    power_accuracy: float = 0.02  # the drive's declared ± accuracy of its power reading (ratio)
    dp_across_pump: bool = False  # the drive's pressure point is the pump's own differential pressure
    speed_is_shaft: bool = False  # the speed point is the shaft's (slip compensated), not the frequency's
    catalogue_head: CurvePoints | None = None
    catalogue_power: CurvePoints | None = None  # shaft power
    clamp_on: SpotReading | None = None
    shutoff: SpotReading | None = None


@dataclass(frozen=True)
class DriveConfig:
    """One drive: where it is, its map and ratings, its baseline and control mode."""

    name: str
    bus: str
    unit: int
    profile: Profile
    rated_power: float
    rated_speed: float
    load: LoadConfig
    baseline: BaselineConfig
    control: ControlConfig
    motor_efficiency: float = math.nan  # nameplate full-load efficiency; NaN: the default table's
    sensorless: SensorlessConfig = SensorlessConfig()


@dataclass(frozen=True)
class SensorConfig:
    """A polled device that is no drive (a Modbus TCP I/O module, a BMS gateway): points only, no energy."""

    name: str
    bus: str
    unit: int
    profile: Profile


@dataclass(frozen=True)
class AgentConfig:
    """A whole site config, validated."""

    source: str
    site: SiteConfig
    metrics_host: str
    metrics_port: int
    storage_path: Path
    flush_interval: float
    max_gap: float
    buses: tuple[BusConfig, ...]
    drives: tuple[DriveConfig, ...]
    groups: tuple[GroupConfig, ...] = ()
    optimizer: OptimizerConfig = OptimizerConfig()
    mv: MvConfig = MvConfig()
    sensors: tuple[SensorConfig, ...] = ()  # devices polled for a group's critical point

    def devices_on(self, bus: str) -> tuple[DriveConfig | SensorConfig, ...]:
        """What one bus polls: its drives, then its sensors, each in config order."""
        devices: tuple[DriveConfig | SensorConfig, ...] = (*self.drives, *self.sensors)
        return tuple(d for d in devices if d.bus == bus)
