"""What the guard may know about the live database, to judge predicates (schema-aware lint)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass(frozen=True)
class ColumnInfo:
    name: str
    not_null: bool = False
    primary_key: bool = False


@dataclass(frozen=True)
class TableInfo:
    name: str
    columns: dict[str, ColumnInfo] = field(default_factory=dict)  # keyed by lower-case name
    # constraint name (lower case) -> kind: "FOREIGN KEY", "CHECK", "UNIQUE", "PRIMARY KEY"
    constraints: dict[str, str] = field(default_factory=dict)

    def column(self, name: str) -> ColumnInfo | None:
        return self.columns.get(name.lower())


@dataclass(frozen=True)
class Schema:
    tables: dict[str, TableInfo] = field(default_factory=dict)  # keyed by lower-case name

    def table(self, name: str) -> TableInfo | None:
        return self.tables.get(name.lower())
