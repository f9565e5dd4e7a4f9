"""Lint statements before they run: the guard's entry point.

A statement is first classified by its leading keywords (from the lexer, which never fails).
Wrappers that run their inner statement are unwrapped: EXPLAIN ANALYZE, PREPARE ... AS, and DO
blocks (each statement in the body). DROP / TRUNCATE / ALTER / PRAGMA / SET go to keyword rules;
DELETE / UPDATE / MERGE / WITH go to sqlglot and the predicate analysis. Nothing fails open: a
statement neither recognised as harmless nor understood gets an `unverified` warning.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import re
from pathlib import Path
from typing import cast

from sqlglot import exp

from sandbox.guard import bodies, boundary, ddl, dml, keyed, migration, parsing
from sandbox.guard.findings import RULES, Finding, PreviewPlan
from sandbox.guard.schema import Schema
from sandbox.statements import Dialect, Statement, Token, split_lexed, split_statements, tokens

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
        "LOAD", "IMPORT", "PREPARE", "REASSIGN", "CALL",
    }
)  # fmt: skip
# CALL runs a procedure whose body is not in the statement: like a function called from a
# SELECT, it is judged where the procedure is defined (CREATE PROCEDURE, DO), not here.
# Harmless statements that need no reading past their first word: wrappers (PREPARE ... AS,
# COPY (query)) run a statement of their own, and a SELECT or VALUES may call set_config().
_HARMLESS_AS_A_WHOLE = _HARMLESS - {"SELECT", "VALUES", "PREPARE", "COPY"}
# A SELECT without this word anywhere cannot be a SET in disguise (see ddl.set_config).
_SET_CONFIG = re.compile("set_config", re.I)
# The words by which a query can change or remove rows (an INSERT only adds them). A SELECT,
# VALUES or WITH without any of them reads only, whatever else sqlglot might fail to read in
# it (SEARCH / CYCLE clauses, PostGIS operators, PL/pgSQL's SELECT ... INTO).
_MODIFYING = frozenset({"DELETE", "UPDATE", "MERGE"})
# ... except where the word is a row lock (FOR UPDATE, FOR NO KEY UPDATE) or a foreign key's
# action (ON DELETE / ON UPDATE), neither of which changes a row.
_NOT_MODIFYING_AFTER = frozenset({"FOR", "KEY", "ON"})
# The commands each engine knows (PostgreSQL's SQL command list and SQLite's). A first word
# one letter away from one of them (SELECTT, DELET, UPDTE) is a misspelt command: the engine
# refuses the statement and nothing runs. A word farther from all of them stays unverified:
# it might be a command this list does not know yet.
_COMMANDS = frozenset(
    {
        "ABORT", "ALTER", "ANALYZE", "ANALYSE", "ATTACH", "BEGIN", "CALL", "CHECKPOINT",
        "CLOSE", "CLUSTER", "COMMENT", "COMMIT", "COPY", "CREATE", "DEALLOCATE", "DECLARE",
        "DELETE", "DETACH", "DISCARD", "DO", "DROP", "END", "EXECUTE", "EXPLAIN", "FETCH",
        "GRANT", "IMPORT", "INSERT", "LISTEN", "LOAD", "LOCK", "MERGE", "MOVE", "NOTIFY",
        "PRAGMA", "PREPARE", "REASSIGN", "REFRESH", "REINDEX", "RELEASE", "REPLACE", "RESET",
        "REVOKE", "ROLLBACK", "SAVEPOINT", "SECURITY", "SELECT", "SET", "SHOW", "START",
        "TABLE", "TRUNCATE", "UNLISTEN", "UPDATE", "VACUUM", "VALUES", "WITH",
    }
)  # fmt: skip
# Rules that say a DELETE / UPDATE has no real filter: a FOR PORTION OF clause is one.
_UNFILTERED_RULES = frozenset(
    {"delete-without-where", "update-without-where", "always-true-where", "where-not-restricting"}
)
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
# A first look in C before the token walk: no FOR PORTION OF clause without this word.
_PORTION = re.compile(r"\bPORTION\b", re.IGNORECASE)
# Stand-ins for the parts of dynamic SQL only known at run time; shown as <computed>.
_DYNAMIC = re.compile(r"_dyn\d+_")


def lint_script(
    text: str, dialect: Dialect, schema: Schema | None = None, sandbox_dir: Path | None = None
) -> list[Finding]:
    """Every finding for every statement of a script, in order."""
    findings: list[Finding] = []
    context = migration.Context()  # what the script did before each statement
    # Split and lexed in one pass: each statement's tokens come with it, not lexed again.
    for statement, toks in split_lexed(text, dialect):
        findings.extend(_lint_lexed(statement, toks, dialect, schema, sandbox_dir, context))
    if any(f.rule == "fk-without-index" for f in findings):
        indexed = context.indexed  # by the end of the script, later indexes included
        findings = [
            f
            for f in findings
            if f.rule != "fk-without-index" or not any(n in indexed for _, n in f.objects)
        ]
    return findings


def lint_statement(
    statement: Statement,
    dialect: Dialect,
    schema: Schema | None = None,
    sandbox_dir: Path | None = None,
    context: migration.Context | None = None,
) -> list[Finding]:
    """The findings for one statement. Never raises.

    `sandbox_dir` is the directory whose files are the sandbox's own (SQLite): ATTACH and
    VACUUM INTO may reach in there and nowhere else. `context` is what the script did before
    this statement (the migration rules read it, and it is moved past this statement).
    """
    toks = list(tokens(statement.text, dialect))
    return _lint_lexed(statement, toks, dialect, schema, sandbox_dir, context)


def _lint_lexed(
    statement: Statement,
    toks: list[Token],
    dialect: Dialect,
    schema: Schema | None,
    sandbox_dir: Path | None,
    context: migration.Context | None,
) -> list[Finding]:
    """`lint_statement`, given the statement's tokens (`tokens(statement.text, dialect)`)."""
    try:
        found = _lint(statement.text, statement, 0, dialect, schema, depth=0, toks=toks)
    except RecursionError:
        found = [_unverified(statement, 0, "it is nested too deeply to analyse")]
    found.extend(_null_comparisons(statement, toks))
    found.extend(_keyword_findings(migration.check(toks, dialect, context), statement, 0))
    for crossing in boundary.crossings(statement.text, dialect, sandbox_dir, toks):
        # Offsets into SQL rebuilt from a string can run past the source: keep them inside.
        offset = min(crossing.offset, max(len(statement.text) - 1, 0))
        found.append(_finding(statement, offset, crossing.rule, crossing.message, crossing.fix))
    return found


