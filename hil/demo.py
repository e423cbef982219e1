"""``vfd-agent demo``: the simulated demo plant and the agent polling it, in one process.

The plant (``configs/plants/demo.yaml``: two pumps and a fan) is served over a
real loopback Modbus TCP socket; the agent polls it exactly as it would poll
real drives. The agent's metrics and the simulator's ground truth share one
endpoint, so the agent's figures can be checked against the truth side by side.
Two optimizer groups in advise mode (``DEMO_GROUPS``) fit the condenser pump's and
the supply fan's curves and publish recommendations; nothing is ever written. For
them ``demo_plant`` serves those two drives with their process values (profile
``generic-process``: generic's map plus flow, pressure, demanded flow and a pressure
setpoint) and puts the fan on a VAV duct whose PI holds 800 Pa; ``demo.yaml`` itself
stays the plain three-drive plant that configs/example.yaml and the tests poll.

It lives in ``hil`` because it is the test rig's: the product never imports its test
rig. ``vfd-agent demo`` replaces its own process with ``python -m hil.demo`` (same
arguments, same PID), which parses them with the agent's own command line and runs
``run_demo`` here.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import signal
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

from agent.config import (
    AgentConfig,
    BusConfig,
    ControlConfig,
    ControlMode,
    DriveConfig,
    SiteConfig,
    Tariff,
    Transport,
)
from agent.config.groups import parse_groups, parse_optimizer
from agent.config.profile import BUILTIN_CONFIGS, load_profile
from agent.config.schedule import Schedule
from agent.config.yamlsource import Issues, parse_yaml
from agent.energy.ledger import LEDGER_FILE
from agent.service import Agent
from agent.units import KWH_TO_J
from agent.web import WebConfigSource
from hil.plantfile import CircuitSpec, LocalControlSpec, PlantSpec, load_plant
from hil.server import SimulatedPlant
from hil.truth import GroundTruthCollector

DEMO_PLANT = BUILTIN_CONFIGS / "plants" / "demo.yaml"
PROCESS_PROFILE = BUILTIN_CONFIGS / "plants" / "profiles" / "generic-process.yaml"
SUMMARY_EVERY_S = 5.0
CHINA_GRID_2022_KG_PER_KWH = 0.5703
DEMO_PRICE_PER_KWH = 0.18
# The optimizer's part of the demo's site config, as an operator would write it (README's
# ``optimizer`` and ``groups``), read by the agent's own parser. Advise mode: recommendations
# only. A cycle every 5 s on 20 samples (20 polls) shows fits and recommendations within the
# first half minute; a site would keep the defaults (60 s, 60 samples).
DEMO_GROUPS = """\
optimizer: {interval_s: 5, min_samples: 20}
groups:
  # The condenser pump's lowest speed that passes the flow the chiller asks for (its drive's
  # demanded flow) against the tower's lift: 40 % of the design head is static.
  - name: condenser-water
    drives: [cw-pump-1]
    control: speed
    demand: {drive: cw-pump-1, quantity: process_flow}
    system: {static_head_m: 8.8, design_flow_m3h: 90, design_head_m: 22}
  # Static pressure reset: the duct pressure the VAV boxes' airflow needs, instead of the
  # fixed 800 Pa the fan's PI holds (the boxes need 200 Pa at no flow).
  - name: supply-air
    drives: [supply-fan]
    control: pressure_setpoint
    demand: {drive: supply-fan, quantity: process_flow}
    system: {static_pressure_pa: 200, design_flow_m3h: 30000, design_pressure_pa: 800}
