"""SQLite snapshots: files next to the sandbox, made and restored with the online backup API.

The backup API copies a consistent committed state page by page while other connections stay
open (in WAL mode a writer's uncommitted pages are not in the main file's view), which a plain
file copy only does safely when nobody writes. Restoring runs it the other way round; the
destination keeps its WAL mode, and every open connection sees the restored pages on its next
statement.
"""

from __future__ import annotations

import contextlib
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sandbox.snapshots.model import SnapshotError
from sandbox.snapshots.store import SnapshotStore

# A restore needs the write lock; sessions have been rolled back by then, so only a short
# overlap with a checkpoint can stand in the way.
_RESTORE_TIMEOUT_S = 5.0


class SqliteSnapshots(SnapshotStore):
    engine = "sqlite"

    def __init__(self, live: Path, directory: Path, busy_timeout_ms: int) -> None:
        super().__init__()
        self.live = live
        self.directory = directory
        self.busy_timeout_s = busy_timeout_ms / 1000
        self._files: dict[str, Path] = {}

    def _take(self, name: str, serial: int) -> tuple[str, int, int]:
        self.directory.mkdir(exist_ok=True)
        # Files are numbered, not named after the snapshot: any name is then a safe file name.
        path = self.directory / f"snapshot-{serial}.db"
        try:
            with (
                contextlib.closing(sqlite3.connect(self.live, timeout=_RESTORE_TIMEOUT_S)) as src,
                contextlib.closing(sqlite3.connect(path)) as dst,
            ):
                src.backup(dst)
                tables = _count_tables(dst)
        except sqlite3.Error as exc:
            path.unlink(missing_ok=True)
            raise SnapshotError(f"snapshot {name} failed: {exc}") from None
        old = self._files.pop(name, None)
        if old is not None:
            _remove(old)
        self._files[name] = path
        return "backup api", path.stat().st_size, tables

    def _restore(self, name: str) -> None:
        source = self._files[name]
        try:
            with (
                contextlib.closing(sqlite3.connect(source)) as snap,
                contextlib.closing(
                    sqlite3.connect(self.live, timeout=_RESTORE_TIMEOUT_S, isolation_level=None)
                ) as live,
            ):
                snap.backup(live)
        except sqlite3.Error as exc:
            raise SnapshotError(f"restore of {name} failed: {exc}") from None

    @contextlib.contextmanager
    def compare(self, name: str) -> Iterator[tuple[Any, Any]]:
        # Plain connections in autocommit: both files are only read. The snapshot file is opened
        # read-write because a read-only open of a WAL-mode file needs its -shm to exist.
        before = sqlite3.connect(self._files[name], isolation_level=None)
        after = sqlite3.connect(self.live, timeout=self.busy_timeout_s, isolation_level=None)
        try:
            yield before, after
        finally:
            before.close()
            after.close()

    def close(self) -> None:
        for path in self._files.values():
            _remove(path)
        self._files.clear()


def _count_tables(conn: sqlite3.Connection) -> int:
    row = conn.execute(
        "SELECT count(*) FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' "
        "ESCAPE '\\'"
    ).fetchone()
    return int(row[0])


def _remove(path: Path) -> None:
    for suffix in ("", "-wal", "-shm", "-journal"):
        path.with_name(path.name + suffix).unlink(missing_ok=True)