def _word(token: Token) -> str:
    return token.text.upper() if token.kind == "word" else ""


# Statements whose `x = NULL` is a comparison (elsewhere `=` may set a value: SET, PRAGMA,
# a function parameter's default).
_COMPARES = frozenset(
    {"SELECT", "WITH", "VALUES", "DELETE", "UPDATE", "MERGE", "INSERT", "EXPLAIN"}
)
# Where an UPDATE's (or an upsert's, or MERGE's) SET list of assignments ends.
_AFTER_SET = frozenset({"WHERE", "FROM", "RETURNING", "WHEN", "ON"})
# Cheap first look: the statement has NULL next to =, <> or != somewhere.
_NULL_NEXT_TO_EQUALS = re.compile(r"(?:=|<>)\s*NULL\b|\bNULL\s*(?:=|<>|!=)", re.I)


def _null_comparisons(statement: Statement, toks: list[Token]) -> list[Finding]:
    """Advice for `x = NULL` / `x <> NULL` / `x != NULL`: never true, so a WHERE built on it
    matches no row (the null-comparison scenario). Assignments (`SET x = NULL`) are left be."""
    if (
        not toks
        or _word(toks[0]) not in _COMPARES
        # A substring test first: the regex costs twenty times as much, and most statements
        # hold no NULL at all (its IGNORECASE matches only ASCII n, u and l: upper() keeps them).
        or "NULL" not in statement.text.upper()
        or not _NULL_NEXT_TO_EQUALS.search(statement.text)
    ):
        return []
    found: list[Finding] = []
    depth = 0
    setting: list[int] = []  # depths at which a SET list of assignments is open
    for i, token in enumerate(toks):
        text = token.text
        if text in "()" and token.kind == "punct":
            depth += 1 if text == "(" else -1
            while setting and setting[-1] > depth:
                setting.pop()
            continue
        word = _word(token)
        if word == "SET":
            setting.append(depth)
        elif word in _AFTER_SET and setting and setting[-1] == depth:
            setting.pop()
        operator = _comparison_at(toks, i)
        if operator is None:
            continue
        start, end, negated = operator
        if setting and setting[-1] == depth and not negated:
            continue  # SET x = NULL: an assignment
        after = toks[end] if end < len(toks) else None
        if after is not None and _word(after) == "NULL":
            what = _name_before(toks, start)
        elif start > 0 and _word(toks[start - 1]) == "NULL":
            what = _name_after(toks, end)
        else:
            continue
        shown = statement.text[token.start : toks[end - 1].end]
        missed = "has a value" if negated else "is NULL"
        test = "IS NOT NULL" if negated else "IS NULL"
        found.append(
            _finding(
                statement,
                token.start,
                "null-comparison",
                f"{what} {shown} NULL is never true: a comparison with NULL gives NULL "
                f"(unknown), so it matches no row, not even one where {what} {missed}",
                f"write {what} {test}",
            )
        )
    return found


