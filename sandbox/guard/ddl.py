"""DROP, TRUNCATE, ALTER TABLE and integrity switches, read from the statement's tokens.

These statements are short and keyword-driven, and sqlglot parses several of them into raw
Commands (SQLite's `ALTER TABLE t DROP c`, PostgreSQL's `ALTER TABLE ... DISABLE TRIGGER`), so
the rules read the lexer's tokens, which never fail and never see comments or strings.
"""

from __future__ import annotations

from dataclasses import dataclass

from sandbox.statements import Token


@dataclass(frozen=True)
class KeywordFinding:
    rule: str
    message: str
    fix: str
    table: str | None = None
    objects: tuple[tuple[str, str], ...] = ()
    cascade: bool = False


_NAME_KINDS = ("word", "quoted_identifier")
_DROP_KINDS = {
    ("TABLE",): "table",
    ("FOREIGN", "TABLE"): "foreign table",
    ("DATABASE",): "database",
    ("SCHEMA",): "schema",
    ("VIEW",): "view",
    ("MATERIALIZED", "VIEW"): "materialized view",
    ("INDEX",): "index",
    ("SEQUENCE",): "sequence",
    ("FUNCTION",): "function",
    ("PROCEDURE",): "procedure",
    ("ROUTINE",): "routine",
    ("AGGREGATE",): "aggregate",
    ("TRIGGER",): "trigger",
    ("TYPE",): "type",
    ("DOMAIN",): "domain",
    ("EXTENSION",): "extension",
    ("ROLE",): "role",
    ("USER",): "role",
    ("GROUP",): "role",
    ("OWNED",): "everything owned by",
    ("POLICY",): "policy",
    ("RULE",): "rule",
    ("COLLATION",): "collation",
    ("TABLESPACE",): "tablespace",
    ("PUBLICATION",): "publication",
    ("SUBSCRIPTION",): "subscription",
    ("SERVER",): "server",
    ("EVENT", "TRIGGER"): "event trigger",
    ("STATISTICS",): "statistics object",
    ("CAST",): "cast",
    ("LANGUAGE",): "language",
    ("PROCEDURAL", "LANGUAGE"): "language",
    ("TRANSFORM",): "transform",
    ("CONVERSION",): "conversion",
    ("OPERATOR",): "operator",
    ("OPERATOR", "CLASS"): "operator class",
    ("OPERATOR", "FAMILY"): "operator family",
    ("ACCESS", "METHOD"): "access method",
    ("FOREIGN", "DATA", "WRAPPER"): "foreign data wrapper",
    ("USER", "MAPPING"): "user mapping",
    ("TEXT", "SEARCH", "CONFIGURATION"): "text search configuration",
    ("TEXT", "SEARCH", "DICTIONARY"): "text search dictionary",
    ("TEXT", "SEARCH", "PARSER"): "text search parser",
    ("TEXT", "SEARCH", "TEMPLATE"): "text search template",
}
_OFF = {"OFF", "0", "FALSE", "NO"}
_ON = {"ON", "1", "TRUE", "YES"}


def _word(token: Token) -> str:
    return token.text.upper() if token.kind == "word" else ""


def name_at(toks: list[Token], i: int) -> tuple[str, int]:
    """A possibly qualified name starting at toks[i]: (text, index after it)."""
    parts: list[str] = []
    while i < len(toks) and toks[i].kind in _NAME_KINDS:
        text = toks[i].text
        parts.append(text[1:-1].replace('""', '"') if toks[i].kind == "quoted_identifier" else text)
        if i + 1 < len(toks) and toks[i + 1].text == ".":
            i += 2
            continue
        i += 1
        break
    return ".".join(parts), i


def _skip(toks: list[Token], i: int, *words: str) -> int:
    """Skip an optional keyword sequence (e.g. IF EXISTS) at toks[i]."""
    n = len(words)
    if [_word(t) for t in toks[i : i + n]] == list(words):
        return i + n
    return i


def _close(toks: list[Token], i: int) -> int:
    """The index just after the parenthesis that closes the one at toks[i]."""
    depth = 0
    while i < len(toks):
        depth += {"(": 1, ")": -1}.get(toks[i].text, 0)
        i += 1
        if depth == 0:
            break
    return i


