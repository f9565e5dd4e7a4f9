"""The SQL editor: Textual's code editor, with completion, and Esc that keeps the learner in it."""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.geometry import Offset
from textual.widgets import OptionList, TextArea
from textual.widgets.option_list import Option
from textual.widgets.text_area import Document, Selection

from sandbox.completion import Completion, follows_word
from sandbox.ui.text import line

Completer = Callable[[str, int], Completion]


class CompletionList(OptionList):
    """The popup of candidates at the cursor. It never takes the focus: the learner keeps
    typing in the editor, whose Up, Down, Enter, Tab and Esc drive it while it is open."""

    can_focus = False
    DEFAULT_CSS = """
    CompletionList {
        display: none;
        position: absolute;
        overlay: screen;
        width: auto;
        min-width: 20;
        max-width: 60;
        height: auto;
        max-height: 10;
        border: round $accent;
        padding: 0;
    }
    """


class SqlEditor(TextArea):
    """A TextArea whose Esc only drops the selection (or closes the completion popup).

    Textual's code editor (tab_behavior "indent") answers Esc by focusing the next widget, so
    what the learner types next lands in the results table; here Esc is "back to the editor"
    everywhere, so in the editor it must not leave.
    """

    # Terminals send ctrl+space as NUL, which Textual reports as ctrl+@; a terminal with the
    # kitty keyboard protocol reports ctrl+space itself.
    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("ctrl+space,ctrl+@", "complete", "Complete", show=False),
    ]

    completer: Completer | None = None  # set by the app: what the schema offers
    _completion: Completion | None = None

    # ------------------------------------------------------------------ offsets

    @property
    def _doc(self) -> Document:
        document = self.document
        assert isinstance(document, Document)  # the code editor's is a SyntaxAwareDocument
        return document

    @property
    def cursor_offset(self) -> int:
        """The cursor as an offset into `self.text`."""
        return self.offset_of(self.cursor_location)

    def location_of(self, offset: int) -> tuple[int, int]:
        location: tuple[int, int] = self._doc.get_location_from_index(
            max(0, min(offset, len(self.text)))
        )
        return location

    def offset_of(self, location: tuple[int, int]) -> int:
        offset: int = self._doc.get_index_from_location(location)
        return offset

    def replace_all(self, text: str) -> None:
        """Put `text` in place of everything, as an edit: ctrl+z brings the old text back."""
        self.replace(text, (0, 0), self.document.end, maintain_selection_offset=False)

    def select_span(self, start: int, end: int) -> None:
        self.selection = Selection(self.location_of(start), self.location_of(end))
        self.scroll_cursor_visible(center=True)

    # ------------------------------------------------------------------ completion

    @property
    def popup(self) -> CompletionList | None:
        found = self.screen.query(CompletionList)
        return found.first() if found else None

    @property
    def completing(self) -> bool:
        popup = self.popup
        return self._completion is not None and popup is not None and popup.display

    def action_complete(self) -> None:
        if self.completer is None:
            return
        completion = self.completer(self.text, self.cursor_offset)
        if not completion.candidates:
            self.close_completion()
            self.app.notify("nothing to complete here", timeout=2)
            return
        if len(completion.candidates) == 1:
            self._accept(completion, 0)
            return
        self._show(completion)

    def _show(self, completion: Completion) -> None:
        popup = self.popup
        if popup is None:
            return
        self._completion = completion
        width = max(len(c.text) for c in completion.candidates)
        popup.set_options(
            Option(
                Text.assemble(
                    line(c.text.ljust(width), "bold"), "  ", line(c.detail or c.kind, "dim")
                )
            )
            for c in completion.candidates
        )
        popup.highlighted = 0
        popup.display = True
        self._place(popup, len(completion.candidates))

    def _place(self, popup: CompletionList, count: int) -> None:
        """Just under the cursor, or above it when the screen has no room below."""
        cursor = self.cursor_screen_offset
        height = min(count, 8) + 2
        below = cursor.y + 1
        y = below if below + height <= self.screen.size.height else max(0, cursor.y - height)
        x = max(0, min(cursor.x - len(self._completion.prefix if self._completion else ""), 9999))
        popup.styles.offset = Offset(x, y)

    def close_completion(self) -> None:
        self._completion = None
        popup = self.popup
        if popup is not None:
            popup.display = False

    def accept_completion(self, index: int) -> None:
        """Take candidate `index` of the open popup (a click on it)."""
        if self._completion is not None and 0 <= index < len(self._completion.candidates):
            self._accept(self._completion, index)
        self.focus()

    def _accept(self, completion: Completion, index: int) -> None:
        candidate = completion.candidates[index]
        self.close_completion()
        start = self.location_of(completion.start)
        self.replace(candidate.insert, start, self.cursor_location, maintain_selection_offset=False)

    def _refresh_completion(self) -> None:
        """Typing on narrows the popup; leaving the word (or no match left) closes it."""
        completion = self._completion
        if completion is None or self.completer is None:
            return
        offset = self.cursor_offset
        typed = self.text[completion.start : offset]
        if offset < completion.start or not all(c.isalnum() or c in "_$" for c in typed):
            self.close_completion()
            return
        fresh = self.completer(self.text, offset)
        if fresh.start != completion.start or not fresh.candidates:
            self.close_completion()
            return
        self._show(fresh)

    def on_text_area_changed(self) -> None:
        self._refresh_completion()

    def on_text_area_selection_changed(self) -> None:
        self._refresh_completion()

    def on_blur(self) -> None:
        self.close_completion()

    async def _on_key(self, event: events.Key) -> None:
        # Textual calls each class's _on_key along the MRO until one prevents the default:
        # stopping a key here keeps TextArea's own handler (and its bindings) from it.
        popup = self.popup
        if self.completing and popup is not None and self._completion is not None:
            handled = True
            if event.key == "down":
                popup.action_cursor_down()
            elif event.key == "up":
                popup.action_cursor_up()
            elif event.key in ("enter", "tab"):
                self._accept(self._completion, popup.highlighted or 0)
            elif event.key == "escape":
                self.close_completion()
            else:
                handled = False
            if handled:
                event.stop()
                event.prevent_default()
                return
        if event.key == "escape":
            event.stop()
            event.prevent_default()
            self.move_cursor(self.cursor_location)  # drops a selection, keeps the cursor
        elif event.key == "tab" and self._tab_completes():
            event.stop()
            event.prevent_default()
            self.action_complete()

    def _tab_completes(self) -> bool:
        """Tab right after a word completes it, if anything fits; otherwise it indents."""
        if self.completer is None or self.selected_text:
            return False
        offset = self.cursor_offset
        return follows_word(self.text, offset) and bool(
            self.completer(self.text, offset).candidates
        )
