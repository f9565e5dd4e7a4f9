"""Screenshots of the real app at 120x40 (one at 80x24), as SVG (Textual's own export) and PNG.

Drives the app through Pilot on real SQLite sandboxes, the way a learner would, and writes
screenshots/NAME.svg and screenshots/NAME.png for every state below. Timings in the pictures
are real; notifications (one names a temporary file) are cleared before each shot.

    .venv/bin/pip install -e '.[docs]'        # cairosvg, for the PNGs
    apt-get install fonts-firacode fonts-symbola   # the PNGs' font, and symbols it lacks
    .venv/bin/python scripts/screenshots.py [--out screenshots] [--only NAME ...] [--svg-only]

Textual's SVG asks for Fira Code. Cairo (under cairosvg) draws each piece of text in one font,
without falling back glyph by glyph as a terminal does, so symbols Fira Code lacks (the
timeline's ✔ ✖ ⚠ ⧗, the header's ⭘) would come out as empty boxes: for the PNG only, runs of
such characters are wrapped in a <tspan> naming a font that has them (DejaVu Sans Mono, else
Symbola), found with fontconfig. The SVG files are left exactly as Textual wrote them.
"""

from __future__ import annotations

import argparse
import asyncio
import html
import re
import shutil
import subprocess
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from textual.pilot import Pilot
from textual.widgets import Button, DataTable, Static, TextArea

from sandbox.scenario.catalog import find
from sandbox.targets import TargetOptions
from sandbox.trace.tracer import program_command
from sandbox.ui.app import DbSandboxApp, create_app
from sandbox.ui.screens.cell_viewer import CellViewer
from sandbox.ui.screens.dialogs import ConfirmStatement, HelpScreen, ScenarioPicker
from sandbox.ui.widgets.editor import SqlEditor
from sandbox.ui.widgets.scenario_panel import ScenarioPanel
from sandbox.ui.widgets.schema import SchemaView
from sandbox.ui.widgets.timeline import SessionBox, TimelineView

SIZE = (120, 40)
ROOT = Path(__file__).resolve().parent.parent
PRIMARY_FONT = "Fira Code"
FALLBACK_FONTS = ("DejaVu Sans Mono", "Symbola")

Drive = Callable[[Pilot[None], DbSandboxApp], Awaitable[None]]


# ---------------------------------------------------------------------- driving the app


async def until(pilot: Pilot[None], condition: Callable[[], bool], seconds: float = 20.0) -> None:
    """Let workers and messages run until `condition` holds (bounded)."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await pilot.pause(0.05)
    raise TimeoutError("the app did not reach the state to screenshot")


def caption(app: DbSandboxApp) -> str:
    return str(app.query_one("#results #caption", Static).render())


def schema_shows(app: DbSandboxApp, table: str) -> bool:
    schema = app.query_one("#schema", SchemaView)
    return any(table in str(node.label) for node in schema.root.children)


async def ready(pilot: Pilot[None], app: DbSandboxApp) -> None:
    await until(pilot, lambda: app.sandbox_description is not None)
    schema = app.query_one("#schema", SchemaView)
    await until(pilot, lambda: bool(schema.root.children))
    await settle(pilot, app)


async def settle(pilot: Pilot[None], app: DbSandboxApp, workers: bool = True) -> None:
    """Workers idle, their messages handled, notifications gone, the cursor visible."""
    if workers:
        await app.workers.wait_for_complete()
    await pilot.pause()
    if workers:
        await app.workers.wait_for_complete()
    await until(pilot, lambda: app.bridge.schema_settled)  # the counts, as committed
    await pilot.pause()
    app.clear_notifications()
    app.query_one("#editor", TextArea).cursor_blink = False
    await pilot.pause()


async def run_sql(
    pilot: Pilot[None], app: DbSandboxApp, sql: str, done: Callable[[str], bool]
) -> None:
    """Type `sql`, select it all (F7), run it (F5), wait for `done`, leave the cursor at the end."""
    editor = app.query_one("#editor", TextArea)
    editor.focus()
    editor.text = sql
    await pilot.press("f7", "f5")
    await until(pilot, lambda: done(caption(app)) or isinstance(app.screen, ConfirmStatement))
    editor.move_cursor(editor.document.end)


# ---------------------------------------------------------------------- the states


async def picker(pilot: Pilot[None], app: DbSandboxApp) -> None:
    await until(pilot, lambda: isinstance(app.screen, ScenarioPicker))
    await ready(pilot, app)


PETS = """\
CREATE TABLE pets (id INTEGER PRIMARY KEY, name TEXT NOT NULL, species TEXT, born INTEGER);
INSERT INTO pets VALUES (1, 'Rex', 'dog', 2017), (2, 'Tom', 'cat', 2020),
  (3, 'Kiwi', 'parrot', NULL), (4, 'Nemo', 'fish', 2023);
