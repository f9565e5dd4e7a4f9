"""Copy a live PostgreSQL database into an empty one while its sessions stay connected.

`CREATE DATABASE snap TEMPLATE live` is exact and fast, but PostgreSQL refuses it while anyone is
connected to `live`, and a sandbox's sessions always are. So this module rebuilds the live
database's objects from the catalogs and streams the rows with COPY, into a database made from
template0 that is later itself used as a template to restore; the copy must therefore be
faithful, and anything it cannot reproduce is refused up front (`UnsupportedObject`) rather than
silently left out.

Reading happens in one REPEATABLE READ READ ONLY transaction, so the rows are one committed
state: a learner's uncommitted INSERT is not in the copy. The pg_get_*def functions read the
latest catalog rather than that snapshot, so every table and view is locked (ACCESS SHARE, the
lock SELECT takes) *before* the snapshot is taken: committed DDL on them is then either in the
snapshot or waits for the copy. An uncommitted ALTER/TRUNCATE/DROP holds ACCESS EXCLUSIVE; the
lock waits only `lock_timeout_ms` and then fails as `LockBusy`, naming the table.

What the snapshot does not cover: LOCK TABLE refuses materialized views and sequences, so they
are locked (by reading them) just after the snapshot; sequences are not transactional and are
copied as they are at that moment (never behind the rows); function and type definitions come
from the latest catalog, so a CREATE OR REPLACE FUNCTION committed during the copy may show. A
materialized view is refilled by REFRESH and its rows compared with the live one's, which
catches a stale view (and a refresh that slipped in after the snapshot).

Writing happens in one transaction in this order: schemas; types, functions, sequences, tables,
views and materialized views (created until a fixpoint, so dependencies sort themselves out);
sequence states; rows; materialized view refreshes (checked against the live rows); constraints
and indexes; foreign keys; triggers (after the rows, so they do not fire during the load);
comments; ANALYZE of the tables the live database has planner statistics for.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import psycopg2
from psycopg2 import errors

from sandbox.targets import quote_ident


class UnsupportedObject(Exception):
    """The live database holds something the copier cannot reproduce faithfully.

    The message names every such object (up to a few), so the learner knows what to drop.
    """


class LockBusy(Exception):
    """Another session holds a lock the copy would have to wait for (message names the object)."""


@dataclass(frozen=True)
class CopyStats:
    """What one copy moved."""

    tables: int
    rows: int
    bytes: int  # bytes of COPY data moved
    elapsed_ms: float


# A table bigger than this spills to a temporary file, so memory stays bounded by it.
_SPOOL_BYTES = 8 * 1024 * 1024
_READ_CHUNK = 1024 * 1024
# Attempts at locking a consistent set of tables while another session creates or drops some.
_LOCK_ATTEMPTS = 5
# The most refusals one message lists; the rest are counted.
_REFUSALS_SHOWN = 8

# Learners cannot make schemas named pg_* (reserved), so this leaves exactly the user schemas.
_USER_SCHEMA = "pg_catalog.left(n.nspname, 3) <> 'pg_' AND n.nspname <> 'information_schema'"
# Objects an extension created are the extension's business (and extensions are refused).
_NOT_MEMBER = (
    "NOT EXISTS (SELECT 1 FROM pg_depend e WHERE e.classid = '{catalog}'::regclass "
    "AND e.objid = {oid} AND e.deptype = 'e')"
)
# Display names for messages: quoted only where needed, schema left out for public. Qualified
# (like everything _LOCKABLE uses): it runs once under the live database's own search_path.
_SHOWN = (
    "CASE WHEN {ns}.nspname = 'public' THEN pg_catalog.quote_ident({name}) "
    "ELSE pg_catalog.quote_ident({ns}.nspname) || '.' || pg_catalog.quote_ident({name}) END"
)
_SHOWN_REL = _SHOWN.format(ns="n", name="c.relname")
_KIND_NAMES = {
    "r": "table",
    "p": "partitioned table",
    "f": "foreign table",
    "v": "view",
    "m": "materialized view",
    "S": "sequence",
    "i": "index",
}

# Asked outside the snapshot (it must be known before the locks are taken) and again inside it.
_LOCKABLE = f"""
SELECT c.oid, c.relkind, n.nspname, c.relname, {_SHOWN_REL}
FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
WHERE {_USER_SCHEMA} AND c.relkind IN ('r', 'v')
ORDER BY c.oid
"""

_REFUSALS = (
    f"""SELECT 'rule ' || quote_ident(r.rulename) || ' on ' || {_SHOWN_REL}
    FROM pg_rewrite r JOIN pg_class c ON c.oid = r.ev_class
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE {_USER_SCHEMA} AND r.rulename <> '_RETURN'""",
    f"""SELECT 'row level security policy ' || quote_ident(p.polname) || ' on table '
        || {_SHOWN_REL}
    FROM pg_policy p JOIN pg_class c ON c.oid = p.polrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace""",
    f"""SELECT 'row level security enabled on table ' || {_SHOWN_REL}
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE {_USER_SCHEMA} AND (c.relrowsecurity OR c.relforcerowsecurity)""",
    f"""SELECT CASE WHEN c.relkind = 'p' THEN 'partitioned table '
                    WHEN c.relkind = 'f' THEN 'foreign table '
                    WHEN c.relispartition THEN 'partition '
                    ELSE 'typed table ' END || {_SHOWN_REL}
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE {_USER_SCHEMA} AND c.relkind IN ('r', 'p', 'f')
      AND (c.relkind <> 'r' OR c.relispartition OR c.reloftype <> 0)
    ORDER BY c.oid""",
    f"""SELECT 'table ' || {_SHOWN_REL} || ' inherits from '
        || {_SHOWN.format(ns="pn", name="p.relname")}
    FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_class p ON p.oid = i.inhparent
    JOIN pg_namespace pn ON pn.oid = p.relnamespace
    WHERE NOT c.relispartition""",
    f"""SELECT CASE c.relkind WHEN 'i' THEN 'index ' WHEN 'm' THEN 'materialized view '
                ELSE 'table ' END || {_SHOWN_REL} || ' is in tablespace ' || quote_ident(t.spcname)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    JOIN pg_tablespace t ON t.oid = c.reltablespace
    WHERE {_USER_SCHEMA} AND c.relkind IN ('r', 'm', 'i')""",
    f"""SELECT 'table ' || {_SHOWN_REL} || ' uses access method ' || quote_ident(a.amname)
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_am a ON a.oid = c.relam
    WHERE {_USER_SCHEMA} AND c.relkind IN ('r', 'm') AND a.amname <> 'heap'""",
    f"""SELECT 'invalid index ' || {_SHOWN_REL} || ' (left by a failed CREATE INDEX CONCURRENTLY)'
    FROM pg_index i JOIN pg_class c ON c.oid = i.indexrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE {_USER_SCHEMA} AND NOT i.indisvalid""",
    f"""SELECT CASE t.typtype WHEN 'r' THEN 'range type ' WHEN 'b' THEN 'base type '
                ELSE 'shell type ' END || {_SHOWN.format(ns="n", name="t.typname")}
    FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
    WHERE {_USER_SCHEMA} AND t.typtype IN ('b', 'r', 'p')
      AND NOT EXISTS (SELECT 1 FROM pg_type a WHERE a.typarray = t.oid)
      AND {_NOT_MEMBER.format(catalog="pg_type", oid="t.oid")}""",
    f"""SELECT 'aggregate ' || {_SHOWN.format(ns="n", name="p.proname")}
        || '(' || pg_get_function_identity_arguments(p.oid) || ')'
    FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
    WHERE {_USER_SCHEMA} AND p.prokind = 'a'
      AND {_NOT_MEMBER.format(catalog="pg_proc", oid="p.oid")}""",
    *(
        f"""SELECT '{what} ' || {_SHOWN.format(ns="n", name=f"x.{name}")}
        FROM {catalog} x JOIN pg_namespace n ON n.oid = x.{namespace}
        WHERE {_USER_SCHEMA} AND {_NOT_MEMBER.format(catalog=catalog, oid="x.oid")}"""
        for what, catalog, name, namespace in (
            ("operator", "pg_operator", "oprname", "oprnamespace"),
            ("operator class", "pg_opclass", "opcname", "opcnamespace"),
            ("operator family", "pg_opfamily", "opfname", "opfnamespace"),
            ("collation", "pg_collation", "collname", "collnamespace"),
            ("conversion", "pg_conversion", "conname", "connamespace"),
            ("text search configuration", "pg_ts_config", "cfgname", "cfgnamespace"),
            ("text search dictionary", "pg_ts_dict", "dictname", "dictnamespace"),
            ("text search parser", "pg_ts_parser", "prsname", "prsnamespace"),
            ("text search template", "pg_ts_template", "tmplname", "tmplnamespace"),
            ("statistics object", "pg_statistic_ext", "stxname", "stxnamespace"),
        )
        # Statistics objects are copied; only an extension's would be listed here.
        if catalog != "pg_statistic_ext"
    ),
    f"""SELECT 'cast (' || format_type(c.castsource, NULL) || ' AS '
        || format_type(c.casttarget, NULL) || ')'
    FROM pg_cast c WHERE c.oid >= 16384 AND {_NOT_MEMBER.format(catalog="pg_cast", oid="c.oid")}""",
    f"""SELECT 'transform for type ' || format_type(t.trftype, NULL) FROM pg_transform t
    WHERE {_NOT_MEMBER.format(catalog="pg_transform", oid="t.oid")}""",
    f"""SELECT 'access method ' || quote_ident(a.amname) FROM pg_am a
    WHERE a.oid >= 16384 AND {_NOT_MEMBER.format(catalog="pg_am", oid="a.oid")}""",
    "SELECT 'event trigger ' || quote_ident(evtname) FROM pg_event_trigger",
    "SELECT 'publication ' || quote_ident(pubname) FROM pg_publication",
    """SELECT 'subscription ' || quote_ident(subname) FROM pg_subscription
    WHERE subdbid = (SELECT oid FROM pg_database WHERE datname = current_database())""",
    f"""SELECT 'foreign data wrapper ' || quote_ident(w.fdwname) FROM pg_foreign_data_wrapper w
    WHERE {_NOT_MEMBER.format(catalog="pg_foreign_data_wrapper", oid="w.oid")}""",
    "SELECT 'foreign server ' || quote_ident(srvname) FROM pg_foreign_server",
    """SELECT 'default privileges (ALTER DEFAULT PRIVILEGES) for role '
        || quote_ident(pg_get_userbyid(defaclrole)) FROM pg_default_acl""",
    """SELECT count(*) || ' large object(s)' FROM pg_largeobject_metadata HAVING count(*) > 0""",
    "SELECT 'security labels' FROM pg_seclabel HAVING count(*) > 0",
    f"""SELECT 'privileges granted on column ' || quote_ident(a.attname) || ' of ' || {_SHOWN_REL}
    FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
    JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE {_USER_SCHEMA} AND a.attacl IS NOT NULL AND NOT a.attisdropped""",
)

_SCHEMAS = f"""
SELECT n.nspname, pg_get_userbyid(n.nspowner), n.nspacl::text,
       obj_description(n.oid, 'pg_namespace'), {_SHOWN.format(ns="n", name="n.nspname")}
