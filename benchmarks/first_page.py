"""How fast the first page of a big SELECT arrives, and what it costs in memory.

For each engine this script creates a sandbox through dbsandbox's real path (open_target, then a
Conductor with one session), fills a table `big` with --rows rows, and times
`SELECT * FROM big` (page size 100) around `Conductor.execute`, both in autocommit and inside an
explicit transaction (BEGIN; SELECT; ROLLBACK), where the PostgreSQL adapter takes another path.
For contrast it also fetches the whole result with the plain driver (`fetchall()`).

Peak memory is the growth of the process's peak RSS (ru_maxrss) while the SELECTs run. Because
ru_maxrss only ever grows, every (engine, case) pair runs in a fresh child process of this
script, which measures it after setup and after the SELECTs.

    .venv/bin/python benchmarks/first_page.py [--engine sqlite|postgres|both] [--rows 1000000]
                                              [--url URL] [--repeat 5]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import sqlite3
import statistics
import subprocess
import sys
import time
from dataclasses import asdict, dataclass
from typing import Any

from sandbox.conductor import Conductor
from sandbox.errors import UserError
from sandbox.outcome import Outcome, Status, TxState
from sandbox.statements import Dialect, Statement, split_statements
from sandbox.targets import (
    Target,
    TargetOptions,
    connect_admin,
    open_target,
    parse_postgres_url,
)

DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"
URL_VARIABLES = ("DBSANDBOX_TEST_POSTGRES_URL", "DBSANDBOX_POSTGRES_URL")
PAGE_SIZE = 100
SESSION = "A"
# Creating the table is one long statement; the conductor cancels anything slower than this.
SETUP_TIMEOUT_S = 300.0
CHILD_TIMEOUT_S = 600.0
RESULT_PREFIX = "FIRST_PAGE_RESULT "

CASES: dict[str, str] = {
    "autocommit": "SELECT (autocommit)",
    "transaction": "BEGIN; SELECT; ROLLBACK",
    "fetchall": "driver fetchall()",
}
SELECT_SQL = "SELECT * FROM big"

# A few columns of different types: an integer key, a short text and a floating-point number.
CREATE_SQL: dict[str, str] = {
    "sqlite": (
        "CREATE TABLE big AS "
        "WITH RECURSIVE s(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM s WHERE i < {rows}) "
        "SELECT i AS id, 'row ' || i AS label, i * 0.5 AS amount FROM s"
    ),
    "postgres": (
        "CREATE TABLE big AS "
        "SELECT g AS id, 'row ' || g AS label, (g * 0.5)::double precision AS amount "
        "FROM generate_series(1, {rows}) AS g"
    ),
}


@dataclass
class Measurement:
    """What one child process measured for one (engine, case) pair."""

    engine: str
    case: str
    timings_ms: list[float]
    rows_seen: int
    more_rows: bool
    rss_setup_kib: int
    rss_after_kib: int


# --------------------------------------------------------------------------- child side


def peak_rss_kib() -> int:
    """The process's peak resident set size so far, in KiB (ru_maxrss is bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak // 1024 if sys.platform == "darwin" else peak


def parse_one(sql: str, dialect: Dialect) -> Statement:
    statements = split_statements(sql, dialect)
    if len(statements) != 1:
        raise RuntimeError(f"expected one statement, got {len(statements)}: {sql}")
    return statements[0]


def run_ok(conductor: Conductor, statement: Statement) -> Outcome:
    """Execute through the conductor; a statement that did not succeed stops the benchmark."""
    outcome = conductor.execute(SESSION, statement).outcome
    if outcome is None:
        raise RuntimeError(f"no outcome for {statement.text!r} (still waiting on a lock?)")
    if outcome.status is not Status.OK:
        message = outcome.error.message if outcome.error else outcome.status.value
        raise RuntimeError(f"{statement.text!r} failed: {message}")
    return outcome


def create_big(conductor: Conductor, engine: str, rows: int) -> None:
    dialect = conductor.target.adapter.dialect
    run_ok(conductor, parse_one(CREATE_SQL[engine].format(rows=int(rows)), dialect))
    if engine == "postgres":
        run_ok(conductor, parse_one("ANALYZE big", dialect))
    count = run_ok(conductor, parse_one("SELECT count(*) FROM big", dialect))
    if count.rows != [(rows,)]:
        raise RuntimeError(f"big has {count.rows} rows, expected {rows}")


