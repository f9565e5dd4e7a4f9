"""Observed locks (issue 15, item 1): what a PostgreSQL statement leaves its session holding,
what it rewrote, and the queue a waiting statement stands in, in `dbsandbox run`'s JSON and
text, on the timeline and in the exports.

Everything runs through the `dbsandbox` command on the real server; the words are checked on
their own too, without one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from sandbox.locks import HeldLock, QueuePlace, Rewrite, held_summary, rewrites_summary, wait_words
from tests.test_export import cli, engine_args, run_json

SETUP = """CREATE TABLE accounts (id int PRIMARY KEY, n int, note text);
CREATE INDEX accounts_note ON accounts (note);
INSERT INTO accounts VALUES (1, 1, 'a'), (2, 2, 'b');
"""

# The classic queue: A's long read holds AccessShareLock; B's ALTER TABLE wants
# AccessExclusiveLock and waits for A; C's plain SELECT does not conflict with A at all, yet
# waits, behind B, because PostgreSQL grants a lock's requests in order.
QUEUE = (
    SETUP
    + """\\session A
BEGIN;
SELECT * FROM accounts;
\\session B
\\background
ALTER TABLE accounts ADD COLUMN x int;
\\session C
\\background
SELECT * FROM accounts;
\\session A
COMMIT;
"""
)


def write(tmp_path: Path, text: str, name: str = "script.sql") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def statement(report: dict[str, Any], sql_start: str, session: str = "A") -> dict[str, Any]:
    found = [
        s
        for s in report["statements"]
        if s["sql"].startswith(sql_start) and s["session"] == session
    ]
    assert len(found) == 1, [s["sql"] for s in report["statements"]]
    one: dict[str, Any] = found[0]
    return one


def events(report: dict[str, Any], kind: str, session: str | None = None) -> list[dict[str, Any]]:
    return [
        e
        for e in report["timeline"]
        if e["kind"] == kind and (session is None or e["session"] == session)
    ]


def modes_on(locks: list[dict[str, Any]], relation: str) -> set[str]:
    return {lock["mode"] for lock in locks if lock["relation"] == relation}


# --------------------------------------------------------------------------- PostgreSQL


def test_alter_column_type_in_a_transaction_holds_access_exclusive_and_rewrites(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, postgres_url: str
) -> None:
    script = write(
        tmp_path,
        SETUP
        + """BEGIN;
ALTER TABLE accounts ALTER COLUMN n TYPE bigint;
COMMIT;
""",
    )
    report, _ = run_json(capsys, str(script), *engine_args("postgres"))
    alter = statement(report, "ALTER TABLE")
    # Read on the watcher's connection right after the ALTER, while its transaction is open.
    assert "AccessExclusiveLock" in modes_on(alter["locks"], "accounts")
    kinds = {lock["relation"]: lock["kind"] for lock in alter["locks"] if lock["relation"]}
    assert kinds["accounts"] == "table"
    assert kinds["accounts_pkey"] == "index"
    assert all(lock["relation"] != "pg_class" for lock in alter["locks"])  # no catalog noise
    # The new relfilenode is the transaction's own until COMMIT: it is seen then.
    (table,) = [r for r in alter["rewrites"] if r["relation"] == "accounts"]
    assert table["kind"] == "table" and table["seen"] == "commit"
    assert isinstance(table["before"], int) and table["after"] != table["before"]
    assert {r["relation"] for r in alter["rewrites"]} >= {"accounts", "accounts_pkey"}

    held = [e for e in events(report, "locks", "A") if e["statement"] == alter["index"]]
    assert len(held) == 1
    assert held[0]["message"].startswith("holds ")
    assert "AccessExclusiveLock on accounts (and its 2 indexes" in held[0]["message"]
    commit = statement(report, "COMMIT")
    assert commit["locks"] == []  # a committed transaction holds nothing
    (at_commit,) = [e for e in events(report, "locks", "A") if e["statement"] == commit["index"]]
    assert "released its locks at COMMIT" in at_commit["message"]
    assert "rewrote accounts (relfilenode " in at_commit["message"]
    assert at_commit["data"]["rewritten_by"] == [alter["index"]]


def test_add_column_rewrites_nothing_and_vacuum_full_does_at_once(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, postgres_url: str
) -> None:
    script = write(
        tmp_path,
        SETUP
        + """BEGIN;
