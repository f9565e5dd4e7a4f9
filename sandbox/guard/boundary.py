"""Statements that reach outside the sandbox: wherever the sandbox runs SQL, they never run.

A sandbox owns one scratch database (SQLite: one file in a directory of its own) and nothing
else. Everything else on the server or the machine belongs to someone: other databases, the
roles every database shares, the server's configuration, files and processes, other servers.
A statement that touches any of those is blocked outright, even with --yes, an acknowledgement
comment, a yes in the app, or in a scenario's scripted steps.

Statements are read from their tokens (the lexer never fails and never sees strings or
comments as code). A function call, which may sit anywhere in an expression, is confirmed by
sqlglot's tree where the statement parses (so a table named like a function is no call), and
by the tokens around it where it does not. SQL that runs from inside a statement is read as
well: DO blocks, function bodies, the literal parts of EXECUTE strings, and the query strings
of functions that run them (query_to_xml). A name inside a string that nothing runs is text.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from sandbox.guard import bodies
from sandbox.guard.bodies import word
from sandbox.guard.ddl import name_at
from sandbox.statements import Dialect, Token, split_statements, tokens

# Why each family is outside the sandbox, and what to do instead: the finding's message ends
# with the first, its fix is the second.
FAMILIES: dict[str, tuple[str, str]] = {
    "other-database": (
        "the sandbox owns only the scratch database it made; every other database on the "
        "server belongs to someone else, and database-wide settings outlive the sandbox",
        "practise on tables inside the sandbox; database-level changes cannot be tried here",
    ),
    "server-role": (
        "roles belong to the whole server: every database on it shares them",
        "roles cannot be tried in the sandbox; GRANT and REVOKE on its own tables can",
    ),
    "system-catalog": (
        "it writes PostgreSQL's system catalogs directly, past every check (the shared ones "
        "hold every database's roles, passwords and settings)",
        "change the schema with CREATE, ALTER and DROP, never by writing the catalogs",
    ),
    "outside-file": (
        "it reads or writes a file outside the sandbox, on the machine the database runs on",
        "load data with INSERT (PostgreSQL: COPY ... FROM STDIN / TO STDOUT); SQLite: ATTACH "
        "':memory:' for a scratch database",
    ),
    "server-config": (
        "it changes the whole server, for every database on it",
        "server settings cannot be tried in the sandbox; SET changes one for your session only",
    ),
    "other-session": (
        "the server process it signals may be anyone's, not one of the sandbox's sessions",
        "cancel your own statement with F8 in the app, or let --statement-timeout end it",
    ),
    "remote-server": (
        "it connects from the server to another database or server",
        "copy the data you need into the sandbox's own tables",
    ),
    "server-code": (
        "it runs code with the server's own rights: a native library, a shell command, or a "
        "language PostgreSQL does not trust",
        "write functions in SQL or PL/pgSQL; extensions PostgreSQL marks trusted (pgcrypto, "
        "citext, hstore, pg_trgm, uuid-ossp, ...) are allowed",
    ),
    "too-deep-to-check": (
        "SQL nested this deep (DO blocks running EXECUTE strings running DO blocks ...) cannot "
        "be checked for statements that reach outside the sandbox",
        "run the inner statements directly",
    ),
}

# The extensions PostgreSQL marks trusted (`trusted = true` in their control files): it lets a
# non-superuser create them because they cannot reach past the database they are created in.
TRUSTED_EXTENSIONS = frozenset(
    {
        "btree_gin", "btree_gist", "citext", "cube", "dict_int", "fuzzystrmatch", "hstore",
        "intarray", "isn", "lo", "ltree", "pg_trgm", "pgcrypto", "plperl", "plpgsql", "pltcl",
        "seg", "tablefunc", "tcn", "tsm_system_rows", "tsm_system_time", "unaccent", "uuid-ossp",
    }
)  # fmt: skip
_EXTENSION_FAMILY = {
    "dblink": "remote-server",
    "postgres_fdw": "remote-server",
    "file_fdw": "outside-file",
    "adminpack": "outside-file",
}
# Languages PostgreSQL trusts: their functions cannot touch the server's files or processes.
TRUSTED_LANGUAGES = frozenset({"sql", "plpgsql", "plperl", "pltcl"})
# Languages whose bodies are SQL the boundary can read.
_SQL_BODIES = frozenset({"sql", "plpgsql"})

# PostgreSQL's system catalogs (tables of pg_catalog; the shared ones are every database's).
CATALOG_TABLES = frozenset(
    {
        "pg_aggregate", "pg_am", "pg_amop", "pg_amproc", "pg_attrdef", "pg_attribute",
        "pg_auth_members", "pg_authid", "pg_cast", "pg_class", "pg_collation", "pg_constraint",
        "pg_conversion", "pg_database", "pg_db_role_setting", "pg_default_acl", "pg_depend",
        "pg_description", "pg_enum", "pg_event_trigger", "pg_extension",
        "pg_foreign_data_wrapper", "pg_foreign_server", "pg_foreign_table", "pg_index",
        "pg_inherits", "pg_init_privs", "pg_language", "pg_largeobject",
        "pg_largeobject_metadata", "pg_namespace", "pg_opclass", "pg_operator", "pg_opfamily",
        "pg_parameter_acl", "pg_partitioned_table", "pg_policy", "pg_proc", "pg_publication",
        "pg_publication_namespace", "pg_publication_rel", "pg_range", "pg_replication_origin",
        "pg_rewrite", "pg_seclabel", "pg_sequence", "pg_shdepend", "pg_shdescription",
        "pg_shseclabel", "pg_statistic", "pg_statistic_ext", "pg_statistic_ext_data",
        "pg_subscription", "pg_subscription_rel", "pg_tablespace", "pg_transform", "pg_trigger",
        "pg_ts_config", "pg_ts_config_map", "pg_ts_dict", "pg_ts_parser", "pg_ts_template",
        "pg_type", "pg_user_mapping",
        # older releases' names for some of these
        "pg_pltemplate", "pg_shadow", "pg_group",
    }
)  # fmt: skip
# An updatable view whose writes are SET for the session only: inside the sandbox.
_SESSION_VIEWS = frozenset({"pg_settings"})

# Functions that reach outside, by family; PostgreSQL's unless marked SQLite.
_FUNCTIONS: dict[str, str] = {
    **dict.fromkeys(
        (
            "pg_read_file", "pg_read_binary_file", "pg_ls_dir", "pg_stat_file", "pg_ls_logdir",
            "pg_ls_waldir", "pg_ls_tmpdir", "pg_ls_archive_statusdir", "pg_ls_logicalsnapdir",
            "pg_ls_logicalmapdir", "pg_ls_replslotdir", "lo_import", "lo_export",
            # adminpack
            "pg_file_write", "pg_file_read", "pg_file_rename", "pg_file_unlink", "pg_file_sync",
            "pg_file_length", "pg_logdir_ls",
        ),
        "outside-file",
    ),
    **dict.fromkeys(
        (
            "pg_reload_conf", "pg_rotate_logfile", "pg_switch_wal", "pg_switch_xlog",
            "pg_promote", "pg_create_restore_point", "pg_backup_start", "pg_backup_stop",
            "pg_start_backup", "pg_stop_backup", "pg_wal_replay_pause", "pg_wal_replay_resume",
            "pg_xlog_replay_pause", "pg_xlog_replay_resume", "pg_stat_reset_shared",
            "pg_stat_reset_slru", "pg_log_standby_snapshot", "pg_logical_emit_message",
        ),
        "server-config",
    ),
    **dict.fromkeys(
        ("pg_terminate_backend", "pg_cancel_backend", "pg_signal_backend"), "other-session"
    ),
}  # fmt: skip
# Families of functions by the start of their name: replication slots and origins, dblink.
_FUNCTION_PREFIXES = (
    ("pg_replication_origin_", "server-config"),
    ("pg_logical_slot_", "server-config"),
    ("dblink", "remote-server"),
)
_SLOT_FUNCTION = re.compile(r"^pg_(?:create|drop|copy)_\w*replication_slot$|^pg_replication_slot_")
_SQLITE_FUNCTIONS = {"load_extension": "server-code"}
_SQLITE_WHY = {
    "load_extension": "it loads a native library into the process that runs the sandbox (the "
    "sandbox's connections never enable it, so SQLite would refuse it anyway)"
}
# Functions that run the SQL in their string arguments.
_RUNS_QUERY_TEXT = frozenset(
    {"query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema", "ts_stat", "ts_rewrite"}
)
# A name followed by `(` after these words is a table, type or definition, not a call:
# CREATE TABLE dblink (...), INSERT INTO lo_import (a), DROP FUNCTION pg_read_file(text), ...
_NOT_A_CALL_AFTER = frozenset(
    {
        "TABLE", "INTO", "FUNCTION", "PROCEDURE", "ROUTINE", "AGGREGATE", "REFERENCES", "AS",
        "VIEW", "TYPE", "INDEX", "EXISTS", "WITH", "RECURSIVE", "KEY", "ONLY", "UPDATE",
        "USING", "TRIGGER", "SEQUENCE",
    }
)  # fmt: skip
_MAX_DEPTH = 8
# The first words of the statements _pg_statement reads (SECURITY LABEL, IMPORT FOREIGN SCHEMA).
_PG_STATEMENT_WORDS = frozenset(
    {
        "CREATE",
        "ALTER",
        "COMMENT",
        "SECURITY",
        "GRANT",
        "REVOKE",
        "REASSIGN",
        "LOAD",
        "IMPORT",
        "COPY",
    }
)
_DYNAMIC = re.compile(r"_dyn\d+_")
_SQLGLOT_DIALECT = {"sqlite": "sqlite", "postgres": "postgres"}
# What a statement's lower-cased text must hold for a rule to fire past its first word: the
# name of a watched function (the PostgreSQL ones start with pg_, bar those listed here), the
# pg_ of a system catalog. A regex search of the text proves in C that most statements reach
# nowhere, without walking their tokens (test_boundary checks the names are all covered).
_PG_NEEDLES = re.compile(
    "|".join(
        re.escape(needle)
        for needle in sorted(
            {"pg_"}
            | {name for name in _FUNCTIONS if not name.startswith("pg_")}
            | {prefix for prefix, _ in _FUNCTION_PREFIXES if not prefix.startswith("pg_")}
            | _RUNS_QUERY_TEXT
        )
    )
)
_SQLITE_NEEDLES = re.compile("|".join(re.escape(name) for name in sorted(_SQLITE_FUNCTIONS)))
# The first words of the SQLite statements _sqlite reads.
_SQLITE_STATEMENT_WORDS = frozenset({"ATTACH", "VACUUM", "PRAGMA"})


@dataclass(frozen=True)
class Crossing:
    """One way a statement reaches outside the sandbox."""

    rule: str  # a key of FAMILIES
    what: str  # the statement or call, in a few words: "ALTER DATABASE victim"
    offset: int  # where in the statement's text (dynamic SQL: its EXECUTE)
    why: str | None = None  # instead of the family's reason, when this case has its own

    @property
    def message(self) -> str:
        return f"{self.what} reaches outside the sandbox: {self.why or FAMILIES[self.rule][0]}"

    @property
    def fix(self) -> str:
        return FAMILIES[self.rule][1]


def crossings(
    sql: str,
    dialect: Dialect,
    sandbox_dir: Path | None = None,
    toks: list[Token] | None = None,
) -> list[Crossing]:
    """Every way the statement `sql` reaches outside the sandbox, in order, each once.

    `sandbox_dir` is the directory whose files are the sandbox's own (SQLite); without one,
    every file but a temporary or in-memory database is outside. `toks` are the statement's
    tokens, when the caller has them already.
    """
    toks = list(tokens(sql, dialect)) if toks is None else toks
    if not _may_cross(sql, dialect, toks):
        return []
    found = _postgres(sql, 0, 0, toks) if dialect == "postgres" else _sqlite(sql, toks, sandbox_dir)
    unique: dict[tuple[str, str], Crossing] = {}
    for crossing in sorted(found, key=lambda c: c.offset):
        unique.setdefault((crossing.rule, crossing.message), crossing)
    return list(unique.values())


# --------------------------------------------------------------------------- shared helpers


def _may_cross(sql: str, dialect: Dialect, toks: list[Token]) -> bool:
    """False when no rule below can fire: the first word starts no statement they read, and
    the text names no watched function and no catalog (see _PG_NEEDLES)."""
    if not toks:
        return False
    first = word(toks[0])
    if dialect == "postgres":
        # _pg_statement reads these statements, _pg_inner DO blocks (and CREATE FUNCTION).
        if first in _PG_STATEMENT_WORDS or first == "DO":
            return True
        return _PG_NEEDLES.search(sql.lower()) is not None
    return first in _SQLITE_STATEMENT_WORDS or _SQLITE_NEEDLES.search(sql.lower()) is not None


def _shown(toks: list[Token], count: int) -> str:
    """The first `count` tokens as the finding shows them, long literals shortened."""
    parts = [t.text if len(t.text) <= 40 else t.text[:37] + "..." for t in toks[:count]]
    return " ".join(parts).replace(" . ", ".").replace(" (", "(")


def _skip(words: list[str], i: int, *sequence: str) -> int:
    n = len(sequence)
    return i + n if words[i : i + n] == list(sequence) else i


def _unquoted(token: Token) -> str:
    if token.kind == "quoted_identifier":
        return token.text[1:-1].replace('""', '"')
    return token.text.lower() if token.kind == "word" else ""


def _call_family(name: str, dialect: Dialect) -> str | None:
    if dialect == "sqlite":
        return _SQLITE_FUNCTIONS.get(name.lower())
    if name in _FUNCTIONS:
        return _FUNCTIONS[name]
    if _SLOT_FUNCTION.match(name):
        return "server-config"
    return next((family for prefix, family in _FUNCTION_PREFIXES if name.startswith(prefix)), None)


def _candidate_calls(toks: list[Token], dialect: Dialect) -> list[tuple[int, str]]:
    """(index, name) of every token that names a watched function and is followed by `(`.

    Whether it really is a call is decided by the caller (sqlglot's tree, or the words
    before it).
    """
    found = []
    for i, token in enumerate(toks[:-1]):
        if toks[i + 1].text != "(" or token.kind not in ("word", "quoted_identifier"):
            continue
        name = _unquoted(token)
        if _call_family(name, dialect) or (dialect == "postgres" and name in _RUNS_QUERY_TEXT):
            found.append((i, name))
    return found


def _called_by_tokens(toks: list[Token], index: int) -> bool:
    """A name followed by `(` is a call unless the word before it (or its schema) says it names
    a table, type or definition."""
    k = index
    while k >= 2 and toks[k - 1].text == ".":
        k -= 2
    before = word(toks[k - 1]) if k > 0 else ""
    if before == "ON":
        # CREATE INDEX ... ON t (col), COMMENT / GRANT ... ON FUNCTION f(...): a name.
        return word(toks[0]) not in ("CREATE", "COMMENT", "GRANT", "REVOKE", "SECURITY")
    return before not in _NOT_A_CALL_AFTER


def _called_by_tree(sql: str, dialect: Dialect) -> set[str] | None:
    """The names of the functions the statement calls, per sqlglot; None when it cannot tell."""
    from sqlglot import exp

    from sandbox.guard.parsing import parse_one

    try:
        root = parse_one(sql, _SQLGLOT_DIALECT[dialect])
    except Exception:  # sqlglot raises many kinds; any of them means "not understood"
        return None
    if (
        root is None
        or isinstance(root, exp.Command)
        or not isinstance(root, exp.Query | exp.DML | exp.DDL)
    ):
        return None
    names: set[str] = set()
    for func in root.find_all(exp.Func):
        name = func.name if isinstance(func, exp.Anonymous) else func.sql_name()
        names.add(name.lower())
    return names


def _calls(
    sql: str, toks: list[Token], base: int, dialect: Dialect, depth: int, tree: bool
) -> list[Crossing]:
    """Watched functions the statement calls; with `tree`, sqlglot confirms them first."""
    needles = _PG_NEEDLES if dialect == "postgres" else _SQLITE_NEEDLES
    if needles.search(sql.lower()) is None:
        return []  # `toks` are sql's: none of them names a watched function
    candidates = _candidate_calls(toks, dialect)
    if not candidates:
        return []
    confirmed = _called_by_tree(sql, dialect) if tree else None
    found: list[Crossing] = []
    for index, name in candidates:
        called = (
            name.lower() in confirmed if confirmed is not None else _called_by_tokens(toks, index)
        )
        if not called:
            continue
        offset = base + toks[index].start
        family = _call_family(name, dialect)
        if family is not None:
            why = _SQLITE_WHY.get(name.lower()) if dialect == "sqlite" else None
            found.append(Crossing(family, f"{name}()", offset, why))
            continue
        # query_to_xml('SELECT ...', ...): the string is SQL, and it runs.
        for literal in _literal_arguments(toks, index + 1):
            text = bodies.string_value(literal)
            if text is not None:
                for inner in _postgres(text, 0, depth + 1):
                    found.append(_moved(inner, base + literal.start, f"{name}() runs SQL: "))
    return found


def _literal_arguments(toks: list[Token], open_index: int) -> Iterable[Token]:
    """The arguments of the call whose `(` is at toks[open_index] that are one string each."""
    depth = 0
    argument: list[Token] = []
    for token in toks[open_index:]:
        if token.text == "(":
            depth += 1
            if depth == 1:
                continue
        elif token.text == ")":
            depth -= 1
        if depth == 0 or (depth == 1 and token.text == ","):
            if len(argument) == 1 and argument[0].kind in ("string", "dollar_string"):
                yield argument[0]
            argument = []
            if depth == 0:
                return
            continue
        argument.append(token)


def _moved(crossing: Crossing, offset: int, prefix: str) -> Crossing:
    """A crossing found in SQL built from a string, pointed at the string (or EXECUTE)."""
    return Crossing(
        crossing.rule,
        prefix + _DYNAMIC.sub("<computed>", crossing.what),
        offset,
        crossing.why,
    )


# --------------------------------------------------------------------------- PostgreSQL


def _postgres(sql: str, base: int, depth: int, toks: list[Token] | None = None) -> list[Crossing]:
    """A whole statement: its own kind, what it calls and writes, and the SQL inside it."""
    toks = list(tokens(sql, "postgres")) if toks is None else toks
    if not toks:
        return []
    if depth > _MAX_DEPTH:
        return [Crossing("too-deep-to-check", _shown(toks, 2), base + toks[0].start)]
    return (
        _pg_statement(toks, base)
        + _pg_inner(sql, toks, base, depth)
        + _calls(sql, toks, base, "postgres", depth, tree=True)
        + _catalog_writes(sql, toks, base, tree=True)
    )


def _pg_statement(toks: list[Token], base: int) -> list[Crossing]:
    """What the statement is, from its leading words."""
    if word(toks[0]) not in _PG_STATEMENT_WORDS:
        return []  # none of the statements below: no need to read its words
    w = [word(t) for t in toks]
    at = base + toks[0].start
    first = w[0]

    def crossing(rule: str, count: int, why: str | None = None) -> list[Crossing]:
        return [Crossing(rule, _shown(toks, count), at, why)]

    if first == "CREATE":
        i = _skip(w, 1, "OR", "REPLACE")
        i = _skip(w, i, "TRUSTED")
        i = _skip(w, i, "PROCEDURAL")
        kind = w[i] if i < len(w) else ""
        if kind == "DATABASE":
            return crossing(
                "other-database",
                i + 2,
                "it creates a database outside the sandbox, which nothing drops when the "
                "sandbox goes",
            )
        if kind == "USER" and w[i + 1 : i + 2] == ["MAPPING"]:
            return crossing("remote-server", i + 2)
        if kind in ("ROLE", "USER", "GROUP"):
            return crossing("server-role", i + 2)
        if kind == "TABLESPACE":
            return crossing(
                "server-config", i + 2, "a tablespace is a directory on the server's disk"
            )
        if kind == "EXTENSION":
            return _extension(toks, w, i + 1, at)
        if kind == "LANGUAGE":
            return crossing("server-code", i + 2)
        if kind in ("SERVER", "SUBSCRIPTION"):
            return crossing("remote-server", i + 2)
        if w[i : i + 2] == ["FOREIGN", "TABLE"]:
            return crossing("remote-server", i + 3)
        if w[i : i + 3] == ["FOREIGN", "DATA", "WRAPPER"]:
            return crossing("remote-server", i + 4)
        return []
    if first == "ALTER":
        kind = w[1] if len(w) > 1 else ""
        if kind == "DATABASE":
            return crossing("other-database", 3)
        if kind == "USER" and w[2:3] == ["MAPPING"]:
            return crossing("remote-server", 3)
        if kind in ("ROLE", "USER", "GROUP"):
            return crossing("server-role", 3)
        if kind == "SYSTEM":
            return crossing("server-config", 2)
        if kind == "TABLESPACE":
            return crossing("server-config", 3)
        if kind in ("SERVER", "SUBSCRIPTION"):
            return crossing("remote-server", 3)
        if w[1:4] == ["FOREIGN", "DATA", "WRAPPER"]:
            return crossing("remote-server", 5)
        return []
    if first == "COMMENT" or w[:2] == ["SECURITY", "LABEL"]:
        on = w.index("ON") if "ON" in w else len(w)
        return _shared_object(w[on + 1 : on + 2], toks, on + 3, at, comment=first == "COMMENT")
    if first in ("GRANT", "REVOKE"):
        return _grant(toks, w, at)
    if first == "REASSIGN":
        return crossing("server-role", 3)
    if first == "LOAD":
        return crossing("server-code", 2, "LOAD puts a native library into the server process")
    if w[:3] == ["IMPORT", "FOREIGN", "SCHEMA"]:
        return crossing("remote-server", 4)
    if first == "COPY":
        return _copy(toks, w, at)
    return []


def _shared_object(
    kind: list[str], toks: list[Token], count: int, at: int, comment: bool
) -> list[Crossing]:
    """COMMENT ON / SECURITY LABEL ON an object every database shares."""
    what = _shown(toks, count)
    if kind == ["DATABASE"]:
        why = (
            "a database's comment is how `dbsandbox clean` recognises a scratch database; set "
            "on another database it could get that one dropped"
            if comment
            else None
        )
        return [Crossing("other-database", what, at, why)]
    if kind == ["ROLE"]:
        return [Crossing("server-role", what, at)]
    if kind == ["TABLESPACE"]:
        return [Crossing("server-config", what, at)]
    return []


def _extension(toks: list[Token], w: list[str], i: int, at: int) -> list[Crossing]:
    i = _skip(w, i, "IF", "NOT", "EXISTS")
    if i >= len(toks):
        return []
    token = toks[i]
    name = bodies.string_value(token) or _unquoted(token)
    if name.lower() in TRUSTED_EXTENSIONS:
        return []
    family = _EXTENSION_FAMILY.get(name.lower(), "server-code")
    why = (
        None
        if family != "server-code"
        else f"PostgreSQL does not mark {name} trusted: creating it runs the server's own "
        "code with superuser rights"
    )
    return [Crossing(family, f"CREATE EXTENSION {name}", at, why)]


def _grant(toks: list[Token], w: list[str], at: int) -> list[Crossing]:
    """GRANT / REVOKE on a database, tablespace, server, parameter, catalog, or of a role."""
    depth = 0
    on = None
    to = len(toks)
    for i, token in enumerate(toks):
        depth += {"(": 1, ")": -1}.get(token.text, 0)
        if depth:
            continue
        if w[i] == "ON" and on is None:
            on = i
        if w[i] in ("TO", "FROM") and i > 0:
            to = i
            break
    if on is None:
        why = "granting one role to another changes who may do what in every database"
        return [Crossing("server-role", _shown(toks, to + 2), at, why)]
    kind = w[on + 1 : on + 2]
    what = _shown(toks, to)
    if kind == ["DATABASE"]:
        return [Crossing("other-database", what, at)]
    if kind == ["TABLESPACE"]:
        return [Crossing("server-config", what, at)]
    if kind == ["PARAMETER"]:
        why = "it changes who may change a server setting, on the whole server"
        return [Crossing("server-config", what, at, why)]
    if kind == ["FOREIGN"]:
        return [Crossing("remote-server", what, at)]
    i = on + 1
    i = _skip(w, i, "TABLE")
    i = _skip(w, i, "ALL", "TABLES", "IN", "SCHEMA")
    i = _skip(w, i, "ALL", "SEQUENCES", "IN", "SCHEMA")
    i = _skip(w, i, "ALL", "FUNCTIONS", "IN", "SCHEMA")
    i = _skip(w, i, "SCHEMA")
    while i < len(toks):
        name, i = name_at(toks, i)
        if not name:
            break
        lowered = name.lower()
        if lowered == "pg_catalog" or _is_catalog(lowered):
            return [Crossing("system-catalog", what, at)]
        if i < len(toks) and toks[i].text == ",":
            i += 1
            continue
        break
    return []


def _copy(toks: list[Token], w: list[str], at: int) -> list[Crossing]:
    """COPY ... FROM / TO a server file or PROGRAM; STDIN and STDOUT stay in the session."""
    i = _skip(w, 1, "BINARY")
    depth = 0
    while i < len(toks):
        depth += {"(": 1, ")": -1}.get(toks[i].text, 0)
        if depth == 0 and w[i] in ("FROM", "TO"):
            break
        i += 1
    if i + 1 >= len(toks):
        return []
    where = toks[i + 1]
    direction = w[i]
    if word(where) in ("STDIN", "STDOUT"):
        return []
    if word(where) == "PROGRAM":
        why = f"COPY {direction} PROGRAM runs a shell command on the server's machine"
        return [Crossing("server-code", _shown(toks, 2) + f" {direction} PROGRAM", at, why)]
    shown = where.text if len(where.text) <= 40 else where.text[:37] + "..."
    why = f"COPY {direction} a file reads or writes the server's own file system"
    return [Crossing("outside-file", f"COPY {direction} {shown}", at, why)]


def _pg_inner(sql: str, toks: list[Token], base: int, depth: int) -> list[Crossing]:
    """DO blocks and function bodies: their language, and the SQL in them."""
    if word(toks[0]) not in ("DO", "CREATE"):
        return []
    w = [word(t) for t in toks[:6]]
    at = base + toks[0].start
    i = _skip(w, 1, "OR", "REPLACE")
    if w[0] == "DO":
        span = bodies.do_body(toks)
        lang = bodies.language(toks) or "plpgsql"
    elif w[0] == "CREATE" and w[i : i + 1] in (["FUNCTION"], ["PROCEDURE"]):
        span = bodies.function_body(toks)
        lang = bodies.language(toks) or "sql"
    else:
        return []
    if lang not in TRUSTED_LANGUAGES:
        why = f"{lang} is not a language PostgreSQL trusts: its code runs with the server's rights"
        return [Crossing("server-code", f"{w[0]} ... LANGUAGE {lang}", at, why)]
    if span is None or lang not in _SQL_BODIES:
        return []
    start, end = span
    return _body(bodies.body_text(sql, start, end), base + start, depth + 1)


def _body(text: str, base: int, depth: int) -> list[Crossing]:
    """Each statement of a DO block or function body, and the SQL its EXECUTEs build."""
    if depth > _MAX_DEPTH:
        return [Crossing("too-deep-to-check", "a DO block or function body", base)]
    found: list[Crossing] = []
    for piece, toks in bodies.body_statements(text):
        at = base + piece.start
        for index, token in enumerate(toks):
            if word(token) == "EXECUTE" and bodies.runs_dynamic_sql(toks, index):
                template = bodies.dynamic_template(toks[index + 1 :])
                for built in split_statements(template or "", "postgres"):
                    for inner in _postgres(built.text, 0, depth + 1):
                        found.append(_moved(inner, at + token.start, "dynamic SQL (EXECUTE): "))
            if index == 0 or word(toks[index - 1]) in bodies.STATEMENT_OPENERS:
                found += _pg_statement(toks[index:], at)
                found += _pg_inner(piece.text, toks[index:], at, depth)
        # A body is no statement sqlglot reads: its calls and writes are read from the tokens.
        found += _calls(piece.text, toks, at, "postgres", depth, tree=False)
        found += _catalog_writes(piece.text, toks, at, tree=False)
    return found


def _is_catalog(name: str) -> bool:
    parts = name.lower().split(".")
    if len(parts) >= 2 and parts[-2] == "pg_catalog":
        return parts[-1] not in _SESSION_VIEWS
    return parts[-1] in CATALOG_TABLES and len(parts) == 1


def _catalog_writes(sql: str, toks: list[Token], base: int, tree: bool) -> list[Crossing]:
    """Writes to (and locks on) PostgreSQL's system catalogs."""
    if "pg_" not in sql.lower():
        return []  # `toks` are sql's: no name among them starts with pg_ (the test below)
    if not any(t.kind in ("word", "quoted_identifier") and _unquoted(t)[:3] == "pg_" for t in toks):
        return []
    written = _written_by_tree(sql) if tree else None
    if written is None:
        written = _written_by_tokens(toks)
    locked = (
        "locking a system catalog stops everyone who needs it (the shared ones: every "
        "database on the server)"
    )
    return [
        Crossing(
            "system-catalog",
            f"{verb} {name}",
            base + toks[0].start,
            locked if verb == "LOCK" else None,
        )
        for verb, name in written
        if _is_catalog(name)
    ]