def _name_before(toks: list[Token], end: int) -> str:
    """The (possibly qualified) column name that ends just before toks[end], or 'it'."""
    i = end - 1
    if i < 0 or toks[i].kind not in ("word", "quoted_identifier"):
        return "it"
    while i >= 2 and toks[i - 1].text == "." and toks[i - 2].kind in ("word", "quoted_identifier"):
        i -= 2
    return "".join(t.text for t in toks[i:end])


def _name_after(toks: list[Token], start: int) -> str:
    """The (possibly qualified) column name that starts at toks[start], or 'it'."""
    if start >= len(toks) or toks[start].kind not in ("word", "quoted_identifier"):
        return "it"
    _, end = ddl.name_at(toks, start)
    return "".join(t.text for t in toks[start:end])


def _comparison_at(toks: list[Token], i: int) -> tuple[int, int, bool] | None:
    """The =, <> or != operator starting at toks[i], as (start, end, negated); None if the
    token starts none (or starts >=, <=, :=, =>, which are not equality)."""
    token = toks[i]
    if token.kind != "punct":
        return None
    prev = toks[i - 1] if i > 0 else None
    nxt = toks[i + 1] if i + 1 < len(toks) else None
    touching_next = nxt is not None and nxt.kind == "punct" and nxt.start == token.end
    touching_prev = prev is not None and prev.kind == "punct" and prev.end == token.start
    if token.text == "=":
        if touching_prev and prev is not None and prev.text in "<>!:=":
            return None  # part of <=, >=, !=, := or ==
        if touching_next and nxt is not None and nxt.text in ">=":
            return None  # =>, ==
        return i, i + 1, False
    if touching_next and nxt is not None and (token.text, nxt.text) in (("<", ">"), ("!", "=")):
        after = toks[i + 2] if i + 2 < len(toks) else None
        if after is not None and after.kind == "punct" and after.start == nxt.end:
            return None  # <>= and the like: not an operator this knows
        return i, i + 2, True
    return None


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
        first in ("SELECT", "VALUES", "WITH")
        and not _SET_CONFIG.search(sql)
        and not _modifies(toks, sql)
    ):
        return []  # the rest of it cannot change that (the boundary is checked apart)
    if first and first not in _COMMANDS and _misspelt_command(first) is not None:
        return [_misspelt(statement, offset, first)]
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
    if first in _HARMLESS and not (first in ("SELECT", "VALUES") and _modifies(toks, sql)):
        return switched
    if keyed.is_filtered_write(toks, schema_known=schema is not None):
        return []  # no rule can fire on it: see sandbox/guard/keyed.py
    unfiltered = keyed.unfiltered_write(toks)
    if unfiltered is not None:
        # Only the preview's SQL needs the tree, and only if it is ever asked for.
        verb, shown = unfiltered
        rule, message, fix = dml.without_where(verb, shown)
        preview = PreviewPlan(verb, shown, functools.partial(_preview_of, sql, dialect))
        return [_finding(statement, offset, rule, message, fix, table=shown, preview=preview)]
    return switched + _lint_parsed(sql, toks, first, statement, offset, dialect, schema)


