"""Measure what a flagged statement would do, on the learner's own session, without running it.

Counts are read in the session itself (so the learner's uncommitted rows count), inside a
scope that leaves no trace: see sandbox.guard.introspect for how each engine and transaction
state is handled. Nothing here raises for an SQL error: a failed measurement comes back as an
Impact whose `error` says why.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sandbox.guard.findings import Finding, PreviewPlan
from sandbox.guard.introspect import (
    PREVIEW_TIMEOUT_S,
    Reader,
    ReadError,
    TransactionFailed,
    run_reads,
    sqlite_databases,
)

if TYPE_CHECKING:
    from sandbox.session import Session

FAILED_TX_SUMMARY = (
    "the statement would fail: the transaction has already failed, and PostgreSQL refuses "
    "every statement until ROLLBACK (nothing was measured)"
)
_VERBS = {"delete": "delete", "update": "update", "merge": "change"}


@dataclass(frozen=True)
class Impact:
    """What a statement would touch, in plain words and numbers.

    DML: `rows` of `total` rows in the target, with a few of them in `columns`/`sample`.
    DROP TABLE / TRUNCATE: `rows` (= `total`) rows destroyed, cascaded tables included.
    DROP COLUMN: `rows` non-NULL values among `total` rows. `also` names what goes with it,
    or what else the learner should know. `error` is set when the measurement itself failed.
    """

    summary: str
    rows: int | None = None
    total: int | None = None
    columns: list[str] = field(default_factory=list)
    sample: list[tuple[Any, ...]] = field(default_factory=list)
    also: list[str] = field(default_factory=list)
    error: str | None = None


def measure(session: Session, finding: Finding, *, timeout_s: float = PREVIEW_TIMEOUT_S) -> Impact:
    """Measure `finding`'s impact on `session`'s database; never raises for SQL errors.

    The session's transaction state, savepoints, locks, snapshot and notices are the same
    afterwards as before. `timeout_s` bounds each read (a lock wait included).
    """
    if finding.preview is not None:
        plan = finding.preview
        return _guarded(session, lambda r: _measure_dml(r, plan), timeout_s, plan.table)
    tables = [name for kind, name in finding.objects if kind == "table"]
    if finding.rule in ("drop-table", "truncate") and tables:
        if finding.rule == "truncate" and session.engine == "sqlite":
            return Impact(
                summary="SQLite has no TRUNCATE: the statement would fail with a syntax error "
                f"(DELETE FROM {tables[0]} empties a table)"
            )
        drop = finding.rule == "drop-table"
        if drop and finding.cascade and session.engine == "sqlite":
            return Impact(
                summary="SQLite has no DROP TABLE ... CASCADE: the statement would fail with a "
                "syntax error"
            )

        def tables_work(reader: Reader) -> Impact:
            return _measure_tables(reader, tables, drop=drop, cascade=finding.cascade)

        return _guarded(session, tables_work, timeout_s, ", ".join(tables))
    columns = [name for kind, name in finding.objects if kind == "column"]
    if finding.rule == "drop-column" and columns and "." in columns[0]:
        table, column = columns[0].rsplit(".", 1)
        return _guarded(
            session,
            lambda r: _measure_column(r, table, column, cascade=finding.cascade),
            timeout_s,
            table,
        )
    return Impact(summary=finding.message)


def _guarded(
    session: Session, work: Callable[[Reader], Impact], timeout_s: float, table: str
) -> Impact:
    """Run `work` traceless; a failed transaction or a failed read becomes an Impact."""
    try:
        impact = run_reads(session, work, timeout_s=timeout_s)
    except TransactionFailed:
        return Impact(summary=FAILED_TX_SUMMARY)
    except ReadError as exc:
        if exc.timed_out:
            # SQLite readers never wait for locks in WAL mode: only a slow query times out.
            cause = (
                f"usually another transaction holds a lock on {table}, or the query is slow"
                if session.engine == "postgres"
                else "the query is too slow to preview"
            )
            why = f"it gave up after {timeout_s:g} s ({exc.message}); {cause}"
        else:
            why = exc.message
        return Impact(summary=f"impact could not be measured: {why}", error=exc.message)
    return impact


def _rows(n: int) -> str:
    return f"{n:,} row" if n == 1 else f"{n:,} rows"


def _with_note(reader: Reader, summary: str, also: list[str]) -> tuple[str, list[str]]:
    """Say so when the counts come from a separate connection for a reason that matters."""
    if reader.note:
        return f"{summary} (counted outside your transaction, committed rows only)", [
            *also,
            reader.note,
        ]
    return summary, also


# --------------------------------------------------------------------------- DML


def _measure_dml(reader: Reader, plan: PreviewPlan) -> Impact:
    total = int(reader.scalar(plan.total_sql) or 0)
    rows = int(reader.scalar(plan.count_sql) or 0)
    columns, sample = reader.rows(plan.sample_sql)
    verb = _VERBS.get(plan.verb, plan.verb)
    summary = f"would {verb} {rows:,} of {_rows(total)} in {plan.table}"
    summary, also = _with_note(reader, summary, [])
    return Impact(summary, rows, total, columns, sample, also)


# --------------------------------------------------------------------------- DROP / TRUNCATE


@dataclass
class _TableFacts:
    """One table named by DROP TABLE / TRUNCATE and what comes with it."""

    name: str
    exists: bool = True
    not_table: str | None = None  # it names a view or other relation, not a table
    rows: int = 0
    goes: list[str] = field(default_factory=list)  # dropped with it, CASCADE or not
    dependents: list[str] = field(default_factory=list)  # need CASCADE, which takes them too
    emptied: list[tuple[str, int]] = field(default_factory=list)  # TRUNCATE CASCADE: (table, rows)
    left: list[str] = field(default_factory=list)  # SQLite: left behind, broken or dangling


def _measure_tables(reader: Reader, names: list[str], *, drop: bool, cascade: bool) -> Impact:
    if reader.engine == "postgres":
        facts = _pg_tables(reader, names, drop=drop)
    else:
        facts = [_sqlite_table(reader, name, drop=drop) for name in names]
    parts: list[str] = []
    also: list[str] = []
    destroyed = 0
    cascaded: set[str] = set()  # a table two named tables lead to is emptied (and counted) once
    for fact in facts:
        if not fact.exists:
            parts.append(
                f"table {fact.name} does not exist: nothing to {'drop' if drop else 'empty'}"
            )
            continue
        if fact.not_table:
            parts.append(
                f"{fact.name} is a {fact.not_table}, not a table: the statement would fail"
            )
            continue
        destroyed += fact.rows
        if drop:
            parts.append(_drop_sentence(fact, cascade, also))
            continue
        emptied = [(t, n) for t, n in fact.emptied if t not in cascaded]
        cascaded.update(t for t, _ in emptied)
        shown = [f"table {t} with its {_rows(n)}" for t, n in emptied]
        holds = f"{fact.name} holds {_rows(fact.rows)}"
        if fact.dependents and not cascade:
            # TRUNCATE looks for referencing foreign keys, not rows: it fails even when the
            # referencing tables are empty.
            verb = "references" if len(fact.dependents) == 1 else "reference"
            parts.append(
                f"would fail: {', '.join(fact.dependents)} {verb} table {fact.name} (only "
                f"CASCADE would go ahead, and it would empty {', '.join(shown)} too); {holds}"
            )
            also.extend(fact.dependents + shown)
            continue
        destroyed += sum(n for _, n in emptied)
        sentence = f"would empty table {fact.name}, removing its {_rows(fact.rows)}"
        if shown:
            sentence += "; CASCADE also empties: " + ", ".join(shown)
        parts.append(sentence)
        also.extend(shown)
    summary, also = _with_note(reader, "; ".join(parts), also)
    measured = destroyed if any(f.exists and not f.not_table for f in facts) else None
    return Impact(summary, measured, measured, also=also)


def _drop_sentence(fact: _TableFacts, cascade: bool, also: list[str]) -> str:
    """What DROP TABLE does to one table; appends what goes with it to `also`."""
    if fact.dependents and not cascade:
        verb = "depends" if len(fact.dependents) == 1 else "depend"
        also.extend(fact.goes + fact.dependents + fact.left)
        return (
            f"would fail: {', '.join(fact.dependents)} {verb} on table {fact.name} (only "
            f"CASCADE would go ahead, and it would drop them too); {fact.name} holds "
            f"{_rows(fact.rows)}"
        )
    goes = fact.goes + [f"{d} (CASCADE)" for d in fact.dependents]
    sentence = f"would drop table {fact.name} with its {_rows(fact.rows)}"
    if goes:
        sentence += "; also goes: " + ", ".join(goes)
    if fact.left:
        sentence += "; left behind: " + ", ".join(fact.left)
    also.extend(goes + fact.left)
    return sentence


def _pg_resolve(reader: Reader, name: str) -> int | None:
    """The table's oid: the name as PostgreSQL would read it unquoted, else as spelled."""
    oid = reader.scalar("SELECT to_regclass(%s)::oid", (name,))
    if oid is None:
        quoted = ".".join('"' + part.replace('"', '""') + '"' for part in name.split("."))
        oid = reader.scalar("SELECT to_regclass(%s)::oid", (quoted,))
    return int(oid) if oid is not None else None


