"""Layout and scenario flow (issue 12, items 4 and 5) through the real app on real SQLite sandboxes.

At 80x24 and 120x40: a new scenario opens on its briefing (story, task, what happened, at full
width), Hint/Check/Reset sit on the screen, session boxes never break a word, F10 zooms the pane
with the focus and F12 walks the panes, a long timeline event reads in full under the log, and
after a Check that says Recovered the next scenario is one Enter away.
"""

from __future__ import annotations

from dataclasses import replace

import pytest
from textual.geometry import Region
from textual.widget import Widget
from textual.widgets import Button, Static, TextArea
from textual.widgets._footer import FooterKey

from sandbox.conductor import Execution
from sandbox.scenario.catalog import Listing, find, listings, next_listing
from sandbox.scenario.recap import what_became
from sandbox.sqlkind import classify
from sandbox.statements import split_statements
from sandbox.targets import TargetOptions
from sandbox.ui.app import DbSandboxApp, create_app
from sandbox.ui.widgets.scenario_panel import ScenarioPanel
from sandbox.ui.widgets.timeline import SessionBox, TimelineView
from tests.conftest import options_for
from tests.test_ui_app import free_play, ready, run_sql, until

SIZES = [(80, 24), (120, 40)]
BORDERS = "│┃╭╮╰╯─━┏┓┗┛╸╺"


def playing(scenario_id: str) -> DbSandboxApp:
    return create_app(TargetOptions(), find(scenario_id), pick=False)


def rendered(widget: Widget) -> list[str]:
    """The widget's lines exactly as drawn on the screen (borders and padding included)."""
    return [widget.render_line(y).text for y in range(widget.size.height)]


def zoomed(app: DbSandboxApp) -> Widget | None:
    """The pane filling the screen (F10, or a scenario's briefing), if any."""
    return app.screen.maximized


def focus(app: DbSandboxApp) -> Widget | None:
    return app.focused


def panel_of(app: DbSandboxApp) -> ScenarioPanel:
    return app.query_one("#scenario", ScenarioPanel)


def static_text(app: DbSandboxApp, selector: str) -> str:
    return str(app.query_one(selector, Static).render())


async def briefed(pilot: object, app: DbSandboxApp) -> None:
    """Wait for the sandbox, then leave the briefing for the editor as a learner does (Esc)."""
    await ready(pilot, app)  # type: ignore[arg-type]
    await pilot.press("escape")  # type: ignore[attr-defined]
    assert zoomed(app) is None


@pytest.mark.parametrize("size", SIZES)
async def test_a_new_scenario_opens_on_its_briefing_and_esc_goes_to_the_editor(
    size: tuple[int, int],
) -> None:
    app = playing("failed-transfer")
    async with app.run_test(size=size) as pilot:
        await ready(pilot, app)
        await pilot.pause()
        panel = panel_of(app)
        scenario = find("failed-transfer")
        # The story, the task and the breakage fill the screen: the panel is as wide as it.
        assert zoomed(app) is panel
        assert panel.outer_size.width == size[0]
        assert focus(app) is panel
        title, keys = app.query_one("#title", Static), app.query_one("#keys", Static)
        assert scenario.title in " ".join(" ".join(rendered(title)).split())
        assert "Esc: to the editor" in " ".join(rendered(keys))
        assert Region(0, 0, *size).contains_region(keys.region)
        await pilot.press("escape")
        assert zoomed(app) is None
        assert focus(app) is app.query_one("#editor", TextArea)
        # F10 from the scenario pane brings the briefing back.
        panel.focus()
        await pilot.press("f10")
        assert zoomed(app) is panel


