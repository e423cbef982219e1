"""The durable energy ledger: one SQLite row per drive per hour, plus running totals.

Why SQLite: a single file, transactional, readable by ``vfd-agent report`` while
the agent writes (WAL), and part of Python. Every flush is one transaction that
adds the hours' deltas and replaces the totals, so a kill or power cut at any
moment leaves either the state before the flush or the state after it; with
``synchronous=FULL`` a committed flush survives a power cut. At start the agent
restores its Prometheus counters from the totals, so they continue, never reset.

A second agent on the same database is refused: the first holds an exclusive
``flock`` on ``ledger.sqlite.lock`` for its lifetime (released by the kernel
even after SIGKILL).

Long because the forward-only migrations of every released schema live here, in order, beside
the code that reads and writes their tables.
"""

from __future__ import annotations

import contextlib
import fcntl
import math
import os
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import asdict, astuple, dataclass, fields
from enum import Enum
from pathlib import Path

from agent.energy.account import EnergyTotals, HourDelta, OptimizerPart, SavedPenalty
from agent.errors import LedgerError, LedgerLockedError

LEDGER_FILE = "ledger.sqlite"
SCHEMA_VERSION = 6

# Forward migrations: MIGRATIONS[n] takes a database from version n to n + 1.
MIGRATIONS: tuple[str, ...] = (
    """
    CREATE TABLE hourly (
        drive TEXT NOT NULL,
        hour INTEGER NOT NULL,            -- Unix time of the UTC hour's start
        energy_j REAL NOT NULL DEFAULT 0,
        baseline_energy_j REAL NOT NULL DEFAULT 0,
        saved_vfd_j REAL NOT NULL DEFAULT 0,      -- signed: baseline - energy
        saved_optimizer_j REAL NOT NULL DEFAULT 0,  -- signed: counterfactual - energy
        co2_g REAL NOT NULL DEFAULT 0,            -- signed, at the emission factor of the moment
        cost REAL NOT NULL DEFAULT 0,             -- signed, at the tariff of the moment
        currency TEXT NOT NULL DEFAULT '',
        covered_s REAL NOT NULL DEFAULT 0,
        gaps INTEGER NOT NULL DEFAULT 0,
        counter_s REAL NOT NULL DEFAULT 0,        -- seconds booked from the drive's energy counter
        power_s REAL NOT NULL DEFAULT 0,          -- seconds booked from integrated power
        PRIMARY KEY (drive, hour)
    ) WITHOUT ROWID;
    CREATE TABLE totals (
        drive TEXT PRIMARY KEY,
        energy_j REAL NOT NULL, baseline_energy_j REAL NOT NULL,
        saved_vfd_j REAL NOT NULL, penalty_vfd_j REAL NOT NULL,
        saved_optimizer_j REAL NOT NULL, penalty_optimizer_j REAL NOT NULL,
        co2_avoided_g REAL NOT NULL, co2_penalty_g REAL NOT NULL,
        cost_saved REAL NOT NULL, cost_penalty REAL NOT NULL,
        covered_s REAL NOT NULL, gaps INTEGER NOT NULL,
        counter_s REAL NOT NULL, power_s REAL NOT NULL,
        updated_at REAL NOT NULL
    );
    """,
    # 1 -> 2: energy fed back by a regenerating drive, booked apart from the energy drawn.
    """
    ALTER TABLE hourly ADD COLUMN regenerated_j REAL NOT NULL DEFAULT 0;
    ALTER TABLE totals ADD COLUMN regenerated_j REAL NOT NULL DEFAULT 0;
    """,
    # 2 -> 3: the hand-backs the agent owes (``HandbackStore``); an older ledger simply has none.
    """
    CREATE TABLE handback (
        drive TEXT NOT NULL,
        quantity TEXT NOT NULL,           -- agent.config.profile.Quantity value
        operator REAL NOT NULL,           -- the operator's value, to be written back (agent units)
        agent REAL,                       -- the agent's last value read back as written
        sending REAL,                     -- a value on its way to the drive (NULL: none)
        taken_at REAL NOT NULL,           -- wall time the operator's value was kept
        PRIMARY KEY (drive, quantity)
    ) WITHOUT ROWID;
    """,
    # 3 -> 4: savings by evidence and optimizer savings by group and part (README, "Savings");
    # the baseline period's intervals, the fitted baseline models and the non-routine events (M&V).
    # Before 4 the ledger did not know what backed a baseline: its vfd savings become stipulated,
    # and the CO2 and money booked from them are withdrawn (they were not earned by a measurement).
    """
    ALTER TABLE hourly ADD COLUMN saved_stipulated_j REAL NOT NULL DEFAULT 0;
    ALTER TABLE hourly ADD COLUMN saved_staging_j REAL NOT NULL DEFAULT 0;
    ALTER TABLE hourly ADD COLUMN saved_unsplit_j REAL NOT NULL DEFAULT 0;
    UPDATE hourly SET saved_stipulated_j = saved_vfd_j, saved_vfd_j = 0, co2_g = 0, cost = 0,
        saved_unsplit_j = saved_optimizer_j;
    ALTER TABLE totals ADD COLUMN saved_stipulated_j REAL NOT NULL DEFAULT 0;
    ALTER TABLE totals ADD COLUMN penalty_stipulated_j REAL NOT NULL DEFAULT 0;
    UPDATE totals SET saved_stipulated_j = saved_vfd_j, penalty_stipulated_j = penalty_vfd_j,
        saved_vfd_j = 0, penalty_vfd_j = 0, co2_avoided_g = 0, co2_penalty_g = 0,
        cost_saved = 0, cost_penalty = 0;
    CREATE TABLE group_totals (
        grp TEXT NOT NULL,
        part TEXT NOT NULL,               -- agent.energy.account.OptimizerPart value
        saved_j REAL NOT NULL,
        penalty_j REAL NOT NULL,
        updated_at REAL NOT NULL,
        PRIMARY KEY (grp, part)
    ) WITHOUT ROWID;
    CREATE TABLE mv_interval (
        grp TEXT NOT NULL,
        start REAL NOT NULL,              -- Unix s of the interval's start
        length_s REAL NOT NULL,
        mode TEXT NOT NULL,               -- the group's control mode then (baseline: monitor, advise)
        energy_j REAL NOT NULL,
        covered_s REAL NOT NULL,          -- seconds with every drive of the group sampled
        flow REAL,                        -- mean delivered flow [m3/s] or demand proxy; NULL: unknown
        speed_ratio REAL,                 -- mean speed ratio of the running drives
        pumps_running REAL,               -- mean number of drives running
        pressure_pa REAL,                 -- mean critical-point pressure; NULL: not configured
        hour_of_week INTEGER NOT NULL,    -- 0 = Monday 00:00 site time
        PRIMARY KEY (grp, start)
    ) WITHOUT ROWID;
    CREATE TABLE mv_model (
        grp TEXT NOT NULL,
        fitted_at REAL NOT NULL,
        period_start REAL NOT NULL,
        period_end REAL NOT NULL,
        interval_s REAL NOT NULL,
        model TEXT NOT NULL,              -- JSON: spec, terms, coefficients, statistics, coverage
        PRIMARY KEY (grp, fitted_at)
    ) WITHOUT ROWID;
    CREATE TABLE event (
        id INTEGER PRIMARY KEY,
        wall REAL NOT NULL,
        kind TEXT NOT NULL,               -- agent.energy.ledger.EventKind value
        subject TEXT NOT NULL,            -- a drive, a group, or '' for the whole agent
        detail TEXT NOT NULL
    );
    """,
    # 4 -> 5: the A/B label of an interval that one strategy ran through (agent.control.abblocks), so a
    # restarted agent keeps its A/B record; an older interval has none (NULL).
    """
    ALTER TABLE mv_interval ADD COLUMN strategy TEXT;  -- agent.mv.abtest.Strategy value; NULL: no label
    ALTER TABLE mv_interval ADD COLUMN block INTEGER;  -- the A/B block it lies in (the estimate's cluster)
    """,
    # 5 -> 6: the drive's own losses, modelled where its reading is its output, netted out of the
    # savings against the no-VFD baseline from now on; an older ledger's hours and totals have none.
    """
    ALTER TABLE hourly ADD COLUMN drive_losses_j REAL NOT NULL DEFAULT 0;
    ALTER TABLE totals ADD COLUMN drive_losses_j REAL NOT NULL DEFAULT 0;
    """,
)