_PG_RELKINDS = {
    "v": "view",
    "m": "materialized view",
    "S": "sequence",
    "i": "index",
    "I": "index",
    "c": "type",
}
# Views and materialized views that read a relation, transitively (a view on a view goes too).
_PG_VIEWS = """
WITH RECURSIVE deps(oid) AS (
    SELECT r.ev_class FROM pg_depend d JOIN pg_rewrite r ON r.oid = d.objid
    WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass
      AND d.refobjid = %(rel)s AND r.ev_class <> %(rel)s
    UNION
    SELECT r.ev_class FROM deps
    JOIN pg_depend d ON d.refobjid = deps.oid AND d.refclassid = 'pg_class'::regclass
      AND d.classid = 'pg_rewrite'::regclass
    JOIN pg_rewrite r ON r.oid = d.objid AND r.ev_class <> deps.oid
)
SELECT CASE c.relkind WHEN 'm' THEN 'materialized view ' ELSE 'view ' END
       || c.oid::regclass::text
FROM deps JOIN pg_class c ON c.oid = deps.oid ORDER BY 1
"""
# Tables whose foreign keys reach the given ones, transitively: what TRUNCATE CASCADE empties.
_PG_REFERENCING = """
WITH RECURSIVE refs(oid) AS (
    SELECT conrelid FROM pg_constraint WHERE contype = 'f' AND confrelid = ANY (%(rels)s::oid[])
    UNION
    SELECT c.conrelid FROM pg_constraint c JOIN refs ON c.confrelid = refs.oid
    WHERE c.contype = 'f'
)
SELECT oid::regclass::text FROM refs WHERE oid <> ALL (%(rels)s::oid[]) ORDER BY 1
"""


