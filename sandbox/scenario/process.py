"""Process checks: how the learner worked, judged from the statements they actually ran.

A data check asks whether the rows are right; a learner can get them right the wrong way (a
total typed in by hand, two autocommitted halves of a transfer, a COMMIT before the rollback).
These judge the executions after the breakage, as the timeline recorded them: which session
ran what, inside which transaction, and how that transaction ended. Nothing the learner says
about their work counts, only what the engine was sent and answered.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sandbox.outcome import Status, TxState
from sandbox.sqlkind import TxControl

if TYPE_CHECKING:
    from sqlglot import exp  # imported at run time only where a statement is parsed

    from sandbox.conductor import Execution
    from sandbox.scenario.model import Process

# What each kind asks for, in the words a learner reads next to a failed check.
WANTED = {
    "one-transaction": "the writes in one transaction (BEGIN … COMMIT), committed",
    "no-blind-write": "each write computed from the row itself (col = col + x), after a "
    "locking read, or guarded by a version check",
    "savepoint": "ROLLBACK TO SAVEPOINT",
    "rollback-first": "ROLLBACK before any COMMIT",
    "committed": "a COMMIT that saved the transaction",
    "forbid": "none of the statements it forbids",
    "require": "the statement it asks for",
    "isolated": "the reads (and the fix) in one transaction at the isolation level asked for",
    "no-repeat": "one statement over the whole set, not the same statement once per row",
    "apart": "that work in a transaction of its own, not in the one still holding the lock",
}
# Isolation levels, weakest first (PostgreSQL runs READ UNCOMMITTED as READ COMMITTED).
LEVELS = ("read uncommitted", "read committed", "repeatable read", "serializable")
_LEVEL = re.compile(
    r"ISOLATION\s+LEVEL\s+(READ\s+UNCOMMITTED|READ\s+COMMITTED|REPEATABLE\s+READ|SERIALIZABLE)",
    re.IGNORECASE,
)
_DEFAULT_LEVEL = re.compile(
    r"^\s*SET\s+(SESSION\s+CHARACTERISTICS\s+AS\s+TRANSACTION\s+ISOLATION\s+LEVEL|"
    r"(SESSION\s+)?default_transaction_isolation\s*(=|TO))",
    re.IGNORECASE,
)
_SET_TRANSACTION = re.compile(r"^\s*SET\s+TRANSACTION\b", re.IGNORECASE)


def _level_in(text: str) -> str | None:
    """The isolation level a statement names (`... ISOLATION LEVEL X`, or 'x' set as the
    default_transaction_isolation), lower case."""
    match = _LEVEL.search(text)
    if match:
        return " ".join(match.group(1).lower().split())
    quoted = re.search(r"'([a-z ]+)'", text, re.IGNORECASE)
    named = " ".join(quoted.group(1).lower().split()) if quoted else ""
    return named if named in LEVELS else None


@dataclass(frozen=True)
class Verdict:
    passed: bool
    detail: str  # what was seen, in a line


@dataclass
class _Tx:
    """A transaction as the learner's statements lived through it."""

    session: str
    opener: Execution | None  # its BEGIN; None for a statement saved on its own (autocommit)
    statements: list[Execution] = field(default_factory=list)
    end: str | None = None  # "commit", "rollback", or None while it is open
    level: str = "serializable"  # its isolation level (SQLite's transactions are serializable)

    @property
    def autocommit(self) -> bool:
        return self.opener is None


def _flat(text: str, limit: int = 70) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _ran(execution: Execution) -> bool:
    outcome = execution.outcome
    # A later page of a query is the app re-reading, not the learner acting.
    return outcome is not None and outcome.status is Status.OK and execution.page_of is None


def _is_write(execution: Execution) -> bool:
    return execution.meta is None and execution.kind.changes_data