_HOUR_FIELDS = [f.name for f in fields(HourDelta)]
_PARTS = {p.value for p in OptimizerPart}
_TOTAL_FIELDS = [f.name for f in fields(EnergyTotals)]


@dataclass(frozen=True)
class HourRow:
    """One drive's hour as stored."""

    drive: str
    hour: int
    currency: str
    delta: HourDelta


class EventKind(Enum):
    """Non-routine events (IPMVP): what may have changed the energy use other than the measure."""

    CONFIG = "config"  # the config's SHA-256 at start and at each applied reload
    MODE_CHANGE = "mode_change"  # a drive's control mode changed (monitor, advise, control)
    HAND_BACK = "hand_back"  # a group handed back to the operator's settings
    FAULT = "fault"  # a drive stopped answering or answered implausibly (logged once per episode)
    CLOCK_STEP = "clock_step"  # the wall clock stepped
    BASELINE_TEST = "baseline_test"  # a consented run at rated speed (vfd-agent baseline-test)
    BASELINE_FITTED = "baseline_fitted"  # a group's baseline model was fitted and stored
    AB_BLOCK = "ab_block"  # a planned A/B block handed the group to the operator's strategy (routine)


@dataclass(frozen=True)
class MvInterval:
    """One group's interval of the M&V record (table ``mv_interval``; NULL columns are None)."""

    grp: str
    start: float  # Unix s of the interval's start
    length_s: float
    mode: str  # the group's control mode then (ControlMode value); baselines use monitor and advise
    energy_j: float
    covered_s: float  # seconds with every drive of the group sampled fresh
    flow: float | None  # mean delivered flow [m³/s] or demand proxy
    speed_ratio: float | None  # mean speed ratio of the running drives
    pumps_running: float | None  # mean number of drives running
    pressure_pa: float | None  # mean critical-point pressure
    hour_of_week: int  # 0 = Monday 00:00 site time
    strategy: str | None = None  # A/B blocks: the Strategy value that ran through all of it; None: no label
    block: int | None = None  # A/B blocks: the block's index (whole block lengths since the epoch)


