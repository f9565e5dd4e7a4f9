"""A traced statement with its parameters written in, so an export's replay can run it.

The DBAPI drivers send parameters beside the SQL (psycopg2's %(name)s and %s, sqlite3's ?
and :name); `dbsandbox run` replays plain SQL. Values are written as SQL literals; a value the
tracer had to shorten, or one of a type with no literal here, makes the statement
unreplayable (None), never a replay that sends something else.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from sandbox.statements import Dialect, tokens

_PYFORMAT = re.compile(r"%\((\w+)\)s|%s|%%")
_SQLITE = re.compile(r"\?|:(\w+)")


class _Unwritable(Exception):
    pass


def literal(value: Any, dialect: Dialect) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        if dialect == "sqlite":
            return "1" if value else "0"
        return "TRUE" if value else "FALSE"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        if value.endswith("…"):
            raise _Unwritable  # shortened by the tracer
        return "'" + value.replace("'", "''") + "'"
    raise _Unwritable


def inline(sql: str, params: Any, dialect: Dialect) -> str | None:
    """`sql` with `params` written in; the SQL itself when there are none; None when it
    cannot be written faithfully (an executemany, a shortened or unknown value)."""
    if params is None or params == [] or params == {}:
        return sql
    if isinstance(params, list) and params and isinstance(params[0], (dict, list)):
        return None  # an executemany: one statement, several parameter sets
    try:
        if dialect == "postgres":
            return _pyformat(sql, params, dialect)
        return _sqlite(sql, params, dialect)
    except (_Unwritable, KeyError, IndexError, TypeError):  # parameters not as the SQL names
        return None


def _pyformat(sql: str, params: Any, dialect: Dialect) -> str:
    position = iter(range(10**9))

    def value(match: re.Match[str]) -> str:
        if match.group(0) == "%%":
            return "%"
        if match.group(1) is not None:
            return literal(params[match.group(1)], dialect)
        return literal(params[next(position)], dialect)

    return _outside_literals(sql, _PYFORMAT, value, dialect)


def _sqlite(sql: str, params: Any, dialect: Dialect) -> str:
    position = iter(range(10**9))

    def value(match: re.Match[str]) -> str:
        if match.group(1) is not None:
            return literal(params[match.group(1)], dialect)
        return literal(params[next(position)], dialect)

    return _outside_literals(sql, _SQLITE, value, dialect)


def _outside_literals(sql: str, pattern: re.Pattern[str], value: Any, dialect: Dialect) -> str:
    """Substitute placeholders in code, never inside a string, identifier or comment."""
    out: list[str] = []
    last = 0
    for start, end in _literals(sql, dialect):
        out.append(pattern.sub(value, sql[last:start]))
        out.append(sql[start:end])
        last = end
    out.append(pattern.sub(value, sql[last:]))
    return "".join(out)


@lru_cache(maxsize=2048)
def _literals(sql: str, dialect: Dialect) -> tuple[tuple[int, int], ...]:
    """Where `sql`'s strings and quoted identifiers are. A program sends the same few
    statements thousands of times with new parameters: lexing each once, not on every
    execution, keeps a trace's recorder ahead of the program (it was most of its time)."""
    return tuple(
        (token.start, token.end)
        for token in tokens(sql, dialect)
        if token.kind in ("string", "dollar_string", "quoted_identifier")
    )