def transactions(
    executions: Sequence[Execution], dialect: str = "sqlite", levels: dict[str, str] | None = None
) -> dict[int, _Tx]:
    """Each execution's transaction (by execution index), every session followed from its
    first statement, so a transaction the breakage left open is the one the learner finishes.

    On PostgreSQL each transaction's isolation level is followed too: the session's default
    (`levels`, as the scenario sets it, then as SET SESSION CHARACTERISTICS changes it), or
    the level its BEGIN or a SET TRANSACTION names.
    """
    found: dict[int, _Tx] = {}
    current: dict[str, _Tx] = {}
    defaults = dict(levels or {})
    for execution in executions:
        outcome = execution.outcome
        if execution.meta == "restore" and outcome is not None and outcome.status is Status.OK:
            for tx in current.values():  # a restore rolls every open transaction back
                tx.end = "rollback"
            current.clear()
            continue
        if outcome is None or execution.meta is not None:
            continue
        who = execution.session
        before, after = outcome.tx_before, outcome.tx_after
        text = execution.statement.text
        default = "serializable" if dialect == "sqlite" else defaults.get(who, "read committed")
        if before is TxState.IDLE:
            if after is TxState.IDLE:
                tx = _Tx(who, None, end="commit" if outcome.status is Status.OK else "rollback")
                tx.level = default
            else:
                tx = _Tx(who, execution)
                named = _level_in(text) if execution.kind.tx_control is TxControl.BEGIN else None
                tx.level = "serializable" if dialect == "sqlite" else named or default
                current[who] = tx
        else:
            tx = current.get(who) or _Tx(who, execution, level=default)
            current[who] = tx
            if dialect != "sqlite" and outcome.status is Status.OK and _SET_TRANSACTION.match(text):
                tx.level = _level_in(text) or tx.level
        if dialect != "sqlite" and outcome.status is Status.OK and _DEFAULT_LEVEL.match(text):
            defaults[who] = _level_in(text) or defaults.get(who, "read committed")
        tx.statements.append(execution)
        found[execution.index] = tx
        if before is not TxState.IDLE and after is TxState.IDLE:
            saved = (
                execution.kind.tx_control is TxControl.COMMIT
                and outcome.status is Status.OK
                and outcome.tag != "ROLLBACK"
            )
            tx.end = "commit" if saved else "rollback"
            current.pop(who, None)
    return found


def judge(
    process: Process,
    executions: Sequence[Execution],
    since: int,
    dialect: str,
    levels: dict[str, str] | None = None,
) -> Verdict:
    """Whether the learner's part (executions[since:]) worked the way `process` asks.

    `levels`: each session's isolation level as the scenario sets it (PostgreSQL).
    """
    txs = transactions(executions, dialect, levels)
    mine = [
        e for e in executions[since:] if process.session is None or e.session == process.session
    ]
    kind = process.kind
    if kind == "one-transaction":
        return _one_transaction(process, mine, txs, dialect)
    if kind == "no-blind-write":
        return _no_blind_write(process, mine, txs, dialect)
    if kind == "isolated":
        return _isolated(process, mine, txs, dialect)
    if kind == "savepoint":
        for e in mine:
            if _ran(e) and e.kind.tx_control is TxControl.ROLLBACK_TO:
                return Verdict(True, f"{e.session} ran {_flat(e.statement.text)}")
        return Verdict(False, "no ROLLBACK TO SAVEPOINT ran")
    if kind == "rollback-first":
        return _rollback_first(mine)
    if kind == "committed":
        for e in mine:
            tx = txs.get(e.index)
            if _ran(e) and e.kind.tx_control is TxControl.COMMIT and tx and tx.end == "commit":
                return Verdict(True, f"{e.session} committed ({_flat(e.statement.text)})")
        where = f" in session {process.session}" if process.session else ""
        return Verdict(False, f"no COMMIT saved a transaction{where}")
    if kind == "no-repeat":
        return _no_repeat(process, mine, dialect)
    if kind == "apart":
        # The lock may have been taken before the learner's turn (a breakage's open
        # transaction): finishing that transaction's work is the very thing judged.
        theirs = [e for e in executions if process.session is None or e.session == process.session]
        return _apart(process, mine, theirs, txs)
    if kind in ("forbid", "require"):
        pattern = re.compile(process.pattern or "", re.IGNORECASE)
        hits = [e for e in mine if _ran(e) and pattern.search(" ".join(e.statement.text.split()))]
        if kind == "forbid":
            if hits:
                return Verdict(False, f"{hits[0].session} ran {_flat(hits[0].statement.text)}")
            # Judged on work done: with nothing run yet there is no way of working to credit.
            if not any(_ran(e) for e in mine):
                return Verdict(False, "nothing has been run yet")
            return Verdict(True, "none of the statements it forbids ran")
        return _required(process, mine, hits)
    raise ValueError(f"unknown process check {kind!r}")  # the loader admits no other


