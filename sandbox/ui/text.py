"""Text from the database, the engine or a scenario file, as the app shows it: never markup.

Values, names and messages can hold anything. `[/]` or `[b]` would be read as markup tags (a
crash, or text that silently vanishes), and control characters would reach the terminal (an
ESC starts an escape sequence, a CR moves the cursor). So every such text becomes a rich `Text`
built from `visible(text)`: nothing in it is parsed, and every control character (C0 but the
newline, DEL, C1) is replaced by a visible stand-in one cell wide. Where a widget shows one
line only (a grid cell, a tree label), `one_line` also turns each newline into `↵`, so a second
line is marked rather than cut off.
"""

from __future__ import annotations

import json

from rich.cells import cell_len
from rich.style import StyleType
from rich.text import Text

from sandbox.outcome import json_value

NEWLINE = "↵"
# SQL NULL in a grid cell: a glyph and the word, so it stays unlike the text 'NULL' even where
# a terminal (or a screen capture) drops the dim italic style.
NULL = "∅ NULL"
CLIPPED = "…"
# A grid cell shows at most this many columns of its value; Enter opens the whole of it.
CELL_WIDTH = 40

# C0 controls and DEL as their Unicode control pictures (ESC is ␛, CR ␍, TAB ␉, NUL ␀). The C1
# controls have no pictures, and some terminals act on them (U+009B is a CSI): U+FFFD.
_VISIBLE: dict[int, str] = {code: chr(0x2400 + code) for code in range(0x20) if code != 0x0A}
_VISIBLE[0x7F] = "\u2421"
_VISIBLE.update({code: "\ufffd" for code in range(0x80, 0xA0)})


def visible(text: str) -> str:
    """`text` with every control character but the newline replaced by a visible stand-in."""
    return text.translate(_VISIBLE)


def one_line(text: str) -> str:
    """`visible(text)` with each newline shown as `↵`, for a place that has one line."""
    return visible(text).replace("\n", NEWLINE)


def plain(text: str, style: StyleType = "") -> Text:
    """Learner or engine text, shown as it is (never markup), lines kept."""
    return Text(visible(text), style=style, end="")


def line(text: str, style: StyleType = "") -> Text:
    """Learner or engine text on one line, shown as it is (never markup)."""
    return Text(one_line(text), style=style, end="")


def value_text(value: object) -> str:
    """A value's full text as the app shows and copies it (None is SQL NULL: the caller's).

    Bytes are PostgreSQL's own `\\x` hex text, a Decimal its exact digits, a boolean true or
    false, an array or JSON value its JSON text; a string is itself.
    """
    shown = json_value(value)
    if isinstance(shown, bool):
        return "true" if shown else "false"  # SQL's words (and the CSV export's), not Python's
    if isinstance(shown, list | dict):
        return json.dumps(shown, ensure_ascii=False)
    return str(shown)


def cell(value: object, width: int = CELL_WIDTH) -> Text:
    """One value of a result row on one line, at most `width` columns wide.

    SQL NULL looks unlike the string 'NULL'; each newline is a dim `↵` and a clipped value ends
    in a dim `…`, so neither a second line nor the rest of a long value vanishes unsaid.
    """
    if value is None:
        shown = Text(NULL, style="dim italic")
    else:
        shown = Text()
        for number, part in enumerate(visible(value_text(value)).split("\n")):
            if number:
                shown.append(NEWLINE, style="dim")
            shown.append(part)
        if cell_len(shown.plain) > width:
            shown.truncate(width - 1)
            shown.append(CLIPPED, style="dim")
    shown.no_wrap = True  # as DataTable does with strings in one-line rows
    shown.end = ""
    return shown


def plan_row(row: tuple[object, ...]) -> list[Text]:
    """One step of an `\\explain` tree (sandbox.plans): a hot step stands out, a notable one
    less; the marker column (the second) says which."""
    from sandbox.plans import HOT, NOTABLE

    cells = [cell(value) for value in row]
    marker = str(row[1]) if len(row) > 1 else ""
    style = "bold red" if marker.startswith(HOT) else "yellow" if marker.startswith(NOTABLE) else ""
    if style:
        for shown in cells:
            shown.stylize(style)
    return cells
