"""Impact previews on real databases: exact counts, and proof that they leave no trace."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest

from sandbox.guard import Finding, lint_script
from sandbox.guard.impact import FAILED_TX_SUMMARY, Impact, measure
from sandbox.guard.introspect import PREVIEW_SAVEPOINT
from sandbox.outcome import Outcome, Status, TxState
from sandbox.session import Session
from sandbox.sqlkind import classify
from sandbox.statements import Dialect
from sandbox.targets import Target, open_target
from tests.conftest import options_for

# Works on both engines: 1,000 accounts, the first two without an email.
SEED = [
    "CREATE TABLE accounts (id INTEGER PRIMARY KEY, email TEXT, balance INTEGER NOT NULL "
    "DEFAULT 0)",
    "INSERT INTO accounts (id, email) WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 "
    "FROM n WHERE i < 1000) SELECT i, CASE WHEN i <= 2 THEN NULL ELSE 'u' || i END FROM n",
    "CREATE TABLE audit (id INTEGER PRIMARY KEY, note TEXT)",
    "INSERT INTO audit VALUES (1, 'a'), (2, 'b'), (3, 'c')",
]


class Sandbox:
    """A throwaway database with named sessions, driven statement by statement."""

    def __init__(self, target: Target) -> None:
        self.target = target
        self.engine = target.engine
        self.dialect: Dialect = target.adapter.dialect
        self.sessions: dict[str, Session] = {}

    def session(self, name: str = "A") -> Session:
        if name not in self.sessions:
            session = Session(name, self.target)
            session.open()
            self.sessions[name] = session
        return self.sessions[name]

    def attempt(self, sql: str, name: str = "A") -> Outcome:
        return self.session(name).execute(sql, classify(sql, self.dialect))

    def run(self, sql: str, name: str = "A") -> Outcome:
        outcome = self.attempt(sql, name)
        assert outcome.error is None, f"{sql}: {outcome.error}"
        return outcome

    def scalar(self, sql: str, name: str = "A") -> Any:
        return self.run(sql, name).rows[0][0]

    def seed(self) -> None:
        for sql in SEED:
            self.run(sql)

    def finding(self, sql: str) -> Finding:
        # The dangerous finding the impact is measured for; migration advice (info) beside
        # it is not previewed.
        findings = [f for f in lint_script(sql, self.dialect) if f.blocking]
        assert len(findings) == 1, findings
        return findings[0]

    def measure(self, sql: str, name: str = "A", **options: float) -> Impact:
        return measure(self.session(name), self.finding(sql), **options)

    def live_state(self, name: str = "A") -> TxState:
        session = self.session(name)
        return session._adapter.tx_state(session.raw)

    def close(self) -> None:
        for session in self.sessions.values():
            session.close()


@pytest.fixture
def box(engine: str) -> Iterator[Sandbox]:
    with open_target(options_for(engine)) as target:
        sandbox = Sandbox(target)
        try:
            yield sandbox
        finally:
            sandbox.close()


@pytest.fixture
def pg(postgres_url: str) -> Iterator[Sandbox]:
    with open_target(options_for("postgres")) as target:
        sandbox = Sandbox(target)
        try:
            yield sandbox
        finally:
            sandbox.close()


@pytest.fixture
def lite() -> Iterator[Sandbox]:
    with open_target(options_for("sqlite")) as target:
        sandbox = Sandbox(target)
        try:
            yield sandbox
        finally:
            sandbox.close()


def assert_no_savepoint_left(box: Sandbox) -> None:
    """RELEASE of the preview's savepoint must fail: there is none. (Fails the transaction.)"""
    outcome = box.attempt(f"RELEASE SAVEPOINT {PREVIEW_SAVEPOINT}")
    assert outcome.status is Status.ERROR
    assert outcome.error is not None and outcome.error.code == "3B001"


# --------------------------------------------------------------------------- DML


def test_delete_without_where_counts_every_row(box: Sandbox) -> None:
    box.seed()
    impact = box.measure("DELETE FROM accounts")
    assert impact.summary == "would delete 1,000 of 1,000 rows in accounts"
    assert (impact.rows, impact.total, impact.error) == (1000, 1000, None)
    assert impact.columns == ["id", "email", "balance"]
    assert impact.sample == [(1, None, 0), (2, None, 0), (3, "u3", 0), (4, "u4", 0), (5, "u5", 0)]
    assert box.session().tx_state is TxState.IDLE
    assert box.live_state() is TxState.IDLE
    assert box.scalar("SELECT count(*) FROM accounts") == 1000


