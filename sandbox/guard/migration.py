"""Migration rules: statements that lock a live table for longer than they need to.

The outage a migration causes is rarely lost data; it is a lock. An ALTER TABLE that waits
behind a long read makes every later query queue behind it; a type change rewrites the whole
table under ACCESS EXCLUSIVE; an index built without CONCURRENTLY blocks writes for the whole
build. Each rule here says what the statement will hold (sandbox/guard/locks.py) and gives
the safe recipe. They are advice (severity info): none of them loses data, and on an empty or
new table none of them matters; `dbsandbox lint --strict-migrations` makes them warnings, to
fail a migration's pre-commit check.

A script is read in order (`Context`): a table created earlier in it is new (nobody else
uses it yet), `SET lock_timeout` before a statement bounds its wait, and BEGIN ... COMMIT says
how long a lock is held.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox.guard.ddl import KeywordFinding, action_spans, name_at
from sandbox.guard.locks import Prediction, predict
from sandbox.statements import Dialect, Token

# Functions whose value differs per row: a DEFAULT of one makes ADD COLUMN fill every row, a
# rewrite (PostgreSQL 11+ stores a non-volatile default once, without touching the rows).
_VOLATILE = frozenset(
    {
        "RANDOM", "CLOCK_TIMESTAMP", "TIMEOFDAY", "GEN_RANDOM_UUID", "UUID_GENERATE_V1",
        "UUID_GENERATE_V4", "UUIDV4", "UUIDV7", "NEXTVAL", "TXID_CURRENT",
    }
)  # fmt: skip
# SQLite's ALTER TABLE does RENAME TABLE, RENAME COLUMN, ADD COLUMN and DROP COLUMN only.
_SQLITE_ALTERS = frozenset({"RENAME", "ADD", "DROP"})
_SQLITE_REBUILD = (
    "rebuild the table: PRAGMA foreign_keys = OFF; BEGIN; CREATE TABLE new_t (... as it should "
    "be ...); INSERT INTO new_t SELECT ... FROM t; DROP TABLE t; ALTER TABLE new_t RENAME TO t; "
    "recreate its indexes, triggers and views; PRAGMA foreign_key_check; COMMIT; PRAGMA "
    "foreign_keys = ON (https://www.sqlite.org/lang_altertable.html#otheralter)"
)


@dataclass
class Context:
    """What the script has done so far, as far as the migration rules care."""

    created: set[str] = field(default_factory=set)  # tables made earlier in the script
    lock_timeout: bool = False  # SET lock_timeout came first
    in_transaction: bool = False
    exclusive: str | None = None  # the table an ACCESS EXCLUSIVE lock is held on, until COMMIT
    not_null_checks: set[str] = field(default_factory=set)  # table.column with a CHECK IS NOT NULL
    indexed: set[str] = field(default_factory=set)  # "table(col, ...)" indexed in the script

    def is_new(self, table: str) -> bool:
        return _bare(table) in self.created


def _bare(name: str) -> str:
    return name.split(".")[-1].strip('"').lower()


def _word(token: Token) -> str:
    return token.text.upper() if token.kind == "word" else ""


def check(toks: list[Token], dialect: Dialect, context: Context | None) -> list[KeywordFinding]:
    """Advice for one statement, then the context updated past it. Without a context (one
    statement on its own), nothing is assumed about what came before it."""
    if not toks or (
        _word(toks[0]) not in _RELEVANT and (context is None or context.exclusive is None)
    ):
        return []  # a query, or DML: no rule here can fire on it, and it changes no context
    words = [_word(t) for t in toks]
    if dialect == "sqlite":
        return _sqlite(toks, words)
    ctx = context if context is not None else Context()
    found: list[KeywordFinding] = []
    prediction = predict(toks, dialect)
    table = prediction.tables[0] if prediction is not None and prediction.tables else None
    existing = table is not None and not ctx.is_new(table)
    if (
        context is not None
        and ctx.exclusive is not None
        and words[0] not in _ENDS
        and not _bookkeeping(toks, words)
    ):
        found.append(_after_exclusive(ctx.exclusive, toks))
    if prediction is not None and existing and table is not None:
        found += _locking(toks, words, prediction, table, ctx, context is not None)
    if context is not None:
        # Only a script says which indexes it makes (lint_script drops this advice for
        # columns indexed later in it); a statement on its own cannot know the table's.
        found += _foreign_keys(toks, words)
    _advance(toks, words, prediction, ctx)
    return found


_ENDS = frozenset({"COMMIT", "END", "ROLLBACK", "ABORT"})
# First words of the statements these rules read (the rest only matter after an ACCESS
# EXCLUSIVE lock, when anything run extends the outage).
_RELEVANT = frozenset(
    {"ALTER", "CREATE", "DROP", "TRUNCATE", "LOCK", "REFRESH", "VACUUM", "CLUSTER", "REINDEX",
     "BEGIN", "START", "SET", *_ENDS}
)  # fmt: skip


def _locking(
    toks: list[Token],
    words: list[str],
    prediction: Prediction,
    table: str,
    ctx: Context,
    scripted: bool,
) -> list[KeywordFinding]:
    found: list[KeywordFinding] = []
    if words[0] == "CREATE" and "INDEX" in words[:3]:
        if "CONCURRENTLY" not in words[:4]:
            found.append(
                KeywordFinding(
                    "index-not-concurrent",
                    f"CREATE INDEX on {table} takes a SHARE lock for the whole build: every "
                    f"INSERT, UPDATE and DELETE on {table} waits until the index is built",
                    "CREATE INDEX CONCURRENTLY, outside a transaction (it builds without "
                    "blocking writes; if it fails, DROP INDEX CONCURRENTLY the invalid index "
                    "and retry)",
                    table,
                )
            )
        elif scripted and ctx.in_transaction:
            found.append(_concurrently_in_transaction("CREATE INDEX CONCURRENTLY", table))
        return found
    if words[:2] == ["DROP", "INDEX"] and "CONCURRENTLY" in words[:3]:
        if scripted and ctx.in_transaction:
            found.append(_concurrently_in_transaction("DROP INDEX CONCURRENTLY", table))
        return found
    if words[:2] == ["ALTER", "TABLE"]:
        found += _alter_table(toks, words, table, ctx)
    if words[:2] == ["DROP", "INDEX"]:
        table = f"the table of index {table}"  # DROP INDEX locks the table it indexes
    if (
        prediction.blocks_writes
        and scripted
        and not ctx.lock_timeout
        and words[0] in ("ALTER", "CREATE", "DROP", "TRUNCATE", "LOCK", "REFRESH")
        and not (words[0] == "DROP" and words[1:2] == ["TABLE"])
    ):
        found.append(
            KeywordFinding(
                "lock-without-timeout",
                f"this takes {prediction.mode} on {table} with no lock_timeout: if it has to "
                f"wait (a long query or an open transaction on {table}), every later query on "
                f"{table} queues behind it, for as long as it waits",
                "SET lock_timeout = '2s' first (in the same transaction: SET LOCAL), and retry "
                "the migration when it times out",
                table,
            )
        )
    return found


def _alter_table(
    toks: list[Token], words: list[str], table: str, ctx: Context
) -> list[KeywordFinding]:
    found: list[KeywordFinding] = []
    for action in _actions(toks, words):
        act = [w for _, w in action]
        at = [i for i, _ in action]
        if act[:1] == ["ADD"] and ("REFERENCES" in act or "CHECK" in act):
            # A table constraint checks the rows there are; on a column being added (all
            # NULL or its default) there is nothing to scan for.
            if act[1:2] in (["CONSTRAINT"], ["FOREIGN"], ["CHECK"]) and not _not_valid(act):
                kind = "foreign key" if "REFERENCES" in act else "CHECK constraint"
                held = (
                    "SHARE ROW EXCLUSIVE: writes wait"
                    if "REFERENCES" in act
                    else "ACCESS EXCLUSIVE: reads and writes wait"
                )
                found.append(
                    KeywordFinding(
                        "constraint-not-valid",
                        f"adding a {kind} to {table} checks every existing row while it holds "
                        f"the table's lock ({held})",
                        "add it NOT VALID (new rows are checked at once), then ALTER TABLE ... "
                        "VALIDATE CONSTRAINT in its own transaction: it scans under SHARE "
                        "UPDATE EXCLUSIVE, which lets reads and writes go on",
                        table,
                    )
                )
            if "CHECK" in act and "NULL" in act and "NOT" in act and "IS" in act:
                column = act[act.index("IS") - 1].lower() if "IS" in act else ""
                if column:
                    ctx.not_null_checks.add(f"{_bare(table)}.{column}")
        elif act[:1] == ["ALTER"] and "TYPE" in act and ("SET" not in act or "DATA" in act):
            column = _column_of(toks, at)
            found.append(_rewrite(table, f"changing the type of {table}.{column}"))
        elif act[:1] == ["ALTER"] and act[-3:] == ["SET", "NOT", "NULL"]:
            column = _column_of(toks, at)
            if f"{_bare(table)}.{column.lower()}" not in ctx.not_null_checks:
                found.append(
                    KeywordFinding(
                        "set-not-null-scan",
                        f"SET NOT NULL on {table}.{column} scans every row to prove it while "
                        "holding ACCESS EXCLUSIVE: reads and writes wait for the whole scan",
                        f"first ADD CONSTRAINT {column}_not_null CHECK ({column} IS NOT NULL) "
                        "NOT VALID, then VALIDATE CONSTRAINT (no blocking), then SET NOT NULL "
                        "(PostgreSQL 12+ uses the check and skips the scan), then drop the check",
                        table,
                    )
                )
        elif act[:1] == ["ADD"] and "DEFAULT" in act:
            after = act[act.index("DEFAULT") + 1 :]
            if any(w in _VOLATILE for w in after) or "STORED" in act:
                found.append(
                    _rewrite(table, f"adding a column to {table} whose value differs per row")
                )
        elif act[:1] == ["ADD"] and "STORED" in act:
            found.append(_rewrite(table, f"adding a stored generated column to {table}"))
    return found


def _bookkeeping(toks: list[Token], words: list[str]) -> bool:
    """Alembic's own one-row write to alembic_version, which its offline SQL puts after each
    revision in the same transaction: not work the migration's author can move."""
    return words[0] in ("UPDATE", "INSERT", "DELETE") and any(
        _bare(t.text) == "alembic_version" for t in toks[1:4]
    )