# A first look in C: a query whose text has none of these words cannot have them as tokens.
_MODIFYING_TEXT = re.compile(r"\b(?:DELETE|UPDATE|MERGE)\b", re.IGNORECASE)


def _modifies(toks: list[Token], sql: str | None = None) -> bool:
    """Whether a query has a word by which it could change rows (see _MODIFYING)."""
    if sql is not None and not _MODIFYING_TEXT.search(sql):
        return False
    before = ""
    for token in toks:
        word = _word(token)
        if word in _MODIFYING and before not in _NOT_MODIFYING_AFTER:
            return True
        before = word
    return False


def _misspelt_command(word: str) -> str | None:
    """The command `word` is one letter away from (dropped, added, changed or swapped)."""
    return next((command for command in _COMMANDS if _one_edit(word, command)), None)


def _one_edit(word: str, target: str) -> bool:
    if word == target or abs(len(word) - len(target)) > 1 or len(target) < 4:
        return False
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


def _misspelt(statement: Statement, offset: int, first: str) -> Finding:
    command = _misspelt_command(first) or "a command"
    return _finding(
        statement,
        offset,
        "misspelt-command",
        f"{first} is no SQL command (did you mean {command}?): the engine will refuse this "
        "statement, and nothing in it runs",
        f"spell the command: {command} ...",
    )


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
    for piece, piece_toks in bodies.body_statements(body):  # a DO block: PostgreSQL only
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
    # PostgreSQL 19's temporal DML (UPDATE t FOR PORTION OF valid_at FROM a TO b SET ...)
    # changes only the rows whose period overlaps [a, b): a filter on the target's own
    # column, as a WHERE is. sqlglot cannot read the clause: blanked out, the rest parses.
    portion = _portion_of(toks) if first in ("DELETE", "UPDATE") and _PORTION.search(sql) else None
    if portion is not None:
        sql = sql[: portion[0]] + " " * (portion[1] - portion[0]) + sql[portion[1] :]
        toks = list(tokens(sql, dialect))
    numbered = (
        [t for t in toks if t.kind == "parameter" and t.text[:1] == "?" and len(t.text) > 1]
        if dialect == "sqlite" and "?" in sql
        else []
    )
    for token in numbered:
        # SQLite's ?NNN parameters, which sqlglot cannot read: $NNN names the same value (so
        # ?1 = ?1 is still a value compared with itself), and keeps every offset.
        sql = sql[: token.start] + "$" + token.text[1:] + sql[token.end :]
    root = _parse(sql, dialect, None if numbered else toks)  # ?NNN became $NNN: not toks
    returning = _returning_at(toks) if root is None else None
    if returning is not None:
        # Which rows a statement changes never depends on what it returns: a RETURNING list
        # sqlglot cannot read (PostgreSQL 18's RETURNING WITH (OLD AS o, NEW AS n) ...) must
        # not hide the rest of the statement from the guard.
        root = _parse(sql[:returning], dialect)
    if root is None or not isinstance(root, _STATEMENT_NODES):
        if portion is not None and not any(_word(t) == "WHERE" for t in toks):
            return []  # its period is its filter, and there is nothing else to judge
        if first in ("DELETE", "UPDATE"):
            return _keyword_fallback(toks, first, statement, offset)
        why = (
            "sqlglot could not parse it"
            if root is None
            else f"{first or 'it'} is not a statement the guard knows"
        )
        return [_unverified(statement, offset, why)]
    found = dml.check(root, _SQLGLOT_DIALECT[dialect], schema)
    if portion is not None:
        found = [f for f in found if f.rule not in _UNFILTERED_RULES]
    return [
        _finding(statement, offset, f.rule, f.message, f.fix, table=f.table, preview=f.preview)
        for f in found
    ]