def _written_by_tree(sql: str) -> list[tuple[str, str]] | None:
    """(verb, table) of every write in the statement, per sqlglot; None when it cannot tell."""
    from sqlglot import exp

    from sandbox.guard.parsing import parse_one

    try:
        root = parse_one(sql, "postgres")
    except Exception:  # sqlglot raises many kinds; any of them means "not understood"
        return None
    if root is None or not isinstance(root, exp.Query | exp.DML | exp.DDL):
        return None
    verbs: dict[type[exp.Expression], str] = {
        exp.Insert: "INSERT INTO",
        exp.Update: "UPDATE",
        exp.Delete: "DELETE FROM",
        exp.Merge: "MERGE INTO",
        exp.TruncateTable: "TRUNCATE",
        exp.Alter: "ALTER TABLE",
        exp.Copy: "COPY",
    }
    found: list[tuple[str, str]] = []
    for node in root.find_all(*verbs):
        if isinstance(node, exp.Copy) and not node.args.get("kind"):
            continue  # COPY ... TO only reads the table
        targets = node.expressions if isinstance(node, exp.TruncateTable) else [node.this]
        for target in targets:
            table = target.this if isinstance(target, exp.Schema) else target
            if isinstance(table, exp.Table):
                name = ".".join(p.name for p in table.parts)
                found.append((verbs[type(node)], name))
    return found


