"""Grading that can't be gamed: process checks, hidden variants, the score, and the teacher's
kit (new, validate --prove, grade, --scenarios), on real SQLite files and the real server."""

from __future__ import annotations

import csv
import json
import textwrap
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from sandbox.cli import main
from sandbox.lifecycle import sandbox_closed_at_end
from sandbox.scenario.anomaly import story
from sandbox.scenario.catalog import find
from sandbox.scenario.grading import Attempt, Effort, grade, score
from sandbox.scenario.loader import load, on_variant, validate
from sandbox.scenario.player import Replayed, play
from sandbox.targets import TargetOptions, open_target

ENGINES = ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]


@pytest.fixture
def opener(request: pytest.FixtureRequest) -> Callable[[str], Callable[[], Any]]:
    def make(engine: str) -> Callable[[], Any]:
        url = request.getfixturevalue("postgres_url") if engine == "postgres" else None
        options = TargetOptions(engine=engine, url=url)
        return lambda: sandbox_closed_at_end(open_target(options))

    return make


def attempt(*steps: tuple[str, str]) -> Attempt:
    return Attempt(tuple(Replayed(session, sql) for session, sql in steps))


def failing(grade_: Any) -> list[tuple[str | None, str]]:
    return [
        (run.variant, check.check.name)
        for run in [grade_.shown, *grade_.variants]
        for check in run.checks
        if not check.passed
    ]


# ---------------------------------------------------------------------------------- grading


@pytest.mark.parametrize("engine", ENGINES)
def test_the_blind_overwrite_fails_its_process_check_and_the_variant(
    engine: str, opener: Callable[[str], Callable[[], Any]]
) -> None:
    """lost-update used to say "Recovered" for the overwrite its task forbids."""
    scenario = find("lost-update")
    right = grade(scenario, attempt(("A", "UPDATE cards SET balance = balance + 10 WHERE id = 1")),
                  opener(engine), engine=engine)  # fmt: skip
    assert failing(right) == [] and right.score.recovered and right.score.total == 100
    typed = grade(scenario, attempt(("A", "UPDATE cards SET balance = 130 WHERE id = 1")),
                  opener(engine), engine=engine)  # fmt: skip
    failed = failing(typed)
    # Right on the dataset shown, except for how it was done...
    assert (None, "the fix adds to the balance: it never writes a total worked out earlier") in (
        failed
    )
    assert not any(variant is None and "holds" in name for variant, name in failed)
    # ...and wrong on the hidden one, where the card did not open at 100.
    assert any(variant is not None and "holds 280" in name for variant, name in failed)
    assert not typed.score.recovered
    assert typed.score.parts["variants"]["passed"] == 0
    assert typed.score.total < right.score.total


def test_a_locking_read_or_a_version_check_is_no_blind_write(
    opener: Callable[[str], Callable[[], Any]],
) -> None:
    """The same literal write is safe under BEGIN IMMEDIATE (SQLite holds the write lock from
    the read on) and unsafe outside a transaction."""
    scenario = find("lost-update")
    locked = grade(
        scenario,
        attempt(
            ("A", "BEGIN IMMEDIATE"),
            ("A", "SELECT balance FROM cards WHERE id = 1"),
            ("A", "UPDATE cards SET balance = 130 WHERE id = 1"),
            ("A", "COMMIT"),
        ),
        opener("sqlite"),
    )
    names = {name for _variant, name in failing(locked)}
    assert not any("worked out earlier" in name for name in names)
    assert locked.score.parts["process"]["passed"] == 1


def test_the_score_takes_off_hints_failed_checks_and_time() -> None:
    """The formula as documented: 100 for a clean recovery, less the costs, never below 0."""
    scenario = find("lost-update")
    with sandbox_closed_at_end(open_target(TargetOptions())) as target:
        run = play(scenario, target, solution=True)
    from sandbox.scenario.grading import DatasetRun

    shown = DatasetRun(None, run.checks, run.diff)
    clean = score(scenario, shown, [], Effort(0, 0, 1.0), 0)
    assert clean.total == 100 and clean.recovered
    costly = score(scenario, shown, [], Effort(2, 1, scenario.expected_minutes + 3.5), 0)
    assert costly.total == 100 - 2 * 4 - 3 - 3
    assert costly.parts["hints"] == {"points": -8, "used": 2}
    capped = score(scenario, shown, [], Effort(10, 10, 500.0), 0)
    assert capped.total == 100 - 12 - 9 - 10