def time_paged(
    conductor: Conductor, in_transaction: bool, repeat: int
) -> tuple[list[float], int, bool]:
    """Time `SELECT * FROM big` around Conductor.execute; check every page it returns."""
    dialect = conductor.target.adapter.dialect
    select = parse_one(SELECT_SQL, dialect)
    begin = parse_one("BEGIN", dialect)
    rollback = parse_one("ROLLBACK", dialect)
    expected_tx = TxState.IN_TRANSACTION if in_transaction else TxState.IDLE
    timings: list[float] = []
    rows_seen = 0
    more_rows = False
    for _ in range(repeat):
        if in_transaction:
            run_ok(conductor, begin)
        started = time.perf_counter()
        execution = conductor.execute(SESSION, select)
        elapsed_ms = (time.perf_counter() - started) * 1000
        outcome = execution.outcome
        if outcome is None or outcome.status is not Status.OK:
            detail = outcome.error.message if outcome and outcome.error else "no outcome"
            raise RuntimeError(f"SELECT failed: {detail}")
        if len(outcome.rows) != PAGE_SIZE or not outcome.more_rows:
            raise RuntimeError(
                f"expected a page of {PAGE_SIZE} rows with more to come, got "
                f"{len(outcome.rows)} rows, more_rows={outcome.more_rows}"
            )
        if outcome.tx_after is not expected_tx:
            raise RuntimeError(f"after the SELECT the session is {outcome.tx_after}")
        if in_transaction:
            run_ok(conductor, rollback)
        rows_seen, more_rows = len(outcome.rows), outcome.more_rows
        timings.append(elapsed_ms)
    return timings, rows_seen, more_rows


def time_fetchall(target: Target, rows: int, repeat: int) -> tuple[list[float], int]:
    """Fetch the whole result client-side with the plain driver's default cursor."""
    connection = target.connect("fetchall")
    timings: list[float] = []
    seen = 0
    try:
        for _ in range(repeat):
            cursor = connection.raw.cursor()
            try:
                started = time.perf_counter()
                cursor.execute(SELECT_SQL)
                data: list[Any] = cursor.fetchall()
                timings.append((time.perf_counter() - started) * 1000)
                seen = len(data)
                del data
            finally:
                cursor.close()
    finally:
        connection.close()
    if seen != rows:
        raise RuntimeError(f"fetchall returned {seen} rows, expected {rows}")
    return timings, seen


def child_main(engine: str, case: str, rows: int, repeat: int, url: str | None) -> Measurement:
    target = open_target(TargetOptions(engine=engine, url=url if engine == "postgres" else None))
    try:
        conductor = Conductor(
            target, page_size=PAGE_SIZE, statement_timeout_s=SETUP_TIMEOUT_S, wait_timeout_s=5.0
        )
        try:
            conductor.session(SESSION)
            create_big(conductor, engine, rows)
            rss_setup = peak_rss_kib()
            if case == "fetchall":
                timings, seen = time_fetchall(target, rows, repeat)
                more = False
            else:
                timings, seen, more = time_paged(conductor, case == "transaction", repeat)
            rss_after = peak_rss_kib()
        finally:
            conductor.close()
    finally:
        target.close()
    return Measurement(
        engine=engine,
        case=case,
        timings_ms=timings,
        rows_seen=seen,
        more_rows=more,
        rss_setup_kib=rss_setup,
        rss_after_kib=rss_after,
    )


# --------------------------------------------------------------------------- parent side


def default_url() -> str:
    for variable in URL_VARIABLES:
        value = os.environ.get(variable)
        if value:
            return value
    return DEFAULT_URL


def postgres_version(url: str) -> tuple[str | None, str | None]:
    """(server version, None) when the server answers, else (None, why not)."""
    try:
        engine, raw, sa_conn = connect_admin(parse_postgres_url(url), "dbsandbox-benchmark")
    except UserError as exc:
        return None, str(exc)
    try:
        with raw.cursor() as cursor:
            cursor.execute("SHOW server_version")
            row = cursor.fetchone()
        return (str(row[0]) if row else "unknown"), None
    finally:
        sa_conn.close()
        engine.dispose()


