"""Migration advice (sandbox/guard/migration.py): statements that lock a live table longer
than they need, each with its safe recipe; read in script order."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from sandbox.cli import main
from sandbox.guard import lint_script
from sandbox.guard.findings import MIGRATION_RULES, Severity


def rules(script: str, dialect: str = "postgres") -> list[tuple[int, str]]:
    """(line, rule) of the migration advice for a script."""
    return [
        (f.line, f.rule)
        for f in lint_script(script, "postgres" if dialect == "postgres" else "sqlite")
        if f.rule in MIGRATION_RULES
    ]


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        # An index built the blocking way on a table the script did not make, and the fix.
        ("CREATE INDEX ix ON accounts (email);", ["index-not-concurrent"]),
        ("CREATE INDEX CONCURRENTLY ix ON accounts (email);", []),
        ("BEGIN;\nCREATE INDEX CONCURRENTLY ix ON accounts (email);\nCOMMIT;",
         ["concurrently-in-transaction"]),
        ("BEGIN;\nDROP INDEX CONCURRENTLY ix;\nCOMMIT;", ["concurrently-in-transaction"]),
        # ACCESS EXCLUSIVE without lock_timeout; with it, in the session or the transaction.
        ("ALTER TABLE accounts ADD COLUMN note text;", ["lock-without-timeout"]),
        ("SET lock_timeout = '2s';\nALTER TABLE accounts ADD COLUMN note text;", []),
        ("BEGIN;\nSET LOCAL lock_timeout = '2s';\nALTER TABLE accounts ADD COLUMN note text;\n"
         "COMMIT;", []),
        ("SET lock_timeout = 0;\nALTER TABLE accounts ADD COLUMN note text;",
         ["lock-without-timeout"]),
        # Constraints: scanned under lock unless NOT VALID, then VALIDATE.
        ("SET lock_timeout = '2s';\nALTER TABLE orders ADD CONSTRAINT ck CHECK (total >= 0);",
         ["constraint-not-valid"]),
        ("SET lock_timeout = '2s';\n"
         "ALTER TABLE orders ADD CONSTRAINT ck CHECK (total >= 0) NOT VALID;\n"
         "ALTER TABLE orders VALIDATE CONSTRAINT ck;", []),
        # SET NOT NULL scans unless a validated CHECK (c IS NOT NULL) came first.
        ("SET lock_timeout = '2s';\nALTER TABLE orders ALTER COLUMN placed_at SET NOT NULL;",
         ["set-not-null-scan"]),
        ("SET lock_timeout = '2s';\n"
         "ALTER TABLE orders ADD CONSTRAINT c CHECK (placed_at IS NOT NULL) NOT VALID;\n"
         "ALTER TABLE orders VALIDATE CONSTRAINT c;\n"
         "ALTER TABLE orders ALTER COLUMN placed_at SET NOT NULL;", []),
        # Rewrites: a type change, a per-row default; a constant or now() default is stored once.
        ("SET lock_timeout = '2s';\nALTER TABLE accounts ALTER COLUMN balance TYPE bigint;",
         ["table-rewrite"]),
        ("SET lock_timeout = '2s';\n"
         "ALTER TABLE accounts ADD COLUMN token uuid DEFAULT gen_random_uuid();",
         ["table-rewrite"]),
        ("SET lock_timeout = '2s';\n"
         "ALTER TABLE accounts ADD COLUMN seen timestamptz DEFAULT now();",
         []),
        # Work done while ACCESS EXCLUSIVE is held; committing first is the fix.
        ("SET lock_timeout = '2s';\nBEGIN;\nALTER TABLE accounts ADD COLUMN note text;\n"
         "UPDATE accounts SET note = '' WHERE id < 100;\nCOMMIT;",
         ["work-after-exclusive-lock"]),
        ("SET lock_timeout = '2s';\nBEGIN;\nALTER TABLE accounts ADD COLUMN note text;\nCOMMIT;\n"
         "UPDATE accounts SET note = '' WHERE id < 100;", []),
        # Foreign keys want an index on their columns, made anywhere in the script.
        ("CREATE TABLE invoices (id int PRIMARY KEY, customer_id int REFERENCES customers (id));",
         ["fk-without-index"]),
        ("CREATE TABLE invoices (id int PRIMARY KEY, customer_id int REFERENCES customers (id));\n"
         "CREATE INDEX ON invoices (customer_id);", []),
        ("CREATE TABLE links (a int REFERENCES x (id), b int, PRIMARY KEY (a, b));", []),
        # A table the script made is nobody else's yet: locking it holds nobody up.
        ("CREATE TABLE fresh (id int PRIMARY KEY, n int);\nALTER TABLE fresh ALTER COLUMN n "
         "TYPE bigint;\nCREATE INDEX ON fresh (n);", []),
    ],
)  # fmt: skip
def test_each_rule_fires_and_its_recipe_silences_it(script: str, expected: list[str]) -> None:
    assert sorted(rule for _, rule in rules(script)) == sorted(expected)


def test_advice_points_at_its_statement_and_says_the_lock() -> None:
    script = "SELECT 1;\n\nALTER TABLE accounts ALTER COLUMN balance TYPE bigint;\n"
    found = [f for f in lint_script(script, "postgres") if f.rule in MIGRATION_RULES]
    assert {(f.line, f.rule) for f in found} == {(3, "table-rewrite"), (3, "lock-without-timeout")}
    assert all(f.severity is Severity.INFO for f in found)
    timeout = next(f for f in found if f.rule == "lock-without-timeout")
    assert "ACCESS EXCLUSIVE on accounts" in timeout.message
    assert "lock_timeout" in timeout.fix


@pytest.mark.parametrize(
    ("statement", "says"),
    [
        ("ALTER TABLE t ALTER COLUMN a TYPE integer", "change a column"),
        ("ALTER TABLE t ADD CONSTRAINT u UNIQUE (a)", "add a constraint"),
        ("ALTER TABLE t DROP CONSTRAINT u", "drop a constraint"),
    ],
)
def test_sqlite_says_what_its_alter_table_cannot_do(statement: str, says: str) -> None:
    found = [f for f in lint_script(statement, "sqlite") if f.rule == "sqlite-alter-limit"]
    assert len(found) == 1 and says in found[0].message
    assert "PRAGMA foreign_key_check" in found[0].fix
    # And SQLite does refuse it.
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (a INTEGER)")
    with pytest.raises(sqlite3.OperationalError):
        db.execute(statement)


@pytest.mark.parametrize(
    "statement",
    [
        "ALTER TABLE t ADD COLUMN b TEXT",
        "ALTER TABLE t RENAME COLUMN a TO c",
        "ALTER TABLE t DROP COLUMN a",
    ],
)
def test_sqlite_alter_table_forms_it_can_do_get_no_advice(statement: str) -> None:
    assert rules(statement, "sqlite") == []
    db = sqlite3.connect(":memory:")
    db.execute("CREATE TABLE t (a INTEGER, z INTEGER)")
    db.execute(statement)


def test_strict_migrations_fails_the_lint(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "0042_index.sql"
    script.write_text("CREATE INDEX ix ON accounts (email);\n", encoding="utf-8")
    assert main(["lint", "--dialect", "postgres", str(script)]) == 0
    assert " info index-not-concurrent " in capsys.readouterr().out
    assert main(["lint", "--dialect", "postgres", "--strict-migrations", str(script)]) == 1
    assert " warning index-not-concurrent " in capsys.readouterr().out
