"""What `dbsandbox run` costs per statement over the raw driver, and whether it stays linear.

For each engine, statement mix and script length, two arms run alternately (raw, dbsandbox,
raw, dbsandbox, ...) so that a change in the load of this shared machine hits both alike:

- raw: the driver itself (sqlite3, or psycopg2 in autocommit), on a connection the target
  opens exactly as it opens a session's, executing the statements one by one and fetching
  each result;
- dbsandbox: the in-process core of `dbsandbox run` on the same kind of fresh sandbox: the
  script parsed (`read_script`), every statement linted by the guard and played by the
  conductor on its session thread, with the watcher, the timeline and the pacing
  (`run_steps`), as `dbsandbox run` does between opening the sandbox and printing the report.

Process start-up, opening the sandbox and printing are left out of both arms: they are paid
once per run, not per statement. Each arm gets its own fresh sandbox with the same setup.

The mixes: `SELECT 1`, small INSERTs into a table, and UPDATE by primary key on a 1,000-row
table. Then: the text and JSON reports at each length (they list every statement and event),
the memory a finished run holds per statement, and `dbsandbox validate` on files with 200 and
2,000 problems.

    .venv/bin/python benchmarks/run_overhead.py [--rounds 3] [--sizes 1000 10000 100000]
        [--pg-sizes 1000 10000] [--mixes select insert update] [--memory-sizes 1000 100000]
        [--url postgresql://postgres@127.0.0.1:5432/postgres]

PostgreSQL runs when --url or DBSANDBOX_TEST_POSTGRES_URL names a server. Targets: overhead
below 0.3 ms per statement on SQLite, and the time per statement at 100,000 statements within
noise of the time at 1,000.
"""

from __future__ import annotations

import argparse
import gc
import os
import statistics
import sys
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from sandbox import report
from sandbox.guard.policy import Guard
from sandbox.runner import RunOptions, RunResult, read_script, run_steps
from sandbox.scenario.loader import validate
from sandbox.statements import Dialect
from sandbox.targets import Target, TargetOptions, open_target

TABLE_ROWS = 1_000
CREATE = "CREATE TABLE items (id INTEGER PRIMARY KEY, v INTEGER NOT NULL)"


@dataclass(frozen=True)
class Mix:
    name: str
    setup: Callable[[str], list[str]]  # by engine
    statement: Callable[[int], str]


MIXES = {
    "select": Mix("SELECT 1", lambda engine: [], lambda i: "SELECT 1;"),
    "insert": Mix(
        "INSERT a row",
        lambda engine: [CREATE],
        lambda i: f"INSERT INTO items VALUES ({i}, {i});",
    ),
    "update": Mix(
        "UPDATE by id",
        lambda engine: [CREATE, _fill(engine)],
        lambda i: f"UPDATE items SET v = v + 1 WHERE id = {i % TABLE_ROWS + 1};",
    ),
}


def _fill(engine: str) -> str:
    """TABLE_ROWS rows into items, in the engine's words."""
    if engine == "postgres":
        return f"INSERT INTO items SELECT i, 0 FROM generate_series(1, {TABLE_ROWS}) AS i"
    return (
        f"WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {TABLE_ROWS}) "
        "INSERT INTO items SELECT i, 0 FROM s"
    )


def prepare(target: Target, mix: Mix) -> None:
    connection = target.connect("setup")
    try:
        cursor = connection.raw.cursor()
        for sql in mix.setup(target.engine):
            cursor.execute(sql)
        cursor.close()
    finally:
        connection.close()


def options(engine: str, url: str | None) -> TargetOptions:
    return TargetOptions(engine=engine, url=url if engine == "postgres" else None)


