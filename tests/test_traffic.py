"""Traffic sessions (`\\traffic`): a session that repeats a statement like an application,
on the real engines and through the real `dbsandbox run` command."""

from __future__ import annotations

import itertools
import json
import os
import threading
from pathlib import Path
from typing import Any

import pytest

from sandbox.cli import main
from sandbox.statements import MetaCommand, split
from tests.conftest import POSTGRES_ENV, without_role_warning

# The migration lock lab. PostgreSQL: A's open read holds ACCESS SHARE on accounts, B's ALTER
# queues for ACCESS EXCLUSIVE behind it, and every SELECT of T queues behind B. SQLite: A holds
# the database's one write lock for the whole traffic window, so T's writes wait (and end
# SQLITE_BUSY at the busy timeout).
LAB = {
    "postgres": """\
CREATE TABLE accounts (id int PRIMARY KEY, balance int);
INSERT INTO accounts VALUES (1, 100);
BEGIN;
SELECT count(*) FROM accounts;
\\session B
\\background
ALTER TABLE accounts ADD COLUMN note text;
\\traffic T every 50ms for 600ms: SELECT balance FROM accounts
  WHERE id = 1;
\\traffic T wait
\\session A
COMMIT;
""",
    "sqlite": """\
CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER);
INSERT INTO accounts VALUES (1, 100), (2, 50);
BEGIN IMMEDIATE;
UPDATE accounts SET balance = balance - 10 WHERE id = 1;
\\traffic T every 50ms for 600ms: UPDATE accounts SET balance = balance + 1 WHERE id = 2;
\\traffic T wait
COMMIT;
""",
}


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    try:
        code = main(list(args))
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, without_role_warning(captured.err)


def engine_args(engine: str) -> list[str]:
    if engine == "sqlite":
        return ["--engine", "sqlite"]
    return ["--engine", "postgres", "--url", os.environ[POSTGRES_ENV]]


def run_json(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, engine: str, script: str
) -> dict[str, Any]:
    path = tmp_path / "lab.sql"
    path.write_text(script, encoding="utf-8")
    code, out, err = cli(capsys, "run", str(path), *engine_args(engine), "--format", "json")
    assert code == 0, (out, err)
    document: dict[str, Any] = json.loads(out)
    return document


def test_the_statement_after_the_colon_is_carried_to_its_semicolon() -> None:
    text = "\\traffic T every 50ms for 3s: SELECT ';'\n  FROM t;\nSELECT 2;\n\\traffic T stop"
    items = split(text)
    command = items[0]
    assert isinstance(command, MetaCommand)
    assert command.args == ("T", "every", "50ms", "for", "3s")
    assert command.sql == "SELECT ';'\n  FROM t"
    assert [type(i).__name__ for i in items] == ["MetaCommand", "Statement", "MetaCommand"]
    last = items[2]
    assert isinstance(last, MetaCommand) and last.args == ("T", "stop") and not last.sql


@pytest.mark.parametrize(
    ("line", "fragment"),
    [
        ("\\traffic T every 5ms for 1s: SELECT 1;", "at least 10 ms"),
        ("\\traffic T every 50ms for 61s: SELECT 1;", "at most 60 s"),
        ("\\traffic T every 50ms for 2m: SELECT 1;", "'2m' is not a duration"),
        ("\\traffic T every 50ms for 1s: BEGIN;", "cannot send BEGIN"),
        ("\\traffic T every 50ms for 1s:", "needs a statement"),
        ("\\traffic T often: SELECT 1;", "write it as"),
        ("\\traffic T wait", "no \\traffic T was started"),
        ("\\traffic T every 50ms for 1s: SELECT 1;\n\\traffic T go", "say wait or stop"),
        ("\\traffic A every 50ms for 1s: SELECT 1;", "A is one of the script's sessions"),
    ],
)
def test_a_bad_traffic_line_is_a_one_line_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, line: str, fragment: str
) -> None:
    path = tmp_path / "bad.sql"
    path.write_text(line + "\n", encoding="utf-8")
    code, out, err = cli(capsys, "run", str(path))
    assert code == 2, (out, err)
    assert out == ""
    assert len(err.splitlines()) == 1 and "Traceback" not in err, err
    assert fragment in err and "bad.sql:" in err