FROM pg_namespace n WHERE {_USER_SCHEMA} ORDER BY n.oid
"""

_TYPES = f"""
SELECT t.oid, n.nspname, t.typname, t.typtype, t.typrelid,
       format_type(t.typbasetype, t.typtypmod), t.typnotnull, pg_get_expr(t.typdefaultbin, 0),
       cn.nspname, co.collname, pg_get_userbyid(t.typowner), t.typacl IS NOT NULL,
       obj_description(t.oid, 'pg_type'),
       ARRAY(SELECT e.enumlabel::text FROM pg_enum e WHERE e.enumtypid = t.oid
             ORDER BY e.enumsortorder),
       {_SHOWN.format(ns="n", name="t.typname")}
FROM pg_type t JOIN pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN pg_type b ON b.oid = t.typbasetype
LEFT JOIN pg_collation co ON co.oid = t.typcollation AND t.typcollation <> b.typcollation
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
WHERE {_USER_SCHEMA} AND t.typtype IN ('e', 'd', 'c')
  AND (t.typrelid = 0 OR (SELECT r.relkind FROM pg_class r WHERE r.oid = t.typrelid) = 'c')
  AND {_NOT_MEMBER.format(catalog="pg_type", oid="t.oid")}
ORDER BY t.oid
"""

_DOMAIN_CONSTRAINTS = f"""
SELECT co.contypid, co.conname, pg_get_constraintdef(co.oid), co.convalidated,
       obj_description(co.oid, 'pg_constraint')
FROM pg_constraint co JOIN pg_type t ON t.oid = co.contypid
JOIN pg_namespace n ON n.oid = t.typnamespace
WHERE {_USER_SCHEMA} ORDER BY co.contypid, co.oid
"""

_FUNCTIONS = f"""
SELECT p.oid, n.nspname, p.proname, p.prokind, pg_get_function_identity_arguments(p.oid),
       pg_get_userbyid(p.proowner), p.proacl IS NOT NULL, obj_description(p.oid, 'pg_proc'),
       CASE WHEN p.prokind <> 'a' THEN pg_get_functiondef(p.oid) END,
       {_SHOWN.format(ns="n", name="p.proname")}
FROM pg_proc p JOIN pg_namespace n ON n.oid = p.pronamespace
WHERE {_USER_SCHEMA} AND p.prokind <> 'a' AND {_NOT_MEMBER.format(catalog="pg_proc", oid="p.oid")}
ORDER BY p.oid
"""

_RELATIONS = f"""
SELECT c.oid, n.nspname, c.relname, c.relkind, c.relpersistence, c.reloptions, tc.reloptions,
       c.relreplident, c.relispopulated, pg_get_userbyid(c.relowner), c.relacl IS NOT NULL,
       obj_description(c.oid, 'pg_class'),
       CASE WHEN c.relkind IN ('v', 'm') THEN pg_get_viewdef(c.oid) END,
       EXISTS (SELECT 1 FROM pg_stats s WHERE s.schemaname = n.nspname
               AND s.tablename = c.relname),
       {_SHOWN_REL}
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_class tc ON tc.oid = c.reltoastrelid
WHERE {_USER_SCHEMA} AND c.relkind IN ('r', 'v', 'm', 'S')
  AND {_NOT_MEMBER.format(catalog="pg_class", oid="c.oid")}