def run_child(engine: str, case: str, rows: int, repeat: int, url: str | None) -> Measurement | str:
    """Measure one pair in a fresh interpreter; returns the measurement or an error text."""
    command = [
        sys.executable,
        os.path.abspath(__file__),
        "--child",
        f"{engine}:{case}",
        "--rows",
        str(rows),
        "--repeat",
        str(repeat),
    ]
    if url is not None:
        command += ["--url", url]
    with subprocess.Popen(
        command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    ) as process:
        try:
            stdout, stderr = process.communicate(timeout=CHILD_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            # SIGINT first: the child's finally blocks close the target and drop the scratch DB.
            process.send_signal(signal.SIGINT)
            try:
                stdout, stderr = process.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                stdout, stderr = process.communicate()
            return f"timed out after {CHILD_TIMEOUT_S:g} s"
    for line in stdout.splitlines():
        if line.startswith(RESULT_PREFIX):
            return Measurement(**json.loads(line[len(RESULT_PREFIX) :]))
    tail = (stderr.strip().splitlines() or [f"exit status {process.returncode}"])[-1]
    return tail


def mib(kib: int) -> str:
    return f"{kib / 1024:.1f}"


def print_table(results: list[tuple[str, str, Measurement | str]]) -> None:
    header = (
        "engine",
        "case",
        "rows back",
        "median ms",
        "min ms",
        "RSS setup MiB",
        "RSS after MiB",
        "Δ peak MiB",
    )
    lines: list[tuple[str, ...]] = [header]
    for engine, case, result in results:
        label = CASES[case]
        if isinstance(result, str):
            lines.append((engine, label, "FAILED: " + result, "", "", "", "", ""))
            continue
        back = f"{result.rows_seen}" + (" +more" if result.more_rows else " (all)")
        lines.append(
            (
                engine,
                label,
                back,
                f"{statistics.median(result.timings_ms):.2f}",
                f"{min(result.timings_ms):.2f}",
                mib(result.rss_setup_kib),
                mib(result.rss_after_kib),
                mib(result.rss_after_kib - result.rss_setup_kib),
            )
        )
    numeric = {2, 3, 4, 5, 6, 7}
    measured = [row for row in lines if not row[2].startswith("FAILED")]
    widths = [max(len(row[i]) for row in measured) for i in range(len(header))]
    for n, row in enumerate(lines):
        if row[2].startswith("FAILED"):
            print(f"{row[0]:<{widths[0]}}  {row[1]:<{widths[1]}}  {row[2]}")
            continue
        cells = [
            cell.rjust(widths[i]) if i in numeric else cell.ljust(widths[i])
            for i, cell in enumerate(row)
        ]
        print("  ".join(cells).rstrip())
        if n == 0:
            print("  ".join("-" * w for w in widths))


def parent_main(args: argparse.Namespace) -> int:
    engines = ["sqlite", "postgres"] if args.engine == "both" else [args.engine]
    url: str = args.url or default_url()
    server: str | None = None
    if "postgres" in engines:
        server, problem = postgres_version(url)
        if server is None:
            print(f"postgres: server unreachable, skipping it ({problem})")
            engines.remove("postgres")
    if not engines:
        return 1
    results: list[tuple[str, str, Measurement | str]] = []
    for engine in engines:
        for case in CASES:
            print(f"measuring {engine}: {CASES[case]} ...", file=sys.stderr, flush=True)
            child_url = url if engine == "postgres" else None
            results.append(
                (engine, case, run_child(engine, case, args.rows, args.repeat, child_url))
            )
    print(
        f"SELECT * FROM big, {args.rows:,} rows (id, label text, amount float), page size "
        f"{PAGE_SIZE}, {args.repeat} runs per case; time measured around Conductor.execute "
        "(for fetchall: execute + fetchall of the whole result)"
    )
    print_table(results)
    import psycopg2

    print(
        f"env: python {sys.version.split()[0]}, sqlite {sqlite3.sqlite_version}, "
        f"postgres server {server or 'not used'}, psycopg2 {psycopg2.__version__.split()[0]}, "
        f"{os.cpu_count()} CPUs"
    )
    return 1 if any(isinstance(r, str) for _, _, r in results) else 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--engine", choices=("sqlite", "postgres", "both"), default="both")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument(
        "--url",
        default=None,
        help="PostgreSQL server (default: $DBSANDBOX_TEST_POSTGRES_URL, "
        f"$DBSANDBOX_POSTGRES_URL, else {DEFAULT_URL})",
    )
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.rows <= PAGE_SIZE:
        parser.error(f"--rows must be more than the page size ({PAGE_SIZE})")
    if args.repeat < 1:
        parser.error("--repeat must be 1 or more")
    if args.child is None:
        return parent_main(args)
    engine, case = args.child.split(":", 1)
    measurement = child_main(engine, case, args.rows, args.repeat, args.url)
    print(RESULT_PREFIX + json.dumps(asdict(measurement)), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
