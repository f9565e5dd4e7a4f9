"""Result files (sandbox.result_files): NULL said one way, text verbatim, nothing overwritten.

Also which statements may be run again for another page (sandbox.conductor.pageable).
"""

from __future__ import annotations

import csv
import datetime as dt
import decimal
import io
import json
from pathlib import Path

import pytest

from sandbox.conductor import Execution, pageable
from sandbox.errors import UserError
from sandbox.result_files import ShownResult, csv_field, to_csv, to_json, write_result
from sandbox.sqlkind import classify
from sandbox.statements import split_statements

ROWS = [
    (1, None, "NULL"),
    (2, "", "two\nlines"),
    (3, 'say "hi", ok', "  padded "),
    (decimal.Decimal("12345678901234567890.123456789"), 1.5, b"\x00\xff"),
    (True, float("nan"), decimal.Decimal("Infinity")),
]
RESULT = ShownResult("A", "SELECT * FROM t", 3, ["id", "a", 'b "quoted"'], ROWS, 501, True)
NOW = dt.datetime(2026, 12, 6, 14, 2, 11)


def test_csv_says_null_as_an_empty_bare_field_and_quotes_every_text() -> None:
    assert csv_field(None) == ""
    assert csv_field("") == '""'
    assert csv_field("NULL") == '"NULL"'
    assert csv_field(42) == "42"
    assert csv_field(1.5) == "1.5"
    assert csv_field(True) == "true"
    assert csv_field(decimal.Decimal("12345678901234567890.123456789")) == (
        "12345678901234567890.123456789"
    )
    # Words a spreadsheet would not read as numbers are text.
    assert csv_field(float("nan")) == '"NaN"'
    assert csv_field(decimal.Decimal("-Infinity")) == '"-Infinity"'
    assert csv_field(b"\x00\xff") == '"\\x00ff"'
    assert csv_field('a "b"') == '"a ""b"""'
    assert csv_field([1, None]) == '"[1, null]"'


def test_csv_is_rfc_4180_and_reads_back_verbatim() -> None:
    text = to_csv(RESULT)
    assert text.startswith('"id","a","b ""quoted"""\r\n1,,"NULL"\r\n')
    assert text.endswith("\r\n")
    read = list(csv.reader(io.StringIO(text, newline="")))
    assert read[0] == ["id", "a", 'b "quoted"']
    assert read[2] == ["2", "", "two\nlines"]  # the newline inside the value survives
    assert read[3] == ["3", 'say "hi", ok', "  padded "]  # spaces kept
    assert len(read) == 1 + len(ROWS)


def test_json_says_null_as_null_and_where_the_rows_came_from() -> None:
    document = json.loads(to_json(RESULT))
    assert document["columns"] == ["id", "a", 'b "quoted"']
    assert document["rows"][0] == [1, None, "NULL"]
    assert document["rows"][1] == [2, "", "two\nlines"]
    assert document["rows"][3] == ["12345678901234567890.123456789", 1.5, "\\x00ff"]
    assert document["rows"][4] == [True, "NaN", "Infinity"]
    assert document["first_row"] == 501 and document["more_rows"] is True
    assert document["row_count"] == len(ROWS)
    assert document["session"] == "A" and document["line"] == 3
    assert document["statement"] == "SELECT * FROM t"
    empty = json.loads(to_json(ShownResult("A", "SELECT 1 WHERE false", 1, ["x"], [])))
    assert empty["rows"] == []


def test_a_result_file_never_overwrites(tmp_path: Path) -> None:
    first = write_result(RESULT, tmp_path, "csv", NOW)
    assert first.name == "dbsandbox-result-A-line3-20261206-140211.csv"
    first.write_text("the learner's own notes")
    second = write_result(RESULT, tmp_path, "csv", NOW)
    third = write_result(RESULT, tmp_path, "csv", NOW)
    assert [second.name, third.name] == [
        "dbsandbox-result-A-line3-20261206-140211-2.csv",
        "dbsandbox-result-A-line3-20261206-140211-3.csv",
    ]
    assert first.read_text() == "the learner's own notes"
    assert second.read_bytes() == to_csv(RESULT).encode()
    as_json = write_result(RESULT, tmp_path, "json", NOW)
    assert json.loads(as_json.read_text())["rows"][0] == [1, None, "NULL"]


def test_a_directory_that_cannot_take_the_file_is_a_one_line_error(tmp_path: Path) -> None:
    missing = tmp_path / "gone"
    with pytest.raises(UserError) as raised:
        write_result(RESULT, missing, "csv", NOW)
    message = str(raised.value)
    assert message.startswith(f"cannot write {missing}") and "\n" not in message


@pytest.mark.parametrize(
    ("sql", "expected"),
    [
        ("SELECT * FROM t", True),
        ("WITH x AS (SELECT 1) SELECT * FROM x", True),
        ("VALUES (1), (2)", True),
        ("TABLE t", True),
        ("SELECT * FROM t FOR UPDATE", False),  # takes row locks
        ("SELECT * INTO copy FROM t", False),  # creates a table
        ("WITH gone AS (DELETE FROM t RETURNING *) SELECT * FROM gone", False),
        ("INSERT INTO t SELECT * FROM t RETURNING *", False),
        ("DELETE FROM t RETURNING *", False),
        ("EXPLAIN SELECT 1", False),
    ],
)
def test_only_a_query_that_writes_nothing_is_run_again(sql: str, expected: bool) -> None:
    statement = split_statements(sql, "postgres")[0]
    execution = Execution(0, "A", statement, classify(sql, "postgres"))
    assert pageable(execution) is expected


def test_a_snapshot_command_is_never_run_again() -> None:
    statement = split_statements("SELECT 1")[0]
    execution = Execution(0, "A", statement, classify("SELECT 1", "sqlite"), meta="diff")
    assert not pageable(execution)
