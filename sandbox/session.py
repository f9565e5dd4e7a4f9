"""One named session: one connection in driver autocommit, one statement at a time.

Because the driver never opens a transaction of its own, every BEGIN, SAVEPOINT, ROLLBACK TO,
RELEASE and COMMIT the learner types reaches the engine as typed, and the transaction state
read back after each statement is the engine's, not a guess.
"""

from __future__ import annotations

import time
from dataclasses import replace
from typing import TYPE_CHECKING, Any

from sandbox.errorpos import locate
from sandbox.outcome import Outcome, SqlError, Status, TxState
from sandbox.sqlkind import StatementKind, TxControl, classify

if TYPE_CHECKING:
    from sandbox.targets import Connection, Target

CONNECTION_LOST_NOTE = (
    "the connection to the server is gone (terminated or the server restarted): whatever this "
    "session had not committed is rolled back, and it cannot run anything more"
)
FAILED_COMMIT_NOTE = (
    "COMMIT answered ROLLBACK: the transaction had failed, so nothing in it was saved"
)


# Statements that read tables: in a transaction they start SQLite's read snapshot.
_READS = frozenset({"SELECT", "WITH", "TABLE", "VALUES"})


class Session:
    """A connection that executes exactly what it is given and reports what happened."""

    def __init__(self, name: str, target: Target, page_size: int = 100) -> None:
        self.name = name
        self.page_size = page_size
        self._target = target
        self._adapter = target.adapter
        self._connection: Connection | None = None
        self._cancel_requested = False
        self.pid: int | None = None
        self.tx_state = TxState.IDLE
        # Statements run inside the current transaction: what a rollback would discard.
        self.tx_statements = 0
        # How many statements the transaction that just ended had run (COMMIT/ROLLBACK included).
        self.ended_tx_statements = 0
        # Of those, the writes that succeeded: what a rollback really loses (BEGIN, a SELECT or
        # a failed INSERT loses nothing), so a "Quit?" dialog does not overstate it.
        self.tx_changes = 0
        # SQLite: whether this session's open transaction has taken the write lock.
        self.holds_write_lock = False
        # SQLite: whether its open transaction has read (it holds a read snapshot): a write
        # then never waits for another's lock, SQLite refuses it at once (SQLITE_BUSY).
        self.holds_read_snapshot = False
        # Session-level SETs (isolation level, search_path, ...) in the order they ran: a
        # reconnect (PostgreSQL restore) replays them so the session behaves as before.
        self.settings: list[str] = []

    @property
    def engine(self) -> str:
        """Which engine the session talks to: sqlite or postgres."""
        return self._adapter.name

    @property
    def raw(self) -> Any:
        if self._connection is None:
            raise RuntimeError(f"session {self.name} is not open")
        return self._connection.raw

    def open(self) -> None:
        self._connection = self._target.connect(self.name)
        self.pid = self._adapter.session_id(self._connection.raw)

    def reopen(self) -> list[str]:
        """Connect again (after a restore replaced the database) and replay the settings.

        Returns the settings that no longer apply (their error messages), for the record.
        """
        self.close()
        self.open()
        failed = []
        for sql in self.settings:
            try:
                self._adapter.run(self.raw, sql, classify(sql, self._adapter.dialect), 1)
            except Exception as exc:  # a setting naming an object the snapshot lacks
                found = self._adapter.error_of(exc)
                if found is None:
                    raise
                failed.append(f"{sql}: {found.message}")
        self._adapter.drain_notices(self.raw)
        return failed

    def execute(self, sql: str, kind: StatementKind, skip: int | None = None) -> Outcome:
        """Run one statement; SQL errors come back in the outcome, never as exceptions.

        With `skip`, a read-only query re-run for a later page (see EngineAdapter.run).
        """
        raw = self.raw
        self._cancel_requested = False
        tx_before = self._adapter.tx_state(raw)
        started = time.perf_counter()
        error: SqlError | None = None
        try:
            result = self._adapter.run(raw, sql, kind, self.page_size, skip)
        except BaseException as exc:
            found = self._adapter.error_of(exc)
            if found is None:
                raise
            # The engine's answer to the learner's SQL: shown as it came, like the data.
            position = locate(exc, sql, found.message, self._adapter.dialect)
            error = replace(found, position=position)
            result = None
        elapsed_ms = (time.perf_counter() - started) * 1000
        tx_after = self._adapter.tx_state(raw)
        notices = self._adapter.drain_notices(raw)

        if error is None:
            status = Status.OK
        elif self._cancel_requested and error.code in self._adapter.cancel_codes:
            status = Status.CANCELLED
        else:
            status = Status.ERROR
        outcome = Outcome(
            status=status,
            tx_before=tx_before,
            tx_after=tx_after,
            elapsed_ms=elapsed_ms,
            notices=notices,
            error=error,
        )
        if result is not None:
            outcome.columns = result.columns
            outcome.rows = result.rows
            outcome.more_rows = result.more_rows
            outcome.skipped = result.skipped
            outcome.rowcount = result.rowcount
            outcome.tag = result.tag
        if kind.tx_control is TxControl.COMMIT and outcome.tag == "ROLLBACK":
            outcome.note = FAILED_COMMIT_NOTE
        elif error is not None and self._adapter.connection_lost(raw):
            outcome.note = CONNECTION_LOST_NOTE
        self._track(kind, outcome)
        if _is_session_setting(kind, outcome):
            self.settings.append(sql)
        return outcome

    def _track(self, kind: StatementKind, outcome: Outcome) -> None:
        self.tx_state = outcome.tx_after
        if outcome.tx_after is TxState.IDLE:
            if outcome.tx_before is not TxState.IDLE:
                self.ended_tx_statements = self.tx_statements
            self.tx_statements = 0
            self.tx_changes = 0
            self.holds_write_lock = False
            self.holds_read_snapshot = False
            return
        if outcome.tx_before is TxState.IDLE:
            self.tx_statements = 0
            self.tx_changes = 0
        self.tx_statements += 1
        if not (kind.read_only or kind.locking) and outcome.status is Status.OK:
            self.tx_changes += 1
        if (kind.takes_write_lock or not kind.read_only) and _took_write_lock(outcome):
            self.holds_write_lock = True
        if kind.read_only and kind.keyword in _READS and outcome.status is Status.OK:
            self.holds_read_snapshot = True

    def cancel(self) -> None:
        """Ask the engine to stop the running statement (thread safe)."""
        if self._connection is not None:
            self._cancel_requested = True
            self._target.cancel_statement(self._connection.raw, self.pid)

    def sever(self) -> None:
        """Cut the connection under a statement a cancel could not stop (thread safe)."""
        if self._connection is not None:
            self._cancel_requested = True
            self._adapter.sever(self._connection.raw)

    def close(self) -> tuple[TxState, int]:
        """Close the connection; returns the transaction state it had and its statement count.

        Closing a connection with an open transaction rolls it back on both engines.
        """
        if self._connection is None:
            return TxState.IDLE, 0
        state = self._adapter.tx_state(self._connection.raw)
        count = self.tx_statements if state is not TxState.IDLE else 0
        self._connection.close()
        self._connection = None
        self.tx_state = TxState.IDLE
        return state, count


def _took_write_lock(outcome: Outcome) -> bool:
    """Whether a write inside a transaction got as far as the lock (SQLite keeps it then, even
    when the statement itself failed, e.g. on a constraint)."""
    if outcome.status is Status.OK:
        return True
    code = outcome.error.code if outcome.error is not None else None
    return bool(code and code.startswith("SQLITE_CONSTRAINT"))


def _is_session_setting(kind: StatementKind, outcome: Outcome) -> bool:
    """A SET that outlives its statement: run outside a transaction, not SET LOCAL."""
    return (
        kind.keyword == "SET"
        and outcome.status is Status.OK
        and outcome.tx_before is TxState.IDLE
        and outcome.tx_after is TxState.IDLE
        and (len(kind.words) < 2 or kind.words[1] != "LOCAL")
    )
