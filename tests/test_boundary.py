"""The sandbox boundary: a statement that reaches outside the sandbox never runs, on any path.

Every blocked form goes through the real `dbsandbox run` (its main function) with --yes, on
the real PostgreSQL server or a real SQLite file, and what it would have touched outside is
read back afterwards and found unchanged: a victim database and a victim role made here, the
server's auto.conf, a file on the server, another connection. The same holds for an
acknowledgement comment, the app's yes, and scenario files (validated and played).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import secrets
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest

from sandbox.cli import main
from sandbox.guard import lint_script
from sandbox.guard.policy import Guard, reaches_outside
from sandbox.runner import RunOptions, parse_script, run_steps
from sandbox.scenario.loader import load
from sandbox.scenario.model import PerEngine
from sandbox.scenario.player import ScenarioBroken, play
from sandbox.statements import Dialect
from sandbox.targets import SqliteTarget, TargetOptions, open_target

TOKEN = secrets.token_hex(4)
VICTIM_DB = f"dbsandbox_test_victim_{TOKEN}"
VICTIM_ROLE = f"dbsandbox_test_victim_role_{TOKEN}"
NEW_NAME = f"dbsandbox_test_new_{TOKEN}"  # what a blocked CREATE or RENAME would have made
SERVER_FILE = f"/tmp/dbsandbox_test_{TOKEN}.out"
SETTING = f"dbsandbox_test_{TOKEN}.crossed"


def pg(url: str, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg2.connect(url) as conn, conn.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else []


def pg_autocommit(url: str, *statements: str) -> None:
    conn = psycopg2.connect(url)
    conn.autocommit = True
    try:
        with conn.cursor() as cursor:
            for sql in statements:
                cursor.execute(sql)
    finally:
        conn.close()


@pytest.fixture(scope="module")
def victims(postgres_url: str) -> Iterator[dict[str, Any]]:
    """A database, a role and a connection that belong to someone else."""
    pg_autocommit(
        postgres_url,
        f'CREATE DATABASE "{VICTIM_DB}"',
        f'CREATE ROLE "{VICTIM_ROLE}" NOLOGIN',
    )
    bystander = psycopg2.connect(postgres_url, application_name=f"bystander_{TOKEN}")
    try:
        with bystander.cursor() as cursor:
            cursor.execute("SELECT pg_backend_pid()")
            (pid,) = cursor.fetchone()
        yield {"pid": pid}
    finally:
        bystander.close()
        # Had a block failed, these undo what got through, so the shared server stays clean.
        pg_autocommit(
            postgres_url,
            f'DROP DATABASE IF EXISTS "{VICTIM_DB}" WITH (FORCE)',
            f'DROP DATABASE IF EXISTS "{NEW_NAME}" WITH (FORCE)',
            f'DROP ROLE IF EXISTS "{VICTIM_ROLE}"',
            f'DROP ROLE IF EXISTS "{NEW_NAME}"',
        )
        if pg(postgres_url, "SELECT 1 FROM pg_file_settings WHERE name = %s", (SETTING,)):
            pg_autocommit(postgres_url, f"ALTER SYSTEM RESET {SETTING}")


def outside(url: str, pid: int) -> dict[str, Any]:
    """Everything outside the sandbox the blocked forms aim at, as the server reports it."""
    database = pg(
        url,
        """
        SELECT d.datname, d.datallowconn, d.datconnlimit, d.datacl::text, d.datdba::regrole::text,
               shobj_description(d.oid, 'pg_database'),
               (SELECT array_agg(s.setconfig::text) FROM pg_db_role_setting s
                 WHERE s.setdatabase = d.oid)
        FROM pg_database d WHERE d.datname = %s
        """,
        (VICTIM_DB,),
    )
    role = pg(
        url,
        """
        SELECT a.rolname, a.rolsuper, a.rolcreaterole, a.rolcreatedb, a.rolcanlogin,
               a.rolconnlimit, a.rolpassword IS NULL, shobj_description(a.oid, 'pg_authid'),
               (SELECT array_agg(m.roleid::regrole::text) FROM pg_auth_members m
                 WHERE m.member = a.oid),
               (SELECT array_agg(s.setconfig::text) FROM pg_db_role_setting s
                 WHERE s.setrole = a.oid)
        FROM pg_authid a WHERE a.rolname = %s
        """,
        (VICTIM_ROLE,),
    )
    return {
        "database": database,
        "role": role,
        "named": pg(
            url,
            "SELECT datname FROM pg_database WHERE datname LIKE %s "
            "UNION ALL SELECT rolname FROM pg_roles WHERE rolname LIKE %s ORDER BY 1",
            (f"%{TOKEN}%", f"%{TOKEN}%"),
        ),
        "auto.conf": pg(url, "SELECT name FROM pg_file_settings WHERE name = %s", (SETTING,)),
        "server file": pg(url, "SELECT pg_stat_file(%s, true) IS NOT NULL", (SERVER_FILE,)),
        "bystander": pg(url, "SELECT count(*) FROM pg_stat_activity WHERE pid = %s", (pid,)),
    }


def run_cli(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, script: str, *args: str
) -> tuple[int, dict[str, Any]]:
    path = tmp_path / "script.sql"
    path.write_text(script, encoding="utf-8")
    code = main(["run", str(path), "--format", "json", *args])
    out = capsys.readouterr().out
    return code, json.loads(out)


# Each form with what it reaches: {db} and {role} are the victims, {new} a name nothing has.
POSTGRES_FORMS = [
    "ALTER DATABASE {db} SET work_mem = '1MB'",
    "ALTER DATABASE {db} RENAME TO {new}",
    "ALTER DATABASE {db} CONNECTION LIMIT 1",
    "ALTER DATABASE {db} OWNER TO {role}",
    "DO $$ BEGIN EXECUTE 'ALTER DATABASE {db} ALLOW_CONNECTIONS false'; END $$",
    "DO $$ BEGIN EXECUTE format('ALTER DATABASE %I CONNECTION LIMIT 2', '{db}'); END $$",
    "DO $$ BEGIN EXECUTE 'ALTER DATABASE ' || quote_ident('{db}') || ' CONNECTION LIMIT 3'; END $$",
    "DO 'BEGIN EXECUTE ''COMMENT ON DATABASE {db} IS ''''dbsandbox scratch''''''; END'",
    "UPDATE pg_database SET datallowconn = false WHERE datname = '{db}'",
    "WITH x AS (UPDATE pg_catalog.pg_database SET datconnlimit = 4 WHERE datname = '{db}' "
    "RETURNING 1) SELECT * FROM x",
    "INSERT INTO pg_shdescription SELECT oid, 'pg_database'::regclass, 'forged' "
    "FROM pg_database WHERE datname = '{db}'",
    "DELETE FROM pg_db_role_setting WHERE setdatabase = "
    "(SELECT oid FROM pg_database WHERE datname = '{db}')",
    "LOCK TABLE pg_authid",
    "GRANT CREATE ON DATABASE {db} TO {role}",
    "REVOKE CONNECT ON DATABASE {db} FROM PUBLIC",
    "COMMENT ON DATABASE {db} IS 'dbsandbox scratch: created by someone; safe to drop'",
    "SECURITY LABEL ON DATABASE {db} IS 'x'",
    "DROP DATABASE {db}",
    "CREATE DATABASE {new}",
    "CREATE ROLE {new}",
    "CREATE USER {new}",
    "CREATE GROUP {new}",
    "ALTER ROLE {role} SUPERUSER",
    "ALTER ROLE {role} RENAME TO {new}",
    "ALTER USER {role} PASSWORD 'secret'",
    "ALTER ROLE {role} SET work_mem = '1MB'",
    "COMMENT ON ROLE {role} IS 'forged'",
    "GRANT pg_read_server_files TO {role}",
    "REASSIGN OWNED BY {role} TO CURRENT_USER",
    "DROP ROLE {role}",
    "DO $$ BEGIN CREATE ROLE {new}; END $$",
    "ALTER SYSTEM SET {setting} = 'yes'",
    "SELECT pg_reload_conf()",
    "SELECT pg_switch_wal()",
    "SELECT pg_terminate_backend({pid})",
    "SELECT pg_cancel_backend({pid})",
    "DO $$ BEGIN PERFORM pg_terminate_backend({pid}); END $$",
    "COPY (SELECT 1) TO '{file}'",
    "COPY (SELECT 1) TO PROGRAM 'touch {file}'",
    "CREATE TABLE t (a text); COPY t FROM '/etc/hostname'",
    "SELECT pg_read_file('/etc/hostname')",
    "SELECT pg_read_binary_file('/etc/hostname')",
    "SELECT * FROM pg_ls_dir('.')",
    "SELECT pg_stat_file('postgresql.conf')",
    "SELECT lo_import('/etc/hostname')",
    "SELECT lo_export(lo_create(0), '{file}')",
    "SELECT query_to_xml('SELECT pg_read_file(''/etc/hostname'')', true, true, '')",
    "CREATE TABLE t (a text DEFAULT pg_read_file('/etc/hostname'))",
    "CREATE TABLE t (a int CHECK (pg_cancel_backend({pid})))",
    "CREATE VIEW v AS SELECT pg_ls_dir('.')",
    "CREATE FUNCTION f() RETURNS text LANGUAGE sql AS $$ SELECT pg_read_file('/etc/hostname') $$",
    "CREATE FUNCTION f() RETURNS void LANGUAGE plpgsql AS $$ BEGIN "
    "EXECUTE 'ALTER SYSTEM SET {setting} = ''yes'''; END $$",
    "CREATE TABLESPACE {new} LOCATION '/nonexistent/{new}'",
    "ALTER TABLESPACE {new} SET (seq_page_cost = 2)",
    "CREATE EXTENSION dblink",
    "CREATE EXTENSION postgres_fdw",
    "CREATE EXTENSION file_fdw",
    "CREATE EXTENSION adminpack",
    "SELECT dblink_exec('dbname={db}', 'CREATE TABLE stolen (a int)')",
    "CREATE SERVER s FOREIGN DATA WRAPPER postgres_fdw OPTIONS (dbname '{db}')",
    "CREATE LANGUAGE plpython3u",
    "CREATE FUNCTION f() RETURNS int LANGUAGE plpython3u AS $$ return 1 $$",
    "DO LANGUAGE plperlu $$ system('touch {file}') $$",
    "LOAD 'auto_explain'",
]


def _fill(form: str, pid: int = 0) -> str:
    return form.format(
        db=VICTIM_DB, role=VICTIM_ROLE, new=NEW_NAME, file=SERVER_FILE, setting=SETTING, pid=pid
    )


@pytest.mark.parametrize("form", POSTGRES_FORMS)
def test_a_statement_outside_the_sandbox_never_runs_even_with_yes(
    form: str,
    postgres_url: str,
    victims: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    before = outside(postgres_url, victims["pid"])
    script = _fill(form, victims["pid"]) + ";\nSELECT 'after';\n"
    code, report = run_cli(
        capsys, tmp_path, script, "--engine", "postgres", "--url", postgres_url, "--yes"
    )
    assert code == 3, report
    blocked = report["statements"][-1]
    assert blocked["status"] == "blocked"
    assert all(s["status"] != "blocked" for s in report["statements"][:-1])
    assert any(f["decision"] == "block" for f in blocked["findings"])
    assert blocked["error"] is None and blocked["rows"] == []
    assert outside(postgres_url, victims["pid"]) == before


@pytest.mark.parametrize(
    "statement",
    [
        "-- dbsandbox: allow other-database\nCOMMENT ON DATABASE {db} IS 'forged'",
        "-- dbsandbox: allow drop-database\nDROP DATABASE {db}",
        "ALTER ROLE {role} CREATEROLE; -- dbsandbox: allow server-role",
    ],
)
def test_an_acknowledgement_does_not_unblock(
    statement: str,
    postgres_url: str,
    victims: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    before = outside(postgres_url, victims["pid"])
    code, report = run_cli(
        capsys, tmp_path, _fill(statement), "--engine", "postgres", "--url", postgres_url
    )
    assert code == 3
    assert report["statements"][0]["status"] == "blocked"
    assert outside(postgres_url, victims["pid"]) == before


def test_the_finding_says_it_reaches_outside(
    postgres_url: str, victims: dict[str, Any], tmp_path: Path
) -> None:
    path = tmp_path / "alter.sql"
    path.write_text(_fill("ALTER DATABASE {db} SET work_mem = '1MB';\n"), encoding="utf-8")
    args = ["run", str(path), "--engine", "postgres", "--url", postgres_url, "--yes"]
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    assert f"! boundary other-database: ALTER DATABASE {VICTIM_DB} reaches outside" in done.stdout
    assert "decision: block" in done.stdout
    assert "NOT RUN · blocked: it reaches outside the sandbox" in done.stdout
    assert "Traceback" not in done.stderr


LOOKALIKES = """
SELECT 'pg_read_file(''/etc/passwd'')' AS text_only;
CREATE TABLE roles (id int PRIMARY KEY, database text, role text);
INSERT INTO roles VALUES (1, 'ALTER DATABASE x', 'CREATE ROLE y');
SELECT database, role FROM roles WHERE id = 1;
CREATE TABLE dblink (id int);
INSERT INTO dblink (id) VALUES (1);
CREATE TABLE pg_read_file_log (id int);
COMMENT ON TABLE roles IS 'COMMENT ON DATABASE postgres';
GRANT SELECT ON roles TO PUBLIC;
DO $$ BEGIN RAISE NOTICE 'pg_terminate_backend(1)'; END $$;
CREATE FUNCTION answer() RETURNS int LANGUAGE sql AS $$ SELECT 42 $$;
CREATE EXTENSION IF NOT EXISTS pgcrypto;
SELECT set_config('work_mem', '8MB', false);
UPDATE pg_settings SET setting = '16MB' WHERE name = 'work_mem';
CHECKPOINT;
SELECT datname FROM pg_database WHERE datname = current_database();
SET ROLE {role};
SELECT current_user;
"""


def test_harmless_lookalikes_run(
    postgres_url: str,
    victims: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    script = LOOKALIKES.replace("{role}", VICTIM_ROLE)
    code, report = run_cli(capsys, tmp_path, script, "--engine", "postgres", "--url", postgres_url)
    assert code == 0
    statements = report["statements"]
    assert [s["findings"] for s in statements] == [[]] * len(statements)
    assert [s["status"] for s in statements] == ["ok"] * len(statements), statements
    assert statements[3]["rows"] == [["ALTER DATABASE x", "CREATE ROLE y"]]
    # SET ROLE stays allowed: it changes who this session is, within what the login may be.
    assert statements[-1]["rows"] == [[VICTIM_ROLE]]


@pytest.mark.parametrize(
    ("dialect", "sql"),
    [
        ("postgres", "COPY roles FROM STDIN"),
        ("postgres", "COPY (SELECT * FROM roles) TO STDOUT WITH (FORMAT csv)"),
        ("postgres", "SELECT 'ALTER SYSTEM SET work_mem = 1' AS example"),
        ("postgres", "CREATE TABLE lo_import (id int)"),
        ("postgres", "INSERT INTO dblink (id) VALUES (1)"),
        ("postgres", "DROP FUNCTION IF EXISTS pg_read_file(text)"),
        ("postgres", "SELECT * FROM t AS dblink(a, b)"),
        ("postgres", 'CREATE EXTENSION IF NOT EXISTS "uuid-ossp"'),
        ("postgres", "SET SESSION AUTHORIZATION DEFAULT"),
        ("sqlite", "ATTACH ':memory:' AS scratch"),
        ("sqlite", "ATTACH '' AS temporary"),
        ("sqlite", "SELECT 'load_extension(x)'"),
        ("sqlite", "CREATE TABLE attach (database TEXT)"),
    ],
)
def test_lookalikes_have_no_boundary_finding(dialect: Dialect, sql: str) -> None:
    assert [f.rule for f in lint_script(sql, dialect) if reaches_outside(f)] == []


def test_lint_lists_boundary_findings_without_failing(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """In a migration, CREATE EXTENSION or GRANT ... ON DATABASE is ordinary."""
    path = tmp_path / "migration.sql"
    path.write_text("CREATE EXTENSION postgis;\nGRANT CONNECT ON DATABASE app TO web;\n", "utf-8")
    assert main(["lint", "--dialect", "postgres", str(path)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split(" ")[1:3] for line in out] == [
        ["boundary", "server-code"],
        ["boundary", "other-database"],
    ]


# --------------------------------------------------------------------------- SQLite


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture
def original(tmp_path: Path) -> Path:
    path = tmp_path / "orig.db"
    with sqlite3.connect(path) as conn:
        conn.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)")
        conn.executemany("INSERT INTO t VALUES (?)", [(1,), (2,)])
    conn.close()
    return path


@pytest.mark.parametrize(
    "statement",
    [
        "ATTACH DATABASE '{orig}' AS o",
        "ATTACH 'orig.db' AS o",  # relative to the working directory, as SQLite opens it
        "ATTACH orig AS o",  # a bare name is a file name too
        "ATTACH 'file:{orig}?mode=rw' AS o",
        "ATTACH '{orig}' || '' AS o",
        "VACUUM INTO '{copy}'",
        "SELECT load_extension('{orig}')",
    ],
)
def test_sqlite_never_reaches_the_original(
    statement: str,
    original: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(tmp_path)
    copy = tmp_path / "copy.db"
    before = _sha(original)
    script = statement.format(orig=original, copy=copy) + ";\nDELETE FROM o.t;\n"
    code, report = run_cli(capsys, tmp_path, script, "--from", str(original), "--yes")
    assert code == 3
    assert report["statements"][0]["status"] == "blocked"
    assert report["statements"][0]["findings"][0]["rule"] in ("outside-file", "server-code")
    assert _sha(original) == before
    assert not copy.exists()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["orig.db", "script.sql"]


def test_sqlite_files_in_the_sandbox_and_in_memory_stay_allowed() -> None:
    escaped = f"escaped_{TOKEN}.db"
    target = SqliteTarget()
    with target:
        extra = target.directory / "extra.db"
        script = (
            f"ATTACH DATABASE '{extra}' AS e;\n"
            "CREATE TABLE e.x (a INTEGER);\n"
            "ATTACH ':memory:' AS m;\n"
            "CREATE TABLE m.y (a INTEGER);\n"
            f"VACUUM INTO '{target.directory / 'copy.db'}';\n"
            f"ATTACH '{target.directory / '..' / escaped}' AS x;\n"
        )
        result = run_steps(parse_script(script, "sqlite"), target, RunOptions(), Guard(yes=True))
        statuses = [str(e.outcome.status) if e.outcome else None for e in result.executions]
        assert statuses == ["ok", "ok", "ok", "ok", "ok", "blocked"]
        assert extra.is_file() and (target.directory / "copy.db").is_file()
        assert not (target.directory.parent / escaped).exists()


# --------------------------------------------------------------------------- scenarios

SCENARIO = """
id = "{id}"
title = "A scenario that reaches outside"
summary = "It should never load."
difficulty = "beginner"
engines = ["postgres"]
engine_note = "PostgreSQL has databases to drop."
story = "..."
task = "..."
hints = ["none"]