ALTER TABLE accounts ADD COLUMN c int;
COMMIT;
UPDATE accounts SET n = 5 WHERE id = 1;
VACUUM FULL accounts;
""",
    )
    report, _ = run_json(capsys, str(script), *engine_args("postgres"))
    add = statement(report, "ALTER TABLE")
    assert modes_on(add["locks"], "accounts") == {"AccessExclusiveLock"}
    assert add["rewrites"] == []
    before_vacuum = [e for e in events(report, "locks") if e["statement"] <= add["index"] + 1]
    assert before_vacuum and not any("rewrote" in e["message"] for e in before_vacuum)
    # In autocommit the statement's locks went with it: it holds none afterwards.
    update = statement(report, "UPDATE")
    assert update["locks"] == [] and update["rewrites"] == []
    assert not [e for e in events(report, "locks") if e["statement"] == update["index"]]
    vacuum = statement(report, "VACUUM")
    assert vacuum["locks"] == []
    rewritten = {r["relation"]: r for r in vacuum["rewrites"]}
    assert set(rewritten) == {"accounts", "accounts_pkey", "accounts_note"}
    assert rewritten["accounts"]["seen"] == "statement"
    assert rewritten["accounts_note"]["table"] == "accounts"
    (said,) = [e for e in events(report, "locks") if e["statement"] == vacuum["index"]]
    assert said["message"].startswith("rewrote accounts (relfilenode ")
    assert "and its indexes" in said["message"]


def test_a_select_queued_behind_a_waiting_alter_shows_the_queue_and_wait_times(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, postgres_url: str
) -> None:
    script = write(tmp_path, QUEUE)
    report, _ = run_json(capsys, str(script), *engine_args("postgres"))
    alter = statement(report, "ALTER TABLE", "B")
    select = statement(report, "SELECT", "C")
    assert alter["status"] == select["status"] == "ok"

    (b_wait,) = alter["waits"]
    assert b_wait["blocked_by"] == ["A"]
    assert b_wait["lock"] == "AccessExclusiveLock on table accounts"
    assert b_wait["queue"] == [
        {"session": "A", "holds": ["AccessShareLock"], "wants": None, "waits_for": []}
    ]
    (c_wait,) = select["waits"]
    assert c_wait["blocked_by"] == ["B"]  # not A: C does not conflict with A's lock
    assert c_wait["lock"] == "AccessShareLock on table accounts"
    assert c_wait["described"][0].startswith("a lock, queued behind B, who waits for A")
    # Once A commits, B holds the lock for the moment its ALTER runs: the watcher may see C
    # wait for B the holder then (a second event of the same wait), or C may be done first.
    assert len(c_wait["described"]) in (1, 2)
    for wait in (b_wait, c_wait):
        assert isinstance(wait["waited_ms"], int | float) and wait["waited_ms"] >= 0
        assert wait["started_ms"] <= wait["ended_ms"]

    c_event = events(report, "lock_wait", "C")[0]
    assert "queued behind B, who waits for A" in c_event["message"]
    assert c_event["data"]["queue"] == [
        {"session": "B", "holds": [], "wants": "AccessExclusiveLock", "waits_for": ["A"]}
    ]
    (b_event,) = events(report, "lock_wait", "B")
    assert "held by A" in b_event["message"] and "A holds AccessShareLock" in b_event["message"]
    (c_over,) = events(report, "lock_released", "C")
    assert c_over["data"]["waited_ms"] >= 0

    code, text, _ = cli(capsys, "run", str(script), *engine_args("postgres"))
    assert code == 0
    assert "ms for a lock, queued behind B, who waits for A" in text
    assert "ms for a lock held by A (AccessExclusiveLock on table accounts" in text
    assert "then held AccessShareLock on accounts (and its 2 indexes)" in text


def test_when_the_waiter_ahead_gets_the_lock_the_queued_statement_says_it_holds_it(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, postgres_url: str
) -> None:
    # B's ALTER runs in a transaction: once A commits, B holds AccessExclusiveLock until its
    # own COMMIT, and C, still waiting, now waits for a holder, not behind a waiter.
    script = write(
        tmp_path,
        SETUP
        + """\\session A
BEGIN;
SELECT * FROM accounts;
\\session B
BEGIN;
\\background
ALTER TABLE accounts ADD COLUMN x int;
\\session C
\\background
SELECT * FROM accounts;
\\session A
COMMIT;
\\session B
COMMIT;
""",
    )
    report, _ = run_json(capsys, str(script), *engine_args("postgres"))
    select = statement(report, "SELECT", "C")
    (wait,) = select["waits"]  # one wait, whose queue moved on
    assert wait["queue"] == [
        {"session": "B", "holds": ["AccessExclusiveLock"], "wants": None, "waits_for": []}
    ]
    first, last = wait["described"]
    assert first.startswith("a lock, queued behind B, who waits for A")
    assert last.startswith("a lock held by B")
    said = [e["message"] for e in events(report, "lock_wait", "C")]
    assert len(said) == 2 and "B holds AccessExclusiveLock" in said[1]
    alter = statement(report, "ALTER TABLE", "B")
    assert modes_on(alter["locks"], "accounts") == {"AccessExclusiveLock"}


def test_exports_carry_the_locks_the_rewrites_and_the_queue(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, postgres_url: str
) -> None:
    script = write(
        tmp_path,
        QUEUE
        + """BEGIN;
