"""Two and three sessions interleaved: outcomes must match what the engines really do.

Expectations here were written from the engines' documented behaviour and checked against
the engines themselves; the conductor adds nothing but the order of the script.
"""

from __future__ import annotations

import pytest

from sandbox.conductor import Execution
from sandbox.outcome import Outcome, Status, TxState
from sandbox.runner import RunResult
from sandbox.timeline import EventKind
from tests.conftest import run_script as run

SETUP = """
CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
INSERT INTO acct VALUES (1, 100), (2, 100);
"""


def at(result: RunResult, marker: str) -> Execution:
    """The execution on the script line that carries `marker` (a unique comment or literal)."""
    lines = [n for n, text in enumerate(SCRIPTS[id(result)].splitlines(), 1) if marker in text]
    assert len(lines) == 1, f"{marker!r} is on {len(lines)} lines"
    found = [e for e in result.executions if e.statement.line == lines[0]]
    assert len(found) == 1
    return found[0]


def outcome(result: RunResult, marker: str) -> Outcome:
    execution = at(result, marker)
    assert execution.outcome is not None
    return execution.outcome


SCRIPTS: dict[int, str] = {}


def run_script(engine: str, script: str, **options: float) -> RunResult:
    result = run(engine, script, **options)  # type: ignore[arg-type]
    SCRIPTS[id(result)] = script
    return result


def lost_update_script(begin: str, second_update: str) -> str:
    """Both sessions read 100, then each writes back what it computed from its read."""
    return (
        SETUP
        + f"""
\\session A
{begin};
SELECT balance FROM acct WHERE id = 1 /* A reads */;
\\session B
{begin};
SELECT balance FROM acct WHERE id = 1 /* B reads */;
\\session A
UPDATE acct SET balance = 110 WHERE id = 1 /* A writes */;
\\session B
{second_update} /* B writes */;
\\session A
COMMIT /* A commits */;
\\session B
COMMIT /* B commits */;
SELECT balance FROM acct WHERE id = 1 /* final */;
"""
    )


def test_postgres_read_committed_loses_an_update(postgres_url: str) -> None:
    result = run_script(
        "postgres", lost_update_script("BEGIN", "UPDATE acct SET balance = 120 WHERE id = 1")
    )
    assert outcome(result, "A reads").rows == [(100,)]
    assert outcome(result, "B reads").rows == [(100,)]
    b_writes = at(result, "B writes")
    assert b_writes.waited and b_writes.blocked_by == ["A"]
    assert b_writes.outcome is not None and b_writes.outcome.status is Status.OK
    assert outcome(result, "B commits").tag == "COMMIT"
    # A's +10 is lost: B overwrote it with a value computed from a stale read.
    assert outcome(result, "final").rows == [(120,)]
    # The order observed: B waits before A's COMMIT is sent, and B's release and outcome are
    # recorded before the next line (B's COMMIT) is sent. Whether A's COMMIT reply or B's
    # released UPDATE reaches its client first is a race the timeline records as it happened.
    events = result.timeline
    a_commit, b_commit = at(result, "A commits").index, at(result, "B commits").index

    def position(session: str, kind: EventKind, statement: int | None = None) -> int:
        return next(
            i
            for i, e in enumerate(events)
            if e.session == session
            and e.kind is kind
            and (statement is None or e.statement == statement)
        )

    wait = position("B", EventKind.LOCK_WAIT)
    commit_sent = position("A", EventKind.STATEMENT, a_commit)
    released = position("B", EventKind.LOCK_RELEASED)
    b_outcome = position("B", EventKind.OUTCOME, b_writes.index)
    next_sent = position("B", EventKind.STATEMENT, b_commit)
    assert wait < commit_sent < released < b_outcome < next_sent


def test_postgres_read_committed_atomic_update_keeps_both(postgres_url: str) -> None:
    result = run_script(
        "postgres",
        lost_update_script("BEGIN", "UPDATE acct SET balance = balance + 20 WHERE id = 1"),
    )
    assert at(result, "B writes").waited
    # After the wait PostgreSQL re-reads the committed row: 110 + 20.
    assert outcome(result, "final").rows == [(130,)]


