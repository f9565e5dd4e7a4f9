"""The results pane (issue 12, item 1) through the real app on real sandboxes.

Values verbatim with NULL drawn apart from the text 'NULL'; multi-line and long values marked
and clipped, and whole in the cell viewer; copy, sort, CSV/JSON export; paging through a
million-row result by running the query again, holding nothing another session could feel;
each result labelled with its session, its editor line and its statement, and cleared by the
session's next outcome.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import pytest
from rich.text import Text
from textual.pilot import Pilot
from textual.widgets import DataTable, Input, Static, TextArea
from textual.widgets.text_area import Selection

from sandbox.conductor import Execution
from sandbox.export import SessionRecord, replay_script
from sandbox.outcome import Status
from sandbox.targets import TargetOptions
from sandbox.timeline import EventKind
from sandbox.ui.app import DbSandboxApp, create_app, help_text
from sandbox.ui.screens.cell_viewer import CellViewer
from sandbox.ui.screens.dialogs import ConfirmStatement
from sandbox.ui.screens.go_to_row import GoToRow
from sandbox.ui.text import CELL_WIDTH, NEWLINE, NULL
from sandbox.ui.widgets.results import ResultsView
from tests.conftest import options_for
from tests.test_ui_app import SIZE, caption, free_play, ready, run_sql, until

SIZES = [(80, 24), SIZE]
MILLION = (
    "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000) "
    "SELECT i FROM n;"
)


def grid(app: DbSandboxApp) -> DataTable[Text]:
    return app.query_one("#results #rows", DataTable)


def view(app: DbSandboxApp) -> ResultsView:
    return app.query_one("#results", ResultsView)


def column(app: DbSandboxApp, index: int) -> list[str]:
    table = grid(app)
    return [table.get_row_at(row)[index].plain for row in range(table.row_count)]


def notified(app: DbSandboxApp) -> str:
    return "\n".join(str(n.message) for n in app._notifications)


def latest(app: DbSandboxApp, session: str = "A") -> Execution:
    conductor = app.bridge.conductor
    assert conductor is not None
    return [e for e in conductor.executions if e.session == session][-1]


def has_sent(app: DbSandboxApp, session: str, text: str) -> bool:
    conductor = app.bridge.conductor
    assert conductor is not None
    return any(e.session == session and e.statement.text == text for e in conductor.executions)


async def page(pilot: Pilot[None], app: DbSandboxApp, step: int) -> Execution:
    """Ask for the next (1) or previous (-1) page and wait until it is on screen.

    The action is called directly: pressing n starts a statement, and Pilot's press waits for
    a quiet app, which a ticking statement is not.
    """
    conductor = app.bridge.conductor
    assert conductor is not None
    before = len(conductor.executions)
    app.action_page_results(step)
    await until(pilot, lambda: len(conductor.executions) > before)
    fetched = conductor.executions[-1]
    await until(pilot, lambda: fetched.finished() and app.latest.get(fetched.session) is fetched)
    await pilot.pause()
    return fetched


async def focus_grid(pilot: Pilot[None], app: DbSandboxApp) -> None:
    app.action_focus_results()
    await pilot.pause()
    assert app.focused is grid(app)


@pytest.mark.parametrize("size", SIZES)
async def test_null_text_null_lines_and_long_values_are_told_apart(size: tuple[int, int]) -> None:
    app = free_play()
    async with app.run_test(size=size) as pilot:
        await ready(pilot, app)
        await run_sql(
            pilot,
            app,
            "SELECT NULL AS v UNION ALL SELECT 'NULL' UNION ALL SELECT 'two' || char(10) || "
            "'lines' UNION ALL SELECT printf('%.500c', 'x') UNION ALL SELECT ''",
        )
        table = grid(app)
        assert table.row_count == 5
        null, text_null, lines, long, empty = (table.get_row_at(r)[0] for r in range(5))
        assert null.plain == NULL and text_null.plain == "NULL"
        assert null.style != text_null.style
        assert lines.plain == f"two{NEWLINE}lines"
        assert long.plain == "x" * (CELL_WIDTH - 1) + "…"
        assert empty.plain == ""
        # The 500-character value does not make its column 500 cells wide.
        [width] = [c.get_render_width(table) for c in table.columns.values()]
        assert width <= CELL_WIDTH + 2
        assert "5 rows shown" in caption(app)
        # As drawn on screen: NULL's glyph and the word, then the text 'NULL' on its own.
        drawn = [table.render_line(y).text for y in range(1, 3)]
        assert drawn[0].strip() == NULL and drawn[1].strip() == "NULL"


@pytest.mark.usefixtures("postgres_url")
async def test_postgres_values_are_shown_as_the_driver_gave_them() -> None:
    app = create_app(options_for("postgres"), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(
            pilot,
            app,
            "SELECT '\\x00ff'::bytea AS b, ARRAY[1, NULL] AS a, '{\"k\": [1, null]}'::jsonb AS j, "
            "NULL::text AS n, 'NULL' AS t, 12345678901234567890.5::numeric AS d, true AS yes",
        )
        assert [c.plain for c in grid(app).get_row_at(0)] == [
            "\\x00ff",  # PostgreSQL's own bytea text
            "[1, null]",
            '{"k": [1, null]}',
            NULL,
            "NULL",
            "12345678901234567890.5",  # exact digits, never a float
            "true",
        ]


async def test_enter_shows_a_cell_whole_and_esc_goes_back_to_the_grid() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(
            pilot,
            app,
            "SELECT printf('%.300c', 'x') || char(10) || 'end' AS note, NULL AS gone",
        )
        await focus_grid(pilot, app)
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, CellViewer))
        screen = app.screen
        assert screen.query_one("#cell-value", TextArea).text == "x" * 300 + "\nend"
        facts = str(screen.query_one("#cell-facts", Static).render())
        assert facts == "text, 304 characters, 2 lines"
        keys = " ".join(str(s.render()) for s in screen.query(".dialog-keys"))
        assert "Esc" in keys and "c: copy" in keys
        await pilot.press("c")
        assert app.clipboard == "x" * 300 + "\nend"
        assert "sent to the terminal's clipboard" in notified(app)
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, CellViewer))
        assert app.focused is grid(app)
        await pilot.press("right", "enter")
        await until(pilot, lambda: isinstance(app.screen, CellViewer))
        facts = str(app.screen.query_one("#cell-facts", Static).render())
        assert facts.startswith("SQL NULL: no value at all (not the text 'NULL'")
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, CellViewer))


async def test_c_copies_a_cell_and_shift_c_the_row() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "SELECT 1 AS id, NULL AS a, 'say \"hi\", ok' AS b, '' AS c")
        await focus_grid(pilot, app)
        await pilot.press("right", "right", "c")
        assert app.clipboard == 'say "hi", ok'
        await pilot.press("C")
        assert app.clipboard == '1,,"say ""hi"", ok",""'
        assert "row 1 as a CSV line (NULL as an empty field)" in notified(app)
        await pilot.press("left", "c")
        assert app.clipboard == "NULL"
        assert "(SQL NULL, sent as the word NULL)" in notified(app)


async def test_s_sorts_the_loaded_rows_and_says_so() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "VALUES (2, 'b'), (NULL, 'n'), (10, 'a'), (1, NULL)")
        await focus_grid(pilot, app)
        assert column(app, 0) == ["2", NULL, "10", "1"]
        await pilot.press("s")
        assert column(app, 0) == [NULL, "1", "2", "10"]  # numbers as numbers, NULL first
        assert "sorted by column1 ascending, NULLs first" in caption(app)
        assert "loaded rows only, not ORDER BY" in caption(app)
        await pilot.press("s")
        assert column(app, 0) == ["10", "2", "1", NULL]
        assert "descending, NULLs last" in caption(app)
        await pilot.press("s")
        assert column(app, 0) == ["2", NULL, "10", "1"]  # as the database returned them
        assert "sorted" not in caption(app)
        # The viewer and copy follow the sorted grid, and know each row's place in the result.
        await pilot.press("s", "right", "enter")
        await until(pilot, lambda: isinstance(app.screen, CellViewer))
        assert str(app.screen.query_one(".dialog-title", Static).render()) == "column2 · row 2"
        await pilot.press("escape")


async def test_e_and_j_export_the_shown_rows_without_overwriting(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "VALUES (2, NULL), (1, 'NULL'), (3, '')")
        await focus_grid(pilot, app)
        await pilot.press("s")
        await pilot.press("e")
        await until(pilot, lambda: len(list(tmp_path.glob("*.csv"))) == 1)
        await pilot.press("e")  # the same second, often: a new name, never the first file
        await until(pilot, lambda: len(list(tmp_path.glob("*.csv"))) == 2)
        first, second = sorted(tmp_path.glob("*.csv"), key=lambda p: (len(p.name), p.name))
        assert first.read_bytes() == second.read_bytes()
        assert first.read_bytes().decode() == (
            '"column1","column2"\r\n1,"NULL"\r\n2,\r\n3,""\r\n'
        )  # sorted as shown: NULL an empty bare field, every text quoted
        await pilot.press("j")
        await until(pilot, lambda: len(list(tmp_path.glob("*.json"))) == 1)
        [exported] = tmp_path.glob("*.json")
        document = json.loads(exported.read_text())
        assert document["rows"] == [[1, "NULL"], [2, None], [3, ""]]
        assert document["order"].startswith("sorted by column1 ascending")
        await until(pilot, lambda: str(exported) in notified(app))
        titles = [c.title for c in app.get_system_commands(app.screen)]
        assert {"Export result as CSV", "Export result as JSON"} <= set(titles)


async def test_export_without_rows_says_so() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        app.action_export_result("csv")
        await until(pilot, lambda: "no rows to export: run a query first (F5)" in notified(app))


async def test_the_caption_names_the_editor_line_session_and_statement() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        editor = app.query_one("#editor", TextArea)
        editor.text = "-- first a comment\n\n  SELECT 1 AS one;\nSELECT 2 AS two;"
        editor.move_cursor((2, 4))
        editor.focus()
        await pilot.press("f5")
        await until(pilot, lambda: "1 row shown" in caption(app))
        assert caption(app).startswith("[A] line 3 · SELECT 1 AS one: 1 row shown")
        sent = [e for e in app.bridge.timeline.events if e.kind is EventKind.STATEMENT]
        assert sent[-1].data["line"] == 3  # the timeline names the editor's line too
        # A selection that starts on line 4 is line 4, and each statement in it its own line.
        editor.selection = Selection((3, 0), (3, len("SELECT 2 AS two;")))
        await pilot.press("f5")
        await until(pilot, lambda: "SELECT 2 AS two" in caption(app))
        assert caption(app).startswith("[A] line 4 · SELECT 2 AS two: 1 row shown")


async def test_a_sessions_next_outcome_clears_its_grid() -> None:
    app = create_app(TargetOptions(busy_timeout_ms=10_000), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "CREATE TABLE t (id INTEGER PRIMARY KEY);")
        await run_sql(pilot, app, "INSERT INTO t VALUES (1), (2);")

        async def rows_then(sql: str) -> None:
            await run_sql(pilot, app, "SELECT * FROM t;")
            assert grid(app).row_count == 2
            await run_sql(pilot, app, sql)

        await rows_then("SELECT * FROM missing;")  # an error
        assert "error" in caption(app) and grid(app).row_count == 0
        assert view(app).execution is None
        await rows_then("DELETE FROM t;")  # blocked by the guard: say no
        await until(pilot, lambda: isinstance(app.screen, ConfirmStatement))
        await pilot.press("n")
        await until(pilot, lambda: "not run" in caption(app))
        assert grid(app).row_count == 0
        # A wait: B's own grid goes while B waits for A's write lock.
        await run_sql(pilot, app, "BEGIN IMMEDIATE;")
        app.run_sql("B", "SELECT * FROM t;")
        await until(pilot, lambda: "B" in app.sessions)
        app.action_switch_session("B")
        await until(pilot, lambda: app.session == "B" and grid(app).row_count == 2)
        app.run_sql("B", "UPDATE t SET id = id + 10 WHERE id = 1;")
        await until(pilot, lambda: "waiting for a lock held by A" in caption(app))
        assert grid(app).row_count == 0
        app.cancel_in("B")  # and a cancel says so with no grid under it
        await until(pilot, lambda: "SQLITE_INTERRUPT" in caption(app) or "cancel" in caption(app))
        assert grid(app).row_count == 0 and caption(app).startswith("[B] line 1 · UPDATE t")


async def test_a_million_rows_page_by_page_on_sqlite() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, MILLION)
        first = latest(app)
        assert "500 rows shown, more rows exist: n fetches the next page" in caption(app)
        await focus_grid(pilot, app)
        await pilot.press("p")  # the binding, where it runs nothing: already the first page
        assert "this is the first page" in notified(app)
        second = await page(pilot, app, 1)
        assert second.page_of == first.index and second.statement is first.statement
        assert column(app, 0)[:2] == ["501", "502"] and grid(app).row_count == 500
        said = caption(app)
        assert said.startswith("[A] line 1 · WITH RECURSIVE")
        assert "rows 501–1,000, more exist — the query run again in A at " in said
        assert "at " in said and ", 500 rows skipped; nothing is held between pages" in said
        assert "no ORDER BY: the order may vary · n/p: pages" in said
        events = [e for e in app.bridge.timeline.events if e.statement == second.index]
        assert events[0].message.startswith("sent again for rows 501–1,000: WITH RECURSIVE")
        assert events[-1].message == "ok: rows 501–1,000, more exist"
        third = await page(pilot, app, 1)
        assert column(app, 0)[0] == "1001"
        await page(pilot, app, -1)
        assert column(app, 0)[0] == "501"
        # The viewer numbers rows within the whole result.
        await pilot.press("enter")
        await until(pilot, lambda: isinstance(app.screen, CellViewer))
        assert str(app.screen.query_one(".dialog-title", Static).render()) == "i · row 501"
        await pilot.press("escape")
        assert third.outcome is not None and third.outcome.skipped == 1000
        # The session's replay script keeps each page as the query, saying what it was.
        conductor = app.bridge.conductor
        assert conductor is not None
        script = replay_script(SessionRecord.from_conductor(conductor))
        assert "-- run again in the app for the rows after row 500 (paging)" in script


async def go_to_row(pilot: Pilot[None], app: DbSandboxApp, row: int) -> Execution:
    """g, the row number typed, then Enter (called, not pressed: it starts a statement)."""
    conductor = app.bridge.conductor
    assert conductor is not None
    before = len(conductor.executions)
    await pilot.press("g")
    await until(pilot, lambda: isinstance(app.screen, GoToRow))
    await pilot.press(*str(row))
    await app.screen.query_one(Input).action_submit()
    await until(pilot, lambda: len(conductor.executions) > before)
    fetched = conductor.executions[-1]
    await until(pilot, lambda: fetched.finished() and app.latest.get("A") is fetched)
    await pilot.pause()
    return fetched


async def test_g_goes_to_a_row_and_past_the_end_says_how_many_rows_there_are() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, MILLION)
        await focus_grid(pilot, app)
        assert "g row" in str(view(app).border_title)  # the grid's keys, in its border
        await go_to_row(pilot, app, 2_000_000)
        assert grid(app).row_count == 0
        assert "no rows after row 1,000,000" in caption(app)  # the result's size, counted
        last = await page(pilot, app, -1)  # back from past the end: the last page
        assert last.skip == 999_500 and grid(app).row_count == 500
        assert column(app, 0)[-1] == "1000000"
        assert "rows 999,501–1,000,000 (the last)" in caption(app)
        assert app.focused is grid(app)
        await go_to_row(pilot, app, 7)
        assert column(app, 0)[0] == "7" and "rows 7–506, more exist" in caption(app)
        # Esc leaves the dialog and runs nothing.
        conductor = app.bridge.conductor
        assert conductor is not None
        before = len(conductor.executions)
        await pilot.press("g")
        await until(pilot, lambda: isinstance(app.screen, GoToRow))
        await pilot.press("escape")
        await until(pilot, lambda: not isinstance(app.screen, GoToRow))
        assert len(conductor.executions) == before


async def test_the_last_page_says_so() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(
            pilot,
            app,
            "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 700) "
            "SELECT i FROM n ORDER BY i;",
        )
        await page(pilot, app, 1)
        assert column(app, 0)[-1] == "700" and grid(app).row_count == 200
        said = caption(app)
        assert "rows 501–700 (the last)" in said and "ORDER BY" not in said
        app.action_page_results(1)
        await until(pilot, lambda: "the query had no rows after row 700" in notified(app))


async def test_a_statement_that_writes_is_never_run_again() -> None:
    app = free_play()
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "CREATE TABLE w (id INTEGER PRIMARY KEY);")
        await run_sql(
            pilot,
            app,
            "INSERT INTO w WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
            "WHERE i < 600) SELECT i FROM n RETURNING id;",
        )
        assert "more rows exist" in caption(app)
        conductor = app.bridge.conductor
        assert conductor is not None
        before = len(conductor.executions)
        app.action_page_results(1)
        await until(pilot, lambda: "only a query that writes nothing" in notified(app))
        assert len(conductor.executions) == before


async def test_paging_holds_nothing_another_session_could_feel(engine: str) -> None:
    app = create_app(options_for(engine, busy_timeout_ms=200), pick=False)
    fill = (
        "INSERT INTO big (id, v) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n "
        "WHERE i < 1200) SELECT i, 0 FROM n;"
        if engine == "sqlite"
        else "INSERT INTO big (id, v) SELECT g, 0 FROM generate_series(1, 1200) AS g;"
    )
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "CREATE TABLE big (id INTEGER PRIMARY KEY, v INTEGER);")
        await run_sql(pilot, app, fill)
        assert "1,200 rows affected" in caption(app)
        await run_sql(pilot, app, "SELECT id, v FROM big ORDER BY id;")
        paged = await page(pilot, app, 1)
        assert column(app, 0)[0] == "501"
        assert paged.outcome is not None and paged.outcome.tx_after.value == "idle"
        # B writes to the table and then drops it: neither waits on anything A's paging holds.
        for sql in ("UPDATE big SET v = v + 1 WHERE id > 0;", "DROP TABLE big;"):
            app.run_sql("B", sql, confirmed=True)  # the guard's yes, as if typed
            await until(pilot, functools.partial(has_sent, app, "B", sql.rstrip(";")))
            done = latest(app, "B")
            await until(pilot, done.finished)
            assert done.outcome is not None and done.outcome.status is Status.OK, done.outcome
            assert not done.waited
        # A's next page runs the query again and now finds the table gone: said as it is.
        conductor = app.bridge.conductor
        assert conductor is not None
        before = len(conductor.executions)
        app.action_page_results(1)
        await until(
            pilot, lambda: "no such table" in caption(app) or "does not exist" in caption(app)
        )
        assert grid(app).row_count == 0 and len(conductor.executions) == before + 1


@pytest.mark.usefixtures("postgres_url")
async def test_a_million_rows_page_by_page_on_postgres_read_only() -> None:
    app = create_app(options_for("postgres"), pick=False)
    async with app.run_test(size=SIZE) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "SELECT g FROM generate_series(1, 1000000) AS g;")
        assert "500 rows shown, more rows exist" in caption(app)
        await page(pilot, app, 1)
        assert column(app, 0)[:2] == ["501", "502"]
        # Outside a transaction a page runs READ ONLY: the server refuses a re-run that writes.
        await run_sql(pilot, app, "CREATE SEQUENCE s;")
        await run_sql(pilot, app, "SELECT nextval('s') FROM generate_series(1, 600);")
        await page(pilot, app, 1)
        assert "25006" in caption(app) and "read-only transaction" in caption(app)
        # Inside the session's own transaction a page sees its uncommitted rows.
        await run_sql(pilot, app, "CREATE TABLE t (id integer);")
        await run_sql(pilot, app, "BEGIN;")
        await run_sql(pilot, app, "INSERT INTO t SELECT generate_series(1, 600);")
        await run_sql(pilot, app, "SELECT id FROM t ORDER BY id;")
        await page(pilot, app, 1)
        assert column(app, 0)[0] == "501" and grid(app).row_count == 100
        assert "inside the open transaction" in caption(app)


def test_help_lists_the_keys_of_the_results() -> None:
    text = help_text()
    for key in (
        "**Enter**",
        "**c**",
        "**C**",
        "**s**",
        "**e**",
        "**j**",
        "**n**",
        "**p**",
        "**g**",
    ):
        assert key in text
