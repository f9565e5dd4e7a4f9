"""The table-level lock a statement will take on PostgreSQL, read from its tokens.

The migration rules (sandbox/guard/migration.py) judge a statement by the lock it needs and how
long it will hold it; the lock lab compares this prediction with the locks the session is seen
to hold afterwards (pg_locks). Each form names its source in PostgreSQL's documentation:
"Table-Level Locks" (explicit-locking.html#LOCKING-TABLES) lists which commands take which
mode, and each command's reference page says which lock its subcommands need (ALTER TABLE:
sql-altertable.html, "the lock acquired will be the strictest one required by any
subcommand").

SQLite has no table locks: a writing statement takes the database's one write lock
(RESERVED, then EXCLUSIVE at commit), which `Prediction.mode` says as "write lock".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sandbox.guard.ddl import action_spans, name_at
from sandbox.statements import Dialect, Token

# PostgreSQL's modes, weakest first (explicit-locking.html, Table 13.2). A statement that takes
# several (ALTER TABLE with several subcommands) holds the strictest.
MODES = (
    "ACCESS SHARE",
    "ROW SHARE",
    "ROW EXCLUSIVE",
    "SHARE UPDATE EXCLUSIVE",
    "SHARE",
    "SHARE ROW EXCLUSIVE",
    "EXCLUSIVE",
    "ACCESS EXCLUSIVE",
)
# Modes that block the ordinary writes of application traffic (ROW EXCLUSIVE) while held.
BLOCKS_WRITES = frozenset(MODES[4:])
# ... and those that block its reads too (ACCESS SHARE).
BLOCKS_READS = frozenset({"ACCESS EXCLUSIVE"})

_DOCS = "https://www.postgresql.org/docs/current/"
_TABLE_LOCKS = _DOCS + "explicit-locking.html#LOCKING-TABLES"
_ALTER_TABLE = _DOCS + "sql-altertable.html"

# ALTER TABLE subcommands whose lock is weaker than ACCESS EXCLUSIVE (sql-altertable.html).
_ALTER_WEAKER = {
    ("VALIDATE", "CONSTRAINT"): "SHARE UPDATE EXCLUSIVE",
    ("SET", "STATISTICS"): "SHARE UPDATE EXCLUSIVE",
    ("CLUSTER", "ON"): "SHARE UPDATE EXCLUSIVE",
    ("SET", "WITHOUT", "CLUSTER"): "SHARE UPDATE EXCLUSIVE",
    ("ATTACH", "PARTITION"): "SHARE UPDATE EXCLUSIVE",
    ("ENABLE", "TRIGGER"): "SHARE ROW EXCLUSIVE",
    ("DISABLE", "TRIGGER"): "SHARE ROW EXCLUSIVE",
}
# Storage parameters SET ( ... ) takes SHARE UPDATE EXCLUSIVE for (fillfactor, autovacuum_*,
# toast.*, parallel_workers, ...); anything else in SET ( ... ) is ACCESS EXCLUSIVE.
_STORAGE_PARAMETERS = ("FILLFACTOR", "AUTOVACUUM_", "TOAST", "PARALLEL_WORKERS")


@dataclass(frozen=True)
class Prediction:
    mode: str  # one of MODES, or "write lock" (SQLite)
    tables: tuple[str, ...]  # the relations it locks so (as written)
    source: str  # where PostgreSQL's documentation says so

    @property
    def blocks_writes(self) -> bool:
        return self.mode in BLOCKS_WRITES

    @property
    def blocks_reads(self) -> bool:
        return self.mode in BLOCKS_READS


@dataclass(frozen=True)
class LockCheck:
    """A prediction set against the locks the session was seen to hold after the statement."""

    prediction: Prediction
    confirmed: bool
    seen: dict[str, list[str]]  # each predicted table: the modes held on it (pg_locks' names)

    def to_json(self) -> dict[str, Any]:
        return {
            "predicted": self.prediction.mode,
            "tables": list(self.prediction.tables),
            "source": self.prediction.source,
            "verdict": "confirmed" if self.confirmed else "mismatch",
            "seen": self.seen,
        }

    def summary(self) -> str:
        on = ", ".join(self.prediction.tables)
        if self.confirmed:
            return f"the guard predicted {self.prediction.mode} on {on}: confirmed"
        held = "; ".join(f"{t}: {' + '.join(m) or 'nothing'}" for t, m in self.seen.items())
        return f"the guard predicted {self.prediction.mode} on {on}: mismatch (held {held})"


def lock_name(mode: str) -> str:
    """pg_locks' name for a mode: ACCESS EXCLUSIVE -> AccessExclusiveLock."""
    return "".join(word.capitalize() for word in mode.split()) + "Lock"


