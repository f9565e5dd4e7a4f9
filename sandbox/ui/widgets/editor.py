"""The SQL editor: Textual's code editor, except that Esc keeps the learner in it."""

from __future__ import annotations

from textual import events
from textual.widgets import TextArea


class SqlEditor(TextArea):
    """A TextArea whose Esc only drops the selection.

    Textual's code editor (tab_behavior "indent") answers Esc by focusing the next widget, so
    what the learner types next lands in the results table; here Esc is "back to the editor"
    everywhere, so in the editor it must not leave.
    """

    async def _on_key(self, event: events.Key) -> None:
        # Textual calls each class's _on_key along the MRO until one prevents the default:
        # stopping Esc here keeps TextArea's own handler from moving the focus on.
        if event.key == "escape":
            event.stop()
            event.prevent_default()
            self.move_cursor(self.cursor_location)  # drops a selection, keeps the cursor
