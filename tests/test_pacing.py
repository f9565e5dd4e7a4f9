"""How `dbsandbox run` paces a script: the same steps give what a person typing them gets.

A script's next line is sent once every statement in flight has finished or waits on a lock
that a person would see still waiting. On SQLite a busy wait shorter than a human pause ends
on its own first, so the script waits it out; `\\background` says "go on while it waits".
The SQLite cases here run with two busy loops beside them: the outcome must not depend on
how fast the machine is.
"""

from __future__ import annotations

import multiprocessing
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sandbox.cli import main
from sandbox.conductor import Execution
from sandbox.outcome import Status
from sandbox.runner import RunResult
from sandbox.timeline import EventKind
from tests.conftest import run_script

SETUP = """
CREATE TABLE test (id INTEGER PRIMARY KEY, value INTEGER);
INSERT INTO test VALUES (1, 10), (2, 20);
"""

# Hermitage's G0 steps on SQLite: T2's write comes while T1 holds the write lock, then T1
# commits. A person at T2's terminal sees SQLITE_BUSY when the busy timeout runs out.
WRITE_BEHIND_WRITE = (
    SETUP
    + """
\\session T1
BEGIN;
UPDATE test SET value = 11 WHERE id = 1;
\\session T2
BEGIN;
{background}UPDATE test SET value = 12 WHERE id = 1 /* T2 writes */;
\\session T1
COMMIT;
\\session T2
COMMIT;
SELECT id, value FROM test ORDER BY id /* final */;
"""
)


def _spin(stop_at: float) -> None:
    while time.time() < stop_at:
        pass


@pytest.fixture
def busy_machine() -> Iterator[None]:
    """Two processes that keep both cores busy while the test runs (bounded: 120 s)."""
    # Spawned, not forked: a fork would inherit this process's signal handlers and threads.
    context = multiprocessing.get_context("spawn")
    stop_at = time.time() + 120
    spinners = [context.Process(target=_spin, args=(stop_at,)) for _ in range(2)]
    for spinner in spinners:
        spinner.start()
    try:
        yield
    finally:
        for spinner in spinners:
            spinner.kill()
            spinner.join()


def marked(result: RunResult, marker: str) -> Execution:
    """The execution on the script line that carries `marker` (a comment)."""
    found = [e for e in result.executions if marker in _line_of(result, e)]
    assert len(found) == 1
    return found[0]


_SCRIPTS: dict[int, str] = {}


def _line_of(result: RunResult, execution: Execution) -> str:
    lines = _SCRIPTS[id(result)].splitlines()
    return lines[execution.statement.line - 1]


def run(engine: str, script: str, **options: int) -> RunResult:
    result = run_script(engine, script, **options)  # type: ignore[arg-type]
    _SCRIPTS[id(result)] = script
    return result


@pytest.mark.parametrize("busy_timeout_ms", [5, 20, 200])
@pytest.mark.parametrize("load", ["idle", "busy"])
def test_sqlite_write_behind_a_write_is_refused_at_any_busy_timeout_and_load(
    busy_timeout_ms: int, load: str, request: pytest.FixtureRequest
) -> None:
    if load == "busy":
        request.getfixturevalue("busy_machine")
    result = run(
        "sqlite", WRITE_BEHIND_WRITE.format(background=""), busy_timeout_ms=busy_timeout_ms
    )
    t2 = marked(result, "T2 writes")
    assert t2.outcome is not None and t2.outcome.error is not None
    assert t2.outcome.error.code == "SQLITE_BUSY"
    assert t2.outcome.elapsed_ms >= busy_timeout_ms * 0.9  # it waited the busy timeout out
    # T2's answer came before T1's COMMIT was sent, as a person typing would see it.
    events = result.timeline
    answered = next(i for i, e in enumerate(events) if e.statement == t2.index and e.outcome)
    commit = next(
        i
        for i, e in enumerate(events)
        if e.kind is EventKind.STATEMENT and e.session == "T1" and "COMMIT" in e.message
    )
    assert answered < commit
    final = marked(result, "final")
    assert final.outcome is not None and final.outcome.rows == [(1, 11), (2, 20)]


