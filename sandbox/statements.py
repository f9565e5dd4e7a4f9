"""Split SQL script text into statements and backslash meta-command lines.

This is a hand-written lexical scanner rather than a parser: it must cope with
anything a user types into the editor (half-finished strings, stray quotes,
unknown syntax) and never raise. It only understands enough of SQLite and
PostgreSQL lexing to know where a ``;`` really ends a statement, and it keeps
exact source offsets so that errors and lint findings can point at the text.
"""

from __future__ import annotations

import re
from bisect import bisect_right
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple, cast

Dialect = Literal["sqlite", "postgres"]

# `$$` or `$tag$`; a tag may not start with a digit, otherwise `$1` would be a quote.
_DOLLAR_DELIMITER = re.compile(r"\$(?:[^\W\d]\w*)?\$")
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_SQLITE_COMMENT_END = re.compile(r"\r?\n")
# Runs of what `str.isspace` and `_is_word_char` accept (re's \s is str.isspace, its \w is
# str.isalnum or "_"), matched in C: the lexer sees every character of every statement.
_SPACE_RUN = re.compile(r"\s+")
_WORD_RUN = re.compile(r"(?:[\w$]|[^\x00-\x7f\s])*")
# The same characters as `[\w$]|[^\x00-\x7f\s]` (ASCII letters, digits, `_` and `$`, and every
# non-ASCII character but a blank) as one class: the fast lexers match it a class test per
# character instead of two alternatives.
_WORD_CHAR = r"[^\x00-\x23\x25-\x2f\x3a-\x40\x5b-\x5e\x60\x7b-\x7f\s]"
_PUBLIC_KINDS = frozenset(
    {"word", "number", "string", "quoted_identifier", "dollar_string", "punct", "parameter"}
)


def _fast_lexemes(pg: bool, bulk: bool = False, run: bool = False) -> re.Pattern[str]:
    """The common lexemes (after any blanks) as one regex, matched in C; `_lex` does the rest.

    Each alternative is the exact extent `_lex` gives its kind, and matches only where `_lex`
    would pick that kind: where the answer needs more (a digit or letter outside ASCII, whose
    class str.isdigit decides; nested comments; dollar quotes; parameters; E'' and X''
    strings), no alternative matches and the caller asks `_lex`.

    With `bulk`, the regex matches a run of such lexemes up to the end of its last code token,
    stopping before a `;` or a backslash (what `split` must see one by one). With `run`, it
    matches one lexeme as without, but never a `;` or a backslash, and where it knows no
    lexeme (those two included) it matches the blanks and the empty `rest` group.
    """
    special = "xXbBnNeE" if pg else "xXbBnN"
    # ASCII punctuation that is one character whatever follows it; `- / .` are handled apart.
    punct = r"!#%&()*+,;<=>[\]^{|}~:?@`" if pg else r"!#%&()*+,;<=>\]^{|}~"
    if bulk or run:
        punct = punct.replace(";", "").replace("\\", "")
    comment = (
        # a block comment with no `/*` inside: nesting cannot change where it ends
        r"--[^\r\n]*+|/\*(?:[^*/]|\*(?!/)|/(?!\*))*+\*/"
        if pg
        else r"--(?:[^\r\n]|\r(?!\n))*+|/\*(?s:.*?)(?:\*/|\Z)"
    )
    quoted = r'"(?:[^"]|"")*+"?' if pg else r'"(?:[^"]|"")*+"?|`(?:[^`]|``)*+`?'
    code = rf"""
        (?P<word>(?![{special}]')[A-Za-z_]{_WORD_CHAR}*+)
        |(?P<punct>[{re.escape(punct)}]|-(?!-)|/(?!\*)|\.(?![0-9]|[^\x00-\x7f]))
        |(?P<number>0[xX][0-9a-fA-F_]*+
            |(?>(?:[0-9]|\.(?=[0-9]))[0-9._]*+(?:[eE][+-]?[0-9]++)?)
            (?![^\x00-\x7f]|[eE][+-]?[^\x00-\x7f]))
        |(?P<string>'(?:[^']|'')*+'?)
        |(?P<quoted_identifier>{quoted})"""
    if bulk:
        return re.compile(rf"(?:(?:\s*+(?:{comment}))*+\s*+(?:{code}))+", re.VERBOSE)
    # The empty `rest` alternative matches wherever no other does: finditer's matches then
    # follow one another with no gap, and the first `rest` shows the caller where to stop.
    rest = "|(?P<rest>)" if run else ""
    return re.compile(rf"\s*+(?:{code}|(?P<comment>{comment}){rest})", re.VERBOSE)