"""
GROUPED = frozenset({"cw-pump-1", "supply-fan"})


def demo_plant() -> PlantSpec:
    """``demo.yaml`` with the grouped drives' process values, and the fan on a VAV duct.

    The supply duct: the VAV boxes need a quarter of the design pressure at no flow, and
    the fan's PI holds the design 800 Pa whatever the airflow, as most air-handling units
    do before a static pressure reset (the supply-air group's recommendation).
    """
    plant = load_plant(DEMO_PLANT)
    issues = Issues()
    process = load_profile(PROCESS_PROFILE, issues)
    issues.raise_if_any()
    assert process is not None  # load_profile returns None only with an issue
    drives = tuple(dataclasses.replace(d, profile=process) if d.name in GROUPED else d for d in plant.drives)
    fan = plant.drive("supply-fan")
    duct = CircuitSpec(
        name="supply-duct", drives=(fan.name,), kind=fan.load.kind, design_flow=fan.load.rated_flow,
        design_head=fan.rated_head, static_ratio=0.25, min_demand_ratio=fan.min_demand_ratio,
        max_demand_ratio=fan.max_demand_ratio, seed=fan.seed, unmet_tolerance=0.01,
        control=LocalControlSpec(fan.rated_head, 0.98, 0.7, 5.0),
    )
    return dataclasses.replace(plant, drives=drives, circuits=(duct,))


def demo_config(
    drives: list[DriveConfig], modbus_port: int, listen: tuple[str, int], state_dir: Path
) -> AgentConfig:
    """The site config the demo would otherwise read from YAML (its groups are read from YAML)."""
    bus = BusConfig(
        name="demo", transport=Transport.TCP, host="127.0.0.1", port=modbus_port, poll_interval=1.0,
        timeout=0.3, retries=0, reconnect_delay_max=5.0,
    )
    site = SiteConfig(
        name="vfd-agent demo",
        emission_kg_per_joule=Schedule(CHINA_GRID_2022_KG_PER_KWH / KWH_TO_J),
        tariff=Tariff("EUR", Schedule(DEMO_PRICE_PER_KWH / KWH_TO_J)),
        timezone=datetime.now().astimezone().tzinfo or timezone.utc,
    )
    issues = Issues()
    sec = parse_yaml(DEMO_GROUPS, f"{__name__}.DEMO_GROUPS", issues)
    issues.raise_if_any()
    assert sec is not None  # parse_yaml returns None only with an issue
    optimizer = parse_optimizer(sec.section("optimizer"))
    groups = parse_groups(list(sec.sections("groups")), drives, [bus], DEMO_PLANT.parent, {}, issues)
    issues.raise_if_any()  # a mistake in DEMO_GROUPS: a bug of the demo, reported as a config error
    return AgentConfig(
        source=str(DEMO_PLANT), site=site, metrics_host=listen[0], metrics_port=listen[1],
        storage_path=state_dir, flush_interval=1.0, max_gap=5.0, buses=(bus,), drives=tuple(drives),
        groups=groups, optimizer=optimizer,
    )


def run_demo(listen: tuple[str, int], duration: float | None, state_dir: Path,
             web: WebConfigSource | None = None) -> int:
    """Run the demo until Ctrl-C or ``duration``; returns the exit code.

    The ledger stays in ``state_dir`` afterwards (a second demo continues it), so
    ``vfd-agent report --db STATE_DIR/ledger.sqlite`` can be tried right after.
    """
    try:
        state_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        print(f"vfd-agent demo: cannot use --state-dir {state_dir}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    return asyncio.run(_demo(listen, duration, state_dir, web))


async def _demo(listen: tuple[str, int], duration: float | None, state_dir: Path,
                web: WebConfigSource | None) -> int:
    started = time.monotonic()
    plant = demo_plant()
    sim = SimulatedPlant(plant)
    await sim.start("127.0.0.1", 0)
    drives = [
        DriveConfig(
            name=d.name, bus="demo", unit=d.unit, profile=d.profile, rated_power=d.rated_power,
            rated_speed=d.rated_speed, load=d.load, baseline=d.baseline,
            control=ControlConfig(ControlMode.ADVISE if d.name in GROUPED else ControlMode.MONITOR,
                                  d.min_speed_ratio, d.max_speed_ratio),
            motor_efficiency=d.motor_efficiency,
        )
        for d in plant.drives
    ]
    agent = Agent(demo_config(drives, sim.port, listen, state_dir),
                  extra_collectors=[GroundTruthCollector(sim)], web_config=web)
    try:
        port = agent.start_metrics()
    except OSError as exc:
        print(f"vfd-agent demo: cannot serve metrics on {listen[0]}:{listen[1]}: {exc}", file=sys.stderr)
        await sim.stop()
        return 1
    host = listen[0] if ":" not in listen[0] else f"[{listen[0]}]"
    scheme = "https" if web is not None and web.current()[1] is not None else "http"
    ledger = (state_dir / LEDGER_FILE).resolve()
    print(f"vfd-agent demo: {len(drives)} simulated drives on modbus tcp://127.0.0.1:{sim.port} "
          f"(units {', '.join(str(d.unit) for d in drives)})")
    groups = ", ".join(f"{g.name} ({', '.join(g.drives)}: {g.control.value})" for g in agent.config.groups)
    print(f"vfd-agent demo: optimizer groups {groups}, in advise mode: recommendations only, never a write")
    print(f"vfd-agent demo: metrics (agent and ground truth) on {scheme}://{host}:{port}/metrics")
    print(f"vfd-agent demo: try  curl -s {scheme}://{host}:{port}/metrics | grep -E '^(vfd|hil)_.*energy'")
    print(f"vfd-agent demo: ledger {ledger}; afterwards try  vfd-agent report --db {ledger}")
    print("vfd-agent demo: Ctrl-C to stop" + (f", or it stops after {duration:g} s" if duration else ""),
          flush=True)

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if duration is not None:
        loop.call_later(duration, stop.set)
    summary = asyncio.create_task(_print_summaries(agent, started, stop))
    try:
        await agent.run(stop, serve_metrics=False)
    finally:
        summary.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await summary
        agent.stop_metrics()
        await sim.stop()
    _print_summary(agent, started, final=True)
    return 0


async def _print_summaries(agent: Agent, started: float, stop: asyncio.Event) -> None:
    while not stop.is_set():
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=SUMMARY_EVERY_S)
        if not stop.is_set():
            _print_summary(agent, started)


def _print_summary(agent: Agent, started: float, final: bool = False) -> None:
    """One line: drives up, live power, energy drawn and net savings."""
    up = sum(1 for d in agent.drives if d.up)
    power = sum(d.last.power for d in agent.drives if d.up and d.last is not None)
    totals = [d.account.totals for d in agent.drives]
    energy = sum(t.energy_j for t in totals) / KWH_TO_J
    saved = sum(t.saved_vfd_j - t.penalty_vfd_j for t in totals) / KWH_TO_J
    # Against a stipulated baseline: shown apart, never added, no CO2 or money (agent.energy.account).
    stipulated = sum(t.saved_stipulated_j - t.penalty_stipulated_j for t in totals) / KWH_TO_J
    co2 = sum(t.co2_avoided_g - t.co2_penalty_g for t in totals)
    money = sum(t.cost_saved - t.cost_penalty for t in totals)
    label = "final" if final else f"{time.monotonic() - started:5.0f} s"
    print(f"[{label}] {up}/{len(agent.drives)} up, {power / 1e3:6.2f} kW now | "
          f"energy {energy:.4f} kWh | saved {saved:.4f} kWh, {co2:.1f} g CO2, "
          f"{agent.config.site.tariff.currency} {money:.4f} | stipulated {stipulated:.4f} kWh", flush=True)


if __name__ == "__main__":
    from agent.cli import main

    sys.exit(main(sys.argv[1:], demo=run_demo))