def raw_arm(engine: str, url: str | None, mix: Mix, statements: list[str]) -> float:
    """Seconds for the driver alone to run the statements one by one."""
    with open_target(options(engine, url)) as target:
        prepare(target, mix)
        connection = target.connect("raw")
        try:
            cursor = connection.raw.cursor()
            gc.collect()
            started = time.perf_counter()
            for sql in statements:
                cursor.execute(sql)
                if cursor.description is not None:
                    cursor.fetchall()
            elapsed = time.perf_counter() - started
            cursor.close()
        finally:
            connection.close()
    return elapsed


def core(engine: str, target: Target, text: str) -> RunResult:
    """What `dbsandbox run` does between opening the sandbox and printing the report."""
    dialect: Dialect = "postgres" if engine == "postgres" else "sqlite"
    script = read_script(text, dialect, "bench.sql")
    guard = Guard(acknowledged=script.acknowledged)
    return run_steps(script.steps, target, RunOptions(), guard)


def sandbox_arm(
    engine: str, url: str | None, mix: Mix, text: str, count: int
) -> tuple[float, RunResult]:
    with open_target(options(engine, url)) as target:
        prepare(target, mix)
        gc.collect()
        started = time.perf_counter()
        result = core(engine, target, text)
        elapsed = time.perf_counter() - started
    bad = [e for e in result.executions if e.outcome is None or str(e.outcome.status) != "ok"]
    if len(result.executions) != count or bad:
        raise SystemExit(f"the dbsandbox arm did not run every statement cleanly: {bad[:1]}")
    return elapsed, result


@dataclass
class Figures:
    raw_ms: float  # per statement, median over rounds
    sandbox_ms: float
    overhead_ms: float
    ratio: float


def measure(engine: str, url: str | None, mix: Mix, count: int, rounds: int) -> Figures:
    statements = [mix.statement(i + 1) for i in range(count)]
    text = "\n".join(statements) + "\n"
    raw: list[float] = []
    ours: list[float] = []
    for _ in range(rounds):
        raw.append(raw_arm(engine, url, mix, statements) / count * 1000)
        ours.append(sandbox_arm(engine, url, mix, text, count)[0] / count * 1000)
    overheads = [o - r for r, o in zip(raw, ours, strict=True)]
    ratios = [o / r for r, o in zip(raw, ours, strict=True)]
    return Figures(
        statistics.median(raw),
        statistics.median(ours),
        statistics.median(overheads),
        statistics.median(ratios),
    )


def report_times(url: str | None, count: int) -> tuple[float, float]:
    """Seconds to render the text and the JSON report of a `count`-statement SQLite run."""
    mix = MIXES["insert"]
    text = "\n".join(mix.statement(i + 1) for i in range(count)) + "\n"
    _, result = sandbox_arm("sqlite", url, mix, text, count)
    started = time.perf_counter()
    report.to_text(result)
    rendered_text = time.perf_counter() - started
    started = time.perf_counter()
    report.to_json(result)
    return rendered_text, time.perf_counter() - started


def retained_bytes(count: int) -> int:
    """Bytes a finished `count`-statement SQLite run holds (statements, outcomes, events)."""
    mix = MIXES["insert"]
    text = "\n".join(mix.statement(i + 1) for i in range(count)) + "\n"
    with open_target(options("sqlite", None)) as target:
        prepare(target, mix)
        gc.collect()
        tracemalloc.start()
        before = tracemalloc.get_traced_memory()[0]
        result = core("sqlite", target, text)
        gc.collect()
        held = tracemalloc.get_traced_memory()[0] - before
        tracemalloc.stop()
    del result
    return held


def problem_file(folder: Path, problems: int) -> Path:
    """A scenario file with `problems` problems: breakage steps naming undeclared sessions."""
    steps = "".join(
        f'[[breakage]]\nsession = "S{i}"\nsql = "SELECT {i}"\n\n' for i in range(problems)
    )
    path = folder / f"p{problems}.toml"
    path.write_text(
        'id = "p"\ntitle = "t"\nsummary = "s"\ndifficulty = "beginner"\n'
        'engines = ["sqlite"]\nengine_note = "n"\nstory = "s"\ntask = "t"\nhints = ["h"]\n'
        '[setup]\ndialect = "sqlite"\nsql = "CREATE TABLE t (id INTEGER)"\n\n'
        + steps
        + '[[solution]]\nsql = "SELECT 1"\n\n[[checks]]\nname = "c"\nsql = "SELECT 1"\n'
        "expect = [[1]]\n",
        encoding="utf-8",
    )
    return path