_FAST = {False: _fast_lexemes(False), True: _fast_lexemes(True)}
_BULK = {False: _fast_lexemes(False, bulk=True), True: _fast_lexemes(True, bulk=True)}
_RUN = {False: _fast_lexemes(False, run=True), True: _fast_lexemes(True, run=True)}
_FAST_KINDS = ("", "word", "punct", "number", "string", "quoted_identifier", "comment", "")


class Token(NamedTuple):
    """One code token. ``kind`` is one of the public kinds listed in ``tokens``.

    A named tuple rather than a frozen dataclass: the lexer makes one per token of every
    statement the guard reads, and a tuple is made in half the time.
    """

    kind: str
    text: str
    start: int
    end: int


# Token(kind, text, start, end) runs the named tuple's __new__, a function written in Python;
# tuple.__new__ makes the same tuple in half the time, and the lexers make one per token.
_new_token = cast("Callable[[type[Token], tuple[str, str, int, int]], Token]", tuple.__new__)


@dataclass(frozen=True)
class Statement:
    """One SQL statement: the exact source slice without its terminating ``;``."""

    text: str
    index: int
    start: int
    end: int
    line: int
    column: int
    end_line: int
    end_column: int
    leading_comments: str = ""

    @property
    def keyword(self) -> str:
        """The first word of the statement, upper-cased, or '' if it starts otherwise."""
        first = next(tokens(self.text), None)
        return first.text.upper() if first is not None and first.kind == "word" else ""


@dataclass(frozen=True)
class MetaCommand:
    """A backslash line such as ``\\session B``, which is not SQL at all."""

    name: str
    args: tuple[str, ...]
    text: str
    start: int
    end: int
    line: int
    column: int
    # `\\explain`: the SQL statement it carries, which may span lines up to its `;`.
    sql: str = ""


# Backslash commands that carry a SQL statement: it runs to its `;`, not to the line's end.
STATEMENT_COMMANDS = frozenset({"explain"})
# `\traffic NAME every 50ms for 3s: SELECT ...;` carries its statement after the `:`, to its
# `;`; without a `:` on the line (`\traffic NAME stop`) it is a one-line command.
CARRIES_AFTER_COLON = frozenset({"traffic"})


def _is_word_char(ch: str) -> bool:
    # Both engines treat every non-ASCII character as part of an identifier, and
    # both allow `$` after the first character (`a$b` is one name).
    return ch.isalnum() or ch in "_$" or (ord(ch) > 127 and not ch.isspace())


def _quoted_end(sql: str, i: int, quote: str, backslash: bool = False) -> int:
    """End of a quoted run opened at ``i``; a doubled quote is an escaped quote."""
    j, n = i + 1, len(sql)
    while j < n:
        ch = sql[j]
        if backslash and ch == "\\":
            j += 2
        elif ch != quote:
            j += 1
        elif j + 1 < n and sql[j + 1] == quote:
            j += 2
        else:
            return j + 1
    return n  # unterminated: the rest of the input belongs to it


def _block_comment_end(sql: str, i: int, nested: bool) -> int:
    depth, j, n = 1, i + 2, len(sql)
    if not nested:
        close = sql.find("*/", j)
        return n if close < 0 else close + 2
    while j < n:
        if sql.startswith("*/", j):
            depth -= 1
            j += 2
            if depth == 0:
                return j
        elif sql.startswith("/*", j):
            depth += 1
            j += 2
        else:
            j += 1
    return n