ORDER BY c.oid
"""

# Composite types' attributes come along: they are columns of a relation of kind 'c'.
_COLUMNS = f"""
SELECT a.attrelid, a.attname, format_type(a.atttypid, a.atttypmod), a.attnotnull,
       cn.nspname, co.collname, pg_get_expr(d.adbin, d.adrelid), a.attidentity, a.attgenerated,
       a.attstattarget, a.attstorage, t.typstorage, a.attcompression, a.attoptions,
       col_description(a.attrelid, a.attnum)
FROM pg_attribute a JOIN pg_class c ON c.oid = a.attrelid
JOIN pg_namespace n ON n.oid = c.relnamespace JOIN pg_type t ON t.oid = a.atttypid
LEFT JOIN pg_attrdef d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
LEFT JOIN pg_collation co ON co.oid = a.attcollation AND a.attcollation <> t.typcollation
LEFT JOIN pg_namespace cn ON cn.oid = co.collnamespace
WHERE {_USER_SCHEMA} AND c.relkind IN ('r', 'v', 'm', 'c') AND a.attnum > 0
  AND NOT a.attisdropped
ORDER BY a.attrelid, a.attnum
"""

# The same sequences as _RELATIONS reads; with the relation owning each, named for messages.
_SEQUENCES = f"""
SELECT s.seqrelid, format_type(s.seqtypid, NULL), s.seqstart, s.seqincrement, s.seqmax,
       s.seqmin, s.seqcache, s.seqcycle, d.deptype, d.refobjid, a.attname, oc.relkind,
       {_SHOWN.format(ns="onsp", name="oc.relname")}
FROM pg_sequence s JOIN pg_class c ON c.oid = s.seqrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_depend d ON d.classid = 'pg_class'::regclass AND d.objid = s.seqrelid
     AND d.refclassid = 'pg_class'::regclass AND d.refobjsubid > 0 AND d.deptype IN ('a', 'i')
LEFT JOIN pg_attribute a ON a.attrelid = d.refobjid AND a.attnum = d.refobjsubid
LEFT JOIN pg_class oc ON oc.oid = d.refobjid
LEFT JOIN pg_namespace onsp ON onsp.oid = oc.relnamespace
WHERE {_USER_SCHEMA} AND {_NOT_MEMBER.format(catalog="pg_class", oid="c.oid")}
"""

_CONSTRAINTS = f"""
SELECT co.conrelid, co.conname, co.contype, pg_get_constraintdef(co.oid),
       obj_description(co.oid, 'pg_constraint'), c.relkind, {_SHOWN_REL}
FROM pg_constraint co JOIN pg_class c ON c.oid = co.conrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_USER_SCHEMA} AND co.contype IN ('p', 'u', 'x', 'c', 'f')
ORDER BY co.oid
"""

_INDEXES = f"""
SELECT i.indrelid, ic.relname, pg_get_indexdef(i.indexrelid), i.indisclustered,
       i.indisreplident, obj_description(i.indexrelid, 'pg_class'),
       EXISTS (SELECT 1 FROM pg_constraint co WHERE co.conindid = i.indexrelid
               AND co.conrelid = i.indrelid AND co.contype IN ('p', 'u', 'x')),
       c.relkind, {_SHOWN_REL}
FROM pg_index i JOIN pg_class ic ON ic.oid = i.indexrelid
JOIN pg_class c ON c.oid = i.indrelid JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_USER_SCHEMA} AND c.relkind IN ('r', 'm')
ORDER BY i.indexrelid
"""

_TRIGGERS = f"""
SELECT tg.tgrelid, tg.tgname, pg_get_triggerdef(tg.oid), tg.tgenabled,
       obj_description(tg.oid, 'pg_trigger'), c.relkind, {_SHOWN_REL}
FROM pg_trigger tg JOIN pg_class c ON c.oid = tg.tgrelid
JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE {_USER_SCHEMA} AND NOT tg.tgisinternal
ORDER BY tg.oid
"""

_STATISTICS = f"""
SELECT n.nspname, s.stxname, pg_get_statisticsobjdef(s.oid), s.stxstattarget,
       pg_get_userbyid(s.stxowner), obj_description(s.oid, 'pg_statistic_ext'),
       {_SHOWN.format(ns="n", name="s.stxname")}
FROM pg_statistic_ext s JOIN pg_namespace n ON n.oid = s.stxnamespace
WHERE {_USER_SCHEMA} AND {_NOT_MEMBER.format(catalog="pg_statistic_ext", oid="s.oid")}
ORDER BY s.oid
"""

# Errors that mean "made too early": the object it needs is later in the list.
_MISSING_DEPENDENCY = (
    errors.UndefinedTable,
    errors.UndefinedObject,
    errors.UndefinedFunction,
    errors.UndefinedColumn,
    errors.InvalidSchemaName,
)
_STORAGE = {"p": "PLAIN", "e": "EXTERNAL", "x": "EXTENDED", "m": "MAIN"}
_COMPRESSION = {"p": "pglz", "l": "lz4"}
_TRIGGER_STATE = {"D": "DISABLE", "R": "ENABLE REPLICA", "A": "ENABLE ALWAYS"}
_OPTION_NAME = re.compile(r"[a-z_][a-z0-9_]*\Z")


@dataclass(frozen=True)
class _Step:
    """One statement for the target, with what it makes, for error messages."""

    label: str
    sql: str


@dataclass(frozen=True)
class _Table:
    label: str
    qname: str
    columns: tuple[str, ...]  # quoted; generated columns are left out, COPY cannot load them


@dataclass
class _Plan:
    """Everything read from the source, as statements for the target in the order they run."""

    schemas: list[_Step] = field(default_factory=list)
    # (source oid, step), created until a fixpoint; oids are handed out in creation order, which
    # is nearly a dependency order, so sorting by them makes the fixpoint's first pass do most.
    definitions: list[tuple[int, _Step]] = field(default_factory=list)
    before_rows: list[_Step] = field(default_factory=list)
    tables: list[_Table] = field(default_factory=list)
    refreshes: list[_Step] = field(default_factory=list)
    # label, qualified name and digest of each populated materialized view's rows
    matview_rows: list[tuple[str, str, str]] = field(default_factory=list)
    constraints: list[_Step] = field(default_factory=list)
    indexes: list[_Step] = field(default_factory=list)
    foreign_keys: list[_Step] = field(default_factory=list)
    after: list[_Step] = field(default_factory=list)
    comments: list[_Step] = field(default_factory=list)
    analyze: list[_Step] = field(default_factory=list)
    refusals: list[str] = field(default_factory=list)


class _Column(NamedTuple):
    """A row of _COLUMNS, without the relation's oid."""

    name: str
    type: str
    notnull: bool
    collation_schema: str | None  # set only where it differs from the type's
    collation: str | None
    default: str | None  # also the expression of a generated column
    identity: str  # '', 'a' (ALWAYS) or 'd' (BY DEFAULT)
    generated: str  # '' or 's' (STORED)
    stattarget: int
    storage: str
    type_storage: str
    compression: str
    options: list[str] | None
    comment: str | None


