"""Does `dbsandbox trace` see every statement a program sends, and nothing it does not?

The ORM workload (benchmarks/trace_workload.py) runs under the tracer (sandbox.trace.tracer.
trace) with SQLAlchemy's own echo log written to a file. The echo log is the witness: it is
written by SQLAlchemy itself, in the program, one record per cursor execution (each
insertmanyvalues batch its own), plus `BEGIN (implicit)`, `COMMIT` and `ROLLBACK`. The trace's
side is, in timeline order, its BEGIN (implicit) events and its executions (statements, and
the COMMIT / ROLLBACK SQLAlchemy asked the driver for). Both are compared in order, per
connection (the workload uses one connection at a time, so the order across lanes is the
order of sending): anything in the echo log and not in the trace is missed, anything in the
trace and not in the echo log is extra.

    .venv/bin/python benchmarks/trace_fidelity.py [--statements 10000]
        [--engines sqlite postgres] [--url postgresql://postgres@127.0.0.1:5432/postgres]

PostgreSQL runs when --url or DBSANDBOX_TEST_POSTGRES_URL names a server. Target: missed 0,
extra 0 on both engines.
"""

from __future__ import annotations

import argparse
import difflib
import os
import re
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy.sql.util import _long_statement

from sandbox.targets import Target, TargetOptions, open_target
from sandbox.timeline import EventKind
from sandbox.trace.tracer import TraceResult, trace

WORKLOAD = Path(__file__).resolve().parent / "trace_workload.py"
BEGIN = "BEGIN (implicit)"
# One record of the echo log, in the format echo=True uses (trace_workload.ECHO_FORMAT); a
# statement's message may span lines (CREATE TABLE), up to the next record's header.
_HEADER = re.compile(
    r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} INFO sqlalchemy\.engine\.\S+ ", re.MULTILINE
)


def echo_records(text: str) -> list[str]:
    """The messages of an echo log, exactly as SQLAlchemy logged them."""
    heads = list(_HEADER.finditer(text))
    records = []
    for at, head in enumerate(heads):
        end = heads[at + 1].start() if at + 1 < len(heads) else len(text)
        records.append(text[head.end() : end].removesuffix("\n"))  # the handler's terminator
    return records


def echo_sequence(text: str) -> list[str]:
    """What the echo log says was sent, in order: statements (as SQLAlchemy logs them, long
    ones shortened), BEGIN (implicit), COMMIT and ROLLBACK. A statement's parameters are the
    record right after it ("[generated in ...] (...)", "[raw sql] ()", ...), not a statement."""
    sequence: list[str] = []
    after_statement = False
    for record in echo_records(text):
        if after_statement and record.startswith("["):
            after_statement = False  # its parameters
            continue
        after_statement = False
        if record.startswith("BEGIN (implicit"):  # also "...; DBAPI should not BEGIN ..."
            sequence.append(BEGIN)
        elif record in ("COMMIT", "ROLLBACK"):
            sequence.append(record)
        else:
            sequence.append(record)
            after_statement = True
    return sequence


def trace_sequence(result: TraceResult) -> list[tuple[str, str]]:
    """The trace's BEGIN (implicit) events and executions in timeline order, each with its
    lane. A statement is shortened as SQLAlchemy's log shortens it, to compare like with
    like."""
    executions = {e.index: e for e in result.run.executions}
    sequence: list[tuple[str, str]] = []
    for event in result.run.timeline:
        # SQLAlchemy's "BEGIN (implicit)": the event says implicit=True, whatever its kind.
        if event.data.get("implicit") is True and event.kind is not EventKind.STATEMENT:
            sequence.append((event.session, BEGIN))
        elif event.kind is EventKind.STATEMENT and event.statement in executions:
            text = executions[event.statement].statement.text
            sequence.append((event.session, str(_long_statement(text))))
    return sequence


@dataclass
class Comparison:
    logged: int  # entries in the echo log
    traced: int  # entries in the trace
    statements: int  # cursor executions in the echo log (no BEGIN / COMMIT / ROLLBACK)
    lanes: int
    missed: list[str] = field(default_factory=list)  # logged, not traced
    extra: list[str] = field(default_factory=list)  # traced, not logged


def compare(logged: list[str], traced: list[str], lanes: int = 1) -> Comparison:
    """Both sequences in order: what one has that the other lacks, where they part."""
    result = Comparison(
        logged=len(logged),
        traced=len(traced),
        statements=sum(1 for s in logged if s not in (BEGIN, "COMMIT", "ROLLBACK")),
        lanes=lanes,
    )
    matcher = difflib.SequenceMatcher(None, logged, traced, autojunk=False)
    for op, a1, a2, b1, b2 in matcher.get_opcodes():
        if op in ("delete", "replace"):
            result.missed += [f"#{i + 1}: {logged[i]}" for i in range(a1, a2)]
        if op in ("insert", "replace"):
            result.extra += [f"#{i + 1}: {traced[i]}" for i in range(b1, b2)]
    return result


def traced_run(target: Target, statements: int, folder: Path) -> tuple[Comparison, TraceResult]:
    """The workload under the tracer on `target` with its echo log on; the two compared."""
    log = folder / f"echo-{target.engine}.log"
    command = [sys.executable, str(WORKLOAD), "--statements", str(statements)]
    command += ["--echo-log", str(log)]
    result = trace([command], target, timeout_s=600)
    failed = [p for p in result.programs if p.exit_code != 0]
    if failed:
        raise SystemExit(f"the workload failed on {target.engine}: {failed[0].output[-5:]}")
    traced = trace_sequence(result)
    # The workload uses one connection at a time and the echo log does not say which: the
    # order across lanes is the order the program sent them in.
    lanes = len({lane for lane, _ in traced})
    logged = echo_sequence(log.read_text("utf-8"))
    return compare(logged, [entry for _, entry in traced], lanes), result


def show(engine: str, found: Comparison, elapsed: float) -> None:
    print(
        f"{engine:<9} statements {found.statements:>6,}  echo log entries {found.logged:>6,}  "
        f"trace entries {found.traced:>6,}  lanes {found.lanes}  "
        f"missed: {len(found.missed)} / extra: {len(found.extra)}  ({elapsed:.1f} s traced)"
    )
    for what, items in (("missed", found.missed), ("extra", found.extra)):
        for item in items[:10]:
            print(f"    {what} {' '.join(item.split())[:160]}")
        if len(items) > 10:
            print(f"    ... {len(items) - 10} more {what}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=10_000)
    parser.add_argument("--engines", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--url", default=os.environ.get("DBSANDBOX_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    print(
        f"the workload ({args.statements:,} cursor executions) under dbsandbox trace vs "
        "SQLAlchemy's echo log of the same run; entries = statements + BEGIN (implicit) + "
        "COMMIT / ROLLBACK\n"
    )
    clean = True
    with tempfile.TemporaryDirectory() as folder:
        for engine in args.engines:
            if engine == "postgres" and not args.url:
                print("postgres: skipped (pass --url or set DBSANDBOX_TEST_POSTGRES_URL)")
                continue
            url = args.url if engine == "postgres" else None
            with open_target(TargetOptions(engine=engine, url=url)) as target:
                started = time.perf_counter()
                found, _ = traced_run(target, args.statements, Path(folder))
                elapsed = time.perf_counter() - started
            show(engine, found, elapsed)
            clean = clean and not found.missed and not found.extra
    return 0 if clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
