"""`dbsandbox run` answers any script with an exit code, never a traceback, and leaves nothing.

Scripts are generated from a fixed seed per case (deterministic, bounded count): statement
fragments on a real table, transaction control, backslash lines good and bad (`\\session B`,
`\\session` without a name, `\\background` at the end, snapshot commands, unknown commands),
random bytes decoded as text, unbalanced quotes and comments, huge identifiers and control
characters, spread over several sessions. Each goes through the real `sandbox.cli.main(["run",
...])`, and:

- the exit code is one `dbsandbox run` documents: 0 ran, 2 bad input, 3 the guard stopped it;
- bad input is one line on stderr and nothing on stdout; a run prints its report (JSON that
  parses, one entry per statement) and nothing on stderr; no "Traceback" anywhere;
- nothing is left behind: no temporary SQLite directory, no scratch PostgreSQL database.
"""

from __future__ import annotations

import json
import random
import tempfile
from pathlib import Path

import psycopg2
import pytest

from sandbox.cli import main
from tests.conftest import without_role_warning

SEED = 11_2026
SQLITE_CASES = 120
POSTGRES_CASES = 12

STATEMENTS = [
    "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER)",
    "CREATE TABLE IF NOT EXISTS t (id INTEGER PRIMARY KEY, v INTEGER)",
    "INSERT INTO t VALUES (1, 1)",
    "INSERT INTO t VALUES (2, 2), (3, 3)",
    "UPDATE t SET v = v + 1 WHERE id = 1",
    "UPDATE t SET v = 0",
    "DELETE FROM t WHERE id = 2",
    "DELETE FROM t",
    "-- dbsandbox: allow delete-without-where\nDELETE FROM t",
    "SELECT * FROM t",
    "SELECT 1",
    "SELECT count(*) FROM t WHERE v = NULL",
    "BEGIN",
    "BEGIN IMMEDIATE",
    "COMMIT",
    "ROLLBACK",
    "SAVEPOINT s1",
    "ROLLBACK TO SAVEPOINT s1",
    "RELEASE s1",
    "DROP TABLE t",
    "DROP TABLE IF EXISTS t",
    "ALTER TABLE t ADD COLUMN w TEXT",
    "PRAGMA foreign_keys = OFF",
    "SELECT * FROM nowhere",
    "EXPLAIN SELECT * FROM t",
    "WITH x AS (SELECT 1 AS a) SELECT a FROM x",
]
BACKSLASH = [
    "\\session A",
    "\\session B",
    "\\session C",
    "\\background",
    "\\snapshot s1",
    "\\restore s1",
    "\\restore missing",
    "\\diff s1",
    "\\snapshots",
]
# Two sessions after one row: the second writer waits for the first one's lock.
INTERLEAVINGS = [
    "\\session A\nBEGIN;\nUPDATE t SET v = 5 WHERE id = 1;\n\\session B\n"
    "\\background\nUPDATE t SET v = 6 WHERE id = 1;\n\\session A\nCOMMIT;",
    "\\session A\nBEGIN IMMEDIATE;\n\\session B\nINSERT INTO t VALUES (9, 9);\n"
    "\\session A\nROLLBACK;",
    "\\session B\nBEGIN;\nDELETE FROM t WHERE id = 3;\n\\session C\nDELETE FROM t WHERE id = 3;",
]
BAD_BACKSLASH = [
    "\\session",
    "\\session two words",
    "\\session b@d",
    "\\snapshot",
    "\\snapshots extra",
    "\\bogus",
    "\\",
]
SHARP_EDGES = [
    "'",
    '"',
    "`",
    "[",
    "$$",
    "$tag$",
    "/*",
    "*/",
    "--",
    ";",
    "(",
    ")",
    "E'\\",
    "\x00",
    "\x1b[31m",
    "\r",
    "\t",
    "\u202e",
    "\ufeff",
    "é",
    "😀",
]


def _piece(rng: random.Random) -> str:
    roll = rng.random()
    if roll < 0.40:
        return rng.choice(STATEMENTS) + ";"
    if roll < 0.55:
        return rng.choice(BACKSLASH)
    if roll < 0.58:
        return rng.choice(BAD_BACKSLASH)
    if roll < 0.66:
        return "".join(rng.choice(SHARP_EDGES) for _ in range(rng.randint(1, 4)))
    if roll < 0.72:
        return bytes(rng.randrange(256) for _ in range(rng.randint(1, 40))).decode(
            "utf-8", "replace"
        )
    if roll < 0.78:
        name = rng.choice(["x", "é", '"q', "a b"]) * rng.randint(100, 20_000)
        return f"SELECT 1 AS {name};" if rng.random() < 0.5 else f'CREATE TABLE "{name}" (x);'
    if roll < 0.90:
        return rng.choice(INTERLEAVINGS)
    if roll < 0.96:  # a statement cut short, or with something inserted
        text = rng.choice(STATEMENTS)
        at = rng.randrange(len(text) + 1)
        return text[:at] + rng.choice(["", *SHARP_EDGES]) + text[at:]
    return ""


