"""Keys and commands (issue 12, item 3) through the real app on real SQLite sandboxes.

Esc always lands in the editor, Hint/Check/Reset have keys, footer entries and palette commands,
Reset asks first and says what is lost, keys work from every pane, dialogs show their own keys,
and help lists every key and every glyph the panes draw.
"""

from __future__ import annotations

import asyncio

from textual.binding import Binding
from textual.widget import Widget
from textual.widgets import DataTable, RichLog, Static, TextArea
from textual.widgets._footer import FooterKey

from sandbox.scenario.catalog import find
from sandbox.targets import TargetOptions
from sandbox.ui.app import DbSandboxApp, create_app, help_text
from sandbox.ui.screens.dialogs import ConfirmQuit, ConfirmStatement, HelpScreen, ScenarioPicker
from sandbox.ui.widgets import timeline as timeline_widget
from sandbox.ui.widgets.scenario_panel import ScenarioPanel
from sandbox.ui.widgets.schema import SchemaView
from tests.conftest import options_for
from tests.test_ui_app import SIZE, caption, free_play, ready, run_sql, until


def editor_of(app: DbSandboxApp) -> TextArea:
    return app.query_one("#editor", TextArea)


def dialog_text(app: DbSandboxApp) -> str:
    return " ".join(str(w.render()) for w in app.screen.query(Static))


def panes(app: DbSandboxApp) -> list[Widget]:
    """The focusable panes other than the editor: results grid, schema tree, timeline log."""
    return [
        app.query_one("#results", Widget).query_one(DataTable),
        app.query_one("#schema", SchemaView),
        app.query_one("#timeline", Widget).query_one(RichLog),
    ]


def shown_keys(app: DbSandboxApp) -> dict[str, str]:
    """The footer's entries on the current screen: key -> description."""
    return {
        key: active.binding.description
        for key, active in app.screen.active_bindings.items()
        if active.binding.show and active.enabled
    }


async def test_esc_in_the_editor_stays_there_and_typing_goes_into_it() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        editor = editor_of(app)
        editor.text = "SELECT 1;"
        editor.focus()
        editor.select_all()
        await pilot.press("escape")
        assert app.focused is editor
        assert editor.selected_text == ""  # Esc dropped the selection, kept the text
        await pilot.press("end", "x")
        assert app.focused is editor
        assert editor.text == "SELECT 1;x"


async def test_esc_from_every_pane_lands_in_the_editor() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "SELECT 1 AS one;")
        for pane in panes(app):
            pane.focus()
            await pilot.pause()
            assert app.focused is pane
            await pilot.press("escape")
            assert app.focused is editor_of(app), f"Esc from {pane!r}"


async def test_f7_selects_everything_in_the_editor_from_another_pane() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        editor = editor_of(app)
        editor.text = "SELECT 1;\nSELECT 2;"
        app.query_one("#schema", SchemaView).focus()
        await pilot.press("f7")
        assert app.focused is editor
        assert editor.selected_text == "SELECT 1;\nSELECT 2;"


async def test_run_and_new_session_keys_work_from_other_panes() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        editor_of(app).text = "SELECT 41 + 1 AS answer;"
        results_grid = panes(app)[0]
        results_grid.focus()
        await pilot.press("f5")
        await until(pilot, lambda: "1 row shown" in caption(app))
        app.query_one("#schema", SchemaView).focus()
        await pilot.press("ctrl+n")
        await until(pilot, lambda: app.session == "B")
        assert app.sessions == ["A", "B"]
        # Every main key is live wherever the focus is (footer entries included).
        for pane in panes(app):
            pane.focus()
            await pilot.pause()
            live = app.screen.active_bindings
            for key in ("f2", "f3", "f5", "f6", "f7", "f8", "ctrl+n", "ctrl+r", "ctrl+up"):
                assert key in live and live[key].enabled, f"{key} from {pane!r}"


async def test_f8_cancels_from_the_results_pane() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        editor_of(app).text = (
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) "
            "SELECT count(*) FROM n;"
        )
        panes(app)[0].focus()
        await pilot.press("f5")
        await asyncio.sleep(0.3)  # let it start running in its worker
        await pilot.press("f8")
        await until(pilot, lambda: "SQLITE_INTERRUPT" in caption(app))


