"""A SQLAlchemy program traced inside the app: its connections are lanes of the app's own
timeline as they happen, its statements are in the exports, and session A reads what it wrote.

Real programs (child processes reading DATABASE_URL) against the app's real sandbox, on
SQLite and PostgreSQL, through App.run_test()/Pilot.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
from textual.command import CommandList, CommandPalette
from textual.widgets import Input, Tab, TextArea

from sandbox.options import TargetOptions
from sandbox.timeline import EventKind
from sandbox.trace.tracer import program_command
from sandbox.ui.app import DbSandboxApp, create_app
from sandbox.ui.screens.dialogs import ConfirmQuit
from sandbox.ui.screens.editor_dialogs import PathPrompt
from sandbox.ui.widgets.timeline import TimelineView
from tests.test_ui_app import SIZE, ready, run_sql, until

# Writes two rows and reads them back: one connection, two transactions. With a GO file
# named, it first prints "waiting" and holds on until that file exists (bounded), so a test
# can act while it runs without guessing how long it takes.
SHOP = textwrap.dedent(
    """
    import os
    import sys
    import time

    from sqlalchemy import String, create_engine, select
    from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

    class Base(DeclarativeBase):
        pass

    class Item(Base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(50))

    go = sys.argv[1] if len(sys.argv) > 1 else None
    if go:
        print("waiting", flush=True)
        for _ in range(3000):
            if os.path.exists(go):
                break
            time.sleep(0.02)
    engine = create_engine(os.environ["DATABASE_URL"])
    Base.metadata.create_all(engine)
    with Session(engine) as session:
        session.add_all([Item(name="apple"), Item(name="pear")])
        session.commit()
    with Session(engine) as session:
        print("read back", session.scalars(select(Item.name).order_by(Item.id)).all())
    """
)


@pytest.fixture
def shop(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # exports are written here
    path = tmp_path / "shop.py"
    path.write_text(SHOP)
    return path


def timeline(app: DbSandboxApp) -> TimelineView:
    return app.query_one("#timeline", TimelineView)


def said(app: DbSandboxApp) -> list[str]:
    return [str(n.message) for n in app._notifications]


def program_exited(app: DbSandboxApp, label: str) -> bool:
    events = app.bridge.timeline.events
    return any(e.session == label and "exit_code" in e.data for e in events)


async def traced_and_checked(app: DbSandboxApp, pilot: object) -> None:
    """What every finished trace of shop.py must show in the app."""
    from textual.pilot import Pilot

    assert isinstance(pilot, Pilot)
    await until(pilot, lambda: program_exited(app, "shop") and not app.tracing, 60)
    view = timeline(app)
    await until(pilot, lambda: "shop" in view.tracker.sessions)
    # Lanes on the app's timeline: the program's own, and its one DBAPI connection.
    assert {"A", "shop", "shop-1"} <= set(view.tracker.sessions)
    lines = view.lines()
    assert any("shop-1" in line and "sent: INSERT INTO items" in line for line in lines)
    assert any("shop-1" in line and "COMMITTED" in line for line in lines)
    assert any("shop" in line and "printed: read back ['apple', 'pear']" in line for line in lines)
    [committed] = [s for s in view.tracker.spans("shop-1") if s.state == "committed"][-1:]
    assert any(sql.startswith("INSERT INTO items") for sql in committed.statements)
    assert view.summary("shop").headline == "shop » program exited normally"
    # Its statements are numbered among the app's own (exports and reports see them).
    conductor = app.bridge.conductor
    assert conductor is not None
    inserts = [e for e in conductor.executions if e.statement.text.startswith("INSERT INTO items")]
    assert inserts and all(e.session == "shop-1" and e.origin for e in inserts)
    # A program's connection is a lane, never a session the editor could send statements to.
    assert app.sessions == ["A"]
    assert [t.id for t in app.query("#sessions Tab").results(Tab)] == ["session-A"]
    assert "exited normally" in " ".join(said(app))
    # The learner queries what the program wrote, on session A, after the trace.
    await run_sql(pilot, app, "SELECT name FROM items ORDER BY id;")
    outcome = app.latest["A"].outcome
    assert outcome is not None and outcome.rows == [("apple",), ("pear",)]


async def test_play_trace_draws_the_programs_lanes_and_exports_them(
    shop: Path, tmp_path: Path
) -> None:
    app = create_app(TargetOptions(), pick=False, traces=[program_command(str(shop))])
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await traced_and_checked(app, pilot)
        app.action_export_session()
        await until(pilot, lambda: len(list(tmp_path.glob("dbsandbox-session-*"))) == 3)
        [script] = tmp_path.glob("dbsandbox-session-*.sql")
        text = script.read_text()
        assert "INSERT INTO items" in text and "'apple'" in text  # parameters written in
        assert "SELECT name FROM items ORDER BY id;" in text  # and the learner's own query
        [record] = tmp_path.glob("dbsandbox-session-*.json")
        assert '"session": "shop-1"' in record.read_text()


async def test_play_trace_on_postgres(shop: Path, postgres_url: str) -> None:
    options = TargetOptions(engine="postgres", url=postgres_url)
    app = create_app(options, pick=False, traces=[program_command(str(shop))])
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await traced_and_checked(app, pilot)
        opened = [
            e
            for e in app.bridge.timeline.events
            if e.session == "shop-1" and e.kind is EventKind.SESSION_OPENED
        ]
        assert opened and opened[0].data.get("backend_pid")  # its own server process


async def trace_from_palette(pilot: object, app: DbSandboxApp, text: str) -> None:
    """ctrl+p, the "Trace a Python program…" command, then `text` in its path prompt."""
    from textual.pilot import Pilot

    assert isinstance(pilot, Pilot)
    await pilot.press("ctrl+p")
    await pilot.pause()
    for key in "Trace a Python":
        await pilot.press("space" if key == " " else key)

    def offered() -> bool:
        if not isinstance(app.screen, CommandPalette):
            return False
        found = app.screen.query_one(CommandList)
        first = found.get_option_at_index(0) if found.option_count else None
        return first is not None and "Trace a Python program" in str(first.prompt)

    await until(pilot, offered)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, PathPrompt))
    app.screen.query_one("#path-input", Input).value = text
    await pilot.press("enter")
    await until(pilot, lambda: not isinstance(app.screen, PathPrompt))


async def test_the_palette_traces_a_program_and_refuses_a_second_while_it_runs(
    shop: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    app = create_app(TargetOptions(), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await trace_from_palette(pilot, app, f"{shop} {go}")
        view = timeline(app)
        await until(pilot, lambda: view.tracker.program("shop") == ("running", "waiting"))
        assert app.tracing
        # A second program while the first runs: refused, said, and nothing else starts.
        await trace_from_palette(pilot, app, str(shop))
        assert any("still running: one trace at a time" in m for m in said(app))
        # The editor keeps working meanwhile (run_sql would wait for every worker, the
        # trace's included).
        editor = app.query_one("#editor", TextArea)
        editor.text = "SELECT 41 + 1;"
        editor.focus()
        await pilot.press("f5")

        def answered() -> bool:
            shown = app.latest.get("A")
            return shown is not None and shown.outcome is not None

        await until(pilot, answered)
        outcome = app.latest["A"].outcome
        assert outcome is not None and outcome.rows == [(42,)]
        assert app.tracing and view.tracker.program("shop") == ("running", "waiting")
        go.write_text("")
        await traced_and_checked(app, pilot)
        assert "shop_2" not in view.tracker.sessions  # the refused one never ran


async def test_a_bad_path_is_said_and_nothing_runs(shop: Path) -> None:
    app = create_app(TargetOptions(), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await trace_from_palette(pilot, app, "nope.py")
        await until(pilot, lambda: any("nope.py: no such file" in m for m in said(app)))
        assert not app.tracing
        assert app.bridge.conductor is not None
        assert all(e.session == "A" for e in app.bridge.timeline.events)


async def test_quitting_while_a_program_runs_kills_it_and_removes_the_sandbox(
    shop: Path, tmp_path: Path
) -> None:
    go = tmp_path / "never"  # the program waits for it: only quitting ends it
    app = create_app(TargetOptions(), pick=False, traces=[program_command(f"{shop} {go}")])
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        view = timeline(app)
        await until(pilot, lambda: view.tracker.program("shop") == ("running", "waiting"))
        [printed] = [e for e in app.bridge.timeline.events if e.kind is EventKind.PROGRAM]
        pid = int(printed.data["pid"])
        target = app.bridge.target
        assert target is not None
        sandbox = Path(target.path)  # type: ignore[attr-defined]
        assert sandbox.exists()
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        asked = app.screen
        assert isinstance(asked, ConfirmQuit)
        assert any("program shop.py is still running" in line for line in asked.lines)
        await pilot.press("y")
        await until(pilot, lambda: not app.is_running, 30)
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # killed and reaped: no orphan left running
    assert not sandbox.exists()


def test_play_trace_of_a_missing_program_fails_before_the_app_opens(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "play", "--trace", "missing.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2
    assert done.stderr.splitlines() == ["dbsandbox: --trace: missing.py: no such file"]
    assert done.stdout == ""  # no app was drawn


async def test_the_same_program_traced_again_shows_as_running_again(
    shop: Path, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    app = create_app(TargetOptions(), pick=False, traces=[program_command(str(shop))])
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        view = timeline(app)
        await until(pilot, lambda: program_exited(app, "shop") and not app.tracing, 60)
        assert view.summary("shop").headline == "shop » program exited normally"
        conductor = app.bridge.conductor
        assert conductor is not None

        def inserts() -> int:
            return sum(1 for e in conductor.executions if e.statement.text.startswith("INSERT"))

        first = inserts()
        assert first
        # Its lanes keep their names in a second trace: the box follows the new process.
        app.start_trace([program_command(f"{shop} {go}")])
        await until(pilot, lambda: view.tracker.program("shop") == ("running", "waiting"))
        assert view.summary("shop").headline == "shop » program running"
        go.write_text("")
        await until(pilot, lambda: not app.tracing)
        assert view.summary("shop").headline == "shop » program exited normally"
        assert inserts() == 2 * first  # both runs' statements, in the app's one numbering


def test_play_trace_opens_free_play_with_its_programs(
    shop: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sandbox.cli

    opened: list[tuple[bool, dict[str, object]]] = []

    def open_app(options: object, scenario: object, pick: bool, *args: object, **kw: object) -> int:
        opened.append((pick, kw))
        return 0

    monkeypatch.setattr(sandbox.cli, "_open_app", open_app)
    args = ["play", "--trace", "shop.py go", "--trace", str(shop), "--together"]
    assert sandbox.cli.main(args) == 0
    [(pick, kw)] = opened
    assert pick is False  # straight to free play: no picker in front of the programs
    assert kw["traces"] == [[sys.executable, "shop.py", "go"], [sys.executable, str(shop)]]
    assert kw["together"] is True


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["missing-where"], "dbsandbox: --trace opens free play"),
        (["--together"], "dbsandbox: --together starts several --trace programs at once"),
    ],
)
def test_play_trace_refuses_a_scenario_and_a_lone_together(
    shop: Path, capsys: pytest.CaptureFixture[str], args: list[str], said: str
) -> None:
    import sandbox.cli

    assert sandbox.cli.main(["play", *args, "--trace", str(shop)]) == 2
    err = capsys.readouterr().err.splitlines()
    assert len(err) == 1 and err[0].startswith(said)


# Updates the row session A holds: it waits for A's lock until A commits (its own SQLite
# busy timeout is made long, so only A's COMMIT ends the wait).
UPDATE_ROW = textwrap.dedent(
    """
    import os

    from sqlalchemy import create_engine, text

    url = os.environ["DATABASE_URL"]
    engine = create_engine(url, connect_args={"timeout": 120} if url.startswith("sqlite") else {})
    with engine.begin() as conn:
        conn.execute(text("UPDATE t SET v = 2 WHERE id = 1"))
    print("updated")
    """
)


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_a_lane_waiting_for_session_as_lock_names_a(
    engine: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue("postgres_url") if engine == "postgres" else None
    monkeypatch.chdir(tmp_path)
    (tmp_path / "bump.py").write_text(UPDATE_ROW)
    app = create_app(TargetOptions(engine=engine, url=url), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER);")
        await run_sql(pilot, app, "INSERT INTO t VALUES (1, 1);")
        await run_sql(pilot, app, "BEGIN;")
        await run_sql(pilot, app, "UPDATE t SET v = 3 WHERE id = 1;")
        app.start_trace([program_command("bump.py")])
        view = timeline(app)
        await until(pilot, lambda: view.tracker.waiting("bump-1") is not None, 60)
        wait = view.tracker.waiting("bump-1")
        assert wait is not None and wait.blocked_by == ["A"]
        headline = view.summary("bump-1").headline
        assert headline.startswith("bump-1 ⏳ waiting for A") and "F8" not in headline
        assert view.summary("A").headline.startswith("A ● IN TRANSACTION")
        editor = app.query_one("#editor", TextArea)
        editor.text = "COMMIT;"
        editor.focus()
        await pilot.press("f5")
        await until(pilot, lambda: program_exited(app, "bump") and not app.tracing, 60)
        assert view.tracker.spans("bump-1")[-1].state == "committed"
        await run_sql(pilot, app, "SELECT v FROM t;")
        outcome = app.latest["A"].outcome
        assert outcome is not None and outcome.rows == [(2,)]  # the program's, after A's


async def test_a_reset_while_a_program_runs_says_so_and_stops_it(
    shop: Path, tmp_path: Path
) -> None:
    go = tmp_path / "never"
    app = create_app(TargetOptions(), pick=False, traces=[program_command(f"{shop} {go}")])
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        view = timeline(app)
        await until(pilot, lambda: view.tracker.program("shop") == ("running", "waiting"))
        [printed] = [e for e in app.bridge.timeline.events if e.kind is EventKind.PROGRAM]
        pid = int(printed.data["pid"])
        old = app.bridge.timeline
        await pilot.press("ctrl+r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        asked = app.screen
        assert isinstance(asked, ConfirmQuit)
        assert any("program shop.py is still running" in line for line in asked.lines)
        await pilot.press("y")
        await until(pilot, lambda: app.bridge.timeline is not old and not app.tracing, 30)
        await ready(pilot, app)
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        # Its last words are on the old timeline; the new sandbox starts with session A only.
        assert any("stopped: its sandbox is being closed" in e.message for e in old.events)
        assert app.sessions == ["A"] and "shop" not in view.tracker.sessions
