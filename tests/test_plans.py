"""`\\explain`: plans as trees on the real engines, hot steps marked, nothing left behind."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from textual.widgets import DataTable, TextArea

from sandbox.cli import main
from sandbox.outcome import Status, TxState
from sandbox.plans import HOT, postgres_tree, sqlite_tree
from sandbox.runner import RunResult
from sandbox.statements import MetaCommand, Statement, split
from sandbox.transactions import TransactionTracker
from tests.conftest import options_for, run_script
from tests.test_ui_app import SIZE, caption, ready, until

ORDERS = {
    "sqlite": """
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, total INTEGER);
WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < 20000)
INSERT INTO orders SELECT i, i % 2500, i FROM n;
""",
    "postgres": """
CREATE TABLE orders (id INTEGER PRIMARY KEY, customer_id INTEGER NOT NULL, total INTEGER);
INSERT INTO orders SELECT i, i % 2500, i FROM generate_series(1, 20000) AS i;
ANALYZE orders;
""",
}
QUERY = "SELECT id, total FROM orders WHERE customer_id = 1207"


def plan_of(result: RunResult, at: int = -1) -> dict[str, Any]:
    explained = [e for e in result.executions if e.meta == "explain"][at]
    assert explained.outcome is not None and explained.outcome.data is not None
    plan: dict[str, Any] = explained.outcome.data["plan"]
    return plan


def labels(nodes: list[dict[str, Any]]) -> list[str]:
    return [n["label"] for node in nodes for n in [node, *flat(node["children"])]]


def flat(nodes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [n for node in nodes for n in [node, *flat(node["children"])]]


# --- splitting ----------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", ["sqlite", "postgres"])
def test_explain_carries_its_statement_over_lines_to_its_semicolon(dialect: Any) -> None:
    script = "SELECT 0;\n\\explain SELECT ';'\n  FROM t\n WHERE x = 1;\nSELECT 2;"
    first, command, last = split(script, dialect)
    assert isinstance(command, MetaCommand) and command.name == "explain"
    assert command.sql == "SELECT ';'\n  FROM t\n WHERE x = 1"
    assert command.text == "\\explain SELECT ';'\n  FROM t\n WHERE x = 1;"
    assert isinstance(first, Statement) and isinstance(last, Statement)
    assert (last.text, last.line) == ("SELECT 2", 5)


def test_explain_without_a_statement_is_a_one_line_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "bad.sql"
    script.write_text("\\explain\n\\session B\nSELECT 1;\n")
    assert main(["run", str(script)]) == 2
    err = capsys.readouterr().err
    assert len(err.splitlines()) == 1 and "\\explain needs a SQL statement" in err


# --- parsing ------------------------------------------------------------------------------


def test_sqlite_rows_become_a_tree_with_scans_hot_and_temp_btrees_notable() -> None:
    rows = [
        (2, 0, 0, "SCAN o"),
        (4, 0, 0, "SEARCH c USING INTEGER PRIMARY KEY (rowid=?)"),
        (7, 0, 0, "LIST SUBQUERY 1"),
        (9, 7, 0, "SCAN x USING COVERING INDEX x_idx"),
        (12, 0, 0, "USE TEMP B-TREE FOR ORDER BY"),
    ]
    roots = sqlite_tree(rows)
    assert [r.label for r in roots] == ["SCAN o", "SEARCH c", "LIST SUBQUERY 1", rows[4][3]]
    assert [r.hot for r in roots] == ["full scan", "", "", ""]
    assert roots[1].detail == "USING INTEGER PRIMARY KEY (rowid=?)"
    assert roots[2].children[0].hot == "full scan of an index"
    assert roots[3].notable == "temp b-tree"


def test_postgres_own_time_decides_and_a_cheap_plan_has_nothing_hot() -> None:
    def node(kind: str, cost: float, ms: float, *children: dict[str, Any]) -> dict[str, Any]:
        return {
            "Node Type": kind,
            "Total Cost": cost,
            "Plan Rows": 1,
            "Actual Total Time": ms,
            "Actual Rows": 1,
            "Actual Loops": 1,
            "Plans": list(children),
        }

    top = node("Sort", 400, 10.0, node("Seq Scan", 380, 9.0))
    (root,) = postgres_tree(top, analyzed=True)
    assert root.hot == "" and root.own == pytest.approx(1.0)
    assert root.children[0].hot == "90% of the time"
    # Two steps sharing the work are both hot: each does more than HOT_SHARE of it.
    (shared,) = postgres_tree(node("Agg", 400, 10.0, node("Seq Scan", 300, 5.0)), analyzed=True)
    assert [n.hot for n in shared.walk()] == ["50% of the time", "50% of the time"]
    cheap = node("Sort", 40, 10.0, node("Seq Scan", 38, 9.0))
    assert not any(n.hot for n in postgres_tree(cheap, analyzed=True)[0].walk())
    # Without ANALYZE the estimated cost decides.
    (planned,) = postgres_tree(top, analyzed=False)
    assert planned.hot == "" and planned.children[0].hot == "95% of the cost"


# --- on the real engines ------------------------------------------------------------------


def test_sqlite_marks_the_full_scan_then_not_once_indexed() -> None:
    script = ORDERS["sqlite"] + (
        f"\\explain {QUERY};\n"
        "CREATE INDEX orders_customer_id_idx ON orders (customer_id);\n"
        f"\\explain {QUERY};\n"
    )
    result = run_script("sqlite", script)
    before, after = plan_of(result, 0), plan_of(result, 1)
    assert before["hot"] == ["SCAN orders"] and not before["analyzed"]
    assert before["ran"] == [f"EXPLAIN QUERY PLAN {QUERY}"]
    assert after["hot"] == []
    assert labels(after["tree"]) == ["SEARCH orders"]
    explained = next(e for e in result.executions if e.meta == "explain")
    assert explained.outcome is not None
    assert explained.outcome.columns == ["plan", "hot", "detail"]
    assert explained.outcome.rows == [("SCAN orders", f"{HOT} full scan", "")]


@pytest.mark.postgres
def test_postgres_plan_is_a_timed_tree_with_the_seq_scan_hot(postgres_url: str) -> None:
    script = ORDERS["postgres"] + f"\\explain {QUERY} ORDER BY total;\n"
    result = run_script("postgres", script)
    plan = plan_of(result)
    assert plan["analyzed"] and plan["ran"][0] == "BEGIN" and plan["ran"][-1] == "ROLLBACK"
    assert labels(plan["tree"]) == ["Sort", "Seq Scan on orders"]
    assert plan["hot"] == ["Seq Scan on orders"]
    scan = flat(plan["tree"])[1]
    assert scan["rows"] == 8 and scan["loops"] == 1 and scan["time_ms"] > 0
    explained = next(e for e in result.executions if e.meta == "explain")
    assert explained.outcome is not None
    rows = explained.outcome.rows
    assert [r[0] for r in rows] == ["Sort", "└─ Seq Scan on orders"]
    assert str(rows[1][1]).startswith(HOT)
    assert "Seq Scan on orders is hot" in (explained.outcome.note or "")
    assert "inside BEGIN … ROLLBACK" in (explained.outcome.note or "")


@pytest.mark.postgres
@pytest.mark.parametrize("in_transaction", [False, True])
def test_postgres_write_is_analyzed_then_rolled_back_leaving_the_state_as_it_was(
    postgres_url: str, in_transaction: bool
) -> None:
    body = (
        "\\explain DELETE FROM orders WHERE customer_id = 5;\n"
        "\\explain UPDATE orders SET total = 0 WHERE id = 1;\n"
        "SELECT count(*), sum(total) FROM orders;\n"
    )
    script = ORDERS["postgres"] + (f"BEGIN;\n{body}COMMIT;\n" if in_transaction else body)
    result = run_script("postgres", script)
    explained = [e for e in result.executions if e.meta == "explain"]
    state = TxState.IN_TRANSACTION if in_transaction else TxState.IDLE
    for execution in explained:
        outcome = execution.outcome
        assert outcome is not None and outcome.status is Status.OK
        assert (outcome.tx_before, outcome.tx_after) == (state, state)
        plan = outcome.data["plan"] if outcome.data else {}
        assert plan["analyzed"]
        wrapper = "SAVEPOINT dbsandbox_explain" if in_transaction else "BEGIN"
        assert plan["ran"][0] == wrapper
    assert labels(plan_of(result, 0)["tree"])[0] == "Delete on orders"
    counted = next(e for e in result.executions if e.statement.text.startswith("SELECT count"))
    assert counted.outcome is not None and counted.outcome.rows == [(20000, 200010000)]
    # The timeline shows one statement per \explain, and a transaction as the engine had it.
    tracker = TransactionTracker()
    for event in result.timeline:
        tracker.feed(event)
    spans = tracker.spans("A")
    if in_transaction:
        assert len(spans) == 1 and spans[0].state == "committed"
        assert len(spans[0].statements) == 4  # BEGIN, the two \explain lines, the SELECT
    else:
        assert spans == []
    notices = [e for e in result.timeline if e.kind == "notice" and "ran" in e.data]
    assert len(notices) == 2 and "ANALYZE" in notices[0].message


@pytest.mark.postgres
def test_postgres_dangerous_write_is_only_planned_and_nothing_runs(postgres_url: str) -> None:
    script = ORDERS["postgres"] + "\\explain DELETE FROM orders;\nSELECT count(*) FROM orders;\n"
    result = run_script("postgres", script)
    plan = plan_of(result)
    assert not plan["analyzed"]
    assert plan["ran"] == ["BEGIN", "EXPLAIN (FORMAT JSON) DELETE FROM orders", "ROLLBACK"]
    explained = next(e for e in result.executions if e.meta == "explain")
    assert explained.outcome is not None
    assert explained.outcome.columns == ["plan", "hot", "est rows", "cost", "detail"]
    assert "not run: the guard flags it (delete-without-where" in (explained.outcome.note or "")
    assert result.executions[-1].outcome is not None
    assert result.executions[-1].outcome.rows == [(20000,)]


@pytest.mark.postgres
def test_postgres_failed_plan_keeps_the_transaction_usable(postgres_url: str) -> None:
    script = "BEGIN;\n\\explain SELECT 1 / 0;\nSELECT 2;\nCOMMIT;\n"
    result = run_script("postgres", script)
    explained, selected = result.executions[1], result.executions[2]
    assert explained.outcome is not None and explained.outcome.status is Status.ERROR
    assert explained.outcome.tx_after is TxState.IN_TRANSACTION
    assert selected.outcome is not None and selected.outcome.rows == [(2,)]


# --- dbsandbox run ------------------------------------------------------------------------


def test_run_prints_the_tree_in_text_and_json(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "plan.sql"
    script.write_text(ORDERS["sqlite"] + f"\\explain\n  {QUERY};\n")
    assert main(["run", str(script)]) == 0
    text = capsys.readouterr().out
    assert f"\\explain\n  {QUERY};" not in text  # shown on one line, like every statement
    assert f"line 5: \\explain {QUERY};" in text
    assert "SCAN orders is hot (full scan)" in text
    assert f"SCAN orders | {HOT} full scan" in text
    assert main(["run", "--format", "json", str(script)]) == 0
    document = json.loads(capsys.readouterr().out)
    last = document["statements"][-1]
    assert last["meta"] == "explain" and last["columns"] == ["plan", "hot", "detail"]
    assert last["plan"]["hot"] == ["SCAN orders"]
    assert last["plan"]["tree"][0]["hot"] == "full scan"


# --- the app ------------------------------------------------------------------------------


HOT_IN_APP = {"sqlite": ("SCAN orders", "full scan"), "postgres": ("Seq Scan on orders", "100%")}


@pytest.mark.parametrize("size", [SIZE, (80, 24)])
async def test_f9_explains_the_statement_under_the_cursor(
    engine: str, size: tuple[int, int]
) -> None:
    from sandbox.ui.app import create_app

    app = create_app(options_for(engine), pick=False)
    async with app.run_test(size=size) as pilot:
        await ready(pilot, app)
        editor = app.query_one("#editor", TextArea)
        editor.text = ORDERS[engine].strip()
        editor.select_all()
        app.action_run()
        conductor = app.bridge.conductor
        assert conductor is not None
        setup = len(split(ORDERS[engine], engine))  # type: ignore[arg-type]
        await until(
            pilot,
            lambda: (
                len(conductor.executions) == setup
                and all(e.finished() for e in conductor.executions)
            ),
        )
        editor.text = f"SELECT 1;\n{QUERY};\n"
        editor.move_cursor((1, 3))
        editor.focus()
        await pilot.press("f9")
        await until(pilot, lambda: "is hot" in caption(app))
        explained = conductor.executions[-1]
        assert explained.meta == "explain" and explained.carried == QUERY
        label, why = HOT_IN_APP[engine]
        assert f"{label} is hot" in caption(app)
        table = app.query_one("#results #rows", DataTable)
        assert table.row_count == 1
        hot = table.get_row_at(0)
        assert str(hot[0]) == label and str(hot[1]).startswith(f"{HOT} {why}")
        # The step and its marker stand out.
        assert all(any("bold red" in str(s.style) for s in shown.spans) for shown in hot[:2])


# --- it runs like a statement: counted once, waits on locks, cancelled cleanly ------------


@pytest.mark.parametrize("engine", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def test_the_session_counts_an_explain_as_the_one_statement_the_timeline_shows(
    engine: str, request: pytest.FixtureRequest
) -> None:
    from sandbox.conductor import Conductor
    from sandbox.targets import open_target

    if engine == "postgres":
        request.getfixturevalue("postgres_url")
    dialect: Any = engine
    script = ORDERS[engine] + (
        "BEGIN;\nUPDATE orders SET total = 1 WHERE id = 2;\n"
        "\\explain DELETE FROM orders WHERE customer_id = 5;\n"
    )
    with open_target(options_for(engine)) as target:
        conductor = Conductor(target)
        try:
            for item in split(script, dialect):
                if isinstance(item, MetaCommand):
                    conductor.run_meta("A", item)
                else:
                    conductor.execute("A", item)
            session = conductor.session("A")
            tracker = TransactionTracker()
            for event in conductor.timeline.events:
                tracker.feed(event)
            assert session.tx_state is TxState.IN_TRANSACTION
            # BEGIN, the UPDATE and the \explain: the plan's own SAVEPOINT ... RELEASE are not
            # statements of the learner's transaction, and it keeps one change, the UPDATE's.
            assert session.tx_statements == tracker.uncommitted("A") == 3
            assert session.tx_changes == 1
        finally:
            conductor.close()


@pytest.mark.postgres
def test_postgres_explain_waits_on_a_lock_like_the_write_it_runs(postgres_url: str) -> None:
    script = ORDERS["postgres"] + (
        "\\session B\nBEGIN;\nUPDATE orders SET total = 1 WHERE id = 1;\n"
        "\\session A\n\\explain UPDATE orders SET total = 2 WHERE id = 1;\n"
        "\\session B\nCOMMIT;\n"
        "\\session A\nSELECT total FROM orders WHERE id = 1;\n"
    )
    result = run_script("postgres", script)
    explained = next(e for e in result.executions if e.meta == "explain")
    assert explained.waited and explained.blocked_by == ["B"]
    assert explained.outcome is not None and explained.outcome.status is Status.OK
    waits = [e for e in result.timeline if e.kind == "lock_wait"]
    assert [e.statement for e in waits] == [explained.index]
    assert result.executions[-1].outcome is not None
    assert result.executions[-1].outcome.rows == [(1,)]  # B's value: the plan's write is gone


@pytest.mark.postgres
def test_postgres_explain_past_the_timeout_is_cancelled_and_the_transaction_goes_on(
    postgres_url: str,
) -> None:
    script = "BEGIN;\n\\explain SELECT pg_sleep(5);\nSELECT 42;\nCOMMIT;\n"
    result = run_script("postgres", script, statement_timeout_s=0.5)
    explained = result.executions[1]
    assert explained.outcome is not None and explained.outcome.status is Status.CANCELLED
    assert explained.outcome.tx_after is TxState.IN_TRANSACTION
    assert "ROLLBACK TO SAVEPOINT dbsandbox_explain" in (explained.outcome.note or "")
    # The timeline says what the engine ran for it, the clean-up included.
    (said,) = [e for e in result.timeline if e.kind == "notice" and e.statement == 1]
    assert said.data["ran"][0] == "SAVEPOINT dbsandbox_explain"
    assert said.data["ran"][-1] == "RELEASE SAVEPOINT dbsandbox_explain"
    answered = result.executions[2].outcome
    assert answered is not None and answered.rows == [(42,)]


@pytest.mark.parametrize(
    ("check", "problem"),
    [
        ('sql = "\\\\diff start"', "a check is SQL, or \\explain STATEMENT"),
        ('sql = "\\\\explain SELEC id FROM orders"', "does not parse as sqlite SQL"),
        ('sql = "\\\\explain SELECT 1"\nsession = "A"', "an \\explain check plans on a fresh"),
    ],
)
def test_a_scenario_check_may_be_sql_or_a_valid_explain(
    tmp_path: Path, check: str, problem: str
) -> None:
    from sandbox.scenario.loader import validate

    text = (Path(__file__).parent.parent / "scenarios" / "missing-index.toml").read_text()
    head, _ = text.rsplit("[[checks]]", 1)
    path = tmp_path / "missing-index.toml"  # a scenario's id is its file's name
    path.write_text(f'{head}[[checks]]\nname = "bad"\n{check}\nexpect = []\n')
    problems = [str(p) for p in validate(path)]
    assert any(problem in p for p in problems), problems
    path.write_text(text)
    assert validate(path) == []


def test_explain_of_a_statement_outside_the_sandbox_is_not_even_sent(tmp_path: Path) -> None:
    outside = tmp_path / "other.db"
    result = run_script("sqlite", f"\\explain ATTACH DATABASE '{outside}' AS other;\nSELECT 1;\n")
    explained = result.executions[0]
    assert explained.outcome is not None and explained.outcome.status is Status.BLOCKED
    assert "reaches outside the sandbox" in (explained.outcome.note or "")
    assert not any(e.kind == "statement" and e.statement == 0 for e in result.timeline)
    assert any(e.kind == "guard" and e.outcome == "blocked" for e in result.timeline)
    assert not outside.exists()
    # It stops the script there, as the statement itself would: SELECT 1 never runs.
    assert result.stopped is explained
    assert len(result.executions) == 1


def test_run_exits_3_at_an_explain_outside_the_sandbox(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    script = tmp_path / "escape.sql"
    script.write_text(f"\\explain ATTACH DATABASE '{tmp_path / 'other.db'}' AS other;\nSELECT 1;\n")
    assert main(["run", str(script)]) == 3
    assert "SELECT 1" not in capsys.readouterr().out


@pytest.mark.postgres
def test_postgres_explain_in_a_failed_transaction_plans_nothing_and_says_why(
    postgres_url: str,
) -> None:
    script = "BEGIN;\nSELECT 1 / 0;\n\\explain SELECT 1;\nROLLBACK;\n"
    result = run_script("postgres", script)
    explained = result.executions[2]
    assert explained.outcome is not None and explained.outcome.status is Status.ERROR
    assert explained.outcome.error is not None and explained.outcome.error.code == "25P02"
    assert explained.outcome.tx_after is TxState.FAILED
    assert "ROLLBACK first" in (explained.outcome.note or "")


def test_the_missing_index_scenario_reads_its_plan_with_explain(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["run", "missing-index"]) == 0
    broken = capsys.readouterr().out
    assert "SCAN orders is hot (full scan)" in broken
    assert "XX the order-history query no longer reads every order" in broken
    assert main(["run", "--solution", "missing-index"]) == 0
    fixed = capsys.readouterr().out
    assert "nothing is hot" in fixed and "result: the breakage reproduced; with the" in fixed


def test_the_runbook_draws_each_plan_as_the_app_does(tmp_path: Path) -> None:
    script = tmp_path / "plan.sql"
    script.write_text(
        "CREATE TABLE t (id INTEGER PRIMARY KEY, k INTEGER);\n"
        "\\explain SELECT * FROM t WHERE id IN (SELECT k FROM t GROUP BY k) ORDER BY k;\n"
    )
    runbook = tmp_path / "run.md"
    assert main(["run", str(script), "--export", str(runbook)]) == 0
    text = runbook.read_text()
    block = text[text.index("   ```\n") :].split("   ```", 2)[1]
    # The tree keeps its indentation (runs of spaces), and the hot scan its mark.
    assert "   SEARCH t" in block
    assert "   ├─ SCAN t                        ▲ full scan" in block
    assert "   └─ USE TEMP B-TREE FOR GROUP BY  • temp b-tree" in block
