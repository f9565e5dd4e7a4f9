"""The transaction timeline pane: one lane per session, open transactions impossible to miss.

Two parts. At the top, one box per session saying what it is doing right now: idle, IN
TRANSACTION (for how long, how many statements a rollback would discard, which savepoints are
alive), FAILED (PostgreSQL: every statement fails until ROLLBACK) or waiting for a lock held by
another session. Below, the event log: one line per event, with a gutter that has a column per
session, drawn as a thick bar while that session's transaction is open, so the length and overlap
of transactions can be read at a glance; every transaction end carries a COMMITTED or ROLLED BACK
badge (a COMMIT the server answered with ROLLBACK included).

The state comes from `sandbox.transactions.TransactionTracker`, fed with the same events. The log
is a RichLog (ListView does not survive 10,000 entries), written in batches: `add_event` only
records and schedules, and one callback per batch renders the new lines and the boxes.
`add_event` must run on the UI thread; the bridge hands events over as messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import ClassVar, Literal

from rich.cells import cell_len
from rich.segment import Segment, Segments
from rich.style import Style
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Horizontal
from textual.geometry import Region
from textual.message import Message
from textual.reactive import reactive
from textual.strip import Strip
from textual.widget import Widget
from textual.widgets import RichLog, Static

from sandbox.timeline import Event, EventKind
from sandbox.transactions import (
    COMMIT_REFUSED_PREFIX,
    TX_FAILED_PREFIX,
    TransactionSpan,
    TransactionTracker,
)
from sandbox.ui.text import one_line, plain, visible

LaneState = Literal["none", "idle", "running", "open", "failed", "waiting", "closed", "gone"]
Tone = Literal["muted", "warning", "error", "success", "info", "plain"]

TICK_S = 0.2  # how often open-transaction and wait durations are redrawn
MIN_LANES = 2  # gutter columns reserved up front, so a second session rarely forces a redraw
LANE_INDENT = 3  # the text of lane n starts n * LANE_INDENT cells further right
# Narrower than this, side-by-side session boxes would break their words: they stack instead.
BOX_MIN_WIDTH = 30

# One single-cell glyph per event kind: it sits in the session's gutter column.
_MARKERS: dict[EventKind, tuple[str, Tone]] = {
    EventKind.SESSION_OPENED: ("○", "muted"),
    EventKind.STATEMENT: ("▶", "plain"),
    EventKind.OUTCOME: ("✓", "muted"),
    EventKind.BEGIN: ("●", "warning"),
    EventKind.SAVEPOINT: ("◆", "info"),
    EventKind.ROLLBACK_TO: ("↶", "warning"),
    EventKind.RELEASE: ("◇", "info"),
    EventKind.COMMIT: ("✔", "success"),
    EventKind.ROLLBACK: ("✖", "error"),
    EventKind.ERROR: ("!", "error"),
    EventKind.NOTICE: ("ℹ", "info"),
    EventKind.GUARD: ("⚠", "warning"),
    EventKind.LOCK_WAIT: ("⧗", "warning"),
    EventKind.LOCK_RELEASED: ("⇣", "info"),
    EventKind.LOCKS: ("▣", "info"),
    EventKind.CANCELLED: ("⊘", "error"),
    EventKind.SESSION_CLOSED: ("■", "muted"),
    EventKind.QUEUED: ("…", "muted"),
    EventKind.CONNECTION_LOST: ("✖", "error"),
    EventKind.HINT: ("?", "info"),
    EventKind.CHECK: ("◎", "info"),
    EventKind.PROGRAM: ("»", "muted"),
    EventKind.POOL: ("⇄", "muted"),
    EventKind.FLUSH: ("↧", "info"),
}

# What a session's gutter column shows between its own events.
_GUTTER: dict[LaneState, tuple[str, Tone]] = {
    "none": (" ", "plain"),
    "closed": (" ", "plain"),
    "idle": ("│", "muted"),
    "running": ("│", "plain"),
    "gone": (" ", "plain"),
    "open": ("┃", "warning"),
    "failed": ("┃", "error"),
    "waiting": ("┇", "warning"),
}

# What each glyph means, for the help's legend; a test holds it to every glyph drawn above.
_MEANINGS: dict[EventKind, str] = {
    EventKind.SESSION_OPENED: "a session opened (its own connection)",
    EventKind.STATEMENT: "a statement was sent to the engine",
    EventKind.OUTCOME: "the statement finished",
    EventKind.BEGIN: "a transaction began",
    EventKind.SAVEPOINT: "a savepoint was set",
    EventKind.ROLLBACK_TO: "rolled back to a savepoint",
    EventKind.RELEASE: "a savepoint was released",
    EventKind.COMMIT: "committed: saved for every session",
    EventKind.ROLLBACK: "rolled back: the transaction's changes are gone",
    EventKind.ERROR: "the engine answered with an error",
    EventKind.NOTICE: "a notice from the engine or the sandbox",
    EventKind.GUARD: "the guard flagged a statement (and what was decided)",
    EventKind.LOCK_WAIT: "waiting for a lock another session holds",
    EventKind.LOCK_RELEASED: "a lock wait is over",
    EventKind.LOCKS: "PostgreSQL: the locks a session holds now, or a table it rewrote",
    EventKind.CANCELLED: "cancelled (F8, or it ran past the statement timeout)",
    EventKind.SESSION_CLOSED: "a session closed",
    EventKind.QUEUED: "queued behind the session's running statement",
    EventKind.CONNECTION_LOST: "the connection is gone (the server ended the session)",
    EventKind.HINT: "you asked for a hint (it counts in the score)",
    EventKind.CHECK: "you pressed Check: the verdict and the score",
    EventKind.PROGRAM: "a traced program printed a line, or exited",
    EventKind.POOL: "a traced connection left or went back to SQLAlchemy's pool",
    EventKind.FLUSH: "an ORM session flushed its pending changes (autoflush too)",
}
_OTHER_MEANING = "a snapshot, restore or diff"
_GUTTER_MEANINGS: dict[str, str] = {
    "│": "the session is idle or running a statement (autocommit)",
    "┃": "a transaction is open (red: failed, every statement fails until ROLLBACK)",
    "┇": "the session waits for a lock",
}
# The session boxes above the log: the glyph after the session's name.
BOX_GLYPHS: tuple[tuple[str, str], ...] = (
    ("▶", "running a statement, with the seconds it has run"),
    ("⏳", "waiting for a lock, and for whom"),
    ("●", "in a transaction: nothing is saved until COMMIT"),
    ("✖", "a failed transaction (or a lost connection): ROLLBACK to go on"),
)


def legend() -> list[tuple[str, str]]:
    """Every glyph the timeline draws and what it means, gutter and boxes included."""
    rows: dict[str, list[str]] = {}
    for kind, (glyph, _tone) in _MARKERS.items():
        rows.setdefault(glyph, []).append(_MEANINGS[kind])
    rows.setdefault("·", []).append(_OTHER_MEANING)
    for glyph, meaning in _GUTTER_MEANINGS.items():
        rows.setdefault(glyph, []).append(f"in the gutter: {meaning}")
    events = [(glyph, "; ".join(meanings)) for glyph, meanings in rows.items()]
    return events + [(glyph, f"in a session box: {meaning}") for glyph, meaning in BOX_GLYPHS]


# Session names are told apart by colour in the log; fixed colours read on dark and light themes.
_LANE_COLOURS = ("bright_cyan", "bright_magenta", "bright_green", "bright_blue", "orange3", "plum2")


def seconds(ms: float) -> str:
    """A duration for the header: one decimal, never negative."""
    return f"{max(ms, 0.0) / 1000:.1f} s"


def plural(count: int, noun: str) -> str:
    return f"{count:,} {noun}{'' if count == 1 else 's'}"


@dataclass(frozen=True)
class SessionSummary:
    """What a session's header box says, and in which state (it picks the colour)."""

    session: str
    state: LaneState
    headline: str
    detail: str

    @property
    def text(self) -> str:
        return f"{self.headline}\n{self.detail}" if self.detail else self.headline