def check(sql: str, held: list[tuple[str, str]]) -> LockCheck | None:
    """The prediction for `sql` against `held`, the (relation, pg_locks mode) pairs its
    session holds right after it, inside its transaction (in autocommit nothing is left to
    see). None when there is nothing to compare: no prediction for the statement's form, or
    no lock seen at all."""
    from sandbox.statements import tokens

    prediction = predict(list(tokens(sql, "postgres")), "postgres")
    if prediction is None or not prediction.tables or not held:
        return None
    seen: dict[str, list[str]] = {}
    for table in prediction.tables:
        bare = table.split(".")[-1].strip('"').lower()
        seen[table] = sorted({mode for name, mode in held if name.lower() == bare})
    wanted = lock_name(prediction.mode)
    return LockCheck(prediction, all(wanted in modes for modes in seen.values()), seen)


def _word(token: Token) -> str:
    return token.text.upper() if token.kind == "word" else ""


def _strictest(modes: list[str]) -> str:
    return max(modes, key=MODES.index)


def predict(toks: list[Token], dialect: Dialect) -> Prediction | None:
    """The lock the statement takes on the tables it names; None when this table has no
    entry for its form (a statement that locks no table, or one it does not know)."""
    words = [_word(t) for t in toks]
    if not words:
        return None
    if dialect == "sqlite":
        return _sqlite(toks, words)
    first = words[0]
    if first == "ALTER" and words[1:2] == ["TABLE"]:
        return _alter_table(toks, words)
    if first == "CREATE":
        return _create(toks, words)
    if first == "DROP":
        return _drop(toks, words)
    if first == "TRUNCATE":
        names = _names(toks, _skip(words, 1, "TABLE", "ONLY"))
        return Prediction("ACCESS EXCLUSIVE", names, _TABLE_LOCKS)
    if first in ("VACUUM", "ANALYZE", "ANALYSE", "CLUSTER", "REINDEX", "REFRESH", "LOCK"):
        return _maintenance(toks, words, first)
    if first in ("UPDATE", "DELETE", "INSERT", "MERGE"):
        at = {"UPDATE": 1, "DELETE": 2, "INSERT": 2, "MERGE": 2}[first]
        at = _skip(words, at, "ONLY")
        name, _ = name_at(toks, at)
        return Prediction("ROW EXCLUSIVE", (name,) if name else (), _TABLE_LOCKS)
    return None


def _skip(words: list[str], i: int, *optional: str) -> int:
    while i < len(words) and words[i] in optional:
        i += 1
    return i


def _names(toks: list[Token], i: int) -> tuple[str, ...]:
    names: list[str] = []
    while i < len(toks):
        name, i = name_at(toks, i)
        if not name:
            break
        names.append(name)
        if i < len(toks) and toks[i].text == ",":
            i += 1
            continue
        break
    return tuple(names)


def _alter_table(toks: list[Token], words: list[str]) -> Prediction:
    i = _skip(words, 2, "IF", "EXISTS", "ONLY")
    if words[2:4] == ["IF", "EXISTS"]:
        i = _skip(words, 4, "ONLY")
    table, i = name_at(toks, i)
    modes: list[str] = []
    also: list[str] = []
    for action in action_spans(toks, i):
        mode, referenced = _alter_action(toks, words, action)
        modes.append(mode)
        also.extend(referenced)
    mode = _strictest(modes) if modes else "ACCESS EXCLUSIVE"
    tables = (table, *also) if table else tuple(also)
    return Prediction(mode, tables, _ALTER_TABLE)


def _alter_action(toks: list[Token], words: list[str], action: list[int]) -> tuple[str, list[str]]:
    """The lock one ALTER TABLE subcommand takes, and any other table it locks."""
    act = [words[i] for i in action]
    for key, mode in _ALTER_WEAKER.items():
        if tuple(act[: len(key)]) == key:
            return mode, []
    if act[:1] == ["ALTER"] and "SET" in act and "STATISTICS" in act:
        return "SHARE UPDATE EXCLUSIVE", []
    if act[:1] == ["SET"] and len(action) > 1 and toks[action[1]].text == "(":
        # SET ( parameter = value, ... ): the first parameter decides, as they come in groups.
        first = next((w for w in act[2:] if w), "")
        if first.startswith(_STORAGE_PARAMETERS):
            return "SHARE UPDATE EXCLUSIVE", []
    if act[:2] == ["DETACH", "PARTITION"] and "CONCURRENTLY" in act:
        return "SHARE UPDATE EXCLUSIVE", []
    if "REFERENCES" in act and act[:1] == ["ADD"] and _is_constraint(act):
        # Adding a foreign key takes SHARE ROW EXCLUSIVE on both tables (sql-altertable.html:
        # "ADD FOREIGN KEY requires a SHARE ROW EXCLUSIVE lock on the referenced table").
        referenced = name_at(toks, action[act.index("REFERENCES") + 1])[0]
        return "SHARE ROW EXCLUSIVE", [referenced] if referenced else []
    return "ACCESS EXCLUSIVE", []


def _is_constraint(act: list[str]) -> bool:
    return act[1:2] in (["CONSTRAINT"], ["FOREIGN"], ["CHECK"], ["UNIQUE"], ["PRIMARY"])


