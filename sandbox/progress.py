"""A learner's progress through the catalog, kept between launches in one JSON file.

The file lives in the platform's state directory (`~/.local/state/dbsandbox/progress.json` on
Linux), or where `--progress FILE` or $DBSANDBOX_PROGRESS puts it:

    {"version": 1, "scenarios": {"lost-update": {"title": ..., "attempts": 3, "best_score": 87,
     "done": true, "first_played": "2026-12-06T17:20:00+00:00", "last_played": ...,
     "engines": ["sqlite"], "best_parts": {...}}}}

Every change reads the file again, changes it and replaces it atomically (a temporary file in
the same folder, then os.replace) under an advisory lock, so two app instances never drop each
other's entries and a crash never leaves half a file. A file that is not progress JSON is never
overwritten: it is renamed aside with one warning, and a fresh file starts.
"""

from __future__ import annotations

import contextlib
import json
import os
import stat
import tempfile
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from sandbox.errors import UserError
from sandbox.userfiles import unreadable

if TYPE_CHECKING:
    from sandbox.scenario.catalog import Listing

PROGRESS_ENV = "DBSANDBOX_PROGRESS"
FILE_NAME = "progress.json"
VERSION = 1  # of the file's layout; a file from a newer dbsandbox is refused, not replaced

T = TypeVar("T")

DONE_MARK = "✔"
ATTEMPTED_MARK = "◐"


class ProgressError(UserError):
    """The progress file cannot be read or written: one line, never a traceback."""


def default_path() -> Path:
    """$DBSANDBOX_PROGRESS, else progress.json in the platform's state directory."""
    configured = os.environ.get(PROGRESS_ENV)
    if configured:
        return Path(configured).expanduser()
    # Imported here: only a store that is really used pays for it.
    from platformdirs import user_state_path

    return user_state_path("dbsandbox") / FILE_NAME


@dataclass(frozen=True)
class Entry:
    """One scenario as the learner has played it so far."""

    id: str
    title: str
    attempts: int
    best_score: int
    done: bool  # recovered at least once
    first_played: str  # ISO 8601, UTC
    last_played: str
    engines: tuple[str, ...] = ()  # in the order first played on
    best_parts: dict[str, object] = field(default_factory=dict)  # what made up the best score

    @property
    def status(self) -> str:
        return "done" if self.done else "attempted"

    @property
    def mark(self) -> str:
        """`✔ 87` or `◐ 40`: the picker's and the report's short form."""
        return f"{DONE_MARK if self.done else ATTEMPTED_MARK} {self.best_score}"

    def to_json(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "attempts": self.attempts,
            "best_score": self.best_score,
            "done": self.done,
            "first_played": self.first_played,
            "last_played": self.last_played,
            "engines": list(self.engines),
            "best_parts": self.best_parts,
        }

    @classmethod
    def from_json(cls, scenario_id: str, data: object) -> Entry:
        """An entry read from the file; ValueError when it is not one."""
        if not isinstance(data, dict):
            raise ValueError(f"{scenario_id}: not an object")
        engines, parts = data.get("engines", []), data.get("best_parts", {})
        if not (isinstance(engines, list) and all(isinstance(e, str) for e in engines)):
            raise ValueError(f"{scenario_id}: engines is not a list of names")
        if not isinstance(parts, dict):
            raise ValueError(f"{scenario_id}: best_parts is not an object")
        return cls(
            id=scenario_id,
            title=_typed(data, "title", str, scenario_id),
            attempts=_typed(data, "attempts", int, scenario_id),
            best_score=_typed(data, "best_score", int, scenario_id),
            done=_typed(data, "done", bool, scenario_id),
            first_played=_date(data, "first_played", scenario_id),
            last_played=_date(data, "last_played", scenario_id),
            engines=tuple(engines),
            best_parts=parts,
        )


def _typed(data: dict[str, Any], key: str, kind: type[T], scenario_id: str) -> T:
    value = data.get(key)
    # bool is an int to Python, never to the file: `"attempts": true` is not a count.
    if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
        raise ValueError(f"{scenario_id}: {key} is not {kind.__name__}")
    return value


def _date(data: dict[str, Any], key: str, scenario_id: str) -> str:
    value = _typed(data, key, str, scenario_id)
    datetime.fromisoformat(value)  # ValueError: not a date
    return value


def _parse(text: str) -> dict[str, Entry]:
    """The entries of a progress file; ValueError when it is not one (of this version)."""
    data = json.loads(text)
    if not isinstance(data, dict) or not isinstance(data.get("scenarios"), dict):
        raise ValueError("not a dbsandbox progress file")
    version = data.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ValueError("no version")
    if version > VERSION:
        raise _NewerFile(version)
    return {key: Entry.from_json(key, value) for key, value in data["scenarios"].items()}


class _NewerFile(Exception):
    def __init__(self, version: int) -> None:
        super().__init__(version)
        self.version = version


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


def _why(exc: OSError) -> str:
    return str(exc.strerror or exc)