def how_it_ended(span: TransactionSpan) -> str:
    """One line on how a finished transaction ended, for the idle box."""
    if span.commit_refused:
        return "last transaction: COMMIT answered ROLLBACK, nothing was saved"
    if span.closed_by_session:
        return "last transaction: rolled back when the session closed"
    if span.state == "committed":
        return "last transaction: committed"
    return "last transaction: rolled back"


def lane_state(tracker: TransactionTracker, session: str) -> LaneState:
    """The session's state as the gutter and the header colour show it."""
    program = tracker.program(session)
    if program is not None:  # a traced program's own lane: running until it exits
        return "running" if program[0] == "running" else "closed"
    if tracker.is_gone(session):
        return "gone"
    if tracker.waiting(session) is not None:
        return "waiting"
    span = tracker.open_span(session)
    if span is not None:
        return "failed" if span.state == "failed" else "open"
    if tracker.is_closed(session):
        return "closed"
    return "running" if tracker.running(session) is not None else "idle"


def describe_session(
    tracker: TransactionTracker,
    session: str,
    now_ms: float,
    statement_timeout_s: float | None = None,
    cancellable: bool = True,
) -> SessionSummary:
    """The header box of one session at timeline time `now_ms`.

    `cancellable` is False for a traced program's connection: F8 cancels a session's
    statement, and a program's statements are the program's to cancel.
    """
    program = tracker.program(session)
    if program is not None:
        how, printed = program
        last = f"printed: {printed}" if printed else "nothing printed yet"
        if how == "running":
            return SessionSummary(session, "running", f"{session} » program running", last)
        return SessionSummary(session, "closed", f"{session} » program {how}", last)
    state = lane_state(tracker, session)
    f8 = " · F8 cancels" if cancellable else ""
    span = tracker.open_span(session)
    wait = tracker.waiting(session)
    queued = tracker.queued(session)
    behind = f" · {queued} queued behind it" if queued else ""
    if state == "gone":
        return SessionSummary(
            session,
            state,
            f"{session} ✖ connection gone",
            "the server ended this session; what it had not committed was rolled back",
        )
    if wait is not None:
        holders = ", ".join(wait.blocked_by) or "another session"
        headline = f"{session} ⏳ waiting for {holders} · {seconds(wait.duration_ms(now_ms))}{f8}"
        detail = f"stuck: {wait.sql}" if wait.sql else "stuck on a lock"
        if span is not None:
            detail = f"in transaction · {plural(len(span.statements), 'statement')} · {detail}"
        return SessionSummary(session, state, headline, detail + behind)
    running = tracker.running(session)
    if running is not None:
        limit = f" (cancelled at {statement_timeout_s:g} s)" if statement_timeout_s else ""
        if not cancellable:
            limit = ""  # the statement timeout is the app's sessions', not the program's
        headline = f"{session} ▶ running {seconds(running.duration_ms(now_ms))}{limit}{f8}"
        where = "in transaction" if span is not None else "autocommit"
        return SessionSummary(session, state, headline, f"{where} · {running.sql}{behind}")
    if span is not None and span.state == "failed":
        headline = f"{session} ✖ FAILED transaction — every statement fails until ROLLBACK"
        count = plural(len(span.statements), "statement")
        detail = f"open {seconds(span.duration_ms(now_ms))} · {count}, none will be saved"
        if span.failed_by:
            detail += f" · failed at: {span.failed_by}"
        return SessionSummary(session, state, headline, detail)
    if span is not None:
        headline = (
            f"{session} ● IN TRANSACTION {seconds(span.duration_ms(now_ms))}"
            f" · {plural(len(span.statements), 'statement')}"
        )
        if span.savepoints:
            headline += f" · savepoints: {', '.join(span.savepoints)}"
        detail = "not saved until COMMIT"
        if span.statements:
            detail += f" · last: {span.statements[-1]}"
        return SessionSummary(session, state, headline, detail)
    spans = tracker.spans(session)
    last = how_it_ended(spans[-1]) if spans else ""
    if state == "closed":
        return SessionSummary(session, state, f"{session} closed", last)
    return SessionSummary(
        session, state, f"{session} idle", last or "autocommit: each statement is saved at once"
    )


