"""``vfd-agent run`` as a real process: systemd notifications, signals, start-up failures."""

import socket
import textwrap

from tests.support import finish, free_port, scrape, spawn, stop, value, wait_until


def config_file(tmp_path, metrics_port, modbus_port):
    path = tmp_path / "site.yaml"
    path.write_text(textwrap.dedent(f"""\
        site:
          name: notify test
          grid_emission_factor_kg_per_kwh: 0.5
          tariff: {{currency: EUR, price_per_kwh: 0.2}}
        metrics: {{listen: "127.0.0.1:{metrics_port}"}}
        storage: {{path: {tmp_path}}}
        polling: {{interval_s: 0.2, timeout_s: 0.05}}
        buses:
          - {{name: nobody-home, host: 127.0.0.1, port: {modbus_port}, reconnect_delay_max_s: 0.5}}
        drives:
          - name: ghost
            bus: nobody-home
            unit: 1
            profile: generic
            rated_power_kw: 4
            rated_speed_rpm: 1450
            load: {{kind: fan, rated_flow_m3h: 5000, rated_pressure_pa: 400}}
        """))
    return path


def test_ready_and_watchdog_reach_systemd_and_sigterm_exits_cleanly(tmp_path):
    """With no drive answering, the agent still starts, says READY, pets the watchdog, counts errors."""
    notify_path = tmp_path / "notify.sock"
    metrics_port = free_port()
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as notify:
        notify.bind(str(notify_path))
        notify.settimeout(30)
        agent = spawn("agent.cli", "run", "--config", str(config_file(tmp_path, metrics_port, free_port())),
                      env={"NOTIFY_SOCKET": str(notify_path), "WATCHDOG_USEC": "1000000"})
        try:
            messages = []
            while not any(m.startswith("WATCHDOG=1") for m in messages):
                messages.append(notify.recv(4096).decode())
            assert messages[0].startswith("READY=1")
            samples = wait_until(lambda: scrape(f"http://127.0.0.1:{metrics_port}/metrics"), 10)
            assert value(samples, "vfd_up", drive="ghost") == 0.0
            errors = wait_until(
                lambda: value(scrape(f"http://127.0.0.1:{metrics_port}/metrics"), "vfd_poll_errors_total",
                              drive="ghost", kind="connection"), 10, what="connection errors counted")
            assert errors >= 1
        finally:
            code, _, err = stop(agent)
            stopping = notify.recv(4096).decode() if code == 0 else ""
    assert code == 0, err
    assert "Traceback" not in err
    assert "drive ghost:" in err  # logged once at ERROR when it starts failing
    assert err.count("ERROR agent.drive: drive ghost") == 1
    assert stopping.startswith(("STOPPING=1", "WATCHDOG=1"))


def test_metrics_port_in_use_fails_at_start_with_exit_1(tmp_path):
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        path = config_file(tmp_path, port, free_port())
        code, _, err = finish(spawn("agent.cli", "run", "--config", str(path)))
    assert code == 1
    assert f"cannot serve metrics on 127.0.0.1:{port}" in err
    assert "Traceback" not in err


def test_bad_config_exits_2_without_traceback(tmp_path):
    path = config_file(tmp_path, free_port(), free_port())
    path.write_text(path.read_text().replace("rated_power_kw: 4", "rated_power_kw: -4"))
    code, _, err = finish(spawn("agent.cli", "run", "--config", str(path)))
    assert code == 2
    assert f"{path}:15: drives[0].rated_power_kw: must be > 0, got -4" in err
    assert "Traceback" not in err
