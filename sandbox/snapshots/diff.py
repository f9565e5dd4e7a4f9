"""Row-level diff between a snapshot of a sandbox (before) and the sandbox now (after).

It answers "which rows did my DELETE take?": tables added and dropped, columns added, dropped
and retyped, and for every table on both sides the rows added, removed and changed, compared
over the columns both sides share. A table keyed the same way on both sides is compared by its
primary key (so an UPDATE shows as a change of named columns); any other table is compared as a
multiset of whole rows, duplicates included.

Both connections are only read, one table at a time, with driver values compared as the driver
returns them. SQLite's storage class is part of a value (1, 1.0 and '1' differ there);
PostgreSQL values compare with Python equality, since a column has one type.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import decimal
import heapq
import json
import operator
import uuid
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

from sandbox.outcome import json_value
from sandbox.targets import quote_ident

ENGINES = ("sqlite", "postgres")
FETCH_SIZE = 2000  # rows per fetchmany
_VALUE_WIDTH = 60  # characters of one value in display()
NO_KEY = "—"

Row = tuple[Any, ...]
T = TypeVar("T")


# ---------------------------------------------------------------------------------- the result


@dataclass(frozen=True)
class RowChange:
    """One row, found by its key on both sides, whose `columns` differ."""

    key: tuple[Any, ...]
    before: dict[str, Any]  # the whole row over the common columns
    after: dict[str, Any]
    columns: list[str]

    def to_json(self) -> dict[str, Any]:
        return {
            "key": [json_value(v) for v in self.key],
            "columns": list(self.columns),
            "before": _row_json(self.before),
            "after": _row_json(self.after),
        }


@dataclass(frozen=True)
class RetypedColumn:
    """A column on both sides whose declared type differs."""

    column: str
    before: str
    after: str

    def to_json(self) -> dict[str, Any]:
        return {"column": self.column, "before": self.before, "after": self.after}


@dataclass(frozen=True)
class TableDiff:
    """What changed in one table present on both sides; examples capped at the diff's limit."""

    table: str
    key_columns: list[str]  # empty: compared as a multiset of whole rows
    added: list[dict[str, Any]] = field(default_factory=list)
    removed: list[dict[str, Any]] = field(default_factory=list)
    changed: list[RowChange] = field(default_factory=list)
    added_count: int = 0
    removed_count: int = 0
    changed_count: int = 0
    columns_added: list[str] = field(default_factory=list)
    columns_dropped: list[str] = field(default_factory=list)
    columns_retyped: list[RetypedColumn] = field(default_factory=list)
    truncated: bool = False

    @property
    def is_empty(self) -> bool:
        return not (
            self.added_count
            or self.removed_count
            or self.changed_count
            or self.columns_added
            or self.columns_dropped
            or self.columns_retyped
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "key_columns": list(self.key_columns),
            "columns_added": list(self.columns_added),
            "columns_dropped": list(self.columns_dropped),
            "columns_retyped": [c.to_json() for c in self.columns_retyped],
            "added_count": self.added_count,
            "removed_count": self.removed_count,
            "changed_count": self.changed_count,
            "truncated": self.truncated,
            "added": [_row_json(r) for r in self.added],
            "removed": [_row_json(r) for r in self.removed],
            "changed": [c.to_json() for c in self.changed],
        }

    def summary(self) -> str:
        """`users: column note added, 2 changed, 1 added`."""
        parts = [f"column {c} added" for c in self.columns_added]
        parts += [f"column {c} dropped" for c in self.columns_dropped]
        parts += [f"column {c.column} retyped" for c in self.columns_retyped]
        counts = [
            (n, kind)
            for n, kind in (
                (self.removed_count, "removed"),
                (self.changed_count, "changed"),
                (self.added_count, "added"),
            )
            if n
        ]
        if len(counts) == 1:
            n, kind = counts[0]
            parts.append(f"{n:,} {'row' if n == 1 else 'rows'} {kind}")
        else:
            parts += [f"{n:,} {kind}" for n, kind in counts]
        return f"{self.table}: {', '.join(parts)}"

    def display_rows(self) -> list[tuple[Any, ...]]:
        t = self.table
        rows: list[tuple[Any, ...]] = [(t, "column added", NO_KEY, c) for c in self.columns_added]
        rows += [(t, "column dropped", NO_KEY, c) for c in self.columns_dropped]
        rows += [
            (t, "column retyped", NO_KEY, f"{c.column}: {c.before} → {c.after}")
            for c in self.columns_retyped
        ]
        for kind, examples, count in (
            ("removed", self.removed, self.removed_count),
            ("changed", self.changed, self.changed_count),
            ("added", self.added, self.added_count),
        ):
            for example in examples:
                if isinstance(example, RowChange):
                    key = _render_pairs(zip(self.key_columns, example.key, strict=True))
                    text = ", ".join(
                        f"{c}: {_literal(example.before[c])} → {_literal(example.after[c])}"
                        for c in example.columns
                    )
                    rows.append((t, kind, key, text))
                else:
                    key = _render_pairs((c, example[c]) for c in self.key_columns)
                    rows.append((t, kind, key or NO_KEY, _render_pairs(example.items())))
            if count > len(examples):
                rows.append((t, kind, "", f"… {count - len(examples):,} more"))
        return rows