[setup]
sql = \"\"\"
CREATE TABLE t (id int);
{setup}
\"\"\"

[[breakage]]
sql = "{breakage}"

[[solution]]
sql = "{solution}"

[[checks]]
name = "t is there"
sql = "{check}"
expect = [[0]]
"""


def write_scenario(folder: Path, ident: str, **sql: str) -> Path:
    fields = {"setup": "", "breakage": "SELECT 1", "solution": "SELECT 1"}
    fields["check"] = "SELECT count(*) FROM t"
    fields.update(sql)
    path = folder / f"{ident}.toml"
    path.write_text(SCENARIO.format(id=ident, **fields), encoding="utf-8")
    return path


def test_validate_rejects_a_scenario_that_reaches_outside(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    drop = f"DROP DATABASE {VICTIM_DB}"
    path = write_scenario(
        tmp_path,
        "reaches-out",
        setup=drop + ";",
        breakage=drop,
        solution="SELECT pg_terminate_backend(1)",
        check="SELECT count(*) FROM pg_ls_dir('.')",
    )
    assert main(["validate", str(path)]) == 1
    lines = capsys.readouterr().out.splitlines()
    for key, what in [
        ("setup", drop),
        ("breakage[0].sql", drop),
        ("solution[0].sql", "pg_terminate_backend"),
        ("checks[0].sql", "pg_ls_dir"),
    ]:
        matching = [
            line
            for line in lines
            if f": {key}: reaches outside the sandbox, so no sandbox runs it:" in line
        ]
        assert matching and what in matching[0], (key, lines)


def test_a_scenario_that_reaches_outside_cannot_drop_the_victim(
    tmp_path: Path,
    postgres_url: str,
    victims: dict[str, Any],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    drop = f"DROP DATABASE {VICTIM_DB}"
    write_scenario(tmp_path, "drop-victim", setup=drop + ";", breakage=drop)
    monkeypatch.setenv("DBSANDBOX_SCENARIOS", str(tmp_path))
    code = main(["run", "drop-victim", "--engine", "postgres", "--url", postgres_url])
    err = capsys.readouterr().err
    assert code == 2
    assert "setup: reaches outside the sandbox" in err and "Traceback" not in err
    assert outside(postgres_url, victims["pid"])["database"]


def test_the_player_blocks_what_skipped_validation(
    tmp_path: Path, postgres_url: str, victims: dict[str, Any]
) -> None:
    """A scenario built in code never met the validator: setup, steps and checks still hold."""
    valid = load(write_scenario(tmp_path, "valid-one"))
    drop = PerEngine(f"DROP DATABASE {VICTIM_DB}")
    options = TargetOptions(engine="postgres", url=postgres_url)
    before = outside(postgres_url, victims["pid"])

    staged = dataclasses.replace(valid, setup=PerEngine(None, {"postgres": drop.default}))
    with open_target(options) as target, pytest.raises(ScenarioBroken, match="reaches outside"):
        play(staged, target)

    step = dataclasses.replace(valid.breakage[0], sql=drop)
    check = dataclasses.replace(valid.checks[0], sql=PerEngine("SELECT pg_reload_conf()"))
    scripted = dataclasses.replace(valid, breakage=(step,), checks=(check,))
    with open_target(options) as target:
        result = play(scripted, target)
    (played,) = result.steps
    assert played.actual["status"] == "blocked"
    (checked,) = result.checks
    assert not checked.passed
    assert checked.actual["error"]["message"].startswith("not run: pg_reload_conf()")
    assert outside(postgres_url, victims["pid"]) == before


# --------------------------------------------------------------------------- the app


async def test_the_app_cannot_confirm_a_blocked_statement(original: Path) -> None:
    from textual.widgets import Button

    from sandbox.outcome import Status
    from sandbox.ui.app import create_app
    from sandbox.ui.screens.dialogs import ConfirmStatement
    from tests.test_ui_app import SIZE, ready, until

    before = _sha(original)
    app = create_app(TargetOptions(from_file=original), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        conductor = app.bridge.conductor
        assert conductor is not None
        attach = f"ATTACH DATABASE '{original}' AS o;"
        app.run_sql("A", attach)
        await until(pilot, lambda: isinstance(app.screen, ConfirmStatement))
        assert not app.screen.query("#yes")  # no Yes button on a block
        assert app.screen.query_one("#no", Button)
        await pilot.press("y")  # the key that confirms anything else: nothing to confirm here
        await pilot.pause(0.2)
        assert isinstance(app.screen, ConfirmStatement)
        assert all(
            e.outcome is None or e.outcome.status is Status.BLOCKED for e in conductor.executions
        )
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmStatement))
        # Even asked with a yes already given (the path a confirmation takes), it stays out.
        app.run_sql("A", attach, confirmed=True)
        await until(pilot, lambda: isinstance(app.screen, ConfirmStatement))
        await pilot.press("escape")
        await app.workers.wait_for_complete()
        outcomes = [e.outcome.status for e in conductor.executions if e.outcome is not None]
        assert outcomes == [Status.BLOCKED, Status.BLOCKED]
    assert _sha(original) == before


async def test_the_app_warns_about_a_superuser_once(postgres_url: str) -> None:
    from textual.message import Message

    from sandbox.ui.app import create_app
    from sandbox.ui.messages import Notice, SandboxReady
    from tests.test_ui_app import SIZE, ready, until

    seen: list[Message] = []

    def warnings() -> int:
        return sum(isinstance(m, Notice) and "is a superuser" in m.text for m in seen)

    app = create_app(TargetOptions(engine="postgres", url=postgres_url), pick=False)
    async with app.run_test(size=SIZE, message_hook=seen.append) as pilot:
        await ready(pilot, app)
        await until(pilot, lambda: warnings() == 1)
        app.open_sandbox(None)  # what a reset does: a fresh sandbox in the same app
        await until(pilot, lambda: sum(isinstance(m, SandboxReady) for m in seen) == 2)
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert warnings() == 1


# --------------------------------------------------------------------------- the role's powers


@pytest.fixture
def role_url(postgres_url: str, request: pytest.FixtureRequest) -> Iterator[str]:
    """A login role of its own, with the attributes the test asks for."""
    import sqlalchemy as sa

    attributes: str = request.param
    role = f"dbsandbox_test_login_{secrets.token_hex(4)}"
    pg_autocommit(postgres_url, f'CREATE ROLE "{role}" LOGIN CREATEDB {attributes}')
    try:
        yield (
            sa.make_url(postgres_url)
            .set(username=role, password=None)
            .render_as_string(hide_password=False)
        )
    finally:
        pg_autocommit(
            postgres_url,
            f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = '{role}'",
            f'DROP ROLE IF EXISTS "{role}"',
        )


def _run_warnings(url: str, tmp_path: Path) -> list[str]:
    path = tmp_path / "two-sessions.sql"
    path.write_text("SELECT 1;\n\\session B\nSELECT 2;\n\\session A\nSELECT 3;\n", "utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "run", str(path), "--engine", "postgres", "--url", url],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return [line for line in done.stderr.splitlines() if line.startswith("warning: ")]


@pytest.mark.parametrize(
    ("role_url", "said"),
    [("SUPERUSER", "is a superuser"), ("CREATEROLE", "has CREATEROLE"), ("", None)],
    indirect=["role_url"],
)
def test_a_powerful_role_is_warned_about_once(
    role_url: str, said: str | None, tmp_path: Path
) -> None:
    warnings = _run_warnings(role_url, tmp_path)
    if said is None:
        assert warnings == []
        return
    assert len(warnings) == 1, warnings
    assert said in warnings[0]
    assert "the guard blocks statements that reach outside the sandbox" in warnings[0]
    assert "use a role without SUPERUSER or CREATEROLE" in warnings[0]


# --- the precheck: a statement whose text names nothing watched is not walked -------------


def test_the_precheck_needles_cover_every_watched_name() -> None:
    from sandbox.guard import boundary

    names = [*boundary._FUNCTIONS, *boundary._RUNS_QUERY_TEXT]
    names += [prefix + "x" for prefix, _ in boundary._FUNCTION_PREFIXES]
    names += ["pg_create_logical_replication_slot", "pg_replication_slot_advance"]
    assert all(boundary._SLOT_FUNCTION.match(n) for n in names[-2:])
    assert [n for n in names if not boundary._PG_NEEDLES.search(n)] == []
    assert [n for n in boundary._SQLITE_FUNCTIONS if not boundary._SQLITE_NEEDLES.search(n)] == []
    # Every name the slot pattern accepts starts with pg_, one of the needles.
    pattern = boundary._SLOT_FUNCTION.pattern
    assert pattern.startswith("^pg_")
    assert all(part.startswith("pg_") for part in pattern.split("|^")[1:])


def test_the_precheck_changes_no_crossing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every statement of the lint corpus and this file's forms: the same crossings, whether
    the precheck skips the statement or it is walked anyway."""
    import tomllib

    from sandbox.guard import boundary
    from sandbox.statements import split_lexed

    corpus = Path(__file__).parent / "corpus" / "lint_corpus.toml"
    scripts = [case["sql"] for case in tomllib.loads(corpus.read_text())["case"]]
    scripts += [*POSTGRES_FORMS, LOOKALIKES]
    scripts += [
        "ATTACH 'orig.db' AS o; VACUUM INTO 'x.db'; SELECT Load_Extension('x')",
        'SELECT "PG_READ_FILE"(1), "pg_read_file"(2), DbLink(\'x\'); SELECT 1',
        "COPY t TO '/tmp/x'; SELECT * FROM query_to_xml('DELETE FROM pg_authid', true)",
    ]
    dialects: tuple[Dialect, ...] = ("sqlite", "postgres")
    lexed = [
        (dialect, statement, toks)
        for sql in scripts
        for dialect in dialects
        for statement, toks in split_lexed(sql, dialect)
    ]
    skipped = [boundary.crossings(s.text, d, None, t) for d, s, t in lexed]
    assert any(skipped) and not all(skipped)
    monkeypatch.setattr(boundary, "_may_cross", lambda *_: True)
    monkeypatch.setattr(boundary, "_PG_NEEDLES", re.compile(""))
    monkeypatch.setattr(boundary, "_SQLITE_NEEDLES", re.compile(""))
    walked = [boundary.crossings(s.text, d, None, t) for d, s, t in lexed]
    assert skipped == walked
