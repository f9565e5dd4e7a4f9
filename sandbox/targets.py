"""Where a sandbox lives: a temporary SQLite file, or a scratch database on a PostgreSQL server.

A target creates the throwaway database, opens one autocommit connection per session, answers
lock questions for the conductor, and destroys everything it created when closed. It never
creates, alters or drops anything it did not create.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import secrets
import shutil
import socket
import sqlite3
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.engines import EngineAdapter
from sandbox.engines.sqlite import SqliteAdapter, write_lock_held
from sandbox.errors import UserError
from sandbox.masking import mask_url, redact, register_secret
from sandbox.userfiles import require_readable

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import URL

    from sandbox.session import Session
    from sandbox.snapshots.store import SnapshotStore

# SQLAlchemy, psycopg2 and python-dotenv are imported where PostgreSQL needs them: a SQLite
# sandbox (the app's default) starts faster and uses ~26 MiB less without them.

ENGINES = ("sqlite", "postgres")
SCRATCH_PREFIX = "dbsandbox_"
# Written into COMMENT ON DATABASE/SCHEMA: `dbsandbox clean` only drops what carries it.
MARKER = "dbsandbox scratch"
TEMP_DIR_PREFIX = "dbsandbox-"
URL_VARIABLES = ("DBSANDBOX_POSTGRES_URL", "DATABASE_URL")
SQLITE_HEADER = b"SQLite format 3\x00"


@dataclass(frozen=True)
class TargetOptions:
    engine: str = "sqlite"
    url: str | None = None
    from_file: Path | None = None
    busy_timeout_ms: int = 200
    cwd: Path = field(default_factory=Path.cwd)


# How long a person takes at the least to type the next statement: a lock wait that the engine
# ends sooner (SQLite's busy timeout, 200 ms by default) is over before anyone could act on it.
HUMAN_PAUSE_S = 1.0


@dataclass(frozen=True)
class WaitInfo:
    """A statement waits: on whom, and for what kind of thing."""

    blockers: list[str]  # session names, or "server process N" for a holder outside the sandbox
    what: str = "a lock"


class Connection:
    """An open session connection: the raw DBAPI connection and how to close it."""

    def __init__(self, raw: Any, closer: Any) -> None:
        self.raw: Any = raw
        self._closer = closer

    def close(self) -> None:
        # A connection the server already dropped cannot be closed cleanly; it is gone anyway.
        with contextlib.suppress(Exception):
            self._closer()


class Target(ABC):
    engine: str
    adapter: EngineAdapter
    description: str
    # How long a statement must run before the conductor asks whether it waits on a lock.
    wait_probe_after_s: float = 0.0
    # How long a cancelled statement may take to stop.
    cancel_grace_s: float = 5.0

    def __init__(self) -> None:
        self.notices: list[str] = []
        self._snapshots: SnapshotStore | None = None

    @property
    def snapshots(self) -> SnapshotStore:
        """This sandbox's named snapshots (made on first use, removed with the sandbox)."""
        if self._snapshots is None:
            self._snapshots = self._make_snapshots()
        return self._snapshots

    @abstractmethod
    def _make_snapshots(self) -> SnapshotStore: ...

    def _close_snapshots(self) -> None:
        if self._snapshots is not None:
            self._snapshots.close()

    @abstractmethod
    def connect(self, session: str) -> Connection: ...

    # Whether every lock wait ends by itself before a person could type the next line (SQLite's
    # busy timeout); the script runner waits such waits out instead of moving on.
    waits_end_on_their_own: bool = False

    @abstractmethod
    def lock_wait(
        self, waiting: Session, sessions: Sequence[Session], earlier_writers: set[str]
    ) -> WaitInfo | None:
        """Whether `waiting`'s running statement waits, and for whom; None when it does not.

        `earlier_writers` names the sessions running a write that started before it. Called
        from the conductor's watcher thread only.
        """

    def describe_wait(self, waiting: Session) -> str | None:
        """Which lock `waiting` waits for, in words, where the engine can tell."""
        return None

    @abstractmethod
    def close(self) -> None: ...

    def __enter__(self) -> Target:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


# --------------------------------------------------------------------------- SQLite


