"""What `dbsandbox trace` adds to the run time of an ORM program.

The ORM workload (benchmarks/trace_workload.py, 10,000 cursor executions by default) runs in
two arms, alternately (plain, traced, plain, traced, ...) so that a change in the load of this
shared machine hits both alike:

- plain: `python trace_workload.py` with DATABASE_URL naming a fresh sandbox, no tracer;
- traced: the same command under `sandbox.trace.tracer.trace` on a fresh sandbox of the same
  kind: the tracer inside the program, the socket, the recorder building executions and the
  timeline, until the program's last report is recorded.

Each arm is timed from starting the program to having its exit (and, traced, everything it
reported) in hand; creating the sandbox (a SQLite file, a scratch PostgreSQL database) is left
out of both. The echo log is off in both arms.

    .venv/bin/python benchmarks/trace_overhead.py [--pairs 5] [--statements 10000]
        [--engines sqlite postgres] [--url postgresql://postgres@127.0.0.1:5432/postgres]
        [--echo-reference] [--capture-reference]

Target: the traced median within 10% of the plain median. Besides wall time, each run's CPU
time is shown: the program's (plain, and traced: the tracer inside it), and dbsandbox's own
while tracing (the recorder, on another core when the machine has one free). With
--echo-reference a third arm runs the plain workload with SQLAlchemy's echo log on, for
scale: what the library's own statement log costs the same program. With
--capture-reference another arm runs the program with the tracer inside it, writing its
reports to a socket that only reads them: what capturing costs the program itself, without
dbsandbox recording beside it (on a 2-core machine the two compete for more than the CPU).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import resource
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from sandbox.targets import TargetOptions, open_target
from sandbox.trace.tracer import program_env, trace

WORKLOAD = Path(__file__).resolve().parent / "trace_workload.py"


def options(engine: str, url: str | None) -> TargetOptions:
    return TargetOptions(engine=engine, url=url if engine == "postgres" else None)


def command(statements: int) -> list[str]:
    return [sys.executable, str(WORKLOAD), "--statements", str(statements)]


@dataclass
class Timing:
    wall: float  # seconds from starting the program to having all of it in hand
    program_cpu: float  # CPU seconds of the program's process (user + system)
    dbsandbox_cpu: float  # CPU seconds of this process meanwhile (the tracer's recorder)


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def plain(engine: str, url: str | None, statements: int, echo: Path | None = None) -> Timing:
    """The workload alone on a fresh sandbox (with `echo`: its echo log into that file)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DBSANDBOX_TRACE")}
    env.pop("TRACE_ECHO_LOG", None)
    with open_target(options(engine, url)) as target:
        env["DATABASE_URL"] = target.program_url()
        cpu, own = _children_cpu(), time.process_time()
        started = time.perf_counter()
        words = command(statements) + (["--echo-log", str(echo)] if echo else [])
        done = subprocess.run(words, env=env, capture_output=True, text=True)
        timing = Timing(
            time.perf_counter() - started, _children_cpu() - cpu, time.process_time() - own
        )
    if done.returncode != 0:
        raise SystemExit(f"the plain workload failed on {engine}: {done.stderr[-500:]}")
    return timing


def captured(engine: str, url: str | None, statements: int) -> Timing:
    """The workload with the tracer inside it, its reports read and dropped: no recorder."""
    with tempfile.TemporaryDirectory() as folder, open_target(options(engine, url)) as target:
        path = os.path.join(folder, "s")
        listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        listener.bind(path)
        listener.listen(8)

        def drain() -> None:
            with contextlib.suppress(OSError):
                while True:
                    conn, _ = listener.accept()
                    threading.Thread(target=_drop, args=(conn,), daemon=True).start()

        threading.Thread(target=drain, daemon=True).start()
        env = program_env(target, path, "warn")
        cpu, own = _children_cpu(), time.process_time()
        started = time.perf_counter()
        done = subprocess.run(command(statements), env=env, capture_output=True, text=True)
        timing = Timing(
            time.perf_counter() - started, _children_cpu() - cpu, time.process_time() - own
        )
        # shutdown wakes the thread blocked in accept() (close alone does not, on Linux).
        with contextlib.suppress(OSError):
            listener.shutdown(socket.SHUT_RDWR)
        listener.close()
    if done.returncode != 0:
        raise SystemExit(f"the captured workload failed on {engine}: {done.stderr[-500:]}")
    return timing


def _drop(conn: socket.socket) -> None:
    with conn, contextlib.suppress(OSError):
        while conn.recv(1 << 16):
            pass


