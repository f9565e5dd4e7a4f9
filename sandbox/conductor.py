"""Several sessions, each on its own thread, driven in script order.

The conductor sends a statement to its session's thread and then *settles*: it waits until
every statement in flight has either finished or is confirmed to be waiting on a lock (on
PostgreSQL by pg_blocking_pids, on SQLite by probing the write lock). Only then does the script
move on. Settling after every statement makes runs deterministic: a COMMIT that releases a
lock is followed by the released statement's outcome before the next line runs, exactly as
two people at two terminals would see it.
"""

from __future__ import annotations

import concurrent.futures as cf
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sandbox.outcome import Outcome, SqlError, Status, TxState
from sandbox.session import Session
from sandbox.snapshots.model import SnapshotError, SnapshotInfo, human_size
from sandbox.sqlkind import StatementKind, classify
from sandbox.statements import MetaCommand, Statement
from sandbox.targets import Target
from sandbox.timeline import EventKind, Timeline
from sandbox.transcript import describe_close, plural, record_outcome, short_sql

if TYPE_CHECKING:
    # The guard pulls in sqlglot; the conductor only needs its types until one is passed.
    from sandbox.guard.policy import Guard, Review
    from sandbox.guard.schema import Schema

_POLL_S = 0.003


@dataclass
class Execution:
    """One statement sent to one session, and what became of it."""

    index: int
    session: str
    statement: Statement
    kind: StatementKind
    started: float = field(default_factory=time.perf_counter)
    waited: bool = False
    blocked_by: list[str] = field(default_factory=list)  # everyone it ever waited for
    waiting_on: list[str] = field(default_factory=list)  # who holds it up right now
    outcome: Outcome | None = None
    review: Review | None = None  # what the guard found and decided, when it looked
    recorded: bool = False  # its outcome is on the timeline
    meta: str | None = None  # a snapshot command (\\snapshot ...) rather than SQL
    snapshot_before: str | None = None  # the snapshot taken automatically just before it ran
    future: cf.Future[None] | None = None
    # Orders "started waiting" against "finished" when the conductor and the session thread race.
    lock: threading.Lock = field(default_factory=threading.Lock)

    def finished(self) -> bool:
        return self.outcome is not None or (self.future is not None and self.future.done())


@dataclass
class _Seat:
    session: Session
    executor: cf.ThreadPoolExecutor
    last: Execution | None = None
    schema: Schema | None = None  # what this session sees, for schema-aware lint; None: stale


# Statements whose lint can use the schema, and statements after which the schema may differ.
_SCHEMA_AWARE = frozenset(
    {"DELETE", "UPDATE", "MERGE", "WITH", "ALTER", "EXPLAIN", "PREPARE", "DO"}
)
_CHANGES_SCHEMA = frozenset(
    {
        "CREATE",
        "ALTER",
        "DROP",
        "ATTACH",
        "DETACH",
        "DO",
        "CALL",
        "ROLLBACK",
        "ABORT",
        "IMPORT",
        "SET",
    }
)


# The timeline event each snapshot command is recorded as (its failure too).
_META_EVENTS = {
    "snapshot": EventKind.SNAPSHOT,
    "snapshots": EventKind.SNAPSHOT,
    "restore": EventKind.RESTORE,
    "diff": EventKind.DIFF,
}


