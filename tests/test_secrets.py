"""Passwords: masked wherever dbsandbox names the server, and nothing else rewritten.

Every run is the real `python -m sandbox` in its own process, against the real PostgreSQL
server (trust auth accepts any password, so each test invents its own). A process of its own
also means no password registered by an earlier test can help hide this one.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest
import sqlalchemy as sa

from sandbox.masking import mask_url, register_secret, scrub
from sandbox.targets import parse_postgres_url
from tests.test_targets import unique

URL_VARIABLES = ("DBSANDBOX_POSTGRES_URL", "DATABASE_URL", "PGPASSWORD")


@dataclass
class Done:
    code: int
    out: str
    err: str

    @property
    def both(self) -> str:
        return self.out + self.err


def dbsandbox(cwd: Path, *args: str, **env: str) -> Done:
    """The real command in a fresh process, with only the server variables given here."""
    child = {k: v for k, v in os.environ.items() if k not in URL_VARIABLES}
    # `clean` looks for orphaned SQLite sandboxes in the temporary directory: only ours.
    child["TMPDIR"] = str(cwd)
    child.update(env)
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=child,
        timeout=120,
        check=False,
    )
    return Done(done.returncode, done.stdout, done.stderr)


def server(postgres_url: str) -> sa.URL:
    return sa.make_url(postgres_url)


def with_password(postgres_url: str, password: str) -> str:
    url = server(postgres_url).set(password=password)
    return url.render_as_string(hide_password=False)


def keywords(postgres_url: str, password: str) -> str:
    """The server as libpq key=value pairs, the password quoted as libpq reads it."""
    url = server(postgres_url)
    quoted = "'" + password.replace("\\", "\\\\").replace("'", "\\'") + "'"
    return (
        f"host={url.host} port={url.port or 5432} user={url.username} "
        f"dbname={url.database} password={quoted}"
    )


def assert_one_line_error(done: Done, *fragments: str) -> None:
    assert done.code == 2, done
    assert done.out == ""
    assert len(done.err.splitlines()) == 1, done.err
    assert "Traceback" not in done.err
    for fragment in fragments:
        assert fragment in done.err, done.err


# What the script reads back: words that equal the password in the postgres:postgres case.
SCRIPT = "SELECT 'postgres' AS word, current_user AS who;\n"


def form_args(
    form: str, postgres_url: str, password: str, cwd: Path
) -> tuple[list[str], dict[str, str]]:
    """The command-line arguments and environment that hand the server over in `form`."""
    if form == "userinfo":
        return ["--url", with_password(postgres_url, password)], {}
    if form == "query":
        bare = server(postgres_url).set(password=None).render_as_string(hide_password=False)
        return ["--url", f"{bare}?password={password}"], {}
    if form == "keywords":
        return ["--url", keywords(postgres_url, password + " it's")], {}
    if form in ("dotenv", "dotenv-database-url"):
        variable = "DBSANDBOX_POSTGRES_URL" if form == "dotenv" else "DATABASE_URL"
        (cwd / ".env").write_text(f"{variable}={with_password(postgres_url, password)}\n")
        return [], {}
    if form == "environment":
        return [], {"DBSANDBOX_POSTGRES_URL": with_password(postgres_url, password)}
    assert form == "pgpassword"
    bare = server(postgres_url).set(password=None).render_as_string(hide_password=False)
    return ["--url", bare], {"PGPASSWORD": password}


@pytest.mark.postgres
@pytest.mark.parametrize(
    "form",
    ["userinfo", "query", "keywords", "dotenv", "dotenv-database-url", "environment", "pgpassword"],
)
def test_no_password_form_reaches_the_report_or_the_exports(
    postgres_url: str, tmp_path: Path, form: str
) -> None:
    password = unique("S3cret-xyz")
    (tmp_path / "s.sql").write_text(SCRIPT, encoding="utf-8")
    args, env = form_args(form, postgres_url, password, tmp_path)
    done = dbsandbox(
        tmp_path, "run", "s.sql", "--engine", "postgres", *args, "--export", "x", **env
    )
    assert done.code == 0, done.err
    exports = {p.suffix: p.read_text(encoding="utf-8") for p in tmp_path.glob("x.*")}
    assert sorted(exports) == [".json", ".md", ".sql"]
    for text in [done.out, done.err, *exports.values()]:
        assert password not in text
    header = done.out.splitlines()[0]
    assert header.startswith("dbsandbox · postgres · postgres database postgresql://")
    document = json.loads(exports[".json"])
    assert document["engine"] == "postgres"
    assert document["target"] in header
    if form != "pgpassword":  # PGPASSWORD is not part of the URL: nothing to mask there
        assert "***" in document["target"]
    assert document["statements"][0]["rows"] == [["postgres", "postgres"]]
    assert "--engine postgres --url URL" in exports[".sql"]


@pytest.mark.postgres
def test_postgres_postgres_keeps_the_engine_name_the_data_and_the_sql(
    postgres_url: str, tmp_path: Path
) -> None:
    """The most common URL: its password equals the engine's name, the user and the data."""
    if server(postgres_url).username != "postgres":
        pytest.skip("the test server's role is not postgres")
    url = with_password(postgres_url, "postgres")
    script = "SELECT 'postgres' AS postgres, current_user;\n"
    (tmp_path / "s.sql").write_text(script, encoding="utf-8")
    base = ["run", "s.sql", "--engine", "postgres", "--url", url]
    done = dbsandbox(tmp_path, *base, "--format", "json", "--export", "x")
    assert done.code == 0, done.err
    report = json.loads(done.out)
    assert report["engine"] == "postgres"
    assert report["target"].startswith("postgres database postgresql://postgres:***@")
    statement = report["statements"][0]
    assert statement["sql"] == script.strip().rstrip(";")
    assert statement["columns"] == ["postgres", "current_user"]
    assert statement["rows"] == [["postgres", "postgres"]]
    replay = (tmp_path / "x.sql").read_text(encoding="utf-8")
    assert "dbsandbox run x.sql --engine postgres --url URL" in replay
    assert "SELECT 'postgres' AS postgres, current_user;" in replay
    assert "***" not in replay  # the replay names no server, so it masks nothing
    runbook = (tmp_path / "x.md").read_text(encoding="utf-8")
    assert "postgres ·" in runbook and "***" not in runbook

    text = dbsandbox(tmp_path, *base)
    assert text.code == 0, text.err
    assert text.out.startswith(
        "dbsandbox · postgres · postgres database postgresql://postgres:***@"
    )
    assert "[A] line 1: SELECT 'postgres' AS postgres, current_user" in text.out
    assert text.out.count("***") == 1  # the header's password, and nothing else


