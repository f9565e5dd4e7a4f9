"""`dbsandbox clean`: remove what a crashed sandbox left behind, and nothing else.

On PostgreSQL, what a sandbox made is known from its record (`sandbox.ownership`), written
before each database or schema is created; `clean` drops only what a record names, when the
process that wrote it is gone and no connection carries the sandbox's application name (every
live sandbox keeps one open), and only while the object's oid is still the one recorded. A
database that merely carries our prefix and marker comment is reported, never dropped: a
script could forge both on someone else's database. A SQLite sandbox directory names the
process that made it, from the moment it exists; it is an orphan when that process is gone.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.masking import scrub
from sandbox.ownership import Record, all_records, pid_alive
from sandbox.targets import (
    MARKER,
    SCRATCH_PREFIX,
    TEMP_DIR_PREFIX,
    connect_admin,
    parse_postgres_url,
    quote_ident,
    system_identifier,
)


@dataclass
class CleanReport:
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # "name: why"


_DATABASE_STATE = """
SELECT d.oid,
       pg_catalog.pg_get_userbyid(d.datdba) = current_user
         OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) AS may_drop,
       (SELECT count(*) FROM pg_catalog.pg_stat_activity a
         WHERE a.datname = d.datname
           AND NOT starts_with(a.application_name, 'dbsandbox:' || %(sandbox)s)) AS connections
FROM pg_catalog.pg_database d
WHERE d.datname = %(name)s
"""

_SCHEMA_STATE = """
SELECT n.oid,
       pg_catalog.pg_get_userbyid(n.nspowner) = current_user
         OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) AS may_drop,
       0 AS connections
FROM pg_catalog.pg_namespace n
WHERE n.nspname = %(name)s
"""

# Marked like ours, yet no record names them: reported so that a person can decide.
_UNRECORDED = """
SELECT d.datname FROM pg_catalog.pg_database d
WHERE d.datname LIKE %(prefix)s
  AND pg_catalog.shobj_description(d.oid, 'pg_database') LIKE %(marker)s
  AND NOT EXISTS (SELECT 1 FROM pg_catalog.pg_stat_activity a
                  WHERE starts_with(a.application_name,
                                    'dbsandbox:' || regexp_replace(d.datname, '_(s[0-9]+|r)$', '')))
ORDER BY 1
"""


def clean_postgres(url_text: str, dry_run: bool = False) -> CleanReport:
    """Drop what dead sandboxes of this machine recorded on the URL's server."""
    report = CleanReport()
    url = parse_postgres_url(url_text)
    engine, admin, sa_conn = connect_admin(url, "dbsandbox:clean")
    try:
        server_id = system_identifier(admin)
        recorded: set[str] = set()
        for record in all_records():
            known = record.server.get("system_identifier")
            if known and server_id:
                if known != server_id:
                    continue  # a sandbox on another server
                same_server = True
            else:  # the identifier could not be read: the address is the next best thing
                same_server = (record.server.get("host"), record.server.get("port")) == (
                    url.host,
                    url.port,
                )
            recorded.update(record.objects)
            if record.mode == "schema":
                if record.database is None:
                    continue
                # The schema lives in the database the sandbox was given.
                schema_engine, schema_admin, schema_conn = connect_admin(
                    url.set(database=record.database), "dbsandbox:clean"
                )
                try:
                    _clean_record(schema_admin, record, "schema", dry_run, same_server, report)
                finally:
                    schema_conn.close()
                    schema_engine.dispose()
            else:
                _clean_record(admin, record, "database", dry_run, same_server, report)
        with admin.cursor() as cursor:
            params = {"prefix": SCRATCH_PREFIX.replace("_", r"\_") + "%", "marker": MARKER + "%"}
            cursor.execute(_UNRECORDED, params)
            for (name,) in cursor.fetchall():
                if name not in recorded:
                    report.kept.append(
                        f"database {name}: marked as a scratch database, but no sandbox on this "
                        "machine recorded making it (a marker can be forged); drop it yourself "
                        "if it is yours"
                    )
    finally:
        sa_conn.close()
        engine.dispose()
    return report


