"""Faults on a real server: restarts, terminated and frozen backends, a stopped or frozen
server, kill -9 and Ctrl+C at random moments.

Every test here runs on a throwaway cluster of its own (tests/pgcluster.py), never on the
shared server, and drives the real CLI in a subprocess, as a person's terminal would. What
must hold after each fault: no traceback, an exit code from the documented set, a one-line
account of anything left behind, and nothing left after `dbsandbox clean`.
"""

from __future__ import annotations

import contextlib
import os
import random
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.conftest import without_role_warning
from tests.pgcluster import Cluster, unavailable_reason

REQUIRE_ENV = "DBSANDBOX_REQUIRE_POSTGRES"


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    reason = unavailable_reason()
    if reason is not None:
        if os.environ.get(REQUIRE_ENV) == "1":
            pytest.fail(f"{REQUIRE_ENV}=1 but no throwaway cluster can be made: {reason}")
        pytest.skip(f"no throwaway PostgreSQL cluster: {reason}")
    made = Cluster()
    try:
        yield made
    finally:
        made.destroy()


@pytest.fixture
def server(cluster: Cluster) -> Iterator[Cluster]:
    """The module's cluster, up and empty of sandboxes before and after each test."""
    cluster.thaw()
    if not (cluster.data / "postmaster.pid").exists():
        cluster.start()
    cluster.wait_until_up()
    yield cluster
    cluster.thaw()
    if not (cluster.data / "postmaster.pid").exists():
        cluster.start()
    cluster.wait_until_up()
    for name in cluster.databases():
        cluster.query(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def start_run(url: str, script: str, *options: str) -> subprocess.Popen[str]:
    process = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "sandbox",
            "run",
            "-",
            "--engine",
            "postgres",
            "--url",
            url,
            *list(options),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdin is not None
    process.stdin.write(script)
    process.stdin.close()
    return process


def finish(process: subprocess.Popen[str], bound_s: float = 120) -> tuple[int, str, str]:
    """Wait for the run to end; the bound only keeps a hang from hanging the test suite."""
    try:
        process.wait(timeout=bound_s)
    except subprocess.TimeoutExpired:
        process.kill()
        raise AssertionError(f"the run did not end within {bound_s} s: it hangs") from None
    assert process.stdout is not None and process.stderr is not None
    # The cluster's role is a superuser: every run warns about it first.
    return process.returncode, process.stdout.read(), without_role_warning(process.stderr.read())


def wait_until(condition: Callable[[], bool], what: str, bound_s: float = 30.0) -> None:
    deadline = time.monotonic() + bound_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting: {what}")
        time.sleep(0.05)


def sleeping(cluster: Cluster) -> list[int]:
    """Server processes of sandbox sessions inside pg_sleep (a SELECT runs as a cursor's
    FETCH, so the query text does not say; the wait event does)."""
    rows = cluster.query(
        "SELECT pid FROM pg_stat_activity WHERE application_name LIKE 'dbsandbox:%%:_' "
        "AND wait_event = 'PgSleep'"
    )
    return [int(str(r[0])) for r in rows]


def sandboxes(cluster: Cluster) -> list[str]:
    return [name for name in cluster.databases() if name.startswith("dbsandbox_")]


def clean(url: str) -> tuple[int, str, str]:
    done = subprocess.run(
        [sys.executable, "-m", "sandbox", "clean", "--url", url],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    return done.returncode, done.stdout, done.stderr


def assert_no_traceback(err: str) -> None:
    assert "Traceback" not in err, err
    assert "Error:" not in err.replace("dbsandbox:", ""), err


# --------------------------------------------------------------------------- lost connections


def test_a_server_restart_mid_statement_is_an_outcome_and_the_sandbox_is_still_removed(
    server: Cluster,
) -> None:
    run = start_run(server.url, "SELECT pg_sleep(60);\nSELECT 2;\n", "--statement-timeout", "90")
    wait_until(lambda: sleeping(server) != [], "the sleep to start")
    server.restart()

    code, out, err = finish(run)

    assert_no_traceback(err)
    assert code == 0, err
    assert "the connection to the server is gone" in out
    assert "not run: this session's connection was lost" in out
    assert sandboxes(server) == []


def test_a_server_restart_during_a_lock_wait_ends_the_run_cleanly(server: Cluster) -> None:
    script = (
        "CREATE TABLE t (id int primary key, v int);\nINSERT INTO t VALUES (1, 0);\n"
        "BEGIN;\nUPDATE t SET v = 1 WHERE id = 1;\n"
        "\\session B\nUPDATE t SET v = 2 WHERE id = 1;\n"
        "\\session A\nSELECT pg_sleep(60);\n"
    )
    run = start_run(server.url, script, "--statement-timeout", "90", "--wait-timeout", "90")
    wait_until(lambda: sleeping(server) != [], "A to sleep while B waits")
    server.restart()

    code, out, err = finish(run)

    assert_no_traceback(err)
    assert code == 0, err
    assert out.count("the connection to the server is gone") >= 1
    assert sandboxes(server) == []


def test_a_terminated_admin_connection_is_reopened_to_drop_the_sandbox(server: Cluster) -> None:
    run = start_run(server.url, "SELECT pg_sleep(2);\nSELECT 1;\n")
    wait_until(lambda: sleeping(server) != [], "the run to start")
    # The sandbox's own admin connection carries exactly the sandbox's application name.
    killed = server.query(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
        "WHERE application_name ~ '^dbsandbox:dbsandbox_[0-9_a-f]+$'"
    )
    assert killed == [(True,)]

    code, _out, err = finish(run)

    assert_no_traceback(err)
    assert code == 0, err
    assert sandboxes(server) == []


def test_a_stopped_server_leaves_a_one_line_account_and_clean_removes_it_later(
    server: Cluster,
) -> None:
    run = start_run(server.url, "SELECT pg_sleep(60);\nSELECT 2;\n", "--statement-timeout", "90")
    wait_until(lambda: sleeping(server) != [], "the sleep to start")
    made = sandboxes(server)
    server.stop("immediate")

    code, out, err = finish(run)

    assert_no_traceback(err)
    assert code == 4, err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("dbsandbox: could not remove the sandbox: ")
    assert made[0] in lines[0] and "dbsandbox clean" in lines[0]
    assert "the connection to the server is gone" in out

    server.start()
    code, out, err = clean(server.url)
    assert code == 0, err
    assert f"removed database {made[0]}" in out
    assert sandboxes(server) == []


# --------------------------------------------------------------------------- frozen


def test_a_frozen_backend_is_cut_off_after_the_cancel_grace(server: Cluster) -> None:
    run = start_run(server.url, "SELECT pg_sleep(60);\nSELECT 2;\n", "--statement-timeout", "1")
    wait_until(lambda: sleeping(server) != [], "the sleep to start")
    (backend,) = sleeping(server)
    os.kill(backend, signal.SIGSTOP)
    try:
        # The statement timeout's cancel cannot land on a stopped process: the connection is
        # cut after the grace, and the run goes on; the drop waits for the backend to thaw.
        time.sleep(8)
        os.kill(backend, signal.SIGCONT)
        code, out, err = finish(run)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(backend, signal.SIGCONT)

    assert_no_traceback(err)
    assert code == 0, err
    assert "cutting the session's connection" in out
    assert sandboxes(server) == []


@pytest.mark.timeout(300)
def test_a_frozen_server_cannot_hang_the_run(server: Cluster) -> None:
    run = start_run(server.url, "SELECT pg_sleep(60);\nSELECT 2;\n", "--statement-timeout", "1")
    wait_until(lambda: sleeping(server) != [], "the sleep to start")
    made = sandboxes(server)
    server.freeze()
    try:
        code, out, err = finish(run, bound_s=150)
    finally:
        server.thaw()

    assert_no_traceback(err)
    assert code == 4, err
    assert len(err.strip().splitlines()) == 1, err
    assert made[0] in err and "dbsandbox clean" in err
    assert "cutting the session's connection" in out
    assert "lock watch interrupted" in out
    code, _out, err = clean(server.url)
    assert code == 0, err
    assert sandboxes(server) == []


# --------------------------------------------------------------------------- kill and Ctrl+C

BUSY_SCRIPT = """
CREATE TABLE t (id int primary key, v text);
INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 2000) g;
\\snapshot one
UPDATE t SET v = 'y' WHERE id < 100;
\\snapshot two
\\restore one
\\session B
SELECT count(*) FROM t;
\\snapshot three
\\restore two
\\session A
SELECT pg_sleep(0.2);
"""


@pytest.mark.timeout(300)
def test_kill_9_at_random_moments_leaves_nothing_clean_cannot_remove(server: Cluster) -> None:
    rng = random.Random(11)
    for _ in range(10):
        run = start_run(server.url, BUSY_SCRIPT)
        time.sleep(rng.uniform(0.05, 1.5))
        run.kill()
        run.wait(timeout=30)
        assert run.stderr is not None
        assert "Traceback" not in run.stderr.read()
    # At once: the killed clients' server processes may still be running; clean ends them.
    code, out, err = clean(server.url)

    assert code == 0, (err, out)
    assert sandboxes(server) == [], out


@pytest.mark.timeout(300)
def test_ctrl_c_at_random_moments_says_truthfully_what_was_left(server: Cluster) -> None:
    rng = random.Random(5)
    for _ in range(8):
        run = start_run(server.url, BUSY_SCRIPT)
        time.sleep(rng.uniform(0.1, 2.0))
        run.send_signal(signal.SIGINT)
        if rng.random() < 0.5:  # an impatient second Ctrl+C, during the cleanup
            time.sleep(rng.uniform(0.0, 0.3))
            if run.poll() is None:
                run.send_signal(signal.SIGINT)
        code, _out, err = finish(run)
        assert_no_traceback(err)
        # -SIGINT: a Ctrl+C before Python set up its handling (nothing made yet), or one after
        # everything was done (the shell shows 130 for both).
        assert code in (0, 130, -signal.SIGINT), err
        # "before anything was made": a Ctrl+C while Python was still importing dbsandbox
        # (a busy machine can take longer than the shortest wait here to get that far).
        said_nothing_left = ("the sandbox was removed", "before anything was made")
        if any(words in err for words in said_nothing_left) or code in (0, -signal.SIGINT):
            assert sandboxes(server) == [], err
        else:
            assert "dbsandbox clean" in err
            assert clean(server.url)[0] == 0
            assert sandboxes(server) == []


# --------------------------------------------------------------------------- ownership


def test_a_forged_marker_is_not_enough_to_get_a_database_dropped(server: Cluster) -> None:
    victim = "dbsandbox_20260101_000000_abcdef"
    server.query(f'CREATE DATABASE "{victim}"')
    server.query(
        f"COMMENT ON DATABASE \"{victim}\" IS 'dbsandbox scratch: created 2026-01-01 by pid 1'"
    )

    code, out, err = clean(server.url)

    assert code == 0, err
    assert f"kept database {victim}: marked as a scratch database, but no sandbox" in out
    assert victim in server.databases()


def test_clean_leaves_a_live_sandbox_alone(server: Cluster, tmp_path: Path) -> None:
    run = start_run(server.url, "SELECT pg_sleep(5);\n")
    wait_until(lambda: sleeping(server) != [], "the run to start")
    made = sandboxes(server)

    code, out, err = clean(server.url)

    assert code == 0, err
    assert f"kept database {made[0]}: in use by a running sandbox" in out
    assert made[0] in sandboxes(server)
    assert finish(run)[0] == 0
    assert sandboxes(server) == []


@pytest.mark.timeout(600)
def test_server_restarts_at_random_moments_never_end_in_a_traceback(server: Cluster) -> None:
    rng = random.Random(3)
    for _ in range(6):
        run = start_run(server.url, BUSY_SCRIPT)
        time.sleep(rng.uniform(0.2, 2.0))
        server.restart()
        code, out, err = finish(run)
        assert_no_traceback(err)
        assert code in (0, 2, 4), err
        if code == 2:  # the restart came before the sandbox existed, or while a session opened
            # libpq itself prints a notice the server sends while a connection is being made
            # ("WARNING:  terminating connection due to immediate shutdown command"), before
            # the driver can take it: that line is the server's, not dbsandbox's.
            ours = [line for line in err.strip().splitlines() if not line.startswith("WARNING:  ")]
            assert len(ours) == 1, err
        if code == 4:
            assert "dbsandbox clean" in err
        server.wait_until_up()
        assert clean(server.url)[0] == 0
        assert sandboxes(server) == [], (out, err)


# --------------------------------------------------------------------------- the guard's review


def test_a_review_that_never_returns_cannot_hang_a_run(monkeypatch: pytest.MonkeyPatch) -> None:
    """The guard asks the engine about an UPDATE before sending it (its schema); on a frozen
    server that question never returns. Stand-in for the frozen read: a schema read that
    blocks until the test ends. The run must still end, the session written off."""
    import threading

    from sandbox import conductor
    from sandbox.guard.policy import Guard
    from sandbox.runner import RunOptions, read_script, run_steps
    from sandbox.targets import SqliteTarget

    frozen = threading.Event()

    def never_answers(session: object) -> None:
        frozen.wait(120)
        return None

    script = read_script(
        "CREATE TABLE t (id int, v int);\nUPDATE t SET v = 1 WHERE v > 0;\nSELECT 1;\n",
        "sqlite",
        "frozen.sql",
    )
    with SqliteTarget() as target:
        target.cancel_grace_s = 0.5
        monkeypatch.setattr(conductor, "_introspect", never_answers)
        try:
            result = run_steps(script.steps, target, RunOptions(statement_timeout_s=0.5), Guard())
        finally:
            frozen.set()
    update, after = result.executions[1], result.executions[2]
    assert update.outcome is not None and update.outcome.note == conductor.SERVER_SILENT_NOTE
    assert after.outcome is not None and after.outcome.note == conductor.LOST_SESSION_NOTE
    messages = [event.message for event in result.timeline]
    assert any("did not answer the guard's questions" in m for m in messages)


def test_clean_right_after_kill_9_ends_the_orphans_server_processes(server: Cluster) -> None:
    run = start_run(server.url, "SELECT pg_sleep(300);\n", "--statement-timeout", "600")
    wait_until(lambda: sleeping(server) != [], "the sleep to start")
    made = sandboxes(server)
    run.kill()
    run.wait(timeout=30)
    # The server process inside pg_sleep(300) would live on for five minutes: clean, at once.
    assert sleeping(server) != []

    code, out, err = clean(server.url)

    assert code == 0, err
    assert f"removed database {made[0]}" in out
    assert sandboxes(server) == []
    assert sleeping(server) == []