@pytest.mark.postgres
def test_data_equal_to_a_password_is_shown_verbatim(postgres_url: str, tmp_path: Path) -> None:
    password = unique("S3cret-xyz")
    script = f"SELECT '{password}' AS \"{password}\";\n"
    (tmp_path / "s.sql").write_text(script, encoding="utf-8")
    url = with_password(postgres_url, password)
    done = dbsandbox(
        tmp_path, "run", "s.sql", "--engine", "postgres", "--url", url, "--format", "json"
    )
    assert done.code == 0, done.err
    report = json.loads(done.out)
    assert password not in report["target"]
    statement = report["statements"][0]
    assert (statement["sql"], statement["columns"], statement["rows"]) == (
        script.strip().rstrip(";"),
        [password],
        [[password]],
    )


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("template", "says"),
    [
        ("{pw}", "not a PostgreSQL URL (it is not shown"),
        ("postgresql://u:{pw}@127.0.0.1:notaport/db", "not a valid URL (it is not shown"),
        ("postgresql://u:p@{pw}@127.0.0.1/db", "write an @ inside the user name or password"),
        ("host=127.0.0.1 password={pw} stray", "not a valid key=value connection string"),
        ("host=127.0.0.1 password='{pw}", "not a valid key=value connection string"),
        ("host=127.0.0.1 passwrd={pw}", "not a valid key=value connection string"),
        ("mysql://u:{pw}@127.0.0.1/db", "unsupported URL scheme 'mysql'"),
    ],
)
def test_a_bad_url_is_never_echoed(tmp_path: Path, template: str, says: str) -> None:
    password = unique("S3cret-xyz")
    (tmp_path / "s.sql").write_text("SELECT 1;\n", encoding="utf-8")
    url = template.format(pw=password)
    done = dbsandbox(tmp_path, "run", "s.sql", "--engine", "postgres", "--url", url)
    assert_one_line_error(done, says)
    assert password not in done.both
    cleaned = dbsandbox(tmp_path, "clean", "--url", url, "--dry-run")
    assert_one_line_error(cleaned, says)
    assert password not in cleaned.both


