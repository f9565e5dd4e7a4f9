"""Hermitage's isolation cases, replayed through the real `dbsandbox run` (scripts/hermitage.py).

The corpus is not ours and not in the repository: it is read in place from the shared corpora
folder (DBSANDBOX_CORPORA, else `shared/corpora` beside the repository clone). Without it the
module skips and says where it looked. Each case is one test (id = the case's name): its
script runs through the installed `dbsandbox` console script as a subprocess, and the harness
compares every step of the JSON report with the case. The PostgreSQL cases need the test
server (the `postgres_url` fixture: they skip without one, and fail under
DBSANDBOX_REQUIRE_POSTGRES=1).

The last tests check the harness itself: a case with a wrong expectation must fail, so a PASS
means dbsandbox agreed with the corpus, not that the comparison looked away.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from scripts import hermitage

HERMITAGE = hermitage.default_corpora() / "hermitage"
if not HERMITAGE.is_dir():
    pytest.skip(
        f"no Hermitage corpus at {HERMITAGE}: set {hermitage.CORPORA_ENV} to the shared "
        "corpora folder to replay it",
        allow_module_level=True,
    )

CASES = hermitage.load_cases(HERMITAGE)


@pytest.fixture(scope="module")
def dbsandbox() -> Path:
    path = hermitage.default_dbsandbox()
    if not path.is_file():
        pytest.fail(f"the dbsandbox console script is not installed beside {path.parent}")
    return path


def url_for(case: hermitage.Case, request: pytest.FixtureRequest) -> str | None:
    if case.engine != "postgres":
        return None
    url: str = request.getfixturevalue("postgres_url")
    return url


def report_of(result: hermitage.Replay) -> str:
    lines = [f"{result.case.name} ({result.case.file}, {result.elapsed_s:.1f} s):"]
    lines += [f"  {p}" for p in result.problems]
    if result.report is not None:
        lines += ["steps as dbsandbox reported them:", *hermitage.trace(result)]
    return "\n".join(lines)


@pytest.mark.parametrize(
    "case",
    [
        pytest.param(c, id=c.name, marks=[pytest.mark.postgres] if c.engine == "postgres" else [])
        for c in CASES
    ],
)
def test_case(case: hermitage.Case, dbsandbox: Path, request: pytest.FixtureRequest) -> None:
    result = hermitage.replay(case, dbsandbox, url_for(case, request))
    if not result.passed:
        pytest.fail(report_of(result), pytrace=False)


def test_every_case_is_collected() -> None:
    """71 cases: 20 + 19 PostgreSQL, 32 SQLite (the corpus README's counts)."""
    counts: dict[str, int] = {}
    for case in CASES:
        counts[case.file] = counts.get(case.file, 0) + 1
    assert counts == {"postgres.json": 20, "postgres_derived.json": 19, "sqlite.json": 32}
    assert len({c.name for c in CASES}) == len(CASES)


# --- the harness must see a wrong expectation ------------------------------------------


def doctored(case: hermitage.Case, edit: Callable[[dict[str, Any]], None]) -> hermitage.Case:
    data = copy.deepcopy(case.data)
    edit(data)
    return hermitage.Case(case.name, case.file, case.engine, data)


def first_step(case: hermitage.Case, has: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    return next(step for step in case.steps if has(step))


def problems_of(
    case: hermitage.Case, result: hermitage.Replay, edit: Callable[[dict[str, Any]], None]
) -> list[str]:
    assert result.report is not None, report_of(result)
    return hermitage.compare(doctored(case, edit), result.script, result.report)


def test_harness_fails_wrong_rows_and_final_state(dbsandbox: Path) -> None:
    case = next(c for c in CASES if c.engine == "sqlite")
    result = hermitage.replay(case, dbsandbox)
    reads = first_step(case, lambda s: "rows" in s["expect"])

    def wrong_rows(data: dict[str, Any]) -> None:
        step = next(s for s in data["steps"] if s["id"] == reads["id"])
        step["expect"]["rows"] = [[1, -1]]

    def wrong_final(data: dict[str, Any]) -> None:
        data["final_state"] = [[1, -1]]

    assert any(
        p.startswith(f"{reads['id']}: expected rows") for p in problems_of(case, result, wrong_rows)
    )
    assert any(p.startswith("final state") for p in problems_of(case, result, wrong_final))


@pytest.mark.postgres
def test_harness_fails_wrong_blocker_release_and_commit_tag(
    dbsandbox: Path, postgres_url: str
) -> None:
    blocking = next(
        c for c in CASES if c.engine == "postgres" and any("unblocks" in s for s in c.steps)
    )
    result = hermitage.replay(blocking, dbsandbox, postgres_url)
    waits = first_step(blocking, lambda s: bool(s["expect"].get("blocks")))
    releases = first_step(blocking, lambda s: "unblocks" in s)

    def other_blocker(data: dict[str, Any]) -> None:
        step = next(s for s in data["steps"] if s["id"] == waits["id"])
        step["expect"]["by"] = ["T9"]

    def other_release(data: dict[str, Any]) -> None:
        step = next(s for s in data["steps"] if s["id"] == releases["id"])
        step["unblocks"]["expect"] = {"error": "40P01"}

    def no_release(data: dict[str, Any]) -> None:
        step = next(s for s in data["steps"] if s["id"] == releases["id"])
        del step["unblocks"]

    assert any("blocked by" in p for p in problems_of(blocking, result, other_blocker))
    target = releases["unblocks"]["step"]
    assert any(
        p.startswith(f"{target} (released by") for p in problems_of(blocking, result, other_release)
    )
    assert any(
        "no step of the case declares" in p for p in problems_of(blocking, result, no_release)
    )

    # A COMMIT that PostgreSQL answers with ROLLBACK passes only where the case names the tag.
    rolled_back = next(
        c
        for c in CASES
        if c.engine == "postgres" and any(s["expect"].get("tag") == "ROLLBACK" for s in c.steps)
    )
    result = hermitage.replay(rolled_back, dbsandbox, postgres_url)
    commit = first_step(rolled_back, lambda s: s["expect"].get("tag") == "ROLLBACK")

    def bare_commit(data: dict[str, Any]) -> None:
        step = next(s for s in data["steps"] if s["id"] == commit["id"])
        del step["expect"]["tag"]

    assert any(
        p == f"{commit['id']}: expected tag 'COMMIT', got 'ROLLBACK'"
        for p in problems_of(rolled_back, result, bare_commit)
    )