def _not_valid(act: list[str]) -> bool:
    return any(act[k : k + 2] == ["NOT", "VALID"] for k in range(len(act) - 1))


def _foreign_keys(toks: list[Token], words: list[str]) -> list[KeywordFinding]:
    """Advice for each foreign key a CREATE TABLE or ALTER TABLE ... ADD declares: its
    referencing columns want an index (PostgreSQL makes none for them)."""
    if "REFERENCES" not in words:
        return []
    if words[0] == "CREATE" and "TABLE" in words[1:5]:
        at = words.index("TABLE") + 1
        if words[at : at + 3] == ["IF", "NOT", "EXISTS"]:
            at += 3
        table = name_at(toks, at)[0]
        declared = [
            _declared_fk(toks, words, part)
            for part in _table_parts(toks)
            if "REFERENCES" in [words[k] for k in part]
        ]
    elif words[:2] == ["ALTER", "TABLE"]:
        table = _alter_target(toks, words)
        declared = [
            _fk_columns(toks, [i for i, _ in a], [w for _, w in a])
            for a in _actions(toks, words)
            if a[0][1] == "ADD" and "REFERENCES" in [w for _, w in a]
        ]
    else:
        return []
    return [
        KeywordFinding(
            "fk-without-index",
            f"the foreign key on {table}({columns}) gets no index from PostgreSQL, and this "
            f"script makes none: unless one exists already, each DELETE or key UPDATE on the "
            f"referenced table scans {table}",
            f"CREATE INDEX CONCURRENTLY ON {table} ({columns})",
            table,
            (("foreign key", f"{_bare(table)}({columns})"),),
        )
        for columns in declared
        if columns
    ]


