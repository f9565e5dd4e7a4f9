"""A session's own thread: runs what it is given, one call after another.

Unlike `concurrent.futures.ThreadPoolExecutor`, whose threads the interpreter joins at exit,
a worker's thread is a daemon: a statement stuck on a frozen server can never keep the
process alive, and submitting during interpreter shutdown (a late Ctrl+C) cannot fail with
"cannot schedule new futures after shutdown".
"""

from __future__ import annotations

import concurrent.futures as cf
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")

_STOP = object()


class WorkerStopped(RuntimeError):
    """A call was handed to a worker that was already shut down."""


class Worker:
    """One daemon thread with a queue of calls; each call's result comes back as a Future."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._calls: queue.SimpleQueue[Any] = queue.SimpleQueue()
        self._stopped = False
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    def submit(self, fn: Callable[..., T], *args: Any) -> cf.Future[T]:
        future: cf.Future[T] = cf.Future()
        with self._lock:
            if self._stopped:
                raise WorkerStopped(f"{self.name} is shut down")
            self._calls.put((future, fn, args))
        return future

    def shutdown(self) -> None:
        """Stop after the calls already queued; never waits for them."""
        with self._lock:
            if not self._stopped:
                self._stopped = True
                self._calls.put(_STOP)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def _loop(self) -> None:
        while True:
            item = self._calls.get()
            if item is _STOP:
                return
            future, fn, args = item
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args)
            except BaseException as exc:
                future.set_exception(exc)
            else:
                future.set_result(result)


def detached(fn: Callable[..., T], *args: Any, name: str = "dbsandbox-detached") -> cf.Future[T]:
    """Run one call on its own daemon thread: the caller can stop waiting for it
    (`future.result(timeout=...)`) and the call can never keep the process alive."""
    worker = Worker(name)
    future = worker.submit(fn, *args)
    worker.shutdown()
    return future
