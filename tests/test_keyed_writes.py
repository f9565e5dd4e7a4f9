"""The filtered-write shortcut (sandbox/guard/keyed.py) against the full analysis it skips.

The guard skips sqlglot for an UPDATE or DELETE whose WHERE picks rows by their own columns,
because no rule can fire on one. These tests hold it to that: for thousands of generated
statements near the shape (accepted ones and near misses: always-true conditions, `LIKE '%'`,
IS NOT NULL on a NOT NULL column, keyword "columns", subqueries, functions, joins, casts,
RETURNING) and for every UPDATE/DELETE of the labelled corpus, whenever the shortcut accepts a
statement the full analysis must find nothing, with and without a schema.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest

from sandbox.guard import keyed
from sandbox.guard.lint import _lint_parsed, lint_statement
from sandbox.guard.schema import ColumnInfo, Schema, TableInfo
from sandbox.statements import Dialect, split_statements, tokens

CORPUS = Path(__file__).parent / "corpus" / "lint_corpus.toml"

SCHEMA = Schema(
    tables={
        "items": TableInfo(
            "items",
            columns={
                "id": ColumnInfo("id", not_null=True, primary_key=True),
                "v": ColumnInfo("v"),
            },
        )
    }
)

# Each part is usually of the accepted shape and sometimes one of its near misses.
COLUMNS = (["id", "v", "name", "rowid"], ["true", "null", "current_user", '"id"', "items.id"])
TERMS = (
    ["id", "v", "1", "-1", "0.5", "'x'", "E'y'", "v + 1", "v * 2 - id", "?", "$1", ":n"],
    ["NULL", "now()", "(1)", "1::int", "v || 'x'", "true"],
)
CONSTANTS = (
    ["1", "-5", "'a'", "2.5", "E'b'", "?", "?2", ":n", "@n", "$1"],
    ["id", "v", "NULL", "(SELECT 1)", "1::int", "- 'x'", "-v", "'a' || 'b'"],
)
OPERATORS = (["=", "<>", "!=", "<", "<=", ">", ">="], ["IS", "==", "=>", "<=>", "LIKE", "+"])
# Conditions of other forms, with a placeholder for the column.
FORMS = (
    [
        "{c} IN (1, 2, 3)",
        "{c} NOT IN ('a')",
        "{c} BETWEEN 1 AND 10",
        "{c} NOT BETWEEN 'a' AND 'b'",
        "{c} LIKE 'a%'",
        "{c} NOT LIKE '%x'",
        "{c} LIKE '_'",
        "{c} IS NULL",
        "{c} IS NOT NULL",
    ],
    [
        "{c} LIKE '%'",
        "{c} LIKE '%%'",
        "{c} NOT LIKE '%'",
        "{c} IN (SELECT id FROM items)",
        "{c} IN ({c})",
        "{c} IN ()",
        "{c} BETWEEN {c} AND 2",
        "{c} BETWEEN SYMMETRIC 2 AND 1",
        "{c} LIKE 'a' ESCAPE '!'",
        "{c} IS TRUE",
        "{c} = {c}",
        "1 = {c}",
    ],
)
TABLES = (["items"], ["items i", "ONLY items", '"items"', "main.items", "items, other"])
TAILS = (["", ";", " ;"], [" RETURNING *", " LIMIT 1", " OR 1 = 1", " OR v = 2", " AND true"])


def _pick(rng: random.Random, pools: tuple[list[str], list[str]]) -> str:
    good, near_miss = pools
    return rng.choice(good if rng.random() < 0.85 else near_miss)


def _statement(rng: random.Random) -> str:
    table = _pick(rng, TABLES)
    conditions = " AND ".join(
        f"{_pick(rng, COLUMNS)} {_pick(rng, OPERATORS)} {_pick(rng, CONSTANTS)}"
        if rng.random() < 0.6
        else _pick(rng, FORMS).format(c=_pick(rng, COLUMNS))
        for _ in range(rng.randint(1, 3))
    )
    where = f" WHERE {conditions}" if rng.random() < 0.9 else ""
    tail = _pick(rng, TAILS)
    if rng.random() < 0.5:
        sets = ", ".join(
            f"{_pick(rng, COLUMNS)} = {_pick(rng, TERMS)}" for _ in range(rng.randint(1, 3))
        )
        return f"UPDATE {table} SET {sets}{where}{tail}"
    return f"DELETE FROM {table}{where}{tail}"


def _full(sql: str, dialect: Dialect, schema: Schema | None) -> list[str]:
    statement = split_statements(sql, dialect)[0]
    toks = list(tokens(statement.text, dialect))
    first = toks[0].text.upper()
    found = _lint_parsed(statement.text, toks, first, statement, 0, dialect, schema)
    return [f.rule for f in found]


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_the_shortcut_never_hides_a_finding(dialect: Dialect) -> None:
    rng = random.Random(17)
    accepted = refused = 0
    for _ in range(4000):
        sql = _statement(rng)
        toks = list(tokens(sql, dialect))
        for schema in (None, SCHEMA):
            if not keyed.is_filtered_write(toks, schema_known=schema is not None):
                refused += 1
                continue
            accepted += 1
            assert _full(sql, dialect, schema) == [], sql
    # The generator must exercise the shortcut, not only its refusals, and the reverse.
    assert accepted > 800 and refused > 800, (accepted, refused)


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE items SET v = v + 1 WHERE id = 5",
        "UPDATE items SET v = 'x', name = name || 'y' WHERE id = 5",
        "DELETE FROM items WHERE id = -3 AND v = 'a';",
        "UPDATE items SET v = $2 WHERE id = $1",
        "DELETE FROM items WHERE v >= 10 AND v < 20 AND name IS NULL",
        "DELETE FROM items WHERE id IN (1, 2, 3) AND name NOT LIKE 'tmp%'",
        "DELETE FROM items WHERE v BETWEEN 1 AND 9 AND name <> 'x' AND id != 4",
    ],
)
def test_filtered_writes_are_recognised_and_near_misses_are_not(sql: str) -> None:
    # The middle one has `||`, which the shortcut does not read: it goes to the full analysis.
    expected = "||" not in sql
    assert keyed.is_filtered_write(list(tokens(sql, "postgres"))) is expected


@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE items SET v = 1 WHERE true = 1",
        "UPDATE items SET v = 1 WHERE id = id",
        "DELETE FROM items WHERE current_user = 'me'",
        "DELETE FROM items WHERE \"id\" = 'id'",
        "UPDATE items SET v = 1",
        "DELETE FROM items WHERE id = 1 OR 1 = 1",
        "UPDATE items SET v = (SELECT max(v) FROM items) WHERE id = 1",
        "DELETE FROM items WHERE id = 1 RETURNING *",
        "DELETE FROM items WHERE name LIKE '%'",
        "DELETE FROM items WHERE id IS NOT NULL",
        "UPDATE items SET v = 1 WHERE v BETWEEN id AND 5",
        "DELETE FROM items WHERE id IN (SELECT id FROM items)",
    ],
)
def test_what_the_shortcut_refuses_still_gets_the_full_analysis(sql: str) -> None:
    assert not keyed.is_filtered_write(list(tokens(sql, "sqlite")), schema_known=True)
    statement = split_statements(sql, "sqlite")[0]
    direct = [f.rule for f in lint_statement(statement, "sqlite", SCHEMA)]
    assert direct == _full(sql, "sqlite", SCHEMA)


def test_every_corpus_write_the_shortcut_accepts_is_clean() -> None:
    import tomllib

    cases = tomllib.loads(CORPUS.read_text())["case"]
    checked = 0
    for case in cases:
        sql = case["sql"]
        for dialect in ("sqlite", "postgres"):
            statements = split_statements(sql, dialect)
            for statement in statements:
                toks = list(tokens(statement.text, dialect))
                if keyed.is_filtered_write(toks):
                    checked += 1
                    assert _full(statement.text, dialect, None) == [], statement.text
    assert checked > 0


@pytest.mark.parametrize(
    ("sql", "rule"),
    [
        ("DELETE FROM items WHERE name LIKE '%'", "always-true-where"),
        ("DELETE FROM items WHERE id IS NOT NULL", "always-true-where"),
    ],
)
def test_the_two_exceptions_the_shortcut_refuses_are_findings(sql: str, rule: str) -> None:
    # Why _condition refuses them: with the schema (id NOT NULL), the full analysis flags both.
    assert _full(sql, "sqlite", SCHEMA) == [rule]
    assert not keyed.is_filtered_write(list(tokens(sql, "sqlite")), schema_known=True)


UNFILTERED_TABLES = ["items", "main.items", "Items", "temp.scratch", "_dyn1_", "t2"]
UNFILTERED_NEAR = [
    "items i",
    "ONLY items",
    '"items"',
    "items, other",
    "table",
    "order",
    "items AS i",
]
UNFILTERED_TAILS = ["", ";", " RETURNING *", " LIMIT 5", " WHERE id = 1", " FROM other"]


def _unfiltered_statement(rng: random.Random) -> str:
    table = rng.choice(UNFILTERED_TABLES if rng.random() < 0.8 else UNFILTERED_NEAR)
    tail = rng.choice(UNFILTERED_TAILS[:2] if rng.random() < 0.8 else UNFILTERED_TAILS)
    if rng.random() < 0.5:
        sets = ", ".join(
            f"{_pick(rng, COLUMNS)} = {_pick(rng, TERMS)}" for _ in range(rng.randint(1, 3))
        )
        return f"UPDATE {table} SET {sets}{tail}"
    return f"DELETE FROM {table}{tail}"


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_an_unfiltered_write_read_without_its_tree_gets_the_full_analysis_finding(
    dialect: Dialect,
) -> None:
    # The shortcut's finding, preview SQL included, is the one the parsed statement gets.
    rng = random.Random(23)
    accepted = 0
    for _ in range(1500):
        sql = _unfiltered_statement(rng)
        statement = split_statements(sql, dialect)[0]
        toks = list(tokens(statement.text, dialect))
        if keyed.unfiltered_write(toks) is None:
            continue
        accepted += 1
        short = lint_statement(statement, dialect)
        full = _lint_parsed(statement.text, toks, toks[0].text.upper(), statement, 0, dialect, None)
        assert [(f.rule, f.message, f.fix, f.table) for f in short] == [
            (f.rule, f.message, f.fix, f.table) for f in full
        ], sql
        assert [f.preview.build() for f in short if f.preview] == [
            f.preview.build() for f in full if f.preview
        ], sql
    assert accepted > 500


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
@pytest.mark.parametrize(
    ("unreadable", "readable"),
    [
        # A starter line left after the statement in the editor: sqlglot cannot read it.
        ("UPDATE items SET v = 1\nSELECT 'hello' AS greeting", "UPDATE items SET v = 1"),
        ("DELETE FROM items SELECT 1", "DELETE FROM items"),
    ],
)
def test_a_write_sqlglot_cannot_read_is_told_as_a_parsed_one_is(
    dialect: Dialect, unreadable: str, readable: str
) -> None:
    told = [
        (f.rule, f.message, f.fix)
        for f in lint_statement(split_statements(unreadable, dialect)[0], dialect)
    ]
    parsed = [
        (f.rule, f.message, f.fix)
        for f in lint_statement(split_statements(readable, dialect)[0], dialect)
    ]
    assert told == parsed and told[0][0].endswith("-without-where")
