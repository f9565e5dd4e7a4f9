"""The real app through App.run_test() and Pilot: every flow of issue 5 on a real sandbox."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import OptionList, Static, TextArea

from sandbox.scenario.catalog import find
from sandbox.targets import TargetOptions
from sandbox.ui.app import DbSandboxApp, create_app
from sandbox.ui.screens.dialogs import ConfirmQuit, ConfirmStatement, HelpScreen, ScenarioPicker
from sandbox.ui.widgets.scenario_panel import ScenarioPanel
from sandbox.ui.widgets.schema import SchemaView

SIZE = (120, 40)


async def until(pilot: Pilot[None], condition: Callable[[], bool], seconds: float = 15.0) -> None:
    """Let workers and messages run until `condition` holds (bounded; never a fixed sleep)."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached")


def caption(app: DbSandboxApp) -> str:
    return str(app.query_one("#results #caption", Static).render())


async def run_sql(pilot: Pilot[None], app: DbSandboxApp, sql: str) -> None:
    editor = app.query_one("#editor", TextArea)
    editor.text = sql
    editor.move_cursor((0, 0))
    editor.focus()
    conductor = app.bridge.conductor
    assert conductor is not None
    before = len(conductor.executions)

    def shown() -> bool:
        # The new statement finished (or is waiting) and its caption is up; two runs can have
        # identical captions, so count executions rather than compare text.
        if isinstance(app.screen, ConfirmStatement):
            return True
        if len(conductor.executions) <= before:
            return False
        last = conductor.executions[-1]
        return last.outcome is not None or last.waited

    await pilot.press("f5")
    await until(pilot, shown)
    # Every message the run posted (its result, and any statement it released) is handled.
    await app.workers.wait_for_complete()
    await pilot.pause()


async def ready(pilot: Pilot[None], app: DbSandboxApp) -> None:
    await until(pilot, lambda: app.sandbox_description is not None)


def free_play() -> DbSandboxApp:
    return create_app(TargetOptions(), pick=False)


async def test_launch_shows_the_picker_and_esc_goes_to_free_play() -> None:
    app = create_app(TargetOptions(), pick=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ScenarioPicker))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ScenarioPicker))
        assert app.focused is app.query_one("#editor", TextArea)
        await ready(pilot, app)
        assert app.title == "dbsandbox"
        assert "sqlite" in app.sub_title and "session A" in app.sub_title


async def test_picking_a_scenario_loads_it() -> None:
    app = create_app(TargetOptions(), pick=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ScenarioPicker))
        picker = app.screen
        assert isinstance(picker, ScenarioPicker)
        option_list = picker.query_one("#scenario-list")
        index = [s.id for s in picker.scenarios].index("missing-where")
        option_list.highlighted = index  # type: ignore[attr-defined]
        await pilot.press("enter")
        panel = app.query_one("#scenario", ScenarioPanel)
        await until(pilot, lambda: panel.scenario is not None)
        assert panel.scenario is not None and panel.scenario.id == "missing-where"


async def test_a_loaded_scenario_starts_from_its_task_in_the_editor() -> None:
    app = create_app(TargetOptions(), pick=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ScenarioPicker))
        await pilot.press("escape")
        await ready(pilot, app)
        editor = app.query_one("#editor", TextArea)
        editor.text = "DELETE FROM nowhere;  -- free play's draft"
        app.open_scenario("missing-where")  # what picking it in the palette leads to
        panel = app.query_one("#scenario", ScenarioPanel)
        await until(pilot, lambda: panel.scenario is not None)
        scenario = panel.scenario
        assert scenario is not None
        text = editor.text
        assert "free play's draft" not in text
        assert text.startswith(f"-- {scenario.title}\n")
        first_words = " ".join(scenario.task.split()[:4])
        assert first_words in " ".join(text.replace("--", " ").split())
        assert all(row.startswith("--") for row in text.splitlines() if row)
        # A reset of the same scenario keeps what the learner typed since.
        editor.text = "ROLLBACK;"
        before = app.bridge.timeline
        app.open_sandbox(scenario)  # what Reset does once confirmed
        # sandbox_ready has run for the new sandbox once the app renders its timeline.
        await until(pilot, lambda: app._stream is not before and app._stream is not None)
        assert editor.text == "ROLLBACK;"


