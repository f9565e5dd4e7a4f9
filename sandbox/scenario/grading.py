"""Grading that can't be gamed: the learner's own statements, replayed on hidden datasets.

A learner's work is what they sent to the engine after the breakage, nothing else: not the
rows they say they got, not the outcomes an export records. Grading plays the scenario's
breakage again on a fresh sandbox for the dataset they saw and for every hidden variant,
replays those statements in their sessions, and runs every check there. A hard-coded answer
(`SET balance = 130`) passes on the dataset it was copied from and fails on a variant.

The score combines the parts by the formula in `FORMULA` (docs/teaching.md explains it): the
checks, the process checks, the variants, care for the data (rows lost beyond what the
reference solution removes), less the hints used, the Checks that came back not recovered,
and the minutes past the scenario's expected time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.errors import UserError
from sandbox.outcome import Status
from sandbox.scenario.loader import on_variant
from sandbox.scenario.player import CheckResult, Replayed, ScenarioRun, play
from sandbox.statements import MetaCommand
from sandbox.timeline import EventKind

if TYPE_CHECKING:
    from sandbox.conductor import Execution
    from sandbox.runner import RunOptions
    from sandbox.scenario.model import Scenario
    from sandbox.snapshots.diff import Diff
    from sandbox.targets import Target
    from sandbox.timeline import Event

# Points: the parts add up to 100; the costs are taken off, never below 0.
CHECK_POINTS = 40
PROCESS_POINTS = 25
VARIANT_POINTS = 20
CARE_POINTS = 15
ROW_COST = 5  # per row lost beyond the reference solution's, until care is 0
HINT_COST, HINT_CAP = 4, 12
ATTEMPT_COST, ATTEMPT_CAP = 3, 9  # per Check that came back not recovered
MINUTE_COST, MINUTE_CAP = 1, 10  # per whole minute past the scenario's expected time
FORMULA = (
    f"score = {CHECK_POINTS} x data checks passed + {PROCESS_POINTS} x process checks passed "
    f"+ {VARIANT_POINTS} x hidden variants passed (fractions) + care ({CARE_POINTS} less "
    f"{ROW_COST} per row lost beyond the reference solution) - {HINT_COST} per hint (at most "
    f"{HINT_CAP}) - {ATTEMPT_COST} per Check not yet recovered (at most {ATTEMPT_CAP}) - "
    f"{MINUTE_COST} per minute past the expected time (at most {MINUTE_CAP}); 0 to 100"
)


# ---------------------------------------------------------------------------------- attempts


@dataclass(frozen=True)
class Effort:
    """What the learner spent, from the timeline: None where the record does not say."""

    hints: int | None = None
    checks_failed: int | None = None  # Checks that came back not recovered
    minutes: float | None = None  # from the hand-over to the Check that said recovered


@dataclass(frozen=True)
class Attempt:
    """A learner's part: what they ran after the breakage, and what it cost them."""

    steps: tuple[Replayed, ...]
    effort: Effort = field(default_factory=Effort)


def _replayable(execution: Execution) -> bool:
    if execution.traffic is not None or execution.meta == "traffic":
        # Traffic is load around the fix, not a step of it (and thousands of the same line).
        return False
    outcome = execution.outcome
    if outcome is not None and outcome.status is Status.BLOCKED:
        return False  # the guard never let it run
    return execution.page_of is None  # a later page is the app re-reading, not the learner


def attempt_of(
    executions: Sequence[Execution], since: int, events: Sequence[Event] = ()
) -> Attempt:
    """The learner's part of a live session (the app's conductor)."""
    steps = tuple(
        Replayed(e.session, e.statement.text, background=e.waited)
        for e in executions[since:]
        if _replayable(e)
    )
    # The events as an export writes them: the app's score and `grade`'s agree on one record.
    return Attempt(steps, effort_of([e.to_json() for e in events], since))


