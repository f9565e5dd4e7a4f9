"""The dbsandbox app: editor, schema and results, transaction timeline, scenario panel.

All database work goes through the Bridge (thread workers); this module only arranges what the
learner sees and turns keys into requests.
"""

from __future__ import annotations

import functools
import signal
import sys
import textwrap
import threading
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, TypeVar

from textual import events, on, work
from textual.app import ComposeResult, SystemCommand
from textual.binding import Binding, BindingType
from textual.containers import Horizontal, Vertical
from textual.message import Message
from textual.notifications import SeverityLevel
from textual.screen import Screen
from textual.widget import Widget
from textual.widgets import Footer, Header, Tab, Tabs, TextArea

from sandbox.errors import UserError
from sandbox.history import History
from sandbox.metacommands import session_name_ok
from sandbox.options import TargetOptions
from sandbox.result_files import FORMATS, Format, ShownResult, write_result
from sandbox.scenario.catalog import Listing, find, listings, next_listing
from sandbox.scenario.model import Scenario
from sandbox.scenario.recap import recap
from sandbox.statements import MetaCommand, Statement, split
from sandbox.timeline import Event, EventKind, Timeline
from sandbox.transcript import plural
from sandbox.ui.bridge import PAGE_SIZE, Bridge
from sandbox.ui.editing import EditorActions
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
from sandbox.ui.screens.dialogs import (
    ConfirmQuit,
    ConfirmRunCode,
    ConfirmStatement,
    HelpScreen,
    ScenarioPicker,
)
from sandbox.ui.screens.editor_dialogs import PathPrompt
from sandbox.ui.screens.go_to_row import GoToRow
from sandbox.ui.text import visible
from sandbox.ui.widgets.editor import CompletionList, SqlEditor
from sandbox.ui.widgets.results import ResultsView, sort_caption
from sandbox.ui.widgets.scenario_panel import ScenarioPanel
from sandbox.ui.widgets.schema import SchemaView
from sandbox.ui.widgets.timeline import TimelineView, legend

if TYPE_CHECKING:
    # Only a type here: the conductor (and the engines under it) load with the first sandbox,
    # after the first frame (issue 12, item 8).
    from sandbox.conductor import Execution
    from sandbox.progress import Entry, ProgressStore

HELP = """
# dbsandbox keys

Every key works from any pane: the editor, the results, the schema or the timeline.

| key | what it does |
| --- | --- |
| **F5** or **ctrl+j** | run the statement under the cursor, or the selected statements |
| **Esc** | back to the editor from any pane; in the editor it stays there and drops the selection |
| **F7** | go to the editor and select everything in it (typing replaces it) |
| **F2** | the scenario's next hint (the Hint button) |
| **F3** | check the recovery against the scenario's checks (the Check button) |
| **ctrl+r** | reset: a fresh sandbox, the mistake made again; asks first, saying what is lost |
| **F6** | switch to the next session (tabs above the editor) |
| **ctrl+n** | open a new session (B, C, ...): its own connection, editor and results |
| **F4** | close this session (asks first when its transaction is open) |
| **F8** | cancel the statement running or waiting in this session (and what is queued) |
| **F9** | the plan of the statement under the cursor, as a tree with its costly steps marked |
| **ctrl+up / ctrl+down** | previous / next statement run (after the newest: your draft again) |
| **ctrl+g** | search the statements run: type to narrow, Enter puts one in the editor |
| **ctrl+space**, or **Tab** after a word | complete a keyword, table, column or `alias.` column |
| **ctrl+f** | find in the editor (Enter: next match) |
| **ctrl+l** | format the selection, or all the SQL, with sqlglot (ctrl+z undoes it) |
| **ctrl+o** / **ctrl+s** | open a `.sql` file into the editor / save the editor to a file |
| **F10** | zoom: the pane you are in fills the screen; F10 again (or Esc) puts it back |
| **F12** | next pane: editor, results, timeline, scenario, schema (a zoom follows along) |
| **ctrl+p** | commands: every action here, and load or next scenario, session, engine, export |
| **F1** | this help (Esc or F1 closes it) |
| **ctrl+q** | quit (asks first if a transaction is open or a statement runs) |

While the completion list is up, **Up**/**Down** choose, **Enter** or **Tab** take one and
**Esc** closes it. Tables and columns come from the schema pane (what is committed) and from
the `CREATE TABLE` statements in the editor. When a statement fails, the place the engine
points at is selected in the editor.

A new scenario opens with its story, its task and what happened before you arrived (the
steps that made the mistake, in full) zoomed to the whole screen: Esc goes to the editor, and
F10 in the scenario pane brings it back. After a Check that says *Recovered*, the **Next**
button is focused: **Enter** loads the next scenario (ctrl+p "Next scenario" works any time).

In the timeline (F12 until you are there): **up** / **down**, **PgUp** / **PgDn**, **Home** /
**End** move over the events, and the one under the cursor is shown in full below the log:
the whole statement, what the engine said, the time; **Enter** zooms the timeline (like F10).
**left** / **right** scroll the log sideways.

## In the results grid

Get there with **F12** (next pane) or the palette's *Focus the results*; **Esc** goes back to
the editor.

| key | what it does |
| --- | --- |
| **Enter** | view the cell whole: every line, its length, SQL NULL said as NULL (**Esc** closes) |
| **c** / **C** | copy the cell / the whole row (as a CSV line) to the terminal's clipboard |
| **s** | sort the loaded rows by the cursor's column: ascending, descending, as returned |
| **e** / **j** | write the rows shown to a new CSV / JSON file here (never overwrites one) |
| **n** / **p** | next / previous page: the query run again in its session, earlier rows skipped |
| **g** | go to row N: the page starts there (past the end, it says how many rows there are) |

In a cell `∅ NULL` is SQL NULL and `NULL` is the text 'NULL'; `↵` marks a new line in the
value and `…` a value clipped to fit (Enter shows it whole). A page past the first is the
query run again, so nothing is held open between pages and the data may have changed; in an
export NULL is an empty unquoted CSV field (every text is quoted) or JSON `null`.

In a dialog only its own keys work, and it lists them: the guard's confirmation takes
**y** (run it) and **n** or **Esc** (don't; the default); reset and quit take **y** (go ahead)
and **n** or **Esc** (stay); **Tab** moves between the buttons, **Enter** presses one.

Sessions are independent: each has its own connection, and a statement in one never waits
for another unless the engine makes it (a lock). While a statement runs, its session box
says so with the time it has run (a statement that runs longer than the statement timeout,
`--statement-timeout`, is cancelled); a statement sent to a busy session is *queued* behind
it; a lock wait says whom it waits for. `\\session B` in the editor also opens session B.

A statement the guard flags opens a confirmation showing what it would do; the answer
defaults to **No**, and nothing runs without a yes. A confirmed one is snapshotted first.

| command (run like SQL, F5) | what it does |
| --- | --- |
| `\\snapshot NAME` | copy the whole sandbox as committed now |
| `\\snapshots` | list the snapshots (a scenario has `start`) |
| `\\diff NAME` | rows added, removed and changed since NAME |
| `\\restore NAME` | put the sandbox back to NAME (open transactions roll back) |
| `\\explain STATEMENT;` | its plan as a tree (F9): PostgreSQL runs it (ANALYZE) and rolls it back |
| `\\traffic W every 50ms for 9s: SQL;` | session W repeats it, like an app (`\\traffic W stop`) |
"""