def shape(text: str, dialect: str) -> str:
    """A statement with its values taken out: what a loop sends again and again."""
    from sandbox.statements import tokens

    kept = [
        "?" if t.kind in ("number", "string", "dollar_string", "parameter") else t.text.upper()
        for t in tokens(text, "postgres" if dialect == "postgres" else "sqlite")
    ]
    return " ".join(kept)


def _no_repeat(process: Process, mine: list[Execution], dialect: str) -> Verdict:
    """`no-repeat`: no statement ran with more than `times` different values: one per row
    of a set (an N+1 loop by hand) where one statement over the set would do. Running the
    very same statement again (a second look) is no loop and is not counted."""
    ran = [e for e in mine if _ran(e) and e.meta is None and e.kind.tx_control is None]
    if not ran:
        return Verdict(False, "nothing has been run yet")
    values: dict[str, set[str]] = {}
    first: dict[str, Execution] = {}
    for e in ran:
        key = shape(e.statement.text, dialect)
        values.setdefault(key, set()).add(" ".join(e.statement.text.split()))
        first.setdefault(key, e)
    key, texts = max(values.items(), key=lambda item: len(item[1]))
    if len(texts) > process.times:
        e = first[key]
        return Verdict(
            False,
            f"{e.session} ran {_flat(e.statement.text)} with {len(texts)} different values, "
            "once per row: one statement over the set does it",
        )
    return Verdict(True, f"no statement ran once per row (at most {len(texts)} values)")


def _required(process: Process, mine: list[Execution], hits: list[Execution]) -> Verdict:
    """`require`: a match ran, and where `before` / `after` say so, in its place: before the
    first statement matching `before`, after the last matching `after` (a match anywhere
    will do when no such statement ran)."""
    if not hits:
        return Verdict(False, "no statement of the kind it asks for ran")

    def matching(pattern: str | None) -> list[Execution]:
        if pattern is None:
            return []
        found = re.compile(pattern, re.IGNORECASE)
        return [e for e in mine if _ran(e) and found.search(" ".join(e.statement.text.split()))]

    first_of = matching(process.before)
    last_of = matching(process.after)
    placed = [
        e
        for e in hits
        if (not first_of or e.index < first_of[0].index)
        and (not last_of or e.index > last_of[-1].index)
    ]
    if placed:
        return Verdict(True, f"{placed[0].session} ran {_flat(placed[0].statement.text)}")
    if first_of and all(e.index > first_of[0].index for e in hits):
        return Verdict(
            False,
            f"{hits[0].session} ran {_flat(hits[0].statement.text)} only after "
            f"{_flat(first_of[0].statement.text)}",
        )
    return Verdict(
        False,
        f"{hits[-1].session} ran {_flat(hits[-1].statement.text)} only before "
        f"{_flat(last_of[-1].statement.text)}",
    )


def _apart(
    process: Process, mine: list[Execution], everything: list[Execution], txs: dict[int, _Tx]
) -> Verdict:
    """`apart`: the statements matching `pattern` ran, and none of them in the transaction of
    an earlier statement matching `after` (the migration lab: work done while an ACCESS
    EXCLUSIVE lock is still held keeps everyone else waiting until COMMIT)."""

    def matching(pattern: str | None, among: list[Execution]) -> list[Execution]:
        found = re.compile(pattern or "", re.IGNORECASE)
        return [e for e in among if _ran(e) and found.search(" ".join(e.statement.text.split()))]

    hits, locks = matching(process.pattern, mine), matching(process.after, everything)
    if not hits or not locks:
        return Verdict(False, "the statements it judges did not both run")
    for hit in hits:
        for lock in locks:
            same = txs.get(hit.index) is not None and txs.get(hit.index) is txs.get(lock.index)
            if lock.index < hit.index and same:
                return Verdict(
                    False,
                    f"{hit.session} ran {_flat(hit.statement.text)} in the same transaction "
                    f"as {_flat(lock.statement.text)}",
                )
    return Verdict(True, f"{hits[0].session} ran {_flat(hits[0].statement.text)} on its own")


