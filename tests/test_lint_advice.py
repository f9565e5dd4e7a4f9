"""Advice the guard gives without blocking anything (severity info): `x = NULL` comparisons
and misspelt command words."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.cli import main
from sandbox.guard import lint_script
from sandbox.guard.findings import Severity
from sandbox.statements import Dialect

DIALECTS: tuple[Dialect, ...] = ("sqlite", "postgres")


def advice(sql: str, dialect: Dialect, rule: str) -> list[str]:
    return [f.message for f in lint_script(sql, dialect) if f.rule == rule]


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("sql", "said"),
    [
        ("SELECT count(*) FROM notes WHERE deleted_at = NULL", ["deleted_at = NULL"]),
        ("DELETE FROM notes WHERE deleted_at <> NULL", ["deleted_at <> NULL"]),
        ("SELECT * FROM t WHERE a != null OR NULL = b", ["a != NULL", "b = NULL"]),
        ("UPDATE t SET a = NULL WHERE c = NULL", ["c = NULL"]),
        ("UPDATE t SET a = (SELECT x FROM y WHERE y.z = NULL) WHERE id = 1", ["y.z = NULL"]),
        ("SELECT CASE WHEN n.body = NULL THEN 'empty' END FROM notes n", ["n.body = NULL"]),
    ],
)
def test_a_comparison_with_null_is_pointed_out(sql: str, said: list[str], dialect: Dialect) -> None:
    messages = advice(sql, dialect, "null-comparison")
    assert len(messages) == len(said), messages
    for message, start in zip(messages, said, strict=True):
        assert message.startswith(f"{start} is never true"), message


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE t SET a = NULL, b = NULL WHERE c = 1",
        "INSERT INTO t (a) VALUES (1) ON CONFLICT (a) DO UPDATE SET b = NULL",
        "SELECT * FROM t WHERE a IS NULL OR a IS NOT NULL OR a IS DISTINCT FROM NULL",
        "SELECT * FROM t WHERE a >= NULL OR a <= 1",
        "SELECT 'a = NULL' -- b = NULL",
        "SET search_path = NULL",
        "CREATE FUNCTION f(a int = NULL) RETURNS int LANGUAGE sql AS 'SELECT 1'",
    ],
)
def test_assignments_and_null_tests_get_no_advice(sql: str, dialect: Dialect) -> None:
    assert advice(sql, dialect, "null-comparison") == []


def test_advice_is_shown_and_passes_lint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "purge.sql"
    script.write_text(
        "DELETE FROM notes WHERE deleted_at <> NULL;\nSELECTT id FROM notes;\n", encoding="utf-8"
    )
    assert main(["lint", "--dialect", "postgres", str(script)]) == 0
    out = capsys.readouterr().out
    assert "info null-comparison deleted_at <> NULL is never true" in out
    assert main(["lint", "--dialect", "postgres", "--format", "json", str(script)]) == 0
    fixes = [f["fix"] for f in json.loads(capsys.readouterr().out)]
    assert "write deleted_at IS NOT NULL" in fixes
    assert "info misspelt-command SELECTT is no SQL command (did you mean SELECT?)" in out


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize(
    ("sql", "command"),
    [("SELECTT 1", "SELECT"), ("DELET FROM t", "DELETE"), ("UDPATE t SET a = 1", "UPDATE")],
)
def test_a_misspelt_command_is_advice(sql: str, command: str, dialect: Dialect) -> None:
    found = [f for f in lint_script(sql, dialect) if f.rule == "misspelt-command"]
    assert len(found) == 1 and found[0].severity is Severity.INFO
    assert f"did you mean {command}?" in found[0].message
