"""What traced programs did, as lanes on a timeline: one lane per DBAPI connection.

The tracer inside each program (`inject/_dbsandbox_trace.py`) reports SQLAlchemy's events
over a Unix socket; `Recorder.handle` turns each message into timeline events the moment it
arrives, and into the same `Execution` records a `dbsandbox run` produces, so reports,
exports and process checks read a trace as they read a script. A watcher asks the engine
about statements in flight, as the conductor does for a script's sessions, so lock waits
show the lane that blocks them.
"""

from __future__ import annotations

import contextlib
import functools
import gc
import heapq
import itertools
import os
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path
from typing import Any

from sandbox.conductor import REVIEWED, Execution
from sandbox.guard.findings import Finding
from sandbox.guard.lint import lint_statement
from sandbox.guard.policy import Decision, Policy, Review
from sandbox.masking import scrub
from sandbox.outcome import Outcome, SqlError, Status, TxState
from sandbox.sqlkind import StatementKind, TxControl, classify
from sandbox.statements import Dialect, Statement, split_statements
from sandbox.targets import Target
from sandbox.timeline import EventKind, Timeline
from sandbox.trace.inline import inline
from sandbox.transcript import record_findings, record_outcome

# A statement in flight this long is asked about (a lock wait), as the conductor does.
_FIRST_LOOK_S = 0.010
_LOOK_EVERY_S = 0.010
# How long a message waits for earlier ones sent by other processes before it is recorded.
# A report reaches dbsandbox at most ~50 ms after it was made (a batch, or a poke after 30
# ms of silence, then the write): 80 ms leaves room for a loaded machine's scheduling.
REORDER_S = 0.08
_COALESCE_S = 0.005
# The same query this many times in one lane inside one checkout: an N+1 loop.
N_PLUS_ONE_AT = 5
_MASK = "********"
# Parameter names whose values are secrets: a traced program's users table, an API client's
# token column. ("pass" alone only as a whole word part: a passenger is no secret.)
_SECRET_NAME = re.compile(
    r"password|passwd|(?:^|_)(?:pass|pwd)(?:_|$)|secret|token|api_?key|credential|private_?key",
    re.IGNORECASE,
)


