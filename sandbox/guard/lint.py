"""Lint statements before they run: the guard's entry point.

A statement is first classified by its leading keywords (from the lexer, which never fails).
Wrappers that run their inner statement are unwrapped: EXPLAIN ANALYZE, PREPARE ... AS, and DO
blocks (each statement in the body). DROP / TRUNCATE / ALTER / PRAGMA / SET go to keyword rules;
DELETE / UPDATE / MERGE / WITH go to sqlglot and the predicate analysis. Nothing fails open: a
statement neither recognised as harmless nor understood gets an `unverified` warning.
"""

from __future__ import annotations

import dataclasses
import logging
import re
from pathlib import Path
from typing import cast

from sqlglot import exp

from sandbox.guard import bodies, boundary, ddl, dml, keyed, parsing
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
        "LOAD", "IMPORT", "PREPARE", "REASSIGN",
    }
)  # fmt: skip
# Harmless statements that need no reading past their first word: wrappers (PREPARE ... AS,
# COPY (query)) run a statement of their own, and a SELECT or VALUES may call set_config().
_HARMLESS_AS_A_WHOLE = _HARMLESS - {"SELECT", "VALUES", "PREPARE", "COPY"}
# A SELECT without this word anywhere cannot be a SET in disguise (see ddl.set_config).
_SET_CONFIG = re.compile("set_config", re.I)
# What a parsed statement must be for the guard to vouch for it; anything else (a raw Command,
# or a misparse such as an unknown word read as a column alias) is unverified.
_STATEMENT_NODES = (exp.Query, exp.DML, exp.DDL, exp.Transaction, exp.Commit, exp.Rollback)
# Statements inside a PL/pgSQL body that the guard lints like top-level ones.
_BODY_STARTS = frozenset(
    {
        "DELETE", "UPDATE", "MERGE", "DROP", "TRUNCATE", "ALTER", "WITH", "INSERT", "SET",
        "CALL", "COPY", "EXPLAIN",
    }
)  # fmt: skip
# SQLite's `UPDATE OR IGNORE t ...`: the conflict clause, which sqlglot cannot read.
_CONFLICT_ACTIONS = frozenset({"ROLLBACK", "ABORT", "REPLACE", "FAIL", "IGNORE"})
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
# Stand-ins for the parts of dynamic SQL only known at run time; shown as <computed>.
_DYNAMIC = re.compile(r"_dyn\d+_")


def lint_script(
    text: str, dialect: Dialect, schema: Schema | None = None, sandbox_dir: Path | None = None
) -> list[Finding]:
    """Every finding for every statement of a script, in order."""
    findings: list[Finding] = []
    for statement in split_statements(text, dialect):
        findings.extend(lint_statement(statement, dialect, schema, sandbox_dir))
    return findings


def lint_statement(
    statement: Statement,
    dialect: Dialect,
    schema: Schema | None = None,
    sandbox_dir: Path | None = None,
) -> list[Finding]:
    """The findings for one statement. Never raises.

    `sandbox_dir` is the directory whose files are the sandbox's own (SQLite): ATTACH and
    VACUUM INTO may reach in there and nowhere else.
    """
    toks = list(tokens(statement.text, dialect))
    try:
        found = _lint(statement.text, statement, 0, dialect, schema, depth=0, toks=toks)
    except RecursionError:
        found = [_unverified(statement, 0, "it is nested too deeply to analyse")]
    for crossing in boundary.crossings(statement.text, dialect, sandbox_dir, toks):
        # Offsets into SQL rebuilt from a string can run past the source: keep them inside.
        offset = min(crossing.offset, max(len(statement.text) - 1, 0))
        found.append(_finding(statement, offset, crossing.rule, crossing.message, crossing.fix))
    return found


def _word(token: Token) -> str:
    return token.text.upper() if token.kind == "word" else ""


