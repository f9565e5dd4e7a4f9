"""`dbsandbox clean` against real leftovers: crashed processes, live sandboxes, look-alikes.

A crash is simulated for real: a separate Python process creates a sandbox and leaves with
os._exit(0), so no `finally` and no `close()` runs, exactly as after `kill -9` or a power cut.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from sandbox.cleanup import clean_sqlite
from sandbox.cli import main
from sandbox.targets import MARKER, SCRATCH_PREFIX, TEMP_DIR_PREFIX, PostgresTarget, SqliteTarget
from tests import test_targets as shared
from tests.test_targets import database_exists, pg_connect, pg_rows, unique, url_for

# Fixtures shared with the target tests (a private temp dir, a user database, a limited role).
private_tmp = shared.private_tmp
test_database = shared.test_database
limited_role = shared.limited_role

CRASH = """
import os, sys
from sandbox.targets import open_target, TargetOptions
engine = sys.argv[1]
url = sys.argv[2] if engine == "postgres" else None
target = open_target(TargetOptions(engine=engine, url=url))
print(target.name if engine == "postgres" else target.directory, flush=True)
os._exit(0)  # no close(), no finally: what a crash leaves behind
"""


def crash(engine: str, url: str | None = None, env: dict[str, str] | None = None) -> str:
    """Run a sandbox in another process that dies without cleaning up; returns what it left."""
    argv = [sys.executable, "-c", CRASH, engine] + ([url] if url else [])
    done = subprocess.run(argv, capture_output=True, text=True, timeout=60, env=env, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def wait_until(condition: Callable[[], bool], what: str, bound_s: float = 20.0) -> None:
    """Poll until `condition` holds; the bound only keeps a broken test from hanging."""
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.05)


def connections_of(url: str, name: str) -> int:
    rows = pg_rows(
        url,
        "SELECT count(*) FROM pg_stat_activity WHERE starts_with(application_name, %s)",
        (f"dbsandbox:{name}",),
    )
    return int(rows[0][0])


@pytest.fixture
def orphan(postgres_url: str) -> Iterator[Callable[..., str]]:
    """Makes orphaned scratch databases (or schemas); whatever is left is dropped afterwards."""
    made: list[tuple[str, str | None]] = []

    def make(url: str | None = None, dbname: str | None = None) -> str:
        name = crash("postgres", url or postgres_url)
        made.append((name, dbname))
        assert name.startswith(SCRATCH_PREFIX)
        # The server notices the dead client a moment later; until then it still looks live.
        wait_until(lambda: connections_of(postgres_url, name) == 0, "the crashed client to go")
        return name

    yield make
    for name, dbname in made:
        if dbname is None:
            pg_rows(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        else:
            pg_rows(postgres_url, f'DROP SCHEMA IF EXISTS "{name}" CASCADE', dbname=dbname)


@pytest.fixture
def handmade_database(postgres_url: str) -> Iterator[Callable[[str | None], str]]:
    """Databases a person made with our prefix: clean must never drop them."""
    made: list[str] = []

    def make(comment: str | None) -> str:
        name = unique(f"{SCRATCH_PREFIX}handmade_")
        pg_rows(postgres_url, f'CREATE DATABASE "{name}"')
        made.append(name)
        if comment is not None:
            pg_rows(postgres_url, f'COMMENT ON DATABASE "{name}" IS %s', (comment,))
        return name

    yield make
    for name in made:
        pg_rows(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def clean(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, list[str], str]:
    code = main(["clean", *args])
    captured = capsys.readouterr()
    return code, captured.out.splitlines(), captured.err


# --------------------------------------------------------------------------- PostgreSQL


@pytest.mark.postgres
def test_clean_drops_the_database_a_crashed_sandbox_left_behind(
    postgres_url: str,
    private_tmp: Path,
    orphan: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = orphan()
    assert database_exists(postgres_url, name)

    code, lines, err = clean(capsys, "--url", postgres_url)

    assert code == 0, err
    assert f"removed database {name}" in lines
    assert not database_exists(postgres_url, name)


@pytest.mark.postgres
def test_clean_keeps_live_sandboxes_and_databases_it_did_not_mark(
    postgres_url: str,
    private_tmp: Path,
    orphan: Callable[..., str],
    handmade_database: Callable[[str | None], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    dead = orphan()
    unmarked = handmade_database(None)
    other_comment = handmade_database("my notes: " + MARKER)  # the marker, but not as prefix
    live = PostgresTarget(postgres_url)
    try:
        code, lines, err = clean(capsys, "--url", postgres_url)
        assert code == 0, err
        assert f"removed database {dead}" in lines
        assert f"kept database {live.name}: in use by a running sandbox" in lines
        assert not any(unmarked in line or other_comment in line for line in lines)
        assert database_exists(postgres_url, live.name)
        assert database_exists(postgres_url, unmarked)
        assert database_exists(postgres_url, other_comment)
        assert not database_exists(postgres_url, dead)
        # The live sandbox still works after the clean.
        connection = live.connect("A")
        try:
            with connection.raw.cursor() as cursor:
                cursor.execute("SELECT current_database()")
                assert cursor.fetchone() == (live.name,)
        finally:
            connection.close()
    finally:
        live.close()


@pytest.mark.postgres
def test_clean_dry_run_drops_nothing(
    postgres_url: str,
    private_tmp: Path,
    orphan: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = orphan()

    code, lines, err = clean(capsys, "--url", postgres_url, "--dry-run")
    assert code == 0, err
    assert f"would remove database {name} (dry run: not dropped)" in lines
    assert database_exists(postgres_url, name)

    code, lines, err = clean(capsys, "--url", postgres_url)
    assert code == 0, err
    assert f"removed database {name}" in lines
    assert not database_exists(postgres_url, name)


@pytest.mark.postgres
def test_clean_keeps_an_orphan_someone_is_connected_to(
    postgres_url: str,
    private_tmp: Path,
    orphan: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = orphan()
    with pg_connect(postgres_url, dbname=name):
        code, lines, err = clean(capsys, "--url", postgres_url)
        assert code == 0, err
        assert f"kept database {name}: 1 other connection(s) open" in lines
        assert database_exists(postgres_url, name)


@pytest.mark.postgres
def test_a_drop_that_fails_is_reported_and_the_others_still_go(
    postgres_url: str,
    private_tmp: Path,
    orphan: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    # Both orphans are made first: the first is held back from any concurrent clean while the
    # second is being made, by being a template database (which DROP DATABASE refuses).
    stuck = orphan()
    pg_rows(postgres_url, f'ALTER DATABASE "{stuck}" IS_TEMPLATE true')
    try:
        dead = orphan()
        code, lines, err = clean(capsys, "--url", postgres_url)
        assert (code, err) == (0, "")
        assert f"kept database {stuck}: could not drop it: cannot drop a template database" in lines
        assert f"removed database {dead}" in lines
        assert database_exists(postgres_url, stuck)
        assert not database_exists(postgres_url, dead)
    finally:
        pg_rows(postgres_url, f'ALTER DATABASE "{stuck}" IS_TEMPLATE false')


@pytest.mark.postgres
def test_clean_as_another_role_keeps_what_it_may_not_drop(
    postgres_url: str,
    test_database: str,
    limited_role: str,
    private_tmp: Path,
    orphan: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = orphan()  # owned by the superuser
    code, lines, err = clean(capsys, "--url", url_for(postgres_url, limited_role, test_database))
    assert code == 0, err
    assert f"kept database {name}: owned by another role" in lines
    assert database_exists(postgres_url, name)


@pytest.mark.postgres
def test_clean_drops_an_orphaned_scratch_schema(
    postgres_url: str,
    test_database: str,
    limited_role: str,
    private_tmp: Path,
    orphan: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    pg_rows(
        postgres_url,
        "CREATE TABLE keep (id int); INSERT INTO keep VALUES (1)",
        dbname=test_database,
    )
    pg_rows(postgres_url, f'GRANT CREATE ON DATABASE "{test_database}" TO "{limited_role}"')
    role_url = url_for(postgres_url, limited_role, test_database)
    name = orphan(role_url, test_database)

    def schema_exists() -> bool:
        rows = pg_rows(
            postgres_url,
            "SELECT 1 FROM pg_namespace WHERE nspname = %s",
            (name,),
            dbname=test_database,
        )
        return bool(rows)

    assert schema_exists()
    code, lines, err = clean(capsys, "--url", role_url)
    assert code == 0, err
    assert f"removed schema {name}" in lines
    assert not schema_exists()
    assert pg_rows(postgres_url, "SELECT count(*) FROM keep", dbname=test_database) == [(1,)]


@pytest.mark.postgres
def test_clean_with_an_unreachable_server_fails_before_removing_anything(
    private_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = private_tmp / f"{TEMP_DIR_PREFIX}stale"
    stale.mkdir()
    (stale / "owner.pid").write_text(str(dead_pid()))

    code, lines, err = clean(capsys, "--url", "postgresql://postgres@127.0.0.1:1/postgres")

    assert code == 2
    assert lines == []
    assert err.startswith("dbsandbox: cannot connect to")
    assert len(err.splitlines()) == 1
    assert stale.exists()


# --------------------------------------------------------------------------- SQLite


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped)."""
    done = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return int(done.stdout)


