"""`dbsandbox lint` on Alembic's offline SQL: findings revision by revision.

The SQL is made by Alembic itself (`alembic upgrade ... --sql`, offline: no server), from a
migration environment written here, and linted by the real CLI."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from sandbox.revisions import revision_at, revisions

REVISION = '''
"""{message}"""
from alembic import op
import sqlalchemy as sa

revision = "{rev}"
down_revision = {down}
branch_labels = None
depends_on = None


def upgrade():
{upgrade}


def downgrade():
{downgrade}
'''


def migrations(folder: Path) -> Path:
    """An Alembic environment with three revisions: a table, a risky change, a safe one."""
    subprocess.run(
        [sys.executable, "-m", "alembic", "init", str(folder / "migrations")],
        cwd=folder,
        check=True,
        capture_output=True,
    )
    ini = folder / "alembic.ini"
    text = ini.read_text(encoding="utf-8").splitlines()
    ini.write_text(
        "\n".join(
            "sqlalchemy.url = postgresql://nobody@localhost/none"
            if line.startswith("sqlalchemy.url")
            else line
            for line in text
        ),
        encoding="utf-8",
    )
    steps = [
        ("a1", None, "create accounts",
         'op.create_table("accounts", sa.Column("id", sa.Integer, primary_key=True), '
         'sa.Column("email", sa.String(100), nullable=False), sa.Column("legacy", sa.Text))',
         'op.drop_table("accounts")'),
        ("b2", '"a1"', "drop legacy",
         'op.alter_column("accounts", "email", nullable=True)\n'
         'op.drop_column("accounts", "legacy")\n'
         'op.execute("DELETE FROM accounts")',
         'op.add_column("accounts", sa.Column("legacy", sa.Text))'),
        ("c3", '"b2"', "index email",
         'op.create_index("ix_accounts_email", "accounts", ["email"])',
         'op.drop_index("ix_accounts_email")'),
    ]  # fmt: skip
    for rev, down, message, upgrade, downgrade in steps:
        (folder / "migrations" / "versions" / f"{rev}_{message.replace(' ', '_')}.py").write_text(
            REVISION.format(
                message=message,
                rev=rev,
                down=down,
                upgrade=textwrap.indent(upgrade, "    "),
                downgrade=textwrap.indent(downgrade, "    "),
            ),
            encoding="utf-8",
        )
    return folder


def offline_sql(folder: Path, *args: str) -> str:
    done = subprocess.run(
        [sys.executable, "-m", "alembic", *args, "--sql"],
        cwd=folder,
        check=True,
        capture_output=True,
        text=True,
    )
    return done.stdout


def lint(sql: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "sandbox", "lint", "--dialect", "postgres", *args, "-"],
        input=sql,
        capture_output=True,
        text=True,
    )


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return migrations(tmp_path_factory.mktemp("alembic"))


def test_each_revision_is_reported_with_its_own_findings(project: Path) -> None:
    sql = offline_sql(project, "upgrade", "head")
    done = lint(sql)
    assert done.returncode == 1, done.stderr
    lines = done.stdout.splitlines()
    headings = [line for line in lines if ": revision " in line]
    assert [h.split(": revision ", 1)[1] for h in headings] == [
        "upgrade (base) -> a1: no findings",
        "upgrade a1 -> b2: 3 errors",
        "upgrade b2 -> c3: no findings",
    ]
    # Each heading's line is the revision's own mark in Alembic's output.
    marks = [n for n, text in enumerate(sql.splitlines(), 1) if text.startswith("-- Running")]
    assert [int(h.split(":")[1]) for h in headings] == marks
    b2 = lines[lines.index(headings[1]) + 1 : lines.index(headings[2])]
    assert [line.split()[2] for line in b2] == [
        "drop-not-null",
        "drop-column",
        "delete-without-where",
    ]


def test_json_findings_name_their_revision(project: Path) -> None:
    done = lint(offline_sql(project, "upgrade", "head"), "--format", "json")
    findings = json.loads(done.stdout)
    assert {(f["rule"], f["revision"]["from"], f["revision"]["to"]) for f in findings} == {
        ("drop-not-null", "a1", "b2"),
        ("drop-column", "a1", "b2"),
        ("delete-without-where", "a1", "b2"),
    }
    assert all(f["revision"]["direction"] == "upgrade" for f in findings)


def test_a_range_and_a_downgrade_are_read_too(project: Path) -> None:
    # From b2 on, accounts is a table the script did not make: building an index on it
    # without CONCURRENTLY is advice (in the whole upgrade, a1 made it, and nobody used it).
    done = lint(offline_sql(project, "upgrade", "b2:head"))
    assert done.returncode == 0, done.stdout
    lines = done.stdout.splitlines()
    assert lines[0].endswith("revision upgrade b2 -> c3: 1 info")
    assert " info index-not-concurrent CREATE INDEX on accounts takes a SHARE lock" in lines[1]
    strict = lint(offline_sql(project, "upgrade", "b2:head"), "--strict-migrations")
    assert strict.returncode == 1
    assert " warning index-not-concurrent " in strict.stdout
    down = lint(offline_sql(project, "downgrade", "c3:a1"))
    assert down.returncode == 1
    assert [
        line.split(": revision ", 1)[1]
        for line in down.stdout.splitlines()
        if ": revision " in line
    ] == [
        "downgrade c3 -> b2: 1 error, 1 info",
        "downgrade b2 -> a1: 1 info",
    ]
    # Alembic's own alembic_version update after an ALTER is not work to move elsewhere.
    assert "work-after-exclusive-lock" not in down.stdout


def test_plain_sql_is_reported_as_before() -> None:
    done = lint("DELETE FROM accounts;\n")
    assert done.stdout.splitlines() == [
        "<stdin>:1:1: error delete-without-where DELETE without WHERE: it would delete every row "
        "in accounts"
    ]


def test_marks_of_merges_and_the_first_revision() -> None:
    text = (
        "BEGIN;\n"
        "-- Running upgrade  -> a1\n"
        "CREATE TABLE t (id int);\n"
        "-- Running upgrade a1, x9 -> m3\n"
        "DROP TABLE t;\n"
    )
    marked = revisions(text)
    assert [(r.direction, r.source, r.target, r.line) for r in marked] == [
        ("upgrade", "", "a1", 2),
        ("upgrade", "a1, x9", "m3", 4),
    ]
    assert revision_at(marked, 1) is None
    assert revision_at(marked, 3) is marked[0]
    assert revision_at(marked, 5) is marked[1]
    assert marked[0].name == "upgrade (base) -> a1"