def test_traffic_waits_behind_the_lock_and_the_report_counts_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, engine: str
) -> None:
    report = run_json(capsys, tmp_path, engine, LAB[engine])
    sent = [s for s in report["statements"] if s.get("traffic") == "T"]
    assert sent, "traffic sent nothing"
    # Real executions on T's own lane, recorded as they happened.
    assert all(s["session"] == "T" and s["meta"] is None for s in sent)
    lanes = {e["statement"]: e["session"] for e in report["timeline"] if e.get("statement")}
    assert all(lanes[s["index"]] == "T" for s in sent)
    waits = [
        e
        for e in report["timeline"]
        if e["kind"] == "lock_wait" and e["statement"] in {s["index"] for s in sent}
    ]
    assert waits, "no traffic statement was seen waiting"
    [summary] = report["traffic"]
    assert summary["session"] == "T"
    assert summary["sent"] == len(sent)
    assert summary["waited"] >= 1
    assert summary["waited"] == sum(1 for s in sent if s["waited"])
    assert summary["longest_wait_ms"] > 0
    assert summary["errors"] == sum(1 for s in sent if s["status"] == "error")
    if engine == "sqlite":
        assert summary["errors"] >= 1  # SQLITE_BUSY when the busy timeout ends the wait
        assert summary["first_error"].startswith("SQLITE_BUSY")
    else:
        assert summary["errors"] == 0  # granted once A commits and B's ALTER is done
    # The `\traffic` lines are steps of the script where they were written.
    metas = [s for s in report["statements"] if s["meta"] == "traffic"]
    assert [m["sql"].split()[:2] for m in metas] == [["\\traffic", "T"], ["\\traffic", "T"]]
    assert all(m["session"] == ("A" if engine == "sqlite" else "B") for m in metas)
    # Never more than one in flight: each statement is sent after the previous one ended.
    order = [(e["kind"], e["statement"]) for e in report["timeline"]]
    for before, after in itertools.pairwise(sent):
        ended = max(i for i, (k, s) in enumerate(order) if s == before["index"] and k != "notice")
        began = order.index(("statement", after["index"]))
        assert ended < began


