"""Traffic sessions: a session that sends one statement again and again, standing for an
application's requests, so a lock queue forms the way it does in production.

`\\traffic NAME every 50ms for 3s: SELECT balance FROM accounts WHERE id = 1;` opens session
NAME (its own connection) and, on its own thread, submits the statement through the
conductor like any other: every run is a real execution on NAME's lane, watched for lock
waits by the conductor's watcher. At most one statement is in flight per traffic session (a
statement waiting on a lock holds the lane, as an application connection would); the next is
sent `every` after the previous one *ended*, so a slow machine sends fewer statements but
never piles up its own. No new statement is sent once the duration is over.

`\\traffic NAME wait` pauses the script until NAME's duration is over; `\\traffic NAME stop`
ends it now. A statement still in flight then is left to end (or to be cancelled with the
rest of the run), as an application's request would be.
"""

from __future__ import annotations

import re
import threading
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sandbox.errors import UserError
from sandbox.outcome import Status
from sandbox.statements import Dialect, MetaCommand, Statement, split

if TYPE_CHECKING:
    from sandbox.conductor import Conductor, Execution
    from sandbox.guard.policy import Guard

# Below 10 ms a traffic session would be a busy loop on a shared machine, not an application.
MIN_EVERY_MS = 10
# A lab shows a queue forming in seconds; a minute bounds what a typo can cost.
MAX_FOR_MS = 60_000
USAGE = "\\traffic NAME every 50ms for 3s: STATEMENT;  (or \\traffic NAME wait | stop)"
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s)$")
CONTROLS = ("wait", "stop")


@dataclass(frozen=True)
class TrafficSpec:
    """What a traffic session sends, how often, and for how long."""

    session: str
    sql: str
    every_ms: int
    for_ms: int

    def command(self) -> str:
        """The `\\traffic` line that starts it (a replay script reproduces this line, not the
        statements it sent)."""
        return (
            f"\\traffic {self.session} every {_duration_text(self.every_ms)} "
            f"for {_duration_text(self.for_ms)}: {self.sql};"
        )


