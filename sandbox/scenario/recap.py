"""What a scenario did before handing over: its breakage, step by step, in plain words.

The learner arrives after the mistake. The timeline records it, one short line per event;
this is the same story told as a list: who ran what (the whole statement), what the engine
answered, and whether it is saved, still open, or failed. It reads the executions themselves,
so it says what the engine did, not what the scenario file claims.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from sandbox.outcome import Outcome, Status, TxState, json_value
from sandbox.sqlkind import TxControl
from sandbox.transcript import summarize

if TYPE_CHECKING:
    from sandbox.conductor import Execution  # a type only: the app imports this module early

SHOWN_ROWS = 3  # a read's rows quoted in full up to this many (what the session saw matters)


@dataclass(frozen=True)
class StepRecap:
    """One breakage step as the "what happened" list shows it."""

    number: int
    session: str
    sql: str  # the whole statement, as it was sent
    outcome: str  # what the engine answered, and what became of the change
    settled: bool  # False while it still runs or waits for a lock


def recap(executions: Sequence[Execution]) -> list[StepRecap]:
    """The breakage's executions, in the order they were handed to their sessions.

    A traffic session's statements (hundreds of the same one) are told once, on the
    `\\traffic` line that started them: how many were sent, waited and failed."""
    from sandbox.traffic import summaries

    traffic = {summary.session: summary.text() for summary in summaries(executions)}
    shown = [e for e in executions if e.traffic is None]
    return [
        StepRecap(
            number,
            execution.session,
            execution.statement.text.strip(),
            _traffic_said(execution, traffic) or what_became(execution),
            execution.finished(),
        )
        for number, execution in enumerate(shown, 1)
    ]


def _traffic_said(execution: Execution, traffic: dict[str, str]) -> str | None:
    """What a starting `\\traffic NAME every …` line's statements did, so far."""
    if execution.meta != "traffic" or ":" not in execution.statement.text:
        return None
    words = execution.statement.text.split()
    return traffic.get(words[1]) if len(words) > 1 else None


def what_became(execution: Execution) -> str:
    """The engine's answer to one statement, and whether its change is saved."""
    outcome = execution.outcome
    if outcome is None:
        if execution.failure is not None:
            return "did not finish: dbsandbox failed to run it"
        if execution.waiting:
            holders = ", ".join(execution.waiting_on) or "another session"
            return f"still waiting for a lock held by {holders}"
        return "still running" if execution.started is not None else "queued"
    said = summarize(outcome) + _rows_read(outcome)
    if execution.meta is not None or outcome.status is not Status.OK:
        return said + _still_open(outcome)
    return f"{said} · {_saved(execution, outcome)}"


def _rows_read(outcome: Outcome) -> str:
    """What a short read returned: in a race, the value a session saw is the story."""
    if not outcome.columns or not outcome.rows or len(outcome.rows) > SHOWN_ROWS:
        return ""
    rows = [
        ", ".join(
            f"{name} = {json_value(value)}"
            for name, value in zip(outcome.columns, row, strict=False)
        )
        for row in outcome.rows
    ]
    return " (" + "; ".join(rows) + ")"


def _still_open(outcome: Outcome) -> str:
    if outcome.tx_after is TxState.FAILED:
        return " · the transaction has failed: every statement fails until ROLLBACK"
    if outcome.tx_after is TxState.IN_TRANSACTION:
        return " · its transaction stays open"
    return ""


def _saved(execution: Execution, outcome: Outcome) -> str:
    """Where the statement leaves the data: saved, open, or gone."""
    control = execution.kind.tx_control
    ended = outcome.tx_before is not TxState.IDLE and outcome.tx_after is TxState.IDLE
    if control is TxControl.COMMIT and ended:
        if outcome.tag == "ROLLBACK":
            return "the engine answered ROLLBACK: nothing was saved"
        return "committed: saved for every session"
    if control is TxControl.ROLLBACK and ended:
        return "rolled back: the transaction's changes are gone"
    if control is TxControl.BEGIN:
        return "a transaction began: nothing it does is saved until COMMIT"
    if control is not None:
        return "inside the open transaction"
    if outcome.tx_after is TxState.FAILED:
        return "the transaction has failed: every statement fails until ROLLBACK"
    if execution.kind.read_only:
        return "read only: nothing changed"
    if outcome.tx_after is TxState.IN_TRANSACTION:
        return "not saved yet: its transaction is still open"
    return "saved at once (autocommit)"
