"""The real `dbsandbox` command: in-process through `main([...])`, and as a separate process
where the exit code, signals or the console script itself matter."""

from __future__ import annotations

import contextlib
import hashlib
import io
import json
import logging
import os
import signal
import sqlite3
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import Any

import pytest

from sandbox import __version__
from sandbox.cli import main
from sandbox.targets import SCRATCH_PREFIX
from tests import test_targets as shared
from tests.conftest import without_role_warning
from tests.test_targets import database_exists, pg_rows, unique, url_for

private_tmp = shared.private_tmp
test_database = shared.test_database
limited_role = shared.limited_role

STATEMENT_KEYS = {
    "session",
    "sql",
    "line",
    "status",
    "waited",
    "rowcount",
    "columns",
    "rows",
    "more_rows",
    "tag",
    "error",
    "tx_after",
}

SCRIPT = """CREATE TABLE fruit (id INTEGER PRIMARY KEY, name TEXT);
INSERT INTO fruit (name) VALUES ('apple'), ('pear');
SELECT id, name FROM fruit ORDER BY id;
SELECT * FROM no_such_table;
BEGIN;
INSERT INTO fruit (name) VALUES ('plum');
\\session B
SELECT count(*) FROM fruit;
\\session A
COMMIT;
\\session B
SELECT count(*) FROM fruit;
"""


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the command in-process; argparse's own exits count as exit codes."""
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, without_role_warning(captured.err)


def assert_one_line_error(code: int, out: str, err: str, *fragments: str) -> None:
    assert code == 2, (out, err)
    assert out == ""
    assert len(err.splitlines()) == 1, err
    assert err.endswith("\n")
    assert "Traceback" not in err
    for fragment in fragments:
        assert fragment in err


def write(path: Path, text: str) -> str:
    path.write_text(text, encoding="utf-8")
    return str(path)


@pytest.fixture
def no_url_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBSANDBOX_POSTGRES_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)


# --------------------------------------------------------------------------- run: reports


def test_run_text_report(
    tmp_path: Path, private_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "run", write(tmp_path / "s.sql", SCRIPT))
    assert (code, err) == (0, "")
    lines = out.splitlines()
    assert lines[0].startswith("dbsandbox · sqlite · sqlite file ")
    assert "[A] line 1: CREATE TABLE fruit (id INTEGER PRIMARY KEY, name TEXT)" in lines
    assert "[B] line 8: SELECT count(*) FROM fruit" in lines
    assert any("apple" in line for line in lines)
    assert any("error SQLITE_ERROR: no such table: no_such_table" in line for line in lines)
    assert "timeline" in lines
    assert list(private_tmp.iterdir()) == []  # the sandbox is gone after the run


