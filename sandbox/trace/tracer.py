"""Run unmodified SQLAlchemy programs against a sandbox and record what they sent.

Each program runs as a child process with:
- `DATABASE_URL` naming the sandbox (the way the course's programs find their database);
- `PYTHONPATH` led by `inject/`, whose sitecustomize attaches SQLAlchemy listeners;
- `DBSANDBOX_TRACE_SOCKET`, the Unix socket the listeners report to.

A server thread reads every process's reports as they come and hands them to the Recorder;
the programs' output is read line by line onto the timeline too. Programs run one after
another, or all at once with `together`.
"""

from __future__ import annotations

import compileall
import contextlib
import functools
import json
import marshal
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.conductor import Execution
from sandbox.errors import UserError
from sandbox.guard.policy import Policy
from sandbox.runner import RunResult
from sandbox.targets import Target, Waiter
from sandbox.timeline import Timeline
from sandbox.trace.recorder import Program, Recorder, collector_spared, yield_cpu

INJECT_DIR = Path(__file__).resolve().parent / "inject"
ENV_SOCKET = "DBSANDBOX_TRACE_SOCKET"
ENV_GUARD = "DBSANDBOX_TRACE_GUARD"
ENV_URL = "DBSANDBOX_TRACE_URL"
_PYTHONS = ("python", "python3", f"python3.{sys.version_info.minor}")
_DRAIN_S = 5.0  # how long a finished program's last reports may take to arrive
_STOP_LOOK_S = 0.1  # how often a running program looks whether `stop` was asked for


@dataclass
class TraceResult:
    """A trace: the run's report (as `dbsandbox run` gives) and the programs' exits."""

    run: RunResult
    programs: list[Program] = field(default_factory=list)

    @property
    def failed(self) -> list[Program]:
        return [p for p in self.programs if p.exit_code not in (0, None)]


def split_commands(words: list[str]) -> list[list[str]]:
    """`python a.py -- python b.py x` -> [[python, a.py], [python, b.py, x]]."""
    commands: list[list[str]] = [[]]
    for word in words:
        if word == "--":
            commands.append([])
        else:
            commands[-1].append(word)
    commands = [c for c in commands if c]
    if not commands:
        raise UserError("nothing to trace: give a program after --, e.g. -- python app.py")
    return [resolve(c) for c in commands]


def program_command(text: str) -> list[str]:
    """One program as `play --trace` and the app take it: `app.py [ARGS]` (run with the
    interpreter dbsandbox runs on), or a whole command such as `python -m pkg`."""
    try:
        words = shlex.split(text)
    except ValueError as exc:
        raise UserError(f"cannot read {text!r} as a program: {exc}") from None
    if not words:
        raise UserError("nothing to trace: give a Python program, e.g. app.py")
    first = os.path.expanduser(words[0])
    if first.endswith(".py") or Path(first).is_file():
        words = ["python", first, *words[1:]]
    return resolve(words)


def resolve(command: list[str]) -> list[str]:
    """`python` is the interpreter dbsandbox runs on (it has SQLAlchemy and the drivers);
    another program is taken from PATH, and must exist."""
    first = command[0]
    if first in _PYTHONS:
        command = [sys.executable, *command[1:]]
    elif shutil.which(first) is None:
        raise UserError(f"cannot run {first}: no such program")
    for word in command[1:2]:
        if word.endswith(".py") and not Path(word).is_file():
            raise UserError(f"{word}: no such file")
    return command


# A process silent this long is poked: its tracer writes what it has pending (a statement
# blocked on a lock, reports made before the program went on to other work). The processes
# never wake on a timer themselves (see inject/_dbsandbox_trace.py); this is how their
# reports still arrive well inside the recorder's reorder window (recorder.REORDER_S).
# Longer than a batch (_BATCH_S, 20 ms): a program busy sending is never poked.
POKE_AFTER_S = 0.03
_POKE = b'{"t":"poke"}\n'


_MAX_BATCH = 64 << 20  # bytes: a longer frame is not the tracer's