def traced(engine: str, url: str | None, statements: int) -> Timing:
    """The workload under the tracer on a fresh sandbox, all of it recorded."""
    os.environ.pop("TRACE_ECHO_LOG", None)
    with open_target(options(engine, url)) as target:
        cpu, own = _children_cpu(), time.process_time()
        started = time.perf_counter()
        result = trace([command(statements)], target, timeout_s=600)
        timing = Timing(
            time.perf_counter() - started, _children_cpu() - cpu, time.process_time() - own
        )
    failed = [p for p in result.programs if p.exit_code != 0]
    if failed:
        raise SystemExit(f"the traced workload failed on {engine}: {failed[0].output[-5:]}")
    if len(result.run.executions) < statements:
        raise SystemExit(f"the trace holds {len(result.run.executions)} executions only")
    return timing


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--statements", type=int, default=10_000)
    parser.add_argument("--engines", nargs="+", default=["sqlite", "postgres"])
    parser.add_argument("--url", default=os.environ.get("DBSANDBOX_TEST_POSTGRES_URL"))
    parser.add_argument(
        "--echo-reference",
        action="store_true",
        help="a third arm for scale: the plain workload with SQLAlchemy's echo log to a file",
    )
    parser.add_argument(
        "--capture-reference",
        action="store_true",
        help="another arm: the tracer in the program, its reports dropped (no recorder)",
    )
    args = parser.parse_args()
    print(
        f"the workload ({args.statements:,} cursor executions), plain vs under dbsandbox "
        f"trace, {args.pairs} alternating pairs (plain, traced, ...); echo log off"
    )
    within = True
    for engine in args.engines:
        if engine == "postgres" and not args.url:
            print("postgres: skipped (pass --url or set DBSANDBOX_TEST_POSTGRES_URL)")
            continue
        # Imports, first connections and the OS's file cache are paid before the first pair.
        plain(engine, args.url, 200)
        traced(engine, args.url, 200)
        plains: list[Timing] = []
        traces: list[Timing] = []
        echoes: list[Timing] = []
        captures: list[Timing] = []
        for pair in range(1, args.pairs + 1):
            plains.append(plain(engine, args.url, args.statements))
            traces.append(traced(engine, args.url, args.statements))
            a, b = plains[-1], traces[-1]
            echoed = ""
            if args.echo_reference:
                with tempfile.TemporaryDirectory() as folder:
                    log = Path(folder) / "echo.log"
                    echoes.append(plain(engine, args.url, args.statements, log))
                echoed = f"  plain+echo log {echoes[-1].wall:6.2f} s"
            if args.capture_reference:
                captures.append(captured(engine, args.url, args.statements))
                echoed += (
                    f"  capture only {captures[-1].wall:6.2f} s "
                    f"(cpu {captures[-1].program_cpu:5.2f})"
                )
            print(
                f"{engine:<9} pair {pair}: plain {a.wall:6.2f} s (cpu {a.program_cpu:5.2f})  "
                f"traced {b.wall:6.2f} s (cpu program {b.program_cpu:5.2f} + dbsandbox "
                f"{b.dbsandbox_cpu:5.2f}){echoed}",
                flush=True,
            )
        a_wall = statistics.median(t.wall for t in plains)
        b_wall = statistics.median(t.wall for t in traces)
        a_cpu = statistics.median(t.program_cpu for t in plains)
        b_cpu = statistics.median(t.program_cpu for t in traces)
        recorder_cpu = statistics.median(t.dbsandbox_cpu for t in traces)
        overhead = (b_wall - a_wall) / a_wall * 100
        within = within and overhead < 10
        print(
            f"{engine:<9} median wall: plain {a_wall:6.2f} s  traced {b_wall:6.2f} s  "
            f"ratio {b_wall / a_wall:5.3f}  overhead {overhead:+.1f}% (target < 10%)"
        )
        print(
            f"{engine:<9} median cpu: program plain {a_cpu:5.2f} s  traced {b_cpu:5.2f} s "
            f"({(b_cpu - a_cpu) / a_cpu * 100:+.1f}%, "
            f"{(b_cpu - a_cpu) / args.statements * 1e6:.0f} µs a statement); "
            f"dbsandbox's recorder {recorder_cpu:5.2f} s "
            f"({recorder_cpu / args.statements * 1e6:.0f} µs a statement, on another core)"
        )
        if echoes:
            e_wall = statistics.median(t.wall for t in echoes)
            print(
                f"{engine:<9} for scale, SQLAlchemy's echo log to a file: median {e_wall:6.2f} s "
                f"({(e_wall - a_wall) / a_wall * 100:+.1f}% over plain)"
            )
        if captures:
            c_wall = statistics.median(t.wall for t in captures)
            c_cpu = statistics.median(t.program_cpu for t in captures)
            print(
                f"{engine:<9} capture only (reports dropped, no recorder): median wall "
                f"{c_wall:6.2f} s ({(c_wall - a_wall) / a_wall * 100:+.1f}% over plain), "
                f"cpu {c_cpu:5.2f} s ({(c_cpu - a_cpu) / a_cpu * 100:+.1f}%)"
            )
    return 0 if within else 1


if __name__ == "__main__":
    raise SystemExit(main())
