"""Python steps in scenarios: the loader's fields, the trust a file with code needs, what
`validate` and `scenarios` say of it, and a Python step played for real on both engines."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from sandbox.cli import main
from sandbox.scenario.catalog import catalog_dir, catalog_files
from sandbox.scenario.loader import load, validate
from sandbox.scenario.player import play
from sandbox.scenario.process import judge
from sandbox.scenario.trust import trust_all
from sandbox.targets import open_target
from tests.conftest import options_for

# A small pack scenario whose breakage is a SQLAlchemy program: it deletes a row without
# committing (so nothing changes), prints, and exits with 3.
PACK = '''id = "{id}"
title = "A program that forgets to commit"
summary = "A summary."
difficulty = "beginner"
tags = ["orm"]
engines = ["sqlite", "postgres"]
story = "A story."
task = "A task."
hints = ["A hint."]

[vars]
doomed = 1

[[variants]]
name = "another row"
vars = {{ doomed = 2 }}

[setup]
sql = """
CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL);
INSERT INTO t VALUES (1, 10), (2, 20);
"""

[[breakage]]
program = "forgetful.py"
exit = 3
output = "deleted row {{{{doomed}}}}"
{extra}python = """
import os, sys
from sqlalchemy import create_engine, text
if os.environ.get("PYSTEP_MARKER"):  # the tests' proof that the program ran at all
    open(os.environ["PYSTEP_MARKER"], "a").close()
engine = create_engine(os.environ["DATABASE_URL"])
with engine.connect() as connection:
    connection.execute(text("DELETE FROM t WHERE id = {{{{doomed}}}}"))
    print("deleted row {{{{doomed}}}}")
