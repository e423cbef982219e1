"""``vfd-sim``: run a simulated plant standalone, with its ground truth on a metrics endpoint.

It serves Modbus TCP (``--listen``); with ``--rtu DEVICE`` (a serial port, a
pty, or an ``rtu:///DEVICE?baudrate=...`` URL) Modbus RTU; with ``--rtu-over-tcp
HOST:PORT`` RTU frames over TCP, as a transparent Ethernet↔RS-485 serial server
(Moxa NPort, USR, Lantronix) in front of the line would; any of them together.
``--baudrate``/``--parity``/``--stopbits`` set the serial line of both RTU forms.
Prints one status line on stdout once serving, with the real bound ports
(so a caller that asked for port 0 can find them), and stops cleanly on SIGINT or
SIGTERM. A bad plant file prints every located problem on stderr and exits 2.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import signal
import sys
from collections.abc import Sequence
from pathlib import Path

from prometheus_client import CollectorRegistry, start_http_server

from agent.config import BusConfig, Transport, parse_listen
from agent.errors import BusUrlError, ConfigError
from agent.modbus.bus_url import parse_bus_url
from agent.modbus.rtu import STANDARD_BAUDRATES
from hil.plantfile import PlantSpec, load_plant
from hil.server import SimulatedPlant
from hil.truth import GroundTruthCollector

log = logging.getLogger("hil.cli")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
DEFAULT_LISTEN = "127.0.0.1:5020"
DEFAULT_METRICS = "127.0.0.1:9848"


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="vfd-sim", description="Serve a simulated plant of VFDs over Modbus TCP, with ground truth.",
    )
    parser.add_argument("--plant", required=True, type=Path, help="plant file (YAML)")
    parser.add_argument("--listen", default=None,
                        help=f"Modbus TCP HOST:PORT (default {DEFAULT_LISTEN} unless --rtu or "
                             "--rtu-over-tcp is given; port 0 picks a free one)")
    parser.add_argument("--rtu", default=None, metavar="DEVICE",
                        help="serve Modbus RTU on a serial device or pty (or rtu:///DEVICE?baudrate=19200&"
                             "parity=E&stopbits=1)")
    parser.add_argument("--rtu-over-tcp", default=None, metavar="HOST:PORT",
                        help="serve the drives as one RTU line behind a serial server: RTU frames with CRC "
                             "over TCP (port 0 picks a free one)")
    parser.add_argument("--baudrate", type=int, choices=STANDARD_BAUDRATES, default=None, metavar="BAUD",
                        help="RTU baud rate (default 19200)")
    parser.add_argument("--parity", choices=["N", "E", "O"], default=None, help="RTU parity (default E)")
    parser.add_argument("--stopbits", type=int, choices=[1, 2], default=None,
                        help="RTU stop bits (default 1)")
    parser.add_argument("--metrics", default=DEFAULT_METRICS,
                        help=f"ground-truth metrics HOST:PORT (default {DEFAULT_METRICS})")
    parser.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    return parser


async def _serve(
    plant: PlantSpec, listen: tuple[str, int] | None, metrics: tuple[str, int], rtu: BusConfig | None,
    serial_server: BusConfig | None,
) -> int:
    sim = SimulatedPlant(plant)
    registry = CollectorRegistry(auto_describe=True)
    registry.register(GroundTruthCollector(sim))
    try:
        httpd, thread = start_http_server(metrics[1], addr=metrics[0], registry=registry)
    except OSError as exc:
        print(f"vfd-sim: cannot serve metrics on {metrics[0]}:{metrics[1]}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        try:
            if listen is not None:
                await sim.start(listen[0], listen[1])
            if rtu is not None:
                await sim.start_rtu(rtu.device, baudrate=rtu.baudrate, parity=rtu.parity,
                                    stopbits=rtu.stopbits)
            if serial_server is not None:
                await sim.start_rtu_over_tcp(serial_server.host, serial_server.port,
                                             baudrate=serial_server.baudrate, parity=serial_server.parity,
                                             stopbits=serial_server.stopbits)
        except OSError as exc:
            print(f"vfd-sim: cannot serve: {exc}", file=sys.stderr)
            await sim.stop()
            return EXIT_FAILURE
        metrics_port = int(httpd.server_port)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        units = ", ".join(f"{d.name}@{d.unit} ({d.profile.name})" for d in plant.drives)
        where = " ".join(
            ([f"{sim.host}:{sim.port}"] if listen is not None else [])
            + ([f"rtu:{rtu.device}@{_line(rtu)}"] if rtu is not None else [])
            + ([f"rtu+tcp:{_host_port(sim.serial_server_address)}@{_line(serial_server)}"]
               if serial_server is not None else []))
        log.info("serving plant %s: modbus %s units %s; metrics http://%s:%d/metrics",
                 plant.name, where, units, metrics[0], metrics_port)
        print(f"vfd-sim: modbus {where} metrics {metrics[0]}:{metrics_port}", flush=True)
        try:
            await stop.wait()
        finally:
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
            await sim.stop()
        log.info("stopped")
        return EXIT_OK
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


def _line(bus: BusConfig) -> str:
    """A serial line's settings as drives' manuals write them: 19200E1."""
    return f"{bus.baudrate}{bus.parity}{bus.stopbits}"


def _host_port(address: tuple[str, int]) -> str:
    return f"{address[0]}:{address[1]}"


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``vfd-sim``; returns the process exit code."""
    args = _parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(levelname)s %(name)s: %(message)s")
    # pymodbus logs every connection at INFO; its warnings are what matter here.
    logging.getLogger("pymodbus").setLevel(max(logging.WARNING, logging.getLogger().level))
    rtu: BusConfig | None = None
    serial_server: BusConfig | None = None
    try:
        serial_only = args.rtu or args.rtu_over_tcp
        listen = parse_listen(args.listen or DEFAULT_LISTEN) if args.listen or not serial_only else None
        metrics = parse_listen(args.metrics)
        if args.rtu:
            url = args.rtu if args.rtu.startswith("rtu:") else f"rtu://{args.rtu}"
            settings = {"baudrate": args.baudrate, "parity": args.parity, "stopbits": args.stopbits}
            extra = "&".join(f"{k}={v}" for k, v in settings.items() if v is not None)
            rtu = parse_bus_url(url + ("&" if "?" in url else "?") + extra if extra else url, name="sim")
        if args.rtu_over_tcp:
            host, port = parse_listen(args.rtu_over_tcp)
            serial_server = BusConfig("sim", Transport.RTU_OVER_TCP, host, port, 1.0, 0.5, 0, 5.0,
                                      baudrate=args.baudrate or 19200, parity=args.parity or "E",
                                      stopbits=args.stopbits or 1)
    except (ValueError, BusUrlError) as exc:
        print(f"vfd-sim: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        plant = load_plant(args.plant)
    except ConfigError as exc:
        for issue in exc.issues:
            print(issue, file=sys.stderr)
        return EXIT_USAGE
    return asyncio.run(_serve(plant, listen, metrics, rtu, serial_server))


if __name__ == "__main__":
    sys.exit(main())
