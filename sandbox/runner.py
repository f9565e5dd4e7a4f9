"""`dbsandbox run FILE.sql`: a multi-session script in a fresh sandbox.

A line `\\session NAME` sends the following statements to that session (opened on first use;
the first session is A). The snapshot commands (`\\snapshot NAME`, `\\restore NAME`,
`\\diff NAME`, `\\snapshots`) are steps of the script, recorded where they ran.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from sandbox.conductor import Conductor, Execution
from sandbox.errors import UserError
from sandbox.guard.policy import Guard, acknowledgements
from sandbox.metacommands import check
from sandbox.outcome import Status
from sandbox.statements import Dialect, MetaCommand, Statement, split
from sandbox.targets import Target
from sandbox.timeline import Event, Timeline
from sandbox.traffic import Traffic, run_command

DEFAULT_SESSION = "A"


@dataclass(frozen=True)
class Step:
    """One statement (or snapshot command) of a script and the session it goes to."""

    session: str
    statement: Statement | MetaCommand
    background: bool = False  # a `\background` line came before it


@dataclass(frozen=True)
class Script:
    """A parsed script: its steps and the rules each statement's comments acknowledge."""

    steps: list[Step]
    acknowledged: dict[int, set[str]]


def read_script(text: str, dialect: Dialect, source: str = "<script>") -> Script:
    """Parse a script for running under the guard."""
    steps = parse_script(text, dialect, source)
    statements = [s.statement for s in steps if isinstance(s.statement, Statement)]
    return Script(steps, acknowledgements(text, statements, dialect))


def parse_script(text: str, dialect: Dialect, source: str = "<script>") -> list[Step]:
    """Split a script into steps; a bad direction is a UserError naming the line."""
    steps: list[Step] = []
    session = DEFAULT_SESSION
    background: MetaCommand | None = None
    traffic: set[str] = set()  # traffic sessions started so far
    named = {DEFAULT_SESSION}  # the script's own sessions
    for item in split(text, dialect):
        if isinstance(item, MetaCommand):
            check(item, source, session, dialect)
            if item.name == "traffic":
                _check_traffic(item, source, traffic)
            if item.name == "session":
                session = item.args[0]
                named.add(session)
                continue
            if item.name == "background":
                background = item
                continue
            if background is not None:
                break
        steps.append(Step(session, item, background=background is not None))
        background = None
    for step in steps:
        item = step.statement
        if isinstance(item, MetaCommand) and item.name == "traffic" and item.args[0] in named:
            raise UserError(
                f"{source}:{item.line}: traffic {item.args[0]} needs a session of its own: "
                f"{item.args[0]} is one of the script's sessions"
            )
    if background is not None:
        raise UserError(
            f"{source}:{background.line}: \\background must be followed by a SQL statement "
            "(it says how to pace that statement)"
        )
    return steps


def _check_traffic(command: MetaCommand, source: str, started: set[str]) -> None:
    """A `\\traffic NAME wait|stop` names traffic started above; a traffic session is not
    also a script's session (its lane is its own)."""
    name = command.args[0]
    if command.sql:
        started.add(name)
    elif name not in started:
        raise UserError(f"{source}:{command.line}: no \\traffic {name} was started above this line")


@dataclass
class RunResult:
    engine: str
    target: str
    executions: list[Execution]
    timeline: list[Event]
    notices: list[str] = field(default_factory=list)
    stopped: Execution | None = None  # the statement the guard would not let run


@dataclass(frozen=True)
class RunOptions:
    page_size: int = 100
    statement_timeout_s: float = 30.0
    wait_timeout_s: float = 5.0

    def conductor(self, target: Target, timeline: Timeline) -> Conductor:
        return Conductor(
            target,
            timeline,
            page_size=self.page_size,
            statement_timeout_s=self.statement_timeout_s,
            wait_timeout_s=self.wait_timeout_s,
        )


def run_steps(
    steps: list[Step],
    target: Target,
    options: RunOptions | None = None,
    guard: Guard | None = None,
) -> RunResult:
    """Play the steps in order on the target's sessions; SQL errors are outcomes, not failures.

    With a guard, a statement it will not let run stops the script there (`stopped`).
    """
    options = options or RunOptions()
    timeline = Timeline()
    conductor = options.conductor(target, timeline)
    traffic = Traffic(conductor, guard)
    stopped: Execution | None = None
    try:
        for step in steps:
            command = step.statement
            if isinstance(command, MetaCommand) and command.name == "traffic":
                blocked = run_command(
                    traffic, conductor, step.session, command, target.adapter.dialect
                )
                if blocked is not None:
                    stopped = blocked
                    break
                continue
            if isinstance(step.statement, MetaCommand):
                # An \explain of a statement outside the sandbox is stopped like that statement.
                execution = conductor.run_meta(step.session, step.statement)
            else:
                execution = conductor.execute(
                    step.session, step.statement, guard, background=step.background
                )
            if execution.outcome is not None and execution.outcome.status is Status.BLOCKED:
                stopped = execution
                break
        if stopped is not None:
            traffic.stop()
        # Traffic runs its whole duration (a script that ends first would cut the queue
        # short): `\traffic NAME stop` ends it earlier.
        traffic.wait()
        conductor.finish()
    finally:
        # On Ctrl+C or a bug, still stop whatever runs and close every connection.
        traffic.stop()
        conductor.close()
    return RunResult(
        engine=target.engine,
        target=target.description,
        executions=conductor.executions,
        timeline=timeline.events,
        notices=list(target.notices),
        stopped=stopped,
    )
