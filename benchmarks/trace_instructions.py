"""What `dbsandbox trace` adds to each statement of an ORM program, in CPU instructions.

Wall and CPU time on a shared machine move by 10% from one run to the next
(benchmarks/trace_overhead.py alternates its arms to see through that); an instruction count
does not. This runs the ORM workload (benchmarks/trace_workload.py, SQLite) under valgrind's
cachegrind, which counts the instructions the program's process executes, at two sizes, plain
and under the tracer, and reports the difference per statement: what one more statement
costs the program, without its start-up and imports.

    .venv/bin/python benchmarks/trace_instructions.py [--small 2000] [--large 6000]

Needs valgrind (Debian: apt install valgrind). The traced arm reports to dbsandbox's recorder
as `dbsandbox trace` does; only the program's own instructions are counted (the recorder
runs in this process, outside valgrind). PYTHONHASHSEED is fixed so both arms hash alike.
The plain count repeats exactly; the traced one moves by about 0.3% between runs (its
batches are cut by time), about 2 k instructions a statement at the default sizes.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from sandbox.targets import TargetOptions, open_target
from sandbox.trace import recorder, tracer
from sandbox.trace.tracer import trace

_BATCH_S = 0.02  # inject/_dbsandbox_trace.py's
_POKE_AFTER_S = tracer.POKE_AFTER_S
_FIRST_LOOK_S = recorder._FIRST_LOOK_S
_LOOK_EVERY_S = recorder._LOOK_EVERY_S

WORKLOAD = Path(__file__).resolve().parent / "trace_workload.py"
_REFS = re.compile(r"I\s+refs:\s+([\d,]+)")


def _valgrind(folder: str, statements: int) -> list[str]:
    out = os.path.join(folder, f"cachegrind.{statements}")
    return [
        "valgrind",
        "--tool=cachegrind",
        "--cache-sim=no",
        f"--cachegrind-out-file={out}",
        f"--log-file={out}.log",
        sys.executable,
        str(WORKLOAD),
        "--statements",
        str(statements),
    ]


def _count(folder: str, statements: int) -> int:
    log = Path(folder, f"cachegrind.{statements}.log").read_text(encoding="utf-8")
    found = _REFS.search(log)
    if found is None:
        raise SystemExit(f"no instruction count in valgrind's log:\n{log[-500:]}")
    return int(found.group(1).replace(",", ""))


def plain(statements: int) -> int:
    with open_target(TargetOptions(engine="sqlite")) as target, tempfile.TemporaryDirectory() as d:
        env = {k: v for k, v in os.environ.items() if not k.startswith("DBSANDBOX_TRACE")}
        env["DATABASE_URL"] = target.program_url()
        done = subprocess.run(_valgrind(d, statements), env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise SystemExit(f"the plain workload failed: {done.stderr[-500:]}")
        return _count(d, statements)


# Under valgrind the program runs about 50 times slower: the tracer's time windows (how long
# a batch of reports waits for more, how long a silent program goes before dbsandbox pokes
# it, how long a statement runs before the lock watcher probes the database for a wait) are
# stretched alike, so that it behaves as it does at full speed (batches of tens of reports,
# no pokes and no probes while the program is busy). Unstretched, every report went alone,
# most were poked for, and the probes of SQLite's write lock made the program's writes
# retry: the count moved by a third from one run to the next.
_SLOWER = 50


def traced(statements: int) -> int:
    os.environ["DBSANDBOX_TRACE_BATCH_S"] = str(_BATCH_S * _SLOWER)
    tracer.POKE_AFTER_S = _POKE_AFTER_S * _SLOWER
    recorder._FIRST_LOOK_S = _FIRST_LOOK_S * _SLOWER
    recorder._LOOK_EVERY_S = _LOOK_EVERY_S * _SLOWER
    with open_target(TargetOptions(engine="sqlite")) as target, tempfile.TemporaryDirectory() as d:
        result = trace([_valgrind(d, statements)], target, timeout_s=1800)
        if result.failed:
            raise SystemExit(f"the traced workload failed: {result.failed[0].output[-5:]}")
        return _count(d, statements)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--small", type=int, default=2000)
    parser.add_argument("--large", type=int, default=6000)
    args = parser.parse_args()
    if shutil.which("valgrind") is None:
        print("valgrind is not installed: apt install valgrind", file=sys.stderr)
        return 2
    os.environ["PYTHONHASHSEED"] = "0"
    extra = args.large - args.small
    print(f"the workload at {args.small:,} and {args.large:,} statements, under cachegrind")
    a_small, a_large = plain(args.small), plain(args.large)
    b_small, b_large = traced(args.small), traced(args.large)
    plain_each = (a_large - a_small) / extra
    traced_each = (b_large - b_small) / extra
    print(f"plain:  {plain_each / 1000:7.1f} k instructions a statement")
    print(f"traced: {traced_each / 1000:7.1f} k instructions a statement")
    added = traced_each - plain_each
    print(
        f"the tracer adds {added / 1000:.1f} k instructions a statement "
        f"({added / plain_each * 100:+.1f}%; target < 10%)"
    )
    return 0 if added / plain_each < 0.10 else 1


if __name__ == "__main__":
    raise SystemExit(main())
