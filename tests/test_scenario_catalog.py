"""Every scenario in the catalog, on every engine it declares, for real.

The breakage must behave exactly as the file declares; without the reference solution every
check fails (a check that cannot fail is a defect), and with it every check passes, on the
dataset shown and on every hidden variant.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from sandbox.cli import main
from sandbox.lifecycle import sandbox_closed_at_end
from sandbox.scenario.catalog import catalog_files
from sandbox.scenario.loader import load
from sandbox.scenario.player import ScenarioRun, play
from sandbox.scenario.prove import prove
from sandbox.targets import open_target
from tests.conftest import options_for

CASES = [
    pytest.param(path, engine, id=f"{path.stem}-{engine}")
    for path in catalog_files()
    for engine in load(path).engines
]


def played(path: Path, engine: str, solution: bool, request: pytest.FixtureRequest) -> ScenarioRun:
    if engine == "postgres":
        request.getfixturevalue("postgres_url")
    with open_target(options_for(engine)) as target:
        return play(load(path), target, solution=solution)


def mismatches(run: ScenarioRun) -> list[str]:
    return [
        f"{s.phase} {s.step.sql.on(run.engine)!r}: {m}" for s in run.steps for m in s.mismatches
    ]


def test_the_catalog_has_the_fifteen_scenarios() -> None:
    ids = {p.stem for p in catalog_files()}
    assert ids >= {
        "missing-where", "skipped-commit", "failed-transfer", "lost-update", "duplicate-charge",
        "same-email-signups", "schema-drift", "null-comparison", "missing-index", "deadlock",
        "cascade-surprise", "savepoint-recovery", "dropped-column", "aborted-transaction",
        "committed-delete",
    }  # fmt: skip


@pytest.mark.parametrize(("path", "engine"), CASES)
def test_the_scenario_is_proven(path: Path, engine: str, request: pytest.FixtureRequest) -> None:
    """`validate --prove`, for every catalog scenario on every engine it declares: the breakage
    does what its steps declare; every check fails on the broken state; the reference solution
    passes every check on the dataset shown and on every hidden variant; every process check
    rejects its counter-example."""
    if engine == "postgres":
        request.getfixturevalue("postgres_url")
    scenario = load(path)
    proof = prove(scenario, engine, lambda: sandbox_closed_at_end(open_target(options_for(engine))))
    assert proof.failures == [], "\n".join(proof.lines)


@pytest.mark.parametrize("path", catalog_files(), ids=lambda path: path.stem)
def test_the_scenario_grades_its_process_and_hides_a_variant(path: Path) -> None:
    """Issue 13's bar for every catalog scenario: a process check (with its counter-example),
    at least one hidden variant, and, for a concurrency scenario, the anomaly it names."""
    scenario = load(path)
    assert scenario.variants, "no hidden variant: a hard-coded answer would pass"
    assert any(check.kind == "process" for check in scenario.checks), "no process check"
    if "concurrency" in scenario.tags:
        assert scenario.anomaly is not None


def test_run_scenario_json_and_exit_codes(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", "missing-where", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert report["scenario"] == "missing-where"
    assert report["solution"] is False
    assert {"statements", "timeline", "steps", "checks"} <= set(report)
    step = report["steps"][1]
    assert step["expected"] == {"rowcount": 4, "findings": ["delete-without-where"]}
    assert step["actual"]["rowcount"] == 4 and step["passed"] is True
    check = report["checks"][0]
    assert set(check) == {"name", "kind", "passed", "expected", "actual"}
    assert check["passed"] is False and check["kind"] == "data"
    recovery = report["checks"][-1]
    assert (recovery["kind"], recovery["expected"], recovery["actual"]) == (
        "recovery",
        ["rollback"],
        [],
    )
    # The DELETE is not committed: what everyone else sees has not changed yet.
    assert report["diff_since_start"]["summary"] == "no changes"

    assert main(["run", "missing-where", "--solution", "--format", "json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert all(c["passed"] for c in report["checks"])
    assert report["checks"][-1]["actual"] == ["rollback", "repair"]
    assert report["diff_since_start"]["summary"] == "login_sessions: 1 row removed"


def test_a_step_that_does_not_behave_as_declared_fails_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    source = next(p for p in catalog_files() if p.stem == "missing-where")
    wrong = tmp_path / "missing-where.toml"
    wrong.write_text(source.read_text().replace("signed_in = 4", "signed_in = 5"), encoding="utf-8")
    assert main(["run", str(wrong), "--solution"]) == 1
    out = capsys.readouterr().out
    assert "expected rowcount: expected 5, got 4" in out


def test_scenarios_listing(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["scenarios", "--format", "json"]) == 0
    listing = json.loads(capsys.readouterr().out)
    assert {entry["id"] for entry in listing} == {p.stem for p in catalog_files()}
    for entry in listing:
        assert set(entry) >= {"id", "title", "difficulty", "engines", "tags"}
    assert main(["scenarios"]) == 0
    assert "missing-where" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["run", "no-such-scenario.toml"], "no scenario 'no-such-scenario.toml'"),
        (["run", "missing-where", "--engine", "oracle"], "invalid choice"),
    ],
)
def test_bad_scenario_input_exits_two(
    args: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as stopped:
        raise SystemExit(main(args))
    assert stopped.value.code == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


NULLS = """id = "nulls"
title = "NULL in expectations"
summary = "s"
difficulty = "beginner"
engines = ["sqlite", "postgres"]
story = "s"
task = "t"
hints = ["h"]

