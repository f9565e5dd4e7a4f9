"""The editor's headless helpers: completion, formatting, and where an engine's error points."""

from __future__ import annotations

import contextlib
import io
import json
import os
from pathlib import Path

import pytest

from sandbox.completion import complete, editor_tables, follows_word
from sandbox.errors import UserError
from sandbox.schema_summary import ColumnSummary, TableSummary
from sandbox.sqlformat import format_sql
from sandbox.statements import split_statements
from tests.conftest import run_script

SCHEMA = [
    TableSummary(
        "orders",
        3,
        [
            ColumnSummary("id", "integer", True, True),
            ColumnSummary("customer_id", "integer", False, False),
            ColumnSummary("total", "integer", False, False),
        ],
    ),
    TableSummary(
        "customers",
        2,
        [ColumnSummary("id", "integer", True, True), ColumnSummary("name", "text", False, False)],
    ),
]


def offered(text_with_cursor: str, schema: list[TableSummary] = SCHEMA) -> list[str]:
    """The candidates at `|`, which marks the cursor."""
    offset = text_with_cursor.index("|")
    text = text_with_cursor.replace("|", "", 1)
    completion = complete(text, offset, schema)
    assert text[completion.start : offset] == completion.prefix
    return [c.text for c in completion.candidates]


def test_tables_are_offered_after_from_join_update_into() -> None:
    assert offered("SELECT * FROM |") == ["customers", "orders"]
    assert offered("SELECT * FROM o|") == ["orders"]
    assert offered("SELECT * FROM orders o JOIN c|") == ["customers"]
    assert offered("UPDATE cu|") == ["customers"]
    assert offered("INSERT INTO or|") == ["orders"]
    assert offered("SELECT * FROM orders, c|") == ["customers"]


def test_an_alias_dot_offers_that_tables_columns_even_when_defined_later() -> None:
    assert offered("SELECT o.| FROM orders o") == ["id", "customer_id", "total"]
    assert offered("SELECT c.n| FROM orders AS o JOIN customers c ON c.id = o.customer_id") == [
        "name"
    ]
    assert offered("SELECT orders.t| FROM orders") == ["total"]
    # Only the statement under the cursor counts: `o` is another table in the next one.
    assert offered("SELECT o.| FROM orders o; SELECT o.id FROM customers o") == [
        "id",
        "customer_id",
        "total",
    ]


def test_columns_of_the_statements_tables_come_before_keywords() -> None:
    assert offered("SELECT * FROM orders WHERE t|")[0] == "total"
    assert "name" not in offered("SELECT * FROM orders WHERE n|")  # customers is not in it
    assert offered("sel|") == ["select"]  # keywords follow the case typed
    assert offered("SEL|") == ["SELECT"]


def test_unfinished_and_odd_text_never_raises() -> None:
    for text in ["|", "SELECT '|", 'SELECT "a|', "SELECT * FROM|", "\\snapshot s|", "o.|", ".|"]:
        offered(text)
    assert offered("SELECT x.| FROM orders") == []  # x is no table and no alias


def test_nothing_is_offered_inside_a_comment_or_a_string() -> None:
    assert offered("-- sel|") == []
    assert offered("/* sel| */ SELECT 1") == []
    assert offered("SELECT 'sel|") == []
    assert offered("SELECT 'x' AS sel|") == ["select"]  # after a closed string: SQL again
    assert offered("/* x */ sel|") == ["select"]
    assert offered("-- note\nsel|") == ["select"]


def test_tables_the_editor_creates_are_offered_before_they_are_committed() -> None:
    text = "CREATE TABLE staging (id integer, label text, PRIMARY KEY (id));\n"
    assert [(t.name, [c.name for c in t.columns]) for t in editor_tables(text, "sqlite")] == [
        ("staging", ["id", "label"])
    ]
    assert offered(text + "SELECT s.| FROM staging s") == ["id", "label"]
    assert offered(text + "SELECT * FROM st|") == ["staging"]


def test_tab_completes_only_after_a_word() -> None:
    assert follows_word("SELECT a", 8) and follows_word("o.", 2)
    assert not follows_word("SELECT ", 7) and not follows_word("", 0)


def test_format_rewrites_statements_and_keeps_everything_between_them() -> None:
    text = "-- before\nselect a, b from t where a = 1;\n\\snapshot s\n\nselect 2 -- after\n"
    formatted = format_sql(text, "sqlite")
    assert formatted.text == (
        "-- before\nSELECT\n  a,\n  b\nFROM t\nWHERE\n  a = 1;\n"
        "\\snapshot s\n\nSELECT\n  2 -- after\n"
    )
    assert formatted.statements == 2
    # A comment inside a statement is kept (as sqlglot writes it).
    inner = format_sql("select a, -- the a\n b from t", "postgres").text
    assert "the a" in inner


