"""What five concurrency scenarios claim beyond their reference solutions, proven on the engines.

The catalog tests play each scenario's breakage and reference solution. Two tasks also accept
another fix (write-skew-on-call: a FOR UPDATE read instead of SERIALIZABLE; overdraft-race: a
CHECK constraint instead of a conditional UPDATE): played here, on every dataset, they must
pass every check. Three scenarios run on PostgreSQL only because their engine notes say SQLite
cannot produce the anomaly: what SQLite does instead is played here too.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from sandbox.outcome import Status
from sandbox.runner import RunResult
from sandbox.scenario.catalog import catalog_files
from sandbox.scenario.loader import load
from sandbox.scenario.model import Expectation, PerEngine, Scenario, Step
from sandbox.scenario.player import ScenarioRun, play
from sandbox.targets import open_target
from tests.conftest import options_for, run_script


def scenario_file(scenario_id: str) -> Path:
    return next(p for p in catalog_files() if p.stem == scenario_id)


def datasets(scenario_id: str) -> list[Scenario]:
    """The scenario as the learner sees it, then on each of its hidden variants."""
    path = scenario_file(scenario_id)
    shown = load(path)
    return [shown, *(load(path, v.name) for v in shown.variants)]


def step(session: str, sql: str, **expect: object) -> Step:
    """A learner's statement; `expect` as a scenario step declares it (status, error, rows...).
    As in a scenario file, an error code implies status "error"."""
    if "error" in expect:
        expect.setdefault("status", "error")
    fields = {f.name: PerEngine(expect.get(f.name)) for f in dataclasses.fields(Expectation)}
    # A statement that must wait lets the next one play while it waits (`background`).
    waits = expect.get("waits") is True
    return Step(session, PerEngine(sql), Expectation(**fields), background=waits)


def played_with(scenario: Scenario, learner: list[Step]) -> ScenarioRun:
    with open_target(options_for("postgres")) as target:
        return play(dataclasses.replace(scenario, solution=tuple(learner)), target, solution=True)


def problems(run: ScenarioRun) -> list[str]:
    steps = [f"{s.step.sql.on(run.engine)!r}: {m}" for s in run.steps for m in s.mismatches]
    checks = [f"check failed: {c.check.name} ({c.actual})" for c in run.checks if not c.passed]
    return steps + checks


@pytest.mark.parametrize("index", [0, 1], ids=["shown", "variant"])
def test_write_skew_replayed_with_for_update_refuses_the_second_request(
    index: int, postgres_url: str
) -> None:
    scenario = datasets("write-skew-on-call")[index]
    ward = "SELECT id FROM doctors WHERE ward = 7 AND on_call FOR UPDATE"
    learner = [
        step("A", "UPDATE doctors SET on_call = true WHERE id IN (1, 2)", rowcount=2),
        step("A", "BEGIN"),
        step("A", ward, rows=[[1], [2]]),
        step("B", "BEGIN"),
        # B's locking read queues behind A's; once A has committed, B's REPEATABLE READ
        # snapshot is out of date and PostgreSQL refuses it instead of returning stale rows.
        step("B", ward, waits=True, error="40001"),
        step("A", "UPDATE doctors SET on_call = false WHERE id = 1", rowcount=1),
        step("A", "COMMIT", tag="COMMIT"),
        step("B", "ROLLBACK"),
        # The retry reads what A committed: one doctor left, so Bob's request stops here.
        step("B", "BEGIN"),
        step("B", ward, rows=[[2]]),
        step("B", "ROLLBACK"),
    ]
    assert problems(played_with(scenario, learner)) == []


@pytest.mark.parametrize("index", [0, 1], ids=["shown", "variant"])
def test_overdraft_fixed_with_a_check_constraint(index: int, postgres_url: str) -> None:
    scenario = datasets("overdraft-race")[index]
    learner = [
        step("A", "UPDATE accounts SET balance = balance + 60 WHERE id = 1", rowcount=1),
        step("A", "UPDATE payments SET status = 'declined' WHERE id = 2", rowcount=1),
        step("A", "ALTER TABLE accounts ADD CONSTRAINT no_overdraft CHECK (balance >= 0)"),
        # The constraint now refuses any debit the balance does not cover, whoever checks what.
        step("B", "UPDATE accounts SET balance = balance - 1000 WHERE id = 1", error="23514"),
        step("A", "UPDATE accounts SET balance = balance - 15 WHERE id = 1", rowcount=1),
        step("A", "UPDATE payments SET status = 'paid' WHERE id = 3", rowcount=1),
    ]
    assert problems(played_with(scenario, learner)) == []


def outcomes(result: RunResult) -> list[tuple[str, str, object]]:
    """(session, status, error code or rows) for each statement, in the order they ran."""
    found: list[tuple[str, str, object]] = []
    for e in result.executions:
        assert e.outcome is not None
        detail = e.outcome.error.code if e.outcome.error else e.outcome.rows
        found.append((e.session, str(e.outcome.status), detail))
    return found


def test_sqlite_refuses_the_second_writer_so_no_write_skew_or_commit_failure() -> None:
    """write-skew-on-call and serialization-retry: both transactions read, A writes, and B's
    write (to another row) is refused at once; A's commit stands, nothing fails at COMMIT."""
    result = run_script(
        "sqlite",
        """
CREATE TABLE doctors (id INTEGER PRIMARY KEY, ward INTEGER NOT NULL, on_call INTEGER NOT NULL);
INSERT INTO doctors VALUES (1, 7, 1), (2, 7, 1);
\\session A
BEGIN;
SELECT count(*) FROM doctors WHERE ward = 7 AND on_call = 1;
\\session B
BEGIN;
SELECT count(*) FROM doctors WHERE ward = 7 AND on_call = 1;
\\session A
UPDATE doctors SET on_call = 0 WHERE id = 1;
\\session B
UPDATE doctors SET on_call = 0 WHERE id = 2;
\\session A
COMMIT;
\\session B
COMMIT;
SELECT count(*) FROM doctors WHERE ward = 7 AND on_call = 1;
""",
    )
    ran = outcomes(result)[2:]
    assert ran[5] == ("B", str(Status.ERROR), "SQLITE_BUSY")
    assert ran[6] == ("A", str(Status.OK), [])
    assert ran[7] == ("B", str(Status.OK), [])
    assert ran[8] == ("B", str(Status.OK), [(1,)])  # Bob is still on call


