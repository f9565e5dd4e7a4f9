"""The guard never raises, whatever it is given, and its findings point inside the input.

Two sources of input: arbitrary text biased towards SQL's sharp edges (keywords the rules key
on, quotes, comments, dollar quotes, semicolons, parentheses), and statements from the labelled
corpus, truncated and with characters deleted or inserted, as someone half-way through typing.
"""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from sandbox.guard import Finding, lint_script
from sandbox.statements import Dialect

CORPUS = Path(__file__).parent / "corpus" / "lint_corpus.toml"
DIALECTS: tuple[Dialect, ...] = ("sqlite", "postgres")
FUZZ = settings(
    max_examples=300,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

FRAGMENTS = [
    # statements and the words the rules key on
    "DELETE", "FROM", "WHERE", "UPDATE", "SET", "MERGE", "INTO", "USING", "ON", "WHEN",
    "MATCHED", "THEN", "DROP", "TABLE", "TRUNCATE", "ALTER", "COLUMN", "CONSTRAINT", "DISABLE",
    "TRIGGER", "PRAGMA", "foreign_keys", "=", "OFF", "session_replication_role", "replica",
    "EXPLAIN", "ANALYZE", "(ANALYZE, BUFFERS)", "PREPARE", "AS", "DO", "BEGIN", "END", "IF",
    "LOOP", "EXECUTE", "format(", "'%I'", "||", "WITH", "RETURNING", "SELECT", "1", "1=1",
    "OR", "AND", "NOT", "TRUE", "NULL", "IS", "LIKE", "'%'", "IN", "EXISTS", "LIMIT", "ORDER BY",
    "COPY", "CURRENT OF", "set_config(", "ONLY", "CASCADE", "t", "u.id", "x.y", "*",
    # lexical sharp edges
    "'", '"', "`", "[", "]", "$$", "$q$", "$1", "?", ":n", "--", "/*", "*/", ";", "(", ")",
    ",", ".", "E'", "\\", "\n", "\r", "\r\n", " ", "\t",
]  # fmt: skip

sql_text = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=4)),
    max_size=40,
).map(" ".join) | st.lists(st.sampled_from(FRAGMENTS), max_size=60).map("".join)


def _corpus() -> list[str]:
    with CORPUS.open("rb") as handle:
        return [str(case["sql"]) for case in tomllib.load(handle)["case"]]


STATEMENTS = _corpus()


@st.composite
def mutated(draw: st.DrawFn) -> str:
    """A corpus statement, truncated, with characters deleted and others inserted."""
    text = draw(st.sampled_from(STATEMENTS))
    for _ in range(draw(st.integers(0, 4))):
        edit = draw(st.sampled_from(["truncate", "delete", "insert"]))
        at = draw(st.integers(0, len(text)))
        if edit == "truncate":
            text = text[:at]
        elif edit == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 5)) :]
        else:
            extra = draw(st.sampled_from(FRAGMENTS) | st.text(max_size=3))
            text = text[:at] + extra + text[at:]
    return text


_LINE_BREAK = re.compile(r"\r\n|\r|\n")


def _lines(text: str) -> list[str]:
    return _LINE_BREAK.split(text)


def assert_inside(text: str, found: list[Finding]) -> None:
    lines = _lines(text)
    for finding in found:
        assert 1 <= finding.line <= len(lines), (finding, text)
        assert 1 <= finding.column <= len(lines[finding.line - 1]) + 1, (finding, text)
        assert finding.statement in text


def check(text: str) -> None:
    for dialect in DIALECTS:
        assert_inside(text, lint_script(text, dialect))


@FUZZ
@given(sql_text)
@example("DO $$\rBEGIN\r  DELETE FROM t; END $$")  # a lone \r is a line break too
@example("EXPLAIN ANALYZE\r\rDELETE FROM t")
@example("DO $$ BEGIN EXECUTE format('DROP TABLE %I', t); END $$")
@example("DO $$ BEGIN EXECUTE 'DELETE FROM ' || t; END $$")
@example("EXPLAIN (ANALYZE")  # an option list cut short (found by CI's fuzzing)
@example("EXPLAIN (ANALYZE false")
def test_never_raises_on_sql_like_text(text: str) -> None:
    check(text)


@FUZZ
@given(st.text(max_size=200))
def test_never_raises_on_any_text(text: str) -> None:
    check(text)


@FUZZ
@given(mutated())
def test_never_raises_on_mutated_corpus_statements(text: str) -> None:
    check(text)


def test_findings_point_at_the_statement() -> None:
    """Line and column of a finding are where its statement (or the inner part) is."""
    text = "SELECT 1;\n\n  -- clean up\n  DELETE FROM carts;\nDROP TABLE t"
    found = lint_script(text, "sqlite")
    assert [(f.rule, f.line, f.column) for f in found] == [
        ("delete-without-where", 4, 3),
        ("drop-table", 5, 1),
    ]
    body = "DO $$\nBEGIN\n  UPDATE t SET a = 1;\nEND $$"
    (inner,) = lint_script(body, "postgres")
    assert (inner.rule, inner.line, inner.column) == ("update-without-where", 3, 3)
    dynamic = "DO $$\nBEGIN\n  EXECUTE format('DROP TABLE %I', name);\nEND $$"
    (built,) = lint_script(dynamic, "postgres")
    assert (built.rule, built.line, built.column) == ("drop-table", 3, 3)  # at EXECUTE
    assert built.objects == ()  # a name known only at run time is no table to measure
