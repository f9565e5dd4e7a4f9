"""TransactionTracker on timelines from real runs: spans, savepoints, failures, waits, counts.

Every timeline here comes from a real sandbox (SQLite, and PostgreSQL when the test server is
there), so the tracker is checked against the events the conductor really emits, in the order
it really emits them. Scripts mark lines with `-- @name`; `state_after` replays the timeline up
to the point where that line's statement and its consequences are recorded.
"""

from __future__ import annotations

import re

from sandbox.runner import RunResult
from sandbox.timeline import Event, EventKind
from sandbox.transactions import TransactionSpan, TransactionTracker, first_keyword
from tests.conftest import run_script

SETUP = """\
CREATE TABLE acct (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
INSERT INTO acct VALUES (1, 100), (2, 100);
"""

_NEXT_STEP = frozenset({EventKind.STATEMENT, EventKind.CANCELLED, EventKind.SESSION_CLOSED})


class Replay:
    """A real run's timeline, replayable up to any marked script line."""

    def __init__(self, engine: str, script: str, **options: float) -> None:
        self.script = SETUP + script
        self.result: RunResult = run_script(engine, self.script, **options)  # type: ignore[arg-type]
        self.events: list[Event] = self.result.timeline

    def line_of(self, marker: str) -> int:
        lines = [n for n, text in enumerate(self.script.splitlines(), 1) if f"-- @{marker}" in text]
        assert len(lines) == 1, f"marker {marker!r} is on {len(lines)} lines"
        return lines[0]

    def state_after(self, marker: str) -> TransactionTracker:
        """The tracker fed with the marked statement's events, stopping before whatever comes
        next: the next statement sent, or the end of the script (a cancel, a session closing)."""
        line = self.line_of(marker)
        tracker = TransactionTracker()
        seen = False
        for event in self.events:
            if seen and event.kind in _NEXT_STEP:
                return tracker
            if event.kind is EventKind.STATEMENT:
                seen = event.data.get("line") == line
            tracker.feed(event)
        assert seen, f"no statement was sent from line {line}"
        return tracker

    def final(self) -> TransactionTracker:
        tracker = TransactionTracker()
        for event in self.events:
            tracker.feed(event)
        return tracker


def only_span(tracker: TransactionTracker, session: str = "A") -> TransactionSpan:
    spans = tracker.spans(session)
    assert len(spans) == 1, spans
    return spans[0]


def test_commit_closes_the_span_with_its_statements(engine: str) -> None:
    replay = Replay(
        engine,
        """\
BEGIN;
UPDATE acct SET balance = 90 WHERE id = 1; -- @first
UPDATE acct SET balance = 110 WHERE id = 2;
COMMIT; -- @commit
SELECT balance FROM acct WHERE id = 1;
""",
    )
    during = replay.state_after("first")
    span = during.open_span("A")
    assert span is not None and span.state == "open" and span.ended is None
    assert span.statements == ["BEGIN", "UPDATE acct SET balance = 90 WHERE id = 1"]
    assert during.uncommitted("A") == 2

    after = replay.state_after("commit")
    span = only_span(after)
    assert span.state == "committed" and not span.is_open
    assert span.ended is not None and span.ended >= span.started
    assert span.ended_by == "COMMIT"
    # The ending COMMIT is not one of the statements the transaction ran.
    assert span.statements[-1] == "UPDATE acct SET balance = 110 WHERE id = 2"
    assert len(span.statements) == 3
    assert after.open_span("A") is None and after.uncommitted("A") == 0

    final = replay.final()
    assert final.sessions == ["A"]
    assert only_span(final).state == "committed"  # the SELECT after it autocommits: no span
    assert final.is_closed("A")


