"""Format SQL text with sqlglot, statement by statement, losing nothing the learner wrote.

Only the statements themselves are rewritten: what lies between them (comments on their own
lines, blank lines, backslash commands such as `\\snapshot before`) is kept byte for byte.
sqlglot keeps a comment inside a statement as `/* ... */`; should it ever drop one, or fail to
parse a statement, nothing is changed and the reason says which statement.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from sandbox.errors import UserError
from sandbox.statements import Dialect, Statement, comments, split

# sqlglot logs a warning when it keeps a statement it does not know as an opaque command;
# in the app that text would land on the terminal under the screen.
logging.getLogger("sqlglot").setLevel(logging.ERROR)


@dataclass(frozen=True)
class Formatted:
    text: str
    statements: int  # how many statements were rewritten
    kept: int  # statements sqlglot does not know, kept as typed


def _comment_words(sql: str, dialect: Dialect) -> list[str]:
    """The words of every comment in `sql`: what formatting must keep."""
    found: list[str] = []
    for comment in comments(sql, dialect):
        body = comment[2:] if comment.startswith("--") else comment[2:-2]
        found += body.split()
    return found


def format_statement(sql: str, dialect: Dialect) -> str | None:
    """`sql` (one statement) pretty-printed, or None when sqlglot only knows it as a command."""
    import sqlglot
    from sqlglot import exp
    from sqlglot.errors import ParseError, TokenError

    try:
        parsed = sqlglot.parse(sql, read=dialect)
    except (ParseError, TokenError) as exc:
        raise UserError(_first_line(exc)) from None
    trees = [tree for tree in parsed if tree is not None]
    if len(trees) != 1 or isinstance(trees[0], exp.Command):
        return None
    pretty = trees[0].sql(dialect=dialect, pretty=True)
    if sorted(_comment_words(sql, dialect)) != sorted(_comment_words(pretty, dialect)):
        raise UserError("sqlglot would drop a comment in it")
    return pretty


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def format_sql(text: str, dialect: Dialect) -> Formatted:
    """`text` with each statement pretty-printed; raises UserError (nothing changed) if one
    cannot be parsed, naming it by its line."""
    pieces: list[str] = []
    at = statements = kept = 0
    for item in split(text, dialect):
        if not isinstance(item, Statement):
            continue
        try:
            pretty = format_statement(item.text, dialect)
        except UserError as exc:
            raise UserError(f"cannot format the statement on line {item.line}: {exc}") from None
        pieces.append(text[at : item.start])
        if pretty is None:
            kept += 1
            pieces.append(item.text)
        else:
            statements += 1
            pieces.append(pretty)
        at = item.end
    pieces.append(text[at:])
    return Formatted("".join(pieces), statements, kept)
