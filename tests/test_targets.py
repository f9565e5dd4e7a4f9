"""Targets against the real engines: temporary SQLite files and scratch PostgreSQL databases.

Every SQLite test runs with `tempfile.tempdir` pointed at the test's own directory, so a leaked
sandbox directory is visible (and nothing is left in the real /tmp). Every PostgreSQL object a
test creates by hand (databases, roles) is removed by a fixture, also when the test fails.
"""

from __future__ import annotations

import contextlib
import hashlib
import shutil
import sqlite3
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psycopg2
import pytest
import sqlalchemy as sa

from sandbox.errors import UserError
from sandbox.outcome import Outcome, Status
from sandbox.runner import RunResult, parse_script, run_steps
from sandbox.statements import Dialect
from sandbox.targets import (
    MARKER,
    SCRATCH_PREFIX,
    TEMP_DIR_PREFIX,
    PostgresTarget,
    SqliteTarget,
    Target,
    TargetOptions,
    open_target,
    parse_postgres_url,
    resolve_postgres_url,
)

# --------------------------------------------------------------------------- helpers


def unique(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:10]}"


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make `tempfile` create sandbox directories under this test's own directory."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def run_sql(target: Target, script: str) -> RunResult:
    dialect: Dialect = "postgres" if target.engine == "postgres" else "sqlite"
    return run_steps(parse_script(script, dialect), target)


def outcomes(result: RunResult) -> list[Outcome]:
    found = [e.outcome for e in result.executions]
    assert all(o is not None for o in found), "a statement never ended"
    return [o for o in found if o is not None]


def snapshot(directory: Path) -> dict[str, tuple[str, int, int]]:
    """Every entry in a directory: sha256 (of a file), size and mtime (ns).

    Equal snapshots: nothing was written, created or removed there.
    """
    return {
        entry.name: (
            hashlib.sha256(entry.read_bytes()).hexdigest() if entry.is_file() else "directory",
            entry.stat().st_size,
            entry.stat().st_mtime_ns,
        )
        for entry in sorted(directory.iterdir())
    }


# --------------------------------------------------------------------------- SQLite target


@pytest.mark.parametrize("busy_timeout_ms", [0, 200, 1234])
def test_sqlite_sandbox_is_a_wal_file_with_the_busy_timeout_asked_for(
    private_tmp: Path, busy_timeout_ms: int
) -> None:
    target = SqliteTarget(busy_timeout_ms=busy_timeout_ms)
    try:
        assert target.directory.parent == private_tmp
        assert target.directory.name.startswith(TEMP_DIR_PREFIX)
        assert target.path.parent == target.directory
        with contextlib.closing(sqlite3.connect(target.path)) as independent:
            assert independent.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        connection = target.connect("A")
        try:
            raw = connection.raw
            assert raw.execute("PRAGMA busy_timeout").fetchone() == (busy_timeout_ms,)
            assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
        finally:
            connection.close()
    finally:
        target.close()
    assert not target.directory.exists()
    assert list(private_tmp.iterdir()) == []


def test_sqlite_default_busy_timeout_is_200_ms(private_tmp: Path) -> None:
    with open_target(TargetOptions()) as target:
        connection = target.connect("A")
        try:
            assert connection.raw.execute("PRAGMA busy_timeout").fetchone() == (200,)
        finally:
            connection.close()
    assert list(private_tmp.iterdir()) == []


def test_sqlite_busy_timeout_must_not_be_negative(private_tmp: Path) -> None:
    with pytest.raises(UserError, match="busy-timeout"):
        SqliteTarget(busy_timeout_ms=-1)
    assert list(private_tmp.iterdir()) == []


def test_sqlite_directory_is_removed_when_the_body_raises(private_tmp: Path) -> None:
    with pytest.raises(RuntimeError, match="boom"), open_target(TargetOptions()) as target:
        assert isinstance(target, SqliteTarget)
        run_sql(target, "CREATE TABLE t (x); INSERT INTO t VALUES (1)")
        assert target.path.exists()
        raise RuntimeError("boom")
    assert list(private_tmp.iterdir()) == []