def test_a_variant_is_built_from_its_values_and_extra_setup() -> None:
    scenario = find("lost-update")
    variant = on_variant(scenario, scenario.variants[0].name)
    assert variant.dataset == scenario.variants[0].name
    setup = variant.setup.on("sqlite")
    assert "250" in setup and "Otto" in setup
    assert "100" not in scenario.breakage[4].sql.on("sqlite")


def test_placeholders_and_variants_are_validated(tmp_path: Path) -> None:
    text = (find("lost-update").path or Path()).read_text()
    broken = text.replace("{{final}}", "{{finale}}").replace(
        "vars = { opening = 250", "vars = { opening = '250', other = 1"
    )
    path = tmp_path / "lost-update.toml"
    path.write_text(broken)
    said = "\n".join(str(p) for p in validate(path))
    assert "{{finale}} is used but not declared" in said
    assert "'other' is not declared in [vars]" in said
    assert "opening must be a number, like its [vars] value" in said


def test_a_process_check_without_a_counter_example_is_invalid(tmp_path: Path) -> None:
    text = (find("lost-update").path or Path()).read_text()
    cut = text[: text.index("counter = [{")]
    path = tmp_path / "lost-update.toml"
    path.write_text(cut)
    said = "\n".join(str(p) for p in validate(path))
    assert "counter: missing" in said


def test_the_anomaly_is_told_from_the_run() -> None:
    scenario = find("lost-update")
    with sandbox_closed_at_end(open_target(TargetOptions())) as target:
        run = play(scenario, target)
    lines = story("lost update", run.executions)
    assert lines[0].startswith("Lost update: two sessions read the same value")
    told = "\n".join(lines)
    assert "A read balance = 100" in told and "B read balance = 100" in told
    assert "B wrote cards" in told and "over A's write" in told


# ---------------------------------------------------------------------------------- the CLI