def _clean_record(
    admin: Any, record: Record, what: str, dry_run: bool, same_server: bool, report: CleanReport
) -> None:
    """Drop what one record names, if its sandbox is dead; strike what is gone from it.

    An entry is struck for a missing or replaced object only when the record is known to be
    about this server: the same names on another server are still that server's leftovers.
    """
    import psycopg2

    state_sql = _SCHEMA_STATE if what == "schema" else _DATABASE_STATE
    alive = record.owner_alive()
    if not alive and not dry_run:
        # A killed sandbox's server processes live on until they next talk to it (one inside
        # pg_sleep(300) for five minutes; one inside CREATE DATABASE until that is done): end
        # them first, so that what they hold or are still making cannot outlive the clean.
        _end_orphan_backends(admin, record.name)
    may_strike = same_server and not dry_run and not alive
    for name, oid in sorted(record.objects.items()):
        label = f"{what} {name}"
        with admin.cursor() as cursor:
            cursor.execute(state_sql, {"name": name, "sandbox": record.name})
            row = cursor.fetchone()
        if row is None:
            if may_strike:
                record.release(name)  # never made, or already gone
            continue
        found_oid, may_drop, connections = row
        if oid is not None and int(found_oid) != oid:
            # Someone made a new one under a name this sandbox once used: not ours.
            report.kept.append(f"{label}: not the one the sandbox made (its oid changed)")
            if may_strike:
                record.release(name)
            continue
        if alive or (dry_run and _backends_of(admin, record.name)):
            report.kept.append(f"{label}: in use by a running sandbox")
        elif connections:
            report.kept.append(f"{label}: {connections} other connection(s) open")
        elif not may_drop:
            report.kept.append(f"{label}: owned by another role")
        elif dry_run:
            report.removed.append(f"{label} (dry run: not dropped)")
        else:
            drop = (
                f"DROP DATABASE IF EXISTS {quote_ident(name)} WITH (FORCE)"
                if what == "database"
                else f"DROP SCHEMA IF EXISTS {quote_ident(name)} CASCADE"
            )
            try:
                with admin.cursor() as cursor:
                    cursor.execute(drop)
            except psycopg2.Error as exc:
                # E.g. someone connected since the check: keep going with the others, and say
                # why this one stays (no traceback).
                reason = exc.diag.message_primary or str(exc).strip().splitlines()[0]
                report.kept.append(f"{label}: could not drop it: {scrub(reason)}")
            else:
                record.release(name)
                report.removed.append(label)
    if not dry_run and not alive and not record.objects:
        record.forget()


_BACKENDS = """
SELECT pid FROM pg_catalog.pg_stat_activity
WHERE starts_with(application_name, 'dbsandbox:' || %s) AND pid <> pg_catalog.pg_backend_pid()
"""


def _backends_of(admin: Any, sandbox: str) -> list[int]:
    with admin.cursor() as cursor:
        cursor.execute(_BACKENDS, (sandbox,))
        return [int(row[0]) for row in cursor.fetchall()]


def _end_orphan_backends(admin: Any, sandbox: str, within_s: float = 5.0) -> None:
    """Terminate the server processes a dead sandbox left, and wait (bounded) until they
    are gone. A process the role may not signal is left: its database is then kept."""
    import psycopg2

    deadline = time.monotonic() + within_s
    for pid in _backends_of(admin, sandbox):
        with contextlib.suppress(psycopg2.Error), admin.cursor() as cursor:
            cursor.execute("SELECT pg_catalog.pg_terminate_backend(%s)", (pid,))
    while _backends_of(admin, sandbox) and time.monotonic() < deadline:
        time.sleep(0.05)


# The process that made a directory is in its name from the moment it exists (mkdtemp's
# prefix); owner.pid, written just after, says the same for directories of older versions.
_OWNER_IN_NAME = re.compile(re.escape(TEMP_DIR_PREFIX) + r"(\d+)-")


def _owner_of(directory: Path) -> int | None:
    owner = directory / "owner.pid"
    with contextlib.suppress(OSError, ValueError):
        return int(owner.read_text().strip())
    match = _OWNER_IN_NAME.match(directory.name)
    return int(match.group(1)) if match else None


def clean_sqlite(dry_run: bool = False, root: Path | None = None) -> CleanReport:
    """Remove temporary SQLite sandbox directories (of this user) whose process is gone."""
    report = CleanReport()
    base = root or Path(tempfile.gettempdir())
    for directory in sorted(base.glob(TEMP_DIR_PREFIX + "*")):
        try:
            info = directory.lstat()
        except OSError:
            continue
        # Only real directories of this user: never follow a link, never touch another's.
        if not directory.is_dir() or directory.is_symlink() or info.st_uid != os.getuid():
            continue
        pid = _owner_of(directory)
        if pid is None:
            continue  # not ours: ours always name their process
        if pid_alive(pid):
            report.kept.append(f"{directory}: in use by process {pid}")
        elif dry_run:
            report.removed.append(f"{directory} (dry run: not removed)")
        else:
            shutil.rmtree(directory, ignore_errors=True)
            report.removed.append(str(directory))
    return report
