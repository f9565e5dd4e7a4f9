"""Render a run for people (text) or for programs (JSON)."""

from __future__ import annotations

import contextlib
import decimal
import gc
from collections.abc import Iterator
from typing import Any

from sandbox.conductor import Execution
from sandbox.errorpos import script_place
from sandbox.guard.locks import LockCheck, check
from sandbox.locks import HeldLock, held_summary, rewrites_summary
from sandbox.outcome import Status, json_value
from sandbox.rendering import escape_controls, json_text, terminal_lines
from sandbox.runner import RunResult
from sandbox.traffic import summaries
from sandbox.transcript import summarize

_TX_WORDS = {
    "idle": "no transaction",
    "in_transaction": "in transaction",
    "failed": "FAILED transaction",
}


def execution_json(execution: Execution) -> dict[str, Any]:
    outcome = execution.outcome
    statement = execution.statement
    data: dict[str, Any] = {
        "index": execution.index,
        "session": execution.session,
        "sql": statement.text,
        "line": statement.line,
        "column": statement.column,
        "waited": execution.waited,
        "blocked_by": execution.blocked_by,
        # Each wait, start to end on the timeline (ms), whom it was for and the queue ahead.
        "waits": [span.to_json() for span in execution.waits],
        # PostgreSQL: the relation locks its session held right after it, and what it
        # rewrote (empty on SQLite, and for a statement in autocommit: its locks went with it).
        "locks": [lock.to_json() for lock in execution.locks],
        "rewrites": [rewrite.to_json() for rewrite in execution.rewrites],
        # The lock the guard predicted (sandbox/guard/locks.py), confirmed or not by them.
        "lock_check": _lock_check_json(execution),
        "meta": execution.meta,
        "snapshot_before": execution.snapshot_before,
    }
    if execution.traffic is not None:
        data["traffic"] = execution.traffic  # sent by that traffic session (\\traffic)
    if execution.origin is not None or execution.params is not None:
        data["origin"] = execution.origin  # a traced program's file:line
        data["params"] = execution.params
    data["findings"] = execution.review.to_json() if execution.review else []
    if outcome is None:  # only if the run was interrupted before the statement ended
        data.update(status=str(Status.CANCELLED), error=None, rows=[], columns=[])
        return data
    data.update(
        status=str(outcome.status),
        rowcount=outcome.rowcount,
        columns=outcome.columns,
        rows=[[json_value(v) for v in row] for row in outcome.rows],
        more_rows=outcome.more_rows,
        tag=outcome.tag,
        error=outcome.error.to_json() if outcome.error else None,
        tx_before=str(outcome.tx_before),
        tx_after=str(outcome.tx_after),
        elapsed_ms=round(outcome.elapsed_ms, 3),
        notices=outcome.notices,
        note=outcome.note,
    )
    error = outcome.error
    if error is not None and error.position is not None:
        # Where in the script the engine points: a program can show it as an editor would.
        line, column = script_place(
            statement.line, statement.column, statement.text, error.position
        )
        data["error"]["at"] = {"line": line, "column": column}
    # A snapshot command's result: "snapshot", "snapshots", "restore" or "diff".
    data.update(outcome.data or {})
    return data


def to_json(result: RunResult, **extra: Any) -> str:
    """The report as JSON; `extra` adds top-level keys (a trace's programs)."""
    with _collector_paused():
        document = {
            "engine": result.engine,
            "target": result.target,
            "notices": result.notices,
            "stopped": result.stopped.index if result.stopped else None,
            **extra,
            "traffic": [s.to_json() for s in summaries(result.executions)],
            "statements": [execution_json(e) for e in result.executions],
            "timeline": [event.to_json() for event in result.timeline],
        }
        return json_text(document)


@contextlib.contextmanager
def _collector_paused() -> Iterator[None]:
    """The document is millions of new dicts and lists, none in a cycle: the cyclic garbage
    collector would walk the whole growing heap again and again for nothing (at 100,000
    statements that took a third of the time)."""
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


def _table(columns: list[str], rows: list[tuple[Any, ...]], more: bool, indent: str) -> list[str]:
    """A small psql-like table: numbers right-aligned, long values cut at 40 characters.

    A cell's control characters are escaped before the widths are measured: a newline or tab
    in a value would break the table, and an ESC would reach the terminal.
    """
    numeric = [
        all(
            isinstance(row[i], int | float | decimal.Decimal) and not isinstance(row[i], bool)
            for row in rows
        )
        and bool(rows)
        for i in range(len(columns))
    ]
    cells = [
        [escape_controls(("NULL" if v is None else str(json_value(v)))[:40]) for v in row]
        for row in rows
    ]
    columns = [escape_controls(c) for c in columns]
    widths = [len(c) for c in columns]
    for row in cells:
        widths = [max(w, len(v)) for w, v in zip(widths, row, strict=True)]

    def line(values: list[str], align: bool = True) -> str:
        parts = [
            v.rjust(w) if align and num else v.ljust(w)
            for v, w, num in zip(values, widths, numeric, strict=True)
        ]
        return (indent + " | ".join(parts)).rstrip()

    out = [line(columns, align=False), indent + "-+-".join("-" * w for w in widths)]
    out += [line(row) for row in cells]
    if more:
        out.append(f"{indent}… more rows not shown")
    return out