def _preview_of(sql: str, dialect: Dialect) -> tuple[str, str, str]:
    """The preview SQL of a write linted without its tree (see keyed.unfiltered_write)."""
    root = _parse(sql, dialect)
    found = dml.check(root, _SQLGLOT_DIALECT[dialect], None) if root is not None else []
    plan = found[0].preview if found else None
    if plan is None:
        raise ValueError(f"no preview for {sql!r}")  # unfiltered_write and dml disagree
    return plan.build()


def _parse(sql: str, dialect: Dialect, toks: list[Token] | None = None) -> exp.Expression | None:
    try:
        return cast(exp.Expression, parsing.parse_one(sql, _SQLGLOT_DIALECT[dialect], toks))
    except Exception:  # sqlglot raises many kinds; any of them means "not understood"
        return None


def _top_level(toks: list[Token]) -> list[tuple[int, str]]:
    """(index, upper-cased word) of every word outside parentheses."""
    found: list[tuple[int, str]] = []
    depth = 0
    for index, token in enumerate(toks):
        depth += {"(": 1, ")": -1}.get(token.text, 0)
        if depth == 0 and token.kind == "word":
            found.append((index, token.text.upper()))
    return found


def _returning_at(toks: list[Token]) -> int | None:
    """Where a top-level RETURNING clause starts, if the statement has one."""
    return next((toks[i].start for i, word in _top_level(toks) if word == "RETURNING"), None)


def _portion_of(toks: list[Token]) -> tuple[int, int] | None:
    """The span of a top-level `FOR PORTION OF period ...` clause: up to the SET, WHERE,
    USING, RETURNING or alias (AS) that follows it, or the end."""
    words = _top_level(toks)
    for n, (index, word) in enumerate(words):
        if word == "FOR" and [w for _, w in words[n + 1 : n + 3]] == ["PORTION", "OF"]:
            end = next(
                (
                    toks[i].start
                    for i, w in words[n + 3 :]
                    if w in ("SET", "WHERE", "USING", "RETURNING", "AS")
                ),
                toks[-1].end,
            )
            return toks[index].start, end
    return None


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
    # Said as the parsed statement's finding is, so the wording never tells the two apart.
    rule, message, fix = dml.without_where(verb, table or "its table")
    return [_finding(statement, offset, rule, message, fix, table=table)]


def _near_where(word: str) -> bool:
    """A misspelt WHERE (WHER, WERE, WHRE, WEHRE): one letter dropped, added, changed or swapped.

    Only asked of statements sqlglot could not parse: a DELETE whose WHERE is misspelt has a
    filter in mind, so "without WHERE" would be the wrong thing to tell its author.
    """
    return _one_edit(word, "WHERE")


def _ends_after_cursor(words: list[str], index: int) -> bool:
    """Nothing but an optional RETURNING list follows `WHERE CURRENT OF name`."""
    return index >= len(words) or words[index] == "RETURNING"