def _create(toks: list[Token], words: list[str]) -> Prediction | None:
    i = _skip(words, 1, "UNIQUE")
    if words[i : i + 1] == ["INDEX"]:
        concurrently = words[i + 1 : i + 2] == ["CONCURRENTLY"]
        on = words.index("ON") + 1 if "ON" in words else None
        table = name_at(toks, _skip(words, on, "ONLY"))[0] if on is not None else ""
        mode = "SHARE UPDATE EXCLUSIVE" if concurrently else "SHARE"
        return Prediction(mode, (table,) if table else (), _DOCS + "sql-createindex.html")
    if words[i : i + 1] == ["TRIGGER"] or words[1:4] == ["OR", "REPLACE", "TRIGGER"]:
        on = words.index("ON") + 1 if "ON" in words else None
        table = name_at(toks, on)[0] if on is not None else ""
        return Prediction("SHARE ROW EXCLUSIVE", (table,) if table else (), _TABLE_LOCKS)
    return None


def _drop(toks: list[Token], words: list[str]) -> Prediction | None:
    if words[1:2] == ["TABLE"]:
        names = _names(toks, _skip(words, 2, "IF", "EXISTS"))
        return Prediction("ACCESS EXCLUSIVE", names, _TABLE_LOCKS)
    if words[1:2] == ["INDEX"]:
        concurrently = words[2:3] == ["CONCURRENTLY"]
        names = _names(toks, _skip(words, 3 if concurrently else 2, "IF", "EXISTS"))
        # The index's table is locked too, in the same mode (sql-dropindex.html).
        mode = "SHARE UPDATE EXCLUSIVE" if concurrently else "ACCESS EXCLUSIVE"
        return Prediction(mode, names, _DOCS + "sql-dropindex.html")
    return None


def _maintenance(toks: list[Token], words: list[str], first: str) -> Prediction | None:
    if first == "LOCK":
        i = _skip(words, 1, "TABLE", "ONLY")
        names = _names(toks, i)
        mode = "ACCESS EXCLUSIVE"
        if "IN" in words and "MODE" in words:
            spelled = " ".join(words[words.index("IN") + 1 : words.index("MODE")])
            mode = spelled if spelled in MODES else mode
        return Prediction(mode, names, _DOCS + "sql-lock.html")
    if first == "VACUUM":
        # VACUUM [FULL] [FREEZE] [VERBOSE] [ANALYZE] tables, or VACUUM (FULL, ...) tables.
        i, options = 1, []
        if i < len(toks) and toks[i].text == "(":
            while i < len(toks) and toks[i].text != ")":
                options.append(words[i])
                i += 1
            i += 1
            full = "FULL" in options and not {"FALSE", "OFF"} & set(options)
        else:
            i = _skip(words, 1, "FULL", "FREEZE", "VERBOSE", "ANALYZE", "ANALYSE")
            full = "FULL" in words[1:i]
        mode = "ACCESS EXCLUSIVE" if full else "SHARE UPDATE EXCLUSIVE"
        return Prediction(mode, _names(toks, i), _TABLE_LOCKS)
    if first in ("ANALYZE", "ANALYSE"):
        i = _skip(words, 1, "VERBOSE")
        return Prediction("SHARE UPDATE EXCLUSIVE", _names(toks, i), _TABLE_LOCKS)
    if first == "CLUSTER":
        i = _skip(words, 1, "VERBOSE")
        return Prediction("ACCESS EXCLUSIVE", _names(toks, i), _TABLE_LOCKS)
    if first == "REINDEX":
        concurrently = "CONCURRENTLY" in words
        kind = words[1] if len(words) > 1 else ""
        i = _skip(words, 2, "CONCURRENTLY")
        mode = "SHARE UPDATE EXCLUSIVE" if concurrently else "SHARE"
        if kind == "INDEX" and not concurrently:
            mode = "ACCESS EXCLUSIVE"  # on the index itself; its table gets SHARE
        return Prediction(mode, _names(toks, i), _DOCS + "sql-reindex.html")
    if first == "REFRESH" and words[1:3] == ["MATERIALIZED", "VIEW"]:
        concurrently = words[3:4] == ["CONCURRENTLY"]
        names = _names(toks, 4 if concurrently else 3)
        mode = "EXCLUSIVE" if concurrently else "ACCESS EXCLUSIVE"
        return Prediction(mode, names, _DOCS + "sql-refreshmaterializedview.html")
    return None


_SQLITE_WRITES = frozenset(
    {"INSERT", "UPDATE", "DELETE", "REPLACE", "CREATE", "DROP", "ALTER", "VACUUM", "REINDEX"}
)


def _sqlite(toks: list[Token], words: list[str]) -> Prediction | None:
    if words[0] not in _SQLITE_WRITES:
        return None
    return Prediction("write lock", (), "https://www.sqlite.org/lockingv3.html")
