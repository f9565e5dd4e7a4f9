"""Row-level diffs between two real databases: exact counts, rows, columns and wording."""

from __future__ import annotations

import contextlib
import decimal
import json
import secrets
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psycopg2
import psycopg2.extensions
import pytest

from sandbox.snapshots.diff import Diff, RetypedColumn, RowChange, TableDiff, diff_databases

ACCOUNTS = "CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT, balance INTEGER)"


def values(rows: list[tuple[Any, ...]]) -> str:
    """A VALUES list both engines read the same way."""

    def literal(value: Any) -> str:
        if value is None:
            return "NULL"
        if isinstance(value, str):
            return "'" + value.replace("'", "''") + "'"
        return str(value)

    return ", ".join("(" + ", ".join(literal(v) for v in row) + ")" for row in rows)


def thousand_accounts() -> list[str]:
    rows = [(i, f"user{i}", i * 10) for i in range(1, 1001)]
    return [ACCOUNTS, f"INSERT INTO accounts VALUES {values(rows)}"]


@dataclass
class Pair:
    """Two databases of one engine: a snapshot (before) and the sandbox now (after)."""

    engine: str
    before: Any
    after: Any

    def setup(self, *statements: str) -> None:
        """The same statements on both sides."""
        for conn in (self.before, self.after):
            run(conn, statements)

    def change(self, *statements: str) -> None:
        """The learner's statements, on the after side only."""
        run(self.after, statements)

    def diff(self, limit: int = 100) -> Diff:
        return diff_databases(self.before, self.after, self.engine, limit=limit)


def run(conn: Any, statements: tuple[str, ...]) -> None:
    cursor = conn.cursor()
    try:
        for sql in statements:
            cursor.execute(sql)
    finally:
        cursor.close()


@pytest.fixture
def pair(engine: str, tmp_path: Path, request: pytest.FixtureRequest) -> Iterator[Pair]:
    if engine == "sqlite":
        sides = [sqlite3.connect(tmp_path / f"{n}.db", isolation_level=None) for n in "ab"]
        try:
            for conn in sides:
                conn.execute("PRAGMA journal_mode = WAL")  # as a sandbox file is
            yield Pair(engine, *sides)
        finally:
            for conn in sides:
                conn.close()
        return
    url: str = request.getfixturevalue("postgres_url")
    with postgres_pair(url) as made:
        yield made


@contextlib.contextmanager
def postgres_pair(url: str) -> Iterator[Pair]:
    stem = f"dbsandbox_test_diff_{secrets.token_hex(4)}"
    names = [f"{stem}_before", f"{stem}_after"]
    admin = psycopg2.connect(url)
    admin.autocommit = True
    sides: list[Any] = []
    try:
        for name in names:
            run(admin, (f'CREATE DATABASE "{name}"',))
            conn = psycopg2.connect(url, dbname=name)
            conn.autocommit = True
            sides.append(conn)
        yield Pair("postgres", *sides)
    finally:
        for conn in sides:
            conn.close()
        for name in names:
            run(admin, (f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)',))
        admin.close()


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[Pair]:
    sides = [sqlite3.connect(tmp_path / f"{n}.db", isolation_level=None) for n in "ab"]
    yield Pair("sqlite", *sides)
    for conn in sides:
        conn.close()


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Pair]:
    with postgres_pair(postgres_url) as made:
        yield made


def only_table(diff: Diff) -> TableDiff:
    assert diff.tables_added == [] and diff.tables_dropped == []
    assert len(diff.tables) == 1
    return diff.tables[0]


def assert_left_as_found(pair: Pair) -> None:
    for conn in (pair.before, pair.after):
        if pair.engine == "sqlite":
            assert not conn.in_transaction
        else:
            assert conn.autocommit
            status = conn.get_transaction_status()
            assert status == psycopg2.extensions.TRANSACTION_STATUS_IDLE


# ---------------------------------------------------------------------------------- rows


