"""The one place in the UI with thread workers: every database call runs here, off the loop.

The conductor is not built for concurrent callers, so its calls are serialised by a lock; a
statement that waits on a lock returns as soon as the wait is confirmed, so the lock is never
held for long, and a timer asks the conductor to record statements released since. Cancelling
goes straight to the running session (psycopg2 cancel / sqlite3 interrupt are thread safe).
Results come back as messages, the only thing a thread may hand the app.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.conductor import Conductor
from sandbox.errors import UserError
from sandbox.outcome import Status, TxState
from sandbox.scenario.model import Scenario
from sandbox.schema_summary import summarize
from sandbox.statements import Dialect, MetaCommand, Statement, split
from sandbox.targets import Target, TargetOptions, open_target
from sandbox.timeline import Event, EventKind, Timeline
from sandbox.ui.messages import (
    ChecksDone,
    ConfirmationNeeded,
    Notice,
    SandboxFailed,
    SandboxReady,
    SchemaChanged,
    StatementDone,
    TimelineEvent,
)

if TYPE_CHECKING:
    from textual.app import App

    from sandbox.scenario.player import CheckResult
    from sandbox.snapshots.diff import Diff

PAGE_SIZE = 500  # rows shown per result; a million-row table is never loaded whole
_SCHEMA_WORDS = frozenset({"CREATE", "ALTER", "DROP", "COMMIT", "END", "TRUNCATE", "ROLLBACK"})


class Bridge:
    def __init__(self, app: App[None], options: TargetOptions) -> None:
        self.app = app
        self.options = options
        self.target: Target | None = None
        self.conductor: Conductor | None = None
        self.timeline = Timeline()
        self.scenario: Scenario | None = None
        self._lock = threading.Lock()
        self._reported: set[int] = set()  # executions whose outcome the app has been shown
        self.breakage_end = 0  # executions before this index are the scenario's breakage

    # ------------------------------------------------------------------ lifecycle (threads)

    @property
    def dialect(self) -> Dialect:
        return "postgres" if self.options.engine == "postgres" else "sqlite"  # the sandbox's

    def open(self, scenario: Scenario | None = None) -> None:
        """Create a fresh sandbox (closing the old one); with a scenario, play its breakage."""
        from sandbox.scenario.player import (
            ScenarioBroken,
            open_sessions,
            play_steps,
            set_stage,
            take_start_snapshot,
        )

        with self._lock:
            self._close_locked()
            self.timeline = Timeline()
            self.timeline.subscribe(self._forward)
            self.scenario = scenario
            try:
                self.target = open_target(self.options)
                if scenario is not None:
                    if not scenario.supports(self.target.engine):
                        raise UserError(
                            f"scenario {scenario.id} does not run on {self.target.engine}"
                        )
                    set_stage(scenario, self.target)
                self.conductor = Conductor(self.target, self.timeline, page_size=PAGE_SIZE)
                self._reported = set()
                if scenario is not None:
                    take_start_snapshot(self.conductor, scenario)
                    open_sessions(scenario, self.conductor)
                    play_steps("breakage", scenario.breakage, self.conductor)
                    self.breakage_end = len(self.conductor.executions)
                    self._report()
                else:
                    self.conductor.session("A")
                sessions = [s.name for s in self.conductor.sessions]
            except (UserError, ScenarioBroken) as exc:
                self._close_locked()
                self.app.post_message(SandboxFailed(str(exc)))
                return
            self.app.post_message(
                SandboxReady(self.target.engine, self.target.description, sessions, scenario)
            )
        self.refresh_schema()

    def close(self) -> None:
        with self._lock:
            self._close_locked()

    def _close_locked(self) -> None:
        conductor, target = self.conductor, self.target
        self.conductor = self.target = None
        try:
            if conductor is not None:
                conductor.close()
        finally:
            # Even if a session would not close, the sandbox itself (scratch database or
            # temporary file) must go.
            if target is not None:
                target.close()

    def _forward(self, event: Event) -> None:
        self.app.post_message(TimelineEvent(event))

    # ------------------------------------------------------------------ statements (threads)

    def run(self, session: str, text: str, confirmed: bool = False) -> None:
        """Run every statement of `text` on `session`, stopping at one the guard stops."""
        from sandbox.guard.policy import Guard, acknowledgements
        from sandbox.metacommands import check

        items = split(text, self.dialect)
        statements = [item for item in items if isinstance(item, Statement)]
        acknowledged = acknowledgements(text, statements, self.dialect)
        changed_schema = False
        for item in items:
            if isinstance(item, MetaCommand):
                try:
                    check(item, "line", session)
                except UserError as exc:
                    self.app.post_message(Notice(str(exc)))
                    return
                if item.name == "session":
                    session = item.args[0]  # the rest of this text goes to that session
                    continue
            with self._lock:
                if self.conductor is None:
                    return
                if isinstance(item, MetaCommand):
                    execution = self.conductor.run_meta(session, item)
                    self._report(first=execution.index)
                    changed_schema |= item.name == "restore"
                    continue
                statement = item
                guard = Guard(yes=confirmed, acknowledged=acknowledged)
                execution = self.conductor.execute(session, statement, guard)
                outcome = execution.outcome
                if outcome is not None and outcome.status is Status.BLOCKED and execution.review:
                    self._reported.add(execution.index)
                    self.app.post_message(ConfirmationNeeded(session, statement, execution.review))
                    break
                self._report(first=execution.index)
            changed_schema |= execution.kind.keyword in _SCHEMA_WORDS
        if changed_schema:
            self.refresh_schema()

    def decline(self, session: str, statement: Statement) -> None:
        """The learner said no: nothing runs, and the timeline says so."""
        self.timeline.add(
            session,
            EventKind.GUARD,
            f"declined by you: {' '.join(statement.text.split())[:60]} was not run",
            line=statement.line,
        )

    def poll(self) -> None:
        """Record statements released from lock waits since the last call."""
        with self._lock:
            if self.conductor is None or not self.conductor.pending:
                return
            self.conductor.settle_all_quickly()
            self._report()

    def _report(self, first: int | None = None) -> None:
        """Show the app every statement that finished or started waiting, causes first.

        A COMMIT can release another session's statement within the same settle, so finished
        statements are found by looking, not by remembering which one was sent.
        """
        assert self.conductor is not None
        shown = []
        for execution in self.conductor.executions:
            key = execution.index
            done = execution.outcome is not None
            if key in self._reported or (not done and not execution.waited and key != first):
                continue
            if done:
                self._reported.add(key)
            shown.append(execution)
        shown.sort(key=lambda e: (e.index != first, e.outcome is None, e.index))
        for execution in shown:
            self.app.post_message(StatementDone(execution))

    def cancel(self, session: str) -> None:
        """Stop the statement running (or waiting) on `session`. Thread safe, no lock needed."""
        conductor = self.conductor
        if conductor is None:
            return
        for s in conductor.sessions:
            if s.name == session:
                s.cancel()

    def refresh_schema(self) -> None:
        target = self.target
        if target is None:
            return
        try:
            tables = summarize(target)
        except Exception:  # a schema read racing a DROP: the next refresh will be right
            return
        self.app.post_message(SchemaChanged(tables))

    def _grade_locked(
        self, conductor: Conductor, scenario: Scenario
    ) -> tuple[list[CheckResult], Diff | None, str | None]:
        """The scenario's checks, and the diff since its start snapshot (or why there is none)."""
        from sandbox.scenario.player import diff_since_start, run_checks

        results = run_checks(scenario, conductor, self.breakage_end)
        return (results, *diff_since_start(conductor.target))

    def check(self) -> None:
        """Run the scenario's checks against the live sandbox."""
        from sandbox.recovery import methods_used

        with self._lock:
            if self.conductor is None or self.scenario is None:
                return
            results, diff, problem = self._grade_locked(self.conductor, self.scenario)
            methods = methods_used(self.conductor.executions, self.breakage_end)
        self.app.post_message(ChecksDone(results, methods, diff, problem))

    def export(self, directory: Path) -> None:
        """Write the session as JSON timeline, replayable .sql and Markdown runbook."""
        from sandbox.export import SessionRecord, write_export
        from sandbox.scenario.player import START_SNAPSHOT

        with self._lock:
            if self.conductor is None:
                self.app.post_message(Notice("nothing to export: no sandbox is open"))
                return
            checks: list[CheckResult] = []
            diff = problem = None
            if self.scenario is not None:
                checks, diff, problem = self._grade_locked(self.conductor, self.scenario)
            record = SessionRecord.from_conductor(
                self.conductor,
                scenario=self.scenario,
                learner_from=self.breakage_end if self.scenario is not None else None,
                checks=checks,
                diff=diff,
                diff_against=START_SNAPSHOT if diff is not None else None,
                diff_problem=problem,
            )
        try:
            written = write_export(record, directory)
        except UserError as exc:
            self.app.post_message(Notice(str(exc), "error"))
            return
        names = ", ".join(path.name for path in written)
        self.app.post_message(Notice(f"session exported to {directory}: {names}", "information"))

    # ------------------------------------------------------------------ questions (UI thread)

    def open_transactions(self) -> list[tuple[str, TxState, int]]:
        """Sessions with a transaction open, and how many statements it would roll back."""
        conductor = self.conductor
        if conductor is None:
            return []
        return [
            (s.name, s.tx_state, s.tx_statements)
            for s in conductor.sessions
            if s.tx_state is not TxState.IDLE
        ]
