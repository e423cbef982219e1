"""The agent against the simulated plant over real loopback sockets."""

import asyncio
import dataclasses
import textwrap
import time

from prometheus_client import CollectorRegistry

from agent.config import load_config
from agent.service import Agent
from hil import GroundTruthCollector, SimulatedPlant, load_plant
from tests.support import REPO, free_port, scrape, spawn, stop, value, wait_until

DEMO_PLANT = REPO / "configs" / "plants" / "demo.yaml"
RUN_S = 21.0
ENERGY_TOLERANCE = 0.02


def site_config(tmp_path, buses, drives, metrics_port=0):
    text = textwrap.dedent(f"""\
        site:
          name: HIL
          grid_emission_factor_kg_per_kwh: 0.5703
          tariff: {{currency: EUR, price_per_kwh: 0.2}}
        metrics: {{listen: "127.0.0.1:{metrics_port}"}}
        storage: {{path: {tmp_path}}}
        polling: {{interval_s: 0.5, timeout_s: 0.2, retries: 0, max_gap_s: 3}}
        buses:
        """)
    for name, port in buses:
        text += f"  - {{name: {name}, host: 127.0.0.1, port: {port}, reconnect_delay_max_s: 1}}\n"
    text += "drives:\n"
    for name, bus, unit, extra in drives:
        text += textwrap.indent(textwrap.dedent(f"""\
            - name: {name}
              bus: {bus}
              unit: {unit}
              profile: generic
            """), "  ") + textwrap.indent(textwrap.dedent(extra), "    ")
    path = tmp_path / "site.yaml"
    path.write_text(text)
    return path


DRIVE_DATA = {
    "chw-pump-1": """\
        rated_power_kw: 15
        rated_speed_rpm: 1470
        load: {kind: pump, rated_flow_m3h: 120, rated_head_m: 32}
        baseline: {method: characteristic}
        """,
    "cw-pump-1": """\
        rated_power_kw: 7.5
        rated_speed_rpm: 2900
        load: {kind: pump, rated_flow_m3h: 90, rated_head_m: 22}
        baseline: {method: characteristic}
        """,
    "supply-fan": """\
        rated_power_kw: 11
        rated_speed_rpm: 1460
        load: {kind: fan, rated_flow_m3h: 30000, rated_pressure_pa: 800}
        baseline: {method: constant, power_kw: 11}
        """,
}


def test_agent_energy_agrees_with_ground_truth(tmp_path):
    """After 20 s of polling, every drive's energy and baseline energy are within 2 % of the truth."""

    async def scenario():
        sim = SimulatedPlant(load_plant(DEMO_PLANT))
        await sim.start("127.0.0.1", 0)
        config = load_config(site_config(
            tmp_path, [("plant", sim.port)],
            [(name, "plant", sim.units[name], DRIVE_DATA[name]) for name in sim.drive_names],
        ))
        registry = CollectorRegistry()
        agent = Agent(config, registry=registry, extra_collectors=[GroundTruthCollector(sim)])
        # The truth at the moment of each accepted poll: the agent integrates from its first poll.
        truth = {name: [] for name in sim.drive_names}
        for drive in agent.drives:
            def recording_accept(t, wall, values, _drive=drive, _accept=drive.accept):
                sim.update()  # the truth as of ``t``, taken before the agent does any work
                truth[_drive.name].append(
                    (sim.true_energy_j(_drive.name), sim.true_baseline_energy_j(_drive.name))
                )
                return _accept(t, wall, values)
            drive.accept = recording_accept
        stop_event = asyncio.Event()
        asyncio.get_running_loop().call_later(RUN_S, stop_event.set)
        await agent.run(stop_event, serve_metrics=False)
        await sim.stop()
        return agent, registry, truth

    agent, registry, truth = asyncio.run(scenario())
    report = []
    for drive in agent.drives:
        name = drive.name
        assert drive.errors == {}, drive.errors
        totals = drive.account.totals
        assert totals.gaps == 0
        assert totals.covered_s > RUN_S - 2
        true_energy = truth[name][-1][0] - truth[name][0][0]
        true_baseline = truth[name][-1][1] - truth[name][0][1]
        exported = registry.get_sample_value("vfd_energy_joules_total", {"drive": name})
        assert exported == totals.energy_j
        true_total = registry.get_sample_value("hil_true_energy_joules_total", {"drive": name})
        assert true_total >= truth[name][-1][0]
        energy_error = totals.energy_j / true_energy - 1
        baseline_error = totals.baseline_energy_j / true_baseline - 1
        saved_error = (totals.saved_vfd_j - totals.penalty_vfd_j) / (true_baseline - true_energy) - 1
        report.append(f"{name}: energy {energy_error:+.3%}, baseline {baseline_error:+.3%}, "
                      f"saved {saved_error:+.3%}")
        assert abs(energy_error) < ENERGY_TOLERANCE, report
        assert abs(baseline_error) < ENERGY_TOLERANCE, report
        assert abs(saved_error) < ENERGY_TOLERANCE, report
        assert registry.get_sample_value("vfd_up", {"drive": name}) == 1.0
    print("\n" + "\n".join(report))


