"""`dbsandbox lint`: files, directories and stdin; text and JSON; exit codes for hooks."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.cli import main


def lint(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["lint", *args])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def test_text_lines_name_path_line_column_severity_rule(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sql = tmp_path / "migrate.sql"
    sql.write_text("SELECT 1;\n\n  DELETE FROM accounts;\nTRUNCATE audit CASCADE;\n")
    code, out, _ = lint(capsys, str(sql))
    assert code == 1
    lines = out.splitlines()
    assert lines[0].startswith(f"{sql}:3:3: error delete-without-where ")
    assert "accounts" in lines[0]
    assert lines[1].startswith(f"{sql}:4:1: error truncate ")
    assert "CASCADE" in lines[1]


def test_json_findings_have_the_documented_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    sql = tmp_path / "a.sql"
    sql.write_text("UPDATE users SET admin = true;\n")
    code, out, _ = lint(capsys, "--format", "json", "--dialect", "postgres", str(sql))
    assert code == 1
    findings = json.loads(out)
    assert len(findings) == 1
    finding = findings[0]
    for key in ("path", "line", "column", "rule", "severity", "message", "statement"):
        assert key in finding
    assert finding["path"] == str(sql)
    assert finding["rule"] == "update-without-where"
    assert finding["statement"] == "UPDATE users SET admin = true"


def test_clean_input_exits_zero(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql = tmp_path / "ok.sql"
    sql.write_text(
        "-- DELETE FROM users;\nSELECT 'DROP TABLE users';\nDELETE FROM users WHERE id = 4;\n"
    )
    code, out, _ = lint(capsys, str(sql))
    assert (code, out) == (0, "")
    code, out, _ = lint(capsys, "--format", "json", str(sql))
    assert (code, json.loads(out)) == (0, [])


def test_a_warning_alone_fails_the_hook(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    sql = tmp_path / "odd.sql"
    sql.write_text("FROBNICATE everything;\n")
    code, out, _ = lint(capsys, str(sql))
    assert code == 1
    assert " warning unverified " in out


def test_directories_are_searched_for_sql_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "b.sql").write_text("DROP TABLE t;")
    (tmp_path / "a.sql").write_text("SELECT 1;")
    (tmp_path / "notes.txt").write_text("DROP TABLE t;")
    code, out, _ = lint(capsys, str(tmp_path))
    assert code == 1
    assert out.count("drop-table") == 1
    assert "b.sql:1:1:" in out


def test_postgres_dialect_reads_do_blocks(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(
        sys, "stdin", io.StringIO("DO $$\nBEGIN\n  DELETE FROM sessions;\nEND\n$$;\n")
    )
    code, out, _ = lint(capsys, "--dialect", "postgres", "-")
    assert code == 1
    assert out.startswith("<stdin>:3:3: error delete-without-where")


@pytest.mark.parametrize(
    "args",
    [["/no/such/file.sql"], ["--dialect", "oracle", "x.sql"], ["--format", "xml"]],
)
def test_usage_errors_and_unreadable_input_exit_two(
    args: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        raise SystemExit(main(["lint", *args]))
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert len(err.strip().splitlines()) == 1
    assert "Traceback" not in err


def test_works_as_a_pre_commit_style_subprocess(tmp_path: Path) -> None:
    good, bad = tmp_path / "good.sql", tmp_path / "bad.sql"
    good.write_text("SELECT 1;")
    bad.write_text("ALTER TABLE users DROP COLUMN email;")
    command = [sys.executable, "-m", "sandbox", "lint"]
    ok = subprocess.run([*command, str(good)], capture_output=True, text=True, check=False)
    assert (ok.returncode, ok.stdout) == (0, "")
    failed = subprocess.run(
        [*command, str(good), str(bad)], capture_output=True, text=True, check=False
    )
    assert failed.returncode == 1
    assert "drop-column" in failed.stdout