def test_sqlite_rereads_its_snapshot_so_no_non_repeatable_read() -> None:
    """non-repeatable-read: B's payment commits between A's two reads; A's second read inside
    its transaction still sees the first total, and only a new transaction sees the payment."""
    result = run_script(
        "sqlite",
        """
CREATE TABLE invoices (id INTEGER PRIMARY KEY, amount_cents INTEGER, paid_cents INTEGER);
INSERT INTO invoices VALUES (1016, 240000, 0), (1017, 90000, 55000), (1018, 137000, 0);
\\session A
BEGIN;
SELECT sum(amount_cents - paid_cents) FROM invoices;
\\session B
UPDATE invoices SET paid_cents = paid_cents + 35000 WHERE id = 1017;
\\session A
SELECT sum(amount_cents - paid_cents) FROM invoices;
COMMIT;
SELECT sum(amount_cents - paid_cents) FROM invoices;
""",
    )
    ran = outcomes(result)[2:]
    assert ran[1] == ("A", str(Status.OK), [(412000,)])
    assert ran[2] == ("B", str(Status.OK), [])
    assert ran[3] == ("A", str(Status.OK), [(412000,)])
    assert ran[5] == ("A", str(Status.OK), [(377000,)])


def test_a_commit_that_fails_is_not_drawn_as_committed(postgres_url: str) -> None:
    """serialization-retry's B COMMIT fails with 40001: the timeline says rolled back, never
    "committed: the changes are saved" (which is exactly what the scenario teaches against)."""
    from sandbox.lifecycle import sandbox_closed_at_end
    from sandbox.scenario.catalog import find
    from sandbox.scenario.player import play
    from sandbox.targets import TargetOptions, open_target
    from sandbox.timeline import EventKind

    options = TargetOptions(engine="postgres", url=postgres_url)
    with sandbox_closed_at_end(open_target(options)) as target:
        run = play(find("serialization-retry"), target)
    failed = next(
        e for e in run.executions
        if e.session == "B" and e.outcome is not None and e.outcome.error is not None
        and e.outcome.error.code == "40001"
    )  # fmt: skip
    kinds = [event.kind for event in run.timeline if event.statement == failed.index]
    assert EventKind.COMMIT not in kinds and EventKind.ROLLBACK in kinds