@dataclass(frozen=True)
class _Row:
    """One event as the log shows it, with the lanes frozen as they were at that moment."""

    event: Event
    lane: int
    gutter: tuple[LaneState, ...]  # every lane known at the time, after the event
    badge: tuple[str, Tone] | None  # COMMITTED / ROLLED BACK / FAILED / ...


def _badge(event: Event, ended: TransactionSpan | None) -> tuple[str, Tone] | None:
    """The label that makes a transaction's start, failure or end stand out in the log."""
    if ended is not None:
        if ended.state == "committed":
            return " COMMITTED ", "success"
        if ended.commit_refused and COMMIT_REFUSED_PREFIX not in event.message:
            return " ROLLED BACK (COMMIT answered ROLLBACK) ", "error"
        return " ROLLED BACK ", "error"
    if event.kind is EventKind.BEGIN:
        return "BEGIN", "warning"
    if event.kind is EventKind.ERROR and event.message.startswith(TX_FAILED_PREFIX):
        return " FAILED ", "error"
    if event.kind is EventKind.LOCK_WAIT:
        return "WAIT", "warning"
    return None


class SessionBox(Static):
    """The header box of one session; its CSS class follows the session's state."""

    def __init__(self, session: str) -> None:
        super().__init__(plain(session), markup=False, classes="-none")
        self.session = session
        self.summary: SessionSummary | None = None

    def show(self, summary: SessionSummary) -> None:
        """Redraw only when the words or the state changed (the tick calls this often)."""
        if summary == self.summary:
            return
        if self.summary is None or summary.state != self.summary.state:
            self.set_classes(f"-{summary.state}")
        self.summary = summary
        text = plain(summary.headline, "bold")
        if summary.detail:
            # What has ended (a closed session, a traced program that exited and its
            # connections) takes one line: a trace's many lanes leave room for the log.
            text.append(" · " if summary.state == "closed" else "\n")
            text.append_text(plain(summary.detail, "not bold"))
        self.update(text)


