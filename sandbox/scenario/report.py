"""Render a scenario run: steps expected vs actual, checks, and the usual statements/timeline."""

from __future__ import annotations

import json
from typing import Any

from sandbox.recovery import describe as describe_methods
from sandbox.rendering import json_text, terminal_lines
from sandbox.report import execution_json
from sandbox.scenario.player import ScenarioRun, StepResult
from sandbox.traffic import summaries


def to_json(run: ScenarioRun) -> str:
    document: dict[str, Any] = {
        "scenario": run.scenario.id,
        "title": run.scenario.title,
        "engine": run.engine,
        "target": run.target,
        "solution": run.solution,
        "passed": run.passed,
        "recovered": run.recovered,
        "steps": [
            {
                "phase": s.phase,
                "session": s.step.session,
                "sql": s.execution.statement.text if s.execution is not None else None,
                "program": s.step.program,
                "expected": s.expected,
                "actual": s.actual,
                "passed": s.passed,
                "mismatches": s.mismatches,
            }
            for s in run.steps
        ],
        "checks": [c.to_json() for c in run.checks],
        "diff_since_start": run.diff.to_json() if run.diff is not None else None,
        "traffic": [t.to_json() for t in summaries(run.executions)],
        "statements": [execution_json(e) for e in run.executions],
        "timeline": [event.to_json() for event in run.timeline],
    }
    return json_text(document)


def to_text(run: ScenarioRun) -> str:
    scenario = run.scenario
    lines = [
        f"scenario {scenario.id} · {run.engine} · {scenario.title}",
        f"  {scenario.summary}",
        "",
    ]
    phase = None
    for result in run.steps:
        if result.phase != phase:
            phase = result.phase
            lines.append(phase)
        mark = "ok " if result.passed else "XX "
        sql = " ".join(result.sent.split())
        lines.append(f"  {mark}[{result.step.session}] {sql}")
        actual = result.actual
        execution = result.execution
        if execution is None:
            lines += _program_lines(result)
            continue
        said = [f"{actual.get('status')}"]
        if actual.get("error"):
            said.append(str(actual["error"]))
        if (
            actual.get("tag")
            and execution.meta is None
            and actual["tag"].split(" ")[0] != execution.kind.keyword
        ):
            said.append(f"the server answered {actual['tag']}")
        if actual.get("waits"):
            said.append("waited on a lock")
        if actual.get("rowcount") is not None:
            said.append(f"{actual['rowcount']} rows")
        if actual.get("findings"):
            said.append("guard: " + ", ".join(actual["findings"]))
        lines.append("       " + ", ".join(said))
        if execution.meta == "explain" and execution.outcome and execution.outcome.note:
            lines.append(f"       {execution.outcome.note}")  # what is hot, how it was planned
        lines += [f"       expected {m}" for m in result.mismatches]
    traffic = summaries(run.executions)
    if traffic:
        lines += ["", "traffic"]
        lines += [f"  {summary.text()}" for summary in traffic]
    lines += ["", f"checks (recovered: {'yes' if run.recovered else 'no'})"]
    for check in run.checks:
        mark = "ok " if check.passed else "XX "
        lines.append(f"  {mark}{check.check.name}")
        if check.passed:
            continue
        if check.check.process is not None:
            lines.append(f"       wanted: {check.expected}; seen: {check.actual}")
            continue
        if check.check.recovery is not None:
            lines.append(
                f"       wanted: {describe_methods(check.expected, ' or ')}; "
                f"you: {describe_methods(check.actual)}"
            )
            continue
        wanted = json.dumps(check.expected, ensure_ascii=False)
        got = json.dumps(check.actual, ensure_ascii=False)
        lines.append(f"       expected {wanted}, got {got}")
    if run.diff is not None:
        lines += ["", f"since the start snapshot: {run.diff.summary()}"]
    lines.append("")
    if not run.steps_ok:
        lines.append("result: a step did not behave as the scenario declares (see XX above)")
    elif run.solution:
        verdict = "every check passes" if run.recovered else "a check fails"
        lines.append(f"result: the breakage reproduced; with the reference solution {verdict}")
    else:
        lines.append(
            "result: the breakage reproduced"
            + (
                ""
                if run.recovered
                else "; not recovered yet (add --solution to play the reference recovery)"
            )
        )
    return terminal_lines(lines)


def _program_lines(result: StepResult) -> list[str]:
    """A Python step: how its program exited, on which lanes, and what went wrong."""
    run = result.program
    if run is None:
        return []
    lanes = sorted({e.session for e in run.executions})
    count = len(run.executions)
    sent = f"{count} statement{'s' if count != 1 else ''}"
    where = f" on {', '.join(lanes)}" if lanes else ""
    lines = [f"       exited with {run.exit_code}, {sent}{where}"]
    return lines + [f"       expected {m}" for m in result.mismatches]
