"""The results pane: one page of rows, and a caption that says what was shown."""

from __future__ import annotations

import time
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
            table.clear(columns=True)
            caption.update(head + in_flight(execution))
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

    def show_session(self, session: str, execution: Execution | None) -> None:
        """What a session shows when it is switched to: its own latest statement."""
        if execution is not None:
            self.show(execution)
            return
        self.query_one("#rows", DataTable).clear(columns=True)
        self.query_one("#caption", Static).update(
            escape(f"[{session}] ") + "nothing run in this session yet: F5 runs a statement"
        )


def in_flight(execution: Execution) -> str:
    """Markup for a statement without an outcome yet: waiting, running or queued."""
    if execution.waiting:
        holders = escape(", ".join(execution.waiting_on) or "another session")
        detail = f" — {escape(execution.wait_detail)}" if execution.wait_detail else ""
        return f"[b yellow]waiting for a lock held by {holders}[/]{detail} · F8 cancels"
    if execution.started is not None:
        ran = time.perf_counter() - execution.started
        return f"[b]running {ran:.1f} s…[/] F8 cancels"
    return "[b]queued[/]: runs when this session's previous statement is done · F8 cancels"