sys.exit(3)
"""

[[breakage]]
sql = "SELECT count(*) FROM t"
rows = [[2]]

[[solution]]
sql = "DELETE FROM t WHERE id = 1"
rowcount = 1

[[checks]]
name = "row 1 is gone"
sql = "SELECT count(*) FROM t WHERE id = 1"
expect = [[0]]

[[checks]]
name = "one statement"
process = "forbid"
pattern = "^INSERT"
counter = [{{ sql = "INSERT INTO t VALUES (3, 30)" }}]
'''


def pack(tmp_path: Path, extra: str = "", name: str = "forgetful") -> Path:
    folder = tmp_path / "pack"
    folder.mkdir(exist_ok=True)
    path = folder / f"{name}.toml"
    path.write_text(PACK.format(id=name, extra=extra), encoding="utf-8")
    return path


@pytest.fixture(autouse=True)
def _untrusted() -> object:
    """Each test starts without --trust, as a command does (main() resets it)."""
    trust_all(False)
    yield
    trust_all(False)


# ---------------------------------------------------------------------------------- loader


def test_a_python_step_loads_with_its_program_source_and_expectations(tmp_path: Path) -> None:
    scenario = load(pack(tmp_path))
    step = scenario.breakage[0]
    assert step.is_python and step.program == "forgetful.py" and step.lane_prefix == "forgetful"
    assert step.session == "forgetful"
    assert step.expect.on("sqlite") == {"exit": 3, "output": "deleted row 1"}
    assert "DELETE FROM t WHERE id = 1" in step.source("postgres")  # {{vars}} filled in
    assert scenario.has_python and scenario.listing()["python"] is True
    variant = load(scenario.path, "another row")  # type: ignore[arg-type]
    assert "DELETE FROM t WHERE id = 2" in variant.breakage[0].source("sqlite")


@pytest.mark.parametrize(
    ("change", "key", "message"),
    [
        (('program = "forgetful.py"', 'program = "check out.py"'), "program", "file name like"),
        (('program = "forgetful.py"\n', ""), "program", "missing"),
        (("exit = 3", 'exit = "three"'), "exit", "whole number"),
        (('output = "deleted row {{doomed}}"', "output = 7"), "output", "non-empty string"),
        (
            ("import os, sys", "import os, sys)"),
            "python",
            "not valid Python (line 1 of the program)",
        ),
        (("exit = 3", "exit = 3\nrowcount = 1"), "rowcount", "a Python step takes program"),
        (("exit = 3", 'exit = 3\nsql = "SELECT 1"'), "sql", "a Python step takes program"),
    ],
)
def test_a_bad_python_step_is_one_clear_problem(
    tmp_path: Path, change: tuple[str, str], key: str, message: str
) -> None:
    path = pack(tmp_path)
    text = path.read_text(encoding="utf-8")
    assert change[0] in text
    path.write_text(text.replace(change[0], change[1], 1), encoding="utf-8")
    problems = validate(path)
    assert len(problems) == 1, [str(p) for p in problems]
    assert problems[0].key == f"breakage[0].{key}"
    assert message in problems[0].message
    if message != "missing":  # a key that is there is found on its line
        assert problems[0].line is not None


def test_two_steps_may_not_share_a_program_name(tmp_path: Path) -> None:
    path = pack(tmp_path)
    text = path.read_text(encoding="utf-8")
    second = text[text.index("[[breakage]]") : text.index("[[breakage]]\nsql")]
    path.write_text(text.replace("[[solution]]", second + "[[solution]]", 1), encoding="utf-8")
    problems = [str(p) for p in validate(path)]
    assert any("another step's program too" in p for p in problems), problems


def test_program_and_output_belong_to_python_steps(tmp_path: Path) -> None:
    path = pack(tmp_path)
    text = path.read_text(encoding="utf-8").replace(
        'sql = "SELECT count(*) FROM t"', 'sql = "SELECT count(*) FROM t"\noutput = "x"'
    )
    path.write_text(text, encoding="utf-8")
    problems = validate(path)
    assert [(p.key, p.message) for p in problems] == [
        ("breakage[1].output", "only a Python step (python = ...) takes it")
    ]


# ---------------------------------------------------------------------------------- trust


def test_an_untrusted_pack_with_python_is_refused_in_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = pack(tmp_path)
    marker = tmp_path / "ran"
    monkeypatch.setenv("PYSTEP_MARKER", str(marker))
    for command in (["run", str(path)], ["play", str(path)], ["validate", "--prove", str(path)]):
        code = main(command)
        err = capsys.readouterr()
        said = err.err + err.out
        assert code != 0, command
        assert (
            "scenario forgetful carries Python code: it runs only from the catalog, or with --trust"
            in said
        )
        assert "Traceback" not in said
    assert not marker.exists()  # refused before the program could run


def test_trust_runs_the_pack_and_its_program_on_its_own_lane(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    path = pack(tmp_path)
    marker = tmp_path / "ran"
    monkeypatch.setenv("PYSTEP_MARKER", str(marker))
    assert main(["run", str(path), "--trust", "--format", "json"]) == 0
    assert marker.exists()
    report = json.loads(capsys.readouterr().out)
    step = report["steps"][0]
    assert step["program"] == "forgetful.py" and step["passed"]
    assert step["actual"]["exit"] == 3 and "deleted row 1" in step["actual"]["output"]
    lanes = {s["session"] for s in report["statements"]}
    assert "forgetful-1" in lanes and "A" in lanes
    deleted = [s for s in report["statements"] if s["sql"].startswith("DELETE")]
    assert [s["session"] for s in deleted] == ["forgetful-1"]
    # The program never committed: the row is still there when the SQL step looks.
    assert report["steps"][1]["actual"]["rows"] == [[2]]


def test_a_program_that_does_not_behave_as_declared_fails_the_step(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = pack(tmp_path)
    path.write_text(path.read_text(encoding="utf-8").replace("exit = 3", "exit = 0"), "utf-8")
    assert main(["run", str(path), "--trust"]) == 1
    out = capsys.readouterr().out
    assert "XX [forgetful] python forgetful.py" in out
    assert "forgetful.py was to exit with 0, it exited with 3" in out


def test_the_catalog_runs_without_trust_and_a_pack_copy_does_not(tmp_path: Path) -> None:
    catalog = next(p for p in catalog_files() if p.stem == "orm-version-conflict")
    assert catalog.parent == catalog_dir()
    with open_target(options_for("sqlite")) as target:
        run = play(load(catalog), target)
    assert run.steps_ok
    copy = tmp_path / "orm-version-conflict.toml"
    copy.write_text(catalog.read_text(encoding="utf-8"), encoding="utf-8")
    from sandbox.errors import UserError

    with open_target(options_for("sqlite")) as target, pytest.raises(UserError, match="--trust"):
        play(load(copy), target)


def test_validate_and_scenarios_say_which_carry_python(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = pack(tmp_path)
    assert main(["validate", str(path)]) == 0
    out = capsys.readouterr().out
    assert f"{path}: carries Python code: runs SQLAlchemy programs: only with --trust" in out
    assert (
        main(["validate", "--format", "json", str(path), str(catalog_dir() / "missing-where.toml")])
        == 0
    )
    files = json.loads(capsys.readouterr().out)["files"]
    assert [(f["python"], f["trusted"], f["from_catalog"]) for f in files] == [
        (True, False, False),
        (False, True, True),
    ]
    assert main(["scenarios", "--scenarios", str(path.parent)]) == 0
    out = capsys.readouterr().out
    assert "python: runs SQLAlchemy programs: only with --trust" in out
    assert "python: runs SQLAlchemy programs (from the catalog)" in out  # the ORM scenarios
    assert main(["scenarios", "--scenarios", str(path.parent), "--trust", "--format", "json"]) == 0
    listed = {s["id"]: s for s in json.loads(capsys.readouterr().out)}
    assert listed["forgetful"]["python"] and listed["forgetful"]["trusted"]
    assert not listed["missing-where"]["python"]


def test_validate_prove_with_trust_proves_a_pack(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = pack(tmp_path)
    code = main(["validate", "--prove", "--trust", "--engine", "sqlite", str(path)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert "forgetful (sqlite): proven" in out


# ---------------------------------------------------------------------------------- end to end


@pytest.mark.parametrize("scenario", ["orm-swallowed-error", "orm-n-plus-one"])
def test_run_an_orm_scenario_with_its_solution(
    scenario: str, engine: str, capsys: pytest.CaptureFixture[str]
) -> None:
    where = ["--url", os.environ["DBSANDBOX_TEST_POSTGRES_URL"]] if engine == "postgres" else []
    code = main(["run", scenario, "--solution", "--engine", engine, *where, "--format", "json"])
    report = json.loads(capsys.readouterr().out)
    assert code == 0, report["steps"]
    assert report["passed"] and report["recovered"]
    program = report["steps"][0]
    assert program["phase"] == "breakage" and program["actual"]["exit"] == 1
    lanes = [s["session"] for s in report["statements"]]
    prefix = program["program"].removesuffix(".py")
    assert lanes[0] == f"{prefix}-1"  # the program ran first, numbered in the same run
    indexes = [s["index"] for s in report["statements"]]
    assert indexes == list(range(len(indexes)))


def test_the_n_plus_one_loop_is_flagged_on_the_programs_lane() -> None:
    path = next(p for p in catalog_files() if p.stem == "orm-n-plus-one")
    with open_target(options_for("sqlite")) as target:
        run = play(load(path), target)
    flagged = [e for e in run.timeline if (e.data or {}).get("rule") == "n-plus-one"]
    assert [e.session for e in flagged] == ["stats-1"]


def test_no_repeat_rejects_one_statement_per_row_and_accepts_a_second_look() -> None:
    path = next(p for p in catalog_files() if p.stem == "orm-n-plus-one")
    scenario = load(path)
    check = next(c for c in scenario.checks if c.process is not None)
    assert check.process is not None
    from sandbox.scenario.player import Replayed

    looks = [Replayed("A", "SELECT * FROM author_stats")] * 3 + [
        Replayed("A", f"SELECT count(*) FROM books WHERE author_id = {n}") for n in (1, 2)
    ]
    with open_target(options_for("sqlite")) as target:
        run = play(scenario, target, attempt=looks)
    executions = [e for e in run.executions if e.session == "A"][1:]  # after the breakage's
    since = run.executions.index(executions[0])
    verdict = judge(check.process, run.executions, since, "sqlite")
    assert verdict.passed, verdict.detail
    loop = [Replayed("A", f"SELECT count(*) FROM books WHERE author_id = {n}") for n in range(1, 6)]
    with open_target(options_for("sqlite")) as target:
        run = play(scenario, target, attempt=loop)
    result = next(c for c in run.checks if c.check is check)
    assert not result.passed
    assert "with 5 different values, once per row" in str(result.actual)


def test_grade_replays_the_program_then_the_learners_sql(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    export = tmp_path / "ana.json"
    argv = ["run", "orm-swallowed-error", "--solution", "--export", str(export)]
    assert main(argv) == 0
    capsys.readouterr()
    document = json.loads(export.read_text(encoding="utf-8"))
    first_mine = document["statements"][document["learner_from"]]
    assert first_mine["session"] == "A"  # the program's lanes are the breakage
    assert main(["grade", "orm-swallowed-error", str(export), "--engine", "sqlite"]) == 0
    out = capsys.readouterr().out
    assert "score 100/100 (recovered)" in out
    assert "hidden variants: 1/1 passed" in out


def test_bare_dbsandbox_takes_trust_for_the_app() -> None:
    from sandbox.cli import APP_PREFIX, build_parser

    args = build_parser().parse_args(["--trust"])
    assert getattr(args, APP_PREFIX + "trust") is True
    assert build_parser().parse_args(["play", "x.toml", "--trust"]).trust is True


def test_a_python_step_takes_per_engine_expectations(tmp_path: Path) -> None:
    path = pack(tmp_path, extra='sqlite.exit = 4\npostgres.output = "only there"\n')
    step = load(path).breakage[0]
    assert step.expect.on("sqlite") == {"exit": 4, "output": "deleted row 1"}
    assert step.expect.on("postgres") == {"exit": 3, "output": "only there"}
    path.write_text(
        path.read_text(encoding="utf-8").replace("sqlite.exit = 4", "sqlite.rows = [[1]]"),
        encoding="utf-8",
    )
    problems = validate(path)
    assert [p.key for p in problems] == ["breakage[0].rows"]


def test_a_reference_solution_may_be_a_program_too(tmp_path: Path) -> None:
    path = pack(tmp_path)
    text = path.read_text(encoding="utf-8").replace(
        """[[solution]]
sql = "DELETE FROM t WHERE id = 1"
rowcount = 1""",
        '''[[solution]]
program = "fix.py"
python = """
import os
from sqlalchemy import create_engine, text
with create_engine(os.environ["DATABASE_URL"]).begin() as connection:
    connection.execute(text("DELETE FROM t WHERE id = 1"))
"""''',
    )
    path.write_text(text, encoding="utf-8")
    trust_all(True)
    scenario = load(path)
    with open_target(options_for("sqlite")) as target:
        solved = play(scenario, target, solution=True)
    assert solved.passed and solved.recovered
    fixed = [s for s in solved.steps if s.phase == "solution"]
    assert [s.step.program for s in fixed] == ["fix.py"]
    assert {e.session for e in fixed[0].program.executions} == {"fix-1"}  # type: ignore[union-attr]
