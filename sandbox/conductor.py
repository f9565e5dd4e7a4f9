"""Several independent sessions, and one record of what each of them did, as it happened.

The model, shared by the app and by `dbsandbox run`:

- Every session has its own connection and its own thread; its statements run one after
  another, and a statement never waits for another session's statement unless the engine
  makes it wait.
- `submit` hands a statement to its session and returns at once. What becomes of it is written
  on the timeline by the thread that sees it, the moment it sees it: the session's thread
  records that it was sent and how it ended; the watcher thread records that it waits on a lock
  (and on whom), that the wait is over, and a statement timeout.
- A script's pacing sits on top of the same state: `execute` submits and then *settles*, i.e.
  waits until every statement in flight has finished or waits on a lock that a person at a
  terminal would see still waiting (see `Conductor.settled`). The next line is sent only then,
  so a COMMIT that releases a waiting statement is followed by that statement's outcome before
  the script moves on, on an idle machine and on a loaded one.
"""

from __future__ import annotations

import concurrent.futures as cf
import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.errors import UserError
from sandbox.locks import (
    HeldLock,
    QueuePlace,
    RelationFile,
    Rewrite,
    WaitSpan,
    compare_files,
    held_summary,
    mentions,
    rewrites_summary,
    wait_words,
)
from sandbox.masking import first_line
from sandbox.outcome import Outcome, SqlError, Status, TxState
from sandbox.session import CONNECTION_LOST_NOTE, Session
from sandbox.snapshots.model import SnapshotError, SnapshotInfo, human_size
from sandbox.sqlkind import StatementKind, TxControl, classify
from sandbox.statements import STATEMENT_COMMANDS, MetaCommand, Statement
from sandbox.targets import Target, Waiter, WaitInfo
from sandbox.timeline import EventKind, Timeline
from sandbox.transcript import Timeline as EventSink
from sandbox.transcript import (
    describe_close,
    plural,
    record_findings,
    record_outcome,
    short_sql,
)
from sandbox.worker import Worker

if TYPE_CHECKING:
    # The guard pulls in sqlglot; the conductor only needs its types until one is passed.
    from sandbox.guard.policy import Guard, Review
    from sandbox.guard.schema import Schema

# How often the watcher asks the engine about running statements. SQLite's probe is a local
# file lock test; PostgreSQL's is one catalog query on the watcher's own connection.
_WATCH_S = {"sqlite": 0.005, "postgres": 0.015}
# A statement's first moments are watched closely: a wait that a short lock_timeout or
# statement_timeout ends after 10 ms must still be seen as a wait.
_WATCH_YOUNG_S = 0.003
_YOUNG_S = 0.25
# How long a cancelled statement is given before the cancel is sent again.
_CANCEL_RETRY_S = 0.5
# After its connection is cut, how long a statement's driver call is given to return before
# the statement is written off (its thread, a daemon, is left to the operating system).
_SEVER_GRACE_S = 2.0
LOST_SESSION_NOTE = "not run: this session's connection was lost; open a new session to go on"
SERVER_SILENT_NOTE = (
    "the server did not answer the cancel (is it frozen or unreachable?): the connection was "
    "cut, whatever this session had not committed is lost, and it cannot run anything more"
)


@dataclass(eq=False)
class Execution:
    """One statement sent to one session, and what became of it."""

    index: int
    session: str
    statement: Statement
    kind: StatementKind
    started: float | None = None  # when its session sent it to the engine
    sent_at: float | None = None  # the same moment on the wall clock (time.time())
    waited: bool = False  # it waited on a lock at some point
    waiting: bool = False  # it waits on a lock right now
    blocked_by: list[str] = field(default_factory=list)  # everyone it ever waited for
    waiting_on: list[str] = field(default_factory=list)  # who holds it up right now
    wait_detail: str | None = None  # which lock, where the engine says (PostgreSQL)
    # When the watcher last asked the engine and heard that it still waits: a confirmation
    # older than another statement's end may be stale (that end may have released it).
    wait_seen: float = 0.0
    # Every lock wait, start to end: whom it waited for, the lock, the queue ahead of it.
    waits: list[WaitSpan] = field(default_factory=list)
    sent_ms: float | None = None  # when it was sent, on the timeline (its first wait began then)
    # PostgreSQL: the relation locks its session held right after it (none in autocommit:
    # they were released with the statement), and the relations it rewrote.
    locks: list[HeldLock] = field(default_factory=list)
    rewrites: list[Rewrite] = field(default_factory=list)
    outcome: Outcome | None = None
    review: Review | None = None  # what the guard found and decided, when it looked
    meta: str | None = None  # a snapshot command (\\snapshot ...) rather than SQL
    carried: str | None = None  # `\\explain`: the statement it plans
    snapshot_before: str | None = None  # the snapshot taken automatically just before it ran
    # Settled at a confirmed lock wait even where the engine would end the wait on its own
    # (a SQLite busy wait): the script goes on while it waits. See `\\background`.
    background: bool = False
    # A later page of an earlier query (`page_of`, its index), re-run with its first `skip`
    # rows passed over: see Conductor.page.
    page_of: int | None = None
    skip: int | None = None
    cancelling: str | None = None  # why dbsandbox asked the engine to stop it
    # A traced program's statement (`dbsandbox trace`): the program's file:line that sent it,
    # and its parameters as the tracer recorded them (secrets masked).
    origin: str | None = None
    params: Any = None
    # A traffic session's statement (`\\traffic`, sandbox.traffic): that session's name.
    traffic: str | None = None
    replay: str | None = None  # the statement with its parameters written in, for a replay
    # Or how to write it, when first asked (`replayed`): writing in every traced statement's
    # parameters as it was recorded cost the recorder more than the rest of the statement.
    replay_later: Callable[[], str | None] | None = field(default=None, repr=False)
    failure: BaseException | None = None  # a bug on the session's thread, re-raised by settle
    reviewed: threading.Event = field(default_factory=threading.Event, repr=False)
    # Orders "started waiting" against "finished" when the watcher and the session race.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _generation: int = 0  # the session's cancel generation when it was submitted
    _running_since: float = 0.0  # start of the current stretch of running (not waiting)
    _cancel_sent: float = 0.0  # when the engine was last asked to stop it
    _cancel_asked: float = 0.0  # when dbsandbox first asked (the cancel's grace runs from it)
    _severed: float = 0.0  # when its connection was cut because the cancel did not land
    _review_began: float = 0.0  # when the guard began asking the engine about it
    _wait_began: float = 0.0  # when its current (or last) lock wait began (perf_counter)
    _queue_asked: float = 0.0  # when the queue ahead of its wait was last asked for

    def finished(self) -> bool:
        return self.outcome is not None or self.failure is not None

    def replayed(self) -> str | None:
        """The statement as a replay sends it (`replay`), written now if it was left for
        later."""
        later = self.replay_later
        if later is not None:
            self.replay, self.replay_later = later(), None
        return self.replay

    def start_wait(
        self,
        timeline: EventSink,
        blockers: list[str],
        what: str,
        message: str,
        *,
        said: str | None = None,
        lock: str | None = None,
        queue: Sequence[QueuePlace] = (),
        **data: Any,
    ) -> None:
        """It waits for `blockers` (from now, or as the engine's error proves): recorded on
        its session's lane, for a script's session and a traced program's lane alike.

        `said` is whom and what it waits for in words (the message without "waiting for");
        a wait whose holders change (a queue moving on) stays one wait."""
        was_waiting = self.waiting
        self.waited = self.waiting = True
        self.waiting_on = list(blockers)
        # Everyone it waited for, in order: after a release, a statement queued behind the
        # same row can take the lock first and become the next holder.
        self.blocked_by += [b for b in blockers if b not in self.blocked_by]
        places = [place.to_json() for place in queue]
        event = timeline.add(
            self.session,
            EventKind.LOCK_WAIT,
            message,
            statement=self.index,
            blocked_by=list(blockers),
            waits_for=what,
            lock=lock,
            queue=places or None,
            **data,
        )
        said = said or message.removeprefix("waiting for ")
        if was_waiting and self.waits:
            span = self.waits[-1]
            span.blocked_by += [b for b in blockers if b not in span.blocked_by]
            if said != span.said:
                span.earlier.append(span.said)
            span.said, span.queue, span.lock = said, list(queue), lock or span.lock
            return
        seen = float(getattr(event, "elapsed_ms", 0.0))
        now = time.perf_counter()
        # Its first wait began when the statement reached the engine (a lock is asked for as it
        # starts), not when the watcher saw it; a later one when it was seen.
        first = not self.waits and self.started is not None and self.started <= now
        began_perf = self.started if first and self.started is not None else now
        began = seen - (now - began_perf) * 1000
        self.waits.append(WaitSpan(list(blockers), lock, said, max(0.0, began), list(queue)))
        self._wait_began = began_perf

    def end_wait(self, timeline: EventSink) -> None:
        """Its lock wait is over (granted, or ended by the statement's own end)."""
        self.waiting = False
        self.waiting_on = []
        span = self.waits[-1] if self.waits and self.waits[-1].ended_ms is None else None
        # The wait began when the statement reached the engine, not when the watcher saw it.
        began = self._wait_began or self.started or 0.0
        waited_ms = max(0.0, (time.perf_counter() - began) * 1000)
        if span is not None:
            span.ended_ms = span.started_ms + waited_ms
        timeline.add(
            self.session,
            EventKind.LOCK_RELEASED,
            f"lock wait over after {waited_ms:.0f} ms",
            statement=self.index,
            waited_ms=round(waited_ms, 3),
        )

    @property
    def running(self) -> bool:
        """Sent to the engine and not finished (it may be waiting on a lock)."""
        return self.started is not None and not self.finished()