async def test_what_happened_lists_every_breakage_step_in_full() -> None:
    app = playing("lost-update")
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot, app)
        happened = static_text(app, "#happened")
        assert happened.startswith("What happened before you arrived")
        steps = [row for row in happened.splitlines() if row[:1].isdigit()]
        assert steps[0] == "1. session A: BEGIN"
        assert len(steps) == len(app.bridge.conductor.executions[: app.bridge.breakage_end])  # type: ignore[union-attr]
        # Who ran what, the whole statement, what the engine said and what became of it.
        assert "session B: UPDATE cards SET balance = 120 WHERE id = 1\n" in happened
        assert "→ ok · a transaction began: nothing it does is saved until COMMIT" in happened
        assert "→ ok: 1 row (balance = 100) · read only: nothing changed" in happened
        assert "not saved yet: its transaction is still open" in happened
        assert "→ error SQLITE_BUSY: database is locked · its transaction stays open" in happened
        assert "→ ok · committed: saved for every session" in happened
        assert "→ ok: 1 row affected · saved at once (autocommit)" in happened


async def test_free_play_has_no_briefing_and_no_breakage() -> None:
    app = free_play()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        assert zoomed(app) is None
        assert focus(app) is app.query_one("#editor", TextArea)
        assert not app.query_one("#happened", Static).display


@pytest.mark.parametrize("size", SIZES)
async def test_hint_check_and_reset_are_on_the_screen_whole(size: tuple[int, int]) -> None:
    app = playing("lost-update")
    async with app.run_test(size=size) as pilot:
        await briefed(pilot, app)
        await pilot.pause()
        panel = panel_of(app)
        screen = Region(0, 0, *size)
        for name in ("hint", "check", "reset"):
            button = app.query_one(f"#{name}", Button)
            assert screen.contains_region(button.region), name
            assert panel.region.contains_region(button.region), name
            assert str(button.label) in " ".join(rendered(button)), name


@pytest.mark.parametrize("size", SIZES)
async def test_session_boxes_never_break_a_word(size: tuple[int, int]) -> None:
    app = playing("lost-update")  # two sessions: side by side they used to split words
    async with app.run_test(size=size) as pilot:
        await briefed(pilot, app)
        boxes = list(app.query(SessionBox))
        assert len(boxes) == 2
        await until(pilot, lambda: all(box.summary is not None for box in boxes))
        await pilot.pause()
        for box in boxes:
            assert box.summary is not None
            words = box.summary.text.split()
            drawn = [
                token
                for line in rendered(box)
                for token in line.strip(BORDERS + " ").split()
                if token.strip(BORDERS)
            ]
            assert drawn, "the box shows nothing"
            for token in drawn:
                # Whole, or cut with an ellipsis at the box's edge: never split across lines.
                whole = token in words
                cut = token.endswith("…") and any(w.startswith(token[:-1]) for w in words)
                assert whole or cut, f"{token!r} is a broken word in {rendered(box)}"
            assert "last transaction: committed" in " ".join(" ".join(rendered(box)).split())


async def test_f10_zooms_the_focused_pane_and_f12_walks_the_panes() -> None:
    app = free_play()
    async with app.run_test(size=(80, 24)) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, "SELECT 1 AS one;")
        editor = app.query_one("#editor", TextArea)
        center = app.query_one("#center", Widget)
        timeline = app.query_one("#timeline", TimelineView)
        narrow = editor.size.width
        await pilot.press("f10")
        assert zoomed(app) is center
        await pilot.pause()
        assert editor.size.width > narrow and editor.size.width >= 70
        await pilot.press("f10")
        assert zoomed(app) is None
        # F12: the results, then the timeline; a zoom follows the focus.
        await pilot.press("f12")
        assert focus(app) is not editor and center in getattr(focus(app), "ancestors", [])
        await pilot.press("f12")
        assert focus(app) is timeline.event_log
        await pilot.press("f10")
        assert zoomed(app) is timeline
        await pilot.press("f12")
        assert focus(app) is panel_of(app)
        assert zoomed(app) is panel_of(app)
        await pilot.press("f12", "f12")
        assert focus(app) is editor and zoomed(app) is center
        # Esc puts the layout back and lands in the editor.
        await pilot.press("escape")
        assert zoomed(app) is None and focus(app) is editor


async def test_focus_leaving_a_zoomed_pane_puts_the_layout_back() -> None:
    app = free_play()
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot, app)
        timeline = app.query_one("#timeline", TimelineView)
        app.action_focus_pane("timeline")
        await pilot.press("f10")
        assert zoomed(app) is timeline
        app.query_one("#schema").focus()  # a click, or a dialog handing focus back
        await pilot.pause()
        assert zoomed(app) is None