def check(toks: list[Token]) -> list[KeywordFinding]:
    """Findings for a statement, from its tokens (the linter has already lexed it)."""
    if not toks:
        return []
    first = _word(toks[0])
    if first == "DROP":
        return _drop(toks)
    if first == "TRUNCATE":
        return _truncate(toks)
    if first == "ALTER" and len(toks) > 1 and _word(toks[1]) in ("TABLE", "FOREIGN"):
        return _alter_table(toks)
    if first == "ALTER" and len(toks) > 1 and _word(toks[1]) == "DOMAIN":
        return _alter_domain(toks)
    if first == "ALTER" and len(toks) > 1 and _word(toks[1]) == "TYPE":
        return _alter_type(toks)
    if first == "ALTER" and [_word(t) for t in toks[1:4]] == ["TEXT", "SEARCH", "CONFIGURATION"]:
        return _alter_text_search(toks)
    if first == "ALTER" and len(toks) > 1 and _word(toks[1]) in ("ROLE", "USER", "DATABASE"):
        # ALTER ROLE app SET session_replication_role = replica: every later session starts so.
        at = next((i for i, t in enumerate(toks) if _word(t) == "SET"), None)
        return _set(toks[at:]) if at is not None else []
    if first == "PRAGMA":
        return _pragma(toks)
    if first == "SET":
        return _set(toks)
    return []


def _drop(toks: list[Token]) -> list[KeywordFinding]:
    words = [_word(t) for t in toks]
    i = 1
    kind = None
    for key, label in sorted(_DROP_KINDS.items(), key=lambda kv: -len(kv[0])):
        if tuple(words[1 : 1 + len(key)]) == key:
            kind, i = label, 1 + len(key)
            break
    if kind is None:
        if len(words) < 2 or not words[1]:
            return [
                KeywordFinding(
                    "unverified",
                    "could not verify this DROP (it does not say what it drops); it may "
                    "destroy an object",
                    "finish the statement: DROP TABLE name, DROP VIEW name, ...",
                )
            ]
        # A kind this list does not know still destroys something: never let a DROP through.
        kind, i = words[1].lower(), 2
    i = _skip(toks, i, "CONCURRENTLY")
    i = _skip(toks, i, "IF", "EXISTS")
    if kind == "everything owned by":
        i = _skip(toks, i, "BY")
    names: list[str] = []
    i = _skip(toks, i, "FOR")  # DROP TRANSFORM / USER MAPPING FOR ...
    while i < len(toks):
        name, nxt = name_at(toks, i)
        if not name and toks[i].text == "(":
            # DROP CAST (text AS money), DROP OPERATOR ... : the name is the parenthesised text.
            end = _close(toks, i)
            name = " ".join(t.text for t in toks[i:end]).replace("( ", "(").replace(" )", ")")
            nxt = end
        if not name or _word(toks[i]) in ("CASCADE", "RESTRICT", "ON"):
            break
        names.append(name)
        i = nxt
        # Function signatures: DROP FUNCTION f(integer) — skip the parenthesised argument list.
        if i < len(toks) and toks[i].text == "(":
            i = _close(toks, i)
        if i < len(toks) and toks[i].text == ",":
            i += 1
            continue
        break
    cascade = "CASCADE" in words
    shown = ", ".join(names) or "?"
    also = " and, with CASCADE, every object that depends on it" if cascade else ""
    if kind in ("table", "foreign table"):
        return [
            KeywordFinding(
                "drop-table",
                f"DROP TABLE {shown} destroys the table and every row in it{also}",
                "rename it or copy it first (CREATE TABLE ... AS SELECT), and drop it later",
                names[0] if names else None,
                tuple(("table", n) for n in names),
                cascade,
            )
        ]
    if kind == "database":
        return [
            KeywordFinding(
                "drop-database",
                f"DROP DATABASE {shown} destroys the whole database",
                "take a dump first; there is no undo",
                None,
                tuple(("database", n) for n in names),
            )
        ]
    if kind == "schema":
        inside = " and everything inside it" if cascade else ""
        return [
            KeywordFinding(
                "drop-schema",
                f"DROP SCHEMA {shown} destroys the schema{inside}",
                "drop the objects you mean one by one, after checking what depends on them",
                None,
                tuple(("schema", n) for n in names),
                cascade,
            )
        ]
    return [
        KeywordFinding(
            "drop-object",
            f"DROP {kind.upper()} {shown} destroys the {kind}{also}",
            "check what uses it first; CREATE it again from its definition if you need it back",
            None,
            tuple((kind, n) for n in names),
            cascade,
        )
    ]


