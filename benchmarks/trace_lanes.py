"""Does every traced statement land on the lane of the connection that sent it?

benchmarks/trace_lanes_program.py runs 4 threads, each on its own connection, each statement
tagged with its sender (a SQL comment) and its number in that sender's sequence (a
parameter). Two such processes run at once, as two programs (`dbsandbox trace --together`) or
as one program that forks two (multiprocessing): 8 connections, so 8 lanes. The trace is then
held to the truth:

- each lane holds one sender's statements only (no statement on another connection's lane);
- each sender's statements are on one lane, all N of them, in the order sent (0..N-1);
- each statement's event names the thread that sent it.

Statements without a tag are SQLAlchemy's own (PostgreSQL's first-connect probes) and the
programs' COMMITs: counted, not checked.

    .venv/bin/python benchmarks/trace_lanes.py [-n 2000] [--engines sqlite postgres]
        [--modes together fork] [--url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import os
import re
import sys
import time
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from sandbox.targets import Target, TargetOptions, open_target
from sandbox.timeline import EventKind
from sandbox.trace.tracer import TraceResult, trace

PROGRAM = Path(__file__).resolve().parent / "trace_lanes_program.py"
THREADS = 4
TAG = re.compile(r"/\* tag (\S+) \*/")


@dataclass
class LaneCheck:
    """What a trace says against what the programs sent."""

    lanes: int = 0  # lanes holding tagged statements
    tagged: int = 0
    untagged: int = 0
    per_lane: dict[str, int] = field(default_factory=dict)  # lane -> tagged statements
    problems: list[str] = field(default_factory=list)

    @property
    def clean(self) -> bool:
        return not self.problems


def check(result: TraceResult, tags: list[str], count: int) -> LaneCheck:
    """Hold the trace to the truth (see the module's docstring)."""
    found = LaneCheck()
    by_lane: dict[str, list[tuple[str, int]]] = defaultdict(list)
    threads: dict[int, str | None] = {}
    for event in result.run.timeline:
        if event.kind is EventKind.STATEMENT and event.statement is not None:
            thread = event.data.get("thread")
            threads[event.statement] = str(thread) if thread is not None else None
    for execution in result.run.executions:
        match = TAG.search(execution.statement.text)
        if match is None:
            found.untagged += 1
            continue
        tag = match.group(1)
        params = execution.params
        # {"seq": n} (psycopg2), or [n] where the driver takes ? placeholders (sqlite3).
        seq = params.get("seq") if isinstance(params, dict) else None
        if isinstance(params, list) and len(params) == 1:
            seq = params[0]
        if not isinstance(seq, int):
            found.problems.append(f"{tag}: a statement without its seq parameter: {params!r}")
            continue
        by_lane[execution.session].append((tag, seq))
        if threads.get(execution.index) != tag:
            found.problems.append(
                f"{tag} #{seq}: the event names thread {threads.get(execution.index)!r}"
            )
    found.lanes = len(by_lane)
    where: dict[str, list[str]] = defaultdict(list)
    for lane, sent in sorted(by_lane.items()):
        found.per_lane[lane] = len(sent)
        found.tagged += len(sent)
        lane_tags = sorted({tag for tag, _ in sent})
        for tag in lane_tags:
            where[tag].append(lane)
        if len(lane_tags) != 1:
            found.problems.append(f"lane {lane} holds statements of {', '.join(lane_tags)}")
            continue
        seqs = [seq for _, seq in sent]
        if seqs != list(range(count)):
            missing = sorted(set(range(count)) - set(seqs))
            found.problems.append(
                f"lane {lane} ({lane_tags[0]}): {len(seqs)} statements, missing {missing[:5]}"
                f"{', out of order' if sorted(seqs) != seqs else ''}"
            )
    for tag in tags:
        if len(where.get(tag, [])) != 1:
            found.problems.append(f"{tag} is on lanes {where.get(tag, [])} (expected one)")
    extra = sorted(set(where) - set(tags))
    if extra:
        found.problems.append(f"statements of unknown senders: {extra}")
    failed = [p for p in result.programs if p.exit_code != 0]
    for program in failed:
        found.problems.append(f"{program.label} exited {program.exit_code}: {program.output[-3:]}")
    return found


def prepare(target: Target) -> None:
    """The table the programs write to, before they start (they start together)."""
    connection = target.connect("setup")
    try:
        cursor = connection.raw.cursor()
        cursor.execute("CREATE TABLE marks (tag VARCHAR(40), seq INTEGER)")
        if target.engine == "postgres":
            connection.raw.commit()
        cursor.close()
    finally:
        connection.close()


def commands(mode: str, count: int) -> tuple[list[list[str]], list[str]]:
    """The programs to trace and the tags their threads send with."""
    base = [sys.executable, str(PROGRAM)]
    if mode == "together":
        names = ["p1", "p2"]
        programs = [[*base, name, "-n", str(count)] for name in names]
    else:
        names = ["p.1", "p.2"]
        programs = [[*base, "p", "-n", str(count), "--processes", "2"]]
    tags = [f"{name}-t{n}" for name in names for n in range(1, THREADS + 1)]
    return programs, tags


def run(target: Target, mode: str, count: int) -> tuple[LaneCheck, TraceResult]:
    prepare(target)
    programs, tags = commands(mode, count)
    result = trace(programs, target, together=mode == "together", timeout_s=600)
    return check(result, tags, count), result


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("-n", "--count", type=int, default=2000, help="statements per thread")
    parser.add_argument("--engines", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--modes", nargs="+", default=["together", "fork"])
    parser.add_argument("--url", default=os.environ.get("DBSANDBOX_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    print(
        f"2 processes x {THREADS} threads, each on its own connection, {args.count:,} tagged "
        "statements a thread (half SELECT, half INSERT, COMMIT every 10)"
    )
    clean = True
    for engine in args.engines:
        if engine == "postgres" and not args.url:
            print("postgres: skipped (pass --url or set DBSANDBOX_TEST_POSTGRES_URL)")
            continue
        for mode in args.modes:
            url = args.url if engine == "postgres" else None
            with open_target(TargetOptions(engine=engine, url=url)) as target:
                started = time.perf_counter()
                found, _ = run(target, mode, args.count)
                elapsed = time.perf_counter() - started
            sizes = sorted(set(found.per_lane.values()))
            print(
                f"{engine:<9} {mode:<9} lanes {found.lanes}  tagged statements "
                f"{found.tagged:,} ({', '.join(map(str, sizes))} a lane)  others "
                f"{found.untagged}  misplaced/missed/out of order: {len(found.problems)}  "
                f"({elapsed:.1f} s)"
            )
            for problem in found.problems[:10]:
                print(f"    {problem}")
            clean = clean and found.clean and found.lanes == 2 * THREADS
    return 0 if clean else 1


if __name__ == "__main__":
    raise SystemExit(main())
