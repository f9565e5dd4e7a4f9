"""Where in a statement the engine's error points: an offset into the statement's own text.

PostgreSQL says it: the error's statement position, 1-based, in characters of the query sent
(which may carry a prefix of dbsandbox's own: a SELECT is sent inside `DECLARE ... FOR`).
SQLite names only the token (`near "FORM": syntax error`); the same token may occur more than
once, so the statement is cut after each occurrence in turn and the prefix parsed by SQLite
itself on a scratch connection that may run nothing: the first cut that yields the same error
is where the parser stopped. Errors naming a column or table point at its first mention.
"""

from __future__ import annotations

import re
import sqlite3

from sandbox.statements import Dialect, tokens

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_NEAR = re.compile(r'^near "(.*)": syntax error$', re.DOTALL)
_UNRECOGNIZED = re.compile(r'^unrecognized token: "(.*)"$', re.DOTALL)
_NAMED = re.compile(r"^no such (?:column|table|function): (\S+)$")


def script_place(line: int, column: int, text: str, position: int) -> tuple[int, int]:
    """The 1-based line and column, in the script, of `position` in a statement `text` that
    starts at `line`, `column` there."""
    rows = _LINE_BREAK.split(text[:position])
    if len(rows) == 1:
        return line, column + position
    return line + len(rows) - 1, len(rows[-1]) + 1


def locate(exc: BaseException, sql: str, message: str, dialect: Dialect) -> int | None:
    """The 0-based offset in `sql` the error `exc` points at, or None when it points nowhere."""
    if dialect == "postgres":
        return _postgres(exc, sql)
    return sqlite_position(sql, message)


def _postgres(exc: BaseException, sql: str) -> int | None:
    diag = getattr(exc, "diag", None)
    raw = getattr(diag, "statement_position", None)
    if raw is None or not str(raw).isdigit():
        return None
    position = int(raw) - 1
    cursor = getattr(exc, "cursor", None)
    sent = getattr(cursor, "query", None)
    if isinstance(sent, bytes):
        text = sent.decode("utf-8", errors="replace")
        if text.endswith(sql):
            position -= len(text) - len(sql)  # dbsandbox's own prefix
    return min(position, len(sql)) if position >= 0 else None


def sqlite_position(sql: str, message: str) -> int | None:
    if message == "incomplete input":
        return len(sql.rstrip())
    near = _NEAR.match(message)
    if near:
        return _near(sql, near.group(1), message)
    unrecognized = _UNRECOGNIZED.match(message)
    if unrecognized:
        found = sql.find(unrecognized.group(1))
        return found if found >= 0 else None
    named = _NAMED.match(message)
    if named:
        return _first_mention(sql, named.group(1).split(".")[-1])
    return None


def _first_mention(sql: str, name: str) -> int | None:
    for token in tokens(sql, "sqlite"):
        if token.text.strip('"`[]').lower() == name.lower():
            return token.start
    return None


def _near(sql: str, near: str, message: str) -> int | None:
    starts = [t.start for t in tokens(sql, "sqlite") if sql.startswith(near, t.start)]
    if not starts:
        found = sql.find(near)
        return found if found >= 0 else None
    if len(starts) == 1:
        return starts[0]
    probe = sqlite3.connect(":memory:", isolation_level=None)
    try:
        # Whatever parses is refused before it could run: only the parser's answer matters.
        probe.set_authorizer(lambda *_: sqlite3.SQLITE_DENY)
        for start in starts:
            try:
                probe.execute(sql[: start + len(near)])
            except sqlite3.Error as exc:
                if str(exc) == message:
                    return start
    finally:
        probe.close()
    return starts[0]