def sandbox_dir(root: Path, name: str, owner: str | None) -> Path:
    directory = root / f"{TEMP_DIR_PREFIX}{name}"
    directory.mkdir()
    (directory / "sandbox.db").write_bytes(b"SQLite format 3\x00")
    if owner is not None:
        (directory / "owner.pid").write_text(owner)
    return directory


def test_clean_sqlite_removes_only_directories_whose_process_is_gone(tmp_path: Path) -> None:
    gone = dead_pid()
    stale = sandbox_dir(tmp_path, "stale", str(gone))
    live = sandbox_dir(tmp_path, "live", str(os.getpid()))
    no_owner = sandbox_dir(tmp_path, "noowner", None)
    bad_owner = sandbox_dir(tmp_path, "badowner", "not a pid")
    lookalike = tmp_path / "other-stale"  # not our prefix
    lookalike.mkdir()
    (lookalike / "owner.pid").write_text(str(gone))
    a_file = tmp_path / f"{TEMP_DIR_PREFIX}file"
    a_file.write_text(str(gone))

    report = clean_sqlite(root=tmp_path)

    assert report.removed == [str(stale)]
    assert report.kept == [f"{live}: in use by process {os.getpid()}"]
    assert not stale.exists()
    for untouched in (live, no_owner, bad_owner, lookalike, a_file):
        assert untouched.exists()