class _Sequence(NamedTuple):
    """A row of _SEQUENCES, without the sequence's oid."""

    type: str
    start: int
    increment: int
    maximum: int
    minimum: int
    cache: int
    cycle: bool
    owned: str | None  # 'a' OWNED BY a column, 'i' an identity column's, None standalone
    table: int | None
    column: str | None
    table_kind: str | None
    table_shown: str | None

    @property
    def options(self) -> str:
        return (
            f"INCREMENT BY {int(self.increment)} MINVALUE {int(self.minimum)} "
            f"MAXVALUE {int(self.maximum)} START WITH {int(self.start)} CACHE {int(self.cache)} "
            f"{'' if self.cycle else 'NO '}CYCLE"
        )


@dataclass(frozen=True)
class _Relation:
    kind: str
    qname: str
    shown: str

    @property
    def label(self) -> str:
        return f"{_KIND_NAMES.get(self.kind, 'relation')} {self.shown}"


# Records a refusal when an object is owned by another role or carries GRANTs.
_Owned = Callable[[str, str, bool], None]


class _CatalogChanged(Exception):
    """Another session's DDL slipped in between listing the tables and locking them."""


def copy_database(source: Any, target: Any, *, lock_timeout_ms: int = 2000) -> CopyStats:
    """Recreate every object of `source`'s non-system schemas in `target`, with the data.

    `source` and `target` are psycopg2 connections; `target` is a fresh database made from
    template0. The source is read in one REPEATABLE READ transaction that waits at most
    `lock_timeout_ms` for any lock (`LockBusy`), and the target is written in one transaction,
    so a failure leaves nothing half-made. Raises `UnsupportedObject` before writing anything if
    the source holds something the copy could not reproduce faithfully.
    """
    if lock_timeout_ms <= 0:
        raise ValueError("lock_timeout_ms must be positive: the copy must never wait forever")
    started = time.perf_counter()
    autocommit = (source.autocommit, target.autocommit)
    source.autocommit = target.autocommit = True
    try:
        with source.cursor() as read, target.cursor() as write:
            search_path, encoding = _source_settings(read)
            try:
                plan = _read_consistently(source, read, write, lock_timeout_ms)
                if plan.refusals:
                    raise UnsupportedObject(_refusal_message(plan.refusals))
                tables, rows, size = _write(plan, read, write, search_path, encoding)
            except errors.LockNotAvailable:
                # A wait the named checks did not foresee (a catalog function locking what it
                # describes, say): still a lock held by another session, not a failure.
                _end_transaction(source)
                raise LockBusy(
                    "an uncommitted change in another session holds a lock the copy needs"
                    f"{_held_by_others(read)}"
                ) from None
    finally:
        _end_transaction(source)
        _end_transaction(target)
        source.autocommit, target.autocommit = autocommit
    return CopyStats(tables, rows, size, (time.perf_counter() - started) * 1000)


# ---------------------------------------------------------------------------------- reading


def _source_settings(read: Any) -> tuple[str, str]:
    """The search_path sessions of the live database get, and its encoding.

    Definitions are read with search_path = pg_catalog so that they come out fully qualified;
    but functions that run during the load (generated columns, CHECKs, index expressions,
    materialized views) must find what they found in the live database.
    """
    read.execute(
        "SELECT pg_catalog.current_setting('search_path'), "
        "pg_catalog.current_setting('server_encoding')"
    )
    search_path, encoding = read.fetchone()
    return f"pg_catalog, {search_path}", str(encoding)


def _read_consistently(source: Any, read: Any, write: Any, lock_timeout_ms: int) -> _Plan:
    """Open the read transaction and read every definition, starting over (a few times) when
    another session's DDL changed the catalog under the copy; leaves the transaction open."""
    for _ in range(_LOCK_ATTEMPTS):
        try:
            _open_snapshot(read, lock_timeout_ms)
            return _read_plan(read, write)
        except _CatalogChanged:
            _end_transaction(source)
    raise LockBusy(
        "the live database's tables kept changing while the copy started (another session is "
        "creating or dropping tables); try again"
    )


def _open_snapshot(read: Any, lock_timeout_ms: int) -> None:
    """Begin the read transaction with every table and view locked before its snapshot.

    LOCK and SET do not take the REPEATABLE READ snapshot, so it is taken by the first query
    after the locks; if that query sees a different set of tables (one created, dropped or
    renamed meanwhile), some table may have changed unlocked, and the attempt starts over.
    """
    read.execute(_LOCKABLE)
    listed = read.fetchall()
    read.execute("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY")
    for setting in (
        f"SET LOCAL lock_timeout = {int(lock_timeout_ms)}",
        # The source sits idle in its transaction while the target loads each table.
        "SET LOCAL idle_in_transaction_session_timeout = 0",
        "SET LOCAL search_path = pg_catalog",
        # Text COPY must round-trip exactly: shortest-exact floats, unambiguous dates.
        "SET LOCAL extra_float_digits = 3",
        "SET LOCAL datestyle = ISO",
        "SET LOCAL intervalstyle = postgres",
        "SET LOCAL bytea_output = hex",
    ):
        read.execute(setting)
    for _oid, kind, schema, name, shown in listed:
        relation = _Relation(kind, _qualified(schema, name), shown)
        with _busy(read, relation):
            read.execute(f"LOCK TABLE {relation.qname} IN ACCESS SHARE MODE")
    read.execute(_LOCKABLE)
    if read.fetchall() != listed:
        raise _CatalogChanged


@contextlib.contextmanager
def _busy(read: Any, relation: _Relation) -> Iterator[None]:
    """Turn a lock timeout on `relation` into LockBusy, and a vanished one into a retry."""
    try:
        yield
    except errors.LockNotAvailable:
        read.execute("ROLLBACK")
        raise LockBusy(
            f"{relation.label} is locked by an uncommitted change in another session"
            f"{_holders(read, relation.qname)}"
        ) from None
    except (errors.UndefinedTable, errors.InvalidSchemaName):
        raise _CatalogChanged from None


def _holders(read: Any, qname: str) -> str:
    """Which sessions hold a conflicting lock now, to help find the one to finish."""
    read.execute(
        "SELECT array_agg(DISTINCT l.pid ORDER BY l.pid) FROM pg_catalog.pg_locks l "
        "WHERE l.relation = pg_catalog.to_regclass(%s) AND l.granted "
        "AND l.mode = 'AccessExclusiveLock' AND l.pid <> pg_catalog.pg_backend_pid()",
        (qname,),
    )
    row = read.fetchone()
    pids = row[0] if row else None
    if not pids:
        return ""
    return f" (pid {', '.join(str(pid) for pid in pids)})"


def _held_by_others(read: Any) -> str:
    read.execute(
        "SELECT pg_catalog.string_agg(DISTINCT l.relation::pg_catalog.regclass::text || ' (pid ' "
        "|| l.pid || ')', ', ') FROM pg_catalog.pg_locks l JOIN pg_catalog.pg_database d "
        "ON d.oid = l.database WHERE d.datname = pg_catalog.current_database() AND l.granted "
        "AND l.mode = 'AccessExclusiveLock' AND l.pid <> pg_catalog.pg_backend_pid()"
    )
    row = read.fetchone()
    return f": {row[0]}" if row and row[0] else ""