def _position(statement: Statement, offset: int) -> tuple[int, int]:
    # Line breaks as the splitter counts them: \r\n, \n, and a lone \r too.
    breaks = list(_LINE_BREAK.finditer(statement.text, 0, offset))
    if not breaks:
        return statement.line, statement.column + offset
    return statement.line + len(breaks), offset - breaks[-1].end() + 1


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
    sql: str,
    statement: Statement,
    offset: int,
    dialect: Dialect,
    schema: Schema | None,
    depth: int,
    toks: list[Token] | None = None,
) -> list[Finding]:
    toks = list(tokens(sql, dialect)) if toks is None else toks
    if not toks:
        return []
    first = _word(toks[0])
    if first in _HARMLESS_AS_A_WHOLE or (
        first in ("SELECT", "VALUES") and not _SET_CONFIG.search(sql)
    ):
        return []  # the rest of it cannot change that (the boundary is checked apart)
    inner = _wrapped(toks, first, dialect)
    if inner is not None:
        start, end = inner
        if start >= len(sql):
            return []
        return _lint_inner(sql, start, end, statement, offset, dialect, schema, depth, first)
    if first == "EXPLAIN":
        return []  # plain EXPLAIN plans the statement without running it
    if first in _KEYWORD_RULES:
        return _keyword_findings(ddl.check(toks), statement, offset)
    # `SELECT set_config('session_replication_role', 'replica', ...)` is a SET in disguise.
    switched = (
        _keyword_findings(ddl.set_config(toks), statement, offset)
        if first in ("SELECT", "WITH", "VALUES")
        else []
    )
    if first in _HARMLESS:
        return switched
    if keyed.is_keyed_write(toks):
        return []  # no rule can fire on it: see sandbox/guard/keyed.py
    return switched + _lint_parsed(sql, toks, first, statement, offset, dialect, schema)


def _keyword_findings(
    found: list[ddl.KeywordFinding], statement: Statement, offset: int
) -> list[Finding]:
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
        for k in found
    ]


def _wrapped(toks: list[Token], first: str, dialect: Dialect) -> tuple[int, int] | None:
    """Where the statement inside a running wrapper starts and ends, if this is one."""
    if first not in ("EXPLAIN", "PREPARE", "COPY", "DO"):
        return None  # not a wrapper: no need to read its words
    words = [_word(t) for t in toks]
    if first == "EXPLAIN":
        i = 1
        if i < len(toks) and toks[i].text == "(":
            depth, analyze = 0, False
            while i < len(toks):
                depth += {"(": 1, ")": -1}.get(toks[i].text, 0)
                if words[i] in ("ANALYZE", "ANALYSE"):
                    # The option list may be cut short (`EXPLAIN (ANALYZE` at the end of text).
                    nxt = toks[i + 1].text.upper() if i + 1 < len(toks) else ""
                    analyze = nxt not in ("FALSE", "OFF", "0")
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
    if first == "COPY" and len(toks) > 2 and toks[1].text == "(":
        # COPY (query) TO ...: PostgreSQL runs the query, which may be a DELETE ... RETURNING.
        depth = 0
        for token in toks[1:]:
            depth += {"(": 1, ")": -1}.get(token.text, 0)
            if depth == 0:
                return toks[2].start, token.start
        return toks[2].start, toks[-1].end
    if first == "DO" and dialect == "postgres":
        return bodies.do_body(toks)
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
    if wrapper != "DO":
        return _lint(sql[start:end], statement, offset + start, dialect, schema, depth + 1)
    body = bodies.body_text(sql, start, end)
    findings: list[Finding] = []
    for piece in split_statements(body, dialect):
        piece_toks = list(tokens(piece.text, dialect))
        for index, token in enumerate(piece_toks):
            word = _word(token)
            at = offset + start + piece.start + token.start
            if word == "EXECUTE" and bodies.runs_dynamic_sql(piece_toks, index):
                findings.extend(
                    _lint_dynamic(piece_toks[index + 1 :], statement, at, dialect, schema, depth)
                )
                break
            if index > 0 and _word(piece_toks[index - 1]) not in bodies.STATEMENT_OPENERS:
                continue  # not where a statement starts
            rest = piece.text[token.start :]
            if word in _BODY_STARTS:
                findings.extend(_lint(rest, statement, at, dialect, schema, depth + 1))
                break
            if word in ("SELECT", "PERFORM"):
                findings.extend(
                    _keyword_findings(ddl.set_config(piece_toks[index:]), statement, at)
                )
                break
    return findings


