"""TimelineView driven by Pilot with events from real runs: header boxes, lanes, badges, 10k.

The assertions read the widget's own state (box contents and classes, the RichLog's lines,
the plain text of each log row), never screenshots.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import pytest
from textual.app import App, ComposeResult

from sandbox.timeline import Event, EventKind
from sandbox.ui.widgets.timeline import TICK_S, SessionBox, TimelineView
from tests.conftest import run_script

SETUP = """\
CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
INSERT INTO acct VALUES (1, 100), (2, 100);
"""

# A holds a row lock inside a transaction with a savepoint, B waits for it, A commits, B's
# transaction is left open and rolled back when the run closes it.
LOCK_SCRIPT = (
    SETUP
    + """\
\\session A
BEGIN;
UPDATE acct SET balance = 0 WHERE id = 1;
SAVEPOINT sp1;
\\session B
BEGIN;
UPDATE acct SET balance = 1 WHERE id = 1;
\\session A
COMMIT;
\\session B
SELECT balance FROM acct WHERE id = 1;
"""
)


class Clock:
    """A timeline clock the test moves by hand, so durations are exact."""

    def __init__(self) -> None:
        self.ms = 0.0

    def __call__(self) -> float:
        return self.ms


class TimelineApp(App[None]):
    def __init__(self, clock: Callable[[], float] | None = None) -> None:
        super().__init__()
        self.clock = clock

    def compose(self) -> ComposeResult:
        yield TimelineView(clock=self.clock)


@pytest.fixture(scope="module")
def lock_events() -> list[Event]:
    return run_script("sqlite", LOCK_SCRIPT, busy_timeout_ms=5000).timeline


def until(events: list[Event], stop: Callable[[Event], bool]) -> list[Event]:
    """Events up to and including the first one for which `stop` is true."""
    for position, event in enumerate(events):
        if stop(event):
            return events[: position + 1]
    raise AssertionError("no such event")


def box_text(view: TimelineView, session: str) -> str:
    box = next(b for b in view.query(SessionBox) if b.session == session)
    return str(box.content)


def box_state(view: TimelineView, session: str) -> str:
    box = next(b for b in view.query(SessionBox) if b.session == session)
    (state,) = [c for c in box.classes if c.startswith("-")]
    return state


async def test_header_shows_open_and_waiting_then_idle(lock_events: list[Event]) -> None:
    clock = Clock()
    app = TimelineApp(clock)
    async with app.run_test(size=(140, 40)) as pilot:
        view = app.query_one(TimelineView)
        waiting = until(lock_events, lambda e: e.kind is EventKind.LOCK_WAIT)
        for event in waiting:
            view.add_event(event)
        began = next(e for e in waiting if e.kind is EventKind.BEGIN and e.session == "A")
        clock.ms = began.elapsed_ms + 12_300
        await pilot.pause()

        a_text = box_text(view, "A")
        assert a_text.startswith("A ● IN TRANSACTION 12.3 s · 3 statements · savepoints: sp1")
        assert box_state(view, "A") == "-open"
        b_text = box_text(view, "B")
        assert b_text.startswith("B ⏳ waiting for A")
        assert "UPDATE acct SET balance = 1 WHERE id = 1" in b_text
        assert box_state(view, "B") == "-waiting"

        # The open duration ticks on its own, from the UI thread's interval.
        clock.ms += 5_000
        await pilot.pause(TICK_S * 2)
        assert box_text(view, "A").startswith("A ● IN TRANSACTION 17.3 s")

        for event in lock_events[len(waiting) :]:
            view.add_event(event)
        await pilot.pause()
        assert box_text(view, "A").startswith("A closed · last transaction: committed")
        assert box_text(view, "B") == (
            "B closed · last transaction: rolled back when the session closed"
        )
        assert box_state(view, "A") == box_state(view, "B") == "-closed"


async def test_idle_session_before_any_transaction(lock_events: list[Event]) -> None:
    app = TimelineApp()
    async with app.run_test() as pilot:
        view = app.query_one(TimelineView)
        created = until(lock_events, lambda e: e.kind is EventKind.OUTCOME)  # the CREATE TABLE
        for event in created:
            view.add_event(event)
        await pilot.pause()
        assert box_text(view, "A") == "A idle\nautocommit: each statement is saved at once"
        assert box_state(view, "A") == "-idle"


async def test_log_lines_sit_in_their_session_lanes(lock_events: list[Event]) -> None:
    app = TimelineApp()
    async with app.run_test(size=(140, 40)) as pilot:
        view = app.query_one(TimelineView)
        for event in lock_events:
            view.add_event(event)
        await pilot.pause()
        assert view.rows == len(lock_events)
        assert len(view.event_log.lines) == len(lock_events)

        lines = view.lines()
        by_kind = {
            (event.session, event.kind, event.message): line
            for event, line in zip(lock_events, lines, strict=True)
        }
        commit = next(v for k, v in by_kind.items() if k[:2] == ("A", EventKind.COMMIT))
        assert " COMMITTED " in commit and "committed: the changes are saved" in commit
        closed_b = next(v for k, v in by_kind.items() if k[:2] == ("B", EventKind.SESSION_CLOSED))
        assert " ROLLED BACK " in closed_b
        wait = next(v for k, v in by_kind.items() if k[1] is EventKind.LOCK_WAIT)
        assert "WAIT waiting for a lock held by A" in wait

        # Lane columns: B's marker sits one gutter column right of A's, B's text further in.
        a_sent = next(v for k, v in by_kind.items() if k[:2] == ("A", EventKind.STATEMENT))
        b_sent = next(v for k, v in by_kind.items() if k[:2] == ("B", EventKind.STATEMENT))
        assert a_sent.index("▶") + 2 == b_sent.index("▶")
        assert b_sent.index(" B  ") > a_sent.index(" A  ")
        # While A's transaction is open, B's lines draw it as a bar in A's column.
        assert wait[a_sent.index("▶")] == "┃"

        # What the RichLog shows is the same text, time column first.
        shown = view.event_log.lines[len(lines) - 1].text.rstrip()
        assert shown == lines[-1].rstrip() and shown.lstrip()[0].isdigit()


async def test_failed_transaction_and_commit_answered_rollback(postgres_url: str) -> None:
    events = run_script(
        "postgres",
        SETUP
        + """\