def test_a_stopped_drive_goes_down_alone_and_comes_back(tmp_path):
    """The agent runs as a real process; one simulated drive's server stops and restarts."""
    plant = load_plant(DEMO_PLANT)
    metrics_port = free_port()
    url = f"http://127.0.0.1:{metrics_port}/metrics"

    async def scenario():
        healthy = SimulatedPlant(dataclasses.replace(plant, drives=plant.drives[:1]))
        broken = SimulatedPlant(dataclasses.replace(plant, drives=plant.drives[2:]))
        await healthy.start("127.0.0.1", 0)
        await broken.start("127.0.0.1", 0)
        broken_port = broken.port
        path = site_config(
            tmp_path, [("a", healthy.port), ("b", broken_port)],
            [("chw-pump-1", "a", 1, DRIVE_DATA["chw-pump-1"]),
             ("supply-fan", "b", 3, DRIVE_DATA["supply-fan"])],
            metrics_port,
        )
        agent = spawn("agent.cli", "run", "--config", str(path))
        try:
            def both_up():
                samples = scrape(url)
                return all(value(samples, "vfd_up", drive=d) == 1.0 for d in ("chw-pump-1", "supply-fan"))
            await asyncio.to_thread(wait_until, both_up, 30, what="both drives up")

            await broken.stop()

            def fan_down():
                samples = scrape(url)
                return samples if value(samples, "vfd_up", drive="supply-fan") == 0.0 else None
            down = await asyncio.to_thread(wait_until, fan_down, 10, what="supply-fan down")
            assert value(down, "vfd_up", drive="chw-pump-1") == 1.0
            assert value(down, "vfd_power_watts", drive="supply-fan") is None  # no stale value
            errors = sum(v for (n, labels), v in down.items()
                         if n == "vfd_poll_errors_total" and ("drive", "supply-fan") in labels)
            assert errors >= 1
            last_poll = value(down, "vfd_last_poll_timestamp_seconds", drive="chw-pump-1")
            fan_energy = value(down, "vfd_energy_joules_total", drive="supply-fan")

            await asyncio.sleep(2.0)  # the healthy drive keeps being polled meanwhile
            later = await asyncio.to_thread(scrape, url)
            assert value(later, "vfd_last_poll_timestamp_seconds", drive="chw-pump-1") > last_poll
            assert value(later, "vfd_up", drive="chw-pump-1") == 1.0
            # Nothing is integrated across the outage.
            assert value(later, "vfd_energy_joules_total", drive="supply-fan") == fan_energy

            await broken.start("127.0.0.1", broken_port)
            started = time.monotonic()

            def fan_up():
                return value(scrape(url), "vfd_up", drive="supply-fan") == 1.0
            await asyncio.to_thread(wait_until, fan_up, 10, what="supply-fan back up")
            recovered_s = time.monotonic() - started
        finally:
            code, _, err = stop(agent)
            await healthy.stop()
            await broken.stop()
        assert code == 0, err
        assert "Traceback" not in err
        assert "drive supply-fan:" in err and "answering again" in err
        return recovered_s

    recovered_s = asyncio.run(scenario())
    assert recovered_s < 10.0
