"""Nothing from the database or a scenario file is read as markup, and no control character
reaches the terminal.

Values, names and messages that look like Rich markup (`[/]`, `[b]x[/b]`, `[link=x]y[/link]`,
`[@click=app.quit]x[/]`), escapes (`\\[`, a trailing backslash), control characters (ESC, CR,
TAB, NUL, C1), emoji, 5,000 characters and several lines go through every widget that shows
such text; each must show it verbatim, but for the substitution sandbox.ui.text defines:
control characters as visible stand-ins (`visible`), and in one-line places newlines as `↵`
(`one_line`); a grid cell or column name is clipped to CELL_WIDTH columns with a `…` (the cell
viewer shows it whole). The app-level test does the same through the real app on both engines.
"""

from __future__ import annotations

import asyncio
import dataclasses
import functools
from collections.abc import Callable

from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st
from rich.cells import cell_len
from rich.text import Text
from textual.app import App, ComposeResult
from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Label, OptionList, Static, TextArea
from textual.widgets.tree import TreeNode

from sandbox.conductor import Execution
from sandbox.guard.findings import Finding, Severity
from sandbox.guard.impact import Impact
from sandbox.guard.policy import Decision, Review
from sandbox.outcome import Outcome, SqlError, Status, TxState
from sandbox.scenario.catalog import Listing, find
from sandbox.scenario.model import Check, PerEngine, Scenario
from sandbox.scenario.player import CheckResult
from sandbox.schema_summary import ColumnSummary, TableSummary
from sandbox.snapshots.diff import Diff
from sandbox.sqlkind import classify
from sandbox.statements import split_statements
from sandbox.timeline import Event, EventKind
from sandbox.ui.app import create_app
from sandbox.ui.screens.dialogs import ConfirmQuit, ConfirmStatement, ScenarioPicker
from sandbox.ui.text import CELL_WIDTH, NEWLINE, NULL, cell, one_line, visible
from sandbox.ui.widgets.results import ResultsView
from sandbox.ui.widgets.scenario_panel import ScenarioPanel
from sandbox.ui.widgets.schema import SchemaView
from sandbox.ui.widgets.timeline import TimelineView
from tests.conftest import options_for

NAMED = [
    "a[/]b",
    "[b]x[/b]",
    "[link=x]y[/link]",
    "see [note] here",
    "[@click=app.quit]x[/]",
    "\x1b[31mred",
    "\\[",
    "trailing \\",
    "[B]upper[/B]",
    "emoji 🦆 and 漢字",
    "two\nlines",
    "cr\r\nlf\ttab\x00nul\x7fdel\x9bcsi",
]
LONG = "[b]" + "x" * 4990 + "[/]\\"

# Arbitrary text, and text made of the characters that matter here.
VALUES = st.one_of(
    st.text(max_size=80),
    st.text(alphabet="[]/\\@=:bix \n\r\t\x1b\x00\x85", max_size=40),
    st.lists(st.sampled_from(NAMED), min_size=1, max_size=4).map("".join),
)
# Each example starts an app: a few dozen, no deadline, and no shrinking (it would outlast the
# test timeout; a failure is reported as found).
PROPERTY = settings(
    max_examples=20,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
    phases=[Phase.explicit, Phase.reuse, Phase.generate],
)


def named(test: Callable[[str], None]) -> Callable[[str], None]:
    """Every named string, and the long one, as explicit examples."""
    for value in [*NAMED, LONG]:
        test = example(value)(test)
    return test


def in_grid(text: str, value: str) -> bool:
    """Whether a grid cell's or column name's `text` is `value` on one line, clipped with `…`
    only when it is wider than CELL_WIDTH, and nothing else."""
    whole = one_line(value)
    if cell_len(whole) <= CELL_WIDTH:
        return text == whole
    kept = text.removesuffix("…").rstrip(" ")  # a wide character may leave one column blank
    return text.endswith("…") and cell_len(text) <= CELL_WIDTH and whole.startswith(kept)


def shown(widget: Static) -> str:
    return str(widget.render())


def collapsed(text: str) -> str:
    """A timeline line's message: one line, runs of whitespace as one space (by design)."""
    return visible(" ".join(text.split()))


# ------------------------------------------------------------------ the helpers themselves