def _pg_tables(reader: Reader, names: list[str], *, drop: bool) -> list[_TableFacts]:
    resolved = [(name, _pg_resolve(reader, name)) for name in names]
    named_oids = [oid for _, oid in resolved if oid is not None]
    facts: list[_TableFacts] = []
    for name, oid in resolved:
        fact = _TableFacts(name)
        facts.append(fact)
        if oid is None:
            fact.exists = False
            continue
        _, rows = reader.rows(
            "SELECT relkind, oid::regclass::text FROM pg_class WHERE oid = %s", (oid,)
        )
        relkind, shown = str(rows[0][0]), str(rows[0][1])
        fact.name = shown
        if relkind not in ("r", "p", "f"):
            fact.not_table = _PG_RELKINDS.get(relkind, "relation")
            continue
        fact.rows = int(reader.scalar(f"SELECT count(*) FROM {shown}"))
        params = {"rel": oid, "rels": named_oids}
        # FKs from the other named tables are not in the way: they go in the same statement.
        _, fks = reader.rows(
            "SELECT conname, conrelid::regclass::text FROM pg_constraint "
            "WHERE contype = 'f' AND confrelid = %(rel)s AND conrelid <> ALL (%(rels)s::oid[]) "
            "ORDER BY 2, 1",
            params,
        )
        if drop:
            _, indexes = reader.rows(
                "SELECT c.relname FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid "
                "WHERE i.indrelid = %(rel)s ORDER BY 1",
                params,
            )
            _, triggers = reader.rows(
                "SELECT tgname FROM pg_trigger WHERE tgrelid = %(rel)s AND NOT tgisinternal "
                "ORDER BY 1",
                params,
            )
            _, sequences = reader.rows(
                "SELECT d.objid::regclass::text FROM pg_depend d "
                "JOIN pg_class s ON s.oid = d.objid AND s.relkind = 'S' "
                "WHERE d.classid = 'pg_class'::regclass AND d.refclassid = 'pg_class'::regclass "
                "AND d.refobjid = %(rel)s AND d.deptype IN ('a', 'i') ORDER BY 1",
                params,
            )
            _, views = reader.rows(_PG_VIEWS, params)
            fact.goes = (
                [f"index {r[0]}" for r in indexes]
                + [f"trigger {r[0]}" for r in triggers]
                + [f"sequence {r[0]}" for r in sequences]
            )
            fact.dependents = [str(r[0]) for r in views] + [
                f"foreign key {con} on {table}" for con, table in fks
            ]
        else:
            # TRUNCATE checks for referencing foreign keys, not for referencing rows: it fails
            # without CASCADE even when the referencing tables are empty.
            fact.dependents = [f"foreign key {con} on {table}" for con, table in fks]
            if fks:
                _, referencing = reader.rows(_PG_REFERENCING, {"rels": [oid, *named_oids]})
                for (table,) in referencing:
                    count = int(reader.scalar(f"SELECT count(*) FROM {table}"))
                    fact.emptied.append((str(table), count))
    return facts


