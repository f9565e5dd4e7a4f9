"""The cell viewer: one value of a result, whole, with what it is.

A grid cell shows one clipped line; here every line and every character is there (control
characters as their visible stand-ins, see sandbox.ui.text), in a read-only text area that
scrolls. SQL NULL says so in words: it is no text at all, not the text 'NULL'.
"""

from __future__ import annotations

from typing import Any, ClassVar

from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Label, Static, TextArea

from sandbox.transcript import plural
from sandbox.ui.clipboard import send_to_clipboard
from sandbox.ui.text import line, one_line, plain, value_text, visible


def describe(value: Any) -> str:
    """What a value is, in a few words: its kind as the driver gave it, and its size."""
    if value is None:
        return "SQL NULL: no value at all (not the text 'NULL', not an empty string)"
    if isinstance(value, bytes | bytearray | memoryview):
        return f"bytes, {plural(len(bytes(value)), 'byte')} (shown as \\x hex)"
    if isinstance(value, str):
        lines = value.count("\n") + 1
        said = f"text, {plural(len(value), 'character')}"
        if lines > 1:
            said += f", {plural(lines, 'line')}"
        if value != value.strip():
            said += ", with leading or trailing whitespace"
        return said
    kind = {bool: "boolean", int: "integer", float: "floating point"}.get(type(value))
    name = kind or type(value).__name__
    return f"{name}, shown as {plural(len(value_text(value)), 'character')}"


class CellViewer(ModalScreen[None]):
    """Esc closes; c copies the value (to the terminal's clipboard)."""

    BINDINGS: ClassVar[list[BindingType]] = [
        # Priority: the text area would otherwise take the keys (it is read-only, never typed).
        Binding("escape", "close", "Close", priority=True),
        Binding("enter", "close", "Close", show=False, priority=True),
        Binding("c", "copy", "Copy value", priority=True),
    ]

    def __init__(self, column: str, row_number: int, value: Any) -> None:
        super().__init__()
        self.column = column
        self.row_number = row_number
        self.value = value

    def compose(self) -> ComposeResult:
        with Vertical(id="cell-viewer", classes="dialog"):
            title = Text.assemble(line(self.column), f" · row {self.row_number:,}")
            yield Label(title, classes="dialog-title", markup=False)
            yield Static(plain(describe(self.value)), id="cell-facts", markup=False)
            shown = "NULL" if self.value is None else visible(value_text(self.value))
            area = TextArea(shown, id="cell-value", read_only=True, soft_wrap=True)
            area.show_line_numbers = True
            yield area
            yield Static(
                "Esc or Enter: back to the results · c: copy the value · arrows scroll",
                classes="dialog-keys",
                markup=False,
            )
        yield Footer()

    def on_mount(self) -> None:
        area = self.query_one("#cell-value", TextArea)
        if self.value is None:
            area.add_class("null")
        area.focus()

    def action_close(self) -> None:
        self.dismiss(None)

    def action_copy(self) -> None:
        send_to_clipboard(self.app, cell_copy(self.value), copied_what(self.value, self.column))


def cell_copy(value: Any) -> str:
    """What copying a cell sends: its full text; SQL NULL as the word NULL (the note says so)."""
    return "NULL" if value is None else value_text(value)


def copied_what(value: Any, column: str) -> str:
    said = f"the value of {one_line(column)}"
    return said + " (SQL NULL, sent as the word NULL)" if value is None else said