def test_rollback_and_savepoints(engine: str) -> None:
    replay = Replay(
        engine,
        """\
BEGIN;
UPDATE acct SET balance = 1 WHERE id = 1;
SAVEPOINT sp1;
UPDATE acct SET balance = 2 WHERE id = 1;
SAVEPOINT sp2;
SAVEPOINT sp3; -- @three
ROLLBACK TO sp2; -- @back
ROLLBACK TO SAVEPOINT sp1; -- @further
SAVEPOINT sp4; -- @again
RELEASE sp1; -- @released
ROLLBACK; -- @end
""",
    )

    def alive(marker: str) -> list[str]:
        span = replay.state_after(marker).open_span("A")
        assert span is not None and span.state == "open"
        return span.savepoints

    assert alive("three") == ["sp1", "sp2", "sp3"]
    # ROLLBACK TO keeps its target and drops the savepoints set after it.
    assert alive("back") == ["sp1", "sp2"]
    assert alive("further") == ["sp1"]
    assert alive("again") == ["sp1", "sp4"]
    # RELEASE drops the savepoint and every later one.
    assert alive("released") == []

    span = only_span(replay.state_after("end"))
    assert span.state == "rolled_back" and not span.commit_refused
    assert span.ended_by == "ROLLBACK" and span.savepoints == []
    assert span.end_reason is not None and span.end_reason.startswith("rolled back")
    assert len(span.statements) == 10  # BEGIN .. RELEASE: what the ROLLBACK discarded


def test_sqlite_savepoint_outside_a_transaction_opens_one_and_release_commits() -> None:
    replay = Replay(
        "sqlite",
        """\
SAVEPOINT outer_sp; -- @open
UPDATE acct SET balance = 5 WHERE id = 1;
RELEASE outer_sp; -- @release
""",
    )
    span = replay.state_after("open").open_span("A")
    assert span is not None
    assert span.statements == ["SAVEPOINT outer_sp"] and span.savepoints == ["outer_sp"]

    span = only_span(replay.state_after("release"))
    assert span.state == "committed" and span.ended_by == "RELEASE outer_sp"
    assert span.statements == ["SAVEPOINT outer_sp", "UPDATE acct SET balance = 5 WHERE id = 1"]


def test_sqlite_error_leaves_the_transaction_open_and_working() -> None:
    replay = Replay(
        "sqlite",
        """\
BEGIN;
INSERT INTO acct VALUES (1, 0); -- @dup
UPDATE acct SET balance = 7 WHERE id = 2;
COMMIT; -- @commit
""",
    )
    span = replay.state_after("dup").open_span("A")
    assert span is not None and span.state == "open" and span.failed_at is None
    assert replay.state_after("dup").uncommitted("A") == 2  # the failed INSERT ran inside too
    span = only_span(replay.state_after("commit"))
    assert span.state == "committed" and len(span.statements) == 3


def test_postgres_failed_transaction_and_commit_answered_rollback(postgres_url: str) -> None:
    replay = Replay(
        "postgres",
        """\
BEGIN;
UPDATE acct SET balance = 50 WHERE id = 1;
SELECT nosuchcol FROM acct; -- @fails
SELECT 1; -- @refused
COMMIT; -- @commit
""",
    )
    tracker = replay.state_after("fails")
    span = tracker.open_span("A")
    assert span is not None and span.state == "failed" and span.is_open
    assert span.failed_by == "SELECT nosuchcol FROM acct"
    assert span.failed_at is not None and span.failed_at >= span.started

    tracker = replay.state_after("refused")
    span = tracker.open_span("A")
    assert span is not None and span.state == "failed"
    assert tracker.uncommitted("A") == 4  # statements refused with 25P02 still ran inside

    span = only_span(replay.state_after("commit"))
    assert span.state == "rolled_back" and span.commit_refused
    assert span.ended_by == "COMMIT"
    assert span.end_reason is not None and span.end_reason.startswith("COMMIT answered ROLLBACK")


def test_postgres_rollback_to_savepoint_recovers_a_failed_transaction(postgres_url: str) -> None:
    replay = Replay(
        "postgres",
        """\
BEGIN;
SAVEPOINT before_risk;
SELECT nosuchcol FROM acct; -- @fails
ROLLBACK TO before_risk; -- @recovered
COMMIT; -- @commit
""",
    )
    failed = replay.state_after("fails").open_span("A")
    assert failed is not None and failed.state == "failed"
    recovered = replay.state_after("recovered").open_span("A")
    assert recovered is not None and recovered.state == "open"
    assert recovered.failed_by is None and recovered.savepoints == ["before_risk"]
    span = only_span(replay.state_after("commit"))
    assert span.state == "committed" and not span.commit_refused