class ProgressStore:
    """The progress file: read on every call, never cached, so other instances' writes count.

    Warnings (a corrupt file renamed aside) collect in `warnings` for the caller to show:
    stderr for the CLI, a notice in the app.
    """

    def __init__(self, path: Path | None = None) -> None:
        self.path = path if path is not None else default_path()
        self.warnings: list[str] = []

    # ------------------------------------------------------------------ reading

    def entries(self) -> dict[str, Entry]:
        """Every scenario played so far, by id; empty when nothing was played yet."""
        with self._locked(create=False):
            return self._read()

    def entry(self, scenario_id: str) -> Entry | None:
        return self.entries().get(scenario_id)

    def take_warnings(self) -> list[str]:
        taken, self.warnings = self.warnings, []
        return taken

    # ------------------------------------------------------------------ writing

    def record(
        self,
        scenario_id: str,
        *,
        title: str,
        engine: str,
        score: int,
        recovered: bool,
        parts: Mapping[str, object],
        at: datetime | None = None,
    ) -> Entry:
        """Count an attempt at `scenario_id` (a Check) and save it; the entry as it now is.

        The best score keeps its parts; a scenario is done once recovered, for good.
        """
        # Through JSON first: parts the file cannot hold fail here, before the file is touched.
        best_parts = json.loads(json.dumps(dict(parts)))
        when = at.astimezone(UTC).isoformat(timespec="seconds") if at else _now()
        with self._locked(create=True):
            found = self._read()
            old = found.get(scenario_id)
            if old is None:
                new = Entry(
                    id=scenario_id,
                    title=title,
                    attempts=1,
                    best_score=score,
                    done=recovered,
                    first_played=when,
                    last_played=when,
                    engines=(engine,),
                    best_parts=best_parts,
                )
            else:
                better = score > old.best_score
                new = Entry(
                    id=scenario_id,
                    title=title,
                    attempts=old.attempts + 1,
                    best_score=score if better else old.best_score,
                    done=old.done or recovered,
                    first_played=old.first_played,
                    last_played=when,
                    engines=old.engines + (() if engine in old.engines else (engine,)),
                    best_parts=best_parts if better else old.best_parts,
                )
            found[scenario_id] = new
            self._write(found)
        return new

    # ------------------------------------------------------------------ the file

    def _read(self) -> dict[str, Entry]:
        why = unreadable(self.path)
        if why == "no such file":
            return {}
        if why is not None:  # a directory, or a named pipe that would block the read
            raise ProgressError(f"cannot read progress file {self.path}: {why}")
        try:
            text = self.path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ProgressError(f"cannot read progress file {self.path}: {_why(exc)}") from None
        except UnicodeDecodeError:
            return self._set_aside()
        try:
            return _parse(text)
        except _NewerFile as newer:
            raise ProgressError(
                f"progress file {self.path} was written by a newer dbsandbox (version "
                f"{newer.version}, this one knows {VERSION}); upgrade, or use --progress FILE"
            ) from None
        except (ValueError, RecursionError):  # json.JSONDecodeError is a ValueError
            return self._set_aside()

    def _set_aside(self) -> dict[str, Entry]:
        """Rename a file that is not progress JSON out of the way: nothing in it is lost."""
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}")
        n = 1
        while aside.exists():  # two in the same second: never rename over the first
            aside = self.path.with_name(f"{self.path.name}.corrupt-{stamp}-{n}")
            n += 1
        try:
            self.path.rename(aside)
        except OSError as exc:
            raise ProgressError(
                f"progress file {self.path} is not valid progress JSON and cannot be moved "
                f"aside: {_why(exc)}"
            ) from None
        self.warnings.append(
            f"progress file {self.path} was not valid progress JSON: moved to {aside.name}, "
            "starting afresh"
        )
        return {}

    def _write(self, found: dict[str, Entry]) -> None:
        data = {
            "version": VERSION,
            "scenarios": {key: found[key].to_json() for key in sorted(found)},
        }
        folder = self.path.parent
        temporary: str | None = None
        try:
            handle, temporary = tempfile.mkstemp(dir=folder, prefix=f".{self.path.name}.")
            with contextlib.suppress(FileNotFoundError):
                # A file the learner made keeps its permissions; a new one stays private (0600).
                os.chmod(temporary, stat.S_IMODE(os.stat(self.path).st_mode))
            with os.fdopen(handle, "w", encoding="utf-8") as out:
                json.dump(data, out, indent=1, ensure_ascii=False)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())  # the rename must not land before the data does
            os.replace(temporary, self.path)
            temporary = None
        except OSError as exc:
            raise ProgressError(f"cannot save progress to {self.path}: {_why(exc)}") from None
        finally:
            if temporary is not None:
                with contextlib.suppress(OSError):
                    os.unlink(temporary)

    @contextlib.contextmanager
    def _locked(self, create: bool) -> Iterator[None]:
        """Hold the progress file's lock (a sidecar file: the data file itself is replaced
        on every write, so a lock on it would be a lock on a file about to vanish).

        Reading takes it too, so a reader never renames aside a file another instance is
        half-way through deciding about. Where there is no fcntl (Windows) or no folder yet
        on a read, no lock: the atomic replace still keeps every file whole.
        """
        folder = self.path.parent
        if create:
            try:
                folder.mkdir(parents=True, exist_ok=True)
            except FileExistsError:  # exist_ok covers folders only
                raise ProgressError(
                    f"cannot save progress to {self.path}: {folder} is not a folder"
                ) from None
            except OSError as exc:
                raise ProgressError(f"cannot save progress to {self.path}: {_why(exc)}") from None
        try:
            import fcntl
        except ImportError:  # pragma: no cover - not POSIX
            yield
            return
        fd: int | None = None
        try:
            fd = os.open(folder / f".{self.path.name}.lock", os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            if create:
                raise ProgressError(f"cannot save progress to {self.path}: {_why(exc)}") from None
            # Reading where no folder is yet, or one we may not write to: the file alone
            # decides, and nothing is written.
        if fd is None:
            yield
            return
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


def suggest_next(
    listings: Iterable[Listing], entries: Mapping[str, Entry], engine: str | None
) -> Listing | None:
    """The first scenario in catalog order that is not done and runs on `engine` (None: on
    any engine); None when every such one is done."""
    for listing in sorted(listings, key=lambda listing: listing.order()):
        entry = entries.get(listing.id)
        if (entry is None or not entry.done) and (engine is None or listing.supports(engine)):
            return listing
    return None
