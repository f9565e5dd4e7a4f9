"""What the guard says about a statement: findings, their rules and severities."""

from __future__ import annotations

import enum
import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class Severity(enum.StrEnum):
    ERROR = "error"  # destroys or bulk-overwrites data or objects, or turns integrity off
    WARNING = "warning"  # could not be verified, or risky
    INFO = "info"  # advice
    # Reaches outside the sandbox: never runs in one. Not a failure for `dbsandbox lint`: in a
    # migration, CREATE EXTENSION or GRANT ... ON DATABASE is ordinary; only a sandbox refuses it.
    BOUNDARY = "boundary"


@dataclass(frozen=True)
class Rule:
    id: str
    severity: Severity
    summary: str


def _rules(*rules: Rule) -> dict[str, Rule]:
    return {rule.id: rule for rule in rules}


E, W, B, A = Severity.ERROR, Severity.WARNING, Severity.BOUNDARY, Severity.INFO  # A: advice
RULES = _rules(
    Rule("delete-without-where", E, "DELETE with no WHERE removes every row"),
    Rule("update-without-where", E, "UPDATE with no WHERE overwrites every row"),
    Rule("always-true-where", E, "a WHERE that is true for every row filters nothing"),
    Rule("where-not-restricting", E, "a WHERE that never looks at the target's own rows"),
    Rule("merge-matches-all", E, "MERGE whose ON condition matches every target row"),
    Rule("drop-table", E, "DROP TABLE destroys the table and all its rows"),
    Rule("drop-database", E, "DROP DATABASE destroys a whole database"),
    Rule("drop-schema", E, "DROP SCHEMA destroys a schema (and with CASCADE, all in it)"),
    Rule("drop-object", E, "DROP of a view, index, function or other object"),
    Rule("truncate", E, "TRUNCATE removes every row at once, without a WHERE"),
    Rule("drop-column", E, "ALTER TABLE ... DROP COLUMN destroys a column's data"),
    Rule(
        "drop-attribute", E, "ALTER TYPE ... DROP ATTRIBUTE destroys it in every column of the type"
    ),
    Rule("drop-constraint", E, "dropping a constraint turns an integrity check off"),
    Rule("drop-not-null", E, "ALTER ... DROP NOT NULL turns a column's NOT NULL check off"),
    Rule("foreign-keys-off", E, "PRAGMA foreign_keys=OFF stops SQLite enforcing foreign keys"),
    Rule("writable-schema", E, "PRAGMA writable_schema lets statements corrupt the schema"),
    Rule("ignore-check-constraints", E, "PRAGMA ignore_check_constraints turns CHECKs off"),
    Rule("replication-role-replica", E, "session_replication_role=replica skips FK triggers"),
    Rule("disable-trigger", E, "DISABLE TRIGGER turns triggers (and FK checks) off"),
    Rule("unverified", W, "the guard could not read this statement, so it cannot vouch for it"),
    Rule("misspelt-command", A, "a misspelt command word: the engine refuses it"),
    Rule("null-comparison", A, "x = NULL is never true: IS NULL is the test"),
    # Migration advice (sandbox/guard/migration.py): locks held longer than needed.
    Rule("lock-without-timeout", A, "an ALTER that may queue every query behind its wait"),
    Rule("index-not-concurrent", A, "CREATE INDEX without CONCURRENTLY blocks writes"),
    Rule("concurrently-in-transaction", A, "CONCURRENTLY cannot run in a transaction block"),
    Rule("constraint-not-valid", A, "a constraint added without NOT VALID scans under lock"),
    Rule("set-not-null-scan", A, "SET NOT NULL without a validated CHECK scans under lock"),
    Rule("table-rewrite", A, "a type change or per-row default rewrites the table"),
    Rule("work-after-exclusive-lock", A, "work done while ACCESS EXCLUSIVE is still held"),
    Rule("fk-without-index", A, "a foreign key whose columns have no index"),
    Rule("sqlite-alter-limit", A, "what SQLite's ALTER TABLE cannot do, and the rebuild"),
    Rule("other-database", B, "creates, alters, comments on or grants on a database"),
    Rule("server-role", B, "creates or alters a role, or grants one role to another"),
    Rule("system-catalog", B, "writes or locks PostgreSQL's system catalogs directly"),
    Rule("outside-file", B, "reads or writes a file outside the sandbox"),
    Rule("server-config", B, "changes the server: ALTER SYSTEM, reload, WAL, tablespaces"),
    Rule("other-session", B, "signals another server process (terminate, cancel)"),
    Rule("remote-server", B, "connects to another database or server (dblink, FDW)"),
    Rule("server-code", B, "runs native or untrusted code on the server, or a shell command"),
    Rule("too-deep-to-check", B, "SQL nested too deeply to check that it stays in the sandbox"),
)


# The migration rules: advice by default; `dbsandbox lint --strict-migrations` fails on them.
MIGRATION_RULES = frozenset(
    {
        "lock-without-timeout", "index-not-concurrent", "concurrently-in-transaction",
        "constraint-not-valid", "set-not-null-scan", "table-rewrite", "work-after-exclusive-lock",
        "fk-without-index", "sqlite-alter-limit",
    }
)  # fmt: skip


@dataclass(frozen=True)
class PreviewPlan:
    """SQL that measures what a DML statement would touch, without running it.

    The SQL is generated on first use: most findings are only listed (`dbsandbox lint`), and
    generating it costs more than linting the statement.
    """

    verb: str  # "delete", "update" or "merge"
    table: str
    build: Callable[[], tuple[str, str, str]] = field(repr=False, compare=False)

    @functools.cached_property
    def _sql(self) -> tuple[str, str, str]:
        return self.build()

    @property
    def count_sql(self) -> str:
        """SELECT count(*) of the rows it would touch."""
        return self._sql[0]

    @property
    def total_sql(self) -> str:
        """SELECT count(*) of the whole table."""
        return self._sql[1]

    @property
    def sample_sql(self) -> str:
        """A few of the rows it would touch."""
        return self._sql[2]


@dataclass(frozen=True)
class Finding:
    rule: str
    severity: Severity
    message: str
    fix: str
    statement: str  # the statement's source text, as in the script
    line: int
    column: int
    table: str | None = None
    preview: PreviewPlan | None = None
    # DROP / TRUNCATE: what the statement names, as (kind, name), and whether CASCADE is on.
    objects: tuple[tuple[str, str], ...] = ()
    cascade: bool = False

    def to_json(self, path: str | None = None) -> dict[str, Any]:
        data: dict[str, Any] = {
            "path": path,
            "line": self.line,
            "column": self.column,
            "rule": self.rule,
            "severity": str(self.severity),
            "message": self.message,
            "fix": self.fix,
            "statement": self.statement,
            "table": self.table,
        }
        if self.objects:
            data["objects"] = [{"kind": k, "name": n} for k, n in self.objects]
            data["cascade"] = self.cascade
        return data

    @property
    def blocking(self) -> bool:
        """Whether `dbsandbox lint` should fail on it (errors and warnings do)."""
        return self.severity in (Severity.ERROR, Severity.WARNING)
