"""Where a sandbox lives: a temporary SQLite file, or a scratch database on a PostgreSQL server.

A target creates the throwaway database, opens one autocommit connection per session, answers
lock questions for the conductor, and destroys everything it created when closed. It never
creates, alters or drops anything it did not create.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import datetime as dt
import os
import re
import secrets
import shutil
import socket
import sqlite3
import tempfile
import threading
import time
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sandbox.engines import EngineAdapter
from sandbox.engines.sqlite import SqliteAdapter, write_lock_held
from sandbox.errors import UserError
from sandbox.locks import NEW, RELKINDS, HeldLock, QueuePlace, RelationFile
from sandbox.masking import first_line, is_password_key, mask_url, register_secret, scrub
from sandbox.options import TargetOptions as TargetOptions  # re-exported: its old home
from sandbox.ownership import Record
from sandbox.userfiles import require_readable
from sandbox.worker import Worker, WorkerStopped, detached

if TYPE_CHECKING:
    import sqlalchemy as sa
    from sqlalchemy.engine import URL

    from sandbox.outcome import SqlError
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


# How long a person takes at the least to type the next statement: a lock wait that the engine
# ends sooner (SQLite's busy timeout, 200 ms by default) is over before anyone could act on it.
HUMAN_PAUSE_S = 1.0


class Waiter(Protocol):
    """What the lock watcher needs of a session, or of a traced program's connection."""

    name: str
    pid: int | None  # the server's process id (PostgreSQL)
    holds_write_lock: bool  # SQLite: its open transaction has written


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


# Sandboxes this process opened and has not removed: whatever unwinds past a sandbox's own
# cleanup (a crash, a Ctrl+C at the wrong moment), the CLI closes them before it exits.
_open: dict[int, Target] = {}
# Sandboxes closed with something left behind, for an honest last word.
_left: dict[int, Target] = {}
_registry_lock = threading.Lock()


def open_targets(include_closed: bool = False) -> list[Target]:
    with _registry_lock:
        found = list(_open.values())
        if include_closed:
            found += [t for t in _left.values() if t not in found]
    return found


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
        # Risks of the place the sandbox lives in, said once per run (stderr, an app notice).
        self.warnings: list[str] = []
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

    @property
    def own_directory(self) -> Path | None:
        """The directory whose files are the sandbox's own, if it has one (SQLite).

        The guard lets ATTACH and VACUUM INTO reach files in there and nowhere else.
        """
        return None

    # Whether every lock wait ends by itself before a person could type the next line (SQLite's
    # busy timeout); the script runner waits such waits out instead of moving on.
    waits_end_on_their_own: bool = False

    @abstractmethod
    def lock_wait(
        self, waiting: Waiter, sessions: Sequence[Waiter], earlier_writers: set[str]
    ) -> WaitInfo | None:
        """Whether `waiting`'s running statement waits, and for whom; None when it does not.

        `earlier_writers` names the sessions running a write that started before it. Called
        from the conductor's watcher thread only.
        """

    def describe_wait(self, waiting: Session) -> str | None:
        """Which lock `waiting` waits for, in words, where the engine can tell."""
        return None

    def lock_queue(self, waiting: Waiter, sessions: Sequence[Waiter]) -> list[QueuePlace] | None:
        """Who stands ahead of `waiting` for the lock it waits for: those holding it, and those
        queued before it wanting a mode that conflicts (PostgreSQL grants in order); None
        where the engine cannot tell."""
        return None

    # Whether the engine can say which locks a session holds and which relations a statement
    # rewrote (`held_locks`, `relation_files`): PostgreSQL, from pg_locks and pg_class.
    observes_locks: bool = False

    def held_locks(self, session: Waiter) -> list[HeldLock]:
        """The relation locks `session` holds right now, on user relations only."""
        return []

    def relation_files(self) -> dict[int, RelationFile]:
        """Every user relation of the sandbox and its data file, as committed."""
        return {}

    def wait_in_error(
        self, waiting: Waiter, error: SqlError, sessions: Sequence[Waiter]
    ) -> WaitInfo | None:
        """A lock wait the engine's error proves, for a statement a timeout ended before the
        watcher saw it wait (a 10 ms statement_timeout is shorter than the watcher's first
        look); None when the error says nothing of the kind. Called on the session's thread
        right after the error, while whoever held the lock still holds it."""
        return None

    def cancel_statement(self, raw: Any, pid: int | None) -> None:
        """Ask the engine to stop what runs on a session's connection; returns at once."""
        self.adapter.cancel(raw)

    @abstractmethod
    def close(self) -> None: ...

    @abstractmethod
    def program_url(self) -> str:
        """The sandbox as a SQLAlchemy URL for a program's DATABASE_URL (`dbsandbox trace`)."""

    def _opened(self) -> None:
        with _registry_lock:
            _open[id(self)] = self

    def _closed(self, leftovers: bool = False) -> None:
        with _registry_lock:
            _open.pop(id(self), None)
            if leftovers:
                _left[id(self)] = self
            else:
                _left.pop(id(self), None)

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
        # The process is named in the directory's name from the moment it exists: `dbsandbox
        # clean` can tell an orphan even if a kill came before owner.pid was written.
        self.directory = Path(tempfile.mkdtemp(prefix=f"{TEMP_DIR_PREFIX}{os.getpid()}-"))
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
        self._opened()

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

    @property
    def own_directory(self) -> Path:
        return self.directory

    def program_url(self) -> str:
        return f"sqlite:///{self.path}"

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
        self, waiting: Waiter, sessions: Sequence[Waiter], earlier_writers: set[str]
    ) -> WaitInfo | None:
        # SQLite has one write lock per database; readers never wait in WAL mode. A session
        # whose transaction holds the write lock cannot be waiting for it; nor can one whose
        # transaction has read: SQLite never runs the busy handler for it (waiting could
        # deadlock) and refuses the write at once with SQLITE_BUSY, however long that takes
        # to come back on a busy machine.
        if waiting.holds_write_lock or getattr(waiting, "holds_read_snapshot", False):
            return None
        if not write_lock_held(self._probe):
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
        self._closed()


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


