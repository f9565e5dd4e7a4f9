"""Does `dbsandbox trace` see every statement of every catalog scenario's programs?

Each scenario with Python steps is played (its breakage and its reference solution) on each of
its engines, with SQLAlchemy's own echo log on in every traced process (the tracer writes it
to PREFIX.PID when DBSANDBOX_TRACE_ECHO names PREFIX, as the library's `echo=True` would log).
For each process, the echo log's entries (statements, BEGIN (implicit), COMMIT, ROLLBACK) are
compared with the trace's for that program's lanes, as multisets: a program with two threads
interleaves its connections, and the echo log does not say which connection logged what.
Anything logged and not traced is missed; anything traced and not logged is extra.

    .venv/bin/python benchmarks/trace_scenarios.py [--url postgresql://...] [-k ID]

PostgreSQL runs when --url or DBSANDBOX_TEST_POSTGRES_URL names a server. Target: missed 0,
extra 0 for every scenario on every engine.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

from sqlalchemy.sql.util import _long_statement

# Run as a script from anywhere: the repository's root, for `benchmarks` itself.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.trace_fidelity import BEGIN, echo_sequence
from sandbox.scenario.catalog import catalog_files
from sandbox.scenario.loader import load
from sandbox.scenario.player import play
from sandbox.targets import TargetOptions, open_target
from sandbox.timeline import EventKind

ECHO_ENV = "DBSANDBOX_TRACE_ECHO"


def compare(
    scenario_path: Path, engine: str, url: str | None, folder: Path
) -> tuple[int, int, int]:
    """(statements logged, missed, extra) over every traced process of one play."""
    scenario = load(scenario_path)
    prefix = folder / f"{scenario.id}-{engine}"
    os.environ[ECHO_ENV] = str(prefix)
    try:
        with open_target(TargetOptions(engine=engine, url=url)) as target:
            run = play(scenario, target, solution=True)
    finally:
        del os.environ[ECHO_ENV]
    labels = {
        e.data["pid"]: e.session
        for e in run.timeline
        if e.kind is EventKind.PROGRAM and "pid" in e.data
    }
    executions = {e.index: e for e in run.executions}
    logged_total = missed = extra = 0
    for log in sorted(folder.glob(f"{prefix.name}.*")):
        pid = int(log.suffix[1:])
        label = labels.get(pid)
        # Two threads' records interleave (a statement, the other thread's statement, then
        # the first one's parameters): a parameters record ("[generated in ...] (...)")
        # is never a statement, whatever it follows.
        entries = echo_sequence(log.read_text("utf-8"))
        logged = Counter(entry for entry in entries if not entry.startswith("["))
        traced: Counter[str] = Counter()
        for event in run.timeline:
            if label is None or not event.session.startswith(f"{label}-"):
                continue
            if event.data.get("implicit") is True and event.kind is not EventKind.STATEMENT:
                traced[BEGIN] += 1
            elif event.kind is EventKind.STATEMENT and event.statement in executions:
                text = executions[event.statement].statement.text
                traced[str(_long_statement(text))] += 1
        logged_total += sum(n for s, n in logged.items() if s not in (BEGIN, "COMMIT", "ROLLBACK"))
        lost, added = logged - traced, traced - logged
        missed += sum(lost.values())
        extra += sum(added.values())
        for what, items in (("missed", lost), ("extra", added)):
            for item, n in list(items.items())[:5]:
                print(f"    {what} x{n} ({label or pid}): {' '.join(item.split())[:140]}")
    return logged_total, missed, extra


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--url", default=os.environ.get("DBSANDBOX_TEST_POSTGRES_URL"))
    parser.add_argument("-k", dest="only", help="only scenario ids containing this")
    args = parser.parse_args()
    total_missed = total_extra = 0
    with tempfile.TemporaryDirectory(prefix="trace-scenarios-") as tmp:
        for path in catalog_files():
            scenario = load(path)
            if not scenario.has_python or (args.only and args.only not in scenario.id):
                continue
            for engine in scenario.engines:
                if engine == "postgres" and not args.url:
                    print(f"{scenario.id:<28} postgres  skipped: no --url")
                    continue
                started = time.perf_counter()
                url = args.url if engine == "postgres" else None
                logged, missed, extra = compare(path, engine, url, Path(tmp))
                took = time.perf_counter() - started
                print(
                    f"{scenario.id:<28} {engine:<9} statements {logged:>4}  "
                    f"missed: {missed} / extra: {extra}  ({took:.1f} s)"
                )
                total_missed += missed
                total_extra += extra
    print(f"all scenarios: missed {total_missed}, extra {total_extra}")
    return 0 if total_missed == total_extra == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
