"""Traffic sessions in the app (App.run_test and Pilot): a scenario's traffic plays in the
breakage, `\\traffic` runs from the editor, and reset and quit leave no traffic behind."""

from __future__ import annotations

import threading
from pathlib import Path

from textual.widgets import Static

from sandbox.scenario.loader import load
from sandbox.targets import TargetOptions
from sandbox.ui.app import create_app
from sandbox.ui.screens.dialogs import ConfirmQuit
from sandbox.ui.widgets.scenario_panel import ScenarioPanel
from tests.test_traffic import scenario_file
from tests.test_ui_app import SIZE, ready, run_sql, until


def traffic_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("traffic-") and t.is_alive()]


async def test_a_scenario_with_traffic_plays_in_the_app(tmp_path: Path) -> None:
    scenario = load(scenario_file(tmp_path, "sqlite"))
    app = create_app(TargetOptions(), scenario, pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        conductor = app.bridge.conductor
        assert conductor is not None
        sent = [e for e in conductor.executions if e.traffic == "T"]
        assert sent and all(e.session == "T" for e in sent)
        assert any(e.waited for e in sent)  # A held the write lock for the whole window
        panel = app.query_one("#scenario", ScenarioPanel)
        text = " ".join(str(w.render()) for w in panel.query(Static))
        # The recap tells the traffic once, on its line, not statement by statement.
        assert "traffic T: " in text and "waited on a lock" in text
        assert not traffic_threads()  # the breakage's traffic ended with the breakage


async def test_editor_traffic_runs_and_reset_and_quit_stop_it() -> None:
    app = create_app(TargetOptions(), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "CREATE TABLE t (id INTEGER PRIMARY KEY);")
        old = app.bridge.conductor
        assert old is not None
        app.run_sql("A", "\\traffic W every 20ms for 60s: SELECT count(*) FROM t;")
        await until(pilot, lambda: sum(e.traffic == "W" for e in old.executions) >= 3)
        assert "W" in [s.name for s in old.sessions]
        assert app.bridge.traffic_running() == ["W"]
        await pilot.press("ctrl+r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        text = " ".join(str(w.render()) for w in app.screen.query(Static))
        assert "traffic W stops sending" in text
        await pilot.press("y")
        await until(pilot, lambda: app.bridge.conductor not in (None, old))
        await until(pilot, lambda: not traffic_threads())
        assert old.sessions == []  # every connection of the old sandbox closed
        sent = len(old.executions)
        await pilot.pause(0.2)
        assert len(old.executions) == sent  # and nothing sent after
        # Started again in the new sandbox; quitting stops it too.
        await run_sql(pilot, app, "CREATE TABLE t (id INTEGER PRIMARY KEY);")
        app.run_sql("A", "\\traffic W every 20ms for 60s: SELECT count(*) FROM t;")
        new = app.bridge.conductor
        assert new is not None
        await until(pilot, lambda: any(e.traffic == "W" for e in new.executions))
    assert not traffic_threads()
    assert new.sessions == []


async def test_a_bad_traffic_line_in_the_editor_is_a_notice() -> None:
    app = create_app(TargetOptions(), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        app.run_sql("A", "\\traffic A every 20ms for 1s: SELECT 1;")
        await pilot.pause(0.5)
        await app.workers.wait_for_complete()
        conductor = app.bridge.conductor
        assert conductor is not None
        assert not any(e.traffic for e in conductor.executions)
        assert not traffic_threads()


async def test_quitting_while_the_breakage_traffic_runs_stops_it(tmp_path: Path) -> None:
    # Traffic for a minute: quitting must not wait it out.
    scenario = load(scenario_file(tmp_path, "sqlite", **{"for_ms = 600": "for_ms = 60000"}))
    app = create_app(TargetOptions(), scenario, pick=False)
    async with app.run_test(size=SIZE) as pilot:

        def sending() -> bool:
            conductor = app.bridge.conductor
            return conductor is not None and any(e.traffic == "T" for e in conductor.executions)

        await until(pilot, sending)
        conductor = app.bridge.conductor
        assert conductor is not None
        assert app.bridge.traffic_running() == ["T"]
    # Stopped before its minute was over (not "over"), and nothing of it is left.
    notes = [e.message for e in conductor.timeline.events if e.session == "T"]
    assert any(n.startswith("traffic T stopped:") for n in notes), notes
    assert not any(n.startswith("traffic T over:") for n in notes)
    assert not traffic_threads()
    assert conductor.sessions == []


async def test_closing_a_traffic_session_stops_its_traffic() -> None:
    app = create_app(TargetOptions(), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "CREATE TABLE t (id INTEGER PRIMARY KEY);")
        conductor = app.bridge.conductor
        assert conductor is not None
        app.run_sql("A", "\\traffic W every 20ms for 60s: SELECT count(*) FROM t;")
        await until(pilot, lambda: any(e.traffic == "W" for e in conductor.executions))
        app.bridge.close_session("W")
        await until(pilot, lambda: not traffic_threads())
        # Not opened again by the traffic's next statement.
        assert "W" not in [s.name for s in conductor.sessions]
        assert app.bridge.traffic_running() == []
