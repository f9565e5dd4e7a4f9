"""Export a session: its timeline as JSON, a script that replays it, and a recovery runbook.

The three exports answer three questions about one session (a `dbsandbox run`, a scenario
run, or what a learner did in the app):

- `.json`: what happened, for programs: every statement with its outcome, and the timeline;
- `.sql`: how to make it happen again: `dbsandbox run FILE --engine ENGINE` replays every
  statement on the same sessions, in the same order, to the same outcomes;
- `.md`: what to tell a colleague: what broke, what was done, what fixed it, what changed.

Nothing here imports textual: the CLI and the app share it.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

from sandbox import __version__
from sandbox.errors import UserError
from sandbox.locks import HeldLock
from sandbox.outcome import Status, TxState, json_value
from sandbox.recovery import describe, methods_used
from sandbox.rendering import escape_controls, json_text, terminal_lines
from sandbox.report import execution_json, lock_lines
from sandbox.statements import Dialect, split_statements
from sandbox.timeline import EventKind
from sandbox.traffic import summaries
from sandbox.transcript import summarize
from sandbox.userfiles import require_writable

if TYPE_CHECKING:
    from sandbox.conductor import Execution
    from sandbox.runner import RunResult
    from sandbox.scenario.grading import Score
    from sandbox.scenario.model import Scenario
    from sandbox.scenario.player import CheckResult, ScenarioRun
    from sandbox.snapshots.diff import Diff
    from sandbox.timeline import Event, Timeline

# What each suffix gives; a path without one (or a directory) gets all three.
SUFFIXES = {
    ".json": "the timeline as JSON",
    ".sql": "a script that `dbsandbox run` replays",
    ".md": "a Markdown recovery runbook",
}
SETUP_SESSION = "setup"  # where a scenario's setup goes in a replay script
FIRST_SESSION = "A"  # the runner's default session (sandbox.runner.DEFAULT_SESSION)
DIFF_ROWS = 50  # rows of a diff a runbook lists before "… N more"


# ---------------------------------------------------------------------------------- the record


class _TargetLike(Protocol):
    engine: str
    description: str
    notices: list[str]


class ConductorLike(Protocol):
    """What an export reads from a live conductor (the app's): its target, runs and timeline."""

    target: Any  # a Target: engine, description, notices
    executions: list[Execution]
    timeline: Timeline


@dataclass
class SessionRecord:
    """Everything an export needs about one session, whichever way it was run."""

    engine: str
    target: str  # where the sandbox lived, password masked
    executions: list[Execution]
    timeline: list[Event]
    notices: list[str] = field(default_factory=list)
    stopped: int | None = None  # index of the statement the guard stopped a script at
    scenario: Scenario | None = None
    solution: bool = False  # the scenario's reference solution was played
    checks: list[CheckResult] = field(default_factory=list)
    recovery: list[str] | None = None  # recovery methods seen (sandbox.recovery), when judged
    diff: Diff | None = None
    diff_against: str | None = None  # the snapshot `diff` is against, e.g. "start"
    diff_problem: str | None = None  # why there is no diff
    # Where the learner's part began: executions before it are the scripted breakage.
    learner_from: int | None = None
    score: Score | None = None  # the latest Check's score (the app's), with its parts
    created: dt.datetime = field(default_factory=lambda: dt.datetime.now(dt.UTC))

    @classmethod
    def from_run(cls, result: RunResult) -> SessionRecord:
        """A `dbsandbox run SCRIPT` (the sandbox is gone; its `\\diff` results remain)."""
        return cls(
            engine=result.engine,
            target=result.target,
            executions=list(result.executions),
            timeline=list(result.timeline),
            notices=list(result.notices),
            stopped=result.stopped.index if result.stopped is not None else None,
            created=_started(result.timeline),
        )

    @classmethod
    def from_scenario_run(cls, run: ScenarioRun) -> SessionRecord:
        """A scenario run: the checks, how the learner (or the solution) got out, the diff."""
        from sandbox.scenario.player import START_SNAPSHOT

        since = _breakage_end(run)
        return cls(
            engine=run.engine,
            target=run.target,
            executions=list(run.executions),
            timeline=list(run.timeline),
            scenario=run.scenario,
            solution=run.solution,
            checks=list(run.checks),
            recovery=methods_used(run.executions, since),
            diff=run.diff,
            diff_against=START_SNAPSHOT if run.diff is not None else None,
            diff_problem=run.diff_problem,
            learner_from=since,
            created=_started(run.timeline),
        )

    @classmethod
    def from_conductor(
        cls,
        conductor: ConductorLike,
        *,
        scenario: Scenario | None = None,
        learner_from: int | None = None,
        checks: Sequence[CheckResult] = (),
        diff: Diff | None = None,
        diff_against: str | None = None,
        diff_problem: str | None = None,
        score: Score | None = None,
    ) -> SessionRecord:
        """A live session (the app): what its conductor ran so far.

        With a scenario, `learner_from` is where the breakage ended (the app's breakage_end);
        the recovery methods are judged from there on.
        """
        target: _TargetLike = conductor.target
        events = conductor.timeline.events
        recovery = None
        if scenario is not None:
            recovery = methods_used(conductor.executions, learner_from or 0)
        return cls(
            engine=target.engine,
            target=target.description,
            executions=list(conductor.executions),
            timeline=events,
            notices=list(target.notices),
            scenario=scenario,
            checks=list(checks),
            recovery=recovery,
            diff=diff,
            diff_against=diff_against,
            diff_problem=diff_problem,
            learner_from=learner_from,
            score=score,
            created=_started(events),
        )

    @property
    def dialect(self) -> Dialect:
        return "postgres" if self.engine == "postgres" else "sqlite"


def _started(events: Sequence[Event]) -> dt.datetime:
    """When the session began: its first event, or now for an empty one."""
    if events:
        try:
            return dt.datetime.fromisoformat(events[0].at)
        except ValueError:
            pass
    return dt.datetime.now(dt.UTC)


def _breakage_end(run: ScenarioRun) -> int:
    """The first execution after the breakage: every breakage step came before it."""
    ends = [
        s.last_index + 1 for s in run.steps if s.phase == "breakage" and s.last_index is not None
    ]
    return max(ends, default=0)


# ---------------------------------------------------------------------------------- JSON


def timeline_json(record: SessionRecord) -> str:
    """The session for programs: statements (as `dbsandbox run --format json`), timeline,
    checks, recovery and diff."""
    scenario = record.scenario
    document: dict[str, Any] = {
        "generator": f"dbsandbox {__version__}",
        "exported_at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "engine": record.engine,
        "target": record.target,
        "notices": record.notices,
        "scenario": scenario.id if scenario is not None else None,
        "title": scenario.title if scenario is not None else None,
        "solution": record.solution if scenario is not None else None,
        "stopped": record.stopped,
        "learner_from": record.learner_from,
        "traffic": [t.to_json() for t in summaries(record.executions)],
        "statements": [execution_json(e) for e in record.executions],
        "timeline": [event.to_json() for event in record.timeline],
        "checks": [c.to_json() for c in record.checks],
        "recovery": (
            {"methods": record.recovery, "description": describe(record.recovery)}
            if record.recovery is not None
            else None
        ),
        "diff": (
            {"snapshot": record.diff_against, **record.diff.to_json()}
            if record.diff is not None
            else None
        ),
        "diff_problem": record.diff_problem,
        "score": record.score.to_json() if record.score is not None else None,
        "anomaly": _anomaly_json(record),
    }
    # Driver values were made JSON-ready above; `default=str` only guards against a surprise.
    return json_text(document, default=str) + "\n"


def _anomaly_json(record: SessionRecord) -> dict[str, Any] | None:
    """A concurrency scenario's anomaly, named and told from this session's own run."""
    scenario = record.scenario
    if scenario is None or scenario.anomaly is None:
        return None
    from sandbox.scenario.anomaly import story

    breakage = record.executions[: record.learner_from]  # where it happened, not the fix
    return {"name": scenario.anomaly, "story": story(scenario.anomaly, breakage)}


# ---------------------------------------------------------------------------------- replay

# A comment that merely mentions the acknowledgement syntax would acknowledge rules for the
# statement after it (sandbox.guard.policy reads every comment before a statement).
_ACK_WORDS = re.compile(r"dbsandbox\s*:", re.IGNORECASE)


def _comment(text: str) -> list[str]:
    """`text` as SQL comment lines that acknowledge nothing, control characters escaped."""
    return [
        "-- " + escape_controls(_ACK_WORDS.sub("dbsandbox", line).rstrip())
        for line in text.splitlines()
    ]


def _terminated(sql: str) -> str:
    """The statement with its `;`, where no trailing `--` comment can swallow it."""
    last_line = sql.rsplit("\n", 1)[-1]
    return sql + ("\n;" if "--" in last_line else ";")


def _confirmed_rules(execution: Execution) -> list[str]:
    """The rules the guard wanted confirmed for a statement that then ran."""
    return execution.review.confirmed_rules if execution.review else []


def _setup_lines(record: SessionRecord) -> list[str]:
    """The scenario's stage: setup statements, the start snapshot, isolation levels."""
    from sandbox.guard.lint import lint_statement
    from sandbox.guard.policy import Decision, Policy
    from sandbox.scenario.player import START_SNAPSHOT, isolation_sql

    scenario = record.scenario
    assert scenario is not None
    engine = record.engine
    lines = [
        "",
        "-- The scenario's setup, as dbsandbox ran it: each statement committed at once.",
        f"\\session {SETUP_SESSION}",
    ]
    policy = Policy()
    for statement in split_statements(scenario.setup.on(engine) or "", record.dialect):
        # The setup never met the guard; the replay's does. Schema-blind, as the setup's
        # statements run on tables that are only just being made.
        rules = [
            f.rule
            for f in lint_statement(statement, record.dialect)
            if policy.decide(f) is Decision.CONFIRM
        ]
        if rules:
            lines.append(f"-- dbsandbox: allow {', '.join(dict.fromkeys(rules))}")
        lines.append(_terminated(statement.text))
    lines += [
        "",
        "-- The snapshot taken before the breakage (the scenario's way back).",
        f"\\snapshot {START_SNAPSHOT}",
    ]
    if engine == "postgres":
        for spec in scenario.sessions:
            if spec.isolation:
                lines += [
                    "",
                    f"-- Session {spec.name}'s isolation level, as the scenario sets it.",
                    f"\\session {spec.name}",
                    _terminated(isolation_sql(spec.isolation)),
                ]
    return lines


def _execution_lines(execution: Execution) -> list[str]:
    """One execution as script lines: the statement (or why it is only a comment)."""
    statement = execution.statement
    outcome = execution.outcome
    lines: list[str] = []
    if execution.meta is not None:
        return [statement.text]
    if outcome is not None and outcome.status is Status.BLOCKED:
        # Not run then, so not run now: a comment keeps it visible and out of the replay.
        lines += _comment(f"not run (guard): {outcome.note or 'stopped by the guard'}")
        lines += _comment("  " + statement.text.replace("\n", "\n  "))
        return lines
    if execution.skip is not None:
        # The app's paging ran the query again for a later page; a script shows a first page.
        lines += _comment(
            f"run again in the app for the rows after row {execution.skip:,} (paging); "
            "a replay shows its first rows"
        )
    if execution.waited and execution.blocked_by:
        lines += _comment(f"waits for a lock held by {', '.join(execution.blocked_by)}")
    if outcome is None or outcome.status is Status.CANCELLED:
        why = summarize(outcome) if outcome is not None else "the run ended before it did"
        lines += _comment(f"cancelled in the original session ({why}); a replay may differ")
    rules = _confirmed_rules(execution)
    if rules:
        if execution.snapshot_before:
            lines += _comment(f"snapshot {execution.snapshot_before} is taken first")
        lines.append(f"-- dbsandbox: allow {', '.join(rules)}")
    if execution.origin:
        lines += _comment(f"sent by {execution.origin}")
    replay = execution.replayed()
    if replay == "":
        lines += _comment(f"{statement.text}: {outcome.note if outcome else 'not sent'}")
        return lines
    if execution.params is not None and replay is None:
        lines += _comment("its parameters cannot be written into SQL: not replayed")
        lines += _comment("  " + statement.text.replace("\n", "\n  "))
        return lines
    lines.append(_terminated(replay or statement.text))
    return lines


def _overlapped(events: Sequence[Event], traffic: frozenset[int] = frozenset()) -> set[int]:
    """Statements that waited on a lock while a later statement was sent.

    A replay must go on while they wait too (`\\background`): on SQLite a script otherwise
    waits out a short busy wait before its next line, and the outcome could differ. A traffic
    statement (`traffic`) is sent on its own pace, not as the script's next line: it counts
    for neither.
    """
    waiting: set[int] = set()
    overlapped: set[int] = set()
    for event in events:
        if event.statement is None or event.statement in traffic:
            continue
        if event.kind is EventKind.LOCK_WAIT:
            waiting.add(event.statement)
        elif event.outcome is not None or event.kind is EventKind.LOCK_RELEASED:
            waiting.discard(event.statement)
        elif event.kind is EventKind.STATEMENT:
            overlapped |= {index for index in waiting if index != event.statement}
    return overlapped


def replay_command(record: SessionRecord, script: str = "session.sql") -> str:
    """The command that replays an exported script."""
    server = " --url URL" if record.engine == "postgres" else ""
    return f"dbsandbox run {script} --engine {record.engine}{server}"


def replay_script(record: SessionRecord, script_name: str = "session.sql") -> str:
    """A .sql file that `dbsandbox run` replays to the same outcomes, without --yes."""
    when = record.created.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    scenario = record.scenario
    lines = [f"-- Generated by dbsandbox {__version__}: a replay of a session on {record.engine}."]
    lines.append(f"-- Session started {when}.")
    if scenario is not None:
        played = " with its reference solution" if record.solution else ""
        lines.append(f"-- Scenario {scenario.id}{played}: {scenario.title}")
    lines += [
        f"-- Replay: {replay_command(record, script_name)}",
        "-- Statements the guard asked to confirm carry an acknowledgement comment naming their",
        "-- rules, so --yes is not needed; statements it did not run are comments here too.",
    ]
    if record.engine == "postgres":
        lines.append(
            "-- --url names any PostgreSQL server: the replay gets a fresh scratch database."
        )
    if scenario is not None:
        lines += _setup_lines(record)
    lines += ["", f"\\session {FIRST_SESSION}"]
    current = FIRST_SESSION
    traffic = frozenset(e.index for e in record.executions if e.traffic is not None)
    overlapped = _overlapped(record.timeline, traffic)
    for execution in record.executions:
        if execution.traffic is not None:
            continue  # its `\\traffic` line, replayed above, sends it again
        if execution.session != current:
            current = execution.session
            lines += ["", f"\\session {current}"]
        if execution.index in overlapped:
            lines += _comment("it was still waiting when the next statement was sent:")
            lines.append("\\background")
        lines += _execution_lines(execution)
    return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------- runbook


def _flat(text: str, limit: int = 200) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _code(text: str, limit: int = 200) -> str:
    """Inline Markdown code that survives backticks in the SQL."""
    flat = _flat(text, limit)
    longest = max((len(run) for run in re.findall(r"`+", flat)), default=0)
    fence = "`" * (longest + 1)
    pad = " " if flat.startswith("`") or flat.endswith("`") else ""
    return f"{fence}{pad}{flat}{pad}{fence}"


def _cell(value: Any) -> str:
    """A Markdown table cell: no raw HTML, no column breaks, no line breaks."""
    text = "NULL" if value is None else str(value)
    text = text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
    text = text.replace("|", "\\|")
    return text.replace("\r\n", "<br>").replace("\n", "<br>").replace("\r", "<br>")


def _what_it_did(execution: Execution) -> str:
    outcome = execution.outcome
    if outcome is None:
        return "did not finish (the run ended first)"
    if outcome.status is Status.BLOCKED:
        return f"not run: {outcome.note or 'stopped by the guard'}"
    if execution.meta is not None and outcome.error is None:
        return outcome.note or summarize(outcome)
    said = summarize(outcome)
    if outcome.tx_after is TxState.FAILED:
        said += " (the transaction is now failed: ROLLBACK)"
    elif outcome.tx_after is TxState.IN_TRANSACTION and outcome.tx_before is TxState.IDLE:
        said += " (a transaction is open)"
    elif outcome.tx_after is TxState.IDLE and outcome.tx_before is not TxState.IDLE:
        said += " (the transaction ended)"
    return said


def _decision_words(execution: Execution, decision: str) -> str:
    review = execution.review
    assert review is not None
    if decision == "allow":
        return "shown, and allowed to run"
    if review.runs:
        return f"confirmed ({review.reason})"
    return f"not run ({review.reason})"


def _finding_lines(execution: Execution, indent: str) -> list[str]:
    review = execution.review
    if review is None:
        return []
    lines = []
    for finding, decision, impact in zip(
        review.findings, review.decisions, review.impacts, strict=True
    ):
        line = f"{indent}- `{finding.rule}` ({finding.severity}): {finding.message}"
        if impact is not None and impact.summary:
            line += f". Impact: {impact.summary}"
        line += f". {_decision_words(execution, str(decision)).capitalize()}."
        lines.append(line)
    return lines


def _item(
    execution: Execution, number: int, held: dict[str, list[HeldLock]] | None = None
) -> list[str]:
    """One numbered entry of "What was done"."""
    head = f"{number}. **{execution.session}** {_code(execution.statement.text)}"
    lines = [f"{head} — {_flat(_what_it_did(execution), 300)}"]
    indent = " " * (len(str(number)) + 2)
    if execution.snapshot_before:
        lines.append(f"{indent}- snapshot {execution.snapshot_before} taken first")
    lines += [f"{indent}- {_flat(line, 300)}" for line in lock_lines(execution, held)]
    outcome = execution.outcome
    blocked = outcome is not None and outcome.status is Status.BLOCKED
    if outcome is not None and outcome.note and execution.meta is None and not blocked:
        lines.append(f"{indent}- note: {_flat(outcome.note, 300)}")
    if execution.meta == "explain" and outcome is not None and outcome.rows:
        lines += _plan_block(outcome.rows, indent)
    return lines


def _plan_block(rows: Sequence[tuple[Any, ...]], indent: str) -> list[str]:
    """An `\\explain` tree as the app draws it: each step and its hot mark, in a code block
    (a table would squeeze the tree's indentation away; a fence in a name is broken up)."""
    # Not _flat: it would fold the tree's runs of spaces. Control characters are escaped.
    steps = [escape_controls(str(row[0]))[:120].replace("`", "'") for row in rows]
    marks = [escape_controls(str(row[1]))[:60].replace("`", "'") for row in rows]
    width = max(len(step) for step in steps)
    pairs = zip(steps, marks, strict=True)
    shown = [f"{indent}{step:<{width}}  {mark}".rstrip() for step, mark in pairs]
    return [f"{indent}```", *shown, f"{indent}```"]


def _is_dangerous(execution: Execution) -> bool:
    review = execution.review
    return review is not None and any(str(d) != "allow" for d in review.decisions)


def _failed(execution: Execution) -> bool:
    if execution.traffic is not None:
        # A traffic statement's timeout is what the lab shows, not a mistake to recover from:
        # "What was done" sums its errors up.
        return False
    outcome = execution.outcome
    return outcome is not None and outcome.status in (Status.ERROR, Status.CANCELLED)


def _where(execution: Execution) -> str:
    line = execution.statement.line
    return f"**{execution.session}**" + (f", line {line}" if line > 0 else "")


def _what_broke(record: SessionRecord) -> list[str]:
    lines = ["## What broke", ""]
    scenario = record.scenario
    executions = record.executions
    learner = record.learner_from or 0
    if scenario is not None:
        lines += [f"> {_flat(scenario.summary, 600)}", ""]
        if learner:
            lines += ["The mistake, as the scenario makes it happen:", ""]
            for execution in executions[:learner]:
                if execution.traffic is not None:
                    continue  # summed up under "What was done"
                lines.append(
                    f"- **{execution.session}** {_code(execution.statement.text)} — "
                    f"{_flat(_what_it_did(execution), 300)}"
                )
                lines += _finding_lines(execution, "  ")
            lines.append("")
    rest = executions[learner:] if scenario is not None else executions
    dangerous = [e for e in rest if _is_dangerous(e)]
    failed = [e for e in rest if _failed(e)]
    later = " later" if scenario is not None else ""
    if dangerous:
        lines += [f"Dangerous statements{later}, as the guard saw them:", ""]
        for execution in dangerous:
            lines.append(f"- {_where(execution)} {_code(execution.statement.text)}")
            lines += _finding_lines(execution, "  ")
            if execution.snapshot_before:
                lines.append(f"  - snapshot {execution.snapshot_before} was taken just before")
        lines.append("")
    if failed:
        lines += [f"Statements that failed{later}:", ""]
        for execution in failed:
            outcome = execution.outcome
            assert outcome is not None
            lines.append(
                f"- {_where(execution)} {_code(execution.statement.text)} — "
                f"{_flat(summarize(outcome), 300)}"
            )
        lines.append("")
    if scenario is None and not dangerous and not failed:
        lines += ["Nothing: no statement needed the guard's confirmation and none failed.", ""]
    return lines


def _what_was_done(record: SessionRecord) -> list[str]:
    lines = ["## What was done", ""]
    held: dict[str, list[HeldLock]] = {}  # said once per change, as on the timeline
    executions = record.executions
    if not executions:
        return [*lines, "Nothing ran.", ""]
    learner = record.learner_from if record.scenario is not None else None
    if learner is not None and learner > 0:
        lines += ["The breakage (scripted):", ""]
        lines += [
            line
            for e in executions[:learner]
            if e.traffic is None
            for line in _item(e, e.index + 1, held)
        ]
        lines.append("")
        if learner < len(executions):
            who = "the reference solution" if record.solution else "the learner"
            lines += [f"Then {who}:", ""]
    start = learner or 0
    lines += [
        line
        for e in executions[start:]
        if e.traffic is None
        for line in _item(e, e.index + 1, held)
    ]
    traffic = summaries(executions)
    if traffic:
        # Each traffic session in one line: thousands of the same statement say nothing more.
        lines += [
            "",
            "Traffic (the same statement again and again, as an application sends it):",
            "",
        ]
        lines += [f"- {_flat(t.text())}: {_code(t.sql)}" for t in traffic]
    if record.stopped is not None:
        lines += [
            "",
            f"The script stopped at statement {record.stopped + 1}: the guard did not let it run.",
        ]
    return [*lines, ""]


def _check_line(check: CheckResult) -> str:
    mark = "✔" if check.passed else "✘"
    line = f"- {mark} {check.check.name}"
    if not check.passed:
        expected = json.dumps(json_value(check.expected), ensure_ascii=False)
        actual = json.dumps(json_value(check.actual), ensure_ascii=False)
        line += f" — expected {_code(expected, 160)}, got {_code(actual, 160)}"
    return line


def _first_trouble(record: SessionRecord) -> int | None:
    for execution in record.executions:
        if _failed(execution) or (
            _is_dangerous(execution) and execution.review is not None and execution.review.runs
        ):
            return execution.index
    return None


def _what_fixed_it(record: SessionRecord) -> list[str]:
    lines = ["## What fixed it", ""]
    methods = record.recovery
    if methods is not None:
        if methods:
            lines.append(f"Recovery: {describe(methods)}.")
    else:
        # No scenario to say where the mistake ended: judge from the first thing that went wrong.
        trouble = _first_trouble(record)
        if trouble is None:
            return [*lines, "Nothing needed fixing.", ""]
        methods = methods_used(record.executions, trouble + 1)
        if methods:
            lines.append(f"After the first mistake (statement {trouble + 1}): {describe(methods)}.")
    if record.checks:
        passed = sum(c.passed for c in record.checks)
        total = len(record.checks)
        lines += ["", "Checks:", ""]
        lines += [_check_line(c) for c in record.checks]
        lines.append("")
        if passed == total:
            every = "the check passes" if total == 1 else f"all {total} checks pass"
            lines.append(f"Recovered: {every}.")
        else:
            lines.append(f"Not recovered yet: {total - passed} of {total} checks fail.")
        if record.score is not None:
            # The score's own lines: a Markdown list keeps one part per line.
            first, *parts = record.score.lines()
            lines += ["", f"Score: {first.removeprefix('score ')}.", ""]
            lines += [f"- {part.strip()}" for part in parts]
    elif not methods:
        lines.append("Not recovered yet: no ROLLBACK, savepoint, restore or repair followed.")
    return [*lines, ""]


def _last_diff(record: SessionRecord) -> tuple[str, str, list[str], list[tuple[Any, ...]]] | None:
    """(snapshot, summary, columns, rows) of the record's diff, else of the last `\\diff`."""
    if record.diff is not None:
        columns, rows = record.diff.display()
        return record.diff_against or "the snapshot", record.diff.summary(), columns, rows
    for execution in reversed(record.executions):
        outcome = execution.outcome
        data = (outcome.data or {}).get("diff") if outcome is not None else None
        if execution.meta == "diff" and outcome is not None and isinstance(data, dict):
            snapshot = str(data.get("snapshot", ""))
            summary = str(data.get("summary", ""))
            return snapshot, summary, list(outcome.columns), [tuple(r) for r in outcome.rows]
    return None


def _what_changed(record: SessionRecord) -> list[str]:
    lines = ["## What changed", ""]
    found = _last_diff(record)
    if found is None:
        why = f" ({record.diff_problem})" if record.diff_problem else ""
        return [*lines, f"No diff was taken{why}.", ""]
    snapshot, summary, columns, rows = found
    lines += [f"Since snapshot `{snapshot}`: {summary}.", ""]
    if rows:
        lines.append("| " + " | ".join(_cell(c) for c in columns) + " |")
        lines.append("|" + " --- |" * len(columns))
        for row in rows[:DIFF_ROWS]:
            lines.append("| " + " | ".join(_cell(v) for v in row) + " |")
        if len(rows) > DIFF_ROWS:
            lines += ["", f"… {len(rows) - DIFF_ROWS:,} more"]
        lines.append("")
    return lines


def runbook(record: SessionRecord, script_name: str = "session.sql") -> str:
    """A Markdown recovery runbook: what broke, what was done, what fixed it, what changed."""
    scenario = record.scenario
    title = scenario.title if scenario is not None else "dbsandbox session"
    when = record.created.astimezone(dt.UTC).strftime("%Y-%m-%d %H:%M UTC")
    about = f"{record.engine} · {when}"
    if scenario is not None:
        about += f" · scenario `{scenario.id}`"
        if record.solution:
            about += " (with the reference solution)"
    lines = [f"# {title}", "", about, ""]
    lines += _what_broke(record)
    lines += _what_was_done(record)
    lines += _what_fixed_it(record)
    lines += _what_changed(record)
    lines += [
        "## How to replay",
        "",
        "```sh",
        replay_command(record, script_name),
        "```",
        "",
        f"`{script_name}` is the `.sql` export of this session (`--export {script_name}`): a "
        "fresh sandbox runs every statement again, on the same sessions and in the same order.",
        "",
    ]
    return terminal_lines(lines)


# ---------------------------------------------------------------------------------- files


def _unknown_suffix(path: Path) -> str:
    listed = ", ".join(f"{suffix} ({what})" for suffix, what in SUFFIXES.items())
    return (
        f"cannot export to {path}: unknown suffix {path.suffix!r}; "
        f"use {listed}, or no suffix for all three"
    )


def export_paths(path: Path, stamp: dt.datetime | None = None) -> list[Path]:
    """The files an export to `path` writes, checked before anything runs.

    A `.json`, `.sql` or `.md` path is one file; a path without a suffix is a base name for
    all three; an existing directory gets all three as `dbsandbox-session-<UTC stamp>.*`. The
    directory they go in must exist. A file already there is overwritten: the user named it.
    """
    paths = _export_paths(path, stamp)
    for each in paths:
        require_writable(each)  # a named pipe or a device there would take the write
    return paths


def _export_paths(path: Path, stamp: dt.datetime | None) -> list[Path]:
    when = (stamp or dt.datetime.now(dt.UTC)).astimezone(dt.UTC)
    try:
        if path.is_dir():
            base = path / f"dbsandbox-session-{when.strftime('%Y%m%dT%H%M%SZ')}"
            return [base.with_name(base.name + suffix) for suffix in SUFFIXES]
        parent = path.parent
        if not parent.exists():
            raise UserError(f"cannot write {path}: no such directory")
        if not parent.is_dir():
            raise UserError(f"cannot write {path}: {parent} is not a directory")
    except OSError as exc:  # e.g. a name too long even to look at
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    suffix = path.suffix.lower()
    if not suffix:
        return [path.with_name(path.name + s) for s in SUFFIXES]
    if suffix not in SUFFIXES:
        raise UserError(_unknown_suffix(path))
    return [path]


def render(record: SessionRecord, path: Path, script_name: str = "session.sql") -> str:
    """The content of one export file, chosen by its suffix."""
    suffix = path.suffix.lower()
    if suffix == ".json":
        return timeline_json(record)
    if suffix == ".sql":
        return replay_script(record, path.name)
    if suffix == ".md":
        return runbook(record, script_name)
    raise UserError(_unknown_suffix(path))


def write_export(record: SessionRecord, path: Path) -> list[Path]:
    """Write the export(s) `path` asks for (see export_paths); returns the files written.

    Every problem is a one-line UserError: an unknown suffix, a missing directory, or what the
    operating system said.
    """
    paths = export_paths(path, record.created)
    sql = next((p.name for p in paths if p.suffix == ".sql"), "session.sql")
    # Render everything first: a failure then leaves no half-written set behind.
    contents = [(p, render(record, p, sql)) for p in paths]
    for target, text in contents:
        try:
            target.write_text(text, encoding="utf-8")
        except OSError as exc:
            raise UserError(f"cannot write {target}: {exc.strerror or exc}") from None
    return paths


__all__ = [
    "SUFFIXES",
    "ConductorLike",
    "SessionRecord",
    "export_paths",
    "render",
    "replay_command",
    "replay_script",
    "runbook",
    "timeline_json",
    "write_export",
]