async def test_hint_and_check_have_keys_footer_entries_and_commands() -> None:
    app = create_app(TargetOptions(), find("missing-where"), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        panel = app.query_one("#scenario", ScenarioPanel)
        await until(pilot, lambda: panel.scenario is not None)
        footer = shown_keys(app)
        assert footer["f2"] == "Hint" and footer["f3"] == "Check" and footer["ctrl+r"] == "Reset"
        panes(app)[0].focus()  # from the results pane, not only the editor
        await pilot.press("f2")
        hints = panel.query_one("#hints", Static)
        assert "hint 1:" in str(hints.render())
        await pilot.press("f2")
        assert "hint 2:" in str(hints.render())
        await pilot.press("f3")
        checks = panel.query_one("#checks", Static)
        await until(pilot, lambda: "✘" in str(checks.render()))
        commands = {c.title: c for c in app.get_system_commands(app.screen)}
        assert {"Hint", "Check", "Reset scenario", "Focus the editor"} <= commands.keys()
        for sql in ("ROLLBACK;", "DELETE FROM login_sessions WHERE user_name = 'bob';"):
            await run_sql(pilot, app, sql)
        commands["Check"].callback()
        await until(pilot, lambda: "Recovered" in str(checks.render()))


async def test_hint_and_check_in_free_play_say_why_nothing_happens() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await pilot.press("f2", "f3")
        said = [n.message for n in app._notifications]
        assert any("free play has no hints" in m for m in said)
        assert any("free play has nothing to check" in m for m in said)


async def test_reset_in_free_play_asks_and_says_what_is_lost() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "CREATE TABLE keepme (id INTEGER PRIMARY KEY, note TEXT);")
        await run_sql(pilot, app, "INSERT INTO keepme VALUES (1, 'two hours of work');")
        await run_sql(pilot, app, "\\snapshot mywork")
        await run_sql(pilot, app, "BEGIN;")
        await run_sql(pilot, app, "INSERT INTO keepme VALUES (2, 'uncommitted');")
        panes(app)[1].focus()
        await pilot.press("ctrl+r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        text = dialog_text(app)
        assert "every table and row goes" in text
        assert "session A closes" in text
        # BEGIN and the INSERT ran; only the INSERT is a change to lose.
        assert "session A: an open transaction — 1 uncommitted change will be rolled back" in text
        assert "snapshots mywork go too" in text
        assert "y: Reset · n or Esc: stay" in text
        assert shown_keys(app) == {"escape": "Stay", "y": "Yes"}  # the dialog's keys only
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmQuit))
        assert app.focused is editor_of(app)
        await run_sql(pilot, app, "SELECT note FROM keepme WHERE id = 1;")
        assert "1 row shown" in caption(app)  # staying kept the data

        # The Reset button does the same as ctrl+r in free play (it used to be greyed out).
        await pilot.click("#reset")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        old = app._stream
        await pilot.press("y")
        await until(pilot, lambda: app._stream is not None and app._stream is not old)
        await run_sql(pilot, app, "SELECT note FROM keepme;")
        assert "no such table" in caption(app)


async def test_reset_in_a_scenario_asks_too_and_the_button_goes_through_it() -> None:
    app = create_app(TargetOptions(), find("missing-where"), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        panel = app.query_one("#scenario", ScenarioPanel)
        await until(pilot, lambda: panel.scenario is not None)
        await pilot.click("#reset")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        text = dialog_text(app)
        assert "missing-where starts again" in text
        # The breakage snapshotted its confirmed DELETE first (before-1).
        assert "snapshots start, before-1 go too (the scenario takes its own again)" in text
        old = app.bridge.conductor
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmQuit))
        assert app.bridge.conductor is old


async def test_the_guard_dialog_shows_its_keys_and_main_keys_sleep_under_it() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "CREATE TABLE zz (id INTEGER PRIMARY KEY);")
        await run_sql(pilot, app, "INSERT INTO zz VALUES (1), (2);")
        await run_sql(pilot, app, "DELETE FROM zz;")
        await until(pilot, lambda: isinstance(app.screen, ConfirmStatement))
        assert "y: yes, run it · n or Esc: no, don't run it" in dialog_text(app)
        assert shown_keys(app) == {"escape": "No, don't run it", "y": "Yes, run it"}
        conductor = app.bridge.conductor
        assert conductor is not None
        before = len(conductor.executions)
        await pilot.press("f5", "f2", "ctrl+r")  # main-screen keys: nothing happens
        assert isinstance(app.screen, ConfirmStatement)
        assert len(conductor.executions) == before
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmStatement))
        assert app.focused is editor_of(app)


async def test_a_blocked_statement_offers_no_yes() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "ATTACH DATABASE '/tmp/elsewhere.db' AS other;")
        await until(pilot, lambda: isinstance(app.screen, ConfirmStatement))
        assert shown_keys(app) == {"escape": "No, don't run it"}
        assert "n or Esc: close" in dialog_text(app)