def _lock_materialized_views(read: Any) -> None:
    """LOCK TABLE refuses materialized views, but reading one's definition locks it too; doing
    that one by one names the view an uncommitted REFRESH or DROP is holding."""
    read.execute(
        f"""SELECT c.oid, n.nspname, c.relname, {_SHOWN_REL} FROM pg_class c
        JOIN pg_namespace n ON n.oid = c.relnamespace
        WHERE {_USER_SCHEMA} AND c.relkind = 'm' ORDER BY c.oid"""
    )
    for oid, schema, name, shown in read.fetchall():
        with _busy(read, _Relation("m", _qualified(schema, name), shown)):
            read.execute("SELECT pg_get_viewdef(%s::oid)", (oid,))


def _read_plan(read: Any, write: Any) -> _Plan:
    """Read every definition from the snapshot and turn it into target statements."""
    _lock_materialized_views(read)
    plan = _Plan()
    for query in _REFUSALS:
        read.execute(query)
        plan.refusals.extend(str(row[0]) for row in read.fetchall())
    me, public_owner, public_acl, extensions, languages = _target_facts(write)
    _refuse_missing(read, plan, "SELECT extname FROM pg_extension", extensions, "extension")
    _refuse_missing(read, plan, "SELECT lanname FROM pg_language", languages, "language")
    if plan.refusals:
        # The planners below assume these shapes are absent: a partitioned or foreign table is
        # not a relation they make, yet its constraints, triggers and sequences would reach
        # them. So refuse now, naming what is in the way, before reading any of that.
        raise UnsupportedObject(_refusal_message(plan.refusals))

    def owned(kind_and_name: str, owner: str, has_acl: bool) -> None:
        if owner != me:
            plan.refusals.append(f"{kind_and_name} is owned by role {owner}, not {me}")
        if has_acl:
            plan.refusals.append(f"privileges granted on {kind_and_name} (GRANT/REVOKE)")

    _plan_schemas(read, plan, owned, (public_owner, public_acl))
    read.execute(_COLUMNS)
    columns: dict[int, list[_Column]] = {}
    for row in read.fetchall():
        columns.setdefault(row[0], []).append(_Column(*row[1:]))
    _plan_types(read, plan, owned, columns)
    _plan_functions(read, plan, owned)
    relations = _plan_relations(read, plan, owned, columns)
    _plan_constraints(read, plan, relations)
    _plan_indexes(read, plan, relations)
    _plan_triggers(read, plan, relations)
    _plan_statistics(read, plan, owned)
    return plan


def _target_facts(write: Any) -> tuple[str, str | None, str | None, set[str], set[str]]:
    """Who will own what the copy makes, and what template0 already provides."""
    write.execute(
        "SELECT current_user, pg_catalog.pg_get_userbyid(n.nspowner), n.nspacl::text "
        "FROM (SELECT 1) AS one LEFT JOIN pg_catalog.pg_namespace n ON n.nspname = 'public'"
    )
    me, owner, acl = write.fetchone()
    write.execute("SELECT extname FROM pg_catalog.pg_extension")
    extensions = {str(row[0]) for row in write.fetchall()}
    write.execute("SELECT lanname FROM pg_catalog.pg_language")
    languages = {str(row[0]) for row in write.fetchall()}
    return str(me), owner, acl, extensions, languages


def _refuse_missing(read: Any, plan: _Plan, query: str, present: set[str], what: str) -> None:
    read.execute(query)
    for (name,) in read.fetchall():
        if name not in present:
            plan.refusals.append(f"{what} {name} (the empty database has no such {what})")


def _plan_schemas(
    read: Any, plan: _Plan, owned: _Owned, public_defaults: tuple[str | None, str | None]
) -> None:
    read.execute(_SCHEMAS)
    names = set()
    for name, owner, acl, comment, shown in read.fetchall():
        names.add(name)
        quoted = quote_ident(name)
        if name == "public":
            # template0 made it already; it only has to look the same.
            if (owner, acl) != public_defaults:
                plan.refusals.append("schema public has a changed owner or privileges")
            comment_sql = _comment_sql(f"SCHEMA {quoted}", comment)
            plan.comments.append(_Step("schema public", comment_sql))
            continue
        owned(f"schema {shown}", owner, acl is not None)
        plan.schemas.append(_Step(f"schema {shown}", f"CREATE SCHEMA {quoted}"))
        if comment is not None:
            plan.comments.append(
                _Step(f"schema {shown}", _comment_sql(f"SCHEMA {quoted}", comment))
            )
    if "public" not in names:
        plan.schemas.insert(0, _Step("schema public", "DROP SCHEMA public"))


def _plan_types(read: Any, plan: _Plan, owned: _Owned, columns: dict[int, list[_Column]]) -> None:
    read.execute(_DOMAIN_CONSTRAINTS)
    checks: dict[int, list[tuple[Any, ...]]] = {}
    for row in read.fetchall():
        checks.setdefault(row[0], []).append(row[1:])
    read.execute(_TYPES)
    for row in read.fetchall():
        oid, schema, name, kind, relid, base, notnull, default = row[:8]
        coll_schema, coll_name, owner, has_acl, comment, labels, shown = row[8:]
        qname = _qualified(schema, name)
        keyword = "DOMAIN" if kind == "d" else "TYPE"
        label = f"{'domain' if kind == 'd' else 'type'} {shown}"
        owned(label, owner, has_acl)
        if kind == "e":
            body = ", ".join(_literal(value) for value in labels)
            plan.definitions.append((oid, _Step(label, f"CREATE TYPE {qname} AS ENUM ({body})")))
        elif kind == "c":
            attributes = ", ".join(
                f"{quote_ident(att.name)} {att.type}{_collate(att.collation_schema, att.collation)}"
                for att in columns.get(relid, [])
            )
            plan.definitions.append((oid, _Step(label, f"CREATE TYPE {qname} AS ({attributes})")))
            for att in columns.get(relid, []):
                if att.comment is not None:
                    target = f"COLUMN {qname}.{quote_ident(att.name)}"
                    plan.comments.append(_Step(label, _comment_sql(target, att.comment)))
        else:
            parts = [f"CREATE DOMAIN {qname} AS {base}{_collate(coll_schema, coll_name)}"]
            if default is not None:
                parts.append(f"DEFAULT {default}")
            if notnull:
                parts.append("NOT NULL")
            for con_name, definition, validated, con_comment in checks.get(oid, []):
                constraint = f"CONSTRAINT {quote_ident(con_name)} {definition}"
                if validated:
                    parts.append(constraint)
                else:
                    # A NOT VALID check may be broken by rows already stored: add it after them.
                    add = f"ALTER DOMAIN {qname} ADD {constraint}"
                    plan.constraints.append(_Step(f"constraint {con_name} on {label}", add))
                if con_comment is not None:
                    target = f"CONSTRAINT {quote_ident(con_name)} ON DOMAIN {qname}"
                    plan.comments.append(_Step(label, _comment_sql(target, con_comment)))
            plan.definitions.append((oid, _Step(label, " ".join(parts))))
        if comment is not None:
            plan.comments.append(_Step(label, _comment_sql(f"{keyword} {qname}", comment)))


