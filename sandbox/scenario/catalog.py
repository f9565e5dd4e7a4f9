"""Where scenarios are found: the catalog folder, or a path the user gives."""

from __future__ import annotations

import os
import sys
import tomllib
from dataclasses import dataclass
from pathlib import Path

from sandbox.errors import UserError
from sandbox.scenario.loader import ScenarioInvalid, load
from sandbox.scenario.model import DIFFICULTIES, Scenario
from sandbox.userfiles import unreadable

CATALOG_ENV = "DBSANDBOX_SCENARIOS"


def catalog_dir() -> Path:
    """The catalog: $DBSANDBOX_SCENARIOS, the source tree's scenarios/, or the installed copy."""
    configured = os.environ.get(CATALOG_ENV)
    if configured:
        return Path(configured)
    source_tree = Path(__file__).resolve().parent.parent.parent / "scenarios"
    if source_tree.is_dir():
        return source_tree
    return Path(sys.prefix) / "share" / "dbsandbox" / "scenarios"


def catalog_files() -> list[Path]:
    """The catalog's *.toml entries, whatever they are: loading one that is not a regular
    file is a problem that names it."""
    folder = catalog_dir()
    return sorted(folder.glob("*.toml")) if folder.is_dir() else []


def catalog() -> list[Scenario]:
    """Every scenario of the catalog, by id; a broken file is a UserError naming it."""
    return [load(path) for path in catalog_files()]


@dataclass(frozen=True)
class Listing:
    """What a picker shows of a scenario, read without validating or transpiling it."""

    id: str
    title: str
    difficulty: str
    engines: tuple[str, ...]
    summary: str = ""
    tags: tuple[str, ...] = ()
    engine_note: str = ""  # why it runs on one engine only

    def supports(self, engine: str) -> bool:
        return engine in self.engines

    def unavailable_reason(self, engine: str) -> str | None:
        """Why it cannot be played on `engine`, in a line; None when it can."""
        if self.supports(engine):
            return None
        where = " and ".join(self.engines) or "no engine"
        note = " ".join(self.engine_note.split())
        return f"runs on {where} only" + (f": {note}" if note else "")

    def order(self) -> tuple[int, str]:
        """Easiest first, then by title: a newcomer meets the beginner lessons first."""
        rank = DIFFICULTIES.index(self.difficulty) if self.difficulty in DIFFICULTIES else 99
        return rank, self.title.casefold()


def listings() -> list[Listing]:
    """The catalog's titles at TOML speed: the full load (with sqlglot) waits for a pick."""
    found = []
    for path in catalog_files():
        if unreadable(path) is not None:  # a named pipe there would hang the picker
            continue
        try:
            data = tomllib.loads(path.read_text(encoding="utf-8-sig"))
        except (OSError, UnicodeDecodeError, ValueError, RecursionError):
            continue  # `dbsandbox validate` reports it; the picker just leaves it out
        engines = data.get("engines")
        tags = data.get("tags")
        found.append(
            Listing(
                id=str(data.get("id", path.stem)),
                title=str(data.get("title", path.stem)),
                difficulty=str(data.get("difficulty", "")),
                engines=tuple(str(e) for e in engines) if isinstance(engines, list) else (),
                summary=str(data.get("summary", "")),
                tags=tuple(str(t) for t in tags) if isinstance(tags, list) else (),
                engine_note=str(data.get("engine_note", "")),
            )
        )
    return sorted(found, key=Listing.order)


def next_listing(found: list[Listing], current: str, engine: str) -> Listing | None:
    """The scenario to suggest after `current`: the next playable one in catalog order,
    wrapping round to the first; None when no other one runs on `engine`."""
    ids = [listing.id for listing in found]
    start = ids.index(current) + 1 if current in ids else 0
    for listing in found[start:] + found[:start]:
        if listing.id != current and listing.supports(engine):
            return listing
    return None


def is_scenario_ref(ref: str) -> bool:
    """Whether `dbsandbox run REF` means a scenario: a .toml path or a catalog id."""
    if ref.endswith(".toml"):
        return True
    return not Path(ref).exists() and (catalog_dir() / f"{ref}.toml").exists()


def find(ref: str) -> Scenario:
    """A scenario by catalog id or by path."""
    path = Path(ref) if ref.endswith(".toml") else catalog_dir() / f"{ref}.toml"
    why = unreadable(path)
    if why == "no such file":
        known = ", ".join(p.stem for p in catalog_files()) or "none found"
        raise UserError(f"no scenario {ref!r} (catalog: {known})")
    if why is not None:
        raise UserError(f"cannot read {path}: {why}")
    try:
        return load(path)
    except ScenarioInvalid as exc:
        first = exc.problems[0]
        more = (
            f" (and {len(exc.problems) - 1} more; run dbsandbox validate)"
            if len(exc.problems) > 1
            else ""
        )
        raise UserError(f"{first}{more}") from None
