"""Play a scenario for real: set the stage, make the mistake happen, judge the recovery.

The breakage steps run through the same conductor and guard as any script, the guard told to
let what it would ask to confirm through (they are the mistake) while still reporting what it
sees. What it blocks stays blocked: no step, setup statement or check of a scenario reaches
outside the sandbox, even from a file that skipped validation. Each step's actual
outcome is compared with what the scenario declares, so a scenario that no longer reproduces
what the engine does fails loudly. Checks run last: by default on a fresh connection, which
sees only what was committed.
"""

from __future__ import annotations

import contextlib
import decimal
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.conductor import Conductor, Execution
from sandbox.guard.policy import Guard, outside_the_sandbox
from sandbox.outcome import Outcome, Status, json_value
from sandbox.recovery import methods_used
from sandbox.runner import RunOptions
from sandbox.scenario.model import Check, Scenario, Step, null_to_none
from sandbox.scenario.model import Traffic as TrafficDecl
from sandbox.snapshots.model import SnapshotError
from sandbox.statements import Dialect, MetaCommand, split, split_statements
from sandbox.targets import Target
from sandbox.timeline import Event, Timeline
from sandbox.traffic import Traffic, TrafficSpec, run_command

if TYPE_CHECKING:
    from sandbox.session import Session
    from sandbox.snapshots.diff import Diff

# Taken after the setup, before the breakage: what "before the mistake" means.
START_SNAPSHOT = "start"
START_REASON = "scenario start: the stage before the mistake"


def isolation_sql(level: str) -> str:
    """The statement that gives a PostgreSQL session its isolation level for every transaction."""
    return f"SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL {level.upper()}"


class ScenarioBroken(Exception):
    """The scenario's own setup failed on this engine: a bug in the scenario, not the learner."""


# How long a Python step's program may run before it is stopped (and the step fails).
PROGRAM_TIMEOUT_S = 60.0


@dataclass
class ProgramRun:
    """What a Python step's program did: its statements (executions of the scenario's run,
    on its own lanes), its exit code and its output."""

    label: str  # the lanes' prefix: checkout -> checkout-1, checkout-2
    exit_code: int | None
    output: list[str]
    executions: list[Execution]


@dataclass
class StepResult:
    phase: str  # "breakage" or "solution"
    step: Step
    execution: Execution | None  # a SQL step's statement (None for a Python step)
    expected: dict[str, Any]
    actual: dict[str, Any]
    mismatches: list[str] = field(default_factory=list)
    program: ProgramRun | None = None  # a Python step's program run

    @property
    def passed(self) -> bool:
        return not self.mismatches

    @property
    def sent(self) -> str:
        """What the step ran, in a line's worth: its statement, or its program."""
        if self.execution is not None:
            return self.execution.statement.text
        return f"python {self.step.program}"

    @property
    def last_index(self) -> int | None:
        """The index of the last execution the step made (None: it made none)."""
        if self.execution is not None:
            return self.execution.index
        executions = self.program.executions if self.program is not None else []
        return max((e.index for e in executions), default=None)


@dataclass
class CheckResult:
    check: Check
    expected: Any
    actual: Any
    passed: bool

    def to_json(self) -> dict[str, Any]:
        """As reports, exports and `grade` give it: name, kind, verdict, expected, actual."""
        return {
            "name": self.check.name,
            "kind": self.check.kind,
            "passed": self.passed,
            "expected": json_value(self.expected),
            "actual": json_value(self.actual),
        }


@dataclass
class ScenarioRun:
    scenario: Scenario
    engine: str
    target: str
    solution: bool
    steps: list[StepResult]
    checks: list[CheckResult]
    executions: list[Execution]
    timeline: list[Event]
    # What changed since the pre-mistake snapshot, when the checks ran (None: no snapshot).
    diff: Diff | None = None
    diff_problem: str | None = None  # why there is no diff

    @property
    def steps_ok(self) -> bool:
        return all(s.passed for s in self.steps)

    @property
    def recovered(self) -> bool:
        return all(c.passed for c in self.checks)

    @property
    def passed(self) -> bool:
        """Steps behaved as declared and, when the solution was played, every check passes."""
        return self.steps_ok and (self.recovered or not self.solution)