def _duration_text(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 and ms >= 1000 else f"{ms}ms"


def parse_duration(word: str) -> int | None:
    """`50ms`, `3s`, `1.5s` as whole milliseconds; None when it is not a duration."""
    match = _DURATION.match(word)
    if match is None:
        return None
    value = float(match.group(1)) * (1 if match.group(2) == "ms" else 1000)
    return round(value)


def check_timing(every_ms: int, for_ms: int) -> str | None:
    """Why these timings are refused, or None."""
    if every_ms < MIN_EVERY_MS:
        return f"every must be at least {MIN_EVERY_MS} ms (got {every_ms} ms)"
    if for_ms <= 0:
        return "for must be longer than 0 ms"
    if for_ms > MAX_FOR_MS:
        return f"for may be at most {MAX_FOR_MS // 1000} s (got {for_ms / 1000:g} s)"
    return None


def check_sql(sql: str, dialect: Dialect) -> str | None:
    """Why this statement cannot be traffic, or None: one statement, not transaction control
    (each request runs on its own, in autocommit, as an application's would)."""
    from sandbox.sqlkind import classify

    items = [i for i in split(sql, dialect) if isinstance(i, Statement)]
    if len(items) != 1 or len(split(sql, dialect)) != 1:
        return "traffic sends exactly one SQL statement"
    kind = classify(items[0].text, dialect)
    if kind.tx_control is not None:
        return f"traffic cannot send {kind.keyword}: each statement runs on its own"
    return None


def spec_of(command: MetaCommand, dialect: Dialect = "sqlite") -> TrafficSpec:
    """The spec a starting `\\traffic` line gives; UserError (without the place) if malformed."""
    from sandbox.metacommands import session_name_ok

    args = command.args
    if not args or not session_name_ok(args[0]):
        raise UserError(f"\\traffic needs a session name of letters, digits, _ or -: {USAGE}")
    if not command.sql:
        raise UserError(f"\\traffic {args[0]} needs a statement after ':': {USAGE}")
    if len(args) != 5 or args[1].lower() != "every" or args[3].lower() != "for":
        raise UserError(f"\\traffic {args[0]}: write it as {USAGE}")
    every_ms, for_ms = parse_duration(args[2].lower()), parse_duration(args[4].lower())
    if every_ms is None or for_ms is None:
        bad = args[2] if every_ms is None else args[4]
        raise UserError(f"\\traffic {args[0]}: {bad!r} is not a duration (e.g. 50ms, 3s)")
    problem = check_timing(every_ms, for_ms) or check_sql(command.sql, dialect)
    if problem:
        raise UserError(f"\\traffic {args[0]}: {problem}")
    return TrafficSpec(args[0], command.sql, every_ms, for_ms)


def check(command: MetaCommand, dialect: Dialect = "sqlite") -> None:
    """Raise a UserError (without the place) when a `\\traffic` line is malformed."""
    args = command.args
    if len(args) == 2 and not command.sql:
        from sandbox.metacommands import session_name_ok

        if not session_name_ok(args[0]):
            raise UserError(f"\\traffic needs a session name of letters, digits, _ or -: {USAGE}")
        if args[1].lower() not in CONTROLS:
            raise UserError(f"\\traffic {args[0]} {args[1]}: say wait or stop ({USAGE})")
        return
    spec_of(command, dialect)


class TrafficRun:
    """One traffic session's loop, on its own thread, submitting through the conductor."""

    def __init__(
        self,
        conductor: Conductor,
        spec: TrafficSpec,
        statement: Statement,
        guard: Guard | None = None,
    ) -> None:
        self.conductor = conductor
        self.spec = spec
        self.statement = statement
        self.guard = guard
        self.executions: list[Execution] = []
        self.failure: BaseException | None = None
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._loop, name=f"traffic-{spec.session}", daemon=True
        )
        self._deadline = 0.0
        self._first = threading.Event()  # set once the first statement was handed over

    def start(self) -> None:
        # Opened here, on the caller's thread, so a session that cannot connect is the
        # caller's error, not a thread's.
        self.conductor.session(self.spec.session)
        self._deadline = time.perf_counter() + self.spec.for_ms / 1000
        self._thread.start()

    @property
    def active(self) -> bool:
        return self._thread.is_alive()

    def stop(self) -> None:
        """No statement is sent after this; the one in flight is left to the conductor."""
        self._stop.set()

    def wait(self, timeout_s: float | None = None) -> None:
        """Until the loop is over (its duration, or a stop)."""
        if self._thread.is_alive() or self._thread.ident is not None:
            self._thread.join(timeout_s)

    def first_reviewed(self) -> Execution | None:
        """The first statement, once the guard has looked at it (None if none was sent).

        The same statement is reviewed the same way each time, so whether the guard lets
        the traffic run is known here, at the same point of every run."""
        self._first.wait()
        if not self.executions:
            return None
        first = self.executions[0]
        first.reviewed.wait()
        return first

    def _over(self) -> bool:
        return self._stop.is_set() or time.perf_counter() >= self._deadline

    def _loop(self) -> None:
        try:
            while not self._over():
                try:
                    execution = self.conductor.submit(
                        self.spec.session,
                        self.statement,
                        self.guard,
                        background=True,
                        traffic=self.spec.session,
                    )
                except RuntimeError:
                    return  # the sandbox is closing
                self.executions.append(execution)
                self._first.set()
                # One in flight at a time: a statement waiting on a lock holds the lane.
                while not self.conductor.wait_finished(execution, 0.05):
                    if self._over():
                        return
                outcome = execution.outcome
                if outcome is not None and outcome.status is Status.BLOCKED:
                    return  # the guard will not let it run: it would not the next time either
                if execution.failure is not None or _connection_gone(execution):
                    return
                # Paced from the previous statement's end: the same cadence on any machine.
                if self._stop.wait(self.spec.every_ms / 1000):
                    return
        except BaseException as exc:  # a bug: the run re-raises it on its own thread
            self.failure = exc
        finally:
            self._first.set()
            self._record_end()

    def _record_end(self) -> None:
        from sandbox.timeline import EventKind

        sent = len(self.executions)
        last = self.executions[-1] if self.executions else None
        if last is not None and last.outcome is not None and last.outcome.status is Status.BLOCKED:
            why = "ended: the guard did not let its statement run"
        else:
            why = "stopped" if self._stop.is_set() else "over"
        still = "; the last still runs or waits" if last is not None and not last.finished() else ""
        self.conductor.timeline.add(
            self.spec.session,
            EventKind.NOTICE,
            f"traffic {self.spec.session} {why}: {sent} statement{'' if sent == 1 else 's'} "
            f"sent{still}",
            traffic=self.spec.session,
        )