def test_postgres_repeatable_read_refuses_the_lost_update(postgres_url: str) -> None:
    result = run_script(
        "postgres",
        lost_update_script(
            "BEGIN ISOLATION LEVEL REPEATABLE READ",
            "UPDATE acct SET balance = 120 WHERE id = 1",
        ),
    )
    b_writes = at(result, "B writes")
    assert b_writes.waited and b_writes.blocked_by == ["A"]
    failed = b_writes.outcome
    assert failed is not None and failed.status is Status.ERROR
    assert failed.error is not None and failed.error.code == "40001"
    assert failed.error.message == "could not serialize access due to concurrent update"
    assert failed.tx_after is TxState.FAILED
    b_commit = outcome(result, "B commits")
    assert b_commit.tag == "ROLLBACK" and b_commit.note
    assert outcome(result, "final").rows == [(110,)]


def test_postgres_select_for_update_serialises_the_read(postgres_url: str) -> None:
    result = run_script(
        "postgres",
        SETUP
        + """
\\session A
BEGIN;
SELECT balance FROM acct WHERE id = 1 FOR UPDATE /* A locks */;
\\session B
BEGIN;
SELECT balance FROM acct WHERE id = 1 FOR UPDATE /* B locks */;
\\session A
UPDATE acct SET balance = 110 WHERE id = 1;
COMMIT;
\\session B
UPDATE acct SET balance = 130 WHERE id = 1;
COMMIT;
""",
    )
    b_locks = at(result, "B locks")
    assert b_locks.waited and b_locks.blocked_by == ["A"]
    # Released by A's COMMIT, B reads the committed 110, not the stale 100.
    assert b_locks.outcome is not None and b_locks.outcome.rows == [(110,)]


def test_sqlite_deferred_transactions_cannot_lose_the_update(tmp_path: object) -> None:
    """WAL: a reader that tries to write while another holds the write lock fails at once."""
    result = run_script(
        "sqlite", lost_update_script("BEGIN", "UPDATE acct SET balance = 120 WHERE id = 1")
    )
    assert outcome(result, "A writes").status is Status.OK
    b_writes = at(result, "B writes")
    # B holds a read snapshot, so SQLite does not even call the busy handler: no wait.
    assert not b_writes.waited
    assert b_writes.outcome is not None and b_writes.outcome.status is Status.ERROR
    assert b_writes.outcome.error is not None
    assert b_writes.outcome.error.code == "SQLITE_BUSY"
    # A SQLITE_BUSY undoes the statement, not the transaction.
    assert b_writes.outcome.tx_after is TxState.IN_TRANSACTION
    assert outcome(result, "B commits").status is Status.OK
    assert outcome(result, "final").rows == [(110,)]


def test_sqlite_stale_snapshot_write_fails_with_busy_snapshot() -> None:
    result = run_script(
        "sqlite",
        SETUP
        + """
\\session A
BEGIN;
SELECT balance FROM acct WHERE id = 1 /* A reads */;
\\session B
UPDATE acct SET balance = 150 WHERE id = 1 /* B autocommits */;
\\session A
UPDATE acct SET balance = 110 WHERE id = 1 /* A writes */;
COMMIT;
SELECT balance FROM acct WHERE id = 1 /* final */;
""",
    )
    assert outcome(result, "B autocommits").status is Status.OK
    stale = outcome(result, "A writes")
    assert stale.error is not None and stale.error.code == "SQLITE_BUSY_SNAPSHOT"
    assert outcome(result, "final").rows == [(150,)]


def test_sqlite_begin_immediate_waits_then_proceeds() -> None:
    """BEGIN IMMEDIATE takes the write lock up front: the second one waits for the first."""
    result = run_script(
        "sqlite",
        SETUP
        + """
\\session A
BEGIN IMMEDIATE;
SELECT balance FROM acct WHERE id = 1 /* A reads */;
\\session B
BEGIN IMMEDIATE /* B begins */;
\\session A
UPDATE acct SET balance = 110 WHERE id = 1;
COMMIT;
\\session B
SELECT balance FROM acct WHERE id = 1 /* B reads */;
UPDATE acct SET balance = balance + 20 WHERE id = 1;
COMMIT;
SELECT balance FROM acct WHERE id = 1 /* final */;
""",
        busy_timeout_ms=5000,
    )
    b_begins = at(result, "B begins")
    assert b_begins.waited and b_begins.blocked_by == ["A"]
    assert b_begins.outcome is not None and b_begins.outcome.status is Status.OK
    assert outcome(result, "B reads").rows == [(110,)]
    assert outcome(result, "final").rows == [(130,)]