@functools.lru_cache(maxsize=4096)
def is_secret_name(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


_RETURNING = re.compile(r"\bRETURNING\b", re.IGNORECASE)


@dataclass
class Program:
    """One traced process: what it is called on the timeline and what it ran."""

    label: str  # the lane prefix: the program file's stem (made unique)
    pid: int
    argv: list[str]
    exit_code: int | None = None
    output: list[str] = field(default_factory=list)
    # Statement texts (and parameter names) by the number the process gives them.
    texts: dict[int, tuple[str, Any]] = field(default_factory=dict, repr=False)


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
    sa_began: bool = False  # SQLAlchemy began a transaction the driver may not have yet
    running: Execution | None = None  # the statement sent and not yet answered
    seen: list[str] = field(default_factory=list)  # who the watcher last saw it wait for
    opened: bool = True  # its connect message has been recorded
    ending: Execution | None = None  # a COMMIT / ROLLBACK not yet known to have ended
    repeats: Counter[str] = field(default_factory=Counter)  # queries since checkout
    flagged: set[str] = field(default_factory=set)
    running_n: int | None = None  # the tracer's number of the running statement


@functools.lru_cache(maxsize=4096)
def _secrets(names: tuple[Any, ...]) -> frozenset[Any]:
    return frozenset(n for n in names if is_secret_name(str(n)))


MAX_VALUE = 200  # characters of one parameter's text, as recorded


def received_params(params: Any) -> Any:
    """A statement's parameters as the tracer sends them, as they are recorded: the
    driver's own values (long text and bytes as they were sent, see the tracer's
    _params) become text that shows them, a positional set (a tuple) a list."""
    if isinstance(params, tuple):
        return [_shown(v) for v in params]
    if isinstance(params, dict):
        for value in params.values():
            kind = type(value)
            if (kind is str and len(value) > MAX_VALUE) or kind is bytes:
                return {k: _shown(v) for k, v in params.items()}
        return params
    if isinstance(params, list):
        return [received_params(p) for p in params]  # executemany: each set
    return _shown(params)


def _shown(value: Any) -> Any:
    kind = type(value)
    if kind is str:
        return value if len(value) <= MAX_VALUE else value[:MAX_VALUE] + "…"
    if kind is bytes:
        return "\\x" + value[:MAX_VALUE].hex()
    return value


def mask_params(params: Any, names: list[str] | None = None) -> Any:
    """Parameters as recorded: a value whose name says it is a secret is masked (by key, or
    by the compiled statement's name for a positional parameter). Without one, `params`
    itself is returned: the same few statements run thousands of times."""
    if isinstance(params, dict):
        secret = _secrets(tuple(params))
        if not secret:
            return params
        return {k: _MASK if k in secret else v for k, v in params.items()}
    if isinstance(params, list):
        # isinstance with tuples here and in the tracer: `dict | list` builds a new union
        # object on every call, and these run for every value of every statement.
        if params and isinstance(params[0], (dict, list)):
            return [mask_params(p, names) for p in params]  # executemany: each set
        if names and len(names) == len(params):
            secret = _secrets(tuple(names))
            if not secret:
                return params
            pairs = zip(names, params, strict=True)
            return [_MASK if n in secret else v for n, v in pairs]
    return params


# How much less of the CPU the recorder's threads ask for than the programs they watch
# (Linux niceness, per thread). On a machine with few cores the recorder competes with the
# traced program and its database server for the same CPUs: this way the program goes first
# and the recorder catches up (its events are dated by the program's clock, so recording a
# little later changes no time shown).
_NICER = 10


def yield_cpu() -> None:
    """Lower the calling thread's CPU priority (Linux); elsewhere, nothing."""
    native = threading.get_native_id()
    with contextlib.suppress(AttributeError, OSError):
        os.setpriority(os.PRIO_PROCESS, native, os.getpriority(os.PRIO_PROCESS, native) + _NICER)


# Recording makes objects that live as long as the trace (executions, events, statements):
# each time they have grown by a quarter, Python's collector walks every object of the
# process, the app's or the CLI's whole heap (Textual, sqlglot, SQLAlchemy) included, and
# again and again as the recording grows. A trace sets that heap aside (gc.freeze: kept,
# never walked) until the last trace running ends; what the trace itself makes is still
# collected. The recorder's CPU a statement fell by 11% to 17% (replayed reports, with and
# without the app's modules loaded; with the collector off altogether, by about 30%).
_spared = 0
_spared_lock = threading.Lock()


@contextlib.contextmanager
def collector_spared() -> Iterator[None]:
    """Spare the process's older objects from the collector while a recording grows."""
    global _spared
    with _spared_lock:
        if _spared == 0:
            gc.freeze()
        _spared += 1
    try:
        yield
    finally:
        with _spared_lock:
            _spared -= 1
            if _spared == 0:
                gc.unfreeze()


class _AtTheirTime:
    """The timeline as the recorder writes to it: every event carries the moment its message
    was sent (the program's clock is this machine's), not the moment it was read."""

    def __init__(self, timeline: Timeline) -> None:
        self.timeline = timeline
        self.when: float | None = None

    def add(self, *args: Any, **kwargs: Any) -> Any:
        return self.timeline.add(*args, when=self.when, **kwargs)


class Recorder:
    """Turns tracer messages into lanes, executions and timeline events.

    Each process reports on its own socket, read by its own thread: read in arrival order,
    one program's COMMIT could land after another's statement it released. So `submit`
    queues every message by the time it was sent, and one dispatcher thread handles them in
    that order once they are `REORDER_S` old; the lock watcher's findings join the same
    queue, stamped when the engine was asked.
    """

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
        self.timeline = _AtTheirTime(timeline)
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
        self._statements: dict[tuple[str, Any], Statement] = {}
        self._notes: dict[int, str] = {}  # why a COMMIT / ROLLBACK was sent, by whom
        self._before: dict[int, TxState] = {}  # a COMMIT / ROLLBACK's database state before
        self._closing = threading.Event()
        self._queue: list[tuple[float, int, Program | None, dict[str, Any]]] = []
        self._queued = threading.Condition()
        self._arrivals = itertools.count()
        self._idle = threading.Event()
        self._dispatcher = threading.Thread(target=self._dispatch, name="dbsandbox-trace-order")
        self._dispatcher.daemon = True
        self._dispatcher.start()
        self._watcher = threading.Thread(target=self._watch, name="dbsandbox-trace-watch")
        self._watcher.daemon = True
        self._watcher.start()

    # ------------------------------------------------------------------ the order of events

    def submit(self, program: Program | None, message: dict[str, Any]) -> dict[str, Any] | None:
        """Queue one message in the order it was sent; an `ask` is answered at once (the
        program waits for it), everything else is recorded by the dispatcher."""
        if message.get("t") == "ask":
            return {"stop": self._stop_reason(str(message.get("sql") or ""))}
        sid = message.get("sid")
        if sid is not None and program is not None:
            # A statement's text comes once per process, then its number: read in the order
            # the socket delivered them, so the text is always known before its number.
            if "sql" in message:
                program.texts[sid] = (message["sql"], message.get("names"))
            else:
                message["sql"], message["names"] = program.texts.get(sid, ("", None))
        if message.get("t") == "connect" and program is not None:
            # Known at once, not after the reorder window: another session's lock watcher
            # may find this connection holding a lock before its events are recorded.
            number = message.get("c")
            if isinstance(number, int):
                with self._lock:
                    lane = self.lanes.get((program.pid, number))
                    if lane is None:
                        lane = Lane(f"{program.label}-{number}", program, number, opened=False)
                        self.lanes[(program.pid, number)] = lane
                    lane.pid = message.get("backend_pid")
        sent = message.get("at")
        when = float(sent) if isinstance(sent, (int, float)) else time.time()
        entry = (when, next(self._arrivals), program, message)
        with self._queued:
            heapq.heappush(self._queue, entry)
            self._idle.clear()
            # The dispatcher is woken only when this message changes when it must next
            # wake: the queue was empty, or this one is due first. Waking it for every
            # message (thousands a second) to wait again cost more CPU than recording them.
            if self._queue[0] is entry:
                self._queued.notify()
        return None

    def _dispatch(self) -> None:
        yield_cpu()
        while True:
            with self._queued:
                while True:
                    if self._queue:
                        due = self._queue[0][0] + REORDER_S - time.time()
                        if due <= 0 or self._closing.is_set():
                            break
                        # A little later than due: the messages due meanwhile are recorded
                        # in the same wake-up, not one wake-up each.
                        self._queued.wait(due + _COALESCE_S)
                    elif self._closing.is_set():
                        return
                    else:
                        self._idle.set()
                        self._queued.wait()
                when, _, program, message = heapq.heappop(self._queue)
            try:
                self.timeline.when = when
                self._handle(program, message)
            except Exception as exc:  # a bug: the trace goes on, and trace() raises it
                self.failures.append(exc)
            finally:
                self.timeline.when = None

    # ------------------------------------------------------------------ programs

    def program(self, pid: int, argv: list[str]) -> Program:
        with self._lock:
            found = self.programs.get(pid)
            if found is not None:
                return found
            stem = Path(argv[0]).stem if argv and argv[0] not in ("", "-c", "-m") else "python"
            # A lane's name is a script's session name too (an export replays it).
            stem = re.sub(r"[^A-Za-z0-9_]", "_", stem)[:24] or "python"
            # A program must not take a session's name (a.py beside session A in the app).
            taken = {str(getattr(s, "name", "")).lower() for s in self._other_sessions()}
            if stem.lower() in taken:
                stem = f"{stem}_py"
            self._labels[stem] += 1
            label = stem if self._labels[stem] == 1 else f"{stem}_{self._labels[stem]}"
            program = self.programs[pid] = Program(label, pid, list(argv))
            return program

    def _on_out(self, program: Program, message: dict[str, Any]) -> None:
        self._print(program, str(message.get("line", "")), str(message.get("stream") or ""))

    def output(self, program: Program, line: str) -> None:
        """A line the program wrote outside Python's sys.stdout (or before the tracer ran)."""
        self.submit(program, {"t": "out", "line": line})

    def exited(self, program: Program, code: int) -> None:
        self.submit(program, {"t": "_exit", "code": code})

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

    def _print(self, program: Program, line: str, stream: str = "") -> None:
        with self._lock:
            program.output.append(line)
        self.timeline.add(
            program.label,
            EventKind.PROGRAM,
            f"printed: {line}",
            pid=program.pid,
            stream=stream or None,
        )

    def _on_exit(self, program: Program, message: dict[str, Any]) -> None:
        code = int(message["code"])
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
                    "the program exited with this transaction open: the database rolled it back "
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

    def _handle(self, program: Program | None, message: dict[str, Any]) -> None:
        """Record one message (on the dispatcher thread, in the order they were sent)."""
        kind = message.get("t")
        if program is None:
            if kind == "_wait":
                self._on_wait(message)
            return None
        if kind == "out":
            self._on_out(program, message)
            return None
        if kind == "_exit":
            self._on_exit(program, message)
            return None
        if kind == "discarded":
            self._on_discarded(program, message)
            return None
        number = message.get("c")
        if not isinstance(number, int):
            return None
        with self._lock:
            lane = self._lane(program, number, message)
            if kind != "error":
                self._settle_ending(lane)
            handler = _LANE_HANDLERS.get(kind) if isinstance(kind, str) else None
            if handler is not None:
                handler(self, lane, message)
        return None

    def waiters(self) -> list[Lane]:
        """Every lane, for a lock watcher (any thread)."""
        with self._lock:
            return list(self.lanes.values())

    def _lane(self, program: Program, number: int, message: dict[str, Any]) -> Lane:
        key = (program.pid, number)
        lane = self.lanes.get(key)
        if lane is not None and not lane.opened:
            lane.opened = True  # made early by submit(): its connect event comes now
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
        state = _state(message) or lane.tx_state
        if state is TxState.IDLE:
            return  # nothing to undo: the driver sends nothing
        self._control(lane, "ROLLBACK", None, state, note="the pool's rollback on return")

    def _on_close(self, lane: Lane, message: dict[str, Any]) -> None:
        if lane.open:
            lane.open = False
            self.timeline.add(lane.name, EventKind.SESSION_CLOSED, "connection closed")

    def _on_begin(self, lane: Lane, message: dict[str, Any]) -> None:
        # SQLAlchemy's own transaction: the database's begins when the driver sends BEGIN
        # before a statement (its "transaction started" event), which may be later or never.
        lane.sa_began = True
        where = f" at {message['origin']}" if message.get("origin") else ""
        self.timeline.add(
            lane.name,
            EventKind.NOTICE,
            f"BEGIN (implicit){where}: SQLAlchemy began a transaction; the driver opens one "
            "in the database with the first statement that needs it",
            origin=message.get("origin"),
            implicit=True,
        )

    def _on_ended(self, lane: Lane, message: dict[str, Any]) -> None:
        pass  # handle() has settled the lane's COMMIT / ROLLBACK: it returned without error

    def _on_commit(self, lane: Lane, message: dict[str, Any]) -> None:
        self._control(lane, "COMMIT", message.get("origin"), _state(message))

    def _on_rollback(self, lane: Lane, message: dict[str, Any]) -> None:
        self._control(lane, "ROLLBACK", message.get("origin"), _state(message))

    def _on_stmt(self, lane: Lane, message: dict[str, Any]) -> None:
        lane.tx_state = _state(message) or lane.tx_state
        execution = self._execution(lane, message)
        self._flush_note(lane, message)
        self.timeline.add(
            lane.name,
            EventKind.STATEMENT,
            f"sent: {_short(execution.statement.text)}",
            statement=execution.index,
            origin=message.get("origin"),
            params=execution.params,
            many=bool(message.get("many")) or None,
            flush=_flush_kind(message.get("flush")),
            thread=message.get("thread"),
        )
        self._review(lane, execution, stopped=False)
        lane.running = execution
        lane.running_n = message.get("n")
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

    def _on_ran(self, lane: Lane, message: dict[str, Any]) -> None:
        """A statement and its end in one report (it ended before the report was written)."""
        self._on_stmt(lane, message)
        when = self.timeline.when
        self.timeline.when = message.get("ended", when)
        try:
            self._on_done(
                lane, {"rowcount": message.get("rowcount"), "tx": message.get("tx_after")}
            )
        finally:
            self.timeline.when = when

    def _on_done(self, lane: Lane, message: dict[str, Any]) -> None:
        number = message.get("n")
        if number is not None and number != lane.running_n:
            return  # its end came in its own report already (the tracer may tell it twice)
        rowcount = message.get("rowcount")
        running = lane.running
        if (
            self.dialect == "sqlite"
            and running is not None
            and _returns_rows(running.statement.text)
        ):
            # sqlite3 counts a RETURNING statement's rows as they are fetched, and the tracer
            # hears of it before the program fetches them: its 0 is not the count.
            rowcount = None
        count = rowcount if isinstance(rowcount, int) else None
        self._finish(lane, Status.OK, rowcount=count, after=_state(message))

    def _on_error(self, lane: Lane, message: dict[str, Any]) -> None:
        error = SqlError(
            code=message.get("code"),
            message=scrub(str(message.get("message") or message.get("error") or "error")),
            detail=message.get("detail"),
            context=message.get("context"),
        )
        if lane.running is not None:
            self._finish(lane, Status.ERROR, error=error, after=_state(message))
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
        # The same few statements come from the same few places thousands of times: one
        # (immutable) Statement for each.
        statement = self._statements.get((sql, origin))
        if statement is None:
            line = _line_of(origin)
            statement = Statement(sql, 0, 0, len(sql), line, 1, line, 1)
            self._statements[(sql, origin)] = statement
        kind = _kind(sql, self.dialect)

        def make(index: int) -> Execution:
            # Reviewed as it is recorded: the shared set event, not a new one for each.
            return Execution(
                index=index, session=lane.name, statement=statement, kind=kind, reviewed=REVIEWED
            )

        adopt = self._adopt
        execution = adopt(make) if adopt is not None else make(len(self.executions))
        execution.origin = origin
        raw = received_params(message.get("params"))
        names = message.get("names")
        execution.params = mask_params(raw, names if isinstance(names, list) else None)
        # A masked secret is never written into a replay: that statement is not replayed.
        if execution.params is raw:
            execution.replay_later = functools.partial(inline, sql, raw, self.dialect)
        execution.started = execution._running_since = time.perf_counter()
        execution.sent_at = time.time()
        self.executions.append(execution)  # this trace's own, whatever `adopt` numbers them
        return execution

    def _control(
        self,
        lane: Lane,
        sql: str,
        origin: str | None,
        state: TxState | None,
        note: str | None = None,
    ) -> None:
        """A COMMIT or ROLLBACK that SQLAlchemy asked the driver for (no cursor runs it).

        `state` is the database's transaction state just before, as the driver knows it:
        with none open, the driver sends nothing (sqlite3 after DDL, say), and the replay
        must not send it either."""
        lane.sa_began = False
        execution = self._execution(lane, {"sql": sql, "origin": origin})
        self._before[execution.index] = state or lane.tx_state
        if state is TxState.IDLE:
            note = "no transaction was open in the database: the driver sent nothing"
            execution.replay, execution.replay_later = "", None  # not replayed either
        if note:
            self._notes[execution.index] = note
        said = f" ({note})" if note else ""
        if state is TxState.IDLE:
            said = f": {note}"
        self.timeline.add(
            lane.name,
            EventKind.STATEMENT,
            f"{'asked' if state is TxState.IDLE else 'sent'}: {sql}{said}",
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
        before = self._before.pop(execution.index, lane.tx_state)
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
        record_outcome(self.timeline, lane, execution.index, execution.kind, outcome)

    def _finish(
        self,
        lane: Lane,
        status: Status,
        rowcount: int | None = None,
        error: SqlError | None = None,
        after: TxState | None = None,
    ) -> None:
        """The running statement ended; `after` is the driver's transaction state then (None
        for a driver that does not say: it is inferred as SQLAlchemy would have it)."""
        execution = lane.running
        if execution is None:
            return
        lane.running = None
        proven = None
        if error is not None and not execution.waited:
            everyone = [*self.waiters(), *self._other_sessions()]
            proven = self.target.wait_in_error(lane, error, everyone)
        with execution.lock:
            if proven is not None and not execution.waited:
                self._wait_started(execution, proven.blockers, proven.what, proven=True)
            if execution.waiting:
                self._wait_ended(execution)
        before = lane.tx_state
        if after is None:
            after = _inferred(execution.kind, status, before, lane.sa_began, self.dialect)
        if status is Status.OK and execution.kind.changes_data and after is not TxState.IDLE:
            lane.holds_write_lock = True
        if (
            before is TxState.IDLE
            and after is not TxState.IDLE
            and execution.kind.tx_control is None
        ):
            # The driver sent BEGIN first (psycopg2 always, sqlite3 before a write): so does
            # the replay, or it would run the statement in autocommit.
            later = execution.replay_later
            if later is not None:
                execution.replay_later = functools.partial(_begin_first, later)
            elif execution.replay is not None:
                execution.replay = f"BEGIN;\n{execution.replay}"
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
        record_outcome(self.timeline, lane, execution.index, execution.kind, outcome)

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
        record_findings(self.timeline, lane.name, execution.index, execution.review)
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
        """The flush whose first statement this is (the tracer tells it with that one)."""
        flush = message.get("flush")
        if not isinstance(flush, dict) or flush.get("again"):
            return
        parts = [
            f"{flush.get(k, 0)} {w}"
            for k, w in (("new", "new"), ("dirty", "changed"), ("deleted", "deleted"))
            if flush.get(k)
        ]
        pending = f" ({', '.join(parts)})" if parts else ""
        # Its first statement's origin is where the program caused it (the tracer does not
        # walk out of the ORM's frames a second time for the flush).
        origin = flush.get("origin") or message.get("origin")
        where = f" at {origin}" if origin else ""
        if flush.get("auto"):
            text = f"autoflush{pending}{where}: the session sends its pending changes first"
        else:
            text = f"flush{pending}{where}"
        auto = bool(flush.get("auto"))
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
        asked = time.time()
        try:
            wait = self.target.lock_wait(lane, lanes, writers)
        except Exception:  # the monitor could not ask: the wait shows when it can
            return
        blockers = wait.blockers if wait is not None else []
        if blockers == lane.seen:
            return  # nothing new since the last look
        lane.seen = list(blockers)
        self.submit(
            None,
            {
                "t": "_wait",
                "at": asked,
                "execution": execution.index,
                "lane": lane.name,
                "blockers": blockers,
                "what": wait.what if wait else "a lock",
            },
        )

    def _on_wait(self, message: dict[str, Any]) -> None:
        """What the watcher saw, recorded in its place among the programs' own events."""
        with self._lock:
            lane = next((x for x in self.lanes.values() if x.name == message["lane"]), None)
            execution = lane.running if lane is not None else None
            if lane is None or execution is None or execution.index != message["execution"]:
                return  # the statement ended before this look: its end says what happened
            blockers = list(message["blockers"])
            with execution.lock:
                if blockers and blockers != execution.waiting_on:
                    self._wait_started(execution, blockers, str(message["what"]))
                elif not blockers and execution.waiting:
                    self._wait_ended(execution)

    def _wait_started(
        self,
        execution: Execution,
        blockers: list[str],
        what: str,
        proven: bool = False,
    ) -> None:
        held = f" held by {', '.join(blockers)}" if blockers else ""
        said = " (the server's error says so: too short to watch)" if proven else ""
        execution.start_wait(self.timeline, blockers, what, f"waiting for {what}{held}{said}")

    def _wait_ended(self, execution: Execution) -> None:
        execution.end_wait(self.timeline)

    def close(self) -> None:
        """Record what is still queued, in order, and stop."""
        self._closing.set()
        self._watcher.join(timeout=2)
        with self._queued:
            self._queued.notify()
        self._dispatcher.join(timeout=10)


def _flush_kind(flush: Any) -> str | None:
    """How a statement came to be sent by the ORM: "autoflush", "flush", or None."""
    if not isinstance(flush, dict):
        return None
    return "autoflush" if flush.get("auto") else "flush"


# What each kind of a lane's report is recorded by (Recorder._on_KIND), looked up once.
_LANE_KINDS = [
    "redirect",
    "connect",
    "checkout",
    "checkin",
    "reset",
    "close",
    "begin",
    "ended",
    "commit",
    "rollback",
    "stmt",
    "stopped",
    "ran",
    "done",
    "error",
]
_LANE_HANDLERS: dict[str, Callable[[Recorder, Lane, dict[str, Any]], None]] = {
    kind: getattr(Recorder, f"_on_{kind}") for kind in _LANE_KINDS
}

_STATES = {state.value: state for state in TxState}


def _state(message: dict[str, Any]) -> TxState | None:
    """The driver's transaction state a message reports (None: the driver does not say)."""
    value = message.get("tx")
    return _STATES.get(value) if isinstance(value, str) else None


def _begin_first(replay: Callable[[], str | None]) -> str | None:
    text = replay()
    return None if text is None else f"BEGIN;\n{text}"


def _inferred(
    kind: StatementKind, status: Status, before: TxState, sa_began: bool, dialect: Dialect
) -> TxState:
    """The state after a statement on a driver that does not report it."""
    control = kind.tx_control
    if status is Status.OK:
        if control in (TxControl.COMMIT, TxControl.ROLLBACK):
            return TxState.IDLE
        if control is TxControl.BEGIN or sa_began:
            return TxState.IN_TRANSACTION
        return before
    if dialect == "postgres" and before is TxState.IN_TRANSACTION:
        return TxState.FAILED  # the transaction is aborted until ROLLBACK
    return before


@lru_cache(maxsize=2048)
def _kind(sql: str, dialect: Dialect) -> StatementKind:
    """classify() once per statement text: a program repeats a few statements thousands of
    times, and lexing each execution again made the recorder fall behind the program."""
    return classify(sql, dialect)


def _short(sql: str, limit: int = 120) -> str:
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


@functools.lru_cache(maxsize=4096)
def _returns_rows(sql: str) -> bool:
    return _RETURNING.search(sql) is not None


def _line_of(origin: Any) -> int:
    if isinstance(origin, str) and ":" in origin:
        tail = origin.rsplit(":", 1)[1]
        if tail.isdigit():
            return int(tail)
    return 0


def _ms_since(execution: Execution) -> float:
    return (time.perf_counter() - (execution.started or time.perf_counter())) * 1000


__all__ = ["N_PLUS_ONE_AT", "Lane", "Program", "Recorder", "StatementKind", "mask_params"]
