"""What a session's locks look like from outside: the relation locks it holds after a
statement, the tables and indexes a statement rewrote, and the queue a waiting statement
stands in.

All of it is read by the PostgreSQL target on the watcher's own connection (never on the
learner's session, whose transaction a question would change); this module only holds the
records and says them in words. Nothing here imports textual or a driver.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sandbox.transcript import plural

# pg_class.relkind in words; "new" is a relation this session's open transaction created,
# which no other connection (the watcher's included) can see in the catalog yet.
RELKINDS = {
    "r": "table",
    "p": "partitioned table",
    "i": "index",
    "I": "partitioned index",
    "S": "sequence",
    "t": "toast",
    "v": "view",
    "m": "materialized view",
    "c": "composite type",
    "f": "foreign table",
}
NEW = "new"
_BELONGS = ("index", "partitioned index", "toast")  # said with the table they serve


@dataclass(frozen=True)
class HeldLock:
    """One granted relation lock of a session."""

    relation: str | None  # its name; None for a relation only the holder's transaction sees
    mode: str
    kind: str  # a RELKINDS word, or NEW
    table: str | None = None  # the table an index or TOAST relation belongs to
    oid: int | None = None  # only for NEW: nothing else names it

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"mode": self.mode, "relation": self.relation, "kind": self.kind}
        if self.table is not None:
            data["table"] = self.table
        if self.oid is not None:
            data["oid"] = self.oid
        return data


@dataclass(frozen=True)
class RelationFile:
    """A relation and the file that holds its data (pg_class.relfilenode)."""

    name: str
    kind: str
    filenode: int
    table: str | None = None


@dataclass(frozen=True)
class Rewrite:
    """A relation whose data a statement wrote out anew: its relfilenode changed."""

    relation: str
    kind: str
    before: int
    after: int
    table: str | None = None
    # Where the change was seen: "statement" (right after it, in autocommit) or "commit" (a
    # change inside a transaction is visible to other connections only once it commits).
    seen: str = "statement"

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "relation": self.relation,
            "kind": self.kind,
            "before": self.before,
            "after": self.after,
            "seen": self.seen,
        }
        if self.table is not None:
            data["table"] = self.table
        return data


@dataclass(frozen=True)
class QueuePlace:
    """One session ahead of a waiting statement for the lock it wants."""

    session: str
    holds: tuple[str, ...] = ()  # modes it holds on that lock (it holds the lock up)
    wants: str | None = None  # the mode it waits for there itself (it is queued ahead)
    waits_for: tuple[str, ...] = ()  # whom its own wait is for
    # pg_locks' locktype of the lock in question: the modes held are worth saying for a
    # table's lock; on a transaction id (a row lock) "holds ExclusiveLock" only confuses.
    locktype: str = "relation"

    def to_json(self) -> dict[str, Any]:
        return {
            "session": self.session,
            "holds": list(self.holds),
            "wants": self.wants,
            "waits_for": list(self.waits_for),
        }


@dataclass
class WaitSpan:
    """One lock wait of a statement, start to end (elapsed ms on the run's timeline)."""

    blocked_by: list[str]
    lock: str | None  # the lock it wants, in words (PostgreSQL)
    said: str  # whom and what it waits for, as the timeline says it ("a lock held by A …")
    started_ms: float
    queue: list[QueuePlace] = field(default_factory=list)
    ended_ms: float | None = None
    # What it said before, when the queue moved on during the wait (a waiter ahead of it
    # became the holder), oldest first.
    earlier: list[str] = field(default_factory=list)

    @property
    def waited_ms(self) -> float | None:
        return None if self.ended_ms is None else max(0.0, self.ended_ms - self.started_ms)

    def to_json(self) -> dict[str, Any]:
        waited = self.waited_ms
        return {
            "blocked_by": list(self.blocked_by),
            "lock": self.lock,
            "queue": [place.to_json() for place in self.queue],
            "described": [*self.earlier, self.said],
            "started_ms": round(self.started_ms, 3),
            "ended_ms": None if self.ended_ms is None else round(self.ended_ms, 3),
            "waited_ms": None if waited is None else round(waited, 3),
        }

    def summary(self) -> str:
        """For a report: "waited 19 ms for a lock held by A (…)"."""
        waited = self.waited_ms
        how_long = f" {waited:.0f} ms" if waited is not None else ""
        return f"waited{how_long} for " + "; then for ".join([*self.earlier, self.said])


# ------------------------------------------------------------------------------ in words


def _modes(modes: Iterable[str]) -> str:
    return " + ".join(sorted(set(modes), key=_strength))


# PostgreSQL's table lock modes, weakest first: the order a learner reads them in.
_ORDER = (
    "AccessShareLock",
    "RowShareLock",
    "RowExclusiveLock",
    "ShareUpdateExclusiveLock",
    "ShareLock",
    "ShareRowExclusiveLock",
    "ExclusiveLock",
    "AccessExclusiveLock",
)


def _strength(mode: str) -> tuple[int, str]:
    return (_ORDER.index(mode) if mode in _ORDER else len(_ORDER), mode)


def held_summary(locks: Sequence[HeldLock]) -> str:
    """The locks a session holds, short: "AccessExclusiveLock on accounts (and its 2
    indexes)"; an index or TOAST relation is said with its table, and relations its own
    transaction created (invisible to others) are counted."""
    groups: dict[str, _Group] = {}
    new: set[int | None] = set()
    for lock in sorted(locks, key=lambda x: (x.table or x.relation or "", x.relation or "")):
        if lock.kind == NEW:
            new.add(lock.oid)
            continue
        name = lock.relation or "?"
        if lock.kind in _BELONGS and lock.table:
            group = groups.setdefault(lock.table, _Group(lock.table))
            group.parts.setdefault((lock.kind, name), set()).add(lock.mode)
            continue
        group = groups.setdefault(name, _Group(name))
        if lock.kind not in ("table", "partitioned table"):
            group.label = f"{lock.kind} {name}"
        group.modes.add(lock.mode)
    said = [part for group in groups.values() for part in group.said()]
    if new:
        said.append(f"{plural(len(new), 'new relation')} only its transaction sees before COMMIT")
    return "; ".join(said)


@dataclass
class _Group:
    """A table (or a sequence, a view) and the locks on it and on its indexes."""

    label: str
    modes: set[str] = field(default_factory=set)
    parts: dict[tuple[str, str], set[str]] = field(default_factory=dict)

    def said(self) -> list[str]:
        if not self.modes:  # only an index (or the TOAST storage) of it is locked
            return [f"{_modes(m)} on {k} {n} of {self.label}" for (k, n), m in self.parts.items()]
        same = [part for part, modes in self.parts.items() if modes <= self.modes]
        text = f"{_modes(self.modes)} on {self.label}"
        if same:
            text += f" (and its {_count_parts(same)})"
        others = [
            f"{_modes(m)} on its {k} {n}" for (k, n), m in self.parts.items() if not m <= self.modes
        ]
        return [text, *others]


def _indexes(count: int) -> str:
    return f"{count:,} index" if count == 1 else f"{count:,} indexes"


def _index_names(names: Sequence[str]) -> str:
    """ "index accounts_n", "indexes a, b", or "5 indexes" when naming them is too long."""
    if len(names) == 1:
        return f"index {names[0]}"
    if len(names) <= 3:
        return f"indexes {', '.join(names)}"
    return _indexes(len(names))


def _count_parts(parts: Sequence[tuple[str, str]]) -> str:
    """ "index accounts_pkey", "2 indexes and TOAST storage": a lone index is named."""
    toast = sum(1 for kind, _ in parts if kind == "toast")
    indexes = [name for kind, name in parts if kind != "toast"]
    words = []
    if len(indexes) == 1:
        words.append(f"index {indexes[0]}")
    elif indexes:
        words.append(_indexes(len(indexes)))
    if toast:
        words.append("TOAST storage")
    return " and ".join(words)


def rewrites_summary(rewrites: Sequence[Rewrite]) -> str:
    """ "accounts (relfilenode 16390 → 16412) and its 2 indexes"."""
    tables: list[Rewrite] = []
    parts: dict[str, list[str]] = {}
    loose: list[Rewrite] = []
    for rewrite in rewrites:
        if rewrite.kind in _BELONGS and rewrite.table is not None:
            parts.setdefault(rewrite.table, []).append(rewrite.relation)
        elif rewrite.kind in _BELONGS:
            loose.append(rewrite)
        else:
            tables.append(rewrite)
    said = []
    for rewrite in tables:
        text = f"{rewrite.relation} (relfilenode {rewrite.before} → {rewrite.after})"
        names = parts.pop(rewrite.relation, [])
        if names:
            text += f" and its {_index_names(names)}"
        said.append(text)
    for table, names in parts.items():
        said.append(f"{_index_names(names)} of {table}")
    for rewrite in loose:
        said.append(
            f"{rewrite.kind} {rewrite.relation} (relfilenode {rewrite.before} → {rewrite.after})"
        )
    return ", ".join(said)


def compare_files(
    before: dict[int, RelationFile], after: dict[int, RelationFile], seen: str = "statement"
) -> list[Rewrite]:
    """Relations (present both times) whose data file changed: they were rewritten."""
    found = []
    # An index ALTER TABLE rebuilds because its column changed type is dropped and created
    # again under a new oid: the same name (and table) in the same place is the same index.
    by_name = {(f.name, f.kind, f.table): f for oid, f in after.items() if oid not in before}
    for oid, old in before.items():
        new = after.get(oid) or by_name.get((old.name, old.kind, old.table))
        if new is not None and new.filenode != old.filenode:
            found.append(Rewrite(new.name, new.kind, old.filenode, new.filenode, new.table, seen))
    return sorted(found, key=lambda r: (r.kind in _BELONGS, r.table or r.relation, r.relation))


def mentions(sql: str, rewrite: Rewrite) -> bool:
    """Whether a statement names the rewritten relation (or the table it belongs to)."""
    names = {rewrite.relation, rewrite.table or rewrite.relation}
    return any(re.search(rf"(?<![\w$]){re.escape(n)}(?![\w$])", sql, re.I) for n in names)


def wait_words(
    what: str, blockers: Sequence[str], lock: str | None, queue: Sequence[QueuePlace]
) -> str:
    """Whom and what a statement waits for: "a lock held by A (AccessExclusiveLock on table
    t; A holds AccessShareLock)", or, behind a waiter, "a lock, queued behind B, who waits
    for A (AccessShareLock on table t; B wants AccessExclusiveLock)"."""
    holders = [p for p in queue if p.holds]
    ahead = [p for p in queue if not p.holds and p.wants]
    if not queue or not (holders or ahead):
        held = "held by" if what != "a safe snapshot" else "until these end:"
        said = f" ({lock})" if lock else ""
        return f"{what} {held} {', '.join(blockers)}{said}".replace("  ", " ")
    clauses = []
    if holders:
        clauses.append("held by " + ", ".join(p.session for p in holders))
    for place in ahead:
        behind = f"queued behind {place.session}"
        if place.waits_for:
            behind += f", who waits for {', '.join(place.waits_for)}"
        clauses.append(behind)
    details = [lock] if lock else []
    details += [f"{p.session} holds {_modes(p.holds)}" for p in holders if p.locktype == "relation"]
    details += [f"{p.session} wants {p.wants}" for p in ahead]
    text = f"{what}{'' if holders and not ahead else ','} {'; '.join(clauses)}"
    return text + (f" ({'; '.join(details)})" if details else "")
