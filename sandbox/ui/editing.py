"""The editor's actions: completion, history, error positions, files, find and format.

A mixin of the app (DbSandboxApp keeps its keys, help and palette entries): the editor's
work in one place. Nothing here touches a database; the error position arrives with the
outcome of a statement the conductor ran.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from textual.app import App

from sandbox.completion import Completion, complete
from sandbox.errors import UserError
from sandbox.sqlfiles import find_next, read_sql_file, write_sql_file
from sandbox.sqlformat import format_sql
from sandbox.statements import tokens
from sandbox.ui.screens.dialogs import ConfirmQuit
from sandbox.ui.screens.editor_dialogs import FindDialog, HistorySearch, PathPrompt
from sandbox.ui.widgets.editor import SqlEditor

if TYPE_CHECKING:
    from textual.notifications import SeverityLevel

    from sandbox.conductor import Execution
    from sandbox.history import History
    from sandbox.schema_summary import TableSummary
    from sandbox.ui.bridge import Bridge

OPEN_KEYS = "a path from the current directory · Enter: open · Esc: cancel"
SAVE_KEYS = "a path from the current directory · Enter: save (asks before replacing) · Esc: cancel"


class EditorActions(App[None]):
    """What the editor's keys do; the state it keeps is set up by DbSandboxApp.__init__."""

    bridge: Bridge
    session: str
    history: History
    paths: dict[str, Path]  # where each session's editor text came from: ctrl+s writes there
    # The last text each session ran from the editor, where it starts there, and the whole
    # editor then: an error's position is marked only in the text it points into.
    _ran: dict[str, tuple[str, int, str]]
    tables: list[TableSummary]  # the committed schema, as the schema pane has it
    _find: str  # the last text looked for

    if TYPE_CHECKING:

        def say(
            self, text: str, severity: SeverityLevel = "warning", timeout: float = 8
        ) -> None: ...

        def action_focus_editor(self) -> None: ...

    @property
    def editor(self) -> SqlEditor:
        return self.query_one("#editor", SqlEditor)

    def action_history(self, step: int) -> None:
        editor = self.editor
        shown = self.history.step(self.session, editor.text, step)
        if shown is None:
            if not self.history.entries:
                self.notify("no statements run yet: the history fills as you run them")
            return
        editor.replace_all(shown)  # an edit: ctrl+z brings back what was there

    def action_history_search(self) -> None:
        if not self.history.entries:
            self.notify("no statements run yet: the history fills as you run them")
            return

        def chosen(text: str | None) -> None:
            editor = self.editor
            if text is not None:
                self.history.stop(self.session)
                editor.replace_all(text)
            editor.focus()

        self.push_screen(HistorySearch(self.history.search), chosen)

    def _complete(self, text: str, offset: int) -> Completion:
        return complete(text, offset, self.tables, self.bridge.dialect)

    def action_complete(self) -> None:
        editor = self.editor
        editor.focus()
        editor.action_complete()

    def action_find(self) -> None:
        def closed(_: None) -> None:
            self.action_focus_editor()

        self.push_screen(FindDialog(self._find_next, self._find), closed)

    def _find_next(self, query: str) -> str:
        """Select the next match of `query` after the cursor (wrapping); say where it is."""
        self._find = query
        editor = self.editor
        found = find_next(editor.text, query, editor.cursor_offset)
        if found is None:
            return f"not found: {query}"
        start, count, wrapped = found
        editor.select_span(start, start + len(query))
        row, column = editor.location_of(start)
        where = f"line {row + 1}, column {column + 1}"
        return f"{where}{' (from the top again)' if wrapped else ''} · {count} in all"

    def action_format(self) -> None:
        editor = self.editor
        selected = bool(editor.selected_text.strip())
        source = editor.selected_text if selected else editor.text
        start, end = sorted((editor.selection.start, editor.selection.end))
        origin = (start[0] + 1, start[1] + 1) if selected else (1, 1)
        try:
            formatted = format_sql(source, self.bridge.dialect, origin)
        except UserError as exc:
            self.say(f"not formatted: {exc}", "error")
            return
        if formatted.text == source:
            self.notify("already formatted: nothing changed")
            return
        if selected:
            editor.replace(formatted.text, start, end, maintain_selection_offset=False)
        else:
            editor.replace_all(formatted.text)
        kept = (
            f"; {formatted.kept} kept as typed (sqlglot does not know them)"
            if formatted.kept
            else ""
        )
        self.notify(f"formatted {formatted.statements} statement(s){kept} · ctrl+z undoes it")

    def action_open_file(self) -> None:
        def chosen(path: str | None) -> None:
            if path is not None:
                self.open_file(Path(path).expanduser())
            self.action_focus_editor()

        self.push_screen(PathPrompt("Open a .sql file into the editor", "", OPEN_KEYS), chosen)

    def open_file(self, path: Path) -> None:
        try:
            text = read_sql_file(path)
        except UserError as exc:
            self.say(str(exc), "error")
            return
        editor = self.editor
        editor.replace_all(text)
        editor.move_cursor((0, 0))
        self.paths[self.session] = path
        self.history.stop(self.session)
        self.notify(f"opened {path} (ctrl+z brings back what was there)")

    def action_save_file(self) -> None:
        known = self.paths.get(self.session)
        if known is not None:
            self.save_file(known, replace=True)
            return

        def chosen(path: str | None) -> None:
            if path is not None:
                self.save_file(Path(path).expanduser())
            self.action_focus_editor()

        self.push_screen(PathPrompt("Save the editor to a file", "", SAVE_KEYS), chosen)

    def save_file(self, path: Path, replace: bool = False) -> None:
        """Write the editor to `path`; an existing file is replaced only once the learner
        says so (or it is the file this editor was opened from or saved to)."""
        if not replace and path.exists():

            def answered(yes: bool | None) -> None:
                if yes:
                    self.save_file(path, replace=True)
                self.action_focus_editor()

            lines = [f"{path} exists: its contents would be replaced by the editor's text"]
            self.push_screen(ConfirmQuit(f"Overwrite {path}", lines, "Overwrite"), answered)
            return
        try:
            write_sql_file(path, self.editor.text)
        except UserError as exc:
            self.say(str(exc), "error")
            return
        self.paths[self.session] = path
        self.notify(f"saved to {path}")

    def _mark_error(self, execution: Execution) -> None:
        """Select in the editor the place a failed statement's error points at.

        Only while the editor still holds the text it was run from: once the learner has
        typed on, the offset may no longer be where the mistake is.
        """
        outcome = execution.outcome
        error = outcome.error if outcome is not None else None
        ran = self._ran.get(execution.session)
        if error is None or error.position is None or ran is None:
            return
        text, start, editor_text = ran
        statement = execution.statement
        editor = self.editor
        if editor.text != editor_text or text[statement.start : statement.end] != statement.text:
            return
        at = start + statement.start + error.position
        token = next(tokens(editor.text[at:], self.bridge.dialect), None)
        length = token.end if token is not None and token.start == 0 else 0
        editor.select_span(at, at + length)
        row, column = editor.location_of(at)
        self.say(f"line {row + 1}, column {column + 1}: {error.message}", "error")