def test_controls_become_visible_and_newlines_are_marked() -> None:
    assert visible("a\x1b[31m\r\n\tb\x00\x7f\x9b") == "a␛[31m␍\n␉b␀␡\ufffd"
    assert one_line("two\nlines") == f"two{NEWLINE}lines"
    assert one_line("[b]x[/b] \\") == "[b]x[/b] \\"


@PROPERTY
@given(VALUES)
def test_nothing_unprintable_is_left(value: str) -> None:
    for out in (visible(value), one_line(value), cell(value).plain):
        assert not any((ord(c) < 0x20 and c != "\n") or 0x7F <= ord(c) < 0xA0 for c in out)
    assert "\n" not in one_line(value)
    assert len(one_line(value)) == len(value)  # one stand-in per character: nothing dropped


def test_null_is_not_the_string_null() -> None:
    null, string = cell(None), cell("NULL")
    assert null.plain == NULL == "∅ NULL" and string.plain == "NULL"
    assert str(null.style) == "dim italic" and not string.style and not string.spans


def test_a_cell_marks_its_lines_and_clips_a_long_value() -> None:
    two = cell("two\nlines")
    assert two.plain == f"two{NEWLINE}lines"
    assert [(span.start, span.end, str(span.style)) for span in two.spans] == [(3, 4, "dim")]
    long = cell("x" * 500)
    assert long.plain == "x" * (CELL_WIDTH - 1) + "…" and cell_len(long.plain) == CELL_WIDTH
    assert cell("y" * CELL_WIDTH).plain == "y" * CELL_WIDTH  # exactly wide enough: whole
    assert cell(b"\x00\xff").plain == "\\x00ff"  # bytes as PostgreSQL writes them


# ------------------------------------------------------------------ the widgets


class Panes(App[None]):
    """The app's panes, alone, in a screen big enough to draw them."""

    def compose(self) -> ComposeResult:
        yield ResultsView(id="results")
        yield SchemaView(id="schema")
        yield TimelineView(id="timeline")
        yield ScenarioPanel(id="scenario")


def execution(outcome: Outcome | None, *, meta: str | None = None) -> Execution:
    statement = split_statements("SELECT 1")[0]
    done = Execution(0, "A", statement, classify(statement.text, "sqlite"), meta=meta)
    done.outcome = outcome
    done.waiting, done.waiting_on = True, ["B"]
    return done


def outcome(status: Status = Status.OK, **fields: object) -> Outcome:
    return Outcome(status, TxState.IDLE, TxState.IDLE, 1.0, **fields)  # type: ignore[arg-type]


def labels(node: TreeNode[str]) -> list[str]:
    """The labels under `node` as shown: Tree keeps each as a Text, markup parsed or not."""
    return [str(child.label) for child in node.children]


async def check_results(pilot: Pilot[None], value: str) -> None:
    view = pilot.app.query_one(ResultsView)
    table = view.query_one("#rows", DataTable)
    caption = view.query_one("#caption", Static)
    view.show(execution(outcome(columns=[value, "n"], rows=[(value, None), ("NULL", 1)])))
    await pilot.pause()
    names = [column.label.plain for column in table.ordered_columns]
    assert in_grid(names[0], value) and names[1] == "n"
    first, second = table.get_row_at(0), table.get_row_at(1)
    # Cells are Text: DataTable shows a Text as it is, where it would parse a str as markup.
    assert all(isinstance(c, Text) for c in [*first, *second])
    assert in_grid(first[0].plain, value) and first[1].plain == NULL
    assert first[1].style != second[0].style  # NULL looks unlike the string 'NULL'
    error = SqlError("XX000", value)
    note = f" — {visible(value)}" if value else ""  # an empty note is no note
    view.show(execution(outcome(status=Status.ERROR, error=error, note=value)))
    head = "[A] line 1 · SELECT 1:"
    assert shown(caption) == f"{head} error XX000: {visible(value)}{note}"
    view.show(execution(outcome(status=Status.BLOCKED, note=value)))
    assert shown(caption) == f"{head} not run: {visible(value)}"
    view.show(execution(outcome(tag=value, rowcount=2, note=value)))
    tag = visible(value) if value else "ok"
    assert shown(caption) == f"{head} {tag} · 2 rows affected{note} · 1.0 ms"
    view.show(execution(outcome(columns=["x"], rows=[(1,)], note=value), meta="diff"))
    assert visible(value) in shown(caption)
    view.show(execution(None))
    assert "[A] line 1 · SELECT 1: waiting for a lock held by B" in shown(caption)


