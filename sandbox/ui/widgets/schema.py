"""The schema browser: tables with row counts, their columns, keys and indexes."""

from __future__ import annotations

from textual.widgets import Tree

from sandbox.schema_summary import TableSummary
from sandbox.transcript import plural


class SchemaView(Tree[str]):
    DEFAULT_CSS = "SchemaView { height: 1fr; }"

    def __init__(self, **kwargs: object) -> None:
        super().__init__("tables (committed)", **kwargs)  # type: ignore[arg-type]
        self.show_root = True

    def show(self, tables: list[TableSummary]) -> None:
        self.clear()
        self.root.expand()
        if not tables:
            self.root.add_leaf("no tables yet")
            return
        for table in tables:
            rows = plural(table.rows, "row") if table.rows is not None else "? rows"
            node = self.root.add(f"[b]{table.name}[/b]  {rows}", expand=len(tables) <= 3)
            for column in table.columns:
                marks = " [b]PK[/b]" if column.primary_key else ""
                marks += " not null" if column.not_null and not column.primary_key else ""
                node.add_leaf(f"{column.name} {column.type.lower()}{marks}")
            for index in table.indexes:
                node.add_leaf(f"[dim]index[/] {index}")
            for fk in table.foreign_keys:
                node.add_leaf(f"[dim]fk[/] {fk}")