def _plan_functions(read: Any, plan: _Plan, owned: _Owned) -> None:
    read.execute(_FUNCTIONS)
    for oid, schema, name, kind, arguments, owner, has_acl, comment, body, shown in read.fetchall():
        keyword = "PROCEDURE" if kind == "p" else "FUNCTION"
        label = f"{keyword.lower()} {shown}({arguments})"
        owned(label, owner, has_acl)
        if body is None:
            raise _CatalogChanged  # dropped after the snapshot was taken
        plan.definitions.append((oid, _Step(label, body)))
        if comment is not None:
            target = f"{keyword} {_qualified(schema, name)}({arguments})"
            plan.comments.append(_Step(label, _comment_sql(target, comment)))


def _plan_relations(
    read: Any, plan: _Plan, owned: _Owned, columns: dict[int, list[_Column]]
) -> dict[int, _Relation]:
    read.execute(_SEQUENCES)
    sequences = {row[0]: _Sequence(*row[1:]) for row in read.fetchall()}
    read.execute(_RELATIONS)
    rows = read.fetchall()
    relations = {row[0]: _Relation(row[3], _qualified(row[1], row[2]), row[-1]) for row in rows}
    persistence_of = {row[0]: row[4] for row in rows}
    identity_sequences: dict[int, list[int]] = {}  # table -> its identity columns' sequences
    for seq_oid, seq in sequences.items():
        if seq.owned == "i" and seq.table is not None:
            identity_sequences.setdefault(seq.table, []).append(seq_oid)
    for row in rows:
        oid, _schema, _name, kind, persistence, options, toast_options = row[:7]
        replident, populated, owner, has_acl, comment, view_def, analyzed, _shown = row[7:]
        relation = relations[oid]
        owned(relation.label, owner, has_acl)
        if kind == "S":
            _plan_sequence(read, plan, oid, relation, persistence, sequences[oid], relations)
        elif kind == "r":
            table_columns = columns.get(oid, [])
            identities: dict[str, str] = {}
            for seq_oid in identity_sequences.get(oid, []):
                seq, seq_qname = sequences[seq_oid], relations[seq_oid].qname
                identities[str(seq.column)] = f"SEQUENCE NAME {seq_qname} {seq.options}"
                # An unlogged table's identity sequence is made unlogged; ALTER may change that.
                if persistence_of[seq_oid] != persistence:
                    mode = "UNLOGGED" if persistence_of[seq_oid] == "u" else "LOGGED"
                    alter = f"ALTER SEQUENCE {seq_qname} SET {mode}"
                    plan.before_rows.append(_Step(relation.label, alter))
            create = _table_step(
                relation, persistence, options, toast_options, table_columns, identities
            )
            plan.definitions.append((oid, create))
            loaded = tuple(quote_ident(c.name) for c in table_columns if not c.generated)
            plan.tables.append(_Table(relation.label, relation.qname, loaded))
            if replident in ("f", "n"):
                mode = "FULL" if replident == "f" else "NOTHING"
                plan.after.append(
                    _Step(relation.label, f"ALTER TABLE {relation.qname} REPLICA IDENTITY {mode}")
                )
        else:
            if view_def is None:
                raise _CatalogChanged
            plan.definitions.append((oid, _view_step(relation, options, view_def)))
            if kind == "m" and populated:
                refresh = f"REFRESH MATERIALIZED VIEW {relation.qname}"
                plan.refreshes.append(_Step(relation.label, refresh))
                with _busy(read, relation):
                    digest = _rows_digest(read, relation.qname)
                plan.matview_rows.append((relation.label, relation.qname, digest))
        if kind in ("r", "m") and analyzed:
            # Planner statistics are not copied, and a clone of the snapshot would never gather
            # them (its tables look unmodified): gather them where the live database has them.
            plan.analyze.append(_Step(relation.label, f"ANALYZE {relation.qname}"))
        if kind != "S":
            _plan_columns(plan, relation, columns.get(oid, []))
        if comment is not None:
            target = f"{_KIND_NAMES[kind].upper()} {relation.qname}"
            plan.comments.append(_Step(relation.label, _comment_sql(target, comment)))
    return relations


def _plan_sequence(
    read: Any,
    plan: _Plan,
    oid: int,
    relation: _Relation,
    persistence: str,
    seq: _Sequence,
    relations: dict[int, _Relation],
) -> None:
    with _busy(read, relation):
        # Sequences live outside MVCC: this is their state now, which is at least the
        # snapshot's, so the copy never hands out a value the live database already did.
        read.execute(f"SELECT last_value, is_called FROM {relation.qname}")
        last_value, is_called = read.fetchone()
    if seq.owned != "i":  # an identity column makes its own sequence, with these options
        unlogged = "UNLOGGED " if persistence == "u" else ""
        create = f"CREATE {unlogged}SEQUENCE {relation.qname} AS {seq.type} {seq.options}"
        plan.definitions.append((oid, _Step(relation.label, create)))
    if seq.owned == "a" and seq.table is not None and seq.column is not None:
        table = _made(relations, seq.table, relation.label, seq.table_kind, seq.table_shown)
        owner = f"{table.qname}.{quote_ident(seq.column)}"
        plan.before_rows.append(
            _Step(relation.label, f"ALTER SEQUENCE {relation.qname} OWNED BY {owner}")
        )
    called = "true" if is_called else "false"
    setval = (
        f"SELECT pg_catalog.setval({_literal(relation.qname)}::regclass, "
        f"{int(last_value)}, {called})"
    )
    plan.before_rows.append(_Step(relation.label, setval))


def _table_step(
    relation: _Relation,
    persistence: str,
    options: list[str] | None,
    toast_options: list[str] | None,
    columns: Sequence[_Column],
    identities: dict[str, str],
) -> _Step:
    """CREATE TABLE with the columns in their order; `identities` maps an identity column to
    its sequence's name and options, so that sequence comes out as it was, not renamed."""
    lines = []
    for column in columns:
        collate = _collate(column.collation_schema, column.collation)
        parts = [quote_ident(column.name), column.type + collate]
        if column.compression in _COMPRESSION:
            parts.append(f"COMPRESSION {_COMPRESSION[column.compression]}")
        if column.generated == "s":
            parts.append(f"GENERATED ALWAYS AS ({column.default}) STORED")
        elif column.identity:
            if column.name not in identities:
                # A partition's can use its parent's sequence (PostgreSQL 17 and later), but
                # partitions are refused before planning: this is a shape nobody foresaw.
                raise UnsupportedObject(
                    _refusal_message(
                        [f"identity column {column.name} of {relation.label} has no sequence"]
                    )
                )
            when = "ALWAYS" if column.identity == "a" else "BY DEFAULT"
            parts.append(f"GENERATED {when} AS IDENTITY ({identities[column.name]})")
        elif column.default is not None:
            parts.append(f"DEFAULT {column.default}")
        if column.notnull:
            parts.append("NOT NULL")
        lines.append(" ".join(parts))
    unlogged = "UNLOGGED " if persistence == "u" else ""
    with_options = _storage_options((options or []) + [f"toast.{o}" for o in toast_options or []])
    body = ",\n    ".join(lines)
    create = f"CREATE {unlogged}TABLE {relation.qname} (\n    {body}\n){with_options}"
    return _Step(relation.label, create)