@dataclass(frozen=True)
class StoredModel:
    """A fitted baseline model as stored (table ``mv_model``); ``model`` is its JSON."""

    grp: str
    fitted_at: float
    period_start: float
    period_end: float
    interval_s: float
    model: str


@dataclass(frozen=True)
class Event:
    """A non-routine event as stored (table ``event``)."""

    wall: float
    kind: EventKind
    subject: str  # a drive, a group, or '' for the whole agent
    detail: str


_INTERVAL_FIELDS = [f.name for f in fields(MvInterval)]
_MODEL_FIELDS = [f.name for f in fields(StoredModel)]


def read_intervals(db: sqlite3.Connection, grp: str | None = None, start: float = -math.inf,
                   end: float = math.inf) -> list[MvInterval]:
    """The M&V intervals starting in [start, end), of one group or all, in (group, time) order."""
    where, params = "start >= ? AND start < ?", (start, end)  # type: tuple[str, tuple[object, ...]]
    if grp is not None:
        where, params = where + " AND grp = ?", (start, end, grp)
    rows = db.execute(f"SELECT {', '.join(_INTERVAL_FIELDS)} FROM mv_interval WHERE {where} "
                      "ORDER BY grp, start", params).fetchall()
    return [MvInterval(*row) for row in rows]


def read_models(db: sqlite3.Connection, grp: str | None = None) -> list[StoredModel]:
    """Stored baseline models, of one group or all, oldest first."""
    where, params = ("WHERE grp = ?", (grp,)) if grp is not None else ("", ())
    rows = db.execute(f"SELECT {', '.join(_MODEL_FIELDS)} FROM mv_model {where} ORDER BY grp, fitted_at",
                      params).fetchall()
    return [StoredModel(*row) for row in rows]


def read_events(db: sqlite3.Connection, start: float = -math.inf, end: float = math.inf) -> list[Event]:
    """Non-routine events in [start, end), oldest first (an unknown kind, from a newer agent, is skipped)."""
    known = {k.value: k for k in EventKind}
    rows = db.execute("SELECT wall, kind, subject, detail FROM event WHERE wall >= ? AND wall < ? "
                      "ORDER BY wall, id", (start, end)).fetchall()
    return [Event(wall, known[kind], subject, detail)
            for wall, kind, subject, detail in rows if kind in known]