def _lint_dynamic(
    toks: list[Token],
    statement: Statement,
    at: int,
    dialect: Dialect,
    schema: Schema | None,
    depth: int,
) -> list[Finding]:
    """EXECUTE in a DO block: lint the SQL it builds, with run-time parts as stand-ins."""
    template = bodies.dynamic_template(toks)
    line, column = _position(statement, at)
    if template is None:
        return [
            dataclasses.replace(
                _unverified(statement, at, "it runs SQL that is only known at run time"),
                line=line,
                column=column,
            )
        ]
    # Offsets inside the template do not exist in the source: every finding points at EXECUTE.
    findings: list[Finding] = []
    for piece in split_statements(template, dialect):
        for finding in _lint(piece.text, statement, at, dialect, schema, depth + 1):
            findings.append(
                dataclasses.replace(
                    finding,
                    message="dynamic SQL (EXECUTE): " + _DYNAMIC.sub("<computed>", finding.message),
                    fix=_DYNAMIC.sub("<computed>", finding.fix),
                    table=_DYNAMIC.sub("<computed>", finding.table) if finding.table else None,
                    # Stand-ins are no real tables: nothing to preview or count them by.
                    objects=tuple((k, n) for k, n in finding.objects if not _DYNAMIC.search(n)),
                    preview=None,
                    line=line,
                    column=column,
                )
            )
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
    words = [_word(t) for t in toks[:3]]
    if words[:2] == ["UPDATE", "OR"] and words[2:] and words[2] in _CONFLICT_ACTIONS:
        # Blank out SQLite's conflict clause (same length, so offsets hold): it does not change
        # which rows the UPDATE touches, only what happens when one breaks a constraint.
        sql = sql[: toks[1].start] + " " * (toks[2].end - toks[1].start) + sql[toks[2].end :]
        toks = list(tokens(sql, dialect))
    numbered = [t for t in toks if t.kind == "parameter" and t.text[:1] == "?" and len(t.text) > 1]
    for token in numbered:
        # SQLite's ?NNN parameters, which sqlglot cannot read: $NNN names the same value (so
        # ?1 = ?1 is still a value compared with itself), and keeps every offset.
        sql = sql[: token.start] + "$" + token.text[1:] + sql[token.end :]
    try:
        root = parsing.parse_one(sql, _SQLGLOT_DIALECT[dialect])
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
    words = [_word(t) for t in toks]
    for index, token in enumerate(toks):
        depth += {"(": 1, ")": -1}.get(token.text, 0)
        if depth == 0 and words[index] == "WHERE":
            if words[index + 1 : index + 3] == ["CURRENT", "OF"] and _ends_after_cursor(
                words, index + 4
            ):
                return []  # WHERE CURRENT OF cursor: the one row the cursor is on
            return [_unverified(statement, offset, "sqlglot could not parse its WHERE")]
    typo = next((t.text for t in toks if _near_where(_word(t))), None)
    if typo is not None:
        return [_unverified(statement, offset, f"sqlglot could not parse it: is {typo} a WHERE?")]
    verb = first.lower()
    # The table: after DELETE FROM / UPDATE, past ONLY and SQLite's OR IGNORE.
    i = 1
    if verb == "delete" and words[1:2] == ["FROM"]:
        i = 2
    elif verb == "update" and words[1:2] == ["OR"]:
        i = 3
    if words[i : i + 1] == ["ONLY"]:
        i += 1
    table = ddl.name_at(toks, i)[0] or None
    shown = table or "its table"
    what = "delete every row in" if verb == "delete" else "overwrite every row of"
    return [
        _finding(
            statement,
            offset,
            f"{verb}-without-where",
            f"{first} without WHERE: it would {what} {shown}",
            "add a WHERE naming the rows, e.g. WHERE id = ...; run it after BEGIN so you can "
            "ROLLBACK",
            table=table,
        )
    ]


def _near_where(word: str) -> bool:
    """A misspelt WHERE (WHER, WERE, WHRE, WEHRE): one letter dropped, added, changed or swapped.

    Only asked of statements sqlglot could not parse: a DELETE whose WHERE is misspelt has a
    filter in mind, so "without WHERE" would be the wrong thing to tell its author.
    """
    if word == "WHERE" or not 4 <= len(word) <= 6:
        return False
    target = "WHERE"
    if len(word) == len(target):
        diffs = [i for i in range(len(word)) if word[i] != target[i]]
        swapped = (
            len(diffs) == 2
            and diffs[1] == diffs[0] + 1
            and word[diffs[0]] == target[diffs[1]]
            and word[diffs[1]] == target[diffs[0]]
        )
        return len(diffs) == 1 or swapped
    longer, shorter = (word, target) if len(word) > len(target) else (target, word)
    return any(longer[:i] + longer[i + 1 :] == shorter for i in range(len(longer)))


def _ends_after_cursor(words: list[str], index: int) -> bool:
    """Nothing but an optional RETURNING list follows `WHERE CURRENT OF name`."""
    return index >= len(words) or words[index] == "RETURNING"
