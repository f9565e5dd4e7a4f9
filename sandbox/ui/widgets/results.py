"""The results pane: one page of rows, and a caption that says exactly what is shown.

Cells, column names and messages come from the database: they are shown as `Text` (see
sandbox.ui.text), never read as markup. The caption names the session, the statement's editor
line and its first words; a session's grid goes as soon as its next statement is sent, so a
grid never sits under another statement's caption.

Keys inside the grid: Enter views a cell whole, c / C copy a cell / the row, s sorts the loaded
rows by the cursor's column, e / j export them to CSV / JSON, n / p fetch the next / previous
page and g a page from a given row (the app does those: they run or write something).
"""

from __future__ import annotations

import datetime as dt
import decimal
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

from rich.cells import cell_len
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding, BindingType
from textual.containers import Vertical
from textual.widgets import DataTable, Static

from sandbox.outcome import Status, TxState
from sandbox.transcript import page_span, plural, short_sql
from sandbox.ui.clipboard import send_to_clipboard
from sandbox.ui.screens.cell_viewer import CellViewer, cell_copy, copied_what
from sandbox.ui.text import cell, line, plain, plan_row

if TYPE_CHECKING:
    from sandbox.conductor import Execution

KEYS = "Enter view · c/C copy · s sort · e/j CSV/JSON · n/p page · g row"


@dataclass(frozen=True)
class Sort:
    column: int
    descending: bool


