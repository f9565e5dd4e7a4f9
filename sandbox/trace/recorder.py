"""What traced programs did, as lanes on a timeline: one lane per DBAPI connection.

The tracer inside each program (`inject/_dbsandbox_trace.py`) reports SQLAlchemy's events
over a Unix socket; `Recorder.handle` turns each message into timeline events the moment it
arrives, and into the same `Execution` records a `dbsandbox run` produces, so reports,
exports and process checks read a trace as they read a script. A watcher asks the engine
about statements in flight, as the conductor does for a script's sessions, so lock waits
show the lane that blocks them.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.conductor import Execution
from sandbox.guard.findings import Finding
from sandbox.guard.lint import lint_statement
from sandbox.guard.policy import Decision, Policy, Review
from sandbox.masking import is_password_key, scrub
from sandbox.outcome import Outcome, SqlError, Status, TxState
from sandbox.sqlkind import StatementKind, TxControl, classify
from sandbox.statements import Dialect, Statement, split_statements
from sandbox.targets import Target
from sandbox.timeline import EventKind, Timeline
from sandbox.trace.inline import inline
from sandbox.transcript import record_outcome

# A statement in flight this long is asked about (a lock wait), as the conductor does.
_FIRST_LOOK_S = 0.010
_LOOK_EVERY_S = 0.010
# The same query this many times in one lane inside one checkout: an N+1 loop.
N_PLUS_ONE_AT = 5
_MASK = "********"
_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)


@dataclass
class Program:
    """One traced process: what it is called on the timeline and what it ran."""

    label: str  # the lane prefix: the program file's stem (made unique)
    pid: int
    argv: list[str]
    exit_code: int | None = None
    output: list[str] = field(default_factory=list)


@dataclass
class Lane:
    """One DBAPI connection of one program: what a SQL session is to `dbsandbox run`."""

    name: str
    program: Program
    number: int
    pid: int | None = None  # the server's backend pid (PostgreSQL), for pg_blocking_pids
    tx_state: TxState = TxState.IDLE
    holds_write_lock: bool = False  # SQLite: its open transaction has written
    tx_statements: int = 0
    ended_tx_statements: int = 0
    open: bool = True
    redirected: str | None = None  # what the program asked to connect to instead
    running: Execution | None = None  # the statement sent and not yet answered
    ending: Execution | None = None  # a COMMIT / ROLLBACK not yet known to have ended
    repeats: Counter[str] = field(default_factory=Counter)  # queries since checkout
    flagged: set[str] = field(default_factory=set)


def mask_params(params: Any) -> Any:
    """Parameters as recorded: a value whose key says it is a secret is masked."""
    if isinstance(params, dict):
        return {k: _MASK if is_password_key(str(k)) else v for k, v in params.items()}
    if isinstance(params, list):
        return [mask_params(p) for p in params]
    return params


class Recorder:
    """Turns tracer messages into lanes, executions and timeline events (thread-safe)."""

    def __init__(
        self,
        target: Target,
        timeline: Timeline,
        guard: str = "warn",
        policy: Policy | None = None,
        adopt: Callable[[Callable[[int], Execution]], Execution] | None = None,
        others: Callable[[], list[Any]] | None = None,
    ) -> None:
        """`adopt` numbers each execution in a larger run (Conductor.adopt): a scenario's or
        the app's, whose reports and checks then see the program's statements too. `others`
        gives that run's own sessions (`Conductor.sessions`): a lane waiting for a lock one of
        them holds names it, as they name each other."""
        self.target = target
        self._adopt = adopt
        self._others = others
        self.timeline = timeline
        self.dialect: Dialect = "postgres" if target.engine == "postgres" else "sqlite"
        self.guard = guard
        self.policy = policy or Policy()
        self.executions: list[Execution] = []
        self.lanes: dict[tuple[int, int], Lane] = {}
        self.programs: dict[int, Program] = {}
        self.stopped: list[Execution] = []
        self.failures: list[BaseException] = []  # bugs while recording: trace() raises them
        self._labels: Counter[str] = Counter()
        self._lock = threading.RLock()
        self._lint_cache: dict[str, list[Finding]] = {}
        self._flushes: dict[tuple[int, str], dict[str, Any]] = {}
        self._notes: dict[int, str] = {}  # why a COMMIT / ROLLBACK was sent, by whom
        self._closing = threading.Event()
        self._watcher = threading.Thread(target=self._watch, name="dbsandbox-trace-watch")
        self._watcher.daemon = True
        self._watcher.start()

    # ------------------------------------------------------------------ programs

    def program(self, pid: int, argv: list[str]) -> Program:
        with self._lock:
            found = self.programs.get(pid)
            if found is not None:
                return found
            stem = Path(argv[0]).stem if argv and argv[0] not in ("", "-c", "-m") else "python"
            # A lane's name is a script's session name too (an export replays it).
            stem = re.sub(r"[^A-Za-z0-9_]", "_", stem)[:24] or "python"
            self._labels[stem] += 1
            label = stem if self._labels[stem] == 1 else f"{stem}_{self._labels[stem]}"
            program = self.programs[pid] = Program(label, pid, list(argv))
            return program

    def _on_out(self, program: Program, message: dict[str, Any]) -> None:
        self.output(program, str(message.get("line", "")), str(message.get("stream") or ""))

    def _on_discarded(self, program: Program, message: dict[str, Any]) -> None:
        objects = message.get("objects") or {}
        what = ", ".join(f"{n} new {name}" for name, n in sorted(objects.items()))
        where = f" at {message['origin']}" if message.get("origin") else ""
        self.timeline.add(
            program.label,
            EventKind.NOTICE,
            f"an ORM session ended{where} with {what} never flushed: nothing was sent to the "
            "database for it (no commit() or flush())",
            objects=objects,
            origin=message.get("origin"),
        )

    def output(self, program: Program, line: str, stream: str = "") -> None:
        with self._lock:
            program.output.append(line)
        self.timeline.add(
            program.label,
            EventKind.PROGRAM,
            f"printed: {line}",
            pid=program.pid,
            stream=stream or None,
        )

    def exited(self, program: Program, code: int) -> None:
        with self._lock:
            program.exit_code = code
            lanes = [lane for lane in self.lanes.values() if lane.program is program]
        for lane in lanes:
            self._settle_ending(lane)
            if lane.running is not None:
                self._finish(lane, Status.ERROR, error=SqlError(None, "the program exited"))
            if lane.open and lane.tx_state is not TxState.IDLE:
                # The connection closed with the process: the server rolled the work back.
                self.timeline.add(
                    lane.name,
                    EventKind.ROLLBACK,
                    "the program exited with this transaction open: the server rolled it back "
                    "when the connection closed",
                    exited=True,
                )
                lane.tx_state = TxState.IDLE
                lane.holds_write_lock = False
            if lane.open:
                lane.open = False
                self.timeline.add(lane.name, EventKind.SESSION_CLOSED, "connection closed")
        how = "exited normally" if code == 0 else f"exited with code {code}"
        self.timeline.add(program.label, EventKind.PROGRAM, how, pid=program.pid, exit_code=code)

    # ------------------------------------------------------------------ messages

    def handle(self, program: Program, message: dict[str, Any]) -> dict[str, Any] | None:
        """Record one message; returns the reply an `ask` waits for."""
        kind = message.get("t")
        if kind == "ask":
            return {"stop": self._stop_reason(str(message.get("sql") or ""))}
        if kind == "out":
            self._on_out(program, message)
            return None
        if kind == "discarded":
            self._on_discarded(program, message)
            return None
        if kind == "flush":
            with self._lock:
                self._flushes[(program.pid, str(message.get("thread")))] = message
            return None
        if kind == "flushed":
            with self._lock:
                self._flushes.pop((program.pid, str(message.get("thread"))), None)
            return None
        number = message.get("c")
        if not isinstance(number, int):
            return None
        with self._lock:
            lane = self._lane(program, number, message)
            if kind != "error":
                self._settle_ending(lane)
            handler = getattr(self, f"_on_{kind}", None)
            if handler is not None:
                handler(lane, message)
        return None

    def _lane(self, program: Program, number: int, message: dict[str, Any]) -> Lane:
        key = (program.pid, number)
        lane = self.lanes.get(key)
        if lane is None:
            lane = self.lanes[key] = Lane(f"{program.label}-{number}", program, number)
            if message.get("t") not in ("connect", "redirect"):  # opened before the tracer
                self.timeline.add(lane.name, EventKind.SESSION_OPENED, "connection in use")
        return lane

    def _on_redirect(self, lane: Lane, message: dict[str, Any]) -> None:
        lane.redirected = scrub(str(message.get("asked") or "its own database"))

    def _on_connect(self, lane: Lane, message: dict[str, Any]) -> None:
        lane.pid = message.get("backend_pid")
        where = f" by {message['origin']}" if message.get("origin") else ""
        backend = f", server process {lane.pid}" if lane.pid else ""
        instead = ""
        if lane.redirected:
            instead = (
                f"; the program named {lane.redirected}: dbsandbox connected it to the "
                "sandbox instead, and that is not touched"
            )
        self.timeline.add(
            lane.name,
            EventKind.SESSION_OPENED,
            f"connection opened{where} (program pid {lane.program.pid}{backend}){instead}",
            redirected_from=lane.redirected,
            origin=message.get("origin"),
            backend_pid=lane.pid,
            thread=message.get("thread"),
        )

    def _on_checkout(self, lane: Lane, message: dict[str, Any]) -> None:
        lane.repeats.clear()
        where = f" by {message['origin']}" if message.get("origin") else ""
        self.timeline.add(
            lane.name,
            EventKind.POOL,
            f"checked out of the pool{where}",
            origin=message.get("origin"),
            thread=message.get("thread"),
        )

    def _on_checkin(self, lane: Lane, message: dict[str, Any]) -> None:
        self.timeline.add(lane.name, EventKind.POOL, "returned to the pool")

    def _on_reset(self, lane: Lane, message: dict[str, Any]) -> None:
        if message.get("already"):
            return  # the Connection already ended its transaction: the pool sends nothing
        if lane.tx_state is TxState.IDLE:
            self.timeline.add(
                lane.name, EventKind.POOL, "the pool's rollback on return (nothing to undo)"
            )
            return
        self._control(lane, "ROLLBACK", None, note="the pool's rollback on return")

    def _on_close(self, lane: Lane, message: dict[str, Any]) -> None:
        if lane.open:
            lane.open = False
            self.timeline.add(lane.name, EventKind.SESSION_CLOSED, "connection closed")

    def _on_begin(self, lane: Lane, message: dict[str, Any]) -> None:
        lane.tx_state = TxState.IN_TRANSACTION
        lane.tx_statements = 0
        where = f" at {message['origin']}" if message.get("origin") else ""
        self.timeline.add(
            lane.name,
            EventKind.BEGIN,
            f"BEGIN (implicit){where}: SQLAlchemy began a transaction; the driver opens it "
            "with the first statement",
            origin=message.get("origin"),
            implicit=True,
        )

    def _on_commit(self, lane: Lane, message: dict[str, Any]) -> None:
        self._control(lane, "COMMIT", message.get("origin"))

    def _on_rollback(self, lane: Lane, message: dict[str, Any]) -> None:
        self._control(lane, "ROLLBACK", message.get("origin"))

    def _on_stmt(self, lane: Lane, message: dict[str, Any]) -> None:
        execution = self._execution(lane, message)
        self._flush_note(lane, message)
        self.timeline.add(
            lane.name,
            EventKind.STATEMENT,
            f"sent: {_short(execution.statement.text)}",
            statement=execution.index,
            origin=message.get("origin"),
            params=mask_params(message.get("params")),
            many=bool(message.get("many")) or None,
            flush=message.get("flush"),
            thread=message.get("thread"),
        )
        self._review(lane, execution, stopped=False)
        lane.running = execution
        self._repeat(lane, execution, message)

    def _on_stopped(self, lane: Lane, message: dict[str, Any]) -> None:
        execution = self._execution(lane, message)
        self._review(lane, execution, stopped=True)
        why = "stopped by the guard (--guard stop): the program got DangerousStatementError"
        execution.outcome = Outcome(Status.BLOCKED, lane.tx_state, lane.tx_state, 0.0, note=why)
        self.stopped.append(execution)
        self.timeline.add(
            lane.name,
            EventKind.GUARD,
            f"not run: {why}",
            statement=execution.index,
            outcome=str(Status.BLOCKED),
        )

    def _on_done(self, lane: Lane, message: dict[str, Any]) -> None:
        rowcount = message.get("rowcount")
        running = lane.running
        if (
            self.dialect == "sqlite"
            and running is not None
            and _RETURNING.search(running.statement.text)
        ):
            # sqlite3 counts a RETURNING statement's rows as they are fetched, and the tracer
            # hears of it before the program fetches them: its 0 is not the count.
            rowcount = None
        self._finish(lane, Status.OK, rowcount=rowcount if isinstance(rowcount, int) else None)

    def _on_error(self, lane: Lane, message: dict[str, Any]) -> None:
        error = SqlError(
            code=message.get("code"),
            message=scrub(str(message.get("message") or message.get("error") or "error")),
            detail=message.get("detail"),
            context=message.get("context"),
        )
        if lane.running is not None:
            self._finish(lane, Status.ERROR, error=error)
        elif lane.ending is not None:
            self._end(lane, lane.ending, error)  # the COMMIT itself failed
        else:
            self.timeline.add(
                lane.name, EventKind.ERROR, f"error {error.code or ''}: {error.message}".strip()
            )

    # ------------------------------------------------------------------ executions

    def _execution(self, lane: Lane, message: dict[str, Any]) -> Execution:
        sql = str(message.get("sql") or "")
        origin = message.get("origin")
        line = _line_of(origin)
        statement = Statement(sql, 0, 0, len(sql), line, 1, line, 1)
        kind = classify(sql, self.dialect)

        def make(index: int) -> Execution:
            return Execution(index=index, session=lane.name, statement=statement, kind=kind)

        adopt = self._adopt
        execution = adopt(make) if adopt is not None else make(len(self.executions))
        execution.origin = origin
        raw = message.get("params")
        execution.params = mask_params(raw)
        # A masked secret is never written into a replay: that statement is not replayed.
        masked = execution.params != raw
        execution.replay = None if masked else inline(sql, raw, self.dialect)
        execution.started = execution._running_since = time.perf_counter()
        execution.sent_at = time.time()
        self.executions.append(execution)  # this trace's own, whatever `adopt` numbers them
        return execution

    def _control(self, lane: Lane, sql: str, origin: str | None, note: str | None = None) -> None:
        """A COMMIT or ROLLBACK that SQLAlchemy asked the driver for (no cursor runs it)."""
        execution = self._execution(lane, {"sql": sql, "origin": origin})
        if note:
            self._notes[execution.index] = note
        said = f" ({note})" if note else ""
        self.timeline.add(
            lane.name,
            EventKind.STATEMENT,
            f"sent: {sql}{said}",
            statement=execution.index,
            origin=origin,
        )
        lane.ending = execution

    def _settle_ending(self, lane: Lane) -> None:
        """The lane moved on: its COMMIT / ROLLBACK ended without an error."""
        if lane.ending is not None:
            self._end(lane, lane.ending, None)

    def _end(self, lane: Lane, execution: Execution, error: SqlError | None) -> None:
        lane.ending = None
        before = lane.tx_state
        lane.tx_statements += 1
        lane.ended_tx_statements = lane.tx_statements
        lane.tx_statements = 0
        lane.tx_state = TxState.IDLE
        lane.holds_write_lock = False
        status = Status.ERROR if error is not None else Status.OK
        tag = execution.statement.text if error is None else None
        outcome = Outcome(
            status,
            before,
            TxState.IDLE,
            _ms_since(execution),
            tag=tag,
            error=error,
            note=self._notes.get(execution.index),
        )
        execution.outcome = outcome
        record_outcome(self.timeline, lane, execution.index, execution.kind, outcome)  # type: ignore[arg-type]

    def _finish(
        self,
        lane: Lane,
        status: Status,
        rowcount: int | None = None,
        error: SqlError | None = None,
    ) -> None:
        execution = lane.running
        if execution is None:
            return
        lane.running = None
        proven = None
        if error is not None and not execution.waited:
            everyone = [*self.lanes.values(), *self._other_sessions()]
            proven = self.target.wait_in_error(lane, error, everyone)  # type: ignore[arg-type]
        with execution.lock:
            if proven is not None and not execution.waited:
                self._wait_started(lane, execution, proven.blockers, proven.what, proven=True)
            if execution.waiting:
                self._wait_ended(lane, execution)
        before = lane.tx_state
        after = before
        control = execution.kind.tx_control
        if status is Status.OK:
            if control in (TxControl.COMMIT, TxControl.ROLLBACK):
                after = TxState.IDLE
            elif control is TxControl.BEGIN:
                after = TxState.IN_TRANSACTION
            if execution.kind.changes_data and before is not TxState.IDLE:
                lane.holds_write_lock = True
        elif self.dialect == "postgres" and before is TxState.IN_TRANSACTION:
            after = TxState.FAILED  # psycopg2 runs inside a transaction: it is now aborted
        lane.tx_statements += 1
        if after is TxState.IDLE and before is not TxState.IDLE:
            lane.ended_tx_statements, lane.tx_statements = lane.tx_statements, 0
            lane.holds_write_lock = False
        lane.tx_state = after
        keyword = execution.kind.keyword
        tag = None
        known = rowcount if rowcount is not None and rowcount >= 0 else None
        if status is Status.OK:
            # A query's count is the rows it returned (psycopg2): the command tag says it as
            # psql would ("SELECT 0"); sqlite3 does not count them (-1).
            tag = f"{keyword} {known}" if known is not None else keyword
        if execution.kind.read_only:
            known = None
        outcome = Outcome(
            status,
            before,
            after,
            _ms_since(execution),
            rowcount=known,
            tag=tag,
            error=error,
        )
        execution.outcome = outcome
        record_outcome(self.timeline, lane, execution.index, execution.kind, outcome)  # type: ignore[arg-type]

    # ------------------------------------------------------------------ the guard

    def _findings(self, sql: str) -> list[Finding]:
        found = self._lint_cache.get(sql)
        if found is None:
            statements = split_statements(sql, self.dialect) or []
            found = []
            for statement in statements:
                found += lint_statement(statement, self.dialect, None, self.target.own_directory)
            self._lint_cache[sql] = found
        return found

    def _stop_reason(self, sql: str) -> str | None:
        with self._lock:
            for finding in self._findings(sql):
                if self.policy.decide(finding) is not Decision.ALLOW:
                    return f"{finding.rule}: {finding.message}"
        return None

    def _review(self, lane: Lane, execution: Execution, stopped: bool) -> None:
        findings = self._findings(execution.statement.text)
        if not findings:
            return
        decisions = [self.policy.decide(f) for f in findings]
        strongest = Decision.ALLOW
        for decision in decisions:
            if decision is not Decision.ALLOW:
                strongest = decision
        if stopped:
            reason = "stopped by --guard stop before it reached the database"
        elif strongest is not Decision.ALLOW:
            reason = "ran: --guard warn reports it; --guard stop would have stopped it"
            strongest = Decision.ALLOW
        else:
            reason = "no finding stops it"
        execution.review = Review(findings, decisions, [None] * len(findings), strongest, reason)
        for finding, decision in zip(findings, decisions, strict=True):
            self.timeline.add(
                lane.name,
                EventKind.GUARD,
                f"{finding.severity} {finding.rule}: {finding.message} [{decision}]",
                statement=execution.index,
                rule=finding.rule,
                severity=str(finding.severity),
                decision=str(decision),
            )
        if not stopped:
            self.timeline.add(lane.name, EventKind.GUARD, reason, statement=execution.index)

    def _repeat(self, lane: Lane, execution: Execution, message: dict[str, Any]) -> None:
        """The same SELECT again and again in one checkout: an N+1 loop, said once."""
        sql = execution.statement.text
        if execution.kind.keyword != "SELECT" or message.get("many"):
            return
        lane.repeats[sql] += 1
        if lane.repeats[sql] < N_PLUS_ONE_AT or sql in lane.flagged:
            return
        lane.flagged.add(sql)
        where = f" from {execution.origin}" if execution.origin else ""
        self.timeline.add(
            lane.name,
            EventKind.GUARD,
            f"warning n-plus-one: the same query ran {N_PLUS_ONE_AT} times in this "
            f"connection{where}, once per row of an earlier result: load them in one query "
            "(selectinload / joinedload, or WHERE ... IN)",
            statement=execution.index,
            rule="n-plus-one",
            severity="warning",
        )

    def _flush_note(self, lane: Lane, message: dict[str, Any]) -> None:
        if not message.get("flush"):
            return
        flush = self._flushes.pop((lane.program.pid, str(message.get("thread"))), None)
        if flush is None:
            return
        parts = [
            f"{flush.get(k, 0)} {w}"
            for k, w in (("new", "new"), ("dirty", "changed"), ("deleted", "deleted"))
            if flush.get(k)
        ]
        pending = f" ({', '.join(parts)})" if parts else ""
        where = f" at {flush['origin']}" if flush.get("origin") else ""
        if flush.get("auto"):
            text = f"autoflush{pending}{where}: the session sends its pending changes first"
        else:
            text = f"flush{pending}{where}"
        auto, origin = bool(flush.get("auto")), flush.get("origin")
        self.timeline.add(lane.name, EventKind.FLUSH, text, auto=auto, origin=origin)

    # ------------------------------------------------------------------ lock waits

    def _watch(self) -> None:
        while not self._closing.wait(_LOOK_EVERY_S):
            now = time.perf_counter()
            with self._lock:
                lanes = list(self.lanes.values())
                due = [
                    lane
                    for lane in lanes
                    if lane.running is not None
                    and now - (lane.running.started or now) >= _FIRST_LOOK_S
                ]
            for lane in due:
                self._look(lane, [*lanes, *self._other_sessions()])

    def _other_sessions(self) -> list[Any]:
        return list(self._others()) if self._others is not None else []

    def _look(self, lane: Lane, lanes: list[Any]) -> None:
        """`lanes`: every lane, and the larger run's sessions (see `others`)."""
        execution = lane.running
        if execution is None:
            return
        writers = {other.name for other in lanes if other is not lane and other.holds_write_lock}
        try:
            wait = self.target.lock_wait(lane, lanes, writers)  # type: ignore[arg-type]
        except Exception:  # the monitor could not ask: the wait shows when it can
            return
        with self._lock, execution.lock:
            if lane.running is not execution:
                return
            blockers = wait.blockers if wait is not None else []
            if blockers and blockers != execution.waiting_on:
                self._wait_started(lane, execution, blockers, wait.what if wait else "a lock")
            elif not blockers and execution.waiting:
                self._wait_ended(lane, execution)

    def _wait_started(
        self,
        lane: Lane,
        execution: Execution,
        blockers: list[str],
        what: str,
        proven: bool = False,
    ) -> None:
        execution.waited = execution.waiting = True
        execution.waiting_on = list(blockers)
        execution.blocked_by += [b for b in blockers if b not in execution.blocked_by]
        held = f" held by {', '.join(blockers)}" if blockers else ""
        said = " (the server's error says so: too short to watch)" if proven else ""
        self.timeline.add(
            lane.name,
            EventKind.LOCK_WAIT,
            f"waiting for {what}{held}{said}",
            statement=execution.index,
            blocked_by=list(blockers),
            waits_for=what,
        )

    def _wait_ended(self, lane: Lane, execution: Execution) -> None:
        execution.waiting = False
        execution.waiting_on = []
        waited = (time.perf_counter() - (execution.started or 0.0)) * 1000
        self.timeline.add(
            lane.name,
            EventKind.LOCK_RELEASED,
            f"lock wait over after {waited:.0f} ms",
            statement=execution.index,
        )

    def close(self) -> None:
        self._closing.set()
        self._watcher.join(timeout=2)


def _short(sql: str, limit: int = 120) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _line_of(origin: Any) -> int:
    if isinstance(origin, str) and ":" in origin:
        tail = origin.rsplit(":", 1)[1]
        if tail.isdigit():
            return int(tail)
    return 0


def _ms_since(execution: Execution) -> float:
    return (time.perf_counter() - (execution.started or time.perf_counter())) * 1000


__all__ = ["N_PLUS_ONE_AT", "Lane", "Program", "Recorder", "StatementKind", "mask_params"]