def effort_of(events: Sequence[dict[str, Any]], since: int | None) -> Effort:
    """Hints, Checks and minutes, from timeline events (live, or read from a JSON export).

    The clock starts at the hand-over: the last event of the breakage (before the learner's
    first statement, `since`). It stops at the first Check that said recovered, or at the last
    event when none did.
    """
    if since is None:
        return Effort()
    hints = sum(1 for e in events if e.get("kind") == EventKind.HINT)
    checks = [e for e in events if e.get("kind") == EventKind.CHECK]
    recovered = next((e for e in checks if (e.get("data") or {}).get("recovered")), None)
    failed = checks.index(recovered) if recovered is not None else len(checks)
    breakage = [
        float(e.get("elapsed_ms") or 0.0)
        for e in events
        if isinstance(e.get("statement"), int) and e["statement"] < since
    ]
    start = max(breakage, default=0.0)
    end_event = recovered if recovered is not None else (events[-1] if events else None)
    end = float(end_event.get("elapsed_ms") or 0.0) if end_event is not None else start
    return Effort(hints, failed, max(0.0, end - start) / 60_000)


def attempt_from_json(document: Any, scenario: Scenario) -> Attempt:
    """The learner's part of an exported `.json` timeline (`run --export`, or the app's)."""
    if not isinstance(document, dict) or not isinstance(document.get("statements"), list):
        raise UserError("not a dbsandbox timeline export (no statements list)")
    named = document.get("scenario")
    if named not in (None, scenario.id):
        raise UserError(f"this export is of scenario {named!r}, not {scenario.id!r}")
    statements = [s for s in document["statements"] if isinstance(s, dict)]
    for s in statements:
        if not isinstance(s.get("session"), str) or not isinstance(s.get("sql"), str):
            raise UserError("a statement in the export has no session or sql")
    since = document.get("learner_from")
    if not isinstance(since, int) or isinstance(since, bool):
        since = None
    ran = [
        s
        for s in statements
        if s.get("status") != str(Status.BLOCKED)
        and not s.get("traffic")  # traffic is load around the fix, not a step of it
        and s.get("meta") != "traffic"
    ]
    if since is not None:
        ran = [s for s in ran if isinstance(s.get("index"), int) and s["index"] >= since]
    replayed = [Replayed(s["session"], s["sql"], background=bool(s.get("waited"))) for s in ran]
    # Without learner_from (a plain `run` export) the breakage is recognised by its statements.
    mine = replayed if since is not None else _after_breakage(replayed, scenario)
    events = [e for e in document.get("timeline") or [] if isinstance(e, dict)]
    return Attempt(tuple(mine), effort_of(events, since))


def attempt_from_script(text: str, scenario: Scenario, engine: str, source: str) -> Attempt:
    """The learner's part of a `.sql` replay script (`--export`), or a script they wrote.

    A replay script begins with the setup (session `setup`), the start snapshot and the
    breakage; those are passed over. A script of the learner's own statements is all theirs.
    """
    from sandbox.export import SETUP_SESSION
    from sandbox.runner import parse_script

    dialect = "postgres" if engine == "postgres" else "sqlite"
    ran: list[Replayed] = []
    for step in parse_script(text, dialect, source):  # type: ignore[arg-type]
        if step.session == SETUP_SESSION:
            continue
        if isinstance(step.statement, MetaCommand) and step.statement.name == "traffic":
            continue  # traffic is load around the fix, not a step of it
        ran.append(Replayed(step.session, step.statement.text, background=step.background))
    # The replay's own opening: the start snapshot, and each session's isolation level.
    while ran and _is_stage(ran[0], scenario):
        ran.pop(0)
    return Attempt(tuple(_after_breakage(ran, scenario, engine)))


def _is_stage(step: Replayed, scenario: Scenario) -> bool:
    from sandbox.scenario.player import START_SNAPSHOT

    flat = " ".join(step.sql.split()).rstrip(";").lower()
    if flat == f"\\snapshot {START_SNAPSHOT}":
        return True
    return flat.startswith("set session characteristics as transaction isolation level")


def _same(a: str, b: str) -> bool:
    return " ".join(a.split()).rstrip(";") == " ".join(b.split()).rstrip(";")