class SqliteTarget(Target):
    """A new database file in a temporary directory, WAL mode, explicit busy timeout."""

    engine = "sqlite"
    wait_probe_after_s = 0.010

    def __init__(self, busy_timeout_ms: int = 200, from_file: Path | None = None) -> None:
        super().__init__()
        if busy_timeout_ms < 0:
            raise UserError("--busy-timeout must be 0 or more milliseconds")
        self.adapter = SqliteAdapter()
        self.busy_timeout_ms = busy_timeout_ms
        # sqlite3_interrupt() does not wake a statement sleeping in the busy handler: a
        # cancelled lock wait ends only when its busy timeout runs out.
        self.cancel_grace_s = 5.0 + busy_timeout_ms / 1000
        if from_file is not None:
            _check_sqlite_file(from_file)
        self.directory = Path(tempfile.mkdtemp(prefix=TEMP_DIR_PREFIX))
        (self.directory / "owner.pid").write_text(str(os.getpid()))
        self.path = self.directory / "sandbox.db"
        try:
            if from_file is not None:
                self._copy_from(from_file)
            with contextlib.closing(sqlite3.connect(self.path)) as conn:
                conn.execute("PRAGMA journal_mode=WAL")
        except BaseException:
            shutil.rmtree(self.directory, ignore_errors=True)
            raise
        origin = f" (a copy of {from_file})" if from_file else ""
        self.description = f"sqlite file {self.path}{origin}"
        # The lock probe must never wait: it only asks whether the write lock is taken.
        self._probe = sqlite3.connect(
            self.path, timeout=0, isolation_level=None, check_same_thread=False
        )

    def _copy_from(self, source: Path) -> None:
        """Copy the user's file byte for byte; SQLite never opens the original.

        Even a read-only SQLite connection to a WAL database creates -wal and -shm files beside
        it, so the original is read as plain bytes (with its WAL, which holds committed pages).
        A rollback journal is copied too: when it is hot (a writer is mid-transaction or
        crashed), the main file may hold uncommitted pages that only the journal can undo, and
        SQLite rolls the *copy* back on first use.
        """
        shutil.copyfile(source, self.path)
        for suffix in ("-wal", "-journal"):
            companion = source.with_name(source.name + suffix)
            if companion.is_file():
                shutil.copyfile(companion, self.path.with_name(self.path.name + suffix))
        with contextlib.closing(sqlite3.connect(self.path)) as conn:
            try:
                verdict = conn.execute("PRAGMA quick_check").fetchone()
            except sqlite3.DatabaseError as exc:
                raise UserError(f"{source} is not a usable SQLite database: {exc}") from None
        if not verdict or verdict[0] != "ok":
            raise UserError(
                f"the copy of {source} is damaged ({verdict[0] if verdict else 'no answer'}); "
                "is another program writing to it?"
            )

    def connect(self, session: str) -> Connection:
        # isolation_level=None is the driver's autocommit: it never opens a transaction of its
        # own, so the learner's BEGIN / COMMIT reach SQLite as typed. `timeout` is SQLite's
        # busy timeout, set explicitly (Python's default would be 5 s).
        raw = sqlite3.connect(
            self.path,
            timeout=self.busy_timeout_ms / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        return Connection(raw, raw.close)

    @property
    def waits_end_on_their_own(self) -> bool:  # type: ignore[override]
        return self.busy_timeout_ms < HUMAN_PAUSE_S * 1000

    def lock_wait(
        self, waiting: Session, sessions: Sequence[Session], earlier_writers: set[str]
    ) -> WaitInfo | None:
        # SQLite has one write lock per database; readers never wait in WAL mode. A session
        # whose transaction holds the write lock cannot be waiting for it.
        if waiting.holds_write_lock or not write_lock_held(self._probe):
            return None
        holders = [
            s.name
            for s in sessions
            if s is not waiting and (s.holds_write_lock or s.name in earlier_writers)
        ]
        if not holders:
            return None  # the lock is the statement's own (a long write), not someone else's
        return WaitInfo(holders)

    def describe_wait(self, waiting: Session) -> str | None:
        return (
            f"the database's one write lock; the busy timeout ends the wait after "
            f"{self.busy_timeout_ms:,} ms"
        )

    def _make_snapshots(self) -> SnapshotStore:
        from sandbox.snapshots.sqlite import SqliteSnapshots

        return SqliteSnapshots(self.path, self.directory / "snapshots", self.busy_timeout_ms)

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self._probe.close()
        # The snapshots live inside the directory: removing it removes them too.
        shutil.rmtree(self.directory, ignore_errors=True)


def _check_sqlite_file(path: Path) -> None:
    require_readable(path)  # stat first: opening a named pipe would wait for a writer
    try:
        with path.open("rb") as handle:
            header = handle.read(len(SQLITE_HEADER))
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}") from None
    if header != SQLITE_HEADER:
        raise UserError(f"{path} is not a SQLite database file")