SELECT * FROM pets ORDER BY id;"""


async def free_play(pilot: Pilot[None], app: DbSandboxApp) -> None:
    await ready(pilot, app)
    await run_sql(pilot, app, PETS, lambda text: "4 rows shown" in text)
    await until(pilot, lambda: schema_shows(app, "pets  4 rows"))
    await settle(pilot, app)


async def guard(pilot: Pilot[None], app: DbSandboxApp) -> None:
    await ready(pilot, app)
    setup = "CREATE TABLE zz (id INTEGER PRIMARY KEY);\nINSERT INTO zz VALUES (1), (2), (3);"
    await run_sql(pilot, app, setup, lambda text: "3 rows affected" in text)
    await until(pilot, lambda: schema_shows(app, "zz  3 rows"))
    await run_sql(pilot, app, "DELETE FROM zz;", lambda text: False)
    await until(pilot, lambda: isinstance(app.screen, ConfirmStatement))
    await settle(pilot, app)


async def loaded(pilot: Pilot[None], app: DbSandboxApp) -> ScenarioPanel:
    """The scenario's mistake made, its briefing filling the screen."""
    await ready(pilot, app)
    panel = app.query_one("#scenario", ScenarioPanel)
    await until(pilot, lambda: panel.scenario is not None)
    await until(pilot, lambda: app.screen.maximized is panel)
    return panel


async def briefing(pilot: Pilot[None], app: DbSandboxApp) -> None:
    await loaded(pilot, app)
    await until(pilot, lambda: "rows affected" in caption(app))
    await settle(pilot, app)


async def scenario(pilot: Pilot[None], app: DbSandboxApp) -> None:
    """The working layout after Esc leaves the briefing."""
    await loaded(pilot, app)
    await until(pilot, lambda: "rows affected" in caption(app))
    await pilot.press("escape")
    await until(pilot, lambda: app.screen.maximized is None)
    await settle(pilot, app)


async def help_screen(pilot: Pilot[None], app: DbSandboxApp) -> None:
    await ready(pilot, app)
    await pilot.press("f1")
    await until(pilot, lambda: isinstance(app.screen, HelpScreen))
    await settle(pilot, app)


async def lock_wait(pilot: Pilot[None], app: DbSandboxApp) -> None:
    """same-email-signups: A won, B's INSERT waited, then failed; B's transaction, still open on
    SQLite, holds the write lock, so a sign-up from A now waits for B (shown live)."""
    await ready(pilot, app)
    await until(pilot, lambda: len(app.sessions) >= 2)
    insert = "INSERT INTO users VALUES (4, 'ines@example.org', 'web');"
    await run_sql(pilot, app, insert, lambda text: "waiting for a lock held by B" in text)
    boxes = app.query_one("#timeline", TimelineView).query(SessionBox)
    await until(pilot, lambda: any(b.summary and b.summary.state == "waiting" for b in boxes))
    await settle(pilot, app, workers=False)  # A's statement waits in its worker: do not wait on it


