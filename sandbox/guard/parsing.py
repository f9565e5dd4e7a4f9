"""sqlglot.parse_one for the guard, without building a dialect, tokenizer and parser per call.

`sqlglot.parse_one(sql, read="postgres")` makes a new Dialect, Tokenizer and Parser every time,
and the first use of each fresh one costs about as much as a fifth of parsing a short DELETE.
Both reset themselves at the start of every tokenize / parse, so one pair per dialect (and per
thread: a parse is not re-entrant) gives the same trees and the same errors.

Given the guard's own tokens of the text, the parser is handed sqlglot tokens made from them
where the statement is plain (see handover.py), and the tokenizer reads only the rest.
"""

from __future__ import annotations

import threading

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.errors import ParseError
from sqlglot.parser import Parser
from sqlglot.tokens import Tokenizer

from sandbox.guard import handover
from sandbox.statements import Token

_local = threading.local()


def _pair(dialect: str) -> tuple[Tokenizer, Parser, handover.Vocabulary]:
    pairs: dict[str, tuple[Tokenizer, Parser, handover.Vocabulary]] | None = getattr(
        _local, "pairs", None
    )
    if pairs is None:
        pairs = _local.pairs = {}
    pair = pairs.get(dialect)
    if pair is None:
        made = Dialect.get_or_raise(dialect)
        tokenizer = made.tokenizer()
        pair = pairs[dialect] = (tokenizer, made.parser(), handover.vocabulary(tokenizer))
    return pair


def parse_one(sql: str, dialect: str, toks: list[Token] | None = None) -> exp.Expr:
    """What `sqlglot.parse_one(sql, read=dialect)` returns, or raises. `toks`: the guard's
    tokens of `sql`, if the caller has them."""
    tokenizer, parser, words = _pair(dialect)
    handed = handover.sqlglot_tokens(sql, toks, words) if toks is not None else None
    result = parser.parse(handed if handed is not None else tokenizer.tokenize(sql), sql)
    if not result or result[0] is None:
        raise ParseError(f"No expression was parsed from '{sql}'")
    return exp.Block(expressions=result) if len(result) > 1 else result[0]
