import os
import socket

from agent.sdnotify import Notifier


def test_notify_delivers_to_a_real_unix_datagram_socket(tmp_path):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        notifier = Notifier(str(path))
        assert notifier.enabled
        assert notifier.notify("READY=1")
        assert server.recv(256) == b"READY=1"


def test_abstract_socket_names_are_translated():
    name = f"vfd-agent-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind("\0" + name)
        assert Notifier("@" + name).notify("WATCHDOG=1")
        assert server.recv(256) == b"WATCHDOG=1"


def test_without_systemd_nothing_is_sent(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert notifier.notify("READY=1") is False


def test_watchdog_interval_is_half_the_period_and_only_for_this_pid(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.setenv("WATCHDOG_PID", str(os.getpid()))
    assert Notifier("/nonexistent").watchdog_interval() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert Notifier("/nonexistent").watchdog_interval() is None


def test_unreachable_socket_is_not_fatal(tmp_path):
    assert Notifier(str(tmp_path / "missing.sock")).notify("READY=1") is False
