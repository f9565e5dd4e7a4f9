"""How long grading takes: the wait between Check and the score, and `dbsandbox grade`.

After Check the app answers at once on the live sandbox, then replays the learner's statements
on every hidden variant and plays the reference solution once (for `care`), each on a fresh
sandbox, off the event loop. This measures that second part for every catalog scenario with
its own reference solution as the learner's statements, on each engine:

- variants: `grade_variants` (what the app runs after Check), median of --runs;
- grade: the whole `grade` (the dataset shown too), what `dbsandbox grade` runs per engine.

    .venv/bin/python benchmarks/grading.py [--runs 3] [--url postgresql://...] [-k ID]

Without --url (or DBSANDBOX_TEST_POSTGRES_URL) only SQLite is measured. The figures depend on
the machine; they are printed, never asserted.
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from collections.abc import Callable
from typing import Any

from sandbox.lifecycle import sandbox_closed_at_end
from sandbox.options import TargetOptions
from sandbox.scenario.catalog import catalog
from sandbox.scenario.grading import Attempt, grade, grade_variants
from sandbox.scenario.player import Replayed
from sandbox.targets import open_target


def _opener(engine: str, url: str | None) -> Callable[[], Any]:
    options = TargetOptions(engine=engine, url=url)
    return lambda: sandbox_closed_at_end(open_target(options))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--url", default=os.environ.get("DBSANDBOX_TEST_POSTGRES_URL"))
    parser.add_argument("-k", dest="only", help="only scenarios whose id contains this")
    args = parser.parse_args()
    engines = ["sqlite"] + (["postgres"] if args.url else [])
    print(
        f"{'scenario':<22} {'engine':<9} {'variants':>9} {'grade':>9}  (median s, {args.runs} runs)"
    )
    totals: dict[str, list[float]] = {engine: [] for engine in engines}
    for scenario in catalog():
        if args.only and args.only not in scenario.id:
            continue
        for engine in engines:
            if not scenario.supports(engine):
                continue
            steps = tuple(
                Replayed(step.session, step.sql.on(engine))
                for step in scenario.solution
                if step.runs_on(engine)
            )
            attempt = Attempt(steps)
            opener = _opener(engine, args.url if engine == "postgres" else None)
            after_check, whole = [], []
            for _ in range(args.runs):
                started = time.perf_counter()
                grade_variants(scenario, attempt, opener)
                after_check.append(time.perf_counter() - started)
                started = time.perf_counter()
                result = grade(scenario, attempt, opener, engine=engine)
                whole.append(time.perf_counter() - started)
                assert result.score.recovered, f"{scenario.id} ({engine}): the solution failed"
            wait, full = statistics.median(after_check), statistics.median(whole)
            totals[engine].append(wait)
            print(f"{scenario.id:<22} {engine:<9} {wait:>9.2f} {full:>9.2f}")
    for engine, waits in totals.items():
        if waits:
            print(
                f"{engine}: Check's wait for the score, median {statistics.median(waits):.2f} s, "
                f"longest {max(waits):.2f} s over {len(waits)} scenarios"
            )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