class Conductor:
    """Runs statements on named sessions and records everything on one timeline."""

    def __init__(
        self,
        target: Target,
        timeline: Timeline | None = None,
        *,
        page_size: int = 100,
        statement_timeout_s: float = 30.0,
        wait_timeout_s: float = 5.0,
        auto_snapshots: bool = True,
    ) -> None:
        self.target = target
        # Before every dangerous statement that was let through, a snapshot to come back to.
        self.auto_snapshots = auto_snapshots
        self._auto_serial = 0
        self.timeline = timeline or Timeline()
        self.page_size = page_size
        self.statement_timeout_s = statement_timeout_s
        self.wait_timeout_s = wait_timeout_s
        self.executions: list[Execution] = []
        self._seats: dict[str, _Seat] = {}

    # ------------------------------------------------------------------ sessions

    @property
    def sessions(self) -> list[Session]:
        return [seat.session for seat in self._seats.values()]

    def session(self, name: str) -> Session:
        """The named session, opened (on its own thread) on first use."""
        seat = self._seats.get(name)
        if seat is None:
            session = Session(name, self.target, self.page_size)
            executor = cf.ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"session-{name}")
            try:
                executor.submit(session.open).result()
            except BaseException:
                executor.shutdown(wait=False)
                raise
            seat = _Seat(session, executor)
            self._seats[name] = seat
            detail = f" (server process {session.pid})" if session.pid else ""
            self.timeline.add(name, EventKind.SESSION_OPENED, f"session {name} opened{detail}")
        return seat.session

    def quietly(self, session_name: str, sql: str, timeout_s: float | None = None) -> Outcome:
        """Run SQL on a session off the record (session settings, a scenario's checks).

        Waits for the session's last statement first; nothing goes on the timeline. With a
        timeout, a statement still running after it is cancelled (its outcome says so).
        """
        seat = self._seats.get(session_name)
        if seat is None:
            self.session(session_name)
            seat = self._seats[session_name]
        if seat.last is not None and not seat.last.finished():
            self._wait_for(seat.last, self.wait_timeout_s)
        kind = classify(sql, self.target.adapter.dialect)
        future = seat.executor.submit(seat.session.execute, sql, kind)
        try:
            return future.result(timeout=timeout_s)
        except cf.TimeoutError:
            seat.session.cancel()
            return future.result(timeout=self.target.cancel_grace_s)

    def settle_all_quickly(self) -> None:
        """Record whatever finished since; never waits for a statement still waiting."""
        self._settle()

    def settle_all(self) -> None:
        """Let every waiting statement resolve (or cancel it after the wait timeout)."""
        deadline = time.perf_counter() + self.wait_timeout_s
        for execution in list(self.pending):
            self._wait_for(execution, max(0.0, deadline - time.perf_counter()))

    # ------------------------------------------------------------------ statements

    def execute(
        self, session_name: str, statement: Statement, guard: Guard | None = None
    ) -> Execution:
        """Send one statement; returns once it finished or is confirmed waiting on a lock.

        With a guard, the statement is linted first (and flagged ones measured) on the
        session's own thread; a statement the guard stops is recorded as blocked, never run.
        """
        session = self.session(session_name)
        seat = self._seats[session_name]
        if seat.last is not None and not seat.last.finished():
            # One connection runs one statement at a time: this one queues behind a waiting one.
            self._wait_for(seat.last, self.wait_timeout_s)
        kind = classify(statement.text, self.target.adapter.dialect)
        execution = Execution(len(self.executions), session_name, statement, kind)
        self.executions.append(execution)
        if guard is not None and not self._passes(guard, seat, execution):
            return execution
        seat.last = execution
        self.timeline.add(
            session_name,
            EventKind.STATEMENT,
            f"sent: {short_sql(statement.text)}",
            statement=execution.index,
            line=statement.line,
        )
        execution.started = time.perf_counter()
        execution.future = seat.executor.submit(self._perform, session, execution)
        self._settle(first=execution)
        return execution

    def _passes(self, guard: Guard, seat: _Seat, execution: Execution) -> bool:
        """Review a statement; record the findings; False when it must not run."""
        session = seat.session
        dialect = self.target.adapter.dialect
        statement = execution.statement
        schema = None
        if execution.kind.keyword in _SCHEMA_AWARE:
            if seat.schema is None:
                seat.schema = seat.executor.submit(_introspect, session).result()
            schema = seat.schema
        review = seat.executor.submit(
            # Acknowledgements are keyed by the statement's place in its own text (a script, or
            # the editor's text), not by its place in the run, which also counts \\ commands.
            guard.review,
            statement,
            session,
            dialect,
            schema,
        ).result()
        execution.review = review
        for finding, decision, impact in zip(
            review.findings, review.decisions, review.impacts, strict=True
        ):
            measured = f" ({impact.summary})" if impact is not None and impact.summary else ""
            self.timeline.add(
                execution.session,
                EventKind.GUARD,
                f"{finding.severity} {finding.rule}: {finding.message}{measured} [{decision}]",
                statement=execution.index,
                rule=finding.rule,
                severity=str(finding.severity),
                decision=str(decision),
            )
        if review.findings and review.runs:
            self.timeline.add(
                execution.session,
                EventKind.GUARD,
                f"allowed: {review.reason}",
                statement=execution.index,
            )
        if review.runs:
            if self.auto_snapshots and review.confirmed_rules:
                self._snapshot_before(execution)
            return True
        state = session.tx_state
        execution.outcome = Outcome(
            status=Status.BLOCKED,
            tx_before=state,
            tx_after=state,
            elapsed_ms=0.0,
            note=review.reason,
        )
        execution.recorded = True
        self.timeline.add(
            execution.session,
            EventKind.GUARD,
            f"not run: {review.reason}",
            statement=execution.index,
            line=statement.line,
        )
        return False

    def _snapshot_before(self, execution: Execution) -> None:
        """A confirmed dangerous statement is about to run: keep a way back."""
        self._auto_serial += 1
        name = f"before-{self._auto_serial}"
        statement = execution.statement
        reason = (
            f"before {short_sql(statement.text, 48)} ({execution.session}, line {statement.line})"
        )
        try:
            info = self.target.snapshots.take(name, reason)
        except SnapshotError as exc:
            self.timeline.add(
                execution.session,
                EventKind.SNAPSHOT,
                f"no snapshot before this statement: {exc}",
                statement=execution.index,
                error=str(exc),
            )
            return
        execution.snapshot_before = name
        self.timeline.add(
            execution.session,
            EventKind.SNAPSHOT,
            f"snapshot {name} taken first ({_described(info)}): \\restore {name} undoes "
            "this statement even after COMMIT",
            statement=execution.index,
            snapshot=info.to_json(),
        )

    # ------------------------------------------------------------------ snapshot commands

    def run_meta(self, session_name: str, command: MetaCommand) -> Execution:
        """Run \\snapshot, \\restore, \\diff or \\snapshots on behalf of a session.

        Recorded like a statement (an Execution whose outcome carries the result in `data`);
        a request that cannot be done (unknown snapshot, a locked table) is an error outcome.
        """
        from sandbox.metacommands import as_statement, kind_of

        session = self.session(session_name)
        seat = self._seats[session_name]
        if seat.last is not None and not seat.last.finished():
            self._wait_for(seat.last, self.wait_timeout_s)
        execution = Execution(
            len(self.executions),
            session_name,
            as_statement(command),
            kind_of(command),
            meta=command.name,
        )
        # Listed once it is done: a restore settles every pending statement, and this one must
        # not count as pending while it runs.
        before = session.tx_state
        started = time.perf_counter()
        event = _META_EVENTS[command.name]
        try:
            outcome = self._meta(command, execution)
        except SnapshotError as exc:
            outcome = Outcome(
                status=Status.ERROR,
                tx_before=before,
                tx_after=session.tx_state,
                elapsed_ms=0.0,
                error=SqlError("dbsandbox", str(exc)),
            )
            message = f"{command.text} failed: {exc}"
            self.timeline.add(
                session_name, event, message, statement=execution.index, error=str(exc)
            )
        else:
            outcome.tx_before = before
            outcome.tx_after = session.tx_state
        outcome.elapsed_ms = (time.perf_counter() - started) * 1000
        execution.outcome = outcome
        execution.recorded = True
        self.executions.append(execution)
        return execution

    def _meta(self, command: MetaCommand, execution: Execution) -> Outcome:
        store = self.target.snapshots
        who, index = execution.session, execution.index
        name = command.args[0] if command.args else ""
        outcome = Outcome(Status.OK, TxState.IDLE, TxState.IDLE, 0.0)
        if command.name == "snapshot":
            info = store.take(name, "on demand")
            outcome.note = f"snapshot {name} taken ({_described(info)}){self._uncommitted_note()}"
            outcome.data = {"snapshot": info.to_json()}
            self.timeline.add(
                who, EventKind.SNAPSHOT, outcome.note, statement=index, snapshot=info.to_json()
            )
        elif command.name == "snapshots":
            infos = store.list()
            outcome.columns = ["name", "taken", "reason", "method", "size", "ms"]
            outcome.rows = [
                (
                    i.name,
                    i.taken_at[11:19],
                    i.reason,
                    i.method,
                    human_size(i.size_bytes),
                    round(i.elapsed_ms),
                )
                for i in infos
            ]
            outcome.data = {"snapshots": [i.to_json() for i in infos]}
            self.timeline.add(
                who, EventKind.SNAPSHOT, f"{plural(len(infos), 'snapshot')} listed", statement=index
            )
        elif command.name == "restore":
            outcome.data = {"restore": self.restore(name, who, index)}
            outcome.note = outcome.data["restore"]["message"]
        else:
            diff = store.diff(name)
            outcome.columns, rows = diff.display()
            outcome.rows = list(rows)
            outcome.note = f"since {name}: {diff.summary()}{self._uncommitted_note()}"
            outcome.data = {"diff": {"snapshot": name, **diff.to_json()}}
            self.timeline.add(who, EventKind.DIFF, outcome.note, statement=index, snapshot=name)
        return outcome

    def _uncommitted_note(self) -> str:
        open_tx = [s.name for s in self.sessions if s.tx_state is not TxState.IDLE]
        if not open_tx:
            return ""
        return f" (committed data only: {', '.join(open_tx)} has an open transaction)"

    def restore(self, name: str, requester: str, index: int | None = None) -> dict[str, object]:
        """Put the sandbox back to snapshot `name`; every open transaction is rolled back first.

        Returns what happened, JSON-ready (the snapshot, who lost what, how long it took).
        """
        store = self.target.snapshots
        info = store.get(name)
        # Statements still waiting on a lock would race the restore: let them end first.
        self.settle_all()
        discarded: dict[str, int] = {}
        for seat in self._seats.values():
            session = seat.session
            if session.tx_state is TxState.IDLE:
                continue
            count = session.tx_statements
            self.quietly(session.name, "ROLLBACK")
            discarded[session.name] = count
            self.timeline.add(
                session.name,
                EventKind.ROLLBACK,
                f"rolled back for \\restore {name}: "
                f"{plural(count, 'uncommitted statement')} discarded",
                statement=index,
                by="restore",
            )
        lost_settings: dict[str, list[str]] = {}
        if store.reconnects:
            for seat in self._seats.values():
                seat.executor.submit(seat.session.close).result()
        try:
            elapsed_ms = store.restore(name)
        finally:
            if store.reconnects:
                for seat in self._seats.values():
                    failed = seat.executor.submit(seat.session.reopen).result()
                    if failed:
                        lost_settings[seat.session.name] = failed
        for seat in self._seats.values():
            seat.schema = None
        rolled = "; ".join(
            f"{who}'s open transaction rolled back ({plural(n, 'statement')})"
            for who, n in discarded.items()
        )
        message = f"restored snapshot {name} ({info.reason}) in {elapsed_ms:.0f} ms" + (
            f"; {rolled}" if rolled else ""
        )
        if store.reconnects:
            message += "; sessions reconnected"
        self.timeline.add(
            requester,
            EventKind.RESTORE,
            message,
            statement=index,
            snapshot=name,
            discarded=discarded,
        )
        return {
            "snapshot": info.to_json(),
            "elapsed_ms": round(elapsed_ms, 3),
            "rolled_back": discarded,
            "settings_lost": lost_settings,
            "message": message,
        }

    def _perform(self, session: Session, execution: Execution) -> None:
        # Runs on the session's thread. Only the conductor's thread writes the timeline, so a
        # statement released by a COMMIT is always recorded after that COMMIT.
        outcome = session.execute(execution.statement.text, execution.kind)
        if outcome.status is Status.OK and execution.kind.keyword in _CHANGES_SCHEMA:
            for seat in self._seats.values():
                seat.schema = None
        with execution.lock:
            execution.outcome = outcome

    def _record_finished(self, first: Execution | None = None) -> None:
        """Record outcomes not yet on the timeline: the statement just sent first (it is what
        released the others), then the rest in script order."""
        finished = [e for e in self.executions if e.outcome is not None and not e.recorded]
        finished.sort(key=lambda e: (e is not first, e.index))
        for execution in finished:
            outcome = execution.outcome
            assert outcome is not None
            execution.recorded = True
            if execution.waited:
                self.timeline.add(
                    execution.session,
                    EventKind.LOCK_RELEASED,
                    f"lock wait over after {outcome.elapsed_ms:.0f} ms",
                    statement=execution.index,
                )
            session = self._seats[execution.session].session
            record_outcome(self.timeline, session, execution.index, execution.kind, outcome)

    @property
    def pending(self) -> list[Execution]:
        return [e for e in self.executions if not e.finished()]

    def _running_writers(self) -> set[str]:
        return {e.session for e in self.pending if not e.kind.read_only and not e.waited}

    def _settle(self, first: Execution | None = None) -> None:
        """Wait until every statement in flight has finished or is confirmed waiting."""
        while True:
            self._record_finished(first)
            undecided: list[Execution] = []
            for execution in self.pending:
                if self._check_waiting(execution):
                    continue
                undecided.append(execution)
                if time.perf_counter() - execution.started > self.statement_timeout_s:
                    self.cancel(execution, f"ran longer than {self.statement_timeout_s:g} s")
            if not undecided:
                self._raise_internal_errors()
                self._record_finished(first)
                return
            cf.wait([e.future for e in undecided if e.future], timeout=_POLL_S)

    def _check_waiting(self, execution: Execution) -> bool:
        """Ask the engine whether `execution` waits on a lock; record the wait when it does."""
        if time.perf_counter() - execution.started < self.target.wait_probe_after_s:
            return False
        kind = execution.kind
        if self.target.engine == "sqlite" and kind.read_only and not kind.takes_write_lock:
            return False  # WAL readers never wait
        session = self._seats[execution.session].session
        blockers = self.target.blockers(session, self.sessions, self._running_writers())
        if not blockers:
            return False
        with execution.lock:
            if execution.finished():
                return True
            if blockers != execution.waiting_on:
                execution.waited = True
                execution.waiting_on = blockers
                # Everyone it waited for, in order: after a release, a statement queued behind
                # the same row can take the lock first and become the next holder.
                execution.blocked_by += [b for b in blockers if b not in execution.blocked_by]
                names = ", ".join(blockers)
                self.timeline.add(
                    execution.session,
                    EventKind.LOCK_WAIT,
                    f"waiting for a lock held by {names}",
                    statement=execution.index,
                    blocked_by=blockers,
                )
        return True

    def _wait_for(self, execution: Execution, timeout_s: float) -> None:
        """Let the engine resolve a waiting statement, at most `timeout_s`; then cancel it."""
        deadline = time.perf_counter() + timeout_s
        while not execution.finished():
            self._settle()
            if execution.finished():
                break
            if time.perf_counter() >= deadline:
                self.cancel(execution, f"still waiting after {timeout_s:g} s")
                break
            if execution.future:
                cf.wait([execution.future], timeout=_POLL_S * 3)
        self._settle()

    def cancel(self, execution: Execution, reason: str) -> None:
        """Stop a statement and wait (bounded) for its outcome."""
        session = self._seats[execution.session].session
        self.timeline.add(
            execution.session,
            EventKind.CANCELLED,
            f"cancelling: {reason}",
            statement=execution.index,
        )
        deadline = time.perf_counter() + self.target.cancel_grace_s
        while not execution.finished() and time.perf_counter() < deadline:
            session.cancel()
            if execution.future:
                cf.wait([execution.future], timeout=0.2)
        if not execution.finished():
            raise RuntimeError(f"statement {execution.index} did not stop after cancel")

    def _raise_internal_errors(self) -> None:
        for execution in self.executions:
            future = execution.future
            if future is not None and future.done() and execution.outcome is None:
                future.result()  # re-raises a bug from the session thread here

    # ------------------------------------------------------------------ the end

    def finish(self) -> None:
        """Resolve or cancel whatever still waits, then close every session."""
        self.settle_all()
        self.close()

    def close(self) -> None:
        for name, seat in list(self._seats.items()):
            if seat.last is not None and not seat.last.finished():
                self.cancel(seat.last, "the session is closing")
            self._record_finished()
            try:
                state, count = seat.executor.submit(seat.session.close).result(timeout=30)
            finally:
                seat.executor.shutdown(wait=False)
            self.timeline.add(name, EventKind.SESSION_CLOSED, describe_close(name, state, count))
        self._seats.clear()


def _described(info: SnapshotInfo) -> str:
    return (
        f"{info.method}, {plural(info.tables, 'table')}, {human_size(info.size_bytes)}, "
        f"{info.elapsed_ms:.0f} ms"
    )


def _introspect(session: Session) -> Schema | None:
    from sandbox.guard.introspect import introspect

    return introspect(session)
