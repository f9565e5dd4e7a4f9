"""The annotated example in docs/scenarios.md is a real file that validates, and its checks
tell a broken sandbox from a recovered one on every engine."""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from sandbox.cli import main
from tests.conftest import POSTGRES_ENV

ROOT = Path(__file__).resolve().parent.parent
GUIDE = ROOT / "docs" / "scenarios.md"
EXAMPLE = ROOT / "docs" / "examples" / "wiped-sessions.toml"


def shown_example() -> bytes:
    """The ```toml block under the guide's "A full example, annotated" heading, as bytes."""
    guide = GUIDE.read_bytes()
    section = guide[guide.index(b"## A full example, annotated\n") :]
    found = re.search(rb"\n```toml\n(.*?\n)```\n", section, re.DOTALL)
    assert found is not None, "no ```toml block under the example's heading"
    return found.group(1)


def test_the_guide_shows_the_example_file_byte_for_byte() -> None:
    assert shown_example() == EXAMPLE.read_bytes()


def test_the_example_validates(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["validate", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out == "1 scenario file valid\n"


def play(capsys: pytest.CaptureFixture[str], engine: str, *extra: str) -> dict[str, Any]:
    argv = ["run", str(EXAMPLE), "--engine", engine, "--format", "json", *extra]
    if engine == "postgres":
        argv += ["--url", os.environ[POSTGRES_ENV]]
    code = main(argv)
    report: dict[str, Any] = json.loads(capsys.readouterr().out)
    # Exit 0 without --solution means every breakage step did what the file declares.
    assert code == 0, report["steps"]
    assert all(step["passed"] for step in report["steps"])
    return report


def test_without_the_solution_every_check_fails(
    capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    report = play(capsys, engine)
    checks = {check["name"]: check for check in report["checks"]}
    assert {name: check["passed"] for name, check in checks.items()} == {
        "session A sees both login sessions again": False,
        "undone with ROLLBACK, before anything was committed": False,
        "the DELETE was rolled back, never committed first": False,
    }
    assert checks["session A sees both login sessions again"]["actual"] == [[0]]
    assert report["recovered"] is False


def test_with_the_solution_every_check_passes(
    capsys: pytest.CaptureFixture[str], engine: str
) -> None:
    report = play(capsys, engine, "--solution")
    assert [check["passed"] for check in report["checks"]] == [True, True, True]
    assert report["recovered"] is True and report["passed"] is True