def test_delete_without_where_counts_every_row_and_caps_the_examples(pair: Pair) -> None:
    pair.setup(*thousand_accounts())
    pair.change("DELETE FROM accounts")
    diff = pair.diff(limit=100)
    table = only_table(diff)
    assert table.table == "accounts"
    assert table.key_columns == ["id"]
    assert (table.removed_count, table.added_count, table.changed_count) == (1000, 0, 0)
    assert table.truncated
    assert [r["id"] for r in table.removed] == list(range(1, 101))
    assert table.removed[0] == {"id": 1, "owner": "user1", "balance": 10}
    assert diff.summary() == "accounts: 1,000 rows removed"
    columns, rows = diff.display()
    assert columns == ["table", "change", "key", "row"]
    assert len(rows) == 101
    assert rows[0] == ("accounts", "removed", "id=1", "id=1, owner='user1', balance=10")
    assert rows[-1] == ("accounts", "removed", "", "… 900 more")
    assert_left_as_found(pair)


def test_update_lists_exactly_the_changed_columns(pair: Pair) -> None:
    rows = [(1, "ann", 100), (2, "bob", 200), (3, "carl", 300), (4, None, 400)]
    pair.setup(ACCOUNTS, f"INSERT INTO accounts VALUES {values(rows)}")
    pair.change(
        "UPDATE accounts SET balance = 0 WHERE id <= 2",
        "UPDATE accounts SET owner = 'zoe' WHERE id = 2",
        "UPDATE accounts SET owner = NULL WHERE id = 3",
        "UPDATE accounts SET owner = 'dan' WHERE id = 4",
        "UPDATE accounts SET balance = balance WHERE id = 3",  # no change
    )
    diff = pair.diff()
    table = only_table(diff)
    assert table.changed == [
        RowChange(
            (1,),
            {"id": 1, "owner": "ann", "balance": 100},
            {"id": 1, "owner": "ann", "balance": 0},
            ["balance"],
        ),
        RowChange(
            (2,),
            {"id": 2, "owner": "bob", "balance": 200},
            {"id": 2, "owner": "zoe", "balance": 0},
            ["owner", "balance"],
        ),
        RowChange(
            (3,),
            {"id": 3, "owner": "carl", "balance": 300},
            {"id": 3, "owner": None, "balance": 300},
            ["owner"],
        ),
        RowChange(
            (4,),
            {"id": 4, "owner": None, "balance": 400},
            {"id": 4, "owner": "dan", "balance": 400},
            ["owner"],
        ),
    ]
    assert (table.changed_count, table.added_count, table.removed_count) == (4, 0, 0)
    assert not table.truncated
    assert diff.summary() == "accounts: 4 rows changed"
    assert diff.display()[1] == [
        ("accounts", "changed", "id=1", "balance: 100 → 0"),
        ("accounts", "changed", "id=2", "owner: 'bob' → 'zoe', balance: 200 → 0"),
        ("accounts", "changed", "id=3", "owner: 'carl' → NULL"),
        ("accounts", "changed", "id=4", "owner: NULL → 'dan'"),
    ]


def test_changed_examples_are_capped_too(pair: Pair) -> None:
    pair.setup(*thousand_accounts())
    pair.change("UPDATE accounts SET balance = -1 WHERE id > 995")
    table = only_table(pair.diff(limit=2))
    assert table.changed_count == 5
    assert [c.key for c in table.changed] == [(996,), (997,)]
    assert table.truncated
    assert table.display_rows()[-1] == ("accounts", "changed", "", "… 3 more")


def test_insert_update_delete_on_a_composite_key(pair: Pair) -> None:
    pair.setup(
        "CREATE TABLE members (team TEXT, member INTEGER, role TEXT, PRIMARY KEY (team, member))",
        "INSERT INTO members VALUES ('red', 1, 'lead'), ('red', 2, 'dev'), ('blue', 1, 'dev')",
    )
    pair.change(
        "INSERT INTO members VALUES ('red', 3, 'qa'), ('blue', 2, 'dev')",
        "DELETE FROM members WHERE team = 'blue' AND member = 1",
        "UPDATE members SET role = 'ops' WHERE team = 'red' AND member = 1",
    )
    diff = pair.diff()
    table = only_table(diff)
    assert table.key_columns == ["team", "member"]
    assert table.added == [
        {"team": "blue", "member": 2, "role": "dev"},
        {"team": "red", "member": 3, "role": "qa"},
    ]
    assert table.removed == [{"team": "blue", "member": 1, "role": "dev"}]
    assert [(c.key, c.columns) for c in table.changed] == [(("red", 1), ["role"])]
    assert diff.summary() == "members: 1 removed, 1 changed, 2 added"
    assert diff.display()[1] == [
        ("members", "removed", "team='blue', member=1", "team='blue', member=1, role='dev'"),
        ("members", "changed", "team='red', member=1", "role: 'lead' → 'ops'"),
        ("members", "added", "team='blue', member=2", "team='blue', member=2, role='dev'"),
        ("members", "added", "team='red', member=3", "team='red', member=3, role='qa'"),
    ]