def test_run_json_report(
    tmp_path: Path, private_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = cli(capsys, "run", write(tmp_path / "s.sql", SCRIPT), "--format", "json")
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["engine"] == "sqlite"
    statements = report["statements"]
    for statement in statements:
        assert statement.keys() >= STATEMENT_KEYS
    assert [(s["session"], s["line"], s["status"]) for s in statements] == [
        ("A", 1, "ok"),
        ("A", 2, "ok"),
        ("A", 3, "ok"),
        ("A", 4, "error"),
        ("A", 5, "ok"),
        ("A", 6, "ok"),
        ("B", 8, "ok"),
        ("A", 10, "ok"),
        ("B", 12, "ok"),
    ]
    assert statements[1]["rowcount"] == 2
    assert statements[2]["columns"] == ["id", "name"]
    assert statements[2]["rows"] == [[1, "apple"], [2, "pear"]]
    assert statements[2]["more_rows"] is False
    assert statements[3]["error"]["code"] == "SQLITE_ERROR"
    assert "no such table: no_such_table" in statements[3]["error"]["message"]
    assert statements[3]["rows"] == []
    assert statements[4]["tx_after"] == "in_transaction"
    assert statements[6]["rows"] == [[2]]  # B does not see A's uncommitted plum
    assert statements[7]["tx_after"] == "idle"
    assert statements[8]["rows"] == [[3]]  # ... and does after the COMMIT
    kinds = [event["kind"] for event in report["timeline"]]
    assert kinds.count("session_opened") == 2
    assert kinds.count("session_closed") == 2
    assert kinds.count("statement") == len(statements)


def test_run_with_only_sql_errors_still_exits_0(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = write(tmp_path / "bad.sql", "SELEC 1;\nSELECT * FROM missing;\nINSERT INTO x VALUES;")
    code, out, err = cli(capsys, "run", script, "--format", "json")
    assert (code, err) == (0, "")
    assert [s["status"] for s in json.loads(out)["statements"]] == ["error"] * 3


def test_run_reads_the_script_from_stdin(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stdin = io.TextIOWrapper(io.BytesIO("SELECT 41 + 1 AS answer, 'ünïcode';\n".encode()))
    monkeypatch.setattr(sys, "stdin", stdin)
    code, out, err = cli(capsys, "run", "-", "--format", "json")
    assert (code, err) == (0, "")
    statement = json.loads(out)["statements"][0]
    assert statement["rows"] == [[42, "ünïcode"]]


@pytest.mark.parametrize(("option", "expected"), [((), 200), (("--busy-timeout", "750"), 750)])
def test_run_busy_timeout_reaches_the_session(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    option: tuple[str, ...],
    expected: int,
) -> None:
    script = write(tmp_path / "s.sql", "PRAGMA busy_timeout;\nPRAGMA journal_mode;\n")
    code, out, err = cli(capsys, "run", script, "--format", "json", *option)
    assert (code, err) == (0, "")
    rows = [s["rows"] for s in json.loads(out)["statements"]]
    assert rows == [[[expected]], [["wal"]]]


def test_run_page_size_limits_rows_and_says_there_are_more(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = write(
        tmp_path / "s.sql",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 5) "
        "SELECT i FROM n;",
    )
    code, out, err = cli(capsys, "run", script, "--format", "json", "--page-size", "2")
    assert (code, err) == (0, "")
    statement = json.loads(out)["statements"][0]
    assert statement["rows"] == [[1], [2]]
    assert statement["more_rows"] is True


def test_run_from_a_copy_leaves_the_original_alone(
    tmp_path: Path, private_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    original = tmp_path / "shop.db"
    with contextlib.closing(sqlite3.connect(original)) as conn:
        conn.execute("CREATE TABLE items (x)")
        conn.executemany("INSERT INTO items VALUES (?)", [(i,) for i in range(7)])
        conn.commit()
    digest = hashlib.sha256(original.read_bytes()).hexdigest()
    script = write(tmp_path / "s.sql", "SELECT count(*) FROM items;\nDROP TABLE items;\n")

    # --yes: the DROP is confirmed; this test is about the copy, not the guard.
    code, out, err = cli(
        capsys, "run", script, "--from", str(original), "--format", "json", "--yes"
    )

    assert (code, err) == (0, "")
    statements = json.loads(out)["statements"]
    assert statements[0]["rows"] == [[7]]
    assert statements[1]["status"] == "ok"
    assert hashlib.sha256(original.read_bytes()).hexdigest() == digest
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.sql", "shop.db", "tmp"]


def test_main_restores_the_signal_handlers_it_installs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def mine(signum: int, frame: FrameType | None) -> None:
        raise AssertionError("never called")

    saved = {sig: signal.signal(sig, mine) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        code, _, err = cli(capsys, "run", write(tmp_path / "s.sql", "SELECT 1;"))
        assert (code, err) == (0, "")
        assert signal.getsignal(signal.SIGTERM) is mine
        assert signal.getsignal(signal.SIGHUP) is mine
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)


# --------------------------------------------------------------------------- run: bad input


def test_missing_script_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    missing = str(tmp_path / "nope.sql")
    assert_one_line_error(*cli(capsys, "run", missing), f"cannot read {missing}: no such file")


def test_script_that_is_a_directory(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(*cli(capsys, "run", str(tmp_path)), "it is a directory")


def test_script_that_is_not_utf8(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    script = tmp_path / "latin1.sql"
    script.write_bytes("SELECT 'café';".encode("latin-1"))
    assert_one_line_error(*cli(capsys, "run", str(script)), "not UTF-8 text")


def test_stdin_that_is_not_utf8(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"SELECT '\xff';")))
    assert_one_line_error(*cli(capsys, "run", "-"), "standard input: not UTF-8 text")


@pytest.mark.parametrize(
    ("extra", "fragments"),
    [
        (("--engine", "oracle"), ("invalid choice: 'oracle'",)),
        (("--busy-timeout", "soon"), ("--busy-timeout", "not a whole number")),
        (("--busy-timeout", "-5"), ("--busy-timeout", "must be from 0 to 600,000 ms")),
        (("--page-size", "0"), ("--page-size", "must be from 1 to 100,000")),
        (("--statement-timeout", "0"), ("--statement-timeout", "more than 0")),
        (("--format", "xml"), ("invalid choice: 'xml'",)),
        (("--url", "postgresql://u@h/db"), ("--url is for --engine postgres",)),
        (("--engine", "postgres", "--from", "x.db"), ("--from", "only with --engine sqlite")),
        (
            ("--engine", "postgres", "--url", "postgresql://postgres@127.0.0.1:1/postgres"),
            ("cannot connect to postgresql://postgres@127.0.0.1:1/postgres",),
        ),
        (("--engine", "postgres", "--url", "mysql://u@h/db"), ("unsupported URL scheme",)),
    ],
)
def test_bad_options_are_one_line_errors(
    tmp_path: Path,
    private_tmp: Path,
    capsys: pytest.CaptureFixture[str],
    extra: tuple[str, ...],
    fragments: tuple[str, ...],
) -> None:
    script = write(tmp_path / "s.sql", "SELECT 1;")
    assert_one_line_error(*cli(capsys, "run", script, *extra), *fragments)
    assert list(private_tmp.iterdir()) == []


def test_postgres_without_any_url_is_a_one_line_error(
    tmp_path: Path,
    no_url_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    script = write(tmp_path / "s.sql", "SELECT 1;")
    assert_one_line_error(
        *cli(capsys, "run", script, "--engine", "postgres"), "DBSANDBOX_POSTGRES_URL"
    )


@pytest.mark.parametrize(
    ("script", "fragments"),
    [
        ("SELECT 1;\n\\foo bar\nSELECT 2;\n", (":2: unknown command \\foo", "\\session")),
        ("\\session\nSELECT 1;\n", (":1: \\session needs one name",)),
        ("\\session A B\nSELECT 1;\n", (":1: \\session needs one name",)),
    ],
)
def test_bad_meta_commands_are_one_line_errors_before_any_sandbox_exists(
    tmp_path: Path,
    private_tmp: Path,
    capsys: pytest.CaptureFixture[str],
    script: str,
    fragments: tuple[str, ...],
) -> None:
    path = write(tmp_path / "s.sql", script)
    assert_one_line_error(*cli(capsys, "run", path), path, *fragments)
    assert list(private_tmp.iterdir()) == []


# --------------------------------------------------------------------------- help and version


def test_help_lists_every_command(capsys: pytest.CaptureFixture[str]) -> None:
    # Plain `dbsandbox` opens the app (tests/test_ui_app.py); --help is the usage.
    with pytest.raises(SystemExit) as done:
        main(["--help"])
    assert done.value.code == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: dbsandbox")
    for command in ("run", "lint", "play", "scenarios", "validate", "clean"):
        assert command in out


def test_help_says_what_bare_dbsandbox_does_and_every_exit_code(
    capsys: pytest.CaptureFixture[str],
) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = " ".join(capsys.readouterr().out.split())  # argparse wraps at the terminal width
    assert "Without a COMMAND, dbsandbox opens the terminal app on a fresh SQLite sandbox" in out
    assert "scenario picker" in out
    assert "`dbsandbox --engine postgres [--url URL]`" in out
    for code in (
        "0 success",
        "1 what was checked failed",
        "2 bad input",
        "3 `run`",
        "4 it ran",
        "130 interrupted",
    ):
        assert code in out, code


@pytest.mark.parametrize("command", ["run", "lint", "validate", "clean"])
def test_each_command_help_lists_its_exit_codes(
    capsys: pytest.CaptureFixture[str], command: str
) -> None:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out = " ".join(capsys.readouterr().out.split())
    assert "Exit codes: 0 " in out
    assert "2 bad input" in out or "2 usage errors" in out
    assert "130 interrupted" in out
    assert ("4 it ran, but the sandbox could not be removed" in out) == (command == "run")


class AppOpened:
    """Stands in for the terminal app: what bare `dbsandbox` or `play` would open it with."""

    def __init__(self) -> None:
        self.calls: list[tuple[Any, Any, bool, float]] = []

    def __call__(
        self, options: object, scenario: object, pick: bool, statement_timeout_s: float = 30.0
    ) -> int:
        self.calls.append((options, scenario, pick, statement_timeout_s))
        return 0


@pytest.fixture
def app_opened(monkeypatch: pytest.MonkeyPatch) -> AppOpened:
    import sandbox.cli

    opened = AppOpened()
    monkeypatch.setattr(sandbox.cli, "_open_app", opened)
    return opened


def test_bare_dbsandbox_opens_the_picker_on_a_fresh_sqlite_sandbox(
    capsys: pytest.CaptureFixture[str], app_opened: AppOpened
) -> None:
    from sandbox.targets import TargetOptions

    assert cli(capsys) == (0, "", "")
    assert app_opened.calls == [(TargetOptions(), None, True, 30.0)]


@pytest.mark.parametrize(
    "options",
    [
        ["--engine", "sqlite", "--busy-timeout", "1500", "--statement-timeout", "7.5"],
        ["--from", "FROM"],
        ["--engine", "postgres", "--url", "postgresql://alice@db.invalid:5433/app"],
    ],
)
def test_bare_dbsandbox_takes_plays_options_and_does_what_play_does(
    capsys: pytest.CaptureFixture[str],
    app_opened: AppOpened,
    tmp_path: Path,
    options: list[str],
) -> None:
    source = tmp_path / "from.db"
    sqlite3.connect(source).close()
    options = [str(source) if part == "FROM" else part for part in options]
    assert cli(capsys, *options) == (0, "", "")
    assert cli(capsys, "play", *options) == (0, "", "")
    bare, play = app_opened.calls
    assert bare == play
    _, scenario, pick, timeout = bare
    assert (scenario, pick) == (None, True)
    assert timeout == (7.5 if "7.5" in options else 30.0)


def test_bare_dbsandbox_refuses_what_play_refuses(
    capsys: pytest.CaptureFixture[str], app_opened: AppOpened
) -> None:
    assert_one_line_error(
        *cli(capsys, "--url", "postgresql://alice@db.invalid/app"), "--url is for --engine postgres"
    )
    assert_one_line_error(*cli(capsys, "--busy-timeout", "-1"), "--busy-timeout", "must be from")
    assert_one_line_error(*cli(capsys, "--statement-timeout", "0"), "more than 0 seconds")
    assert app_opened.calls == []


@pytest.mark.parametrize(
    ("argv", "flag", "command"),
    [
        (["--engine", "postgres", "run", "x.sql"], "--engine", "run"),
        (["--url", "postgresql://alice@db.invalid/app", "clean"], "--url", "clean"),
        (["--statement-timeout", "5", "play"], "--statement-timeout", "play"),
    ],
)
def test_app_options_before_a_command_are_refused_not_dropped(
    capsys: pytest.CaptureFixture[str],
    app_opened: AppOpened,
    argv: list[str],
    flag: str,
    command: str,
) -> None:
    # Accepted, the command's own default would silently win (run on SQLite, not PostgreSQL).
    code, out, err = cli(capsys, *argv)
    assert_one_line_error(code, out, err, f"{flag} before a command is for the app only")
    assert f"put it after the command: dbsandbox {command} {flag}" in err
    assert "alice" not in err
    assert app_opened.calls == []


def test_commands_still_take_the_same_options_after_their_name(
    capsys: pytest.CaptureFixture[str], app_opened: AppOpened, tmp_path: Path
) -> None:
    assert cli(capsys, "play", "--engine", "sqlite", "--statement-timeout", "3") == (0, "", "")
    assert app_opened.calls[0][3] == 3.0
    script = write(tmp_path / "one.sql", "SELECT 41 + 1;\n")
    code, out, _ = cli(capsys, "run", "--engine", "sqlite", "--busy-timeout", "50", script)
    assert code == 0 and "42" in out


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = cli(capsys, "--version")
    assert (code, out, err) == (0, f"dbsandbox {__version__}\n", "")


def test_unknown_command_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert_one_line_error(*cli(capsys, "frobnicate"), "invalid choice: 'frobnicate'")


# --------------------------------------------------------------------------- separate processes


def console_script() -> str:
    path = Path(sys.executable).parent / "dbsandbox"
    assert path.is_file(), f"the console script is not installed beside {sys.executable}"
    return str(path)


def child_env(**extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("DBSANDBOX_POSTGRES_URL", "DATABASE_URL")
    }
    env.update(extra)
    return env


def test_console_script_end_to_end(tmp_path: Path) -> None:
    script = write(
        tmp_path / "s.sql", "CREATE TABLE t (x);\nINSERT INTO t VALUES (5);\nSELECT x * 2 FROM t;\n"
    )
    done = subprocess.run(
        [console_script(), "run", script, "--format", "json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(TMPDIR=str(tmp_path)),
        check=False,
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert json.loads(done.stdout)["statements"][2]["rows"] == [[10]]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["s.sql"]  # no sandbox left behind


def test_console_script_usage_error_exits_2_without_traceback(tmp_path: Path) -> None:
    done = subprocess.run(
        [console_script(), "run", str(tmp_path / "missing.sql")],
        capture_output=True,
        text=True,
        timeout=60,
        env=child_env(),
        check=False,
    )
    assert_one_line_error(done.returncode, done.stdout, done.stderr, "no such file")


def test_undecodable_stdin_under_the_c_locale_is_a_one_line_error() -> None:
    """Under LC_ALL=C Python reads stdin with surrogateescape: bad bytes must not reach SQLite."""
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "run", "-"],
        input=b"SELECT '\xff\xfe';\n",
        capture_output=True,
        timeout=60,
        env=child_env(LC_ALL="C", LANG="C", PYTHONIOENCODING=""),
        check=False,
    )
    err = done.stderr.decode("utf-8", "replace")
    assert_one_line_error(done.returncode, done.stdout.decode(), err, "not UTF-8 text")


# --------------------------------------------------------------------------- PostgreSQL


def secret() -> str:
    """A password no earlier test registered: masking must not pass thanks to another test."""
    return unique("S3cretPW")


def with_password(url: str, password: str) -> str:
    import sqlalchemy as sa

    return sa.make_url(url).set(password=password).render_as_string(hide_password=False)


PG_SCRIPT = """SELECT current_database();
SELECT * FROM no_such_table;
SELECT 1 / 0;
SELECT 'still running';
"""


@pytest.mark.postgres
def test_postgres_run_json_and_text_never_show_the_password(
    postgres_url: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="sqlalchemy")  # its pool logs every connection
    password = secret()
    url = with_password(postgres_url, password)  # trust auth: the password is not checked
    script = write(tmp_path / "s.sql", PG_SCRIPT)

    code, out, err = cli(
        capsys, "run", script, "--engine", "postgres", "--url", url, "--format", "json"
    )
    assert (code, err) == (0, "")
    report = json.loads(out)
    assert report["engine"] == "postgres"
    assert "***" in report["target"]
    statements = report["statements"]
    scratch = statements[0]["rows"][0][0]
    assert scratch.startswith(SCRATCH_PREFIX)
    assert [s["status"] for s in statements] == ["ok", "error", "error", "ok"]
    assert statements[1]["error"]["code"] == "42P01"
    assert statements[2]["error"]["code"] == "22012"
    assert statements[3]["rows"] == [["still running"]]
    assert password not in out
    assert not database_exists(postgres_url, scratch)

    code, text, err = cli(capsys, "run", script, "--engine", "postgres", "--url", url)
    assert (code, err) == (0, "")
    assert text.startswith("dbsandbox · postgres · postgres database postgresql://")
    assert "division by zero" in text
    assert password not in text

    assert caplog.records, "the sqlalchemy loggers recorded nothing: the check would be empty"
    assert password not in caplog.text


@pytest.mark.postgres
def test_postgres_run_with_the_url_from_a_dotenv_file(
    postgres_url: str,
    tmp_path: Path,
    no_url_env: None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    password = secret()
    (tmp_path / ".env").write_text(
        f"DBSANDBOX_POSTGRES_URL={with_password(postgres_url, password)}\n"
    )
    monkeypatch.chdir(tmp_path)
    script = write(tmp_path / "s.sql", "SELECT current_database();")
    code, out, err = cli(capsys, "run", script, "--engine", "postgres", "--format", "json")
    assert (code, err) == (0, "")
    assert json.loads(out)["statements"][0]["rows"][0][0].startswith(SCRATCH_PREFIX)
    assert password not in out


@pytest.mark.parametrize(
    "template",
    [
        "postgresql://postgres:{pw}@127.0.0.1:1/postgres",  # nothing listens on port 1
        "postgresql://postgres:{pw}@127.0.0.1:notaport/postgres",  # does not parse
        "postgresql://postgres:{pw}@no-such-host.invalid/postgres",  # does not resolve
        "postgresql://postgres:p@{pw}@127.0.0.1/postgres",  # an @ that was not written as %40
    ],
)
def test_failed_connections_never_show_the_password(
    tmp_path: Path,
    private_tmp: Path,
    capsys: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
    template: str,
) -> None:
    caplog.set_level(logging.DEBUG)
    password = secret()
    script = write(tmp_path / "s.sql", "SELECT 1;")
    url = template.format(pw=password)
    code, out, err = cli(capsys, "run", script, "--engine", "postgres", "--url", url)
    assert_one_line_error(code, out, err)
    assert password not in out + err
    assert password not in caplog.text
    code, out, err = cli(capsys, "clean", "--url", url)
    assert_one_line_error(code, out, err)
    assert password not in out + err


@pytest.mark.postgres
def test_schema_fallback_is_announced(
    postgres_url: str,
    test_database: str,
    limited_role: str,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    pg_rows(postgres_url, f'GRANT CREATE ON DATABASE "{test_database}" TO "{limited_role}"')
    url = url_for(postgres_url, limited_role, test_database)
    script = write(tmp_path / "s.sql", "CREATE TABLE t (x int);\nSELECT current_schema();\n")

    code, out, err = cli(capsys, "run", script, "--engine", "postgres", "--url", url)
    assert (code, err) == (0, "")
    assert "note: the role may not create databases: using scratch schema dbsandbox_" in out

    code, out, err = cli(
        capsys, "run", script, "--engine", "postgres", "--url", url, "--format", "json"
    )
    assert (code, err) == (0, "")
    report = json.loads(out)
    schema = report["statements"][1]["rows"][0][0]
    assert report["notices"] == [
        f"the role may not create databases: using scratch schema {schema} "
        f"in database {test_database} instead (dropped on exit)"
    ]
    left = pg_rows(
        postgres_url,
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'dbsandbox\\_%%'",
        dbname=test_database,
    )
    assert left == []


# --------------------------------------------------------------------------- interrupts


@contextlib.contextmanager
def sandbox_process(args: list[str]) -> Iterator[subprocess.Popen[str]]:
    # SIGINT back to the default, so Python turns it into KeyboardInterrupt even when the
    # test run itself was started with SIGINT ignored (a background job).
    process = subprocess.Popen(
        [sys.executable, "-m", "sandbox", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()


def poll_for(sql: str, params: tuple[Any, ...], url: str, process: subprocess.Popen[str]) -> Any:
    """Poll the server until `sql` returns a row; fails if the sandbox process dies first."""
    deadline = time.monotonic() + 30  # a bound against hanging, not a measurement
    while time.monotonic() < deadline:
        rows = pg_rows(url, sql, params)
        if rows:
            return rows[0]
        if process.poll() is not None:
            out, err = process.communicate()
            raise AssertionError(f"the sandbox exited early: {out}{err}")
        time.sleep(0.02)
    raise AssertionError("the sandbox never got there")


def assert_interrupted_cleanly(
    process: subprocess.Popen[str], postgres_url: str, name: str
) -> None:
    out, err = process.communicate(timeout=30)  # far less than the 300 s the statement sleeps
    assert process.returncode == 130, err  # non-zero: the script did not complete
    assert out == ""
    assert without_role_warning(err) == "dbsandbox: interrupted; the sandbox was removed\n"
    assert not database_exists(postgres_url, name)


@pytest.mark.postgres
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP])
def test_signal_during_a_long_statement_drops_the_scratch_database(
    postgres_url: str, tmp_path: Path, signum: signal.Signals
) -> None:
    session = unique("W")  # its name is in the application_name: how we find this process
    script = write(tmp_path / "s.sql", f"\\session {session}\nSELECT pg_sleep(300);\n")
    args = ["run", script, "--engine", "postgres", "--url", postgres_url]
    with sandbox_process([*args, "--statement-timeout", "600"]) as process:
        (name,) = poll_for(
            "SELECT datname FROM pg_stat_activity "
            "WHERE application_name LIKE %s AND state = 'active' AND wait_event = 'PgSleep'",
            (f"dbsandbox:%:{session}",),
            postgres_url,
            process,
        )
        assert name.startswith(SCRATCH_PREFIX)
        process.send_signal(signum)
        assert_interrupted_cleanly(process, postgres_url, name)


@pytest.mark.postgres
def test_ctrl_c_right_after_the_scratch_database_appears(
    postgres_url: str, test_database: str, tmp_path: Path
) -> None:
    script = write(tmp_path / "s.sql", "SELECT pg_sleep(300);\n")
    url = url_for(postgres_url, database=test_database)  # its admin connection is found here
    with sandbox_process(["run", script, "--engine", "postgres", "--url", url]) as process:
        (application,) = poll_for(
            "SELECT application_name FROM pg_stat_activity "
            "WHERE datname = %s AND application_name LIKE 'dbsandbox:dbsandbox\\_%%'",
            (test_database,),
            postgres_url,
            process,
        )
        name = application.removeprefix("dbsandbox:")
        poll_for("SELECT 1 FROM pg_database WHERE datname = %s", (name,), postgres_url, process)
        process.send_signal(signal.SIGINT)
        assert_interrupted_cleanly(process, postgres_url, name)


def test_a_librarys_own_error_log_never_reaches_the_terminal(tmp_path: Path) -> None:
    """SQLAlchemy's pool logs a connection it could not close, with the traceback, when a
    second Ctrl+C lands inside that close: Python printed it above dbsandbox's own line.
    (In a process of its own: pytest's log capture would hide what a user sees.)"""
    script = tmp_path / "one.sql"
    script.write_text("SELECT 1;\n", encoding="utf-8")
    program = f"""
import logging
from sandbox.cli import main
assert main(["lint", {str(script)!r}]) == 0
try:
    raise KeyboardInterrupt
except KeyboardInterrupt:
    logging.getLogger("sqlalchemy.pool.impl.QueuePool").error(
        "Exception closing connection %r", "conn", exc_info=True
    )
"""
    done = subprocess.run(
        [sys.executable, "-c", program], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "Exception closing" not in done.stderr


def test_a_ctrl_c_while_dbsandbox_is_still_importing_says_nothing_was_made(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # The command's entry point, with the CLI module's import interrupted (a Ctrl+C in the
    # first tenth of a second on a busy machine): one line, exit 130, no traceback.
    from sandbox import __main__ as entry_point

    class Importing(types.ModuleType):
        def __getattr__(self, name: str) -> Any:
            raise KeyboardInterrupt

    monkeypatch.setitem(sys.modules, "sandbox.cli", Importing("sandbox.cli"))
    assert entry_point.entry() == 130
    assert capsys.readouterr().err == "dbsandbox: interrupted before anything was made\n"


def test_a_ctrl_c_that_slips_past_main_still_removes_the_sandbox(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    # A second Ctrl+C while main() reports the first ends main() itself: the entry point
    # removes what the command made and says so, as main() would have.
    from sandbox import __main__ as entry_point
    from sandbox import cli
    from sandbox.targets import SqliteTarget, TargetOptions, open_target

    made: list[Path] = []

    def interrupted_main() -> int:
        target = open_target(TargetOptions(engine="sqlite"))  # left open, as a crash would
        assert isinstance(target, SqliteTarget)
        made.append(target.path)
        raise KeyboardInterrupt

    monkeypatch.setattr(cli, "main", interrupted_main)
    assert entry_point.entry() == 130
    assert capsys.readouterr().err == "dbsandbox: interrupted; the sandbox was removed\n"
    assert made and not made[0].exists()
