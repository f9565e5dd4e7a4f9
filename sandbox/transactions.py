"""Transactions as spans of time, rebuilt from timeline events alone.

The timeline is a flat list of what happened; a learner needs to see the shape: which session
has a transaction open, for how long, with how many statements that a rollback would throw away,
which savepoints still exist, and who is stuck waiting on whom. `TransactionTracker` folds the
events, one at a time and in timeline order, into that picture. It reads only event kinds, their
statement index and their data fields, so it works the same on a live run (fed from a timeline
subscriber) and on a saved one; it never looks at a session or a connection.

This module stays headless (no textual import): the app's timeline pane and any text report can
share it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from sandbox.timeline import Event, EventKind

SpanState = Literal["open", "failed", "committed", "rolled_back"]

# Message prefixes written by sandbox.transcript and sandbox.conductor. Two event kinds carry two
# different things each, and only the wording tells them apart: the ERROR that marks a failed
# PostgreSQL transaction follows the statement's own ERROR (same statement index), and the
# CANCELLED that announces a cancel precedes the cancelled statement's outcome.
TX_FAILED_PREFIX = "transaction failed"
CANCELLING_PREFIX = "cancelling"
COMMIT_REFUSED_PREFIX = "COMMIT answered ROLLBACK"
_SENT_PREFIX = "sent: "
_PRINTED_PREFIX = "printed: "  # a traced program's line of output (sandbox.trace.recorder)

# Leading comments and whitespace, skipped to find a statement's first keyword.
_LEADING_NOISE = re.compile(r"^(?:\s+|--[^\n]*\n?|/\*.*?\*/)*", re.DOTALL)
_COMMIT_WORDS = frozenset({"COMMIT", "END"})


@dataclass
class LockWait:
    """A statement that waited (or still waits) for a lock held by other sessions."""

    session: str
    statement: int | None  # index of the statement in the run
    sql: str  # short SQL of the waiting statement
    blocked_by: list[str]  # the sessions holding the lock, as last reported
    started: float  # elapsed_ms when the wait was first seen
    ended: float | None = None  # elapsed_ms when it was over; None while waiting

    def duration_ms(self, now_ms: float) -> float:
        """How long it waited (up to `now_ms` while it still waits)."""
        return (self.ended if self.ended is not None else now_ms) - self.started


@dataclass
class TransactionSpan:
    """One transaction of one session, from its first statement to COMMIT / ROLLBACK / close."""

    session: str
    started: float  # elapsed_ms of the BEGIN event
    ended: float | None = None  # elapsed_ms of the event that ended it; None while it is open
    state: SpanState = "open"
    # Short SQL of every statement run inside, the one that opened it included (BEGIN, or the
    # SAVEPOINT that started it implicitly) and the one that ended it excluded: exactly what a
    # rollback would discard, and the same count the session reports when it closes.
    statements: list[str] = field(default_factory=list)
    savepoints: list[str] = field(default_factory=list)  # alive now, oldest first
    waits: list[LockWait] = field(default_factory=list)
    failed_at: float | None = None  # PostgreSQL: when the transaction became failed
    failed_by: str | None = None  # the statement whose error failed it
    ended_by: str | None = None  # the statement that ended it (COMMIT, ROLLBACK, ...)
    end_reason: str | None = None  # the ending event's message, as the learner should read it
    commit_refused: bool = False  # a COMMIT that the server answered with ROLLBACK
    closed_by_session: bool = False  # the session closed with the transaction still open
    # Statement index of each entry in `statements`, to take back the one that ended the span.
    _indexes: list[int | None] = field(default_factory=list, repr=False)

    @property
    def is_open(self) -> bool:
        """Still running: open, or failed and waiting for its ROLLBACK."""
        return self.state in ("open", "failed")

    def duration_ms(self, now_ms: float) -> float:
        """How long it lasted (up to `now_ms` while it is open)."""
        return (self.ended if self.ended is not None else now_ms) - self.started


@dataclass(frozen=True)
class Running:
    """The statement a session's engine is working on (or waiting with) right now."""

    statement: int
    sql: str
    started: float  # elapsed_ms when it was sent

    def duration_ms(self, now_ms: float) -> float:
        return now_ms - self.started