def _dialect(engine: str) -> Dialect:
    return "postgres" if engine == "postgres" else "sqlite"


def play(
    scenario: Scenario,
    target: Target,
    *,
    solution: bool = False,
    options: RunOptions | None = None,
    attempt: Sequence[Replayed] | None = None,
) -> ScenarioRun:
    """Run the scenario on a fresh target; with `solution`, also play the reference solution;
    with `attempt`, replay what a learner ran after the breakage instead (grading)."""
    from sandbox.scenario.trust import require_trust

    require_trust(scenario)  # before anything of it runs
    engine = target.engine
    options = options or RunOptions()
    set_stage(scenario, target)
    timeline = Timeline()
    conductor = options.conductor(target, timeline)
    take_start_snapshot(conductor, scenario)
    played: list[Played] = []
    diff: Diff | None = None
    diff_problem: str | None = None
    try:
        open_sessions(scenario, conductor)
        played += play_steps("breakage", scenario.breakage, conductor, scenario.traffic)
        since = len(conductor.executions)
        if solution:
            played += play_steps("solution", scenario.solution, conductor)
        if attempt is not None:
            replay(attempt, conductor)
        conductor.settle_all()
        checks = run_checks(scenario, conductor, since)
        diff, diff_problem = diff_since_start(target)
        conductor.finish()
    finally:
        conductor.close()
    results = [_judge(phase, step, execution, engine) for phase, step, execution in played]
    return ScenarioRun(
        scenario=scenario,
        engine=engine,
        target=target.description,
        solution=solution,
        steps=results,
        checks=checks,
        executions=conductor.executions,
        timeline=timeline.events,
        diff=diff,
        diff_problem=diff_problem,
    )


def first_session(scenario: Scenario) -> str:
    """The lane a scenario's own events go on (its start snapshot, hints, Checks): its first
    session's; a "setup" or "scenario" lane would stay empty otherwise."""
    return scenario.sessions[0].name if scenario.sessions else "A"


def take_start_snapshot(conductor: Conductor, scenario: Scenario) -> None:
    """Snapshot the stage before any session opens (on PostgreSQL: a fast template clone).

    A scenario whose snapshot cannot be taken still plays; the timeline says why there is
    no way back but ROLLBACK.
    """
    from sandbox.timeline import EventKind

    owner = first_session(scenario)
    try:
        info = conductor.target.snapshots.take(START_SNAPSHOT, START_REASON)
    except SnapshotError as exc:
        conductor.timeline.add(owner, EventKind.SNAPSHOT, f"no start snapshot: {exc}")
        return
    conductor.timeline.add(
        owner,
        EventKind.SNAPSHOT,
        f"snapshot {START_SNAPSHOT} taken before the breakage ({info.method}, "
        f"{info.elapsed_ms:.0f} ms): \\restore {START_SNAPSHOT} goes back to it",
        snapshot=info.to_json(),
    )


def diff_since_start(target: Target) -> tuple[Diff | None, str | None]:
    """The row-level changes since the pre-mistake snapshot, or why there are none."""
    try:
        return target.snapshots.diff(START_SNAPSHOT), None
    except SnapshotError as exc:
        return None, str(exc)


def open_sessions(scenario: Scenario, conductor: Conductor) -> None:
    """Open the scenario's sessions, each with its isolation level (PostgreSQL)."""
    for spec in scenario.sessions:
        conductor.session(spec.name)
        if spec.isolation and conductor.target.engine == "postgres":
            conductor.quietly(spec.name, isolation_sql(spec.isolation))


# One step as played: its phase, the step, and its statement or its program's run.
Played = tuple[str, Step, Execution | ProgramRun]


