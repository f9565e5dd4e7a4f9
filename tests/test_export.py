"""Session exports: the timeline JSON, the replay script, the runbook, and `run --export`.

Everything runs for real: the original through the `dbsandbox` command on a real engine, the
exported script through the command again, and the two runs' outcomes compared statement by
statement.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

import pytest

from sandbox.cli import main
from sandbox.conductor import Conductor
from sandbox.export import SessionRecord, export_paths, replay_script, runbook, write_export
from sandbox.guard.policy import Guard, acknowledgements
from sandbox.runner import read_script
from sandbox.statements import Dialect, split_statements
from sandbox.targets import open_target
from sandbox.timeline import Timeline
from tests import test_targets as shared
from tests.conftest import POSTGRES_ENV, options_for, without_role_warning
from tests.test_targets import unique

private_tmp = shared.private_tmp

# Two sessions and every kind of step: a lock wait, an error, a savepoint undone, a snapshot,
# a DELETE without WHERE that only --yes lets run, a diff, a restore, and a final read.
SCRIPT = """CREATE TABLE accounts (id INTEGER PRIMARY KEY, owner TEXT NOT NULL, balance INTEGER);
INSERT INTO accounts VALUES (1, 'ana', 100), (2, 'ben', 50), (3, 'a|b', 7);
BEGIN;
UPDATE accounts SET balance = balance - 10 WHERE id = 1;
\\session B
UPDATE accounts SET balance = balance + 5 WHERE id = 1;   -- waits for A's row lock
\\session A
COMMIT;
SELECT * FROM no_such_table;
BEGIN;
UPDATE accounts SET balance = 0 WHERE id = 2;
SAVEPOINT before_fee;
UPDATE accounts SET balance = balance - 1 WHERE id = 2;
ROLLBACK TO before_fee;
COMMIT;
\\snapshot good
\\session B
DELETE FROM accounts;
\\diff good
\\restore good
\\session A
SELECT id, owner, balance FROM accounts ORDER BY id;
"""


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, without_role_warning(captured.err)


def engine_args(engine: str, url: str | None = None) -> list[str]:
    """Where to run: SQLite with a busy timeout long enough that a lock wait never times out."""
    if engine == "postgres":
        return ["--engine", "postgres", "--url", url or os.environ[POSTGRES_ENV]]
    return ["--engine", "sqlite", "--busy-timeout", "5000"]


def dialect_of(engine: str) -> Dialect:
    return "postgres" if engine == "postgres" else "sqlite"


def outcomes(report: dict[str, Any], skip_setup: bool = False) -> list[tuple[Any, ...]]:
    """What each statement did, in order: everything a replay must reproduce."""
    return [
        (
            s["session"],
            s["sql"],
            s["status"],
            s.get("rowcount"),
            s.get("rows"),
            (s.get("error") or {}).get("code"),
            s["waited"],
            s["meta"],
        )
        for s in report["statements"]
        if not (skip_setup and (s["session"] == "setup" or s["sql"].startswith("SET SESSION")))
    ]


def run_json(
    capsys: pytest.CaptureFixture[str], *args: str, expect: int = 0
) -> tuple[dict[str, Any], str]:
    code, out, err = cli(capsys, "run", *args, "--format", "json")
    assert code == expect, (out, err)
    return json.loads(out), err


def sections(markdown: str) -> dict[str, str]:
    """The runbook's `## ` sections by heading."""
    parts = re.split(r"^## (.+)$", markdown, flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


# --------------------------------------------------------------------------- replay


def test_replay_reproduces_every_outcome(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "original.sql"
    script.write_text(SCRIPT, encoding="utf-8")
    exported = tmp_path / "replay.sql"

    original, err = run_json(
        capsys, str(script), *engine_args(engine), "--yes", "--export", str(exported)
    )
    assert err == f"wrote {exported}\n"
    before = outcomes(original)
    # The script did what it is meant to exercise, so an empty replay cannot match by accident.
    by_sql = {row[1]: row for row in before}
    assert by_sql["UPDATE accounts SET balance = balance + 5 WHERE id = 1"][6] is True
    assert by_sql["SELECT * FROM no_such_table"][2] == "error"
    assert by_sql["DELETE FROM accounts"][2:4] == ("ok", 3)
    assert [row[7] for row in before if row[7]] == ["snapshot", "diff", "restore"]
    assert by_sql["SELECT id, owner, balance FROM accounts ORDER BY id"][4] == [
        [1, "ana", 95],
        [2, "ben", 0],
        [3, "a|b", 7],
    ]

    text = exported.read_text(encoding="utf-8")
    assert "-- dbsandbox: allow delete-without-where\nDELETE FROM accounts;" in text
    assert text.splitlines()[0].startswith("-- Generated by dbsandbox")
    parsed = read_script(text, dialect_of(engine), str(exported))
    assert len(parsed.steps) == len(before)
    assert [s.session for s in parsed.steps] == [row[0] for row in before]

    replayed, err = run_json(capsys, str(exported), *engine_args(engine))  # no --yes
    assert err == ""
    assert replayed["stopped"] is None
    assert outcomes(replayed) == before
    # The replay took its own snapshot before the DELETE, as the original did.
    assert [s["snapshot_before"] for s in replayed["statements"] if s["snapshot_before"]] == [
        "before-1"
    ]


def test_acknowledgements_after_a_snapshot_command_are_honoured(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Replay scripts put snapshot commands before acknowledged statements: the guard must
    look the acknowledgement up by the statement, not by its place among all the steps."""
    script = tmp_path / "ack.sql"
    script.write_text(
        "CREATE TABLE t (a INTEGER);\n"
        "\\snapshot s\n"
        "-- dbsandbox: allow delete-without-where\n"
        "DELETE FROM t;\n",
        encoding="utf-8",
    )
    report, _ = run_json(capsys, str(script), *engine_args(engine))
    assert [s["status"] for s in report["statements"]] == ["ok", "ok", "ok"]


def test_scenario_replay_reproduces_the_run_and_its_data(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    exported = tmp_path / "committed-delete.sql"
    original, _ = run_json(
        capsys, "committed-delete", "--solution", *engine_args(engine), "--export", str(exported)
    )
    assert original["passed"] is True
    text = exported.read_text(encoding="utf-8")
    assert "\\session setup\nCREATE TABLE customers" in text
    assert "\n\\snapshot start\n" in text
    assert read_script(text, dialect_of(engine)).steps

    # The reader may add to a replay script: here, the questions the checks ask.
    with exported.open("a", encoding="utf-8") as script:
        script.write("SELECT id, name FROM customers ORDER BY id;\n")
        script.write("SELECT id, customer_id FROM orders ORDER BY id;\n")
    replayed, _ = run_json(capsys, str(exported), *engine_args(engine))
    *steps, customers, orders = outcomes(replayed, skip_setup=True)
    assert steps == outcomes(original)
    assert customers[4] == [
        [1, "Ana Souza"],
        [2, "Ben Okafor"],
        [3, "Chen Wei"],
        [4, "Dara Byrne"],
        [5, "Emil Novak"],
    ]
    assert orders[4] == [[1001, 1], [1002, 3], [1003, 2]]


ISOLATION_SCENARIO = """id = "isolation-replay"
title = "Isolation levels survive a replay"
summary = "Session B reads at REPEATABLE READ, so A's committed update makes B's write fail."
difficulty = "advanced"
tags = ["isolation"]
engines = ["postgres"]
engine_note = "SQLite has no isolation levels"
story = "B works on a snapshot of the data."
task = "Nothing to do."
hints = ["none"]

[setup]
sql = '''
CREATE TABLE items (id INTEGER PRIMARY KEY, qty INTEGER NOT NULL);
INSERT INTO items VALUES (1, 5);
'''

[[sessions]]
name = "A"

[[sessions]]
name = "B"
isolation = "repeatable read"

[[breakage]]
session = "B"
sql = "BEGIN"

[[breakage]]
session = "B"
sql = "SELECT current_setting('transaction_isolation'), qty FROM items WHERE id = 1"
rows = [["repeatable read", 5]]

[[breakage]]
session = "A"
sql = "UPDATE items SET qty = 4 WHERE id = 1"
rowcount = 1

[[breakage]]
session = "B"
sql = "UPDATE items SET qty = qty - 1 WHERE id = 1"
expect = "error"
error = "40001"

[[solution]]
session = "B"
sql = "ROLLBACK"

[[checks]]
name = "A's update stands"
sql = "SELECT qty FROM items"
expect = [[4]]
"""


@pytest.mark.postgres
def test_scenario_isolation_levels_are_replayed(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    scenario = tmp_path / "isolation-replay.toml"
    scenario.write_text(ISOLATION_SCENARIO, encoding="utf-8")
    exported = tmp_path / "iso.sql"
    original, _ = run_json(
        capsys, str(scenario), "--solution", *engine_args("postgres"), "--export", str(exported)
    )
    assert original["passed"] is True
    text = exported.read_text(encoding="utf-8")
    assert (
        "\\session B\nSET SESSION CHARACTERISTICS AS TRANSACTION ISOLATION LEVEL REPEATABLE READ;"
        in text
    )
    replayed, _ = run_json(capsys, str(exported), *engine_args("postgres"))
    assert outcomes(replayed, skip_setup=True) == outcomes(original)
    # Under READ COMMITTED B's UPDATE would succeed: the 40001 proves the level was set.
    assert [s[5] for s in outcomes(replayed)].count("40001") == 1


# --------------------------------------------------------------------------- the guard


def test_a_statement_the_guard_stopped_is_a_comment_and_the_replay_runs(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "stopped.sql"
    script.write_text(
        "CREATE TABLE logs (id INTEGER PRIMARY KEY, msg TEXT);\n"
        "INSERT INTO logs VALUES (1, 'x'), (2, 'y');\n"
        "DELETE FROM logs;\n"
        "SELECT count(*) FROM logs;\n",
        encoding="utf-8",
    )
    exported = tmp_path / "stopped-replay.sql"
    original, err = run_json(
        capsys, str(script), *engine_args(engine), "--export", str(exported), expect=3
    )
    assert original["stopped"] == 2
    assert err == f"wrote {exported}\n"

    text = exported.read_text(encoding="utf-8")
    code_lines = [line for line in text.splitlines() if not line.startswith("--")]
    assert not any("DELETE" in line for line in code_lines)
    assert "-- not run (guard): needs confirmation" in text
    assert "--   DELETE FROM logs" in text
    parsed = read_script(text, dialect_of(engine))
    # The guard's own advice, quoted in a comment, must not acknowledge anything.
    assert all(not rules for rules in parsed.acknowledged.values())

    replayed, _ = run_json(capsys, str(exported), *engine_args(engine))
    assert replayed["stopped"] is None
    assert outcomes(replayed) == [row for row in outcomes(original) if row[2] != "blocked"]


def test_a_declined_statement_in_the_app_is_skipped_by_the_replay(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The app's path: the learner says no, carries on, and later says yes to the same SQL."""
    dialect = dialect_of(engine)
    lines = [
        "CREATE TABLE tasks (id INTEGER PRIMARY KEY, done INTEGER NOT NULL)",
        "INSERT INTO tasks VALUES (1, 0), (2, 1)",
        "UPDATE tasks SET done = 1",
        "SELECT id, done FROM tasks ORDER BY id",
        "UPDATE tasks SET done = 1",
        "SELECT id, done FROM tasks ORDER BY id",
    ]
    with open_target(options_for(engine)) as target:
        conductor = Conductor(target, Timeline())
        try:
            for number, sql in enumerate(lines):
                statement = split_statements(sql, dialect)[0]
                confirmed = number == 4  # the second UPDATE: the learner said yes
                acks = acknowledgements(sql, [statement], dialect)
                guard = Guard(yes=confirmed, acknowledged=acks)
                conductor.execute("A", statement, guard)
            conductor.settle_all()
            record = SessionRecord.from_conductor(conductor)
        finally:
            conductor.close()
    statuses = [e.outcome.status if e.outcome else None for e in record.executions]
    assert [str(s) for s in statuses] == ["ok", "ok", "blocked", "ok", "ok", "ok"]

    exported = tmp_path / "app.sql"
    assert write_export(record, exported) == [exported]
    text = exported.read_text(encoding="utf-8")
    assert "-- dbsandbox: allow update-without-where\nUPDATE tasks SET done = 1;" in text
    # Only the UPDATE the learner confirmed is acknowledged: the guard's advice quoted in the
    # declined statement's comment ("add the comment ...") must not acknowledge the SELECT.
    acknowledged = read_script(text, dialect).acknowledged
    assert {i: rules for i, rules in acknowledged.items() if rules} == {3: {"update-without-where"}}
    replayed, _ = run_json(capsys, str(exported), *engine_args(engine))
    rows = [s["rows"] for s in replayed["statements"] if s["sql"].startswith("SELECT")]
    assert rows == [[[1, 0], [2, 1]], [[1, 1], [2, 1]]]
    assert [s["status"] for s in replayed["statements"]] == ["ok"] * 5


# --------------------------------------------------------------------------- runbook, JSON


def test_runbook_of_a_recovered_scenario(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    base = tmp_path / "committed-delete"
    code, _, err = cli(
        capsys, "run", "committed-delete", "--solution", *engine_args(engine), "--export", str(base)
    )
    assert code == 0, err
    written = [line.removeprefix("wrote ") for line in err.splitlines()]
    assert written == [f"{base}.json", f"{base}.sql", f"{base}.md"]
    markdown = Path(f"{base}.md").read_text(encoding="utf-8")
    assert markdown.startswith("# Committed: the customer table is empty\n")
    parts = sections(markdown)
    assert list(parts) == [
        "What broke",
        "What was done",
        "What fixed it",
        "What changed",
        "How to replay",
    ]
    broke = parts["What broke"]
    assert "`DELETE FROM customers`" in broke
    assert "would delete 6 of 6 rows in customers" in broke
    assert "`delete-without-where`" in broke
    done = parts["What was done"]
    first = next(line for line in done.splitlines() if line.startswith("1. "))
    assert first.startswith("1. **A** `DELETE FROM customers` — ok: ")
    assert first.endswith("6 rows affected")  # PostgreSQL puts its tag (DELETE 6) in between
    assert "snapshot before-1 taken first" in done
    assert "`\\restore start`" in done
    fixed = parts["What fixed it"]
    assert "restored a snapshot" in fixed
    for name in (
        "every real customer is back",
        "order 1003 survived the recovery",
        "recovered from a snapshot (ROLLBACK cannot undo a COMMIT)",
    ):
        assert f"- ✔ {name}" in fixed
    assert "✘" not in markdown
    changed = parts["What changed"]
    assert "| table | change | key | row |" in changed
    assert "| customers | removed | id=6 | id=6, name='zz-test', email='qa@example.com' |" in (
        changed
    )
    assert f"dbsandbox run {base.name}.sql --engine {engine}" in parts["How to replay"]
    assert "{" not in markdown  # no raw JSON


def test_runbook_of_a_broken_scenario_says_not_recovered(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "broken.md"
    code, _, err = cli(capsys, "run", "committed-delete", "--export", str(path))
    assert (code, err) == (0, f"wrote {path}\n")
    fixed = sections(path.read_text(encoding="utf-8"))["What fixed it"]
    assert "- ✘ every real customer is back — expected" in fixed
    assert "Not recovered yet" in fixed


def test_runbook_table_cells_are_escaped_and_capped(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "many.sql"
    script.write_text(
        "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT);\n"
        "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 80)\n"
        "  INSERT INTO notes SELECT i, 'x' FROM n;\n"
        "INSERT INTO notes VALUES (0, 'a|b\nc');\n"
        "\\snapshot s\n"
        "DELETE FROM notes WHERE id >= 0;\n"
        "\\diff s\n",
        encoding="utf-8",
    )
    path = tmp_path / "many.md"
    code, _, _ = cli(capsys, "run", str(script), "--export", str(path))
    assert code == 0
    changed = sections(path.read_text(encoding="utf-8"))["What changed"]
    assert "Since snapshot `s`: notes: 81 rows removed." in changed
    assert "| notes | removed | id=0 | id=0, body='a\\|b<br>c' |" in changed
    table = [line for line in changed.splitlines() if line.startswith("| notes |")]
    assert len(table) == 50
    assert "… 31 more" in changed


def test_json_export_has_statements_timeline_checks_and_diff(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "session.json"
    code, out, err = cli(
        capsys,
        "run",
        "committed-delete",
        "--solution",
        *engine_args(engine),
        "--format",
        "json",
        "--export",
        str(path),
    )
    assert code == 0
    json.loads(out)  # stdout is still the report, and still parses
    assert err == f"wrote {path}\n"
    document = json.loads(path.read_text(encoding="utf-8"))
    assert document["engine"] == engine
    assert document["scenario"] == "committed-delete"
    assert [s["sql"] for s in document["statements"]][:2] == [
        "DELETE FROM customers",
        "INSERT INTO orders VALUES (1003, 2, 49.00)",
    ]
    kinds = {event["kind"] for event in document["timeline"]}
    assert {"statement", "outcome", "snapshot", "restore", "guard"} <= kinds
    # Two data checks, two process checks (no typing back, \diff first), one recovery check.
    assert [c["passed"] for c in document["checks"]] == [True] * 5
    assert document["recovery"]["methods"][0] == "restore"
    assert document["learner_from"] == 2
    assert document["diff"]["snapshot"] == "start"
    assert document["diff"]["tables"][0]["removed"] == [
        {"id": 6, "name": "zz-test", "email": "qa@example.com"}
    ]


@pytest.mark.postgres
def test_no_export_ever_shows_the_password(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import sqlalchemy as sa

    password = unique("s3cret-pw")  # trust auth: the server does not check it
    url = sa.make_url(postgres_url).set(password=password).render_as_string(hide_password=False)
    script = tmp_path / "pw.sql"
    # The data carries no password here: a value equal to it is shown verbatim, by design
    # (tests/test_secrets.py proves that).
    script.write_text("SELECT current_database();\n", encoding="utf-8")
    base = tmp_path / "script"
    code, out, err = cli(
        capsys, "run", str(script), *engine_args("postgres", url), "--export", str(base)
    )
    assert code == 0, err
    scenario_base = tmp_path / "scenario"
    code, out2, err2 = cli(
        capsys,
        "run",
        "committed-delete",
        "--solution",
        *engine_args("postgres", url),
        "--export",
        str(scenario_base),
    )
    assert code == 0, err2
    files = sorted(tmp_path.glob("script.*")) + sorted(tmp_path.glob("scenario.*"))
    assert [f.name for f in files] == [
        "script.json",
        "script.md",
        "script.sql",
        "scenario.json",
        "scenario.md",
        "scenario.sql",
    ]
    for text in [out, err, out2, err2] + [f.read_text(encoding="utf-8") for f in files]:
        assert password not in text
    document = json.loads((tmp_path / "script.json").read_text(encoding="utf-8"))
    assert "***" in document["target"]
    assert document["statements"][0]["rows"][0][0].startswith("dbsandbox_")


# --------------------------------------------------------------------------- paths


def test_export_paths() -> None:
    here = Path.cwd()
    assert export_paths(here / "x.JSON") == [here / "x.JSON"]
    assert export_paths(here / "x") == [here / "x.json", here / "x.sql", here / "x.md"]
    stamped = export_paths(here)
    assert [p.suffix for p in stamped] == [".json", ".sql", ".md"]
    assert all(re.fullmatch(r"dbsandbox-session-\d{8}T\d{6}Z", p.stem) for p in stamped)


def test_an_existing_directory_gets_all_three(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "s.sql"
    script.write_text("SELECT 1;\n", encoding="utf-8")
    folder = tmp_path / "exports"
    folder.mkdir()
    code, _, err = cli(capsys, "run", str(script), "--export", str(folder))
    assert code == 0
    names = sorted(p.name for p in folder.iterdir())
    assert len(names) == 3 and all(n.startswith("dbsandbox-session-") for n in names)
    assert err.count("wrote ") == 3
    # An export named twice is simply written again; several --export add up.
    again = tmp_path / "again.sql"
    code, _, err = cli(capsys, "run", str(script), "--export", str(again), "--export", str(again))
    assert (code, err) == (0, f"wrote {again}\nwrote {again}\n")


@pytest.mark.parametrize(
    ("name", "fragment"),
    [
        ("out.txt", "unknown suffix '.txt'; use .json"),
        ("missing/out.md", "no such directory"),
    ],
)
def test_bad_export_paths_fail_before_the_run(
    name: str,
    fragment: str,
    tmp_path: Path,
    private_tmp: Path,
    capsys: pytest.CaptureFixture[str],
) -> None:
    script = tmp_path / "s.sql"
    script.write_text("SELECT 1;\n", encoding="utf-8")
    code, out, err = cli(capsys, "run", str(script), "--export", str(tmp_path / name))
    assert code == 2
    assert out == ""  # nothing ran
    assert len(err.splitlines()) == 1 and err.startswith("dbsandbox: cannot ")
    assert fragment in err
    assert "Traceback" not in err
    assert list(private_tmp.iterdir()) == []  # no sandbox was even made


def test_a_write_that_fails_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "s.sql"
    script.write_text("SELECT 1;\n", encoding="utf-8")
    loop = tmp_path / "loop.md"
    loop.symlink_to(loop)  # looks like a file to be, but the OS refuses to open it (ELOOP)
    code, out, err = cli(capsys, "run", str(script), "--export", str(loop))
    assert code == 2
    assert "SELECT 1" in out  # the report was printed before the export failed
    assert err.startswith(f"dbsandbox: cannot write {loop}: ")
    assert len(err.splitlines()) == 1 and "Traceback" not in err


def test_a_name_the_os_refuses_fails_before_the_run(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "s.sql"
    script.write_text("SELECT 1;\n", encoding="utf-8")
    too_long = tmp_path / ("x" * 300 + ".md")  # ENAMETOOLONG even to look at it
    code, out, err = cli(capsys, "run", str(script), "--export", str(too_long))
    assert (code, out) == (2, "")
    assert err.startswith("dbsandbox: cannot write ") and len(err.splitlines()) == 1


def test_replay_script_and_runbook_of_an_empty_session() -> None:
    record = SessionRecord(engine="sqlite", target="sqlite file x", executions=[], timeline=[])
    script = replay_script(record)
    assert read_script(script, "sqlite").steps == []
    assert "\\session A" in script
    assert "Nothing ran." in runbook(record)
