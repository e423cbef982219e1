"""``vfd-agent demo``: the simulated demo plant and the agent polling it, in one process.

The plant (``configs/plants/demo.yaml``: two pumps and a fan) is served over a
real loopback Modbus TCP socket; the agent polls it exactly as it would poll
real drives. The agent's metrics and the simulator's ground truth share one
endpoint, so the agent's figures can be checked against the truth side by side.

It lives in ``hil`` because it is the test rig's: the product never imports its test
rig. ``vfd-agent demo`` replaces its own process with ``python -m hil.demo`` (same
arguments, same PID), which parses them with the agent's own command line and runs
``run_demo`` here.
"""

from __future__ import annotations

import asyncio
import contextlib
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
from agent.config.profile import BUILTIN_CONFIGS
from agent.config.schedule import Schedule
from agent.energy.ledger import LEDGER_FILE
from agent.service import Agent
from agent.units import KWH_TO_J
from agent.web import WebConfigSource
from hil.plantfile import load_plant
from hil.server import SimulatedPlant
from hil.truth import GroundTruthCollector

DEMO_PLANT = BUILTIN_CONFIGS / "plants" / "demo.yaml"
SUMMARY_EVERY_S = 5.0
CHINA_GRID_2022_KG_PER_KWH = 0.5703
DEMO_PRICE_PER_KWH = 0.18


def demo_config(
    drives: list[DriveConfig], modbus_port: int, listen: tuple[str, int], state_dir: Path
) -> AgentConfig:
    """The site config the demo would otherwise read from YAML."""
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
    return AgentConfig(
        source=str(DEMO_PLANT), site=site, metrics_host=listen[0], metrics_port=listen[1],
        storage_path=state_dir, flush_interval=1.0, max_gap=5.0, buses=(bus,), drives=tuple(drives),
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
    plant = load_plant(DEMO_PLANT)
    sim = SimulatedPlant(plant)
    await sim.start("127.0.0.1", 0)
    drives = [
        DriveConfig(
            name=d.name, bus="demo", unit=d.unit, profile=d.profile, rated_power=d.rated_power,
            rated_speed=d.rated_speed, load=d.load, baseline=d.baseline,
            control=ControlConfig(ControlMode.MONITOR, d.min_speed_ratio, d.max_speed_ratio),
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
    co2 = sum(t.co2_avoided_g - t.co2_penalty_g for t in totals)
    money = sum(t.cost_saved - t.cost_penalty for t in totals)
    label = "final" if final else f"{time.monotonic() - started:5.0f} s"
    print(f"[{label}] {up}/{len(agent.drives)} up, {power / 1e3:6.2f} kW now | "
          f"energy {energy:.4f} kWh | saved {saved:.4f} kWh, {co2:.1f} g CO2, "
          f"{agent.config.site.tariff.currency} {money:.4f}", flush=True)


if __name__ == "__main__":
    from agent.cli import main

    sys.exit(main(sys.argv[1:], demo=run_demo))