def test_a_table_without_primary_key_is_compared_as_a_multiset(pair: Pair) -> None:
    pair.setup(
        "CREATE TABLE log (msg TEXT, n INTEGER)",
        "INSERT INTO log VALUES ('a', 1), ('a', 1), ('b', 2)",
    )
    one_of_the_twins = "rowid" if pair.engine == "sqlite" else "ctid"
    pair.change(
        f"DELETE FROM log WHERE {one_of_the_twins} = "
        f"(SELECT min({one_of_the_twins}) FROM log WHERE msg = 'a')",
        "INSERT INTO log VALUES ('c', 3), ('b', 2), ('c', 3), ('c', 3)",
    )
    diff = pair.diff(limit=3)
    table = only_table(diff)
    assert table.key_columns == []
    assert (table.removed_count, table.added_count, table.changed_count) == (1, 4, 0)
    assert table.removed == [{"msg": "a", "n": 1}]
    # Ordered by row, each duplicate listed as often as it was added, up to the limit.
    assert table.added == [{"msg": "b", "n": 2}, {"msg": "c", "n": 3}, {"msg": "c", "n": 3}]
    assert table.changed == []
    assert table.truncated
    assert diff.summary() == "log: 1 removed, 4 added"
    assert diff.display()[1] == [
        ("log", "removed", "—", "msg='a', n=1"),
        ("log", "added", "—", "msg='b', n=2"),
        ("log", "added", "—", "msg='c', n=3"),
        ("log", "added", "—", "msg='c', n=3"),
        ("log", "added", "", "… 1 more"),
    ]


def test_a_changed_primary_key_falls_back_to_a_multiset(pair: Pair) -> None:
    pair.setup("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)", "INSERT INTO t VALUES (1, 'x')")
    pair.change(
        "CREATE TABLE t2 (id INTEGER, v TEXT PRIMARY KEY)",
        "INSERT INTO t2 SELECT id, 'y' FROM t",
        "DROP TABLE t",
        "ALTER TABLE t2 RENAME TO t",
    )
    table = only_table(pair.diff())
    assert table.key_columns == []
    assert table.removed == [{"id": 1, "v": "x"}]
    assert table.added == [{"id": 1, "v": "y"}]
    assert table.changed_count == 0


# ---------------------------------------------------------------------------------- schema


def test_tables_and_columns_added_and_dropped_rows_on_common_columns(pair: Pair) -> None:
    rows = [(1, "ann", 100), (2, "bob", 200)]
    pair.setup(
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT, note TEXT, balance INTEGER)",
        "INSERT INTO accounts (id, owner, balance) VALUES " + values(rows),
        "CREATE TABLE legacy (x INTEGER)",
        "CREATE TABLE kept (x INTEGER)",
    )
    pair.change(
        "CREATE TABLE audit (at TEXT)",
        "DROP TABLE legacy",
        "ALTER TABLE accounts ADD COLUMN email TEXT",
        "ALTER TABLE accounts DROP COLUMN note",
        "UPDATE accounts SET email = 'a@x' WHERE id = 2",  # only on a new column: no row change
        "UPDATE accounts SET balance = 0 WHERE id = 1",
    )
    diff = pair.diff()
    assert diff.tables_added == ["audit"]
    assert diff.tables_dropped == ["legacy"]
    assert [t.table for t in diff.tables] == ["accounts"]
    table = diff.tables[0]
    assert table.columns_added == ["email"]
    assert table.columns_dropped == ["note"]
    assert table.columns_retyped == []
    assert table.changed == [
        RowChange(
            (1,),
            {"id": 1, "owner": "ann", "balance": 100},
            {"id": 1, "owner": "ann", "balance": 0},
            ["balance"],
        )
    ]
    assert (table.added_count, table.removed_count) == (0, 0)
    assert diff.summary() == (
        "table legacy dropped · table audit added · "
        "accounts: column email added, column note dropped, 1 row changed"
    )
    assert diff.display()[1] == [
        ("legacy", "table dropped", "—", ""),
        ("audit", "table added", "—", ""),
        ("accounts", "column added", "—", "email"),
        ("accounts", "column dropped", "—", "note"),
        ("accounts", "changed", "id=1", "balance: 100 → 0"),
    ]