def _batches(stream: Any) -> Iterator[list[Any]]:
    """The batches a traced process writes: 4 bytes of length, then a list of reports in
    marshal's format. The socket is this user's own (a 0700 folder), written by the tracer
    in the user's own programs; a frame that does not read as a list ends the connection."""
    while True:
        head = stream.read(4)
        if len(head) < 4:
            return
        size = int.from_bytes(head, "big")
        if size > _MAX_BATCH:
            return
        body = stream.read(size)
        if len(body) < size:
            return
        try:
            reports = marshal.loads(body)
        except (EOFError, ValueError, TypeError):
            return
        if not isinstance(reports, list):
            return
        yield reports


# A statement's report, as the tracer writes it (a list: see inject/_dbsandbox_trace.py,
# _Channel), by position; then its SQL and parameter names (the first time its text is
# sent), its end (rowcount, transaction state, time; once it ended), whether it was taken
# into a batch (the tracer's own), and, for a stopped statement, why.
STATEMENT_FIELDS = ("t", "at", "thread", "c", "n", "sid", "params", "many", "origin", "flush", "tx")
_SQL, _NAMES, _END, _WHY = 11, 12, 13, 15


def statement_report(report: list[Any]) -> dict[str, Any] | None:
    """A statement's report as a message (None if it is not one the tracer writes)."""
    if len(report) < _WHY:
        return None
    message = dict(zip(STATEMENT_FIELDS, report, strict=False))
    if report[_SQL] is not None:
        message["sql"], message["names"] = report[_SQL], report[_NAMES]
    end = report[_END]
    if isinstance(end, (list, tuple)) and len(end) == 3 and message["t"] == "stmt":
        message["t"] = "ran"
        message["rowcount"], message["tx_after"], message["ended"] = end
    if len(report) > _WHY:
        message["why"] = report[_WHY]
    return message


class _Link:
    """One traced process's socket, as the server sees it."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.heard = time.monotonic()  # when it last wrote
        self.poked = False  # poked since: it writes at once when it next reports
        self.open = True
        self._sending = threading.Lock()

    def send(self, data: bytes) -> None:
        with self._sending, contextlib.suppress(OSError):
            self.conn.sendall(data)


class _Server:
    """The Unix socket the traced processes report to: one reader thread per process, and
    one thread that pokes the silent ones."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        self.directory = tempfile.mkdtemp(prefix="dbsandbox-trace-")
        os.chmod(self.directory, 0o700)  # only this user's processes may report
        self.path = os.path.join(self.directory, "s")
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.listener.bind(self.path)
        self.listener.listen(64)
        self.readers: dict[int, list[threading.Thread]] = {}
        self.links: list[_Link] = []
        self.pokes = 0  # how many times a silent process was poked (benchmarks show it)
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._accepting = threading.Thread(target=self._accept, name="dbsandbox-trace-accept")
        self._accepting.daemon = True
        self._accepting.start()
        self._poking = threading.Thread(target=self._poke, name="dbsandbox-trace-poke")
        self._poking.daemon = True
        self._poking.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return  # closed
            link = _Link(conn)
            with self._lock:
                self.links.append(link)
            reader = threading.Thread(target=self._read, args=(link,), name="dbsandbox-trace")
            reader.daemon = True
            reader.start()

    def _read(self, link: _Link) -> None:
        """Read one process's batches of reports (inject/_dbsandbox_trace.py: _frame)."""
        yield_cpu()
        program: Program | None = None
        try:
            with link.conn, link.conn.makefile("rb") as stream:
                for reports in _batches(stream):
                    link.heard = time.monotonic()
                    link.poked = False
                    for message in reports:
                        if type(message) is list:
                            message = statement_report(message)
                        if not isinstance(message, dict):
                            continue
                        if program is None:
                            if message.get("t") != "hello":
                                continue
                            program = self._hello(message)
                            continue
                        reply = self.recorder.submit(program, message)
                        if reply is not None:
                            link.send((json.dumps(reply) + "\n").encode())
        except OSError:
            # The process ended with a poke unread: the socket is reset, but only after
            # everything it wrote before has been read.
            pass
        finally:
            link.open = False
            with self._lock:
                self.links.remove(link)

    def _hello(self, message: dict[str, Any]) -> Program:
        pid = int(message.get("pid") or 0)
        program = self.recorder.program(pid, [str(a) for a in message.get("argv") or []])
        with self._lock:
            self.readers.setdefault(pid, []).append(threading.current_thread())
        return program

    def _poke(self) -> None:
        while not self._closed.wait(POKE_AFTER_S / 2):
            now = time.monotonic()
            with self._lock:
                silent = [
                    link
                    for link in self.links
                    if link.open and not link.poked and now - link.heard >= POKE_AFTER_S
                ]
            for link in silent:
                link.poked = True
                self.pokes += 1
                link.send(_POKE)

    def drain(self, pid: int) -> None:
        """Wait until every report of a finished process has been read."""
        with self._lock:
            readers = list(self.readers.get(pid, []))
        for reader in readers:
            reader.join(timeout=_DRAIN_S)

    def close(self) -> None:
        self._closed.set()
        # Closing a socket does not wake a thread blocked in its accept() (Linux): shut it
        # down first, so the accepting thread ends. Left blocked, it kept this server, the
        # recorder and the whole recording alive after the trace: every trace of an app
        # session or a benchmark left ~40 MB behind, and each garbage collection got slower.
        with contextlib.suppress(OSError):
            self.listener.shutdown(socket.SHUT_RDWR)
        with contextlib.suppress(OSError):
            self.listener.close()
        self._accepting.join(timeout=_DRAIN_S)
        self._poking.join(timeout=_DRAIN_S)
        shutil.rmtree(self.directory, ignore_errors=True)