class Ledger:
    """An open, locked ledger database."""

    def __init__(self, path: Path, connection: sqlite3.Connection, lock_fd: int) -> None:
        self.path = path
        self._db = connection
        self._lock_fd = lock_fd

    @classmethod
    def open(cls, path: Path) -> Ledger:
        """Open (creating and migrating as needed) and lock the ledger at ``path``."""
        lock_fd = _lock(path)
        try:
            db = sqlite3.connect(path, timeout=5.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            migrate(db)
        except sqlite3.Error as exc:
            os.close(lock_fd)
            raise LedgerError(f"cannot open the ledger {path}: {exc}") from exc
        return cls(path, db, lock_fd)

    def close(self) -> None:
        """Close the database and release the lock."""
        try:
            self._db.close()
        finally:
            os.close(self._lock_fd)

    def load_totals(self) -> dict[str, EnergyTotals]:
        """The running totals of every drive, as of the last flush."""
        rows = self._db.execute(f"SELECT drive, {', '.join(_TOTAL_FIELDS)} FROM totals").fetchall()
        return {row[0]: EnergyTotals(*row[1:]) for row in rows}

    def newest_hour(self) -> float | None:
        """Start of the newest hour with a row (Unix s); no real wall time is earlier. None if empty."""
        try:
            row = self._db.execute("SELECT MAX(hour) FROM hourly").fetchone()
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read the ledger {self.path}: {exc}") from exc
        return float(row[0]) if row and row[0] is not None else None

    def load_group_totals(self) -> dict[tuple[str, OptimizerPart], SavedPenalty]:
        """The optimizer's savings per group and part, as of the last flush."""
        try:
            rows = self._db.execute("SELECT grp, part, saved_j, penalty_j FROM group_totals").fetchall()
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read the ledger {self.path}: {exc}") from exc
        return {(grp, OptimizerPart(part)): SavedPenalty(saved, penalty) for grp, part, saved, penalty in rows
                if part in _PARTS}

    def flush(self, hours: Iterable[HourRow], totals: Mapping[str, EnergyTotals], now: float,
              groups: Mapping[tuple[str, OptimizerPart], SavedPenalty] | None = None,
              intervals: Iterable[MvInterval] = (), events: Iterable[Event] = ()) -> None:
        """Add the hours' deltas, store the totals, the closed M&V intervals and the events: one transaction.

        The first record of an interval's slot is kept: a wall clock stepped back, or a mode change
        within an interval (two partial records of one slot), never overwrites one already written.
        """
        add = ", ".join(f"{f} = {f} + excluded.{f}" for f in _HOUR_FIELDS)
        insert_hour = (
            f"INSERT INTO hourly (drive, hour, currency, {', '.join(_HOUR_FIELDS)}) "
            f"VALUES (?, ?, ?, {', '.join('?' * len(_HOUR_FIELDS))}) "
            f"ON CONFLICT (drive, hour) DO UPDATE SET {add}, currency = excluded.currency"
        )
        replace_total = (
            f"INSERT OR REPLACE INTO totals (drive, {', '.join(_TOTAL_FIELDS)}, updated_at) "
            f"VALUES (?, {', '.join('?' * len(_TOTAL_FIELDS))}, ?)"
        )
        try:
            with immediate(self._db):
                self._db.executemany(insert_hour, [
                    (row.drive, row.hour, row.currency, *astuple_hour(row.delta)) for row in hours
                ])
                self._db.executemany(replace_total, [
                    (drive, *asdict(t).values(), now) for drive, t in totals.items()
                ])
                self._db.executemany(
                    "INSERT OR REPLACE INTO group_totals (grp, part, saved_j, penalty_j, updated_at) "
                    "VALUES (?, ?, ?, ?, ?)",
                    [(grp, part.value, sp.saved_j, sp.penalty_j, now)
                     for (grp, part), sp in (groups or {}).items()])
                self._db.executemany(
                    f"INSERT INTO mv_interval ({', '.join(_INTERVAL_FIELDS)}) "
                    f"VALUES ({', '.join('?' * len(_INTERVAL_FIELDS))}) ON CONFLICT (grp, start) DO NOTHING",
                    [astuple(i) for i in intervals])
                self._db.executemany("INSERT INTO event (wall, kind, subject, detail) VALUES (?, ?, ?, ?)",
                                     [(e.wall, e.kind.value, e.subject, e.detail) for e in events])
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot write the ledger {self.path}: {exc}") from exc


    def store_model(self, model: StoredModel, event: Event | None = None) -> None:
        """Keep a fitted baseline model (and the event saying so) in one transaction."""
        try:
            with immediate(self._db):
                self._db.execute(f"INSERT OR REPLACE INTO mv_model ({', '.join(_MODEL_FIELDS)}) "
                                 f"VALUES ({', '.join('?' * len(_MODEL_FIELDS))})", astuple(model))
                if event is not None:
                    self._db.execute("INSERT INTO event (wall, kind, subject, detail) VALUES (?, ?, ?, ?)",
                                     (event.wall, event.kind.value, event.subject, event.detail))
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot write the ledger {self.path}: {exc}") from exc

    def intervals(self, grp: str | None = None, start: float = -math.inf,
                  end: float = math.inf) -> list[MvInterval]:
        """``read_intervals`` on this ledger (call it on the thread that flushes)."""
        try:
            return read_intervals(self._db, grp, start, end)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read the ledger {self.path}: {exc}") from exc

    def models(self, grp: str | None = None) -> list[StoredModel]:
        """``read_models`` on this ledger."""
        try:
            return read_models(self._db, grp)
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot read the ledger {self.path}: {exc}") from exc


def astuple_hour(delta: HourDelta) -> tuple[float, ...]:
    """The delta's values in column order."""
    return tuple(getattr(delta, f) for f in _HOUR_FIELDS)


@contextlib.contextmanager
def immediate(db: sqlite3.Connection) -> Iterator[None]:
    """One write transaction, taken at once (``BEGIN IMMEDIATE``): committed, or rolled back on any error.

    SQLite may have rolled back already (a full disk), hence the ``in_transaction`` check.
    """
    db.execute("BEGIN IMMEDIATE")
    try:
        yield
        db.execute("COMMIT")
    except BaseException:
        if db.in_transaction:
            db.execute("ROLLBACK")
        raise


def migrate(db: sqlite3.Connection) -> int:
    """Bring the schema to ``SCHEMA_VERSION``; returns the version found before."""
    db.execute("CREATE TABLE IF NOT EXISTS schema_version (version INTEGER NOT NULL)")
    row = db.execute("SELECT version FROM schema_version").fetchone()
    found = int(row[0]) if row else 0
    if found > SCHEMA_VERSION:
        raise sqlite3.DatabaseError(
            f"ledger schema version {found} is newer than this agent's {SCHEMA_VERSION}; upgrade the agent"
        )
    for version in range(found, SCHEMA_VERSION):
        with immediate(db):
            for statement in _statements(MIGRATIONS[version]):
                db.execute(statement)
            db.execute("DELETE FROM schema_version")
            db.execute("INSERT INTO schema_version (version) VALUES (?)", (version + 1,))
    return found


def _statements(script: str) -> list[str]:
    """Split a migration into statements (no semicolons inside our literals)."""
    lines = [line.split("--", 1)[0] for line in script.splitlines()]
    return [s.strip() for s in "\n".join(lines).split(";") if s.strip()]


def _lock(path: Path) -> int:
    """Take the ledger's exclusive lock or say who holds it."""
    lock_path = path.with_name(path.name + ".lock")
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o640)
    except OSError as exc:
        raise LedgerError(f"cannot open the ledger lock {lock_path}: {exc.strerror or exc}") from exc
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
        os.close(fd)
        raise LedgerLockedError(
            f"another vfd-agent (pid {holder}) is already keeping the ledger {path}; "
            "stop it first, or give this one its own storage.path"
        ) from None
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
    return fd


