"""The lock the guard predicts for each statement form (sandbox/guard/locks.py) is the lock
PostgreSQL takes: each form runs in a transaction on a real sandbox, and pg_locks says what
the session holds before it rolls back. One mismatch is a wrong row in the table."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from sandbox.guard.locks import MODES, check, lock_name, predict
from sandbox.report import execution_json, lock_check
from sandbox.scenario.catalog import catalog_files
from sandbox.scenario.loader import load
from sandbox.scenario.player import play
from sandbox.statements import tokens
from sandbox.targets import open_target
from tests.conftest import options_for, run_script

SETUP = """
CREATE TABLE parent (id int PRIMARY KEY);
CREATE TABLE child (id int PRIMARY KEY, parent_id int, note text, n int);
CREATE INDEX ix_note ON child (note);
ALTER TABLE child ADD CONSTRAINT ck0 CHECK (n > 0) NOT VALID;
CREATE MATERIALIZED VIEW totals AS SELECT 1 AS x;
CREATE UNIQUE INDEX ON totals (x);
"""

FORMS = [
    "ALTER TABLE child ADD COLUMN extra int",
    "ALTER TABLE child ADD COLUMN token uuid DEFAULT gen_random_uuid()",
    "ALTER TABLE child ALTER COLUMN n TYPE bigint",
    "ALTER TABLE child ALTER COLUMN n SET NOT NULL",
    "ALTER TABLE child ALTER COLUMN n DROP NOT NULL",
    "ALTER TABLE child ALTER COLUMN n SET DEFAULT 0",
    "ALTER TABLE child ALTER COLUMN n SET STATISTICS 100",
    "ALTER TABLE child SET (fillfactor = 70)",
    "ALTER TABLE child DROP COLUMN note",
    "ALTER TABLE child RENAME COLUMN note TO memo",
    "ALTER TABLE child ENABLE TRIGGER ALL",
    "ALTER TABLE child ADD CONSTRAINT fk FOREIGN KEY (parent_id) REFERENCES parent (id)",
    "ALTER TABLE child ADD CONSTRAINT fk FOREIGN KEY (parent_id) REFERENCES parent (id) NOT VALID",
    "ALTER TABLE child ADD CONSTRAINT ck CHECK (n > 0)",
    "ALTER TABLE child ADD CONSTRAINT ck CHECK (n > 0) NOT VALID",
    "ALTER TABLE child VALIDATE CONSTRAINT ck0",
    "ALTER TABLE child ADD COLUMN a int, ALTER COLUMN n SET STATISTICS 10",
    "CREATE INDEX ix_n ON child (n)",
    "CREATE UNIQUE INDEX ix_id2 ON child (id, n)",
    "CREATE TRIGGER t BEFORE UPDATE ON child FOR EACH ROW "
    "EXECUTE FUNCTION suppress_redundant_updates_trigger()",
    "DROP INDEX ix_note",
    "TRUNCATE child",
    "LOCK TABLE child",
    "LOCK TABLE child IN SHARE MODE",
    "LOCK TABLE child IN ROW EXCLUSIVE MODE",
    "ANALYZE child",
    "CLUSTER child USING child_pkey",
    "REINDEX TABLE child",
    "REFRESH MATERIALIZED VIEW totals",
    "REFRESH MATERIALIZED VIEW CONCURRENTLY totals",
    "UPDATE child SET n = 1 WHERE id = 1",
    "DELETE FROM child WHERE id = 1",
    "INSERT INTO child (id) VALUES (5)",
]
# pg_locks' names for the modes, as the table spells them.
_NAMES = {lock_name(mode): mode for mode in MODES}


@pytest.fixture(scope="module")
def sandbox(postgres_url: str) -> Iterator[sa.Engine]:
    with open_target(options_for("postgres")) as target:
        url: Any = target.url  # type: ignore[attr-defined]
        engine = sa.create_engine(url, poolclass=sa.pool.NullPool)
        with engine.begin() as connection:
            connection.exec_driver_sql(SETUP)
        yield engine
        engine.dispose()


def names(connection: sa.Connection) -> dict[int, str]:
    """The public schema's relations by oid, read before the statement: a DROP removes the
    name of what it locks (DROP INDEX holds its lock on the index it dropped)."""
    rows = connection.exec_driver_sql(
        "SELECT oid::bigint, relname FROM pg_class WHERE relnamespace = 'public'::regnamespace"
    ).all()
    return {int(oid): str(name) for oid, name in rows}


def held(connection: sa.Connection, named: dict[int, str]) -> dict[str, str]:
    """The strictest lock this session holds on each relation of the public schema."""
    rows = connection.exec_driver_sql(
        "SELECT relation::bigint, mode FROM pg_locks "
        "WHERE pid = pg_backend_pid() AND relation IS NOT NULL"
    ).all()
    strictest: dict[str, str] = {}
    for oid, mode in rows:
        relation = named.get(int(oid))
        if relation is None:
            continue  # a catalog table, or one the statement made
        mode_name = _NAMES[mode]
        if relation not in strictest or MODES.index(mode_name) > MODES.index(strictest[relation]):
            strictest[relation] = mode_name
    return strictest


@pytest.mark.parametrize("sql", FORMS)
def test_the_predicted_lock_is_the_lock_postgresql_takes(sandbox: sa.Engine, sql: str) -> None:
    prediction = predict(list(tokens(sql, "postgres")), "postgres")
    assert prediction is not None and prediction.tables, sql
    with sandbox.connect() as connection:
        transaction = connection.begin()
        named = names(connection)
        connection.exec_driver_sql(sql)
        seen = held(connection, named)
        transaction.rollback()
    assert {t: seen.get(t) for t in prediction.tables} == {
        t: prediction.mode for t in prediction.tables
    }, f"{sql}: predicted {prediction.mode}, pg_locks says {seen}"


def test_sqlite_writes_take_the_database_write_lock() -> None:
    assert predict(list(tokens("UPDATE t SET a = 1", "sqlite")), "sqlite") is not None
    assert predict(list(tokens("SELECT 1", "sqlite")), "sqlite") is None


def test_a_prediction_checked_against_what_was_held() -> None:
    confirmed = check(
        "ALTER TABLE accounts ADD COLUMN note text",
        [("accounts", "AccessExclusiveLock"), ("accounts_pkey", "AccessShareLock")],
    )
    assert confirmed is not None and confirmed.confirmed
    assert confirmed.summary() == "the guard predicted ACCESS EXCLUSIVE on accounts: confirmed"
    wrong = check("CREATE INDEX i ON accounts (email)", [("accounts", "RowExclusiveLock")])
    assert wrong is not None and not wrong.confirmed
    assert wrong.to_json()["verdict"] == "mismatch"
    assert wrong.summary().endswith("mismatch (held accounts: RowExclusiveLock)")
    assert check("SELECT 1", [("accounts", "AccessShareLock")]) is None
    assert check("ALTER TABLE accounts ADD COLUMN x int", []) is None


def test_a_run_reports_each_prediction_confirmed(postgres_url: str) -> None:
    result = run_script(
        "postgres",
        """
        CREATE TABLE parent (id int PRIMARY KEY);
        CREATE TABLE accounts (id int PRIMARY KEY, email text, n int);
        BEGIN;
        ALTER TABLE accounts ADD COLUMN note text;
        CREATE INDEX accounts_email ON accounts (email);
        UPDATE accounts SET n = 1 WHERE id = 1;
        ALTER TABLE accounts ADD CONSTRAINT fk FOREIGN KEY (n) REFERENCES parent (id) NOT VALID;
        LOCK TABLE parent IN SHARE MODE;
        COMMIT;
        ALTER TABLE accounts ADD COLUMN later int;
        """,
    )
    checks = {e.statement.text: execution_json(e)["lock_check"] for e in result.executions}
    verdicts = {sql: c["verdict"] for sql, c in checks.items() if c is not None}
    assert verdicts == {
        "ALTER TABLE accounts ADD COLUMN note text": "confirmed",
        "CREATE INDEX accounts_email ON accounts (email)": "confirmed",
        "UPDATE accounts SET n = 1 WHERE id = 1": "confirmed",
        "ALTER TABLE accounts ADD CONSTRAINT fk FOREIGN KEY (n) REFERENCES parent (id) NOT VALID": (
            "confirmed"
        ),
        "LOCK TABLE parent IN SHARE MODE": "confirmed",
    }
    # In autocommit its locks went with it: nothing was seen, so nothing is claimed.
    assert execution_json(result.executions[-1])["lock_check"] is None


POSTGRES_SCENARIOS = [
    pytest.param(path, id=path.stem) for path in catalog_files() if "postgres" in load(path).engines
]


@pytest.mark.parametrize("path", POSTGRES_SCENARIOS)
def test_no_prediction_in_the_catalog_is_contradicted(path: Path, postgres_url: str) -> None:
    """Every statement of every catalog scenario on PostgreSQL, breakage and reference
    solution, that left locks to see: the guard's predicted lock is among them."""
    with open_target(options_for("postgres")) as target:
        run = play(load(path), target, solution=True)
    wrong = [
        f"{e.statement.text}: {found.summary()}"
        for e in run.executions
        if (found := lock_check(e)) is not None and not found.confirmed
    ]
    assert wrong == []
