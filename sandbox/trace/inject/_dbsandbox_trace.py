"""dbsandbox's tracer inside a traced program: SQLAlchemy's own events, sent to dbsandbox.

It runs in the program's interpreter, which need not have dbsandbox installed, so it uses the
standard library and SQLAlchemy only. Nothing here changes what the program sends: the
listeners only report, except that with `--guard stop` a statement the guard stops raises
`DangerousStatementError` before it reaches the database.

Each process opens one Unix socket to the dbsandbox that started it
($DBSANDBOX_TRACE_SOCKET) and writes its reports in batches (see _frame); a forked child
opens its own.
Messages carry the DBAPI connection's number in this process ("c"), so dbsandbox draws one
lane per connection, whatever thread or pool uses it.
"""

from __future__ import annotations

import atexit
import importlib.machinery
import itertools
import json
import marshal
import os
import socket
import sys
import sysconfig
import threading
import time
from _queue import SimpleQueue
from collections import deque
from typing import Any

_ENV_SOCKET = "DBSANDBOX_TRACE_SOCKET"
_ENV_GUARD = "DBSANDBOX_TRACE_GUARD"
_ENV_URL = "DBSANDBOX_TRACE_URL"  # the sandbox, whatever the program does to DATABASE_URL
_ENV_ECHO = "DBSANDBOX_TRACE_ECHO"  # a path prefix: SQLAlchemy's echo log goes to PREFIX.PID
_MAX_VALUE = 200  # characters of one parameter's text
_MAX_PARAMS = 50  # parameter sets of one executemany


class DangerousStatementError(Exception):
    """The dbsandbox guard stopped this statement before it reached the database."""


class OtherEngineError(Exception):
    """The program connects to another kind of database than the sandbox is."""


# Reports are written to the socket together: one write per report (2-3 a statement, each a
# system call that wakes dbsandbox's reader) cost the program more than all the rest of the
# tracer. The program's own thread writes a batch when it reports again _BATCH_S after the
# batch's first report, or at _BATCH_REPORTS (the new report starts the next batch).
# Nothing here wakes on a timer: a thread of the
# program's own that woke every 10 ms to write what a blocked statement left pending cost a
# busy ORM program 12% of its run time (each wake-up takes the GIL from it), measured with
# benchmarks/trace_overhead.py. Instead dbsandbox pokes a process that has been silent for a
# while (tracer._Server, POKE_AFTER_S), and the listener thread, blocked in recv until then,
# writes what is pending: a statement waiting for a lock, a program busy with other work.
# A poke that finds nothing pending makes the process "quiet": dbsandbox will not poke it
# again until it hears from it, so its next report is written at once.
# Each report carries the time it was made ("at"), which dbsandbox orders and dates it by,
# well inside the recorder's reorder window (recorder.REORDER_S); `ask` (the guard) and the
# end of the process write at once.
# 20 ms: each write wakes dbsandbox's reader on the other core, and costs the program
# ~40 us in the kernel; batches of 5 ms made the program pay 2-3% of its run time for them.
_BATCH_S = 0.02
# benchmarks/trace_instructions.py runs the program ~50 times slower (under valgrind) and
# stretches the window alike, so that batches hold as many reports as they do at full speed.
_BATCH_S = float(os.environ.get("DBSANDBOX_TRACE_BATCH_S") or _BATCH_S)
_BATCH_REPORTS = 256
_POKE = b'{"t":"poke"}'
# A report is encoded when its batch is written, not when it is made: a statement's report
# still waiting then takes its end in (dbsandbox reads it as one report, "ran", instead of
# "stmt" and "done").
# A batch is one frame: its length (4 bytes, big-endian), then the list of reports in
# marshal's format 4 (read by any Python since 3.4, whatever Python runs the program).
# marshal, not JSON: encoding a report as JSON took 5.6 us, as marshal 0.4 us, and reading
# it back in dbsandbox 5.3 us against 0.7 (the reports hold only str, int, float, bool,
# None, bytes, and tuples, lists and dicts of them; a parameter marshal cannot write is made
# text when its batch is written, see _frame).
_MARSHAL_VERSION = 4
_repr_encode = json.JSONEncoder(default=repr, separators=(",", ":")).encode


def _frame(reports: list[Any]) -> bytes:
    try:
        body = marshal.dumps(reports, _MARSHAL_VERSION)
    except ValueError:  # a parameter marshal cannot write (a Decimal, a datetime): as text
        for report in reports:
            if type(report) is list and report[_PARAMS] is not None:
                report[_PARAMS] = _sendable(report[_PARAMS])
        try:
            body = marshal.dumps(reports, _MARSHAL_VERSION)
        except ValueError:  # anything else of a program's own: as text
            body = marshal.dumps([_plain(r) for r in reports], _MARSHAL_VERSION)
    return len(body).to_bytes(4, "big") + body