def _truncate(toks: list[Token]) -> list[KeywordFinding]:
    words = [_word(t) for t in toks]
    i = _skip(toks, 1, "TABLE")
    i = _skip(toks, i, "ONLY")
    names: list[str] = []
    while i < len(toks):
        name, nxt = name_at(toks, i)
        if not name or _word(toks[i]) in ("RESTART", "CONTINUE", "CASCADE", "RESTRICT"):
            break
        names.append(name)
        i = nxt
        if i < len(toks) and toks[i].text == "*":
            i += 1
        if i < len(toks) and toks[i].text == ",":
            i += 1
            continue
        break
    if not names:
        return [
            KeywordFinding(
                "unverified",
                "could not verify this TRUNCATE (it does not say which table); it may empty one",
                "name the table: TRUNCATE name",
            )
        ]
    cascade = "CASCADE" in words
    shown = ", ".join(names)
    also = (
        ", and CASCADE empties every table that references it by foreign key as well"
        if cascade
        else ""
    )
    return [
        KeywordFinding(
            "truncate",
            f"TRUNCATE {shown} removes every row at once{also}",
            "DELETE the rows you mean with a WHERE, inside BEGIN, so you can check and ROLLBACK",
            names[0] if names else None,
            tuple(("table", n) for n in names),
            cascade,
        )
    ]


def _alter_table(toks: list[Token]) -> list[KeywordFinding]:
    i = _skip(toks, 1, "FOREIGN")
    i = _skip(toks, i + 1 if _word(toks[i]) == "TABLE" else i, "IF", "EXISTS")
    i = _skip(toks, i, "ONLY")
    table, i = name_at(toks, i)
    findings: list[KeywordFinding] = []
    for action in _actions(toks, i):
        words = [_word(t) for t in action]
        if words[:1] == ["ALTER"]:
            findings.extend(_alter_column(table, action, words))
        elif words[:1] == ["DROP"]:
            j = 1
            if words[1:3] in (["PRIMARY", "KEY"], ["FOREIGN", "KEY"]) or words[1:2] == [
                "CONSTRAINT"
            ]:
                # DROP CONSTRAINT name; MySQL's DROP PRIMARY KEY / DROP FOREIGN KEY name.
                if words[1] == "PRIMARY":
                    name = "PRIMARY KEY"
                else:
                    j = _skip(action, 2 if words[1] == "CONSTRAINT" else 3, "IF", "EXISTS")
                    name, _ = name_at(action, j)
                findings.append(
                    KeywordFinding(
                        "drop-constraint",
                        f"ALTER TABLE {table} DROP CONSTRAINT {name}: the check it enforced "
                        "(a foreign key, CHECK or UNIQUE) stops, and bad rows can get in",
                        "keep the constraint; if it blocks a migration, fix the data instead",
                        table,
                        (("constraint", name),),
                    )
                )
                continue
            if words[1:2] in (["DEFAULT"], ["NOT"], ["IDENTITY"], ["EXPRESSION"]):
                continue
            j = _skip(action, j, "COLUMN")
            j = _skip(action, j, "IF", "EXISTS")
            name, _ = name_at(action, j)
            if name:
                findings.append(
                    KeywordFinding(
                        "drop-column",
                        f"ALTER TABLE {table} DROP COLUMN {name} destroys the column and every "
                        "value in it",
                        f"copy it first (CREATE TABLE {table}_backup AS SELECT ...), or stop "
                        "using it and drop it in a later release",
                        table,
                        (("column", f"{table}.{name}"),),
                        "CASCADE" in words,
                    )
                )
        elif words[:2] == ["DISABLE", "TRIGGER"]:
            which = action[2].text if len(action) > 2 else "?"
            findings.append(
                KeywordFinding(
                    "disable-trigger",
                    f"ALTER TABLE {table} DISABLE TRIGGER {which}: the triggers stop firing"
                    + (", foreign key checks included" if which.upper() == "ALL" else ""),
                    "leave the triggers on; if they are in the way, change the data they guard",
                    table,
                )
            )
    return findings


