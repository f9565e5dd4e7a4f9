"""Lint statements before they run: the guard's entry point.

A statement is first classified by its leading keywords (from the lexer, which never fails).
Wrappers that run their inner statement are unwrapped: EXPLAIN ANALYZE, PREPARE ... AS, and DO
blocks (each statement in the body). DROP / TRUNCATE / ALTER / PRAGMA / SET go to keyword rules;
DELETE / UPDATE / MERGE / WITH go to sqlglot and the predicate analysis. Nothing fails open: a
statement neither recognised as harmless nor understood gets an `unverified` warning.
"""

from __future__ import annotations

import logging
from typing import cast

import sqlglot
from sqlglot import exp

from sandbox.guard import ddl, dml
from sandbox.guard.findings import RULES, Finding, PreviewPlan
from sandbox.guard.schema import Schema
from sandbox.statements import Dialect, Statement, Token, split_statements, tokens

# sqlglot logs a warning for every statement it falls back to a raw Command on; the guard
# reports those itself, as findings, so the log line would only be noise on the learner's screen.
logging.getLogger("sqlglot").setLevel(logging.ERROR)

_SQLGLOT_DIALECT = {"sqlite": "sqlite", "postgres": "postgres"}
_KEYWORD_RULES = frozenset({"DROP", "TRUNCATE", "ALTER", "PRAGMA", "SET"})
_PARSED = frozenset({"DELETE", "UPDATE", "MERGE", "WITH"})
# Statements that cannot destroy or overwrite data by their nature: never parsed, never flagged.
_HARMLESS = frozenset(
    {
        "SELECT", "VALUES", "TABLE", "SHOW", "BEGIN", "START", "COMMIT", "END", "ROLLBACK",
        "ABORT", "SAVEPOINT", "RELEASE", "RESET", "VACUUM", "ANALYZE", "ANALYSE", "REINDEX",
        "CHECKPOINT", "LISTEN", "NOTIFY", "UNLISTEN", "DISCARD", "DEALLOCATE", "FETCH", "MOVE",
        "CLOSE", "DECLARE", "COMMENT", "GRANT", "REVOKE", "LOCK", "COPY", "CREATE", "INSERT",
        "REPLACE", "UPSERT", "ATTACH", "DETACH", "EXECUTE", "CLUSTER", "REFRESH", "SECURITY",
        "LOAD", "IMPORT", "PREPARE",
    }
)  # fmt: skip
# What a parsed statement must be for the guard to vouch for it; anything else (a raw Command,
# or a misparse such as an unknown word read as a column alias) is unverified.
_STATEMENT_NODES = (exp.Query, exp.DML, exp.DDL, exp.Transaction, exp.Commit, exp.Rollback)
# Where a statement starts inside a PL/pgSQL body.
_BODY_STARTS = frozenset(
    {"DELETE", "UPDATE", "MERGE", "DROP", "TRUNCATE", "ALTER", "WITH", "INSERT", "SET"}
)


def lint_script(text: str, dialect: Dialect, schema: Schema | None = None) -> list[Finding]:
    """Every finding for every statement of a script, in order."""
    findings: list[Finding] = []
    for statement in split_statements(text, dialect):
        findings.extend(lint_statement(statement, dialect, schema))
    return findings


def lint_statement(
    statement: Statement, dialect: Dialect, schema: Schema | None = None
) -> list[Finding]:
    """The findings for one statement. Never raises."""
    try:
        return _lint(statement.text, statement, 0, dialect, schema, depth=0)
    except RecursionError:
        return [_unverified(statement, 0, "it is nested too deeply to analyse")]


def _word(token: Token) -> str:
    return token.text.upper() if token.kind == "word" else ""


def _position(statement: Statement, offset: int) -> tuple[int, int]:
    before = statement.text[:offset]
    newlines = before.count("\n")
    if newlines == 0:
        return statement.line, statement.column + offset
    return statement.line + newlines, offset - before.rfind("\n")


def _finding(
    statement: Statement,
    offset: int,
    rule: str,
    message: str,
    fix: str,
    *,
    table: str | None = None,
    preview: PreviewPlan | None = None,
    objects: tuple[tuple[str, str], ...] = (),
    cascade: bool = False,
) -> Finding:
    line, column = _position(statement, offset)
    return Finding(
        rule=rule,
        severity=RULES[rule].severity,
        message=message,
        fix=fix,
        statement=statement.text,
        line=line,
        column=column,
        table=table,
        preview=preview,
        objects=objects,
        cascade=cascade,
    )


def _unverified(statement: Statement, offset: int, why: str) -> Finding:
    return _finding(
        statement,
        offset,
        "unverified",
        f"could not verify this statement ({why}); it may change or destroy data",
        "check it by hand, or split it into plain statements the guard can read",
    )


