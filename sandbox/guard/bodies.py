"""SQL that runs from inside another statement: DO blocks, function bodies, EXECUTE strings.

A DO block runs its body at once; a function runs its body whenever it is called; EXECUTE in
either runs the SQL its expression builds. The guard's rules (lint and the sandbox boundary)
read that SQL too, so where it starts, and what text it is, are worked out here once.
"""

from __future__ import annotations

import itertools
import re

from sandbox.statements import Statement, Token, split_lexed

# PL/pgSQL words after which a new statement starts (besides after `;`): `IF ... THEN DELETE`,
# `LOOP UPDATE`, `ELSE DROP`. Elsewhere a word such as UPDATE is part of the statement around it
# (`SELECT ... FOR UPDATE`, `ON CONFLICT DO UPDATE`).
STATEMENT_OPENERS = frozenset({"BEGIN", "THEN", "ELSE", "LOOP"})
# format() placeholders in dynamic SQL: %s, %I, %L, with an optional position and width.
_FORMAT_SPEC = re.compile(r"%(?:\d+\$)?-?\d*([sIL%])")
# In an escape string (E'...'): a backslash escape, or a doubled quote.
_ESCAPE = re.compile(r"\\(.)|''", re.S)
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "b": "\b", "f": "\f"}


def word(token: Token) -> str:
    return token.text.upper() if token.kind == "word" else ""


def string_value(token: Token) -> str | None:
    """The text of a string literal token ('...', E'...', $tag$...$tag$), or None."""
    text = token.text
    if token.kind == "dollar_string":
        tag = text[: text.index("$", 1) + 1]
        return text[len(tag) : -len(tag)] if text.endswith(tag) and len(text) > len(tag) else None
    if token.kind != "string" or not text.endswith("'"):
        return None
    if text[0] in "eE":
        return text[2:-1].replace("\\'", "'").replace("''", "'")
    if text[0] != "'":
        return None  # X'..', B'..': not SQL text
    return text[1:-1].replace("''", "'")


def literal_span(token: Token) -> tuple[int, int] | None:
    """Where the text inside a string literal starts and ends, in the statement."""
    if token.kind == "dollar_string":
        tag_end = token.text.index("$", 1) + 1
        return token.start + tag_end, token.end - tag_end
    if token.kind == "string" and token.text[:1] == "'":
        return token.start + 1, token.end - 1
    if token.kind == "string" and token.text[:2] in ("E'", "e'"):
        return token.start + 2, token.end - 1
    return None


def body_text(sql: str, start: int, end: int) -> str:
    """The body between `start` and `end`, as the server reads it: a quoted body ('...') has
    its doubled quotes undone, an escape string (E'...') its backslash escapes too.

    Unescaped, later offsets move a little earlier, so positions still point inside the
    statement, near their spot.
    """
    body = sql[start:end]
    if start == 0 or sql[start - 1] != "'":
        return body  # dollar-quoted: taken as written
    escape_string = start >= 2 and sql[start - 2] in "eE"
    escape_string = escape_string and (start == 2 or not _word_char(sql[start - 3]))
    if not escape_string:
        return body.replace("''", "'")
    return _ESCAPE.sub(lambda m: _ESCAPES.get(m.group(1), m.group(1)) if m.group(1) else "'", body)


def _word_char(ch: str) -> bool:
    return ch.isalnum() or ch in "_$"


# The body split last, with its statements: lint_statement reads a DO block's body for its
# rules, then the boundary reads the same body. One entry only: it saves that second split of
# the statement at hand, and never keeps bodies linted before it.
_last_split: list[tuple[str, tuple[tuple[Statement, tuple[Token, ...]], ...]]] = []


def body_statements(text: str) -> list[tuple[Statement, list[Token]]]:
    """The statements of a PL/pgSQL or SQL body, each with its tokens: what
    `split_lexed(text, "postgres")` gives (fresh lists, which the caller may change)."""
    last = _last_split[0] if _last_split else None
    if last is not None and last[0] == text:
        pieces = last[1]
    else:
        pieces = tuple((s, tuple(toks)) for s, toks in split_lexed(text, "postgres"))
        _last_split[:] = [(text, pieces)]
    return [(s, list(toks)) for s, toks in pieces]