ALTER TABLE accounts ALTER COLUMN n TYPE bigint;
COMMIT;
""",
    )
    base = tmp_path / "out"
    code, _, err = cli(capsys, "run", str(script), *engine_args("postgres"), "--export", str(base))
    assert code == 0, err
    document = json.loads(base.with_suffix(".json").read_text(encoding="utf-8"))
    alter = next(s for s in document["statements"] if "TYPE bigint" in s["sql"])
    assert "AccessExclusiveLock" in modes_on(alter["locks"], "accounts")
    assert any(r["relation"] == "accounts" for r in alter["rewrites"])
    select = statement(document, "SELECT", "C")
    assert select["waits"][0]["described"][0].startswith("a lock, queued behind B")
    assert any(e["kind"] == "locks" for e in document["timeline"])

    markdown = base.with_suffix(".md").read_text(encoding="utf-8")
    assert "queued behind B, who waits for A" in markdown
    assert "then held ShareLock + AccessExclusiveLock on accounts" in markdown
    assert "rewrote accounts (relfilenode " in markdown


# --------------------------------------------------------------------------- SQLite


def test_sqlite_has_no_locks_to_show_and_nothing_breaks(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    script = write(
        tmp_path,
        """CREATE TABLE t (id INTEGER PRIMARY KEY, n INTEGER);
INSERT INTO t VALUES (1, 1);
BEGIN;
UPDATE t SET n = 2 WHERE id = 1;
\\session B
\\background
UPDATE t SET n = 3 WHERE id = 1;
\\session A
COMMIT;
VACUUM;
""",
    )
    report, _ = run_json(capsys, str(script), *engine_args("sqlite"))
    assert all(s["locks"] == [] and s["rewrites"] == [] for s in report["statements"])
    assert events(report, "locks") == []
    waiting = statement(report, "UPDATE t SET n = 3", "B")
    (wait,) = waiting["waits"]
    assert wait["blocked_by"] == ["A"] and wait["queue"] == []
    assert wait["waited_ms"] >= 0


# --------------------------------------------------------------------------- the words


def test_held_locks_are_said_per_table_with_its_indexes() -> None:
    locks = [
        HeldLock("accounts", "RowExclusiveLock", "table"),
        HeldLock("accounts", "AccessShareLock", "table"),
        HeldLock("accounts_pkey", "RowExclusiveLock", "index", "accounts"),
        HeldLock("accounts_note", "AccessShareLock", "index", "accounts"),
        HeldLock("ids", "RowExclusiveLock", "sequence"),
        HeldLock(None, "AccessExclusiveLock", "new", oid=1234),
    ]
    assert held_summary(locks) == (
        "AccessShareLock + RowExclusiveLock on accounts (and its 2 indexes); "
        "RowExclusiveLock on sequence ids; "
        "1 new relation only its transaction sees before COMMIT"
    )
    only_index = [HeldLock("accounts_pkey", "AccessShareLock", "index", "accounts")]
    assert held_summary(only_index) == "AccessShareLock on index accounts_pkey of accounts"


def test_rewrites_name_the_table_and_its_indexes() -> None:
    rewrites = [
        Rewrite("accounts", "table", 16390, 16412),
        Rewrite("accounts_pkey", "index", 16393, 16415, "accounts"),
    ]
    assert rewrites_summary(rewrites) == (
        "accounts (relfilenode 16390 → 16412) and its index accounts_pkey"
    )


def test_a_wait_says_whom_it_queues_behind() -> None:
    lock = "AccessShareLock on table t"
    behind = [QueuePlace("B", wants="AccessExclusiveLock", waits_for=("A",))]
    assert wait_words("a lock", ["B"], lock, behind) == (
        "a lock, queued behind B, who waits for A "
        "(AccessShareLock on table t; B wants AccessExclusiveLock)"
    )
    held = [QueuePlace("A", holds=("AccessShareLock",))]
    assert wait_words("a lock", ["A"], "AccessExclusiveLock on table t", held) == (
        "a lock held by A (AccessExclusiveLock on table t; A holds AccessShareLock)"
    )
    # Without a queue (SQLite, a safe snapshot) the words are as they always were.
    assert wait_words("a lock", ["A"], None, []) == "a lock held by A"


# --------------------------------------------------------------------------- the app


async def test_the_timeline_pane_shows_held_locks_in_the_sessions_lane(
    tmp_path: Path, postgres_url: str
) -> None:
    from sandbox.ui.widgets.timeline import TimelineView
    from tests.conftest import run_script
    from tests.test_ui_timeline import TimelineApp

    result = run_script("postgres", QUEUE)
    app = TimelineApp()
    async with app.run_test(size=(200, 60)) as pilot:
        view = app.query_one(TimelineView)
        for event in result.timeline:
            view.add_event(event)
        await pilot.pause()
        lines = view.lines()
        held = [line for line in lines if "holds AccessShareLock on accounts" in line]
        assert len(held) == 1 and "▣" in held[0] and " A  " in held[0]
        assert any("▣" in line and "released its locks at COMMIT" in line for line in lines)
        queued = [line for line in lines if "queued behind B, who waits for A" in line]
        assert queued and all(" C  " in line for line in queued)
