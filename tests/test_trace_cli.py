"""`dbsandbox trace`: real SQLAlchemy programs in real child processes, against real SQLite files
and the real PostgreSQL server, through the command's own main()."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest

from sandbox.cli import main
from sandbox.targets import TargetOptions, open_target
from sandbox.timeline import EventKind, Timeline
from sandbox.trace.tracer import trace as run_trace
from tests.conftest import options_for, without_role_warning

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "orm"

MODELS = """
import os, sys
from sqlalchemy import ForeignKey, String, create_engine, select, text
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    body: Mapped[str] = mapped_column(String(100))


engine = create_engine(os.environ["DATABASE_URL"])
"""


def program(folder: Path, name: str, body: str) -> Path:
    path = folder / name
    path.write_text(MODELS + textwrap.dedent(body), encoding="utf-8")
    return path


def line_of(path: Path, marker: str) -> int:
    lines = path.read_text(encoding="utf-8").splitlines()
    found = [n for n, text in enumerate(lines, 1) if marker in text]
    assert len(found) == 1, found
    return found[0]


def trace(
    capsys: pytest.CaptureFixture[str], engine: str, *words: str, code: int = 0
) -> dict[str, Any]:
    url = options_for(engine).url
    server = ["--url", url] if url else []
    got = main(["trace", "--engine", engine, *server, "--format", "json", *words])
    out, err = capsys.readouterr()
    assert got == code, without_role_warning(err)
    document: dict[str, Any] = json.loads(out)
    return document


def statements(document: dict[str, Any], lane: str) -> list[dict[str, Any]]:
    return [s for s in document["statements"] if s["session"] == lane]


def events(document: dict[str, Any], lane: str, kind: str | None = None) -> list[dict[str, Any]]:
    return [
        e
        for e in document["timeline"]
        if e["session"] == lane and (kind is None or e["kind"] == kind)
    ]


def printed(document: dict[str, Any], label: str) -> list[str]:
    said = events(document, label, "program")
    return [e["message"].removeprefix("printed: ") for e in said if "exit_code" not in e["data"]]


WRITER = """
Base.metadata.create_all(engine)
with Session(engine) as session:
    session.add(Note(body="kept"))
    session.commit()  # commit here
print("wrote")
"""

READER = """
with Session(engine) as session:
    rows = session.execute(select(Note)).scalars().all()
    print(f"read {len(rows)}")