def _sqlite_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sqlite_find(reader: Reader, name: str) -> tuple[str, str] | None:
    """(database, table) for a possibly qualified name, resolved as SQLite would."""
    databases = sqlite_databases(reader)
    wanted = name
    if "." in name and name.split(".", 1)[0].lower() in (d.lower() for d in databases):
        first, wanted = name.split(".", 1)
        databases = [d for d in databases if d.lower() == first.lower()]
    for database in databases:
        found = reader.scalar(
            f"SELECT name FROM {_sqlite_ident(database)}.sqlite_schema "
            "WHERE type = 'table' AND name = ? COLLATE NOCASE",
            (wanted,),
        )
        if found is not None:
            return database, str(found)
    return None


def _sqlite_table(reader: Reader, name: str, *, drop: bool) -> _TableFacts:
    fact = _TableFacts(name)
    located = _sqlite_find(reader, name)
    if located is None:
        fact.exists = False
        return fact
    database, table = located
    schema = f"{_sqlite_ident(database)}.sqlite_schema"
    fact.rows = int(
        reader.scalar(f"SELECT count(*) FROM {_sqlite_ident(database)}.{_sqlite_ident(table)}")
    )
    _, owned = reader.rows(
        f"SELECT type, name FROM {schema} WHERE type IN ('index', 'trigger') "
        "AND tbl_name = ? COLLATE NOCASE ORDER BY type, name",
        (table,),
    )
    fact.goes = [f"{kind} {obj}" for kind, obj in owned]
    # SQLite keeps views that read a dropped table; they fail when next used.
    mention = re.compile(
        r"(?<![\w$])[\"`\[]?" + re.escape(table) + r"[\"`\]]?(?![\w$])", re.IGNORECASE
    )
    for db in sqlite_databases(reader):
        _, views = reader.rows(
            f"SELECT name, sql FROM {_sqlite_ident(db)}.sqlite_schema WHERE type = 'view' "
            "ORDER BY name"
        )
        fact.left += [
            f"view {view} (it reads {table} and will fail)"
            for view, sql in views
            if sql and mention.search(str(sql))
        ]
    fact.left += _sqlite_referencing(reader, database, table)
    return fact