def play_steps(
    phase: str,
    steps: tuple[Step, ...],
    conductor: Conductor,
    traffic: Sequence[TrafficDecl] = (),
    running: Traffic | None = None,
) -> list[Played]:
    """Run scripted steps; the guard reports them but lets them happen (they are the mistake),
    unless they reach outside the sandbox. A Python step's program runs under the tracer,
    its statements recorded in this run (same timeline, same numbering).

    `traffic` starts before its step and has run its whole duration when this returns (the
    breakage's traffic never runs into the learner's part); `running` is where it runs, so
    another thread (the app's reset) can stop it."""
    engine = conductor.target.engine
    guard = Guard(scripted=True)
    runs = running if running is not None else Traffic(conductor, guard)
    played: list[Played] = []
    try:
        for number, step in enumerate(steps, 1):
            _traffic_before(number, step.session, traffic, runs, conductor)
            if not step.runs_on(engine):
                continue
            if step.is_python:
                played.append((phase, step, run_program(step, conductor)))
                continue
            item = split(step.sql.on(engine), _dialect(engine))[0]
            if isinstance(item, MetaCommand):
                played.append((phase, step, conductor.run_meta(step.session, item)))
                continue
            execution = conductor.execute(step.session, item, guard, background=step.background)
            played.append((phase, step, execution))
        last = steps[-1].session if steps else first_session_of(conductor)
        for decl in traffic:
            run = runs.runs.get(decl.session)
            if run is not None and run.active:
                run_command(runs, conductor, last, _control(decl.session, "wait"), "sqlite")
    except BaseException:
        runs.stop()
        raise
    return played


def first_session_of(conductor: Conductor) -> str:
    sessions = conductor.sessions
    return sessions[0].name if sessions else "A"


def traffic_spec(decl: TrafficDecl, engine: str) -> TrafficSpec:
    sql = str(decl.sql.on(engine) or "").strip().removesuffix(";").strip()
    return TrafficSpec(decl.session, sql, decl.every_ms, decl.for_ms)


def _control(name: str, word: str) -> MetaCommand:
    command = split(f"\\traffic {name} {word}")[0]
    assert isinstance(command, MetaCommand)
    return command


def _traffic_before(
    number: int,
    session: str,
    traffic: Sequence[TrafficDecl],
    runs: Traffic,
    conductor: Conductor,
) -> None:
    """Before breakage step `number` (on `session`): wait for the traffic that step waits
    for, then start the traffic that starts here. Each is recorded as its `\\traffic` line,
    so a replay script starts and waits for it at the same places."""
    engine = conductor.target.engine
    dialect = _dialect(engine)
    for decl in traffic:
        if decl.wait_before_step == number and decl.session in runs.runs:
            run_command(runs, conductor, session, _control(decl.session, "wait"), dialect)
    for decl in traffic:
        if decl.before_step == number:
            command = split(traffic_spec(decl, engine).command(), dialect)[0]
            assert isinstance(command, MetaCommand)
            run_command(runs, conductor, session, command, dialect)


def run_program(step: Step, conductor: Conductor) -> ProgramRun:
    """Run a Python step's program against the sandbox, traced into the conductor's run.

    The source is written to a file named as the step says (its stem names the lanes) in a
    private temporary folder, which is also its working directory: a file it writes there
    goes with it.
    """
    import sys
    import tempfile
    from pathlib import Path

    from sandbox.errors import UserError
    from sandbox.trace.tracer import trace

    engine = conductor.target.engine
    assert step.python is not None and step.program is not None  # a Python step has both
    with tempfile.TemporaryDirectory(prefix="dbsandbox-step-") as folder:
        path = Path(folder) / step.program
        path.write_text(str(step.python.on(engine)), encoding="utf-8")
        try:
            traced = trace(
                [[sys.executable, str(path)]],
                conductor.target,
                timeout_s=PROGRAM_TIMEOUT_S,
                timeline=conductor.timeline,
                cwd=Path(folder),
                adopt=conductor.adopt,
            )
        except UserError as exc:
            raise ScenarioBroken(f"{step.program}: could not run: {exc}") from None
    program = traced.programs[0]
    return ProgramRun(program.label, program.exit_code, list(program.output), traced.run.executions)


@dataclass(frozen=True)
class Replayed:
    """One statement a learner ran after the breakage, to be sent again in the same session."""

    session: str
    sql: str
    # It waited on a lock while the learner went on in another session: the replay goes on too.
    background: bool = False