def _lex(sql: str, i: int, pg: bool) -> tuple[str, int]:
    """Classify the lexeme starting at ``i``; return its kind and end offset.

    Besides the public token kinds this yields "space" and "comment". Every
    branch consumes at least one character, so callers always make progress.
    """
    n = len(sql)
    ch = sql[i]
    nxt = sql[i + 1] if i + 1 < n else ""
    if ch.isspace():
        return "space", _run_end(_SPACE_RUN, sql, i)
    if ch == "-" and nxt == "-":
        # SQLite ends a line comment only at "\n"; PostgreSQL also at a lone "\r".
        match = (_LINE_BREAK if pg else _SQLITE_COMMENT_END).search(sql, i)
        return "comment", n if match is None else match.start()
    if ch == "/" and nxt == "*":
        return "comment", _block_comment_end(sql, i, nested=pg)
    if ch == "'":
        # PostgreSQL standard strings do not treat backslash specially.
        return "string", _quoted_end(sql, i, "'")
    if nxt == "'" and ch in "eE" and pg:
        return "string", _quoted_end(sql, i + 1, "'", backslash=True)
    if nxt == "'" and ch in "xXbBnN":
        return "string", _quoted_end(sql, i + 1, "'")
    if ch == '"' or (ch == "`" and not pg):
        return "quoted_identifier", _quoted_end(sql, i, ch)
    if ch == "[" and not pg:  # in PostgreSQL `[` is array subscript punctuation
        close = sql.find("]", i + 1)
        return "quoted_identifier", n if close < 0 else close + 1
    if ch == "$" and pg:
        delimiter = _DOLLAR_DELIMITER.match(sql, i)
        if delimiter is not None:
            close = sql.find(delimiter.group(), delimiter.end())
            return "dollar_string", n if close < 0 else close + len(delimiter.group())
        if nxt.isdigit():
            j = i + 1
            while j < n and sql[j].isdigit():
                j += 1
            return "parameter", j
        return "punct", i + 1
    if ch in "?:@$" and not pg and (ch == "?" or (nxt and _is_word_char(nxt))):
        j = i + 1
        while j < n and (sql[j].isdigit() if ch == "?" else _is_word_char(sql[j])):
            j += 1
        return "parameter", j
    if ch.isdigit() or (ch == "." and nxt.isdigit()):
        return "number", _number_end(sql, i)
    if _is_word_char(ch) and ch != "$" and not ch.isdigit():
        return "word", _run_end(_WORD_RUN, sql, i + 1)
    return "punct", i + 1


def _run_end(run: re.Pattern[str], sql: str, i: int) -> int:
    found = run.match(sql, i)
    return found.end() if found else i


def _number_end(sql: str, i: int) -> int:
    n = len(sql)
    if sql.startswith(("0x", "0X"), i):
        j = i + 2
        while j < n and (sql[j] in "0123456789abcdefABCDEF_"):
            j += 1
        return j
    j = i
    while j < n and (sql[j].isdigit() or sql[j] in "._"):
        j += 1
    if j < n and sql[j] in "eE":
        k = j + 1 + (j + 1 < n and sql[j + 1] in "+-")
        if k < n and sql[k].isdigit():
            j = k
            while j < n and sql[j].isdigit():
                j += 1
    return j


def tokens(sql: str, dialect: Dialect = "sqlite") -> Iterator[Token]:
    """Yield the code tokens of ``sql``, skipping whitespace and comments.

    Never raises: an unterminated string, identifier, dollar body or comment
    simply runs to the end of the input. Backslash meta-command lines are not
    recognised here (they are a script-level notion, see ``split``); a lone
    backslash is ordinary punctuation.
    """
    pg = dialect == "postgres"
    match = _FAST[pg].match
    i, n = 0, len(sql)
    while i < n:
        found = match(sql, i)
        if found is None:
            kind, end = _lex(sql, i, pg)
        else:
            group = found.lastindex or 0
            kind = _FAST_KINDS[group]
            i, end = found.span(group)
        if kind in _PUBLIC_KINDS:
            yield _new_token(Token, (kind, sql[i:end], i, end))
        i = end