@dataclass
class _Seat:
    session: Session
    executor: Worker
    last: Execution | None = None
    schema: Schema | None = None  # what this session sees, for schema-aware lint; None: stale
    lost: bool = False  # its connection is gone: what it is handed is not run
    generation: int = 0  # bumped by a cancel: statements queued before it never run
    # PostgreSQL, while its transaction is open: the locks it was last seen holding (a new
    # event only when they change), the relations' data files as committed before its first
    # statement that may rewrite one, and those statements (a rewrite inside a transaction is
    # visible to the watcher's connection only once it commits).
    held: tuple[HeldLock, ...] = ()
    tx_files: dict[int, RelationFile] | None = None
    tx_rewriters: list[Execution] = field(default_factory=list)


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


# Statements that may give a relation a new data file (a new relfilenode): ALTER TABLE that
# changes a column's type or storage, VACUUM FULL, CLUSTER, TRUNCATE, REINDEX, REFRESH
# MATERIALIZED VIEW, and code that may run any of them. Only around these are the files read.
_MAY_REWRITE = frozenset(
    {"ALTER", "VACUUM", "CLUSTER", "TRUNCATE", "REINDEX", "REFRESH", "DO", "CALL"}
)


def _holding(locks: Sequence[HeldLock], state: TxState) -> str:
    """What a session in a transaction holds now, in words."""
    if locks:
        return f"holds {held_summary(locks)}"
    if state is TxState.FAILED:
        # PostgreSQL aborts the transaction at the error and lets its locks go then; only its
        # shell waits for ROLLBACK.
        return "holds no locks: the error ended the transaction's work and released them"
    return "holds no locks now"  # ROLLBACK TO a savepoint releases what was taken after it


# The timeline event each snapshot command is recorded as (its failure too).
_META_EVENTS = {
    "snapshot": EventKind.SNAPSHOT,
    "snapshots": EventKind.SNAPSHOT,
    "restore": EventKind.RESTORE,
    "diff": EventKind.DIFF,
}


