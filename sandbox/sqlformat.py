"""Format SQL text with sqlglot, statement by statement, losing nothing the learner wrote.

Only the statements themselves are rewritten: what lies between them (comments on their own
lines, blank lines, backslash commands such as `\\snapshot before`) is kept byte for byte.
sqlglot keeps a comment inside a statement as `/* ... */`; should it ever drop one, or fail to
parse a statement, or write one that parses differently from what was typed, nothing is
changed and the reason says which statement. Some spellings do change (INTEGER becomes INT
on PostgreSQL, `x::text` becomes CAST(x AS TEXT)): the same statement, written by sqlglot.
"""

from __future__ import annotations

import logging
import re
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
    except ParseError as exc:
        raise _parse_failure(exc) from None
    except TokenError as exc:
        raise UserError(_first_line(exc)) from None
    trees = [tree for tree in parsed if tree is not None]
    if len(trees) != 1 or isinstance(trees[0], exp.Command):
        return None
    pretty = trees[0].sql(dialect=dialect, pretty=True)
    try:
        same = sqlglot.parse_one(pretty, read=dialect) == trees[0]
    except (ParseError, TokenError):
        same = False
    if not same:  # a rewrite of its own (ILIKE on SQLite), not only a new layout
        raise UserError("sqlglot would write it as a different statement")
    if sorted(_comment_words(sql, dialect)) != sorted(_comment_words(pretty, dialect)):
        raise UserError("sqlglot would drop a comment in it")
    return pretty


class ParseFailure(UserError):
    """sqlglot could not parse a statement; `line` and `column` count from its start."""

    def __init__(self, message: str, line: int, column: int) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


def _parse_failure(exc: Exception) -> UserError:
    errors = getattr(exc, "errors", None) or [{}]
    first = errors[0]
    # sqlglot appends its internal token ("but got <Token token_type: ...>"): not for learners.
    description = re.sub(r"\s*(but got )?<Token.*$", "", str(first.get("description") or ""))
    description = description or _first_line(exc)
    line, column = first.get("line"), first.get("col")
    if isinstance(line, int) and isinstance(column, int):
        # sqlglot's column is where the offending token ends.
        column -= max(len(str(first.get("highlight") or "")) - 1, 0)
        return ParseFailure(description, line, column)
    return UserError(description)


def _first_line(exc: Exception) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0]


def _place(line: int, column: int, origin: tuple[int, int]) -> tuple[int, int]:
    """(line, column) in a text that starts at `origin` of the editor, in the editor's terms."""
    return (origin[0] + line - 1, origin[1] + column - 1 if line == 1 else column)


def format_sql(text: str, dialect: Dialect, origin: tuple[int, int] = (1, 1)) -> Formatted:
    """`text` with each statement pretty-printed; raises UserError (nothing changed) if one
    cannot be parsed, naming it by its line. `origin`: where `text` starts in the editor (a
    selection), so that lines and columns are the editor's."""
    pieces: list[str] = []
    at = statements = kept = 0
    for item in split(text, dialect):
        if not isinstance(item, Statement):
            continue
        first, _ = _place(item.line, item.column, origin)
        try:
            pretty = format_statement(item.text, dialect)
        except ParseFailure as exc:
            # Where sqlglot stopped: its line and column count from the statement's start.
            line, column = _place(exc.line, exc.column, _place(item.line, item.column, origin))
            raise UserError(
                f"cannot format the statement on line {first}: sqlglot stops at line "
                f"{line}, column {column}: {exc}"
            ) from None
        except UserError as exc:
            raise UserError(f"cannot format the statement on line {first}: {exc}") from None
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