def open_readonly(path: Path) -> sqlite3.Connection:
    """A read-only connection for reports, safe while the agent writes."""
    if not path.is_file():
        raise LedgerError(f"no ledger at {path}")
    try:
        db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5.0)
        db.execute("SELECT 1 FROM hourly LIMIT 1")
    except sqlite3.Error as exc:
        raise LedgerError(f"cannot read the ledger {path}: {exc}") from exc
    return db


def unix_now() -> float:
    """Wall-clock time for ``updated_at``."""
    return time.time()


@dataclass(frozen=True)
class PendingHandback:
    """A point the agent has written and not yet verifiably handed back to the operator's value."""

    drive: str
    quantity: str  # agent.config.profile.Quantity value
    operator: float  # agent units (speed ratio; m for pumps, Pa for fans; a control word as a number)
    agent: float | None  # the agent's last value read back as written
    sending: float | None  # a value that was on its way to the drive (it may or may not have arrived)
    taken_at: float  # wall time


class HandbackStore:
    """The hand-backs the agent owes, in the ledger's database, written before the drive is.

    Its own connection to the ledger file (the ledger's own one is busy on the flush thread);
    the ledger's lock, held by the ``Ledger`` this was opened from, keeps other agents out.
    Every change is one committed transaction (WAL, ``synchronous=FULL``: synced at commit),
    so a row the agent wrote before a write to the drive survives a SIGKILL or a power cut.
    """

    def __init__(self, path: Path, connection: sqlite3.Connection) -> None:
        self.path = path
        self._db = connection
        self._mutex = threading.Lock()  # calls come from worker threads, one at a time per writer

    @classmethod
    def open(cls, ledger: Ledger) -> HandbackStore:
        """A second connection to an open (so migrated and locked) ledger."""
        try:
            db = sqlite3.connect(ledger.path, timeout=5.0, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("SELECT 1 FROM handback LIMIT 1")
        except sqlite3.Error as exc:
            raise LedgerError(f"cannot open the hand-backs in the ledger {ledger.path}: {exc}") from exc
        return cls(ledger.path, db)

    def close(self) -> None:
        """Close the connection (the ledger keeps its lock)."""
        with self._mutex:
            self._db.close()

    def pending(self) -> list[PendingHandback]:
        """Every hand-back not yet verified, oldest first."""
        with self._mutex:
            try:
                rows = self._db.execute(
                    "SELECT drive, quantity, operator, agent, sending, taken_at FROM handback "
                    "ORDER BY taken_at, drive, quantity").fetchall()
            except sqlite3.Error as exc:
                raise LedgerError(f"cannot read the hand-backs in the ledger {self.path}: {exc}") from exc
        return [PendingHandback(*row) for row in rows]

    def keep(self, drive: str, quantity: str, operator: float, sending: float, now: float) -> None:
        """Before the first write to a point: the operator's value, and the value on its way."""
        self._commit("INSERT INTO handback (drive, quantity, operator, agent, sending, taken_at) "
                     "VALUES (?, ?, ?, NULL, ?, ?) ON CONFLICT (drive, quantity) DO UPDATE SET "
                     "sending = excluded.sending", (drive, quantity, operator, sending, now))

    def sending(self, drive: str, quantity: str, value: float) -> None:
        """Before a later write: the value on its way (the drive may show it after a crash)."""
        self._commit("UPDATE handback SET sending = ? WHERE drive = ? AND quantity = ?",
                     (value, drive, quantity))

    def written(self, drive: str, quantity: str, value: float) -> None:
        """A write read back as sent: the agent's value in force."""
        self._commit("UPDATE handback SET agent = ?, sending = NULL WHERE drive = ? AND quantity = ?",
                     (value, drive, quantity))

    def operator_changed(self, drive: str, quantity: str, operator: float) -> None:
        """Someone else set the point while the agent was away: that is the operator's value now."""
        self._commit("UPDATE handback SET operator = ?, agent = NULL, sending = NULL "
                     "WHERE drive = ? AND quantity = ?", (operator, drive, quantity))

    def handed_back(self, drive: str, quantity: str) -> None:
        """The operator's value read back from the drive: nothing owed any more."""
        self._commit("DELETE FROM handback WHERE drive = ? AND quantity = ?", (drive, quantity))

    def _commit(self, statement: str, params: tuple[object, ...]) -> None:
        with self._mutex:
            try:
                with immediate(self._db):
                    self._db.execute(statement, params)
            except sqlite3.Error as exc:
                raise LedgerError(f"cannot write the hand-backs in the ledger {self.path}: {exc}") from exc