@dataclass(frozen=True)
class Diff:
    """Everything that differs between two databases; `tables` holds only changed tables."""

    engine: str
    tables_added: list[str] = field(default_factory=list)
    tables_dropped: list[str] = field(default_factory=list)
    tables: list[TableDiff] = field(default_factory=list)

    @property
    def is_empty(self) -> bool:
        return not (self.tables_added or self.tables_dropped or self.tables)

    def table(self, name: str) -> TableDiff | None:
        """The diff of the table displayed as `name`, or None when it did not change."""
        return next((t for t in self.tables if t.table == name), None)

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "summary": self.summary(),
            "tables_added": list(self.tables_added),
            "tables_dropped": list(self.tables_dropped),
            "tables": [t.to_json() for t in self.tables],
        }

    def summary(self) -> str:
        """One line for people: `table audit dropped · accounts: 1,000 rows removed`."""
        parts = [f"table {t} dropped" for t in self.tables_dropped]
        parts += [f"table {t} added" for t in self.tables_added]
        parts += [t.summary() for t in self.tables]
        return " · ".join(parts) or "no changes"

    def display(self) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Columns and rows for a results grid: one row per example, `… N more` when capped."""
        rows: list[tuple[Any, ...]] = [
            (t, "table dropped", NO_KEY, "") for t in self.tables_dropped
        ]
        rows += [(t, "table added", NO_KEY, "") for t in self.tables_added]
        for table in self.tables:
            rows += table.display_rows()
        return ["table", "change", "key", "row"], rows


# ---------------------------------------------------------------------------------- diffing


def diff_databases(before: Any, after: Any, engine: str, *, limit: int = 100) -> Diff:
    """Compare two databases of `engine` ("sqlite" or "postgres") table by table.

    `before` and `after` are raw DBAPI connections (sqlite3 in autocommit, or psycopg2 with
    autocommit on), only ever read. On PostgreSQL each side is read in one REPEATABLE READ READ
    ONLY transaction, and on a SQLite file in WAL mode in one read transaction, so a session
    committing meanwhile cannot tear the picture; both end before this returns. A connection
    already inside a transaction is read as it is and left in it.

    Counts are exact; at most `limit` example rows of each kind are kept per table, ordered by
    key (or by whole row). A table that cannot be read (no privilege, a lock that does not go
    away, a virtual table whose module is not loaded...) raises the driver's exception.
    """
    if engine not in ENGINES:
        raise ValueError(f"unknown engine {engine!r}: use one of {', '.join(ENGINES)}")
    if limit < 0:
        raise ValueError("limit must be >= 0")
    with _reading(before, engine), _reading(after, engine):
        old = _tables(before, engine)
        new = _tables(after, engine)
        diffs = []
        for ident in sorted(old.keys() & new.keys(), key=lambda i: new[i].display):
            table = _diff_table(before, after, engine, old[ident], new[ident], limit)
            if not table.is_empty:
                diffs.append(table)
    return Diff(
        engine=engine,
        tables_added=sorted(new[i].display for i in new.keys() - old.keys()),
        tables_dropped=sorted(old[i].display for i in old.keys() - new.keys()),
        tables=diffs,
    )


@dataclass(frozen=True)
class _Column:
    name: str
    type: str


@dataclass
class _Table:
    display: str
    source: str  # the quoted FROM item
    columns: list[_Column] = field(default_factory=list)
    primary_key: list[str] = field(default_factory=list)
    # A PostgreSQL partition: its rows are read through its partitioned root.
    partition: bool = False


def _diff_table(
    before: Any, after: Any, engine: str, old: _Table, new: _Table, limit: int
) -> TableDiff:
    fold = _folder(engine)
    old_columns = {fold(c.name): c for c in old.columns}
    new_names = {fold(c.name) for c in new.columns}
    common = [c for c in new.columns if fold(c.name) in old_columns]
    names = [c.name for c in common]
    schema_changes: dict[str, Any] = {
        "columns_added": [c.name for c in new.columns if fold(c.name) not in old_columns],
        "columns_dropped": [c.name for c in old.columns if fold(c.name) not in new_names],
        "columns_retyped": [
            RetypedColumn(c.name, old_columns[fold(c.name)].type, c.type)
            for c in common
            if _type_key(old_columns[fold(c.name)].type) != _type_key(c.type)
        ],
    }
    same_key = bool(new.primary_key) and [fold(c) for c in old.primary_key] == [
        fold(c) for c in new.primary_key
    ]
    key_columns = list(new.primary_key) if same_key else []
    if old.partition and new.partition:
        return TableDiff(new.display, key_columns, **schema_changes)

    old_rows = _read(before, engine, old.source, [old_columns[fold(n)].name for n in names])
    new_rows = _read(after, engine, new.source, names)
    normalize = _normalizer(engine)
    rows: _RowDiff | None = None
    if key_columns:
        folded = [fold(n) for n in names]
        key_index = [folded.index(fold(c)) for c in key_columns]
        rows = _by_key(old_rows, new_rows, key_index, normalize, _sameness(engine), limit)
    if rows is None:
        # No common key, or a "key" that repeats (SQLite lets a PRIMARY KEY hold many NULLs).
        key_columns = []
        rows = _as_multisets(old_rows, new_rows, normalize, limit)

    def as_dict(row: Row) -> dict[str, Any]:
        return dict(zip(names, row, strict=True))

    changes = [
        RowChange(
            key=tuple(new_row[i] for i in rows.key_index),
            before=as_dict(old_row),
            after=as_dict(new_row),
            columns=[names[i] for i in columns],
        )
        for old_row, new_row, columns in rows.changed
    ]
    return TableDiff(
        table=new.display,
        key_columns=key_columns,
        added=[as_dict(r) for r in rows.added],
        removed=[as_dict(r) for r in rows.removed],
        changed=changes,
        added_count=rows.added_count,
        removed_count=rows.removed_count,
        changed_count=rows.changed_count,
        truncated=(
            rows.added_count > len(rows.added)
            or rows.removed_count > len(rows.removed)
            or rows.changed_count > len(rows.changed)
        ),
        **schema_changes,
    )


@dataclass
class _RowDiff:
    key_index: list[int]
    added: list[Row]
    removed: list[Row]
    changed: list[tuple[Row, Row, list[int]]]  # before, after, indexes of differing columns
    added_count: int
    removed_count: int
    changed_count: int


def _by_key(
    old_rows: list[Row],
    new_rows: list[Row],
    key_index: list[int],
    normalize: Callable[[Row], Hashable],
    same: Callable[[Any, Any], bool],
    limit: int,
) -> _RowDiff | None:
    old_map = _index(old_rows, key_index, normalize)
    new_map = _index(new_rows, key_index, normalize)
    if old_map is None or new_map is None:
        return None
    added = [row for key, row in new_map.items() if key not in old_map]
    removed = [row for key, row in old_map.items() if key not in new_map]
    changed: list[tuple[Row, Row, list[int]]] = []
    for key, new_row in new_map.items():
        old_row = old_map.get(key)
        if old_row is not None and normalize(old_row) != normalize(new_row):
            columns = [
                i for i, (a, b) in enumerate(zip(old_row, new_row, strict=True)) if not same(a, b)
            ]
            changed.append((old_row, new_row, columns))

    def by_key(row: Row) -> tuple[Any, ...]:
        return tuple(_sort_key(row[i]) for i in key_index)

    return _RowDiff(
        key_index=key_index,
        added=_smallest(added, limit, by_key),
        removed=_smallest(removed, limit, by_key),
        changed=_smallest(changed, limit, lambda change: by_key(change[1])),
        added_count=len(added),
        removed_count=len(removed),
        changed_count=len(changed),
    )


def _index(
    rows: list[Row], key_index: list[int], normalize: Callable[[Row], Hashable]
) -> dict[Hashable, Row] | None:
    """Rows by normalized key; None when a key repeats."""
    pick = operator.itemgetter(*key_index)
    keys: Iterable[Hashable]
    if len(key_index) == 1:
        keys = (normalize((value,)) for value in map(pick, rows))
    else:
        keys = map(normalize, map(pick, rows))
    out = dict(zip(keys, rows, strict=True))
    return out if len(out) == len(rows) else None


def _as_multisets(
    old_rows: list[Row], new_rows: list[Row], normalize: Callable[[Row], Hashable], limit: int
) -> _RowDiff:
    raw: dict[Hashable, Row] = {}

    def tally(rows: list[Row]) -> Counter[Hashable]:
        counts: Counter[Hashable] = Counter()
        for row in rows:
            norm = normalize(row)
            counts[norm] += 1
            raw.setdefault(norm, row)
        return counts

    old_counts, new_counts = tally(old_rows), tally(new_rows)
    added, removed = new_counts - old_counts, old_counts - new_counts

    def examples(counts: Counter[Hashable]) -> list[Row]:
        out: list[Row] = []
        for norm in _smallest(list(counts), limit, lambda n: _row_sort_key(raw[n])):
            out += [raw[norm]] * min(counts[norm], limit - len(out))
        return out

    return _RowDiff(
        key_index=[],
        added=examples(added),
        removed=examples(removed),
        changed=[],
        added_count=added.total(),
        removed_count=removed.total(),
        changed_count=0,
    )


def _smallest(items: list[T], limit: int, key: Callable[[T], Any]) -> list[T]:
    if len(items) <= limit:
        return sorted(items, key=key)
    return heapq.nsmallest(limit, items, key=key)


# ---------------------------------------------------------------------------------- values


# Types whose Python equality and hash already say what the driver's value says.
_PLAIN: frozenset[type] = frozenset(
    {type(None), bool, int, str, bytes, dt.datetime, dt.date, dt.time, dt.timedelta, uuid.UUID}
)
# NaN is not equal to itself, and its hash is its identity: give every NaN one stand-in.
_NAN = object()
_UNHASHABLE = object()


def _hashable(value: Any) -> Hashable:
    """A hashable stand-in that is equal exactly when the driver's values are equal."""
    if type(value) in _PLAIN:
        return value  # type: ignore[no-any-return]
    if isinstance(value, float | decimal.Decimal) and value != value:
        return _NAN
    if isinstance(value, list | tuple):
        return tuple(_hashable(v) for v in value)  # arrays
    if isinstance(value, dict):
        return frozenset((k, _hashable(v)) for k, v in value.items())  # json, hstore
    if isinstance(value, memoryview | bytearray):
        return bytes(value)  # bytea
    try:
        hash(value)
    except TypeError:
        return (_UNHASHABLE, type(value).__qualname__, repr(value))
    return value  # type: ignore[no-any-return]