def test_always_true_update_counts_the_learners_uncommitted_rows(box: Sandbox) -> None:
    box.seed()
    box.run("BEGIN")
    box.run("DELETE FROM accounts WHERE id > 990")
    box.run("INSERT INTO accounts (id, email) VALUES (5000, 'new')")
    impact = box.measure("UPDATE accounts SET balance = 0 WHERE 1 = 1")
    assert impact.summary == "would update 991 of 991 rows in accounts"
    assert box.session().tx_state is TxState.IN_TRANSACTION
    assert box.live_state() is TxState.IN_TRANSACTION
    # Still uncommitted, still the learner's: another session sees none of it.
    assert box.scalar("SELECT count(*) FROM accounts", "B") == 1000
    assert box.scalar("SELECT count(*) FROM accounts") == 991
    if box.engine == "postgres":
        assert box.scalar("SHOW statement_timeout") == "0"
        assert box.scalar("SHOW transaction_read_only") == "off"
        assert_no_savepoint_left(box)
    box.run("ROLLBACK")
    assert box.scalar("SELECT count(*) FROM accounts") == 1000


def test_partial_count_and_singular_total(box: Sandbox) -> None:
    box.run("CREATE TABLE solo (id INTEGER PRIMARY KEY, v INTEGER)")
    box.run("INSERT INTO solo VALUES (1, 1)")
    box.run("CREATE TABLE flags (on_ INTEGER)")
    # The WHERE never looks at solo's rows: all of them or none, here none.
    impact = box.measure("DELETE FROM solo WHERE EXISTS (SELECT 1 FROM flags WHERE on_ = 1)")
    assert impact.summary == "would delete 0 of 1 row in solo"
    assert impact.sample == []


def test_merge_counts_rows_it_would_change(pg: Sandbox) -> None:
    pg.seed()
    impact = pg.measure(
        "MERGE INTO accounts a USING audit s ON true WHEN MATCHED THEN UPDATE SET balance = 0"
    )
    assert impact.summary == "would change 1,000 of 1,000 rows in accounts"


def test_failing_preview_query_leaves_the_transaction_usable(box: Sandbox) -> None:
    box.seed()
    box.run("BEGIN")
    box.run("INSERT INTO audit VALUES (10, 'mine')")
    impact = box.measure("DELETE FROM missing_table")
    assert impact.rows is None and impact.error is not None
    assert "missing_table" in impact.error
    assert impact.summary == f"impact could not be measured: {impact.error}"
    assert box.live_state() is TxState.IN_TRANSACTION
    box.run("INSERT INTO audit VALUES (11, 'still works')")
    assert box.scalar("SELECT count(*) FROM audit") == 5
    if box.engine == "postgres":
        assert_no_savepoint_left(box)
        box.run("ROLLBACK")
    else:
        box.run("COMMIT")
        assert box.scalar("SELECT count(*) FROM audit", "B") == 5


def test_failing_preview_when_idle_leaves_nothing_open(box: Sandbox) -> None:
    impact = box.measure("DELETE FROM missing_table")
    assert impact.error is not None
    assert box.live_state() is TxState.IDLE


def test_failed_transaction_is_not_previewed(pg: Sandbox) -> None:
    pg.seed()
    pg.run("BEGIN")
    assert pg.attempt("SELECT 1 / 0").status is Status.ERROR
    assert pg.session().tx_state is TxState.FAILED
    for sql in ("DELETE FROM accounts", "DROP TABLE accounts", "ALTER TABLE accounts DROP email"):
        impact = pg.measure(sql)
        assert impact.summary == FAILED_TX_SUMMARY
        assert impact.rows is None
    assert pg.live_state() is TxState.FAILED
    pg.run("ROLLBACK")


def test_preview_gives_up_on_a_locked_table_and_stays_usable(pg: Sandbox) -> None:
    pg.seed()
    pg.run("BEGIN", "B")
    pg.run("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE", "B")
    pg.run("BEGIN")
    pg.run("INSERT INTO audit VALUES (10, 'mine')")
    started = time.perf_counter()
    impact = pg.measure("DELETE FROM accounts", timeout_s=0.3)
    assert time.perf_counter() - started < 2
    assert impact.error == "canceling statement due to statement timeout"
    assert impact.summary.startswith("impact could not be measured: it gave up after 0.3 s")
    assert pg.live_state() is TxState.IN_TRANSACTION
    assert pg.scalar("SELECT count(*) FROM audit") == 4
    assert pg.scalar("SHOW statement_timeout") == "0"
    # Idle too: the preview's own transaction is gone afterwards.
    pg.run("COMMIT")
    assert pg.measure("DELETE FROM accounts", timeout_s=0.3).error is not None
    assert pg.live_state() is TxState.IDLE
    pg.run("COMMIT", "B")
    assert pg.measure("DELETE FROM accounts").rows == 1000


