"""`dbsandbox progress`: every catalog scenario with how far the learner got, and what is next."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sandbox.progress import Entry, suggest_next
from sandbox.rendering import escape_controls
from sandbox.scenario.catalog import Listing

NOT_STARTED = "not started"


@dataclass(frozen=True)
class Progress:
    """The catalog in its order, each scenario with its entry (None: not started yet)."""

    path: str
    rows: list[tuple[Listing, Entry | None]]
    elsewhere: list[Entry]  # played from a file outside the catalog, or since removed from it
    next: Listing | None
    engine: str | None

    @classmethod
    def of(
        cls, path: str, listings: list[Listing], entries: dict[str, Entry], engine: str | None
    ) -> Progress:
        ordered = sorted(listings, key=lambda listing: listing.order())
        known = {listing.id for listing in ordered}
        return cls(
            path=path,
            rows=[(listing, entries.get(listing.id)) for listing in ordered],
            elsewhere=[entries[key] for key in sorted(entries) if key not in known],
            next=suggest_next(ordered, entries, engine),
            engine=engine,
        )

    @property
    def done(self) -> int:
        return sum(1 for _, entry in self.rows if entry is not None and entry.done)


def _shown_date(stamp: str) -> str:
    """An entry's UTC stamp in the learner's own time zone, to the minute."""
    return datetime.fromisoformat(stamp).astimezone().strftime("%Y-%m-%d %H:%M")


def _line(scenario_id: str, title: str, entry: Entry | None) -> str:
    status = entry.status if entry else NOT_STARTED
    best = str(entry.best_score) if entry else "-"
    attempts = entry.attempts if entry else 0
    last = _shown_date(entry.last_played) if entry else "-"
    return f"{scenario_id:<22} {status:<11} {best:>4} {attempts:>8}  {last:<16}  {title}"


def _next_line(progress: Progress) -> str:
    if progress.next is not None:
        return f"next: {progress.next.id} ({progress.next.title})"
    where = f" that runs on {progress.engine}" if progress.engine else ""
    return f"next: none, every scenario{where} is done"


def to_text(progress: Progress) -> str:
    header = f"{'SCENARIO':<22} {'STATUS':<11} {'BEST':>4} {'ATTEMPTS':>8}  {'LAST PLAYED':<16}"
    lines = [f"{header}  TITLE"]
    lines += [_line(listing.id, listing.title, entry) for listing, entry in progress.rows]
    if progress.elsewhere:
        lines.append("played outside the catalog:")
        lines += [_line(entry.id, entry.title, entry) for entry in progress.elsewhere]
    lines.append(f"{progress.done} of {len(progress.rows)} done (kept in {progress.path})")
    lines.append(_next_line(progress))
    # Line by line: escape_controls would show the newlines between them as \n.
    return "\n".join(escape_controls(text) for text in lines)


def _json_row(scenario_id: str, title: str, entry: Entry | None, in_catalog: bool) -> Any:
    row: dict[str, Any] = {
        "id": scenario_id,
        "title": title,
        "in_catalog": in_catalog,
        "status": entry.status if entry else NOT_STARTED,
        "best_score": None,
        "attempts": 0,
        "first_played": None,
        "last_played": None,
        "engines": [],
        "best_parts": None,
    }
    if entry is not None:
        row.update(entry.to_json())
        row["title"] = title  # the catalog's own, when the scenario is still in it
        del row["done"]  # status says it
    return row


def to_json(progress: Progress) -> str:
    scenarios = [_json_row(s.id, s.title, entry, True) for s, entry in progress.rows]
    scenarios += [_json_row(e.id, e.title, e, False) for e in progress.elsewhere]
    suggested = progress.next
    return json.dumps(
        {
            "path": progress.path,
            "done": progress.done,
            "total": len(progress.rows),
            "next": {"id": suggested.id, "title": suggested.title} if suggested else None,
            "scenarios": scenarios,
        },
        indent=2,
    )
