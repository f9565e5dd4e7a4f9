"""The guard's tokens handed to sqlglot (sandbox/guard/handover.py) against sqlglot's tokenizer.

Whenever the hand-over accepts a statement, its tokens must be sqlglot's own, field by field
(type, text, line, column, offsets, comments), and the parser must build the same tree from
them. Checked on every statement of the labelled corpus in both dialects and on generated
statements full of the lexemes that differ between the two lexers.
"""

from __future__ import annotations

import random
import tomllib
from pathlib import Path

import pytest
import sqlglot
from sqlglot.dialects.dialect import Dialect as SqlglotDialect
from sqlglot.tokenizer_core import Token as SqlglotToken

from sandbox.guard import handover, parsing
from sandbox.statements import Dialect, split_statements, tokens

CORPUS = Path(__file__).parent / "corpus" / "lint_corpus.toml"


def _fields(found: list[SqlglotToken]) -> list[tuple[object, ...]]:
    return [(t.token_type, t.text, t.line, t.col, t.start, t.end, t.comments) for t in found]


def _handed(sql: str, dialect: Dialect) -> list[SqlglotToken] | None:
    tokenizer = SqlglotDialect.get_or_raise(dialect).tokenizer()
    return handover.sqlglot_tokens(sql, list(tokens(sql, dialect)), handover.vocabulary(tokenizer))


def _theirs(sql: str, dialect: Dialect) -> list[SqlglotToken]:
    return SqlglotDialect.get_or_raise(dialect).tokenizer().tokenize(sql)


def _corpus_statements() -> list[tuple[Dialect, str]]:
    found: list[tuple[Dialect, str]] = []
    for case in tomllib.loads(CORPUS.read_text(encoding="utf-8"))["case"]:
        for dialect in ("sqlite", "postgres"):
            found.extend((dialect, s.text) for s in split_statements(case["sql"], dialect))
    return found


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_handed_tokens_are_sqlglots_own_on_the_corpus(dialect: Dialect) -> None:
    accepted = refused = 0
    for which, sql in _corpus_statements():
        if which != dialect:
            continue
        handed = _handed(sql, dialect)
        if handed is None:
            refused += 1
            continue
        accepted += 1
        assert _fields(handed) == _fields(_theirs(sql, dialect)), sql
    # Most statements are plain: the hand-over must be doing the work, not refusing it.
    assert accepted > 3 * refused, (accepted, refused)


WORDS = ["id", "Name", "users", "ORDER", "by", "select", "group", "BY", "double", "precision",
         "true", "NULL", "update", "set", "where", "temp", "x1", "_y", "similar", "to", "e",
         ]  # fmt: skip
OTHER = ["1", "2.50", "'a b'", "''", "'it''s'", "'a\\b'", '"Col"', '"a""b"', "(", ")", ",", ".",
         "=", "<", ">", "!", "|", ":", "~", "*", "-", "+", "/", "%", "@", "#", "&", "^", "?",
         "$1", "[", "]", "`q`", "E'x'", "1e5", ".5", "1_000", "$$d$$", "-- c\n", "/* c */",
         "\n", "\t", "  ", "\r\n", "é", "a$b"]  # fmt: skip


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_handed_tokens_are_sqlglots_own_on_generated_statements(dialect: Dialect) -> None:
    rng = random.Random(5)
    accepted = 0
    for _ in range(4000):
        parts = [
            rng.choice(WORDS) if rng.random() < 0.5 else rng.choice(OTHER)
            for _ in range(rng.randint(1, 12))
        ]
        # Pieces written together (`a<=b`, `x::int`) as well as apart.
        sql = "".join(p + (" " if rng.random() < 0.5 else "") for p in parts).strip()
        if not sql:
            continue
        handed = _handed(sql, dialect)
        if handed is None:
            continue
        try:
            theirs = _theirs(sql, dialect)
        except sqlglot.errors.TokenError:
            pytest.fail(f"handed tokens for text sqlglot cannot tokenize: {sql!r}")
        accepted += 1
        assert _fields(handed) == _fields(theirs), sql
    assert accepted > 1000


@pytest.mark.parametrize(
    "sql",
    [
        "DELETE FROM t -- gone\nWHERE id = 1",
        "DELETE FROM t /* x */ WHERE id = 1",
        "UPDATE t SET a = 'it''s' WHERE id = 1",
        "UPDATE t SET a = E'x' WHERE id = 1",
        "DELETE FROM t WHERE id = $1",
        "DELETE FROM t WHERE a = 1e5",
        "MERGE INTO t USING s ON 1 = 1 WHEN MATCHED THEN DO NOTHING",
        "DELETE FROM t\r\nWHERE id = 1",
        "SELECT 1 ORDER\nBY 1",
    ],
)
def test_what_the_hand_over_leaves_to_sqlglots_tokenizer(sql: str) -> None:
    # Comments, escapes, parameters, exponents, commands, CR and a keyword split over lines.
    assert _handed(sql, "postgres") is None


def test_the_parser_builds_the_same_tree_from_handed_tokens() -> None:
    compared = 0
    for dialect, sql in _corpus_statements():
        toks = list(tokens(sql, dialect))
        if _handed(sql, dialect) is None:
            continue
        try:
            expected = sqlglot.parse_one(sql, read=dialect)
        except sqlglot.errors.SqlglotError:
            with pytest.raises(sqlglot.errors.SqlglotError):
                parsing.parse_one(sql, dialect, toks)
            continue
        got = parsing.parse_one(sql, dialect, toks)
        assert got == expected and got.sql(dialect=dialect) == expected.sql(dialect=dialect), sql
        compared += 1
    assert compared > 500
