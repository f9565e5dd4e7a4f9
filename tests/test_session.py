"""One session at a time: the truth about rows, errors, tags and transaction state."""

from __future__ import annotations

import subprocess
import sys

import pytest

from sandbox.outcome import Status, TxState
from sandbox.runner import RunResult
from sandbox.session import FAILED_COMMIT_NOTE
from sandbox.timeline import EventKind
from tests.conftest import run_script, without_role_warning

BIG_SQLITE = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) "
    "SELECT i, 'row ' || i AS label FROM n"
)
BIG_POSTGRES = "SELECT i, 'row ' || i AS label FROM generate_series(1, 1000000) AS i"


def by_line(result: RunResult, line: int) -> object:
    return next(e for e in result.executions if e.statement.line == line)


def outcome_at(result: RunResult, index: int):  # type: ignore[no-untyped-def]
    outcome = result.executions[index].outcome
    assert outcome is not None
    return outcome


def test_transaction_control_passes_through_untouched(engine: str) -> None:
    result = run_script(
        engine,
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT);
        BEGIN;
        INSERT INTO t VALUES (1, 'kept');
        SAVEPOINT before_mistake;
        INSERT INTO t VALUES (2, 'undone');
        ROLLBACK TO SAVEPOINT before_mistake;
        RELEASE SAVEPOINT before_mistake;
        COMMIT;
        SELECT id, v FROM t ORDER BY id;
        """,
    )
    states = [outcome_at(result, i).tx_after for i in range(len(result.executions))]
    assert states == [
        TxState.IDLE,
        TxState.IN_TRANSACTION,
        TxState.IN_TRANSACTION,
        TxState.IN_TRANSACTION,
        TxState.IN_TRANSACTION,
        TxState.IN_TRANSACTION,
        TxState.IN_TRANSACTION,
        TxState.IDLE,
        TxState.IDLE,
    ]
    assert outcome_at(result, 8).rows == [(1, "kept")]
    kinds = [e.kind for e in result.timeline if e.session == "A"]
    for expected in (
        EventKind.BEGIN,
        EventKind.SAVEPOINT,
        EventKind.ROLLBACK_TO,
        EventKind.RELEASE,
        EventKind.COMMIT,
    ):
        assert expected in kinds
    assert kinds.index(EventKind.BEGIN) < kinds.index(EventKind.SAVEPOINT)
    assert kinds.index(EventKind.ROLLBACK_TO) < kinds.index(EventKind.COMMIT)


def test_autocommit_writes_are_visible_at_once_to_another_session(engine: str) -> None:
    result = run_script(
        engine,
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY);
        INSERT INTO t VALUES (1);
        \\session B
        SELECT count(*) FROM t;
        """,
    )
    assert outcome_at(result, 1).tx_after is TxState.IDLE
    assert outcome_at(result, 1).rowcount == 1
    assert outcome_at(result, 2).rows == [(1,)]
    assert any("autocommit" in e.message for e in result.timeline)


def test_uncommitted_write_is_gone_when_its_session_ends(engine: str) -> None:
    """The skipped COMMIT: B never sees A's row, and closing A says it was rolled back."""
    result = run_script(
        engine,
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY);
        BEGIN;
        INSERT INTO t VALUES (1);
        \\session B
        SELECT count(*) FROM t;
        """,
    )
    assert outcome_at(result, 3).rows == [(0,)]
    closed = [e for e in result.timeline if e.kind is EventKind.SESSION_CLOSED]
    assert [e.session for e in closed] == ["A", "B"]
    assert "open transaction" in closed[0].message
    assert "2 uncommitted statements discarded" in closed[0].message
    assert closed[1].message == "session B closed"


def test_error_inside_a_transaction(engine: str) -> None:
    result = run_script(
        engine,
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY, email TEXT UNIQUE);
        INSERT INTO t VALUES (1, 'a@example.com');
        BEGIN;
        INSERT INTO t VALUES (2, 'b@example.com');
        INSERT INTO t VALUES (3, 'a@example.com');
        SELECT count(*) FROM t;
        COMMIT;
        \\session B
        SELECT count(*) FROM t;
        """,
    )
    duplicate = outcome_at(result, 4)
    assert duplicate.status is Status.ERROR
    assert duplicate.error is not None
    after_error = outcome_at(result, 5)
    commit = outcome_at(result, 6)
    final = outcome_at(result, 7)
    if engine == "postgres":
        assert duplicate.error.code == "23505"
        assert "duplicate key" in duplicate.error.message
        assert duplicate.tx_after is TxState.FAILED
        # Every statement fails until ROLLBACK...
        assert after_error.status is Status.ERROR
        assert after_error.error is not None and after_error.error.code == "25P02"
        # ...and COMMIT answers ROLLBACK: nothing was saved.
        assert commit.status is Status.OK
        assert commit.tag == "ROLLBACK"
        assert commit.note == FAILED_COMMIT_NOTE
        assert final.rows == [(1,)]
        rollbacks = [e for e in result.timeline if e.kind is EventKind.ROLLBACK]
        assert rollbacks and rollbacks[0].message == FAILED_COMMIT_NOTE
    else:
        assert duplicate.error.code == "SQLITE_CONSTRAINT_UNIQUE"
        assert duplicate.error.message == "UNIQUE constraint failed: t.email"
        # SQLite undoes the statement, not the transaction, and goes on.
        assert duplicate.tx_after is TxState.IN_TRANSACTION
        assert after_error.rows == [(2,)]
        assert commit.tag is None and commit.note is None
        assert final.rows == [(2,)]


