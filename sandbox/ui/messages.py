"""Messages the bridge posts to the app. Posting is thread safe; everything else is not."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from textual.notifications import SeverityLevel

    from sandbox.guard.policy import Review
    from sandbox.scenario.grading import Score
    from sandbox.scenario.model import Scenario
    from sandbox.scenario.player import CheckResult
    from sandbox.schema_summary import TableSummary
    from sandbox.snapshots.diff import Diff
    from sandbox.statements import Statement
    from sandbox.timeline import Event, Timeline


class SandboxReady(Message):
    def __init__(
        self,
        engine: str,
        description: str,
        sessions: list[str],
        scenario: Scenario | None,
        timeline: Timeline,
    ) -> None:
        super().__init__()
        self.engine = engine
        self.description = description
        self.sessions = sessions
        self.scenario = scenario
        self.timeline = timeline  # the sandbox's event stream


class SandboxFailed(Message):
    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class TimelineEvent(Message):
    """One event, posted the moment a session's thread (or the watcher) recorded it."""

    def __init__(self, event: Event, timeline: Timeline) -> None:
        super().__init__()
        self.event = event
        self.timeline = timeline  # which sandbox: events of one already closed are dropped


class ConfirmationNeeded(Message):
    """The guard stopped a statement: the learner must say yes before it runs."""

    def __init__(self, session: str, statement: Statement, review: Review) -> None:
        super().__init__()
        self.session = session
        self.statement = statement
        self.review = review


class SchemaChanged(Message):
    def __init__(self, tables: list[TableSummary]) -> None:
        super().__init__()
        self.tables = tables


class ScoreReady(Message):
    """The hidden variants are graded: the Check's score, and the anomaly told from the run."""

    def __init__(
        self,
        scenario: Scenario,
        score: Score | None,
        anomaly: list[str],
        problem: str | None = None,
    ) -> None:
        super().__init__()
        self.scenario = scenario
        self.score = score  # None: it could not be graded (`problem` says why)
        self.anomaly = anomaly
        self.problem = problem


class ChecksDone(Message):
    def __init__(
        self,
        results: list[CheckResult],
        methods: list[str],
        diff: Diff | None = None,
        diff_problem: str | None = None,
    ) -> None:
        super().__init__()
        self.results = results
        self.methods = methods  # how the learner recovered, as far as what they ran tells
        self.diff = diff  # since the pre-mistake snapshot
        self.diff_problem = diff_problem


class Notice(Message):
    """Something for the learner that is not a statement's outcome (a malformed command)."""

    def __init__(self, text: str, severity: SeverityLevel = "warning") -> None:
        super().__init__()
        self.text = text
        self.severity: SeverityLevel = severity


class TraceEnded(Message):
    """A traced program run is over: each program's label and exit code, or why it failed."""

    def __init__(self, exits: list[tuple[str, int | None]], problem: str | None = None) -> None:
        super().__init__()
        self.exits = exits
        self.problem = problem
