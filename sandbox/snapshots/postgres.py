"""PostgreSQL snapshots: one database per snapshot, beside the scratch database.

Taking one: `CREATE DATABASE snap TEMPLATE live` is the exact, fast copy, but PostgreSQL
refuses it while anyone is connected to the template, and a sandbox's sessions are connected
all the time (an open transaction cannot survive a reconnect). So a snapshot is a template
clone only when nobody is connected (a scenario's start, before its sessions open); otherwise
it is a logical copy (definitions from the catalogs, rows by COPY) read in one REPEATABLE READ
transaction, which never disturbs a session. benchmarks/snapshots.py measures both.

Restoring always clones: the sessions are disconnected anyway (a restore discards open
transactions), so the snapshot database is used as a template for a new live database, which
then takes the old one's name.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from sandbox.masking import scrub
from sandbox.snapshots.model import SnapshotError
from sandbox.snapshots.store import SnapshotStore
from sandbox.targets import database_oid, quote_ident

if TYPE_CHECKING:
    from sandbox.targets import Connection, PostgresTarget

OBJECT_IN_USE = "55006"  # "source database ... is being accessed by other users"
LOCK_NOT_AVAILABLE = "55P03"
READ_LOCK_TIMEOUT_MS = 2000

_LIVE_CONNECTIONS = """
SELECT count(*) FROM pg_catalog.pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()
"""
_USER_TABLES = """
SELECT count(*) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%%' AND n.nspname NOT LIKE 'pg\\_temp\\_%%'
"""


class PostgresSnapshots(SnapshotStore):
    engine = "postgres"
    reconnects = True

    def __init__(self, target: PostgresTarget) -> None:
        super().__init__()
        self.target = target
        self._databases: dict[str, str] = {}  # snapshot name -> database name

    # ------------------------------------------------------------------ taking

    def _take(self, name: str, serial: int) -> tuple[str, int, int]:
        self._require_databases()
        database = f"{self.target.name}_s{serial}"
        # Recorded before it exists, so a crash mid-copy leaves nothing `clean` cannot find.
        self.target.record.claim(database)
        try:
            method, tables = self._clone_or_copy(database)
            with self.target.admin.cursor() as cursor:
                self.target.record.created(database, database_oid(cursor, database))
                cursor.execute(
                    f"COMMENT ON DATABASE {quote_ident(database)} IS %s",
                    (self.target.marker_comment(f"snapshot {name} of {self.target.name}"),),
                )
                cursor.execute("SELECT pg_catalog.pg_database_size(%s)", (database,))
                size = int(cursor.fetchone()[0])
        except BaseException:
            self._drop(database)
            raise
        old = self._databases.pop(name, None)
        if old is not None:
            self._drop(old)
        self._databases[name] = database
        return method, size, tables

    def _clone_or_copy(self, database: str) -> tuple[str, int]:
        import psycopg2

        live = self.target.name
        with self.target.admin.cursor() as cursor:
            cursor.execute(_LIVE_CONNECTIONS, (live,))
            idle = cursor.fetchone()[0] == 0
            if idle:
                try:
                    cursor.execute(
                        f"CREATE DATABASE {quote_ident(database)} TEMPLATE {quote_ident(live)}"
                    )
                except psycopg2.Error as exc:
                    # Someone connected between the look and the clone: copy instead.
                    if exc.pgcode != OBJECT_IN_USE:
                        raise SnapshotError(f"snapshot failed: {_message(exc)}") from None
                else:
                    with self._connection(database) as snap:
                        return "template clone", _count_tables(snap.raw)
            self._create_empty(cursor, database)
        return "logical copy", self._copy_into(database)

    def _create_empty(self, cursor: Any, database: str) -> None:
        """An empty database with the live one's encoding and collation (template0 has none of
        template1's additions, so only what the copy makes will be in it)."""
        import psycopg2

        cursor.execute(
            "SELECT pg_catalog.pg_encoding_to_char(encoding), datcollate, datctype "
            "FROM pg_catalog.pg_database WHERE datname = %s",
            (self.target.name,),
        )
        encoding, collate, ctype = cursor.fetchone()
        try:
            cursor.execute(
                f"CREATE DATABASE {quote_ident(database)} TEMPLATE template0 "
                "ENCODING %s LC_COLLATE %s LC_CTYPE %s",
                (encoding, collate, ctype),
            )
        except psycopg2.Error as exc:
            raise SnapshotError(f"snapshot failed: {_message(exc)}") from None

    def _copy_into(self, database: str) -> int:
        import psycopg2

        from sandbox.snapshots.pgcopy import LockBusy, UnsupportedObject, copy_database

        with (
            self._connection(self.target.name) as source,
            self._connection(database) as destination,
        ):
            try:
                stats = copy_database(source.raw, destination.raw)
            except (LockBusy, UnsupportedObject) as exc:
                raise SnapshotError(f"snapshot failed: {exc}") from None
            except psycopg2.Error as exc:
                raise SnapshotError(f"snapshot failed: {_message(exc)}") from None
        return int(stats.tables)

    # ------------------------------------------------------------------ restoring

    def _restore(self, name: str) -> None:
        import psycopg2

        live = self.target.name
        fresh = f"{live}_r"
        record = self.target.record
        try:
            with self.target.admin.cursor() as cursor:
                # Clone first: if that fails, the live database is still there, untouched.
                snapshot, now, new = map(quote_ident, (self._databases[name], live, fresh))
                record.claim(fresh)
                cursor.execute(f"DROP DATABASE IF EXISTS {new} WITH (FORCE)")
                cursor.execute(f"CREATE DATABASE {new} TEMPLATE {snapshot}")
                record.created(fresh, database_oid(cursor, fresh))
                cursor.execute(f"DROP DATABASE {now} WITH (FORCE)")
                cursor.execute(f"ALTER DATABASE {new} RENAME TO {now}")
                record.renamed(fresh, live)
                cursor.execute(f"COMMENT ON DATABASE {now} IS %s", (self.target.marker_comment(),))
        except psycopg2.Error as exc:
            raise SnapshotError(f"restore of {name} failed: {_message(exc)}") from None

    # ------------------------------------------------------------------ comparing

    @contextlib.contextmanager
    def compare(self, name: str) -> Iterator[tuple[Any, Any]]:
        with (
            self._connection(self._databases[name]) as before,
            self._connection(self.target.name) as after,
        ):
            # A learner's uncommitted ALTER TABLE or TRUNCATE holds a lock no reader gets past:
            # give up after a while instead of freezing the run (or the app) for ever.
            with after.raw.cursor() as cursor:
                cursor.execute(f"SET lock_timeout = {READ_LOCK_TIMEOUT_MS}")
            yield before.raw, after.raw

    def _connection_problem(self, exc: Exception) -> str | None:
        import psycopg2

        from sandbox.errors import UserError

        if isinstance(exc, UserError):  # a connection to a snapshot database was refused
            return str(exc)
        if isinstance(exc, (psycopg2.OperationalError, psycopg2.InterfaceError)):
            return f"the connection to the server was lost ({_message(exc)})"
        return None

    def _read_problem(self, exc: Exception) -> str | None:
        if getattr(exc, "pgcode", None) == LOCK_NOT_AVAILABLE:
            return (
                "a table is locked by an uncommitted change in another session "
                f"({_message(exc)}); COMMIT or ROLLBACK it first"
            )
        return None

    # ------------------------------------------------------------------ housekeeping

    def _require_databases(self) -> None:
        if self.target.mode != "database":
            raise SnapshotError(
                "snapshots on PostgreSQL copy the scratch database, and this role may not "
                "create databases (the sandbox is a scratch schema): grant it CREATEDB"
            )

    @contextlib.contextmanager
    def _connection(self, database: str) -> Iterator[Connection]:
        connection = self.target.open_database(database, "snapshot")
        try:
            yield connection
        finally:
            connection.close()

    def _drop(self, database: str) -> None:
        # What cannot be dropped now stays in the sandbox's record: closing the sandbox tries
        # again, and `dbsandbox clean` after that.
        with contextlib.suppress(Exception):
            self.target.drop_owned(database)

    def close(self) -> None:
        for database in self._databases.values():
            self._drop(database)
        self._databases.clear()


def _count_tables(raw: Any) -> int:
    with raw.cursor() as cursor:
        cursor.execute(_USER_TABLES)
        return int(cursor.fetchone()[0])


def _message(exc: Any) -> str:
    diag = getattr(exc, "diag", None)
    text = (diag.message_primary if diag is not None else None) or str(exc)
    return scrub(text.strip().splitlines()[0] if text.strip() else "unknown error")