def _sqlite_referencing(reader: Reader, database: str, table: str) -> list[str]:
    """Foreign keys in other tables of the same database that point at `table`."""
    _, fks = reader.rows(
        f'SELECT m.name, f.id, f."from", f.on_delete '
        f"FROM {_sqlite_ident(database)}.sqlite_schema m, "
        "pragma_foreign_key_list(m.name, ?) f "
        "WHERE m.type = 'table' AND f.\"table\" = ? COLLATE NOCASE "
        "AND m.name <> ? COLLATE NOCASE ORDER BY m.name, f.id, f.seq",
        (database, table, table),
    )
    # foreign_keys is per connection: only the learner's own says what their DROP would do.
    enforced = None if reader.separate else bool(reader.scalar("PRAGMA foreign_keys"))
    grouped: dict[tuple[str, int], tuple[list[str], str]] = {}
    for child, fk_id, column, on_delete in fks:
        entry = grouped.setdefault((str(child), int(fk_id)), ([], str(on_delete)))
        entry[0].append(str(column))
    found: list[str] = []
    for (child, _), (columns, on_delete) in grouped.items():
        where = " AND ".join(f"{_sqlite_ident(c)} IS NOT NULL" for c in columns)
        count = int(
            reader.scalar(
                f"SELECT count(*) FROM {_sqlite_ident(database)}.{_sqlite_ident(child)} "
                f"WHERE {where}"
            )
        )
        refer = f"{_rows(count)} refer{'s' if count == 1 else ''} to it"
        if enforced is False:
            refer += "; foreign_keys is OFF, so they are left pointing at nothing"
        elif on_delete.upper() not in ("NO ACTION", "RESTRICT"):
            refer += f"; ON DELETE {on_delete.upper()}"
        elif enforced and count:
            refer += "; with foreign_keys ON the DROP fails"
        what = f"foreign key {child}({', '.join(columns)}) ({refer})"
        found.append(what)
    return found


# --------------------------------------------------------------------------- DROP COLUMN


def _measure_column(reader: Reader, table: str, column: str, *, cascade: bool) -> Impact:
    shown = f"{table}.{column}"
    if reader.engine == "postgres":
        located = _pg_column(reader, table, column)
    else:
        located = _sqlite_column(reader, table, column)
    if isinstance(located, str):
        return Impact(summary=located)
    source, quoted_column, goes, dependents = located
    _, rows = reader.rows(f"SELECT count({quoted_column}), count(*) FROM {source}")
    values, total = int(rows[0][0]), int(rows[0][1])
    noun = "value" if values == 1 else "values"
    main = f"would drop column {shown} holding {values:,} non-NULL {noun} of {_rows(total)}"
    if dependents and not cascade:
        verb = "depends" if len(dependents) == 1 else "depend"
        summary = (
            f"would fail: {', '.join(dependents)} {verb} on column {shown} (only CASCADE would "
            f"go ahead, and they would be dropped too); {shown} holds {values:,} non-NULL "
            f"{noun} of {_rows(total)}"
        )
        also = goes + dependents
    else:
        also = goes + [f"{d} (CASCADE)" for d in dependents]
        summary = main + ("; also goes: " + ", ".join(also) if also else "")
    summary, also = _with_note(reader, summary, also)
    return Impact(summary, values, total, also=also)