def _after_breakage(
    ran: list[Replayed], scenario: Scenario, engine: str | None = None
) -> list[Replayed]:
    """What follows the scenario's breakage at the start of `ran`; all of it when `ran` does
    not begin with the breakage (a script of the learner's own statements)."""
    engines = [engine] if engine else list(scenario.engines)
    for name in engines:
        breakage = [s for s in scenario.breakage if s.runs_on(name)]
        at = 0
        for step in breakage:
            if step.is_python:
                # Its program's statements, on its lanes (checkout-1, ...), however many.
                lanes = f"{step.lane_prefix}-"
                while at < len(ran) and ran[at].session.startswith(lanes):
                    at += 1
                continue
            if (
                at < len(ran)
                and ran[at].session == step.session
                and _same(ran[at].sql, step.sql.on(name))
            ):
                at += 1
                continue
            break
        else:
            return ran[at:]
    return ran


# ---------------------------------------------------------------------------------- grading

TargetOpener = Callable[[], contextlib.AbstractContextManager["Target"]]


@dataclass
class DatasetRun:
    """The learner's part on one dataset: the one they saw (variant None) or a hidden one."""

    variant: str | None
    checks: list[CheckResult]
    diff: Diff | None = None
    problem: str | None = None  # the breakage did not reproduce there (the scenario's fault)

    @property
    def passed(self) -> bool:
        return self.problem is None and bool(self.checks) and all(c.passed for c in self.checks)

    def to_json(self) -> dict[str, Any]:
        return {
            "variant": self.variant,
            "passed": self.passed,
            "problem": self.problem,
            "checks": [c.to_json() for c in self.checks],
        }


def _dataset_run(run: ScenarioRun, variant: str | None) -> DatasetRun:
    problem = None
    if not run.steps_ok:
        first = next(s for s in run.steps if not s.passed)
        problem = f"the breakage did not reproduce: {'; '.join(first.mismatches)}"
    return DatasetRun(variant, run.checks, run.diff, problem)


def rows_lost(diff: Diff | None) -> int:
    """Rows there at the start and gone at the end (a dropped table's rows are not counted:
    the diff cannot see them)."""
    return sum(t.removed_count for t in diff.tables) if diff is not None else 0


@dataclass(frozen=True)
class Score:
    total: int
    recovered: bool  # every check passes on the dataset shown and on every variant
    parts: dict[str, dict[str, Any]]

    def to_json(self) -> dict[str, Any]:
        return {
            "total": self.total,
            "max": 100,
            "recovered": self.recovered,
            "parts": self.parts,
            "formula": FORMULA,
        }

    def lines(self) -> list[str]:
        """The score and how it was made, a line per part, for people."""
        p = self.parts
        lines = [f"score {self.total}/100" + (" (recovered)" if self.recovered else "")]
        for name, label in (("checks", "data checks"), ("process", "process checks")):
            part = p[name]
            lines.append(
                f"  {label}: {part['passed']}/{part['total']} → {part['points']}/{part['of']}"
            )
        variants = p["variants"]
        lines.append(
            f"  hidden variants: {variants['passed']}/{variants['total']} passed → "
            f"{variants['points']}/{variants['of']}"
        )
        care = p["care"]
        lines.append(
            f"  care: {care['rows_lost']} row(s) lost beyond the reference → "
            f"{care['points']}/{care['of']}"
        )
        for name, unit in (("hints", "used"), ("attempts", "failed"), ("time", "minutes")):
            part = p[name]
            seen = part.get(unit)
            shown = "not recorded" if seen is None else f"{seen} {unit}"
            if name == "time" and seen is not None:
                shown = f"{seen:.1f} min (expected {part['expected']})"
            lines.append(f"  {name}: {shown} → {part['points']}")
        return lines


def _fraction(results: Sequence[CheckResult]) -> tuple[int, int]:
    return sum(1 for r in results if r.passed), len(results)


