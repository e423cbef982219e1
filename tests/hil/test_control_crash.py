"""Control survives a crash of the agent: real ``vfd-agent run`` processes, SIGKILLed, against ``vfd-sim``.

The operator runs the booster at a fixed 90.53 % speed setpoint over the fieldbus. The
agent, in control mode, takes the setpoint over and slews it down; it is killed with
SIGKILL at seeded random moments (some right around its first write of a run, some in
its start-up, some while it holds the drive) and started again each time; at last it is
stopped with SIGTERM. Whatever the kills did, the drive must end at the operator's
90.53 %, read from the simulator over Modbus, and the ledger must owe nothing.
"""

from __future__ import annotations

import random
import signal
import sqlite3
import time

from pymodbus.client import ModbusTcpClient

from hil.plantfile import load_plant
from hil.scenario import PLANTS, PROCESS_PROFILE, SCENARIOS, Timing, site_config
from tests.support import spawn, stop, wait_until

SPEED_SETPOINT = 101  # generic-process profile: uint16, 0.01 %
OPERATOR = 9053  # 90.53 %
KILLS = 12
DAY_S = 300.0  # the plant's day; poll 0.1 s, optimizer 0.25 s, slew 20 %/s (hil.scenario.Timing)


def plant_file(tmp_path):
    """booster-static with a 300 s day and a fast ramp."""
    text = (PLANTS / "booster-static.yaml").read_text(encoding="utf-8")
    text = text.replace("day_s: 600", f"day_s: {DAY_S:g}").replace("ramp_time_s: 2", "ramp_time_s: 0.1")
    text = text.replace("profile: generic-process", f"profile: {PROCESS_PROFILE}")
    path = tmp_path / "booster.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def setpoint(client: ModbusTcpClient) -> int:
    reply = client.read_holding_registers(SPEED_SETPOINT, count=1, device_id=1)
    assert not reply.isError(), reply
    return int(reply.registers[0])


def test_sigkill_at_random_moments_never_loses_the_operators_setpoint(tmp_path):
    rng = random.Random(20261125)
    plant = plant_file(tmp_path)
    sim = spawn("hil.cli", "--plant", str(plant), "--listen", "127.0.0.1:0", "--metrics", "127.0.0.1:0")
    client = None
    try:
        line = sim.stdout.readline()
        assert line.startswith("vfd-sim: modbus"), line + sim.stderr.read()
        port = int(line.split()[2].rsplit(":", 1)[1])
        client = ModbusTcpClient("127.0.0.1", port=port, timeout=2.0, retries=1)
        assert client.connect()
        assert not client.write_register(SPEED_SETPOINT, OPERATOR, device_id=1).isError()  # the operator's
        assert setpoint(client) == OPERATOR

        scenario = SCENARIOS["booster-static"]
        spec = load_plant(plant)
        state = tmp_path / "state"
        config = tmp_path / "site.yaml"
        timing = Timing.for_duration(DAY_S)
        text = site_config(scenario, spec, spec.circuits[0], port, timing, state)
        config.write_text(text, encoding="utf-8")

        moments = []
        for kill in range(KILLS):
            before = setpoint(client)
            agent = spawn("agent.cli", "run", "--config", str(config))
            if kill % 3 == 0:  # right around the first write of this run: as soon as the drive shows it
                moment = "first write"
                wait_until(lambda b=before: setpoint(client) != b, 30, interval=0.01,
                           what="the agent's first write of this run")
                time.sleep(rng.uniform(0.0, 0.05))
            elif kill % 3 == 1:  # anywhere in start-up or the first writes
                moment = "start"
                time.sleep(rng.uniform(0.2, 2.5))
            else:  # while the agent holds the drive, some writes on
                moment = "holding"
                wait_until(lambda b=before: setpoint(client) != b, 30, interval=0.05, what="a write")
                time.sleep(rng.uniform(0.2, 1.5))
            agent.send_signal(signal.SIGKILL)
            code, _, err = stop(agent)
            assert code == -signal.SIGKILL, err
            assert "Traceback" not in err
            moments.append((moment, before, setpoint(client)))
        assert any(after != OPERATOR for _, _, after in moments), moments  # the kills caught it holding

        before = setpoint(client)
        agent = spawn("agent.cli", "run", "--config", str(config))
        wait_until(lambda: setpoint(client) != before, 30, interval=0.05, what="the agent in control again")
        code, _, err = stop(agent, timeout=40)
        assert code == 0, err
        assert "Traceback" not in err
        assert setpoint(client) == OPERATOR, (moments, err[-3000:])  # over Modbus, from the simulator
        with sqlite3.connect(state / "ledger.sqlite") as db:
            assert db.execute("SELECT * FROM handback").fetchall() == []
    finally:
        if client is not None:
            client.close()
        stop(sim)
