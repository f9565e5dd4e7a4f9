"""The editor through the real app: completion, history, error positions, files, find, format."""

from __future__ import annotations

from pathlib import Path

import pytest
from textual.pilot import Pilot
from textual.widgets import Input
from textual.widgets.text_area import Selection

from sandbox.targets import TargetOptions
from sandbox.ui.app import DbSandboxApp, create_app, help_text
from sandbox.ui.screens.dialogs import ConfirmQuit
from sandbox.ui.screens.editor_dialogs import FindDialog, HistorySearch, PathPrompt
from sandbox.ui.widgets.editor import CompletionList, SqlEditor
from tests.conftest import options_for
from tests.test_ui_app import SIZE, free_play, ready, run_sql, until

ORDERS = (
    "CREATE TABLE orders (id integer PRIMARY KEY, customer text, total integer);\n"
    "INSERT INTO orders VALUES (1, 'ann', 10), (2, 'bob', 20);"
)


def editor_of(app: DbSandboxApp) -> SqlEditor:
    return app.query_one("#editor", SqlEditor)


def put(app: DbSandboxApp, text: str) -> SqlEditor:
    """`text` in the editor, the cursor where `|` is (at the end without one)."""
    editor = editor_of(app)
    at = text.index("|") if "|" in text else len(text)
    editor.text = text.replace("|", "", 1)
    editor.move_cursor(editor.location_of(at))
    editor.focus()
    return editor


def popup_open(app: DbSandboxApp) -> bool:
    return bool(app.query_one(CompletionList).display)


def history_search(app: DbSandboxApp) -> HistorySearch | None:
    return app.screen if isinstance(app.screen, HistorySearch) else None


def said(app: DbSandboxApp) -> list[str]:
    return [n.message for n in app._notifications]


async def with_orders(pilot: Pilot[None], app: DbSandboxApp) -> None:
    await ready(pilot, app)
    await run_sql(pilot, app, ORDERS)
    await run_sql(pilot, app, ORDERS.split("\n")[1])
    await until(pilot, lambda: any(t.name == "orders" for t in app.tables))


@pytest.mark.parametrize("size", [(80, 24), SIZE])
async def test_tab_and_ctrl_space_complete_from_the_schema(size: tuple[int, int]) -> None:
    app = free_play()
    async with app.run_test(size=size) as pilot:
        await with_orders(pilot, app)
        editor = put(app, "SELECT * FROM ord")
        await pilot.press("tab")  # one candidate: taken at once
        assert editor.text == "SELECT * FROM orders"

        editor = put(app, "SELECT o.| FROM orders AS o")
        await pilot.press("ctrl+@")  # what a terminal's ctrl+space arrives as
        popup = app.query_one(CompletionList)
        assert popup_open(app) and popup.option_count == 3
        # The popup is on the screen, just under the cursor, whatever its size.
        cursor = editor.cursor_screen_offset
        assert popup.region.y == cursor.y + 1
        assert popup.region.right <= size[0] and popup.region.bottom <= size[1]
        await pilot.press("down", "enter")
        assert editor.text == "SELECT o.customer FROM orders AS o"
        assert not popup_open(app)
        assert app.focused is editor


async def test_the_popup_narrows_as_you_type_and_esc_closes_it_in_the_editor() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await with_orders(pilot, app)
        editor = put(app, "SELECT | FROM orders")
        await pilot.press("ctrl+space")
        popup = app.query_one(CompletionList)
        assert popup_open(app)
        await pilot.press("t", "o")
        assert popup_open(app) and popup.option_count == 1  # total
        await pilot.press("escape")
        assert not popup_open(app) and app.focused is editor
        await pilot.press("tab")  # after a word: completes the only column left
        assert editor.text == "SELECT total FROM orders"
        editor = put(app, "SELECT c| FROM orders")
        await pilot.press("tab")  # customer, case, cast, ...: the list, columns first
        assert popup_open(app) and popup.option_count > 1
        await pilot.press("tab")  # Tab takes the highlighted one, like Enter
        assert editor.text == "SELECT customer FROM orders" and not popup_open(app)


async def test_tab_indents_where_there_is_nothing_to_complete() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        editor = put(app, "SELECT 1 ")
        await pilot.press("tab")
        assert editor.text.startswith("SELECT 1  ") and not popup_open(app)
        editor = put(app, "SELECT 12")  # after a word that nothing completes: indents too
        await pilot.press("tab")
        assert editor.text.startswith("SELECT 12 ") and not popup_open(app)


