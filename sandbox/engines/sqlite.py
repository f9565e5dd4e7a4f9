"""SQLite through the standard library's sqlite3 module."""

from __future__ import annotations

import sqlite3
from typing import Any

from sandbox.engines import RawResult, fetch_page, skip_rows
from sandbox.outcome import SqlError, TxState
from sandbox.sqlkind import StatementKind
from sandbox.statements import Dialect


class SqliteAdapter:
    name = "sqlite"
    dialect: Dialect = "sqlite"
    cancel_codes = frozenset({"SQLITE_INTERRUPT"})

    def run(
        self,
        conn: sqlite3.Connection,
        sql: str,
        kind: StatementKind,
        page_size: int,
        skip: int | None = None,
    ) -> RawResult:
        cursor = conn.cursor()
        skipped: int | None = None
        try:
            # sqlite3 steps a SELECT lazily: fetching one page never reads the whole result.
            cursor.execute(sql)
            if skip is not None:
                skipped = skip_rows(cursor, skip)
            columns, rows, more = fetch_page(cursor, page_size)
            rowcount = cursor.rowcount if cursor.rowcount >= 0 else None
        finally:
            # Resetting the statement matters: an unfinished SELECT keeps a read snapshot open
            # (and blocks DROP TABLE) even though the connection reports no transaction.
            cursor.close()
        return RawResult(columns, rows, more, rowcount, tag=None, skipped=skipped)

    def error_of(self, exc: BaseException) -> SqlError | None:
        if not isinstance(exc, sqlite3.Error):
            return None
        code = getattr(exc, "sqlite_errorname", None)
        return SqlError(code=code, message=str(exc))

    def tx_state(self, conn: sqlite3.Connection) -> TxState:
        try:
            return TxState.IN_TRANSACTION if conn.in_transaction else TxState.IDLE
        except sqlite3.ProgrammingError:  # closed connection: no transaction survives that
            return TxState.IDLE

    def drain_notices(self, conn: Any) -> list[str]:
        return []  # SQLite has no notices

    def cancel(self, conn: sqlite3.Connection) -> None:
        conn.interrupt()

    def sever(self, conn: sqlite3.Connection) -> None:
        # An embedded engine has no connection to cut; interrupting again is all there is.
        conn.interrupt()

    def session_id(self, conn: Any) -> int | None:
        return None

    def connection_lost(self, conn: Any) -> bool:
        return False  # an embedded database cannot drop its connection


def write_lock_held(probe: sqlite3.Connection) -> bool:
    """Whether some connection holds the database's write lock right now.

    Asks without waiting (the probe has a zero busy timeout) and writes nothing, so it cannot
    invalidate anyone's WAL snapshot.
    """
    try:
        probe.execute("BEGIN IMMEDIATE")
    except sqlite3.OperationalError as exc:
        if getattr(exc, "sqlite_errorname", "").startswith("SQLITE_BUSY"):
            return True
        raise
    probe.execute("ROLLBACK")
    return False
