"""`dbsandbox trace` sees what SQLAlchemy's own echo log sees, no more and no less.

An ORM program (benchmarks/trace_workload.py: batched inserts, gets, autoflushed updates,
selects, deletes, commits) runs under the tracer with SQLAlchemy's echo log written to a file.
The log's statements, BEGIN (implicit), COMMIT and ROLLBACK, in order, must be the trace's
(benchmarks/trace_fidelity.py compares them; it runs the same with 10,000 statements). On
PostgreSQL this covers the statements of SQLAlchemy's first connect (server version, schema)
and insertmanyvalues batches of many rows in one statement.
"""

from __future__ import annotations

from pathlib import Path

from benchmarks import trace_fidelity
from sandbox.targets import Target

STATEMENTS = 300


def test_the_trace_holds_exactly_the_statements_of_the_echo_log(
    target: Target, tmp_path: Path
) -> None:
    found, _ = trace_fidelity.traced_run(target, STATEMENTS, tmp_path)

    assert found.missed == []
    assert found.extra == []
    assert found.statements >= STATEMENTS
    assert found.logged == found.traced
    log = (tmp_path / f"echo-{target.engine}.log").read_text("utf-8")
    assert log.count("COMMIT") >= 2  # the workload's rounds each end in one


def test_a_statement_the_trace_lacks_is_reported_missed(target: Target, tmp_path: Path) -> None:
    """The comparison can fail: drop one statement from the trace and it says which."""
    found, result = trace_fidelity.traced_run(target, STATEMENTS, tmp_path)
    assert found.missed == []
    logged = trace_fidelity.echo_sequence(
        (tmp_path / f"echo-{target.engine}.log").read_text("utf-8")
    )
    traced = [entry for _, entry in trace_fidelity.trace_sequence(result)]
    gone = next(i for i, entry in enumerate(traced) if entry.startswith("UPDATE"))

    found = trace_fidelity.compare(logged, traced[:gone] + traced[gone + 1 :])

    assert found.extra == []
    assert found.missed == [f"#{gone + 1}: {traced[gone]}"]


def test_the_echo_log_is_read_record_by_record() -> None:
    """A statement spanning lines is one entry; its parameters' record is not an entry."""
    log = (
        "2026-01-02 03:04:05,678 INFO sqlalchemy.engine.Engine BEGIN (implicit)\n"
        "2026-01-02 03:04:05,679 INFO sqlalchemy.engine.Engine \n"
        "CREATE TABLE t (\n\tid INTEGER\n)\n\n\n"
        "2026-01-02 03:04:05,679 INFO sqlalchemy.engine.Engine [no key 0.00008s] ()\n"
        "2026-01-02 03:04:05,680 INFO sqlalchemy.engine.Engine SELECT 1\n"
        "2026-01-02 03:04:05,680 INFO sqlalchemy.engine.Engine [raw sql] ()\n"
        "2026-01-02 03:04:05,681 INFO sqlalchemy.engine.Engine ROLLBACK\n"
    )

    assert trace_fidelity.echo_sequence(log) == [
        "BEGIN (implicit)",
        "\nCREATE TABLE t (\n\tid INTEGER\n)\n\n",
        "SELECT 1",
        "ROLLBACK",
    ]
