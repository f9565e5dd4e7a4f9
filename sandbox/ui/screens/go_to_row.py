"""Ask which row of a result to page to: the page then starts at that row."""

from __future__ import annotations

from typing import ClassVar

from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, Static


class GoToRow(ModalScreen[int | None]):
    """Enter takes the row number typed; Esc goes back without running anything."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "close", "Back", priority=True),
    ]

    def __init__(self, page_size: int) -> None:
        super().__init__()
        self.page_size = page_size

    def compose(self) -> ComposeResult:
        with Vertical(id="go-to-row", classes="dialog"):
            yield Label("Go to row", classes="dialog-title")
            yield Static(
                f"The query runs again in its session and shows {self.page_size} rows from the "
                "row you give, its earlier rows skipped. Past the end, it says how many rows "
                "there are.",
                markup=False,
            )
            yield Input(placeholder="row number, e.g. 999501", type="integer", id="row-number")
            yield Static(
                "Enter: go there (runs the query) · Esc: back, nothing runs",
                classes="dialog-keys",
                markup=False,
            )
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#row-number", Input).focus()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.stop()
        try:
            row = int(event.value)
        except ValueError:
            self.notify("type a row number (1 is the first row)", severity="warning")
            return
        if row < 1:
            self.notify("rows are numbered from 1", severity="warning")
            return
        self.dismiss(row)

    def action_close(self) -> None:
        self.dismiss(None)