async def test_help_lists_every_key_and_every_glyph() -> None:
    text = help_text()
    for binding in DbSandboxApp.BINDINGS:
        assert isinstance(binding, Binding)
        shown = {"escape": "esc"}.get(binding.key, binding.key)
        assert f"**{shown}" in text.lower() or f"/ {shown}**" in text.lower(), shown
    glyphs = {glyph for glyph, _ in timeline_widget._MARKERS.values()}
    glyphs |= {glyph for glyph, _ in timeline_widget._GUTTER.values() if glyph.strip()}
    glyphs |= {"·", "⏳", "✔", "✘"}
    for glyph in glyphs:
        assert f"| `{glyph}` |" in text, glyph

    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        panes(app)[2].focus()
        await pilot.press("f1")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        assert isinstance(app.screen, HelpScreen) and app.screen.text == text
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, HelpScreen))
        assert app.focused is editor_of(app)


async def test_every_footer_key_fits_an_80_column_terminal() -> None:
    app = free_play()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        await pilot.pause()
        keys = list(app.screen.query(FooterKey))
        assert {k.key for k in keys} >= {"f1", "f2", "f3", "f5", "f8", "ctrl+r", "ctrl+q"}
        for key in keys:
            assert key.region.right <= 80, f"{key.key} ends at column {key.region.right}"


async def test_the_quit_dialog_counts_only_the_changes_a_rollback_loses() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "CREATE TABLE c (id INTEGER PRIMARY KEY);")
        await run_sql(pilot, app, "BEGIN;")
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        assert "an open transaction with no changes yet — nothing is lost" in dialog_text(app)
        await pilot.press("n")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmQuit))
        for sql in (
            "SELECT count(*) FROM c;",
            "INSERT INTO c VALUES (1);",
            "INSERT INTO c VALUES (1);",  # fails on the primary key: nothing to lose
            "INSERT INTO c VALUES (2);",
        ):
            await run_sql(pilot, app, sql)
        await pilot.press("ctrl+q")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        text = dialog_text(app)
        assert "session A: an open transaction — 2 uncommitted changes will be rolled back" in text
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmQuit))
        assert app.is_running


async def test_a_failed_transaction_says_its_changes_cannot_be_saved(postgres_url: str) -> None:
    app = create_app(options_for("postgres"), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        for sql in (
            "CREATE TABLE f (id INTEGER PRIMARY KEY);",
            "BEGIN;",
            "INSERT INTO f VALUES (1);",
            "SELECT 1 / 0;",  # PostgreSQL fails the whole transaction
        ):
            await run_sql(pilot, app, sql)
        await pilot.press("ctrl+r")
        await until(pilot, lambda: isinstance(app.screen, ConfirmQuit))
        text = dialog_text(app)
        assert (
            "session A: a failed transaction — rolled back, "
            "1 uncommitted change that can no longer be saved"
        ) in text
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ConfirmQuit))


async def test_the_picker_and_help_footers_list_their_own_keys() -> None:
    app = create_app(TargetOptions(), pick=True)
    async with app.run_test(size=SIZE) as pilot:
        await until(pilot, lambda: isinstance(app.screen, ScenarioPicker))
        await pilot.pause()
        assert {k.key for k in app.screen.query(FooterKey)} == {"escape", "ctrl+q"}
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, ScenarioPicker))
        await pilot.press("f1")
        await until(pilot, lambda: isinstance(app.screen, HelpScreen))
        await pilot.pause()
        assert [k.key for k in app.screen.query(FooterKey)] == ["escape"]


async def test_f5_right_after_typing_runs_the_whole_statement() -> None:
    """F5 is a priority binding: it must not overtake keys still queued for the editor."""
    from textual import events

    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        editor = editor_of(app)
        editor.text = ""
        editor.focus()
        await pilot.pause()
        # All posted at once, as a fast typist or a terminal multiplexer sends them.
        for char in "SELECT 'typed in full' AS said;":
            app.post_message(events.Key(char if char != " " else "space", char))
        app.post_message(events.Key("f5", None))
        grid = app.query_one("#rows", DataTable)
        await until(
            pilot, lambda: grid.row_count == 1 and "typed in full" in str(grid.get_row_at(0))
        )
        conductor = app.bridge.conductor
        assert conductor is not None
        assert conductor.executions[-1].statement.text == "SELECT 'typed in full' AS said"