def test_sqlite_writer_gives_up_after_the_busy_timeout() -> None:
    result = run_script(
        "sqlite",
        SETUP
        + """
\\session A
BEGIN;
UPDATE acct SET balance = 0 WHERE id = 2;
\\session B
UPDATE acct SET balance = 1 WHERE id = 1 /* B writes */;
SELECT 'after' /* B goes on */;
""",
        busy_timeout_ms=300,
        wait_timeout_s=10.0,
    )
    b_writes = at(result, "B writes")
    assert b_writes.waited and b_writes.blocked_by == ["A"]
    assert b_writes.outcome is not None and b_writes.outcome.status is Status.ERROR
    assert b_writes.outcome.error is not None
    assert b_writes.outcome.error.code == "SQLITE_BUSY"
    assert b_writes.outcome.elapsed_ms >= 250  # it waited for its busy timeout, not ours
    assert outcome(result, "B goes on").rows == [("after",)]


def test_postgres_deadlock_is_broken_by_the_server(postgres_url: str) -> None:
    result = run_script(
        "postgres",
        SETUP
        + """
\\session A
BEGIN;
UPDATE acct SET balance = balance - 10 WHERE id = 1 /* A first */;
\\session B
BEGIN;
UPDATE acct SET balance = balance - 10 WHERE id = 2 /* B first */;
\\session A
UPDATE acct SET balance = balance + 10 WHERE id = 2 /* A second */;
\\session B
UPDATE acct SET balance = balance + 10 WHERE id = 1 /* B second */;
\\session A
COMMIT /* A ends */;
\\session B
COMMIT /* B ends */;
""",
    )
    a_second, b_second = at(result, "A second"), at(result, "B second")
    assert a_second.waited and a_second.blocked_by == ["B"]
    assert b_second.waited and b_second.blocked_by == ["A"]
    codes = sorted(
        (e.outcome.error.code or "?" if e.outcome and e.outcome.error else "ok")
        for e in (a_second, b_second)
    )
    assert codes == ["40P01", "ok"]
    victim = "A" if a_second.outcome and a_second.outcome.error else "B"
    ends = {"A": outcome(result, "A ends"), "B": outcome(result, "B ends")}
    assert ends[victim].tag == "ROLLBACK"
    assert ends["B" if victim == "A" else "A"].tag == "COMMIT"


def test_a_wait_left_at_the_end_is_cancelled_and_reported(engine: str) -> None:
    result = run_script(
        engine,
        SETUP
        + """
\\session A
BEGIN;
UPDATE acct SET balance = 0 WHERE id = 1;
\\session B
BEGIN;
UPDATE acct SET balance = 1 WHERE id = 1 /* B waits */;
""",
        busy_timeout_ms=1500,
        wait_timeout_s=0.3,
    )
    waiting = at(result, "B waits")
    assert waiting.waited and waiting.blocked_by == ["A"]
    assert waiting.outcome is not None and waiting.outcome.error is not None
    assert any(e.kind is EventKind.CANCELLED and e.session == "B" for e in result.timeline)
    if engine == "postgres":
        assert waiting.outcome.status is Status.CANCELLED
        assert waiting.outcome.error.code == "57014"
    else:
        # sqlite3_interrupt() cannot wake the busy handler: the wait ends at the busy timeout,
        # and the report says so truthfully instead of claiming a cancel.
        assert waiting.outcome.status is Status.ERROR
        assert waiting.outcome.error.code == "SQLITE_BUSY"
        assert waiting.outcome.elapsed_ms >= 1400


@pytest.mark.parametrize("timeout", ["statement_timeout", "lock_timeout"])
def test_a_wait_too_short_to_watch_is_read_from_the_servers_error(
    postgres_url: str, timeout: str
) -> None:
    # A 1 ms timeout ends the wait long before the watcher's first look (10 ms): the report
    # must still say B waited for A, from the error's CONTEXT ("while updating tuple (0,1) in
    # relation acct"), not depend on how fast this machine polls.
    result = run_script(
        "postgres",
        SETUP
        + f"""
\\session A
BEGIN;
UPDATE acct SET balance = 0 WHERE id = 1;
\\session B
BEGIN;
SET {timeout} = '1ms';
UPDATE acct SET balance = 1 WHERE id = 1 /* B waits */;
ROLLBACK;
\\session A
ROLLBACK;
""",
    )
    waiting = at(result, "B waits")
    assert waiting.outcome is not None and waiting.outcome.error is not None
    assert waiting.outcome.error.code == ("57014" if timeout == "statement_timeout" else "55P03")
    assert "tuple" in (waiting.outcome.error.context or "")
    assert waiting.waited and waiting.blocked_by == ["A"]
    waits = [e for e in result.timeline if e.kind is EventKind.LOCK_WAIT and e.session == "B"]
    assert len(waits) == 1 and waits[0].data["blocked_by"] == ["A"]


