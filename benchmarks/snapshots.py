"""Snapshot, restore and diff times for a 10 MB and a 100 MB sandbox, on both engines.

Each size gets a fresh sandbox holding one table `items` (id, text, integer, numeric, time)
with an index on the text column, filled until the data reaches the size: the database's pages
(SQLite) or the table with its indexes (PostgreSQL, whose empty database adds ~7.5 MB of
catalogs on top). Then, through the same store the app and
`dbsandbox run` use (`target.snapshots`):

- SQLite: snapshot (backup API) with a session connected; restore (backup API back);
- PostgreSQL: snapshot as a template clone (nobody connected, as at a scenario's start) and
  as a logical copy (a session connected, the usual case); restore (clone of the snapshot as
  the sandbox database, the session disconnected and reconnected by the conductor);
- both: `\\diff` after a DELETE without WHERE removed every row (a worst case for a diff).

Every operation is timed --runs times (median, min and max printed); after each restore the
row count is checked, so a fast but wrong restore cannot pass unnoticed.

    .venv/bin/python benchmarks/snapshots.py [--runs 5] [--sizes 10 100] [--engines sqlite postgres]
        [--url postgresql://postgres@127.0.0.1:5432/postgres]

Target (the issue): on a 10 MB database, snapshot and restore each well under a second.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable

from sandbox.conductor import Conductor
from sandbox.statements import split
from sandbox.targets import Target, TargetOptions, open_target


def fill(target: Target, megabytes: int) -> int:
    """Create and fill `items` until the database holds about `megabytes`; returns the rows."""
    connection = target.connect("fill")
    cursor = connection.raw.cursor()
    try:
        cursor.execute(
            "CREATE TABLE items (id INTEGER PRIMARY KEY, name TEXT NOT NULL, qty INTEGER, "
            "price NUMERIC(10, 2), added TEXT)"
        )
        cursor.execute("CREATE INDEX items_name ON items (name)")
        rows, batch = 0, 20_000
        while size_of(target, cursor) < megabytes * 1_000_000:
            first = rows + 1
            last = rows + batch
            if target.engine == "sqlite":
                cursor.execute("BEGIN")
                cursor.execute(
                    "WITH RECURSIVE n(i) AS (SELECT ? UNION ALL SELECT i + 1 FROM n WHERE i < ?) "
                    "INSERT INTO items SELECT i, 'item number ' || i || ' of the catalogue', "
                    "i % 97, (i % 1000) / 7.0, '2026-11-22T10:00:00' FROM n",
                    (first, last),
                )
                cursor.execute("COMMIT")
            else:
                cursor.execute(
                    "INSERT INTO items SELECT i, 'item number ' || i || ' of the catalogue', "
                    "i %% 97, (i %% 1000) / 7.0, '2026-11-22T10:00:00' "
                    "FROM generate_series(%s, %s) AS i",
                    (first, last),
                )
            rows = last
        if target.engine == "postgres":
            cursor.execute("VACUUM ANALYZE items")
        return rows
    finally:
        cursor.close()
        connection.close()


def size_of(target: Target, cursor: object) -> int:
    if target.engine == "sqlite":
        # The database's own size in pages: the file lags behind while pages sit in the WAL.
        cursor.execute("SELECT page_count * page_size FROM pragma_page_count, pragma_page_size")  # type: ignore[attr-defined]
        return int(cursor.fetchone()[0])  # type: ignore[attr-defined]
    # The table and its indexes: an empty PostgreSQL database already weighs ~7.5 MB of
    # catalogs, which would make a "10 MB database" mostly catalogs.
    cursor.execute("SELECT pg_total_relation_size('items')")  # type: ignore[attr-defined]
    return int(cursor.fetchone()[0])  # type: ignore[attr-defined]


def timed(runs: int, action: Callable[[], object]) -> list[float]:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        action()
        times.append((time.perf_counter() - started) * 1000)
    return times


def line(label: str, times: list[float]) -> str:
    return (
        f"    {label:<34} median {statistics.median(times):8.1f} ms   "
        f"(min {min(times):.1f}, max {max(times):.1f}, n={len(times)})"
    )


def meta(conductor: Conductor, text: str) -> None:
    [command] = split(text)
    execution = conductor.run_meta("A", command)  # type: ignore[arg-type]
    outcome = execution.outcome
    assert outcome is not None and outcome.error is None, outcome and outcome.error


def count(conductor: Conductor) -> int:
    [statement] = split("SELECT count(*) FROM items")
    outcome = conductor.execute("A", statement).outcome  # type: ignore[arg-type]
    assert outcome is not None and outcome.rows
    return int(outcome.rows[0][0])


def bench(engine: str, megabytes: int, runs: int, url: str | None) -> None:
    options = TargetOptions(engine=engine, url=url if engine == "postgres" else None)
    with open_target(options) as target:
        started = time.perf_counter()
        rows = fill(target, megabytes)
        probe = target.connect("size")
        cursor = probe.raw.cursor()
        size = size_of(target, cursor)
        cursor.close()
        probe.close()
        print(
            f"{engine}, {size / 1_000_000:.1f} MB, {rows:,} rows "
            f"(filled in {time.perf_counter() - started:.1f} s)"
        )
        store = target.snapshots
        if engine == "postgres":
            # Nobody is connected yet: the exact, fast clone.
            times = timed(runs, lambda: store.take("quiet"))
            method = store.get("quiet").method
            print(line(f"snapshot ({method})", times))
        conductor = Conductor(target)
        try:
            conductor.session("A")
            times = timed(runs, lambda: meta(conductor, "\\snapshot s"))
            print(line(f"snapshot ({store.get('s').method}), A connected", times))
            [delete] = split("DELETE FROM items")
            conductor.execute("A", delete)  # type: ignore[arg-type]
            diff_times = timed(runs, lambda: meta(conductor, "\\diff s"))

            def restore() -> None:
                meta(conductor, "\\restore s")
                assert count(conductor) == rows, "the restore lost rows"

            restore_times = timed(1, restore)
            for _ in range(runs - 1):
                conductor.execute("A", delete)  # type: ignore[arg-type]
                restore_times += timed(1, restore)
            print(line("restore", restore_times))
            print(line("diff (every row deleted)", diff_times))
        finally:
            conductor.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[10, 100], metavar="MB")
    parser.add_argument("--engines", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument(
        "--url",
        default=os.environ.get("DBSANDBOX_TEST_POSTGRES_URL")
        or "postgresql://postgres@127.0.0.1:5432/postgres",
    )
    args = parser.parse_args()
    for engine in args.engines:
        for megabytes in args.sizes:
            bench(engine, megabytes, args.runs, args.url)


if __name__ == "__main__":
    main()
