"""`dbsandbox clean`: remove what a crashed sandbox left behind, and nothing else.

A PostgreSQL scratch database or schema is an orphan when its name has our prefix, its comment
carries our marker (so we created it), and no connection in pg_stat_activity carries its
application name (every live sandbox keeps one open). A snapshot database (`<name>_s<N>`) and
a restore in progress (`<name>_r`) belong to the sandbox `<name>`. A SQLite sandbox directory
is an orphan when the process that made it is gone.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.masking import scrub
from sandbox.targets import (
    MARKER,
    SCRATCH_PREFIX,
    TEMP_DIR_PREFIX,
    connect_admin,
    parse_postgres_url,
    quote_ident,
)


@dataclass
class CleanReport:
    removed: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # "name: why"


_ORPHAN_DATABASES = """
SELECT d.datname,
       pg_catalog.pg_get_userbyid(d.datdba) = current_user
         OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) AS may_drop,
       (SELECT count(*) FROM pg_catalog.pg_stat_activity a
         WHERE starts_with(a.application_name,
                           'dbsandbox:' || regexp_replace(d.datname, '_(s[0-9]+|r)$', ''))) AS live,
       (SELECT count(*) FROM pg_catalog.pg_stat_activity a
         WHERE a.datname = d.datname) AS connections
FROM pg_catalog.pg_database d
WHERE d.datname LIKE %(prefix)s
  AND pg_catalog.shobj_description(d.oid, 'pg_database') LIKE %(marker)s
ORDER BY 1
"""

_ORPHAN_SCHEMAS = """
SELECT n.nspname,
       pg_catalog.pg_get_userbyid(n.nspowner) = current_user
         OR (SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user) AS may_drop,
       (SELECT count(*) FROM pg_catalog.pg_stat_activity a
         WHERE starts_with(a.application_name, 'dbsandbox:' || n.nspname)) AS live,
       0 AS connections
FROM pg_catalog.pg_namespace n
WHERE n.nspname LIKE %(prefix)s
  AND pg_catalog.obj_description(n.oid, 'pg_namespace') LIKE %(marker)s
ORDER BY 1
"""


def clean_postgres(url_text: str, dry_run: bool = False) -> CleanReport:
    """Drop orphaned scratch databases on the server and scratch schemas in the URL's database."""
    import psycopg2

    report = CleanReport()
    url = parse_postgres_url(url_text)
    engine, admin, sa_conn = connect_admin(url, "dbsandbox:clean")
    params = {"prefix": SCRATCH_PREFIX.replace("_", r"\_") + "%", "marker": MARKER + "%"}
    try:
        for query, what in ((_ORPHAN_DATABASES, "database"), (_ORPHAN_SCHEMAS, "schema")):
            with admin.cursor() as cursor:
                cursor.execute(query, params)
                candidates = cursor.fetchall()
            for name, may_drop, live, connections in candidates:
                label = f"{what} {name}"
                if live:
                    report.kept.append(f"{label}: in use by a running sandbox")
                elif connections:
                    report.kept.append(f"{label}: {connections} other connection(s) open")
                elif not may_drop:
                    report.kept.append(f"{label}: owned by another role")
                elif dry_run:
                    report.removed.append(f"{label} (dry run: not dropped)")
                else:
                    drop = (
                        "DROP DATABASE IF EXISTS" if what == "database" else "DROP SCHEMA IF EXISTS"
                    )
                    suffix = " CASCADE" if what == "schema" else ""
                    try:
                        with admin.cursor() as cursor:
                            cursor.execute(f"{drop} {quote_ident(name)}{suffix}")
                    except psycopg2.Error as exc:
                        # E.g. someone connected since the check: keep going with the others,
                        # and say why this one stays (no traceback).
                        reason = exc.diag.message_primary or str(exc).strip().splitlines()[0]
                        report.kept.append(f"{label}: could not drop it: {scrub(reason)}")
                    else:
                        report.removed.append(label)
    finally:
        sa_conn.close()
        engine.dispose()
    return report


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def clean_sqlite(dry_run: bool = False, root: Path | None = None) -> CleanReport:
    """Remove temporary SQLite sandbox directories whose process is gone."""
    report = CleanReport()
    base = root or Path(tempfile.gettempdir())
    for directory in sorted(base.glob(TEMP_DIR_PREFIX + "*")):
        owner = directory / "owner.pid"
        if not directory.is_dir() or not owner.is_file():
            continue  # not ours: we always write owner.pid
        try:
            pid = int(owner.read_text().strip())
        except ValueError:
            continue
        if _alive(pid):
            report.kept.append(f"{directory}: in use by process {pid}")
        elif dry_run:
            report.removed.append(f"{directory} (dry run: not removed)")
        else:
            shutil.rmtree(directory, ignore_errors=True)
            report.removed.append(str(directory))
    return report