def _findings_text(execution: Execution, indent: str) -> list[str]:
    review = execution.review
    assert review is not None
    lines: list[str] = []
    for finding, decision, impact in zip(
        review.findings, review.decisions, review.impacts, strict=True
    ):
        lines.append(f"{indent}! {finding.severity} {finding.rule}: {finding.message}")
        if impact is not None and impact.summary:
            lines.append(f"{indent}  {impact.summary}")
        lines.append(f"{indent}  fix: {finding.fix}")
        lines.append(f"{indent}  decision: {decision}")
    if review.findings and review.runs:
        lines.append(f"{indent}  ran: {review.reason}")
    return lines


def lock_check(execution: Execution) -> LockCheck | None:
    """The guard's predicted lock against what the session held right after the statement
    (PostgreSQL, inside a transaction, the statement having run)."""
    outcome = execution.outcome
    if not execution.locks or outcome is None or outcome.status is not Status.OK:
        return None
    held = [(lock.relation, lock.mode) for lock in execution.locks if lock.relation]
    return check(execution.statement.text, held)


def _lock_check_json(execution: Execution) -> dict[str, Any] | None:
    found = lock_check(execution)
    return found.to_json() if found is not None else None


def lock_lines(execution: Execution, held: dict[str, list[HeldLock]] | None = None) -> list[str]:
    """Its lock waits, the locks it left its session holding, and what it rewrote, in words
    (the text report and the runbook).

    With `held` (what each session's earlier statements left held, kept up to date here) the
    locks are said only when they changed: a transaction's thousand UPDATEs hold the same."""
    lines = [span.summary() for span in execution.waits]
    if execution.waited and not execution.waits:
        lines.append(f"waited for a lock held by {', '.join(execution.blocked_by)}")
    before = held.get(execution.session) if held is not None else None
    if held is not None:
        held[execution.session] = execution.locks
    if execution.locks and execution.locks != before:
        lines.append(f"then held {held_summary(execution.locks)}")
    predicted = lock_check(execution)
    if predicted is not None:
        lines.append(predicted.summary())
    if execution.rewrites:
        seen = any(r.seen == "commit" for r in execution.rewrites)
        lines.append(
            f"rewrote {rewrites_summary(execution.rewrites)}"
            + (" (seen at COMMIT)" if seen else "")
        )
    return lines


def to_text(result: RunResult) -> str:
    lines = [f"dbsandbox · {result.engine} · {result.target}"]
    lines += [f"note: {n}" for n in result.notices]
    lines.append("")
    held: dict[str, list[HeldLock]] = {}
    for execution in result.executions:
        if execution.traffic is not None and execution is not result.stopped:
            continue  # thousands of the same statement: summed up under "traffic" below
        statement = execution.statement
        sql = " ".join(statement.text.split())
        where = execution.origin or f"line {statement.line}"
        lines.append(f"[{execution.session}] {where}: {sql}")
        outcome = execution.outcome
        indent = "      "
        if execution.review is not None:
            lines += _findings_text(execution, indent)
        if execution.snapshot_before:
            name = execution.snapshot_before
            lines.append(f"{indent}snapshot {name} taken first: \\restore {name} undoes this")
        lines += [f"{indent}{line}" for line in lock_lines(execution, held)]
        if outcome is None:
            lines.append(f"{indent}cancelled")
            continue
        if outcome.status is Status.BLOCKED:
            lines.append(f"{indent}NOT RUN · {outcome.note}")
            continue
        status = summarize(outcome)
        tx = _TX_WORDS[str(outcome.tx_after)]
        lines.append(f"{indent}{status} · {tx} · {outcome.elapsed_ms:.1f} ms")
        if outcome.note:
            # A snapshot command's note is its answer; a statement's note is a warning.
            lines.append(f"{indent}{'' if execution.meta else '!! '}{outcome.note}")
        lines += [f"{indent}{n}" for n in outcome.notices]
        if outcome.columns:
            lines += _table(outcome.columns, outcome.rows, outcome.more_rows, indent)
    if result.stopped is not None:
        stopped = result.stopped
        at = stopped.origin or f"line {stopped.statement.line}"
        lines += ["", f"stopped at {at}: the guard did not let this statement run"]
    traffic = summaries(result.executions)
    if traffic:
        lines += ["", "traffic"]
        lines += [f"  {summary.text()}" for summary in traffic]
    lines += ["", "timeline"]
    for event in result.timeline:
        lines.append(
            f"  {event.elapsed_ms:9.1f} ms  {event.session:<4} {event.kind:<14} {event.message}"
        )
    return terminal_lines(lines)