"""


def test_the_persistence_proof_lane_by_lane(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    writer = program(tmp_path, "writer.py", WRITER)
    reader = program(tmp_path, "reader.py", READER)
    doc = trace(capsys, engine, "--", "python", str(writer), "--", "python", str(reader))
    assert [p["exit_code"] for p in doc["programs"]] == [0, 0]
    written = statements(doc, "writer-1")
    sqls = [s["sql"].split()[0] for s in written]
    assert "INSERT" in sqls and sqls[-1] == "COMMIT"
    insert = next(s for s in written if s["sql"].startswith("INSERT"))
    # The INSERT is flushed by commit(): the program's own line caused it.
    assert insert["origin"] == f"writer.py:{line_of(writer, 'commit here')}"
    assert insert["status"] == "ok" and insert["rowcount"] == 1
    assert events(doc, "writer-1", "commit")
    assert [e["message"] for e in events(doc, "writer-1", "flush")]
    # On PostgreSQL SQLAlchemy's first connection asks the server a few things of its own
    # (version, schema): they are on the lane too, before the program's query.
    read = [s for s in statements(doc, "reader-1") if "notes" in s["sql"]]
    assert read[0]["sql"].startswith("SELECT") and read[0]["status"] == "ok"
    assert printed(doc, "reader") == ["read 1"]
    # Lanes in the order the engine saw them: the reader starts after the writer ended.
    seqs = [e["seq"] for e in doc["timeline"]]
    assert seqs == sorted(seqs)
    last_writer = max(e["seq"] for e in doc["timeline"] if e["session"].startswith("writer"))
    first_reader = min(e["seq"] for e in doc["timeline"] if e["session"].startswith("reader"))
    assert last_writer < first_reader


def test_without_commit_the_session_rolls_back_on_close_and_the_read_is_empty(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    writer = program(
        tmp_path,
        "writer.py",
        """
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add(Note(body="lost"))
            print(session.scalar(select(Note.id).where(Note.body == "lost")))  # autoflush
        print("closed without commit")
        """,
    )
    reader = program(tmp_path, "reader.py", READER)
    doc = trace(capsys, engine, "--", "python", str(writer), "--", "python", str(reader))
    written = statements(doc, "writer-1")
    kinds = [s["sql"].split()[0] for s in written]
    # create_all's COMMIT, then the autoflushed INSERT, its SELECT, and the ROLLBACK on close.
    assert kinds[-3:] == ["INSERT", "SELECT", "ROLLBACK"]
    assert written[-1]["tx_after"] == "idle"
    autoflush = [e["message"] for e in events(doc, "writer-1", "flush")]
    assert autoflush and autoflush[-1].startswith("autoflush (1 new)")
    assert events(doc, "writer-1", "rollback")
    assert printed(doc, "reader") == ["read 0"]


def test_a_session_never_flushed_says_nothing_was_sent(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    # The course's programs as published: they name sqlite:///quick_persist.db themselves.
    monkeypatch.chdir(tmp_path)
    shutil.copy(EXAMPLES / "read_later.py", tmp_path)
    source = (EXAMPLES / "write_once.py").read_text(encoding="utf-8")
    assert "session.commit()" in source
    (tmp_path / "write_once.py").write_text(
        source.replace("session.commit()", "pass  # the commit, removed"), encoding="utf-8"
    )
    doc = trace(capsys, "sqlite", "--", "python", "write_once.py", "--", "python", "read_later.py")
    notices = [e["message"] for e in events(doc, "write_once", "notice")]
    assert len(notices) == 1 and "1 new Marker never flushed" in notices[0]
    assert not [s for s in statements(doc, "write_once-1") if s["sql"].startswith("INSERT")]
    assert printed(doc, "read_later") == ["[]"]
    # Every connection went to the sandbox: the file the programs name was never made.
    opened = events(doc, "write_once-1", "session_opened")
    assert "quick_persist.db" in opened[0]["message"]
    assert not (tmp_path / "quick_persist.db").exists()


def test_the_course_programs_prove_persistence_unmodified(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("write_once.py", "read_later.py"):
        shutil.copy(EXAMPLES / name, tmp_path)
    doc = trace(capsys, "sqlite", "--", "python", "write_once.py", "--", "python", "read_later.py")
    assert printed(doc, "write_once") == ["Wrote marker"]
    assert printed(doc, "read_later") == ["['persistent-check']"]
    assert not (tmp_path / "quick_persist.db").exists()


def test_a_program_for_another_engine_is_told_so(
    postgres_url: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    shutil.copy(EXAMPLES / "write_once.py", tmp_path)
    doc = trace(capsys, "postgres", "--", "python", str(tmp_path / "write_once.py"), code=1)
    assert doc["programs"][0]["exit_code"] == 1
    said = printed(doc, "write_once")
    assert any("the program connects to sqlite, but the sandbox is postgresql" in s for s in said)
    assert doc["statements"] == []


def test_guard_stop_raises_in_the_program_before_the_database_sees_it(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    wiper = program(
        tmp_path,
        "wiper.py",
        """
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add_all([Note(body="a"), Note(body="b")])
            session.commit()
        try:
            with engine.begin() as conn:
                conn.execute(text("DELETE FROM notes"))  # the mistake
        except Exception as exc:
            print(type(exc).__name__)
        with engine.connect() as conn:
            print(conn.scalar(text("SELECT count(*) FROM notes")))
        """,
    )
    doc = trace(capsys, engine, "--guard", "stop", "--", "python", str(wiper), code=3)
    assert printed(doc, "wiper") == ["DangerousStatementError", "2"]
    delete = next(s for s in doc["statements"] if s["sql"] == "DELETE FROM notes")
    assert delete["status"] == "blocked"
    assert delete["origin"] == f"wiper.py:{line_of(wiper, 'the mistake')}"
    assert [f["rule"] for f in delete["findings"]] == ["delete-without-where"]
    assert doc["stopped"] == delete["index"]

    doc = trace(capsys, engine, "--", "python", str(wiper))  # --guard warn: it runs
    assert printed(doc, "wiper") == ["0"]
    delete = next(s for s in doc["statements"] if s["sql"] == "DELETE FROM notes")
    assert delete["status"] == "ok" and delete["rowcount"] == 2
    guard = [e["message"] for e in events(doc, "wiper-1", "guard")]
    assert guard[0].startswith("error delete-without-where")
    assert "--guard stop would have stopped it" in guard[1]


def test_secrets_in_parameters_are_masked_everywhere(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    secret = "hunter2-very-secret"
    signup = program(
        tmp_path,
        "signup.py",
        f"""
        with engine.begin() as conn:
            conn.execute(text("CREATE TABLE users (name TEXT, password TEXT, api_token TEXT)"))
            conn.execute(
                text("INSERT INTO users VALUES (:name, :password, :api_token)"),
                {{"name": "ada", "password": "{secret}", "api_token": "{secret}"}},
            )
        """,
    )
    export = tmp_path / "out"
    doc = trace(capsys, engine, "--export", str(export), "--", "python", str(signup))
    insert = next(s for s in doc["statements"] if s["sql"].startswith("INSERT"))
    params = insert["params"]
    values = list(params.values()) if isinstance(params, dict) else params
    assert values == ["ada", "********", "********"]
    assert secret not in json.dumps(doc)
    written = sorted(tmp_path.glob("out.*"))
    assert [p.suffix for p in written] == [".json", ".md", ".sql"]
    for path in written:
        assert secret not in path.read_text(encoding="utf-8"), path.name


def test_every_kind_of_parameter_is_recorded_as_the_driver_got_it(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    # The tracer sends parameters as they are and lets marshal check them when a batch is
    # written; what marshal cannot write (an enum, a Decimal, a datetime) is made text then,
    # long text is cut and bytes shown as hex: none of it may lose a statement or its values.
    kinds = program(
        tmp_path,
        "kinds.py",
        """
        import datetime, decimal, enum

        class Colour(str, enum.Enum):
            RED = "red"

        class Size(enum.IntEnum):
            LARGE = 2

        postgres = engine.dialect.name == "postgresql"
        with engine.begin() as conn:
            conn.execute(text(
                "CREATE TABLE kinds (label TEXT, colour TEXT, size INTEGER, "
                + ("blob BYTEA, " if postgres else "blob BLOB, ")
                + "body TEXT, ratio REAL, flag BOOLEAN, amount NUMERIC, stamp TIMESTAMP)"
            ))
            conn.execute(
                text("INSERT INTO kinds (label, colour, size, blob, body, ratio, flag) "
                     "VALUES (:label, :colour, :size, :blob, :body, :ratio, :flag)"),
                {"label": "mixed", "colour": Colour.RED, "size": Size.LARGE,
                 "blob": b"\\x00\\xff", "body": "a" * 300, "ratio": 0.5, "flag": True},
            )
            if postgres:  # sqlite3 takes neither a Decimal nor (since 3.12) a datetime
                conn.execute(
                    text("INSERT INTO kinds (label, amount, stamp) VALUES ('pg', :amount, :stamp)"),
                    {"amount": decimal.Decimal("12.50"),
                     "stamp": datetime.datetime(2026, 1, 2, 3, 4, 5)},
                )
        """,
    )
    doc = trace(capsys, engine, "--", "python", str(kinds))
    assert [p["exit_code"] for p in doc["programs"]] == [0]
    inserts = [s for s in doc["statements"] if s["sql"].startswith("INSERT")]
    assert [s["status"] for s in inserts] == ["ok"] * len(inserts)
    params = inserts[0]["params"]
    values = list(params.values()) if isinstance(params, dict) else params
    assert values == ["mixed", "red", 2, "\\x00ff", "a" * 200 + "…", 0.5, True]
    if engine == "postgres":
        params = inserts[1]["params"]
        assert params == {"amount": "12.50", "stamp": "2026-01-02 03:04:05"}


def test_a_lock_wait_names_the_lane_that_blocks_it(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    signal = tmp_path / "holding"
    # The holder takes the row (PostgreSQL) or the write lock (SQLite), then says so in a file,
    # and keeps it for a while once the other program waits (on PostgreSQL it asks the server
    # when; SQLite cannot say): long enough for the watcher (10 ms) many times over.
    holder = program(
        tmp_path,
        "holder.py",
        f"""
        import pathlib, time
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add(Note(id=1, body="first"))
            session.commit()
        with engine.connect() as conn:
            conn.execute(text("UPDATE notes SET body = 'holder' WHERE id = 1"))
            pathlib.Path({str(signal)!r}).write_text("yes")
            if engine.dialect.name == "postgresql":
                watch = create_engine(os.environ["DATABASE_URL"])
                with watch.connect() as w:
                    while not w.scalar(text(
                        "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                        " AND datname = current_database()"
                    )):
                        w.rollback()  # pg_stat_activity is read once per transaction
                        time.sleep(0.01)
            time.sleep(1.5)  # the wait, long enough to be seen (dbsandbox looks every 10 ms)
            conn.commit()
        print("released")
        """,
    )
    waiter = program(
        tmp_path,
        "waiter.py",
        f"""
        import pathlib, time
        while not pathlib.Path({str(signal)!r}).exists():
            time.sleep(0.01)
        with engine.connect() as conn:
            conn.execute(text("UPDATE notes SET body = 'waiter' WHERE id = 1"))  # waits
            conn.commit()
        print("done")
        """,
    )
    doc = trace(
        capsys, engine, "--together", "--", "python", str(holder), "--", "python", str(waiter)
    )
    assert [p["exit_code"] for p in doc["programs"]] == [0, 0]
    waited = next(s for s in statements(doc, "waiter-1") if "'waiter'" in s["sql"])
    assert waited["waited"] and waited["blocked_by"] == ["holder-1"]
    assert waited["status"] == "ok"
    wait = events(doc, "waiter-1", "lock_wait")
    assert wait and wait[0]["data"]["blocked_by"] == ["holder-1"]
    # In the order it happened, whichever process reported first: the holder asked for
    # COMMIT, and then the wait was over.
    released = events(doc, "waiter-1", "lock_released")
    sent = [e for e in events(doc, "holder-1", "statement") if e["message"] == "sent: COMMIT"]
    assert released and sent and released[0]["seq"] > sent[-1]["seq"]
    assert released[0]["elapsed_ms"] >= sent[-1]["elapsed_ms"]


def test_errors_carry_the_engines_code(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    twice = program(
        tmp_path,
        "twice.py",
        """
        from sqlalchemy.exc import IntegrityError
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add(Note(id=1, body="a"))
            session.commit()
            session.add(Note(id=1, body="again"))
            try:
                session.commit()
            except IntegrityError:
                session.rollback()
                print("rolled back")
        """,
    )
    doc = trace(capsys, engine, "--", "python", str(twice))
    failed = [s for s in doc["statements"] if s["status"] == "error"]
    assert len(failed) == 1 and failed[0]["sql"].startswith("INSERT")
    code = "23505" if engine == "postgres" else "SQLITE_CONSTRAINT_PRIMARYKEY"
    assert failed[0]["error"]["code"] == code
    assert statements(doc, "twice-1")[-1]["sql"] == "ROLLBACK"
    assert printed(doc, "twice") == ["rolled back"]


def test_the_exported_replay_runs_with_the_parameters_written_in(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    writer = program(tmp_path, "writer.py", WRITER.replace('"kept"', '"it\'s kept"'))
    export = tmp_path / "out"
    trace(capsys, engine, "--export", str(export), "--", "python", str(writer))
    script = (tmp_path / "out.sql").read_text(encoding="utf-8")
    assert "'it''s kept'" in script and "-- sent by writer.py:" in script
    url = options_for(engine).url
    server = ["--url", url] if url else []
    got = main(["run", str(tmp_path / "out.sql"), "--engine", engine, *server])
    out, err = capsys.readouterr()
    assert got == 0, without_role_warning(err)
    report = out.split("\ntimeline\n")[0]
    assert "VALUES ('it''s kept')" in report and "error" not in report
    last, outcome = report.rstrip().splitlines()[-2:]
    assert last.endswith(": COMMIT") and outcome.strip().startswith("ok")
    assert " · no transaction · " in outcome


def test_bad_input_is_one_line_and_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["trace"]) == 2
    assert capsys.readouterr().err.strip().startswith("dbsandbox: nothing to trace")
    assert main(["trace", "--", "python", str(tmp_path / "missing.py")]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"dbsandbox: {tmp_path / 'missing.py'}: no such file"
    assert main(["trace", "--", "no-such-program-here"]) == 2
    assert "cannot run no-such-program-here" in capsys.readouterr().err


def test_a_program_that_fails_makes_trace_exit_1_with_its_output_in_the_report(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = program(tmp_path, "broken.py", 'raise SystemExit("gave up")\n')
    got = main(["trace", "--", "python", str(broken)])
    out = capsys.readouterr().out
    assert got == 1
    assert "program broken: " in out and "exited with code 1" in out
    assert "printed: gave up" in out


def test_the_console_script_traces_from_a_shell(tmp_path: Path) -> None:
    # The real command, as a user types it: the tracer reaches the child through PYTHONPATH,
    # which an installed package must ship (package data).
    writer = program(tmp_path, "writer.py", WRITER)
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "trace", "--", "python", str(writer)],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    assert "[writer-1] writer.py:" in done.stdout
    assert "printed: wrote" in done.stdout
    sandbox_files = [p for p in tmp_path.iterdir() if p.suffix == ".db"]
    assert sandbox_files == []
    assert sqlite3.sqlite_version  # the default engine needs nothing installed


def test_savepoints_of_begin_nested_are_on_the_lane(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    nested = program(
        tmp_path,
        "nested.py",
        """
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add(Note(body="outer"))
            try:
                with session.begin_nested():
                    session.add(Note(body="inner"))
                    session.flush()
                    raise ValueError("undo the inner one")
            except ValueError:
                pass
            session.commit()
            print(session.scalar(select(text("count(*)")).select_from(Note)))
        """,
    )
    doc = trace(capsys, engine, "--", "python", str(nested))
    assert printed(doc, "nested") == ["1"]
    kinds = [e["kind"] for e in events(doc, "nested-1")]
    assert "savepoint" in kinds and "rollback_to" in kinds
    last_commit = len(kinds) - 1 - kinds[::-1].index("commit")
    assert kinds.index("savepoint") < kinds.index("rollback_to") < last_commit
    sqls = [s["sql"].split()[0] for s in statements(doc, "nested-1")]
    assert sqls.count("SAVEPOINT") == 1 and "ROLLBACK" in sqls


def test_a_program_past_its_timeout_is_stopped_and_its_open_transaction_undone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    stuck = program(
        tmp_path,
        "stuck.py",
        """
        import time
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add(Note(body="never committed"))
            session.flush()
            print("holding", flush=True)
            time.sleep(60)
        """,
    )
    doc = trace(capsys, "sqlite", "--timeout", "2", "--", "python", str(stuck), code=1)
    assert doc["programs"][0]["exit_code"] not in (0, None)
    said = printed(doc, "stuck")
    assert said[0] == "holding" and said[-1] == "dbsandbox: stopped after 2 s (--timeout)"
    rollback = events(doc, "stuck-1", "rollback")
    assert rollback and "the database rolled it back" in rollback[-1]["message"]


def test_a_session_waiting_for_a_programs_lock_names_its_lane(engine: str, tmp_path: Path) -> None:
    # The app's case, headless: a traced program shares the sandbox with SQL sessions.
    import threading
    import time

    from sandbox.conductor import Conductor
    from sandbox.statements import Dialect, split_statements
    from sandbox.targets import open_target
    from sandbox.timeline import Timeline
    from sandbox.trace.tracer import split_commands
    from sandbox.trace.tracer import trace as run_trace

    signal = tmp_path / "holding"
    holder = program(
        tmp_path,
        "holder.py",
        f"""
        import pathlib, time
        Base.metadata.create_all(engine)
        with engine.connect() as conn:
            conn.execute(text("INSERT INTO notes (id, body) VALUES (1, 'held')"))
            pathlib.Path({str(signal)!r}).write_text("yes")
            time.sleep(1.5)  # long enough for the watcher (10 ms) many times over
            conn.commit()
        """,
    )
    dialect: Dialect = "postgres" if engine == "postgres" else "sqlite"
    with open_target(options_for(engine, busy_timeout_ms=5000)) as target:
        timeline = Timeline()
        conductor = Conductor(target, timeline)
        try:
            traced = threading.Thread(
                target=run_trace,
                args=(split_commands(["python", str(holder)]), target),
                kwargs={
                    "timeline": timeline,
                    "adopt": conductor.adopt,
                    "share": conductor.watch_with,
                },
            )
            traced.start()
            while not signal.exists():
                time.sleep(0.01)
            sql = "INSERT INTO notes (id, body) VALUES (1, 'mine')"
            mine = conductor.execute("A", split_statements(sql, dialect)[0])
            traced.join(timeout=60)
        finally:
            conductor.close()
    assert mine.waited and mine.blocked_by == ["holder-1"]
    assert mine.outcome is not None and mine.outcome.error is not None  # the row exists now


def test_a_program_named_like_a_session_gets_a_lane_name_of_its_own() -> None:
    from types import SimpleNamespace

    from sandbox.targets import open_target
    from sandbox.timeline import Timeline
    from sandbox.trace.recorder import Recorder

    with open_target(options_for("sqlite")) as target:
        recorder = Recorder(target, Timeline(), others=lambda: [SimpleNamespace(name="A")])
        try:
            assert recorder.program(101, ["a.py"]).label == "a_py"
            assert recorder.program(102, ["report.py"]).label == "report"
            assert recorder.program(103, ["report.py"]).label == "report_2"
        finally:
            recorder.close()


def test_the_same_statement_sent_from_different_places_names_each_place(
    engine: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The tracer jumps to where a statement was last sent from (see _statement_origin):
    the same text sent through another path of SQLAlchemy, or from another function of the
    program, must still name its own line."""
    places = program(
        tmp_path,
        "places.py",
        """
        PROBE = "SELECT 41 + 1"

        def helper(session):
            return session.execute(text(PROBE)).scalar()  # from the helper

        def deeper(session):
            return helper(session)

        with Session(engine) as session:
            session.execute(text(PROBE)).scalar()  # through the session
            with engine.connect() as connection:
                connection.execute(text(PROBE)).scalar()  # through a connection
            deeper(session)
            connection = engine.connect()
            connection.exec_driver_sql(PROBE).scalar()  # as the driver's own SQL
            session.execute(text(PROBE)).scalar()  # the session again
            connection.close()
        """,
    )
    doc = trace(capsys, engine, "--", "python", str(places))
    sent = [
        s["origin"]
        for lane in {s["session"] for s in doc["statements"]}
        for s in statements(doc, lane)
        if s["sql"] == "SELECT 41 + 1"
    ]
    expected = [
        f"places.py:{line_of(places, marker)}"
        for marker in (
            "through the session",
            "through a connection",
            "from the helper",
            "as the driver's own SQL",
            "the session again",
        )
    ]
    assert sorted(sent) == sorted(expected)


