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

# Folders given with --scenarios for this command (main() sets them for each call).
_given: list[Path] = []


def catalog_dir() -> Path:
    """The built-in catalog: the source tree's scenarios/, or the copy installed with it."""
    source_tree = Path(__file__).resolve().parent.parent.parent / "scenarios"
    if source_tree.is_dir():
        return source_tree
    return Path(sys.prefix) / "share" / "dbsandbox" / "scenarios"


def use_folders(folders: list[Path] | None) -> None:
    """The folders of scenarios that --scenarios adds beside the catalog, for this command."""
    for folder in folders or []:
        if not folder.is_dir():
            what = "no such folder" if not folder.exists() else "not a folder"
            raise UserError(f"--scenarios {folder}: {what}")
    _given[:] = list(folders or [])


def pack_dirs() -> list[Path]:
    """Folders beside the catalog: --scenarios, then $DBSANDBOX_SCENARIOS (several joined
    with the platform's path separator, as PATH is)."""
    configured = os.environ.get(CATALOG_ENV, "")
    from_env = [Path(part) for part in configured.split(os.pathsep) if part.strip()]
    return [*_given, *(folder for folder in from_env if folder not in _given)]


def catalog_files() -> list[Path]:
    """Every scenario file: the catalog's and each pack's *.toml, whatever they are (loading
    one that is not a regular file is a problem that names it). A pack's file with a
    catalog id stands in for the catalog's: a teacher's version of a lesson wins."""
    by_id: dict[str, Path] = {}
    for folder in [catalog_dir(), *pack_dirs()]:
        if folder.is_dir():
            for path in sorted(folder.glob("*.toml")):
                by_id[path.stem] = path
    return sorted(by_id.values(), key=lambda path: path.stem)


def source_of(path: Path) -> str | None:
    """The pack folder a scenario comes from; None for the built-in catalog."""
    return None if path.parent == catalog_dir() else str(path.parent)


def catalog() -> list[Scenario]:
    """Every scenario of the catalog and its packs, by id; a broken file is a UserError."""
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
    pack: str | None = None  # the --scenarios folder it comes from (None: the catalog)

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
                pack=source_of(path),
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


def _by_id(ref: str) -> Path:
    """Where the scenario with id `ref` is (the catalog's place for it when none has it)."""
    found = next((path for path in catalog_files() if path.stem == ref), None)
    return found if found is not None else catalog_dir() / f"{ref}.toml"


def is_scenario_ref(ref: str) -> bool:
    """Whether `dbsandbox run REF` means a scenario: a .toml path or a catalog id."""
    if ref.endswith(".toml"):
        return True
    return not Path(ref).exists() and _by_id(ref).exists()


def find(ref: str) -> Scenario:
    """A scenario by catalog (or pack) id, or by path."""
    path = Path(ref) if ref.endswith(".toml") else _by_id(ref)
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