def test_new_writes_a_skeleton_that_proves(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["new", "price-fix", "--dir", str(tmp_path)]) == 0
    path = tmp_path / "price-fix.toml"
    assert main(["validate", "--prove", "--engine", "sqlite", str(path)]) == 0
    out = capsys.readouterr().out
    assert "price-fix (sqlite): proven" in out and "rejects its counter-example" in out
    # Never over a file that is there, and an id is checked.
    assert main(["new", "price-fix", "--dir", str(tmp_path)]) == 2
    assert main(["new", "Bad Id", "--dir", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "already there" in err and "is not a scenario id" in err and "Traceback" not in err


def test_prove_says_what_a_weak_scenario_lacks(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A process check that accepts its counter-example, and a check that passes before any
    fix, are each named."""
    main(["new", "weak", "--dir", str(tmp_path)])
    path = tmp_path / "weak.toml"
    text = path.read_text()
    # The counter-example now runs in one transaction: the check accepts it.
    text = text.replace("counter = [\n", 'counter = [\n  { session = "A", sql = "BEGIN" },\n')
    text = text.replace(
        'WHERE id = 3" },\n]', 'WHERE id = 3" },\n  { session = "A", sql = "COMMIT" },\n]'
    )
    text += (
        '\n[[checks]]\nname = "there are products"\n'
        'sql = "SELECT count(*) > 0 FROM products"\nexpect = [[1]]\n'
    )
    path.write_text(text)
    assert main(["validate", "--prove", "--engine", "sqlite", str(path)]) == 1
    out = capsys.readouterr().out
    assert "weak (sqlite): NOT proven" in out
    assert "accepts its counter-example: it forbids nothing" in out
    assert "these pass before any fix and prove nothing: ['there are products']" in out


@pytest.mark.parametrize("engine", ENGINES)
def test_grade_an_export_and_a_handwritten_script(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str], request: pytest.FixtureRequest
) -> None:
    server = ["--url", request.getfixturevalue("postgres_url")] if engine == "postgres" else []
    exports = tmp_path / "exports"
    exports.mkdir()
    # The reference solution's own session, exported as the app and `run` do.
    assert main(["run", "lost-update", "--solution", "--engine", engine, *server,
                 "--export", str(exports)]) == 0  # fmt: skip
    capsys.readouterr()
    json_export = next(exports.glob("*.json"))
    result = tmp_path / "result.json"
    code = main(["grade", "lost-update", str(json_export), "--engine", engine, *server,
                 "--result", str(result)])  # fmt: skip
    assert code == 0
    verdict = json.loads(result.read_text())
    assert verdict["recovered"] is True and verdict["score"] == 100
    assert verdict["engines"][engine]["score"]["parts"]["variants"]["passed"] == 1
    for script in (next(exports.glob("*.sql")),):
        assert main(["grade", "lost-update", str(script), "--engine", engine, *server]) == 0
    typed = tmp_path / "typed.sql"
    typed.write_text("UPDATE cards SET balance = 130 WHERE id = 1;\n")
    capsys.readouterr()
    code = main(["grade", "lost-update", str(typed), "--engine", engine, *server,
                 "--format", "json"])  # fmt: skip
    assert code == 1
    document = json.loads(capsys.readouterr().out)
    assert document["recovered"] is False and document["score"] < 100


def test_grade_a_class_folder_into_one_csv(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    klass = tmp_path / "class"
    (klass / "ann").mkdir(parents=True)
    (klass / "bob").mkdir()
    (klass / "ann" / "lost-update.sql").write_text(
        "UPDATE cards SET balance = balance + 10 WHERE id = 1;\n"
    )
    (klass / "bob" / "lost-update.sql").write_text("UPDATE cards SET balance = 130 WHERE id = 1;\n")
    (klass / "cem.json").write_text("{not json")
    table = tmp_path / "grades.csv"
    code = main(["grade", "--batch", str(klass), "--csv", str(table), "--engine", "sqlite"])
    assert code == 1  # cem's file could not be graded; the others were
    rows = list(csv.DictReader(table.open()))
    by_learner = {row["learner"]: row for row in rows}
    assert by_learner["ann"]["score"] == "100" and by_learner["ann"]["recovered"] == "yes"
    assert by_learner["bob"]["recovered"] == "no" and int(by_learner["bob"]["score"]) < 100
    assert by_learner["bob"]["variants"] == "0/1"
    assert by_learner["cem"]["score"] == "" and "not valid JSON" in by_learner["cem"]["error"]
    err = capsys.readouterr().err
    assert "cem: not graded" in err and "Traceback" not in err


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["grade", "lost-update"], "grade needs SCENARIO and SUBMISSION"),
        (["grade", "lost-update", "/nonexistent.sql"], "no such file"),
        (["grade", "lost-update", "x.sql", "--csv", "g.csv"], "--csv goes with --batch"),
        (["grade", "--batch", "/nonexistent"], "--batch DIR needs --csv"),
        (["grade", "no-such-scenario", "x.sql"], "no scenario 'no-such-scenario'"),
        (["play", "--scenarios", "/nonexistent"], "--scenarios /nonexistent: no such folder"),
    ],
)
def test_bad_input_is_one_line(
    args: list[str], said: str, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.chdir(tmp_path)
    (tmp_path / "x.sql").write_text("SELECT 1;\n")
    assert main(args) == 2
    err = capsys.readouterr().err
    assert said in err and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_an_export_of_another_scenario_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "x.json"
    export.write_text(json.dumps({"scenario": "missing-where", "statements": []}))
    assert main(["grade", "lost-update", str(export), "--engine", "sqlite"]) == 2
    assert "is of scenario 'missing-where', not 'lost-update'" in capsys.readouterr().err


def test_a_class_pack_sits_beside_the_catalog(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    pack = tmp_path / "pack"
    pack.mkdir()
    main(["new", "class-one", "--dir", str(pack)])
    capsys.readouterr()
    assert main(["scenarios", "--scenarios", str(pack), "--format", "json"]) == 0
    ids = [entry["id"] for entry in json.loads(capsys.readouterr().out)]
    assert "class-one" in ids and "lost-update" in ids
    assert main(["run", "class-one", "--solution", "--scenarios", str(pack)]) == 0
    capsys.readouterr()
    # Without the option the pack is not there; the environment variable adds it too.
    assert main(["run", "class-one"]) == 2
    monkeypatch.setenv("DBSANDBOX_SCENARIOS", str(pack))
    assert main(["run", "class-one", "--solution"]) == 0
    assert main(["scenarios"]) == 0
    assert "lost-update" in capsys.readouterr().out


def test_skeleton_text_validates_as_written(tmp_path: Path) -> None:
    main(["new", "fresh", "--dir", str(tmp_path)])
    assert validate(tmp_path / "fresh.toml") == []
    scenario = load(tmp_path / "fresh.toml")
    assert scenario.variants and scenario.checks[-1].kind == "process"
    assert textwrap.dedent(scenario.task).strip()


def _process_verdicts(grade_: Any) -> dict[str, bool]:
    return {c.check.name: c.passed for c in grade_.shown.checks if c.check.kind == "process"}


@pytest.mark.postgres
def test_an_isolated_check_follows_the_transaction_and_its_level(
    opener: Callable[[str], Callable[[], Any]],
) -> None:
    """read-skew asks for both reads and the audit's writes in one REPEATABLE READ transaction.
    The level may come from BEGIN or from the session's default; reads at READ COMMITTED, or
    writes left outside the reading transaction, do not count."""
    scenario = find("read-skew")
    isolated = next(c.name for c in scenario.checks if c.process and c.process.kind == "isolated")
    reads = [
        ("A", "SELECT sum(balance) FROM accounts WHERE branch = 'north'"),
        ("A", "SELECT sum(balance) FROM accounts WHERE branch = 'south'"),
    ]
    writes = [
        ("A", "INSERT INTO audit_runs VALUES (2, '2026-12-07 00:20', 3000, 'ok')"),
        ("A", "UPDATE audit_runs SET status = 'void' WHERE id = 1"),
    ]
    by_default = attempt(
        ("A", "SET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ"),
        ("A", "BEGIN"), *reads, *writes, ("A", "COMMIT"),
    )  # fmt: skip
    assert _process_verdicts(grade(scenario, by_default, opener("postgres")))[isolated]
    read_committed = attempt(("A", "BEGIN"), *reads, *writes, ("A", "COMMIT"))
    assert not _process_verdicts(grade(scenario, read_committed, opener("postgres")))[isolated]
    apart = attempt(
        ("A", "BEGIN ISOLATION LEVEL REPEATABLE READ"), *reads, ("A", "COMMIT"),
        ("A", "BEGIN"), *writes, ("A", "COMMIT"),
    )  # fmt: skip
    assert not _process_verdicts(grade(scenario, apart, opener("postgres")))[isolated]


def test_prove_refuses_a_solution_that_needs_a_hidden_value(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A learner types what the dataset shown tells them: a reference solution that passes a
    variant only with that variant's own values would fail every honest learner there."""
    main(["new", "peeking", "--dir", str(tmp_path)])
    path = tmp_path / "peeking.toml"
    text = path.read_text().replace(
        "vars = { products = 5 }", "vars = { products = 5, new_price = 20 }"
    )
    text = text.replace(
        '[[solution]]\nsession = "A"\nsql = "COMMIT"',
        '[[solution]]\nsession = "A"\n'
        'sql = "UPDATE products SET price = {{new_price}} WHERE id = 2"\n\n'
        '[[solution]]\nsession = "A"\nsql = "COMMIT"',
    )
    path.write_text(text)
    assert main(["validate", "--prove", "--engine", "sqlite", str(path)]) == 1
    out = capsys.readouterr().out
    assert "the reference solution sends 'UPDATE products SET price = 20 WHERE id = 2'" in out
    assert "which no learner can see" in out


@pytest.mark.postgres
def test_require_holds_its_place_before_and_after(
    opener: Callable[[str], Callable[[], Any]],
) -> None:
    """deadlock's retry must lock before it writes; missing-index's plan must be read once the
    index is there. The same statements in the wrong order fail."""
    deadlock = find("deadlock")
    locks = next(c.name for c in deadlock.checks if c.process and c.process.before)
    credit = ("B", "UPDATE accounts SET balance = balance + 45 WHERE id = 1")
    debit = ("B", "UPDATE accounts SET balance = balance - 45 WHERE id = 2")
    lock = ("B", "SELECT id FROM accounts WHERE id IN (1, 2) ORDER BY id FOR UPDATE")
    start = [("B", "ROLLBACK"), ("A", "COMMIT"), ("B", "BEGIN")]
    first = attempt(*start, lock, credit, debit, ("B", "COMMIT"))
    assert _process_verdicts(grade(deadlock, first, opener("postgres")))[locks]
    late = attempt(*start, credit, lock, debit, ("B", "COMMIT"))
    assert not _process_verdicts(grade(deadlock, late, opener("postgres")))[locks]
    index = find("missing-index")
    read = next(c.name for c in index.checks if c.process and c.process.after)
    create = ("A", "CREATE INDEX orders_customer_id_idx ON orders (customer_id)")
    plan = ("A", "\\explain SELECT id, placed_on, total_cents FROM orders WHERE customer_id = 1207")
    assert _process_verdicts(grade(index, attempt(create, plan), opener("postgres")))[read]
    assert not _process_verdicts(grade(index, attempt(plan, create), opener("postgres")))[read]