def in_literal(sql: str, offset: int, dialect: Dialect = "sqlite") -> bool:
    """Whether ``offset`` lies inside a comment, a string or a quoted name (an unterminated
    one runs to the end), where what is typed is text rather than SQL words."""
    pg = dialect == "postgres"
    i = 0
    while i < min(offset, len(sql)):
        kind, end = _lex(sql, i, pg)
        if kind in ("comment", "string", "dollar_string", "quoted_identifier") and (
            offset < end or (end == len(sql) and not _closed(sql[i:end], kind))
        ):
            return True
        i = end
    return False


def _closed(text: str, kind: str) -> bool:
    """Whether a literal reaching the end of the input is terminated there."""
    if kind == "comment":
        return text.startswith("/*") and text.endswith("*/") and len(text) >= 4
    if kind == "dollar_string":
        found = _DOLLAR_DELIMITER.match(text)
        delimiter = found.group() if found else ""
        return bool(delimiter) and len(text) >= 2 * len(delimiter) and text.endswith(delimiter)
    if text[:1] in ("e", "E", "x", "X", "b", "B", "n", "N") and text[1:2] == "'":
        text = text[1:]  # E'...', X'...': the quote comes after the letter
    return len(text) >= 2 and text[-1] == text[0]


def comments(sql: str, dialect: Dialect = "sqlite") -> list[str]:
    """The comments of ``sql`` as written (``-- ...`` and ``/* ... */``), in order."""
    pg = dialect == "postgres"
    found: list[str] = []
    i = 0
    while i < len(sql):
        kind, end = _lex(sql, i, pg)
        if kind == "comment":
            found.append(sql[i:end])
        i = end
    return found


def words(sql: str, dialect: Dialect = "sqlite") -> list[str]:
    """Upper-cased bare words (keywords and identifiers) outside strings and comments."""
    # `tokens` without its Token objects: every statement a session runs is classified here.
    pg = dialect == "postgres"
    found: list[str] = []
    i, n = 0, len(sql)
    while i < n:
        kind, end = _lex(sql, i, pg)
        if kind == "word":
            found.append(sql[i:end].upper())
        i = end
    return found


class _Lines:
    """Maps offsets to 1-based (line, column); ``\\r\\n`` is a single break."""

    def __init__(self, sql: str) -> None:
        self._starts = [0]
        if "\n" in sql or "\r" in sql:  # most statements are one line: no regex to run then
            self._starts += [m.end() for m in _LINE_BREAK.finditer(sql)]

    def locate(self, offset: int) -> tuple[int, int]:
        line = bisect_right(self._starts, offset)
        return line, offset - self._starts[line - 1] + 1


def _at_line_start(sql: str, i: int) -> bool:
    """True if only blanks stand between the previous line break and ``i``."""
    j = i - 1
    while j >= 0 and sql[j] not in "\r\n" and sql[j].isspace():
        j -= 1
    return j < 0 or sql[j] in "\r\n"


_BLOCK_OPENERS = frozenset({"ATOMIC", "BEGIN"})


def _opens_block(head: list[str], word: str, prev: str, pg: bool) -> bool:
    """Whether ``word`` opens a body whose semicolons must not split the statement.

    ``head`` is the statement's first code tokens, upper-cased. Only CREATE
    TRIGGER (SQLite) and CREATE FUNCTION/PROCEDURE (PostgreSQL BEGIN ATOMIC)
    have such bodies; a transaction's own ``BEGIN;`` never does.
    """
    if pg:
        rest = head[3:] if head[1:3] == ["OR", "REPLACE"] else head[1:]
        return (
            word == "ATOMIC"
            and prev == "BEGIN"
            and head[:1] == ["CREATE"]
            and rest[:1] in (["FUNCTION"], ["PROCEDURE"])
        )
    rest = head[2:] if head[1:2] in (["TEMP"], ["TEMPORARY"]) else head[1:]
    return word == "BEGIN" and head[:1] == ["CREATE"] and rest[:1] == ["TRIGGER"]


