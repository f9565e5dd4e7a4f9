"""What the schema browser shows: tables with row counts, columns, keys and indexes.

Read on a connection of its own, so it never touches a learner's transaction: it shows what
is committed, which is what every other session sees too.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from sandbox.targets import Target  # a type only: the app imports this module early


@dataclass(frozen=True)
class ColumnSummary:
    name: str
    type: str
    not_null: bool
    primary_key: bool


@dataclass(frozen=True)
class TableSummary:
    name: str
    rows: int | None
    columns: list[ColumnSummary] = field(default_factory=list)
    indexes: list[str] = field(default_factory=list)
    foreign_keys: list[str] = field(default_factory=list)  # "col -> other(col)"


def summarize(target: Target) -> list[TableSummary]:
    connection = target.connect("schema")
    try:
        cursor = connection.raw.cursor()
        try:
            if target.engine == "sqlite":
                return _sqlite(cursor)
            return _postgres(cursor)
        finally:
            cursor.close()
    finally:
        connection.close()


def _sqlite(c: Any) -> list[TableSummary]:
    c.execute(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name"
    )
    names = [row[0] for row in c.fetchall()]
    tables = []
    for name in names:
        quoted = '"' + name.replace('"', '""') + '"'
        c.execute(f"SELECT count(*) FROM {quoted}")
        rows = int(c.fetchone()[0])
        c.execute('SELECT name, type, "notnull", pk FROM pragma_table_info(?)', (name,))
        columns = [ColumnSummary(n, t or "", bool(nn), bool(pk)) for n, t, nn, pk in c.fetchall()]
        c.execute("SELECT name FROM pragma_index_list(?) ORDER BY name", (name,))
        indexes = [row[0] for row in c.fetchall()]
        c.execute('SELECT "from", "table", "to" FROM pragma_foreign_key_list(?)', (name,))
        fks = [f"{a} -> {b}({t or 'rowid'})" for a, b, t in c.fetchall()]
        tables.append(TableSummary(name, rows, columns, indexes, fks))
    return tables


# A table a learner's uncommitted DDL (or LOCK TABLE) holds cannot be counted without waiting
# for that transaction: the pane says "? rows" rather than wait.
_COUNT_LOCK_TIMEOUT = "200ms"


def _count(c: Any, quoted: str) -> int | None:
    import psycopg2.errors

    try:
        c.execute(f"SELECT count(*) FROM {quoted}")
    except psycopg2.errors.LockNotAvailable:
        return None
    return int(c.fetchone()[0])


def _postgres(c: Any) -> list[TableSummary]:
    c.execute(f"SET lock_timeout = '{_COUNT_LOCK_TIMEOUT}'")
    c.execute(
        "SELECT c.oid, c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE c.relkind IN ('r', 'p') AND n.nspname = ANY (current_schemas(false)) "
        "ORDER BY c.relname"
    )
    found = c.fetchall()
    tables = []
    for oid, name in found:
        quoted = '"' + name.replace('"', '""') + '"'
        rows = _count(c, quoted)
        c.execute(
            "SELECT a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull, "
            "coalesce(a.attnum = ANY (i.indkey), false) "
            "FROM pg_attribute a "
            "LEFT JOIN pg_index i ON i.indrelid = a.attrelid AND i.indisprimary "
            "WHERE a.attrelid = %s AND a.attnum > 0 AND NOT a.attisdropped ORDER BY a.attnum",
            (oid,),
        )
        columns = [ColumnSummary(n, t, bool(nn), bool(pk)) for n, t, nn, pk in c.fetchall()]
        c.execute(
            "SELECT ic.relname FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid "
            "WHERE i.indrelid = %s ORDER BY 1",
            (oid,),
        )
        indexes = [row[0] for row in c.fetchall()]
        c.execute(
            "SELECT pg_get_constraintdef(oid) FROM pg_constraint "
            "WHERE conrelid = %s AND contype = 'f' ORDER BY conname",
            (oid,),
        )
        fks = [row[0] for row in c.fetchall()]
        tables.append(TableSummary(name, rows, columns, indexes, fks))
    return tables
