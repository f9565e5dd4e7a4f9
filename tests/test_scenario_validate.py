"""`dbsandbox validate`: one broken file per kind of mistake, each named with its line and key."""

from __future__ import annotations

from pathlib import Path

import pytest

from sandbox.cli import main
from sandbox.scenario.catalog import catalog_files
from sandbox.scenario.loader import Problem, validate

VALID = '''id = "{id}"
title = "A title"
summary = "A summary."
difficulty = "beginner"
tags = ["t"]
engines = ["sqlite", "postgres"]
story = "A story."
task = "A task."
hints = ["A hint."]

[setup]
sql = """
CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER NOT NULL);
INSERT INTO t VALUES (1, 10), (2, 20);
"""

[[breakage]]
sql = "BEGIN"

[[breakage]]
session = "A"
sql = "DELETE FROM t"
rowcount = 2
findings = ["delete-without-where"]

[[solution]]
sql = "ROLLBACK"

[[checks]]
name = "rows are back"
session = "A"
sql = "SELECT count(*) FROM t"
expect = [[2]]
'''


def write(tmp_path: Path, text: str, name: str = "broken") -> Path:
    path = tmp_path / f"{name}.toml"
    path.write_text(text.replace("{id}", name), encoding="utf-8")
    return path


def line_of(text: str, needle: str) -> int:
    return next(n for n, line in enumerate(text.splitlines(), 1) if needle in line)


def only(problems: list[Problem]) -> Problem:
    assert len(problems) == 1, [str(p) for p in problems]
    return problems[0]


def named(problems: list[Problem], key: str) -> Problem:
    found = [p for p in problems if p.key == key]
    assert len(found) == 1, [str(p) for p in problems]
    return found[0]


def test_the_template_is_valid(tmp_path: Path) -> None:
    assert validate(write(tmp_path, VALID)) == []


@pytest.mark.parametrize("path", catalog_files(), ids=lambda p: p.stem)
def test_every_catalog_scenario_is_valid(path: Path) -> None:
    assert [str(p) for p in validate(path)] == []


@pytest.mark.parametrize(
    ("old", "new", "key", "message", "needle"),
    [
        ('title = "A title"', 'titel = "A title"', "titel", "unknown key", "titel ="),
        (
            'difficulty = "beginner"',
            "difficulty = 3",
            "difficulty",
            "must be a non-empty string",
            "difficulty =",
        ),
        (
            'difficulty = "beginner"',
            'difficulty = "easy"',
            "difficulty",
            "must be one of beginner",
            "difficulty =",
        ),
        (
            'engines = ["sqlite", "postgres"]',
            'engines = ["sqlite", "oracle"]',
            "engines",
            "unknown engine 'oracle'",
            "engines =",
        ),
        (
            'session = "A"\nsql = "DELETE FROM t"',
            'session = "B"\nsql = "DELETE FROM t"',
            "breakage[1].session",
            "unknown session 'B'",
            'session = "B"',
        ),
        (
            'session = "A"\nsql = "SELECT count',
            'session = "Z"\nsql = "SELECT count',
            "checks[0].session",
            "unknown session 'Z'",
            'session = "Z"',
        ),
        (
            'sql = "DELETE FROM t"',
            'sql = "DELETE FROM t WHERE id = 1; DELETE FROM t"',
            "breakage[1].sql",
            "holds 2 statements",
            'sql = "DELETE FROM t WHERE id = 1;',
        ),
        (
            'findings = ["delete-without-where"]',
            'findings = ["delete-no-where"]',
            "breakage[1].findings",
            "unknown guard rule 'delete-no-where'",
            "findings =",
        ),
        (
            "rowcount = 2",
            'rowcount = "two"',
            "breakage[1].rowcount",
            "must be a whole number",
            "rowcount =",
        ),
        (
            "rowcount = 2",
            'error = "23505"\nexpect = "ok"',
            "breakage[1].error",
            'goes with expect = "error"',
            "error =",
        ),
        ("rowcount = 2", 'sesion = "A"', "breakage[1].sesion", "unknown key", "sesion ="),
        (
            "expect = [[2]]",
            'expect = "2"',
            "checks[0].expect",
            "must be a list of rows",
            "expect =",
        ),
        (
            '[[solution]]\nsql = "ROLLBACK"\n',
            "",
            "solution",
            "missing: add at least one [[solution]]",
            None,
        ),
        ('hints = ["A hint."]', "", "hints", "missing (a list of strings is required)", None),
    ],
)
def test_each_mistake_is_named_with_line_and_key(
    tmp_path: Path, old: str, new: str, key: str, message: str, needle: str | None
) -> None:
    assert old in VALID
    text = VALID.replace(old, new, 1)
    problem = named(validate(write(tmp_path, text)), key)
    assert message in problem.message
    if needle is not None:
        assert problem.line == line_of(text.replace("{id}", "broken"), needle)
    assert str(problem).startswith(f"{tmp_path / 'broken.toml'}")


def test_sql_must_parse_on_every_declared_engine(tmp_path: Path) -> None:
    text = VALID.replace('sql = "DELETE FROM t"', 'sql = "DELET FROM t"')
    problems = validate(write(tmp_path, text))
    assert [(p.key, p.line) for p in problems] == [("breakage[1].sql", line_of(text, "DELET"))] * 2
    assert "does not parse as sqlite SQL: 'DELET FROM t'" in problems[0].message
    assert "does not parse as postgres SQL: 'DELET FROM t'" in problems[1].message