class ResultsView(Vertical):
    DEFAULT_CSS = """
    ResultsView { height: 1fr; }
    ResultsView #caption { height: auto; max-height: 6; padding: 0 1; }
    ResultsView DataTable { height: 1fr; }
    """

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("c", "copy_cell", "Copy cell", show=False),
        Binding("C", "copy_row", "Copy row", show=False),
        Binding("s", "sort", "Sort", show=False),
        Binding("e", "app.export_result('csv')", "CSV", show=False),
        Binding("j", "app.export_result('json')", "JSON", show=False),
        Binding("n", "app.page_results(1)", "Next page", show=False),
        Binding("p", "app.page_results(-1)", "Previous page", show=False),
        Binding("g", "app.go_to_row", "Go to row", show=False),
    ]

    def __init__(self, *, id: str | None = None) -> None:
        super().__init__(id=id)
        self.execution: Execution | None = None  # whose rows the grid holds, if any
        self.rows: list[tuple[Any, ...]] = []  # as the database returned them
        self.order: list[int] = []  # the grid's rows, as indexes into `rows` (sorted or not)
        self.sort: Sort | None = None
        self._said = Text()  # the caption without the sort's words

    def compose(self) -> ComposeResult:
        yield Static("Run a statement with F5; its result shows here.", id="caption", markup=False)
        yield DataTable(id="rows", zebra_stripes=True)

    @property
    def columns(self) -> list[str]:
        outcome = self.execution.outcome if self.execution is not None else None
        return list(outcome.columns) if outcome is not None else []

    def on_descendant_focus(self) -> None:
        self._hint_keys()

    def on_descendant_blur(self) -> None:
        self._hint_keys()

    def _hint_keys(self) -> None:
        """The grid's keys, in the pane's top border, while the grid has rows and the focus."""
        focused = self.query_one("#rows", DataTable).has_focus
        self.border_title = KEYS if self.rows and focused else None

    def _clear(self) -> None:
        table = self.query_one("#rows", DataTable)
        if table.columns or self.execution is not None:  # a running statement ticks 4 times/s
            table.clear(columns=True)
            self.execution, self.rows, self.order, self.sort = None, [], [], None
            self._hint_keys()

    def show(self, execution: Execution) -> None:
        caption = self.query_one("#caption", Static)
        table = self.query_one("#rows", DataTable)
        outcome = execution.outcome
        head = Text.assemble(label(execution), ": ")
        if outcome is None or not (outcome.status is Status.OK and outcome.columns):
            # The grid belongs to an earlier statement: it must not sit under this caption.
            self._clear()
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
        if outcome.status is not Status.OK:
            # Never sent: cancelled while it was queued, or its session was gone.
            caption.update(
                Text.assemble(head, (str(outcome.status), "bold"), ": ", plain(outcome.note or ""))
            )
            return
        if outcome.columns:
            if execution is not self.execution:
                self.execution, self.rows, self.sort = execution, list(outcome.rows), None
                self._fill(table)
            # A \diff or \snapshots answers in its note; the grid holds the detail.
            if execution.meta and outcome.note:
                said = plain(outcome.note)
            elif outcome.skipped is not None:
                said = page_caption(execution)
            else:
                said = plain(f"{plural(len(outcome.rows), 'row')} shown")
                if outcome.more_rows:
                    said.append(", more rows exist: n fetches the next page")
            self._said = Text.assemble(head, said, f" · {outcome.elapsed_ms:.1f} ms")
            caption.update(self._caption())
        else:
            did = plain(outcome.tag or "ok")
            if outcome.rowcount is not None:
                did.append(f" · {plural(outcome.rowcount, 'row')} affected")
            if outcome.note:
                did.append_text(Text.assemble(" — ", plain(outcome.note, "bold")))
            caption.update(Text.assemble(head, did, f" · {outcome.elapsed_ms:.1f} ms"))

    def _fill(self, table: DataTable[Any]) -> None:
        """Put the loaded rows in the grid, in the order the sort (if any) says."""
        self.order = sort_order(self.rows, self.sort)
        table.clear(columns=True)
        headers = [cell(name) for name in self.columns]
        # An \explain tree marks its hot steps (sandbox.plans).
        explain = self.execution is not None and self.execution.meta == "explain"
        rows = [
            plan_row(self.rows[index]) if explain else [cell(value) for value in self.rows[index]]
            for index in self.order
        ]
        # Each column as wide as its widest cell (a cell is at most CELL_WIDTH), given up front:
        # DataTable's own auto width is settled only at its next idle, and a line drawn before
        # that (a new page's first frame) was cut to the old width and kept so.
        widths = [cell_len(header.plain) for header in headers]
        for row in rows:
            widths = [
                max(width, cell_len(text.plain)) for width, text in zip(widths, row, strict=True)
            ]
        for header, width in zip(headers, widths, strict=True):
            header.stylize("bold")
            table.add_column(header, width=width)
        for row in rows:
            table.add_row(*row)
        self._hint_keys()

    def _caption(self) -> Text:
        said = self._said.copy()
        if self.sort is not None and self.execution is not None:
            said.append_text(plain(f" · {sort_caption(self.columns, self.sort)}", "bold"))
        return said

    def show_session(self, session: str, execution: Execution | None) -> None:
        """What a session shows when it is switched to: its own latest statement."""
        if execution is not None:
            self.show(execution)
            return
        self._clear()
        self.query_one("#caption", Static).update(
            Text.assemble(plain(f"[{session}] "), "nothing run in this session yet: F5 runs one")
        )

    # ------------------------------------------------------------------ keys in the grid

    def cursor(self) -> tuple[int, int] | None:
        """The grid's cursor (row in `shown`, column), or None when it holds no rows."""
        table = self.query_one("#rows", DataTable)
        if not self.order or not table.is_valid_coordinate(table.cursor_coordinate):
            return None
        return table.cursor_coordinate.row, table.cursor_coordinate.column

    def value(self, row: int, column: int) -> Any:
        """The value in the grid's `row` and `column`, as the driver gave it."""
        return self.rows[self.order[row]][column]

    def row_number(self, row: int) -> int:
        """The number, in the query's result, of the grid's `row` (1 is the first row)."""
        outcome = self.execution.outcome if self.execution is not None else None
        first = (outcome.skipped or 0) + 1 if outcome is not None else 1
        return first + self.order[row]

    def _no_rows(self) -> None:
        self.app.notify("no rows here: run a query first (F5)", severity="warning")

    def on_data_table_cell_selected(self, event: DataTable.CellSelected) -> None:
        event.stop()
        at = self.cursor()
        if at is None:
            return
        row, column = at
        self.app.push_screen(
            CellViewer(self.columns[column], self.row_number(row), self.value(row, column))
        )

    def action_copy_cell(self) -> None:
        at = self.cursor()
        if at is None:
            self._no_rows()
            return
        row, column = at
        value = self.value(row, column)
        send_to_clipboard(self.app, cell_copy(value), copied_what(value, self.columns[column]))

    def action_copy_row(self) -> None:
        from sandbox.result_files import csv_field

        at = self.cursor()
        if at is None:
            self._no_rows()
            return
        values = self.rows[self.order[at[0]]]
        text = ",".join(csv_field(value) for value in values)
        what = f"row {self.row_number(at[0]):,} as a CSV line (NULL as an empty field)"
        send_to_clipboard(self.app, text, what)

    def action_sort(self) -> None:
        """Ascending, then descending, then the order the database returned."""
        at = self.cursor()
        if at is None:
            self._no_rows()
            return
        column = at[1]
        if self.sort is None or self.sort.column != column:
            self.sort = Sort(column, descending=False)
        elif not self.sort.descending:
            self.sort = Sort(column, descending=True)
        else:
            self.sort = None
        table = self.query_one("#rows", DataTable)
        self._fill(table)
        table.move_cursor(row=0, column=column)
        self.query_one("#caption", Static).update(self._caption())