@pytest.mark.parametrize("size", SIZES)
async def test_a_long_timeline_event_reads_in_full(size: tuple[int, int]) -> None:
    app = free_play()
    long_sql = (
        "SELECT 'the first value' AS first_column, 'a second, longer value' AS second_column, "
        "'and a third one that no pane is wide enough for' AS third_column"
    )
    async with app.run_test(size=size) as pilot:
        await ready(pilot, app)
        await run_sql(pilot, app, long_sql + ";")
        timeline = app.query_one("#timeline", TimelineView)
        log = timeline.event_log
        detail = app.query_one("#timeline-detail", Static)
        assert not detail.display or not timeline.has_class("-detail")
        # The log line is cut (the pane is narrow); the learner goes there and up to it.
        assert not any(long_sql in line.text for line in log.lines)
        app.action_focus_pane("timeline")
        await pilot.pause()
        assert log.cursor == len(log.lines) - 1
        rows = [line.text for line in log.lines]
        sent = next(i for i, row in enumerate(rows) if "sent: SELECT 'the first" in row)
        await pilot.press(*["up"] * (log.cursor - sent))
        assert log.cursor == sent
        assert timeline.has_class("-detail")
        # The cursor row is drawn in the cursor's colour, over the line's own background.
        cursor_bg = log.get_component_rich_style("event-log--cursor").bgcolor
        row_y = sent - log.scroll_offset.y

        def backgrounds(y: int) -> set[object]:
            return {seg.style.bgcolor for seg in log.render_line(y) if seg.style is not None}

        assert cursor_bg in backgrounds(row_y)
        other = row_y - 1 if row_y > 0 else row_y + 1
        assert cursor_bg not in backgrounds(other)
        assert long_sql in " ".join(static_text(app, "#timeline-detail").split())
        # Enter zooms the timeline: every word of the statement is on the screen.
        await pilot.press("enter")
        assert zoomed(app) is timeline
        await pilot.pause()
        drawn = " ".join(" ".join(rendered(detail)).split())
        assert long_sql in drawn
        assert detail.region.bottom <= size[1]
        # Leaving the log hides the detail again.
        await pilot.press("escape")
        await pilot.pause()
        assert not timeline.has_class("-detail")


def test_the_next_scenario_is_the_next_playable_one_in_catalog_order() -> None:
    def listing(scenario_id: str, engines: tuple[str, ...] = ("sqlite", "postgres")) -> Listing:
        return Listing(scenario_id, scenario_id.title(), "beginner", engines)

    found = [listing("a"), listing("b", ("postgres",)), listing("c"), listing("d")]
    assert next_listing(found, "a", "sqlite") == found[2]  # b is PostgreSQL only
    assert next_listing(found, "a", "postgres") == found[1]
    assert next_listing(found, "d", "sqlite") == found[0]  # the last one wraps round
    assert next_listing(found, "gone", "sqlite") == found[0]  # not in the catalog: the first
    assert next_listing([listing("a")], "a", "sqlite") is None  # nothing else to suggest


async def test_recovered_suggests_the_next_scenario_and_enter_loads_it() -> None:
    app = playing("failed-transfer")
    upcoming = next_listing(listings(), "failed-transfer", "sqlite")
    assert upcoming is not None
    async with app.run_test(size=(80, 24)) as pilot:
        await briefed(pilot, app)
        panel = panel_of(app)
        # Not recovered yet: Check says so and suggests nothing.
        await pilot.press("f3")
        await until(pilot, lambda: "How you recovered" in static_text(app, "#checks"))
        assert not panel.recovered and not panel.has_class("-next")
        # The scenario asks for the refund and the transfer in one transaction.
        await run_sql(pilot, app, "BEGIN;")
        await run_sql(pilot, app, "UPDATE accounts SET balance = balance + 150 WHERE id = 1;")
        await run_sql(pilot, app, "UPDATE accounts SET balance = balance + 150 WHERE id = 2;")
        await run_sql(pilot, app, "COMMIT;")
        await pilot.press("f3")
        await until(pilot, lambda: panel.recovered)
        await pilot.pause()
        button = app.query_one("#next", Button)
        assert focus(app) is button
        assert str(button.label) == f"Next: {upcoming.title} (Enter)"
        assert Region(0, 0, 80, 24).contains_region(button.region)
        before = app.bridge.timeline
        await pilot.press("enter")
        await until(
            pilot,
            lambda: (
                panel.scenario is not None
                and panel.scenario.id == upcoming.id
                and app.bridge.timeline is not before
            ),
        )
        await ready(pilot, app)
        # The next one opens on its own briefing, with nothing suggested yet.
        assert zoomed(app) is panel
        assert not panel.has_class("-next")
        assert app.query_one("#editor", TextArea).text.startswith(f"-- {upcoming.title}\n")


