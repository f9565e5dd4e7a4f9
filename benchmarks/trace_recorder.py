"""What recording a traced program costs dbsandbox, per statement, without the program.

`dbsandbox trace` runs the program and dbsandbox's recorder side by side; on a machine with
few cores the recorder's work competes with the program (and its database server) for the
CPUs, so what the recorder costs shows up in the program's run time
(benchmarks/trace_overhead.py). This measures the recorder alone: the ORM workload
(benchmarks/trace_workload.py) runs once under the tracer, every report dbsandbox receives
is kept, and then those reports are fed again, in the order they came, to a fresh Recorder
on a fresh sandbox of the same kind, several times. The figure is the CPU time of the
recorder's dispatcher thread (where each report becomes executions and timeline events) a
statement: the least of the repeats, which a busy machine can only make larger.

    .venv/bin/python benchmarks/trace_recorder.py [--statements 10000] [--repeats 5]
        [--engines sqlite postgres] [--url postgresql://postgres@127.0.0.1:5432/postgres]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

from sandbox.targets import TargetOptions, open_target
from sandbox.timeline import Timeline
from sandbox.trace.recorder import Program, Recorder, collector_spared
from sandbox.trace.tracer import trace

WORKLOAD = Path(__file__).resolve().parent / "trace_workload.py"

Report = tuple[int | None, list[str], dict[str, Any]]


def options(engine: str, url: str | None) -> TargetOptions:
    return TargetOptions(engine=engine, url=url if engine == "postgres" else None)


def capture(engine: str, url: str | None, statements: int) -> list[Report]:
    """Every report the recorder receives while tracing the workload once, as received."""
    kept: list[Report] = []
    submit = Recorder.submit

    def keep(self: Recorder, program: Program | None, message: dict[str, Any]) -> Any:
        argv = list(program.argv or []) if program is not None else []
        kept.append((program.pid if program is not None else None, argv, dict(message)))
        return submit(self, program, message)

    command = [sys.executable, str(WORKLOAD), "--statements", str(statements)]
    Recorder.submit = keep  # type: ignore[method-assign]
    try:
        with open_target(options(engine, url)) as target:
            trace([command], target, timeout_s=600)
    finally:
        Recorder.submit = submit  # type: ignore[method-assign]
    return kept


def replay(engine: str, url: str | None, reports: list[Report]) -> tuple[float, int]:
    """The dispatcher's CPU seconds to record `reports` again, and the executions made."""
    spent: list[float] = []
    dispatch = Recorder._dispatch

    def timed(self: Recorder) -> None:
        try:
            dispatch(self)
        finally:
            spent.append(time.thread_time())

    Recorder._dispatch = timed  # type: ignore[method-assign]
    try:
        # As trace() records: with the process's older objects spared from the collector.
        with collector_spared(), open_target(options(engine, url)) as target:
            # The reports are older than the reorder window (recorder.REORDER_S): the
            # dispatcher records each as soon as it is submitted, as fast as it can.
            recording = Recorder(target, Timeline())
            programs: dict[int, Program] = {}
            for pid, argv, message in reports:
                program = None
                if pid is not None:
                    program = programs.get(pid) or programs.setdefault(
                        pid, recording.program(pid, argv)
                    )
                recording.submit(program, dict(message))
            recording.close()
    finally:
        Recorder._dispatch = dispatch  # type: ignore[method-assign]
    return spent[0], len(recording.executions)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=10_000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--engines", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--url", default=os.environ.get("DBSANDBOX_TEST_POSTGRES_URL"))
    args = parser.parse_args()
    print(
        f"the recorder's dispatcher, recording the reports of the workload "
        f"({args.statements:,} cursor executions) again, {args.repeats} times"
    )
    for engine in args.engines:
        if engine == "postgres" and not args.url:
            print("postgres: skipped (pass --url or set DBSANDBOX_TEST_POSTGRES_URL)")
            continue
        reports = capture(engine, args.url, args.statements)
        runs = [replay(engine, args.url, reports) for _ in range(args.repeats)]
        executions = runs[0][1]
        if any(made != executions for _, made in runs) or executions < args.statements:
            raise SystemExit(f"{engine}: the replays recorded {[m for _, m in runs]} executions")
        per = [cpu / executions * 1e6 for cpu, _ in runs]
        print(
            f"{engine:<9} {len(reports):,} reports, {executions:,} executions: dispatcher CPU "
            f"{min(per):.1f} µs a statement (least of {args.repeats}; median "
            f"{statistics.median(per):.1f})"
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