def test_the_text_report_sums_traffic_up(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "lab.sql"
    path.write_text(LAB["sqlite"], encoding="utf-8")
    code, out, err = cli(capsys, "run", str(path))
    assert code == 0, err
    head, _, rest = out.partition("\ntraffic\n")
    assert "\\traffic T every 50ms for 600ms" in head
    # Not one entry per traffic statement: a summary.
    assert "[T]" not in head
    summary = rest.splitlines()[0]
    assert summary.startswith("  traffic T: ") and "waited on a lock, longest wait" in summary


def test_stop_ends_traffic_and_nothing_is_left_behind(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, engine: str
) -> None:
    script = """\
CREATE TABLE t (id int PRIMARY KEY);
\\traffic T every 20ms for 60s: SELECT count(*) FROM t;
\\traffic T stop
SELECT 1;
"""
    report = run_json(capsys, tmp_path, engine, script)
    notes = [e["message"] for e in report["timeline"] if e["session"] == "T"]
    assert any(n.startswith("traffic T stopped:") for n in notes), notes
    assert any(e["kind"] == "session_closed" for e in report["timeline"] if e["session"] == "T")
    assert not [t for t in threading.enumerate() if t.name.startswith("traffic-")]


def test_exports_carry_the_traffic_line_not_its_statements(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, engine: str
) -> None:
    path = tmp_path / "lab.sql"
    path.write_text(LAB[engine], encoding="utf-8")
    exports = [str(tmp_path / f"out.{ext}") for ext in ("sql", "json", "md")]
    flags = [f for e in exports for f in ("--export", e)]
    code, out, err = cli(capsys, "run", str(path), *engine_args(engine), *flags)
    assert code == 0, err
    replay = (tmp_path / "out.sql").read_text(encoding="utf-8")
    starts = [line for line in replay.splitlines() if line.startswith("\\traffic T every")]
    assert starts == [
        "\\traffic T every 50ms for 600ms: SELECT balance FROM accounts"
        if engine == "postgres"
        else "\\traffic T every 50ms for 600ms: UPDATE accounts SET balance = balance + 1 "
        "WHERE id = 2;"
    ]
    assert "\\traffic T wait" in replay.splitlines()
    assert "\\session T" not in replay  # its statements are the line's, not the script's
    timeline = json.loads((tmp_path / "out.json").read_text(encoding="utf-8"))
    assert timeline["traffic"][0]["session"] == "T" and timeline["traffic"][0]["waited"] >= 1
    runbook = (tmp_path / "out.md").read_text(encoding="utf-8")
    assert "- traffic T: " in runbook and "**T**" not in runbook
    # The replay plays the traffic again: the same lock queue forms.
    code, out, err = cli(
        capsys, "run", str(tmp_path / "out.sql"), *engine_args(engine), "--format", "json"
    )
    assert code == 0, err
    [summary] = json.loads(out)["traffic"]
    assert summary["session"] == "T" and summary["waited"] >= 1


# The lab as a scenario: traffic starts before the migration's step and the blocker's COMMIT
# waits for the traffic's duration, so every traffic statement sent after the ALTER queued
# waits (PostgreSQL), or every write waits for A's write lock (SQLite).
SCENARIO = """\
id = "{id}"
title = "A migration's lock queue"
summary = "A long transaction holds a lock, and every request queues behind it."
difficulty = "intermediate"
tags = ["locks"]
engines = ["{engine}"]
engine_note = "each engine queues differently"
story = "A report holds a lock while a migration runs."
task = "Let the queue drain."
hints = ["COMMIT the report's transaction."]

[[sessions]]
name = "A"
[[sessions]]
name = "B"
[[sessions]]
name = "T"

[setup]
sql = \"\"\"
CREATE TABLE accounts (id int PRIMARY KEY, balance int);
INSERT INTO accounts VALUES (1, 100), (2, 50);
\"\"\"

[[traffic]]
session = "T"
sql = "{traffic}"
every_ms = 50
for_ms = 600
before_step = 3
wait_before_step = 4

[[breakage]]
session = "A"
sql = "{begin}"

[[breakage]]
session = "A"
sql = "{hold}"

[[breakage]]
session = "B"
sql = "{queued}"
background = true

[[breakage]]
session = "A"
sql = "COMMIT"

[[solution]]
session = "A"
sql = "SELECT 1"

[[checks]]
name = "the data is there"
sql = "SELECT count(*) FROM accounts"
expect = [[2]]
"""
SCENARIO_SQL = {
    "postgres": {
        "traffic": "SELECT balance FROM accounts WHERE id = 1",
        "begin": "BEGIN",
        "hold": "SELECT count(*) FROM accounts",
        "queued": "ALTER TABLE accounts ADD COLUMN note text",
    },
    "sqlite": {
        "traffic": "UPDATE accounts SET balance = balance + 1 WHERE id = 2",
        "begin": "BEGIN IMMEDIATE",
        "hold": "UPDATE accounts SET balance = balance - 10 WHERE id = 1",
        "queued": "SELECT count(*) FROM accounts",
    },
}


def scenario_file(tmp_path: Path, engine: str, name: str = "traffic-lab", **changes: str) -> Path:
    text = SCENARIO.format(id=name, engine=engine, **SCENARIO_SQL[engine])
    for old, new in changes.items():
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / f"{name}.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_a_scenario_plays_its_traffic_in_the_breakage(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, engine: str
) -> None:
    path = scenario_file(tmp_path, engine)
    replay = tmp_path / "replay.sql"
    code, out, err = cli(
        capsys, "run", str(path), *engine_args(engine), "--format", "json",
        "--export", str(replay),
    )  # fmt: skip
    assert code == 0, (out, err)
    report = json.loads(out)
    [summary] = report["traffic"]
    assert summary["session"] == "T" and summary["sent"] >= 1 and summary["waited"] >= 1
    sent = [s for s in report["statements"] if s.get("traffic") == "T"]
    assert len(sent) == summary["sent"]
    # The traffic started before the third step and the fourth (COMMIT) waited for its end:
    # the `\traffic` lines are recorded there, and the replay says the same.
    steps = [(s["meta"], s["sql"].split()[0]) for s in report["statements"] if not s.get("traffic")]
    assert steps == [
        (None, SCENARIO_SQL[engine]["begin"].split()[0]),
        (None, SCENARIO_SQL[engine]["hold"].split()[0]),
        ("traffic", "\\traffic"),
        (None, SCENARIO_SQL[engine]["queued"].split()[0]),
        ("traffic", "\\traffic"),
        (None, "COMMIT"),
    ]
    lines = replay.read_text(encoding="utf-8").splitlines()
    start = lines.index(f"\\traffic T every 50ms for 600ms: {SCENARIO_SQL[engine]['traffic']};")
    assert lines.index("\\traffic T wait") > start
    assert lines.index("\\traffic T wait") < lines.index("COMMIT;")


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            "every_ms = 50",
            "every_ms = 5",
            "traffic[0].every_ms: must be a whole number of ms from 10",
        ),
        (
            "for_ms = 600",
            "for_ms = 61000",
            "traffic[0].for_ms: must be a whole number of ms from 1 to 60000",
        ),
        ('session = "T"\nsql', 'session = "X"\nsql', "traffic[0].session: unknown session 'X'"),
        ('session = "B"', 'session = "T"', "traffic needs a session of its own"),
        ("before_step = 3", "before_step = 9", "traffic[0].before_step: must be a breakage step's"),
        ("wait_before_step = 4", "wait_before_step = 2", "must come after the step the traffic"),
        ("every_ms = 50", "every_ms = 50\nrate = 3", "traffic[0].rate: unknown key"),
        ("for_ms = 600\n", "", "traffic[0].for_ms: missing"),
    ],
)
def test_bad_traffic_in_a_scenario_is_named(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, old: str, new: str, message: str
) -> None:
    path = scenario_file(tmp_path, "sqlite", **{old: new})
    code, out, err = cli(capsys, "validate", str(path))
    assert code == 1, (out, err)
    assert message in out + err
    assert "Traceback" not in out + err
    code, out, err = cli(capsys, "run", str(path))
    assert code == 2 and len(err.splitlines()) == 1 and message in err, err