async def test_the_palette_offers_next_scenario_zoom_and_every_pane() -> None:
    app = playing("failed-transfer")
    async with app.run_test(size=(120, 40)) as pilot:
        await briefed(pilot, app)
        titles = {command.title for command in app.get_system_commands(app.screen)}
        wanted = {"Next scenario", "Zoom pane", "Next pane", "Focus the timeline"}
        assert wanted | {"Focus the scenario", "Focus the schema"} <= titles
        # The palette's Next scenario loads it like the button does.
        upcoming = next_listing(listings(), "failed-transfer", "sqlite")
        assert upcoming is not None
        app.action_next_scenario()
        panel = panel_of(app)
        await until(pilot, lambda: panel.scenario is not None and panel.scenario.id == upcoming.id)


@pytest.mark.parametrize("size", SIZES)
async def test_the_footer_lists_zoom_and_pane_only_where_they_fit(size: tuple[int, int]) -> None:
    app = free_play()
    async with app.run_test(size=size) as pilot:
        await ready(pilot, app)
        await pilot.pause()
        keys = {key.key: key for key in app.screen.query(FooterKey)}
        wide = size[0] >= app.WIDE
        assert ("f10" in keys and "f12" in keys) is wide
        for key in keys.values():
            assert key.region.right <= size[0], f"{key.key} ends at column {key.region.right}"
        # Listed or not, the keys work: zoom the editor, then walk past the results.
        await run_sql(pilot, app, "SELECT 1 AS one;")
        await pilot.press("f10")
        assert zoomed(app) is app.query_one("#center")
        await pilot.press("f12", "f12")
        assert zoomed(app) is app.query_one("#timeline")
        await pilot.press("escape")
        assert zoomed(app) is None


def test_a_step_still_waiting_at_hand_over_says_for_whom() -> None:
    statement = split_statements("UPDATE accounts SET balance = 1 WHERE id = 2", "postgres")[0]
    waiting = Execution(
        0,
        "A",
        statement,
        classify(statement.text, "postgres"),
        started=1.0,
        waiting=True,
        waiting_on=["B"],
    )
    assert what_became(waiting) == "still waiting for a lock held by B"
    assert what_became(replace(waiting, started=None, waiting=False)) == "queued"


async def test_what_happened_follows_a_step_that_was_still_waiting(postgres_url: str) -> None:
    """PostgreSQL's deadlock: A's last step waits for B until the detector kills B (40P01);
    the list ends with what the engine did, not with the wait it saw at hand-over."""
    app = create_app(options_for("postgres"), find("deadlock"), pick=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await ready(pilot, app)
        # The wait ends (B is killed) a moment before A's outcome arrives: "still running"
        # in between is true, and the list must move on from it too.
        await until(
            pilot,
            lambda: (
                "40P01" in static_text(app, "#happened")
                and "still waiting" not in static_text(app, "#happened")
                and "still running" not in static_text(app, "#happened")
            ),
        )
        happened = static_text(app, "#happened")
        assert "→ error 40P01: deadlock detected" in happened
        last = happened.split("\n")[-2:]
        a_credits_kofi = "session A: UPDATE accounts SET balance = balance + 120 WHERE id = 2"
        assert last[0].endswith(a_credits_kofi)
        assert "1 row affected · not saved yet: its transaction is still open" in last[1]