def _connection_gone(execution: Execution) -> bool:
    from sandbox.conductor import LOST_SESSION_NOTE
    from sandbox.session import CONNECTION_LOST_NOTE

    outcome = execution.outcome
    return outcome is not None and outcome.note in (CONNECTION_LOST_NOTE, LOST_SESSION_NOTE)


class Traffic:
    """Every traffic session of one run: started, waited for and stopped by name."""

    def __init__(self, conductor: Conductor, guard: Guard | None = None) -> None:
        self.conductor = conductor
        self.guard = guard
        self.runs: dict[str, TrafficRun] = {}

    def start(self, spec: TrafficSpec, statement: Statement) -> TrafficRun:
        running = self.runs.get(spec.session)
        if running is not None and running.active:
            raise UserError(f"traffic {spec.session} is already running")
        run = TrafficRun(self.conductor, spec, statement, self.guard)
        self.runs[spec.session] = run
        run.start()
        return run

    def wait(self, name: str | None = None) -> None:
        for run in self._named(name):
            run.wait()
            if run.failure is not None:
                raise run.failure

    def stop(self, name: str | None = None) -> None:
        for run in self._named(name):
            run.stop()
        for run in self._named(name):
            run.wait(5)

    def _named(self, name: str | None) -> list[TrafficRun]:
        if name is None:
            return list(self.runs.values())
        run = self.runs.get(name)
        if run is None:
            raise UserError(f"no traffic named {name} was started")
        return [run]


def traffic_statement(command: MetaCommand) -> Statement:
    """The carried statement, placed where it stands in the script (for errors and reports)."""
    offset = command.text.index(":") + 1
    before = command.text[:offset]
    breaks = before.count("\n")
    lead = len(command.text[offset:]) - len(command.text[offset:].lstrip())
    start = command.start + offset + lead
    line = command.line + breaks
    column = (command.column + offset + lead) if not breaks else 1
    return Statement(command.sql, -1, start, start + len(command.sql), line, column, line, column)


@dataclass(frozen=True)
class TrafficSummary:
    """What one traffic session did: the report's lines about it."""

    session: str
    sql: str
    sent: int
    waited: int
    longest_wait_ms: float
    errors: int
    cancelled: int
    blocked: int  # handed over, but the guard did not let it run
    unfinished: int  # still running or waiting when the summary was made
    first_error: str | None = None  # the first error's code and message, as the engine said

    def to_json(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "sql": self.sql,
            "sent": self.sent,
            "waited": self.waited,
            "longest_wait_ms": round(self.longest_wait_ms, 1),
            "errors": self.errors,
            "cancelled": self.cancelled,
            "blocked": self.blocked,
            "unfinished": self.unfinished,
            "first_error": self.first_error,
        }

    def text(self) -> str:
        longest = f", longest wait {self.longest_wait_ms:.0f} ms" if self.waited else ""
        cancelled = f", {self.cancelled} cancelled" if self.cancelled else ""
        blocked = f", {self.blocked} not run (guard)" if self.blocked else ""
        still = f", {self.unfinished} still waiting or running" if self.unfinished else ""
        first = f" (the first: {self.first_error})" if self.first_error else ""
        return (
            f"traffic {self.session}: {self.sent} sent, {self.waited} waited on a lock{longest}, "
            f"{self.errors} error{'' if self.errors == 1 else 's'}{first}{cancelled}{blocked}"
            f"{still}"
        )


def summaries(executions: Iterable[Execution]) -> list[TrafficSummary]:
    """One summary per traffic session, in the order they first sent a statement."""
    by_session: dict[str, list[Execution]] = {}
    for execution in executions:
        if execution.traffic is not None:
            by_session.setdefault(execution.traffic, []).append(execution)
    return [_summary(name, sent) for name, sent in by_session.items()]


