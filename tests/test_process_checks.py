"""Process checks judged from what really ran, on both engines.

A one-transaction check is about the statements that change rows or tables. A look at the
schema, a connection setting or a locking read run on its own saves no half of anything, so it
must not count as a write outside the transaction; an autocommitted UPDATE still must.
"""

from __future__ import annotations

from pathlib import Path

from sandbox.scenario.loader import load
from sandbox.scenario.player import ScenarioRun, play
from sandbox.targets import open_target
from tests.conftest import options_for

SCENARIO = """id = "transfer"
title = "One transfer"
summary = "s"
difficulty = "beginner"
engines = ["sqlite", "postgres"]
story = "s"
task = "Move 10 from account 1 to account 2 in one transaction."
hints = ["h"]

[setup]
sql = '''
CREATE TABLE accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
INSERT INTO accounts VALUES (1, 100), (2, 0);
'''

[[breakage]]
sql = "SELECT sum(balance) FROM accounts"
rows = [[100]]

# Before the transaction: statements that change no rows, each on its own.
[[solution]]
engines = ["sqlite"]
sql = "PRAGMA table_info(accounts)"

[[solution]]
engines = ["sqlite"]
sql = "PRAGMA foreign_keys = ON"

[[solution]]
engines = ["postgres"]
sql = "SET lock_timeout = '2s'"

[[solution]]
engines = ["postgres"]
sql = "SELECT balance FROM accounts WHERE id = 1 FOR UPDATE"

EARLY

[[solution]]
sql = "BEGIN"

[[solution]]
sql = "UPDATE accounts SET balance = balance - 10 WHERE id = 1"

[[solution]]
sql = "UPDATE accounts SET balance = balance + 10 WHERE id = 2"

[[solution]]
sql = "COMMIT"

[[checks]]
name = "the transfer ran in one transaction"
process = "one-transaction"
counter = [{ sql = "UPDATE accounts SET balance = balance + 10 WHERE id = 2" }]
"""

# An UPDATE saved on its own before the transaction: what the check is there to reject.
AUTOCOMMITTED = """[[solution]]
sql = "UPDATE accounts SET balance = balance - 0 WHERE id = 2"
"""


def judged(engine: str, tmp_path: Path, early: str) -> ScenarioRun:
    path = tmp_path / "transfer.toml"
    path.write_text(SCENARIO.replace("EARLY", early), encoding="utf-8")
    with open_target(options_for(engine)) as target:
        return play(load(path), target, solution=True)


def test_settings_schema_looks_and_locking_reads_are_not_writes(
    engine: str, tmp_path: Path
) -> None:
    run = judged(engine, tmp_path, "")
    assert [s.mismatches for s in run.steps if s.mismatches] == []
    (check,) = run.checks
    assert check.passed, check.actual
    assert check.actual == "2 writes in one transaction in session A, committed"


def test_an_autocommitted_update_before_the_transaction_still_fails(
    engine: str, tmp_path: Path
) -> None:
    run = judged(engine, tmp_path, AUTOCOMMITTED)
    (check,) = run.checks
    assert not check.passed
    assert check.actual == (
        "A ran UPDATE accounts SET balance = balance - 0 WHERE id = 2 on its own (autocommit), "
        "outside BEGIN … COMMIT"
    )


APART = """id = "tiers"
title = "Tiers"
summary = "s"
difficulty = "beginner"
engines = ["sqlite", "postgres"]
story = "s"
task = "Add the column in a transaction of its own, then fill it."
hints = ["h"]

[setup]
sql = '''
CREATE TABLE members (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL);
INSERT INTO members VALUES (1, 1200), (2, 10);
'''

[[breakage]]
sql = "SELECT count(*) FROM members"
rows = [[2]]

SOLUTION

[[checks]]
name = "the backfill ran after the ALTER had committed"
process = "apart"
pattern = '^UPDATE\\s+members\\b'
after = '^ALTER\\s+TABLE\\s+members\\b'
counter = [
  { sql = "BEGIN" },
  { sql = "ALTER TABLE members ADD COLUMN tier TEXT" },
  { sql = "UPDATE members SET tier = 'gold' WHERE balance >= 1000" },
  { sql = "COMMIT" },
]
"""


def apart(engine: str, tmp_path: Path, statements: list[str]) -> tuple[bool, str]:
    steps = "\n".join(f'[[solution]]\nsql = "{sql}"\n' for sql in statements)
    path = tmp_path / "tiers.toml"
    path.write_text(APART.replace("SOLUTION", steps), encoding="utf-8")
    with open_target(options_for(engine)) as target:
        run = play(load(path), target, solution=True)
    assert [s.mismatches for s in run.steps if s.mismatches] == []
    (check,) = run.checks
    return check.passed, check.actual


def test_apart_passes_work_done_after_the_alter_committed(engine: str, tmp_path: Path) -> None:
    passed, said = apart(
        engine,
        tmp_path,
        [
            "ALTER TABLE members ADD COLUMN tier TEXT",
            "BEGIN",
            "UPDATE members SET tier = 'gold' WHERE balance >= 1000",
            "COMMIT",
        ],
    )
    assert passed, said
    assert said == "A ran UPDATE members SET tier = 'gold' WHERE balance >= 1000 on its own"


def test_apart_fails_work_done_under_the_alters_transaction(engine: str, tmp_path: Path) -> None:
    passed, said = apart(
        engine,
        tmp_path,
        [
            "BEGIN",
            "ALTER TABLE members ADD COLUMN tier TEXT",
            "UPDATE members SET tier = 'gold' WHERE balance >= 1000",
            "COMMIT",
        ],
    )
    assert not passed
    assert said == (
        "A ran UPDATE members SET tier = 'gold' WHERE balance >= 1000 in the same transaction "
        "as ALTER TABLE members ADD COLUMN tier TEXT"
    )
