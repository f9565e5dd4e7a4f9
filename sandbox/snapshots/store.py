"""Named snapshots of one sandbox: take, restore, compare. One store per target.

A snapshot holds what was *committed* when it was taken: a learner's open transaction is not
in it (it is read on a connection of its own, so taking one never touches a session).
Restoring replaces the whole sandbox with the copy; the conductor rolls back every open
transaction first, because a restore that kept half a transaction would be a lie.
"""

from __future__ import annotations

import datetime as dt
import time
from abc import ABC, abstractmethod
from collections.abc import Callable
from contextlib import AbstractContextManager
from typing import TYPE_CHECKING, Any, TypeVar

from sandbox.snapshots.model import SnapshotError, SnapshotInfo, check_name

if TYPE_CHECKING:
    from sandbox.snapshots.diff import Diff

T = TypeVar("T")


class SnapshotStore(ABC):
    engine: str
    # Restoring replaces the database itself: sessions must disconnect first and reconnect after.
    reconnects: bool = False

    def __init__(self) -> None:
        self._snapshots: dict[str, SnapshotInfo] = {}
        self._serial = 0

    def list(self) -> list[SnapshotInfo]:
        """Every snapshot, oldest first."""
        return list(self._snapshots.values())

    def get(self, name: str) -> SnapshotInfo:
        info = self._snapshots.get(name)
        if info is None:
            have = ", ".join(self._snapshots) or "none yet; take one with \\snapshot NAME"
            raise SnapshotError(f"no snapshot named {name!r} (snapshots: {have})")
        return info

    def take(self, name: str, reason: str = "on demand") -> SnapshotInfo:
        """Copy the sandbox's committed state under `name` (replacing an older one)."""
        check_name(name)
        self._serial += 1
        started = time.perf_counter()
        serial = self._serial
        method, size, tables = self._unless_lost(f"snapshot {name}", self._take, name, serial)
        info = SnapshotInfo(
            name=name,
            reason=reason,
            method=method,
            taken_at=dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
            elapsed_ms=(time.perf_counter() - started) * 1000,
            size_bytes=size,
            tables=tables,
        )
        # Re-taking a name moves it to the end: the list stays in the order things happened.
        self._snapshots.pop(name, None)
        self._snapshots[name] = info
        return info

    def restore(self, name: str) -> float:
        """Replace the sandbox with snapshot `name`; returns how long it took (ms).

        The caller makes sure no session is inside a transaction (and, when `reconnects`, that
        every session is disconnected).
        """
        self.get(name)
        started = time.perf_counter()
        self._unless_lost(f"restore of {name}", self._restore, name)
        return (time.perf_counter() - started) * 1000

    def _unless_lost(self, what: str, step: Callable[..., T], *args: Any) -> T:
        """Run a step; a lost connection (server restart, network) becomes a SnapshotError,
        which the run records as the command's error outcome instead of a crash."""
        try:
            return step(*args)
        except SnapshotError:
            raise
        except Exception as exc:
            problem = self._connection_problem(exc)
            if problem is None:
                raise
            raise SnapshotError(f"{what} failed: {problem}") from None

    def _connection_problem(self, exc: Exception) -> str | None:
        """Why a step failed, when the cause is a lost or refused connection; else None."""
        return None

    def diff(self, name: str, limit: int = 100) -> Diff:
        """Row-level changes from snapshot `name` to what is committed now."""
        from sandbox.snapshots.diff import diff_databases

        self.get(name)
        with self.compare(name) as (before, after):
            try:
                return diff_databases(before, after, self.engine, limit=limit)
            except Exception as exc:
                problem = self._read_problem(exc) or self._connection_problem(exc)
                if problem is None:
                    raise
                raise SnapshotError(f"diff against {name} failed: {problem}") from None

    def _read_problem(self, exc: Exception) -> str | None:
        """A learner-caused reason a read failed (a lock held too long), else None."""
        return None

    @abstractmethod
    def compare(self, name: str) -> AbstractContextManager[tuple[Any, Any]]:
        """Open (snapshot, live) read connections; closed when the block ends."""

    @abstractmethod
    def _take(self, name: str, serial: int) -> tuple[str, int, int]:
        """Make the copy; returns (method, size in bytes, table count)."""

    @abstractmethod
    def _restore(self, name: str) -> None: ...

    @abstractmethod
    def close(self) -> None:
        """Remove every snapshot this store made."""