def test_next_statement_of_a_waiting_session_waits_for_it_first(postgres_url: str) -> None:
    result = run_script(
        "postgres",
        SETUP
        + """
\\session A
BEGIN;
UPDATE acct SET balance = 0 WHERE id = 1;
\\session B
UPDATE acct SET balance = 1 WHERE id = 1 /* B waits */;
SELECT balance FROM acct WHERE id = 1 /* B next */;
\\session A
COMMIT;
""",
        wait_timeout_s=0.5,
    )
    waiting = at(result, "B waits")
    assert waiting.outcome is not None and waiting.outcome.status is Status.CANCELLED
    assert waiting.outcome.error is not None and waiting.outcome.error.code == "57014"
    # B's next statement ran only after the wait ended: A had not committed yet.
    assert outcome(result, "B next").rows == [(100,)]
    order = [e.index for e in result.executions]
    assert order == sorted(order)


def test_three_sessions_queue_on_one_row(postgres_url: str) -> None:
    result = run_script(
        "postgres",
        SETUP
        + """
\\session A
BEGIN;
UPDATE acct SET balance = balance + 1 WHERE id = 1 /* A */;
\\session B
UPDATE acct SET balance = balance + 10 WHERE id = 1 /* B */;
\\session C
UPDATE acct SET balance = balance + 100 WHERE id = 1 /* C */;
\\session A
COMMIT;
SELECT balance FROM acct WHERE id = 1 /* final */;
""",
    )
    b, c = at(result, "/* B */"), at(result, "/* C */")
    # B first waits for A; when A commits, C (queued on the same row) may get in first.
    assert b.waited and b.blocked_by[0] == "A" and set(b.blocked_by) <= {"A", "C"}
    assert c.waited and c.blocked_by
    assert all(e.outcome and e.outcome.status is Status.OK for e in (b, c))
    assert outcome(result, "final").rows == [(211,)]


def test_postgres_write_skew_under_serializable(postgres_url: str) -> None:
    result = run_script(
        "postgres",
        """
        CREATE TABLE doctors (name TEXT PRIMARY KEY, on_call BOOLEAN NOT NULL);
        INSERT INTO doctors VALUES ('alice', true), ('bob', true);
        \\session A
        BEGIN ISOLATION LEVEL SERIALIZABLE;
        SELECT count(*) FROM doctors WHERE on_call /* A counts */;
        \\session B
        BEGIN ISOLATION LEVEL SERIALIZABLE;
        SELECT count(*) FROM doctors WHERE on_call /* B counts */;
        \\session A
        UPDATE doctors SET on_call = false WHERE name = 'alice';
        \\session B
        UPDATE doctors SET on_call = false WHERE name = 'bob';
        \\session A
        COMMIT /* A ends */;
        \\session B
        COMMIT /* B ends */;
        SELECT count(*) FROM doctors WHERE on_call /* final */;
        """,
    )
    assert outcome(result, "A counts").rows == [(2,)]
    assert outcome(result, "A ends").tag == "COMMIT"
    b_end = outcome(result, "B ends")
    assert b_end.error is not None and b_end.error.code == "40001"
    assert outcome(result, "final").rows == [(1,)]
    assert not any(e.waited for e in result.executions)


POSTGRES_LEVELS = ["READ UNCOMMITTED", "READ COMMITTED", "REPEATABLE READ", "SERIALIZABLE"]


def test_no_dirty_reads_at_any_postgres_level(postgres_url: str) -> None:
    """PostgreSQL runs READ UNCOMMITTED as READ COMMITTED: an uncommitted write is invisible."""
    for level in POSTGRES_LEVELS:
        result = run_script(
            "postgres",
            SETUP
            + f"""
\\session A
BEGIN ISOLATION LEVEL {level};
UPDATE acct SET balance = 999 WHERE id = 1;
\\session B
BEGIN ISOLATION LEVEL {level};
SELECT balance FROM acct WHERE id = 1 /* B peeks */;
\\session A
ROLLBACK;
""",
        )
        assert outcome(result, "B peeks").rows == [(100,)], level


def test_dirty_write_waits_at_every_postgres_level(postgres_url: str) -> None:
    for level in POSTGRES_LEVELS:
        result = run_script(
            "postgres",
            SETUP
            + f"""
\\session A
BEGIN ISOLATION LEVEL {level};
UPDATE acct SET balance = 11 WHERE id = 1;
\\session B
BEGIN ISOLATION LEVEL {level};
UPDATE acct SET balance = 12 WHERE id = 1 /* B writes */;
\\session A
ROLLBACK /* A gives up */;
\\session B
COMMIT;
SELECT balance FROM acct WHERE id = 1 /* final */;
""",
        )
        b_writes = at(result, "B writes")
        assert b_writes.waited and b_writes.blocked_by == ["A"], level
        # A rolled back, so B's write goes through at every level.
        assert b_writes.outcome is not None and b_writes.outcome.status is Status.OK, level
        assert outcome(result, "final").rows == [(12,)], level