URL_FORMS = (
    "postgresql://USER[:PASSWORD]@HOST[:PORT]/DB, or libpq key=value pairs such as "
    "'host=HOST user=USER dbname=DB'"
)
_NOT_SHOWN = "it is not shown, since it may hold a password"
_SCHEME = re.compile(r"\s*([A-Za-z][A-Za-z0-9+.\-]*)://")
_KEYWORD = re.compile(r"\s*[A-Za-z_]\w*\s*=")
_POSTGRES_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg2")


def url_scheme(text: str) -> str | None:
    """The scheme of a URL (`mysql` in mysql://…), None for anything else."""
    match = _SCHEME.match(text)
    return match.group(1).lower() if match else None


def is_postgres_url(text: str) -> bool:
    """Whether `text` is meant for PostgreSQL: a postgresql:// URL or libpq key=value pairs."""
    scheme = url_scheme(text)
    return scheme in _POSTGRES_SCHEMES if scheme else _KEYWORD.match(text) is not None


def parse_postgres_url(text: str) -> URL:
    """Parse and check a PostgreSQL URL or libpq key=value string.

    Nothing of `text` is ever echoed in an error (it may hold a password). The passwords it
    carries, and PGPASSWORD, are registered for `scrub` to mask in connection errors.
    """
    if url_scheme(text) is not None:
        url = _parse_url(text)
    elif _KEYWORD.match(text):
        url = _parse_keywords(text)
    else:
        raise UserError(f"not a PostgreSQL URL ({_NOT_SHOWN}): expected {URL_FORMS}")
    shown = (url.username, url.host, url.database)
    register_secret(url.password if isinstance(url.password, str) else None, shown)
    for key, values in url.query.items():
        if is_password_key(key):
            for value in (values,) if isinstance(values, str) else values:
                register_secret(value, shown)
    register_secret(os.environ.get("PGPASSWORD"), shown)
    return url.set(drivername="postgresql+psycopg2", database=url.database or "postgres")


def _parse_url(text: str) -> URL:
    import sqlalchemy as sa

    try:
        url = sa.make_url(text.strip())
    except Exception:
        raise UserError(f"not a valid URL ({_NOT_SHOWN}): expected {URL_FORMS}") from None
    if "@" in (url.host or ""):
        # SQLAlchemy splits at the first "@": the password's tail would become the host name.
        raise UserError(
            "the URL has more than one @: write an @ inside the user name or password as %40"
        )
    if url.drivername not in _POSTGRES_SCHEMES:
        raise UserError(
            f"unsupported URL scheme {url.drivername!r}: use postgresql://USER@HOST:PORT/DB"
        )
    return url


