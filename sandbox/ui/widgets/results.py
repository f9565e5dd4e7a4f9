"""The results pane: one page of rows, and a caption that says what was shown.

Cells, column names and messages come from the database: they are shown as `Text` (see
sandbox.ui.text), never read as markup.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from sandbox.outcome import Status
from sandbox.transcript import plural
from sandbox.ui.text import cell, line, plain, plan_row

if TYPE_CHECKING:
    from sandbox.conductor import Execution


class ResultsView(Vertical):
    DEFAULT_CSS = """
    ResultsView { height: 1fr; }
    ResultsView #caption { height: auto; padding: 0 1; }
    ResultsView DataTable { height: 1fr; }
    """

    def compose(self) -> ComposeResult:
        yield Static("Run a statement with F5; its result shows here.", id="caption", markup=False)
        yield DataTable(id="rows", zebra_stripes=True)

    def show(self, execution: Execution) -> None:
        caption = self.query_one("#caption", Static)
        table = self.query_one("#rows", DataTable)
        outcome = execution.outcome
        head = plain(f"[{execution.session}] line {execution.statement.line}: ")
        if outcome is None or outcome.error is not None or outcome.status is Status.BLOCKED:
            # The grid belongs to an earlier statement: it must not sit under this caption.
            table.clear(columns=True)
        if outcome is None:
            caption.update(Text.assemble(head, in_flight(execution)))
            return
        if outcome.status is Status.BLOCKED:
            caption.update(
                Text.assemble(head, ("not run", "bold"), ": ", plain(outcome.note or ""))
            )
            return
        if outcome.error is not None:
            code = f" {outcome.error.code}" if outcome.error.code else ""
            said = Text.assemble(
                head, plain(f"error{code}", "bold red"), ": ", plain(outcome.error.message)
            )
            if outcome.note:
                said.append_text(Text.assemble(" — ", plain(outcome.note)))
            caption.update(said)
            return
        table.clear(columns=True)
        if outcome.columns:
            table.add_columns(*[line(name) for name in outcome.columns])
            for row in outcome.rows:
                # An \explain tree marks its hot steps (sandbox.plans).
                table.add_row(*(plan_row(row) if execution.meta == "explain" else map(cell, row)))
            shown = len(outcome.rows)
            more = ", more rows exist (only the first page is fetched)" if outcome.more_rows else ""
            # A \diff or \snapshots answers in its note; the grid holds the detail.
            said = (
                plain(outcome.note)
                if execution.meta and outcome.note
                else plain(f"{plural(shown, 'row')} shown{more}")
            )
            caption.update(Text.assemble(head, said, f" · {outcome.elapsed_ms:.1f} ms"))
        else:
            did = plain(outcome.tag or "ok")
            if outcome.rowcount is not None:
                did.append(f" · {plural(outcome.rowcount, 'row')} affected")
            if outcome.note:
                did.append_text(Text.assemble(" — ", plain(outcome.note, "bold")))
            caption.update(Text.assemble(head, did, f" · {outcome.elapsed_ms:.1f} ms"))

    def show_session(self, session: str, execution: Execution | None) -> None:
        """What a session shows when it is switched to: its own latest statement."""
        if execution is not None:
            self.show(execution)
            return
        self.query_one("#rows", DataTable).clear(columns=True)
        self.query_one("#caption", Static).update(
            Text.assemble(plain(f"[{session}] "), "nothing run in this session yet: F5 runs one")
        )


def in_flight(execution: Execution) -> Text:
    """A statement without an outcome yet: waiting on a lock, running, or queued."""
    if execution.waiting:
        holders = ", ".join(execution.waiting_on) or "another session"
        said = plain(f"waiting for a lock held by {holders}", "bold yellow")
        if execution.wait_detail:
            said.append_text(plain(f" — {execution.wait_detail}"))
        said.append(" · F8 cancels")
        return said
    if execution.started is not None:
        ran = time.perf_counter() - execution.started
        return Text.assemble((f"running {ran:.1f} s…", "bold"), " F8 cancels")
    return Text.assemble(
        ("queued", "bold"), ": runs when this session's previous statement is done · F8 cancels"
    )