def _view_step(relation: _Relation, options: list[str] | None, view_def: str) -> _Step:
    query = view_def.strip().rstrip(";")
    with_options = _storage_options(options or [])
    if relation.kind == "v":
        return _Step(relation.label, f"CREATE VIEW {relation.qname}{with_options} AS\n{query}")
    # Filled by REFRESH after the rows are in, as the live one was (or left unpopulated).
    create = f"CREATE MATERIALIZED VIEW {relation.qname}{with_options} AS\n{query}\nWITH NO DATA"
    return _Step(relation.label, create)


def _plan_columns(plan: _Plan, relation: _Relation, columns: Sequence[_Column]) -> None:
    """Per-column settings CREATE cannot say, and column comments."""
    keyword = {"r": "TABLE", "v": "VIEW", "m": "MATERIALIZED VIEW"}[relation.kind]
    for column in columns:
        alter = f"ALTER {keyword} {relation.qname} ALTER COLUMN {quote_ident(column.name)}"
        label = f"column {column.name} of {relation.label}"
        if relation.kind == "v" and column.default is not None:
            plan.before_rows.append(_Step(label, f"{alter} SET DEFAULT {column.default}"))
        if relation.kind != "v":
            if column.stattarget is not None and column.stattarget >= 0:
                target = f"{alter} SET STATISTICS {int(column.stattarget)}"
                plan.after.append(_Step(label, target))
            # Before the rows: storage decides how they are stored.
            if column.storage != column.type_storage and column.storage in _STORAGE:
                storage = f"{alter} SET STORAGE {_STORAGE[column.storage]}"
                plan.before_rows.append(_Step(label, storage))
            if column.options:
                plan.after.append(_Step(label, f"{alter} SET ({_option_list(column.options)})"))
        if column.comment is not None:
            target = f"COLUMN {relation.qname}.{quote_ident(column.name)}"
            plan.comments.append(_Step(label, _comment_sql(target, column.comment)))


def _made(
    relations: dict[int, _Relation], relid: int, what: str, kind: str | None, shown: str | None
) -> _Relation:
    """The relation `what` belongs to, which the copy must be making.

    The refusals read before planning leave only relations it makes (no partitioned or foreign
    table, nothing an extension made); a shape they do not foresee is refused here, by name,
    rather than left out of the copy or failing with a KeyError.
    """
    relation = relations.get(relid)
    if relation is None:
        owner = _Relation(kind or "", "", shown or f"with oid {relid}").label
        raise UnsupportedObject(
            _refusal_message([f"{what} belongs to {owner}, which the copy does not make"])
        )
    return relation


def _plan_constraints(read: Any, plan: _Plan, relations: dict[int, _Relation]) -> None:
    read.execute(_CONSTRAINTS)
    for relid, name, kind, definition, comment, relkind, shown in read.fetchall():
        relation = _made(relations, relid, f"constraint {name}", relkind, shown)
        if definition is None:
            raise _CatalogChanged
        label = f"constraint {name} on {relation.label}"
        add = f"ALTER TABLE {relation.qname} ADD CONSTRAINT {quote_ident(name)} {definition}"
        (plan.foreign_keys if kind == "f" else plan.constraints).append(_Step(label, add))
        if comment is not None:
            target = f"CONSTRAINT {quote_ident(name)} ON {relation.qname}"
            plan.comments.append(_Step(label, _comment_sql(target, comment)))


def _plan_indexes(read: Any, plan: _Plan, relations: dict[int, _Relation]) -> None:
    read.execute(_INDEXES)
    for row in read.fetchall():
        relid, name, definition, clustered, replident, comment, backs_constraint = row[:7]
        relation = _made(relations, relid, f"index {name}", *row[7:])
        if definition is None:
            raise _CatalogChanged
        schema = relation.qname.split(".", 1)[0]  # an index lives in its table's schema
        index = f"{schema}.{quote_ident(name)}"
        label = f"index {name} on {relation.label}"
        if not backs_constraint:  # those come with their constraint
            plan.indexes.append(_Step(label, definition))
        keyword = "TABLE" if relation.kind == "r" else "MATERIALIZED VIEW"
        if clustered:
            plan.after.append(
                _Step(label, f"ALTER {keyword} {relation.qname} CLUSTER ON {quote_ident(name)}")
            )
        if replident:
            plan.after.append(
                _Step(
                    label,
                    f"ALTER TABLE {relation.qname} REPLICA IDENTITY USING INDEX "
                    f"{quote_ident(name)}",
                )
            )
        if comment is not None:
            plan.comments.append(_Step(label, _comment_sql(f"INDEX {index}", comment)))


def _plan_triggers(read: Any, plan: _Plan, relations: dict[int, _Relation]) -> None:
    read.execute(_TRIGGERS)
    for relid, name, definition, enabled, comment, relkind, shown in read.fetchall():
        relation = _made(relations, relid, f"trigger {name}", relkind, shown)
        if definition is None:
            raise _CatalogChanged
        label = f"trigger {name} on {relation.label}"
        plan.after.append(_Step(label, definition))
        if enabled in _TRIGGER_STATE:
            state = f"{_TRIGGER_STATE[enabled]} TRIGGER {quote_ident(name)}"
            plan.after.append(_Step(label, f"ALTER TABLE {relation.qname} {state}"))
        if comment is not None:
            target = f"TRIGGER {quote_ident(name)} ON {relation.qname}"
            plan.comments.append(_Step(label, _comment_sql(target, comment)))


def _plan_statistics(read: Any, plan: _Plan, owned: _Owned) -> None:
    read.execute(_STATISTICS)
    for schema, name, definition, stattarget, owner, comment, shown in read.fetchall():
        label = f"statistics object {shown}"
        owned(label, owner, False)
        if definition is None:
            raise _CatalogChanged
        qname = _qualified(schema, name)
        plan.after.append(_Step(label, definition))
        if stattarget is not None and stattarget >= 0:
            set_target = f"ALTER STATISTICS {qname} SET STATISTICS {int(stattarget)}"
            plan.after.append(_Step(label, set_target))
        if comment is not None:
            plan.comments.append(_Step(label, _comment_sql(f"STATISTICS {qname}", comment)))


# ---------------------------------------------------------------------------------- writing


