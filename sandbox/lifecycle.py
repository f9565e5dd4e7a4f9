"""Ending a sandbox for certain: cleanup that a second Ctrl+C cannot cut short, and a
truthful account of anything that could not be removed."""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import TYPE_CHECKING, Any

from sandbox.ownership import open_records

if TYPE_CHECKING:
    from sandbox.targets import Target

_SIGNALS = tuple(
    getattr(signal, name) for name in ("SIGINT", "SIGTERM", "SIGHUP") if hasattr(signal, name)
)


class Shield:
    """Defers SIGINT, SIGTERM and SIGHUP while cleanup runs (main thread only).

    A Ctrl+C pressed while the scratch database is being dropped would otherwise abandon the
    drop half-way. The cleanup is bounded (`PostgresTarget.close`), so deferring costs at most
    that bound; `interrupted` says whether a signal came meanwhile.
    """

    def __init__(self) -> None:
        self.interrupted = False
        self._previous: dict[int, Any] = {}

    def _defer(self, signum: int, frame: FrameType | None) -> None:
        self.interrupted = True

    def __enter__(self) -> Shield:
        if threading.current_thread() is threading.main_thread():
            for sig in _SIGNALS:
                self._previous[sig] = signal.signal(sig, self._defer)
        return self

    def __exit__(self, *exc: object) -> None:
        for sig, handler in self._previous.items():
            if handler is not None:
                signal.signal(sig, handler)


def close_target(target: Target) -> bool:
    """Close a sandbox with signals deferred; True when a signal came meanwhile."""
    with Shield() as shield:
        target.close()
    return shield.interrupted


@contextlib.contextmanager
def sandbox_closed_at_end(target: Target) -> Iterator[Target]:
    """Use a sandbox and always remove it, even when Ctrl+C comes during the removal; a
    Ctrl+C that came during it is raised afterwards, so the command still ends as interrupted."""
    try:
        yield target
    finally:
        if close_target(target):
            raise KeyboardInterrupt


def _targets(include_closed: bool = False) -> list[Target]:
    """The sandboxes of this process. None can exist before sandbox.targets is loaded, and
    asking must not load it: the app draws its first frame before it needs it."""
    module = sys.modules.get("sandbox.targets")
    if module is None:
        return []
    found: list[Target] = module.open_targets(include_closed=include_closed)
    return found


def existing() -> set[int]:
    """What sandboxes (and records) exist now: `close_everything_left` leaves these alone."""
    return {id(t) for t in _targets(include_closed=True)} | {id(r) for r in open_records()}


def close_everything_left(before: set[int]) -> list[str]:
    """Close every sandbox opened since `before` that is still open (a crash or Ctrl+C may have
    unwound past its own cleanup); returns one line per thing that could not be removed."""
    for target in _targets():
        if id(target) not in before:
            close_target(target)
    return leftovers(before)


def leftovers(before: set[int]) -> list[str]:
    """One line per sandbox since `before` with something left: from the closed targets, and
    from the records (which also cover a kill between CREATE and the target existing)."""
    lines = []
    told: set[str] = set()
    for target in _targets(include_closed=True):
        if id(target) in before:
            continue
        names = list(getattr(target, "leftovers", None) or [])
        if names:
            reason = getattr(target, "leftover_reason", None)
            why = f" ({reason})" if reason else ""
            lines.append(f"{', '.join(names)} on the server{why}")
            told.update(names)
    for record in open_records():
        if id(record) in before:
            continue
        names = [name for name in record.objects if name not in told]
        if names:
            lines.append(f"{', '.join(sorted(names))} on the server")
    return lines