@dataclass
class _SessionTrack:
    """What the tracker remembers about one session between events."""

    spans: list[TransactionSpan] = field(default_factory=list)
    pending: dict[int, str] = field(default_factory=dict)  # sent, not yet resolved: index -> SQL
    running: Running | None = None  # the statement sent last and not resolved yet
    queued: set[int] = field(default_factory=set)  # handed over, behind the running one
    gone: bool = False  # the connection was lost: nothing more can run
    # The latest resolved statement: the BEGIN event that follows may name it as its opener.
    last_resolved: tuple[int, str] | None = None
    wait: LockWait | None = None  # the current lock wait
    last_wait: LockWait | None = None  # the latest wait, ended or not
    closed: bool = False
    # A traced program's own lane (its output and exit): "running" or how it exited.
    program: str | None = None
    printed: str | None = None  # the program's latest line of output
    exited_pid: object = None  # the process whose exit `program` says

    @property
    def open_span(self) -> TransactionSpan | None:
        if self.spans and self.spans[-1].is_open:
            return self.spans[-1]
        return None


def sql_of(event: Event) -> str:
    """The short SQL a STATEMENT event announced."""
    message = event.message
    return message[len(_SENT_PREFIX) :] if message.startswith(_SENT_PREFIX) else message


def first_keyword(sql: str) -> str:
    """The statement's first keyword, upper-case, after any leading comments."""
    noise = _LEADING_NOISE.match(sql)
    rest = sql[noise.end() :] if noise else sql
    word = rest.split(None, 1)[0] if rest.strip() else ""
    return word.rstrip(";").upper()