def test_checks_are_required(tmp_path: Path) -> None:
    text = VALID[: VALID.index("[[checks]]")]
    problem = only(validate(write(tmp_path, text)))
    assert (problem.key, problem.message) == (
        "checks",
        "missing: add at least one [[checks]] table",
    )


def test_invalid_toml_reports_the_line(tmp_path: Path) -> None:
    text = VALID.replace('task = "A task."', 'task = "A task.')
    problem = only(validate(write(tmp_path, text)))
    assert "not valid TOML" in problem.message
    assert problem.line == line_of(text, 'task = "A task.')


def test_the_id_must_match_the_file_name(tmp_path: Path) -> None:
    path = tmp_path / "other-name.toml"
    path.write_text(VALID.replace("{id}", "my-id"), encoding="utf-8")
    problem = only(validate(path))
    assert (problem.key, problem.message) == ("id", "must match the file name (other-name.toml)")


def test_isolation_levels_are_postgres_only(tmp_path: Path) -> None:
    text = VALID.replace(
        "[[breakage]]", '[[sessions]]\nname = "A"\nisolation = "serializable"\n\n[[breakage]]', 1
    )
    problem = only(validate(write(tmp_path, text)))
    assert problem.key == "sessions[0].isolation"
    assert "SQLite has no isolation levels" in problem.message


def test_a_one_engine_scenario_says_why(tmp_path: Path) -> None:
    text = VALID.replace('engines = ["sqlite", "postgres"]', 'engines = ["postgres"]')
    problem = only(validate(write(tmp_path, text)))
    assert problem.key == "engine_note"
    with_note = text.replace(
        'story = "A story."', 'engine_note = "SQLite lacks it."\nstory = "A story."'
    )
    assert validate(write(tmp_path, with_note, "noted")) == []


def test_per_engine_overrides_are_checked_too(tmp_path: Path) -> None:
    text = VALID.replace(
        'findings = ["delete-without-where"]',
        'findings = ["delete-without-where"]\n\n[breakage.sqlite]\nrowcont = 2',
    )
    problem = only(validate(write(tmp_path, text)))
    assert problem.key == "breakage[1].sqlite.rowcont"


def test_validate_command_exit_codes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    good = write(tmp_path, VALID, "good")
    bad = write(tmp_path, VALID.replace('title = "A title"', "title = 1"), "bad")
    assert main(["validate", str(good)]) == 0
    assert "1 scenario file valid" in capsys.readouterr().out
    assert main(["validate", str(good), str(bad)]) == 1
    out = capsys.readouterr().out.strip().splitlines()
    assert out == [f"{bad}:2: title: must be a non-empty string, not a number"]
    assert main(["validate", "scenarios"]) == 0


def test_a_per_engine_error_code_implies_an_error_on_that_engine(tmp_path: Path) -> None:
    from sandbox.scenario.loader import load

    text = VALID.replace(
        'findings = ["delete-without-where"]',
        'findings = ["delete-without-where"]\n\n[breakage.sqlite]\nerror = "SQLITE_BUSY"',
    )
    scenario = load(write(tmp_path, text))
    expect = scenario.breakage[1].expect
    assert expect.on("sqlite")["status"] == "error"
    assert "status" not in expect.on("postgres")


@pytest.mark.parametrize(
    ("extra", "key", "message"),
    [
        (
            '[[checks]]\nname = "how"\nrecovery = ["prayer"]\n',
            "checks[1].recovery",
            "must list one or more of rollback, savepoint, restore, repair",
        ),
        (
            '[[checks]]\nname = "how"\nrecovery = []\n',
            "checks[1].recovery",
            "must list one or more of",
        ),
        (
            '[[checks]]\nname = "how"\nrecovery = ["restore"]\nsql = "SELECT 1"\n',
            "checks[1].recovery",
            "takes no sql or expect",
        ),
        (
            '[[solution]]\nsql = "\\\\restore"\n',
            "solution[1].sql",
            "\\restore NAME needs exactly one name",
        ),
        (
            '[[solution]]\nsql = "\\\\session B"\n',
            "solution[1].sql",
            "a backslash step must be one of \\snapshot, \\restore, \\diff, \\snapshots",
        ),
        (
            '[[solution]]\nsql = "\\\\restore bad/name"\n',
            "solution[1].sql",
            "bad snapshot name 'bad/name'",
        ),
    ],
)
def test_recovery_checks_and_snapshot_steps_are_validated(
    tmp_path: Path, extra: str, key: str, message: str
) -> None:
    text = VALID + "\n" + extra
    problem = named(validate(write(tmp_path, text)), key)
    assert message in problem.message
    # The line of the offending key, in the appended table.
    needle = "recovery =" if key.endswith("recovery") else 'sql = "\\\\'
    assert problem.line == len(VALID.splitlines()) + 1 + line_of(extra, needle)


def test_well_formed_recovery_checks_and_snapshot_steps_are_valid(tmp_path: Path) -> None:
    extra = (
        '[[solution]]\nsql = "\\\\diff start"\n\n[[solution]]\nsql = "\\\\restore start"\n\n'
        '[[checks]]\nname = "how"\nrecovery = ["rollback", "restore"]\n'
    )
    assert [str(p) for p in validate(write(tmp_path, VALID + "\n" + extra))] == []