def action_spans(toks: list[Token], i: int) -> list[list[int]]:
    """An ALTER's actions from toks[i] on, as lists of token indexes: separated by commas at
    parenthesis depth 0 (the guard's rules, the migration advice and the lock table all read
    ALTER TABLE subcommand by subcommand)."""
    actions: list[list[int]] = [[]]
    depth = 0
    for index in range(i, len(toks)):
        text = toks[index].text
        depth += {"(": 1, ")": -1}.get(text, 0)
        if text == "," and depth == 0:
            actions.append([])
        else:
            actions[-1].append(index)
    return actions


def _actions(toks: list[Token], i: int) -> list[list[Token]]:
    return [[toks[k] for k in span] for span in action_spans(toks, i)]


def _alter_column(table: str, action: list[Token], words: list[str]) -> list[KeywordFinding]:
    """ALTER [COLUMN] c DROP NOT NULL / DROP IDENTITY: a check switched off, a sequence gone.
    DROP DEFAULT and DROP EXPRESSION lose nothing stored (the values stay)."""
    j = _skip(action, 1, "COLUMN")
    column, j = name_at(action, j)
    if words[j : j + 3] == ["DROP", "NOT", "NULL"]:
        what = f"ALTER TABLE {table} ALTER COLUMN {column}"
        return [_not_null_off(what, "the column", table, ("column", f"{table}.{column}"))]
    if words[j : j + 2] == ["DROP", "IDENTITY"]:
        return [
            KeywordFinding(
                "drop-object",
                f"ALTER TABLE {table} ALTER COLUMN {column} DROP IDENTITY destroys the column's "
                "identity sequence, and with it where the numbering had got to",
                "keep the identity; to change how it counts, ALTER COLUMN ... SET / RESTART",
                table,
                (("identity", f"{table}.{column}"),),
            )
        ]
    return []


def _not_null_off(
    what: str, subject: str, table: str | None, named: tuple[str, str]
) -> KeywordFinding:
    """The NOT NULL check is an integrity switch like a constraint (same policy as
    drop-constraint): nothing is lost at once, but NULLs can get in from then on, and code
    that trusted the column to be filled breaks on them."""
    return KeywordFinding(
        "drop-not-null",
        f"{what} DROP NOT NULL: {subject} stops refusing NULLs, and rows without a value "
        "can get in",
        "keep NOT NULL; if a writer cannot fill it yet, give the column a DEFAULT instead",
        table,
        (named,),
    )


def _alter_type(toks: list[Token]) -> list[KeywordFinding]:
    """ALTER TYPE t DROP ATTRIBUTE a: the attribute goes from every value of the composite
    type, in every column and row that uses it: a DROP COLUMN everywhere at once."""
    name, i = name_at(toks, 2)
    findings: list[KeywordFinding] = []
    for action in _actions(toks, i):
        words = [_word(t) for t in action]
        if words[:2] != ["DROP", "ATTRIBUTE"]:
            continue
        attribute, _ = name_at(action, _skip(action, 2, "IF", "EXISTS"))
        findings.append(
            KeywordFinding(
                "drop-attribute",
                f"ALTER TYPE {name} DROP ATTRIBUTE {attribute} destroys that attribute's value "
                f"in every column and row of type {name}",
                f"copy the values out first, or stop using {attribute} and drop it in a later "
                "release",
                None,
                (("attribute", f"{name}.{attribute}"),),
                "CASCADE" in words,
            )
        )
    return findings


def _alter_text_search(toks: list[Token]) -> list[KeywordFinding]:
    """ALTER TEXT SEARCH CONFIGURATION c DROP MAPPING: part of a definition is destroyed."""
    name, i = name_at(toks, 4)
    words = [_word(t) for t in toks]
    if words[i : i + 2] != ["DROP", "MAPPING"]:
        return []
    return [
        KeywordFinding(
            "drop-object",
            f"ALTER TEXT SEARCH CONFIGURATION {name} DROP MAPPING destroys those token "
            "mappings: text is no longer indexed by them",
            "check which searches use them first; ADD MAPPING puts them back",
            None,
            (("text search mapping", name),),
        )
    ]