def _lint(
    sql: str, statement: Statement, offset: int, dialect: Dialect, schema: Schema | None, depth: int
) -> list[Finding]:
    toks = list(tokens(sql, dialect))
    if not toks:
        return []
    first = _word(toks[0])
    inner = _wrapped(toks, first, dialect)
    if inner is not None:
        start, end = inner
        if start >= len(sql):
            return []
        return _lint_inner(sql, start, end, statement, offset, dialect, schema, depth, first)
    if first == "EXPLAIN":
        return []  # plain EXPLAIN plans the statement without running it
    if first in _KEYWORD_RULES:
        return [
            _finding(
                statement,
                offset,
                k.rule,
                k.message,
                k.fix,
                table=k.table,
                objects=k.objects,
                cascade=k.cascade,
            )
            for k in ddl.check(sql, dialect)
        ]
    if first in _HARMLESS:
        return []
    return _lint_parsed(sql, toks, first, statement, offset, dialect, schema)


def _wrapped(toks: list[Token], first: str, dialect: Dialect) -> tuple[int, int] | None:
    """Where the statement inside a running wrapper starts and ends, if this is one."""
    words = [_word(t) for t in toks]
    if first == "EXPLAIN":
        i = 1
        if i < len(toks) and toks[i].text == "(":
            depth, analyze = 0, False
            while i < len(toks):
                depth += {"(": 1, ")": -1}.get(toks[i].text, 0)
                if words[i] in ("ANALYZE", "ANALYSE"):
                    nxt = words[i + 1] if i + 1 < len(words) else ""
                    analyze = nxt not in ("FALSE", "OFF") and toks[i + 1].text != "0"
                i += 1
                if depth == 0:
                    break
            return (toks[i].start, toks[-1].end) if analyze and i < len(toks) else None
        if words[1:2] in (["ANALYZE"], ["ANALYSE"]):
            i = 2
            while i < len(toks) and words[i] in ("VERBOSE",):
                i += 1
            return (toks[i].start, toks[-1].end) if i < len(toks) else None
        return None
    if first == "PREPARE" and "AS" in words:
        i = words.index("AS") + 1
        if words[1:2] == ["TRANSACTION"]:
            return None
        return (toks[i].start, toks[-1].end) if i < len(toks) else None
    if first == "DO" and dialect == "postgres":
        body = next((t for t in toks[1:] if t.kind in ("dollar_string", "string")), None)
        if body is None:
            return None
        if body.kind == "dollar_string":
            tag_end = body.text.index("$", 1) + 1
            return body.start + tag_end, body.end - tag_end
        return body.start + 1, body.end - 1
    return None


def _lint_inner(
    sql: str,
    start: int,
    end: int,
    statement: Statement,
    offset: int,
    dialect: Dialect,
    schema: Schema | None,
    depth: int,
    wrapper: str,
) -> list[Finding]:
    body = sql[start:end]
    if wrapper != "DO":
        return _lint(body, statement, offset + start, dialect, schema, depth + 1)
    findings: list[Finding] = []
    for piece in split_statements(body, dialect):
        piece_toks = list(tokens(piece.text, dialect))
        for index, token in enumerate(piece_toks):
            word = _word(token)
            if word == "EXECUTE" and index + 1 < len(piece_toks):
                literal = piece_toks[index + 1]
                if literal.kind == "string":
                    dynamic = literal.text[1:-1].replace("''", "'")
                    at = offset + start + piece.start + literal.start + 1
                    findings.extend(_lint(dynamic, statement, at, dialect, schema, depth + 1))
                break
            if word in _BODY_STARTS:
                at = piece.start + token.start
                findings.extend(
                    _lint(
                        body[at : piece.end],
                        statement,
                        offset + start + at,
                        dialect,
                        schema,
                        depth + 1,
                    )
                )
                break
    return findings


def _lint_parsed(
    sql: str,
    toks: list[Token],
    first: str,
    statement: Statement,
    offset: int,
    dialect: Dialect,
    schema: Schema | None,
) -> list[Finding]:
    try:
        root = sqlglot.parse_one(sql, read=_SQLGLOT_DIALECT[dialect])
    except Exception:  # sqlglot raises many kinds; any of them means "not understood"
        root = None
    if root is None or not isinstance(root, _STATEMENT_NODES):
        if first in ("DELETE", "UPDATE"):
            return _keyword_fallback(toks, first, statement, offset)
        why = (
            "sqlglot could not parse it"
            if root is None
            else f"{first or 'it'} is not a statement the guard knows"
        )
        return [_unverified(statement, offset, why)]
    return [
        _finding(statement, offset, f.rule, f.message, f.fix, table=f.table, preview=f.preview)
        for f in dml.check(cast(exp.Expression, root), _SQLGLOT_DIALECT[dialect], schema)
    ]


def _keyword_fallback(
    toks: list[Token], first: str, statement: Statement, offset: int
) -> list[Finding]:
    """DELETE / UPDATE that sqlglot cannot parse: a missing top-level WHERE is still visible."""
    depth = 0
    for token in toks:
        depth += {"(": 1, ")": -1}.get(token.text, 0)
        if depth == 0 and _word(token) == "WHERE":
            return [_unverified(statement, offset, "sqlglot could not parse its WHERE")]
    verb = first.lower()
    what = "delete every row" if verb == "delete" else "overwrite every row"
    return [
        _finding(
            statement,
            offset,
            f"{verb}-without-where",
            f"{first} without WHERE: it would {what} of its table",
            "add a WHERE naming the rows, e.g. WHERE id = ...; run it after BEGIN so you can "
            "ROLLBACK",
        )
    ]