def test_a_retyped_column_is_reported_and_its_values_still_compared(pair: Pair) -> None:
    pair.setup(ACCOUNTS, "INSERT INTO accounts VALUES (1, 'ann', 100), (2, 'bob', 200)")
    if pair.engine == "postgres":
        pair.change("ALTER TABLE accounts ALTER COLUMN balance TYPE bigint")
        expected = RetypedColumn("balance", "integer", "bigint")
    else:
        # SQLite retypes by rebuilding; NUMERIC affinity keeps 100 an integer.
        pair.change(
            "CREATE TABLE t (id INTEGER PRIMARY KEY, owner TEXT, balance NUMERIC)",
            "INSERT INTO t SELECT * FROM accounts",
            "DROP TABLE accounts",
            "ALTER TABLE t RENAME TO accounts",
        )
        expected = RetypedColumn("balance", "INTEGER", "NUMERIC")
    pair.change("UPDATE accounts SET balance = 7 WHERE id = 2")
    diff = pair.diff()
    table = only_table(diff)
    assert table.columns_retyped == [expected]
    assert [(c.key, c.before["balance"], c.after["balance"]) for c in table.changed] == [
        ((2,), 200, 7)
    ]
    assert diff.summary() == "accounts: column balance retyped, 1 row changed"
    assert diff.display()[1][0] == (
        "accounts",
        "column retyped",
        "—",
        f"balance: {expected.before} → {expected.after}",
    )


def test_quoted_names(pair: Pair) -> None:
    pair.setup(
        'CREATE TABLE "Odd Name" ("Key Col" INTEGER PRIMARY KEY, "it""s" TEXT, "select" TEXT)',
        "INSERT INTO \"Odd Name\" VALUES (1, 'a', 's'), (2, 'b', 't')",
    )
    pair.change(
        'UPDATE "Odd Name" SET "it""s" = \'z\' WHERE "Key Col" = 1',
        'DELETE FROM "Odd Name" WHERE "Key Col" = 2',
    )
    diff = pair.diff()
    table = only_table(diff)
    assert table.table == "Odd Name"
    assert table.key_columns == ["Key Col"]
    assert [(c.key, c.columns) for c in table.changed] == [((1,), ['it"s'])]
    assert table.removed == [{"Key Col": 2, 'it"s': "b", "select": "t"}]
    assert diff.summary() == "Odd Name: 1 removed, 1 changed"
    assert diff.display()[1][0] == (
        "Odd Name",
        "removed",
        "Key Col=2",
        "Key Col=2, it\"s='b', select='t'",
    )


def test_identical_databases_have_no_changes(pair: Pair) -> None:
    pair.setup(
        *thousand_accounts(),
        "CREATE TABLE log (msg TEXT, n INTEGER)",
        "INSERT INTO log VALUES ('a', 1), ('a', 1), (NULL, NULL)",
    )
    diff = pair.diff()
    assert diff.is_empty
    assert diff.tables == [] and diff.tables_added == [] and diff.tables_dropped == []
    assert diff.summary() == "no changes"
    assert diff.display() == (["table", "change", "key", "row"], [])
    assert diff.to_json() == {
        "engine": pair.engine,
        "summary": "no changes",
        "tables_added": [],
        "tables_dropped": [],
        "tables": [],
    }
    assert_left_as_found(pair)


