"""One ordered, append-only record of what every session really did.

Sessions run on their own threads and the conductor watches them from another, so appends are
serialised by a lock and every event gets a sequence number: the order in the timeline is the
order in which things were observed.
"""

from __future__ import annotations

import datetime as dt
import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any


class EventKind(enum.StrEnum):
    SESSION_OPENED = "session_opened"
    QUEUED = "queued"  # handed to a session that is still busy with an earlier statement
    STATEMENT = "statement"  # sent to the engine by its session
    OUTCOME = "outcome"  # how it ended
    BEGIN = "begin"
    SAVEPOINT = "savepoint"
    ROLLBACK_TO = "rollback_to"
    RELEASE = "release"
    COMMIT = "commit"
    ROLLBACK = "rollback"
    ERROR = "error"
    NOTICE = "notice"
    GUARD = "guard"  # a finding and what was decided about it
    LOCK_WAIT = "lock_wait"
    LOCK_RELEASED = "lock_released"
    # PostgreSQL: the locks a session holds after a statement, and what it rewrote.
    LOCKS = "locks"
    CANCELLED = "cancelled"
    SESSION_CLOSED = "session_closed"
    CONNECTION_LOST = "connection_lost"  # the server side of a session is gone
    SNAPSHOT = "snapshot"  # taken (or listed)
    RESTORE = "restore"  # the sandbox was put back to a snapshot
    DIFF = "diff"  # compared with a snapshot
    HINT = "hint"  # the learner asked for a scenario's hint
    CHECK = "check"  # the learner asked whether they have recovered, and the answer
    # `dbsandbox trace`: a traced program's own lines and exit, its pool, and ORM flushes.
    PROGRAM = "program"
    POOL = "pool"  # a connection checked out of / returned to SQLAlchemy's pool
    FLUSH = "flush"  # an ORM session sends its pending changes (autoflush included)


@dataclass(frozen=True)
class Event:
    seq: int
    elapsed_ms: float  # since the timeline started
    wall: float  # wall-clock time (time.time()); `at` is it as text
    session: str
    kind: EventKind
    message: str
    statement: int | None = None  # index of the statement in the run, when the event is about one
    data: dict[str, Any] = field(default_factory=dict)

    @property
    def at(self) -> str:
        """Wall-clock time, ISO 8601 UTC. Made when asked: formatting it for every event cost
        a traced program's recorder more than the rest of recording the event."""
        return dt.datetime.fromtimestamp(self.wall, dt.UTC).isoformat(timespec="milliseconds")

    @property
    def outcome(self) -> str | None:
        """How the statement ended, on the one event that says so (ok, error, cancelled,
        blocked); None on every other event."""
        value = self.data.get("outcome")
        return str(value) if value is not None else None

    def to_json(self) -> dict[str, Any]:
        return {
            "seq": self.seq,
            "elapsed_ms": round(self.elapsed_ms, 3),
            "at": self.at,
            "session": self.session,
            "kind": str(self.kind),
            "message": self.message,
            "statement": self.statement,
            **({"data": self.data} if self.data else {}),
        }


Subscriber = Callable[[Event], None]


class Timeline:
    """Append-only event log with subscribers (the app's timeline pane listens here)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._events: list[Event] = []
        self._subscribers: list[Subscriber] = []
        self._t0 = time.perf_counter()
        self._t0_wall = time.time()

    def subscribe(self, subscriber: Subscriber) -> None:
        with self._lock:
            self._subscribers.append(subscriber)

    def add(
        self,
        session: str,
        kind: EventKind,
        message: str,
        *,
        statement: int | None = None,
        when: float | None = None,
        **data: Any,
    ) -> Event:
        """Append an event that happens now, or, with `when` (time.time() of this machine),
        one that happened then in another process (a traced program's)."""
        with self._lock:
            if when is None:
                elapsed = (time.perf_counter() - self._t0) * 1000
                wall = time.time()
            else:
                elapsed = (when - self._t0_wall) * 1000
                wall = when
            event = Event(
                seq=len(self._events) + 1,
                elapsed_ms=elapsed,
                wall=wall,
                session=session,
                kind=kind,
                message=message,
                statement=statement,
                data={k: v for k, v in data.items() if v is not None},
            )
            self._events.append(event)
            subscribers = list(self._subscribers)
        # Outside the lock: a subscriber may be slow or may read the timeline itself.
        for subscriber in subscribers:
            subscriber(event)
        return event

    @property
    def events(self) -> list[Event]:
        with self._lock:
            return list(self._events)