# Objects that depend on one column: auto dependencies go with it, normal ones need CASCADE.
_PG_COLUMN_DEPS = """
SELECT DISTINCT label, needs_cascade FROM (
    SELECT CASE
        WHEN d.classid = 'pg_class'::regclass THEN (
            SELECT CASE c.relkind WHEN 'S' THEN 'sequence ' ELSE 'index ' END
                   || c.oid::regclass::text
            FROM pg_class c WHERE c.oid = d.objid)
        WHEN d.classid = 'pg_constraint'::regclass THEN (
            SELECT CASE con.contype WHEN 'f' THEN 'foreign key ' ELSE 'constraint ' END
                   || con.conname
                   || CASE WHEN con.conrelid <> %(rel)s
                      THEN ' on ' || con.conrelid::regclass::text ELSE '' END
            FROM pg_constraint con WHERE con.oid = d.objid)
        WHEN d.classid = 'pg_rewrite'::regclass THEN (
            SELECT CASE c.relkind WHEN 'm' THEN 'materialized view ' ELSE 'view ' END
                   || c.oid::regclass::text
            FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
            WHERE r.oid = d.objid AND r.ev_class <> %(rel)s)
        WHEN d.classid = 'pg_trigger'::regclass THEN (
            SELECT 'trigger ' || t.tgname FROM pg_trigger t
            WHERE t.oid = d.objid AND NOT t.tgisinternal)
        END AS label,
        d.deptype = 'n' AS needs_cascade
    FROM pg_depend d
    WHERE d.refclassid = 'pg_class'::regclass AND d.refobjid = %(rel)s
      AND d.refobjsubid = %(att)s
) deps WHERE label IS NOT NULL ORDER BY needs_cascade, label
"""


def _pg_column(
    reader: Reader, table: str, column: str
) -> str | tuple[str, str, list[str], list[str]]:
    oid = _pg_resolve(reader, table)
    if oid is None:
        return f"table {table} does not exist: the statement would fail"
    shown = str(reader.scalar("SELECT %s::oid::regclass::text", (oid,)))
    # The finding lost any quotes: prefer the name folded as unquoted, else the exact spelling.
    _, rows = reader.rows(
        "SELECT attnum, attname FROM pg_attribute "
        "WHERE attrelid = %(rel)s AND attnum > 0 AND NOT attisdropped "
        "AND attname IN (%(name)s, lower(%(name)s)) "
        "ORDER BY attname = lower(%(name)s) DESC LIMIT 1",
        {"rel": oid, "name": column},
    )
    if not rows:
        return f"column {table}.{column} does not exist: the statement would fail"
    attnum, attname = int(rows[0][0]), str(rows[0][1])
    _, deps = reader.rows(_PG_COLUMN_DEPS, {"rel": oid, "att": attnum})
    goes = [str(label) for label, needs in deps if not needs]
    dependents = [str(label) for label, needs in deps if needs]
    quoted = '"' + attname.replace('"', '""') + '"'
    return shown, quoted, goes, dependents


def _sqlite_column(
    reader: Reader, table: str, column: str
) -> str | tuple[str, str, list[str], list[str]]:
    located = _sqlite_find(reader, table)
    if located is None:
        return f"table {table} does not exist: the statement would fail"
    database, name = located
    found = reader.scalar(
        "SELECT name FROM pragma_table_info(?, ?) WHERE name = ? COLLATE NOCASE",
        (name, database, column),
    )
    if found is None:
        return f"column {table}.{column} does not exist: the statement would fail"
    source = f"{_sqlite_ident(database)}.{_sqlite_ident(name)}"
    return source, _sqlite_ident(str(found)), [], []
