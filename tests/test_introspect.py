"""Schema introspection on real databases, and the schema-aware lint it enables."""

from __future__ import annotations

from sandbox.guard import ColumnInfo, Schema, lint_script
from sandbox.guard.introspect import introspect
from sandbox.outcome import Status, TxState
from tests.test_impact import Sandbox, assert_no_savepoint_left, box, lite, pg

__all__ = ["box", "lite", "pg"]  # the fixtures, re-used from test_impact

TABLES = [
    "CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT NOT NULL, nick TEXT)",
    "CREATE TABLE orders (id INTEGER PRIMARY KEY, "
    "account_id INTEGER CONSTRAINT orders_account_fk REFERENCES accounts (id), "
    "qty INTEGER CONSTRAINT qty_positive CHECK (qty > 0), "
    "code TEXT CONSTRAINT orders_code_key UNIQUE)",
]


def schema_of(box: Sandbox) -> Schema:
    schema = introspect(box.session())
    assert schema is not None
    return schema


def test_columns_not_null_primary_key_and_constraints(box: Sandbox) -> None:
    for sql in TABLES:
        box.run(sql)
    schema = schema_of(box)
    accounts = schema.table("ACCOUNTS")
    assert accounts is not None
    assert list(accounts.columns.values()) == [
        ColumnInfo("id", not_null=True, primary_key=True),
        ColumnInfo("email", not_null=True, primary_key=False),
        ColumnInfo("nick", not_null=False, primary_key=False),
    ]
    orders = schema.table("orders")
    assert orders is not None
    assert orders.column("account_id") == ColumnInfo("account_id")
    expected = {"orders_account_fk": "FOREIGN KEY", "qty_positive": "CHECK"}
    expected["orders_code_key"] = "UNIQUE"
    if box.engine == "postgres":
        # PostgreSQL names every constraint; SQLite's unnamed primary keys have no name.
        expected["orders_pkey"] = "PRIMARY KEY"
        assert accounts.constraints == {"accounts_pkey": "PRIMARY KEY"}
    assert orders.constraints == expected
    # Qualified names find the same tables.
    qualified = "public.orders" if box.engine == "postgres" else "main.orders"
    assert schema.table(qualified) == orders
    assert box.live_state() is TxState.IDLE


def test_sqlite_primary_keys_that_accept_null(lite: Sandbox) -> None:
    lite.run("CREATE TABLE tags (name TEXT PRIMARY KEY)")
    lite.run("CREATE TABLE strict_tags (name TEXT PRIMARY KEY) WITHOUT ROWID")
    lite.run("CREATE TABLE links (a INTEGER, b INTEGER, PRIMARY KEY (a, b))")
    lite.run("CREATE TABLE refs (id INTEGER PRIMARY KEY, tag TEXT REFERENCES tags (name))")
    schema = schema_of(lite)
    # Only a rowid alias or a WITHOUT ROWID key is really NOT NULL in SQLite.
    assert schema.tables["tags"].column("name") == ColumnInfo("name", False, True)
    assert schema.tables["strict_tags"].column("name") == ColumnInfo("name", True, True)
    assert schema.tables["links"].column("a") == ColumnInfo("a", False, True)
    lite.run("INSERT INTO tags VALUES (NULL)")  # really accepted
    # An unnamed foreign key is listed under a PostgreSQL-style synthetic name.
    assert schema.tables["refs"].constraints == {"refs_tag_fkey": "FOREIGN KEY"}


def test_postgres_reads_the_search_path_schemas(pg: Sandbox) -> None:
    pg.run("CREATE TABLE accounts (id INTEGER PRIMARY KEY)")
    pg.run("CREATE SCHEMA scratch")
    pg.run("CREATE TABLE scratch.accounts (id INTEGER, owner TEXT NOT NULL)")
    pg.run("CREATE TABLE scratch.only_here (id INTEGER)")
    pg.run("SET search_path = scratch")
    schema = schema_of(pg)
    assert sorted(schema.tables) == [
        "accounts",
        "only_here",
        "scratch.accounts",
        "scratch.only_here",
    ]
    accounts = schema.table("accounts")
    assert accounts is not None and list(accounts.columns) == ["id", "owner"]
    pg.run("SET search_path = scratch, public")
    schema = schema_of(pg)
    assert schema.table("accounts") == schema.table("scratch.accounts")
    assert schema.table("public.accounts") is not None
    # Temporary tables shadow both, as they do for the learner's statements.
    pg.run("CREATE TEMP TABLE accounts (temp_id INTEGER)")
    accounts = schema_of(pg).table("accounts")
    assert accounts is not None and list(accounts.columns) == ["temp_id"]


def test_uncommitted_ddl_is_seen_without_a_trace(box: Sandbox) -> None:
    box.run("BEGIN")
    box.run("CREATE TABLE fresh (id INTEGER PRIMARY KEY, v TEXT NOT NULL)")
    schema = schema_of(box)
    assert schema.table("fresh") is not None
    assert box.session().tx_state is TxState.IN_TRANSACTION
    assert box.live_state() is TxState.IN_TRANSACTION
    assert schema_of_other(box).table("fresh") is None
    if box.engine == "postgres":
        assert_no_savepoint_left(box)
    box.run("ROLLBACK")


def schema_of_other(box: Sandbox) -> Schema:
    schema = introspect(box.session("B"))
    assert schema is not None
    return schema


def test_failed_transaction_gives_no_schema(pg: Sandbox) -> None:
    pg.run("CREATE TABLE accounts (id INTEGER PRIMARY KEY)")
    pg.run("BEGIN")
    assert pg.attempt("SELECT 1 / 0").status is Status.ERROR
    assert introspect(pg.session()) is None
    assert pg.live_state() is TxState.FAILED


def test_fresh_snapshots_are_not_started(box: Sandbox) -> None:
    box.run("CREATE TABLE accounts (id INTEGER PRIMARY KEY)")
    box.run("BEGIN ISOLATION LEVEL REPEATABLE READ" if box.engine == "postgres" else "BEGIN")
    assert schema_of(box).table("accounts") is not None
    box.run("INSERT INTO accounts VALUES (1)", "B")
    # The learner's snapshot starts now, after B's commit: introspection did not start it.
    box.run("INSERT INTO accounts VALUES (2)")
    assert box.scalar("SELECT count(*) FROM accounts") == 2
    box.run("ROLLBACK")


def test_schema_aware_lint_knows_the_primary_key_is_never_null(box: Sandbox) -> None:
    box.run("CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT NOT NULL, nick TEXT)")
    sql = "DELETE FROM accounts WHERE id IS NOT NULL"
    assert lint_script(sql, box.dialect) == []
    findings = lint_script(sql, box.dialect, schema=introspect(box.session()))
    assert [f.rule for f in findings] == ["always-true-where"]
    findings = lint_script(
        "UPDATE accounts SET nick = NULL WHERE email IS NOT NULL",
        box.dialect,
        schema=introspect(box.session()),
    )
    assert [f.rule for f in findings] == ["always-true-where"]
    nullable = "DELETE FROM accounts WHERE nick IS NOT NULL"
    assert lint_script(nullable, box.dialect, schema=introspect(box.session())) == []