def _plain(report: Any) -> Any:
    return json.loads(_repr_encode(report))


# A statement's report is a list, not a dict: made for every statement the program sends, a
# dict of its dozen fields cost the program four times what the list does. dbsandbox reads it
# back by these positions (tracer.STATEMENT_FIELDS); OUT and END are the tracer's own.
(
    _AT,
    _THREAD,
    _LANE,
    _NUMBER,
    _SID,
    _PARAMS,
    _MANY,
    _ORIGIN,
    _FLUSH,
    _TX,
    _SQL,
    _NAMES,
    _END,  # (rowcount, transaction state, time) once it ended
    _OUT,  # taken into a batch
) = range(1, 15)
# A stopped statement's report has one more: why the guard stopped it.


def _lost(count: int, exc: BaseException) -> dict[str, Any]:
    why = f"{type(exc).__name__}: {exc}"[:_MAX_VALUE]
    line = f"dbsandbox trace: {count} reports could not be sent ({why})"
    return {"t": "out", "at": time.time(), "line": line, "stream": "stderr"}


class _Channel:
    """The process's socket to dbsandbox, and the reports waiting to be written to it.

    Reporting takes no lock: a lock taken and released for every report cost the program
    more than the report itself. `pending` is a deque (append and popleft are each one step
    for other threads); a batch is taken and written under `writing`, so batches reach
    dbsandbox in the order they were taken."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.writing = threading.Lock()
        self.asking = threading.Lock()  # one question to dbsandbox at a time
        self.answers: SimpleQueue[dict[str, Any]] = SimpleQueue()
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.connect(path)
        self.broken = False
        self.pending: deque[Any] = deque()
        self.eager = False  # the process is ending: every report is written at once
        self.quiet = False  # a poke found nothing pending: the next report goes at once
        self.first = 0.0  # when the oldest pending report was made
        listener = threading.Thread(target=self._listen, name="dbsandbox-trace", daemon=True)
        listener.start()

    def send(self, report: Any, now: float) -> None:
        """Queue `report` (made at `now`); write the batch when it is due."""
        pending = self.pending
        if pending and (len(pending) >= _BATCH_REPORTS or now - self.first >= _BATCH_S):
            # Written before this report joins it: a statement's report then waits for the
            # next batch, and its end goes into it (see _after), not into a report of its own.
            self.write()
        if not pending:
            self.first = now
        pending.append(report)
        if self.quiet or self.eager:
            self.write()

    def ask(self, message: dict[str, Any]) -> dict[str, Any]:
        """Send `message` and wait for dbsandbox's answer (read by the listener thread)."""
        with self.asking:
            if self.broken:
                return {}
            self.pending.append(message)
            self.write()
            return self.answers.get()

    def write(self) -> None:
        """Write what is pending, if anything is."""
        with self.writing:
            pending = self.pending
            reports = [pending.popleft() for _ in range(len(pending))]
            self.quiet = False
            if not reports or self.broken:
                return
            for report in reports:
                if type(report) is list:
                    # Before it is encoded: an end added from now on might not be in this
                    # batch, so _after reports it again (dbsandbox takes the first).
                    report[_OUT] = True
            try:
                data = _frame(reports)
            except Exception as exc:  # never the program's problem: the batch is told lost
                data = _frame([_lost(len(reports), exc)])
            try:
                self.sock.sendall(data)
            except OSError:
                self.broken = True  # dbsandbox is gone: the program runs on untraced

    def _listen(self) -> None:
        """What dbsandbox writes back: pokes, and the answers to `ask`."""
        try:
            with self.sock.makefile("rb") as lines:
                for line in lines:
                    if line.startswith(_POKE):
                        # Quiet first, then look: a report queued meanwhile is either seen
                        # here or its own send() sees quiet and writes it (no lock taken).
                        self.quiet = True
                        if self.pending:
                            self.write()
                        continue
                    try:
                        self.answers.put(json.loads(line))
                    except ValueError:
                        self.answers.put({})
        except (OSError, ValueError):
            pass
        self.broken = True  # dbsandbox is gone: the program runs on untraced
        self.answers.put({})  # a question still waiting gets no answer, not a hang


_channel: _Channel | None = None
_numbers = itertools.count(1)
_statements = itertools.count(1)
_texts: dict[str, int] = {}  # statement text -> its number in this process's reports
_verdicts: dict[str, str | None] = {}  # statement text -> why the guard stops it (None: runs)
_local = threading.local()
_skip_prefixes: tuple[str, ...] = ()
_attached: set[str] = set()


_time = time.time


def _send(kind: str, **fields: Any) -> dict[str, Any]:
    """Queue one report; returns it."""
    fields["t"] = kind
    fields["at"] = now = _time()
    fields["thread"] = _current_thread().name
    if _channel is not None and not _channel.broken:
        _channel.send(fields, now)
    return fields


_current_thread = threading.current_thread