def test_sqlite_directory_records_its_owner_for_clean(private_tmp: Path) -> None:
    import os

    with open_target(TargetOptions()) as target:
        assert isinstance(target, SqliteTarget)
        assert (target.directory / "owner.pid").read_text() == str(os.getpid())


# --------------------------------------------------------------------------- --from FILE.db

ROWS = 50
MODIFYING_SCRIPT = """
SELECT count(*) FROM items;
DELETE FROM items;
SELECT count(*) FROM items;
DROP TABLE items;
CREATE TABLE sandbox_only (x);
VACUUM;
PRAGMA wal_checkpoint(TRUNCATE);
"""


def _fill(conn: sqlite3.Connection) -> None:
    conn.execute("CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT)")
    conn.executemany("INSERT INTO items (name) VALUES (?)", [(f"item {i}",) for i in range(ROWS)])


def _assert_sandbox_saw_the_data_and_changed_it(result: RunResult) -> None:
    found = outcomes(result)
    assert [o.status for o in found] == [Status.OK] * len(found), [o.error for o in found]
    assert found[0].rows == [(ROWS,)]  # the original's data, including what only its WAL held
    assert found[1].rowcount == ROWS
    assert found[2].rows == [(0,)]


def test_from_copies_a_rollback_journal_database_and_never_touches_it(
    tmp_path: Path, private_tmp: Path
) -> None:
    folder = tmp_path / "user"
    folder.mkdir()
    original = folder / "shop.db"
    with contextlib.closing(sqlite3.connect(original)) as conn:
        _fill(conn)
        conn.commit()
    before = snapshot(folder)

    with open_target(TargetOptions(from_file=original)) as target:
        assert str(original) in target.description
        _assert_sandbox_saw_the_data_and_changed_it(run_sql(target, MODIFYING_SCRIPT))

    assert snapshot(folder) == before  # same bytes, same mtime, no -wal/-shm/-journal beside it
    with contextlib.closing(sqlite3.connect(original)) as conn:
        assert conn.execute("SELECT count(*) FROM items").fetchone() == (ROWS,)
    assert list(private_tmp.iterdir()) == []


@pytest.mark.parametrize("writer", ["held_open", "copied_aside"])
def test_from_includes_committed_data_that_is_only_in_the_wal(
    tmp_path: Path, private_tmp: Path, writer: str
) -> None:
    folder = tmp_path / "user"
    folder.mkdir()
    live = folder / "shop.db"
    conn = sqlite3.connect(live, isolation_level=None)
    try:
        assert conn.execute("PRAGMA journal_mode=WAL").fetchone() == ("wal",)
        conn.execute("PRAGMA wal_autocheckpoint=0")  # keep every page in the -wal file
        conn.execute("BEGIN")
        _fill(conn)
        conn.execute("COMMIT")
        # Prove the rows live only in the WAL: the main file alone does not even have the table.
        main_only = tmp_path / "main-only.db"
        shutil.copyfile(live, main_only)
        with (
            contextlib.closing(sqlite3.connect(main_only)) as alone,
            pytest.raises(sqlite3.OperationalError, match="no such table"),
        ):
            alone.execute("SELECT count(*) FROM items")

        if writer == "copied_aside":
            aside = tmp_path / "aside"
            aside.mkdir()
            for name in ("shop.db", "shop.db-wal"):
                shutil.copyfile(folder / name, aside / name)
            conn.close()  # the writer checkpoints and removes its files; the copies keep theirs
            folder, original = aside, aside / "shop.db"
        else:
            original = live
        assert (folder / "shop.db-wal").stat().st_size > 0
        before = snapshot(folder)

        with open_target(TargetOptions(from_file=original)) as target:
            _assert_sandbox_saw_the_data_and_changed_it(run_sql(target, MODIFYING_SCRIPT))

        assert snapshot(folder) == before  # no new -shm beside it, -wal untouched, same mtimes
    finally:
        conn.close()
    with contextlib.closing(sqlite3.connect(original)) as check:
        assert check.execute("SELECT count(*) FROM items").fetchone() == (ROWS,)
    assert list(private_tmp.iterdir()) == []


