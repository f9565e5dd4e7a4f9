"""PostgreSQL through psycopg2."""

from __future__ import annotations

import contextlib
import os
import socket
from typing import Any

import psycopg2
import psycopg2.extensions as ext

from sandbox.engines import RawResult, fetch_page, skip_rows
from sandbox.outcome import SqlError, TxState
from sandbox.sqlkind import StatementKind
from sandbox.statements import Dialect

_DML_TAGS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "COPY"})
# Not a name a learner would choose; the cursor lives only while one statement runs.
_PAGE_CURSOR = "__dbsandbox_page"

_TX_STATES = {
    ext.TRANSACTION_STATUS_IDLE: TxState.IDLE,
    ext.TRANSACTION_STATUS_INTRANS: TxState.IN_TRANSACTION,
    ext.TRANSACTION_STATUS_ACTIVE: TxState.IN_TRANSACTION,
    ext.TRANSACTION_STATUS_INERROR: TxState.FAILED,
}


class PostgresAdapter:
    name = "postgres"
    dialect: Dialect = "postgres"
    cancel_codes = frozenset({"57014"})

    def run(
        self, conn: Any, sql: str, kind: StatementKind, page_size: int, skip: int | None = None
    ) -> RawResult:
        cursor = conn.cursor()
        try:
            state = self.tx_state(conn)
            if kind.streamable() and state is not TxState.FAILED:
                own_tx = state is TxState.IDLE
                return self._run_paged(cursor, sql, page_size, own_tx, kind.locking, skip)
            # No parameters are passed, so psycopg2 leaves '%' in the learner's SQL alone.
            cursor.execute(sql)
            tag = cursor.statusmessage
            skipped = None if skip is None else skip_rows(cursor, skip)
            columns, rows, more = fetch_page(cursor, page_size)
            verb = (tag or "").split(" ", 1)[0]
            rowcount = cursor.rowcount if verb in _DML_TAGS and cursor.rowcount >= 0 else None
            return RawResult(columns, rows, more, rowcount, tag, skipped)
        finally:
            cursor.close()

    def _run_paged(
        self,
        cursor: Any,
        sql: str,
        page_size: int,
        own_tx: bool,
        locking: bool,
        skip: int | None = None,
    ) -> RawResult:
        """Fetch only the first page through a server-side cursor.

        psycopg2's own named cursors refuse to work in autocommit, so declare one in SQL. Outside
        a transaction a plain SELECT runs in an implicit one-statement transaction; BEGIN and
        COMMIT around the cursor give exactly that, and nothing is left open afterwards.

        A cursor locks rows only as it reaches them, so for SELECT ... FOR UPDATE / SHARE the
        rest of the result is walked with MOVE: every row is locked as typed, none is sent.

        A later page (`skip`) moves past the rows before it on the server; outside a transaction
        it runs READ ONLY, so the server itself refuses a re-run that would write (nextval()).
        """
        skipped: int | None = None
        try:
            if own_tx:
                cursor.execute("BEGIN" if skip is None else "BEGIN READ ONLY")
            cursor.execute(f"DECLARE {_PAGE_CURSOR} NO SCROLL CURSOR FOR {sql}")
            if skip is not None:
                skipped = 0
                if skip:
                    cursor.execute(f"MOVE FORWARD {int(skip)} IN {_PAGE_CURSOR}")
                    skipped = max(cursor.rowcount, 0)
            cursor.execute(f"FETCH FORWARD {page_size + 1} FROM {_PAGE_CURSOR}")
            columns, rows, more = fetch_page(cursor, page_size)
            total: int | None = None
            if locking:
                cursor.execute(f"MOVE FORWARD ALL IN {_PAGE_CURSOR}")
                total = len(rows) + int(more) + max(cursor.rowcount, 0)
            cursor.execute(f"CLOSE {_PAGE_CURSOR}")
            if own_tx:
                cursor.execute("COMMIT")
        except BaseException:
            if own_tx and cursor.connection.info.transaction_status != ext.TRANSACTION_STATUS_IDLE:
                # If the connection is gone, the server ended the transaction with it. A cursor
                # of its own: the failed one keeps the query sent, where the error position
                # counts from (sandbox.errorpos).
                with contextlib.suppress(psycopg2.Error), cursor.connection.cursor() as undo:
                    undo.execute("ROLLBACK")
            raise
        # The server's tag for the whole SELECT counts every row; only say it when we know it.
        if total is None:
            total = None if more else len(rows)
        tag = "SELECT" if total is None or skipped else f"SELECT {total}"
        return RawResult(columns, rows, more, None, tag, skipped)

    def error_of(self, exc: BaseException) -> SqlError | None:
        if not isinstance(exc, psycopg2.Error):
            return None
        diag = exc.diag
        message = diag.message_primary or (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return SqlError(
            code=exc.pgcode,
            message=message,
            detail=diag.message_detail,
            hint=diag.message_hint,
            context=diag.context,
        )

    def tx_state(self, conn: Any) -> TxState:
        return _TX_STATES.get(conn.info.transaction_status, TxState.IDLE)

    def drain_notices(self, conn: Any) -> list[str]:
        notices = [" ".join(n.split()) for n in conn.notices]
        del conn.notices[:]
        return notices

    def cancel(self, conn: Any) -> None:
        # Beware: psycopg2 holds the GIL through PQcancel, which waits for the server's answer;
        # a frozen server would freeze the whole process. PostgresTarget.cancel_statement asks
        # with pg_cancel_backend on its monitor connection instead.
        conn.cancel()

    def sever(self, conn: Any) -> None:
        # shutdown() acts on the socket itself, shared with libpq's descriptor: its blocked
        # recv() returns at once and the statement fails as "server closed the connection".
        with (
            contextlib.suppress(Exception),
            socket.socket(fileno=os.dup(conn.fileno())) as sock,
        ):
            sock.shutdown(socket.SHUT_RDWR)

    def session_id(self, conn: Any) -> int | None:
        return int(conn.info.backend_pid)

    def connection_lost(self, conn: Any) -> bool:
        return bool(conn.closed)


# psycopg2 reads 'infinity'::timestamp as datetime.max and 'infinity'::date as date.max: a
# report would show the year 9999 where the database holds infinity. In an array it cannot
# parse them at all ("unable to parse date"). These casters give the words themselves.
_INFINITIES = frozenset({"infinity", "-infinity"})
_DATE_TYPES = (
    # (name, oid, array oid, psycopg2's own caster)
    ("DATE", 1082, 1182, ext.DATE),
    ("TIMESTAMP", 1114, 1115, ext.PYDATETIME),
    ("TIMESTAMPTZ", 1184, 1185, ext.PYDATETIMETZ),
)


def _infinity_aware(base: Any) -> Any:
    def cast(value: str | None, cursor: Any) -> Any:
        if value in _INFINITIES:
            return value
        return base(value, cursor)

    return cast


def _infinity_casters() -> list[Any]:
    casters = []
    for name, oid, array_oid, base in _DATE_TYPES:
        scalar = ext.new_type((oid,), f"DBSANDBOX_{name}", _infinity_aware(base))
        casters += [scalar, ext.new_array_type((array_oid,), f"DBSANDBOX_{name}_ARRAY", scalar)]
    return casters


_CASTERS = _infinity_casters()


def keep_infinities(conn: Any) -> None:
    """Make `conn` return PostgreSQL's infinite dates and timestamps as 'infinity' / '-infinity'.

    Registered on the connection only: psycopg2's global casters stay as they are.
    """
    for caster in _CASTERS:
        ext.register_type(caster, conn)