def _hello() -> None:
    _send("hello", pid=os.getpid(), argv=sys.argv[:8], ppid=os.getppid())


def _ending() -> None:
    """The process ends: what is pending is written, and whatever comes after (a pool
    closed as the interpreter shuts down) is written at once."""
    channel = _channel
    if channel is not None:
        channel.eager = True
        channel.write()


class _Owner:
    """What multiprocessing's after-fork registry holds (weakly) for the hook below."""


_owner = _Owner()
_mp_hooked = False


def _before_fork() -> None:
    global _mp_hooked
    if _channel is not None:
        _channel.write()  # the parent's reports so far go before the child's first
    # A multiprocessing child (fork) ends with os._exit, which runs no atexit: its own exit
    # hook (a Finalize) must write what is pending. Registered from the parent, because the
    # child's bootstrap clears the finalizers a fork hook could register, then runs these.
    if not _mp_hooked and "multiprocessing" in sys.modules:
        from multiprocessing import util

        util.register_after_fork(_owner, _end_with_multiprocessing)
        _mp_hooked = True


def _end_with_multiprocessing(owner: _Owner) -> None:
    from multiprocessing import util

    util.Finalize(None, _ending, exitpriority=-1000)


def _after_fork() -> None:
    """A forked process must not write into its parent's socket: it gets its own."""
    global _channel, _numbers
    _numbers = itertools.count(1)
    _texts.clear()  # the new channel's reader has seen none of them
    _depths.clear()
    path = _channel.path if _channel is not None else os.environ.get(_ENV_SOCKET)
    _channel = None
    if path:
        try:
            _channel = _Channel(path)
        except OSError:
            return
        _hello()


class _Lines:
    """sys.stdout / sys.stderr of a traced program: each whole line goes to dbsandbox on the
    same channel as the events, so the timeline shows a print between the statements it
    really came between. Writes go to the real stream if dbsandbox is gone."""

    def __init__(self, stream: Any, name: str) -> None:
        self._stream = stream
        self._name = name
        self._pending = ""

    def write(self, text: str) -> int:
        if _channel is None or _channel.broken:
            return int(self._stream.write(text))
        self._pending += text
        while "\n" in self._pending:
            line, self._pending = self._pending.split("\n", 1)
            _send("out", line=line, stream=self._name)
        return len(text)

    def flush(self) -> None:
        if self._pending and _channel is not None and not _channel.broken:
            _send("out", line=self._pending, stream=self._name)
            self._pending = ""
        self._stream.flush()

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def install() -> None:
    """Connect to dbsandbox and attach the listeners once SQLAlchemy is imported."""
    global _channel, _skip_prefixes
    path = os.environ.get(_ENV_SOCKET)
    if not path or _channel is not None:
        return
    _channel = _Channel(path)
    _hello()
    os.register_at_fork(before=_before_fork, after_in_child=_after_fork)
    atexit.register(_ending)  # registered first, so it runs last of the program's own
    sys.stdout = _Lines(sys.stdout, "stdout")
    sys.stderr = _Lines(sys.stderr, "stderr")
    paths = sysconfig.get_paths()
    here = os.path.dirname(os.path.abspath(__file__))
    _skip_prefixes = tuple(
        {os.path.abspath(p) + os.sep for p in (paths["stdlib"], paths["platstdlib"], here)}
    )
    echo = os.environ.get(_ENV_ECHO)
    if echo:
        # SQLAlchemy's own echo log, to a file (benchmarks/trace_fidelity.py compares it with
        # the trace): what the engine logs it sent, independent of these listeners.
        import logging

        handler = logging.FileHandler(f"{echo}.{os.getpid()}", encoding="utf-8")
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
        logger = logging.getLogger("sqlalchemy.engine")
        logger.addHandler(handler)
        logger.setLevel(logging.INFO)
    if "sqlalchemy" in sys.modules:
        _attach_core()
    if "sqlalchemy.orm" in sys.modules:
        _attach_orm()
    sys.meta_path.insert(0, _AfterImport())


class _AfterImport:
    """Attaches the listeners right after the program imports sqlalchemy (and its ORM).

    A meta path finder needs only find_spec; not subclassing importlib.abc's spares every
    traced process importing importlib.abc (and through it importlib.resources, tempfile,
    shutil, ...): 10 ms of a course script's 300."""

    def find_spec(self, name: str, path: Any = None, target: Any = None) -> Any:
        if name not in ("sqlalchemy", "sqlalchemy.orm") or name in _attached:
            return None
        spec = importlib.machinery.PathFinder.find_spec(name, path)
        if spec is None or spec.loader is None:
            return None
        loader = spec.loader
        original = loader.exec_module

        def exec_module(module: Any) -> None:
            original(module)
            if name == "sqlalchemy":
                _attach_core()
            else:
                _attach_orm()

        loader.exec_module = exec_module  # type: ignore[method-assign]
        return spec