def _summary(name: str, sent: Sequence[Execution]) -> TrafficSummary:
    waits = [_wait_ms(e) for e in sent if e.waited]
    blocked = sum(1 for e in sent if e.outcome is not None and e.outcome.status is Status.BLOCKED)
    return TrafficSummary(
        session=name,
        sql=sent[0].statement.text,
        sent=len(sent) - blocked,
        waited=len(waits),
        longest_wait_ms=max(waits, default=0.0),
        errors=sum(1 for e in sent if e.outcome is not None and e.outcome.status is Status.ERROR),
        cancelled=sum(
            1 for e in sent if e.outcome is not None and e.outcome.status is Status.CANCELLED
        ),
        blocked=blocked,
        unfinished=sum(1 for e in sent if e.outcome is None),
        first_error=next((_error_line(e) for e in sent if _error_line(e)), None),
    )


def _error_line(execution: Execution) -> str | None:
    """`CODE: message` of the statement's error (its first line), or None."""
    outcome = execution.outcome
    if outcome is None or outcome.error is None or outcome.status is not Status.ERROR:
        return None
    lines = outcome.error.message.strip().splitlines()
    return f"{outcome.error.code}: {lines[0] if lines else ''}".rstrip(": ")


def _wait_ms(execution: Execution) -> float:
    # A lock wait starts when the statement reaches the engine (see Execution.end_wait), so a
    # statement that waited spent its time to its end waiting, bar the work after the grant.
    if execution.outcome is not None:
        return execution.outcome.elapsed_ms
    started = execution.started
    return (time.perf_counter() - started) * 1000 if started is not None else 0.0


def record_command(conductor: Conductor, session: str, command: MetaCommand, note: str) -> None:
    """Record a `\\traffic` line as a step of the run where it was written (reports list it,
    a replay script reproduces the line), and say on the traffic session's lane what it did."""
    from sandbox.conductor import Execution
    from sandbox.metacommands import as_statement, kind_of
    from sandbox.outcome import Outcome, TxState
    from sandbox.timeline import EventKind

    # The line does not touch its session's transaction: say what that session is in.
    state = next((s.tx_state for s in conductor.sessions if s.name == session), TxState.IDLE)
    outcome = Outcome(Status.OK, state, state, 0.0, note=note)

    def make(index: int) -> Execution:
        made = Execution(index, session, as_statement(command), kind_of(command), meta="traffic")
        made.started, made.sent_at, made.outcome = time.perf_counter(), time.time(), outcome
        made.reviewed.set()
        return made

    execution = conductor.adopt(make)
    target = command.args[0] if command.args else session
    conductor.timeline.add(target, EventKind.NOTICE, note, statement=execution.index)


def run_command(
    traffic: Traffic, conductor: Conductor, session: str, command: MetaCommand, dialect: Dialect
) -> Execution | None:
    """Do a script's `\\traffic` line: start, wait for or stop a traffic session.

    Returns the started traffic's first statement if the guard did not let it run (a script
    stops there, as at any statement the guard stops)."""
    name = command.args[0]
    if command.sql:
        spec = spec_of(command, dialect)
        running = traffic.runs.get(name)
        if running is not None and running.active:
            raise UserError(f"line {command.line}: traffic {name} is already running")
        every, span = _duration_text(spec.every_ms), _duration_text(spec.for_ms)
        from sandbox.transcript import short_sql

        note = f"traffic {name} started: {short_sql(spec.sql, 48)} every {every} for {span}"
        # Opened first, then recorded before its first statement: reports list the line where
        # the traffic began, after the session it runs on.
        conductor.session(name)
        record_command(conductor, session, command, note)
        first = traffic.start(spec, traffic_statement(command)).first_reviewed()
        outcome = first.outcome if first is not None else None
        if first is not None and outcome is not None and outcome.status is Status.BLOCKED:
            return first
        return None
    if command.args[1].lower() == "wait":
        traffic.wait(name)
        record_command(conductor, session, command, f"traffic {name} is over")
        return None
    traffic.stop(name)
    record_command(conductor, session, command, f"traffic {name} stopped")
    return None
