"""The results pane: one page of rows, and a caption that says what was shown."""

from __future__ import annotations

from typing import TYPE_CHECKING

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from sandbox.outcome import Status, json_value
from sandbox.transcript import plural
from sandbox.ui.text import escape

if TYPE_CHECKING:
    from sandbox.conductor import Execution


class ResultsView(Vertical):
    DEFAULT_CSS = """
    ResultsView { height: 1fr; }
    ResultsView #caption { height: auto; padding: 0 1; }
    ResultsView DataTable { height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Static("Run a statement with F5; its result shows here.", id="caption")
        yield DataTable(id="rows", zebra_stripes=True)

    def show(self, execution: Execution) -> None:
        caption = self.query_one("#caption", Static)
        table = self.query_one("#rows", DataTable)
        outcome = execution.outcome
        # Learner text (session names, SQL, engine messages) may hold [brackets]: escape it.
        head = escape(f"[{execution.session}] line {execution.statement.line}: ")
        if outcome is None:
            waiting = escape(", ".join(execution.waiting_on) or "another session")
            caption.update(f"{head}[b yellow]waiting for a lock held by {waiting}[/]")
            return
        if outcome.status is Status.BLOCKED:
            caption.update(f"{head}[b]not run[/b]: {escape(outcome.note or '')}")
            return
        if outcome.error is not None:
            code = f" {outcome.error.code}" if outcome.error.code else ""
            note = f" — {escape(outcome.note)}" if outcome.note else ""
            message = escape(outcome.error.message)
            caption.update(f"{head}[b red]error{escape(code)}[/]: {message}{note}")
            return
        table.clear(columns=True)
        if outcome.columns:
            table.add_columns(*outcome.columns)
            for row in outcome.rows:
                table.add_row(*["NULL" if v is None else str(json_value(v)) for v in row])
            shown = len(outcome.rows)
            more = ", more rows exist (only the first page is fetched)" if outcome.more_rows else ""
            # A \diff or \snapshots answers in its note; the grid holds the detail.
            said = (
                escape(outcome.note)
                if execution.meta and outcome.note
                else f"{plural(shown, 'row')} shown{more}"
            )
            caption.update(f"{head}{said} · {outcome.elapsed_ms:.1f} ms")
        else:
            did = escape(outcome.tag or "ok")
            if outcome.rowcount is not None:
                did += f" · {plural(outcome.rowcount, 'row')} affected"
            note = f" — [b]{escape(outcome.note)}[/b]" if outcome.note else ""
            caption.update(f"{head}{did}{note} · {outcome.elapsed_ms:.1f} ms")