def _written_by_tokens(toks: list[Token]) -> list[tuple[str, str]]:
    """(verb, table) of every write the tokens show: the names after the verbs that write."""
    w = [word(t) for t in toks]
    found: list[tuple[str, str]] = []
    for i in range(len(toks)):
        before = w[i - 1] if i else ""
        verb, j = "", 0
        if w[i] == "UPDATE" and before not in ("FOR", "DO", "ON", "KEY"):
            verb, j = "UPDATE", i + 1
        elif w[i] == "INTO" and before in ("INSERT", "MERGE"):
            verb, j = f"{before} INTO", i + 1
        elif w[i] == "FROM" and before == "DELETE":
            verb, j = "DELETE FROM", i + 1
        elif w[i] in ("TRUNCATE", "LOCK"):
            verb, j = w[i], _skip(w, i + 1, "TABLE")
        elif w[i] == "TABLE" and before == "ALTER":
            verb, j = "ALTER TABLE", _skip(w, i + 1, "IF", "EXISTS")
        elif w[i] == "COPY" and "FROM" in w[i:]:
            verb, j = "COPY", i + 1
        if not verb:
            continue
        j = _skip(w, j, "ONLY")
        while j < len(toks):
            name, j = name_at(toks, j)
            if not name:
                break
            found.append((verb, name))
            if verb in ("TRUNCATE", "LOCK") and j < len(toks) and toks[j].text == ",":
                j += 1
                continue
            break
    return found


