"""The commonest writes, recognised without a parser: an UPDATE or DELETE on one table whose
WHERE picks rows by their own columns.

    UPDATE t SET c = term [op term]... [, c = ...]...  WHERE condition [AND condition]...
    DELETE FROM t WHERE condition [AND condition]...

    condition:  c op constant | c [NOT] IN (constant, ...) | c [NOT] BETWEEN constant AND constant
                | c [NOT] LIKE 'pattern' | c IS [NOT] NULL

(`term` a column, a number, a string or a parameter; `op` in a SET one of + - * /, in a
condition one of = <> != < <= > >=; `constant` a number, a string or a bound parameter.)

No rule of the guard can fire on such a statement: it has a WHERE; each condition compares a
column of the only table in the statement with values that are the same for every row, which
is about that table's own rows and never true of every row (see _condition for the two
exceptions it refuses: `LIKE '%'`, and `IS NOT NULL` on a column a schema declares NOT NULL);
there is no join, subquery, function, RETURNING or conflict clause. Parsing it with sqlglot
(about 0.2 ms) would only confirm that, so the guard skips the parse for exactly these
statements; anything else, however close, goes to the full analysis. The tests check that both
agree on every statement of this shape they generate, and on the corpus.
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
    """End index of a constant starting at `i`: an optionally negative number, a string, or a
    bound parameter (`?`, `?1`, `:name`, `$1`), whose value is one value for every row."""
    if i < len(toks) and toks[i].text == "-" and toks[i].kind == "punct":
        i += 1
        return i + 1 if i < len(toks) and toks[i].kind == "number" else None
    if i < len(toks) and toks[i].kind in ("number", "string", "parameter"):
        return i + 1
    return None


def _operator(toks: list[Token], i: int) -> int | None:
    """End index of a comparison operator at `i` (=, <>, !=, <, <=, >, >=), or None."""
    if i >= len(toks) or toks[i].kind != "punct" or toks[i].text not in "=<>!":
        return None
    first = toks[i].text
    nxt = toks[i + 1] if i + 1 < len(toks) else None
    if nxt is not None and nxt.kind == "punct" and nxt.start == toks[i].end:
        if (first, nxt.text) in (("<", ">"), ("!", "="), ("<", "="), (">", "=")):
            after = toks[i + 2] if i + 2 < len(toks) else None
            if after is not None and after.kind == "punct" and after.start == nxt.end:
                return None  # a longer operator (<=>, !==): not one of these
            return i + 2
        return None  # ==, =>, <<, <@, >> ...: not a comparison this knows
    return i + 1 if first in "=<>" else None


def _like_pattern(token: Token) -> bool:
    """A plain '...' pattern that does not match every value (`LIKE '%'` does)."""
    text = token.text
    if token.kind != "string" or not text.startswith("'") or "\\" in text:
        return False
    return not (text[1:-1] and set(text[1:-1]) <= {"%"})


def _condition(toks: list[Token], i: int, schema_known: bool) -> int | None:
    """End index of one condition on a column of the table, from `i`, or None:

        c op constant | c [NOT] IN (constant, ...) | c [NOT] BETWEEN constant AND constant
        | c [NOT] LIKE 'pattern' | c IS NULL | c IS NOT NULL (when no schema is known)

    None of these is true for every row: each compares the row's own column with values
    that are the same for every row, and a NULL column fails all but IS NULL. (A known
    schema may declare the column NOT NULL, which makes IS NOT NULL always true: the full
    analysis says so, so it gets the statement.)"""
    if not (i + 1 < len(toks) and _column(toks[i])):
        return None
    i += 1
    end = _operator(toks, i)
    if end is not None:
        return _constant(toks, end)
    word = _word(toks[i])
    if word == "IS":
        words = [_word(t) for t in toks[i + 1 : i + 3]]
        if words[:1] == ["NULL"]:
            return i + 2
        if words == ["NOT", "NULL"] and not schema_known:
            return i + 3
        return None
    if word == "NOT":
        i += 1
        word = _word(toks[i]) if i < len(toks) else ""
    if word == "IN":
        if not (i + 1 < len(toks) and toks[i + 1].text == "("):
            return None
        i += 2
        while True:
            end = _constant(toks, i)
            if end is None or end >= len(toks):
                return None
            if toks[end].text == ")":
                return end + 1
            if toks[end].text != ",":
                return None
            i = end + 1
    if word == "BETWEEN":
        end = _constant(toks, i + 1)
        if end is None or end >= len(toks) or _word(toks[end]) != "AND":
            return None
        return _constant(toks, end + 1)
    if word == "LIKE":
        return i + 2 if i + 1 < len(toks) and _like_pattern(toks[i + 1]) else None
    return None


def _filtering_where(toks: list[Token], i: int, schema_known: bool) -> bool:
    """`WHERE condition [AND condition]...` from `i` to the end (a final `;` allowed)."""
    if i >= len(toks) or _word(toks[i]) != "WHERE":
        return False
    i += 1
    while True:
        end = _condition(toks, i, schema_known)
        if end is None:
            return False
        i = end
        if i < len(toks) and _word(toks[i]) == "AND":
            i += 1
            continue
        return i == len(toks) or (i == len(toks) - 1 and toks[i].text == ";")


def _term(token: Token) -> bool:
    return _column(token) or token.kind in ("number", "string", "parameter")


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


def is_filtered_write(toks: list[Token], schema_known: bool = False) -> bool:
    """Whether the statement is exactly one of the two shapes above. `schema_known`: the
    analysis would be given the tables' columns (see _condition)."""
    if len(toks) < 6:
        return False
    first = _word(toks[0])
    if first == "UPDATE":
        if not (_column(toks[1]) and _word(toks[2]) == "SET"):
            return False
        end = _assignments(toks, 3)
        return end is not None and _filtering_where(toks, end, schema_known)
    if first == "DELETE":
        return (
            _word(toks[1]) == "FROM"
            and _column(toks[2])
            and _filtering_where(toks, 3, schema_known)
        )
    return False


def unfiltered_write(toks: list[Token]) -> tuple[str, str] | None:
    """("delete" or "update", the table as shown) for the plainest writes with no WHERE:

        DELETE FROM [schema.]t
        UPDATE [schema.]t SET c = term [op term]... [, c = ...]...

    (a final `;` allowed). Each gets the one finding the full analysis gives it, without-where
    on that table; nothing else in it could change that."""
    first = _word(toks[0]) if toks else ""
    if toks and toks[-1].text == ";" and toks[-1].kind == "punct":
        toks = toks[:-1]
    if first == "DELETE" and len(toks) >= 3 and _word(toks[1]) == "FROM":
        table, end = _table(toks, 2)
        return ("delete", table) if table and end == len(toks) else None
    if first == "UPDATE" and len(toks) >= 6:
        table, end = _table(toks, 1)
        if not table or end >= len(toks) or _word(toks[end]) != "SET":
            return None
        return ("update", table) if _assignments(toks, end + 1) == len(toks) else None
    return None


def _table(toks: list[Token], i: int) -> tuple[str, int]:
    """A plain `t` or `schema.t` at `i`, as the guard shows it, and the index after it."""
    if not (i < len(toks) and _column(toks[i])):
        return "", i
    if i + 2 < len(toks) and toks[i + 1].text == "." and _column(toks[i + 2]):
        return f"{toks[i].text}.{toks[i + 2].text}", i + 3
    return toks[i].text, i + 1
