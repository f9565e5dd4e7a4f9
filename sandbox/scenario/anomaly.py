"""Name the anomaly, and tell it from the learner's own run.

A concurrency scenario names what happened (a lost update, a write skew, a deadlock, ...).
After a Check the app says it again in the terms of this run: which session read what, which
write went over which, who waited for whom, in the order the timeline recorded, so the name
is tied to what the learner saw happen rather than to a textbook picture.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sandbox.outcome import Status
from sandbox.sqlkind import TxControl

if TYPE_CHECKING:
    from sandbox.conductor import Execution

MEANINGS = {
    "lost update": "two sessions read the same value and each wrote back a result worked out "
    "from it: the later write went over the earlier one, whose change is lost",
    "dirty write": "a session overwrote a change another session had not yet committed",
    "dirty read": "a session read a change another session had not yet committed",
    "non-repeatable read": "one transaction read the same rows twice and got different "
    "answers, because another session committed a change in between",
    "phantom read": "one transaction ran the same query twice and rows appeared or vanished, "
    "because another session committed in between",
    "read skew": "a transaction read related rows at different moments and saw a state that "
    "never existed at any one moment",
    "write skew": "two transactions each checked a condition on rows the other then changed; "
    "each write was fine alone, together they broke the rule both had checked",
    "deadlock": "two sessions each held a lock the other wanted; the engine ended one of them "
    "so that the other could go on",
    "serialization failure": "the engine could not fit two transactions into any one-at-a-time "
    "order and aborted one: it must be retried whole",
    "duplicate insert": "two sessions each checked that a row was not there yet and both "
    "inserted it",
    "check-then-act": "two sessions each checked a condition (enough money, a free seat) and "
    "then acted on it; the second acted on a check that was no longer true",
}
MAX_LINES = 14


def _flat(text: str, limit: int = 60) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _rows(execution: Execution) -> str:
    outcome = execution.outcome
    assert outcome is not None
    rows = outcome.rows
    if not rows:
        return "no rows"
    if len(rows) == 1 and len(outcome.columns) == len(rows[0]):
        # One row reads best with its column names: `balance = 100`.
        return ", ".join(
            f"{column} = {'NULL' if value is None else value}"
            for column, value in zip(outcome.columns, rows[0], strict=True)
        )
    shown = ", ".join(
        "(" + ", ".join("NULL" if v is None else str(v) for v in row) + ")" for row in rows[:3]
    )
    return shown + (f" … {len(rows):,} rows" if len(rows) > 3 else "")


def _table(execution: Execution) -> str | None:
    words = execution.kind.words
    for marker in ("UPDATE", "INTO", "FROM"):
        if marker in words:
            at = words.index(marker) + 1
            if at < len(words):
                return words[at].lower()
    return None


def story(anomaly: str, executions: Sequence[Execution]) -> list[str]:
    """The anomaly named and told from `executions`, a numbered line per step that matters."""
    lines = [f"{anomaly[:1].upper()}{anomaly[1:]}: {MEANINGS.get(anomaly, '')}".rstrip(": ")]
    last_write: dict[str, tuple[str, int]] = {}  # table -> (session, step number)
    read_by: dict[str, int] = {}  # session -> step number of its latest read
    steps: list[str] = []
    for execution in executions:
        outcome = execution.outcome
        if outcome is None or execution.meta is not None or execution.page_of is not None:
            continue
        who, sql, number = execution.session, _flat(execution.statement.text), len(steps) + 1
        waited = (
            f" after waiting for {', '.join(execution.blocked_by)}"
            if execution.waited and execution.blocked_by
            else ""
        )
        control = execution.kind.tx_control
        if outcome.status is not Status.OK:
            error = outcome.error
            said = f"{error.code}: {_flat(error.message)}" if error is not None else outcome.status
            steps.append(f"{number}. {who}: {sql}{waited} → failed ({said})")
        elif control is TxControl.COMMIT:
            answer = " (the server rolled it back)" if outcome.tag == "ROLLBACK" else ""
            steps.append(f"{number}. {who} committed{answer}{waited}")
        elif control is TxControl.ROLLBACK:
            steps.append(f"{number}. {who} rolled back")
        elif control is not None:
            continue  # BEGIN, SAVEPOINT, RELEASE: the lines around them tell the story
        elif execution.kind.read_only:
            read_by[who] = number
            steps.append(f"{number}. {who} read {_rows(execution)}{waited} ({sql})")
        else:
            table = _table(execution) or "a table"
            over = last_write.get(table)
            line = f"{number}. {who} wrote {table}{waited}: {sql}"
            if over is not None and over[0] != who and read_by.get(who, 0) < over[1]:
                line += f" (over {over[0]}'s write at step {over[1]}, which {who} had not read)"
            steps.append(line)
            last_write[table] = (who, number)
    if len(steps) > MAX_LINES:
        steps = [*steps[: MAX_LINES - 1], f"… {len(steps) - MAX_LINES + 1} more steps"]
    return lines + steps