# ---------------------------------------------------------------- what caused a statement


def _origin() -> str | None:
    """The program's own file:line that led to this statement: the innermost frame outside
    SQLAlchemy, the standard library, installed packages and this tracer."""
    return _walk(sys._getframe(2))[0]


def _walk(frame: Any, depth: int = 0) -> tuple[str | None, int]:
    """The first of the program's frames from `frame` outwards, and how many frames out."""
    while frame is not None:
        shown = _kind_of(frame)
        if shown is not None:
            return f"{shown}:{frame.f_lineno}", depth
        frame = frame.f_back
        depth += 1
    return None, 0


def _kind_of(frame: Any) -> Any:
    """How the frame's file is shown (decided once per file); None if not the program's."""
    filename = frame.f_code.co_filename
    shown = _files.get(filename, _UNSEEN)
    if shown is _UNSEEN:
        shown = _files[filename] = _program_file(filename)
    return shown


# Where each statement was last sent from: how far out the program's frame was (by the
# statement's number in _texts), counted from the statement listener's caller. Walking out
# frame by frame (15 to 40 of SQLAlchemy's) cost the program more than everything else the
# tracer does for a statement; the same statement is mostly sent from the same place, and
# sys._getframe jumps there without making the frames between.
_depths: dict[int, int] = {}
# What the jump found: the frame there is the program's and the one just inside it is not
# (SQLAlchemy's), so its file:line is the origin. Kept by the frame's code and instruction
# (id(code) + offset: a tuple of code objects as the key cost more to hash than the rest of
# the report; an entry names its codes, so a key two places share is seen and replaced, and
# keeps them alive, so their ids are not reused). A frame's line number is worked out from
# its code's line table, and the text made, once per call site, not per statement.
_origins: dict[int, tuple[Any, Any, int, str]] = {}
_getframe = sys._getframe


def _origin_at(inside: Any, frame: Any) -> str | None:
    shown = _kind_of(frame)
    if shown is None or _kind_of(inside) is not None:
        return None
    code, lasti = frame.f_code, frame.f_lasti
    origin = f"{shown}:{frame.f_lineno}"
    _origins[id(code) + lasti] = (inside.f_code, code, lasti, origin)
    return origin


def _autoflushed() -> bool:
    """Whether SQLAlchemy's autoflush (a query flushing first) started this flush: its
    Session._autoflush is a few frames out from the before_flush listener (listener,
    dispatch, _flush, flush, _autoflush), not the whole way to the program's frame."""
    frame: Any = sys._getframe(2)
    for _ in range(_AUTOFLUSH_WITHIN):
        if frame is None:
            return False
        if frame.f_code.co_name == "_autoflush":
            return True
        frame = frame.f_back
    return False


_AUTOFLUSH_WITHIN = 8  # frames: SQLAlchemy 2.0 and 2.1 need 4, deprecation wrappers 1 more


# Every statement walks 15-30 frames up to the program's own: what each file is (skipped,
# or the name it is shown by) is decided once per file, not once per frame (relpath on every
# statement cost more than the rest of the tracer). A file's name is fixed the first time
# it is seen, even if the program later changes directory.
_UNSEEN = object()
_files: dict[str, Any] = {}


def _program_file(filename: str) -> str | None:
    """How the program's file `filename` is shown; None for a file that is not the
    program's (SQLAlchemy, the standard library, installed packages, this tracer)."""
    if (
        filename.startswith(_skip_prefixes)
        or filename.startswith("<")
        or f"{os.sep}site-packages{os.sep}" in filename
        or f"{os.sep}dist-packages{os.sep}" in filename
    ):
        return None
    return _shown(filename)


def _shown(filename: str) -> str:
    """A file as the learner knows it: relative to the program's own folder (or the current
    one) when it is inside it, else in full."""
    script = sys.argv[0] if sys.argv and sys.argv[0] else ""
    for base in (os.path.dirname(os.path.abspath(script)) if script else None, os.getcwd()):
        if base is None:
            continue
        try:
            shown = os.path.relpath(filename, base)
        except ValueError:
            continue
        if not shown.startswith(".." + os.sep) and shown != "..":
            return shown
    return filename