@pytest.mark.parametrize(
    ("sql", "sqlite_code", "postgres_code"),
    [
        ("SELECT * FROM no_such_table", "SQLITE_ERROR", "42P01"),
        ("SELEC 1", "SQLITE_ERROR", "42601"),
        ("SELECT 1/0 + 'x'", None, "22P02"),
        ("INSERT INTO t (id) VALUES (NULL)", None, "23502"),
        ("INSERT INTO t (id, n) VALUES (2, 5)", "SQLITE_CONSTRAINT_CHECK", "23514"),
    ],
)
def test_error_codes_come_from_the_engine(
    engine: str, sql: str, sqlite_code: str | None, postgres_code: str
) -> None:
    result = run_script(
        engine,
        "CREATE TABLE t (id INTEGER NOT NULL PRIMARY KEY, n INTEGER CHECK (n < 3));\n" + sql,
    )
    outcome = outcome_at(result, 1)
    expected = postgres_code if engine == "postgres" else sqlite_code
    if expected is None:
        # SQLite is lenient here: 1/0 is NULL and a NULL INTEGER PRIMARY KEY gets a rowid.
        assert outcome.status is Status.OK
    else:
        assert outcome.status is Status.ERROR
        assert outcome.error is not None and outcome.error.code == expected


def test_percent_and_colon_words_reach_the_engine_verbatim(engine: str) -> None:
    result = run_script(
        engine,
        """
        CREATE TABLE t (name TEXT);
        INSERT INTO t VALUES ('100% sure'), ('a:b :word');
        SELECT name FROM t WHERE name LIKE '100%' OR name LIKE '%:word';
        """,
    )
    assert sorted(outcome_at(result, 2).rows) == [("100% sure",), ("a:b :word",)]


