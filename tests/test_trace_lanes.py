"""`dbsandbox trace` with many connections at once: each statement on its sender's lane.

Two processes of 4 threads each, every thread on its own connection, send tagged statements
at the same time (benchmarks/trace_lanes_program.py): as two programs traced together, and as
one program that forks two (multiprocessing). On both engines, the trace must have 8 lanes,
each holding exactly one thread's statements, all of them, in the order sent, each event
naming the thread that sent it (benchmarks/trace_lanes.check). benchmarks/trace_lanes.py runs
the same with many more statements.
"""

from __future__ import annotations

import pytest

from benchmarks import trace_lanes
from sandbox.targets import Target

COUNT = 30  # statements a thread: 3 COMMITs each, half of them writes


@pytest.mark.parametrize("mode", ["together", "fork"])
def test_every_statement_is_on_the_lane_of_the_connection_that_sent_it(
    target: Target, mode: str
) -> None:
    found, result = trace_lanes.run(target, mode, COUNT)

    assert found.problems == []
    assert found.lanes == 2 * trace_lanes.THREADS
    assert found.per_lane == {lane: COUNT for lane in found.per_lane}
    assert found.tagged == 2 * trace_lanes.THREADS * COUNT
    assert [p.exit_code for p in result.programs] == [0] * len(result.programs)


def test_a_lane_holding_two_senders_statements_is_caught(target: Target) -> None:
    """The check can fail: the same trace with one statement moved to another lane."""
    found, result = trace_lanes.run(target, "together", COUNT)
    assert found.problems == []
    tagged = [e for e in result.run.executions if "/* tag " in e.statement.text]
    moved, other = tagged[0], next(e for e in tagged if e.session != tagged[0].session)
    moved.session = other.session

    found = trace_lanes.check(result, trace_lanes.commands("together", COUNT)[1], COUNT)

    assert any(f"lane {other.session} holds statements of" in p for p in found.problems)
    tag = trace_lanes.TAG.search(moved.statement.text)
    assert tag is not None
    assert any(f"{tag.group(1)} is on lanes" in p for p in found.problems)