def test_clean_sqlite_dry_run_removes_nothing(tmp_path: Path) -> None:
    stale = sandbox_dir(tmp_path, "stale", str(dead_pid()))
    report = clean_sqlite(dry_run=True, root=tmp_path)
    assert report.removed == [f"{stale} (dry run: not removed)"]
    assert (stale / "sandbox.db").exists()


def test_clean_sqlite_removes_what_a_crashed_process_left_and_keeps_a_live_sandbox(
    private_tmp: Path,
) -> None:
    env = {**os.environ, "TMPDIR": str(private_tmp)}
    left = Path(crash("sqlite", env=env))
    assert left.parent == private_tmp
    assert (left / "sandbox.db").exists()
    live = SqliteTarget()
    try:
        assert live.directory.parent == private_tmp
        report = clean_sqlite(root=private_tmp)
        assert report.removed == [str(left)]
        assert report.kept == [f"{live.directory}: in use by process {os.getpid()}"]
        assert not left.exists()
        assert live.path.exists()
    finally:
        live.close()


def test_clean_command_without_a_server_cleans_sqlite_only(
    private_tmp: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("DBSANDBOX_POSTGRES_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    monkeypatch.chdir(tmp_path)  # no .env here

    code, lines, err = clean(capsys)
    assert (code, lines, err) == (0, ["no orphaned sandboxes found (sqlite)"], "")

    stale = sandbox_dir(private_tmp, "stale", str(dead_pid()))
    code, lines, err = clean(capsys, "--dry-run")
    assert (code, lines, err) == (0, [f"would remove {stale} (dry run: not removed)"], "")
    assert stale.exists()
    code, lines, err = clean(capsys)
    assert (code, lines, err) == (0, [f"removed {stale}"], "")
    assert not stale.exists()


def test_clean_skips_a_configured_url_that_is_not_postgres(
    private_tmp: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A project's .env often has DATABASE_URL for its own SQLite or MySQL database."""
    monkeypatch.delenv("DBSANDBOX_POSTGRES_URL", raising=False)
    monkeypatch.delenv("DATABASE_URL", raising=False)
    (tmp_path / ".env").write_text("DATABASE_URL=sqlite:///app.db\n")
    monkeypatch.chdir(tmp_path)
    stale = sandbox_dir(private_tmp, "stale", str(dead_pid()))

    code, lines, err = clean(capsys)

    assert (code, err) == (0, "")
    assert lines == [
        "skipped postgres: the configured URL is a sqlite URL, not a PostgreSQL one",
        f"removed {stale}",
    ]
    assert not stale.exists()


def test_clean_with_an_explicit_url_that_is_not_postgres_is_an_error(
    private_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, lines, err = clean(capsys, "--url", "mysql://u@h/db")
    assert (code, lines) == (2, [])
    assert err == (
        "dbsandbox: unsupported URL scheme 'mysql': use postgresql://USER@HOST:PORT/DB\n"
    )


# --------------------------------------------------------------------------- records


@pytest.mark.postgres
def test_a_database_made_later_under_a_recorded_name_is_not_ours(
    postgres_url: str,
    private_tmp: Path,
    orphan: Callable[..., str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    name = orphan()
    # Someone drops the leftover and makes a database of their own under the same name.
    pg_rows(postgres_url, f'DROP DATABASE "{name}"')
    pg_rows(postgres_url, f'CREATE DATABASE "{name}"')

    code, lines, err = clean(capsys, "--url", postgres_url)

    assert code == 0, err
    assert f"kept database {name}: not the one the sandbox made (its oid changed)" in lines
    assert database_exists(postgres_url, name)


@pytest.mark.postgres
def test_a_record_about_another_server_is_left_for_that_server(
    postgres_url: str,
    private_tmp: Path,
    handmade_database: Callable[[str | None], str],
    capsys: pytest.CaptureFixture[str],
) -> None:
    from sandbox.ownership import Record, records_dir

    namesake = handmade_database(None)  # this server's, merely named like the other's
    other = Record(
        "dbsandbox_elsewhere",
        server={"host": "db.elsewhere", "port": 5432, "system_identifier": "1"},
        pid=dead_pid(),
    )
    other.claim(namesake)
    other.claim("dbsandbox_elsewhere")

    code, lines, err = clean(capsys, "--url", postgres_url)

    assert code == 0, err
    assert not any(namesake in line for line in lines)
    assert database_exists(postgres_url, namesake)
    kept = Record.load(records_dir() / "dbsandbox_elsewhere.json")
    assert kept is not None and set(kept.objects) == {namesake, "dbsandbox_elsewhere"}
