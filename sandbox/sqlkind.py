"""What kind of statement this is, read from its leading keywords.

sqlglot misparses transaction control (SAVEPOINT, RELEASE, START TRANSACTION come back as
aliases), so the session classifies by keywords from the lexer, which never fails.
"""

from __future__ import annotations

import enum
import itertools
from dataclasses import dataclass

from sandbox.statements import Dialect, words


class TxControl(enum.StrEnum):
    BEGIN = "begin"
    COMMIT = "commit"
    ROLLBACK = "rollback"
    SAVEPOINT = "savepoint"
    ROLLBACK_TO = "rollback_to"
    RELEASE = "release"


_READ_WORDS = frozenset({"SELECT", "VALUES", "TABLE", "SHOW"})
_WRITE_WORDS = frozenset({"INSERT", "UPDATE", "DELETE", "MERGE", "REPLACE", "UPSERT"})
_LOCKING = frozenset({"UPDATE", "SHARE"})
# Statements that are neither reads nor changes to stored data: settings, locks, maintenance.
_NOT_CHANGES = frozenset(
    {"SET", "RESET", "SHOW", "PRAGMA", "LOCK", "EXPLAIN", "ANALYZE", "VACUUM", "DISCARD",
     "LISTEN", "UNLISTEN", "NOTIFY", "CHECKPOINT", "LOAD"}
)  # fmt: skip


@dataclass(frozen=True)
class StatementKind:
    """Facts about a statement that decide how it is executed and reported."""

    words: tuple[str, ...]
    tx_control: TxControl | None
    read_only: bool  # cannot write or take write locks
    takes_write_lock: bool  # SQLite BEGIN IMMEDIATE / EXCLUSIVE: the write lock up front
    savepoint_name: str | None = None
    locking: bool = False  # SELECT ... FOR UPDATE / SHARE: locks every row it returns

    @property
    def keyword(self) -> str:
        return self.words[0] if self.words else ""

    @property
    def changes_data(self) -> bool:
        """It may change what is stored (DML, DDL): not a read, not transaction control, not a
        session setting or a lock (SET, PRAGMA, LOCK TABLE, SELECT ... FOR UPDATE, ...),
        whatever locks it takes."""
        if self.locking and self.keyword == "SELECT":
            return False  # SELECT ... FOR UPDATE locks rows and changes none
        return not self.read_only and self.tx_control is None and self.keyword not in _NOT_CHANGES

    def streamable(self) -> bool:
        """A query whose rows PostgreSQL can hand out page by page through a cursor."""
        if self.keyword not in {"SELECT", "VALUES", "TABLE", "WITH"}:
            return False
        if not (self.read_only or self.locking):
            return False
        return "INTO" not in self.words  # SELECT ... INTO creates a table


def classify(sql: str, dialect: Dialect) -> StatementKind:
    ws = tuple(words(sql, dialect))
    first = ws[0] if ws else ""
    second = ws[1] if len(ws) > 1 else ""
    control: TxControl | None = None
    savepoint: str | None = None
    if first in {"BEGIN", "START"} and not (first == "START" and second != "TRANSACTION"):
        control = TxControl.BEGIN
    elif first in {"COMMIT", "END"}:
        control = TxControl.COMMIT
    elif first in {"ROLLBACK", "ABORT"}:
        control = TxControl.ROLLBACK_TO if "TO" in ws else TxControl.ROLLBACK
        if control is TxControl.ROLLBACK_TO:
            rest = ws[ws.index("TO") + 1 :]
            rest = rest[1:] if rest[:1] == ("SAVEPOINT",) else rest
            savepoint = rest[0].lower() if rest else None
    elif first == "SAVEPOINT":
        control = TxControl.SAVEPOINT
        savepoint = second.lower() or None
    elif first == "RELEASE":
        control = TxControl.RELEASE
        rest = ws[2:] if second == "SAVEPOINT" else ws[1:]
        savepoint = rest[0].lower() if rest else None

    # FOR UPDATE / FOR SHARE / FOR NO KEY UPDATE / FOR KEY SHARE take row locks and can wait.
    locking = any(
        w == "FOR" and nxt in _LOCKING | {"NO", "KEY"} for w, nxt in itertools.pairwise(ws)
    )
    if control is not None:
        read_only = True
    elif locking:
        read_only = False
    elif first in _READ_WORDS or (first == "EXPLAIN" and "ANALYZE" not in ws):
        read_only = first != "SELECT" or "INTO" not in ws
    elif first == "WITH":
        read_only = not any(w in _WRITE_WORDS for w in ws)
    elif first == "PRAGMA":
        read_only = "=" not in sql and "(" not in sql
    else:
        read_only = False
    takes_write_lock = control is TxControl.BEGIN and second in {"IMMEDIATE", "EXCLUSIVE"}
    return StatementKind(ws, control, read_only, takes_write_lock, savepoint, locking)