# --------------------------------------------------------------------------- PostgreSQL


def resolve_postgres_url(cli_url: str | None, cwd: Path) -> str:
    """--url, else DBSANDBOX_POSTGRES_URL, else DATABASE_URL (environment first, then .env)."""
    if cli_url:
        return cli_url
    from dotenv import dotenv_values

    env_file = cwd / ".env"
    file_values = dotenv_values(env_file) if env_file.is_file() else {}
    for variable in URL_VARIABLES:
        value = os.environ.get(variable) or file_values.get(variable)
        if value:
            return value
    raise UserError(
        "--engine postgres needs a server: pass --url postgresql://USER@HOST:PORT/DB "
        "or set DBSANDBOX_POSTGRES_URL (in the environment or a .env file)"
    )


# Greedy up to the last "@": an unencoded "@" inside a password must not split it, or only
# its first part would be masked (and the rest shown as part of the host name).
_PASSWORD_IN_TEXT = re.compile(r"(://[^:/@\s]*:)(\S*)(@)")


def parse_postgres_url(text: str) -> URL:
    """Parse and check a PostgreSQL URL; its password is registered for redaction."""
    import sqlalchemy as sa

    # Mask before anything can echo the text: the URL may not even parse.
    for match in _PASSWORD_IN_TEXT.finditer(text):
        register_secret(match.group(2))
    try:
        url = sa.make_url(text)
    except Exception:
        raise UserError(f"not a database URL: {redact(text)}") from None
    if "@" in (url.host or ""):
        # SQLAlchemy splits at the first "@": the password's tail would become the host name.
        raise UserError(
            "the URL has more than one @: write an @ inside the user name or password as %40"
        )
    register_secret(url.password if isinstance(url.password, str) else None)
    if url.drivername not in ("postgres", "postgresql", "postgresql+psycopg2"):
        raise UserError(
            f"unsupported URL scheme {url.drivername!r}: use postgresql://USER@HOST:PORT/DB"
        )
    return url.set(drivername="postgresql+psycopg2", database=url.database or "postgres")


def _pg_engine(url: URL, application_name: str, options: str | None = None) -> sa.Engine:
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    args: dict[str, Any] = {"application_name": application_name, "connect_timeout": 5}
    if options:
        args["options"] = options
    return sa.create_engine(
        url,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        # No rollback on return: in autocommit there is nothing to reset, and a connection the
        # server already dropped would log a traceback.
        pool_reset_on_return=None,
        connect_args=args,
    )


def connect_admin(url: URL, application_name: str) -> tuple[sa.Engine, Any, sa.Connection]:
    engine = _pg_engine(url, application_name)
    try:
        sa_conn = engine.connect()
    except Exception as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()
        raise UserError(
            f"cannot connect to {mask_url(url)}: {redact(reason[0] if reason else str(exc))}"
        ) from None
    return engine, sa_conn.connection.dbapi_connection, sa_conn


def quote_ident(identifier: str) -> str:
    return '"' + identifier.replace('"', '""') + '"'


def _scratch_name() -> str:
    stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d_%H%M%S")
    return f"{SCRATCH_PREFIX}{stamp}_{secrets.token_hex(3)}"


def _marker_comment(what: str | None = None) -> str:
    when = dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
    about = f" ({what})" if what else ""
    return (
        f"{MARKER}{about}: created {when} by pid {os.getpid()} on {socket.gethostname()}; "
        "safe to drop"
    )


