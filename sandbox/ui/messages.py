"""Messages the bridge posts to the app. Posting is thread safe; everything else is not."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.message import Message

if TYPE_CHECKING:
    from sandbox.conductor import Execution
    from sandbox.guard.policy import Review
    from sandbox.scenario.model import Scenario
    from sandbox.scenario.player import CheckResult
    from sandbox.schema_summary import TableSummary
    from sandbox.statements import Statement
    from sandbox.timeline import Event


class SandboxReady(Message):
    def __init__(
        self, engine: str, description: str, sessions: list[str], scenario: Scenario | None
    ) -> None:
        super().__init__()
        self.engine = engine
        self.description = description
        self.sessions = sessions
        self.scenario = scenario


class SandboxFailed(Message):
    def __init__(self, reason: str) -> None:
        super().__init__()
        self.reason = reason


class TimelineEvent(Message):
    def __init__(self, event: Event) -> None:
        super().__init__()
        self.event = event


class StatementDone(Message):
    """A statement finished, or is confirmed waiting on a lock (its outcome comes later)."""

    def __init__(self, execution: Execution) -> None:
        super().__init__()
        self.execution = execution


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


class ChecksDone(Message):
    def __init__(self, results: list[CheckResult]) -> None:
        super().__init__()
        self.results = results