@pytest.mark.postgres
@pytest.mark.parametrize(
    "form", ["refused", "refused-keywords", "unknown-database", "query-any-case"]
)
def test_connection_errors_do_not_show_the_password(
    postgres_url: str, tmp_path: Path, form: str
) -> None:
    password = unique("S3cret-xyz")
    url = server(postgres_url)
    if form == "refused":
        given = with_password(postgres_url, password).replace(f":{url.port or 5432}/", ":1/")
    elif form == "refused-keywords":
        given = keywords(postgres_url, password).replace(f"port={url.port or 5432}", "port=1")
    elif form == "unknown-database":
        given = with_password(
            url.set(database=unique("no_such_db_")).render_as_string(False), password
        )
    else:  # libpq does not know PassWord: its error names the option, the URL is masked
        bare = url.set(password=None).render_as_string(hide_password=False)
        given = f"{bare}?PassWord={password}"
    (tmp_path / "s.sql").write_text("SELECT 1;\n", encoding="utf-8")
    done = dbsandbox(tmp_path, "run", "s.sql", "--engine", "postgres", "--url", given)
    assert_one_line_error(done, "cannot connect to postgresql://")
    assert password not in done.both
    cleaned = dbsandbox(tmp_path, "clean", "--url", given, "--dry-run")
    assert_one_line_error(cleaned, "cannot connect to postgresql://")
    assert password not in cleaned.both


def test_clean_skips_a_foreign_database_url_without_showing_it(tmp_path: Path) -> None:
    password = unique("S3cret-xyz")
    (tmp_path / ".env").write_text(f"DATABASE_URL=mysql://app:{password}@db.example/app\n")
    done = dbsandbox(tmp_path, "clean", "--dry-run")
    assert done.code == 0, done.err
    assert "skipped postgres: the configured URL is a mysql URL" in done.out
    assert password not in done.both


# --------------------------------------------------------------------------- the two tools


def test_mask_url_masks_every_password_and_nothing_else() -> None:
    url = parse_postgres_url(
        "postgresql://postgres:postgres@db.example:6543/postgres"
        "?sslpassword=k3y&application_name=postgres&PASSWORD=x9"
    )
    assert mask_url(url) == (
        "postgresql://postgres:***@db.example:6543/postgres"
        "?sslpassword=***&application_name=postgres&PASSWORD=***"
    )
    keyword = parse_postgres_url(
        "host=/var/run/postgresql,db2 port=5432,5433 user=alice password='a b\\'c' dbname=app"
    )
    assert keyword.password == "a b'c"
    assert mask_url(keyword) == (
        "postgresql://alice:***@/app?host=/var/run/postgresql,db2&port=5432,5433"
    )


def test_scrub_masks_password_shapes_and_known_passwords_in_driver_text() -> None:
    known = unique("Kn0wn")
    register_secret(known)
    said = f'invalid dsn: missing "=" after "{known}" in connection info string'
    assert scrub(said) == 'invalid dsn: missing "=" after "***" in connection info string'
    assert scrub("host=h password='a b\\'c' port=1") == "host=h password=*** port=1"
    assert scrub("x postgresql://u:p@ss@h/db y") == "x postgresql://u:***@h/db y"
    assert scrub("SSLPassword = s3 user=u") == "SSLPassword = *** user=u"
    # A password equal to the user name is shown anyway: masking it would only corrupt.
    register_secret("alice", shown=("alice", "db.example", "app"))
    assert scrub('password authentication failed for user "alice"') == (
        'password authentication failed for user "alice"'
    )