async def check_schema(pilot: Pilot[None], value: str) -> None:
    tree = pilot.app.query_one(SchemaView)
    column = ColumnSummary(value, value, not_null=True, primary_key=False)
    fk = f"{value} -> {value}(id)"
    tree.show([TableSummary(value, 0, [column], indexes=[value], foreign_keys=[fk])])
    await pilot.pause()
    [table] = tree.root.children
    assert str(table.label) == f"{one_line(value)}  0 rows"
    name = one_line(value)
    assert labels(table) == [
        f"{name} {one_line(value.lower())} not null",
        f"index {name}",
        f"fk {name} -> {name}(id)",
    ]


async def check_timeline(pilot: Pilot[None], value: str) -> None:
    view = pilot.app.query_one(TimelineView)
    view.clear()
    for seq, (kind, message, statement) in enumerate(
        [
            (EventKind.SESSION_OPENED, "session opened", None),
            (EventKind.STATEMENT, f"sent: {value}", 0),
            (EventKind.ERROR, value, 0),
            (EventKind.STATEMENT, f"sent: {value}", 1),
            (EventKind.LOCK_WAIT, "waiting for a lock held by B", 1),
        ]
    ):
        data = {"blocked_by": ["B"]} if kind is EventKind.LOCK_WAIT else {}
        view.add_event(Event(seq, seq * 10.0, 0.0, "A", kind, message, statement, data))
    await pilot.pause()
    lines = view.lines()
    assert lines[1].endswith(collapsed(f"sent: {value}"))
    assert lines[2].endswith(collapsed(value))
    # The lines are Segments written as they are: nothing unprintable may be in them.
    assert not any(ord(c) < 0x20 for line in lines for c in line)
    box = shown(view.query_one("SessionBox", Static))
    assert box.startswith("A ⏳ waiting for")
    assert visible(value) in box


@functools.cache
def a_scenario() -> Scenario:
    return find("missing-where")  # validated with sqlglot: once, not per example


async def check_scenario_panel(pilot: Pilot[None], value: str) -> None:
    panel = pilot.app.query_one(ScenarioPanel)
    scenario = dataclasses.replace(a_scenario(), title=value, hints=(value,))
    panel.load(scenario)
    await pilot.pause()
    assert shown(panel.query_one("#title", Static)) == visible(value)  # plain, not Markdown
    panel.query_one("#hint", Button).press()
    await pilot.pause()
    assert shown(panel.query_one("#hints", Static)).startswith(f"hint 1: {visible(value)}\n")
    check = Check(value, PerEngine("SELECT 1"), PerEngine([]), recovery=("rollback",))
    diff = Diff("sqlite", tables_dropped=[value])
    panel.show_checks([CheckResult(check, [], [], passed=False)], ["rollback"], diff)
    text = shown(panel.query_one("#checks", Static))
    assert text.startswith(f"✘ {visible(value)}\n")
    assert f"Since the start snapshot: {visible(f'table {value} dropped')}" in text
    assert f"  {one_line(value)} table dropped" in text
    panel.show_checks([], [], None, diff_problem=value)
    no_diff = f"\nno diff: {visible(value)}" if value else ""  # an empty reason is none
    assert shown(panel.query_one("#checks", Static)) == f"How you recovered: nothing yet{no_diff}"


@PROPERTY
@given(VALUES)
@named
def test_panes_show_values_verbatim(value: str) -> None:
    async def run() -> None:
        app = Panes()
        async with app.run_test(size=(160, 60)) as pilot:
            await check_results(pilot, value)
            await check_schema(pilot, value)
            await check_timeline(pilot, value)
            await check_scenario_panel(pilot, value)
            await pilot.pause()

    asyncio.run(run())


def review(value: str) -> Review:
    finding = Finding("missing-where", Severity.ERROR, value, value, value, 1, 1)
    impact = Impact(value, rows=1, total=1)
    return Review([finding], [Decision.CONFIRM], [impact], Decision.CONFIRM, value)


