"""The one place in the UI with thread workers: every database call runs here, off the loop.

The app renders from one stream: every event the conductor's threads record on the timeline
(sent, queued, waiting on whom, released, finished, cancelled, connection gone) is handed to
the app as a message the moment it is recorded. Nothing here serialises sessions: each call
goes to its own session, and a session waits for another only where the engine makes it.
The only lock guards opening and closing the sandbox itself (reset, quit, switch).
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING

from sandbox.errors import UserError
from sandbox.outcome import Status, TxState
from sandbox.scenario.model import Scenario
from sandbox.statements import STATEMENT_COMMANDS, Dialect, MetaCommand, Statement, split
from sandbox.timeline import Event, EventKind, Timeline
from sandbox.ui.messages import (
    ChecksDone,
    ConfirmationNeeded,
    Notice,
    SandboxFailed,
    SandboxReady,
    SchemaChanged,
    ScoreReady,
    TimelineEvent,
    TraceEnded,
)

if TYPE_CHECKING:
    from textual.app import App

    # The conductor, the engines and the targets load with the first sandbox, in the worker
    # that opens it, after the app's first frame (issue 12, item 8).
    from sandbox.conductor import Conductor, Execution
    from sandbox.guard.policy import Guard
    from sandbox.options import TargetOptions
    from sandbox.scenario.grading import Score
    from sandbox.scenario.player import CheckResult
    from sandbox.snapshots.diff import Diff
    from sandbox.targets import Target
    from sandbox.traffic import Traffic

PAGE_SIZE = 500  # rows shown per result; a million-row table is never loaded whole
# How often the schema pane may re-read the counts while a burst of commits goes on.
SCHEMA_REFRESH_S = 0.3
TRACE_TIMEOUT_S = 600.0  # a traced program still running after this long is stopped
# How long closing the sandbox waits for a stopped trace to wrap up (its programs are killed
# at once; their last reports may take the tracer's own drain time to arrive).
TRACE_STOP_WAIT_S = 15.0


class Bridge:
    def __init__(
        self, app: App[None], options: TargetOptions, statement_timeout_s: float = 30.0
    ) -> None:
        self.app = app
        self.options = options
        self.statement_timeout_s = statement_timeout_s
        self.target: Target | None = None
        self.conductor: Conductor | None = None
        self.timeline = Timeline()
        self.scenario: Scenario | None = None
        self.breakage_end = 0  # executions before this index are the scenario's breakage
        self.last_score: Score | None = None  # the latest Check's score (exports carry it)
        self._life = threading.Lock()  # opening or closing the sandbox, never statements
        self._schema_wanted = threading.Event()
        self._schema_thread: threading.Thread | None = None
        self._schema_reading = False
        self._closed = False
        self._warned: set[str] = set()  # each warning once per app, not once per reset
        # The trace running now: set `stop` to kill its programs; `done` is set once it ended.
        self._trace: tuple[threading.Event, threading.Event] | None = None
        self._trace_lock = threading.Lock()
        # Traffic sessions of this sandbox (the breakage's and the editor's `\\traffic`):
        # stopped, outside `_life`, before the sandbox closes, since the breakage's traffic
        # holds `_life` while it runs.
        self._traffic: list[Traffic] = []
        self._traffic_lock = threading.Lock()

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

        self.stop_traffic()
        with self._life:
            self._close_locked()
            self._closed = False
            timeline = Timeline()
            timeline.subscribe(lambda event: self._forward(timeline, event))
            self.timeline = timeline
            self.scenario = scenario
            try:
                from sandbox.conductor import Conductor
                from sandbox.targets import open_target

                self.target = open_target(self.options)
                if scenario is not None:
                    from sandbox.scenario.trust import require_trust

                    require_trust(scenario)  # the app asked; nothing untrusted runs code
                    if not scenario.supports(self.target.engine):
                        raise UserError(
                            f"scenario {scenario.id} does not run on {self.target.engine}"
                        )
                    set_stage(scenario, self.target)
                self.conductor = Conductor(
                    self.target,
                    timeline,
                    page_size=PAGE_SIZE,
                    statement_timeout_s=self.statement_timeout_s,
                )
                self.breakage_end = 0
                self.last_score = None
                if scenario is not None:
                    take_start_snapshot(self.conductor, scenario)
                    open_sessions(scenario, self.conductor)
                    from sandbox.guard.policy import Guard

                    runs = self._new_traffic(self.conductor, Guard(scripted=True))
                    play_steps(
                        "breakage", scenario.breakage, self.conductor, scenario.traffic, runs
                    )
                    self.breakage_end = len(self.conductor.executions)
                else:
                    self.conductor.session("A")
                sessions = [s.name for s in self.conductor.sessions]
            except (UserError, ScenarioBroken) as exc:
                self._close_locked()
                self.app.post_message(SandboxFailed(str(exc)))
                return
            self.app.post_message(
                SandboxReady(
                    self.target.engine, self.target.description, sessions, scenario, timeline
                )
            )
            for warning in self.target.warnings:
                if warning not in self._warned:
                    self._warned.add(warning)
                    self.app.post_message(Notice(warning, "warning"))
        self.refresh_schema()

    def _new_traffic(self, conductor: Conductor, guard: Guard | None) -> Traffic:
        from sandbox.traffic import Traffic

        runs = Traffic(conductor, guard)
        with self._traffic_lock:
            self._traffic.append(runs)
        return runs

    def traffic_running(self) -> list[str]:
        """The traffic sessions still sending (a reset or quit stops them)."""
        with self._traffic_lock:
            return [n for t in self._traffic for n, run in t.runs.items() if run.active]

    def stop_traffic(self) -> None:
        """Stop every traffic session (their loops end within a tick; what they have in flight
        is cancelled when the sandbox closes)."""
        with self._traffic_lock:
            runs, self._traffic = self._traffic, []
        for traffic in runs:
            traffic.stop()

    def close(self) -> None:
        """Cancel what runs, close every session and remove the sandbox (bounded)."""
        self.stop_traffic()
        with self._life:
            self._close_locked()
            self._closed = True
            self._schema_wanted.set()  # lets the schema thread see it should end

    def _close_locked(self) -> None:
        self._stop_trace()  # its programs use the sandbox: they go before it does
        self.stop_traffic()  # its loops send through the conductor: they go before it does
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

    def _forward(self, timeline: Timeline, event: Event) -> None:
        """Runs on whichever thread recorded the event: hand it to the app at once."""
        self.app.post_message(TimelineEvent(event, timeline))
        if _changes_committed_data(event):
            self.refresh_schema()

    # ------------------------------------------------------------------ statements (threads)

    def run(
        self, session: str, text: str, confirmed: bool = False, at: tuple[int, int] = (1, 1)
    ) -> None:
        """Send every statement of `text` to `session`, stopping at one the guard stops.

        `at` is the editor line and column where `text` begins: each statement's line and
        column are the editor's (the caption, the timeline and lint findings point there).
        Returns once the last one is handed over (not finished): its outcome, like every
        other, arrives through the timeline.
        """
        from sandbox.guard.policy import Guard, acknowledgements
        from sandbox.metacommands import as_statement, check

        conductor = self.conductor
        if conductor is None:
            self.app.post_message(Notice("no sandbox is open yet"))
            return
        items = [in_editor(item, at) for item in split(text, self.dialect)]
        statements = [item for item in items if isinstance(item, Statement)]
        acknowledged = acknowledgements(text, statements, self.dialect)
        for item in items:
            if isinstance(item, MetaCommand):
                try:
                    check(item, "line", session, self.dialect)
                except UserError as exc:
                    self.app.post_message(Notice(str(exc)))
                    return
                if item.name == "session":
                    session = item.args[0]  # the rest of this text goes to that session
                    try:
                        conductor.session(session)  # opened now: its tab appears at once
                    except UserError as exc:
                        self.app.post_message(Notice(str(exc), "error"))
                        return
                    continue
                if item.name == "background":
                    continue  # in the app every statement already runs in the background
                if item.name == "traffic":
                    self._editor_traffic(conductor, session, item, confirmed)
                    continue
                if item.name in STATEMENT_COMMANDS:
                    # \explain runs SQL: queued, watched and cancelled (F8) like a statement.
                    explained = conductor.submit(session, as_statement(item), command=item)
                    explained.reviewed.wait()
                    continue
                conductor.run_meta(session, item)
                continue
            guard = Guard(yes=confirmed, acknowledged=acknowledged, in_app=True)
            try:
                execution = conductor.submit(session, item, guard)
            except UserError as exc:  # the session could not connect
                self.app.post_message(Notice(str(exc), "error"))
                return
            # The review runs on the session's thread, after what it is still running; the
            # next statement of this text is only handed over once this one may run.
            execution.reviewed.wait()
            outcome = execution.outcome
            if outcome is not None and outcome.status is Status.BLOCKED and execution.review:
                self.app.post_message(ConfirmationNeeded(session, item, execution.review))
                return
            if outcome is not None and outcome.status is Status.CANCELLED:
                return  # cancelled while queued: the rest of the text is dropped too

    def _editor_traffic(
        self, conductor: Conductor, session: str, command: MetaCommand, confirmed: bool
    ) -> None:
        """`\\traffic` typed in the editor: start, wait for or stop a traffic session of this
        sandbox (its loop runs on its own thread; a wait holds only this worker)."""
        from sandbox.guard.policy import Guard
        from sandbox.traffic import run_command

        name = command.args[0]
        with self._traffic_lock:
            owner = next((t for t in self._traffic if name in t.runs), None)
        try:
            if owner is None:
                if command.sql and self.is_session(name):
                    raise UserError(
                        f"traffic {name} needs a session of its own: {name} is already a session"
                    )
                if not command.sql:
                    raise UserError(f"no traffic {name} was started in this sandbox")
                owner = self._new_traffic(conductor, Guard(yes=confirmed, in_app=True))
            run_command(owner, conductor, session, command, self.dialect)
        except UserError as exc:
            self.app.post_message(Notice(str(exc), "error"))

    def page(self, session: str, index: int, skip: int) -> None:
        """Re-run query `index` on `session` for the page after its first `skip` rows."""
        conductor = self.conductor
        source = self.execution(index)
        if conductor is None or source is None:
            self.app.post_message(Notice("that result belongs to a sandbox that is gone"))
            return
        try:
            conductor.page(session, source, skip)
        except UserError as exc:
            self.app.post_message(Notice(str(exc)))

    def decline(self, session: str, statement: Statement) -> None:
        """The learner said no: nothing runs, and the timeline says so."""
        self.timeline.add(
            session,
            EventKind.GUARD,
            f"declined by you: {' '.join(statement.text.split())[:60]} was not run",
            line=statement.line,
        )

    def cancel(self, session: str) -> None:
        """Stop what `session` runs or waits for, and what is queued behind it."""
        conductor = self.conductor
        if conductor is None:
            return
        stopped = conductor.cancel_session(session, "cancelled by you (F8)")
        if stopped is None:
            self.app.post_message(Notice(f"session {session} is not running anything"))

    def new_session(self, name: str) -> None:
        conductor = self.conductor
        if conductor is None:
            return
        try:
            conductor.session(name)
        except UserError as exc:
            self.app.post_message(Notice(str(exc), "error"))

    def close_session(self, name: str) -> None:
        # A traffic session's loop would open the session again with its next statement.
        with self._traffic_lock:
            runs = [t for t in self._traffic if name in t.runs]
        for traffic in runs:
            traffic.stop(name)
        conductor = self.conductor
        if conductor is not None:
            conductor.close_session(name)

    # ------------------------------------------------------------------ traced programs

    @property
    def tracing(self) -> bool:
        """A traced program runs now (a second trace waits for it to end)."""
        return self._trace is not None

    def is_session(self, name: str) -> bool:
        """Whether `name` is one of the conductor's sessions (the learner's), not a traced
        program's connection: only those take statements from the editor."""
        conductor = self.conductor
        return conductor is not None and any(s.name == name for s in conductor.sessions)

    def trace(self, commands: list[list[str]], together: bool = False) -> None:
        """Run `commands` under trace against this sandbox (a thread worker's call).

        Their connections become lanes of this sandbox's timeline and their statements are
        numbered among the sessions' (`Conductor.adopt`): the panes draw them as they arrive,
        and exports carry them. Closing the sandbox (quit, reset, switch) kills the programs.
        """
        from sandbox.masking import first_line
        from sandbox.trace.tracer import trace

        stop, done = threading.Event(), threading.Event()
        with self._life:
            conductor, target = self.conductor, self.target
            with self._trace_lock:
                busy = self._trace is not None
                if conductor is not None and target is not None and not busy:
                    self._trace = (stop, done)
        if busy:
            self.app.post_message(TraceEnded([], "a traced program is still running"))
            return
        if conductor is None or target is None:
            self.app.post_message(TraceEnded([], "no sandbox is open yet"))
            return
        try:
            result = trace(
                commands,
                target,
                together=together,
                timeout_s=TRACE_TIMEOUT_S,
                timeline=conductor.timeline,
                adopt=conductor.adopt,
                share=conductor.watch_with,
                stop=stop,
                others=lambda: conductor.sessions,
            )
        except UserError as exc:
            self.app.post_message(TraceEnded([], str(exc)))
        except Exception as exc:  # a bug in the recording, or a server gone: said, app goes on
            self.app.post_message(TraceEnded([], f"the trace failed: {first_line(exc)}"))
        else:
            exits = [(p.label, p.exit_code) for p in result.programs]
            self.app.post_message(TraceEnded(exits))
        finally:
            with self._trace_lock:
                self._trace = None
            done.set()

    def _stop_trace(self) -> None:
        """Kill the traced programs still running and wait (bounded) for the trace to end."""
        with self._trace_lock:
            running = self._trace
        if running is not None:
            stop, done = running
            stop.set()
            done.wait(TRACE_STOP_WAIT_S)

    # ------------------------------------------------------------------ the schema pane

    def refresh_schema(self) -> None:
        """Ask for a fresh read of the committed schema; bursts are folded into one read."""
        self._schema_wanted.set()
        if self._schema_thread is None or not self._schema_thread.is_alive():
            self._schema_thread = threading.Thread(
                target=self._schema_loop, name="dbsandbox-schema", daemon=True
            )
            self._schema_thread.start()

    def _schema_loop(self) -> None:
        while not self._closed:
            if not self._schema_wanted.wait(timeout=5.0):
                continue
            self._schema_reading = True
            self._schema_wanted.clear()
            target = self.target
            if self._closed or target is None:
                self._schema_reading = False
                continue
            try:
                from sandbox.schema_summary import summarize

                tables = summarize(target)
            except Exception:  # the sandbox went away under the read (reset, quit)
                self._schema_reading = False
                continue
            if target is self.target:
                self.app.post_message(SchemaChanged(tables))
            self._schema_reading = False
            # At most one read per interval however fast the commits come.
            time.sleep(SCHEMA_REFRESH_S)

    @property
    def schema_settled(self) -> bool:
        """No schema read is asked for or under way (what tests and screenshots wait for)."""
        return not self._schema_wanted.is_set() and not self._schema_reading

    # ------------------------------------------------------------------ grading

    def _grade(
        self, conductor: Conductor, scenario: Scenario
    ) -> tuple[list[CheckResult], Diff | None, str | None]:
        """The scenario's checks, and the diff since its start snapshot (or why there is none)."""
        from sandbox.scenario.player import diff_since_start, run_checks

        results = run_checks(scenario, conductor, self.breakage_end)
        return (results, *diff_since_start(conductor.target))

    def check(self) -> None:
        """Run the scenario's checks against the live sandbox; then replay what the learner
        ran on every hidden variant (fresh sandboxes, off the live one) and score it all."""
        from sandbox.recovery import methods_used

        conductor, scenario = self.conductor, self.scenario
        if conductor is None or scenario is None:
            return
        results, diff, problem = self._grade(conductor, scenario)
        methods = methods_used(conductor.executions, self.breakage_end)
        self.app.post_message(ChecksDone(results, methods, diff, problem))
        try:
            scored = self._score(conductor, scenario, results, diff)
        except Exception as exc:  # a server gone mid-grading: the lesson goes on, unscored
            from sandbox.masking import first_line

            why = f"the hidden variants could not be graded: {first_line(exc)}"
            self.app.post_message(ScoreReady(scenario, None, [], why))
            return
        self.app.post_message(ScoreReady(scenario, scored, self._anomaly_story(conductor)))

    def _score(
        self,
        conductor: Conductor,
        scenario: Scenario,
        results: list[CheckResult],
        diff: Diff | None,
    ) -> Score:
        """Grade the attempt on the hidden variants (fresh sandboxes) and score it; a Check
        event on the timeline records the verdict, where an export carries it."""
        from sandbox.lifecycle import sandbox_closed_at_end
        from sandbox.scenario.grading import DatasetRun, attempt_of, grade_variants, score
        from sandbox.scenario.player import first_session
        from sandbox.targets import open_target

        attempt = attempt_of(conductor.executions, self.breakage_end, self.timeline.events)
        options = self.options
        variants, reference_lost = grade_variants(
            scenario, attempt, lambda: sandbox_closed_at_end(open_target(options))
        )
        scored = score(scenario, DatasetRun(None, results, diff), variants, attempt.effort,
                       reference_lost)  # fmt: skip
        passed = sum(1 for v in variants if v.passed)
        conductor.timeline.add(
            first_session(scenario),
            EventKind.CHECK,
            f"Check: score {scored.total}/100, hidden variants {passed}/{len(variants)} passed"
            + (" (recovered)" if scored.recovered else ""),
            recovered=scored.recovered,
            score=scored.total,
        )
        self.last_score = scored
        return scored

    def _anomaly_story(self, conductor: Conductor) -> list[str]:
        scenario = self.scenario
        if scenario is None or scenario.anomaly is None:
            return []
        from sandbox.scenario.anomaly import story

        # The breakage is where the anomaly happened; the learner's fix is not part of it.
        return story(scenario.anomaly, conductor.executions[: self.breakage_end])

    def note_hint(self, number: int) -> None:
        """A hint was shown: on the timeline, where the score counts it."""
        from sandbox.scenario.player import first_session

        conductor, scenario = self.conductor, self.scenario
        if conductor is not None and scenario is not None:
            conductor.timeline.add(first_session(scenario), EventKind.HINT, f"hint {number} shown")

    def export(self, directory: Path) -> None:
        """Write the session as JSON timeline, replayable .sql and Markdown runbook."""
        from sandbox.export import SessionRecord, write_export
        from sandbox.scenario.player import START_SNAPSHOT

        conductor, scenario = self.conductor, self.scenario
        if conductor is None:
            self.app.post_message(Notice("nothing to export: no sandbox is open"))
            return
        checks: list[CheckResult] = []
        diff = problem = None
        if scenario is not None:
            checks, diff, problem = self._grade(conductor, scenario)
        record = SessionRecord.from_conductor(
            conductor,
            scenario=scenario,
            learner_from=self.breakage_end if scenario is not None else None,
            checks=checks,
            diff=diff,
            diff_against=START_SNAPSHOT if diff is not None else None,
            diff_problem=problem,
            score=self.last_score if scenario is not None else None,
        )
        try:
            written = write_export(record, directory)
        except UserError as exc:
            self.app.post_message(Notice(str(exc), "error"))
            return
        names = ", ".join(path.name for path in written)
        self.app.post_message(Notice(f"session exported to {directory}: {names}", "information"))

    # ------------------------------------------------------------------ questions (UI thread)

    def execution(self, index: int | None) -> Execution | None:
        conductor = self.conductor
        if conductor is None or index is None or not 0 <= index < len(conductor.executions):
            return None
        return conductor.executions[index]

    def open_transactions(self) -> list[tuple[str, TxState, int]]:
        """Sessions with a transaction open, and how many changes (writes) it would roll back."""
        conductor = self.conductor
        if conductor is None:
            return []
        return [
            (s.name, s.tx_state, s.tx_changes)
            for s in conductor.sessions
            if s.tx_state is not TxState.IDLE
        ]

    def snapshot_names(self) -> list[str]:
        """The sandbox's snapshots, oldest first (a reset throws them away)."""
        conductor = self.conductor
        if conductor is None:
            return []
        return [info.name for info in conductor.target.snapshots.list()]

    def running(self) -> list[str]:
        """Sessions with a statement running, waiting or queued."""
        conductor = self.conductor
        if conductor is None:
            return []
        return sorted({e.session for e in conductor.pending})


def in_editor(item: Statement | MetaCommand, at: tuple[int, int]) -> Statement | MetaCommand:
    """`item`, split from text that begins at editor line and column `at`, placed in the editor.

    Only lines and columns move: offsets stay relative to the text (acknowledgements use them).
    """
    line, column = at
    if (line, column) == (1, 1):
        return item
    moved_column = item.column + column - 1 if item.line == 1 else item.column
    if isinstance(item, MetaCommand):
        return replace(item, line=item.line + line - 1, column=moved_column)
    end_column = item.end_column + column - 1 if item.end_line == 1 else item.end_column
    return replace(
        item,
        line=item.line + line - 1,
        column=moved_column,
        end_line=item.end_line + line - 1,
        end_column=end_column,
    )


def _changes_committed_data(event: Event) -> bool:
    """Whether the committed data (what the schema pane counts) may differ after `event`."""
    if event.kind in (EventKind.COMMIT, EventKind.RESTORE):
        return True
    return event.kind is EventKind.OUTCOME and bool(event.data.get("saved"))
