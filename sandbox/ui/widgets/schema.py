"""The schema browser: tables with row counts, their columns, keys and indexes.

Every name comes from the database: labels are `Text` (see sandbox.ui.text), never markup.
"""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Tree

from sandbox.schema_summary import TableSummary
from sandbox.transcript import plural
from sandbox.ui.text import line


class SchemaView(Tree[str]):
    DEFAULT_CSS = "SchemaView { height: 1fr; }"

    def __init__(self, **kwargs: object) -> None:
        super().__init__(Text("tables (committed)"), **kwargs)  # type: ignore[arg-type]
        self.show_root = True

    def show(self, tables: list[TableSummary]) -> None:
        self.clear()
        self.root.expand()
        if not tables:
            self.root.add_leaf(Text("no tables yet"))
            return
        for table in tables:
            rows = plural(table.rows, "row") if table.rows is not None else "? rows"
            label = Text.assemble(line(table.name, "bold"), f"  {rows}")
            node = self.root.add(label, expand=len(tables) <= 3)
            for column in table.columns:
                label = Text.assemble(line(column.name), " ", line(column.type.lower()))
                if column.primary_key:
                    label.append_text(Text.assemble(" ", ("PK", "bold")))
                elif column.not_null:
                    label.append(" not null")
                node.add_leaf(label)
            for index in table.indexes:
                node.add_leaf(Text.assemble(("index", "dim"), " ", line(index)))
            for fk in table.foreign_keys:
                node.add_leaf(Text.assemble(("fk", "dim"), " ", line(fk)))