def test_format_refuses_what_it_cannot_parse_and_names_the_line() -> None:
    with pytest.raises(UserError, match=r"line 2: sqlglot stops at line 2, column 9: Expecting \)"):
        format_sql("select 1;\nselect (1", "sqlite")
    with pytest.raises(UserError, match=r"at line 4, column 1: Expected table name$"):
        format_sql("select 1;\n\n  select x\nfrom", "sqlite")
    # A selection that starts at line 5, column 3 of the editor: the editor's lines.
    with pytest.raises(UserError, match=r"line 5: sqlglot stops at line 5, column 11"):
        format_sql("select (1", "sqlite", (5, 3))


def test_format_refuses_to_rewrite_a_statement_into_another() -> None:
    # sqlglot writes SQLite's missing ILIKE as LOWER(..) LIKE LOWER(..): not the learner's.
    with pytest.raises(UserError, match="different statement"):
        format_sql("select * from t where name ilike 'a%'", "sqlite")


def test_format_keeps_a_statement_sqlglot_does_not_know() -> None:
    formatted = format_sql("lock table t in exclusive mode", "postgres")
    assert formatted.text == "lock table t in exclusive mode" and formatted.kept == 1


@pytest.mark.parametrize(
    ("sql", "at"),
    [
        ("SELECT * FORM t", "FORM t"),
        ("SELECT 1 WHERE 1 = = 1", "= 1"),  # the second `=`, not the first
        ("SELECT nope FROM t", "nope FROM"),
        ("SELECT (1", ""),  # at the end: the statement stopped short
    ],
)
def test_the_error_position_points_into_the_statement(engine: str, sql: str, at: str) -> None:
    result = run_script(engine, f"CREATE TABLE t (a integer);\n{sql};\n")
    statement = split_statements(f"CREATE TABLE t (a integer);\n{sql};\n")[1]
    outcome = result.executions[1].outcome
    assert outcome is not None and outcome.error is not None
    position = outcome.error.position
    assert position is not None
    assert statement.text[position:].startswith(at), (outcome.error.message, position)


def test_a_name_that_needs_quotes_is_inserted_quoted() -> None:
    schema = [TableSummary("Order Items", 0, [ColumnSummary("Qty", "int", False, False)])]
    completion = complete("SELECT * FROM ord", 17, schema, "postgres")
    assert [c.insert for c in completion.candidates] == ['"Order Items"']
    completion = complete('SELECT q FROM "Order Items"', 8, schema, "postgres")
    assert [c.insert for c in completion.candidates] == ['"Qty"']
    completion = complete('SELECT q FROM "Order Items"', 8, schema, "sqlite")
    assert [c.insert for c in completion.candidates] == ["Qty"]  # SQLite ignores case


def test_history_keeps_the_draft_and_each_session_browses_on_its_own() -> None:
    from sandbox.history import History

    history = History()
    history.add("SELECT 1", "A")
    history.add("SELECT 2", "A")
    history.add("SELECT 2", "A")  # run twice in a row: once
    assert history.step("A", "my draft", +1) is None  # nothing newer than the draft
    assert history.step("A", "my draft", -1) == "SELECT 2"
    assert history.step("A", "SELECT 2", -1) == "SELECT 1"
    assert history.step("A", "SELECT 1", -1) is None  # the oldest
    assert history.step("B", "B's draft", -1) == "SELECT 2"
    assert history.step("A", "SELECT 1", +1) == "SELECT 2"
    assert history.step("A", "SELECT 2", +1) == "my draft"
    assert history.step("B", "SELECT 2", +1) == "B's draft"
    assert history.search("select") == ["SELECT 2", "SELECT 1"]
    assert history.search("1") == ["SELECT 1"]


def test_run_json_says_where_in_the_script_the_error_is(engine: str, tmp_path: Path) -> None:
    from sandbox.cli import main

    script = tmp_path / "script.sql"
    script.write_text("SELECT 1;\n\nSELECT id,\n  a FROM FROM t;\nSELECT 2;\n", encoding="utf-8")
    argv = ["run", str(script), "--engine", engine, "--format", "json"]
    if engine == "postgres":
        argv += ["--url", os.environ["DBSANDBOX_TEST_POSTGRES_URL"]]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        main(argv)
    statements = json.loads(out.getvalue())["statements"]
    assert statements[1]["error"]["at"] == {"line": 4, "column": 10}
    assert "at" not in (statements[0]["error"] or {})


def test_script_place_counts_lines_inside_the_statement() -> None:
    from sandbox.errorpos import script_place

    assert script_place(3, 5, "SELECT x", 7) == (3, 12)
    assert script_place(3, 5, "SELECT\r\n  x", 10) == (4, 3)
