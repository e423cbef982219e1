"""vfd-agent command line: run, check-config, demo, report, baseline-test, warmup, probe, scan.

Exit codes: 0 success, 1 an environment failure (port in use, disk), 2 a user's
mistake in a config or on the command line. A user's mistake never shows a
traceback.

Long because each sub-command's handler sits beside the parser that feeds it: they are
small, and each is the edge between a user's typing and one part of the agent.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import importlib.util
import json
import logging
import math
import os
import signal
import sqlite3
import sys
from collections.abc import Callable
from datetime import date, datetime
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING

from agent.config import AgentConfig, BusConfig, load_config, parse_listen
from agent.config.profile import (
    Profile,
    RegisterTable,
    available_profiles,
    load_profile,
    resolve_profile_path,
)
from agent.config.yamlsource import BROADCAST_HINT, UNIT_ID_MAX, UNIT_ID_MIN, Issues
from agent.errors import ConfigError, ConfigIssue, DriveError
from agent.logs import LogFormat, setup_logging
from agent.modbus.readplan import Block
from agent.numba_cache import configure_numba_cache
from agent.units import KWH_TO_J, RPM_TO_RAD_S

if TYPE_CHECKING:
    from agent.control.baseline_test import BaselineTestResult
    from agent.drive import DriveRuntime
    from agent.energy.ledger import Ledger
    from agent.web import WebConfigSource

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2
DemoRunner = Callable[..., int]  # hil.demo.run_demo(listen, duration, state_dir, web)
DEMO_STATE_DIR = "vfd-agent-demo"  # under the current directory, so the demo's ledger can be found
log = logging.getLogger("agent")


def _version() -> str:
    try:
        return metadata.version("vfd-agent")
    except metadata.PackageNotFoundError:
        return "unknown"


def _listen(text: str) -> tuple[str, int]:
    try:
        return parse_listen(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number of seconds, got {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be > 0, got {text}")
    return value


def _positive_int(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number >= 1, got {text!r}")
    return int(text)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a date YYYY-MM-DD, got {text!r}") from None


def _common_options(suppress: bool) -> argparse.ArgumentParser:
    """Options accepted before or after the sub-command.

    ``vfd-agent run --dry-run`` works as well as ``vfd-agent --dry-run run``: given after the
    sub-command an option overrides, left out it keeps the global value.
    """
    common = argparse.ArgumentParser(add_help=False)
    default = (lambda value: argparse.SUPPRESS) if suppress else (lambda value: value)
    common.add_argument("--log-level", default=default("INFO"), choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                        help="least severe messages logged (default INFO)")
    common.add_argument("--log-format", default=default(LogFormat.TEXT), type=LogFormat,
                        choices=list(LogFormat), metavar="{text,logfmt,json}",
                        help="text (default), or logfmt / json for Loki and ELK; under journald each line "
                             "carries its syslog priority")
    common.add_argument("--dry-run", action="store_true", default=default(False),
                        help="never write to a drive: log (and count) every write control mode would make")
    return common


def build_parser() -> argparse.ArgumentParser:
    """The argument parser, one sub-command per job.

    Long because it declares every sub-command and option in one place, in the order
    ``--help`` shows them.
    """
    parser = argparse.ArgumentParser(prog="vfd-agent", description=__doc__.splitlines()[0],
                                     parents=[_common_options(suppress=False)])
    parser.add_argument("--version", action="version", version=f"vfd-agent {_version()}")
    common = [_common_options(suppress=True)]
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    web_help = ("TLS and basic auth for the metrics endpoint: the web-config YAML of Prometheus "
                "exporters (exporter-toolkit format)")
    run = sub.add_parser("run", parents=common, help="poll the drives of a site config and serve metrics",
                         description="Poll the drives of a site config and serve metrics until SIGTERM.")
    run.add_argument("--config", "-c", type=Path, required=True, help="site config YAML")
    run.add_argument("--web.config.file", dest="web_config", type=Path, default=None, metavar="FILE",
                     help=web_help)

    check = sub.add_parser("check-config", parents=common,
                           help="validate a site config and its profiles, then exit")
    check.add_argument("config", type=Path, help="site config YAML")

    demo = sub.add_parser("demo", parents=common,
                          help="simulated pumps and a fan, and the agent polling them")
    demo.add_argument("--listen", type=_listen, default=("127.0.0.1", 9847),
                      help="metrics endpoint HOST:PORT (default 127.0.0.1:9847)")
    demo.add_argument("--duration", type=_positive, default=None, help="stop after SECONDS")
    demo.add_argument("--state-dir", type=Path, default=Path(DEMO_STATE_DIR),
                      help=f"where the demo keeps its ledger (default ./{DEMO_STATE_DIR}; try "
                           f"'vfd-agent report --db {DEMO_STATE_DIR}/ledger.sqlite' afterwards)")
    demo.add_argument("--web.config.file", dest="web_config", type=Path, default=None, metavar="FILE",
                      help=web_help)

    report = sub.add_parser("report", parents=common, help="energy, savings, CO2 and money from the ledger")
    source = report.add_mutually_exclusive_group(required=True)
    source.add_argument("--config", "-c", type=Path, help="site config (its storage.path holds the ledger)")
    source.add_argument("--db", type=Path, help="a ledger.sqlite file")
    report.add_argument("--from", dest="start", type=_date, default=None, help="first day, YYYY-MM-DD")
    report.add_argument("--to", dest="end", type=_date, default=None, help="last day (inclusive), YYYY-MM-DD")
    report.add_argument("--format", choices=["table", "csv", "json"], default="table",
                        help="table (default); csv and json keep the site total apart from the drive rows")
    report.add_argument("--plot", type=Path, default=None,
                        help="also draw a PNG: energy against baseline per day, cumulative net savings, "
                             "CO2 and money (needs: pip install 'vfd-agent[plot]')")
    report.add_argument("--drive", action="append", default=None,
                        help="only this drive (repeat for several); with --plot, one panel row per drive")
    report.add_argument("--mv", action="store_true",
                        help="the auditor's M&V page of each group (IPMVP option B, Guideline 14 statistics, "
                             "savings with 68/90 %% intervals) as HTML files; needs --config")
    report.add_argument("--group", action="append", default=None,
                        help="with --mv: only this group (repeat for several)")
    report.add_argument("--output", "-o", type=Path, default=Path("."),
                        help="with --mv: directory for the pages, mv-GROUP.html (default: here)")

    test = sub.add_parser("baseline-test", parents=common,
                          help="run one drive at rated speed a while to measure its baseline (asks first)",
                          description="Ramp one drive to rated speed within its slew limit, hold it there "
                                      "for the given minutes recording power against flow, then hand the "
                                      "operator's speed setpoint back. The agent must be stopped (it holds "
                                      "the ledger).")
    test.add_argument("--config", "-c", type=Path, required=True, help="site config YAML")
    test.add_argument("--drive", required=True, help="the drive's name in the config")
    test.add_argument("--minutes", type=_positive, default=10.0, help="time at rated speed (default 10)")
    test.add_argument("--yes", action="store_true",
                      help="the operator's confirmation given on the command line (no prompt)")

    warm = sub.add_parser("warmup", parents=common, help="compile every kernel into the on-disk cache")
    warm.add_argument("--cache-dir", type=Path, default=None,
                      help="Numba cache directory (default NUMBA_CACHE_DIR, else the config's "
                           "storage.path/numba-cache with --config, else beside the kernels)")
    warm.add_argument("--config", "-c", type=Path, default=None,
                      help="compile only the kernels this site config uses (default: every kernel)")
    warm.add_argument("--jobs", "-j", type=_positive_int, default=None,
                      help="lanes of compiling processes side by side (default: one per core while each "
                           "~215 MiB fits in half of MemAvailable; a warm cache loads in one process)")

    bus_help = ("tcp://HOST:PORT, rtu:///dev/ttyUSB0?baudrate=19200&parity=E&stopbits=1, or "
                "rtu+tcp://HOST:PORT?baudrate=19200 (RTU through an Ethernet-to-RS-485 serial server)")
    probe = sub.add_parser("probe", parents=common,
                           help="read one drive once and judge every value (commissioning)")
    probe.add_argument("--bus", type=_bus_url, required=True, help=bus_help)
    probe.add_argument("--unit", type=_unit, required=True, help="Modbus unit id (1..247)")
    probe.add_argument("--profile", required=True, help="profile name or path")
    probe.add_argument("--rated-power-kw", type=_positive, default=None, help="to judge power against")
    probe.add_argument("--rated-speed-rpm", type=_positive, default=None, help="to judge speed against")
    probe.add_argument("--timeout", type=_positive, default=1.0, help="per request, s (default 1)")

    scan = sub.add_parser("scan", parents=common, help="list the unit ids that answer on a bus")
    scan.add_argument("--bus", type=_bus_url, required=True, help=bus_help)
    scan.add_argument("--units", type=_units, default=list(range(1, 248)),
                      help="unit ids, e.g. 1-247 or 1,2,10-20 (default 1-247)")
    scan.add_argument("--timeout", type=_positive, default=0.1, help="per unit, s (default 0.1)")
    scan.add_argument("--profile", default=None,
                      help="read this profile's first block instead of holding register 0")
    return parser


def _bus_url(text: str) -> BusConfig:
    from agent.errors import BusUrlError
    from agent.modbus.bus_url import parse_bus_url

    try:
        return parse_bus_url(text)
    except BusUrlError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def _unit(text: str) -> int:
    if text.isdigit() and int(text) == 0:
        raise argparse.ArgumentTypeError(BROADCAST_HINT)
    if not text.isdigit() or not UNIT_ID_MIN <= int(text) <= UNIT_ID_MAX:
        raise argparse.ArgumentTypeError(f"a unit id is a whole number in 1..247, got {text!r}")
    return int(text)


def _units(text: str) -> list[int]:
    units: set[int] = set()
    for part in text.split(","):
        low, sep, high = part.strip().partition("-")
        try:
            first, last = _unit(low), _unit(high) if sep else _unit(low)
        except argparse.ArgumentTypeError as exc:
            message = f"expected unit ids like 1-247 or 1,2,10-20, got {text!r}"
            if str(exc) == BROADCAST_HINT:
                message += f": {BROADCAST_HINT}"
            raise argparse.ArgumentTypeError(message) from None
        if last < first:
            raise argparse.ArgumentTypeError(f"empty range {part!r}")
        units.update(range(first, last + 1))
    return sorted(units)


def _report_config_error(error: ConfigError) -> int:
    for issue in error.issues:
        print(issue, file=sys.stderr)
    print(f"vfd-agent: {len(error.issues)} problem(s) in the configuration", file=sys.stderr)
    return EXIT_USAGE


def _check_config(path: Path) -> int:
    from agent.modbus.readplan import bus_budget, bus_warnings
    from agent.modbus.turnaround import TURNAROUND_FILE, load_turnarounds

    try:
        config = load_config(path)
    except ConfigError as exc:
        return _report_config_error(exc)
    # Each drive's turnaround as the agent last measured it, else the bus's configured default.
    learned = load_turnarounds(config.storage_path / TURNAROUND_FILE)
    for bus in config.buses:
        devices = config.devices_on(bus.name)  # a sensor's reads share the line as a drive's do
        profiles = [d.profile for d in devices]
        turnarounds = [learned.get(d.name, bus.turnaround) for d in devices]
        measured = sum(d.name in learned for d in devices)
        budget = bus_budget(bus, profiles, turnarounds, measured)
        if budget is not None:
            print(budget.describe())
        for warning in bus_warnings(bus, profiles, turnarounds, measured):
            print(f"warning: {warning}", file=sys.stderr)
    sensors = f", {len(config.sensors)} sensor(s)" if config.sensors else ""
    print(f"{path}: ok: {len(config.buses)} bus(es), {len(config.drives)} drive(s){sensors}")
    return EXIT_OK


def _load_profile(name: str) -> Profile:
    """A profile by name or path, or ConfigError (located) / a usage error naming the known ones."""
    path = resolve_profile_path(name, Path.cwd())
    if path is None:
        known = ", ".join(available_profiles(Path.cwd()))
        issue = ConfigIssue("(command line)", 0, "--profile", f"no profile {name!r}; available: {known}")
        raise ConfigError([issue])
    issues = Issues()
    profile = load_profile(path, issues)
    issues.raise_if_any()
    assert profile is not None
    return profile


def _commission(args: argparse.Namespace) -> int:
    """``probe`` and ``scan``: exit 0 all good, 1 no answer or implausible values, 2 usage."""
    from agent.modbus.probe import Rating, format_probe, probe, scan
    from agent.modbus.readplan import plan_reads

    bus = dataclasses.replace(args.bus, timeout=args.timeout)
    try:
        profile = _load_profile(args.profile) if args.profile else None
    except ConfigError as exc:
        return _report_config_error(exc)
    where = bus.address
    try:
        if args.command == "probe":
            assert profile is not None
            rating = Rating((args.rated_power_kw or math.nan) * 1e3,
                            (args.rated_speed_rpm or math.nan) * RPM_TO_RAD_S)
            values = asyncio.run(probe(bus, args.unit, profile, rating))
            print(format_probe(values, profile, where, args.unit))
            return EXIT_FAILURE if any(v.problems for v in values) else EXIT_OK
        first = plan_reads(profile.points.values())[0] if profile else Block(RegisterTable.HOLDING, 0, 1, ())
        found = asyncio.run(scan(bus, args.units, first))
    except DriveError as exc:
        print(f"vfd-agent {args.command}: {where}: {exc} ({exc.kind})", file=sys.stderr)
        return EXIT_FAILURE
    for unit, how in found:
        print(f"unit {unit}: {how}")
    print(f"{len(found)} of {len(args.units)} unit(s) answer on {where}")
    return EXIT_OK if found else EXIT_FAILURE


def _install_signal_handlers(stop: asyncio.Event, reload: asyncio.Event) -> None:
    """SIGINT, SIGTERM: stop. SIGHUP (``systemctl reload``): read the config file again."""
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    loop.add_signal_handler(signal.SIGHUP, reload.set)


def _web_config(path: Path | None) -> WebConfigSource:
    """The web-config source for ``--web.config.file``; ConfigError (located) if the file is wrong."""
    from agent.web import WebConfigSource

    return WebConfigSource(path)


async def _run_agent(config: AgentConfig, dry_run: bool = False, web: WebConfigSource | None = None) -> int:
    from agent.errors import LedgerLockedError
    from agent.service import Agent  # imports kernels: only after the Numba cache is configured

    agent = Agent(config, dry_run=dry_run, web_config=web)
    if dry_run:
        log.warning("dry run: no drive will be written to; the writes control mode would make are logged")
    try:
        agent.open_ledger()
    except LedgerLockedError as exc:
        log.error("%s", exc)
        return EXIT_FAILURE
    try:
        agent.start_metrics()
    except OSError as exc:
        log.error("cannot serve metrics on %s:%d: %s", config.metrics_host, config.metrics_port, exc)
        return EXIT_FAILURE
    stop, reload = asyncio.Event(), asyncio.Event()
    _install_signal_handlers(stop, reload)
    await agent.run(stop, reload=reload)
    return EXIT_OK


def _run(path: Path, dry_run: bool = False, web_config: Path | None = None) -> int:
    try:
        config = load_config(path)
        web = _web_config(web_config)
    except ConfigError as exc:
        return _report_config_error(exc)
    configure_numba_cache(config.storage_path / "numba-cache")
    return asyncio.run(_run_agent(config, dry_run, web))


def _report(args: argparse.Namespace) -> int:
    from agent.energy import report
    from agent.energy.ledger import LEDGER_FILE, open_readonly
    from agent.errors import LedgerError

    if args.mv:
        return _report_mv(args)

    tz = datetime.now().astimezone().tzinfo
    path: Path = args.db
    if args.config is not None:
        try:
            config = load_config(args.config)
        except ConfigError as exc:
            return _report_config_error(exc)
        path, tz = config.storage_path / LEDGER_FILE, config.site.timezone
    if args.start and args.end and args.end < args.start:
        print("vfd-agent report: --to is before --from", file=sys.stderr)
        return EXIT_USAGE
    try:
        db = open_readonly(path)
    except LedgerError as exc:
        print(f"vfd-agent report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    assert tz is not None
    if args.plot is not None:
        try:
            report.require_plotting()
        except ImportError:
            print("vfd-agent report: --plot needs matplotlib: pip install 'vfd-agent[plot]'", file=sys.stderr)
            db.close()
            return EXIT_USAGE
    with contextlib.closing(db):
        low, high = report.period_bounds(args.start, args.end, tz)
        summary = report.summarize(db, low, high, tz, args.drive)
        unknown = sorted(set(args.drive or ()) - {s.drive for s in summary.drives})
        if unknown and summary.drives:
            print(f"vfd-agent report: no ledger rows for drive(s) {', '.join(unknown)}", file=sys.stderr)
        sys.stdout.write(report.render(summary, report.ReportFormat(args.format)))
        if args.plot is not None:
            currency = summary.site.currency if summary.site is not None else ""
            report.plot(db, low, high, tz, args.plot, currency, args.drive)
    return EXIT_OK


def _report_mv(args: argparse.Namespace) -> int:
    """``report --mv``: one HTML page per group, written atomically; exit 1 if no group has one yet."""
    from agent.energy.ledger import LEDGER_FILE, open_readonly
    from agent.energy.mvreport import build
    from agent.errors import LedgerError
    from agent.metrics import agent_version
    from agent.mv.report import render_html
    from agent.mv.stats import MvError

    if args.config is None:
        print("vfd-agent report --mv: needs --config (the site's emission factor, tariff and groups)",
              file=sys.stderr)
        return EXIT_USAGE
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _report_config_error(exc)
    try:
        db = open_readonly(config.storage_path / LEDGER_FILE)
    except LedgerError as exc:
        print(f"vfd-agent report: {exc}", file=sys.stderr)
        return EXIT_USAGE
    try:
        with contextlib.closing(db):
            pages, missing = build(db, config, agent_version(), args.group)
    except (MvError, sqlite3.Error) as exc:
        print(f"vfd-agent report --mv: {config.storage_path / LEDGER_FILE}: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    for why in missing:
        print(f"vfd-agent report --mv: {why}", file=sys.stderr)
    try:
        args.output.mkdir(parents=True, exist_ok=True)
        for page in pages:
            path = args.output / f"mv-{page.group}.html"
            tmp = path.with_name(path.name + ".tmp")
            tmp.write_text(render_html(page), encoding="utf-8")
            os.replace(tmp, path)
            verdict = "meets Guideline 14" if page.savings.passed else "NOT signable (fails a test)"
            print(f"{path}: {page.group}: {page.savings_total_j.value / KWH_TO_J:,.2f} kWh saved, {verdict}")
    except OSError as exc:
        print(f"vfd-agent report --mv: cannot write to {args.output}: {exc.strerror or exc}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK if pages else EXIT_FAILURE


def _baseline_test(args: argparse.Namespace) -> int:
    """``baseline-test``: 0 measured and handed back, 1 aborted or ledger busy, 2 usage or no consent."""
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        return _report_config_error(exc)
    configure_numba_cache(config.storage_path / "numba-cache")
    from agent.control.baseline_test import BaselineTestError, baseline_snippet, plan
    from agent.energy.ledger import LEDGER_FILE, Ledger
    from agent.errors import LedgerError, LedgerLockedError

    try:
        drive = plan(config, args.drive)
    except BaselineTestError as exc:
        print(f"vfd-agent baseline-test: {exc}", file=sys.stderr)
        return EXIT_USAGE
    control = drive.config.control
    print(f"drive {drive.name} (bus {drive.config.bus}, unit {drive.config.unit}) will ramp to 100 % "
          f"speed at most {control.slew_per_min:.0%}/min, stay there {args.minutes:g} min, and ramp back; "
          "the operator's speed setpoint is kept in the ledger before the first write and written back at "
          "the end (also after Ctrl-C or a fault).", file=sys.stderr)
    if not args.yes:
        if not sys.stdin.isatty():
            print("vfd-agent baseline-test: needs the operator's confirmation: run it at a terminal, "
                  "or pass --yes", file=sys.stderr)
            return EXIT_USAGE
        if input("Type yes to run it: ").strip().lower() != "yes":
            print("vfd-agent baseline-test: not confirmed; nothing written", file=sys.stderr)
            return EXIT_USAGE
    try:
        ledger = Ledger.open(config.storage_path / LEDGER_FILE)
    except LedgerLockedError as exc:
        print(f"vfd-agent baseline-test: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    except LedgerError as exc:
        print(f"vfd-agent baseline-test: {exc}", file=sys.stderr)
        return EXIT_FAILURE
    try:
        result = asyncio.run(_baseline_test_run(config, drive, args.minutes * 60.0, ledger))
    finally:
        ledger.close()
    if result.aborted:
        print(f"vfd-agent baseline-test: {drive.name}: aborted: {result.aborted}; the operator's speed "
              "setpoint was handed back", file=sys.stderr)
        return EXIT_FAILURE
    flow = (f", flow {result.mean_flow * 3600:.1f} m³/h" if math.isfinite(result.mean_flow) else "")
    print(f"{drive.name}: {result.seconds_at_rated:.0f} s at rated speed ({result.mean_speed_ratio:.1%}), "
          f"{result.samples} samples: mean power {result.mean_power_w / 1e3:.3f} kW{flow}")
    a, b = result.power_per_flow
    if math.isfinite(b):
        print(f"power against flow at rated speed: {a / 1e3:.3f} kW + {b / 1e3 / 3600:.5f} kW per m³/h")
    print("to book this drive's vfd savings as measured, set in its config:\n  " + baseline_snippet(result))
    return EXIT_OK


async def _baseline_test_run(config: AgentConfig, drive: DriveRuntime, seconds: float,
                             ledger: Ledger) -> BaselineTestResult:
    from agent.control.baseline_test import run

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    return await run(config, drive, seconds, ledger, stop)


def _warmup(cache_dir: Path | None, config_path: Path | None, jobs: int | None) -> int:
    """Compile every kernel, or with ``--config`` only those that config calls (``agent.warmup``).

    This process reads the config (a located error exits 2 here) and decides the cache
    directory, then becomes ``python -m agent.warmup``: the compiling processes' parent then
    holds only what that module imports (14 MiB), not the CLI's config code and NumPy (42 MiB),
    which would sit beside every compiling process's peak.
    """
    if cache_dir is not None:
        os.environ["NUMBA_CACHE_DIR"] = str(cache_dir)
    default: Path | None = None
    if config_path is not None:
        try:
            config = load_config(config_path)
        except ConfigError as exc:
            return _report_config_error(exc)
        default = config.storage_path / "numba-cache"  # where ``run`` looks for it
    used = configure_numba_cache(default, fallback=False)  # the workers install it
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "agent.warmup",
                              json.dumps([None if config_path is None else str(config_path), jobs,
                                          None if used is None else str(used)])])


def _exec_demo(argv: list[str]) -> int:
    """Become ``python -m hil.demo`` with the same arguments: the demo is the test rig's.

    The agent never imports ``hil`` (the product does not depend on its simulator); the
    process is replaced, so its PID, signals, stdout and exit code stay the caller's.
    """
    if importlib.util.find_spec("hil") is None:
        print("vfd-agent demo: the simulator (package hil) is not installed; "
              "install vfd-agent from its source tree to run the demo", file=sys.stderr)
        return EXIT_FAILURE
    sys.stdout.flush()
    sys.stderr.flush()
    os.execv(sys.executable, [sys.executable, "-m", "hil.demo", *argv])


def main(argv: list[str] | None = None, *, demo: DemoRunner | None = None) -> int:
    """Entry point of the ``vfd-agent`` console script (``demo``: how ``hil.demo`` runs the demo here)."""
    argv = sys.argv[1:] if argv is None else argv
    args = build_parser().parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    if args.command == "check-config":
        return _check_config(args.config)
    if args.command == "run":
        return _run(args.config, args.dry_run, args.web_config)
    if args.command == "warmup":
        return _warmup(args.cache_dir, args.config, args.jobs)
    if args.command == "report":
        return _report(args)
    if args.command in ("probe", "scan"):
        return _commission(args)
    if args.command == "baseline-test":
        return _baseline_test(args)
    if args.command == "demo":
        try:
            web = _web_config(args.web_config)
        except ConfigError as exc:
            return _report_config_error(exc)
        if demo is None:
            return _exec_demo(argv)
        return demo(args.listen, args.duration, args.state_dir, web)
    raise AssertionError(args.command)  # argparse rejects unknown commands


if __name__ == "__main__":
    sys.exit(main())
