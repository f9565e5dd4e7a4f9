"""Engine adapters: the only code that knows how sqlite3 and psycopg2 differ.

An adapter executes one statement on a raw DBAPI connection and reads back what happened.
The connection is always in driver autocommit, so whatever transaction exists is the one the
learner opened.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Protocol

from sandbox.outcome import SqlError, TxState
from sandbox.sqlkind import StatementKind
from sandbox.statements import Dialect


@dataclass
class RawResult:
    """What the driver gave back for a statement that did not raise."""

    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    more_rows: bool = False
    rowcount: int | None = None
    tag: str | None = None
    # A page of a re-run query: how many of its first rows were passed over (fewer than asked
    # when the result now ends sooner). None for a statement run as typed.
    skipped: int | None = None


class EngineAdapter(Protocol):
    name: str
    dialect: Dialect
    cancel_codes: frozenset[str]

    def run(
        self, conn: Any, sql: str, kind: StatementKind, page_size: int, skip: int | None = None
    ) -> RawResult:
        """Execute one statement; raise the driver's error on failure.

        With `skip`, a read-only query re-run for a later page: its first `skip` rows are
        passed over (never sent to the app) and the page after them is fetched.
        """

    def error_of(self, exc: BaseException) -> SqlError | None:
        """The engine error carried by `exc`, or None when it is not a database error."""

    def tx_state(self, conn: Any) -> TxState: ...

    def drain_notices(self, conn: Any) -> list[str]: ...

    def cancel(self, conn: Any) -> None:
        """Stop the statement running on `conn`; safe to call from another thread."""

    def sever(self, conn: Any) -> None:
        """Cut the connection under a statement that a cancel could not stop (a frozen server):
        the driver call blocked on it returns at once with "connection lost"."""

    def session_id(self, conn: Any) -> int | None:
        """The server process id serving this connection, where the engine has one."""

    def connection_lost(self, conn: Any) -> bool:
        """Whether the server side of this connection is gone (terminated, server restart)."""


# Rows passed over on the client are fetched in chunks this big: memory stays bounded however
# far into a million-row result a page is.
_SKIP_CHUNK = 10_000


def fetch_page(cursor: Any, page_size: int) -> tuple[list[str], list[tuple[Any, ...]], bool]:
    """Columns, the first `page_size` rows and whether more exist, fetching one row extra."""
    if cursor.description is None:
        return [], [], False
    columns = [str(d[0]) for d in cursor.description]
    rows = [tuple(r) for r in cursor.fetchmany(page_size + 1)]
    return columns, rows[:page_size], len(rows) > page_size


def skip_rows(cursor: Any, count: int) -> int:
    """Pass over the next `count` rows of a query on the client; returns how many there were."""
    if cursor.description is None:
        return 0
    skipped = 0
    while skipped < count:
        chunk = len(cursor.fetchmany(min(_SKIP_CHUNK, count - skipped)))
        if not chunk:
            break
        skipped += chunk
    return skipped