def test_a_statement_is_recorded_while_its_program_is_still_busy_elsewhere(
    tmp_path: Path,
) -> None:
    """Nothing in the traced program wakes on a timer: dbsandbox pokes a program that has
    gone silent, and what it had pending arrives then, not when the program next reports."""
    busy = program(
        tmp_path,
        "busy.py",
        """
        import time
        with Session(engine) as session:
            session.execute(text("SELECT 1")).scalar()  # connected, and quiet for a while
            time.sleep(0.2)
            session.execute(text("SELECT 'before the nap'")).scalar()
            session.execute(text("SELECT 'just after'")).scalar()
            time.sleep(1.5)
            print(f"woke {time.time()!r}", flush=True)
        """,
    )
    timeline = Timeline()
    heard: list[float] = []

    def listen(event: Any) -> None:
        if event.kind is EventKind.STATEMENT and "just after" in event.message:
            heard.append(time.time())

    timeline.subscribe(listen)
    with open_target(TargetOptions(engine="sqlite")) as target:
        result = run_trace([[sys.executable, str(busy)]], target, timeline=timeline)
    assert [p.exit_code for p in result.programs] == [0]
    woke = next(float(line.split()[1]) for line in result.programs[0].output if "woke" in line)
    assert heard and heard[0] < woke - 0.5, (heard, woke)