def _write(
    plan: _Plan, read: Any, write: Any, search_path: str, encoding: str
) -> tuple[int, int, int]:
    """Make everything in the target in one transaction; returns tables, rows and bytes."""
    write.execute("BEGIN")
    for setting in (
        # Function bodies may name tables made after them; pg_dump restores the same way.
        "SET LOCAL check_function_bodies = off",
        "SET LOCAL standard_conforming_strings = on",  # what _literal's quoting assumes
        # As on the source, so the materialized views' digests compare like with like.
        "SET LOCAL extra_float_digits = 3",
        "SET LOCAL datestyle = ISO",
        "SET LOCAL intervalstyle = postgres",
        "SET LOCAL bytea_output = hex",
        "SET LOCAL client_min_messages = warning",
    ):
        write.execute(setting)
    write.execute("SELECT pg_catalog.set_config('search_path', %s, true)", (search_path,))
    _apply(write, plan.schemas)
    _create_until_fixpoint(
        write, [step for _, step in sorted(plan.definitions, key=lambda item: item[0])]
    )
    _apply(write, plan.before_rows)
    rows = size = 0
    for table in plan.tables:
        moved_rows, moved_bytes = _copy_rows(read, write, table, encoding)
        rows += moved_rows
        size += moved_bytes
    # The rows are all read: let the live database's sessions get on with their DDL.
    read.execute("COMMIT")
    _apply(write, plan.refreshes)
    _check_matviews(write, plan.matview_rows)
    for steps in (
        plan.constraints,
        plan.indexes,
        plan.foreign_keys,
        plan.after,
        plan.comments,
        plan.analyze,
    ):
        _apply(write, steps)
    write.execute("COMMIT")
    return len(plan.tables), rows, size


def _check_matviews(write: Any, expected: Sequence[tuple[str, str, str]]) -> None:
    """A refresh computes a materialized view afresh; the live one may be stale (its tables
    changed since its last REFRESH) or use volatile functions. Either way the copy would not
    be faithful, so it is refused rather than quietly made different."""
    for label, qname, digest in expected:
        if _rows_digest(write, qname) != digest:
            raise UnsupportedObject(
                f"{label} holds rows its query no longer gives (stale since its last REFRESH, "
                "or its query is volatile); REFRESH it in the live database first"
            )


def _rows_digest(cursor: Any, qname: str) -> str:
    """An order-free digest of a relation's rows, in text: every type has a text form."""
    cursor.execute(
        "SELECT pg_catalog.md5(coalesce(pg_catalog.string_agg(_pgcopy_row::text, E'\\n' "
        f"ORDER BY _pgcopy_row::text), '')) FROM {qname} AS _pgcopy_row"
    )
    return str(cursor.fetchone()[0])


def _create_until_fixpoint(write: Any, steps: Sequence[_Step]) -> None:
    """Create each object, putting off those whose dependencies are not made yet.

    The catalog order (by oid, roughly creation order) is nearly right already, so this
    usually finishes in one pass; each round must make progress or the copy fails.
    """
    pending = list(steps)
    while pending:
        deferred: list[tuple[_Step, psycopg2.Error]] = []
        for step in pending:
            write.execute("SAVEPOINT pgcopy")
            try:
                write.execute(step.sql)
            except _MISSING_DEPENDENCY as exc:
                # ROLLBACK TO keeps the savepoint open: release it, or the rest of the copy
                # would run in ever deeper subtransactions (and COPY FREEZE would refuse).
                write.execute("ROLLBACK TO SAVEPOINT pgcopy")
                write.execute("RELEASE SAVEPOINT pgcopy")
                deferred.append((step, exc))
                continue
            except (psycopg2.OperationalError, psycopg2.InterfaceError):
                raise
            except psycopg2.Error as exc:
                raise _not_recreated(step, exc) from exc
            write.execute("RELEASE SAVEPOINT pgcopy")
        if len(deferred) == len(pending):
            stuck, error = deferred[0]
            raise _not_recreated(stuck, error) from error
        pending = [step for step, _ in deferred]


def _apply(write: Any, steps: Sequence[_Step]) -> None:
    for step in steps:
        try:
            write.execute(step.sql)
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            raise
        except psycopg2.Error as exc:
            raise _not_recreated(step, exc) from exc


def _copy_rows(read: Any, write: Any, table: _Table, encoding: str) -> tuple[int, int]:
    """Stream one table's rows through a spool file; returns rows and bytes moved."""
    columns = f" ({', '.join(table.columns)})" if table.columns else ""
    # Text format: binary COPY embeds type oids, which differ for enums and composites.
    options = f"ENCODING {_literal(encoding)}"
    with tempfile.SpooledTemporaryFile(max_size=_SPOOL_BYTES) as spool:
        read.copy_expert(f"COPY {table.qname}{columns} TO STDOUT ({options})", spool)
        rows = int(read.rowcount)
        size = spool.tell()
        if rows == 0:
            return 0, size
        spool.seek(0)
        # FREEZE: the table is new in this transaction, so its rows can be written frozen, and
        # databases cloned from the snapshot never have to set hint bits or freeze them.
        load = f"COPY {table.qname}{columns} FROM STDIN (FREEZE, {options})"
        try:
            write.copy_expert(load, spool, size=_READ_CHUNK)
        except (psycopg2.OperationalError, psycopg2.InterfaceError):
            raise
        except psycopg2.Error as exc:
            raise _not_recreated(_Step(f"the rows of {table.label}", load), exc) from exc
    return rows, size


def _not_recreated(step: _Step, exc: psycopg2.Error) -> UnsupportedObject:
    diag = getattr(exc, "diag", None)
    message = (diag.message_primary if diag is not None else None) or str(exc).strip()
    return UnsupportedObject(f"{step.label} could not be recreated: {message}")


def _end_transaction(connection: Any) -> None:
    """Roll back whatever a failure left open, so autocommit can be restored.

    An explicit ROLLBACK: in autocommit mode psycopg2's `rollback()` sends nothing.
    """
    if connection.closed:
        return
    status = connection.get_transaction_status()
    if status in (
        psycopg2.extensions.TRANSACTION_STATUS_INTRANS,
        psycopg2.extensions.TRANSACTION_STATUS_INERROR,
    ):
        with contextlib.suppress(psycopg2.Error), connection.cursor() as cursor:
            cursor.execute("ROLLBACK")


# ---------------------------------------------------------------------------------- helpers


def _refusal_message(refusals: Sequence[str]) -> str:
    shown = "; ".join(refusals[:_REFUSALS_SHOWN])
    more = len(refusals) - _REFUSALS_SHOWN
    extra = f"; and {more} more" if more > 0 else ""
    return f"the logical copy cannot reproduce faithfully: {shown}{extra}"


def _qualified(schema: str, name: str) -> str:
    return f"{quote_ident(schema)}.{quote_ident(name)}"


def _literal(value: str) -> str:
    """A string constant; the target runs with standard_conforming_strings on."""
    return "'" + value.replace("'", "''") + "'"


def _collate(schema: str | None, name: str | None) -> str:
    return "" if schema is None or name is None else f" COLLATE {_qualified(schema, name)}"


def _comment_sql(target: str, comment: str | None) -> str:
    return f"COMMENT ON {target} IS {'NULL' if comment is None else _literal(comment)}"


def _option_list(options: Sequence[str]) -> str:
    """`name=value` pairs as stored in reloptions/attoptions, as a WITH (...) list."""
    pairs = []
    for option in options:
        name, _, value = option.partition("=")
        prefix, _, bare = name.rpartition(".")
        if prefix not in ("", "toast") or not _OPTION_NAME.match(bare):
            raise UnsupportedObject(f"storage option {option!r}")
        pairs.append(f"{name}={_literal(value)}")
    return ", ".join(pairs)


def _storage_options(options: Sequence[str]) -> str:
    return f" WITH ({_option_list(options)})" if options else ""
