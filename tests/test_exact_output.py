"""What a run reports is what the engine holds: scripts byte for byte, values exact in JSON,
control characters shown rather than obeyed, and option values within sane bounds.

Everything runs through the real command (`sandbox.cli.main`) on real engines.
"""

from __future__ import annotations

import io
import json
import os
import sys
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from sandbox.cli import main
from tests import test_targets as shared
from tests.conftest import POSTGRES_ENV, without_role_warning

private_tmp = shared.private_tmp


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def engine_args(engine: str) -> list[str]:
    if engine == "postgres":
        return ["--engine", "postgres", "--url", os.environ[POSTGRES_ENV]]
    return ["--engine", "sqlite"]


def run_json(capsys: pytest.CaptureFixture[str], engine: str, *args: str) -> list[dict[str, Any]]:
    code, out, err = cli(capsys, "run", *args, *engine_args(engine), "--format", "json")
    assert code == 0, err
    err = without_role_warning(err)
    assert all(line.startswith("wrote ") for line in err.splitlines())  # only --export's
    statements: list[dict[str, Any]] = json.loads(out)["statements"]
    return statements


# --------------------------------------------------------------------------- scripts


def hex_of(engine: str, column: str) -> str:
    if engine == "sqlite":
        return f"lower(hex({column}))"
    return f"encode(convert_to({column}, 'UTF8'), 'hex')"


def crlf_script(engine: str) -> bytes:
    # Real CR LF bytes: between the statements, and inside the string literals.
    return (
        b"CREATE TABLE t (k INTEGER, v TEXT);\r\n"
        b"INSERT INTO t VALUES (1, 'a\r\nb'), (2, 'c\rd');\r\n"
        + f"SELECT v, length(v), {hex_of(engine, 'v')} FROM t ORDER BY k;\r\n".encode()
        + b"DELETE FROM t;\r\n"
    )


EXPECTED_ROWS = [["a\r\nb", 4, "610d0a62"], ["c\rd", 3, "630d64"]]


def test_a_script_file_reaches_the_engine_byte_for_byte(
    engine: str,
    tmp_path: Path,
    private_tmp: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    script = tmp_path / "crlf.sql"
    script.write_bytes(crlf_script(engine))
    from_file = run_json(capsys, engine, str(script), "--yes")
    select = from_file[2]
    assert select["rows"] == EXPECTED_ROWS
    # The CRLF inside 'a\r\nb' is one line break, the lone CR another.
    assert [s["line"] for s in from_file] == [1, 2, 5, 6]

    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(crlf_script(engine))))
    from_stdin = run_json(capsys, engine, "-", "--yes")
    assert [s["rows"] for s in from_stdin] == [s["rows"] for s in from_file]
    assert [s["sql"] for s in from_stdin] == [s["sql"] for s in from_file]
    assert from_file[1]["sql"] == "INSERT INTO t VALUES (1, 'a\r\nb'), (2, 'c\rd')"


def test_lint_counts_lines_of_a_crlf_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "crlf.sql"
    script.write_bytes(crlf_script("sqlite"))
    code, out, err = cli(capsys, "lint", str(script))
    assert (code, err) == (1, "")
    assert out == (
        f"{script}:6:1: error delete-without-where DELETE without WHERE: it would delete every "
        "row in t\n"
    )


# --------------------------------------------------------------------------- control characters

ESC_CLEAR = "\x1b[2J"


def controls_script(engine: str) -> str:
    char = "char" if engine == "sqlite" else "chr"
    return (
        f"SELECT {char}(27) || '[2Jx' AS v, 'a' || {char}(10) || 'b' || {char}(9) || 'c' AS w, "
        f'{char}(13) || {char}(127) || {char}(155) AS "c{ESC_CLEAR}ol";\n'
        f'SELECT * FROM "{ESC_CLEAR}red";\n'
    )


def assert_no_raw_controls(text: str) -> None:
    raw = sorted(
        {hex(ord(c)) for c in text if c != "\n" and (ord(c) < 0x20 or 0x7F <= ord(c) < 0xA0)}
    )
    assert raw == []


def test_control_characters_are_shown_escaped_and_json_keeps_them(
    engine: str, tmp_path: Path, private_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "controls.sql"
    script.write_text(controls_script(engine), encoding="utf-8")
    code, text, err = cli(
        capsys, "run", str(script), *engine_args(engine), "--export", str(tmp_path / "x")
    )
    assert code == 0, err
    assert_no_raw_controls(text)
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.strip().startswith("v "))
    assert lines[header].split() == ["v", "|", "w", "|", "c\\x1b[2Jol"]
    assert lines[header + 2].split(" | ") == ["      \\x1b[2Jx", "a\\nb\\tc", "\\r\\x7f\\x9b"]
    assert any("\\x1b[2Jred" in line and "line 2" not in line for line in lines)  # the error
    runbook = (tmp_path / "x.md").read_text(encoding="utf-8")
    assert_no_raw_controls(runbook)
    assert "\\x1b[2Jred" in runbook

    statements = run_json(capsys, engine, str(script))
    assert statements[0]["columns"] == ["v", "w", f"c{ESC_CLEAR}ol"]
    assert statements[0]["rows"] == [[f"{ESC_CLEAR}x", "a\nb\tc", "\r\x7f\x9b"]]
    code, out, _ = cli(capsys, "run", str(script), *engine_args(engine), "--format", "json")
    assert_no_raw_controls(out)  # JSON escapes them (\u001b, \u007f, \u009b), values intact
    assert "\\u009b" in out
    # The replay script must replay the statement itself, escape sequence and all.
    replay = (tmp_path / "x.sql").read_text(encoding="utf-8")
    assert f'SELECT * FROM "{ESC_CLEAR}red";' in replay