async def lock_wait_over(app: DbSandboxApp) -> None:
    """After the shot: B rolls back, so A's INSERT goes through and nothing is left waiting."""
    app.run_sql("B", "ROLLBACK;")
    await app.workers.wait_for_complete()


async def recovery(pilot: Pilot[None], app: DbSandboxApp) -> None:
    """committed-delete: the learner diffed, restored the start snapshot, re-added the order and
    pressed Check; the results pane shows the diff taken before the restore."""
    await ready(pilot, app)
    panel = app.query_one("#scenario", ScenarioPanel)
    await until(pilot, lambda: panel.scenario is not None)
    await run_sql(pilot, app, "\\restore start", lambda text: "restored snapshot" in text)
    await run_sql(pilot, app, "INSERT INTO orders VALUES (1003, 2, 49.00);", lambda t: "1 row" in t)
    await pilot.click("#check")
    checks = panel.query_one("#checks", Static)
    await until(pilot, lambda: "Recovered" in str(checks.render()))
    await run_sql(pilot, app, "\\diff before-1", lambda text: "since before-1" in text)
    await settle(pilot, app)


NOTES = """\
CREATE TABLE notes (id INTEGER PRIMARY KEY, author TEXT, body TEXT);
INSERT INTO notes VALUES (1, NULL, 'call back on Monday'),
  (2, 'NULL', 'the author really is the text NULL'),
  (3, 'mia', 'Parcel 1003 marked delivered but never arrived; the courier''s photo '
    || 'shows another door.' || char(10) || 'Refund approved, replacement shipped Tuesday.');
SELECT * FROM notes ORDER BY id;"""


async def cells(pilot: Pilot[None], app: DbSandboxApp) -> None:
    """NULL and 'NULL' side by side and a clipped two-line value, the results zoomed (F10)."""
    await ready(pilot, app)
    await run_sql(pilot, app, NOTES, lambda text: "3 rows shown" in text)
    await until(pilot, lambda: schema_shows(app, "notes  3 rows"))
    await settle(pilot, app)
    grid = app.query_one("#results #rows", DataTable)
    grid.focus()
    grid.move_cursor(row=2, column=2)
    await pilot.press("f10")
    await until(pilot, lambda: app.screen.maximized is not None)
    await settle(pilot, app)


async def cell_viewer(pilot: Pilot[None], app: DbSandboxApp) -> None:
    """Enter on that clipped value: the cell viewer shows it whole."""
    await cells(pilot, app)
    await pilot.press("f10")
    await until(pilot, lambda: app.screen.maximized is None)
    await pilot.press("enter")
    await until(pilot, lambda: isinstance(app.screen, CellViewer))
    await settle(pilot, app)


async def completion(pilot: Pilot[None], app: DbSandboxApp) -> None:
    """ctrl+space after `alias.`: the popup offers that table's columns."""
    await free_play(pilot, app)
    editor = app.query_one("#editor", SqlEditor)
    editor.text = "SELECT p.name, p.\nFROM pets p\nWHERE p.species = 'cat';"
    editor.move_cursor((0, len("SELECT p.name, p.")))
    await pilot.press("ctrl+space")
    await until(pilot, lambda: editor.completing)
    await settle(pilot, app)


ORDER_HISTORY = """\
-- the order-history query: F9 shows its plan
SELECT id, placed_on, total_cents FROM orders WHERE customer_id = 1207 ORDER BY placed_on;"""


async def explain(pilot: Pilot[None], app: DbSandboxApp) -> None:
    """missing-index: F9 on the order-history query, a full scan marked hot; the results are
    zoomed (F10) so the caption and both columns of the plan show whole."""
    await loaded(pilot, app)
    await pilot.press("escape")
    await until(pilot, lambda: app.screen.maximized is None)
    await settle(pilot, app)
    editor = app.query_one("#editor", SqlEditor)
    editor.text = ORDER_HISTORY
    editor.move_cursor((1, 10))
    await pilot.press("f9")
    await until(pilot, lambda: "hot" in caption(app))
    await settle(pilot, app)
    app.query_one("#results #rows", DataTable).focus()
    app.action_zoom()
    await settle(pilot, app)