def _table_of(
    execution: Execution, dialect: str
) -> tuple[str | None, exp.Update | exp.Insert | exp.Delete | None]:
    """The table a write changes (lower case, unqualified) and its parsed tree; (None, None)
    for anything else."""
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(execution.statement.text, read=dialect)
    except Exception:  # sqlglot's parse errors have many types; such a write names no table
        return None, None
    if not isinstance(tree, exp.Update | exp.Insert | exp.Delete):
        return None, None
    target = tree.args.get("this")
    table = target if isinstance(target, exp.Table) else None
    if table is None and isinstance(target, exp.Expression):
        table = target.find(exp.Table)  # INSERT INTO t (a, b): the table inside the schema
    return (table.name.lower() if isinstance(table, exp.Table) else None), tree


def _one_transaction(
    process: Process, mine: list[Execution], txs: dict[int, _Tx], dialect: str
) -> Verdict:
    wanted = {t.lower() for t in process.tables}
    writes = [
        e
        for e in mine
        if _ran(e)
        and _is_write(e)
        and (not wanted or _table_of(e, dialect)[0] in wanted)
        # A write its transaction rolled back changed nothing: a false start, not the fix.
        and txs[e.index].end != "rollback"
    ]
    if not writes:
        return Verdict(False, "no write of the fix was saved")
    alone = [e for e in writes if txs[e.index].autocommit]
    if alone:
        return Verdict(
            False,
            f"{alone[0].session} ran {_flat(alone[0].statement.text)} on its own "
            "(autocommit), outside BEGIN … COMMIT",
        )
    groups = {id(txs[e.index]) for e in writes}
    if len(groups) > 1:
        return Verdict(False, f"the writes were split over {len(groups)} transactions")
    tx = txs[writes[0].index]
    if tx.end != "commit":
        return Verdict(False, f"the transaction in session {tx.session} was never committed")
    count = f"{len(writes)} write{'s' if len(writes) != 1 else ''}"
    return Verdict(True, f"{count} in one transaction in session {tx.session}, committed")


def _no_blind_write(
    process: Process, mine: list[Execution], txs: dict[int, _Tx], dialect: str
) -> Verdict:
    from sqlglot import exp

    table = (process.table or "").lower()
    column = (process.column or "").lower()
    version = (process.version or "").lower()
    safe = 0
    for e in mine:
        if not (_ran(e) and e.kind.keyword == "UPDATE"):
            continue
        name, tree = _table_of(e, dialect)
        if name != table or not isinstance(tree, exp.Update):
            continue
        assignment = next(
            (
                a
                for a in tree.expressions
                if isinstance(a, exp.EQ)
                and isinstance(a.this, exp.Column)
                and a.this.name.lower() == column
            ),
            None,
        )
        if assignment is None:
            continue
        tx = txs[e.index]
        if tx.end == "rollback":
            continue  # undone: it stored nothing
        if _reason_safe(e, assignment.expression, tree, tx, version):
            safe += 1
            continue
        return Verdict(
            False,
            f"{e.session} ran {_flat(e.statement.text)}: it stores a value worked out before "
            "the statement, which may overwrite a change made since",
        )
    if not safe:
        return Verdict(False, f"no UPDATE of {table}.{column} ran")
    return Verdict(True, f"every UPDATE of {table}.{column} worked from the current row")