# --------------------------------------------------------------------------- JSON values


@pytest.mark.postgres
def test_postgres_numbers_and_infinities_keep_their_exact_values(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "values.sql"
    script.write_text(
        "SELECT 12345678901234567890.123456789::numeric, 0.10::numeric, 'NaN'::numeric,"
        " 'Infinity'::numeric, '-Infinity'::numeric, 'NaN'::float8, 'Infinity'::float8,"
        " '-Infinity'::float8, 1.5::float8, 9223372036854775807::bigint;\n"
        "SET TimeZone = 'UTC';\n"
        "SELECT 'infinity'::timestamp, '-infinity'::timestamp, 'infinity'::timestamptz,"
        " '-infinity'::date, ARRAY['infinity'::date, '2024-02-29'],"
        " '2024-02-29 12:00:01.5'::timestamp, '2024-02-29 12:00:01+00'::timestamptz,"
        " '2024-02-29'::date;\n",
        encoding="utf-8",
    )
    statements = run_json(capsys, "postgres", str(script), "--export", str(tmp_path / "x.json"))
    numbers, _, moments = statements
    assert numbers["rows"] == [
        [
            "12345678901234567890.123456789",
            "0.10",
            "NaN",
            "Infinity",
            "-Infinity",
            "NaN",
            "Infinity",
            "-Infinity",
            1.5,
            9223372036854775807,
        ]
    ]
    assert moments["error"] is None
    assert moments["rows"] == [
        [
            "infinity",
            "-infinity",
            "infinity",
            "-infinity",
            ["infinity", "2024-02-29"],
            "2024-02-29T12:00:01.500000",
            "2024-02-29T12:00:01+00:00",
            "2024-02-29",
        ]
    ]
    exported = json.loads((tmp_path / "x.json").read_text(encoding="utf-8"))["statements"]
    assert [s["rows"] for s in exported] == [s["rows"] for s in statements]

    code, text, err = cli(capsys, "run", str(script), *engine_args("postgres"))
    assert code == 0, err
    assert "12345678901234567890.123456789 |    0.10 |" in text  # numbers right-aligned
    assert "9999-12-31" not in text and "0001-01-01" not in text

    # Only dbsandbox's own connections read infinity so: psycopg2's global casters are intact.
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT 'infinity'::date")
        assert str(cursor.fetchone()[0]) == "9999-12-31"
    conn.close()


def test_sqlite_infinities_are_strings_and_numbers_stay_numbers(
    tmp_path: Path, private_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "values.sql"
    script.write_text("SELECT 1e999, -1e999, 9223372036854775807, 0.1, 2.5e-10;\n")
    statements = run_json(capsys, "sqlite", str(script))
    assert statements[0]["rows"] == [["Infinity", "-Infinity", 9223372036854775807, 0.1, 2.5e-10]]


# --------------------------------------------------------------------------- option bounds


@pytest.mark.parametrize(
    ("option", "value", "says"),
    [
        ("--busy-timeout", "600001", "must be from 0 to 600,000 ms (10 minutes), not 600,001"),
        ("--busy-timeout", "-1", "must be from 0 to 600,000 ms"),
        ("--page-size", "0", "must be from 1 to 100,000, not 0"),
        ("--page-size", "100001", "must be from 1 to 100,000, not 100,001"),
        ("--statement-timeout", "86401", "must be at most 86,400 seconds (24 hours)"),
        ("--statement-timeout", "nan", "must be more than 0 seconds"),
        ("--wait-timeout", "inf", "must be at most 86,400 seconds (24 hours)"),
        ("--wait-timeout", "0", "must be more than 0 seconds"),
    ],
)
def test_numeric_options_out_of_bounds_are_one_line_errors(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], option: str, value: str, says: str
) -> None:
    script = tmp_path / "s.sql"
    script.write_text("SELECT 1;\n")
    code, out, err = cli(capsys, "run", str(script), f"{option}={value}")
    assert (code, out) == (2, "")
    assert err.startswith(f"dbsandbox run: argument {option}: {says}")
    assert err.endswith(" (see dbsandbox run --help)\n") and len(err.splitlines()) == 1


def test_play_bounds_its_statement_timeout_too(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "play", "--statement-timeout", "1e9")
    assert (code, out) == (2, "")
    assert "must be at most 86,400 seconds" in err and len(err.splitlines()) == 1


def test_the_largest_allowed_values_run(
    tmp_path: Path, private_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "s.sql"
    script.write_text("SELECT 1;\n")
    limits = ["--busy-timeout", "600000", "--page-size", "100000"]
    limits += ["--statement-timeout", "86400", "--wait-timeout", "86400"]
    statements = run_json(capsys, "sqlite", str(script), *limits)
    assert statements[0]["rows"] == [[1]]
