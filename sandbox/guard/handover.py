"""sqlglot's tokens, made from the guard's own lexer for the plain statements it hands over.

The guard lexes every statement itself (sandbox/statements.py, one C regex a token) before it
decides to parse one. sqlglot's tokenizer then reads the same text again, a character at a time
in Python: a third of what a parse costs. For a statement made only of plain lexemes (words,
whole numbers and decimals, strings and quoted names without escapes, operators; no comments,
parameters or dollar quotes), the guard's tokens already say everything sqlglot's would, so
they are turned into sqlglot's `Token`s directly: the same types, texts and positions, taken
from the same tables the tokenizer uses (its keywords, single-character tokens and commands).

Anything else returns None and goes to sqlglot's own tokenizer. tests/test_handover.py checks,
token by token (type, text, line, column, offsets, comments), that both agree on every
statement of the corpus and on generated ones, so a change in sqlglot's tokenizer shows there.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sqlglot.tokenizer_core import Token as SqlglotToken
from sqlglot.tokenizer_core import TokenType
from sqlglot.tokens import Tokenizer

from sandbox.statements import Token

# Text of nothing but ASCII words, numbers, blanks, quotes and operator characters: its words
# are plain (no `$`, no letters sqlglot and the guard might split differently), and whatever
# follows a word is a blank, an operator character or a quote, which ends it for sqlglot too.
# No backslash (escapes), `$` (parameters, dollar quotes), backtick or CR.
_PLAIN_TEXT = re.compile(r"[A-Za-z0-9_ \t\n'\"(),.;=<>!|:~*+\-/%@#&^\[\]{}?]*\Z")
_PLAIN_NUMBER = re.compile(r"[0-9]+(?:\.[0-9]+)?\Z")
# Comments are attached to tokens by sqlglot (and kept in the tree): those statements, and any
# text that merely looks like one, go to its tokenizer.
_COMMENT = re.compile(r"--|/\*")
_VAR = TokenType.VAR
_PARAMETER = TokenType.PARAMETER


@dataclass(frozen=True)
class Vocabulary:
    """What a dialect's sqlglot tokenizer knows, read once."""

    keywords: dict[str, TokenType]
    single: dict[str, TokenType]
    commands: frozenset[TokenType]
    # Operators that are keywords (<=, ::, ->>, ~ ...), and the longest of them.
    operators: frozenset[str]
    longest_operator: int
    # Keywords of two words (ORDER BY, DOUBLE PRECISION), by their first word.
    pairs: dict[str, frozenset[str]]


def vocabulary(tokenizer: Tokenizer) -> Vocabulary:
    # The tables live on the tokenizer's core (sqlglot 30 compiles it with mypyc when it can).
    core: Any = getattr(tokenizer, "_core", tokenizer)
    keywords: dict[str, TokenType] = dict(core.keywords)
    single: dict[str, TokenType] = dict(core.single_tokens)
    operators = frozenset(k for k in keywords if k and not (k[0].isalnum() or k[0] == "_"))
    pairs: dict[str, set[str]] = {}
    for key in keywords:
        first, _, second = key.partition(" ")
        if second:
            pairs.setdefault(first, set()).add(second)
    return Vocabulary(
        keywords=keywords,
        single=single,
        commands=frozenset(core.commands),
        operators=operators,
        longest_operator=max((len(o) for o in operators), default=1),
        pairs={first: frozenset(seconds) for first, seconds in pairs.items()},
    )


def sqlglot_tokens(sql: str, toks: list[Token], words: Vocabulary) -> list[SqlglotToken] | None:
    """sqlglot's tokens for `sql`, whose guard tokens are `toks`, or None if it is not plain."""
    if not _PLAIN_TEXT.match(sql) or _COMMENT.search(sql):
        return None
    # Line and column as sqlglot counts them: of a token's last character, both from 1.
    line_starts = [0] + [m.end() for m in re.finditer("\n", sql)] if "\n" in sql else [0]
    keywords, pairs, operators = words.keywords, words.pairs, words.operators
    out: list[SqlglotToken] = []
    line = 1
    i, n = 0, len(toks)
    while i < n:
        kind, text, start, end = toks[i]  # `end` exclusive; sqlglot's is the last character
        if kind == "word":
            upper = text.upper()
            token_type: TokenType | None = None
            seconds = pairs.get(upper)
            if seconds is not None and i + 1 < n:
                following = toks[i + 1]
                gap = sql[end : following.start]
                second = following.text.upper()
                if following.kind == "word" and second in seconds and gap and gap.isspace():
                    if "\n" in gap:
                        return None  # sqlglot counts its column oddly across the break
                    text = upper = f"{upper} {second}"  # sqlglot spells it in capitals
                    token_type = keywords[upper]
                    end = following.end
                    i += 1
            if token_type is None:
                if out and out[-1].token_type == _PARAMETER:
                    token_type = _VAR
                else:
                    token_type = keywords.get(upper, _VAR)
                if token_type in words.commands:
                    return None  # sqlglot reads the rest of a command as one string
        elif kind == "number":
            after = sql[end : end + 1]
            if not _PLAIN_NUMBER.match(text) or (after and (after.isalnum() or after in "_.")):
                return None
            token_type = TokenType.NUMBER
        elif kind == "string":
            text = text[1:-1]
            if len(toks[i].text) < 2 or toks[i].text[-1] != "'" or "'" in text:
                return None  # unterminated, E'...' / X'...', or a doubled quote inside
            token_type = TokenType.STRING
        elif kind == "quoted_identifier":
            text = text[1:-1]
            if len(toks[i].text) < 2 or toks[i].text[0] != '"' or '"' in text:
                return None
            token_type = TokenType.IDENTIFIER
        elif kind == "punct":
            # The longest operator made of this character and the ones touching it.
            run = text
            j = i + 1
            while (
                j < n
                and len(run) < words.longest_operator
                and toks[j].kind == "punct"
                and toks[j].start == toks[j - 1].end
            ):
                run += toks[j].text
                j += 1
            while run and run not in operators:
                run = run[:-1]
            if run:  # an operator keyword (a one-character one, `~`, outranks its character)
                token_type, text = keywords[run], run
                end = toks[i + len(run) - 1].end
                i += len(run) - 1
            elif text in words.single and text not in "?[":
                token_type = words.single[text]
            else:
                return None
        else:
            return None  # parameters: sqlglot's tokenizer knows them best
        last = end - 1
        while line < len(line_starts) and line_starts[line] <= last:
            line += 1
        out.append(
            SqlglotToken(token_type, text, line, last - line_starts[line - 1] + 1, start, last)
        )
        i += 1
    return out