@functools.cache
def _precompiled() -> None:
    """Byte-compile the tracer every traced process loads, once, where its folder can be
    written. A Python run with PYTHONDONTWRITEBYTECODE (or a first run from a source
    checkout) otherwise compiles it anew in every traced process: 15 ms of a course script's
    300. Each Python version reads only its own compiled files, so this helps programs run by
    the Python dbsandbox runs on; others compile as before."""
    with contextlib.suppress(OSError):
        compileall.compile_dir(INJECT_DIR, quiet=2, maxlevels=0)


def program_env(target: Target, socket_path: str, guard: str) -> dict[str, str]:
    _precompiled()
    env = dict(os.environ)
    env["DATABASE_URL"] = env[ENV_URL] = target.program_url()
    env[ENV_SOCKET] = socket_path
    env[ENV_GUARD] = guard
    env["PYTHONUNBUFFERED"] = "1"  # its lines reach the timeline as it prints them
    rest = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(INJECT_DIR) + (os.pathsep + rest if rest else "")
    return env


def trace(
    commands: list[list[str]],
    target: Target,
    *,
    guard: str = "warn",
    together: bool = False,
    timeout_s: float = 120.0,
    timeline: Timeline | None = None,
    policy: Policy | None = None,
    cwd: Path | None = None,
    adopt: Callable[[Callable[[int], Execution]], Execution] | None = None,
    stop: threading.Event | None = None,
    others: Callable[[], list[Any]] | None = None,
    share: Callable[[Callable[[], Sequence[Waiter]]], Callable[[], None]] | None = None,
) -> TraceResult:
    """Run `commands` against `target` (one after another, or together) and record them.

    `timeline` and `adopt` put the trace into a larger run (the app's or a scenario's
    conductor: its timeline and `Conductor.adopt`); by default it is a run of its own.
    `stop`, once set, kills the programs still running and starts no more (the app closing
    its sandbox under a trace must leave no process behind). `others` gives the larger run's
    sessions, so a lane waiting for one of their locks names it (see Recorder); `share`
    (`Conductor.watch_with`) is the other way round: a session waiting for a lane's lock.
    """
    with collector_spared():
        return _trace(
            commands,
            target,
            guard=guard,
            together=together,
            timeout_s=timeout_s,
            timeline=timeline,
            policy=policy,
            cwd=cwd,
            adopt=adopt,
            stop=stop,
            others=others,
            share=share,
        )