[setup]
sql = '''
CREATE TABLE t (id INTEGER PRIMARY KEY, note TEXT);
INSERT INTO t VALUES (1, NULL), (2, 'x');
'''

[[breakage]]
engines = ["sqlite"]
sql = "PRAGMA foreign_keys = ON"

[[breakage]]
sql = "SELECT id, note FROM t ORDER BY id"
rows = [[1, { null = true }], [2, "x"]]
tx_after = "idle"

[[solution]]
sql = "UPDATE t SET note = 'y' WHERE note IS NULL"
rowcount = 1

[[checks]]
name = "no NULL notes left"
sql = "SELECT id, note FROM t WHERE id = 1"
expect = [[1, "y"]]
"""


def test_null_expectations_and_one_engine_steps(engine: str, tmp_path: Path) -> None:
    path = tmp_path / "nulls.toml"
    path.write_text(NULLS, encoding="utf-8")
    scenario = load(path)
    with open_target(options_for(engine)) as target:
        broken = play(scenario, target)
    ran = [s.sent for s in broken.steps]
    assert ran[0].startswith("PRAGMA") == (engine == "sqlite")
    assert mismatches(broken) == []
    assert not broken.recovered
    wrong = tmp_path / "wrong" / "nulls.toml"
    wrong.parent.mkdir()
    wrong.write_text(NULLS.replace("[[1, { null = true }], [2", '[[1, ""], [2'), encoding="utf-8")
    with open_target(options_for(engine)) as target:
        mismatched = play(load(wrong), target)
    assert mismatches(mismatched), "an empty string must not match NULL"


LOCKED = """id = "locked"
title = "A check behind a lock"
summary = "s"
difficulty = "beginner"
engines = ["postgres"]
engine_note = "SQLite readers never wait in WAL mode."
story = "s"
task = "t"
hints = ["h"]

[[sessions]]
name = "A"
[[sessions]]
name = "B"

[setup]
sql = "CREATE TABLE t (id INTEGER PRIMARY KEY)"

[[breakage]]
sql = "BEGIN"

[[breakage]]
sql = "ALTER TABLE t ADD COLUMN note TEXT"

[[solution]]
sql = "COMMIT"

[[checks]]
name = "a fresh connection can read t"
sql = "SELECT count(*) FROM t"
expect = [[0]]

[[checks]]
name = "session B can read t"
session = "B"
sql = "SELECT count(*) FROM t"
expect = [[0]]
"""


def test_a_check_behind_a_learners_lock_fails_instead_of_hanging(
    postgres_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from sandbox.scenario import player

    monkeypatch.setattr(player, "CHECK_TIMEOUT_S", 0.5)
    path = tmp_path / "locked.toml"
    path.write_text(LOCKED, encoding="utf-8")
    with open_target(options_for("postgres")) as target:
        run = play(load(path), target)
    assert mismatches(run) == []
    fresh, in_b = run.checks
    assert not fresh.passed and fresh.actual["error"]["code"] == "57014"
    assert not in_b.passed and in_b.actual["error"]["code"] == "57014"
    with open_target(options_for("postgres")) as target:
        assert play(load(path), target, solution=True).recovered