def test_from_rolls_back_a_hot_journal_instead_of_copying_uncommitted_pages(
    tmp_path: Path, private_tmp: Path
) -> None:
    """A writer mid-transaction (or crashed) in rollback-journal mode: the main file already
    holds uncommitted pages; only the -journal can undo them."""
    live = tmp_path / "live.db"
    conn = sqlite3.connect(live, isolation_level=None)
    aside = tmp_path / "aside"
    aside.mkdir()
    try:
        conn.execute("CREATE TABLE t (x TEXT)")
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO t VALUES (?)", [("committed" * 50,) for _ in range(500)])
        conn.execute("COMMIT")
        conn.execute("PRAGMA cache_size=2")  # force dirty pages out to the main file
        conn.execute("BEGIN")
        conn.execute("UPDATE t SET x = 'uncommitted'")
        assert Path(str(live) + "-journal").exists()
        # Snapshot the files as a crash would leave them.
        shutil.copyfile(live, aside / "crashed.db")
        shutil.copyfile(str(live) + "-journal", aside / "crashed.db-journal")
    finally:
        conn.close()  # rolls back the live file
    # Without its journal, the crashed main file shows data that was never committed.
    main_only = tmp_path / "main-only.db"
    shutil.copyfile(aside / "crashed.db", main_only)
    with contextlib.closing(sqlite3.connect(main_only)) as alone:
        assert ("uncommitted",) in alone.execute("SELECT DISTINCT x FROM t").fetchall()
    before = snapshot(aside)

    with open_target(TargetOptions(from_file=aside / "crashed.db")) as target:
        found = outcomes(run_sql(target, "SELECT DISTINCT x FROM t"))
    assert found[0].status is Status.OK
    assert found[0].rows == [("committed" * 50,)]
    assert snapshot(aside) == before
    assert list(private_tmp.iterdir()) == []


def _damaged_database(path: Path) -> None:
    with contextlib.closing(sqlite3.connect(path)) as conn:
        conn.execute("CREATE TABLE t (x)")
        conn.executemany("INSERT INTO t VALUES (?)", [("v" * 300,) for _ in range(100)])
        conn.commit()
    with path.open("r+b") as handle:  # the header stays valid; a b-tree page becomes garbage
        handle.seek(4096)
        handle.write(b"\xff" * 4096)


@pytest.mark.parametrize(
    ("kind", "message"),
    [
        ("missing", "cannot read"),
        ("directory", "cannot read"),
        ("text", "is not a SQLite database file"),
        ("empty", "is not a SQLite database file"),
        ("damaged", "is not a usable SQLite database"),
    ],
)
def test_bad_from_file_is_a_clear_user_error(
    tmp_path: Path, private_tmp: Path, kind: str, message: str
) -> None:
    folder = tmp_path / "user"
    folder.mkdir()
    path = folder / f"{kind}.db"
    if kind == "directory":
        path.mkdir()
    elif kind == "text":
        path.write_text("id,name\n1,apple\n")
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "damaged":
        _damaged_database(path)
    before = snapshot(folder)

    with pytest.raises(UserError) as caught:
        open_target(TargetOptions(from_file=path))

    text = str(caught.value)
    assert message in text
    assert str(path) in text
    assert "\n" not in text
    assert list(private_tmp.iterdir()) == []  # no half-made sandbox left behind
    assert snapshot(folder) == before


def test_from_is_only_for_sqlite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DBSANDBOX_POSTGRES_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    with pytest.raises(UserError, match=r"--from .* only with --engine sqlite"):
        open_target(TargetOptions(engine="postgres", from_file=tmp_path / "x.db", cwd=tmp_path))


def test_url_is_not_for_sqlite(private_tmp: Path) -> None:
    with pytest.raises(UserError, match="--url is for --engine postgres"):
        open_target(TargetOptions(engine="sqlite", url="postgresql://u@h/db"))
    assert list(private_tmp.iterdir()) == []


