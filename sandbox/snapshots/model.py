"""What a snapshot is, and the errors a learner can cause with one."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from sandbox.errors import UserError

# Short enough for a PostgreSQL database comment and a file name; no quoting needed anywhere.
SNAPSHOT_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_.-]{0,47}$")
NAME_RULE = "letters, digits, _ . or - (at most 48), e.g. before-fix"


class SnapshotError(UserError):
    """A snapshot request that cannot be done: unknown name, unsupported object, busy lock."""


@dataclass(frozen=True)
class SnapshotInfo:
    """One named copy of the whole sandbox, as it was committed when it was taken."""

    name: str
    reason: str  # "on demand", "scenario start", "before DELETE FROM accounts (A, line 3)"
    method: str  # "backup api", "template clone" or "logical copy"
    taken_at: str  # ISO 8601 UTC
    elapsed_ms: float
    size_bytes: int
    tables: int

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "reason": self.reason,
            "method": self.method,
            "taken_at": self.taken_at,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "size_bytes": self.size_bytes,
            "tables": self.tables,
        }


def check_name(name: str) -> str:
    if not SNAPSHOT_NAME.match(name):
        raise SnapshotError(f"bad snapshot name {name!r}: use {NAME_RULE}")
    return name


def human_size(size: int) -> str:
    value = float(size)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if value < 1024 or unit == "GiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.1f} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