def test_to_json_is_json_and_display_rows_have_four_columns(pair: Pair) -> None:
    pair.setup(
        *thousand_accounts(),
        "CREATE TABLE log (msg TEXT, n INTEGER)",
        "INSERT INTO log VALUES ('a', 1)",
    )
    pair.change(
        "DELETE FROM accounts WHERE id > 2",
        "UPDATE accounts SET owner = NULL WHERE id = 1",
        "INSERT INTO log VALUES ('b', 2)",
        "CREATE TABLE audit (x INTEGER)",
    )
    diff = pair.diff(limit=1)
    data = json.loads(json.dumps(diff.to_json()))
    assert data["tables_added"] == ["audit"]
    accounts, log = data["tables"]
    assert accounts == {
        "table": "accounts",
        "key_columns": ["id"],
        "columns_added": [],
        "columns_dropped": [],
        "columns_retyped": [],
        "added_count": 0,
        "removed_count": 998,
        "changed_count": 1,
        "truncated": True,
        "added": [],
        "removed": [{"id": 3, "owner": "user3", "balance": 30}],
        "changed": [
            {
                "key": [1],
                "columns": ["owner"],
                "before": {"id": 1, "owner": "user1", "balance": 10},
                "after": {"id": 1, "owner": None, "balance": 10},
            }
        ],
    }
    assert log["key_columns"] == [] and log["added"] == [{"msg": "b", "n": 2}]
    assert data["summary"] == (
        "table audit added · accounts: 998 removed, 1 changed · log: 1 row added"
    )
    columns, rows = diff.display()
    assert len(columns) == 4
    assert all(len(row) == 4 for row in rows)
    assert len(rows) == 5  # table added, removed + more, changed, log added
    assert rows[2] == ("accounts", "removed", "", "… 997 more")


def test_arguments_are_checked(lite: Pair) -> None:
    with pytest.raises(ValueError, match="unknown engine"):
        diff_databases(lite.before, lite.after, "mysql")
    with pytest.raises(ValueError, match="limit"):
        diff_databases(lite.before, lite.after, "sqlite", limit=-1)


def test_limit_zero_keeps_counts_only(pair: Pair) -> None:
    pair.setup(*thousand_accounts())
    pair.change("DELETE FROM accounts WHERE id <= 10")
    table = only_table(pair.diff(limit=0))
    assert (table.removed_count, table.removed, table.truncated) == (10, [], True)
    assert table.display_rows() == [("accounts", "removed", "", "… 10 more")]


# ---------------------------------------------------------------------------------- SQLite


def test_sqlite_storage_classes_are_part_of_the_value(lite: Pair) -> None:
    lite.setup(
        "CREATE TABLE m (id INTEGER PRIMARY KEY, v)",
        "INSERT INTO m VALUES (1, 1), (2, 1.0), (3, '1'), (4, NULL), (5, x'01')",
    )
    lite.change(
        "UPDATE m SET v = 1.0 WHERE id = 1",
        "UPDATE m SET v = '1' WHERE id = 2",
        "UPDATE m SET v = NULL WHERE id = 3",
        "UPDATE m SET v = 1 WHERE id = 4",
        "UPDATE m SET v = x'01' WHERE id = 5",  # the same blob: no change
    )
    diff = lite.diff()
    assert diff.display()[1] == [
        ("m", "changed", "id=1", "v: 1 → 1.0"),
        ("m", "changed", "id=2", "v: 1.0 → '1'"),
        ("m", "changed", "id=3", "v: '1' → NULL"),
        ("m", "changed", "id=4", "v: NULL → 1"),
    ]
    assert only_table(diff).changed_count == 4


