"""Shared fixtures: real SQLite files and the real PostgreSQL server, nothing mocked.

PostgreSQL tests use the server named by DBSANDBOX_TEST_POSTGRES_URL. Without it they skip
with a reason saying how to enable them, summarised in one line for all of them; with
DBSANDBOX_REQUIRE_POSTGRES=1 (CI) a missing or unreachable server fails them instead.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator
from pathlib import Path
from typing import NoReturn

import psycopg2
import pytest

from sandbox.runner import RunOptions, RunResult, parse_script, run_steps
from sandbox.statements import Dialect
from sandbox.targets import Target, TargetOptions, open_target

POSTGRES_ENV = "DBSANDBOX_TEST_POSTGRES_URL"
REQUIRE_ENV = "DBSANDBOX_REQUIRE_POSTGRES"
ENABLE_HINT = (
    f"set {POSTGRES_ENV}=postgresql://postgres@127.0.0.1:5432/postgres to run the PostgreSQL tests"
)


# Every PostgreSQL test skips for the same reason when no server is configured: the summary
# folds those skips into one line (with their count) instead of one line per test.
SKIP_PREFIX = "PostgreSQL tests skipped: "


def _postgres_problem(url: str | None) -> str | None:
    if not url:
        return f"no PostgreSQL server configured: {ENABLE_HINT}"
    try:
        psycopg2.connect(url, connect_timeout=3).close()
    except psycopg2.Error as exc:
        first = (str(exc).strip().splitlines() or ["unreachable"])[0]
        return f"PostgreSQL server in {POSTGRES_ENV} is unreachable ({first}); {ENABLE_HINT}"
    return None


@pytest.fixture(scope="session", autouse=True)
def private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """Sandbox records go to a directory of the test run's own (subprocesses inherit it), so
    `dbsandbox clean` in a test sees this run's sandboxes only, never the developer's."""
    from sandbox.ownership import STATE_VARIABLE

    previous = os.environ.get(STATE_VARIABLE)
    state = tmp_path_factory.mktemp("state")
    os.environ[STATE_VARIABLE] = str(state)
    yield state
    if previous is None:
        os.environ.pop(STATE_VARIABLE, None)
    else:
        os.environ[STATE_VARIABLE] = previous


@pytest.fixture(autouse=True)
def private_progress(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Every test keeps progress in a file of its own (subprocesses inherit it): no test ever
    writes the learner's real progress, or sees another test's."""
    from sandbox.progress import PROGRESS_ENV

    path = tmp_path / "progress" / "progress.json"
    monkeypatch.setenv(PROGRESS_ENV, str(path))
    return path


@pytest.fixture(scope="session")
def postgres_url() -> str:
    url = os.environ.get(POSTGRES_ENV)
    problem = _postgres_problem(url)
    if problem:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but {problem}", pytrace=False)
        _skip_without_server(problem)
    assert url is not None
    return url


def _skip_without_server(problem: str) -> NoReturn:
    pytest.skip(SKIP_PREFIX + problem)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item,
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report: pytest.TestReport = yield
    longrepr = report.longrepr
    if report.skipped and isinstance(longrepr, tuple):
        reason = longrepr[2].removeprefix("Skipped: ")
        if reason.startswith(SKIP_PREFIX):
            # pytest folds skips that share a location and reason; each test's own location
            # would keep them apart.
            report.longrepr = (__file__, _skip_without_server.__code__.co_firstlineno, reason)
    return report


@pytest.fixture(params=["sqlite", "postgres"])
def engine(request: pytest.FixtureRequest) -> str:
    """Run the test once per engine; the PostgreSQL run needs the test server."""
    name: str = request.param
    if name == "postgres":
        request.getfixturevalue("postgres_url")
    return name


def options_for(engine: str, **overrides: object) -> TargetOptions:
    url = os.environ.get(POSTGRES_ENV) if engine == "postgres" else None
    return TargetOptions(engine=engine, url=url, **overrides)  # type: ignore[arg-type]


@pytest.fixture
def target(engine: str) -> Iterator[Target]:
    with open_target(options_for(engine)) as opened:
        yield opened


def run_script(
    engine: str,
    script: str,
    *,
    busy_timeout_ms: int = 200,
    from_file: Path | None = None,
    **run_options: float,
) -> RunResult:
    """Run a multi-session script in a fresh sandbox, as `dbsandbox run` does."""
    dialect: Dialect = "postgres" if engine == "postgres" else "sqlite"
    steps = parse_script(script, dialect)
    options = options_for(engine, busy_timeout_ms=busy_timeout_ms, from_file=from_file)
    with open_target(options) as opened:
        return run_steps(steps, opened, RunOptions(**run_options))  # type: ignore[arg-type]


def without_role_warning(err: str) -> str:
    """Standard error without the warning every run prints when the URL's role is a superuser
    (as the test server's usually is): what is left is what the test is about."""
    lines = err.splitlines(keepends=True)
    return "".join(line for line in lines if not line.startswith("warning: role "))
