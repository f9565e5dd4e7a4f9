"""A breakage scenario: the stage, the mistake, the learner's task, and how recovery is judged."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ENGINES = ("sqlite", "postgres")
DIFFICULTIES = ("beginner", "intermediate", "advanced")
STATUSES = ("ok", "error")
TX_STATES = ("idle", "in_transaction", "failed")


def null_to_none(value: object) -> object:
    """TOML has no NULL: `{ null = true }` in expected rows stands for SQL NULL."""
    if isinstance(value, dict) and value == {"null": True}:
        return None
    if isinstance(value, list):
        return [null_to_none(v) for v in value]
    return value


POSTGRES_LEVELS = ("read uncommitted", "read committed", "repeatable read", "serializable")


@dataclass(frozen=True)
class PerEngine:
    """A value that may differ per engine: `default`, or an override for one engine."""

    default: Any = None
    overrides: dict[str, Any] = field(default_factory=dict)

    def on(self, engine: str) -> Any:
        return self.overrides.get(engine, self.default)


@dataclass(frozen=True)
class SessionSpec:
    name: str
    isolation: str | None = None  # PostgreSQL isolation level for every transaction it opens


@dataclass(frozen=True)
class Expectation:
    """What a scripted step must do. Unset fields are not checked."""

    status: PerEngine  # "ok" or "error"
    error: PerEngine  # error code: SQLSTATE or SQLite result-code name
    rows: PerEngine  # list of rows (lists of JSON values)
    rowcount: PerEngine
    waits: PerEngine  # True: must wait on a lock first; False: must not
    findings: PerEngine  # guard rule ids it must raise (errors and warnings)
    tag: PerEngine  # the server's command tag (PostgreSQL), e.g. "ROLLBACK" for a failed COMMIT
    tx_after: PerEngine  # "idle", "in_transaction" or "failed"

    def on(self, engine: str) -> dict[str, Any]:
        """The expectations in force on one engine, unset ones left out."""
        fields = {
            "status": self.status,
            "error": self.error,
            "rows": self.rows,
            "rowcount": self.rowcount,
            "waits": self.waits,
            "findings": self.findings,
            "tag": self.tag,
            "tx_after": self.tx_after,
        }
        return {k: v.on(engine) for k, v in fields.items() if v.on(engine) is not None}


@dataclass(frozen=True)
class Step:
    session: str
    sql: PerEngine
    expect: Expectation
    line: int | None = None  # where the step is in the scenario file
    engines: tuple[str, ...] | None = None  # None: every engine of the scenario
    # Go on to the next step as soon as this one waits on a lock (like `\background` in a
    # script): on SQLite the only way a later COMMIT can release it within its busy timeout.
    background: bool = False

    def runs_on(self, engine: str) -> bool:
        return self.engines is None or engine in self.engines


RECOVERY_METHODS = ("rollback", "savepoint", "restore", "repair")


@dataclass(frozen=True)
class Check:
    """A question whose answer proves recovery.

    A data check runs `sql` and compares its rows with `expect`; a recovery check asks how the
    learner got out (`recovery`: any of RECOVERY_METHODS will do), judged from what they ran.
    """

    name: str
    sql: PerEngine
    expect: PerEngine  # rows
    session: str | None = None  # None: a fresh session that sees only committed data
    line: int | None = None
    recovery: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Scenario:
    id: str
    title: str
    summary: str
    difficulty: str
    tags: tuple[str, ...]
    engines: tuple[str, ...]
    story: str
    task: str
    setup: PerEngine  # SQL script per engine (already transpiled)
    sessions: tuple[SessionSpec, ...]
    breakage: tuple[Step, ...]
    checks: tuple[Check, ...]
    hints: tuple[str, ...]
    solution: tuple[Step, ...]
    path: Path | None = None
    engine_note: str | None = None  # why a scenario runs on one engine only

    def supports(self, engine: str) -> bool:
        return engine in self.engines

    def listing(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "title": self.title,
            "difficulty": self.difficulty,
            "engines": list(self.engines),
            "tags": list(self.tags),
            "summary": self.summary,
        }