def test_grading_leaves_traffic_out_of_the_learners_part(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from sandbox.scenario.grading import attempt_from_json, attempt_from_script
    from sandbox.scenario.loader import load

    path = scenario_file(tmp_path, "sqlite")
    exports = [tmp_path / "out.sql", tmp_path / "out.json"]
    code, _out, err = cli(
        capsys, "run", str(path), "--solution", *[f for e in exports for f in ("--export", str(e))]
    )
    assert code == 0, err
    scenario = load(path)
    script = exports[0].read_text(encoding="utf-8")
    from_script = attempt_from_script(script, scenario, "sqlite", "out.sql")
    document = json.loads(exports[1].read_text(encoding="utf-8"))
    from_json = attempt_from_json(document, scenario)
    # The breakage, its `\traffic` lines included, is recognised and passed over; only the
    # solution's statement is the learner's.
    for attempt in (from_script, from_json):
        assert [(s.session, s.sql.rstrip(";")) for s in attempt.steps] == [("A", "SELECT 1")]


def test_traffic_the_guard_stops_stops_the_script(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "delete.sql"
    path.write_text(
        "CREATE TABLE t (id int);\n"
        "\\traffic T every 20ms for 1s: DELETE FROM t;\n"
        "INSERT INTO t VALUES (1);\n",
        encoding="utf-8",
    )
    code, out, err = cli(capsys, "run", str(path), "--format", "json")
    assert code == 3, err
    report = json.loads(out)
    stopped = report["statements"][report["stopped"]]
    assert stopped["traffic"] == "T" and stopped["status"] == "blocked"
    assert report["traffic"][0]["blocked"] == 1 and report["traffic"][0]["sent"] == 0
    assert not any(s["sql"].startswith("INSERT") for s in report["statements"])
    # Confirmed with --yes, it runs for its whole duration.
    code, out, err = cli(capsys, "run", str(path), "--format", "json", "--yes")
    assert code == 0, err
    [summary] = json.loads(out)["traffic"]
    assert summary["sent"] >= 1 and summary["blocked"] == 0


def test_the_run_waits_for_traffic_to_finish_its_duration(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, engine: str
) -> None:
    # The script's last line comes long before the traffic's end: the run lets it finish.
    report = run_json(capsys, tmp_path, engine, "\\traffic T every 20ms for 300ms: SELECT 1;\n")
    events = [(e["session"], e["kind"], e["message"]) for e in report["timeline"]]
    over = next(i for i, e in enumerate(events) if e[2].startswith("traffic T over:"))
    closed = [i for i, e in enumerate(events) if e[1] == "session_closed"]
    assert closed and over < min(closed)
    [summary] = report["traffic"]
    assert summary["sent"] >= 1 and summary["errors"] == 0 and summary["unfinished"] == 0
