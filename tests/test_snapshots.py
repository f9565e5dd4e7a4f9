"""Snapshots, restore and row-level diffs on real sandboxes, through the conductor and the CLI.

Each restore test dumps every table of the committed database on a fresh connection before
the damage and after the restore: the two dumps must be identical, rows and columns.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from sandbox.cli import main
from sandbox.conductor import Conductor, Execution
from sandbox.guard.policy import Guard
from sandbox.outcome import Status, TxState
from sandbox.recovery import methods_used
from sandbox.statements import MetaCommand, split, split_statements
from sandbox.targets import PostgresTarget, SqliteTarget, Target, open_target
from sandbox.timeline import EventKind
from tests.conftest import options_for, without_role_warning

SETUP = """
CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER);
INSERT INTO accounts VALUES (1, 'ann', 100), (2, 'bob', 50), (3, 'cy', NULL);
CREATE TABLE notes (body TEXT);
INSERT INTO notes VALUES ('x'), ('x'), ('y');
CREATE INDEX accounts_owner ON accounts (owner);
"""

DAMAGE = """
DELETE FROM accounts WHERE id = 1;
UPDATE accounts SET balance = 0 WHERE id = 2;
INSERT INTO accounts VALUES (9, 'zed', 9);
DELETE FROM notes WHERE body = 'y';
ALTER TABLE accounts ADD COLUMN note TEXT;
CREATE TABLE extra (id INTEGER PRIMARY KEY);
DROP INDEX accounts_owner;
"""


@pytest.fixture
def conductor(target: Target) -> Iterator[Conductor]:
    conductor = Conductor(target)
    try:
        yield conductor
    finally:
        conductor.close()


def dialect(target: Target) -> Any:
    return "postgres" if target.engine == "postgres" else "sqlite"


def run(conductor: Conductor, session: str, script: str, guard: Guard | None = None) -> list[Any]:
    """Run statements and backslash commands as a script would; returns their executions."""
    done: list[Execution] = []
    for item in split(script, dialect(conductor.target)):
        if isinstance(item, MetaCommand):
            done.append(conductor.run_meta(session, item))
        else:
            done.append(conductor.execute(session, item, guard))
    return done


def dump(target: Target) -> dict[str, Any]:
    """Every table's columns and rows (sorted), as a fresh connection sees them."""
    connection = target.connect("dump")
    try:
        cursor = connection.raw.cursor()
        if target.engine == "sqlite":
            cursor.execute(
                "SELECT name FROM sqlite_schema WHERE type IN ('table', 'index') "
                "AND name NOT LIKE 'sqlite%' ORDER BY name"
            )
        else:
            cursor.execute(
                "SELECT relname FROM pg_class c JOIN pg_namespace n ON n.oid = relnamespace "
                "WHERE nspname = 'public' AND relkind IN ('r', 'i') ORDER BY relname"
            )
        names = [row[0] for row in cursor.fetchall()]
        result: dict[str, Any] = {"objects": names}
        for name in names:
            if name.endswith(("_owner", "_pkey")) or name.startswith("sqlite"):
                continue  # indexes: their presence is what counts
            cursor.execute(f'SELECT * FROM "{name}"')
            columns = [d[0] for d in cursor.description]
            rows = sorted(cursor.fetchall(), key=repr)
            result[name] = (columns, rows)
        cursor.close()
        return result
    finally:
        connection.close()


def test_restore_brings_back_exactly_the_snapshots_rows_and_schema(
    target: Target, conductor: Conductor
) -> None:
    run(conductor, "A", SETUP)
    before = dump(target)
    [taken] = run(conductor, "A", "\\snapshot clean")
    assert taken.outcome.status is Status.OK, taken.outcome.error
    assert taken.outcome.data["snapshot"]["name"] == "clean"
    run(conductor, "A", DAMAGE)
    assert dump(target) != before  # the damage is real, so the comparison below can fail
    [restored] = run(conductor, "A", "\\restore clean")
    assert restored.outcome.status is Status.OK, restored.outcome.error
    assert dump(target) == before
    # The sessions carry on: the restored table is usable at once, by every session.
    [count] = run(conductor, "B", "SELECT count(*) FROM accounts")
    assert count.outcome.rows == [(3,)]