class PostgresTarget(Target):
    """A scratch database (or, without CREATEDB, a scratch schema) on a PostgreSQL server."""

    engine = "postgres"

    def __init__(self, url_text: str) -> None:
        super().__init__()
        import psycopg2.errors

        from sandbox.engines.postgres import PostgresAdapter

        self.adapter = PostgresAdapter()
        base = parse_postgres_url(url_text)
        self.name = _scratch_name()
        # Every connection of this sandbox carries its name: `dbsandbox clean` tells live
        # sandboxes from orphans by looking for it in pg_stat_activity.
        self.application_name = f"dbsandbox:{self.name}"
        self._admin_engine, self._admin, self._admin_sa = connect_admin(base, self.application_name)
        self.mode = "database"
        options: str | None = None
        try:
            with self._admin.cursor() as cursor:
                try:
                    cursor.execute(f"CREATE DATABASE {quote_ident(self.name)}")
                    cursor.execute(
                        f"COMMENT ON DATABASE {quote_ident(self.name)} IS %s", (_marker_comment(),)
                    )
                    self.url = base.set(database=self.name)
                except psycopg2.errors.InsufficientPrivilege:
                    self.mode = "schema"
                    self.url = base
                    self._create_schema(cursor, base)
                    options = f"-c search_path={self.name}"
        except BaseException:
            self._drop()
            self._admin_sa.close()
            self._admin_engine.dispose()
            raise
        if self.mode == "schema":
            self.notices.append(
                f"the role may not create databases: using scratch schema {self.name} "
                f"in database {base.database} instead (dropped on exit)"
            )
            self.description = f"postgres schema {self.name} in {mask_url(base)}"
        else:
            self.description = f"postgres database {mask_url(self.url)}"
        self._options = options
        self._engines: dict[str, sa.Engine] = {}
        self._watch: Connection | None = None

    def _create_schema(self, cursor: Any, base: URL) -> None:
        import psycopg2

        try:
            cursor.execute(f"CREATE SCHEMA {quote_ident(self.name)}")
            cursor.execute(
                f"COMMENT ON SCHEMA {quote_ident(self.name)} IS %s", (_marker_comment(),)
            )
        except psycopg2.Error as exc:
            raise UserError(
                f"the role may neither create databases nor schemas in {base.database}: "
                f"{redact(exc.diag.message_primary or str(exc))}"
            ) from None

    def connect(self, session: str) -> Connection:
        engine = self._engines.get(session)
        if engine is None:
            engine = _pg_engine(self.url, f"{self.application_name}:{session}", self._options)
            self._engines[session] = engine
        import sqlalchemy as sa

        try:
            sa_connection = engine.connect()
        except sa.exc.DBAPIError as exc:
            reason = (str(exc.orig).strip().splitlines() or ["connection failed"])[0]
            raise UserError(f"session {session} cannot connect: {redact(reason)}") from None
        return Connection(sa_connection.connection.dbapi_connection, sa_connection.close)

    @property
    def admin(self) -> Any:
        """The autocommit connection to the server's own database that creates and drops."""
        return self._admin

    def marker_comment(self, what: str | None = None) -> str:
        return _marker_comment(what)

    def open_database(self, database: str, role: str) -> Connection:
        """A connection to one of this sandbox's databases (a snapshot, or the live one)."""
        import sqlalchemy as sa

        engine = _pg_engine(self.url.set(database=database), f"{self.application_name}:{role}")
        try:
            sa_connection = engine.connect()
        except sa.exc.DBAPIError as exc:
            engine.dispose()
            reason = (str(exc.orig).strip().splitlines() or ["connection failed"])[0]
            raise UserError(f"cannot connect to {database}: {redact(reason)}") from None

        def close() -> None:
            sa_connection.close()
            engine.dispose()

        return Connection(sa_connection.connection.dbapi_connection, close)

    def _make_snapshots(self) -> SnapshotStore:
        from sandbox.snapshots.postgres import PostgresSnapshots

        return PostgresSnapshots(self)

    def _monitor(self) -> Any:
        """The watcher's own connection to the sandbox database (pg_locks names its tables).

        Opened on first need, so a scenario's start snapshot can still be a template clone;
        reopened after a restore, which drops the database it was connected to.
        """
        if self._watch is None:
            self._watch = self.open_database(self.url.database or "postgres", "monitor")
        return self._watch.raw

    def _ask(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        import psycopg2

        for attempt in (1, 2):
            try:
                with self._monitor().cursor() as cursor:
                    cursor.execute(sql, args)
                    return list(cursor.fetchall())
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                self._stop_watching()
                if attempt == 2:
                    raise
        return []

    def lock_wait(
        self, waiting: Session, sessions: Sequence[Session], earlier_writers: set[str]
    ) -> WaitInfo | None:
        if waiting.pid is None:
            return None
        # A SERIALIZABLE READ ONLY DEFERRABLE transaction waits for a safe snapshot, which
        # pg_blocking_pids does not report: it waits on the serializable transactions named.
        rows = self._ask(
            "SELECT pg_blocking_pids(%s), pg_safe_snapshot_blocking_pids(%s)",
            (waiting.pid, waiting.pid),
        )
        locks, safe = rows[0] if rows else ([], [])
        by_pid = {s.pid: s.name for s in sessions if s.pid is not None}

        def named(pids: list[int]) -> list[str]:
            return [by_pid.get(pid, f"server process {pid}") for pid in pids]

        if locks:
            return WaitInfo(named(locks), "a lock")
        if safe:
            return WaitInfo(named(safe), "a safe snapshot")
        return None

    def describe_wait(self, waiting: Session) -> str | None:
        if waiting.pid is None:
            return None
        rows = self._ask(_WAITED_LOCK_SQL, (waiting.pid,))
        if not rows:
            return (
                "READ ONLY DEFERRABLE: it starts once no serializable transaction that began "
                "before it can still make it see an anomaly"
            )
        return describe_lock(*rows[0])

    def _stop_watching(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def _drop(self) -> None:
        with self._admin.cursor() as cursor:
            if self.mode == "database":
                # FORCE ends connections a crashed session may have left behind.
                cursor.execute(f"DROP DATABASE IF EXISTS {quote_ident(self.name)} WITH (FORCE)")
            else:
                cursor.execute(f"DROP SCHEMA IF EXISTS {quote_ident(self.name)} CASCADE")

    def close(self) -> None:
        self._stop_watching()
        for engine in self._engines.values():
            engine.dispose()
        try:
            self._close_snapshots()
            self._drop()
        finally:
            self._admin_sa.close()
            self._admin_engine.dispose()


def open_target(options: TargetOptions) -> Target:
    """Create the sandbox the options describe; raises UserError on bad input."""
    if options.engine not in ENGINES:
        raise UserError(f"unknown engine {options.engine!r}: choose sqlite or postgres")
    if options.engine == "sqlite":
        if options.url:
            raise UserError("--url is for --engine postgres; SQLite sandboxes need no server")
        return SqliteTarget(options.busy_timeout_ms, options.from_file)
    if options.from_file is not None:
        raise UserError("--from copies a SQLite file; it works only with --engine sqlite")
    return PostgresTarget(resolve_postgres_url(options.url, options.cwd))


# The lock a backend waits for; for a row, the tuple lock it holds while it waits for the row's
# writer names the row (pg_locks shows the transaction id only).
_WAITED_LOCK_SQL = """
SELECT w.locktype, w.mode, c.relname, coalesce(w.page, t.page), coalesce(w.tuple, t.tuple),
       w.transactionid::text, tc.relname
FROM pg_locks w
LEFT JOIN pg_class c ON c.oid = w.relation
LEFT JOIN pg_locks t ON t.pid = w.pid AND t.locktype = 'tuple' AND t.granted
LEFT JOIN pg_class tc ON tc.oid = t.relation
WHERE w.pid = %s AND NOT w.granted
LIMIT 1
"""


def describe_lock(
    locktype: str,
    mode: str,
    relation: str | None,
    page: int | None,
    tuple_: int | None,
    xid: str | None,
    row_relation: str | None,
) -> str:
    """One waited-for lock from pg_locks, in words."""
    if locktype == "transactionid":
        row = f" to change row ({page},{tuple_}) of {row_relation}" if row_relation else ""
        return f"{mode} on transaction {xid}: a row lock, held until that transaction ends{row}"
    if locktype == "tuple" and relation:
        return f"{mode} on row ({page},{tuple_}) of {relation}"
    if locktype == "relation" and relation:
        return f"{mode} on table {relation}"
    return f"{mode} on a {locktype} lock"
