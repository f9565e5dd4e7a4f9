"""Snapshot tests of the app's screens at 80x24 and 120x40 (pytest-textual-snapshot).

Each test drives the real app on a real SQLite sandbox with `run_before`, waits until the sandbox
is ready and every worker is idle, and compares the screen with the SVG under
tests/__snapshots__/. After an intended UI change, look at the report, then refresh with
`.venv/bin/pytest tests/test_ui_snapshots.py --snapshot-update`.

Only what is displayed is made deterministic, never what the app does:
- durations are measured with `time.perf_counter` in sandbox.session (a statement's elapsed ms)
  and sandbox.timeline (an event's time), and the timeline pane extrapolates "now" for the open
  transaction's duration with `time.monotonic`; sandbox.snapshots.store times a snapshot. Those
  modules get a stand-in `time` whose clocks step by fixed amounts (the conductor's own
  timeouts keep the real clock); an event's wall-clock `at` is one fixed moment;
- a script's statements are run one at a time (`run_each`): run at once, the "queued" events
  fall in an order that depends on the machine's speed;
- "sandbox ready" names a temporary file and fades after 3 s: notifications are cleared;
- the editor's cursor blinks: the test stops its blinking (it stays visible).
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Awaitable, Callable
from types import SimpleNamespace
from typing import Protocol

import pytest
from textual.pilot import Pilot
from textual.widgets import DataTable, OptionList, Static, TextArea

import sandbox.session
import sandbox.snapshots.store
import sandbox.timeline
import sandbox.ui.widgets.timeline
from sandbox.scenario.catalog import find
from sandbox.statements import split_statements
from sandbox.targets import TargetOptions
from sandbox.ui.app import DbSandboxApp, create_app
from sandbox.ui.screens.cell_viewer import CellViewer
from sandbox.ui.screens.dialogs import ConfirmStatement, HelpScreen, ScenarioPicker
from sandbox.ui.widgets.editor import CompletionList
from sandbox.ui.widgets.scenario_panel import ScenarioPanel
from sandbox.ui.widgets.schema import SchemaView

# The default terminal (80x24) and a comfortable one (120x40): every screen at both.
SIZES = pytest.mark.parametrize("size", [(80, 24), (120, 40)], ids=["80x24", "120x40"])

RunBefore = Callable[[Pilot[None]], Awaitable[None]]


class SnapCompare(Protocol):
    def __call__(
        self, app: DbSandboxApp, *, terminal_size: tuple[int, int], run_before: RunBefore
    ) -> bool: ...


class StepClocks:
    """Stand-in clocks for the display-only timings, the same on every run.

    `event_clock` (the timeline's event times) advances 50 ms per reading, in reading order:
    events are added under the timeline's lock, so their order decides their times.
    `statement_clock` (a statement's elapsed time) advances 1.5 ms per reading on each thread
    separately: a session reads it twice per statement on its own thread, so every statement
    takes 1.5 ms however the threads interleave. `frozen` stands still: the open-transaction
    duration is then the time of the latest event minus that of the BEGIN.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events = 0
        self._local = threading.local()

    def event_clock(self) -> float:
        with self._lock:
            self._events += 1
            return self._events * 0.05

    def statement_clock(self) -> float:
        readings: int = getattr(self._local, "readings", 0) + 1
        self._local.readings = readings
        return readings * 0.0015

    @staticmethod
    def frozen() -> float:
        return 1000.0


def stand_in_time(**clocks: Callable[[], float]) -> SimpleNamespace:
    """The `time` module with some clocks replaced (everything else is the real one)."""
    real = {name: getattr(time, name) for name in dir(time) if not name.startswith("_")}
    return SimpleNamespace(**{**real, **clocks})


@pytest.fixture(autouse=True)
def steady_clocks(monkeypatch: pytest.MonkeyPatch) -> None:
    clocks = StepClocks()
    # An event's wall-clock time (the timeline's detail shows it): always the same moment.
    monkeypatch.setattr(
        sandbox.timeline,
        "time",
        stand_in_time(perf_counter=clocks.event_clock, time=lambda: FIXED_WALL),
    )
    monkeypatch.setattr(sandbox.session, "time", stand_in_time(perf_counter=clocks.statement_clock))
    monkeypatch.setattr(sandbox.ui.widgets.timeline, "time", stand_in_time(monotonic=clocks.frozen))
    # A snapshot's duration (the scenario's `start`, quoted in the timeline): fixed steps too.
    monkeypatch.setattr(
        sandbox.snapshots.store, "time", stand_in_time(perf_counter=clocks.statement_clock)
    )


FIXED_WALL = dt.datetime(2026, 1, 1, 12, 0, 0, tzinfo=dt.UTC).timestamp()


# ---------------------------------------------------------------------- driving the app


async def until(pilot: Pilot[None], condition: Callable[[], bool], seconds: float = 15.0) -> None:
    """Let workers and messages run until `condition` holds (bounded; never a fixed sleep)."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached")


def app_of(pilot: Pilot[None]) -> DbSandboxApp:
    app = pilot.app
    assert isinstance(app, DbSandboxApp)
    return app


def caption(app: DbSandboxApp) -> str:
    return str(app.query_one("#results #caption", Static).render())


def schema_shows(app: DbSandboxApp, table: str) -> bool:
    schema = app.query_one("#schema", SchemaView)
    return any(table in str(node.label) for node in schema.root.children)


async def ready(pilot: Pilot[None]) -> None:
    app = app_of(pilot)
    await until(pilot, lambda: app.sandbox_description is not None)
    schema = app.query_one("#schema", SchemaView)
    await until(pilot, lambda: bool(schema.root.children))
    await settle(pilot)


async def settle(pilot: Pilot[None]) -> None:
    """Workers idle, their messages handled, notifications gone, the cursor steady."""
    app = app_of(pilot)
    await app.workers.wait_for_complete()
    await pilot.pause()
    await app.workers.wait_for_complete()
    await until(pilot, lambda: app.bridge.schema_settled)  # the counts, as committed
    await pilot.pause()
    app.clear_notifications()
    app.query_one("#editor", TextArea).cursor_blink = False
    await pilot.pause()


async def run_sql(pilot: Pilot[None], sql: str, done: Callable[[str], bool]) -> None:
    """Type `sql`, select it all (F7), run it (F5), wait for `done`, leave the cursor at the end."""
    app = app_of(pilot)
    editor = app.query_one("#editor", TextArea)
    editor.focus()
    editor.text = sql
    await pilot.press("f7", "f5")
    await until(pilot, lambda: done(caption(app)) or isinstance(app.screen, ConfirmStatement))
    editor.move_cursor(editor.document.end)


async def run_each(pilot: Pilot[None], sql: str) -> None:
    """Put `sql` in the editor and run its statements one at a time (cursor on each, F5), each
    finished before the next: a script run at once records "queued" events in an order that
    depends on the machine's speed, which a snapshot must not."""
    app = app_of(pilot)
    editor = app.query_one("#editor", TextArea)
    editor.focus()
    editor.text = sql
    conductor = app.bridge.conductor
    assert conductor is not None
    for item in split_statements(sql, "sqlite"):
        before = len(conductor.executions)
        editor.move_cursor((item.line - 1, item.column - 1))
        await pilot.press("f5")

        def done(before: int = before) -> bool:
            return len(conductor.executions) > before and conductor.executions[-1].finished()

        await until(pilot, done)
        await app.workers.wait_for_complete()
    editor.move_cursor(editor.document.end)


# ---------------------------------------------------------------------- the screens


@SIZES
def test_scenario_picker_at_launch(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        app = app_of(pilot)
        await until(pilot, lambda: isinstance(app.screen, ScenarioPicker))
        await ready(pilot)
        assert isinstance(app.screen, ScenarioPicker)
        assert app.screen.query_one("#scenario-list", OptionList).option_count >= 10

    app = create_app(TargetOptions(), pick=True)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


PETS = """\
CREATE TABLE pets (id INTEGER PRIMARY KEY, name TEXT NOT NULL, species TEXT, born INTEGER);
INSERT INTO pets VALUES (1, 'Rex', 'dog', 2017), (2, 'Tom', 'cat', 2020),
  (3, 'Kiwi', 'parrot', NULL), (4, 'Nemo', 'fish', 2023);
SELECT * FROM pets ORDER BY id;"""


@SIZES
def test_free_play_after_a_select(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        app = app_of(pilot)
        await ready(pilot)
        await run_each(pilot, PETS)
        await until(pilot, lambda: "4 rows shown" in caption(app))
        await until(pilot, lambda: schema_shows(app, "pets  4 rows"))
        await settle(pilot)
        assert "4 rows shown · 1.5 ms" in caption(app)

    app = create_app(TargetOptions(), pick=False)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@SIZES
def test_guard_confirmation_for_delete_without_where(
    snap_compare: SnapCompare, size: tuple[int, int]
) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        app = app_of(pilot)
        await ready(pilot)
        setup = "CREATE TABLE zz (id INTEGER PRIMARY KEY);\nINSERT INTO zz VALUES (1), (2), (3);"
        await run_each(pilot, setup)
        await until(pilot, lambda: "3 rows affected" in caption(app))
        # The counts are re-read after each commit: wait for the INSERT's, not the CREATE's.
        await until(pilot, lambda: schema_shows(app, "zz  3 rows"))
        await run_sql(pilot, "DELETE FROM zz;", lambda text: False)
        await until(pilot, lambda: isinstance(app.screen, ConfirmStatement))
        await settle(pilot)
        dialog = app.screen
        text = " ".join(str(widget.render()) for widget in dialog.query(Static))
        assert "would delete 3 of 3 rows in zz" in text

    app = create_app(TargetOptions(), pick=False)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@SIZES
def test_a_loaded_scenario_with_its_panel(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        app = app_of(pilot)
        await ready(pilot)
        panel = app.query_one("#scenario", ScenarioPanel)
        await until(pilot, lambda: panel.scenario is not None)
        await until(pilot, lambda: "4 rows affected" in caption(app))
        await settle(pilot)

    app = create_app(TargetOptions(), find("missing-where"), pick=False)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@SIZES
def test_help_screen(snap_compare: SnapCompare, size: tuple[int, int]) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        app = app_of(pilot)
        await ready(pilot)
        await pilot.press("f1")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await settle(pilot)

    app = create_app(TargetOptions(), pick=False)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


# ---------------------------------------------------------------------- issue 12's new screens

NULLS = """\
SELECT NULL AS missing, 'NULL' AS text_null, 'first line
second line' AS two_lines, printf('%.120c', 'x') AS long_value;"""


@SIZES
def test_results_null_markers_and_the_cell_viewer(
    snap_compare: SnapCompare, size: tuple[int, int]
) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        app = app_of(pilot)
        await ready(pilot)
        await run_sql(pilot, NULLS, lambda text: "1 row shown" in text)
        await settle(pilot)
        app.action_focus_results()
        grid = app.query_one("#results #rows", DataTable)
        grid.move_cursor(row=0, column=2)  # the two-line value
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, CellViewer))
        await settle(pilot)

    app = create_app(TargetOptions(), pick=False)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@SIZES
def test_completion_popup_offers_the_tables_columns(
    snap_compare: SnapCompare, size: tuple[int, int]
) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        app = app_of(pilot)
        await ready(pilot)
        await run_each(pilot, PETS)
        await until(pilot, lambda: "4 rows shown" in caption(app))
        await until(pilot, lambda: schema_shows(app, "pets  4 rows"))
        await settle(pilot)
        editor = app.query_one("#editor", TextArea)
        editor.text = "SELECT p. FROM pets AS p;"
        editor.move_cursor((0, len("SELECT p.")))
        editor.focus()
        app.action_complete()
        popup = app.query_one(CompletionList)
        await until(pilot, lambda: popup.display and popup.option_count > 0)
        await settle(pilot)

    app = create_app(TargetOptions(), pick=False)
    assert snap_compare(app, terminal_size=size, run_before=run_before)


@SIZES
def test_the_zoomed_timeline_shows_the_event_under_its_cursor_in_full(
    snap_compare: SnapCompare, size: tuple[int, int]
) -> None:
    async def run_before(pilot: Pilot[None]) -> None:
        app = app_of(pilot)
        await ready(pilot)
        await pilot.press("escape")
        app.action_focus_pane("timeline")
        await pilot.press("f10")
        await until(pilot, lambda: app.screen.maximized is not None)
        await pilot.press("home", "down", "down", "down")
        await settle(pilot)

    app = create_app(TargetOptions(), find("lost-update"), pick=False)
    assert snap_compare(app, terminal_size=size, run_before=run_before)
