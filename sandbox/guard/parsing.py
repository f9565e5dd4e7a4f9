"""sqlglot.parse_one for the guard, without building a dialect, tokenizer and parser per call.

`sqlglot.parse_one(sql, read="postgres")` makes a new Dialect, Tokenizer and Parser every time,
and the first use of each fresh one costs about as much as a fifth of parsing a short DELETE.
Both reset themselves at the start of every tokenize / parse, so one pair per dialect (and per
thread: a parse is not re-entrant) gives the same trees and the same errors.
"""

from __future__ import annotations

import threading

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError
from sqlglot.parser import Parser
from sqlglot.tokens import Tokenizer

_local = threading.local()


def _pair(dialect: str) -> tuple[Tokenizer, Parser]:
    pairs: dict[str, tuple[Tokenizer, Parser]] | None = getattr(_local, "pairs", None)
    if pairs is None:
        pairs = _local.pairs = {}
    pair = pairs.get(dialect)
    if pair is None:
        made = Dialect.get_or_raise(dialect)
        pair = pairs[dialect] = (made.tokenizer(), made.parser())
    return pair


def parse_one(sql: str, dialect: str) -> exp.Expr:
    """What `sqlglot.parse_one(sql, read=dialect)` returns, or raises."""
    tokenizer, parser = _pair(dialect)
    result = parser.parse(tokenizer.tokenize(sql), sql)
    if not result or result[0] is None:
        raise ParseError(f"No expression was parsed from '{sql}'")
    return exp.Block(expressions=result) if len(result) > 1 else result[0]