@PROPERTY
@given(VALUES)
@named
def test_dialogs_show_values_verbatim(value: str) -> None:
    async def run() -> None:
        app: App[None] = App()
        async with app.run_test(size=(160, 60)) as pilot:
            listing = Listing(value, value, value, ("sqlite",))
            await app.push_screen(ScenarioPicker([listing], "sqlite"))
            await pilot.pause()
            prompt = app.screen.query_one(OptionList).get_option_at_index(0).prompt
            assert isinstance(prompt, Text)
            assert prompt.plain == f"{one_line(value)}\n  {one_line(f'{value} · {value} · sqlite')}"
            app.pop_screen()

            await app.push_screen(ConfirmStatement(value, review(value)))
            await pilot.pause()
            texts = [shown(static) for static in app.screen.query(Static)]
            assert visible(" ".join(value.split())[:300]) in texts
            assert f"error missing-where: {visible(value)}" in texts
            assert f"  {visible(value)}" in texts or not value  # the impact, if any
            assert f"  fix: {visible(value)}" in texts
            app.pop_screen()

            await app.push_screen(ConfirmQuit(value, [value]))
            await pilot.pause()
            texts = [shown(static) for static in app.screen.query(Static)]
            assert f"{visible(value)}?" == shown(app.screen.query_one(Label))
            assert visible(value) in texts
            assert str(app.screen.query_one("#go", Button).label) == visible(
                f"{value} and roll back"
            )
            await pilot.pause()

    asyncio.run(run())


# ------------------------------------------------------------------ the real app

# Values written as SQL string literals; ESC and LF are made with the engine's chr()/char().
NASTY = ["a[/]b", "[b]x[/b]", "see [note] here", "[@click=app.quit]x[/]", "[link=x]y[/link]"]
NASTY += ["\\[", "trailing \\", "emoji 🦆"]


async def until(pilot: Pilot[None], condition: Callable[[], bool], seconds: float = 20.0) -> None:
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise AssertionError("condition not reached")


async def test_the_app_shows_nasty_values_and_names_verbatim(engine: str) -> None:
    chr_ = "char" if engine == "sqlite" else "chr"
    controls = [f"{chr_}(27) || '[31mred'", f"'two' || {chr_}(10) || 'lines'"]
    values = [*NASTY, "\x1b[31mred", "two\nlines", None, "NULL"]
    literals = ", ".join([*(f"'{v}'" for v in NASTY), *controls, "NULL", "'NULL'"])
    sql = f'SELECT {literals}, 1 AS "[i]x", 2 AS "a[/]b";'
    app = create_app(options_for(engine), pick=False)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.sandbox_description is not None)
        editor = app.query_one("#editor", TextArea)
        table = app.query_one("#results #rows", DataTable)

        editor.text = sql
        editor.focus()
        await pilot.press("f5")
        await until(pilot, lambda: table.row_count == 1)
        row = table.get_row_at(0)
        texts = [c.plain for c in row]
        assert texts[-2:] == ["1", "2"] and len(texts) == len(values) + 2
        for text, v in zip(texts, values, strict=False):
            assert text == NULL if v is None else in_grid(text, v)
        assert row[-3].style != row[-4].style  # NULL, then the string 'NULL'
        assert [c.label.plain for c in table.ordered_columns][-2:] == ["[i]x", "a[/]b"]
        # As drawn: the first cells of the row on screen, brackets and all.
        drawn = table.render_line(1).text
        assert "a[/]b" in drawn and "[b]x[/b]" in drawn

        # An engine's error message quotes the name back.
        editor.text = 'SELECT * FROM "[b]missing[/]";'
        await pilot.press("f5")
        caption = app.query_one("#results #caption", Static)
        await until(pilot, lambda: "error" in str(caption.render()))
        assert "[b]missing[/]" in str(caption.render())

        editor.text = 'CREATE TABLE "notes[/]" (id INTEGER PRIMARY KEY, "[b]col" TEXT);'
        await pilot.press("f5")
        schema = app.query_one("#schema", SchemaView)
        await until(pilot, lambda: "notes[/]  0 rows" in labels(schema.root))
        [notes] = [n for n in schema.root.children if str(n.label).startswith("notes[/]")]
        assert labels(notes)[:2] == ["id integer PK", "[b]col text"]


async def test_a_notice_quoting_learner_text_is_not_markup() -> None:
    app = create_app(options_for("sqlite"), pick=False)
    # Notifications are off in run_test by default; the toast is where the markup is parsed.
    async with app.run_test(size=(120, 40), notifications=True) as pilot:
        await until(pilot, lambda: app.sandbox_description is not None)
        editor = app.query_one("#editor", TextArea)
        editor.text = "\\restore a[/]b"
        editor.focus()
        await pilot.press("f5")

        def toasted() -> bool:
            return any("a[/]b" in str(toast.render()) for toast in app.query("Toast"))

        await until(pilot, toasted, seconds=5)