def test_rowcount_columns_and_tags(engine: str) -> None:
    result = run_script(
        engine,
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER);
        INSERT INTO t VALUES (1, 10), (2, 20), (3, 30);
        UPDATE t SET v = v + 1 WHERE id >= 2;
        DELETE FROM t WHERE id = 1;
        SELECT id AS ident, v FROM t ORDER BY id;
        """,
    )
    insert, update, delete, select = (outcome_at(result, i) for i in range(1, 5))
    assert (insert.rowcount, update.rowcount, delete.rowcount) == (3, 2, 1)
    assert select.rowcount is None
    assert select.columns == ["ident", "v"]
    assert select.rows == [(2, 21), (3, 31)]
    assert select.more_rows is False
    if engine == "postgres":
        assert (insert.tag, update.tag, delete.tag, select.tag) == (
            "INSERT 0 3",
            "UPDATE 2",
            "DELETE 1",
            "SELECT 2",
        )
    else:
        assert insert.tag is None  # SQLite has no command tags; none is invented


@pytest.mark.parametrize("in_transaction", [False, True])
def test_a_million_row_select_shows_its_first_page(engine: str, in_transaction: bool) -> None:
    big = BIG_POSTGRES if engine == "postgres" else BIG_SQLITE
    script = ("BEGIN;\n" if in_transaction else "") + big + ";\nSELECT 1;"
    result = run_script(engine, script, page_size=50)
    select = outcome_at(result, 1 if in_transaction else 0)
    assert select.status is Status.OK
    assert len(select.rows) == 50
    assert select.rows[0] == (1, "row 1") and select.rows[-1] == (50, "row 50")
    assert select.more_rows is True
    expected = TxState.IN_TRANSACTION if in_transaction else TxState.IDLE
    assert select.tx_after is expected
    # The page cursor left nothing behind: the next statement runs in the same state.
    assert outcome_at(result, len(result.executions) - 1).tx_after is expected


def test_locking_select_locks_every_row_but_sends_one_page(postgres_url: str) -> None:
    """FOR UPDATE must lock every row it selects, as typed, not just the rows shown."""
    result = run_script(
        "postgres",
        """
        CREATE TABLE t AS SELECT i AS id FROM generate_series(1, 30) AS i;
        BEGIN;
        SELECT id FROM t ORDER BY id FOR UPDATE;
        \\session B
        UPDATE t SET id = id WHERE id = 30;
        \\session A
        ROLLBACK;
        """,
        page_size=5,
        wait_timeout_s=2.0,
    )
    locked = outcome_at(result, 2)
    assert len(locked.rows) == 5 and locked.more_rows
    assert locked.tag == "SELECT 30"  # the server walked every row to lock it
    update = result.executions[3]
    assert update.waited and update.blocked_by == ["A"]
    assert update.outcome is not None and update.outcome.status is Status.OK


def test_notices_are_reported(postgres_url: str) -> None:
    result = run_script("postgres", "DROP TABLE IF EXISTS nothing_here;")
    outcome = outcome_at(result, 0)
    assert outcome.tag == "DROP TABLE"
    assert outcome.notices == ['NOTICE: table "nothing_here" does not exist, skipping']
    assert any(e.kind is EventKind.NOTICE for e in result.timeline)


def test_a_statement_that_runs_too_long_is_cancelled(engine: str) -> None:
    slow = (
        "SELECT pg_sleep(20)"
        if engine == "postgres"
        else "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
        "SELECT count(*) FROM n"
    )
    result = run_script(engine, slow + ";\nSELECT 42;", statement_timeout_s=0.5)
    cancelled = outcome_at(result, 0)
    assert cancelled.status is Status.CANCELLED
    assert cancelled.error is not None
    assert cancelled.error.code == ("57014" if engine == "postgres" else "SQLITE_INTERRUPT")
    assert outcome_at(result, 1).rows == [(42,)]
    assert any(e.kind is EventKind.CANCELLED for e in result.timeline)


def test_sqlite_trigger_body_runs_as_one_statement() -> None:
    result = run_script(
        "sqlite",
        """
        CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER);
        CREATE TABLE log (msg TEXT);
        CREATE TRIGGER t_log AFTER UPDATE ON t BEGIN
          INSERT INTO log VALUES ('updated; ' || new.id);
          INSERT INTO log VALUES (CASE WHEN new.v > 1 THEN 'big' ELSE 'small' END);
        END;
        INSERT INTO t VALUES (1, 1);
        UPDATE t SET v = 5 WHERE id = 1;
        SELECT msg FROM log ORDER BY rowid;
        """,
    )
    assert len(result.executions) == 6
    assert outcome_at(result, 5).rows == [("updated; 1",), ("big",)]


def test_postgres_dollar_quoted_body_runs_as_one_statement(postgres_url: str) -> None:
    result = run_script(
        "postgres",
        """
        CREATE FUNCTION twice(x int) RETURNS int LANGUAGE plpgsql AS $$
        BEGIN
          RAISE NOTICE 'doubling %; really', x;
          RETURN x * 2;
        END;
        $$;
        SELECT twice(21);
        """,
    )
    assert len(result.executions) == 2
    answer = outcome_at(result, 1)
    assert answer.rows == [(42,)]
    assert answer.notices == ["NOTICE: doubling 21; really"]


TERMINATE_A = """
SELECT 1;
\\session B
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
 WHERE application_name LIKE 'dbsandbox:%:A' AND datname = current_database();
\\session A
SELECT 2;
SELECT 3;
"""


def test_a_terminated_connection_is_reported_plainly(postgres_url: str) -> None:
    from sandbox.conductor import LOST_SESSION_NOTE
    from sandbox.session import CONNECTION_LOST_NOTE

    result = run_script("postgres", TERMINATE_A)
    assert outcome_at(result, 1).rows == [(True,)]
    lost = outcome_at(result, 2)
    assert lost.status is Status.ERROR
    assert lost.note == CONNECTION_LOST_NOTE
    # Once the session knows its connection is gone, it sends nothing more.
    after = outcome_at(result, 3)
    assert after.status is Status.ERROR
    assert after.note == LOST_SESSION_NOTE


# The server ends session A itself (`dbsandbox run` blocks pg_terminate_backend: the process
# it names may be anyone's): A idles ten times its idle-session timeout while B sleeps.
IDLE_A_ENDED = """
SET idle_session_timeout = '50ms';
\\session B
SELECT pg_sleep(0.5);
\\session A
SELECT 2;
SELECT 3;
"""


def test_closing_a_terminated_connection_prints_no_traceback(postgres_url: str) -> None:
    # A separate process: pytest's log capture would hide what the pool logs on stderr.
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "sandbox",
            "run",
            "-",
            "--engine",
            "postgres",
            "--url",
            postgres_url,
        ],
        input=IDLE_A_ENDED,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0
    assert "connection to the server is gone" in done.stdout
    assert without_role_warning(done.stderr) == ""