def _trace(
    commands: list[list[str]],
    target: Target,
    *,
    guard: str,
    together: bool,
    timeout_s: float,
    timeline: Timeline | None,
    policy: Policy | None,
    cwd: Path | None,
    adopt: Callable[[Callable[[int], Execution]], Execution] | None,
    stop: threading.Event | None,
    others: Callable[[], list[Any]] | None,
    share: Callable[[Callable[[], Sequence[Waiter]]], Callable[[], None]] | None,
) -> TraceResult:
    timeline = timeline or Timeline()
    recorder = Recorder(target, timeline, guard, policy, adopt, others)
    # The larger run's own lock watcher names the lanes too, when a session waits for them.
    forget = share(recorder.waiters) if share is not None else None
    server = _Server(recorder)
    env = program_env(target, server.path, guard)
    started: list[tuple[subprocess.Popen[str], Program, threading.Thread]] = []
    try:
        if together:
            started = [_start(c, env, recorder, cwd) for c in commands]
            for process in started:
                _finish(process, server, recorder, timeout_s, stop)
        else:
            for command in commands:
                if stop is not None and stop.is_set():
                    break
                process = _start(command, env, recorder, cwd)
                started.append(process)
                _finish(process, server, recorder, timeout_s, stop)
    finally:
        for popen, _, _ in started:
            if popen.poll() is None:
                popen.kill()
                popen.wait()
        if forget is not None:
            forget()
        recorder.close()
        server.close()
    if recorder.failures:
        raise recorder.failures[0]
    stopped = recorder.stopped[0] if recorder.stopped else None
    result = RunResult(
        engine=target.engine,
        target=target.description,
        executions=list(recorder.executions),
        timeline=timeline.events,
        notices=list(target.notices),
        stopped=stopped,
    )
    return TraceResult(result, [p for _, p, _ in started])


def _start(
    command: list[str], env: dict[str, str], recorder: Recorder, cwd: Path | None
) -> tuple[subprocess.Popen[str], Program, threading.Thread]:
    try:
        popen = subprocess.Popen(
            command,
            env=env,
            cwd=cwd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except OSError as exc:
        raise UserError(f"cannot run {command[0]}: {exc.strerror or exc}") from None
    shown = command[1:] if command[0] == sys.executable and len(command) > 1 else command
    program = recorder.program(popen.pid, shown)
    program.argv = list(command)

    def read() -> None:
        assert popen.stdout is not None
        for line in popen.stdout:
            recorder.output(program, line.rstrip("\n"))

    reader = threading.Thread(target=read, name="dbsandbox-trace-output", daemon=True)
    reader.start()
    return popen, program, reader


def _finish(
    process: tuple[subprocess.Popen[str], Program, threading.Thread],
    server: _Server,
    recorder: Recorder,
    timeout_s: float,
    stop: threading.Event | None = None,
) -> None:
    popen, program, reader = process
    code = _wait(popen, timeout_s, stop)
    if code is None:
        popen.kill()
        popen.wait()
        if stop is not None and stop.is_set():
            recorder.output(program, "dbsandbox: stopped: its sandbox is being closed")
        else:
            recorder.output(program, f"dbsandbox: stopped after {timeout_s:g} s (--timeout)")
        code = popen.returncode
    reader.join(timeout=_DRAIN_S)
    server.drain(popen.pid)
    recorder.exited(program, code)


def _wait(
    popen: subprocess.Popen[str], timeout_s: float, stop: threading.Event | None
) -> int | None:
    """The program's exit code; None when it ran past `timeout_s` or `stop` was set."""
    if stop is None:
        try:
            return popen.wait(timeout=timeout_s)
        except subprocess.TimeoutExpired:
            return None
    deadline = time.monotonic() + timeout_s
    while not stop.is_set():
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        try:
            return popen.wait(timeout=min(_STOP_LOOK_S, left))
        except subprocess.TimeoutExpired:
            continue
    return None