def _normalize_sqlite(row: Row) -> Hashable:
    # The storage class is part of a SQLite value: 1, 1.0 and '1' are three values.
    return (row, tuple(map(type, row)))


def _normalize_postgres(row: Row) -> Hashable:
    if all(type(v) in _PLAIN for v in row):
        return row
    return tuple(_hashable(v) for v in row)


def _same_sqlite(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def _same_postgres(a: Any, b: Any) -> bool:
    return _hashable(a) == _hashable(b)


def _normalizer(engine: str) -> Callable[[Row], Hashable]:
    return _normalize_sqlite if engine == "sqlite" else _normalize_postgres


def _sameness(engine: str) -> Callable[[Any, Any], bool]:
    return _same_sqlite if engine == "sqlite" else _same_postgres


def _sort_key(value: Any) -> tuple[Any, ...]:
    """An order over any mix of driver values that never raises: (type rank, comparable)."""
    if value is None:
        return (0,)
    if isinstance(value, int | float | decimal.Decimal):
        if value != value:
            return (2,)
        return (1, value, type(value).__name__)  # 1.0 ties with 1: the type name decides
    if isinstance(value, str):
        return (3, value)
    if isinstance(value, bytes | bytearray | memoryview):
        return (4, bytes(value))
    if isinstance(value, dt.datetime):
        # Naive and aware datetimes do not compare; their UTC texts do.
        moment = value.astimezone(dt.UTC) if value.tzinfo else value
        return (5, moment.isoformat())
    if isinstance(value, dt.date):
        return (6, value.isoformat())
    if isinstance(value, dt.time):
        return (7, value.isoformat())
    if isinstance(value, dt.timedelta):
        return (8, value)
    if isinstance(value, uuid.UUID):
        return (9, str(value))
    if isinstance(value, list | tuple):
        return (10, tuple(_sort_key(v) for v in value))
    if isinstance(value, dict):
        return (11, tuple(sorted((str(k), _sort_key(v)) for k, v in value.items())))
    return (12, type(value).__qualname__, repr(value))


def _row_sort_key(row: Row) -> tuple[Any, ...]:
    return tuple(_sort_key(v) for v in row)


def _row_json(row: dict[str, Any]) -> dict[str, Any]:
    return {name: json_value(value) for name, value in row.items()}


def _literal(value: Any) -> str:
    """A value as SQL would write it, shortened for a grid cell."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | decimal.Decimal):
        return str(value)
    if isinstance(value, str):
        text = "'" + value.replace("'", "''") + "'"
    elif isinstance(value, bytes | bytearray | memoryview):
        text = "'\\x" + bytes(value).hex() + "'"
    elif isinstance(value, list | tuple | dict):
        text = json.dumps(json_value(value), ensure_ascii=False)
    else:
        text = "'" + str(json_value(value)) + "'"
    if len(text) > _VALUE_WIDTH:
        text = text[: _VALUE_WIDTH - 1] + "…"
    return text


def _render_pairs(pairs: Iterable[tuple[str, Any]]) -> str:
    return ", ".join(f"{name}={_literal(value)}" for name, value in pairs)


# ---------------------------------------------------------------------------------- catalogs


def _folder(engine: str) -> Callable[[str], str]:
    """How names are matched: SQLite folds ASCII case, PostgreSQL names are exact."""
    if engine == "sqlite":
        return _ascii_lower
    return str


_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def _ascii_lower(name: str) -> str:
    return name.translate(_ASCII_LOWER)


def _type_key(declared: str) -> str:
    return " ".join(declared.split()).lower()


def _cursor(conn: Any, engine: str) -> Any:
    """A plain cursor, whatever row or cursor factory the connection was given."""
    if engine == "sqlite":
        cursor = conn.cursor()
        cursor.row_factory = None
        return cursor
    import psycopg2.extensions

    return conn.cursor(cursor_factory=psycopg2.extensions.cursor)


@contextlib.contextmanager
def _reading(conn: Any, engine: str) -> Iterator[None]:
    """One consistent read of `conn` where that costs nobody a lock; no transaction outlives it."""
    if engine == "postgres":
        import psycopg2.extensions

        if conn.get_transaction_status() != psycopg2.extensions.TRANSACTION_STATUS_IDLE:
            yield  # the caller's transaction: read inside it, leave it as it is
            return
        if not conn.autocommit:
            try:
                yield  # psycopg2 opened a transaction on the first SELECT: end it
            finally:
                conn.rollback()
            return
        begin = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"
    else:
        if conn.in_transaction:
            yield
            return
        # In rollback-journal mode a read transaction would hold off every writer's COMMIT
        # for the whole diff; in WAL mode it costs nobody anything.
        cursor = _cursor(conn, engine)
        try:
            cursor.execute("PRAGMA main.journal_mode")
            wal = str(cursor.fetchone()[0]).lower() == "wal"
        finally:
            cursor.close()
        if not wal:
            yield
            return
        begin = "BEGIN"
    _execute(conn, engine, begin)
    try:
        yield
    except BaseException:
        with contextlib.suppress(Exception):
            _execute(conn, engine, "ROLLBACK")
        raise
    _execute(conn, engine, "ROLLBACK")


def _execute(conn: Any, engine: str, sql: str) -> None:
    cursor = _cursor(conn, engine)
    try:
        cursor.execute(sql)
    finally:
        cursor.close()


def _read(conn: Any, engine: str, source: str, columns: Sequence[str]) -> list[Row]:
    """Every row of `source` over `columns` (no columns: one empty row per row)."""
    select = ", ".join(quote_ident(c) for c in columns) if columns else "1"
    cursor = _cursor(conn, engine)
    try:
        cursor.execute(f"SELECT {select} FROM {source}")
        rows: list[Row] = []
        while batch := cursor.fetchmany(FETCH_SIZE):
            rows += batch if columns else [() for _ in batch]
        return rows
    finally:
        cursor.close()


def _tables(conn: Any, engine: str) -> dict[Hashable, _Table]:
    cursor = _cursor(conn, engine)
    try:
        return _sqlite_tables(cursor) if engine == "sqlite" else _postgres_tables(cursor)
    finally:
        cursor.close()


_SQLITE_COLUMNS = """
SELECT m.name, p.name, p.type, p.pk
FROM main.sqlite_schema AS m JOIN pragma_table_xinfo(m.name, 'main') AS p
WHERE m.type = 'table' AND m.name NOT LIKE 'sqlite\\_%' ESCAPE '\\'
  AND coalesce(m.sql, '') NOT LIKE 'CREATE VIRTUAL %'
  AND p.hidden <> 1
ORDER BY m.name, p.cid
"""


def _sqlite_tables(cursor: Any) -> dict[Hashable, _Table]:
    tables: dict[Hashable, _Table] = {}
    keys: dict[Hashable, list[tuple[int, str]]] = {}
    cursor.execute(_SQLITE_COLUMNS)
    for table, column, declared, pk in cursor.fetchall():
        ident = _ascii_lower(table)
        entry = tables.setdefault(ident, _Table(table, "main." + quote_ident(table)))
        entry.columns.append(_Column(column, declared or ""))
        if pk:
            keys.setdefault(ident, []).append((pk, column))
    for table_ident, pairs in keys.items():
        tables[table_ident].primary_key = [column for _, column in sorted(pairs)]
    return tables


# Ordinary and partitioned tables of every schema a person can make tables in.
_PG_TABLES = """
SELECT c.oid FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p') AND n.nspname NOT IN ('pg_catalog', 'information_schema')
  AND n.nspname NOT LIKE 'pg\\_toast%' AND n.nspname NOT LIKE 'pg\\_temp\\_%'
"""
_PG_LIST = f"""
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relispartition
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE c.oid IN ({_PG_TABLES})
"""
_PG_COLUMNS = f"""
SELECT a.attrelid, a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod)
FROM pg_catalog.pg_attribute a
WHERE a.attrelid IN ({_PG_TABLES}) AND a.attnum > 0 AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""
_PG_PRIMARY_KEYS = f"""
SELECT i.indrelid, a.attname
FROM pg_catalog.pg_index i
CROSS JOIN LATERAL unnest(i.indkey::int2[]) WITH ORDINALITY AS k(attnum, position)
JOIN pg_catalog.pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum
WHERE i.indisprimary AND i.indrelid IN ({_PG_TABLES})
ORDER BY i.indrelid, k.position
"""


def _postgres_tables(cursor: Any) -> dict[Hashable, _Table]:
    by_oid: dict[int, _Table] = {}
    tables: dict[Hashable, _Table] = {}
    cursor.execute(_PG_LIST)
    for oid, schema, name, kind, partition in cursor.fetchall():
        qualified = f"{quote_ident(schema)}.{quote_ident(name)}"
        # ONLY: an inheritance parent's rows without its children's, which are tables too.
        entry = _Table(
            display=name if schema == "public" else f"{schema}.{name}",
            source=qualified if kind == "p" else "ONLY " + qualified,
            partition=bool(partition),
        )
        by_oid[oid] = tables[(schema, name)] = entry
    cursor.execute(_PG_COLUMNS)
    for oid, column, declared in cursor.fetchall():
        if oid in by_oid:  # outside a snapshot a table may come between two catalog reads
            by_oid[oid].columns.append(_Column(column, declared))
    cursor.execute(_PG_PRIMARY_KEYS)
    for oid, column in cursor.fetchall():
        if oid in by_oid:
            by_oid[oid].primary_key.append(column)
    return tables