class EventLog(RichLog):
    """The event log with a cursor: the learner moves it over the rows, and the event under it
    is shown in full below (the rows themselves are one line each and scroll sideways)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("up", "move(-1)", "Previous event", show=False),
        Binding("down", "move(1)", "Next event", show=False),
        Binding("pageup", "page(-1)", "Page up", show=False),
        Binding("pagedown", "page(1)", "Page down", show=False),
        Binding("home", "edge(0)", "First event", show=False),
        Binding("end", "edge(1)", "Last event", show=False),
        # The detail under a narrow log has little room: Enter gives the timeline the screen.
        Binding("enter", "app.zoom", "Zoom", show=False),
    ]
    COMPONENT_CLASSES: ClassVar[set[str]] = {"event-log--cursor"}
    DEFAULT_CSS = """
    EventLog > .event-log--cursor { background: $accent 40%; }
    """

    cursor: reactive[int | None] = reactive(None)

    class Moved(Message):
        """The cursor is on another row (or gone: None)."""

        def __init__(self, row: int | None) -> None:
            super().__init__()
            self.row = row

    def render_line(self, y: int) -> Strip:
        strip = super().render_line(y)
        if self.cursor is not None and self.has_focus and self.scroll_offset.y + y == self.cursor:
            # Over the line's own colours (Strip.apply_style puts a style under them, and each
            # line's background hid the cursor).
            style = self.get_component_rich_style("event-log--cursor")
            strip = Strip(Segment.apply_style(strip, post_style=style), strip.cell_length)
        return strip

    def watch_cursor(self, row: int | None) -> None:
        if row is not None:
            self.scroll_to_region(Region(0, row, 1, 1), animate=False, immediate=True)
        self.refresh()
        self.post_message(self.Moved(row))

    def _go(self, row: int) -> None:
        if self.lines:
            self.cursor = max(0, min(len(self.lines) - 1, row))

    def action_move(self, step: int) -> None:
        self._go((len(self.lines) if self.cursor is None else self.cursor) + step)

    def action_page(self, step: int) -> None:
        self.action_move(step * max(1, self.scrollable_content_region.height - 1))

    def action_edge(self, end: int) -> None:
        self._go(len(self.lines) - 1 if end else 0)

    def on_focus(self) -> None:
        # Arriving in the log puts the cursor on the newest event, the one most likely wanted.
        if self.cursor is None:
            self.action_edge(1)
        else:
            self.post_message(self.Moved(self.cursor))
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()
        self.post_message(self.Moved(None))


class TimelineView(Widget):
    """Per-session transaction boxes over a lane-per-session event log."""

    # Colours for the log lines come from the theme through these component classes.
    COMPONENT_CLASSES: ClassVar[set[str]] = {
        "timeline--muted",
        "timeline--warning",
        "timeline--error",
        "timeline--success",
        "timeline--info",
    }

    DEFAULT_CSS = """
    TimelineView { height: 1fr; }
    TimelineView > #timeline-sessions { height: auto; }
    TimelineView SessionBox {
        width: 1fr;
        height: auto;
        padding: 0 1;
        border: round $panel;
        text-overflow: ellipsis;  /* a word too long for the box is cut with …, never broken */
    }
    /* Stacked boxes (a narrow pane, or a trace's many lanes) leave the log half the pane. */
    TimelineView > #timeline-sessions.-stacked {
        layout: vertical;
        max-height: 50%;
        overflow-y: auto;
        scrollbar-size-vertical: 1;
    }
    TimelineView > #timeline-sessions.-stacked > SessionBox { border-bottom: none; }
    TimelineView SessionBox.-idle, TimelineView SessionBox.-closed,
    TimelineView SessionBox.-none { color: $text-muted; }
    TimelineView SessionBox.-open { border: heavy $warning; color: $warning; }
    TimelineView SessionBox.-waiting { border: heavy $warning; color: $warning; }
    TimelineView SessionBox.-running { border: round $accent; color: $text; }
    TimelineView SessionBox.-gone { border: heavy $error; color: $error; }
    TimelineView SessionBox.-failed { border: heavy $error; color: $error; background: $error 15%; }
    TimelineView > #timeline-log { height: 1fr; }
    TimelineView > #timeline-detail {
        display: none;
        height: auto;
        max-height: 50%;
        padding: 0 1;
        border-top: solid $accent;
    }
    TimelineView.-detail > #timeline-detail { display: block; }
    TimelineView > .timeline--muted { color: $text-muted; }
    TimelineView > .timeline--warning { color: $warning; }
    TimelineView > .timeline--error { color: $error; }
    TimelineView > .timeline--success { color: $success; }
    TimelineView > .timeline--info { color: $accent; }
    """

    def __init__(
        self,
        *,
        clock: Callable[[], float] | None = None,
        name: str | None = None,
        id: str | None = None,
        classes: str | None = None,
    ) -> None:
        """`clock` returns the current timeline time in ms; by default it is extrapolated from
        the latest event, since the widget never sees the timeline's own start."""
        super().__init__(name=name, id=id, classes=classes)
        self._clock = clock
        self.statement_timeout_s: float | None = None  # shown while a statement runs
        # Whether F8 reaches a lane (the app's sessions do; traced programs' connections not).
        self.cancellable: Callable[[str], bool] | None = None
        self.tracker = TransactionTracker()
        self._rows: list[_Row] = []
        self._lanes: dict[str, int] = {}
        self._boxes: dict[str, SessionBox] = {}
        self._written = 0  # rows already in the RichLog
        self._width = MIN_LANES  # gutter columns the written rows were drawn with
        self._flush_scheduled = False
        self._ready = False  # mounted: children exist and theme styles resolve
        self._anchor: tuple[float, float] = (0.0, time.monotonic())
        # The whole statement behind an event (the log says only its first 72 characters).
        self.statement_text: Callable[[int], str | None] | None = None

    def compose(self) -> ComposeResult:
        yield Horizontal(id="timeline-sessions")
        yield EventLog(id="timeline-log", wrap=False, markup=False, highlight=False)
        yield Static("", id="timeline-detail", markup=False)

    def on_mount(self) -> None:
        # Events may arrive before mounting; they are drawn from here on.
        self._ready = True
        self.set_interval(TICK_S, self._tick)
        self._schedule_flush()

    # ------------------------------------------------------------------ public API

    @property
    def event_log(self) -> EventLog:
        """The RichLog the event lines go to (not `log`: Textual's logger owns that name)."""
        return self.query_one("#timeline-log", EventLog)

    def on_resize(self) -> None:
        self._arrange_boxes()

    def on_event_log_moved(self, message: EventLog.Moved) -> None:
        message.stop()
        self.show_detail(message.row)

    def show_detail(self, row: int | None) -> None:
        """Show event `row` in full under the log, or hide the detail (None)."""
        shown = row is not None and 0 <= row < len(self._rows)
        self.set_class(shown, "-detail")
        if row is not None and shown:
            self.query_one("#timeline-detail", Static).update(self.detail(row))

    def detail(self, row: int) -> Text:
        """Everything the log line of event `row` had to cut: its whole message, the whole
        statement, what the engine reported, and what the glyph means."""
        event = self._rows[row].event
        glyph, _tone = _MARKERS.get(event.kind, ("·", "plain"))
        meaning = _MEANINGS.get(event.kind, _OTHER_MEANING)
        text = Text()
        text.append(f"{event.elapsed_ms / 1000:.2f} s · session ", style="bold")
        text.append_text(plain(event.session, "bold"))
        text.append(f" · {glyph} {meaning}\n", style="bold")
        text.append_text(plain(event.message))
        sql = None
        if event.statement is not None and self.statement_text is not None:
            sql = self.statement_text(event.statement)
        if sql and " ".join(sql.split()) not in event.message:
            text.append("\nstatement: ", style="bold")
            text.append_text(plain(sql.strip()))
        facts = [
            f"{key}: {value}"
            for key, value in event.data.items()
            if isinstance(value, str | int | float) and not isinstance(value, bool)
        ]
        if facts:
            text.append("\n")
            text.append_text(plain(" · ".join(facts), "dim"))
        text.append(f"\nat {event.at} (UTC)", style="dim")
        text.append("\n↑↓ other events · Enter: zoom · Esc: the editor", style="dim italic")
        return text

    @property
    def rows(self) -> int:
        """How many events the widget holds."""
        return len(self._rows)

    def add_event(self, event: Event) -> None:
        """Take one timeline event (UI thread only); the screen catches up in the next batch."""
        before = self.tracker.open_span(event.session)
        self.tracker.feed(event)
        after = self.tracker.open_span(event.session)
        ended = before if before is not None and before is not after else None
        lane = self._lanes.get(event.session)
        if lane is None:
            lane = self._lanes[event.session] = len(self._lanes)
        gutter = tuple(lane_state(self.tracker, s) for s in self._lanes)
        self._rows.append(_Row(event, lane, gutter, _badge(event, ended)))
        self._anchor = (event.elapsed_ms, time.monotonic())
        self._schedule_flush()

    def clear(self) -> None:
        """Forget every event and session (a new run starts)."""
        self.tracker = TransactionTracker()
        self._rows.clear()
        self._lanes.clear()
        self._written = 0
        self._width = MIN_LANES
        for box in self._boxes.values():
            box.remove()
        self._boxes.clear()
        if self._ready:
            self.event_log.clear()
            self.event_log.cursor = None

    def now_ms(self) -> float:
        """The timeline's current time, for the durations of what is still open."""
        if self._clock is not None:
            return self._clock()
        at_ms, at_monotonic = self._anchor
        return at_ms + (time.monotonic() - at_monotonic) * 1000

    def summary(self, session: str) -> SessionSummary:
        """What the session's header box says now."""
        return self._describe(session, self.now_ms())

    def _describe(self, session: str, now: float) -> SessionSummary:
        cancellable = self.cancellable is None or self.cancellable(session)
        return describe_session(self.tracker, session, now, self.statement_timeout_s, cancellable)

    def lines(self) -> list[str]:
        """Every log line as plain text, drawn with the current lanes."""
        styles = self._styles()
        return ["".join(piece for piece, _ in self._row_pieces(row, styles)) for row in self._rows]

    # ------------------------------------------------------------------ drawing

    def _schedule_flush(self) -> None:
        # One redraw per batch of events: a burst of 10,000 costs one write, not 10,000.
        if not self._flush_scheduled and self._ready:
            self._flush_scheduled = True
            self.call_later(self._flush)

    def _flush(self) -> None:
        self._flush_scheduled = False
        if not self.is_attached or not self.is_mounted:
            return  # the app is shutting down: nothing left to draw on
        log = self.event_log
        if len(self._lanes) > self._width:
            # A new session widened the gutter: redraw everything so the columns line up.
            self._width = len(self._lanes)
            log.clear()
            self._written = 0
        if self._written < len(self._rows):
            styles = self._styles()
            segments: list[Segment] = []
            width = 0
            for row in self._rows[self._written :]:
                pieces = self._row_pieces(row, styles)
                segments.extend(Segment(piece, style) for piece, style in pieces)
                segments.append(Segment.line())
                width = max(width, sum(cell_len(piece) for piece, _ in pieces))
            self._written = len(self._rows)
            # Ready-made segments at a known width: RichLog skips measuring and wrapping, which
            # is most of the cost of writing 10,000 lines as Text. Long lines scroll sideways.
            log.write(Segments(segments[:-1]), width=max(width, log.min_width))
        self._update_boxes()

    def _tick(self) -> None:
        busy = ("open", "failed", "waiting", "running")
        if any(lane_state(self.tracker, s) in busy for s in self._lanes):
            self._update_boxes()

    def _update_boxes(self) -> None:
        now = self.now_ms()
        strip = self.query_one("#timeline-sessions", Horizontal)
        if not strip.is_mounted:
            return  # mounting into a strip being torn down would raise (app exiting)
        for session in self._lanes:
            box = self._boxes.get(session)
            if box is None:
                box = self._boxes[session] = SessionBox(session)
                strip.mount(box)
                self._arrange_boxes()
            box.show(self._describe(session, now))

    def _arrange_boxes(self) -> None:
        """Side by side while each box has room for its words, one under another if not."""
        strip = self.query_one("#timeline-sessions", Horizontal)
        count = max(1, len(self._boxes))
        strip.set_class(self.size.width // count < BOX_MIN_WIDTH, "-stacked")

    def _styles(self) -> dict[Tone, Style]:
        styles: dict[Tone, Style] = {"plain": Style()}
        if self._ready:
            for tone in ("muted", "warning", "error", "success", "info"):
                styles[tone] = self.get_component_rich_style(f"timeline--{tone}", partial=True)
        else:
            styles.update({"muted": Style(dim=True), "warning": Style(color="yellow")})
            styles.update({"error": Style(color="red"), "success": Style(color="green")})
            styles["info"] = Style(color="blue")
        return styles

    def _row_pieces(self, row: _Row, styles: dict[Tone, Style]) -> list[tuple[str, Style]]:
        """One log line as (text, style) pieces: time, the lanes' gutter, session, message."""
        event = row.event
        pieces: list[tuple[str, Style]] = [(f"{event.elapsed_ms / 1000:6.2f}s ", styles["muted"])]
        for lane in range(max(self._width, len(self._lanes))):
            if lane == row.lane:
                glyph, tone = _MARKERS.get(event.kind, ("·", "plain"))
            else:
                state = row.gutter[lane] if lane < len(row.gutter) else "none"
                glyph, tone = _GUTTER[state]
            pieces.append((glyph + " ", styles[tone]))
        pieces.append((" " * (1 + row.lane * LANE_INDENT), styles["plain"]))
        colour = _LANE_COLOURS[row.lane % len(_LANE_COLOURS)]
        pieces.append((one_line(event.session), Style(color=colour, bold=True)))
        pieces.append(("  ", styles["plain"]))
        message = " ".join(event.message.split())
        if row.badge is not None:
            label, tone = row.badge
            # Ends of transactions are printed reversed so they cannot be scrolled past unseen.
            reverse = label.startswith(" ")
            pieces.append((label, styles[tone] + Style(bold=True, reverse=reverse)))
            pieces.append((" ", styles["plain"]))
            if message.startswith(label.strip() + " "):
                # A traced "BEGIN (implicit) at app.py:12": the badge already says BEGIN.
                message = message[len(label.strip()) + 1 :]
        message_tone: Tone = "plain"
        if event.kind in (EventKind.ERROR, EventKind.CANCELLED):
            message_tone = "error"
        elif event.kind in (EventKind.OUTCOME, EventKind.SESSION_OPENED):
            message_tone = "muted"
        # One event, one line: a multi-line server message would otherwise break the lanes. The
        # pieces become Segments, which reach the terminal as they are: no control characters.
        pieces.append((visible(message), styles[message_tone]))
        return pieces
