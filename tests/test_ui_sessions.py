"""The app tells the truth live: independent sessions, every outcome the moment it happens.

Each test drives the real app (App.run_test + Pilot) on a real sandbox, SQLite and PostgreSQL,
and looks at what a learner sees: the tabs, the results caption of each session, the session
boxes of the timeline. No test sends a statement just to make another one's outcome appear.
"""

from __future__ import annotations

import os

import psycopg2
import pytest
from textual.pilot import Pilot
from textual.widgets import Button, Static, TextArea

from sandbox.conductor import Execution
from sandbox.targets import PostgresTarget
from sandbox.timeline import EventKind
from sandbox.ui.app import DbSandboxApp, create_app
from sandbox.ui.screens.dialogs import ConfirmQuit
from sandbox.ui.widgets.schema import SchemaView
from sandbox.ui.widgets.timeline import TimelineView
from tests.conftest import options_for
from tests.test_ui_app import caption, ready, until

SIZE = (120, 40)
# A statement that runs far longer than any test (F8, the timeout or quitting stops it).
LONG_SQL = {
    "postgres": "SELECT pg_sleep(60);",
    "sqlite": "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
    "WHERE i < 1000000000) SELECT count(*) FROM n;",
}


def box(app: DbSandboxApp, session: str) -> str:
    return app.query_one("#timeline", TimelineView).summary(session).text


def latest(app: DbSandboxApp, session: str) -> Execution | None:
    return app.latest.get(session)


def code(app: DbSandboxApp, session: str) -> str | None:
    execution = latest(app, session)
    if execution is None or execution.outcome is None or execution.outcome.error is None:
        return None
    return execution.outcome.error.code


async def type_and_run(pilot: Pilot[None], app: DbSandboxApp, sql: str) -> None:
    """Type into the focused session's editor and press F5, as a learner does."""
    editor = app.query_one("#editor", TextArea)
    editor.text = sql
    editor.move_cursor((0, 0))
    editor.focus()
    # F5's action itself: Pilot.press would also wait for the screen to go quiet, which it
    # never does for long while a running statement's seconds tick on screen.
    app.action_run()
    await pilot.pause()


async def run_and_wait(pilot: Pilot[None], app: DbSandboxApp, sql: str) -> Execution:
    """Run in the focused session and wait for that statement's own outcome."""
    conductor = app.bridge.conductor
    assert conductor is not None
    before = len(conductor.executions)
    await type_and_run(pilot, app, sql)
    session = app.session

    def done() -> bool:
        mine = [e for e in conductor.executions[before:] if e.session == session]
        return bool(mine) and mine[-1].finished()

    await until(pilot, done)
    await pilot.pause()
    return [e for e in conductor.executions[before:] if e.session == session][-1]


async def new_session(pilot: Pilot[None], app: DbSandboxApp) -> str:
    count = len(app.sessions)
    await pilot.press("ctrl+n")
    await until(pilot, lambda: len(app.sessions) == count + 1)
    name = app.sessions[-1]
    await until(pilot, lambda: app.session == name)
    return name


def app_for(engine: str, **kwargs: float) -> DbSandboxApp:
    return create_app(options_for(engine), pick=False, **kwargs)  # type: ignore[arg-type]


# ---------------------------------------------------------------------------- sessions