def test_closing_a_session_rolls_back_its_open_transaction(engine: str) -> None:
    replay = Replay(
        engine,
        """\
BEGIN;
UPDATE acct SET balance = 0 WHERE id = 1;
UPDATE acct SET balance = 0 WHERE id = 2; -- @last
""",
    )
    assert replay.state_after("last").uncommitted("A") == 3
    tracker = replay.final()
    span = only_span(tracker)
    assert span.state == "rolled_back" and span.closed_by_session
    assert span.ended_by is None and not span.commit_refused
    assert span.end_reason is not None and "rolled back" in span.end_reason
    # The count the session itself reports on closing agrees with the tracker's.
    counted = re.search(r"(\d+) uncommitted statements?", span.end_reason)
    assert counted is not None and int(counted.group(1)) == len(span.statements) == 3
    assert tracker.open_span("A") is None and tracker.is_closed("A")


def test_lock_wait_between_two_sessions_and_its_release(engine: str) -> None:
    replay = Replay(
        engine,
        """\
\\session A
BEGIN;
UPDATE acct SET balance = 0 WHERE id = 1; -- @holds
\\session B
BEGIN;
UPDATE acct SET balance = 1 WHERE id = 1; -- @waits
\\session A
COMMIT; -- @lets-go
\\session B
COMMIT; -- @b-commits
""",
        busy_timeout_ms=5000,
    )
    tracker = replay.state_after("waits")
    assert tracker.sessions == ["A", "B"]
    wait = tracker.waiting("B")
    assert wait is not None and wait.blocked_by == ["A"] and wait.ended is None
    assert wait.sql == "UPDATE acct SET balance = 1 WHERE id = 1"
    assert tracker.waiting("A") is None
    span_b = tracker.open_span("B")
    assert span_b is not None and span_b.waits == [wait]
    # Both transactions are open; B's waiting UPDATE has not run yet, so it is not counted.
    assert (tracker.uncommitted("A"), tracker.uncommitted("B")) == (2, 1)

    tracker = replay.state_after("lets-go")
    assert tracker.waiting("B") is None
    assert only_span(tracker, "A").state == "committed"
    span_b = only_span(tracker, "B")
    assert span_b.is_open and tracker.uncommitted("B") == 2
    (done,) = span_b.waits
    assert done.ended is not None and done.ended >= done.started

    final = replay.final()
    assert [s.state for s in final.spans("B")] == ["committed"]


def test_sqlite_begin_immediate_wait_belongs_to_the_transaction_it_opens() -> None:
    replay = Replay(
        "sqlite",
        """\
\\session A
BEGIN IMMEDIATE;
\\session B
BEGIN IMMEDIATE; -- @b-waits
\\session A
COMMIT; -- @a-commits
\\session B
ROLLBACK;
""",
        busy_timeout_ms=5000,
    )
    waiting = replay.state_after("b-waits")
    assert waiting.open_span("B") is None  # the BEGIN has not got its lock yet
    wait = waiting.waiting("B")
    assert wait is not None and wait.blocked_by == ["A"]

    span = only_span(replay.state_after("a-commits"), "B")
    assert span.is_open and span.statements == ["BEGIN IMMEDIATE"]
    assert [w.statement for w in span.waits] == [wait.statement]


def test_a_wait_cancelled_at_the_end_is_over(engine: str) -> None:
    replay = Replay(
        engine,
        """\
\\session A
BEGIN;
UPDATE acct SET balance = 0 WHERE id = 1;
\\session B
UPDATE acct SET balance = 1 WHERE id = 1; -- @waits
""",
        # Longer than a person's pause: the script moves on while B still waits (a shorter
        # SQLite busy wait would be waited out and end in SQLITE_BUSY instead).
        busy_timeout_ms=1500,
        wait_timeout_s=0.2,
    )
    assert replay.state_after("waits").waiting("B") is not None
    final = replay.final()
    assert final.waiting("B") is None
    assert final.spans("B") == []  # an autocommit statement waits outside any transaction
    assert any(e.kind is EventKind.CANCELLED for e in replay.events)


def test_unknown_sessions_read_as_idle() -> None:
    tracker = TransactionTracker()
    assert tracker.sessions == [] and tracker.spans("Z") == []
    assert tracker.open_span("Z") is None and tracker.waiting("Z") is None
    assert tracker.uncommitted("Z") == 0 and not tracker.is_closed("Z")


def test_first_keyword_skips_comments() -> None:
    assert first_keyword("/* why */ commit;") == "COMMIT"
    assert first_keyword("-- note\nEND") == "END"
    assert first_keyword("") == ""