async def timeline(pilot: Pilot[None], app: DbSandboxApp) -> None:
    """The cursor on an event in the timeline; below the log, that event in full."""
    await free_play(pilot, app)
    log = app.query_one("#timeline", TimelineView).event_log
    log.focus()
    rows = [strip.text for strip in log.lines]
    log.cursor = next(i for i, row in enumerate(rows) if "sent: INSERT INTO pets" in row)
    detail = app.query_one("#timeline-detail", Static)
    await until(pilot, lambda: "Kiwi" in str(detail.render()))
    await settle(pilot, app)


ORM = ROOT / "examples" / "orm"


async def traced(pilot: Pilot[None], app: DbSandboxApp) -> None:
    """`play --trace write_once.py --trace read_later.py`: both programs ran; session A reads
    what they wrote; the timeline zoomed, one lane per program and per connection."""
    await until(pilot, lambda: app.sandbox_description is not None)
    exits = ("write_once", "read_later")

    def exited() -> bool:
        events = app.bridge.timeline.events
        done = {e.session for e in events if "exit_code" in e.data}
        return done >= set(exits) and not app.tracing

    await until(pilot, exited)
    await ready(pilot, app)
    await run_sql(pilot, app, "SELECT * FROM markers;", lambda text: "1 row shown" in text)
    await settle(pilot, app)
    log = app.query_one("#timeline", TimelineView).event_log
    log.focus()
    await pilot.pause()
    app.action_zoom()
    # The cursor on read_later's connection: it named the course's own SQLite file, and the
    # detail below the log says it was given the sandbox instead.
    rows = [strip.text for strip in log.lines]
    log.cursor = next(i for i, row in enumerate(rows) if "read_later-1" in row and "opened" in row)
    await settle(pilot, app)


FIX = """\
ROLLBACK;
BEGIN;
DELETE FROM login_sessions WHERE user_name = 'bob';
COMMIT;"""


async def next_scenario(pilot: Pilot[None], app: DbSandboxApp) -> None:
    """missing-where recovered: ROLLBACK, the DELETE with its WHERE, Check; Next is offered."""
    panel = await loaded(pilot, app)
    await pilot.press("escape")
    await until(pilot, lambda: app.screen.maximized is None)
    await run_sql(pilot, app, FIX, lambda text: "COMMIT" in text)
    await settle(pilot, app)
    await pilot.press("f3")
    checks = panel.query_one("#checks", Static)
    await until(pilot, lambda: "Recovered" in str(checks.render()))
    await until(pilot, lambda: app.focused is panel.query_one("#next", Button))
    await settle(pilot, app)


async def score(pilot: Pilot[None], app: DbSandboxApp) -> None:
    """lost-update with the total typed in: right here, wrong on the hidden variant; the score
    and the anomaly told from the run, the scenario panel zoomed (F10) and scrolled to them."""
    panel = await loaded(pilot, app)
    await pilot.press("escape")
    await until(pilot, lambda: app.screen.maximized is None)
    await run_sql(
        pilot, app, "UPDATE cards SET balance = 130 WHERE id = 1;", lambda t: "1 row" in t
    )
    await settle(pilot, app)
    await pilot.press("f3")
    shown = panel.query_one("#score", Static)
    await until(pilot, lambda: "Score" in str(shown.render()))
    await settle(pilot, app)
    panel.focus()
    await settle(pilot, app)  # the focus moves on the next message, and the zoom follows it
    app.action_zoom()
    await settle(pilot, app)
    panel.scroll_to_widget(panel.query_one("#checks", Static), top=True, animate=False)
    await settle(pilot, app)


@dataclass(frozen=True)
class Shot:
    name: str
    what: str
    make: Callable[[], DbSandboxApp]
    drive: Drive
    after: Callable[[DbSandboxApp], Awaitable[None]] | None = None
    size: tuple[int, int] = SIZE


