"""How long an outcome the engine produced on its own takes to reach the screen.

Drives the real app (App.run_test) through cases where nobody sends anything after the
statement: a SQLite busy wait ending in SQLITE_BUSY, a PostgreSQL deadlock victim's 40P01, a
statement timeout. For each outcome event it measures the time from the moment a session's
thread recorded the event to the moment the UI thread drew it (the timeline row and the
session's results). The target is 250 ms.

    .venv/bin/python benchmarks/live_outcomes.py [--runs 5] [--url postgresql://...]
"""

from __future__ import annotations

import argparse
import asyncio
import math
import os
import statistics
import time
from collections.abc import Awaitable, Callable

from textual.pilot import Pilot
from textual.widgets import TextArea

from sandbox.targets import TargetOptions
from sandbox.timeline import Event
from sandbox.ui.app import DbSandboxApp, create_app

Latencies = list[float]


def instrument(app: DbSandboxApp, out: Latencies) -> None:
    """Record, for each outcome event, recorded-to-drawn latency in ms."""
    take = app._take

    def timed(event: Event) -> None:
        take(event)
        timeline = app.bridge.timeline
        if event.outcome is not None and event.seq > 0:
            now_ms = (time.perf_counter() - timeline._t0) * 1000
            out.append(now_ms - event.elapsed_ms)

    app._take = timed  # type: ignore[method-assign]


async def until(pilot: Pilot[None], condition: Callable[[], bool], seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError("condition not reached")
        await pilot.pause(0.02)


async def run(app: DbSandboxApp, pilot: Pilot[None], sql: str) -> None:
    editor = app.query_one("#editor", TextArea)
    editor.text = sql
    editor.move_cursor((0, 0))
    app.action_run()
    conductor = app.bridge.conductor
    assert conductor is not None
    count = len(conductor.executions)
    await until(pilot, lambda: len(conductor.executions) >= count)
    await until(pilot, lambda: not conductor.pending)


async def busy_wait(app: DbSandboxApp, pilot: Pilot[None]) -> None:
    for sql in (
        "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER);",
        "INSERT INTO t VALUES (1, 0);",
    ):
        await run(app, pilot, sql)
    await run(app, pilot, "BEGIN IMMEDIATE;")
    app.run_sql("B", "UPDATE t SET v = 1 WHERE id = 1;")
    await until(pilot, lambda: (e := app.latest.get("B")) is not None and e.finished())


async def deadlock(app: DbSandboxApp, pilot: Pilot[None]) -> None:
    conductor = app.bridge.conductor
    assert conductor is not None

    async def send(session: str, sql: str, settle: bool = True) -> None:
        count = len(conductor.executions)
        app.run_sql(session, sql)
        await until(pilot, lambda: len(conductor.executions) > count)
        if settle:
            await until(pilot, lambda: not conductor.pending)

    await send("A", "CREATE TABLE acct (id int PRIMARY KEY, v int);")
    await send("A", "INSERT INTO acct VALUES (1, 0), (2, 0);")
    await send("A", "BEGIN;")
    await send("A", "UPDATE acct SET v = 1 WHERE id = 1;")
    await send("B", "BEGIN;")
    await send("B", "UPDATE acct SET v = 2 WHERE id = 2;")
    await send("B", "UPDATE acct SET v = 2 WHERE id = 1;", settle=False)
    await until(pilot, lambda: any(e.waiting for e in conductor.executions))
    await send("A", "UPDATE acct SET v = 1 WHERE id = 2;")


async def timeout(app: DbSandboxApp, pilot: Pilot[None]) -> None:
    app.run_sql(
        "A",
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 1000000000) "
        "SELECT count(*) FROM n;",
    )
    await until(pilot, lambda: (e := app.latest.get("A")) is not None and e.finished())


async def measure(
    options: TargetOptions, case: Callable[[DbSandboxApp, Pilot[None]], Awaitable[None]]
) -> Latencies:
    latencies: Latencies = []
    app = create_app(options, pick=False, statement_timeout_s=0.5)
    instrument(app, latencies)
    async with app.run_test(size=(120, 40)) as pilot:
        await until(pilot, lambda: app.sandbox_description is not None)
        await case(app, pilot)
        await pilot.pause(0.1)
    return latencies


def percentile(values: Latencies, share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(share * len(ordered)) - 1)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--url", default=os.environ.get("DBSANDBOX_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    cases: list[tuple[str, TargetOptions, Callable[[DbSandboxApp, Pilot[None]], Awaitable[None]]]]
    cases = [
        ("sqlite busy wait -> SQLITE_BUSY", TargetOptions(), busy_wait),
        ("sqlite statement timeout", TargetOptions(), timeout),
    ]
    if args.url:
        cases.append(
            ("postgres deadlock -> 40P01", TargetOptions(engine="postgres", url=args.url), deadlock)
        )
    print("recorded-to-drawn latency of outcome events, ms (target: under 250)")
    for name, options, case in cases:
        found: Latencies = []
        for _ in range(args.runs):
            found += asyncio.run(measure(options, case))
        print(
            f"{name:<34} n={len(found):<4} median {statistics.median(found):6.1f}  "
            f"p95 {percentile(found, 0.95):6.1f}  max {max(found):6.1f}"
        )


if __name__ == "__main__":
    main()