async def test_ctrl_up_keeps_the_draft_and_ctrl_z_undoes_a_history_step() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "SELECT 1 AS one")
        await run_sql(pilot, app, "SELECT 2 AS two")
        editor = put(app, "SELECT 'half typed")
        await pilot.press("ctrl+up")
        assert editor.text == "SELECT 2 AS two"
        await pilot.press("ctrl+up")
        assert editor.text == "SELECT 1 AS one"
        await pilot.press("ctrl+down", "ctrl+down")
        assert editor.text == "SELECT 'half typed"  # the draft, exactly
        await pilot.press("ctrl+up")
        await pilot.press("ctrl+z")
        assert editor.text == "SELECT 'half typed"  # the history step was an edit


async def test_ctrl_g_searches_the_history() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "SELECT 'apple' AS fruit")
        await run_sql(pilot, app, "SELECT 'pear' AS fruit")
        await run_sql(pilot, app, "SELECT 42 AS answer")
        editor = put(app, "draft")
        await pilot.press("ctrl+g")
        search = history_search(app)
        assert search is not None
        assert search.found[0] == "SELECT 42 AS answer"  # newest first
        await pilot.press(*"fruit")
        assert search.found == ["SELECT 'pear' AS fruit", "SELECT 'apple' AS fruit"]
        await pilot.press("down", "enter")
        assert history_search(app) is None
        assert editor.text == "SELECT 'apple' AS fruit" and app.focused is editor
        await pilot.press("ctrl+g", "escape")
        assert editor.text == "SELECT 'apple' AS fruit"


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
async def test_a_failed_statement_has_its_error_position_selected(
    engine: str, request: pytest.FixtureRequest
) -> None:
    if engine == "postgres":
        request.getfixturevalue("postgres_url")
    app = create_app(options_for(engine), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await with_orders(pilot, app)
        # The engine stops at the second FROM (SQLite only names it: the first is fine).
        editor = put(app, "SELECT 1;\n\nSELECT id,\n  total FROM| FROM orders;\n")
        await pilot.press("f5")
        await until(pilot, lambda: editor.selected_text == "FROM")
        assert editor.selection.start == (3, 13)
        await until(pilot, lambda: any("line 4, column 14" in m for m in said(app)))


async def test_open_and_save_sql_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / "fix.sql").write_text("SELECT 'from a file';\n", encoding="utf-8")
    (tmp_path / "latin1.sql").write_bytes(b"SELECT 'caf\xe9';\n")
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        editor = put(app, "my draft")
        await pilot.press("ctrl+o")
        assert isinstance(app.screen, PathPrompt)
        await pilot.press(*"latin1.sql", "enter")
        await until(pilot, lambda: any("not UTF-8" in m for m in said(app)))
        assert editor.text == "my draft"  # refused: nothing changed
        await pilot.press("ctrl+o", *"fix.sql", "enter")
        assert editor.text == "SELECT 'from a file';\n"
        editor.insert("SELECT 2;\n")
        await pilot.press("ctrl+s")  # back to where it came from, without asking
        assert (tmp_path / "fix.sql").read_text() == editor.text
        assert any("saved to fix.sql" in m for m in said(app))

        # A new session's editor has no file yet: ctrl+s asks for one, and never replaces an
        # existing file without a yes.
        app.action_new_session()
        await until(pilot, lambda: app.session == "B")
        editor = put(app, "SELECT 'session B';")
        await pilot.press("ctrl+s", *"fix.sql", "enter")
        assert isinstance(app.screen, ConfirmQuit)
        await pilot.press("n")
        assert "session B" not in (tmp_path / "fix.sql").read_text()
        await pilot.press("ctrl+s", *"fix.sql", "enter", "y")
        assert (tmp_path / "fix.sql").read_text() == "SELECT 'session B';"
        editor.insert("-- ", (0, 0))
        await pilot.press("ctrl+s")  # B's file now: saved there without asking again
        assert (tmp_path / "fix.sql").read_text() == "-- SELECT 'session B';"
        assert not isinstance(app.screen, ConfirmQuit)