def help_text() -> str:
    """The keys, then a legend of every glyph the timeline, the session boxes and Check draw."""
    rows = [f"| `{glyph}` | {meaning} |" for glyph, meaning in legend()]
    rows += [
        "| `✔` | after Check: a check passed (in the timeline's log: a COMMIT) |",
        "| `✘` | after Check: a check failed |",
    ]
    table = "\n".join(["| glyph | what it means |", "| --- | --- |", *rows])
    return f"{HELP}\n## What the glyphs mean\n\n{table}\n"


# How each file format says SQL NULL (the notification repeats it: the files are read elsewhere).
NULL_IN = {
    "csv": "NULL is an empty unquoted field, every text is quoted",
    "json": "NULL is null",
}

TRACE_KEYS = (
    "a .py file from the current directory, arguments after it · Enter: run it · Esc: cancel"
)

EDITOR_START = """-- Type SQL here. F5 runs the statement under the cursor (or the selection).
-- F7 selects all, F1 shows every key. Try:
SELECT 'hello, sandbox' AS greeting;
"""


_M = TypeVar("_M", bound=Message)


def transaction_loss(session: str, state: str, changes: int) -> str:
    """What rolling back a session's transaction loses: its successful writes, no more."""
    what = f"{changes} uncommitted change{'s' if changes != 1 else ''}"
    if state == "failed":
        lost = f"{what} that can no longer be saved" if changes else "nothing saved"
        return f"session {session}: a failed transaction — rolled back, {lost}"
    if not changes:
        return f"session {session}: an open transaction with no changes yet — nothing is lost"
    return f"session {session}: an open transaction — {what} will be rolled back"


def _unless_leaving(
    handler: Callable[[DbSandboxApp, _M], None],
) -> Callable[[DbSandboxApp, _M], None]:
    """Drop a worker's late message once the app is shutting down: its widgets are gone."""

    @functools.wraps(handler)
    def guarded(app: DbSandboxApp, message: _M) -> None:
        if not app._leaving:
            handler(app, message)

    return guarded


def task_comment(scenario: Scenario) -> str:
    """The editor's text when a scenario loads: its title and task as SQL comments."""
    lines = [f"-- {scenario.title}", "--", "-- Your task:"]
    for paragraph in scenario.task.strip().split("\n\n"):
        lines += [f"--   {row}" for row in textwrap.wrap(" ".join(paragraph.split()), 40)]
    lines += [
        "--",
        "-- F5 runs the statement under the cursor;",
        "-- F2 shows a hint; F3 checks your fix.",
        "",
    ]
    return "\n".join(lines) + "\n"


