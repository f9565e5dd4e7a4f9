"""The commonest writes, recognised without a parser: a keyed UPDATE or DELETE on one table.

    UPDATE t SET c = term [op term]... [, c = ...]...  WHERE c = constant [AND c = constant]...
    DELETE FROM t WHERE c = constant [AND c = constant]...

(`term` a column, a number or a string; `op` one of + - * /; `constant` a number or a string.)

No rule of the guard can fire on such a statement: it has a WHERE; the WHERE compares a column
of the only table in the statement with a constant, which is about that table's own rows and
never always true; there is no join, subquery, function, RETURNING or conflict clause. Parsing
it with sqlglot (about 0.2 ms) would only confirm that, so `dbsandbox run` skips the parse for
exactly these statements; anything else, however close, goes to the full analysis. The tests
check that both agree on every statement of this shape they generate, and on the corpus.
"""

from __future__ import annotations

from sandbox.statements import Token

_ARITHMETIC = frozenset({"+", "-", "*", "/"})
# Words that read like a column but are a value or an operator: `WHERE true = 1` and
# `WHERE current_user = 'x'` do not look at the table at all.
_NOT_COLUMNS = frozenset(
    {
        "TRUE", "FALSE", "NULL", "NOT", "EXISTS", "AND", "OR", "IS", "IN", "LIKE", "BETWEEN",
        "CASE", "CAST", "SELECT", "WHERE", "SET", "FROM", "RETURNING", "USING", "DEFAULT",
        "CURRENT_DATE", "CURRENT_TIME", "CURRENT_TIMESTAMP", "CURRENT_USER", "CURRENT_ROLE",
        "CURRENT_SCHEMA", "CURRENT_CATALOG", "SESSION_USER", "USER", "LOCALTIME",
        "LOCALTIMESTAMP", "ONLY", "LIMIT", "ORDER", "ALL", "ANY", "SOME", "ARRAY", "ROW",
    }
)  # fmt: skip


def _word(token: Token) -> str:
    return token.text.upper() if token.kind == "word" else ""


def _column(token: Token) -> bool:
    """A plain column name (a quoted name may be a string in SQLite's eyes: not here)."""
    return token.kind == "word" and token.text.upper() not in _NOT_COLUMNS


def _constant(toks: list[Token], i: int) -> int | None:
    """End index of a constant starting at `i` (an optionally negative number, or a string)."""
    if i < len(toks) and toks[i].text == "-" and toks[i].kind == "punct":
        i += 1
    if i < len(toks) and toks[i].kind in ("number", "string"):
        return i + 1
    return None


def _keyed_where(toks: list[Token], i: int) -> bool:
    """`WHERE c = constant [AND c = constant]...` from `i` to the end (a final `;` allowed)."""
    if i >= len(toks) or _word(toks[i]) != "WHERE":
        return False
    i += 1
    while True:
        if not (i + 1 < len(toks) and _column(toks[i]) and toks[i + 1].text == "="):
            return False
        end = _constant(toks, i + 2)
        if end is None:
            return False
        i = end
        if i < len(toks) and _word(toks[i]) == "AND":
            i += 1
            continue
        return i == len(toks) or (i == len(toks) - 1 and toks[i].text == ";")


def _term(token: Token) -> bool:
    return _column(token) or token.kind in ("number", "string")


def _assignments(toks: list[Token], i: int) -> int | None:
    """End index of `c = term [op term]... [, c = ...]...` from `i`, or None."""
    while True:
        if not (i + 2 < len(toks) and _column(toks[i]) and toks[i + 1].text == "="):
            return None
        i += 2
        if not _term(toks[i]):
            return None
        i += 1
        while i + 1 < len(toks) and toks[i].text in _ARITHMETIC and toks[i].kind == "punct":
            if not _term(toks[i + 1]):
                return None
            i += 2
        if i < len(toks) and toks[i].text == ",":
            i += 1
            continue
        return i


def is_keyed_write(toks: list[Token]) -> bool:
    """Whether the statement is exactly one of the two shapes above."""
    if len(toks) < 6:
        return False
    first = _word(toks[0])
    if first == "UPDATE":
        if not (_column(toks[1]) and _word(toks[2]) == "SET"):
            return False
        end = _assignments(toks, 3)
        return end is not None and _keyed_where(toks, end)
    if first == "DELETE":
        return _word(toks[1]) == "FROM" and _column(toks[2]) and _keyed_where(toks, 3)
    return False
