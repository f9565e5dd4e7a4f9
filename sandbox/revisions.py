"""Alembic's offline SQL (`alembic upgrade head --sql`): which revision each line belongs to.

In offline mode Alembic writes every migration's SQL into one script and marks where each
revision starts with a comment of its own:

    -- Running upgrade  -> 1a2b3c
    -- Running upgrade 1a2b3c -> 4d5e6f
    -- Running downgrade 4d5e6f -> 1a2b3c

(a merge revision names its parents with commas: `-- Running upgrade 1a2b, 9f8e -> 77aa`).
What comes before the first mark is Alembic's own bookkeeping (BEGIN, CREATE TABLE
alembic_version). `dbsandbox lint` uses this to say which revision a finding is in.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_MARK = re.compile(r"^--\s*Running (upgrade|downgrade) (.*?)\s*->\s*(\S.*?)\s*$", re.MULTILINE)


@dataclass(frozen=True)
class Revision:
    """One revision's part of the script, from its mark to the next one."""

    direction: str  # "upgrade" or "downgrade"
    source: str  # the revision it starts from ("" for the first one); merges: "a, b"
    target: str  # the revision it leads to
    line: int  # the line of its "-- Running ..." mark (1-based)

    @property
    def name(self) -> str:
        return f"{self.direction} {self.source or '(base)'} -> {self.target}"

    def to_json(self) -> dict[str, Any]:
        return {
            "direction": self.direction,
            "from": self.source or None,
            "to": self.target,
            "line": self.line,
        }


def revisions(text: str) -> list[Revision]:
    """Every revision marked in `text`, in order; empty when it is not Alembic's output."""
    found: list[Revision] = []
    for match in _MARK.finditer(text):
        line = text.count("\n", 0, match.start()) + 1
        found.append(Revision(match.group(1), match.group(2), match.group(3), line))
    return found


def revision_at(marked: list[Revision], line: int) -> Revision | None:
    """The revision whose part of the script holds `line`; None before the first mark."""
    current = None
    for revision in marked:
        if revision.line > line:
            break
        current = revision
    return current
