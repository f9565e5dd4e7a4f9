"""Without a PostgreSQL server, the run's summary says so once, with the number of tests it
skipped, and still shows every other skip reason; DBSANDBOX_REQUIRE_POSTGRES=1 fails them."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.conftest import POSTGRES_ENV, REQUIRE_ENV

TESTS = """
import pytest


@pytest.mark.parametrize("n", range(3))
def test_needs_postgres(postgres_url: str, n: int) -> None:
    assert postgres_url


def test_needs_postgres_too(engine: str) -> None:
    assert engine == "sqlite"


def test_skips_for_its_own_reason() -> None:
    pytest.skip("the server has no extension 'seg'")
"""


def run_suite(tmp_path: Path, **env: str) -> subprocess.CompletedProcess[str]:
    """pytest on a small suite using this project's conftest, in a folder of its own."""
    shutil.copy(Path(__file__).with_name("conftest.py"), tmp_path / "conftest.py")
    (tmp_path / "test_sample.py").write_text(TESTS)
    environ = {k: v for k, v in os.environ.items() if k not in (POSTGRES_ENV, REQUIRE_ENV)}
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-ra", "-p", "no:cacheprovider", str(tmp_path)],
        cwd=tmp_path,
        env={**environ, **env},
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_postgres_skips_are_one_line_and_other_skips_still_show(tmp_path: Path) -> None:
    done = run_suite(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    mentions = [line for line in done.stdout.splitlines() if POSTGRES_ENV in line]
    assert len(mentions) == 1, done.stdout
    assert re.match(r"SKIPPED \[4\] conftest\.py:\d+: PostgreSQL tests skipped: ", mentions[0])
    assert "no PostgreSQL server configured" in mentions[0]
    assert "the server has no extension 'seg'" in done.stdout
    assert "1 passed, 5 skipped in" in done.stdout  # the count of skips is not folded away


def test_required_postgres_fails_instead_of_skipping(tmp_path: Path) -> None:
    done = run_suite(tmp_path, **{REQUIRE_ENV: "1"})
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 passed, 1 skipped, 4 errors in" in done.stdout, done.stdout
    assert f"{REQUIRE_ENV}=1 but no PostgreSQL server configured" in done.stdout
    assert "PostgreSQL tests skipped" not in done.stdout