class TransactionTracker:
    """Folds timeline events into per-session transaction spans, lock waits and counts."""

    def __init__(self) -> None:
        self._tracks: dict[str, _SessionTrack] = {}

    # ------------------------------------------------------------------ queries

    @property
    def sessions(self) -> list[str]:
        """Session names in the order they first appeared."""
        return list(self._tracks)

    def spans(self, session: str) -> list[TransactionSpan]:
        """Every transaction of `session`, oldest first (the last one may still be open)."""
        track = self._tracks.get(session)
        return list(track.spans) if track else []

    def open_span(self, session: str) -> TransactionSpan | None:
        """The session's open (or failed) transaction, or None when it is idle."""
        track = self._tracks.get(session)
        return track.open_span if track else None

    def waiting(self, session: str) -> LockWait | None:
        """The statement of `session` waiting on a lock right now, and on whom; else None."""
        track = self._tracks.get(session)
        return track.wait if track else None

    def uncommitted(self, session: str) -> int:
        """How many statements a rollback of the open transaction would discard (0 when idle)."""
        span = self.open_span(session)
        return len(span.statements) if span else 0

    def running(self, session: str) -> Running | None:
        """The statement `session` is running (or waiting with) now; None when it is idle."""
        track = self._tracks.get(session)
        return track.running if track else None

    def queued(self, session: str) -> int:
        """How many statements wait in `session`'s queue behind the running one."""
        track = self._tracks.get(session)
        return len(track.queued) if track else 0

    def is_gone(self, session: str) -> bool:
        """Whether the session's connection was lost (terminated, server restarted)."""
        track = self._tracks.get(session)
        return track.gone if track else False

    def program(self, session: str) -> tuple[str, str | None] | None:
        """A traced program's lane: ("running" or how it exited, its latest printed line);
        None for a session or a connection."""
        track = self._tracks.get(session)
        if track is None or track.program is None:
            return None
        return track.program, track.printed

    def is_closed(self, session: str) -> bool:
        """Whether the session was closed (it may be reopened by a later SESSION_OPENED)."""
        track = self._tracks.get(session)
        return track.closed if track else False

    # ------------------------------------------------------------------ feeding

    def feed(self, event: Event) -> None:
        """Take one event into account; events must come in timeline order."""
        track = self._tracks.get(event.session)
        if track is None:
            track = self._tracks[event.session] = _SessionTrack()
        kind = event.kind
        if kind is EventKind.SESSION_OPENED:
            track.closed = track.gone = False
        elif kind is EventKind.QUEUED:
            if event.statement is not None:
                track.queued.add(event.statement)
        elif kind is EventKind.STATEMENT:
            if event.statement is not None:
                sql = sql_of(event)
                track.pending[event.statement] = sql
                track.queued.discard(event.statement)
                track.running = Running(event.statement, sql, event.elapsed_ms)
        elif kind is EventKind.CONNECTION_LOST:
            track.gone = True
        elif kind is EventKind.PROGRAM:
            pid = event.data.get("pid")
            if "exit_code" in event.data:
                track.program, track.exited_pid = event.message, pid
            else:
                if track.program is None or pid != track.exited_pid:
                    track.program = "running"  # the same program may be traced again
                track.printed = event.message.removeprefix(_PRINTED_PREFIX)
        elif kind is EventKind.GUARD and event.outcome is not None:
            # The guard stopped a statement that was queued: it will never run.
            if event.statement is not None:
                track.queued.discard(event.statement)
        elif kind is EventKind.OUTCOME:
            self._resolve(track, event)
        elif kind is EventKind.ERROR:
            if event.message.startswith(TX_FAILED_PREFIX):
                self._fail(track, event)
            else:
                self._resolve(track, event)
        elif kind is EventKind.CANCELLED:
            # The announcement of a cancel is not an outcome: the statement is still running.
            if not event.message.startswith(CANCELLING_PREFIX):
                self._resolve(track, event)
        elif kind is EventKind.BEGIN:
            self._begin(track, event)
        elif kind is EventKind.SAVEPOINT:
            span = track.open_span
            name = _savepoint_name(event)
            if span is not None and name:
                span.savepoints.append(name)
        elif kind is EventKind.ROLLBACK_TO:
            self._rollback_to(track, event)
        elif kind is EventKind.RELEASE:
            span = track.open_span
            at = _find_savepoint(span, _savepoint_name(event)) if span else None
            if span is not None and at is not None:
                # RELEASE destroys the savepoint and every one set after it.
                del span.savepoints[at:]
        elif kind is EventKind.COMMIT:
            self._end(track, event, "committed")
        elif kind is EventKind.ROLLBACK:
            self._end(track, event, "rolled_back")
        elif kind is EventKind.LOCK_WAIT:
            self._lock_wait(track, event)
        elif kind is EventKind.LOCK_RELEASED:
            self._end_wait(track, event.elapsed_ms)
        elif kind is EventKind.SESSION_CLOSED:
            self._end_wait(track, event.elapsed_ms)
            span = track.open_span
            if span is not None:
                # Both engines roll back what a closing connection left open.
                self._finish(span, event, "rolled_back", ended_by=None)
                span.closed_by_session = True
            track.pending.clear()
            track.queued.clear()
            track.running = None
            track.last_resolved = None
            track.closed = True
        # NOTICE and GUARD change no transaction state: the timeline pane shows them as they are.

    # ------------------------------------------------------------------ transitions

    def _resolve(self, track: _SessionTrack, event: Event) -> None:
        """A statement finished: it belongs to the open transaction, or may open the next one."""
        index = event.statement
        if index is None:
            return
        track.queued.discard(index)
        if track.running is not None and track.running.statement == index:
            track.running = None
        sql = track.pending.pop(index, f"statement {index}")
        if track.wait is not None and track.wait.statement == index:
            # Normally LOCK_RELEASED came first; a cancelled wait may end without one.
            self._end_wait(track, event.elapsed_ms)
        track.last_resolved = (index, sql)
        span = track.open_span
        # A statement is resolved once; the guard only protects against a repeated event, and
        # looks at the last entry alone so a 10,000-statement transaction stays linear.
        if span is not None and not (span._indexes and span._indexes[-1] == index):
            span.statements.append(sql)
            span._indexes.append(index)

    def _begin(self, track: _SessionTrack, event: Event) -> None:
        previous = track.open_span
        if previous is not None:
            # Only a partial or reordered feed gets here: never leave two spans open at once.
            self._finish(previous, event, "rolled_back", ended_by=None)
            previous.end_reason = "ended unseen: a new transaction started"
        span = TransactionSpan(session=event.session, started=event.elapsed_ms)
        opener = track.last_resolved
        if opener is not None and opener[0] == event.statement:
            # The BEGIN event follows the outcome of the statement that opened the transaction.
            span.statements.append(opener[1])
            span._indexes.append(opener[0])
        last_wait = track.last_wait
        if (
            last_wait is not None
            and event.statement is not None
            and last_wait.statement == event.statement
        ):
            # e.g. SQLite BEGIN IMMEDIATE waited for the write lock before the transaction began.
            span.waits.append(last_wait)
        track.spans.append(span)

    def _fail(self, track: _SessionTrack, event: Event) -> None:
        span = track.open_span
        if span is None:
            return
        span.state = "failed"
        span.failed_at = event.elapsed_ms
        # The failing statement's own ERROR came just before: it is the last one recorded.
        if span._indexes and span._indexes[-1] == event.statement:
            span.failed_by = span.statements[-1]

    def _rollback_to(self, track: _SessionTrack, event: Event) -> None:
        span = track.open_span
        if span is None:
            return
        at = _find_savepoint(span, _savepoint_name(event))
        if at is not None:
            # The target savepoint survives ROLLBACK TO; the ones set after it are gone.
            del span.savepoints[at + 1 :]
        # On PostgreSQL, ROLLBACK TO is the way out of a failed transaction short of ROLLBACK.
        span.state = "open"
        span.failed_at = None
        span.failed_by = None

    def _end(self, track: _SessionTrack, event: Event, state: SpanState) -> None:
        span = track.open_span
        if span is None:
            return
        ended_by: str | None = None
        if span._indexes and event.statement is not None and span._indexes[-1] == event.statement:
            # The ending statement was recorded as run inside; it is not part of what was undone.
            span._indexes.pop()
            ended_by = span.statements.pop()
        self._finish(span, event, state, ended_by=ended_by)
        if state == "rolled_back":
            span.commit_refused = event.message.startswith(COMMIT_REFUSED_PREFIX) or (
                ended_by is not None and first_keyword(ended_by) in _COMMIT_WORDS
            )

    def _finish(
        self, span: TransactionSpan, event: Event, state: SpanState, *, ended_by: str | None
    ) -> None:
        span.state = state
        span.ended = event.elapsed_ms
        span.ended_by = ended_by
        span.end_reason = event.message
        span.savepoints.clear()  # no savepoint outlives its transaction

    def _lock_wait(self, track: _SessionTrack, event: Event) -> None:
        blocked_by = [str(name) for name in event.data.get("blocked_by", [])]
        wait = track.wait
        if wait is not None and wait.statement == event.statement:
            # Same statement, other holders (a queue moved on): one wait, the latest holders.
            wait.blocked_by = blocked_by
            return
        if wait is not None:
            self._end_wait(track, event.elapsed_ms)
        index = event.statement
        sql = track.pending.get(index, "") if index is not None else ""
        wait = LockWait(event.session, index, sql, blocked_by, started=event.elapsed_ms)
        track.wait = track.last_wait = wait
        span = track.open_span
        if span is not None:
            span.waits.append(wait)

    def _end_wait(self, track: _SessionTrack, elapsed_ms: float) -> None:
        if track.wait is not None:
            track.wait.ended = elapsed_ms
            track.wait = None


def _savepoint_name(event: Event) -> str | None:
    name = event.data.get("savepoint")
    return str(name) if name else None


def _find_savepoint(span: TransactionSpan | None, name: str | None) -> int | None:
    """Position of the newest savepoint called `name` (names may repeat; the newest wins)."""
    if span is None or not name:
        return None
    wanted = name.casefold()
    for position in range(len(span.savepoints) - 1, -1, -1):
        if span.savepoints[position].casefold() == wanted:
            return position
    return None