def _value(value: Any) -> Any:
    """One parameter's value as marshal writes it, as the driver sends it: a subclass of
    int or str (an enum, SQLAlchemy's quoted_name) as its plain value; long text cut; bytes
    as hex; anything else (a Decimal, a datetime) as its text."""
    if value is None or type(value) in _PLAIN:
        return value
    if isinstance(value, str):
        # Slicing makes a plain str of a subclass too, with the same characters.
        return value[:_MAX_VALUE] if len(value) <= _MAX_VALUE else value[:_MAX_VALUE] + "…"
    if isinstance(value, bool):
        return bool(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return "\\x" + bytes(value[:_MAX_VALUE]).hex()
    text = str(value)
    return text if len(text) <= _MAX_VALUE else text[:_MAX_VALUE] + "…"


_PLAIN = (int, float, bool)


def _params(parameters: Any, many: bool) -> Any:
    """The statement's parameters as the driver gets them: a tuple (positional), a dict
    (named), a list of those (executemany). Their values are checked when the batch is
    written (_frame), by marshal itself: a Python check of every value of every statement
    cost the program more than the rest of the statement's report."""
    if parameters is None:
        return None
    # SQLAlchemy's insertmanyvalues sends one batch as one statement with one dict of
    # parameters, yet calls it "many": only a sequence holds several parameter sets.
    if many and not isinstance(parameters, dict):
        return [_params(p, False) for p in list(parameters)[:_MAX_PARAMS]]
    if type(parameters) is tuple:
        return parameters  # the driver's own: nothing changes it
    if isinstance(parameters, dict):
        return dict(parameters)  # a program's own dict could change after the statement
    if isinstance(parameters, (list, tuple)):
        return tuple(parameters)
    return _value(parameters)


def _sendable(parameters: Any) -> Any:
    """`parameters` (see _params) with every value one marshal can write: long text cut,
    bytes as hex, anything else (a Decimal, a datetime) as its text."""
    if isinstance(parameters, dict):
        return {str(k): _value(v) for k, v in parameters.items()}
    if isinstance(parameters, tuple):
        return tuple(_value(v) for v in parameters)
    if isinstance(parameters, list):
        return [_sendable(p) for p in parameters]
    return _value(parameters)


def _one_batch(context: Any) -> bool:
    """An "insertmanyvalues" batch: SQLAlchemy says executemany=True for the statement as a
    whole, but each batch is one cursor.execute() of ONE parameter set (on PostgreSQL a dict
    naming every row's values, name__0, name__1, ...; where batching is not supported, one
    row's tuple). Read as many sets, a dict's keys were taken for parameter sets, and
    writing them into the replay failed the whole trace (any ORM flush of 2+ new objects on
    PostgreSQL)."""
    style = getattr(context, "execute_style", None)
    return getattr(style, "name", None) == "INSERTMANYVALUES"


# ---------------------------------------------------------------- which lane


# Each DBAPI connection the pool made, by id: (the connection, its lane, its reader of the
# transaction state). The statement listeners find both from the cursor, instead of asking
# SQLAlchemy's Connection (two properties deep) and the driver's type on every statement.
_raws: dict[int, tuple[Any, int, Any]] = {}


def _thread_name(local: Any) -> str:
    """The thread's name, kept for its later statements (a thread named after its first
    statement keeps its first name on the timeline)."""
    name = local.thread = _current_thread().name
    return name


def _failed_statement() -> int | None:
    report = getattr(_local, "report", None)
    return report[_NUMBER] if report is not None else None


def _lane(info: dict[str, Any]) -> int:
    number = info.get("dbsandbox.lane")
    if number is None:
        number = info["dbsandbox.lane"] = next(_numbers)
    return int(number)


def _lane_of(conn: Any) -> int | None:
    try:
        return _lane(conn.connection.info)
    except NotImplementedError:
        # SQLAlchemy's first connect (see _before): its ad-hoc pool connection has no .info,
        # but it runs inside the pool's connect event of that same DBAPI connection.
        connecting = getattr(_local, "connecting", None)
        dbapi_connection = getattr(conn.connection, "dbapi_connection", None)
        if connecting is not None and connecting[0] is dbapi_connection:
            return _lane(connecting[1])
        return None
    except Exception:  # a closed or invalidated connection
        return None


def _tx(dbapi_connection: Any) -> str | None:
    """The database's own transaction state on this connection, as the driver knows it (not
    SQLAlchemy's: it "begins" before the driver has sent anything)."""
    return _tx_known(dbapi_connection, _tx_reader_of(dbapi_connection))


def _tx_known(dbapi_connection: Any, reader: Any) -> str | None:
    """_tx with the connection's reader already in hand (remembered at connect: _raws)."""
    try:
        return reader(dbapi_connection)  # type: ignore[no-any-return]
    except Exception:  # a closed connection
        return None


def _tx_reader_of(dbapi_connection: Any) -> Any:
    kind = type(dbapi_connection)
    reader = _tx_readers.get(kind)
    if reader is None:
        reader = _tx_readers[kind] = _tx_reader(dbapi_connection)
    return reader


# How each driver's connection tells its transaction state, decided once per connection
# type: asked for every statement, twice, the attribute probing cost more than the answer.
_tx_readers: dict[type, Any] = {}
_PG_STATES = {0: "idle", 1: "in_transaction", 2: "in_transaction", 3: "failed"}


def _sqlite_tx(raw: Any) -> str:
    return "in_transaction" if raw.in_transaction else "idle"


def _pg_tx(raw: Any) -> str | None:
    return _PG_STATES.get(raw.info.transaction_status)


def _unknown_tx(raw: Any) -> None:
    return None


def _pooled_tx(pooled: Any) -> str | None:
    return _tx(pooled.dbapi_connection)


def _tx_reader(raw: Any) -> Any:
    try:
        if getattr(raw, "dbapi_connection", raw) is not raw:  # SQLAlchemy's pooled wrapper
            return _pooled_tx
        if isinstance(getattr(raw, "in_transaction", None), bool):  # sqlite3
            return _sqlite_tx
        status = getattr(getattr(raw, "info", None), "transaction_status", None)
        if isinstance(status, int):  # psycopg2 and psycopg
            return _pg_tx
    except Exception:
        pass
    return _unknown_tx


def _tx_of(conn: Any) -> str | None:
    try:
        return _tx(conn.connection.dbapi_connection)
    except Exception:
        return None


def _backend_pid(dbapi_connection: Any) -> int | None:
    info = getattr(dbapi_connection, "info", None)  # psycopg2 and psycopg
    pid = getattr(info, "backend_pid", None)
    if pid is None and hasattr(dbapi_connection, "get_backend_pid"):
        try:
            pid = dbapi_connection.get_backend_pid()
        except Exception:
            pid = None
    return pid if isinstance(pid, int) else None


# ---------------------------------------------------------------- the listeners


def _attach_core() -> None:
    if "sqlalchemy" in _attached:
        return
    _attached.add("sqlalchemy")
    from sqlalchemy import event
    from sqlalchemy.engine import Connection, Engine
    from sqlalchemy.pool import Pool

    global _skip_prefixes
    import sqlalchemy

    _skip_prefixes += (os.path.dirname(os.path.abspath(sqlalchemy.__file__)) + os.sep,)
    _files.clear()  # decided before SQLAlchemy's folder was known to be skipped
    guard_stops = os.environ.get(_ENV_GUARD) == "stop"

    sandbox_url = os.environ.get(_ENV_URL)

    @event.listens_for(Engine, "do_connect")
    def _redirect(dialect: Any, record: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
        """Every connection goes to the sandbox, whatever URL the program names (a course's
        `sqlite:///quick_persist.db`): the user's own file or database is never touched."""
        if not sandbox_url:
            return
        from sqlalchemy.engine import make_url

        sandbox = make_url(sandbox_url)
        if dialect.name != sandbox.get_backend_name():
            raise OtherEngineError(
                f"the program connects to {dialect.name}, but the sandbox is "
                f"{sandbox.get_backend_name()}: run dbsandbox trace with --engine "
                f"{dialect.name}, or let the program read DATABASE_URL"
            )
        wanted_args, wanted_params = dialect.create_connect_args(sandbox)
        if list(cargs) == list(wanted_args) and all(
            cparams.get(k) == v for k, v in wanted_params.items()
        ):
            return
        if dialect.name == "sqlite":
            asked = f"sqlite file {cargs[0] if cargs else cparams.get('database', '')}"
        else:
            name = cparams.get("dbname") or cparams.get("database") or "?"
            asked = f"{dialect.name} database {name} on {cparams.get('host') or 'localhost'}"
        cargs[:] = list(wanted_args)
        for key in [k for k in cparams if k not in ("timeout", "check_same_thread")]:
            del cparams[key]
        cparams.update(wanted_params)
        _send("redirect", c=_lane(record.info), asked=asked, origin=_origin())

    @event.listens_for(Pool, "connect")
    def _connect(dbapi_connection: Any, record: Any) -> None:
        # The pool's class-level listeners run before its own, first_connect among them.
        _local.connecting = (dbapi_connection, record.info)
        _raws[id(dbapi_connection)] = (
            dbapi_connection,
            _lane(record.info),
            _tx_reader_of(dbapi_connection),
        )
        _send(
            "connect",
            c=_lane(record.info),
            backend_pid=_backend_pid(dbapi_connection),
            driver=type(dbapi_connection).__module__.split(".")[0],
            origin=_origin(),
        )

    @event.listens_for(Pool, "checkout")
    def _checkout(dbapi_connection: Any, record: Any, proxy: Any) -> None:
        _local.connecting = None  # connected: first_connect is over
        _send("checkout", c=_lane(record.info), origin=_origin())

    @event.listens_for(Pool, "checkin")
    def _checkin(dbapi_connection: Any, record: Any) -> None:
        _send("checkin", c=_lane(record.info))

    @event.listens_for(Pool, "reset")
    def _reset(dbapi_connection: Any, record: Any, state: Any) -> None:
        _send(
            "reset",
            c=_lane(record.info),
            tx=_tx(dbapi_connection),
            already=bool(getattr(state, "transaction_was_reset", False)),
        )

    @event.listens_for(Pool, "close")
    def _close(dbapi_connection: Any, record: Any) -> None:
        _raws.pop(id(dbapi_connection), None)
        _send("close", c=_lane(record.info))

    @event.listens_for(Engine, "begin")
    def _begin(conn: Any) -> None:
        _send("begin", c=_lane_of(conn), origin=_origin())

    @event.listens_for(Engine, "engine_connect")
    def _engine_connect(conn: Any) -> None:
        _watch_ends(conn.dialect)  # before any COMMIT, ROLLBACK or pool reset can run

    @event.listens_for(Engine, "commit")
    def _commit(conn: Any) -> None:
        _watch_ends(conn.dialect)
        _send("commit", c=_lane_of(conn), origin=_origin(), tx=_tx_of(conn))

    @event.listens_for(Engine, "rollback")
    def _rollback(conn: Any) -> None:
        _watch_ends(conn.dialect)
        _send("rollback", c=_lane_of(conn), origin=_origin(), tx=_tx_of(conn))

    # Statements are heard on the Connection class, not the Engine: SQLAlchemy's first
    # connection asks the server about itself before the program's first statement
    # (PostgreSQL: `select pg_catalog.version()`, `select current_schema()`, `show
    # standard_conforming_strings`) on a Connection made with _has_events=False
    # (create_engine's first_connect), which never joins its engine's dispatch: Engine
    # listeners miss those statements, though they reach the server and the echo log lists
    # them. Connection-class listeners fire once for every Connection, that one included,
    # because the begin / commit / rollback listeners above are on Engine (that sets
    # Engine._has_events, which first_connect's Connection checks before dispatching).
    # retval=True: SQLAlchemy then calls this listener itself, not through a wrapper of its
    # own that returns the statement unchanged (one call less, on every statement).
    @event.listens_for(Connection, "before_cursor_execute", retval=True)
    def _before(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> tuple[str, Any]:
        # This runs for every statement the program sends: what it costs is the tracer's
        # overhead (benchmarks/trace_instructions.py), so it is written flat, with what can
        # be decided once (per thread, connection, statement text or call site) remembered.
        if many and _one_batch(context):
            many = False
        local = _local
        try:
            thread = local.thread
        except AttributeError:
            thread = _thread_name(local)
        flush = getattr(local, "flush", None)
        if flush is not None:
            if "told" not in flush:
                flush["told"] = True  # its first statement carries it
            else:
                flush = flush["later"]  # a later statement of it
        # A statement's text (and its parameters' names) goes once; then its number ("sid")
        # stands for it: an ORM program sends the same few statements thousands of times.
        sid = _texts.get(statement)
        new = sid is None
        if sid is None:
            sid = _texts[statement] = len(_texts) + 1
        # The program's file:line: see _origins.
        origin = None
        depth = _depths.get(sid)
        if depth is not None:
            try:
                inside = _getframe(depth)
            except ValueError:
                pass
            else:
                frame = inside.f_back
                if frame is not None:
                    code, lasti = frame.f_code, frame.f_lasti
                    site = _origins.get(id(code) + lasti)
                    if (
                        site is not None
                        and site[1] is code
                        and site[2] == lasti
                        and site[0] is inside.f_code
                    ):
                        origin = site[3]
                    else:
                        origin = _origin_at(inside, frame)
        if origin is None:
            origin, depth = _walk(_getframe(1))  # the program's frame is depth + 1 out
            if origin is not None:
                _depths[sid] = depth  # the frame just inside it
        raw = getattr(cursor, "connection", None)
        known = _raws.get(id(raw))
        lane: int | None
        if known is not None and known[0] is raw:
            lane, tx = known[1], _tx_known(raw, known[2])
        else:
            lane, tx = _lane_of(conn), _tx(raw or conn.connection)
        now = _time()
        # The statement's report: a list (see _Channel), read by dbsandbox by position.
        report = [
            "stmt",
            now,
            thread,
            lane,
            next(_statements),
            sid,
            _params(parameters, many),
            # insertmanyvalues batches many rows into one statement with one parameter set:
            # "many" only for a real executemany (several sets for one statement).
            many and isinstance(parameters, (list, tuple)),
            origin,
            flush,
            tx,
            None,  # _SQL
            None,  # _NAMES
            None,  # _END
            False,  # _OUT
        ]
        if new:
            # Positional parameters (qmark, format) have names in the compiled statement:
            # they tell dbsandbox which values are secrets to mask.
            names = getattr(getattr(context, "compiled", None), "positiontup", None)
            report[_SQL] = statement
            report[_NAMES] = list(names) if names else None
        if guard_stops:
            stop = _verdicts.get(statement, "?")
            if stop == "?":
                reply = _channel.ask({"t": "ask", "sql": statement}) if _channel else {}
                stop = _verdicts[statement] = reply.get("stop")
            if stop:
                report[0] = "stopped"
                report.append(stop)  # _WHY
                if _channel is not None:
                    _channel.send(report, now)
                raise DangerousStatementError(f"dbsandbox guard stopped this statement: {stop}")
        local.report = report
        channel = _channel
        if channel is not None and not channel.broken:
            channel.send(report, now)
        return statement, parameters

    @event.listens_for(Connection, "after_cursor_execute")
    def _after(
        conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, many: bool
    ) -> None:
        rowcount = getattr(cursor, "rowcount", None)
        if type(rowcount) is not int:
            rowcount = None
        local = _local
        report = getattr(local, "report", None)
        local.report = None
        raw = getattr(cursor, "connection", None)
        known = _raws.get(id(raw))
        if known is not None and known[0] is raw:
            tx = _tx_known(raw, known[2])
        else:
            tx = _tx(raw or conn.connection)
        if report is None:  # its start was not heard (the tracer attached since)
            _send("done", c=_lane_of(conn), n=None, rowcount=rowcount, tx=tx)
            return
        # Most statements end before their report is written: the end goes into it. One
        # step (a list item set), so no lock: see _Channel.write for the rest.
        report[_END] = (rowcount, tx, _time())
        if report[_OUT]:
            _send("done", c=report[_LANE], n=report[_NUMBER], rowcount=rowcount, tx=tx)

    # handle_error is the dialect's event: it fires for the first connect's probes too.
    @event.listens_for(Engine, "handle_error")
    def _error(context: Any) -> None:
        original = context.original_exception
        if isinstance(original, DangerousStatementError):
            return  # already reported as stopped
        diag = getattr(original, "diag", None)
        code = getattr(original, "pgcode", None) or getattr(original, "sqlstate", None)
        code = code or getattr(original, "sqlite_errorname", None)
        lane = _lane_of(context.connection) if context.connection is not None else None
        text = str(original).strip().splitlines()
        _send(
            "error",
            c=lane,
            n=_failed_statement() if context.statement else None,
            sql=context.statement,
            code=code,
            error=type(original).__name__,
            message=(getattr(diag, "message_primary", None) or (text[0] if text else "")),
            context=getattr(diag, "context", None),
            detail=getattr(diag, "message_detail", None),
            tx=_tx_of(context.connection) if context.connection is not None else None,
        )


def _watch_ends(dialect: Any) -> None:
    """Report when a COMMIT or ROLLBACK has returned, not only when it was asked for: the
    commit event fires before the driver's commit, and another lane's wait ends only after it.
    Dialect.do_commit / do_rollback are where SQLAlchemy hands them to the driver (the pool's
    rollback on return too); this dialect's own methods are wrapped once, reporting only."""
    if getattr(dialect, "_dbsandbox_ends", False):
        return
    dialect._dbsandbox_ends = True
    for name in ("do_commit", "do_rollback"):
        original = getattr(dialect, name)

        def ended(dbapi_connection: Any, _original: Any = original) -> None:
            _original(dbapi_connection)
            info = getattr(dbapi_connection, "info", None)
            if isinstance(info, dict):
                _send("ended", c=_lane(info))

        setattr(dialect, name, ended)


def _attach_orm() -> None:
    if "sqlalchemy.orm" in _attached:
        return
    _attached.add("sqlalchemy.orm")
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    # A flush is told with the first statement it sends (the "flush" of that statement's
    # report), not in reports of its own: one that sends nothing costs nothing.
    @event.listens_for(Session, "before_flush")
    def _before_flush(session: Any, flush_context: Any, instances: Any) -> None:
        # Where the program caused the flush is where its first statement comes from: that
        # statement's origin says it, without a walk out of the ORM's frames here.
        # The identity map's own set of modified objects: session.dirty would compare every
        # attribute of every object, on every flush.
        modified = getattr(session.identity_map, "_modified", None)
        auto = _autoflushed()
        _local.flush = {
            "auto": auto,
            "later": {"auto": auto, "again": True},  # what its later statements carry
            "new": len(session._new) if hasattr(session, "_new") else len(session.new),
            "dirty": len(modified) if modified is not None else len(session.dirty),
            "deleted": len(session._deleted) if hasattr(session, "_deleted") else 0,
        }

    @event.listens_for(Session, "after_flush_postexec")
    def _after_flush(session: Any, flush_context: Any) -> None:
        _local.flush = None

    # Objects added and never flushed leave no trace in the database: only the ORM knows
    # they were dropped (a forgotten commit()).
    @event.listens_for(Session, "pending_to_transient")
    def _dropped(session: Any, instance: Any) -> None:
        dropped = getattr(_local, "dropped", None)
        if dropped is None:
            dropped = _local.dropped = {}
        name = type(instance).__name__
        dropped[name] = dropped.get(name, 0) + 1

    @event.listens_for(Session, "after_transaction_end")
    def _ended(session: Any, transaction: Any) -> None:
        dropped = getattr(_local, "dropped", None)
        if transaction.parent is None and dropped:
            _local.dropped = None
            _send("discarded", objects=dropped, origin=_origin())