def do_body(toks: list[Token]) -> tuple[int, int] | None:
    """Where the body of `DO [LANGUAGE l] '...'` starts and ends, if the statement is one.

    The language may come first and be quoted (`DO LANGUAGE 'plpgsql' $$ ... $$`): that
    string names the language, and the body is the other one."""
    body = next(
        (
            t
            for i, t in enumerate(toks[1:], 1)
            if t.kind in ("dollar_string", "string") and word(toks[i - 1]) != "LANGUAGE"
        ),
        None,
    )
    return literal_span(body) if body is not None else None


def language(toks: list[Token]) -> str | None:
    """The LANGUAGE a DO block or CREATE FUNCTION names (lower-case), or None when it names none."""
    depth = 0
    for i, token in enumerate(toks[:-1]):
        depth += {"(": 1, ")": -1}.get(token.text, 0)
        if depth == 0 and word(token) == "LANGUAGE":
            following = toks[i + 1]
            if following.kind == "quoted_identifier":
                return following.text[1:-1].replace('""', '"')
            value = string_value(following)
            return (value if value is not None else following.text).lower()
    return None


def function_body(toks: list[Token]) -> tuple[int, int] | None:
    """Where the body of CREATE FUNCTION / PROCEDURE `... AS '...'` starts and ends.

    A C function's `AS 'library', 'symbol'` names files, not SQL; the caller decides by the
    language whether the body is SQL at all.
    """
    depth = 0
    for i, token in enumerate(toks[:-1]):
        depth += {"(": 1, ")": -1}.get(token.text, 0)
        if depth == 0 and word(token) == "AS":
            return literal_span(toks[i + 1])
    return None


def runs_dynamic_sql(toks: list[Token], index: int) -> bool:
    """Whether the EXECUTE at toks[index] runs a string of SQL (not `EXECUTE FUNCTION f()`)."""
    after = word(toks[index + 1]) if index + 1 < len(toks) else "FUNCTION"
    return after not in ("FUNCTION", "PROCEDURE", "ON")


def dynamic_template(toks: list[Token]) -> str | None:
    """The SQL an EXECUTE expression builds, run-time parts replaced by _dynN_ names.

    Handles a literal, `format('...', args)` and `'...' || expr || '...'`. None when no part of
    the SQL is written out in the source (`EXECUTE sql_text`).
    """
    expression: list[Token] = []
    depth = 0
    for token in toks:
        if depth == 0 and word(token) in ("INTO", "USING", "STRICT", "LOOP"):
            break  # the end of the expression; LOOP: FOR r IN EXECUTE '...' LOOP
        depth += {"(": 1, ")": -1}.get(token.text, 0)
        expression.append(token)
    # Split on top-level `||` (the lexer gives it as two `|` tokens).
    operands: list[list[Token]] = [[]]
    depth = 0
    for i, token in enumerate(expression):
        depth += {"(": 1, ")": -1}.get(token.text, 0)
        if token.text == "|" and depth == 0:
            prev = expression[i - 1] if i > 0 else None
            if prev is not None and prev.text == "|" and prev.end == token.start:
                operands.append([])
            continue
        operands[-1].append(token)
    names = (f"_dyn{n}_" for n in itertools.count(1))
    parts: list[str] = []
    literal = False
    for operand in operands:
        text = string_value(operand[0]) if len(operand) == 1 else None
        if text is None and len(operand) > 2 and word(operand[0]) == "FORMAT":
            fmt = string_value(operand[2]) if operand[1].text == "(" else None
            if fmt is not None:
                text = _FORMAT_SPEC.sub(lambda m: "%" if m.group(1) == "%" else next(names), fmt)
        if text is None:
            parts.append(f" {next(names)} ")
        else:
            parts.append(text)
            literal = True
    return "".join(parts) if literal else None
