"""The guard inside `dbsandbox run`: stop, confirm by --yes or comment, block, and record."""

from __future__ import annotations

import json

import pytest

from sandbox.cli import main
from tests.conftest import options_for

SETUP = """
CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER NOT NULL);
INSERT INTO accounts VALUES (1, 'ann', 10), (2, 'bob', 20), (3, 'cy', 30);
"""


def run(
    capsys: pytest.CaptureFixture[str], engine: str, script: str, *flags: str
) -> tuple[int, dict[str, object]]:
    args = ["run", "-", "--engine", engine, "--format", "json", *flags]
    url = options_for(engine).url
    if url:
        args += ["--url", url]
    monkey_stdin(script)
    code = main(args)
    out = capsys.readouterr().out
    return code, json.loads(out)


_STDIN: list[str] = []


def monkey_stdin(text: str) -> None:
    _STDIN[:] = [text]


@pytest.fixture(autouse=True)
def _stdin(monkeypatch: pytest.MonkeyPatch) -> None:
    import io
    import sys

    class _Input(io.StringIO):
        def read(self, size: int | None = -1) -> str:
            return _STDIN[0] if _STDIN else ""

    monkeypatch.setattr(sys, "stdin", _Input())


def statements(report: dict[str, object]) -> list[dict[str, object]]:
    found = report["statements"]
    assert isinstance(found, list)
    return found


def test_a_dangerous_statement_stops_the_script(
    engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run(
        capsys, engine, SETUP + "DELETE FROM accounts;\nSELECT count(*) FROM accounts;"
    )
    assert code == 3
    stmts = statements(report)
    assert len(stmts) == 3  # the SELECT after the stop never ran
    stopped = stmts[2]
    assert report["stopped"] == 2
    assert stopped["status"] == "blocked"
    assert stopped["rowcount"] is None
    finding = stopped["findings"][0]  # type: ignore[index]
    assert finding["rule"] == "delete-without-where"
    assert finding["decision"] == "confirm"
    assert finding["impact"]["summary"] == "would delete 3 of 3 rows in accounts"
    kinds = [e["kind"] for e in report["timeline"]]  # type: ignore[attr-defined]
    assert "guard" in kinds


def test_yes_runs_it_and_still_reports_what_it_did(
    engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run(
        capsys, engine, SETUP + "DELETE FROM accounts;\nSELECT count(*) FROM accounts;", "--yes"
    )
    assert code == 0
    stmts = statements(report)
    assert stmts[2]["status"] == "ok" and stmts[2]["rowcount"] == 3
    assert stmts[2]["findings"][0]["impact"]["rows"] == 3  # type: ignore[index]
    assert stmts[3]["rows"] == [[0]]
    messages = [e["message"] for e in report["timeline"]]  # type: ignore[attr-defined]
    assert "allowed: confirmed by --yes" in messages


@pytest.mark.parametrize(
    "script",
    [
        "-- dbsandbox: allow delete-without-where\nDELETE FROM accounts;",
        "DELETE FROM accounts; -- dbsandbox: allow delete-without-where",
        "DELETE /* dbsandbox: allow delete-without-where */ FROM accounts;",
        "-- dbsandbox: allow always-true-where, delete-without-where\nDELETE FROM accounts;",
    ],
)
def test_an_acknowledgement_comment_lets_it_run(
    engine: str, script: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run(capsys, engine, SETUP + script + "\nSELECT count(*) FROM accounts;")
    assert code == 0
    stmts = statements(report)
    assert stmts[2]["status"] == "ok"
    assert stmts[3]["rows"] == [[0]]
    messages = [e["message"] for e in report["timeline"]]  # type: ignore[attr-defined]
    assert "allowed: acknowledged by a comment" in messages


@pytest.mark.parametrize(
    "script",
    [
        # Another rule's acknowledgement does not count.
        "-- dbsandbox: allow drop-table\nDELETE FROM accounts;",
        # Words in a string are not a comment.
        "DELETE FROM accounts WHERE owner <> '-- dbsandbox: allow always-true-where' OR 1 = 1;",
        # The first statement's trailing comment is not the second's.
        "DELETE FROM accounts WHERE id = 1; -- dbsandbox: allow delete-without-where\n"
        "DELETE FROM accounts;",
    ],
)
def test_an_acknowledgement_must_name_the_rule_on_the_statement(
    engine: str, script: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run(capsys, engine, SETUP + script)
    assert code == 3
    assert statements(report)[-1]["status"] == "blocked"


def test_warnings_are_shown_but_do_not_stop(capsys: pytest.CaptureFixture[str]) -> None:
    code, report = run(capsys, "sqlite", "SELECT 1;\nFROBNICATE everything;\nSELECT 2;")
    assert code == 0
    stmts = statements(report)
    assert stmts[1]["findings"][0]["rule"] == "unverified"  # type: ignore[index]
    assert stmts[1]["status"] == "error"  # it ran, and SQLite rejected it
    assert stmts[2]["rows"] == [[2]]


def test_dropping_a_database_is_blocked_even_with_yes(
    postgres_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, report = run(capsys, "postgres", "DROP DATABASE postgres;", "--yes")
    assert code == 3
    stmt = statements(report)[0]
    assert stmt["status"] == "blocked"
    assert stmt["findings"][0]["decision"] == "block"  # type: ignore[index]


def test_text_report_shows_finding_impact_and_fix(
    engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    monkey_stdin(SETUP + "UPDATE accounts SET balance = 0 WHERE 1 = 1;")
    args = ["run", "-", "--engine", engine]
    url = options_for(engine).url
    if url:
        args += ["--url", url]
    assert main(args) == 3
    out = capsys.readouterr().out
    assert "! error always-true-where" in out
    assert "would update 3 of 3 rows in accounts" in out
    assert "fix: " in out
    assert "NOT RUN" in out
    assert "stopped at line 4" in out


def test_schema_aware_lint_sees_tables_created_during_the_run(
    engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    script = (
        "DELETE FROM b WHERE id IS NOT NULL;\n"  # b does not exist yet: nothing to know
        "CREATE TABLE b (id INTEGER NOT NULL);\n"
        "INSERT INTO b VALUES (1), (2);\n"
        "DELETE FROM b WHERE id IS NOT NULL;\n"  # now the schema says: always true
    )
    code, report = run(capsys, engine, script)
    stmts = statements(report)
    assert stmts[0]["findings"] == [] and stmts[0]["status"] == "error"
    assert code == 3
    last = stmts[3]
    assert last["status"] == "blocked"
    assert last["findings"][0]["rule"] == "always-true-where"  # type: ignore[index]
    assert last["findings"][0]["impact"]["summary"] == "would delete 2 of 2 rows in b"  # type: ignore[index]


def test_a_sqlite_text_primary_key_may_hold_null(capsys: pytest.CaptureFixture[str]) -> None:
    """SQLite lets NULL into a non-INTEGER primary key, so IS NOT NULL there does filter."""
    script = (
        "CREATE TABLE tags (name TEXT PRIMARY KEY);\n"
        "INSERT INTO tags VALUES ('a'), (NULL);\n"
        "DELETE FROM tags WHERE name IS NOT NULL;\n"
        "SELECT count(*) FROM tags;\n"
    )
    code, report = run(capsys, "sqlite", script)
    assert code == 0
    stmts = statements(report)
    assert stmts[2]["findings"] == [] and stmts[2]["rowcount"] == 1
    assert stmts[3]["rows"] == [[1]]