class DbSandboxApp(EditorActions):
    """The terminal sandbox. Build it with `create_app` (the CLI and the tests share it)."""

    TITLE = "dbsandbox"
    CSS_PATH = "app.tcss"
    # Priority bindings work from every pane, whatever it binds itself (the editor's own F6
    # and F7 select a line and everything). F2 and F3 are free in Textual, its TextArea and
    # common terminals (unlike ctrl+h, ctrl+i or ctrl+m, which terminals send as keys).
    BINDINGS: ClassVar[list[BindingType]] = [
        # Listed first: the footer keeps this order, and an 80-column one cuts off its end.
        Binding("f1", "help", "Help"),
        Binding("f5", "run", "Run", priority=True),
        Binding("ctrl+j", "run", "Run", show=False, priority=True),
        Binding("f2", "hint", "Hint", priority=True),
        Binding("f3", "check", "Check", priority=True),
        Binding("f6", "next_session", "Session", priority=True),
        Binding("ctrl+n", "new_session", "New", tooltip="Open a new session", priority=True),
        Binding("f4", "close_session", "Close session", show=False, priority=True),
        Binding("f7", "select_all", "Select all", show=False, priority=True),
        Binding("f8", "cancel", "Cancel", priority=True),
        Binding("f9", "explain", "Explain", show=False, priority=True),
        Binding("ctrl+up", "history(-1)", "History back", show=False, priority=True),
        Binding("ctrl+down", "history(1)", "History forward", show=False, priority=True),
        Binding("ctrl+r", "reset", "Reset", priority=True),
        # The editor's own keys: priority, since TextArea binds none of them usefully here.
        Binding("ctrl+g", "history_search", "Search history", show=False, priority=True),
        Binding("ctrl+f", "find", "Find", show=False, priority=True),
        Binding("ctrl+l", "format", "Format", show=False, priority=True),
        Binding("ctrl+o", "open_file", "Open", show=False, priority=True),
        Binding("ctrl+s", "save_file", "Save", show=False, priority=True),
        Binding("escape", "focus_editor", "Editor", show=False),
        # In the footer only where it has room (WIDE); the same keys unlisted everywhere else.
        Binding("f10", "zoom(True)", "Zoom", priority=True),
        Binding("f12", "next_pane(True)", "Pane", priority=True),
        Binding("f10", "zoom", "Zoom", show=False, priority=True),
        Binding("f12", "next_pane", "Next pane", show=False, priority=True),
        Binding("ctrl+q", "quit_safely", "Quit", priority=True),
    ]
    # App bindings stay live under a dialog; these act on the main screen, so a dialog's keys
    # (y, n, Esc) are the only ones that mean something while it is up.
    MAIN_SCREEN_ACTIONS: ClassVar[frozenset[str]] = frozenset(
        {
            "run",
            "hint",
            "check",
            "next_session",
            "new_session",
            "close_session",
            "select_all",
            "cancel",
            "explain",
            "history",
            "history_search",
            "find",
            "format",
            "open_file",
            "save_file",
            "reset",
            "focus_editor",
            "zoom",
            "next_pane",
            "next_scenario",
        }
    )
    # What F10 zooms and F12 walks through: the editor and results zoom together (the center).
    PANES: ClassVar[tuple[str, ...]] = ("center", "timeline", "scenario", "schema")
    WIDE = 120  # from this many columns the footer also lists F10 and F12

    def __init__(
        self,
        options: TargetOptions,
        scenario: Scenario | None = None,
        pick: bool = True,
        statement_timeout_s: float = 30.0,
        *,
        progress_path: Path | None = None,
        traces: list[list[str]] | None = None,
        together: bool = False,
    ) -> None:
        """`traces`: programs (commands, as `sandbox.trace.tracer.program_command` makes
        them) run under trace once the first sandbox is open; `together` starts them at once."""
        super().__init__()
        self.options = options
        self.statement_timeout_s = statement_timeout_s
        self.bridge = Bridge(self, options, statement_timeout_s)
        self.initial_scenario = scenario
        self.pick = pick and scenario is None
        self.session = "A"
        self.sessions: list[str] = ["A"]
        # Each session keeps its own editor text and shows its own latest statement.
        self.buffers: dict[str, str] = {}
        self._scenario_id: str | None = None  # the scenario the editor was last set up for
        self.latest: dict[str, Execution] = {}
        self._stream: Timeline | None = None  # the open sandbox's events; others are stale
        self._seen = 0  # the last event (seq) the panes have taken
        self._wanted_session: str | None = None  # a session asked for, focused once it opens
        self._quitting = False  # quitting: the sandbox is being removed off the UI thread
        # The editor's (see EditorActions).
        self.history = History()
        self.paths = {}
        self._ran = {}
        self.tables = []
        self._find = ""
        self.engine = options.engine
        self.sandbox_description: str | None = None  # set once a sandbox is ready
        self._listings: list[Listing] | None = None  # the catalog's titles, read once
        self._left = False  # quitting: late worker messages find no widgets any more
        self._panes_up = not self.pick  # with the picker up, the panes are mounted just after
        self._started = False  # _start ran: panes mounted, sandbox opening
        self._breakage: list[Execution] = []  # what the scenario ran before handing over
        self._progress_path = progress_path  # None: DBSANDBOX_PROGRESS or the state directory
        self._progress: ProgressStore | None = None
        self._pending_traces = list(traces or [])
        self._together = together
        self._traced: list[str] | None = None  # the programs a trace runs now, as shown

    def compose(self) -> ComposeResult:
        yield Header()
        # With the picker in front (opaque, see app.tcss) the panes are not seen yet: they are
        # mounted just after its first frame, which then costs a third less (issue 12, item 8).
        yield Horizontal(*([] if self.pick else self._panes()), id="main")
        yield Footer()
        yield CompletionList(id="completion")

    def _panes(self) -> list[Widget]:
        """The working panes: scenario and schema, sessions/editor/results, timeline."""
        # No language yet: building the SQL highlighter twice (Textual does, for a language
        # given here) would hold up the first frame; _start adds it after.
        editor = SqlEditor.code_editor(EDITOR_START, id="editor", soft_wrap=True)
        assert isinstance(editor, SqlEditor)  # code_editor builds the class it is called on
        editor.completer = self._complete
        return [
            Vertical(ScenarioPanel(id="scenario"), SchemaView(id="schema"), id="left"),
            Vertical(
                Tabs(Tab("session A", id="session-A"), id="sessions"),
                editor,
                ResultsView(id="results"),
                id="center",
            ),
            TimelineView(id="timeline"),
        ]

    def on_resize(self) -> None:
        # Below 100 columns three panes leave the editor too narrow: slim the side panes, and
        # tighten the footer so its last keys (Reset, Help) are not hidden under "^p palette".
        narrow = self.size.width < 100
        self.screen.set_class(narrow, "narrow")
        for footer in self.screen.query(Footer):
            footer.compact = narrow
            footer.show_command_palette = not narrow  # help (F1, listed first) names ctrl+p
        self.refresh_bindings()  # F10 and F12 are listed only from WIDE columns on

    @property
    def escape_to_minimize(self) -> bool:
        """Esc is "back to the editor" everywhere, and from a zoomed pane it also puts the layout
        back (action_focus_editor). Textual's own un-zoom would leave the learner in the pane,
        so it is used only in the editor, which keeps Esc for itself."""
        return isinstance(self.focused, TextArea)

    def _exit_on_signal(self, signum: int, frame: object) -> None:
        self._left = True
        self.exit()

    def on_mount(self) -> None:
        # A closed terminal (SIGHUP) or `kill` (SIGTERM) must leave like ctrl+q does, so the
        # scratch database is dropped; the driver's own handling would end the process first.
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGHUP, signal.SIGTERM):
                signal.signal(sig, self._exit_on_signal)
        self.on_resize()
        self._set_subtitle("starting…")
        if self.pick:
            self.show_picker()
        else:
            self.query_one("#editor", TextArea).focus()
        # Just after the first frame (post_display_hook): the panes, the highlighter and the
        # worker's imports would compete with it for the GIL. (Not call_after_refresh: with the
        # picker on top, the main screen does not refresh.) The timer is for a frame that never
        # comes (a display that is not drawn to).
        self.set_timer(0.5, self._start)

    def post_display_hook(self) -> None:
        # With the picker asked for, the frame that counts is the one that shows it: an earlier
        # one (the empty main screen, before the picker is pushed) would start the panes first.
        if not self._started and (not self.pick or isinstance(self.screen, ScenarioPicker)):
            self.call_later(self._start)

    async def _start(self) -> None:
        """Mount the panes if the picker kept them back, then open the sandbox."""
        if self._started:
            return
        self._started = True
        main = self.query_one("#main", Horizontal)
        if not main.children:
            await main.mount_all(self._panes())
            self._panes_up = True
            if not self.screen.is_modal:  # the picker went already: type straight away
                self.action_focus_editor()
        self._panes_up = True
        timeline = self.query_one("#timeline", TimelineView)
        timeline.statement_timeout_s = self.statement_timeout_s
        timeline.statement_text = self._statement_text
        # A traced program's connections are lanes, not sessions: F8 does not reach them.
        timeline.cancellable = self.bridge.is_session
        self.query_one("#editor", TextArea).language = "sql"
        self.open_sandbox(self.initial_scenario)
        # A running statement's caption counts its seconds.
        self.set_interval(0.25, self._tick_results)

    def show_picker(self) -> None:
        """Put the picker up: titles only, read from the TOML files (milliseconds), marked with
        the learner's progress (one small JSON file, read here: well under a millisecond)."""
        from sandbox.progress import suggest_next

        if self._listings is None:
            self._listings = listings()
        entries = self._progress_entries()
        suggested = suggest_next(self._listings, entries, self.engine)
        picker = ScenarioPicker(
            self._listings, self.engine, entries, suggested.id if suggested else None
        )
        self.push_screen(picker, self._picked)

    @property
    def progress(self) -> ProgressStore:
        """The learner's progress file (read and written on each use, never cached)."""
        if self._progress is None:
            from sandbox.progress import ProgressStore

            self._progress = ProgressStore(self._progress_path)
        return self._progress

    def _progress_entries(self) -> dict[str, Entry]:
        """What the learner has played; none, with a notice, when the file cannot be read."""
        from sandbox.progress import ProgressError

        try:
            return self.progress.entries()
        except ProgressError as exc:
            self.say(str(exc), "error")
            return {}
        finally:
            self._say_progress_warnings()

    def record_progress(
        self,
        scenario_id: str,
        *,
        title: str,
        engine: str,
        score: int,
        recovered: bool,
        parts: dict[str, object],
    ) -> Entry | None:
        """`progress.record` for a Check, with a notice instead of an error when the file
        cannot be written (the lesson goes on; only its record is missing)."""
        from sandbox.progress import ProgressError

        try:
            return self.progress.record(
                scenario_id,
                title=title,
                engine=engine,
                score=score,
                recovered=recovered,
                parts=parts,
            )
        except ProgressError as exc:
            self.say(str(exc), "error")
            return None
        finally:
            self._say_progress_warnings()

    def _say_progress_warnings(self) -> None:
        for warning in self.progress.take_warnings():
            self.say(warning)

    def say(self, text: str, severity: SeverityLevel = "warning", timeout: float = 8) -> None:
        """A notification quoting learner or engine text: never read as markup."""
        self.notify(visible(text), severity=severity, timeout=timeout, markup=False)

    def _set_subtitle(self, state: str) -> None:
        self.sub_title = f"{self.engine} · session {self.session} · {state}"

    # ------------------------------------------------------------------ workers

    @work(thread=True, exclusive=True, group="sandbox", exit_on_error=False)
    def open_sandbox(self, scenario: Scenario | None) -> None:
        self.bridge.open(scenario)

    @work(thread=True, group="statements", exit_on_error=False)
    def run_sql(
        self, session: str, text: str, confirmed: bool = False, at: tuple[int, int] = (1, 1)
    ) -> None:
        self.bridge.run(session, text, confirmed, at)

    @work(thread=True, group="statements", exit_on_error=False)
    def page_in(self, session: str, index: int, skip: int) -> None:
        self.bridge.page(session, index, skip)

    @work(thread=True, group="export", exit_on_error=False)
    def write_result_file(self, result: ShownResult, fmt: Format) -> None:
        directory = Path.cwd()
        try:
            path = write_result(result, directory, fmt)
        except UserError as exc:
            self.call_from_thread(self.say, str(exc), "error")
            return
        rows = plural(len(result.rows), "row")
        self.call_from_thread(self.say, f"{rows} written to {path} ({NULL_IN[fmt]})", "information")

    @work(thread=True, group="sessions", exit_on_error=False)
    def cancel_in(self, session: str) -> None:
        self.bridge.cancel(session)

    @work(thread=True, group="sessions", exit_on_error=False)
    def open_session(self, name: str) -> None:
        self.bridge.new_session(name)

    @work(thread=True, group="sessions", exit_on_error=False)
    def end_session(self, name: str) -> None:
        self.bridge.close_session(name)

    @work(thread=True, group="checks", exit_on_error=False)
    def run_checks(self) -> None:
        self.bridge.check()

    @work(thread=True, group="trace", exit_on_error=False)
    def trace_programs(self, commands: list[list[str]], together: bool) -> None:
        self.bridge.trace(commands, together)

    # ------------------------------------------------------------------ traced programs

    def start_trace(self, commands: list[list[str]], together: bool = False) -> None:
        """Run programs under trace against this sandbox: their connections appear as lanes
        on the timeline as they connect, and the editor keeps working meanwhile."""
        if self._traced is not None:
            self.say(
                f"{', '.join(self._traced)} is still running: one trace at a time "
                "(its lanes are on the timeline; ctrl+r or quitting stops it)"
            )
            return
        if self.bridge.scenario is not None:
            # Check grades what ran after the breakage: a program's statements would count
            # as the learner's recovery.
            self.say(
                "programs are traced in free play, not in a scenario (Check would count their "
                "statements as your recovery): start `dbsandbox play --trace PROGRAM.py`"
            )
            return
        self._traced = [_shown_program(command) for command in commands]
        self._set_subtitle(f"free play · tracing {', '.join(self._traced)}")
        self.trace_programs(commands, together)

    @property
    def tracing(self) -> bool:
        """A traced program runs now (from its start until its TraceEnded is handled)."""
        return self._traced is not None

    def _trace_losses(self) -> list[str]:
        """What closing the sandbox does to a trace still running (quit, reset, switch)."""
        if self._traced is None:
            return []
        names = ", ".join(self._traced)
        return [f"program {names} is still running: it is stopped (killed) with the sandbox"]

    def action_trace_program(self) -> None:
        """Ask for a Python program and run it under trace against this sandbox."""
        from sandbox.trace.tracer import program_command

        def chosen(text: str | None) -> None:
            self.action_focus_editor()
            if text is None:
                return
            try:
                command = program_command(text)
            except UserError as exc:
                self.say(str(exc), "error")
                return
            self.start_trace([command])

        prompt = PathPrompt(
            "Trace a Python program: it runs against this sandbox (DATABASE_URL)",
            "",
            TRACE_KEYS,
            placeholder="app.py [ARGS]",
        )
        self.push_screen(prompt, chosen)

    def close_and_exit(self) -> None:
        """Quit: cancel what runs and remove the sandbox off the UI thread, then leave.

        A plain thread, not a worker: the app's shutdown waits for its workers, and this one
        would still be waiting for the app to run its exit.
        """

        def close() -> None:
            try:
                self.bridge.close()
            finally:
                self.call_from_thread(self._exit_now)

        # On a server that stopped answering this can take up to PostgresTarget's 30 s bound:
        # say what the wait is for rather than look frozen.
        self.say(
            "Closing the sessions and removing the sandbox…", severity="information", timeout=60
        )
        threading.Thread(target=close, name="dbsandbox-quit", daemon=True).start()

    def _exit_now(self) -> None:
        self._left = True
        self.exit()

    # ------------------------------------------------------------------ messages

    @on(SandboxReady)
    async def sandbox_ready(self, message: SandboxReady) -> None:
        if self._leaving:
            return
        self.engine = message.engine
        self._stream = message.timeline
        self.latest.clear()
        self.buffers = {name: text for name, text in self.buffers.items() if name == "A"}
        # A session opened later under an old name starts without a file to save to.
        self.paths = {name: path for name, path in self.paths.items() if name == "A"}
        events = message.timeline.events
        opened = [
            e.session
            for e in events
            if e.kind is EventKind.SESSION_OPENED and self.bridge.is_session(e.session)
        ]
        self.sessions = list(dict.fromkeys(message.sessions + opened)) or ["A"]
        tabs = self.query_one("#sessions", Tabs)
        # Reconcile rather than clear: Tabs cannot take back a tab id it is still removing.
        wanted = [f"session-{name}" for name in self.sessions]
        present = [tab.id for tab in tabs.query(Tab)]
        for tab_id in present:
            if tab_id not in wanted and tab_id is not None:
                await tabs.remove_tab(tab_id)
        for name, tab_id in zip(self.sessions, wanted, strict=True):
            if tab_id not in present:
                await tabs.add_tab(Tab(f"session {name}", id=tab_id))
        tabs.active = wanted[0]
        self.session = self.sessions[0]
        timeline = self.query_one("#timeline", TimelineView)
        timeline.clear()
        # Events recorded so far are drawn here; later ones arrive as messages (the ones
        # already drawn are recognised by their sequence number).
        self._seen = 0
        for event in events:
            self._take(event)
        self.query_one("#results", ResultsView).show_session(
            self.session, self.latest.get(self.session)
        )
        panel = self.query_one("#scenario", ScenarioPanel)
        panel.load(message.scenario)
        conductor = self.bridge.conductor
        self._breakage = list(conductor.executions[: self.bridge.breakage_end]) if conductor else []
        panel.show_breakage(recap(self._breakage))
        main = panel.screen  # not self.screen: a dialog may be up
        main.set_class(message.scenario is not None, "-scenario")
        scenario_id = message.scenario.id if message.scenario else None
        if message.scenario is not None and scenario_id != self._scenario_id:
            # A new scenario starts from a clean editor that says what to do; a reset of the
            # same one keeps what the learner has typed.
            self.buffers.clear()
            self.paths.clear()  # ctrl+s must not put the task over the file opened before
            self.query_one("#editor", TextArea).text = task_comment(message.scenario)
            # Where the eye goes first: the story, the task and what happened, full screen.
            if main is self.screen:
                main.maximized = panel
                panel.scroll_home(animate=False)
                panel.focus()
        self._scenario_id = scenario_id
        self._set_subtitle(message.scenario.id if message.scenario else "free play")
        if main.maximized is panel:
            # Ready once the briefing is laid out (it fills the screen on the main screen's
            # next refresh): a click aimed at its buttons must land on them.
            main.call_after_refresh(setattr, self, "sandbox_description", message.description)
        else:
            self.sandbox_description = message.description  # the header says it is ready
        if self._pending_traces:  # `play --trace`: the programs run once the sandbox is there
            traces, self._pending_traces = self._pending_traces, []
            self.start_trace(traces, self._together)

    @on(SandboxFailed)
    @_unless_leaving
    def sandbox_failed(self, message: SandboxFailed) -> None:
        self._set_subtitle("no sandbox")
        self.say(message.reason, "error", timeout=10)

    @on(TimelineEvent)
    async def timeline_event(self, message: TimelineEvent) -> None:
        if self._leaving or message.timeline is not self._stream:
            return  # an event of a sandbox already closed (reset, switch)
        await self._take_live(message.event)

    def _take(self, event: Event) -> None:
        """Draw one event (once) and follow what it says about its statement."""
        if event.seq <= self._seen:
            return
        self._seen = event.seq
        self.query_one("#timeline", TimelineView).add_event(event)
        if event.statement is not None and event.statement < len(self._breakage):
            # A breakage step still running at hand-over (a lock wait) has news: say it.
            self.query_one("#scenario", ScenarioPanel).show_breakage(recap(self._breakage))
        execution = self.bridge.execution(event.statement)
        if execution is None or execution.session != event.session:
            return
        shown = self.latest.get(event.session)
        # The freshest news of the session: its newest statement, or an older one whose
        # outcome arrives while the newest is still queued behind it.
        if shown is None or execution.index >= shown.index or not shown.finished():
            self.latest[event.session] = execution
            if event.session == self.session:
                self.query_one("#results", ResultsView).show(execution)
        if event.kind is EventKind.ERROR and event.session == self.session:
            self._mark_error(execution)

    async def _take_live(self, event: Event) -> None:
        self._take(event)
        if event.kind is EventKind.SESSION_OPENED and self.bridge.is_session(event.session):
            # A traced program's connection opens a lane, never a tab: the editor does not
            # send statements into a program's connection.
            await self._add_session_tab(event.session)
        elif event.kind is EventKind.SESSION_CLOSED:
            await self._remove_session_tab(event.session)

    async def _add_session_tab(self, name: str) -> None:
        tabs = self.query_one("#sessions", Tabs)
        if name not in self.sessions:
            self.sessions.append(name)
            await tabs.add_tab(Tab(f"session {name}", id=f"session-{name}"))
        if self._wanted_session == name:
            self._wanted_session = None
            tabs.active = f"session-{name}"

    async def _remove_session_tab(self, name: str) -> None:
        if name not in self.sessions or len(self.sessions) < 2:
            return
        self.sessions.remove(name)
        self.buffers.pop(name, None)
        self.paths.pop(name, None)
        self.latest.pop(name, None)
        tabs = self.query_one("#sessions", Tabs)
        if self.session == name:
            tabs.active = f"session-{self.sessions[0]}"
        await tabs.remove_tab(f"session-{name}")

    def _tick_results(self) -> None:
        execution = self.latest.get(self.session)
        if execution is not None and not execution.finished() and not self._leaving:
            self.query_one("#results", ResultsView).show(execution)

    @on(SchemaChanged)
    @_unless_leaving
    def schema_changed(self, message: SchemaChanged) -> None:
        self.tables = message.tables
        self.query_one("#schema", SchemaView).show(message.tables)

    @on(ChecksDone)
    @_unless_leaving
    def checks_done(self, message: ChecksDone) -> None:
        panel = self.query_one("#scenario", ScenarioPanel)
        panel.show_checks(message.results, message.methods, message.diff, message.diff_problem)
        # Recovered: the next scenario is one Enter away (the button takes the focus).
        panel.offer_next(self._next_listing() if panel.recovered else None)

    @on(ScoreReady)
    @_unless_leaving
    def score_ready(self, message: ScoreReady) -> None:
        if message.scenario is not self.bridge.scenario:
            return  # graded for a scenario already left (reset, another one loaded)
        panel = self.query_one("#scenario", ScenarioPanel)
        if message.score is None:
            panel.show_unscored(message.problem or "the hidden variants could not be graded")
            self.say(message.problem or "the hidden variants could not be graded", "error")
            return
        panel.show_score(message.score, message.anomaly)
        scenario = message.scenario
        self.record_progress(
            scenario.id,
            title=scenario.title,
            engine=self.bridge.options.engine,
            score=message.score.total,
            recovered=message.score.recovered,
            parts=dict(message.score.parts),
        )

    @on(Notice)
    @_unless_leaving
    def notice(self, message: Notice) -> None:
        self.say(message.text, message.severity)

    @on(TraceEnded)
    @_unless_leaving
    def trace_ended(self, message: TraceEnded) -> None:
        self._traced = None
        self._set_subtitle(self.bridge.scenario.id if self.bridge.scenario else "free play")
        if message.problem is not None:
            self.say(message.problem, "error")
            return
        said = [
            f"{label} exited normally" if code == 0 else f"{label} exited with code {code}"
            for label, code in message.exits
        ]
        failed = any(code != 0 for _, code in message.exits)
        self.say(
            f"traced: {'; '.join(said)} — its lanes are on the timeline, its data in session A",
            "warning" if failed else "information",
        )

    @on(ConfirmationNeeded)
    def confirmation_needed(self, message: ConfirmationNeeded) -> None:
        def answered(yes: bool | None) -> None:
            if yes:
                statement = message.statement
                at = (statement.line, statement.column)
                self.run_sql(message.session, statement.text, confirmed=True, at=at)
            else:
                self.bridge.decline(message.session, message.statement)
            self.action_focus_editor()

        self.push_screen(ConfirmStatement(message.statement.text, message.review), answered)

    @on(CompletionList.OptionSelected)
    def completion_clicked(self, event: CompletionList.OptionSelected) -> None:
        self.query_one("#editor", SqlEditor).accept_completion(event.option_index)

    @on(ScenarioPanel.CheckPressed)
    def check_pressed(self) -> None:
        self.action_check()

    @on(ScenarioPanel.ResetPressed)
    def reset_pressed(self) -> None:
        self.action_reset()

    @on(ScenarioPanel.NextPressed)
    def next_pressed(self, message: ScenarioPanel.NextPressed) -> None:
        self.load_scenario(message.scenario_id)

    @on(events.DescendantFocus)
    def focus_moved(self, event: events.DescendantFocus) -> None:
        # Focus that leaves a zoomed pane (Esc, F6, a dialog's answer) brings the layout back.
        if self._leaving or not self.screen_stack:
            return  # the app is closing: the screens are gone
        maximized, focused = self.screen.maximized, self.focused
        inside = focused is maximized or (focused is not None and maximized in focused.ancestors)
        if maximized is not None and focused is not None and not inside:
            self.screen.minimize()

    @on(Tabs.TabActivated)
    def tab_activated(self, event: Tabs.TabActivated) -> None:
        if not (event.tab.id and event.tab.id.startswith("session-")):
            return
        name = event.tab.id.removeprefix("session-")
        if name == self.session:
            return
        editor = self.query_one("#editor", TextArea)
        # Each session keeps its own editor text; the results show its own latest statement.
        self.buffers[self.session] = editor.text
        self.session = name
        editor.text = self.buffers.get(name, f"-- session {name}: its own connection\n")
        self.query_one("#results", ResultsView).show_session(name, self.latest.get(name))
        self._set_subtitle(self.bridge.scenario.id if self.bridge.scenario else "free play")
        editor.focus()  # a session is switched to to type in it

    # ------------------------------------------------------------------ actions

    def _editor_position(self, offset: int) -> tuple[int, int]:
        """The editor's line and column (from 1) of a character offset in its text, so results
        and the timeline name the line the learner sees."""
        row, column = self.query_one("#editor", SqlEditor).location_of(offset)
        return row + 1, column + 1

    def _statement_span_at_cursor(self) -> tuple[str, int]:
        """What F5 runs (the selection, or the statement under the cursor) and its offset."""
        editor = self.query_one("#editor", SqlEditor)
        if editor.selected_text.strip():
            start = min(editor.selection.start, editor.selection.end)
            return editor.selected_text, editor.offset_of(start)
        text = editor.text
        offset = editor.cursor_offset
        # Backslash commands (\\diff start) are runnable lines too.
        items = split(text, self.bridge.dialect)
        for item in items:
            if item.start <= offset <= item.end + 1:
                return item.text, item.start
        before = [i for i in items if i.end <= offset]
        chosen = before[-1] if before else (items[0] if items else None)
        return (chosen.text, chosen.start) if chosen is not None else ("", 0)

    def action_run(self) -> None:
        # F5 is a priority binding: the app handles it as it arrives, while keys typed just
        # before it may still wait in the editor's queue (a paste or fast typing ends in `;`
        # not yet inserted). Running from the editor's queue takes them first.
        if self._panes_up:
            self.query_one("#editor", TextArea).call_later(self._run_at_cursor)

    def _run_at_cursor(self) -> None:
        text, start = self._statement_span_at_cursor()
        if not text.strip():
            self.notify("nothing to run: type a statement first", severity="warning")
            return
        self.history.add(text, self.session)
        self._ran[self.session] = (text, start, self.query_one("#editor", SqlEditor).text)
        self.run_sql(self.session, text, at=self._editor_position(start))

    def action_explain(self) -> None:
        """F9: `\\explain` the statement under the cursor, in this session."""
        if self._panes_up:  # after the keys still queued for the editor, as F5 (action_run)
            self.query_one("#editor", TextArea).call_later(self._explain_at_cursor)

    def _explain_at_cursor(self) -> None:
        text, start = self._statement_span_at_cursor()
        items = split(text, self.bridge.dialect)
        item = items[0] if items else None
        if isinstance(item, MetaCommand) and item.name == "explain":
            sql = item.sql  # the cursor is on an \\explain already
        elif isinstance(item, Statement):
            sql = item.text
        else:
            self.notify("nothing to explain: put the cursor on a SQL statement", severity="warning")
            return
        self.run_sql(self.session, f"\\explain {sql};", at=self._editor_position(start))

    def action_next_session(self) -> None:
        if len(self.sessions) < 2:
            self.notify("one session so far: ctrl+n opens another (or type \\session B)")
            return
        index = (self.sessions.index(self.session) + 1) % len(self.sessions)
        self.query_one("#sessions", Tabs).active = f"session-{self.sessions[index]}"

    def action_switch_session(self, name: str) -> None:
        self.query_one("#sessions", Tabs).active = f"session-{name}"

    def next_session_name(self) -> str:
        """The first free letter (B, C, ...), then S27, S28, ..."""
        for letter in "ABCDEFGHIJKLMNOPQRSTUVWXYZ":
            if letter not in self.sessions:
                return letter
        number = 27
        while f"S{number}" in self.sessions:
            number += 1
        return f"S{number}"

    def action_new_session(self, name: str | None = None) -> None:
        name = name or self.next_session_name()
        if not session_name_ok(name):
            self.say(f"not a session name: {name!r}", "error")
            return
        if name in self.sessions:
            self.action_switch_session(name)
            return
        self._wanted_session = name  # focused as soon as it is open
        self.open_session(name)

    def action_close_session(self, name: str | None = None) -> None:
        name = name or self.session
        if len(self.sessions) < 2:
            self.notify("a sandbox keeps at least one session (ctrl+q quits)")
            return
        self._leave(f"Close session {name}", lambda: self.end_session(name), only=name)

    def action_cancel(self) -> None:
        self.cancel_in(self.session)

    def _paged_query(self) -> tuple[Execution, Execution] | None:
        """The result the results pane shows and the query it came from, when that query may
        be run again for another page; otherwise say why not and return None."""
        execution = self.query_one("#results", ResultsView).execution
        if execution is None or execution.outcome is None:
            self.notify("no query result here to page through: run a query first (F5)")
            return None
        source = self.bridge.execution(execution.page_of) if execution.page_of is not None else None
        source = source or execution
        from sandbox.conductor import pageable

        if not pageable(source):
            self.notify(
                "pages come from running the query again, and only a query that writes nothing "
                "(SELECT, WITH, VALUES, TABLE) is run again",
                severity="warning",
            )
            return None
        return execution, source

    def action_page_results(self, step: int) -> None:
        """Fetch the next (step 1) or previous (-1) page of the query the results show.

        A page is the query run again in its session, its first rows passed over: nothing is
        held open between pages (see Conductor.page).
        """
        paged = self._paged_query()
        if paged is None:
            return
        execution, source = paged
        outcome = execution.outcome
        assert outcome is not None
        first = outcome.skipped or 0
        if step > 0 and not outcome.more_rows:
            last = first + len(outcome.rows)
            self.notify(f"this is the last page: the query had no rows after row {last:,}")
            return
        if step < 0 and first == 0:
            self.notify("this is the first page")
            return
        # Back from past the end (go to row) lands on the last page.
        skip = first + len(outcome.rows) if step > 0 else max(0, first - PAGE_SIZE)
        self.page_in(execution.session, source.index, skip)

    def action_go_to_row(self) -> None:
        """Ask for a row number; the page then starts at that row (the query run again)."""
        paged = self._paged_query()
        if paged is None:
            return
        execution, source = paged

        def chosen(row: int | None) -> None:
            if row is not None:
                self.page_in(execution.session, source.index, row - 1)
            self.action_focus_results()

        self.push_screen(GoToRow(PAGE_SIZE), chosen)

    def shown_result(self) -> ShownResult | None:
        """The rows the results pane shows, in its order, and what they are."""
        view = self.query_one("#results", ResultsView)
        execution = view.execution
        outcome = execution.outcome if execution is not None else None
        if execution is None or outcome is None or not view.order:
            return None
        order = "as the database returned them"
        if view.sort is not None:
            order = sort_caption(view.columns, view.sort)
        return ShownResult(
            session=execution.session,
            statement=execution.statement.text,
            line=execution.statement.line,
            columns=view.columns,
            rows=[view.rows[i] for i in view.order],
            first_row=(outcome.skipped or 0) + 1,
            more_rows=outcome.more_rows,
            order=order,
        )

    def action_export_result(self, fmt: Format) -> None:
        """Write the rows the results pane shows to a new CSV or JSON file here."""
        result = self.shown_result()
        if result is None:
            self.notify("no rows to export: run a query first (F5)", severity="warning")
            return
        self.write_result_file(result, fmt)

    def check_action(self, action: str, parameters: tuple[object, ...]) -> bool | None:
        if (
            parameters == (True,)
            and action in ("zoom", "next_pane")
            and self.size.width < self.WIDE
        ):
            return False  # the footer's copy: hidden, and the key falls to the unlisted one
        return not (action in self.MAIN_SCREEN_ACTIONS and self.screen.is_modal)

    def action_focus_editor(self) -> None:
        if self._panes_up:  # else _start focuses it once the panes are mounted
            self.screen.minimize()
            self.query_one("#editor", TextArea).focus()

    def _pane_of(self, widget: Widget | None) -> Widget | None:
        """The pane (see PANES) holding `widget`."""
        for node in [widget, *(widget.ancestors if widget is not None else [])]:
            if isinstance(node, Widget) and node.id in self.PANES:
                return node
        return None

    def action_zoom(self, listed: bool = False) -> None:
        """F10: the pane with the focus fills the screen, or the layout comes back."""
        screen = self.screen
        if screen.maximized is not None:
            screen.minimize()
            return
        pane = self._pane_of(self.focused) or self.query_one("#center", Widget)
        # Set directly: Screen.maximize would zoom the focused grid or button, not its pane.
        screen.maximized = pane
        if self.focused is None or self._pane_of(self.focused) is not pane:
            self._focus_in(pane.id or "")

    def _pane_targets(self) -> list[Widget]:
        """Where F12 puts the focus, in order: one widget per place a learner reads."""
        targets: list[Widget] = [self.query_one("#editor", TextArea)]
        targets += [w for w in self.query_one("#results").query("*") if w.focusable][:1]
        timeline = self.query_one("#timeline", TimelineView)
        targets += [timeline.event_log, self.query_one("#scenario", ScenarioPanel)]
        targets.append(self.query_one("#schema", SchemaView))
        return targets

    def _focus_in(self, pane_id: str) -> None:
        for target in self._pane_targets():
            if self._pane_of(target) is self.query_one(f"#{pane_id}", Widget):
                target.focus()
                return

    def action_next_pane(self, listed: bool = False) -> None:
        """F12: the next pane gets the focus; a zoom moves along with it."""
        targets = self._pane_targets()
        focused = self.focused
        here = next((i for i, t in enumerate(targets) if t is focused), None)
        if here is None:
            pane = self._pane_of(focused)
            here = next((i for i, t in enumerate(targets) if self._pane_of(t) is pane), -1)
        target = targets[(here + 1) % len(targets)]
        if self.screen.maximized is not None:
            self.screen.maximized = self._pane_of(target)
        target.focus()

    def action_focus_pane(self, pane_id: str) -> None:
        """Go to one pane by name (the palette's "Focus the ..." commands)."""
        if self.screen.maximized is not None:
            self.screen.maximized = self.query_one(f"#{pane_id}", Widget)
        self._focus_in(pane_id)

    def action_focus_results(self) -> None:
        """Into the results grid, where its own keys work (Enter, c, C, s, e, j, n, p)."""
        self.query_one("#results #rows").focus()

    def action_select_all(self) -> None:
        editor = self.query_one("#editor", TextArea)
        editor.focus()
        editor.select_all()

    def action_hint(self) -> None:
        panel = self.query_one("#scenario", ScenarioPanel)
        before = panel.hints_shown
        if not panel.show_next_hint():
            self.notify("free play has no hints: load a scenario with ctrl+p")
        elif panel.hints_shown > before:
            self.bridge.note_hint(panel.hints_shown)  # a hint shown again is not counted twice

    def action_check(self) -> None:
        if self.bridge.scenario is None:
            self.notify("free play has nothing to check: load a scenario with ctrl+p")
            return
        self.run_checks()

    def action_help(self) -> None:
        # Closing help is "back to the editor", like Esc anywhere else.
        self.push_screen(HelpScreen(help_text()), lambda _: self.action_focus_editor())

    def _leave(self, what: str, then: Callable[[], object], only: str | None = None) -> None:
        """Ask before leaving open transactions behind; `then` runs if the learner agrees.

        With `only`, just that session is left (closing one session).
        """
        open_ones = [t for t in self.bridge.open_transactions() if only in (None, t[0])]
        busy = [name for name in self.bridge.running() if only in (None, name)]
        traced = self._trace_losses() if only is None else []
        if not open_ones and not busy and not traced:
            then()
            return
        lines = [transaction_loss(name, state.value, changes) for name, state, changes in open_ones]
        lines += [f"session {name}: the statement it runs will be cancelled" for name in busy]
        lines += traced

        def answered(yes: bool | None) -> None:
            if yes:
                then()
            self.action_focus_editor()

        # Nothing to roll back, only a program to stop: the button says what it does.
        go = f"{what} and stop the program" if traced and not open_ones and not busy else None
        self.push_screen(ConfirmQuit(what, lines, go), answered)

    async def action_quit(self) -> None:
        """The command palette's Quit: the same confirmation as ctrl+q."""
        self.action_quit_safely()

    def action_quit_safely(self) -> None:
        if self._quitting:
            return
        self._leave("Quit", self._quit_now)

    def _quit_now(self) -> None:
        self._quitting = True
        self._set_subtitle("closing: cancelling what runs, removing the sandbox…")
        self.close_and_exit()

    def action_reset(self) -> None:
        """Always ask: a reset throws away everything the learner built, snapshots included."""
        scenario = self.bridge.scenario

        def answered(yes: bool | None) -> None:
            if yes:
                self._set_subtitle("resetting: closing the old sandbox…")
                self.open_sandbox(scenario)
            self.action_focus_editor()

        self.push_screen(ConfirmQuit("Reset", self._reset_losses(), "Reset"), answered)

    def _reset_losses(self) -> list[str]:
        """Exactly what a reset throws away, one line each."""
        scenario = self.bridge.scenario
        if scenario is None:
            lines = ["free play starts again empty: every table and row goes"]
        else:
            lines = [f"{scenario.id} starts again: its data as set up, the mistake made again"]
        names = ", ".join(self.sessions)
        if len(self.sessions) == 1:
            lines.append(f"session {names} closes; the new sandbox opens its own")
        else:
            lines.append(f"sessions {names} close; the new sandbox opens its own")
        lines += [
            transaction_loss(name, state.value, changes)
            for name, state, changes in self.bridge.open_transactions()
        ]
        lines += [
            f"session {name}: the statement it runs is cancelled" for name in self.bridge.running()
        ]
        lines += [f"traffic {name} stops sending" for name in self.bridge.traffic_running()]
        snapshots = self.bridge.snapshot_names()
        if snapshots:
            again = " (the scenario takes its own again)" if scenario is not None else ""
            lines.append(
                f"snapshots {', '.join(snapshots)} go too{again}: \\restore cannot bring them back"
            )
        lines += self._trace_losses()
        lines.append("the statement history stays (ctrl+up brings statements back)")
        return lines

    def load_scenario(self, scenario_id: str) -> None:
        def switch() -> None:
            self._set_subtitle("switching: closing the old sandbox…")
            self.open_scenario(scenario_id)

        self._leave("Switch scenario", switch)

    @work(thread=True, exclusive=True, group="sandbox", exit_on_error=False)
    def open_scenario(self, scenario_id: str) -> None:
        """Read and validate the picked scenario (sqlglot), then build its sandbox."""
        from sandbox.scenario.trust import is_trusted

        try:
            scenario = find(scenario_id)
        except UserError as exc:
            self.call_from_thread(self.say, str(exc), "error")
            return
        if not is_trusted(scenario):
            self.call_from_thread(self._ask_to_run_code, scenario)
            return
        self.bridge.open(scenario)

    def _ask_to_run_code(self, scenario: Scenario) -> None:
        """A scenario with Python steps from outside the catalog: run it only on a Yes."""
        from sandbox.scenario.trust import trust_file

        assert scenario.path is not None  # only a file can be untrusted

        def answered(yes: bool | None) -> None:
            if yes and scenario.path is not None:
                trust_file(scenario.path)
                self.open_sandbox(scenario)
            else:
                # The sandbox in use stays as it was.
                self._set_subtitle(self.bridge.scenario.id if self.bridge.scenario else "free play")
                self.say(f"{scenario.id} not run: its Python code was not trusted", "information")
            self.action_focus_editor()

        self.push_screen(ConfirmRunCode(scenario.path), answered)

    def _picked(self, scenario_id: str | None) -> None:
        if scenario_id:
            self.load_scenario(scenario_id)
        self.action_focus_editor()

    def action_pick_scenario(self) -> None:
        self.show_picker()

    def _next_listing(self) -> Listing | None:
        """The scenario after the current one in the picker's order, playable on this engine."""
        if self._listings is None:
            self._listings = listings()
        current = self.bridge.scenario.id if self.bridge.scenario else ""
        return next_listing(self._listings, current, self.engine)

    def action_next_scenario(self) -> None:
        listing = self._next_listing()
        if listing is None:
            self.notify(f"no other scenario runs on {self.engine}")
            return
        self.load_scenario(listing.id)

    def _statement_text(self, index: int) -> str | None:
        execution = self.bridge.execution(index)
        return execution.statement.text if execution is not None else None

    def action_switch_engine(self, engine: str) -> None:
        from dataclasses import replace

        from sandbox.targets import resolve_postgres_url

        if engine == "postgres" and not self.options.url:
            try:
                url = resolve_postgres_url(None, self.options.cwd)
            except UserError as exc:
                self.say(str(exc), "error")
                return
            self.options = replace(self.options, engine=engine, url=url, from_file=None)
        else:
            self.options = replace(
                self.options, engine=engine, url=None if engine == "sqlite" else self.options.url
            )
        scenario = self.bridge.scenario

        def switch() -> None:
            self.bridge.options = self.options
            self.engine = engine
            self._set_subtitle("switching: closing the old sandbox…")
            self.open_sandbox(scenario if scenario and scenario.supports(engine) else None)

        self._leave("Switch engine", switch)

    @work(thread=True, group="export", exit_on_error=False)
    def action_export_session(self) -> None:
        """The timeline (.json), a replayable script (.sql) and a runbook (.md), in the cwd."""
        self.bridge.export(Path.cwd())

    def get_system_commands(self, screen: Screen[object]) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Load scenario", "Pick a breakage scenario", self.action_pick_scenario)
        yield SystemCommand(
            "Reset scenario",
            "A fresh sandbox, the mistake made again (ctrl+r; asks first)",
            self.action_reset,
        )
        yield SystemCommand("Hint", "The scenario's next hint (F2)", self.action_hint)
        yield SystemCommand(
            "Check", "Grade the recovery against the scenario's checks (F3)", self.action_check
        )
        if self.bridge.scenario is not None:
            upcoming = self._next_listing()
            if upcoming is not None:
                yield SystemCommand(
                    "Next scenario",
                    f"Load {upcoming.title} (asks first if a transaction is open)",
                    self.action_next_scenario,
                )
        yield SystemCommand(
            "Explain",
            "The plan of the statement under the cursor, as a tree, costly steps marked (F9)",
            self.action_explain,
        )
        yield SystemCommand(
            "Focus the editor", "Back to typing SQL, from any pane (Esc)", self.action_focus_editor
        )
        yield SystemCommand(
            "Zoom pane",
            "The pane you are in fills the screen; again to put it back (F10)",
            self.action_zoom,
        )
        yield SystemCommand(
            "Next pane", "Editor, results, timeline, scenario, schema (F12)", self.action_next_pane
        )
        for pane_id, what in (
            ("timeline", "the events, each readable in full under the log"),
            ("scenario", "story, task, what happened, Hint, Check, Reset"),
            ("schema", "the tables, their columns and indexes"),
        ):
            yield SystemCommand(
                f"Focus the {pane_id}", what, lambda p=pane_id: self.action_focus_pane(p)
            )
        yield SystemCommand(
            "Complete",
            "Keywords, tables and columns at the cursor (ctrl+space)",
            self.action_complete,
        )
        yield SystemCommand(
            "Search history", "Find a statement run before (ctrl+g)", self.action_history_search
        )
        yield SystemCommand("Find in editor", "Select the next match (ctrl+f)", self.action_find)
        yield SystemCommand(
            "Format SQL", "The selection or all the SQL, with sqlglot (ctrl+l)", self.action_format
        )
        yield SystemCommand(
            "Open file", "A .sql file into the editor (ctrl+o)", self.action_open_file
        )
        yield SystemCommand(
            "Save file",
            "The editor to a .sql file (ctrl+s; asks before replacing one)",
            self.action_save_file,
        )
        yield SystemCommand(
            "Focus the results",
            "Into the results grid: Enter views a cell, c/C copy, s sorts, e/j export, n/p page",
            self.action_focus_results,
        )
        yield SystemCommand(
            "New session",
            f"Open session {self.next_session_name()}: its own connection, editor and results",
            self.action_new_session,
        )
        for name in self.sessions:
            yield SystemCommand(
                f"Switch session: {name}",
                f"Send statements to session {name}",
                lambda n=name: self.action_switch_session(n),
            )
            if len(self.sessions) > 1:
                yield SystemCommand(
                    f"Close session: {name}",
                    "Close its connection (an open transaction is rolled back; asks first)",
                    lambda n=name: self.action_close_session(n),
                )
        for engine in ("sqlite", "postgres"):
            if engine != self.engine:
                yield SystemCommand(
                    f"Switch engine: {engine}",
                    "A fresh sandbox on the other engine",
                    lambda e=engine: self.action_switch_engine(e),
                )
        for fmt in FORMATS:
            yield SystemCommand(
                f"Export result as {fmt.upper()}",
                f"The rows the results show, to a new .{fmt} file here ({NULL_IN[fmt]}; "
                f"{'e' if fmt == 'csv' else 'j'} in the results)",
                lambda f=fmt: self.action_export_result(f),
            )
        yield SystemCommand(
            "Go to row of the result",
            "Run the query again from the row you give (g in the results)",
            self.action_go_to_row,
        )
        for step, which in ((1, "Next"), (-1, "Previous")):
            yield SystemCommand(
                f"{which} page of the result",
                f"Run the query again for the {which.lower()} {PAGE_SIZE} rows "
                f"({'n' if step > 0 else 'p'} in the results)",
                lambda s=step: self.action_page_results(s),
            )
        yield SystemCommand(
            "Export session",
            "Timeline (.json), replayable script (.sql) and recovery runbook (.md), here",
            self.action_export_session,
        )
        yield SystemCommand(
            "Trace a Python program…",
            "Run a SQLAlchemy program against this sandbox: each connection a lane, live",
            self.action_trace_program,
        )

    @property
    def _leaving(self) -> bool:
        return self._left or not self.is_running

    def on_unmount(self) -> None:
        # Ctrl+C or a crash: still drop the scratch database.
        self._left = True
        self.bridge.close()


def _shown_program(command: list[str]) -> str:
    """How a traced command is named in notices: its program file, else its first word."""
    words = command[1:] if command[0] == sys.executable and len(command) > 1 else command
    return Path(words[0]).name


def create_app(
    options: TargetOptions,
    scenario: Scenario | None = None,
    pick: bool = True,
    statement_timeout_s: float = 30.0,
    *,
    progress_path: Path | None = None,
    traces: list[list[str]] | None = None,
    together: bool = False,
) -> DbSandboxApp:
    """The app factory shared by the CLI and the tests."""
    return DbSandboxApp(
        options,
        scenario,
        pick,
        statement_timeout_s,
        progress_path=progress_path,
        traces=traces,
        together=together,
    )