def test_sqlite_mixed_types_sort_without_error(lite: Pair) -> None:
    lite.setup(
        "CREATE TABLE bag (v)",
        "INSERT INTO bag VALUES ('1'), (x'00'), (2.5), (1), (NULL), (1.0), (1)",
        # No declared type: the key keeps every storage class apart.
        "CREATE TABLE k (id PRIMARY KEY, v) WITHOUT ROWID",
        "INSERT INTO k VALUES (x'01', 'blob'), ('1', 'text'), (1.5, 'real'), (1, 'int')",
    )
    lite.change("DELETE FROM bag", "DELETE FROM k")
    diff = lite.diff()
    bag, k = diff.tables
    assert [r["v"] for r in bag.removed] == [None, 1.0, 1, 1, 2.5, "1", b"\x00"]
    assert [type(r["v"]) for r in bag.removed[1:4]] == [float, int, int]
    assert k.key_columns == ["id"]
    assert [r["id"] for r in k.removed] == [1, 1.5, "1", b"\x01"]
    assert json.dumps(diff.to_json())
    assert diff.display()[1][-1] == ("k", "removed", "id='\\x01'", "id='\\x01', v='blob'")


def test_sqlite_primary_key_holding_several_nulls_is_a_multiset(lite: Pair) -> None:
    lite.setup(
        "CREATE TABLE tags (name TEXT PRIMARY KEY, n INTEGER)",
        "INSERT INTO tags VALUES (NULL, 1), (NULL, 2), ('a', 3)",
    )
    lite.change("UPDATE tags SET n = 9 WHERE name = 'a'")
    table = only_table(lite.diff())
    assert table.key_columns == []
    assert table.removed == [{"name": "a", "n": 3}]
    assert table.added == [{"name": "a", "n": 9}]


def test_sqlite_names_match_whatever_their_case(lite: Pair) -> None:
    lite.setup("CREATE TABLE Users (ID INTEGER PRIMARY KEY, Name TEXT)")
    run(lite.before, ("INSERT INTO Users VALUES (1, 'a')",))
    lite.change(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT)",
        "DROP TABLE Users",
        "ALTER TABLE t RENAME TO users",
        "INSERT INTO users VALUES (1, 'b')",
    )
    table = only_table(lite.diff())
    assert table.table == "users"
    assert table.key_columns == ["id"]
    assert table.changed == [
        RowChange((1,), {"id": 1, "name": "a"}, {"id": 1, "name": "b"}, ["name"])
    ]


def test_sqlite_rollback_journal_files_are_read_without_a_transaction(lite: Pair) -> None:
    lite.setup("PRAGMA journal_mode = DELETE", *thousand_accounts())
    lite.change("DELETE FROM accounts WHERE id = 5")
    assert only_table(lite.diff()).removed == [{"id": 5, "owner": "user5", "balance": 50}]
    assert_left_as_found(lite)


def test_sqlite_row_factory_is_ignored(lite: Pair) -> None:
    lite.setup(ACCOUNTS, "INSERT INTO accounts VALUES (1, 'ann', 1)")
    lite.change("UPDATE accounts SET balance = 2")
    lite.before.row_factory = sqlite3.Row
    lite.after.row_factory = sqlite3.Row
    assert lite.diff().summary() == "accounts: 1 row changed"


# ---------------------------------------------------------------------------------- PostgreSQL


def test_postgres_schemas_other_than_public_are_qualified(pg: Pair) -> None:
    pg.setup(
        'CREATE SCHEMA "Shop"',
        'CREATE TABLE "Shop".orders (id integer PRIMARY KEY, total numeric(8, 2))',
        'INSERT INTO "Shop".orders VALUES (1, 10.00), (2, 9.50)',
        "CREATE TABLE orders (id integer PRIMARY KEY, total numeric(8, 2))",
        "INSERT INTO orders VALUES (1, 10.00), (2, 9.50)",
    )
    pg.change(
        'DELETE FROM "Shop".orders WHERE id = 2',
        "CREATE SCHEMA extra",
        "CREATE TABLE extra.notes (body text)",
        "CREATE TEMP TABLE scratch (x integer)",  # another session's temp table: not a table
    )
    diff = pg.diff()
    assert diff.tables_added == ["extra.notes"]
    assert [t.table for t in diff.tables] == ["Shop.orders"]
    assert diff.tables[0].removed == [{"id": 2, "total": decimal.Decimal("9.50")}]
    assert diff.to_json()["tables"][0]["removed"] == [{"id": 2, "total": "9.50"}]  # exact text
    assert diff.summary() == "table extra.notes added · Shop.orders: 1 row removed"
    assert_left_as_found(pg)