async def test_the_picker_guides_easiest_first_and_says_why_an_entry_is_grey() -> None:
    from sandbox.scenario.model import DIFFICULTIES

    app = create_app(TargetOptions(), pick=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ScenarioPicker))
        picker = app.screen
        assert isinstance(picker, ScenarioPicker)
        listed = picker.scenarios
        order = [(DIFFICULTIES.index(s.difficulty), s.title.casefold()) for s in listed]
        assert order == sorted(order)
        option_list = picker.query_one("#scenario-list", OptionList)
        texts = {s.id: str(option_list.get_option(s.id).prompt) for s in listed}
        lost = texts["lost-update"]
        assert "Two sessions read a balance" in lost  # the summary
        assert "concurrency" in lost  # the tags
        grey = [s for s in listed if not s.supports("sqlite")]
        assert grey, "the catalog has a PostgreSQL-only scenario"
        for scenario in grey:
            assert option_list.get_option(scenario.id).disabled
            assert "runs on postgres only: " in texts[scenario.id]
        highlighted = option_list.highlighted
        assert highlighted is not None and listed[highlighted].supports("sqlite")


async def test_run_shows_rows_and_schema_refreshes() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "CREATE TABLE pets (id INTEGER PRIMARY KEY, name TEXT NOT NULL);")
        schema = app.query_one("#schema", SchemaView)
        await until(pilot, lambda: any("pets" in str(n.label) for n in schema.root.children))
        await run_sql(pilot, app, "INSERT INTO pets VALUES (1, 'rex'), (2, 'tom');")
        assert "2 rows affected" in caption(app)
        await run_sql(pilot, app, "SELECT * FROM pets ORDER BY id;")
        assert "2 rows shown" in caption(app)
        table = app.query_one("#results #rows")
        assert table.row_count == 2  # type: ignore[attr-defined]


async def test_a_million_rows_show_one_page() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(
            pilot,
            app,
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) "
            "SELECT i FROM n;",
        )
        assert "500 rows shown, more rows exist" in caption(app)
        assert app.query_one("#results #rows").row_count == 500  # type: ignore[attr-defined]


async def test_the_guard_asks_and_no_is_the_default() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "CREATE TABLE zz (id INTEGER PRIMARY KEY);")
        await run_sql(pilot, app, "INSERT INTO zz VALUES (1), (2), (3);")
        await run_sql(pilot, app, "DELETE FROM zz;")
        await until(pilot, lambda: isinstance(app.screen, ConfirmStatement))
        dialog = app.screen
        text = " ".join(str(w.render()) for w in dialog.query(Static))
        assert "would delete 3 of 3 rows in zz" in text
        assert app.focused is not None and app.focused.id == "no"
        await pilot.press("enter")  # the default: no
        await until(pilot, lambda: not isinstance(app.screen, ConfirmStatement))
        await until(pilot, lambda: any("declined" in e.message for e in app.bridge.timeline.events))
        await run_sql(pilot, app, "SELECT count(*) FROM zz;")
        row = app.query_one("#results #rows").get_row_at(0)  # type: ignore[attr-defined]
        assert [cell.plain for cell in row] == ["3"]
        # Now say yes.
        await run_sql(pilot, app, "DELETE FROM zz;")
        await until(pilot, lambda: isinstance(app.screen, ConfirmStatement))
        await pilot.press("y")
        await until(pilot, lambda: "3 rows affected" in caption(app))
        # The timeline says what the learner did in the app, not the command line's --yes.
        said = " ".join(e.message for e in app.bridge.timeline.events)
        assert "confirmed by you in the dialog" in said
        assert "--yes" not in said