def _reason_safe(
    execution: Execution, value: exp.Expression, tree: exp.Update, tx: _Tx, version: str
) -> bool:
    """Whether an UPDATE's new value cannot overwrite a change it never saw."""
    from sqlglot import exp

    if value.find(exp.Column) is not None:
        return True  # computed from the row (or other data) in the same statement
    where = tree.args.get("where")
    if version and where is not None:
        for comparison in where.find_all(exp.EQ):
            if any(c.name.lower() == version for c in comparison.find_all(exp.Column)):
                return True  # a version check: it changes nothing if the row moved on
    if tx.autocommit:
        return False
    earlier = tx.statements[: tx.statements.index(execution)]
    if any(_ran(e) and e.kind.locking for e in earlier):
        return True  # SELECT … FOR UPDATE held the row from the read to the write
    opener = tx.opener
    if opener is not None and opener.kind.takes_write_lock:
        return True  # SQLite BEGIN IMMEDIATE: nobody else writes until this one ends
    read_first = any(_ran(e) and e.kind.read_only and e.meta is None for e in earlier)
    # At REPEATABLE READ or SERIALIZABLE, a write over a row changed since the read fails.
    return _at_least(tx.level, "repeatable read") and read_first


def _at_least(level: str, wanted: str) -> bool:
    return LEVELS.index(level) >= LEVELS.index(wanted) if level in LEVELS else False


def _reads(execution: Execution, tables: set[str], dialect: str) -> bool:
    """A query that ran and reads one of `tables` (any table when none are named)."""
    if not (_ran(execution) and execution.meta is None and execution.kind.read_only):
        return False
    if execution.kind.tx_control is not None or execution.kind.keyword in ("SET", "SHOW"):
        return False
    if not tables:
        return True
    import sqlglot
    from sqlglot import exp

    try:
        tree = sqlglot.parse_one(execution.statement.text, read=dialect)
    except Exception:  # sqlglot's parse errors have many types: a read it cannot name
        return False
    return any(t.name.lower() in tables for t in tree.find_all(exp.Table))


def _isolated(
    process: Process, mine: list[Execution], txs: dict[int, _Tx], dialect: str
) -> Verdict:
    """Reads (and, with `with_writes`, every kept write) in one transaction at a level."""
    wanted = process.level or "repeatable read"
    tables = {t.lower() for t in process.tables}
    what = f"reads of {', '.join(sorted(tables))}" if tables else "reads"
    ran = {e.index for e in mine}
    best: _Tx | None = None
    count = 0
    for tx in {id(txs[e.index]): txs[e.index] for e in mine if e.index in txs}.values():
        reads = sum(1 for e in tx.statements if e.index in ran and _reads(e, tables, dialect))
        if reads >= process.reads and _at_least(tx.level, wanted) and not tx.autocommit:
            best, count = tx, reads
            break
    if best is None:
        return Verdict(
            False,
            f"no transaction at {wanted.upper()} or stricter held {process.reads} of the {what}",
        )
    if process.with_writes:
        writes = [e for e in mine if _ran(e) and _is_write(e) and txs[e.index].end != "rollback"]
        outside = [e for e in writes if txs[e.index] is not best]
        if not writes:
            return Verdict(False, "no write of the fix was saved")
        if outside:
            return Verdict(
                False,
                f"{outside[0].session} ran {_flat(outside[0].statement.text)} outside the "
                f"{wanted.upper()} transaction that read",
            )
        if best.end != "commit":
            return Verdict(False, f"the {best.level.upper()} transaction was never committed")
    return Verdict(
        True, f"{count} {what} in one {best.level.upper()} transaction in session {best.session}"
    )


def _rollback_first(mine: list[Execution]) -> Verdict:
    for e in mine:
        outcome = e.outcome
        if outcome is None:
            continue
        if e.meta == "restore" and outcome.status is Status.OK:
            return Verdict(True, f"{e.session} restored a snapshot before any COMMIT")
        ended = outcome.tx_before is not TxState.IDLE and outcome.tx_after is TxState.IDLE
        if not ended:
            continue
        control = e.kind.tx_control
        if control is TxControl.ROLLBACK:
            return Verdict(True, f"{e.session} rolled back first ({_flat(e.statement.text)})")
        if control is TxControl.COMMIT:
            answer = " (the server answered ROLLBACK)" if outcome.tag == "ROLLBACK" else ""
            return Verdict(False, f"{e.session} sent COMMIT first{answer}")
    return Verdict(False, "no transaction was ended")