# --------------------------------------------------------------------------- SQLite


def _sqlite(sql: str, toks: list[Token], sandbox_dir: Path | None) -> list[Crossing]:
    if not toks:
        return []
    if word(toks[0]) not in _SQLITE_STATEMENT_WORDS:
        return _calls(sql, toks, 0, "sqlite", 0, tree=True)  # no need to read its words
    w = [word(t) for t in toks]
    at = toks[0].start
    found: list[Crossing] = []
    if w[0] == "ATTACH":
        i = _skip(w, 1, "DATABASE")
        end = next((j for j in range(i, len(toks)) if w[j] == "AS"), len(toks))
        found += _file(toks[i:end], "ATTACH", sandbox_dir, at)
    elif w[0] == "VACUUM" and "INTO" in w:
        found += _file(toks[w.index("INTO") + 1 :], "VACUUM INTO", sandbox_dir, at)
    elif w[0] == "PRAGMA":
        name, i = name_at(toks, 1)
        directory = name.split(".")[-1].lower() in ("temp_store_directory", "data_store_directory")
        if directory and i < len(toks) and toks[i].text in ("=", "("):
            why = "it points SQLite at a directory for the whole process, outside the sandbox"
            found.append(Crossing("outside-file", f"PRAGMA {name}", at, why))
    return found + _calls(sql, toks, 0, "sqlite", 0, tree=True)