def test_unknown_engine_is_a_user_error() -> None:
    with pytest.raises(UserError, match="unknown engine 'oracle'"):
        open_target(TargetOptions(engine="oracle"))


# --------------------------------------------------------------------------- URL resolution

CLI_URL = "postgresql://cli@h1/db"
SANDBOX_ENV_URL = "postgresql://sandbox-env@h2/db"
DATABASE_ENV_URL = "postgresql://database-env@h3/db"


@pytest.fixture
def clean_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    monkeypatch.delenv("DBSANDBOX_POSTGRES_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    return monkeypatch


def test_cli_url_wins_over_environment_and_dotenv(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("DBSANDBOX_POSTGRES_URL", SANDBOX_ENV_URL)
    clean_env.setenv("DATABASE_URL", DATABASE_ENV_URL)
    (tmp_path / ".env").write_text("DBSANDBOX_POSTGRES_URL=postgresql://dotenv@h4/db\n")
    assert resolve_postgres_url(CLI_URL, tmp_path) == CLI_URL


def test_dbsandbox_variable_wins_over_database_url(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("DBSANDBOX_POSTGRES_URL", SANDBOX_ENV_URL)
    clean_env.setenv("DATABASE_URL", DATABASE_ENV_URL)
    assert resolve_postgres_url(None, tmp_path) == SANDBOX_ENV_URL


def test_database_url_is_the_fallback(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("DATABASE_URL", DATABASE_ENV_URL)
    assert resolve_postgres_url(None, tmp_path) == DATABASE_ENV_URL


def test_environment_wins_over_dotenv_for_the_same_variable(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    clean_env.setenv("DBSANDBOX_POSTGRES_URL", SANDBOX_ENV_URL)
    (tmp_path / ".env").write_text("DBSANDBOX_POSTGRES_URL=postgresql://dotenv@h4/db\n")
    assert resolve_postgres_url(None, tmp_path) == SANDBOX_ENV_URL


@pytest.mark.parametrize("variable", ["DBSANDBOX_POSTGRES_URL", "DATABASE_URL"])
def test_dotenv_in_the_working_directory_is_read(
    clean_env: pytest.MonkeyPatch, tmp_path: Path, variable: str
) -> None:
    (tmp_path / ".env").write_text(f"# settings\n{variable}=postgresql://dotenv@h4/db\n")
    assert resolve_postgres_url(None, tmp_path) == "postgresql://dotenv@h4/db"
    # Another directory's .env is not consulted.
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(UserError):
        resolve_postgres_url(None, elsewhere)


def test_dotenv_dbsandbox_variable_wins_over_dotenv_database_url(
    clean_env: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    (tmp_path / ".env").write_text(
        "DATABASE_URL=postgresql://dotenv-db@h5/db\nDBSANDBOX_POSTGRES_URL=postgresql://dotenv@h4/db\n"
    )
    assert resolve_postgres_url(None, tmp_path) == "postgresql://dotenv@h4/db"


def test_empty_variables_do_not_count(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    clean_env.setenv("DBSANDBOX_POSTGRES_URL", "")
    clean_env.setenv("DATABASE_URL", DATABASE_ENV_URL)
    assert resolve_postgres_url(None, tmp_path) == DATABASE_ENV_URL


def test_missing_url_is_a_clear_user_error(clean_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    with pytest.raises(UserError) as caught:
        open_target(TargetOptions(engine="postgres", cwd=tmp_path))
    text = str(caught.value)
    assert "--url" in text
    assert "DBSANDBOX_POSTGRES_URL" in text
    assert "\n" not in text


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("garbage", "not a PostgreSQL URL (it is not shown"),
        ("", "not a PostgreSQL URL (it is not shown"),
        ("postgresql://u@h:notaport/db", "not a valid URL (it is not shown"),
        ("host=h port", "not a valid key=value connection string (it is not shown"),
        ("mysql://u@h/db", "unsupported URL scheme 'mysql'"),
        ("sqlite:///tmp/x.db", "unsupported URL scheme 'sqlite'"),
    ],
)
def test_bad_urls_are_one_line_user_errors(url: str, message: str) -> None:
    with pytest.raises(UserError) as caught:
        PostgresTarget(url)
    assert message in str(caught.value)
    assert "\n" not in str(caught.value)


@pytest.mark.parametrize("scheme", ["postgres", "postgresql", "postgresql+psycopg2"])
def test_postgres_schemes_are_accepted_and_default_to_the_postgres_database(scheme: str) -> None:
    url = parse_postgres_url(f"{scheme}://someone@db.example:6543")
    assert url.drivername == "postgresql+psycopg2"
    assert (url.username, url.host, url.port, url.database) == (
        "someone",
        "db.example",
        6543,
        "postgres",
    )


def test_unencoded_at_in_password_is_refused_and_fully_masked() -> None:
    password = unique("Pw@rt")  # contains an @ that was not written as %40
    with pytest.raises(UserError, match="%40") as caught:
        parse_postgres_url(f"postgresql://alice:{password}@db.example/db")
    assert password not in str(caught.value)
    assert password.split("@")[1] not in str(caught.value)


def test_unreachable_server_is_a_one_line_user_error() -> None:
    password = unique("Unreach")
    with pytest.raises(UserError) as caught:
        PostgresTarget(f"postgresql://postgres:{password}@127.0.0.1:1/postgres")
    text = str(caught.value)
    assert text.startswith("cannot connect to postgresql://postgres:***@127.0.0.1:1/")
    assert password not in text
    assert "\n" not in text


# --------------------------------------------------------------------------- PostgreSQL helpers


@contextlib.contextmanager
def pg_connect(url: str, dbname: str | None = None) -> Iterator[Any]:
    extra = {"dbname": dbname} if dbname else {}
    conn = psycopg2.connect(url, connect_timeout=5, **extra)
    conn.autocommit = True
    try:
        yield conn
    finally:
        conn.close()


def pg_rows(url: str, sql: str, params: tuple[Any, ...] = (), dbname: str | None = None) -> Any:
    with pg_connect(url, dbname) as conn, conn.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall() if cursor.description else None


def database_exists(url: str, name: str) -> bool:
    rows = pg_rows(url, "SELECT 1 FROM pg_database WHERE datname = %s", (name,))
    return bool(rows)


def url_for(base: str, username: str | None = None, database: str | None = None) -> str:
    url = sa.make_url(base)
    if username is not None:
        url = url.set(username=username, password=None)
    if database is not None:
        url = url.set(database=database)
    return url.render_as_string(hide_password=False)


@pytest.fixture
def test_database(postgres_url: str) -> Iterator[str]:
    """A database of the user's (not a sandbox): tests prove the sandbox leaves it alone."""
    name = unique("dbs_test_")
    pg_rows(postgres_url, f'CREATE DATABASE "{name}"')
    try:
        yield name
    finally:
        pg_rows(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


@pytest.fixture
def limited_role(postgres_url: str, test_database: str) -> Iterator[str]:
    """A login role that may not create databases (and, until granted, nothing else)."""
    role = unique("dbs_test_role_")
    pg_rows(postgres_url, f'CREATE ROLE "{role}" LOGIN NOCREATEDB NOSUPERUSER')
    try:
        yield role
    finally:
        pg_rows(
            postgres_url,
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE usename = %s",
            (role,),
        )
        # Revokes its grants (the database one included) and drops whatever it still owns.
        pg_rows(postgres_url, f'DROP OWNED BY "{role}" CASCADE', dbname=test_database)
        pg_rows(postgres_url, f'DROP ROLE IF EXISTS "{role}"')


def user_objects(url: str, dbname: str) -> Any:
    """Schemas, relations and their row estimates the user owns in a database."""
    return pg_rows(
        url,
        """
        SELECT n.nspname, c.relname, c.relkind
        FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE n.nspname NOT IN ('pg_catalog', 'information_schema', 'pg_toast')
        UNION ALL
        SELECT nspname, '', 'n' FROM pg_namespace
        WHERE nspname NOT LIKE 'pg\\_%%' AND nspname <> 'information_schema'
        ORDER BY 1, 2
        """,
        dbname=dbname,
    )


# --------------------------------------------------------------------------- PostgreSQL target


@pytest.mark.postgres
def test_scratch_database_exists_while_open_and_is_dropped_on_close(postgres_url: str) -> None:
    target = PostgresTarget(postgres_url)
    try:
        assert target.mode == "database"
        assert target.name.startswith(SCRATCH_PREFIX)
        assert database_exists(postgres_url, target.name)
        comment = pg_rows(
            postgres_url,
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (target.name,),
        )
        assert comment[0][0].startswith(MARKER)
        connection = target.connect("A")
        try:
            with connection.raw.cursor() as cursor:
                cursor.execute("SELECT current_database(), current_setting('application_name')")
                assert cursor.fetchone() == (target.name, f"dbsandbox:{target.name}:A")
        finally:
            connection.close()
        assert target.notices == []
    finally:
        target.close()
    assert not database_exists(postgres_url, target.name)


@pytest.mark.postgres
def test_scratch_database_is_dropped_when_the_body_raises(postgres_url: str) -> None:
    names: list[str] = []
    with (
        pytest.raises(RuntimeError, match="boom"),
        open_target(TargetOptions(engine="postgres", url=postgres_url)) as target,
    ):
        assert isinstance(target, PostgresTarget)
        names.append(target.name)
        result = run_sql(target, "CREATE TABLE t (x int); INSERT INTO t VALUES (1)")
        assert [o.status for o in outcomes(result)] == [Status.OK, Status.OK]
        assert database_exists(postgres_url, target.name)
        raise RuntimeError("boom")
    assert names
    assert not database_exists(postgres_url, names[0])


@pytest.mark.postgres
def test_scratch_database_is_dropped_even_with_a_session_left_open_in_a_transaction(
    postgres_url: str,
) -> None:
    target = PostgresTarget(postgres_url)
    connection = target.connect("A")
    try:
        with connection.raw.cursor() as cursor:
            cursor.execute("BEGIN")
            cursor.execute("CREATE TABLE t (x int)")
            cursor.execute("LOCK TABLE t IN ACCESS EXCLUSIVE MODE")
        target.close()  # the session connection was never closed
        assert not database_exists(postgres_url, target.name)
    finally:
        connection.close()
        pg_rows(postgres_url, f'DROP DATABASE IF EXISTS "{target.name}" WITH (FORCE)')


@pytest.mark.postgres
def test_without_createdb_it_falls_back_to_a_scratch_schema_and_says_so(
    postgres_url: str, test_database: str, limited_role: str
) -> None:
    pg_rows(postgres_url, f'GRANT CREATE ON DATABASE "{test_database}" TO "{limited_role}"')
    target = PostgresTarget(url_for(postgres_url, limited_role, test_database))
    try:
        assert target.mode == "schema"
        assert target.name.startswith(SCRATCH_PREFIX)
        assert len(target.notices) == 1
        notice = target.notices[0]
        assert "may not create databases" in notice
        assert target.name in notice
        assert test_database in notice
        assert not database_exists(postgres_url, target.name)
        schema = pg_rows(
            postgres_url,
            "SELECT pg_get_userbyid(nspowner), obj_description(oid, 'pg_namespace') "
            "FROM pg_namespace WHERE nspname = %s",
            (target.name,),
            dbname=test_database,
        )
        assert schema[0][0] == limited_role
        assert schema[0][1].startswith(MARKER)

        result = run_sql(
            target,
            "CREATE TABLE t (x int); INSERT INTO t VALUES (1), (2);"
            "SELECT current_schema(), count(*) FROM t GROUP BY 1",
        )
        found = outcomes(result)
        assert [o.status for o in found] == [Status.OK] * 3
        assert found[2].rows == [(target.name, 2)]
        tables = pg_rows(
            postgres_url,
            "SELECT schemaname FROM pg_tables WHERE tablename = 't'",
            dbname=test_database,
        )
        assert tables == [(target.name,)]
    finally:
        target.close()
    remaining = pg_rows(
        postgres_url,
        "SELECT nspname FROM pg_namespace WHERE nspname = %s",
        (target.name,),
        dbname=test_database,
    )
    assert remaining == []
    assert (
        pg_rows(
            postgres_url,
            "SELECT tablename FROM pg_tables WHERE tablename = 't'",
            dbname=test_database,
        )
        == []
    )


@pytest.mark.postgres
def test_role_that_may_create_neither_database_nor_schema_is_a_user_error(
    postgres_url: str, test_database: str, limited_role: str
) -> None:
    with pytest.raises(UserError, match="may neither create databases nor schemas") as caught:
        PostgresTarget(url_for(postgres_url, limited_role, test_database))
    assert "\n" not in str(caught.value)
    leftovers = pg_rows(
        postgres_url,
        "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'dbsandbox\\_%%'",
        dbname=test_database,
    )
    assert leftovers == []


@pytest.mark.postgres
def test_unknown_database_is_a_one_line_user_error(postgres_url: str) -> None:
    missing = unique("dbs_missing_")
    with pytest.raises(UserError) as caught:
        PostgresTarget(url_for(postgres_url, database=missing))
    text = str(caught.value)
    assert text.startswith("cannot connect to ")
    assert f'database "{missing}" does not exist' in text
    assert "\n" not in text
    assert not database_exists(postgres_url, missing)


DESTRUCTIVE_SCRIPT = """
DROP TABLE IF EXISTS keep;
CREATE TABLE keep (id int);
INSERT INTO keep VALUES (99);
DELETE FROM keep;
DROP TABLE keep;
CREATE SCHEMA extra;
DROP SCHEMA IF EXISTS extra CASCADE;
"""


@pytest.mark.postgres
def test_database_mode_never_touches_the_users_database(
    postgres_url: str, test_database: str
) -> None:
    pg_rows(
        postgres_url,
        "CREATE TABLE keep (id int); INSERT INTO keep VALUES (1), (2), (3);"
        "COMMENT ON TABLE keep IS 'mine'",
        dbname=test_database,
    )
    before = user_objects(postgres_url, test_database)
    with open_target(
        TargetOptions(engine="postgres", url=url_for(postgres_url, database=test_database))
    ) as target:
        assert isinstance(target, PostgresTarget)
        assert target.mode == "database"
        result = run_sql(target, DESTRUCTIVE_SCRIPT + "DROP SCHEMA public CASCADE;")
        assert all(o.status is Status.OK for o in outcomes(result))
    assert user_objects(postgres_url, test_database) == before
    assert pg_rows(
        postgres_url,
        "SELECT array_agg(id ORDER BY id), obj_description('keep'::regclass) FROM keep",
        dbname=test_database,
    ) == [([1, 2, 3], "mine")]


@pytest.mark.postgres
def test_schema_mode_never_touches_the_users_tables(
    postgres_url: str, test_database: str, limited_role: str
) -> None:
    pg_rows(
        postgres_url,
        "CREATE TABLE keep (id int); INSERT INTO keep VALUES (1), (2), (3);",
        dbname=test_database,
    )
    pg_rows(postgres_url, f'GRANT CREATE ON DATABASE "{test_database}" TO "{limited_role}"')
    before = user_objects(postgres_url, test_database)
    with open_target(
        TargetOptions(engine="postgres", url=url_for(postgres_url, limited_role, test_database))
    ) as target:
        assert isinstance(target, PostgresTarget)
        assert target.mode == "schema"
        result = run_sql(target, DESTRUCTIVE_SCRIPT)
        assert all(o.status is Status.OK for o in outcomes(result))
    assert user_objects(postgres_url, test_database) == before
    assert pg_rows(postgres_url, "SELECT count(*) FROM keep", dbname=test_database) == [(3,)]