def test_slow_predicate_is_stopped_by_the_timeout(box: Sandbox) -> None:
    box.seed()
    box.run("BEGIN")
    sql = (
        "DELETE FROM audit WHERE (SELECT count(*) FROM accounts a, accounts b, accounts c "
        "WHERE a.balance + b.balance + c.balance = 0) > 0"
    )
    started = time.perf_counter()
    impact = box.measure(sql, timeout_s=0.3)
    assert time.perf_counter() - started < 5
    assert impact.error is not None
    assert "gave up after 0.3 s" in impact.summary
    cause = "or the query is slow" if box.engine == "postgres" else "too slow to preview"
    assert impact.summary.endswith(cause)
    assert box.live_state() is TxState.IN_TRANSACTION
    box.run("INSERT INTO audit VALUES (10, 'fine')")


def test_preview_releases_its_locks(pg: Sandbox) -> None:
    pg.seed()
    pg.run("BEGIN")
    pg.run("INSERT INTO audit VALUES (10, 'mine')")
    assert pg.measure("DELETE FROM accounts").rows == 1000
    # The preview's ACCESS SHARE lock on accounts went with ROLLBACK TO SAVEPOINT.
    pg.run("BEGIN", "B")
    pg.run("SET LOCAL lock_timeout = '100ms'", "B")
    pg.run("LOCK TABLE accounts IN ACCESS EXCLUSIVE MODE", "B")
    pg.run("ROLLBACK", "B")


def test_nextval_in_the_predicate_cannot_advance_the_sequence(pg: Sandbox) -> None:
    pg.seed()
    pg.run("CREATE SEQUENCE ticket")
    sql = "DELETE FROM accounts WHERE nextval('ticket') > 0"
    for begin in (False, True):
        if begin:
            pg.run("BEGIN")
        impact = pg.measure(sql)
        assert impact.error == "cannot execute nextval() in a read-only transaction"
    pg.run("ROLLBACK")
    assert pg.scalar("SELECT nextval('ticket')") == 1


def test_notices_raised_by_the_preview_do_not_leak(pg: Sandbox) -> None:
    pg.seed()
    pg.run(
        "CREATE FUNCTION noisy() RETURNS boolean LANGUAGE plpgsql AS "
        "$$ BEGIN RAISE NOTICE 'noisy was called'; RETURN true; END $$"
    )
    pg.run("BEGIN")
    assert pg.measure("DELETE FROM accounts WHERE noisy()").rows == 1000
    assert pg.session().raw.notices == []
    assert pg.run("SELECT 1").notices == []


def test_fresh_repeatable_read_snapshot_is_not_taken_by_the_preview(pg: Sandbox) -> None:
    pg.seed()
    pg.run("BEGIN ISOLATION LEVEL REPEATABLE READ")
    impact = pg.measure("DELETE FROM accounts")
    assert impact.summary == "would delete 1,000 of 1,000 rows in accounts"
    pg.run("INSERT INTO accounts (id) VALUES (5000)", "B")
    # The learner's snapshot starts at their first query, after B's commit, as without preview.
    assert pg.scalar("SELECT count(*) FROM accounts") == 1001
    # Now the snapshot exists: the preview reads inside it and sees what the learner sees.
    pg.run("INSERT INTO accounts (id) VALUES (5001)", "B")
    assert pg.measure("DELETE FROM accounts").rows == 1001
    assert pg.live_state() is TxState.IN_TRANSACTION
    assert_no_savepoint_left(pg)


def test_separate_connection_resolves_names_as_the_session_does(pg: Sandbox) -> None:
    pg.seed()
    pg.run("CREATE SCHEMA scratch")
    pg.run("CREATE TABLE scratch.accounts (id INTEGER)")
    pg.run("INSERT INTO scratch.accounts VALUES (1), (2)")
    pg.run("SET search_path = scratch, public")
    pg.run("BEGIN ISOLATION LEVEL REPEATABLE READ")  # fresh: read on a separate connection
    assert pg.measure("DELETE FROM accounts").summary == "would delete 2 of 2 rows in accounts"
    pg.run("ROLLBACK")