def _rule_actions(head: list[str]) -> bool:
    """Whether the statement is a CREATE [OR REPLACE] RULE: its actions, in parentheses, are
    separated by semicolons (`DO ALSO (UPDATE ...; UPDATE ...)`), the one place in
    PostgreSQL's grammar where a `;` inside a statement does not end it (psql, too, sends
    nothing until the parentheses close)."""
    rest = head[3:] if head[1:3] == ["OR", "REPLACE"] else head[1:]
    return head[:1] == ["CREATE"] and rest[:1] == ["RULE"]


def _meta_command(sql: str, i: int, lines: _Lines, pg: bool) -> MetaCommand:
    match = _LINE_BREAK.search(sql, i)
    text = sql[i : len(sql) if match is None else match.start()].rstrip()
    parts = text[1:].split()
    line, column = lines.locate(i)
    name = parts[0] if parts else ""
    if name in STATEMENT_COMMANDS:
        return _statement_command(sql, i, name, line, column, pg)
    if name in CARRIES_AFTER_COLON and ":" in text:
        colon = sql.index(":", i)
        command = _statement_command(sql, i, name, line, column, pg, body=colon + 1)
        head = sql[sql.index(name, i) + len(name) : colon].split()
        return MetaCommand(
            name, tuple(head), command.text, command.start, command.end, line, column, command.sql
        )
    return MetaCommand(name, tuple(parts[1:]), text, i, i + len(text), line, column)


def _statement_command(
    sql: str, i: int, name: str, line: int, column: int, pg: bool, body: int | None = None
) -> MetaCommand:
    """`\\explain SELECT ...;`: the statement after the name runs to its own `;` (lexed like any
    statement, so a `;` in a string does not end it), or to a backslash line or the end."""
    if body is None:
        body = sql.index(name, i) + len(name)
    j = body
    stop = end = len(sql)
    while j < len(sql):
        if sql[j] == "\\" and _at_line_start(sql, j):
            stop = end = j
            break
        kind, after = _lex(sql, j, pg)
        if kind == "punct" and sql[j] == ";":
            stop, end = j, after
            break
        j = after
    text = sql[i:end].rstrip()
    return MetaCommand(name, (), text, i, i + len(text), line, column, sql[body:stop].strip())


def split(sql: str, dialect: Dialect = "sqlite") -> list[Statement | MetaCommand]:
    """Split a script into statements and meta-commands, in source order. Never raises."""
    return _split(sql, dialect, None)


def split_lexed(sql: str, dialect: Dialect = "sqlite") -> list[tuple[Statement, list[Token]]]:
    """The SQL statements of ``split``, each with its code tokens: exactly
    ``list(tokens(statement.text, dialect))``, offsets counted from the statement's start.

    The script is lexed once: the guard would otherwise lex every statement a second time."""
    lexed: list[list[Token]] = []
    statements = [item for item in _split(sql, dialect, lexed) if isinstance(item, Statement)]
    return list(zip(statements, lexed, strict=True))