def replay(attempt: Sequence[Replayed], conductor: Conductor) -> None:
    """Send a learner's statements again, in order, each to its session.

    The guard lets through what it would have asked to confirm (the learner confirmed it, or
    it is in the record because it ran), and blocks what reaches outside the sandbox, as ever.
    """
    guard = Guard(scripted=True)
    dialect = _dialect(conductor.target.engine)
    for step in attempt:
        conductor.session(step.session)
        items = split(step.sql, dialect)
        if not items:
            continue
        item = items[0]
        if isinstance(item, MetaCommand):
            conductor.run_meta(step.session, item)
        else:
            conductor.execute(step.session, item, guard, background=step.background)


def run_checks(scenario: Scenario, conductor: Conductor, since: int = 0) -> list[CheckResult]:
    """Judge recovery: every check of the scenario, against the live sandbox.

    `since` is where the learner's part began (the first execution after the breakage): a
    recovery check looks at what ran from there on.
    """
    levels = {spec.name: spec.isolation for spec in scenario.sessions if spec.isolation}
    return [
        _run_check(check, conductor, conductor.target, since, levels) for check in scenario.checks
    ]


def set_stage(scenario: Scenario, target: Target) -> None:
    """Run the setup on its own connection, each statement committed at once.

    The setup meets no guard but the boundary: nothing of it runs if any of it reaches outside.
    """
    engine = target.engine
    statements = split_statements(scenario.setup.on(engine) or "", _dialect(engine))
    for statement in statements:
        outside = outside_the_sandbox(statement, _dialect(engine), target.own_directory)
        if outside:
            raise ScenarioBroken(
                f"{scenario.id}: setup not run: {statement.text[:60]!r} reaches outside the "
                f"sandbox ({outside[0].rule}: {outside[0].message})"
            )
    connection = target.connect("setup")
    adapter = target.adapter
    try:
        for statement in statements:
            cursor = connection.raw.cursor()
            try:
                cursor.execute(statement.text)
            except Exception as exc:
                error = adapter.error_of(exc)
                if error is None:
                    raise
                raise ScenarioBroken(
                    f"{scenario.id}: setup failed on {engine} at {statement.text[:60]!r}: "
                    f"{error.code or ''} {error.message}".replace("  ", " ")
                ) from None
            finally:
                cursor.close()
    finally:
        connection.close()


def _rows(outcome: Outcome) -> list[list[Any]]:
    plan = (outcome.data or {}).get("plan")
    if isinstance(plan, dict):
        # `\\explain`: its times differ from run to run, its hot steps do not. One row each.
        return [[label] for label in plan.get("hot", [])]
    return [[_as_toml(v) for v in row] for row in outcome.rows]


def _as_toml(value: Any) -> Any:
    """A driver value as a scenario file would write it, so that `expect` can match it.

    TOML has no decimals: a numeric compares as the integer or float it equals (PostgreSQL's
    sum() of a bigint column is a numeric). Everything else is its JSON value.
    """
    if isinstance(value, decimal.Decimal) and value.is_finite():
        return int(value) if value == value.to_integral_value() else float(value)
    return json_value(value)


CHECK_TIMEOUT_S = 5.0


def _run_check(
    check: Check,
    conductor: Conductor,
    target: Target,
    since: int,
    levels: dict[str, str] | None = None,
) -> CheckResult:
    if check.process is not None:
        from sandbox.scenario.process import WANTED, judge

        dialect = target.adapter.dialect
        verdict = judge(check.process, conductor.executions, since, dialect, levels)
        return CheckResult(check, WANTED[check.process.kind], verdict.detail, verdict.passed)
    if check.recovery is not None:
        used = methods_used(conductor.executions, since)
        passed = any(method in check.recovery for method in used)
        return CheckResult(check, list(check.recovery), used, passed)
    engine = target.engine
    expected = null_to_none(check.expect.on(engine))
    sql = check.sql.on(engine)
    outside = [
        finding
        for statement in split_statements(sql, _dialect(engine))
        for finding in outside_the_sandbox(statement, _dialect(engine), target.own_directory)
    ]
    if outside:
        blocked = {"code": "dbsandbox", "message": f"not run: {outside[0].message}"}
        return CheckResult(check, expected, {"error": blocked}, False)
    if sql.lstrip().startswith("\\"):
        outcome = _fresh_plan(target, sql)
    elif check.session is not None:
        outcome = conductor.quietly(check.session, sql, timeout_s=CHECK_TIMEOUT_S)
    else:
        outcome = _fresh_query(target, sql)
    if outcome.error is not None:
        actual: Any = {"error": outcome.error.to_json()}
        return CheckResult(check, expected, actual, False)
    actual = _rows(outcome)
    return CheckResult(check, expected, actual, actual == expected)