def test_a_diff_names_the_rows_and_schema_changes(target: Target, conductor: Conductor) -> None:
    run(conductor, "A", SETUP + "\\snapshot s1\n" + DAMAGE)
    [execution] = run(conductor, "A", "\\diff s1")
    outcome = execution.outcome
    assert outcome.status is Status.OK, outcome.error
    diff = outcome.data["diff"]
    assert diff["snapshot"] == "s1"
    assert diff["tables_added"] == ["extra"]
    assert diff["tables_dropped"] == []
    by_table = {t["table"]: t for t in diff["tables"]}
    accounts = by_table["accounts"]
    assert accounts["columns_added"] == ["note"]
    assert [r["id"] for r in accounts["removed"]] == [1]
    assert [r["id"] for r in accounts["added"]] == [9]
    [changed] = accounts["changed"]
    assert changed["columns"] == ["balance"]
    assert (changed["before"]["balance"], changed["after"]["balance"]) == (50, 0)
    notes = by_table["notes"]
    assert notes["key_columns"] == []  # no primary key: compared as a multiset
    assert (notes["removed_count"], notes["added_count"]) == (1, 0)
    assert "accounts" in outcome.note and "1 row removed" in outcome.note
    # The grid form goes to the results pane: a row per change.
    assert outcome.columns == ["table", "change", "key", "row"]
    assert ("accounts", "removed") in {(row[0], row[1]) for row in outcome.rows}


def test_a_snapshot_holds_only_committed_data_and_never_touches_a_session(
    target: Target, conductor: Conductor
) -> None:
    run(conductor, "A", SETUP)
    run(conductor, "B", "BEGIN; UPDATE accounts SET balance = 1 WHERE id = 1")
    [taken] = run(conductor, "A", "\\snapshot mid")
    assert taken.outcome.status is Status.OK, taken.outcome.error
    assert "B has an open transaction" in taken.outcome.note
    b = next(s for s in conductor.sessions if s.name == "B")
    assert b.tx_state is TxState.IN_TRANSACTION  # still open, still holding its change
    run(conductor, "B", "COMMIT")
    [diff] = run(conductor, "A", "\\diff mid")
    [change] = diff.outcome.data["diff"]["tables"][0]["changed"]
    assert (change["before"]["balance"], change["after"]["balance"]) == (100, 1)


def test_restore_rolls_back_every_open_transaction_first(
    target: Target, conductor: Conductor
) -> None:
    run(conductor, "A", SETUP + "\\snapshot s")
    run(conductor, "B", "BEGIN; INSERT INTO accounts VALUES (7, 'eve', 7)")
    [restored] = run(conductor, "A", "\\restore s")
    assert restored.outcome.data["restore"]["rolled_back"] == {"B": 2}
    assert all(s.tx_state is TxState.IDLE for s in conductor.sessions)
    events = [e for e in conductor.timeline.events if e.kind is EventKind.ROLLBACK]
    assert [(e.session, e.data.get("by")) for e in events] == [("B", "restore")]
    [after] = run(conductor, "B", "SELECT count(*) FROM accounts WHERE id = 7")
    assert after.outcome.rows == [(0,)]


def test_an_unknown_snapshot_is_an_error_outcome_and_the_run_goes_on(
    target: Target, conductor: Conductor
) -> None:
    run(conductor, "A", SETUP)
    failed, listed = run(conductor, "A", "\\restore nope\n\\snapshots")
    assert failed.outcome.status is Status.ERROR
    assert failed.outcome.error.message.startswith("no snapshot named 'nope'")
    assert listed.outcome.status is Status.OK and listed.outcome.data == {"snapshots": []}


def test_a_confirmed_dangerous_statement_is_snapshotted_first(
    target: Target, conductor: Conductor
) -> None:
    run(conductor, "A", SETUP)
    [delete] = run(conductor, "A", "DELETE FROM accounts", Guard(yes=True))
    assert delete.snapshot_before == "before-1"
    [safe] = run(conductor, "A", "DELETE FROM notes WHERE body = 'x'", Guard(yes=True))
    assert safe.snapshot_before is None  # nothing to confirm, no snapshot
    [diff] = run(conductor, "A", "\\diff before-1")
    tables = {t["table"]: t for t in diff.outcome.data["diff"]["tables"]}
    assert tables["accounts"]["removed_count"] == 3
    run(conductor, "A", "\\restore before-1")
    [count] = run(conductor, "A", "SELECT count(*) FROM accounts")
    assert count.outcome.rows == [(3,)]
    # Restoring counts as recovering, for a scenario's recovery checks.
    assert methods_used(conductor.executions, since=0)[-1] == "restore"