async def test_a_scenario_checks_and_recovers() -> None:
    app = create_app(TargetOptions(), find("missing-where"), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        panel = app.query_one("#scenario", ScenarioPanel)
        await until(pilot, lambda: panel.scenario is not None)
        await pilot.click("#check")
        checks = panel.query_one("#checks", Static)
        await until(pilot, lambda: "✘" in str(checks.render()))
        await pilot.click("#hint")
        assert "hint 1:" in str(panel.query_one("#hints", Static).render())
        for sql in ("ROLLBACK;", "DELETE FROM login_sessions WHERE user_name = 'bob';"):
            await run_sql(pilot, app, sql)
        await pilot.click("#check")
        await until(pilot, lambda: "Recovered" in str(checks.render()))


async def test_a_committed_delete_is_seen_restored_and_graded() -> None:
    """The whole recovery: see which rows went, restore the snapshot, have the check agree."""
    app = create_app(TargetOptions(), find("committed-delete"), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        panel = app.query_one("#scenario", ScenarioPanel)
        await until(pilot, lambda: panel.scenario is not None)
        await run_sql(pilot, app, "\\diff start")
        assert "customers: 6 rows removed" in caption(app)
        grid = app.query_one("#results #rows")
        first = grid.get_row_at(0)  # type: ignore[attr-defined]
        assert [cell.plain for cell in first[:3]] == ["customers", "removed", "id=1"]
        await run_sql(pilot, app, "\\restore start")
        assert "restored snapshot start" in caption(app)
        await run_sql(pilot, app, "INSERT INTO orders VALUES (1003, 2, 49.00);")
        await pilot.click("#check")
        checks = panel.query_one("#checks", Static)
        await until(pilot, lambda: "Recovered" in str(checks.render()))
        text = str(checks.render())
        assert "How you recovered: restored a snapshot, repaired with SQL" in text
        assert "Since the start snapshot: orders: 1 row added" in text
        # The schema pane reads the restored table again: six customers, not none.
        schema = app.query_one("#schema", SchemaView)
        await until(
            pilot, lambda: any(str(n.label) == "customers  6 rows" for n in schema.root.children)
        )


async def test_a_malformed_command_is_a_notice_not_a_crash() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        editor = app.query_one("#editor", TextArea)
        editor.text = "\\restore"
        editor.focus()
        await pilot.press("f5")
        await until(
            pilot,
            lambda: any("needs exactly one name" in n.message for n in app._notifications),
        )


async def test_sessions_switch_and_a_wait_resolves() -> None:
    app = create_app(TargetOptions(), find("same-email-signups"), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await until(pilot, lambda: len(app.sessions) >= 2)
        assert app.session == "A"
        await pilot.press("f6")
        await until(pilot, lambda: app.session == "B")
        await pilot.press("f6")
        await until(pilot, lambda: app.session == "A")


async def test_a_statement_waiting_on_a_lock_shows_waiting_then_its_outcome() -> None:
    # A busy timeout long enough for A to commit while B waits (the default 200 ms is not).
    app = create_app(TargetOptions(busy_timeout_ms=10_000), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "CREATE TABLE c (id INTEGER PRIMARY KEY, n INTEGER);")
        await run_sql(pilot, app, "INSERT INTO c VALUES (1, 0);")
        await run_sql(pilot, app, "BEGIN IMMEDIATE;")
        app.run_sql("B", "UPDATE c SET n = n + 1 WHERE id = 1;")  # B waits for A's write lock
        await until(pilot, lambda: "B" in app.sessions)
        app.action_switch_session("B")
        await until(pilot, lambda: app.session == "B")
        await until(pilot, lambda: "waiting for a lock held by A" in caption(app))
        app.action_switch_session("A")
        await until(pilot, lambda: app.session == "A")
        await run_sql(pilot, app, "COMMIT;")
        # B's outcome arrives in B, never over A's own result.
        assert caption(app).startswith("[A]") and "waiting" not in caption(app)
        app.action_switch_session("B")
        await until(pilot, lambda: "[B]" in caption(app) and "1 row affected" in caption(app))


async def test_quitting_with_an_open_transaction_asks_first() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "CREATE TABLE q (id INTEGER);")
        await run_sql(pilot, app, "BEGIN;")
        await run_sql(pilot, app, "INSERT INTO q VALUES (1);")
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        text = " ".join(str(w.render()) for w in app.screen.query(Static))
        assert "session A: an open transaction — 1 uncommitted change will be rolled back" in text
        await pilot.press("escape")  # stay
        await until(pilot, lambda: not isinstance(app.screen, ConfirmQuit))
        assert app.is_running


async def test_help_lists_keys_and_esc_closes_it() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await pilot.press("f1")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))


async def test_command_palette_entries_and_export(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        titles = [c.title for c in app.get_system_commands(app.screen)]
        for wanted in (
            "Load scenario",
            "Reset scenario",
            "Switch session: A",
            "Switch engine: postgres",
            "Export session",
        ):
            assert wanted in titles
        await run_sql(pilot, app, "SELECT 1;")
        app.action_export_session()
        await until(pilot, lambda: len(list(tmp_path.glob("dbsandbox-session-*"))) == 3)
        [timeline] = tmp_path.glob("dbsandbox-session-*.json")
        assert '"kind": "outcome"' in timeline.read_text()
        [script] = tmp_path.glob("dbsandbox-session-*.sql")
        assert "SELECT 1;" in script.read_text()
        [runbook] = tmp_path.glob("dbsandbox-session-*.md")
        assert "## What was done" in runbook.read_text()


async def test_an_acknowledgement_counts_whenever_the_statement_comes() -> None:
    """Acknowledgements belong to the editor text being run, not to the session's history."""
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "CREATE TABLE zz (id INTEGER PRIMARY KEY);")
        await run_sql(pilot, app, "INSERT INTO zz VALUES (1), (2);")
        editor = app.query_one("#editor", TextArea)
        editor.text = "-- dbsandbox: allow delete-without-where\nDELETE FROM zz;"
        editor.focus()
        await pilot.press("f7", "f5")
        await until(pilot, lambda: "2 rows affected" in caption(app))
        assert not isinstance(app.screen, ConfirmStatement)


async def test_a_long_statement_can_be_cancelled() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        editor = app.query_one("#editor", TextArea)
        editor.text = (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
            "SELECT count(*) FROM n;"
        )
        await pilot.press("f5")
        await asyncio.sleep(0.3)  # let it start running in its worker
        await pilot.press("f8")
        await until(pilot, lambda: "SQLITE_INTERRUPT" in caption(app))