def _alter_domain(toks: list[Token]) -> list[KeywordFinding]:
    """ALTER DOMAIN d DROP CONSTRAINT c: every column of that type loses the check."""
    domain, i = name_at(toks, 2)
    words = [_word(t) for t in toks]
    if words[i : i + 3] == ["DROP", "NOT", "NULL"]:
        subject = f"every column of type {domain}"
        return [_not_null_off(f"ALTER DOMAIN {domain}", subject, None, ("domain", domain))]
    if words[i : i + 2] != ["DROP", "CONSTRAINT"]:
        return []
    name, _ = name_at(toks, _skip(toks, i + 2, "IF", "EXISTS"))
    return [
        KeywordFinding(
            "drop-constraint",
            f"ALTER DOMAIN {domain} DROP CONSTRAINT {name}: every column of type {domain} stops "
            "being checked, and bad values can get in",
            "keep the constraint; if it blocks a migration, fix the data instead",
            None,
            (("constraint", name),),
        )
    ]


def _pragma(toks: list[Token]) -> list[KeywordFinding]:
    name, i = name_at(toks, 1)
    pragma = name.split(".")[-1].lower()
    if i >= len(toks) or toks[i].text not in ("=", "("):
        return []  # reading a pragma changes nothing
    value = toks[i + 1].text.strip("'\"").upper() if i + 1 < len(toks) else ""
    if pragma == "foreign_keys" and value in _OFF:
        return [
            KeywordFinding(
                "foreign-keys-off",
                "PRAGMA foreign_keys = OFF: SQLite stops checking foreign keys on this connection",
                "keep foreign_keys ON and fix the rows that break a constraint; for a table "
                "rebuild (SQLite's recipe for what ALTER TABLE cannot do), run PRAGMA "
                "foreign_key_check before COMMIT and switch it ON again after",
            )
        ]
    if pragma == "writable_schema" and value in _ON:
        return [
            KeywordFinding(
                "writable-schema",
                "PRAGMA writable_schema = ON: statements can now edit sqlite_schema directly, "
                "and one wrong write corrupts the database",
                "change the schema with CREATE / ALTER / DROP, never by editing sqlite_schema",
            )
        ]
    if pragma == "ignore_check_constraints" and value in _ON:
        return [
            KeywordFinding(
                "ignore-check-constraints",
                "PRAGMA ignore_check_constraints = ON: CHECK constraints stop being enforced",
                "keep CHECK constraints on; fix the data that fails them",
            )
        ]
    return []


def _set(toks: list[Token]) -> list[KeywordFinding]:
    i = _skip(toks, 1, "SESSION")
    i = _skip(toks, i, "LOCAL")
    name, i = name_at(toks, i)
    if name.lower() != "session_replication_role" or i >= len(toks):
        return []
    if toks[i].text == "=" or _word(toks[i]) == "TO":
        i += 1
    value = toks[i].text.strip("'\"").lower() if i < len(toks) else ""
    if value != "replica":
        return []
    return [_replica("SET session_replication_role = replica")]


def _replica(how: str) -> KeywordFinding:
    return KeywordFinding(
        "replication-role-replica",
        f"{how}: ordinary triggers stop firing, and with them the foreign key checks",
        "leave session_replication_role at origin; load data in dependency order instead",
    )


def set_config(toks: list[Token]) -> list[KeywordFinding]:
    """`SELECT set_config('session_replication_role', 'replica', ...)`: SET as a function call."""
    for i, token in enumerate(toks):
        if _word(token) != "SET_CONFIG" or [t.text for t in toks[i + 1 : i + 2]] != ["("]:
            continue
        args = toks[i + 2 : i + 5]
        if (
            len(args) == 3
            and args[0].kind == args[2].kind == "string"
            and args[1].text == ","
            and args[0].text.strip("'").lower() == "session_replication_role"
            and args[2].text.strip("'").lower() == "replica"
        ):
            return [_replica("set_config('session_replication_role', 'replica')")]
    return []