def _split(
    sql: str, dialect: Dialect, lexed: list[list[Token]] | None
) -> list[Statement | MetaCommand]:
    """``split``; given `lexed`, it also appends each statement's tokens to it, in order."""
    pg = dialect == "postgres"
    lines = _Lines(sql)
    items: list[Statement | MetaCommand] = []
    count = 0  # statements emitted so far, for Statement.index
    start = end = -1  # span of the statement's code so far; start < 0 means none yet
    comments: list[str] = []  # comments seen before the current statement's code
    head: list[str] = []  # first few code tokens, to recognise CREATE TRIGGER etc.
    prev = ""  # previous code token, upper-cased, to spot BEGIN ATOMIC
    depth = 0  # nesting of BEGIN ... END bodies inside the current statement
    parens = 0  # open parentheses of a CREATE RULE's action list (see _rule_actions)
    toks: list[Token] = []  # with `lexed`: the current statement's code tokens

    def finish() -> None:
        nonlocal count, start, end, comments, head, prev, depth, parens, toks
        if start >= 0:
            # An unterminated string may run to the end, trailing blanks included.
            stop = len(sql[start:end].rstrip()) + start
            line, column = lines.locate(start)
            end_line, end_column = lines.locate(stop - 1)
            text = sql[start:stop]
            leading = "\n".join(comments)
            items.append(
                Statement(text, count, start, stop, line, column, end_line, end_column, leading)
            )
            if lexed is not None:
                # If the last token ran past the statement's text (an unterminated literal,
                # lexed through the blanks cut off above), only the text alone gives its tokens.
                lexed.append(toks if stop == end else list(tokens(text, dialect)))
            count += 1
            comments = []
        start = end = -1
        head, prev, depth, parens, toks = [], "", 0, 0, []

    match, run, each = _FAST[pg].match, _BULK[pg].match, _RUN[pg].finditer
    i, n = 0, len(sql)
    while i < n:
        if start >= 0 and depth == 0 and head[0] != "CREATE":
            # Inside a statement that cannot open a body: only `;` and a backslash line matter.
            if lexed is None:
                # A run of other lexemes is skipped at once (it is code: it moves the end).
                skipped = run(sql, i)
                if skipped is not None:
                    i = end = skipped.end()
                    if i >= n:
                        break
            else:
                # Each lexeme, up to one the regex cannot tell (`rest`): `;`, a backslash, or
                # what `_lex` must read. The matches follow one another: nothing is skipped.
                # (The loop keeps to local names: it runs once per token of the script.)
                append, base, last = toks.append, start, end
                for lexeme in each(sql, i):
                    group = lexeme.lastindex or 0
                    kind = _FAST_KINDS[group]
                    at, stop = lexeme.span(group)
                    if not kind:
                        i = at
                        break
                    if kind != "comment":
                        append(_new_token(Token, (kind, sql[at:stop], at - base, stop - base)))
                        last = stop
                    i = stop
                end = last
                if i >= n:
                    break
        found = match(sql, i)
        if found is None:
            at = i
            kind, stop = _lex(sql, i, pg)
        else:  # blanks, then a lexeme at `at`
            group = found.lastindex or 0
            kind = _FAST_KINDS[group]
            at, stop = found.span(group)
        if sql[at] == "\\" and depth == 0 and _at_line_start(sql, at):
            finish()  # a meta-command line ends any unterminated statement
            meta = _meta_command(sql, at, lines, pg)
            items.append(meta)
            comments = []
            i = meta.end
            continue
        if kind == "comment":
            if start < 0:
                comments.append(sql[at:stop])
        elif kind == "punct" and sql[at] == ";" and depth == 0 and parens == 0:
            finish()
        elif kind != "space":
            if start < 0:
                start = at
            end = stop
            if lexed is not None:
                toks.append(_new_token(Token, (kind, sql[at:stop], at - start, stop - start)))
            if kind != "word":
                text = sql[at:stop].upper()
                if len(head) < 4:
                    head.append(text)
                if pg and text in ("(", ")") and _rule_actions(head):
                    parens = max(parens + (1 if text == "(" else -1), 0)
                prev = ""
            else:
                word = sql[at:stop].upper()
                if len(head) < 4:
                    head.append(word)
                if depth > 0 and word in ("CASE", "END"):
                    depth += 1 if word == "CASE" else -1
                # Only these two words open a body (see _opens_block).
                elif depth == 0 and word in _BLOCK_OPENERS and _opens_block(head, word, prev, pg):
                    depth = 1
                prev = word
        i = stop
    finish()
    return items


def split_statements(sql: str, dialect: Dialect = "sqlite") -> list[Statement]:
    """Only the SQL statements of ``split``, dropping meta-commands."""
    return [item for item in split(sql, dialect) if isinstance(item, Statement)]