def test_an_end_told_twice_never_ends_the_next_statement(tmp_path: Path) -> None:
    # The tracer reports without locks: a statement's end added while its batch is being
    # taken is told again in a report of its own, so dbsandbox may hear it twice, the second
    # time after the lane's next statement began. Reports as the tracer writes them (lists).
    from sandbox.trace.recorder import Recorder
    from sandbox.trace.tracer import statement_report

    def stmt(n: int, sql: str, end: tuple[int, str, float] | None) -> dict[str, Any]:
        at = time.time()
        report = ["stmt", at, "MainThread", 1, n, n, (), False, "p.py:1", None, "idle"]
        report += [sql, None, end, True]
        message = statement_report(report)
        assert message is not None
        return message

    with open_target(TargetOptions(engine="sqlite")) as target:
        recorder = Recorder(target, Timeline())
        program = recorder.program(4242, ["p.py"])
        now = time.time()
        recorder.submit(program, {"t": "connect", "at": now, "c": 1})
        recorder.submit(program, stmt(1, "UPDATE t SET x = 1", (1, "idle", time.time())))
        recorder.submit(program, stmt(2, "UPDATE t SET x = 2", None))  # still running
        late = {"t": "done", "at": time.time(), "c": 1, "n": 1, "rowcount": 1, "tx": "idle"}
        recorder.submit(program, late)  # statement 1's end, again
        recorder.submit(program, {"t": "done", "at": time.time(), "c": 1, "n": 2, "rowcount": 7})
        recorder.close()
    first, second = recorder.executions
    assert first.outcome is not None and first.outcome.rowcount == 1
    assert second.outcome is not None and second.outcome.rowcount == 7