async def test_history_brings_back_earlier_statements() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "SELECT 1 AS first;")
        await run_sql(pilot, app, "SELECT 2 AS second;")
        editor = app.query_one("#editor", TextArea)
        editor.text = ""
        await pilot.press("ctrl+up")
        assert editor.text == "SELECT 2 AS second"
        await pilot.press("ctrl+up")
        assert editor.text == "SELECT 1 AS first"
        await pilot.press("ctrl+down")
        assert editor.text == "SELECT 2 AS second"


async def test_switching_engine_opens_a_postgres_sandbox(
    postgres_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DBSANDBOX_POSTGRES_URL", postgres_url)
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        first = app.sandbox_description
        app.action_switch_engine("postgres")
        await until(pilot, lambda: app.sandbox_description != first and app.engine == "postgres")
        assert "postgres" in app.sub_title
        await run_sql(pilot, app, "SELECT current_setting('server_version_num')::int > 0 AS pg;")
        assert "1 row shown" in caption(app)


async def test_check_scores_on_hidden_variants_and_keeps_progress(
    private_progress: Path, tmp_path: Path
) -> None:
    """A typed-in total looks right here; Check replays it on a hidden variant, says so, and
    the score (less the hint taken) is kept in the learner's progress."""
    from sandbox.progress import ProgressStore

    app = create_app(TargetOptions(), find("lost-update"), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        panel = app.query_one("#scenario", ScenarioPanel)
        await until(pilot, lambda: panel.scenario is not None)
        app.action_hint()
        app.action_hint()
        app.action_hint()
        await run_sql(pilot, app, "UPDATE cards SET balance = 130 WHERE id = 1;")
        app.action_check()
        score = panel.query_one("#score", Static)
        await until(pilot, lambda: "Score" in str(score.render()), seconds=30)
        text = str(score.render())
        assert "wrong on a hidden dataset" in text
        assert "hidden variants 0/1" in text and "hints 3" in text
        assert "Lost update: two sessions read the same value" in text
        entry = ProgressStore(private_progress).entries()["lost-update"]
        assert entry.attempts == 1 and not entry.done
        first = entry.best_score
        conductor = app.bridge.conductor
        assert conductor is not None
        # Hints and Checks are on the timeline, where an export carries them.
        kinds = [str(event.kind) for event in conductor.timeline.events]
        assert kinds.count("hint") == 3 and kinds.count("check") == 1
        # The export carries the score and the anomaly; `grade` reads the hints back from it.
        app.bridge.export(tmp_path)
        document = json.loads(next(tmp_path.glob("*.json")).read_text())
        assert document["score"]["total"] == first
        assert document["anomaly"]["name"] == "lost update"
        assert "Score:" in next(tmp_path.glob("*.md")).read_text()
        from sandbox.scenario.grading import attempt_from_json

        effort = attempt_from_json(document, find("lost-update")).effort
        assert effort.hints == 3 and effort.checks_failed == 1
    # Next launch, the right fix: recovered here and on the variant; the best score is kept.
    app = create_app(TargetOptions(), find("lost-update"), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        panel = app.query_one("#scenario", ScenarioPanel)
        await until(pilot, lambda: panel.scenario is not None)
        await run_sql(pilot, app, "UPDATE cards SET balance = balance + 10 WHERE id = 1;")
        app.action_check()
        score = panel.query_one("#score", Static)
        await until(pilot, lambda: "Score" in str(score.render()), seconds=30)
        assert "Score 100/100" in str(score.render())
        assert "Recovered" in str(panel.query_one("#checks", Static).render())
        entry = ProgressStore(private_progress).entries()["lost-update"]
        assert entry.done and entry.attempts == 2 and entry.best_score == 100 > first


async def test_a_check_that_cannot_be_graded_says_so(tmp_path: Path) -> None:
    """Grading on the hidden variants fails (here the variant's setup no longer runs: its file
    changed under the app): the checks still show, and the score says why it is missing."""
    from sandbox.cli import main

    assert main(["new", "shaky", "--dir", str(tmp_path)]) == 0
    path = tmp_path / "shaky.toml"
    app = create_app(TargetOptions(), find(str(path)), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        panel = app.query_one("#scenario", ScenarioPanel)
        await until(pilot, lambda: panel.scenario is not None)
        path.write_text(
            path.read_text().replace(
                "INSERT INTO products VALUES (4, 'plate', 7)", "INSERT INTO nowhere VALUES (4)"
            )
        )
        app.action_check()
        score = panel.query_one("#score", Static)
        await until(pilot, lambda: "No score this time" in str(score.render()), seconds=30)
        assert "setup failed" in str(score.render())
        assert "✘" in str(panel.query_one("#checks", Static).render())