def score(
    scenario: Scenario,
    shown: DatasetRun,
    variants: Sequence[DatasetRun],
    effort: Effort,
    reference_lost: int,
) -> Score:
    data = [c for c in shown.checks if c.check.kind == "data"]
    process = [c for c in shown.checks if c.check.kind != "data"]
    data_passed, data_total = _fraction(data)
    process_passed, process_total = _fraction(process)
    variants_passed = sum(1 for v in variants if v.passed)
    lost = max(0, rows_lost(shown.diff) - reference_lost)

    def share(points: int, passed: int, total: int) -> int:
        return round(points * passed / total) if total else points

    checks_points = share(CHECK_POINTS, data_passed, data_total)
    process_points = share(PROCESS_POINTS, process_passed, process_total)
    variant_points = share(VARIANT_POINTS, variants_passed, len(variants))
    care_points = max(0, CARE_POINTS - ROW_COST * lost)
    hint_cost = min(HINT_CAP, HINT_COST * (effort.hints or 0))
    attempt_cost = min(ATTEMPT_CAP, ATTEMPT_COST * (effort.checks_failed or 0))
    over = 0 if effort.minutes is None else int(effort.minutes - scenario.expected_minutes)
    time_cost = min(MINUTE_CAP, MINUTE_COST * max(0, over))
    total = checks_points + process_points + variant_points + care_points
    total = max(0, min(100, total - hint_cost - attempt_cost - time_cost))
    recovered = shown.passed and all(v.passed for v in variants)
    parts: dict[str, dict[str, Any]] = {
        "checks": {"points": checks_points, "of": CHECK_POINTS, "passed": data_passed,
                   "total": data_total},
        "process": {"points": process_points, "of": PROCESS_POINTS, "passed": process_passed,
                    "total": process_total},
        "variants": {"points": variant_points, "of": VARIANT_POINTS, "passed": variants_passed,
                     "total": len(variants)},
        "care": {"points": care_points, "of": CARE_POINTS, "rows_lost": lost},
        "hints": {"points": -hint_cost, "used": effort.hints},
        "attempts": {"points": -attempt_cost, "failed": effort.checks_failed},
        "time": {"points": -time_cost, "minutes": None if effort.minutes is None
                 else round(effort.minutes, 1), "expected": scenario.expected_minutes},
    }  # fmt: skip
    return Score(total, recovered, parts)


@dataclass
class Grade:
    """A learner's attempt graded on one engine."""

    scenario: Scenario
    engine: str
    shown: DatasetRun
    variants: list[DatasetRun]
    score: Score
    attempt: Attempt

    def to_json(self) -> dict[str, Any]:
        return {
            "scenario": self.scenario.id,
            "engine": self.engine,
            "score": self.score.to_json(),
            "datasets": [self.shown.to_json(), *(v.to_json() for v in self.variants)],
            "statements": [{"session": s.session, "sql": s.sql} for s in self.attempt.steps],
        }


def _play(
    scenario: Scenario, opener: TargetOpener, options: RunOptions | None, **how: Any
) -> ScenarioRun:
    with opener() as target:
        return play(scenario, target, options=options, **how)


def grade_variants(
    scenario: Scenario,
    attempt: Attempt,
    opener: TargetOpener,
    options: RunOptions | None = None,
) -> tuple[list[DatasetRun], int]:
    """The attempt on every hidden variant, and the rows the reference solution removes
    (what `care` measures the learner's losses against)."""
    runs = []
    for variant in scenario.variants:
        built = on_variant(scenario, variant.name)
        run = _play(built, opener, options, attempt=attempt.steps)
        runs.append(_dataset_run(run, variant.name))
    reference = _play(scenario, opener, options, solution=True)
    return runs, rows_lost(reference.diff)


def grade(
    scenario: Scenario,
    attempt: Attempt,
    opener: TargetOpener,
    options: RunOptions | None = None,
    engine: str = "",
) -> Grade:
    """The attempt on the dataset the learner saw and on every variant, scored."""
    shown = _dataset_run(_play(scenario, opener, options, attempt=attempt.steps), None)
    variants, reference_lost = grade_variants(scenario, attempt, opener, options)
    total = score(scenario, shown, variants, attempt.effort, reference_lost)
    return Grade(scenario, engine, shown, variants, total, attempt)