def _declared_fk(toks: list[Token], words: list[str], part: list[int]) -> str:
    """The referencing columns of one CREATE TABLE element with REFERENCES in it."""
    said = [words[k] for k in part]
    if "FOREIGN" in said:
        return _fk_columns(toks, part, said)
    if said[0] in ("CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK"):
        return ""
    return toks[part[0]].text.strip('"').lower()  # a column's own REFERENCES


def _rewrite(table: str, what: str) -> KeywordFinding:
    return KeywordFinding(
        "table-rewrite",
        f"{what} rewrites the whole table under ACCESS EXCLUSIVE: every read and write of "
        f"{table} waits until every row is copied",
        "expand and contract: add a new column, backfill it in small batches, switch the "
        "code to it, then drop the old one in a later release",
        table,
    )


def _concurrently_in_transaction(what: str, table: str) -> KeywordFinding:
    return KeywordFinding(
        "concurrently-in-transaction",
        f"{what} cannot run inside a transaction block: PostgreSQL refuses it, and the whole "
        "migration fails there",
        "run it on its own, after COMMIT (Alembic: inside op.get_context().autocommit_block())",
        table,
    )


def _after_exclusive(table: str, toks: list[Token]) -> KeywordFinding:
    first = toks[0].text.upper()
    return KeywordFinding(
        "work-after-exclusive-lock",
        f"this {first} runs while the transaction still holds ACCESS EXCLUSIVE on {table} "
        f"(taken earlier in it): every read and write of {table} keeps waiting until COMMIT",
        "COMMIT right after the statement that needs the lock; do the rest in a transaction "
        "of its own",
        table,
    )