def script(seed: int) -> str:
    rng = random.Random(seed)
    lines = [_piece(rng) for _ in range(rng.randint(1, 16))]
    if rng.random() < 0.6:
        lines.insert(0, "CREATE TABLE t (id INTEGER PRIMARY KEY, v INTEGER);")
        lines.insert(1, "INSERT INTO t VALUES (1, 1), (2, 2), (3, 3);")
    return rng.choice(["\n"] * 4 + ["\r\n", " "]).join(lines) + rng.choice(["", "\n"])


@pytest.fixture
def private_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Sandboxes go under this test's own directory, so a leftover one is seen."""
    directory = tmp_path / "tmp"
    directory.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(directory))
    return directory


def run(
    capsys: pytest.CaptureFixture[str], path: Path, fmt: str, *extra: str
) -> tuple[int, str, str]:
    code = main(
        [
            "run",
            str(path),
            "--format",
            fmt,
            "--wait-timeout",
            "0.5",
            "--statement-timeout",
            "5",
            *extra,
        ]
    )
    out, err = capsys.readouterr()
    return code, out, without_role_warning(err)  # the test server's role is a superuser


def check(code: int, out: str, err: str, fmt: str) -> dict[str, object] | None:
    assert "Traceback" not in out + err
    assert code in (0, 2, 3), (code, out[-2000:], err)
    if code == 2:
        assert out == "" and len(err.splitlines()) == 1 and err.startswith("dbsandbox: "), err
        return None
    assert err == ""
    if fmt == "text":
        assert out.startswith("dbsandbox · ")
        return None
    report: dict[str, object] = json.loads(out)
    statements = report["statements"]
    assert isinstance(statements, list)
    stopped = report["stopped"]
    assert (stopped is not None) == (code == 3)
    if stopped is not None:
        assert statements[-1]["index"] == stopped and statements[-1]["status"] == "blocked"
    return report


@pytest.mark.parametrize("seed", range(SQLITE_CASES))
def test_any_script_on_sqlite(
    seed: int, tmp_path: Path, private_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "fuzz.sql"
    path.write_text(script(SEED + seed), encoding="utf-8")
    fmt = "json" if seed % 2 else "text"
    # With --yes half the time, the dangerous statements run instead of stopping the script.
    check(*run(capsys, path, fmt, *(["--yes"] if seed % 4 < 2 else [])), fmt)
    assert list(private_tmp.iterdir()) == []


def test_the_scripts_reach_every_outcome(
    tmp_path: Path, private_tmp: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The generator is worth its cases: runs, bad input and guard stops all happen, and the
    runs meet successes, SQL errors and lock waits between sessions."""
    codes: dict[int, int] = {}
    statuses: set[str] = set()
    waits = 0
    for seed in range(0, SQLITE_CASES, 3):
        path = tmp_path / "fuzz.sql"
        path.write_text(script(SEED + seed), encoding="utf-8")
        code, out, err = run(capsys, path, "json")
        codes[code] = codes.get(code, 0) + 1
        report = check(code, out, err, "json")
        if report is not None:
            entries = report["statements"]
            assert isinstance(entries, list)
            statuses |= {str(e["status"]) for e in entries}
            waits += any(e["waited"] for e in entries)
    assert set(codes) == {0, 2, 3}, codes
    assert {"ok", "error", "blocked"} <= statuses, statuses
    assert waits > 0
    assert list(private_tmp.iterdir()) == []


def _scratch_database(report: dict[str, object]) -> str:
    target = str(report["target"])
    return target.rsplit("/", 1)[-1]


@pytest.mark.postgres
@pytest.mark.parametrize("seed", range(POSTGRES_CASES))
def test_any_script_on_postgres(
    seed: int, postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "fuzz.sql"
    path.write_text(script(SEED + 1_000 + seed), encoding="utf-8")
    code, out, err = run(capsys, path, "json", "--engine", "postgres", "--url", postgres_url)
    report = check(code, out, err, "json")
    if report is None:
        return  # refused before a scratch database existed
    database = _scratch_database(report)
    assert database.startswith("dbsandbox_")
    with psycopg2.connect(postgres_url) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT count(*) FROM pg_database WHERE datname LIKE %s", (database + "%",))
        assert cursor.fetchone() == (0,)  # the sandbox and its snapshots are gone
    conn.close()


def test_the_generator_is_deterministic() -> None:
    assert script(SEED) == script(SEED)
    assert len({script(SEED + i) for i in range(50)}) == 50