def _parse_keywords(text: str) -> URL:
    """A libpq key=value string as a URL; libpq itself reads the quoting and escapes."""
    import psycopg2
    import psycopg2.extensions
    import sqlalchemy as sa

    try:
        params = dict(psycopg2.extensions.parse_dsn(text))
    except psycopg2.Error:
        # libpq's own message quotes the offending part of the string.
        raise UserError(
            f"not a valid key=value connection string ({_NOT_SHOWN}): expected {URL_FORMS}"
        ) from None
    host = params.pop("host", None)
    port = params.pop("port", None)
    query = dict(params)
    user = query.pop("user", None)
    password = query.pop("password", None)
    database = query.pop("dbname", None)
    simple_host = host is None or not (host.startswith("/") or "," in host or ":" in host)
    simple_port = port is None or port.isdigit()
    if not (simple_host and simple_port):
        # A socket directory or several hosts: SQLAlchemy hands these to libpq as they are.
        query.update({k: v for k, v in (("host", host), ("port", port)) if v is not None})
        host = port = None
    return sa.engine.URL.create(
        "postgresql",
        username=user,
        password=password,
        host=host,
        port=int(port) if port else None,
        database=database,
        query=query,
    )


def _pg_engine(url: URL, application_name: str, options: str | None = None) -> sa.Engine:
    import sqlalchemy as sa
    from sqlalchemy.pool import NullPool

    from sandbox.engines.postgres import keep_infinities

    args: dict[str, Any] = {"application_name": application_name, "connect_timeout": 5}
    if options:
        args["options"] = options
    engine = sa.create_engine(
        url,
        poolclass=NullPool,
        isolation_level="AUTOCOMMIT",
        # No rollback on return: in autocommit there is nothing to reset, and a connection the
        # server already dropped would log a traceback.
        pool_reset_on_return=None,
        connect_args=args,
    )
    sa.event.listen(engine, "connect", lambda raw, _record: keep_infinities(raw))
    return engine