def _actions(toks: list[Token], words: list[str]) -> list[list[tuple[int, str]]]:
    """ALTER TABLE's subcommands, as (token index, word) lists."""
    _, i = name_at(toks, _after_alter_table(words))
    spans = action_spans(toks, i)
    return [[(k, words[k]) for k in span] for span in spans if span]


def _column_of(toks: list[Token], at: list[int]) -> str:
    """The column an ALTER [COLUMN] c ... subcommand names."""
    j = 1 if len(at) > 1 and toks[at[1]].text.upper() == "COLUMN" else 0
    return name_at(toks, at[1 + j])[0] if len(at) > 1 + j else "?"


def _fk_columns(toks: list[Token], at: list[int], act: list[str]) -> str:
    """The referencing columns of ADD [CONSTRAINT c] FOREIGN KEY (a, b) / ADD COLUMN c ...
    REFERENCES, as "a, b"."""
    if "FOREIGN" in act:
        start = act.index("FOREIGN") + 2  # FOREIGN KEY (
        names: list[str] = []
        k = start
        while k < len(at) and toks[at[k]].text != ")":
            if toks[at[k]].kind in ("word", "quoted_identifier"):
                names.append(toks[at[k]].text.strip('"').lower())
            k += 1
        return ", ".join(names)
    j = 2 if len(act) > 1 and act[1] == "COLUMN" else 1
    if act[j : j + 3] == ["IF", "NOT", "EXISTS"]:
        j += 3
    if act[1:2] == ["CONSTRAINT"]:
        return ""  # ADD CONSTRAINT c ... without FOREIGN KEY: not a foreign key's columns
    return name_at(toks, at[j])[0].lower() if len(at) > j else ""


def _note_index(toks: list[Token], words: list[str], table: str, ctx: Context) -> None:
    if "ON" not in words:
        return
    i = words.index("ON") + 1
    _, i = name_at(toks, i + (1 if words[i : i + 1] == ["ONLY"] else 0))
    if i < len(words) and words[i] == "USING":
        i += 2
    if i < len(toks) and toks[i].text == "(":
        names: list[str] = []
        k = i + 1
        while k < len(toks) and toks[k].text != ")":
            if toks[k].kind in ("word", "quoted_identifier") and toks[k - 1].text in ("(", ","):
                names.append(toks[k].text.strip('"').lower())
            k += 1
        # An index on (a, b) serves a foreign key on (a) and on (a, b): its leading columns.
        for n in range(1, len(names) + 1):
            ctx.indexed.add(f"{_bare(table)}({', '.join(names[:n])})")