@contextlib.contextmanager
def _check_session(target: Target) -> Iterator[Session]:
    """A new connection for a check: it sees only committed data, as the next visitor would.

    A learner's session may still hold a lock the check needs (an uncommitted ALTER TABLE):
    on PostgreSQL the check then fails on its statement timeout instead of waiting for ever.
    """
    from sandbox.session import Session
    from sandbox.sqlkind import classify

    session = Session("check", target)
    session.open()
    try:
        if target.engine == "postgres":
            limit = f"SET statement_timeout = '{int(CHECK_TIMEOUT_S * 1000)}ms'"
            session.execute(limit, classify(limit, "postgres"))
        yield session
    finally:
        session.close()


def _fresh_query(target: Target, sql: str) -> Outcome:
    """A check's query, on a new connection (`_check_session`)."""
    from sandbox.sqlkind import classify

    with _check_session(target) as session:
        return session.execute(sql, classify(sql, target.adapter.dialect))


def _fresh_plan(target: Target, sql: str) -> Outcome:
    """`\\explain STATEMENT` as a check: planned on a new connection (committed data only)."""
    from sandbox.plans import explain

    command = split(sql, target.adapter.dialect)[0]
    assert isinstance(command, MetaCommand)  # the loader accepts no other backslash check
    with _check_session(target) as session:
        return explain(session, command.sql, target.own_directory)


def _judge(phase: str, step: Step, ran: Execution | ProgramRun, engine: str) -> StepResult:
    if isinstance(ran, ProgramRun):
        return _judge_program(phase, step, ran, engine)
    execution = ran
    expected = {k: null_to_none(v) for k, v in step.expect.on(engine).items()}
    outcome = execution.outcome
    review = execution.review
    findings = sorted(
        {f.rule for f in review.findings if f.blocking} if review is not None else set()
    )
    if outcome is None:
        actual: dict[str, Any] = {"status": "cancelled"}
    else:
        actual = {
            "status": str(outcome.status),
            "error": outcome.error.code if outcome.error else None,
            "rows": _rows(outcome),
            "rowcount": outcome.rowcount,
            "waits": execution.waited,
            "findings": findings,
            "tag": outcome.tag,
            "tx_after": str(outcome.tx_after),
        }
    mismatches = []
    for key, want in expected.items():
        got = actual.get(key)
        if key == "findings" and isinstance(want, list):
            want = sorted(str(rule) for rule in want)
        if got != want:
            mismatches.append(f"{key}: expected {want!r}, got {got!r}")
    if "status" not in expected and outcome is not None and outcome.status is not Status.OK:
        # A step that declares nothing must at least run cleanly.
        detail = f" ({outcome.error.code}: {outcome.error.message})" if outcome.error else ""
        mismatches.append(f"status: expected 'ok', got {str(outcome.status)!r}{detail}")
    return StepResult(phase, step, execution, expected, actual, mismatches)


def _judge_program(phase: str, step: Step, run: ProgramRun, engine: str) -> StepResult:
    """A Python step: its exit code, and the text its output must contain."""
    expected = step.expect.on(engine)
    printed = "\n".join(run.output)
    actual: dict[str, Any] = {"exit": run.exit_code, "output": printed}
    last = next((line.strip() for line in reversed(run.output) if line.strip()), "")
    said = f" (its last line: {last[:200]!r})" if last else " (it printed nothing)"
    mismatches = []
    if "exit" in expected and run.exit_code != expected["exit"]:
        mismatches.append(
            f"exit: {step.program} was to exit with {expected['exit']}, "
            f"it exited with {run.exit_code}{said}"
        )
    if "output" in expected and str(expected["output"]) not in printed:
        mismatches.append(
            f"output: {step.program} was to print {expected['output']!r}, it did not{said}"
        )
    return StepResult(phase, step, None, expected, actual, mismatches, program=run)