@pytest.mark.parametrize("load", ["idle", "busy"])
def test_background_lets_a_later_commit_release_a_sqlite_wait(
    load: str, request: pytest.FixtureRequest
) -> None:
    if load == "busy":
        request.getfixturevalue("busy_machine")
    # A busy timeout long enough that T1's COMMIT, sent once T2 is seen waiting, comes in time.
    result = run(
        "sqlite", WRITE_BEHIND_WRITE.format(background="\\background\n"), busy_timeout_ms=3000
    )
    t2 = marked(result, "T2 writes")
    assert t2.waited and t2.blocked_by == ["T1"]
    assert t2.outcome is not None and t2.outcome.status is Status.OK
    final = marked(result, "final")
    assert final.outcome is not None and final.outcome.rows == [(1, 12), (2, 20)]


def test_a_long_sqlite_busy_timeout_is_paced_like_a_postgres_wait() -> None:
    # 1.5 s is longer than a person's pause: the script goes on while T2 waits, as in the app.
    result = run("sqlite", WRITE_BEHIND_WRITE.format(background=""), busy_timeout_ms=1500)
    t2 = marked(result, "T2 writes")
    assert t2.waited and t2.outcome is not None and t2.outcome.status is Status.OK


def test_background_must_precede_a_statement(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "s.sql"
    script.write_text("SELECT 1;\n\\background\n")
    assert main(["run", str(script)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "\\background must be followed by a SQL statement" in err[0]


def test_postgres_safe_snapshot_wait_is_a_wait_on_the_sessions_named(postgres_url: str) -> None:
    # PostgreSQL's read-only-anomaly-3: a DEFERRABLE read-only transaction waits until the
    # serializable transactions that could make it see an anomaly have ended.
    script = """
CREATE TABLE bank (id int PRIMARY KEY, balance int);
INSERT INTO bank VALUES (1, 0), (2, 0);
\\session A
BEGIN ISOLATION LEVEL SERIALIZABLE;
SELECT balance FROM bank WHERE id = 1;
UPDATE bank SET balance = 20 WHERE id = 2;
\\session B
BEGIN ISOLATION LEVEL SERIALIZABLE READ ONLY DEFERRABLE;
SELECT id, balance FROM bank ORDER BY id /* B reads */;
\\session A
COMMIT;
\\session B
COMMIT;
"""
    result = run("postgres", script)
    reads = marked(result, "B reads")
    assert reads.waited and reads.blocked_by == ["A"]
    assert reads.outcome is not None and reads.outcome.status is Status.OK
    waits = [e for e in result.timeline if e.kind is EventKind.LOCK_WAIT]
    assert any("safe snapshot" in e.message for e in waits)


def test_postgres_lock_wait_says_which_lock(postgres_url: str) -> None:
    script = """
CREATE TABLE acct (id int PRIMARY KEY, v int);
INSERT INTO acct VALUES (1, 0);
\\session A
BEGIN;
UPDATE acct SET v = 1 WHERE id = 1;
\\session B
UPDATE acct SET v = 2 WHERE id = 1 /* B waits */;
\\session A
LOCK TABLE acct IN SHARE MODE;
COMMIT;
\\session C
BEGIN;
LOCK TABLE acct IN ACCESS EXCLUSIVE MODE;
\\session B
SELECT count(*) FROM acct /* B reads */;
\\session C
ROLLBACK;
"""
    result = run("postgres", script)
    row_wait = marked(result, "B waits")
    assert row_wait.wait_detail is not None
    assert "row lock" in row_wait.wait_detail and "row (0,1) of acct" in row_wait.wait_detail
    table_wait = marked(result, "B reads")
    assert table_wait.wait_detail == "AccessShareLock on table acct"
    assert table_wait.blocked_by == ["C"]