def _advance(
    toks: list[Token], words: list[str], prediction: Prediction | None, ctx: Context
) -> None:
    first = words[0]
    if first in ("BEGIN", "START"):
        ctx.in_transaction = True
    elif first in _ENDS:
        ctx.in_transaction = False
        ctx.exclusive = None
    elif first == "SET" and "LOCK_TIMEOUT" in words[1:3]:
        value = toks[-1].text.strip("'\"").lower()
        ctx.lock_timeout = value not in ("0", "default")
    elif first == "CREATE" and "INDEX" in words[1:3] and prediction and prediction.tables:
        _note_index(toks, words, prediction.tables[0], ctx)
    elif first == "CREATE" and "TABLE" in words[1:5]:
        at = words.index("TABLE") + 1
        if words[at : at + 3] == ["IF", "NOT", "EXISTS"]:
            at += 3
        name = name_at(toks, at)[0]
        if name:
            ctx.created.add(_bare(name))
            _note_table_keys(toks, words, name, ctx)
    if (
        prediction is not None
        and prediction.blocks_reads
        and ctx.in_transaction
        and prediction.tables
        and not ctx.is_new(prediction.tables[0])
        and first != "DROP"
    ):
        ctx.exclusive = prediction.tables[0]


def _table_parts(toks: list[Token]) -> list[list[int]]:
    """A CREATE TABLE's elements (columns and table constraints), as token index lists."""
    opening = next((k for k, t in enumerate(toks) if t.text == "("), None)
    if opening is None:
        return []
    parts: list[list[int]] = [[]]
    depth = 0
    for k in range(opening + 1, len(toks)):
        depth += {"(": 1, ")": -1}.get(toks[k].text, 0)
        if depth < 0:
            break
        if toks[k].text == "," and depth == 0:
            parts.append([])
        else:
            parts[-1].append(k)
    return [part for part in parts if part]


def _after_alter_table(words: list[str]) -> int:
    """Where the table's name starts in ALTER TABLE [IF EXISTS] [ONLY] name."""
    i = 2
    while i < len(words) and words[i] in ("IF", "EXISTS", "ONLY"):
        i += 1
    return i


def _alter_target(toks: list[Token], words: list[str]) -> str:
    return name_at(toks, _after_alter_table(words))[0]


def _note_table_keys(toks: list[Token], words: list[str], table: str, ctx: Context) -> None:
    """A new table's PRIMARY KEY and UNIQUE columns are indexed (their leading columns serve a
    foreign key)."""
    for part in _table_parts(toks):
        said = [words[k] for k in part]
        if not part or not ({"PRIMARY", "UNIQUE"} & set(said)):
            continue
        if said[0] in ("PRIMARY", "UNIQUE", "CONSTRAINT"):
            # A table constraint: PRIMARY KEY (a, b) / UNIQUE (a) / CONSTRAINT c UNIQUE (a).
            opened = next((n for n, k in enumerate(part) if toks[k].text == "("), len(part))
            inside = [
                toks[k].text.strip('"').lower()
                for k in part[opened + 1 :]
                if toks[k].kind in ("word", "quoted_identifier") and toks[k - 1].text in ("(", ",")
            ]
        else:
            inside = [toks[part[0]].text.strip('"').lower()]  # a column's own PRIMARY KEY
        for n in range(1, len(inside) + 1):
            ctx.indexed.add(f"{_bare(table)}({', '.join(inside[:n])})")


def _sqlite(toks: list[Token], words: list[str]) -> list[KeywordFinding]:
    if words[:2] != ["ALTER", "TABLE"]:
        return []
    i = 2
    _, i = name_at(toks, i)
    action = next((w for w in words[i:] if w), "")
    if action in _SQLITE_ALTERS:
        then = next((w for w in words[i + 1 :] if w), "")
        if action == "ADD" and then in ("CONSTRAINT", "PRIMARY", "UNIQUE", "CHECK", "FOREIGN"):
            return [_sqlite_cannot(toks, "add a constraint to an existing table")]
        if action == "DROP" and then in ("CONSTRAINT", "PRIMARY"):
            return [_sqlite_cannot(toks, "drop a constraint")]
        return []
    what = (
        "change a column (its type, default or NOT NULL)" if action == "ALTER" else f"do {action}"
    )
    return [_sqlite_cannot(toks, what)]


def _sqlite_cannot(toks: list[Token], what: str) -> KeywordFinding:
    table = name_at(toks, 2)[0] or None
    return KeywordFinding(
        "sqlite-alter-limit",
        f"SQLite's ALTER TABLE cannot {what}: it only renames, adds a column or drops one, so "
        "this statement fails",
        _SQLITE_REBUILD,
        table,
    )