class _Gate:
    """Statements run side by side; a restore runs alone (it replaces the database).

    `shared` is entered once for every statement, so it is a plain context manager rather
    than a generator-based one (which costs a generator and its frame each time).
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._active = 0
        self._exclusive = False
        self._shared = _Shared(self)

    def shared(self) -> _Shared:
        return self._shared

    @contextlib.contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._cond:
            while self._exclusive:
                self._cond.wait()
            self._exclusive = True
            while self._active:
                self._cond.wait()
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class _Shared:
    """Entering holds a gate shared (waiting out a restore); leaving lets a restore go on."""

    def __init__(self, gate: _Gate) -> None:
        self._gate = gate

    def __enter__(self) -> None:
        gate = self._gate
        with gate._cond:
            while gate._exclusive:
                gate._cond.wait()
            gate._active += 1

    def __exit__(self, *exc: object) -> None:
        gate = self._gate
        with gate._cond:
            gate._active -= 1
            if not gate._active and gate._exclusive:
                gate._cond.notify_all()  # only a waiting restore cares


class Conductor:
    """Runs statements on named sessions and records everything on one timeline.

    Safe to call from several threads at once (the app submits from thread workers).
    """

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
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        # The watcher's own wake-ups: a statement sent while none ran, a statement ending while
        # others run (it may have released them), closing. Sharing `_changed` would wake it at
        # every start and end of every statement.
        self._watch_wake = threading.Condition(self._lock)
        # How long after it was sent a statement is first looked at: SQLite's probe is only
        # worth asking after its own delay, and a wait that a 10 ms timeout ends is still
        # seen by the looks every _WATCH_YOUNG_S that follow.
        self._first_look_s = max(target.wait_probe_after_s, _WATCH_YOUNG_S)
        self._watcher_idle = False  # waiting, with no timeout, for a statement to be sent
        self._opening = threading.Lock()  # one session connects at a time
        self._gate = _Gate()
        self._running: set[Execution] = set()
        self._in_flight: set[Execution] = set()
        self._last_finish = 0.0  # when a statement last ended: it may have released others
        self._failures: list[Execution] = []  # bugs on session threads, not yet re-raised
        # Connections of this sandbox that are not its sessions (a traced program's lanes):
        # a session waiting for a lock one of them holds names it (see `watch_with`).
        self._outsiders: list[Callable[[], Sequence[Waiter]]] = []
        self._closing = False
        self._watcher: threading.Thread | None = None
        self._watch_failing = False  # the engine did not answer the watcher's last question

    # ------------------------------------------------------------------ sessions

    @property
    def sessions(self) -> list[Session]:
        with self._lock:
            return [seat.session for seat in self._seats.values()]

    def session(self, name: str) -> Session:
        """The named session, opened (on its own thread) on first use."""
        return self._seat(name).session

    def _seat(self, name: str) -> _Seat:
        with self._lock:
            seat = self._seats.get(name)
        if seat is not None:
            return seat
        with self._opening:
            with self._lock:
                seat = self._seats.get(name)
                if seat is not None:
                    return seat
                if self._closing:
                    raise RuntimeError("the sandbox is closing")
            session = Session(name, self.target, self.page_size)
            executor = Worker(f"session-{name}")
            try:
                executor.submit(session.open).result()
            except BaseException:
                executor.shutdown()
                raise
            seat = _Seat(session, executor)
            with self._lock:
                self._seats[name] = seat
        detail = f" (server process {session.pid})" if session.pid else ""
        self.timeline.add(name, EventKind.SESSION_OPENED, f"session {name} opened{detail}")
        return seat

    def quietly(self, session_name: str, sql: str, timeout_s: float | None = None) -> Outcome:
        """Run SQL on a session off the record (session settings, a scenario's checks).

        Waits for the session's last statement first; nothing goes on the timeline. With a
        timeout, a statement still running after it is cancelled (its outcome says so).
        """
        seat = self._seat(session_name)
        self._after_last(seat)
        kind = classify(sql, self.target.adapter.dialect)
        future = seat.executor.submit(seat.session.execute, sql, kind)
        try:
            return future.result(timeout=timeout_s)
        except cf.TimeoutError:
            seat.session.cancel()
        try:
            return future.result(timeout=self.target.cancel_grace_s)
        except cf.TimeoutError:
            seat.session.sever()
        try:
            return future.result(timeout=_SEVER_GRACE_S)
        except cf.TimeoutError:
            seat.lost = True
            state = seat.session.tx_state
            return Outcome(Status.ERROR, state, state, 0.0, note=SERVER_SILENT_NOTE)

    # ------------------------------------------------------------------ statements

    def submit(
        self,
        session_name: str,
        statement: Statement,
        guard: Guard | None = None,
        *,
        background: bool = False,
        command: MetaCommand | None = None,
        page_of: Execution | None = None,
        skip: int | None = None,
        traffic: str | None = None,
    ) -> Execution:
        """Hand one statement to its session and return at once.

        It runs after whatever the session is still running (the timeline says it is queued);
        with a guard it is reviewed first, on the session's own thread (`reviewed` is set then);
        a statement the guard stops is recorded as blocked, never run.

        With `command` (`\\explain`; `statement` is then its `as_statement`) the session plans
        the statement the command carries instead: queued, watched and cancelled like a
        statement.
        """
        seat = self._seat(session_name)
        if command is not None:
            from sandbox.metacommands import kind_of

            kind = kind_of(command)
        else:
            kind = classify(statement.text, self.target.adapter.dialect)
        with self._lock:
            execution = Execution(len(self.executions), session_name, statement, kind)
            if command is not None:
                execution.meta, execution.carried = command.name, command.sql
            execution.background = background
            execution.traffic = traffic
            if page_of is not None:
                execution.page_of, execution.skip = page_of.index, skip
            execution._generation = seat.generation
            self.executions.append(execution)
            ahead = seat.last if seat.last is not None and not seat.last.finished() else None
            seat.last = execution
            self._in_flight.add(execution)
        if ahead is not None:
            why = f"waits for {', '.join(ahead.waiting_on)}" if ahead.waiting else "still runs"
            self.timeline.add(
                session_name,
                EventKind.QUEUED,
                f"queued: {short_sql(statement.text, 48)} runs after line {ahead.statement.line}, "
                f"which {why}",
                statement=execution.index,
                behind=ahead.index,
                line=statement.line,
            )
        if seat.lost:
            # Its thread may be stuck in a driver call that never returns: answer here.
            self._finish_unrun(execution, LOST_SESSION_NOTE)
            _reviewed(execution)
            with self._lock:
                self._in_flight.discard(execution)
                self._changed.notify_all()
            return execution
        seat.executor.submit(self._perform, seat, execution, guard)
        return execution

    def page(self, session_name: str, source: Execution, skip: int) -> Execution:
        """Re-run a read-only query on its own session for the page after its first `skip` rows.

        Nothing is kept open between pages (no cursor, no transaction, no read snapshot), so
        no other session can feel the paging: each page is the query run again, a statement
        of its own on the timeline. In autocommit it is its own (PostgreSQL: READ ONLY)
        transaction; inside the session's open transaction it is part of it, which is the only
        way to see that transaction's own uncommitted rows. The data, and an ORDER BY-less
        query's order, may differ from the first run's.
        """
        if not pageable(source):
            raise UserError(
                "only a query (SELECT, WITH, VALUES or TABLE) that writes nothing "
                "can be re-run for another page"
            )
        if skip < 0:
            raise UserError("a page starts at row 1 or later")
        return self.submit(session_name, source.statement, page_of=source, skip=skip)

    def execute(
        self,
        session_name: str,
        statement: Statement,
        guard: Guard | None = None,
        *,
        background: bool = False,
    ) -> Execution:
        """A script's step: submit, then settle (see `settled`).

        A session whose previous statement still waits on a lock cannot run this one: that
        wait gets `wait_timeout_s` to resolve, then it is cancelled, so a script never hangs.
        """
        if self._after_last(self._seat(session_name)):
            # Whatever its end released is recorded before this statement is sent.
            self.settle()
        execution = self.submit(session_name, statement, guard, background=background)
        self.settle()
        return execution

    def _after_last(self, seat: _Seat) -> bool:
        """Let the session's previous statement end first: `wait_timeout_s`, then cancelled.

        Returns whether there was one to wait for.
        """
        last = seat.last
        if last is None or last.finished():
            return False
        self._wait_for(last, self.wait_timeout_s)
        return True

    def _perform(self, seat: _Seat, execution: Execution, guard: Guard | None) -> None:
        """Runs on the session's thread: review, send, and record what the engine answered."""
        try:
            if execution.finished():
                return  # written off while it was queued behind a statement that hung
            if execution._generation != seat.generation:
                self._finish_unrun(execution, "not run: cancelled while it was queued")
                return
            if seat.lost:
                self._finish_unrun(execution, LOST_SESSION_NOTE)
                return
            with self._gate.shared():
                execution._review_began = time.perf_counter()
                if guard is not None and not self._passes(guard, seat, execution):
                    return
                if execution.carried is not None and not self._may_plan(seat, execution):
                    return
                execution.reviewed.set()
                self._send(seat, execution)
        except BaseException as exc:  # a bug: settle re-raises it on the caller's thread
            execution.failure = exc
            with self._lock:
                self._failures.append(execution)
            raise
        finally:
            _reviewed(execution)
            with self._lock:
                self._running.discard(execution)
                self._in_flight.discard(execution)
                self._last_finish = time.perf_counter()
                self._changed.notify_all()
                if self._running:
                    self._watch_wake.notify_all()

    def _send(self, seat: _Seat, execution: Execution) -> None:
        session = seat.session
        statement = execution.statement
        with self._lock:
            execution.started = execution._running_since = time.perf_counter()
            execution.sent_at = time.time()
        files_before = self._files_before(execution)
        sent = "sent"
        if execution.skip is not None:
            first = execution.skip + 1
            sent = f"sent again for rows {first:,}–{execution.skip + self.page_size:,}"
        sent_event = self.timeline.add(
            execution.session,
            EventKind.STATEMENT,
            f"{sent}: {short_sql(statement.text)}",
            statement=execution.index,
            line=statement.line,
            **({"page_of": execution.page_of, "skip": execution.skip} if sent != "sent" else {}),
        )
        execution.sent_ms = sent_event.elapsed_ms
        with self._lock:
            self._running.add(execution)
            if self._watcher_idle:
                self._watch_wake.notify_all()
        self._ensure_watcher()
        if execution.carried is not None:
            from sandbox.plans import explain

            outcome = explain(session, execution.carried, self.target.own_directory)
        else:
            outcome = session.execute(statement.text, execution.kind, execution.skip)
        if outcome.status is Status.OK and execution.kind.keyword in _CHANGES_SCHEMA:
            with self._lock:
                for other in self._seats.values():
                    other.schema = None
        if outcome.note == CONNECTION_LOST_NOTE:
            seat.lost = True
        proven = None
        if outcome.error is not None and not execution.waited:
            proven = self.target.wait_in_error(session, outcome.error, self.sessions)
        # Before the outcome is in: the session runs nothing more until this returns, so its
        # transaction still holds exactly what the statement left it holding.
        observed = self._observe(seat, execution, outcome, files_before)
        with execution.lock:
            if execution.outcome is not None:
                return  # written off (`_write_off`) while the driver would not return
            if proven is not None and not execution.waited:
                self._note_proven_wait(execution, proven)
            execution.outcome = outcome
            if execution.waiting:
                self._wait_over(execution)
            record_outcome(self.timeline, session, execution.index, execution.kind, outcome)
            if execution.carried is not None and outcome.data is not None and outcome.note:
                # What the plan says, and what the engine ran to get it (ANALYZE runs it).
                data = outcome.data
                ran = data["plan"]["ran"] if "plan" in data else data.get("ran", [])
                self.timeline.add(
                    execution.session,
                    EventKind.NOTICE,
                    f"plan of {short_sql(execution.carried, 48)}: {outcome.note}",
                    statement=execution.index,
                    ran=ran,
                )
            if observed is not None:
                message, data = observed
                self.timeline.add(
                    execution.session, EventKind.LOCKS, message, statement=execution.index, **data
                )
        if outcome.note == CONNECTION_LOST_NOTE:
            self._lose(seat, CONNECTION_LOST_NOTE, statement=execution.index)

    # ------------------------------------------------------------------ observed locks

    def _observes(self, execution: Execution) -> bool:
        return self.target.observes_locks and execution.meta is None

    def _quietly_ask(self, question: Callable[[], Any]) -> Any:
        """A question for the watcher's connection, or None when it cannot be answered now
        (the statement's own outcome matters more than what it held)."""
        if self._watch_failing:
            return None
        try:
            return question()
        except Exception:
            return None

    def _files_before(self, execution: Execution) -> dict[int, RelationFile] | None:
        """The relations' data files before a statement that may rewrite one."""
        if not self._observes(execution) or execution.kind.keyword not in _MAY_REWRITE:
            return None
        found: dict[int, RelationFile] | None = self._quietly_ask(self.target.relation_files)
        return found

    def _observe(
        self,
        seat: _Seat,
        execution: Execution,
        outcome: Outcome,
        files_before: dict[int, RelationFile] | None,
    ) -> tuple[str, dict[str, Any]] | None:
        """What the statement left its session holding, and what it rewrote, read on the
        watcher's connection (never the session's own: a question there would be part of its
        transaction); the message and data of the event that says so, or None when there is
        nothing new to say."""
        if not self._observes(execution):
            return None
        if outcome.note == CONNECTION_LOST_NOTE:
            seat.held, seat.tx_files, seat.tx_rewriters = (), None, []
            return None
        before, after = outcome.tx_before, outcome.tx_after
        said: list[str] = []
        data: dict[str, Any] = {}
        if files_before is not None and after is not TxState.IDLE:
            # Inside a transaction the new files are the transaction's secret until COMMIT.
            if seat.tx_files is None:
                seat.tx_files = files_before
            seat.tx_rewriters.append(execution)
        elif files_before is not None and before is TxState.IDLE:
            files_after = self._quietly_ask(self.target.relation_files)
            if files_after is not None:
                execution.rewrites = compare_files(files_before, files_after)
                if execution.rewrites:
                    said.append(f"rewrote {rewrites_summary(execution.rewrites)}")
                    data["rewrites"] = [r.to_json() for r in execution.rewrites]
        if after is TxState.IDLE:
            control = execution.kind.tx_control
            committed = (
                before is not TxState.IDLE
                and outcome.status is Status.OK
                and outcome.tag != "ROLLBACK"
                and control in (TxControl.COMMIT, TxControl.RELEASE)
            )
            if seat.held:
                said.append("released its locks at " + ("COMMIT" if committed else "ROLLBACK"))
                data["released"] = [lock.to_json() for lock in seat.held]
            if committed and seat.tx_files is not None and seat.tx_rewriters:
                said += self._committed_rewrites(seat.tx_files, seat.tx_rewriters, data)
            seat.held, seat.tx_files, seat.tx_rewriters = (), None, []
        else:
            locks = self._quietly_ask(lambda: self.target.held_locks(seat.session))
            if locks is not None:
                execution.locks = list(locks)
                if tuple(locks) != seat.held:
                    said.insert(0, _holding(locks, after))
                    data["locks"] = [lock.to_json() for lock in locks]
                seat.held = tuple(locks)
        if not said:
            return None
        return "; ".join(said), data

    def _committed_rewrites(
        self,
        files_before: dict[int, RelationFile],
        rewriters: list[Execution],
        data: dict[str, Any],
    ) -> list[str]:
        """Rewrites a transaction made, seen as it commits, credited to its statements that
        may have made them (those naming the relation, else all of them)."""
        files_after = self._quietly_ask(self.target.relation_files)
        if files_after is None:
            return []
        found = compare_files(files_before, files_after, seen="commit")
        if not found:
            return []
        for rewrite in found:
            named = [e for e in rewriters if mentions(e.statement.text, rewrite)] or rewriters
            for execution in named:
                execution.rewrites.append(rewrite)
        credited = [e for e in rewriters if e.rewrites]
        lines = sorted({e.statement.line for e in credited})
        by = ", ".join(str(n) for n in lines)
        data["rewrites"] = [r.to_json() for r in found]
        data["rewritten_by"] = [e.index for e in credited]
        where = f"line {by}" if len(lines) == 1 else f"lines {by}"
        return [f"rewrote {rewrites_summary(found)} (by {where}; committed now)"]

    def _note_proven_wait(self, execution: Execution, wait: WaitInfo) -> None:
        """Record a lock wait that a timeout ended before the watcher's first look, from the
        engine's own error (the caller holds the execution's lock): the statement did wait,
        and a timeline that said otherwise would depend on how fast this machine polls."""
        held = f" held by {', '.join(wait.blockers)}" if wait.blockers else ""
        execution.start_wait(
            self.timeline,
            wait.blockers,
            wait.what,
            f"waited for {wait.what}{held} (the server's error says so: the wait ended "
            f"before it could be watched)",
        )
        execution.end_wait(self.timeline)

    def watch_with(self, lanes: Callable[[], Sequence[Waiter]]) -> Callable[[], None]:
        """Count other connections of this sandbox (a trace's lanes) among the lock holders a
        session's wait is checked against; returns what undoes it."""
        with self._lock:
            self._outsiders.append(lanes)

        def undo() -> None:
            with self._lock:
                if lanes in self._outsiders:
                    self._outsiders.remove(lanes)

        return undo

    def adopt(self, make: Callable[[int], Execution]) -> Execution:
        """Number and keep an execution made elsewhere: a traced program's statement
        (`sandbox.trace`), so it shares this run's numbering, reports and exports."""
        with self._lock:
            execution = make(len(self.executions))
            self.executions.append(execution)
        return execution

    def _wait_over(self, execution: Execution) -> None:
        """Record the end of a lock wait (the caller holds the execution's lock)."""
        execution.end_wait(self.timeline)

    def _finish_unrun(self, execution: Execution, note: str) -> None:
        """Record a statement that never reached the engine: cancelled while queued, or handed
        to a session whose connection is gone (an error: the statement could not run)."""
        seat = self._seats.get(execution.session)
        state = seat.session.tx_state if seat is not None else TxState.IDLE
        lost = note == LOST_SESSION_NOTE
        status = Status.ERROR if lost else Status.CANCELLED
        execution.outcome = Outcome(
            status=status, tx_before=state, tx_after=state, elapsed_ms=0.0, note=note
        )
        self.timeline.add(
            execution.session,
            EventKind.ERROR if lost else EventKind.CANCELLED,
            note,
            statement=execution.index,
            outcome=str(status),
        )

    def _passes(self, guard: Guard, seat: _Seat, execution: Execution) -> bool:
        """Review a statement (on its session's thread); False when it must not run."""
        session = seat.session
        dialect = self.target.adapter.dialect
        statement = execution.statement
        schema = None
        if execution.kind.keyword in _SCHEMA_AWARE:
            if seat.schema is None:
                seat.schema = _introspect(session)
            schema = seat.schema
        # Acknowledgements are keyed by the statement's place in its own text (a script, or
        # the editor's text), not by its place in the run, which also counts \\ commands.
        review = guard.review(
            statement, session, dialect, schema, sandbox_dir=self.target.own_directory
        )
        execution.review = review
        record_findings(self.timeline, execution.session, execution.index, review)
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
        self.timeline.add(
            execution.session,
            EventKind.GUARD,
            f"not run: {review.reason}",
            statement=execution.index,
            line=statement.line,
            outcome=str(Status.BLOCKED),
        )
        return False

    def _may_plan(self, seat: _Seat, execution: Execution) -> bool:
        """`\\explain` of a statement that reaches outside the sandbox: not even planned, and
        recorded as the guard records a statement it stops (nothing is sent)."""
        from sandbox.plans import refusal

        assert execution.carried is not None
        why = refusal(execution.carried, self.target.adapter.dialect, self.target.own_directory)
        if why is None:
            return True
        state = seat.session.tx_state
        execution.outcome = Outcome(Status.BLOCKED, state, state, 0.0, note=why)
        self.timeline.add(
            execution.session,
            EventKind.GUARD,
            f"not run: {why}",
            statement=execution.index,
            line=execution.statement.line,
            outcome=str(Status.BLOCKED),
        )
        return False

    def _snapshot_before(self, execution: Execution) -> None:
        """A confirmed dangerous statement is about to run: keep a way back."""
        with self._lock:
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

    # ------------------------------------------------------------------ pacing

    @property
    def pending(self) -> list[Execution]:
        """Statements handed to a session and not finished (queued, running or waiting)."""
        with self._lock:
            return sorted(self._in_flight, key=lambda e: e.index)

    def settled(self, execution: Execution) -> bool:
        """Whether a script may send its next line as far as `execution` is concerned.

        Finished, or confirmed waiting on a lock that a person at a terminal would see still
        waiting: every PostgreSQL lock wait (the engine waits until the holder is done), and a
        SQLite busy wait only when its busy timeout is at least a human pause (1 s) or the
        statement was sent with `\\background`; a shorter busy wait ends on its own before
        anyone could type the next line, so it is waited out.
        """
        if execution.finished():
            return True
        if not execution.waiting or execution.wait_seen <= self._last_finish:
            return False
        return execution.background or not self.target.waits_end_on_their_own

    def settle(self) -> None:
        """Wait until every statement in flight is settled (bounded by the statement timeout,
        which the watcher enforces)."""
        while True:
            with self._lock:
                self._raise_internal_errors()
                if all(self.settled(e) for e in self._in_flight):
                    return
                # Woken by every start, finish and confirmed wait; the timeout is a safety net.
                self._changed.wait(0.05)
                in_review = [e for e in self._in_flight if e._review_began and e.started is None]
            # Outside the lock: writing a statement off takes the execution's lock.
            for execution in in_review:
                self._press_review(execution, time.perf_counter())

    def _press_review(self, execution: Execution, now: float) -> None:
        """Bound the guard's review of a statement, which asks the engine (the schema, the
        rows a DELETE would hit) before the statement is sent: on a live server its reads
        time out by themselves; on a frozen one they never return, so the session's
        connection is cut, as for a statement whose cancel does not land."""
        if execution.finished():
            return
        if execution._severed:
            seat = self._seats.get(execution.session)
            if seat is not None and now - execution._severed >= _SEVER_GRACE_S:
                self._write_off(seat, execution)
            return
        bound = self.statement_timeout_s + self.target.cancel_grace_s
        if now - execution._review_began < bound:
            return
        seat = self._seats.get(execution.session)
        if seat is None:
            return
        execution._severed = now
        self.timeline.add(
            execution.session,
            EventKind.NOTICE,
            f"the server did not answer the guard's questions about this statement within "
            f"{bound:g} s: cutting the session's connection",
            statement=execution.index,
        )
        seat.session.sever()

    def settle_all(self) -> None:
        """Let every statement in flight resolve (or cancel it after the wait timeout)."""
        deadline = time.perf_counter() + self.wait_timeout_s
        for execution in self.pending:
            self._wait_for(execution, max(0.0, deadline - time.perf_counter()))

    def wait_finished(self, execution: Execution, timeout_s: float) -> bool:
        """Whether the statement ended within `timeout_s`; unlike a script's step, it is not
        cancelled after (a traffic session paces itself on its own statements' ends).

        Ended means its session is done with it: its outcome is on the timeline too."""
        deadline = time.perf_counter() + timeout_s
        with self._lock:
            while not execution.finished() or execution in self._in_flight:
                left = deadline - time.perf_counter()
                if left <= 0:
                    return False
                self._changed.wait(left)
        return True

    def _wait_for(self, execution: Execution, timeout_s: float) -> None:
        """Let the engine resolve a statement, at most `timeout_s`; then cancel it."""
        deadline = time.perf_counter() + timeout_s
        with self._lock:
            while not execution.finished():
                left = deadline - time.perf_counter()
                if left <= 0:
                    break
                self._changed.wait(min(left, 0.05))
        if not execution.finished():
            self.cancel(execution, f"still waiting after {timeout_s:g} s")
        self._raise_internal_errors()

    def _raise_internal_errors(self) -> None:
        with self._lock:
            if not self._failures:
                return
            execution = self._failures.pop(0)
        failure = execution.failure
        assert failure is not None
        execution.failure = None
        execution.outcome = execution.outcome or Outcome(
            Status.ERROR, TxState.IDLE, TxState.IDLE, 0.0, note="internal error"
        )
        raise failure

    # ------------------------------------------------------------------ the watcher

    def _ensure_watcher(self) -> None:
        with self._lock:
            if self._watcher is None and not self._closing:
                self._watcher = threading.Thread(
                    target=self._watch, name="dbsandbox-watcher", daemon=True
                )
                self._watcher.start()

    def _watch(self) -> None:
        """Ask the engine about every running statement: lock waits, and the timeout.

        A statement is first looked at `_first_look_s` after it was sent: one that ends
        sooner (most do, in well under a millisecond) never costs the watcher a wake-up or
        the engine a probe.
        """
        settled_interval = _WATCH_S.get(self.target.engine, 0.01)
        while True:
            with self._lock:
                while True:
                    if self._closing:
                        return
                    if not self._running:
                        self._watcher_idle = True  # the next statement sent wakes it
                        self._watch_wake.wait()
                        self._watcher_idle = False
                        continue
                    now = time.perf_counter()
                    sent = min(e.started or now for e in self._running)
                    due = sent + self._first_look_s - now
                    if due <= 0:
                        break
                    self._watch_wake.wait(due)
                running = sorted(self._running, key=lambda e: e.index)
            if not self._look_at(running):
                time.sleep(0.5)  # the engine did not answer: do not hammer it
            now = time.perf_counter()
            young = any(e.started is not None and now - e.started < _YOUNG_S for e in running)
            with self._lock:
                # A statement's end may have released another: `_perform` wakes the watcher
                # to look again at once then.
                self._watch_wake.wait(_WATCH_YOUNG_S if young else settled_interval)

    def _look_at(self, running: list[Execution]) -> bool:
        """One round of questions; False when the engine could not be asked (the statement
        timeout is enforced all the same: it needs no answer from the engine)."""
        now = time.perf_counter()
        with self._lock:
            outsiders = list(self._outsiders)
        sessions: list[Waiter] = [*self.sessions, *(w for each in outsiders for w in each())]
        answered = True
        for execution in running:
            started = execution.started
            if execution.finished() or started is None:
                continue
            if execution.cancelling is not None:
                self._repeat_cancel(execution, now)
                continue
            seat = self._seats.get(execution.session)
            if (
                answered
                and seat is not None
                and now - started >= self.target.wait_probe_after_s
                and self._may_wait(execution)
            ):
                # Only a write that started earlier can hold a lock this statement waits for.
                earlier_writers = {
                    e.session
                    for e in running
                    if e.started is not None
                    and e.started < started
                    and not e.kind.read_only
                    and not e.waiting
                }
                asked = time.perf_counter()
                try:
                    wait = self.target.lock_wait(seat.session, sessions, earlier_writers)
                except Exception as exc:  # the monitor's connection is gone or silent
                    answered = False
                    self._watch_failed(execution, exc)
                else:
                    self._watch_failing = False
                    self._note_wait(seat.session, execution, wait, asked, sessions)
            # Now, not the round's start: the question above may have taken seconds.
            ran = time.perf_counter() - execution._running_since
            if not execution.waiting and ran > self.statement_timeout_s:
                self.request_cancel(execution, f"ran longer than {self.statement_timeout_s:g} s")
        return answered

    def _watch_failed(self, execution: Execution, exc: Exception) -> None:
        """Say once per outage that lock waits cannot be seen for now (not every 0.5 s)."""
        if self._watch_failing:
            return
        self._watch_failing = True
        reason = first_line(exc)
        self.timeline.add(
            execution.session,
            EventKind.NOTICE,
            f"lock watch interrupted ({reason}): waits are not shown until the server answers",
            statement=execution.index,
        )

    def _may_wait(self, execution: Execution) -> bool:
        kind = execution.kind
        # WAL readers never wait on SQLite.
        return not (self.target.engine == "sqlite" and kind.read_only and not kind.takes_write_lock)

    def _note_wait(
        self,
        session: Session,
        execution: Execution,
        wait: WaitInfo | None,
        asked: float,
        sessions: Sequence[Waiter] = (),
    ) -> None:
        blockers = wait.blockers if wait is not None else []
        detail = None
        queue: list[QueuePlace] = []
        # The queue ahead can change while the same sessions block it: a waiter ahead that is
        # granted the lock becomes its holder. That happens only when something ends.
        stale = execution.waiting and execution._queue_asked < self._last_finish
        requeued = False
        if blockers and (blockers != execution.waiting_on or stale):
            # Asked once per change: pg_blocking_pids is not cheap.
            execution._queue_asked = asked
            detail = self.target.describe_wait(session)
            try:
                queue = self.target.lock_queue(session, sessions) or []
            except Exception:  # the queue is a detail: the wait itself is known
                queue = []
            last = execution.waits[-1].queue if execution.waits else []
            # An empty queue means the wait ended between the questions (it was granted):
            # its end is recorded by the next look, not a new wait for nobody.
            requeued = stale and bool(queue) and queue != last
        with execution.lock:
            if execution.finished():
                return
            if not blockers:
                if execution.waiting:
                    # The lock was granted; the statement runs on (its outcome comes later).
                    self._wait_over(execution)
                    execution._running_since = time.perf_counter()
                    self._notify()
                return
            execution.wait_seen = asked
            if execution.waiting and blockers == execution.waiting_on and not requeued:
                self._notify()  # a fresh confirmation may settle a script's step
                return
            assert wait is not None
            execution.wait_detail = detail
            said = wait_words(wait.what, blockers, detail, queue)
            execution.start_wait(
                self.timeline,
                blockers,
                wait.what,
                f"waiting for {said}",
                said=said,
                lock=detail,
                queue=queue,
            )
        self._notify()

    def _notify(self) -> None:
        with self._lock:
            self._changed.notify_all()

    # ------------------------------------------------------------------ cancelling

    def request_cancel(self, execution: Execution, reason: str) -> None:
        """Ask the engine to stop a statement; returns at once (its outcome says what happened)."""
        with execution.lock:
            if execution.finished() or execution.cancelling is not None:
                return
            execution.cancelling = reason
            execution._cancel_asked = time.perf_counter()
            self.timeline.add(
                execution.session,
                EventKind.CANCELLED,
                f"cancelling: {reason}",
                statement=execution.index,
            )
        seat = self._seats.get(execution.session)
        if seat is not None and execution.started is not None:
            seat.session.cancel()
        execution._cancel_sent = time.perf_counter()

    def _repeat_cancel(self, execution: Execution, now: float) -> None:
        """Press a cancel home: send it again, then cut the connection, then write it off.

        sqlite3_interrupt() is a no-op until the statement is stepping again, and a cancel can
        race the statement's start, so it is sent again until the statement ends. A frozen
        server or backend never acts on it: after the target's grace the connection is cut,
        and a driver call that still does not return is written off.
        """
        seat = self._seats.get(execution.session)
        if seat is None or execution.finished():
            return
        if execution._severed:
            if now - execution._severed >= _SEVER_GRACE_S:
                self._write_off(seat, execution)
            return
        if execution._cancel_asked and now - execution._cancel_asked >= self.target.cancel_grace_s:
            execution._severed = now
            self.timeline.add(
                execution.session,
                EventKind.NOTICE,
                f"the cancel did not land within {self.target.cancel_grace_s:g} s: "
                "cutting the session's connection",
                statement=execution.index,
            )
            seat.session.sever()
            return
        if now - execution._cancel_sent >= _CANCEL_RETRY_S:
            seat.session.cancel()
            execution._cancel_sent = now

    def _lose(self, seat: _Seat, reason: str, statement: int | None = None, **data: Any) -> None:
        """The session's connection is gone (dropped, cut, or not reopened after a restore):
        record it once; from now on it runs nothing more."""
        seat.lost = True
        self.timeline.add(
            seat.session.name,
            EventKind.CONNECTION_LOST,
            f"session {seat.session.name} is gone: {reason}",
            statement=statement,
            **data,
        )

    def _write_off(self, seat: _Seat, execution: Execution) -> None:
        """Give up on a statement whose driver call will not return; its session is lost."""
        seat.lost = True
        state = seat.session.tx_state
        with execution.lock:
            if execution.finished():
                return
            execution.outcome = Outcome(Status.ERROR, state, state, 0.0, note=SERVER_SILENT_NOTE)
            execution.waiting = False
            self._lose(
                seat, SERVER_SILENT_NOTE, statement=execution.index, outcome=str(Status.ERROR)
            )
        with self._lock:
            queued = [
                e
                for e in self._in_flight
                if e.session == execution.session and e is not execution and e.started is None
            ]
        for behind in queued:
            self._finish_unrun(behind, LOST_SESSION_NOTE)
        with self._lock:
            for done in (execution, *queued):
                self._running.discard(done)
                self._in_flight.discard(done)
            self._last_finish = time.perf_counter()
            self._changed.notify_all()

    def cancel(self, execution: Execution, reason: str) -> None:
        """Stop a statement and wait (bounded) for its outcome.

        Bounded even on a frozen server: the cancel is pressed home by `_repeat_cancel`.
        """
        self.request_cancel(execution, reason)
        while not execution.finished():
            with self._lock:
                if not execution.finished():
                    self._changed.wait(0.05)
            if execution.finished():
                break
            # Outside the conductor's lock: writing a statement off takes the execution's.
            if execution.started is not None:
                self._repeat_cancel(execution, time.perf_counter())
            elif execution._cancel_asked and (
                time.perf_counter() - execution._cancel_asked
                > self.target.cancel_grace_s + _SEVER_GRACE_S
            ):
                break  # never sent: its session is stuck behind another statement

    def cancel_session(self, name: str, reason: str = "cancelled by you") -> Execution | None:
        """Stop what `name` runs or waits for, and drop what is queued behind it.

        Returns the statement that was running, or None when the session was idle.
        """
        with self._lock:
            seat = self._seats.get(name)
            if seat is None:
                return None
            seat.generation += 1
            running = [e for e in self._running if e.session == name]
        for execution in running:
            self.request_cancel(execution, reason)
        return running[0] if running else None

    # ------------------------------------------------------------------ snapshot commands

    def run_meta(self, session_name: str, command: MetaCommand) -> Execution:
        """Run \\snapshot, \\restore, \\diff or \\snapshots on behalf of a session.

        Recorded like a statement (an Execution whose outcome carries the result in `data`);
        a request that cannot be done (unknown snapshot, a locked table) is an error outcome.
        The event that says how it ended is recorded once the outcome is in place.
        """
        from sandbox.metacommands import as_statement, kind_of

        seat = self._seat(session_name)
        if command.name in STATEMENT_COMMANDS:
            # It runs SQL on the session: a script's step like a statement (see `execute`).
            if self._after_last(seat):
                self.settle()
            execution = self.submit(session_name, as_statement(command), command=command)
            self.settle()
            return execution
        session = seat.session
        self._after_last(seat)
        with self._lock:
            execution = Execution(
                len(self.executions),
                session_name,
                as_statement(command),
                kind_of(command),
                meta=command.name,
            )
            self.executions.append(execution)
        before = session.tx_state
        started = execution.started = time.perf_counter()
        event = _META_EVENTS[command.name]
        try:
            outcome, message, data = self._meta(command, execution)
        except SnapshotError as exc:
            outcome = Outcome(
                status=Status.ERROR,
                tx_before=before,
                tx_after=session.tx_state,
                elapsed_ms=0.0,
                error=SqlError("dbsandbox", str(exc)),
            )
            message, data = f"{command.text} failed: {exc}", {"error": str(exc)}
        else:
            outcome.tx_before = before
            outcome.tx_after = session.tx_state
        outcome.elapsed_ms = (time.perf_counter() - started) * 1000
        execution.outcome = outcome
        self.timeline.add(
            session_name,
            event,
            message,
            statement=execution.index,
            outcome=str(outcome.status),
            **data,
        )
        _reviewed(execution)
        with self._lock:
            self._changed.notify_all()
        return execution

    def _meta(
        self, command: MetaCommand, execution: Execution
    ) -> tuple[Outcome, str, dict[str, Any]]:
        """Do the command: its outcome, and the message and data of the event that records it."""
        store = self.target.snapshots
        name = command.args[0] if command.args else ""
        outcome = Outcome(Status.OK, TxState.IDLE, TxState.IDLE, 0.0)
        if command.name == "snapshot":
            info = store.take(name, "on demand")
            outcome.note = f"snapshot {name} taken ({_described(info)}){self._uncommitted_note()}"
            outcome.data = {"snapshot": info.to_json()}
            return outcome, outcome.note, {"snapshot": info.to_json()}
        if command.name == "snapshots":
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
            return outcome, f"{plural(len(infos), 'snapshot')} listed", {}
        if command.name == "restore":
            done = self.restore(name, execution.session, execution.index)
            outcome.data = {"restore": done}
            outcome.note = str(done["message"])
            return outcome, outcome.note, {"snapshot": name, "discarded": done["rolled_back"]}
        diff = store.diff(name)
        outcome.columns, rows = diff.display()
        outcome.rows = list(rows)
        outcome.note = f"since {name}: {diff.summary()}{self._uncommitted_note()}"
        outcome.data = {"diff": {"snapshot": name, **diff.to_json()}}
        return outcome, outcome.note, {"snapshot": name}

    def _uncommitted_note(self) -> str:
        open_tx = [s.name for s in self.sessions if s.tx_state is not TxState.IDLE]
        if not open_tx:
            return ""
        return f" (committed data only: {', '.join(open_tx)} has an open transaction)"

    def restore(self, name: str, requester: str, index: int | None = None) -> dict[str, object]:
        """Put the sandbox back to snapshot `name`; every open transaction is rolled back first.

        Returns what happened, JSON-ready (the snapshot, who lost what, how long it took);
        the caller records the RESTORE event.
        """
        store = self.target.snapshots
        info = store.get(name)
        # Statements still waiting on a lock would race the restore: let them end first.
        self.settle_all()
        with self._gate.exclusive():
            return self._restore(name, info, index)

    def _restore(self, name: str, info: SnapshotInfo, index: int | None) -> dict[str, object]:
        store = self.target.snapshots
        with self._lock:
            seats = list(self._seats.values())
        discarded: dict[str, int] = {}
        for seat in seats:
            session = seat.session
            if session.tx_state is TxState.IDLE:
                continue
            count = session.tx_statements
            seat.executor.submit(
                session.execute, "ROLLBACK", classify("ROLLBACK", self.target.adapter.dialect)
            ).result()
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
            for seat in seats:
                seat.executor.submit(seat.session.close).result()
        try:
            elapsed_ms = store.restore(name)
        finally:
            if store.reconnects:
                for seat in seats:
                    try:
                        failed = seat.executor.submit(seat.session.reopen).result()
                    except UserError as exc:  # the server went away during the restore
                        self._lose(seat, str(exc))
                        continue
                    if failed:
                        lost_settings[seat.session.name] = failed
        for seat in seats:
            seat.schema = None
            # Every transaction was rolled back: nothing is held, and no rewrite will commit.
            seat.held, seat.tx_files, seat.tx_rewriters = (), None, []
        rolled = "; ".join(
            f"{who}'s open transaction rolled back ({plural(n, 'statement')})"
            for who, n in discarded.items()
        )
        message = f"restored snapshot {name} ({info.reason}) in {elapsed_ms:.0f} ms" + (
            f"; {rolled}" if rolled else ""
        )
        if store.reconnects:
            message += "; sessions reconnected"
        return {
            "snapshot": info.to_json(),
            "elapsed_ms": round(elapsed_ms, 3),
            "rolled_back": discarded,
            "settings_lost": lost_settings,
            "message": message,
        }

    # ------------------------------------------------------------------ the end

    def finish(self) -> None:
        """Resolve or cancel whatever still waits, then close every session."""
        self.settle_all()
        self.close()

    def close_session(self, name: str) -> None:
        """Stop what the session runs, drop what is queued, and close its connection."""
        with self._lock:
            seat = self._seats.get(name)
        if seat is None:
            return
        self.cancel_session(name, "the session is closing")
        last = seat.last
        if last is not None and not last.finished():
            with contextlib.suppress(RuntimeError):
                self.cancel(last, "the session is closing")
        message: str | None = None
        try:
            if seat.lost:
                # Its connection is gone; closing it could block behind a driver call that
                # never returned. The server ended its transaction with the connection.
                message = f"session {name} closed (its connection had been lost)"
            else:
                future = seat.executor.submit(seat.session.close)
                try:
                    state, count = future.result(timeout=self.target.cancel_grace_s + 5)
                except cf.TimeoutError:
                    message = f"session {name} abandoned: closing its connection did not finish"
                else:
                    message = describe_close(name, state, count)
        finally:
            seat.executor.shutdown()
            with self._lock:
                self._seats.pop(name, None)
        self.timeline.add(name, EventKind.SESSION_CLOSED, message)

    def close(self) -> None:
        with self._lock:
            names = list(self._seats)
        try:
            for name in names:
                self.close_session(name)
        finally:
            with self._lock:
                self._closing = True
                self._changed.notify_all()
                self._watch_wake.notify_all()
                watcher = self._watcher
            # The watcher may be asking the engine right now: let it finish before the target
            # (and the watcher's connection) goes away.
            if watcher is not None and watcher is not threading.current_thread():
                watcher.join(timeout=2)


# The event every finished statement shares: once set, an Execution's `reviewed` stays set,
# and a 100,000-statement run need not keep a condition variable for each statement.
REVIEWED = threading.Event()
REVIEWED.set()


def _reviewed(execution: Execution) -> None:
    """Say that the statement's review is over, for good (waiters on its own event wake)."""
    execution.reviewed.set()
    execution.reviewed = REVIEWED


def pageable(execution: Execution) -> bool:
    """Whether a statement may be re-run for another page: a query that writes nothing."""
    kind = execution.kind
    return (
        execution.meta is None
        and kind.keyword in {"SELECT", "WITH", "VALUES", "TABLE"}
        and kind.read_only
        and not kind.locking
        and kind.streamable()
    )


def _described(info: SnapshotInfo) -> str:
    return (
        f"{info.method}, {plural(info.tables, 'table')}, {human_size(info.size_bytes)}, "
        f"{info.elapsed_ms:.0f} ms"
    )


def _introspect(session: Session) -> Schema | None:
    from sandbox.guard.introspect import introspect

    return introspect(session)
