"""What five catalog scenarios tell the learner, held to what the engines really do.

The catalog tests prove every scenario both ways (broken: checks fail; reference solution:
they pass). These pin the claims a scenario's story, task or engine note makes beyond that,
by replaying what a learner might type after the breakage: the SQLite quirk idempotency-key
warns about, the CAST trap of type-affinity, the restore stale-backup forbids, the pragma
orphaned-rows says is ignored inside a transaction, and why read-skew runs on PostgreSQL only.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from sandbox.scenario.loader import load
from sandbox.scenario.player import Replayed, ScenarioRun, play
from sandbox.targets import open_target
from tests.conftest import options_for

SCENARIOS = Path(__file__).resolve().parent.parent / "scenarios"


def attempt(
    scenario_id: str, engine: str, statements: list[tuple[str, str]], variant: str | None = None
) -> ScenarioRun:
    """The breakage, then `statements` as a learner would send them, then the checks."""
    scenario = load(SCENARIOS / f"{scenario_id}.toml", variant)
    with open_target(options_for(engine)) as target:
        return play(scenario, target, attempt=[Replayed(s, sql) for s, sql in statements])


def verdicts(run: ScenarioRun) -> dict[str, bool]:
    return {c.check.name: c.passed for c in run.checks}


def learner_outcomes(run: ScenarioRun, sql_start: str) -> list[tuple[str, str | None, int | None]]:
    """(status, error message, rowcount) of each learner statement that starts with sql_start."""
    found = []
    for execution in run.executions:
        if execution.statement.text.startswith(sql_start) and execution.outcome is not None:
            outcome = execution.outcome
            message = outcome.error.message if outcome.error else None
            found.append((str(outcome.status), message, outcome.rowcount))
    return found


IDEMPOTENT_FIX = [
    ("A", "BEGIN"),
    ("A", "DELETE FROM payments WHERE id = 1042"),
    ("A", "CREATE UNIQUE INDEX payments_idempotency_key ON payments (idempotency_key)"),
    ("A", "COMMIT"),
]
UPSERT = (
    "INSERT INTO payments VALUES (1043, 'ord-8812-pay', 'Lina Haddad', 24900, 'app-2') "
    "ON CONFLICT (idempotency_key) DO NOTHING"
)


def test_idempotency_key_sqlite_refuses_the_upsert_until_the_session_reads_again() -> None:
    # The task warns about this: B last read before A created the index, and SQLite plans the
    # upsert with B's old schema, every time it is sent. Should SQLite stop doing so, this
    # fails and the warning in the task should go.
    run = attempt("idempotency-key", "sqlite", [*IDEMPOTENT_FIX, ("B", UPSERT), ("B", UPSERT)])
    refused = "ON CONFLICT clause does not match any PRIMARY KEY or UNIQUE constraint"
    assert [o[:2] for o in learner_outcomes(run, "INSERT INTO payments VALUES (1043")] == [
        ("error", refused),
        ("error", refused),
    ]
    run = attempt(
        "idempotency-key",
        "sqlite",
        [*IDEMPOTENT_FIX, ("B", "SELECT count(*) FROM payments"), ("B", UPSERT)],
    )
    assert learner_outcomes(run, "INSERT INTO payments VALUES (1043") == [("ok", None, 0)]
    assert all(verdicts(run).values()), verdicts(run)


def test_type_affinity_a_cast_repair_reads_1200_as_1_and_fails() -> None:
    run = attempt(
        "type-affinity",
        "sqlite",
        [
            ("A", "BEGIN"),
            ("A", "UPDATE stock SET qty = CAST(qty AS INTEGER) WHERE typeof(qty) <> 'integer'"),
            (
                "A",
                "CREATE TABLE stock_new (id INTEGER PRIMARY KEY, sku TEXT NOT NULL UNIQUE, "
                "item TEXT NOT NULL, qty INTEGER NOT NULL) STRICT",
            ),
            ("A", "INSERT INTO stock_new SELECT * FROM stock"),
            ("A", "DROP TABLE stock"),
            ("A", "ALTER TABLE stock_new RENAME TO stock"),
            ("A", "COMMIT"),
        ],
    )
    results = verdicts(run)
    # Every value is an integer now, and a STRICT table refuses text, as the task allows...
    assert results["every quantity is stored as an integer"]
    refuses = "stock refuses a quantity that is not an integer (STRICT, or CHECK on typeof(qty))"
    assert results[refuses]
    assert results["the repair and the rebuild ran in one transaction, committed"]
    # ...but CAST('1,200' AS INTEGER) is 1: the counts are wrong, and the checks say so.
    assert not results["the tea lights hold 1200 and the beeswax tapers 14, as counted"]
    assert not results["no item lost in the rebuild, and the stock total is the warehouse's"]


@pytest.mark.parametrize("engine", ["sqlite", "postgres"])
def test_stale_backup_restoring_whole_loses_the_day(
    engine: str, request: pytest.FixtureRequest
) -> None:
    if engine == "postgres":
        request.getfixturevalue("postgres_url")
    run = attempt("stale-backup", engine, [("A", "\\restore start")])
    results = verdicts(run)
    assert not results["with the prices repaired, the two teas added at 09:40 are still for sale"]
    assert not results[
        "with the prices repaired, today's sales still count: Assam Gold 37, Gyokuro Asahi 10, "
        "and the whole stock as it is now"
    ]
    # Emptying the table and refilling it from the backup is the same mistake by hand.
    run = attempt(
        "stale-backup",
        engine,
        [
            ("A", "DELETE FROM products"),
            ("A", "INSERT INTO products SELECT * FROM products_backup"),
        ],
    )
    results = verdicts(run)
    assert not results["with the prices repaired, the two teas added at 09:40 are still for sale"]
    assert not results[
        "the table was not restored whole (no \\restore, no emptying products to refill it "
        "from the backup)"
    ]


def test_orphaned_rows_the_pragma_inside_a_transaction_changes_nothing() -> None:
    fix = "UPDATE orders SET customer_id = 0 WHERE customer_id NOT IN (SELECT id FROM customers)"
    run = attempt(
        "orphaned-rows",
        "sqlite",
        [
            ("A", "BEGIN"),
            ("A", "PRAGMA foreign_keys = ON"),
            ("A", fix),
            ("A", "COMMIT"),
            ("A", "PRAGMA foreign_key_check"),
        ],
    )
    results = verdicts(run)
    assert results["Rafael's orders and order 4107 belong to the erased-customer placeholder"]
    assert not results["session A (the console) has foreign keys on"]


def test_orphaned_rows_bringing_rafael_back_is_not_a_repair() -> None:
    run = attempt(
        "orphaned-rows",
        "sqlite",
        [
            ("A", "INSERT INTO customers VALUES (42, 'Rafael Ortiz', 'rafael.ortiz@mail.example')"),
            ("A", "INSERT INTO customers VALUES (9, 'unknown', 'unknown@invalid')"),
            ("A", "PRAGMA foreign_keys = ON"),
            ("A", "PRAGMA foreign_key_check"),
        ],
    )
    results = verdicts(run)
    name = (
        "no order points at a missing customer (PRAGMA foreign_key_check is empty), "
        "and Rafael was not brought back to give his orders one"
    )
    assert not results[name]
    assert results["session A (the console) has foreign keys on"]


def test_read_skew_cannot_happen_inside_a_sqlite_transaction(tmp_path: Path) -> None:
    # read-skew's engine note: the audit's interleaving, on SQLite, adds up. A transaction
    # there reads one snapshot (WAL) from its first read on.
    script = tmp_path / "audit.sql"
    script.write_text(
        "CREATE TABLE accounts (id INTEGER PRIMARY KEY, branch TEXT NOT NULL, balance INTEGER);\n"
        "INSERT INTO accounts VALUES (1, 'north', 1200), (2, 'south', 800), (3, 'south', 1000);\n"
        "BEGIN;\n"
        "SELECT sum(balance) FROM accounts WHERE branch = 'north';\n"
        "\\session B\n"
        "BEGIN;\n"
        "UPDATE accounts SET balance = balance - 250 WHERE id = 1;\n"
        "UPDATE accounts SET balance = balance + 250 WHERE id = 3;\n"
        "COMMIT;\n"
        "\\session A\n"
        "SELECT sum(balance) FROM accounts WHERE branch = 'south';\n"
        "COMMIT;\n",
        encoding="utf-8",
    )
    out = subprocess.run(
        [sys.executable, "-m", "sandbox", "run", str(script), "--format", "json"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert out.returncode == 0, out.stderr
    statements = json.loads(out.stdout)["statements"]
    sums = [s["rows"] for s in statements if s["sql"].startswith("SELECT sum(balance)")]
    # North before the transfer, south as it was then too: 1200 + 1800, not + 2050.
    assert sums == [[[1200]], [[1800]]]
