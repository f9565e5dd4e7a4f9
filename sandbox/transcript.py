"""Turn statement outcomes into timeline events a learner can read.

The transaction events are derived from what the engine reported (the state before and after,
and the command tag), not from what the statement claimed to do: a COMMIT that the server
answered with ROLLBACK is recorded as a rollback.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Protocol

from sandbox.outcome import Outcome, Status, TxState
from sandbox.sqlkind import StatementKind, TxControl
from sandbox.timeline import EventKind

if TYPE_CHECKING:
    from sandbox.guard.policy import Review  # a type only: the app imports this module early


class Session(Protocol):
    """Whose statement it was: a SQL session, or a traced program's connection."""

    name: str
    ended_tx_statements: int  # how many statements the transaction that just ended ran


class Timeline(Protocol):
    """Where the events go: the run's timeline, or a trace's view of it."""

    def add(
        self,
        session: str,
        kind: EventKind,
        message: str,
        *,
        statement: int | None = ...,
        **data: Any,
    ) -> Any: ...


def short_sql(sql: str, limit: int = 72) -> str:
    """One line of SQL for a timeline entry."""
    flat = " ".join(sql.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


def page_span(skipped: int, count: int, more: bool) -> str:
    """Which rows of a query a page holds: "rows 501–1,000, more exist"."""
    if not count:
        return f"no rows after row {skipped:,}"
    last = skipped + count
    span = f"row {last:,}" if count == 1 else f"rows {skipped + 1:,}–{last:,}"
    return span + (", more exist" if more else " (the last)")


def summarize(outcome: Outcome) -> str:
    """What a statement did, in a few words."""
    if outcome.error is not None:
        code = f" {outcome.error.code}" if outcome.error.code else ""
        word = "cancelled" if outcome.status is Status.CANCELLED else "error"
        return f"{word}{code}: {outcome.error.message}"
    if outcome.status is not Status.OK:
        # Never sent (cancelled while queued, or its session's connection was gone): the
        # outcome's note says why.
        return str(outcome.status)
    parts: list[str] = []
    if outcome.columns and outcome.skipped is not None:
        parts.append(page_span(outcome.skipped, len(outcome.rows), outcome.more_rows))
    elif outcome.columns:
        shown = plural(len(outcome.rows), "row")
        parts.append(f"first {shown}, more exist" if outcome.more_rows else shown)
    elif outcome.rowcount is not None:
        parts.append(f"{plural(outcome.rowcount, 'row')} affected")
    if outcome.tag and not outcome.columns:
        parts.insert(0, outcome.tag)
    return "ok" + (": " + ", ".join(parts) if parts else "")


def record_findings(timeline: Timeline, session: str, index: int, review: Review) -> None:
    """One guard event per finding of a reviewed statement: what was found, what it would
    do (when measured), and what was decided."""
    for finding, decision, impact in zip(
        review.findings, review.decisions, review.impacts, strict=True
    ):
        measured = f" ({impact.summary})" if impact is not None and impact.summary else ""
        timeline.add(
            session,
            EventKind.GUARD,
            f"{finding.severity} {finding.rule}: {finding.message}{measured} [{decision}]",
            statement=index,
            rule=finding.rule,
            severity=str(finding.severity),
            decision=str(decision),
        )


def record_outcome(
    timeline: Timeline, session: Session, index: int, kind: StatementKind, outcome: Outcome
) -> None:
    """Add the events one finished statement produced."""
    name = session.name
    autocommitted = (
        outcome.status is Status.OK
        and outcome.tx_before is TxState.IDLE
        and outcome.tx_after is TxState.IDLE
        and kind.tx_control is None
        and not kind.read_only
    )
    message = summarize(outcome) + (" (autocommit: saved at once)" if autocommitted else "")
    if outcome.status is Status.OK:
        timeline.add(
            name,
            EventKind.OUTCOME,
            message,
            statement=index,
            tag=outcome.tag,
            outcome=str(outcome.status),
            saved=True if autocommitted else None,
        )
    else:
        error = outcome.error
        kind_of = EventKind.CANCELLED if outcome.status is Status.CANCELLED else EventKind.ERROR
        timeline.add(
            name,
            kind_of,
            message,
            statement=index,
            code=error.code if error else None,
            outcome=str(outcome.status),
        )
    for notice in outcome.notices:
        timeline.add(name, EventKind.NOTICE, notice, statement=index)
    _record_transaction(timeline, session, index, kind, outcome)


def _record_transaction(
    timeline: Timeline, session: Session, index: int, kind: StatementKind, outcome: Outcome
) -> None:
    name = session.name
    before, after = outcome.tx_before, outcome.tx_after
    control = kind.tx_control
    if before is TxState.IDLE and after is not TxState.IDLE:
        how = "by SAVEPOINT" if control is TxControl.SAVEPOINT else "BEGIN"
        message = "transaction started" + (f" ({how})" if how != "BEGIN" else "")
        timeline.add(name, EventKind.BEGIN, message, statement=index)
    if outcome.status is Status.OK and control is TxControl.SAVEPOINT:
        timeline.add(
            name,
            EventKind.SAVEPOINT,
            f"savepoint {kind.savepoint_name or ''}".strip(),
            statement=index,
            savepoint=kind.savepoint_name,
        )
    if outcome.status is Status.OK and control is TxControl.ROLLBACK_TO:
        timeline.add(
            name,
            EventKind.ROLLBACK_TO,
            f"rolled back to savepoint {kind.savepoint_name or ''}: later work undone, "
            "the transaction goes on".replace(" :", ":"),
            statement=index,
            savepoint=kind.savepoint_name,
        )
    if outcome.status is Status.OK and control is TxControl.RELEASE and after is not TxState.IDLE:
        timeline.add(
            name,
            EventKind.RELEASE,
            f"released savepoint {kind.savepoint_name or ''}",
            statement=index,
            savepoint=kind.savepoint_name,
        )
    if before is not TxState.FAILED and after is TxState.FAILED:
        timeline.add(
            name,
            EventKind.ERROR,
            "transaction failed: every statement will fail until ROLLBACK",
            statement=index,
        )
    if before is not TxState.IDLE and after is TxState.IDLE:
        undone = session.ended_tx_statements
        discarded = f": {plural(undone, 'statement')} undone" if undone else ""
        # A COMMIT that failed (a serialization failure found at commit) saved nothing.
        saved = outcome.status is Status.OK and outcome.tag != "ROLLBACK"
        if control in (TxControl.COMMIT, TxControl.RELEASE) and saved:
            timeline.add(
                name, EventKind.COMMIT, "committed: the changes are saved", statement=index
            )
        elif outcome.note:
            timeline.add(name, EventKind.ROLLBACK, outcome.note, statement=index, tag=outcome.tag)
        elif control is TxControl.ROLLBACK:
            timeline.add(name, EventKind.ROLLBACK, f"rolled back{discarded}", statement=index)
        else:
            timeline.add(
                name,
                EventKind.ROLLBACK,
                "the engine ended the transaction: its changes were rolled back",
                statement=index,
            )


def describe_close(name: str, state: TxState, statements: int) -> str:
    """What closing a session did to its transaction."""
    if state is TxState.IDLE:
        return f"session {name} closed"
    what = "a failed transaction" if state is TxState.FAILED else "an open transaction"
    return (
        f"session {name} closed with {what}: rolled back, "
        f"{plural(statements, 'uncommitted statement')} discarded"
    )
