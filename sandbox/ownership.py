"""What this machine's sandboxes made on PostgreSQL servers, recorded before it exists.

A scratch database, a snapshot database and a restore's new database are each written into
the sandbox's record *before* the CREATE that makes them, so a sandbox killed at any moment
(kill -9 between CREATE DATABASE and anything after it) leaves nothing that `dbsandbox clean`
cannot find. The record lives in a directory of the user's own, which no SQL can write: a
marker comment on a database could be forged by a script (COMMENT ON DATABASE + a rename),
so `clean` drops only what a record names, never what merely looks like ours.

One JSON file per sandbox, replaced atomically on every change:
  {"name", "pid", "host", "server", "mode", "database", "objects": {name: oid or null}}
`objects` are databases (mode "database") or one schema inside `database` (mode "schema");
an oid, once known, must still match at clean time, so a database created later under a
recorded name (by anyone) is never taken for ours.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import threading
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.errors import UserError

STATE_VARIABLE = "DBSANDBOX_STATE_DIR"


def state_dir() -> Path:
    """Where dbsandbox keeps what must outlive a process: $DBSANDBOX_STATE_DIR, else the
    platform's state directory ($XDG_STATE_HOME/dbsandbox or ~/.local/state/dbsandbox)."""
    chosen = os.environ.get(STATE_VARIABLE)
    if chosen:
        return Path(chosen).expanduser()
    xdg = os.environ.get("XDG_STATE_HOME")
    base = Path(xdg).expanduser() if xdg else Path.home() / ".local" / "state"
    return base / "dbsandbox"


def records_dir() -> Path:
    return state_dir() / "sandboxes"


# Compared by identity: two records are the same only if they are the same object.
@dataclass(eq=False)
class Record:
    """One sandbox's claim on a server: everything it made there, and who made it."""

    name: str
    server: dict[str, Any]  # host, port, user and the server's system identifier if readable
    mode: str = "database"  # or "schema"
    database: str | None = None  # schema mode: the database that holds the schema
    pid: int = field(default_factory=os.getpid)
    host: str = field(default_factory=socket.gethostname)
    objects: dict[str, int | None] = field(default_factory=dict)
    path: Path | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    # ------------------------------------------------------------------ writing

    def claim(self, obj: str) -> None:
        """Record `obj` as ours; call before creating it."""
        with self._lock:
            self.objects.setdefault(obj, None)
            self._save()

    def created(self, obj: str, oid: int | None) -> None:
        """Record the oid `obj` got, which tells it apart from anything named like it later."""
        with self._lock:
            self.objects[obj] = oid
            self._save()

    def renamed(self, old: str, new: str) -> None:
        with self._lock:
            self.objects[new] = self.objects.pop(old, None)
            self._save()

    def release(self, obj: str) -> None:
        """`obj` is gone (dropped, or never made)."""
        with self._lock:
            if self.objects.pop(obj, "absent") != "absent":
                self._save()

    def forget(self) -> None:
        """Everything is gone: remove the record."""
        with self._lock:
            self.objects.clear()
            if self.path is not None:
                with contextlib.suppress(FileNotFoundError):
                    self.path.unlink()
            _open_records.discard(self)

    def _save(self) -> None:
        directory = records_dir()
        try:
            directory.mkdir(parents=True, exist_ok=True, mode=0o700)
            self.path = directory / f"{self.name}.json"
            # Written beside and renamed over: a record is never seen half-written.
            handle, temporary = tempfile.mkstemp(dir=directory, prefix=".tmp-")
            with os.fdopen(handle, "w") as out:
                json.dump(self.to_json(), out)
            os.replace(temporary, self.path)
        except OSError as exc:
            raise UserError(
                f"cannot record the sandbox in {directory}: {exc.strerror or exc}; "
                f"set {STATE_VARIABLE} to a writable directory"
            ) from None
        _open_records.add(self)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "pid": self.pid,
            "host": self.host,
            "server": self.server,
            "mode": self.mode,
            "database": self.database,
            "objects": self.objects,
        }

    # ------------------------------------------------------------------ reading

    @classmethod
    def load(cls, path: Path) -> Record | None:
        """A record from disk; None when it is unreadable or not one of ours."""
        try:
            data = json.loads(path.read_text())
            objects = data["objects"]
            record = cls(
                name=str(data["name"]),
                server=dict(data["server"]),
                mode=str(data["mode"]),
                database=data.get("database"),
                pid=int(data["pid"]),
                host=str(data["host"]),
                objects={str(k): (int(v) if v is not None else None) for k, v in objects.items()},
                path=path,
            )
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None
        return record

    def owner_alive(self) -> bool:
        """Whether the process that made it may still run (a record from another machine
        counts as alive: its process cannot be checked from here)."""
        if self.host != socket.gethostname():
            return True
        return pid_alive(self.pid)


# The records this process has open: after a crash or Ctrl+C unwound past a sandbox's own
# cleanup, the CLI still knows what is left and can say so truthfully.
_open_records: set[Record] = set()


def open_records() -> list[Record]:
    return [r for r in list(_open_records) if r.objects]


def all_records() -> list[Record]:
    directory = records_dir()
    if not directory.is_dir():
        return []
    found = []
    for path in sorted(directory.glob("*.json")):
        record = Record.load(path)
        if record is not None:
            found.append(record)
    return found


def pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