async def test_ctrl_n_opens_a_session_with_its_own_editor_and_results(engine: str) -> None:
    app = app_for(engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_and_wait(pilot, app, "SELECT 'from A' AS who;")
        a_text = app.query_one("#editor", TextArea).text
        name = await new_session(pilot, app)
        assert name == "B" and app.sessions == ["A", "B"]
        assert "[B]" in caption(app) and "nothing run" in caption(app)
        await run_and_wait(pilot, app, "SELECT 'from B' AS who;")
        assert caption(app).startswith("[B]")
        await pilot.press("f6")
        await until(pilot, lambda: app.session == "A")
        # A's editor text and A's result come back with A.
        assert app.query_one("#editor", TextArea).text == a_text
        assert caption(app).startswith("[A]")
        first = app.query_one("#results #rows").get_row_at(0)  # type: ignore[attr-defined]
        assert first[0].plain == "from A"


async def test_a_typed_session_line_opens_a_tab(engine: str) -> None:
    app = app_for(engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        editor = app.query_one("#editor", TextArea)
        editor.text = "\\session C\nSELECT 1;"
        editor.focus()
        await pilot.press("f7", "f5")  # select all, run the selection
        await until(pilot, lambda: "C" in app.sessions)
        await until(pilot, lambda: (e := latest(app, "C")) is not None and e.finished())
        commands = [c.title for c in app.get_system_commands(app.screen)]
        assert "Switch session: C" in commands and "Close session: C" in commands
        assert "New session" in commands


async def test_closing_a_session_explains_its_open_transaction(engine: str) -> None:
    app = app_for(engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await new_session(pilot, app)
        await run_and_wait(pilot, app, "BEGIN;")
        await run_and_wait(pilot, app, "CREATE TABLE t (id INTEGER);")
        await pilot.press("f4")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        text = " ".join(str(w.render()) for w in app.screen.query(Static))
        assert "session B: an open transaction" in text and "rolled back" in text
        app.screen.query_one("#go", Button).press()  # "... and roll back"
        await until(pilot, lambda: app.sessions == ["A"] and app.session == "A")
        events = app.bridge.timeline.events
        closed = [e for e in events if e.kind is EventKind.SESSION_CLOSED and e.session == "B"]
        assert closed and "rolled back" in closed[0].message


# ---------------------------------------------------------------------------- lock waits


async def a_holds_row_1(pilot: Pilot[None], app: DbSandboxApp) -> None:
    """Table acct with rows 1 and 2; A updates row 1 in an open transaction; B is opened."""
    for sql in (
        "CREATE TABLE acct (id INTEGER PRIMARY KEY, v INTEGER);",
        "INSERT INTO acct VALUES (1, 0), (2, 0);",
        "BEGIN;",
        "UPDATE acct SET v = 1 WHERE id = 1;",
    ):
        await run_and_wait(pilot, app, sql)
    await new_session(pilot, app)


async def test_sqlite_busy_wait_ends_in_sqlite_busy_on_screen() -> None:
    app = app_for("sqlite")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await a_holds_row_1(pilot, app)
        await type_and_run(pilot, app, "UPDATE acct SET v = 2 WHERE id = 1;")
        # Nothing else is run: the engine's answer at the end of the busy timeout shows up.
        await until(pilot, lambda: code(app, "B") == "SQLITE_BUSY")
        await until(pilot, lambda: "SQLITE_BUSY" in caption(app) and caption(app).startswith("[B]"))
        assert "waiting" not in box(app, "B")
        b_events = [e for e in app.bridge.timeline.events if e.session == "B"]
        assert any(
            e.kind is EventKind.LOCK_WAIT and e.data["blocked_by"] == ["A"] for e in b_events
        )


async def test_postgres_deadlock_victim_shows_40p01_without_further_input(
    postgres_url: str,
) -> None:
    app = app_for("postgres")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await a_holds_row_1(pilot, app)
        await run_and_wait(pilot, app, "BEGIN;")
        await run_and_wait(pilot, app, "UPDATE acct SET v = 2 WHERE id = 2;")
        await type_and_run(pilot, app, "UPDATE acct SET v = 2 WHERE id = 1;")
        await until(pilot, lambda: "waiting for A" in box(app, "B"))
        await pilot.press("f6")
        await until(pilot, lambda: app.session == "A")
        await type_and_run(pilot, app, "UPDATE acct SET v = 1 WHERE id = 2;")
        # deadlock_timeout (1 s) after a session starts waiting, the server checks for a cycle
        # and aborts the session that finds it: B, which began waiting first, unless A's
        # UPDATE came more than 1 s after B's wait began (a loaded machine), when B's check
        # found no cycle yet and A's finds it. Either way the victim's outcome is recorded in
        # its own session, and the other's update goes through.
        await until(pilot, lambda: "40P01" in (code(app, "A"), code(app, "B")))
        victim, survivor = ("B", "A") if code(app, "B") == "40P01" else ("A", "B")
        await until(pilot, lambda: (e := latest(app, survivor)) is not None and e.finished())
        assert code(app, survivor) is None
        await until(pilot, lambda: "FAILED" in box(app, victim))
        # Each session's caption says its own outcome (the focused one first).
        if app.session != survivor:
            await pilot.press("f6")
            await until(pilot, lambda: app.session == survivor)
        await until(pilot, lambda: "1 row affected" in caption(app))
        assert caption(app).startswith(f"[{survivor}]")
        await pilot.press("f6")
        await until(pilot, lambda: app.session == victim)
        assert "40P01" in caption(app)


async def test_postgres_lock_wait_names_the_lock(postgres_url: str) -> None:
    app = app_for("postgres")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await a_holds_row_1(pilot, app)
        await type_and_run(pilot, app, "UPDATE acct SET v = 2 WHERE id = 1;")
        await until(pilot, lambda: "waiting for a lock held by A" in caption(app))
        assert "row (0,1) of acct" in caption(app)
        app.action_cancel()  # F8: cancel B's wait
        await until(pilot, lambda: code(app, "B") == "57014")
        execution = latest(app, "B")
        assert execution is not None and execution.outcome is not None
        assert execution.outcome.status == "cancelled"


# ---------------------------------------------------------------------------- independence


async def test_a_select_in_b_answers_while_a_runs_long(engine: str) -> None:
    long_sql = LONG_SQL[engine]
    app = app_for(engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await type_and_run(pilot, app, long_sql)
        await until(pilot, lambda: "running" in box(app, "A"))
        await new_session(pilot, app)
        answered = await run_and_wait(pilot, app, "SELECT 42 AS answer;")
        assert answered.outcome is not None and answered.outcome.rows == [(42,)]
        long_one = latest(app, "A")
        assert long_one is not None and not long_one.finished()  # A still runs meanwhile
        assert "running" in box(app, "A") and "F8 cancels" in box(app, "A")
        await pilot.press("f6")
        await until(pilot, lambda: app.session == "A")
        assert "running" in caption(app)
        app.action_cancel()  # F8
        await until(pilot, lambda: long_one.finished())
        assert long_one.outcome is not None and long_one.outcome.status == "cancelled"


async def test_a_statement_queued_behind_its_own_session_says_so(engine: str) -> None:
    sleep = LONG_SQL[engine]
    app = app_for(engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await type_and_run(pilot, app, sleep)
        await until(pilot, lambda: "running" in box(app, "A"))
        await type_and_run(pilot, app, "SELECT 'after' AS t;")
        await until(pilot, lambda: "queued" in caption(app))
        assert "1 queued" in box(app, "A")
        app.action_cancel()  # F8: cancels the running one and drops the queued one
        conductor = app.bridge.conductor
        assert conductor is not None
        await until(pilot, lambda: not conductor.pending)
        notes = [e.outcome.note for e in conductor.executions if e.outcome is not None]
        assert "not run: cancelled while it was queued" in notes


async def test_the_statement_timeout_cancels_and_is_shown(engine: str) -> None:
    long_sql = LONG_SQL[engine]
    app = app_for(engine, statement_timeout_s=2.0)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await type_and_run(pilot, app, long_sql)
        await until(pilot, lambda: "running" in box(app, "A"))
        assert "(cancelled at 2 s)" in box(app, "A")
        await until(pilot, lambda: (e := latest(app, "A")) is not None and e.finished())
        messages = [e.message for e in app.bridge.timeline.events if e.session == "A"]
        assert "cancelling: ran longer than 2 s" in messages
        execution = latest(app, "A")
        assert execution is not None and execution.outcome is not None
        assert execution.outcome.status == "cancelled"


async def test_a_lost_connection_is_shown_as_gone(postgres_url: str) -> None:
    app = app_for("postgres")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await type_and_run(pilot, app, "SELECT pg_sleep(30);")
        await until(pilot, lambda: "running" in box(app, "A"))
        conductor = app.bridge.conductor
        assert conductor is not None
        pid = conductor.session("A").pid
        with psycopg2.connect(postgres_url) as admin, admin.cursor() as cursor:
            cursor.execute("SELECT pg_terminate_backend(%s)", (pid,))
        await until(pilot, lambda: "connection gone" in box(app, "A"))
        assert "gone" in caption(app) or "terminat" in caption(app)


# ---------------------------------------------------------------------------- the schema pane


async def test_schema_counts_follow_autocommitted_writes(engine: str) -> None:
    app = app_for(engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        schema = app.query_one("#schema", SchemaView)

        def label() -> str:
            return " ".join(str(n.label) for n in schema.root.children)

        await run_and_wait(pilot, app, "CREATE TABLE pets (id INTEGER PRIMARY KEY);")
        await until(pilot, lambda: "pets" in label() and "0 rows" in label())
        await run_and_wait(pilot, app, "INSERT INTO pets VALUES (1), (2), (3);")
        await until(pilot, lambda: "3 rows" in label())
        await run_and_wait(pilot, app, "BEGIN;")
        await run_and_wait(pilot, app, "INSERT INTO pets VALUES (4);")
        await pilot.pause(0.5)
        assert "3 rows" in label()  # uncommitted: the pane shows the committed truth
        await run_and_wait(pilot, app, "COMMIT;")
        await until(pilot, lambda: "4 rows" in label())


# ---------------------------------------------------------------------------- leaving


async def test_quit_during_a_long_statement_answers_at_once(engine: str) -> None:
    long_sql = LONG_SQL[engine]
    app = app_for(engine)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        target = app.bridge.target
        await type_and_run(pilot, app, long_sql)
        await until(pilot, lambda: "running" in box(app, "A"))
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        text = " ".join(str(w.render()) for w in app.screen.query(Static))
        assert "session A: the statement it runs will be cancelled" in text
        app.screen.query_one("#go", Button).press()
        # The screen answers while the sandbox is taken down off the UI thread.
        await until(pilot, lambda: "closing" in app.sub_title, seconds=2)
        # Textual's exit has been asked for once the sandbox is gone.
        await until(pilot, lambda: app.return_code is not None)
        assert app.bridge.target is None and app.bridge.conductor is None
    if isinstance(target, PostgresTarget):
        url = os.environ["DBSANDBOX_TEST_POSTGRES_URL"]
        with psycopg2.connect(url) as admin, admin.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM pg_database WHERE datname = %s", (target.name,))
            assert cursor.fetchone() == (0,)


async def test_the_palette_quit_asks_like_ctrl_q() -> None:
    app = app_for("sqlite")
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_and_wait(pilot, app, "BEGIN;")
        await run_and_wait(pilot, app, "CREATE TABLE t (id INTEGER);")
        quit_command = next(c for c in app.get_system_commands(app.screen) if c.title == "Quit")
        result = quit_command.callback()
        if result is not None:
            await result
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmQuit))
        assert app.is_running


@pytest.mark.parametrize("size", [(80, 24), (120, 40)])
async def test_three_sessions_side_by_side(size: tuple[int, int]) -> None:
    app = app_for("sqlite")
    async with app.run_test(size=size) as pilot:
        await ready(pilot, app)
        await new_session(pilot, app)
        await new_session(pilot, app)
        assert app.sessions == ["A", "B", "C"]
        for name in ("A", "B", "C"):
            app.action_switch_session(name)
            await until(pilot, lambda n=name: app.session == n)  # type: ignore[misc]
            await run_and_wait(pilot, app, f"SELECT '{name}' AS me;")
            assert caption(app).startswith(f"[{name}]")