def test_serializable_preview_leaves_no_predicate_locks(pg: Sandbox) -> None:
    pg.seed()
    pg.run("BEGIN ISOLATION LEVEL SERIALIZABLE")
    pg.run("SELECT count(*) FROM audit")  # the transaction has its snapshot now
    pg.run("BEGIN ISOLATION LEVEL SERIALIZABLE", "C")  # keeps SSI bookkeeping active
    pg.run("SELECT count(*) FROM audit", "C")
    impact = pg.measure("DELETE FROM accounts")
    assert impact.summary == (
        "would delete 1,000 of 1,000 rows in accounts (counted outside your transaction, "
        "committed rows only)"
    )
    assert impact.also and "predicate locks" in impact.also[0]
    pid = pg.session().pid
    locks = pg.run(
        "SELECT relation::regclass::text FROM pg_locks "
        f"WHERE pid = {pid} AND mode = 'SIReadLock' ORDER BY 1",
        "B",
    ).rows
    assert locks == [("audit",)]
    assert pg.live_state() is TxState.IN_TRANSACTION


def test_sqlite_fresh_transaction_keeps_its_snapshot_unstarted(lite: Sandbox) -> None:
    lite.seed()
    lite.run("BEGIN")
    assert lite.measure("DELETE FROM accounts").rows == 1000
    lite.run("INSERT INTO accounts (id) VALUES (5000)", "B")
    # Had the preview read inside the transaction, its snapshot would predate B's commit and
    # this write would fail with SQLITE_BUSY_SNAPSHOT.
    lite.run("DELETE FROM accounts WHERE id = 1")
    assert lite.scalar("SELECT count(*) FROM accounts") == 1000
    lite.run("ROLLBACK")


def test_sqlite_fresh_transaction_still_sees_temp_tables(lite: Sandbox) -> None:
    lite.run("CREATE TEMP TABLE scratch (id INTEGER)")
    lite.run("INSERT INTO scratch VALUES (1), (2)")
    lite.run("BEGIN")
    assert lite.measure("DELETE FROM scratch").summary == "would delete 2 of 2 rows in scratch"
    lite.run("ROLLBACK")


# --------------------------------------------------------------------------- DROP / TRUNCATE


def pg_related(pg: Sandbox) -> None:
    pg.seed()
    pg.run("CREATE TABLE orders (id INTEGER PRIMARY KEY, account_id INTEGER REFERENCES accounts)")
    pg.run("INSERT INTO orders VALUES (1, 1), (2, 2), (3, NULL)")
    pg.run("CREATE TABLE items (id INTEGER PRIMARY KEY, order_id INTEGER REFERENCES orders)")
    pg.run("INSERT INTO items VALUES (1, 1)")
    pg.run("CREATE VIEW rich_accounts AS SELECT * FROM accounts WHERE balance > 100")
    pg.run("CREATE VIEW richest AS SELECT max(balance) FROM rich_accounts")


def test_drop_table_cascade_lists_what_goes(pg: Sandbox) -> None:
    pg_related(pg)
    impact = pg.measure("DROP TABLE accounts CASCADE")
    assert impact.summary == (
        "would drop table accounts with its 1,000 rows; also goes: index accounts_pkey, "
        "view rich_accounts (CASCADE), view richest (CASCADE), "
        "foreign key orders_account_id_fkey on orders (CASCADE)"
    )
    assert (impact.rows, impact.total) == (1000, 1000)
    assert pg.scalar("SELECT count(*) FROM accounts") == 1000


def test_drop_table_without_cascade_would_fail(pg: Sandbox) -> None:
    pg_related(pg)
    impact = pg.measure("DROP TABLE accounts")
    assert impact.summary == (
        "would fail: view rich_accounts, view richest, foreign key orders_account_id_fkey on "
        "orders depend on table accounts (only CASCADE would go ahead, and it would drop them "
        "too); accounts holds 1,000 rows"
    )
    # Dropping the referencing table with it removes that obstacle.
    impact = pg.measure("DROP TABLE items, orders")
    assert impact.summary == (
        "would drop table items with its 1 row; also goes: index items_pkey; "
        "would drop table orders with its 3 rows; also goes: index orders_pkey"
    )
    assert impact.rows == 4


def test_truncate_cascade_empties_referencing_tables(pg: Sandbox) -> None:
    pg_related(pg)
    impact = pg.measure("TRUNCATE accounts CASCADE")
    assert impact.summary == (
        "would empty table accounts, removing its 1,000 rows; CASCADE also empties: "
        "table items with its 1 row, table orders with its 3 rows"
    )
    assert impact.rows == 1004
    impact = pg.measure("TRUNCATE accounts")
    assert impact.summary.startswith(
        "would fail: foreign key orders_account_id_fkey on orders references table accounts"
    )
    assert impact.summary.endswith(
        "it would empty table items with its 1 row, table orders with its 3 rows too); "
        "accounts holds 1,000 rows"
    )