def label(execution: Execution) -> Text:
    """Which statement a result is: its session, its line in the editor, its first words."""
    statement = execution.statement
    return Text.assemble(
        plain(f"[{execution.session}] line {statement.line} · "),
        line(short_sql(statement.text, 32), "italic"),
    )


def page_caption(execution: Execution) -> Text:
    """A later page: which rows, and exactly how they were obtained."""
    outcome = execution.outcome
    assert outcome is not None and outcome.skipped is not None
    span = page_span(outcome.skipped, len(outcome.rows), outcome.more_rows)
    at = dt.datetime.fromtimestamp(execution.sent_at or time.time()).strftime("%H:%M:%S")
    how = f" — the query run again in {execution.session} at {at}"
    if outcome.skipped:
        how += f", {plural(outcome.skipped, 'row')} skipped"
    if outcome.tx_before is not TxState.IDLE:
        how += ", inside the open transaction"
    how += "; nothing is held between pages: the data may have changed"
    if "ORDER" not in execution.kind.words:
        how += "; no ORDER BY: the order may vary"
    said = Text.assemble((span, "bold"), how)
    if outcome.more_rows or outcome.skipped:
        said.append(" · n/p: pages")
    return said


def sort_caption(columns: list[str], sort: Sort) -> str:
    direction = "descending, NULLs last" if sort.descending else "ascending, NULLs first"
    return (
        f"sorted by {columns[sort.column]} {direction} "
        "(loaded rows only, not ORDER BY; s again to change)"
    )


def sort_order(rows: list[tuple[Any, ...]], sort: Sort | None) -> list[int]:
    """Indexes of `rows` sorted by one column, as SQLite orders values: NULL, then numbers,
    text (by code point), bytes; anything else by its own order, or by its text when it has
    none (JSON). Ties keep the database's order; descending reverses it all, NULLs last."""
    indexes = list(range(len(rows)))
    if sort is None:
        return indexes
    column = sort.column
    try:
        return sorted(
            indexes, key=lambda i: _sort_key(rows[i][column], False), reverse=sort.descending
        )
    except TypeError:  # values with no order of their own (dicts, lists of mixed things)
        return sorted(
            indexes, key=lambda i: _sort_key(rows[i][column], True), reverse=sort.descending
        )


def _sort_key(value: Any, as_text: bool) -> tuple[int, Any]:
    if value is None:
        return (0, 0)
    if isinstance(value, bool | int | float | decimal.Decimal):
        return (1, value if value == value else float("-inf"))  # NaN first among numbers
    if isinstance(value, str):
        return (2, value)
    if isinstance(value, bytes | bytearray | memoryview):
        return (3, bytes(value))
    return (4, str(value) if as_text else value)


def in_flight(execution: Execution) -> Text:
    """A statement without an outcome yet: waiting on a lock, running, or queued."""
    if execution.waiting:
        holders = ", ".join(execution.waiting_on) or "another session"
        span = execution.waits[-1] if execution.waits else None
        if span is not None and span.queue:
            # PostgreSQL said who is ahead: a holder, or a waiter it is queued behind.
            said = plain(f"waiting for {span.said}", "bold yellow")
        else:
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