def _file(expression: list[Token], verb: str, sandbox_dir: Path | None, at: int) -> list[Crossing]:
    """ATTACH / VACUUM INTO a file: fine in the sandbox's directory, in memory, or temporary."""
    name: str | None = None
    if len(expression) == 1:
        token = expression[0]
        if token.kind == "string":
            name = bodies.string_value(token)
        elif token.kind in ("word", "quoted_identifier"):
            # SQLite reads a bare or quoted name here as the file name itself.
            name = token.text if token.kind == "word" else _unquoted(token)
    if name is None:
        why = "the file name is computed when it runs, so it may be anywhere"
        return [Crossing("outside-file", f"{verb} with a computed file name", at, why)]
    if name in ("", ":memory:"):
        return []  # a temporary or in-memory database, gone when the session ends
    if name[:5].lower() == "file:":
        why = "a file: URI may name any file, and open it in any mode"
        return [Crossing("outside-file", f"{verb} '{name}'", at, why)]
    # Relative names are relative to the process's working directory, as SQLite opens them.
    try:
        path = Path(os.path.abspath(name)).resolve()
    except (OSError, ValueError):  # a NUL byte, a loop of links: no file the guard can place
        why = "the guard cannot tell where that file is"
        return [Crossing("outside-file", f"{verb} {_shown(expression, 1)}", at, why)]
    if sandbox_dir is not None and path.is_relative_to(sandbox_dir.resolve()):
        return []
    return [Crossing("outside-file", f"{verb} '{name}'", at, f"{path} is not in the sandbox")]