SHOTS = [
    Shot("picker", "the scenario picker at launch", lambda: create_app(TargetOptions()), picker),
    Shot(
        "free-play",
        "free play after a SELECT: schema, results, timeline",
        lambda: create_app(TargetOptions(), pick=False),
        free_play,
    ),
    Shot(
        "guard",
        "the guard's confirmation for DELETE FROM zz, with its impact",
        lambda: create_app(TargetOptions(), pick=False),
        guard,
    ),
    Shot(
        "briefing",
        "missing-where loaded: its briefing (story, task, what happened before you arrived)",
        lambda: create_app(TargetOptions(), find("missing-where"), pick=False),
        briefing,
    ),
    Shot(
        "scenario",
        "missing-where after Esc: scenario panel, schema, editor, results, timeline",
        lambda: create_app(TargetOptions(), find("missing-where"), pick=False),
        scenario,
    ),
    Shot(
        "cells",
        "the results zoomed (F10): NULL beside 'NULL', a clipped two-line value",
        lambda: create_app(TargetOptions(), pick=False),
        cells,
    ),
    Shot(
        "cell-viewer",
        "Enter on the clipped value: the cell viewer shows it whole",
        lambda: create_app(TargetOptions(), pick=False),
        cell_viewer,
    ),
    Shot(
        "completion",
        "completion after `p.`: the columns of pets",
        lambda: create_app(TargetOptions(), pick=False),
        completion,
    ),
    Shot(
        "explain",
        "missing-index: F9 on the query, its plan with the scan marked hot (results zoomed)",
        lambda: create_app(TargetOptions(), find("missing-index"), pick=False),
        explain,
    ),
    Shot(
        "timeline",
        "the timeline's cursor on an event, shown in full below the log",
        lambda: create_app(TargetOptions(), pick=False),
        timeline,
    ),
    Shot(
        "trace",
        "play --trace write_once.py --trace read_later.py: each connection a lane, live",
        lambda: create_app(
            TargetOptions(),
            pick=False,
            traces=[
                program_command(str(ORM / name)) for name in ("write_once.py", "read_later.py")
            ],
        ),
        traced,
    ),
    Shot(
        "next",
        "missing-where recovered: the checks graded, Next: the following scenario",
        lambda: create_app(TargetOptions(), find("missing-where"), pick=False),
        next_scenario,
    ),
    Shot(
        "narrow",
        "an 80x24 terminal: missing-where after Esc",
        lambda: create_app(TargetOptions(), find("missing-where"), pick=False),
        scenario,
        size=(80, 24),
    ),
    Shot(
        "score",
        "lost-update with the total typed in: a process check and the hidden variant fail; "
        "the score and the lost update told from the run",
        lambda: create_app(TargetOptions(), find("lost-update"), pick=False),
        score,
    ),
    Shot("help", "the help screen", lambda: create_app(TargetOptions(), pick=False), help_screen),
    Shot(
        "recovery",
        "committed-delete recovered: restore, the checks graded, the diff in the results",
        lambda: create_app(TargetOptions(), find("committed-delete"), pick=False),
        recovery,
    ),
    Shot(
        "lock-wait",
        "same-email-signups (two sessions): a lock wait in the timeline, one going on",
        # A busy timeout long enough for the wait to be seen before it gives up.
        lambda: create_app(
            TargetOptions(busy_timeout_ms=15_000), find("same-email-signups"), pick=False
        ),
        lock_wait,
        lock_wait_over,
    ),
]


async def take(shot: Shot, out: Path) -> Path:
    app = shot.make()
    async with app.run_test(size=shot.size) as pilot:
        await shot.drive(pilot, app)
        await pilot.wait_for_scheduled_animations()
        await pilot.pause()
        svg = out / f"{shot.name}.svg"
        svg.write_text(app.export_screenshot(title=f"dbsandbox: {shot.what}"), encoding="utf-8")
        if shot.after is not None:
            await shot.after(app)
    return svg