def validate_time(problems: int) -> float:
    with tempfile.TemporaryDirectory() as folder:
        path = problem_file(Path(folder), problems)
        started = time.perf_counter()
        found = validate(path)
        elapsed = time.perf_counter() - started
    # Each step's unknown session, plus the id that does not match the file name.
    if len(found) != problems + 1:
        raise SystemExit(f"expected {problems + 1} problems, validate found {len(found)}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[1_000, 10_000, 100_000])
    parser.add_argument("--pg-sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--mixes", nargs="+", choices=sorted(MIXES), default=list(MIXES))
    # tracemalloc slows a run several times over: 100,000 takes minutes, so it is asked for.
    parser.add_argument("--memory-sizes", type=int, nargs="+", default=[1_000, 10_000])
    parser.add_argument("--url", default=os.environ.get("DBSANDBOX_TEST_POSTGRES_URL"))
    args = parser.parse_args()

    engines = [("sqlite", args.sizes)]
    if args.url:
        engines.append(("postgres", args.pg_sizes))
    else:
        print("postgres: skipped (pass --url or set DBSANDBOX_TEST_POSTGRES_URL)")
    print(
        f"per statement, median of {args.rounds} alternating rounds (raw, dbsandbox, raw, ...); "
        "overhead = dbsandbox - raw"
    )
    print(
        f"{'engine':<9} {'mix':<13} {'statements':>10} {'raw ms':>9} {'dbsandbox ms':>13} "
        f"{'overhead ms':>12} {'ratio':>7}"
    )
    for engine, sizes in engines:
        for key in args.mixes:
            mix = MIXES[key]
            # Imports (sqlglot) and first-use caches are paid before the first round, not in it.
            measure(engine, args.url, mix, 20, 1)
            by_size: dict[int, Figures] = {}
            for count in sizes:
                f = measure(engine, args.url, mix, count, args.rounds)
                by_size[count] = f
                print(
                    f"{engine:<9} {mix.name:<13} {count:>10,} {f.raw_ms:>9.4f} "
                    f"{f.sandbox_ms:>13.4f} {f.overhead_ms:>12.4f} {f.ratio:>6.1f}x",
                    flush=True,
                )
            small, large = min(by_size), max(by_size)
            if large > small:
                growth = by_size[large].sandbox_ms / by_size[small].sandbox_ms
                print(
                    f"{'':<9} {'':<13} dbsandbox per statement at {large:,} / at {small:,}: "
                    f"{growth:.2f}x (1.00x is linear)"
                )
    print("reports of a SQLite INSERT run (text, JSON), per statement:")
    for count in args.sizes:
        as_text, as_json = report_times(args.url, count)
        print(
            f"  {count:>10,} statements: text {as_text / count * 1000:.4f} ms, "
            f"json {as_json / count * 1000:.4f} ms"
        )
    print("memory a finished SQLite INSERT run holds, per statement:")
    for count in args.memory_sizes:
        print(f"  {count:>10,} statements: {retained_bytes(count) / count / 1024:.2f} KiB")
    small_validate, large_validate = validate_time(200), validate_time(2_000)
    print(
        f"dbsandbox validate: 200 problems {small_validate:.3f} s, 2,000 problems "
        f"{large_validate:.3f} s ({large_validate / small_validate:.1f}x for 10x the problems)"
    )
    print(f"env: python {sys.version.split()[0]}, {os.cpu_count()} cores")
    return 0


if __name__ == "__main__":
    sys.exit(main())