BEGIN;
UPDATE acct SET balance = 50 WHERE id = 1;
SELECT nosuchcol FROM acct;
COMMIT;
""",
    ).timeline
    clock = Clock()
    app = TimelineApp(clock)
    async with app.run_test(size=(140, 40)) as pilot:
        view = app.query_one(TimelineView)
        failed = until(events, lambda e: e.message.startswith("transaction failed"))
        for event in failed:
            view.add_event(event)
        clock.ms = failed[-1].elapsed_ms
        await pilot.pause()
        text = box_text(view, "A")
        assert text.startswith("A ✖ FAILED transaction — every statement fails until ROLLBACK")
        assert "failed at: SELECT nosuchcol FROM acct" in text
        assert box_state(view, "A") == "-failed"
        assert " FAILED " in view.lines()[-1]

        for event in events[len(failed) :]:
            view.add_event(event)
        await pilot.pause()
        refused = next(
            line
            for event, line in zip(events, view.lines(), strict=True)
            if event.kind is EventKind.ROLLBACK
        )
        assert " ROLLED BACK " in refused and "COMMIT answered ROLLBACK" in refused
        assert "COMMIT answered ROLLBACK, nothing was saved" in box_text(view, "A")


def ten_thousand(events: list[Event]) -> list[Event]:
    """10,000 real events: the run's timeline repeated, later copies shifted in time."""
    period = events[-1].elapsed_ms + 1.0
    out: list[Event] = []
    round_ = 0
    while len(out) < 10_000:
        for event in events:
            shifted = event.elapsed_ms + round_ * period
            out.append(dataclasses.replace(event, seq=len(out) + 1, elapsed_ms=shifted))
        round_ += 1
    return out[:10_000]


async def test_ten_thousand_events_are_all_held(lock_events: list[Event]) -> None:
    many = ten_thousand(lock_events)
    app = TimelineApp()
    async with app.run_test(size=(120, 40)) as pilot:
        view = app.query_one(TimelineView)
        for event in many:
            view.add_event(event)
        await pilot.pause()
        assert view.rows == 10_000
        assert len(view.event_log.lines) == 10_000
        # The tracker saw every transaction: each copy of the run has one per session.
        rounds = -(-10_000 // len(lock_events))
        assert len(view.tracker.spans("A")) in (rounds - 1, rounds)

        # A third session widens the gutter: the lines are redrawn, none is lost.
        extra = dataclasses.replace(many[0], seq=10_001, session="C", message="session C opened")
        view.add_event(extra)
        await pilot.pause()
        assert len(view.event_log.lines) == view.rows == 10_001
        assert "C  session C opened" in view.event_log.lines[-1].text


async def test_clear_forgets_everything(lock_events: list[Event]) -> None:
    app = TimelineApp()
    async with app.run_test() as pilot:
        view = app.query_one(TimelineView)
        for event in lock_events:
            view.add_event(event)
        await pilot.pause()
        view.clear()
        await pilot.pause()
        assert view.rows == 0 and view.lines() == []
        assert len(view.event_log.lines) == 0
        assert list(view.query(SessionBox)) == [] and view.tracker.sessions == []