def test_postgres_json_array_and_bytea_values(pg: Pair) -> None:
    pg.setup(
        "CREATE TABLE docs (id integer PRIMARY KEY, body jsonb, tags text[], blob bytea)",
        "INSERT INTO docs VALUES "
        "(1, '{\"a\": 1, \"b\": [1, 2]}', '{x,y}', '\\x00ff'), "
        "(2, '{\"a\": 2}', '{x}', '\\x01'), "
        "(3, 'null', NULL, '\\x')",
        "CREATE TABLE bag (body json, tags integer[], blob bytea, f double precision)",
        "INSERT INTO bag VALUES "
        "('{\"k\": [1]}', '{1,2}', '\\xab', 'NaN'), ('{\"k\": [1]}', '{1,2}', '\\xab', 'NaN'), "
        "('[]', '{}', NULL, 1)",
    )
    pg.change(
        'UPDATE docs SET body = \'{"b": [1, 2], "a": 1}\' WHERE id = 1',  # the same jsonb
        "UPDATE docs SET tags = array_append(tags, 'z') WHERE id = 2",
        "UPDATE docs SET blob = '\\x02' WHERE id = 3",
        "DELETE FROM bag WHERE ctid = (SELECT min(ctid) FROM bag WHERE f <> 1)",
    )
    diff = pg.diff()
    bag, docs = diff.tables
    assert (bag.removed_count, bag.added_count) == (1, 0)
    (removed,) = bag.removed
    assert removed["body"] == {"k": [1]} and removed["tags"] == [1, 2]
    assert bytes(removed["blob"]) == b"\xab"
    assert [(c.key, c.columns) for c in docs.changed] == [((2,), ["tags"]), ((3,), ["blob"])]
    assert docs.changed[0].after["tags"] == ["x", "z"]
    data = json.loads(json.dumps(diff.to_json()))
    assert data["tables"][0]["removed"] == [
        {"body": {"k": [1]}, "tags": [1, 2], "blob": "\\xab", "f": "NaN"}
    ]
    assert data["tables"][1]["changed"][1]["after"]["blob"] == "\\x02"
    assert diff.display()[1] == [
        ("bag", "removed", "—", "body={\"k\": [1]}, tags=[1, 2], blob='\\xab', f=nan"),
        ("docs", "changed", "id=2", 'tags: ["x"] → ["x", "z"]'),
        ("docs", "changed", "id=3", "blob: '\\x' → '\\x02'"),
    ]


def test_postgres_partitions_are_read_through_their_root(pg: Pair) -> None:
    pg.setup(
        "CREATE TABLE events (id integer PRIMARY KEY, kind text) PARTITION BY RANGE (id)",
        "CREATE TABLE events_low PARTITION OF events FOR VALUES FROM (0) TO (100)",
        "CREATE TABLE events_high PARTITION OF events FOR VALUES FROM (100) TO (200)",
        "INSERT INTO events VALUES (1, 'a'), (150, 'b')",
        "CREATE TABLE base (id integer)",
        "CREATE TABLE child () INHERITS (base)",
        "INSERT INTO child VALUES (7)",
    )
    pg.change("DELETE FROM events WHERE id = 150", "DELETE FROM child")
    diff = pg.diff()
    assert [(t.table, t.removed) for t in diff.tables] == [
        ("child", [{"id": 7}]),  # and not again under its inheritance parent
        ("events", [{"id": 150, "kind": "b"}]),
    ]


def test_postgres_reads_inside_a_callers_transaction_and_leaves_it_open(pg: Pair) -> None:
    pg.setup(ACCOUNTS, "INSERT INTO accounts VALUES (1, 'ann', 1)")
    pg.change("BEGIN", "DELETE FROM accounts")
    assert pg.diff().summary() == "accounts: 1 row removed"
    assert pg.after.get_transaction_status() == psycopg2.extensions.TRANSACTION_STATUS_INTRANS
    pg.change("ROLLBACK")
    assert pg.diff().is_empty
    assert_left_as_found(pg)