def test_drop_table_counts_uncommitted_rows_and_missing_tables(box: Sandbox) -> None:
    box.seed()
    box.run("BEGIN")
    box.run("DELETE FROM audit WHERE id = 1")
    impact = box.measure("DROP TABLE audit, nope")
    # SQLite's INTEGER PRIMARY KEY is the rowid: no index to go with it.
    index = "; also goes: index audit_pkey" if box.engine == "postgres" else ""
    assert impact.summary == (
        f"would drop table audit with its 2 rows{index}; table nope does not exist: nothing to drop"
    )
    assert box.live_state() is TxState.IN_TRANSACTION
    box.run("ROLLBACK")
    assert box.measure("DROP TABLE nope").rows is None


def test_sqlite_drop_table_lists_indexes_triggers_views_and_foreign_keys(lite: Sandbox) -> None:
    lite.seed()
    lite.run("CREATE INDEX accounts_email ON accounts (email)")
    lite.run(
        "CREATE TRIGGER accounts_audit AFTER DELETE ON accounts "
        "BEGIN INSERT INTO audit (note) VALUES ('gone'); END"
    )
    lite.run("CREATE VIEW rich_accounts AS SELECT * FROM accounts WHERE balance > 100")
    lite.run("CREATE VIEW unrelated AS SELECT * FROM audit")
    lite.run("CREATE TABLE orders (id INTEGER PRIMARY KEY, account_id INTEGER REFERENCES accounts)")
    lite.run("INSERT INTO orders VALUES (1, 1), (2, NULL)")
    impact = lite.measure("DROP TABLE accounts")
    assert impact.summary == (
        "would drop table accounts with its 1,000 rows; also goes: index accounts_email, "
        "trigger accounts_audit; left behind: view rich_accounts (it reads accounts and will "
        "fail), foreign key orders(account_id) (1 row refers to it; foreign_keys is OFF, so "
        "they are left pointing at nothing)"
    )
    lite.run("PRAGMA foreign_keys = ON")
    assert lite.measure("DROP TABLE accounts").also[-1] == (
        "foreign key orders(account_id) (1 row refers to it; with foreign_keys ON the DROP fails)"
    )


def test_sqlite_has_no_truncate_or_drop_cascade(lite: Sandbox) -> None:
    lite.seed()
    assert lite.measure("TRUNCATE accounts").summary.startswith("SQLite has no TRUNCATE")
    assert lite.measure("DROP TABLE accounts CASCADE").summary.startswith(
        "SQLite has no DROP TABLE ... CASCADE"
    )


# --------------------------------------------------------------------------- DROP COLUMN


def test_drop_column_counts_non_null_values(box: Sandbox) -> None:
    box.seed()
    impact = box.measure("ALTER TABLE accounts DROP COLUMN email")
    assert impact.summary == (
        "would drop column accounts.email holding 998 non-NULL values of 1,000 rows"
    )
    assert (impact.rows, impact.total) == (998, 1000)
    assert box.measure("ALTER TABLE accounts DROP COLUMN nope").summary == (
        "column accounts.nope does not exist: the statement would fail"
    )


def test_drop_column_dependents_on_postgres(pg: Sandbox) -> None:
    pg.seed()
    pg.run("CREATE UNIQUE INDEX accounts_email ON accounts (email)")
    pg.run("CREATE VIEW emails AS SELECT email FROM accounts")
    impact = pg.measure("ALTER TABLE accounts DROP COLUMN email")
    assert impact.summary == (
        "would fail: view emails depends on column accounts.email (only CASCADE would go "
        "ahead, and they would be dropped too); accounts.email holds 998 non-NULL values of "
        "1,000 rows"
    )
    impact = pg.measure("ALTER TABLE accounts DROP COLUMN email CASCADE")
    assert impact.summary == (
        "would drop column accounts.email holding 998 non-NULL values of 1,000 rows; "
        "also goes: index accounts_email, view emails (CASCADE)"
    )


# --------------------------------------------------------------------------- other rules


def test_other_rules_repeat_the_message(box: Sandbox) -> None:
    sql = (
        "SET session_replication_role = replica"
        if box.engine == "postgres"
        else "PRAGMA foreign_keys = OFF"
    )
    finding = box.finding(sql)
    impact = measure(box.session(), finding)
    assert impact == Impact(summary=finding.message)