async def test_find_selects_each_match_and_wraps() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        editor = put(app, "|SELECT total FROM orders;\nselect TOTAL from t;\n")
        await pilot.press("ctrl+f")
        assert isinstance(app.screen, FindDialog)
        await pilot.press(*"total", "enter")
        assert editor.selection.start == (0, 7) and editor.selected_text == "total"
        await pilot.press("enter")
        assert editor.selection.start == (1, 7)  # any case
        await pilot.press("enter")
        assert editor.selection.start == (0, 7)  # from the top again
        await pilot.press("escape")
        assert app.focused is editor and editor.selected_text == "total"
        await pilot.press("ctrl+f")
        assert app.screen.query_one("#find-input", Input).value == "total"


async def test_format_is_undoable_and_refuses_what_it_cannot_parse() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        original = "-- keep me\nselect a, b from t where a = 1;\n\\snapshot s\n"
        editor = put(app, original)
        await pilot.press("ctrl+l")
        assert editor.text == (
            "-- keep me\nSELECT\n  a,\n  b\nFROM t\nWHERE\n  a = 1;\n\\snapshot s\n"
        )
        await pilot.press("ctrl+z")
        assert editor.text == original
        editor = put(app, "select 1;\nselect a from t;\n")
        editor.selection = Selection((1, 0), (1, 15))  # the second statement only
        await pilot.press("ctrl+l")
        assert editor.text == "select 1;\nSELECT\n  a\nFROM t;\n"
        broken = "select (1 from t"
        editor = put(app, broken)
        await pilot.press("ctrl+l")
        assert editor.text == broken
        assert any("not formatted" in m and "line 1" in m for m in said(app))


async def test_every_editor_action_has_a_key_in_help_and_a_palette_command() -> None:
    app = create_app(TargetOptions(), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        titles = {c.title for c in app.get_system_commands(app.screen)}
        for title in ("Complete", "Search history", "Find in editor", "Format SQL"):
            assert title in titles
        assert {"Open file", "Save file"} <= titles
        for key in ("ctrl+space", "ctrl+g", "ctrl+f", "ctrl+l", "ctrl+o", "ctrl+s"):
            assert f"**{key}**" in help_text()


async def test_postgres_completion_quotes_a_name_that_needs_it(postgres_url: str) -> None:
    app = create_app(options_for("postgres"), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, 'CREATE TABLE "Order Items" ("Qty" integer, note text)')
        await until(pilot, lambda: any(t.name == "Order Items" for t in app.tables))
        editor = put(app, "SELECT * FROM Ord")
        await pilot.press("tab")
        assert editor.text == 'SELECT * FROM "Order Items"'
        editor = put(app, 'SELECT i.q| FROM "Order Items" i')
        await pilot.press("tab")
        assert editor.text == 'SELECT i."Qty" FROM "Order Items" i'


async def test_the_palettes_complete_command_opens_the_popup_in_the_editor() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await with_orders(pilot, app)
        editor = put(app, "SELECT o.| FROM orders o")
        app.query_one("#results").focus()  # the palette can be opened from any pane
        command = next(c for c in app.get_system_commands(app.screen) if c.title == "Complete")
        command.callback()
        await pilot.pause()
        assert app.focused is editor and popup_open(app)


async def test_the_error_position_of_a_selection_run_is_found_in_the_editor() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        editor = put(app, "-- two statements, the second selected\nSELECT 1; SELECT nope FROM t;")
        editor.selection = Selection((1, 10), (1, 29))
        await pilot.press("f5")
        await until(pilot, lambda: editor.selected_text == "t")  # no such table: t
        assert editor.selection.start == (1, 27)
        assert any("line 2, column 28: no such table: t" in m for m in said(app))
        # The same statement fails again after the learner typed on: the offset it was run
        # from no longer holds, so nothing is selected and nothing more is said.
        editor.insert("SELECT 2; ", (1, 0))
        editor.move_cursor((0, 0))
        before = len(said(app))
        conductor = app.bridge.conductor
        assert conductor is not None
        ran = len(conductor.executions)
        app.run_sql("A", "SELECT nope FROM t;")
        await until(pilot, lambda: (e := app.latest.get("A")) is not None and e.index == ran)
        await until(pilot, lambda: (e := app.latest.get("A")) is not None and e.finished())
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert editor.selected_text == "" and len(said(app)) == before
