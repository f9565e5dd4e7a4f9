"""What executing one statement did: the values every other part of dbsandbox reports."""

from __future__ import annotations

import datetime as dt
import decimal
import enum
import math
import uuid
from dataclasses import dataclass, field
from typing import Any


class TxState(enum.StrEnum):
    """A session's transaction state as read back from the driver."""

    IDLE = "idle"
    IN_TRANSACTION = "in_transaction"
    FAILED = "failed"  # PostgreSQL only: every statement fails until ROLLBACK


class Status(enum.StrEnum):
    """How a statement ended."""

    OK = "ok"
    ERROR = "error"
    BLOCKED = "blocked"  # not executed: the guard's policy refused it
    CANCELLED = (
        "cancelled"  # stopped by dbsandbox (lock wait at the end of a script, timeout, user)
    )


@dataclass(frozen=True)
class SqlError:
    """An error as the engine gave it, with its code (SQLSTATE or SQLite result-code name)."""

    code: str | None
    message: str
    detail: str | None = None
    hint: str | None = None
    # Where in the statement's text the engine points (0-based), when it does: see errorpos.
    position: int | None = None
    # The engine's CONTEXT line, e.g. PostgreSQL's 'while deleting tuple (0,1) in relation
    # "accounts"': the one trace a lock wait leaves when a timeout ends it too soon to be seen.
    context: str | None = None

    def to_json(self) -> dict[str, Any]:
        data: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.detail:
            data["detail"] = self.detail
        if self.hint:
            data["hint"] = self.hint
        return data


@dataclass
class Outcome:
    """The truthful result of one statement on one session."""

    status: Status
    tx_before: TxState
    tx_after: TxState
    elapsed_ms: float
    columns: list[str] = field(default_factory=list)
    rows: list[tuple[Any, ...]] = field(default_factory=list)
    more_rows: bool = False
    # A later page of a query re-run for it: how many of its first rows were passed over before
    # `rows` (fewer than asked when the result now ends sooner). None: the statement as typed.
    skipped: int | None = None
    rowcount: int | None = None
    tag: str | None = None
    error: SqlError | None = None
    notices: list[str] = field(default_factory=list)
    # Something the learner must not miss, e.g. a COMMIT that the server answered with ROLLBACK.
    note: str | None = None
    # What a meta-command (\snapshot, \restore, \diff, \snapshots) produced, JSON-ready.
    data: dict[str, Any] | None = None


def json_value(value: Any) -> Any:
    """Convert a driver value to a JSON value without losing what it says.

    Integers and finite floats are JSON numbers (a float's shortest text reads back as the
    same float). A numeric (Decimal) is a string holding its exact text, since a JSON reader
    would turn 12345678901234567890.123456789 into a float. NaN and the infinities, which JSON
    has no numbers for, are the strings "NaN", "Infinity" and "-Infinity" as PostgreSQL spells
    them; an infinite date or timestamp arrives as "infinity" / "-infinity" already
    (sandbox.engines.postgres.keep_infinities).
    """
    if value is None or isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        if value != value:
            return "NaN"
        if value in (math.inf, -math.inf):
            return "Infinity" if value > 0 else "-Infinity"
        return value
    if isinstance(value, decimal.Decimal):
        return str(value)  # NaN, Infinity and -Infinity included
    if isinstance(value, dt.datetime | dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, dt.timedelta):
        return str(value)
    if isinstance(value, bytes | bytearray | memoryview):
        return "\\x" + bytes(value).hex()  # PostgreSQL's own bytea text form
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, list | tuple):
        return [json_value(v) for v in value]
    if isinstance(value, dict):
        return {str(k): json_value(v) for k, v in value.items()}
    return str(value)