def test_retaking_a_name_replaces_the_snapshot(target: Target, conductor: Conductor) -> None:
    run(conductor, "A", SETUP + "\\snapshot s\nDELETE FROM notes;\n\\snapshot s\n")
    assert [i.name for i in target.snapshots.list()] == ["s"]
    run(conductor, "A", "INSERT INTO notes VALUES ('new')")
    run(conductor, "A", "\\restore s")
    [count] = run(conductor, "A", "SELECT count(*) FROM notes")
    assert count.outcome.rows == [(0,)]  # the second snapshot, taken after the DELETE


def test_sqlite_restore_keeps_wal_mode_and_snapshots_go_with_the_sandbox(
    tmp_path: Path,
) -> None:
    target = SqliteTarget()
    conductor = Conductor(target)
    try:
        run(conductor, "A", SETUP + "\\snapshot s\nDELETE FROM accounts;\n\\restore s")
        files = list((target.directory / "snapshots").iterdir())
        assert files, "the snapshot is a file in the sandbox directory"
        with sqlite3.connect(target.path) as check:
            assert check.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        conductor.close()
        target.close()
    assert not target.directory.exists()


# --------------------------------------------------------------------------- PostgreSQL


def pg_databases(url: str, like: str) -> list[str]:
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT datname FROM pg_database WHERE datname LIKE %s", (like + "%",))
        return sorted(row[0] for row in cursor.fetchall())


def test_postgres_snapshot_methods_and_cleanup(postgres_url: str) -> None:
    target = open_target(options_for("postgres"))
    assert isinstance(target, PostgresTarget)
    try:
        setup = target.connect("setup")
        cursor = setup.raw.cursor()
        for statement in split_statements(SETUP, "postgres"):
            cursor.execute(statement.text)
        setup.close()
        # Nobody connected: the exact template clone.
        quiet = target.snapshots.take("quiet")
        conductor = Conductor(target)
        try:
            conductor.session("A")
            # A session is connected: a logical copy, which PostgreSQL allows meanwhile.
            busy = target.snapshots.take("busy")
            assert (quiet.method, busy.method) == ("template clone", "logical copy")
            assert quiet.tables == busy.tables == 2
            names = pg_databases(postgres_url, target.name)
            assert names == [target.name, f"{target.name}_s1", f"{target.name}_s2"]
        finally:
            conductor.close()
    finally:
        target.close()
    assert pg_databases(postgres_url, target.name) == []


def test_postgres_restore_replays_session_settings(postgres_url: str) -> None:
    with open_target(options_for("postgres")) as target:
        conductor = Conductor(target)
        try:
            run(
                conductor,
                "A",
                SETUP
                + "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL SERIALIZABLE;\n"
                + "\\snapshot s\n",
            )
            pid = conductor.sessions[0].pid
            [restored] = run(conductor, "A", "\\restore s")
            assert "sessions reconnected" in restored.outcome.note
            [level] = run(conductor, "A", "SHOW transaction_isolation")
            assert level.outcome.rows == [("serializable",)]
            assert conductor.sessions[0].pid != pid
        finally:
            conductor.close()


def test_postgres_snapshot_waits_not_for_ever_on_a_learners_lock(postgres_url: str) -> None:
    with open_target(options_for("postgres")) as target:
        conductor = Conductor(target)
        try:
            run(conductor, "A", SETUP)
            run(conductor, "B", "BEGIN; ALTER TABLE accounts ADD COLUMN x INT")
            [taken] = run(conductor, "A", "\\snapshot s")
            assert taken.outcome.status is Status.ERROR
            assert "accounts" in taken.outcome.error.message
            assert target.snapshots.list() == []
        finally:
            conductor.close()


# --------------------------------------------------------------------------- the CLI


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, without_role_warning(captured.err)