def test_a_finished_trace_leaves_no_thread_and_no_recording_behind(tmp_path: Path) -> None:
    """The app traces again and again in one process: each trace's threads must end and its
    recording must be freed once the trace returns (a thread left blocked in accept() kept
    the recorder, and every execution and event it held, alive for ever)."""
    import gc
    import threading
    import weakref

    from sandbox.trace import recorder as recorder_module

    writer = program(
        tmp_path,
        "writer.py",
        """
        Base.metadata.create_all(engine)
        with Session(engine) as session:
            session.add(Note(body="kept"))
            session.commit()
        """,
    )
    made: list[weakref.ref[Any]] = []
    original = recorder_module.Recorder.__init__

    def remembered(self: Any, *args: Any, **kwargs: Any) -> None:
        original(self, *args, **kwargs)
        made.append(weakref.ref(self))

    recorder_module.Recorder.__init__ = remembered  # type: ignore[method-assign]
    try:
        with open_target(options_for("sqlite")) as target:
            for _ in range(2):
                result = run_trace([[sys.executable, str(writer)]], target, timeout_s=60)
                assert [p.exit_code for p in result.programs] == [0]
                assert any("INSERT INTO notes" in e.statement.text for e in result.run.executions)
    finally:
        recorder_module.Recorder.__init__ = original  # type: ignore[method-assign]
    del result
    gc.collect()
    assert len(made) == 2
    assert [ref() for ref in made] == [None, None]
    left = [t.name for t in threading.enumerate() if t.name.startswith("dbsandbox-trace")]
    assert left == []


def test_a_trace_gives_the_collector_back_the_heap_it_set_aside(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """While a trace records, the process's older objects are set aside from the collector
    (recorder.collector_spared); once the last trace ends, also by an error, they are
    collected as before."""
    import gc

    from sandbox.errors import UserError
    from sandbox.trace.recorder import Recorder

    frozen_while_recording: list[int] = []
    exited = Recorder.exited

    def counted(self: Recorder, program: Any, code: int) -> None:
        frozen_while_recording.append(gc.get_freeze_count())
        exited(self, program, code)

    monkeypatch.setattr(Recorder, "exited", counted)
    with open_target(options_for("sqlite")) as target:
        result = run_trace([[sys.executable, "-c", "print('hello')"]], target, timeout_s=60)
        assert [p.exit_code for p in result.programs] == [0]
        assert frozen_while_recording and min(frozen_while_recording) > 0
        assert gc.get_freeze_count() == 0
        with pytest.raises(UserError):
            run_trace([[str(tmp_path / "no-such-program")]], target, timeout_s=60)
        assert gc.get_freeze_count() == 0