def connect_admin(url: URL, application_name: str) -> tuple[sa.Engine, Any, sa.Connection]:
    engine = _pg_engine(url, application_name)
    try:
        sa_conn = engine.connect()
    except Exception as exc:
        engine.dispose()
        reason = str(getattr(exc, "orig", exc)).strip().splitlines()
        raise UserError(
            f"cannot connect to {mask_url(url)}: {scrub(reason[0] if reason else str(exc))}"
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
        self._base = base
        self.name = _scratch_name()
        # Every connection of this sandbox carries its name: `dbsandbox clean` tells live
        # sandboxes from orphans by looking for it in pg_stat_activity.
        self.application_name = f"dbsandbox:{self.name}"
        # What `close` could not remove (the server gone, frozen or refusing), by name.
        self.leftovers: list[str] = []
        self.leftover_reason: str | None = None
        self._admin_engine, self._admin, self._admin_sa = connect_admin(base, self.application_name)
        self.mode = "database"
        self.record = Record(
            self.name,
            server={
                "host": base.host,
                "port": base.port,
                "user": base.username,
                "system_identifier": system_identifier(self._admin),
            },
        )
        options: str | None = None
        try:
            # Inside the try: a Ctrl+C at any point here must still close what was opened.
            self.warnings += _role_warnings(self._admin)
            with self._admin.cursor() as cursor:
                # Recorded before it exists: a kill at any moment leaves nothing unrecorded.
                self.record.claim(self.name)
                try:
                    cursor.execute(f"CREATE DATABASE {quote_ident(self.name)}")
                    self.record.created(self.name, database_oid(cursor, self.name))
                    cursor.execute(
                        f"COMMENT ON DATABASE {quote_ident(self.name)} IS %s", (_marker_comment(),)
                    )
                    self.url = base.set(database=self.name)
                except psycopg2.errors.InsufficientPrivilege:
                    self.record.release(self.name)
                    self.mode = self.record.mode = "schema"
                    self.record.database = base.database
                    self.url = base
                    self._create_schema(cursor, base)
                    options = f"-c search_path={self.name}"
        except BaseException as exc:
            with contextlib.suppress(Exception):
                self._remove_everything()
            with contextlib.suppress(Exception):
                self._admin_sa.close()
            with contextlib.suppress(Exception):
                self._admin_engine.dispose()
            if isinstance(exc, psycopg2.Error):  # e.g. the server restarted right then
                raise UserError(
                    f"cannot create the sandbox on {mask_url(base)}: {first_line(exc)}"
                ) from None
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
        self._asker: Worker | None = None
        # By server process: the (relation, mode) pairs it was last seen holding, named.
        self._held: dict[int, tuple[frozenset[tuple[Any, ...]], list[HeldLock]]] = {}
        self._is_closed = False
        self._opened()

    def _create_schema(self, cursor: Any, base: URL) -> None:
        import psycopg2

        try:
            self.record.claim(self.name)
            cursor.execute(f"CREATE SCHEMA {quote_ident(self.name)}")
            cursor.execute(
                "SELECT oid FROM pg_catalog.pg_namespace WHERE nspname = %s", (self.name,)
            )
            self.record.created(self.name, int(cursor.fetchone()[0]))
            cursor.execute(
                f"COMMENT ON SCHEMA {quote_ident(self.name)} IS %s", (_marker_comment(),)
            )
        except psycopg2.Error as exc:
            raise UserError(
                f"the role may neither create databases nor schemas in {base.database}: "
                f"{scrub(exc.diag.message_primary or str(exc))}"
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
            raise UserError(f"session {session} cannot connect: {scrub(reason)}") from None
        return Connection(sa_connection.connection.dbapi_connection, sa_connection.close)

    @property
    def admin(self) -> Any:
        """The autocommit connection to the server's own database that creates and drops.

        Reopened when the server dropped it (a restart, a terminated backend): the next
        operation gets a working connection instead of "connection already closed".
        """
        if self._admin.closed:
            self._reconnect_admin()
        return self._admin

    def _reconnect_admin(self) -> None:
        old_sa, old_engine = self._admin_sa, self._admin_engine
        self._admin_engine, self._admin, self._admin_sa = connect_admin(
            self._base, self.application_name
        )
        with contextlib.suppress(Exception):
            old_sa.close()
        with contextlib.suppress(Exception):
            old_engine.dispose()

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
            raise UserError(f"cannot connect to {database}: {scrub(reason)}") from None

        def close() -> None:
            sa_connection.close()
            engine.dispose()

        return Connection(sa_connection.connection.dbapi_connection, close)

    def program_url(self) -> str:
        # The password goes into the child's environment only, never into output: the
        # trace's report names the sandbox by `description`, which masks it.
        url = self.url.update_query_dict({"application_name": f"{self.application_name}:trace"})
        if self._options:
            url = url.update_query_dict({"options": self._options})
        return url.render_as_string(hide_password=False)

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

    def _monitor_worker(self) -> Worker:
        """The thread that asks the monitor's questions (made on first need)."""
        if self._asker is None:
            self._asker = Worker("dbsandbox-monitor")
        return self._asker

    def _ask(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        """One catalog question on the monitor connection, answered within MONITOR_ANSWER_S.

        A frozen server never answers, and the watcher that asks also enforces the statement
        timeout: the question runs on the monitor's own thread, and one left unanswered has
        its connection cut (the next question opens a new one).
        """
        import psycopg2

        for attempt in (1, 2):
            answer = self._monitor_worker().submit(self._ask_now, sql, args)
            try:
                return answer.result(timeout=MONITOR_ANSWER_S)
            except cf.TimeoutError:
                watch = self._watch
                if watch is not None:
                    self.adapter.sever(watch.raw)
                raise psycopg2.OperationalError(
                    f"the server did not answer within {MONITOR_ANSWER_S:g} s"
                ) from None
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                self._stop_watching()
                if attempt == 2:
                    raise
        return []

    def cancel_statement(self, raw: Any, pid: int | None) -> None:
        # pg_cancel_backend on the monitor's own thread: the caller never waits, and a frozen
        # server stalls only that thread (psycopg2's own cancel would hold the GIL meanwhile).
        if pid is None:
            return
        with contextlib.suppress(WorkerStopped):
            self._monitor_worker().submit(self._cancel_now, pid)

    def _cancel_now(self, pid: int) -> None:
        with contextlib.suppress(Exception):  # the answer is the statement's own outcome
            self._ask_now("SELECT pg_catalog.pg_cancel_backend(%s)", (pid,))

    def _ask_now(self, sql: str, args: tuple[Any, ...]) -> list[tuple[Any, ...]]:
        with self._monitor().cursor() as cursor:
            cursor.execute(sql, args)
            return list(cursor.fetchall())

    def lock_wait(
        self, waiting: Waiter, sessions: Sequence[Waiter], earlier_writers: set[str]
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

    observes_locks = True

    def lock_queue(self, waiting: Waiter, sessions: Sequence[Waiter]) -> list[QueuePlace] | None:
        if waiting.pid is None:
            return None
        by_pid = {s.pid: s.name for s in sessions if s.pid is not None}

        def named(pid: int) -> str:
            return by_pid.get(pid, f"server process {pid}")

        rows = self._ask(_QUEUE_SQL, (waiting.pid, waiting.pid, waiting.pid))
        return [
            QueuePlace(
                named(pid),
                tuple(holds or ()),
                wants,
                tuple(named(p) for p in (waits_for or ()) if wants is not None),
                locktype or "relation",
            )
            for pid, holds, wants, waits_for, locktype in rows
        ]

    def held_locks(self, session: Waiter) -> list[HeldLock]:
        if session.pid is None:
            return []
        # pg_locks alone is cheap; naming the relations (pg_class, pg_index, TOAST owners)
        # costs three times as much, and a transaction's statements mostly leave the same
        # locks held: they are named again only when the (relation, mode) pairs change.
        raw = frozenset(self._ask(_RAW_HELD_SQL, (session.pid,)))
        last = self._held.get(session.pid)
        if last is not None and last[0] == raw:
            return list(last[1])
        named = self._name_locks(session.pid) if raw else []
        self._held[session.pid] = (raw, named)
        return list(named)

    def _name_locks(self, pid: int) -> list[HeldLock]:
        found = set()
        for mode, relname, relkind, table, oid in self._ask(_HELD_SQL, (pid,)):
            if relname is None:
                found.add(HeldLock(None, mode, NEW, oid=oid))
            else:
                found.add(HeldLock(relname, mode, RELKINDS.get(relkind, relkind), table))
        return sorted(found, key=lambda x: (x.relation or "", x.mode, x.oid or 0))

    def relation_files(self) -> dict[int, RelationFile]:
        # In schema mode the database is shared: only the sandbox's own schema is its own.
        schema = self.name if self.mode == "schema" else None
        return {
            oid: RelationFile(name, RELKINDS.get(kind, kind), filenode, table)
            for oid, name, kind, filenode, table in self._ask(_FILES_SQL, (schema, schema))
        }

    def wait_in_error(
        self, waiting: Waiter, error: SqlError, sessions: Sequence[Waiter]
    ) -> WaitInfo | None:
        row = _ROW_WAIT_CONTEXT.search(error.context or "")
        timed_out = error.code == "55P03" and "lock timeout" in error.message
        if row is None and not timed_out:
            return None
        if row is None:
            # lock_timeout gives no relation: the lock's holder cannot be told afterwards.
            return WaitInfo([], "a lock")
        relation = row.group("relation").replace('""', '"')
        what = f"a row lock in {relation}"
        try:
            pids = [pid for (pid,) in self._ask(_ROW_HOLDERS_SQL, (relation, waiting.pid or -1))]
        except Exception:  # the holders are a detail: the error alone proves the wait
            return WaitInfo([], what)
        by_pid = {s.pid: s.name for s in sessions if s.pid is not None}
        return WaitInfo([by_pid.get(pid, f"server process {pid}") for pid in pids], what)

    def _stop_watching(self) -> None:
        if self._watch is not None:
            self._watch.close()
            self._watch = None

    def drop_owned(self, obj: str) -> None:
        """Drop one object of this sandbox's record (a database, or its scratch schema), then
        strike it from the record. Raises the driver's error when the server refuses."""
        with self.admin.cursor() as cursor:
            if self.mode == "database":
                # FORCE ends connections a crashed session may have left behind.
                cursor.execute(f"DROP DATABASE IF EXISTS {quote_ident(obj)} WITH (FORCE)")
            else:
                cursor.execute(f"DROP SCHEMA IF EXISTS {quote_ident(obj)} CASCADE")
        self.record.release(obj)

    def _remove_everything(self) -> None:
        """Drop every object the record names, reconnecting while the server comes back."""
        import psycopg2

        deadline = time.monotonic() + RECONNECT_FOR_S
        self._close_snapshots()
        while True:
            try:
                # The live database last: snapshots are clones of it.
                for obj in sorted(self.record.objects, key=lambda o: o == self.name):
                    self.drop_owned(obj)
                self.record.forget()
                return
            except (psycopg2.OperationalError, psycopg2.InterfaceError, UserError) as exc:
                # A restart or a terminated admin backend: try again on a new connection.
                self.leftover_reason = first_line(exc)
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.5)
                with contextlib.suppress(UserError):
                    self._reconnect_admin()

    def close(self) -> None:
        """Remove everything this sandbox made; bounded even when the server is frozen.

        What could not be removed stays in the record (`dbsandbox clean` finds it) and is
        listed in `leftovers`, with the reason in `leftover_reason`.
        """
        if self._is_closed:
            return
        self._is_closed = True
        if self._asker is not None:
            self._asker.shutdown()
        self._stop_watching()
        for engine in self._engines.values():
            engine.dispose()
        removal = detached(self._remove_everything, name="dbsandbox-drop")
        try:
            removal.result(timeout=CLOSE_WITHIN_S)
        except cf.TimeoutError:
            self.leftover_reason = f"the server did not answer within {CLOSE_WITHIN_S:g} s"
        except Exception as exc:
            self.leftover_reason = first_line(exc)
        else:
            self.leftover_reason = None
        self.leftovers = sorted(self.record.objects)
        self._closed(leftovers=bool(self.leftovers))
        if removal.done():
            with contextlib.suppress(Exception):
                self._admin_sa.close()
            with contextlib.suppress(Exception):
                self._admin_engine.dispose()


# How long closing a sandbox keeps reconnecting to a server that went away (a restart takes
# a few seconds), and how long it waits in all before it gives up on a server that does not
# answer (frozen): then it says what is left and that `dbsandbox clean` will remove it.
RECONNECT_FOR_S = 15.0
# How long the watcher's catalog question may take: pg_locks answers in milliseconds.
MONITOR_ANSWER_S = 5.0
CLOSE_WITHIN_S = 30.0


def system_identifier(admin: Any) -> str | None:
    """The server's unique id (pg_control_system), where the role may read it."""
    import psycopg2

    try:
        with admin.cursor() as cursor:
            cursor.execute("SELECT system_identifier::text FROM pg_catalog.pg_control_system()")
            return str(cursor.fetchone()[0])
    except psycopg2.Error:
        return None


def database_oid(cursor: Any, name: str) -> int | None:
    cursor.execute("SELECT oid FROM pg_catalog.pg_database WHERE datname = %s", (name,))
    row = cursor.fetchone()
    return int(row[0]) if row else None


def _role_warnings(admin: Any) -> list[str]:
    """What the URL's role may do that no guard can take back: SUPERUSER, CREATEROLE."""
    with admin.cursor() as cursor:
        cursor.execute(
            "SELECT rolname, rolsuper, rolcreaterole FROM pg_roles WHERE rolname = current_user"
        )
        row = cursor.fetchone()
    if row is None:
        return []
    name, superuser, createrole = row
    if not superuser and not createrole:
        return []
    what, can = (
        ("is a superuser", "reach anything on the server")
        if superuser
        else ("has CREATEROLE", "create and change roles server-wide")
    )
    return [
        f"role {name} {what}: the guard blocks statements that reach outside the sandbox, but "
        f"with this role SQL the guard cannot read (built at run time, or inside functions "
        f"that already exist) can still {can}; use a role without SUPERUSER or CREATEROLE "
        "on a shared server"
    ]


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
# The CONTEXT PostgreSQL adds to an error raised while a statement waited for a row's
# transaction to end (XactLockTableWaitErrorCb in lmgr.c: updating, deleting, locking,
# inserting index tuple, checking uniqueness, ... "tuple (0,1) in relation \"accounts\"").
_ROW_WAIT_CONTEXT = re.compile(
    r'while [a-z ]+ tuple \(\d+,\d+\) in relation "(?P<relation>(?:[^"]|"")+)"'
)

# Who can hold row locks in a table: the other backends of this database holding a granted
# lock on it in a mode that writes or locks rows.
_ROW_HOLDERS_SQL = """
SELECT DISTINCT l.pid
FROM pg_locks l
JOIN pg_class c ON c.oid = l.relation
WHERE c.relname = %s AND l.granted AND l.pid <> %s
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND l.mode IN ('RowShareLock', 'RowExclusiveLock', 'ShareRowExclusiveLock',
                 'ExclusiveLock', 'AccessExclusiveLock')
ORDER BY l.pid
"""

# The same lockable object in two pg_locks rows (a and b).
_SAME_OBJECT = """
a.locktype = b.locktype
AND a.database IS NOT DISTINCT FROM b.database AND a.relation IS NOT DISTINCT FROM b.relation
AND a.page IS NOT DISTINCT FROM b.page AND a.tuple IS NOT DISTINCT FROM b.tuple
AND a.virtualxid IS NOT DISTINCT FROM b.virtualxid
AND a.transactionid IS NOT DISTINCT FROM b.transactionid
AND a.classid IS NOT DISTINCT FROM b.classid AND a.objid IS NOT DISTINCT FROM b.objid
AND a.objsubid IS NOT DISTINCT FROM b.objsubid
"""

# Everyone pg_blocking_pids names for a waiting backend, in its order, with what each has on
# the object the waiter wants: granted modes (it holds the lock up) or the mode it waits for
# itself (it is queued ahead, and since PostgreSQL grants in order, a later request waits
# behind it even when it does not conflict with the holders), and whom that wait is for.
_QUEUE_SQL = f"""
SELECT q.pid,
       (SELECT array_agg(DISTINCT a.mode) FROM pg_locks a, pg_locks b
        WHERE b.pid = %s AND NOT b.granted AND a.pid = q.pid AND a.granted AND {_SAME_OBJECT}),
       (SELECT min(a.mode) FROM pg_locks a WHERE a.pid = q.pid AND NOT a.granted),
       pg_blocking_pids(q.pid),
       (SELECT w.locktype FROM pg_locks w WHERE w.pid = %s AND NOT w.granted LIMIT 1)
FROM unnest(pg_blocking_pids(%s)) WITH ORDINALITY AS q(pid, n)
ORDER BY q.n
"""

# A session's granted relation locks on user relations. System catalogs are left out (every
# statement touches them, and the watcher's own questions lock them too), and so are the
# transaction's own virtualxid/transactionid locks. A relation the catalog does not show is
# one the session's open transaction created: only it can see that row of pg_class yet.
_HELD_SQL = """
SELECT l.mode, c.relname,
       CASE WHEN n.nspname LIKE 'pg\\_toast%%' THEN 't' ELSE c.relkind::text END,
       coalesce(owner.relname, toasted.relname), l.relation::bigint
FROM pg_locks l
LEFT JOIN pg_class c ON c.oid = l.relation
LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_class owner ON owner.oid = i.indrelid AND owner.relkind <> 't'
LEFT JOIN pg_class toasted ON toasted.reltoastrelid = coalesce(
    CASE WHEN c.relkind = 't' THEN c.oid END,
    (SELECT tc.oid FROM pg_class tc WHERE tc.oid = i.indrelid AND tc.relkind = 't'))
WHERE l.pid = %s AND l.granted AND l.locktype = 'relation'
  AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
  AND (n.nspname IS NULL OR n.nspname NOT IN ('pg_catalog', 'information_schema'))
"""

# The same, unnamed: whether anything changed since the last look.
_RAW_HELD_SQL = """
SELECT relation::bigint, mode FROM pg_locks
WHERE pid = %s AND granted AND locktype = 'relation'
"""

# Every user relation with storage and its data file; an index names its table.
_FILES_SQL = """
SELECT c.oid::bigint, c.relname, c.relkind, c.relfilenode::bigint, t.relname
FROM pg_class c
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_index i ON i.indexrelid = c.oid
LEFT JOIN pg_class t ON t.oid = i.indrelid
WHERE c.relfilenode <> 0 AND c.relkind IN ('r', 'i', 'm', 'S')
  AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%'
  AND (%s::text IS NULL OR n.nspname = %s::text)
"""

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