def test_run_json_carries_each_command_as_a_statement_entry(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "s.sql"
    script.write_text(
        SETUP + "\\snapshot before\nDELETE FROM accounts;\n\\snapshots\n\\diff before\n"
        "\\restore before\nSELECT count(*) FROM accounts;\n",
        encoding="utf-8",
    )
    extra = ["--url", options_for(engine).url or ""] if engine == "postgres" else []
    code, out, err = cli(
        capsys, "run", str(script), "--engine", engine, *extra, "--yes", "--format", "json"
    )
    assert (code, err) == (0, "")
    entries = [s for s in json.loads(out)["statements"] if s["meta"]]
    assert [(e["meta"], e["status"]) for e in entries] == [
        ("snapshot", "ok"),
        ("snapshots", "ok"),
        ("diff", "ok"),
        ("restore", "ok"),
    ]
    snapshot, listing, diff, restore = entries
    assert snapshot["snapshot"]["name"] == "before" and snapshot["sql"] == "\\snapshot before"
    assert [s["name"] for s in listing["snapshots"]] == ["before", "before-1"]
    assert diff["diff"]["tables"][0]["removed_count"] == 3
    assert restore["restore"]["snapshot"]["name"] == "before"
    last = json.loads(out)["statements"][-1]
    assert last["rows"] == [[3]]


# The logical copy refuses partitioned tables; with a primary key, planning it used to raise
# KeyError, and `dbsandbox run` died with a traceback and no report.
PARTITIONED = """CREATE TABLE p (a int PRIMARY KEY) PARTITION BY LIST (a);
CREATE TABLE p1 PARTITION OF p FOR VALUES IN (1);
"""
REFUSED = "the logical copy cannot reproduce faithfully: partitioned table p; partition p1"


@pytest.mark.postgres
def test_a_snapshot_the_logical_copy_refuses_is_reported_and_the_run_goes_on(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def run_json(script: str) -> dict[str, Any]:
        path = tmp_path / "partitioned.sql"
        path.write_text(script, encoding="utf-8")
        options = ("--engine", "postgres", "--url", postgres_url, "--yes", "--format", "json")
        code, out, err = cli(capsys, "run", str(path), *options)
        assert (code, err) == (0, "")
        report: dict[str, Any] = json.loads(out)
        return report

    # The confirmed DROP is snapshotted first; a session is connected, so a logical copy.
    report = run_json(PARTITIONED + "DROP TABLE p;\n")
    drop = report["statements"][-1]
    assert (drop["sql"], drop["status"], drop["tag"]) == ("DROP TABLE p", "ok", "DROP TABLE")
    assert drop["snapshot_before"] is None
    [why] = [e for e in report["timeline"] if e["kind"] == "snapshot"]
    assert why["statement"] == drop["index"]
    assert why["message"] == f"no snapshot before this statement: snapshot failed: {REFUSED}"

    # Asked for by name: an error outcome, and the script goes on.
    report = run_json(PARTITIONED + "\\snapshot s1\nSELECT 'still running';\n")
    snapshot, after = report["statements"][-2:]
    assert (snapshot["meta"], snapshot["status"]) == ("snapshot", "error")
    assert snapshot["error"] == {"code": "dbsandbox", "message": f"snapshot failed: {REFUSED}"}
    assert (after["status"], after["rows"]) == ("ok", [["still running"]])


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("\\snapshot", "\\snapshot NAME needs exactly one name"),
        ("\\restore a b", "\\restore NAME needs exactly one name"),
        ("\\snapshots now", "\\snapshots takes no arguments"),
        ("\\snapshot bad/name", "bad snapshot name 'bad/name'"),
        ("\\undo", "unknown command \\undo"),
    ],
)
def test_a_malformed_command_is_a_one_line_error_naming_the_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], line: str, message: str
) -> None:
    script = tmp_path / "bad.sql"
    script.write_text(f"SELECT 1;\n{line}\n", encoding="utf-8")
    code, out, err = cli(capsys, "run", str(script))
    assert (code, out) == (2, "")
    assert err.startswith(f"dbsandbox: {script}:2: {message}")
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_recovery_methods_from_what_ran(target: Target, conductor: Conductor) -> None:
    run(conductor, "A", SETUP)
    since = len(conductor.executions)
    assert methods_used(conductor.executions, since) == []
    run(conductor, "A", "BEGIN; DELETE FROM notes; ROLLBACK")
    run(conductor, "A", "BEGIN; SAVEPOINT p; DELETE FROM notes; ROLLBACK TO SAVEPOINT p")
    run(conductor, "A", "UPDATE accounts SET balance = 1 WHERE id = 1; COMMIT")
    assert methods_used(conductor.executions, since) == ["rollback", "savepoint", "repair"]
    # A transaction that wrote and was rolled back repaired nothing.
    later = len(conductor.executions)
    run(conductor, "B", "BEGIN; INSERT INTO notes VALUES ('z'); ROLLBACK")
    assert methods_used(conductor.executions, later) == ["rollback"]


def test_postgres_diff_gives_up_on_a_learners_lock(postgres_url: str) -> None:
    with open_target(options_for("postgres")) as target:
        conductor = Conductor(target)
        try:
            run(conductor, "A", SETUP + "\\snapshot s\n")
            run(conductor, "B", "BEGIN; ALTER TABLE accounts ADD COLUMN x INT")
            [diff] = run(conductor, "A", "\\diff s")
            assert diff.outcome.status is Status.ERROR
            assert "locked by an uncommitted change" in diff.outcome.error.message
        finally:
            conductor.close()
