"""The editor's small dialogs: a path to open or save, find, and the history search.

Statements, paths and messages are shown as `Text` (see sandbox.ui.text), never markup.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from textual import on
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.screen import ModalScreen
from textual.widgets import Footer, Input, Label, OptionList, Static
from textual.widgets.option_list import Option

from sandbox.ui.text import line, plain


class PathPrompt(ModalScreen[str | None]):
    """Ask for a file path (relative to the current directory); Esc cancels."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "cancel", "Cancel", show=True)]

    def __init__(
        self,
        title: str,
        value: str = "",
        keys: str = "Enter: go · Esc: cancel",
        placeholder: str = "queries/fix.sql",
    ) -> None:
        super().__init__()
        self.title_text = title
        self.value = value
        self.keys = keys
        self.placeholder = placeholder

    def compose(self) -> ComposeResult:
        with Vertical(id="path-prompt", classes="dialog"):
            yield Label(plain(self.title_text), classes="dialog-title", markup=False)
            yield Input(self.value, id="path-input", placeholder=self.placeholder)
            yield Static(plain(self.keys), classes="dialog-keys", markup=False)
        yield Footer()

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        value = event.value.strip()
        if value:
            self.dismiss(value)

    def action_cancel(self) -> None:
        self.dismiss(None)


class FindDialog(ModalScreen[None]):
    """Find in the editor: each Enter selects the next match (wrapping); Esc goes back."""

    BINDINGS: ClassVar[list[BindingType]] = [Binding("escape", "close", "Back", show=True)]

    def __init__(self, find_next: Callable[[str], str], query: str = "") -> None:
        super().__init__()
        self.find_next = find_next
        self.query_text = query

    def compose(self) -> ComposeResult:
        with Vertical(id="find", classes="dialog"):
            yield Label("Find in the editor", classes="dialog-title")
            yield Input(self.query_text, id="find-input", placeholder="text to find")
            yield Static(
                plain("Enter: next match (from the cursor, wrapping; any case) · Esc: back"),
                id="find-status",
                classes="dialog-keys",
                markup=False,
            )
        yield Footer()

    @on(Input.Submitted)
    def submitted(self, event: Input.Submitted) -> None:
        if event.value:
            self.query_text = event.value
            self.query_one("#find-status", Static).update(plain(self.find_next(event.value)))

    def action_close(self) -> None:
        self.dismiss(None)


class HistorySearch(ModalScreen[str | None]):
    """Past statements, newest first, narrowed by what is typed; Enter takes one."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("escape", "cancel", "Cancel", show=True),
        Binding("down", "move(1)", "Older", show=False),
        Binding("up", "move(-1)", "Newer", show=False),
    ]

    def __init__(self, search: Callable[[str], list[str]]) -> None:
        super().__init__()
        self.search = search
        self.found: list[str] = []

    def compose(self) -> ComposeResult:
        with Vertical(id="history-search", classes="dialog"):
            yield Label("Search the statements run", classes="dialog-title")
            yield Input(id="history-input", placeholder="part of a statement")
            yield OptionList(id="history-list", markup=False)
            yield Static(
                plain("type to narrow · Up/Down: choose · Enter: into the editor · Esc: cancel"),
                classes="dialog-keys",
                markup=False,
            )
        yield Footer()

    def on_mount(self) -> None:
        self._fill("")

    @on(Input.Changed)
    def changed(self, event: Input.Changed) -> None:
        self._fill(event.value)

    def _fill(self, query: str) -> None:
        self.found = self.search(query)
        options = self.query_one("#history-list", OptionList)
        options.set_options(Option(line(text[:200])) for text in self.found)
        if self.found:
            options.highlighted = 0

    def action_move(self, step: int) -> None:
        options = self.query_one("#history-list", OptionList)
        if self.found:
            at = options.highlighted or 0
            options.highlighted = max(0, min(len(self.found) - 1, at + step))

    @on(Input.Submitted)
    def submitted(self) -> None:
        index = self.query_one("#history-list", OptionList).highlighted
        if self.found and index is not None:
            self.dismiss(self.found[index])

    @on(OptionList.OptionSelected)
    def selected(self, event: OptionList.OptionSelected) -> None:
        self.dismiss(self.found[event.option_index])

    def action_cancel(self) -> None:
        self.dismiss(None)