# ---------------------------------------------------------------------- SVG to PNG


def _charset(font: str) -> list[tuple[int, int]]:
    """The code point ranges `font` covers, from fontconfig (empty if unknown)."""
    if shutil.which("fc-match") is None or shutil.which("fc-query") is None:
        return []
    found = subprocess.run(
        ["fc-match", "--format=%{file}", font], capture_output=True, text=True, check=False
    )
    family = subprocess.run(
        ["fc-match", "--format=%{family}", font], capture_output=True, text=True, check=False
    )
    if found.returncode != 0 or font not in family.stdout.split(","):
        return []  # fontconfig substituted another font: this one is not installed
    query = subprocess.run(
        ["fc-query", "--index=0", "--format=%{charset}", found.stdout],
        capture_output=True,
        text=True,
        check=False,
    )
    ranges = []
    for part in query.stdout.split():
        first, _, last = part.partition("-")
        ranges.append((int(first, 16), int(last or first, 16)))
    return ranges


@cache
def _coverage() -> dict[str, list[tuple[int, int]]]:
    return {font: _charset(font) for font in (PRIMARY_FONT, *FALLBACK_FONTS)}


def _font_for(char: str) -> str | None:
    """None when the primary font has `char` (or nothing better is known), else a fallback."""
    code = ord(char)
    coverage = _coverage()
    if char.isspace() or not coverage[PRIMARY_FONT]:
        return None
    if any(lo <= code <= hi for lo, hi in coverage[PRIMARY_FONT]):
        return None
    for font in FALLBACK_FONTS:
        if any(lo <= code <= hi for lo, hi in coverage[font]):
            return font
    return None


_TEXT = re.compile(r"(<text\b[^>]*>)([^<]*)(</text>)")


def with_fallback_fonts(svg: str) -> str:
    """Wrap characters the primary font lacks in tspans naming a font that has them."""

    def fix(match: re.Match[str]) -> str:
        start, body, end = match.groups()
        text = html.unescape(body)
        fonts = [_font_for(char) for char in text]
        if not any(fonts):
            return match.group(0)
        pieces: list[str] = []
        run_font: str | None = fonts[0]
        run = ""
        for char, font in zip(text, fonts, strict=True):
            if font != run_font and run:
                pieces.append(_piece(run, run_font))
                run = ""
            run_font = font
            run += char
        pieces.append(_piece(run, run_font))
        return start + "".join(pieces) + end

    return _TEXT.sub(fix, svg)


def _piece(text: str, font: str | None) -> str:
    escaped = html.escape(text, quote=False).replace("\u00a0", "&#160;")
    return escaped if font is None else f"<tspan style=\"font-family: '{font}'\">{escaped}</tspan>"


def to_png(svg: Path) -> Path:
    import cairosvg  # type: ignore[import-untyped]  # the docs extra; no type information

    png = svg.with_suffix(".png")
    text = with_fallback_fonts(svg.read_text(encoding="utf-8"))
    cairosvg.svg2png(bytestring=text.encode("utf-8"), write_to=str(png))
    return png


# ---------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--out", type=Path, default=ROOT / "screenshots")
    parser.add_argument("--only", nargs="*", choices=[s.name for s in SHOTS], default=None)
    parser.add_argument("--svg-only", action="store_true", help="skip the PNGs (no cairosvg)")
    args = parser.parse_args(argv)
    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    if not args.svg_only and not _coverage()[PRIMARY_FONT]:
        print(f"warning: {PRIMARY_FONT} not found; install fonts-firacode", file=sys.stderr)
    for shot in SHOTS:
        if args.only and shot.name not in args.only:
            continue
        svg = asyncio.run(take(shot, out))
        written = [svg] if args.svg_only else [svg, to_png(svg)]
        print(f"{shot.name:<12} {shot.what}: " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    sys.exit(main())