def non_repeatable_read(level: str) -> str:
    return (
        SETUP
        + f"""
\\session A
BEGIN{level};
SELECT balance FROM acct WHERE id = 1 /* first read */;
\\session B
UPDATE acct SET balance = 50 WHERE id = 1 /* B autocommits */;
\\session A
SELECT balance FROM acct WHERE id = 1 /* second read */;
COMMIT;
"""
    )


def test_non_repeatable_read_depends_on_the_postgres_level(postgres_url: str) -> None:
    expected = {
        "READ COMMITTED": [(50,)],
        "REPEATABLE READ": [(100,)],
        "SERIALIZABLE": [(100,)],
    }
    for level, second in expected.items():
        result = run_script("postgres", non_repeatable_read(f" ISOLATION LEVEL {level}"))
        assert outcome(result, "first read").rows == [(100,)], level
        assert outcome(result, "B autocommits").status is Status.OK, level
        assert outcome(result, "second read").rows == second, level


def test_sqlite_reads_in_a_transaction_come_from_one_snapshot() -> None:
    """WAL: once a transaction has read, it keeps its snapshot; no non-repeatable reads."""
    result = run_script("sqlite", non_repeatable_read(""))
    assert outcome(result, "B autocommits").status is Status.OK
    assert outcome(result, "second read").rows == [(100,)]


def test_read_skew(engine: str) -> None:
    """A reads account 1, B moves money from 2 to 1 and commits, A reads account 2."""
    script = (
        SETUP
        + """
\\session A
BEGIN{level};
SELECT balance FROM acct WHERE id = 1 /* A reads 1 */;
\\session B
BEGIN;
UPDATE acct SET balance = balance + 20 WHERE id = 1;
UPDATE acct SET balance = balance - 20 WHERE id = 2;
COMMIT;
\\session A
SELECT balance FROM acct WHERE id = 2 /* A reads 2 */;
COMMIT;
"""
    )
    if engine == "postgres":
        skewed = run_script(engine, script.replace("{level}", ""))
        assert outcome(skewed, "A reads 2").rows == [(80,)]  # 100 + 80: twenty vanished
        consistent = run_script(
            engine, script.replace("{level}", " ISOLATION LEVEL REPEATABLE READ")
        )
        assert outcome(consistent, "A reads 2").rows == [(100,)]
    else:
        result = run_script(engine, script.replace("{level}", ""))
        assert outcome(result, "A reads 2").rows == [(100,)]


def test_sqlite_a_transaction_that_has_read_is_never_said_to_wait_for_the_write_lock(
    tmp_path: object,
) -> None:
    # SQLite never runs the busy handler for a transaction holding a read snapshot: its write
    # is refused at once. However slowly that refusal comes back on a busy machine, the
    # watcher must not call it a wait (it once did, when the refusal took over 10 ms).
    from sandbox.conductor import Conductor
    from sandbox.statements import split_statements
    from sandbox.targets import open_target
    from sandbox.timeline import Timeline
    from tests.conftest import options_for

    with open_target(options_for("sqlite", busy_timeout_ms=5000)) as target:
        conductor = Conductor(target, Timeline())
        try:
            for session, sql in [
                ("A", "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)"),
                ("A", "INSERT INTO t VALUES (1, 0)"),
                ("B", "BEGIN"),
                ("B", "SELECT v FROM t WHERE id = 1"),
                ("A", "BEGIN"),
                ("A", "UPDATE t SET v = 1 WHERE id = 1"),
            ]:
                conductor.execute(session, split_statements(sql, "sqlite")[0])
            b, a = conductor.session("B"), conductor.session("A")
            assert b.holds_read_snapshot and a.holds_write_lock
            # The write lock is held by A, and B would be the one to ask about: not waiting.
            assert target.lock_wait(b, [a, b], {"A"}) is None
            write = conductor.execute("B", split_statements("UPDATE t SET v = 2", "sqlite")[0])
            assert write.outcome is not None and write.outcome.error is not None
            assert write.outcome.error.code == "SQLITE_BUSY" and not write.waited
        finally:
            conductor.close()
