"""`\\explain STATEMENT;`: the engine's plan for a statement, read as a tree.

What each engine is asked:

- PostgreSQL: `EXPLAIN (ANALYZE, FORMAT JSON)`, which runs the statement to time it. So it always
  runs inside `BEGIN ... ROLLBACK` (no transaction open) or `SAVEPOINT ... ROLLBACK TO SAVEPOINT
  ... RELEASE SAVEPOINT` (inside the learner's transaction): nothing it changed stays, and the
  session is left in the transaction state it was in. Sequences it advanced stay advanced (no
  rollback takes those back), and the note says so for a write. A statement the guard would ask
  about (a DELETE without WHERE, ...) is not run at all: it is planned without ANALYZE
  (`EXPLAIN (FORMAT JSON)`, estimates only) and the note says why. One that reaches outside the
  sandbox is not even planned.
- SQLite: `EXPLAIN QUERY PLAN`, which never runs the statement and gives no costs, row counts or
  times: only the steps (id, parent, detail).

Which steps are "hot" (marked `▲`):

- PostgreSQL: a step whose own share (its time, or its cost when not run, minus its children's)
  is at least 30% of the whole plan's (HOT_SHARE). A plan whose whole estimated cost is under
  CHEAP_PLAN_COST is cheap as a whole, and none of its steps is marked: something always takes
  most of the time, and on a few rows that is not worth a learner's attention.
- SQLite: a full `SCAN` of a table (or of a whole index): it reads every row. SQLite gives no
  costs, so it cannot say how big the table is; on a small one the scan costs nothing.
- Notable, not hot (marked `•`): SQLite's `USE TEMP B-TREE` (it sorts or groups in a temporary
  index) and an `AUTOMATIC` index (built for this one query).

This module stays headless: the app, `dbsandbox run` and the exports show what it returns.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sandbox.outcome import Outcome, Status, TxState
from sandbox.session import CONNECTION_LOST_NOTE, Session
from sandbox.sqlkind import classify
from sandbox.statements import Dialect, split_statements

HOT_SHARE = 0.3
CHEAP_PLAN_COST = 100.0
HOT = "▲"
NOTABLE = "•"
SAVEPOINT = "dbsandbox_explain"

# SQLite's plan lines: `SCAN orders`, `SCAN o USING COVERING INDEX i`, `SEARCH orders USING
# INDEX i (customer_id=?)`, `USE TEMP B-TREE FOR ORDER BY`.
_SQLITE_SCAN = re.compile(r"^SCAN (?!CONSTANT ROW)(?!\()(\S+)(?: AS \S+)?( USING .*INDEX.*)?$")


@dataclass
class PlanNode:
    """One step of a plan; numbers are None where the engine did not give them."""

    label: str  # "Seq Scan on orders", "SEARCH orders"
    detail: str = ""  # the index, condition or filter it uses
    est_rows: float | None = None
    cost: float | None = None  # PostgreSQL: estimated total cost, this step and below
    rows: float | None = None  # rows it returned, all loops together (ANALYZE)
    loops: int | None = None
    time_ms: float | None = None  # time in this step and below, all loops together (ANALYZE)
    own: float | None = None  # this step's own time (or cost), without its children's
    share: float | None = None  # `own` as a part of the whole plan's
    hot: str = ""  # why it is hot, e.g. "97% of the time", "full scan"; "" when it is not
    notable: str = ""  # worth a look without being hot, e.g. "temp b-tree"
    children: list[PlanNode] = field(default_factory=list)

    def walk(self) -> list[PlanNode]:
        return [self, *[node for child in self.children for node in child.walk()]]

    def to_json(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "detail": self.detail,
            "est_rows": self.est_rows,
            "cost": self.cost,
            "rows": self.rows,
            "loops": self.loops,
            "time_ms": self.time_ms,
            "share": None if self.share is None else round(self.share, 4),
            "hot": self.hot or None,
            "notable": self.notable or None,
            "children": [child.to_json() for child in self.children],
        }


@dataclass
class Plan:
    """A statement's plan, and how it was obtained (what the engine ran to get it)."""

    engine: str
    statement: str
    roots: list[PlanNode]
    analyzed: bool  # the engine ran the statement to measure it (PostgreSQL ANALYZE)
    ran: list[str]  # every statement the engine ran for it, in order
    how: str  # how it was obtained, for the note
    execution_ms: float | None = None
    planning_ms: float | None = None

    def nodes(self) -> list[PlanNode]:
        return [node for root in self.roots for node in root.walk()]

    def hot(self) -> list[PlanNode]:
        return [node for node in self.nodes() if node.hot]

    def summary(self) -> str:
        """One line: what is hot, then how the plan was obtained (the statement is not named)."""
        hot = self.hot()
        if not self.roots:
            said = "the engine gave no steps"
        elif hot:
            said = "; ".join(f"{node.label} is hot ({node.hot})" for node in hot)
        elif self.engine == "postgres" and self.roots and self.roots[0].cost is not None:
            said = f"nothing is hot (the whole plan's estimated cost is {self.roots[0].cost:g})"
        else:
            said = "nothing is hot"
        # Not the statement itself: the caption and `run` already name it next to this note.
        return f"{said}; {self.how}"

    def display(self) -> tuple[list[str], list[tuple[Any, ...]]]:
        """Columns and rows for a grid or a text table: the tree drawn in the first column."""
        drawn = _drawn(self.roots)
        if self.engine == "sqlite":
            columns = ["plan", "hot", "detail"]
            return columns, [(prefix + n.label, _mark(n), n.detail) for prefix, n in drawn]
        if not self.analyzed:
            columns = ["plan", "hot", "est rows", "cost", "detail"]
            return columns, [
                (prefix + n.label, _mark(n), _num(n.est_rows), _num(n.cost), n.detail)
                for prefix, n in drawn
            ]
        columns = ["plan", "hot", "rows", "est rows", "time ms", "cost", "detail"]
        return columns, [
            (
                prefix + n.label,
                _mark(n),
                _num(n.rows),
                _num(n.est_rows),
                _num(n.time_ms, 3),
                _num(n.cost),
                _loops(n) + n.detail,
            )
            for prefix, n in drawn
        ]

    def to_json(self) -> dict[str, Any]:
        return {
            "engine": self.engine,
            "statement": self.statement,
            "analyzed": self.analyzed,
            "ran": self.ran,
            "how": self.how,
            "execution_ms": self.execution_ms,
            "planning_ms": self.planning_ms,
            "hot": [node.label for node in self.hot()],
            "tree": [root.to_json() for root in self.roots],
        }


def _mark(node: PlanNode) -> str:
    if node.hot:
        return f"{HOT} {node.hot}"
    return f"{NOTABLE} {node.notable}" if node.notable else ""


def _loops(node: PlanNode) -> str:
    return f"×{node.loops} loops; " if node.loops and node.loops > 1 else ""


def _num(value: float | None, places: int = 2) -> Any:
    """Whole numbers as ints, others rounded; "" where the engine gave nothing."""
    if value is None:
        return ""
    rounded = round(value, places)
    return int(rounded) if rounded == int(rounded) else rounded


def _drawn(roots: list[PlanNode]) -> list[tuple[str, PlanNode]]:
    """Each node with the tree-drawing prefix of its line (`├─ `, `│  └─ `, ...)."""
    out: list[tuple[str, PlanNode]] = []

    def visit(node: PlanNode, lead: str, last: bool, top: bool) -> None:
        out.append((lead if top else lead + ("└─ " if last else "├─ "), node))
        inner = lead if top else lead + ("   " if last else "│  ")
        for i, child in enumerate(node.children):
            visit(child, inner, i == len(node.children) - 1, False)

    for root in roots:
        visit(root, "", True, True)
    return out


# ---------------------------------------------------------------------- fetching


def explain(session: Session, sql: str, sandbox_dir: Path | None = None) -> Outcome:
    """Plan `sql` on the session's connection (its own thread); the outcome holds the tree.

    The outcome's columns and rows are the drawn tree, its note the summary, its data
    `{"plan": ...}`; tx_before and tx_after are the session's real states (the same, unless the
    connection was lost).
    """
    dialect: Dialect = "postgres" if session.engine == "postgres" else "sqlite"
    before = session.tx_state
    decision, why = _guard(sql, dialect, sandbox_dir)
    if decision == "block":
        return Outcome(Status.BLOCKED, before, before, 0.0, note=f"not planned: {why}")
    if dialect == "sqlite":
        return _explain_sqlite(session, sql)
    return _explain_postgres(session, sql, analyze=decision == "allow", why=why)


def refusal(sql: str, dialect: Dialect, sandbox_dir: Path | None) -> str | None:
    """Why the statement is not even planned (it reaches outside the sandbox), else None."""
    decision, why = _guard(sql, dialect, sandbox_dir)
    return why if decision == "block" else None


def _guard(sql: str, dialect: Dialect, sandbox_dir: Path | None) -> tuple[str, str]:
    """What the guard makes of the statement itself: allow, confirm (a dangerous write: do not
    run it, only plan it) or block (it reaches outside the sandbox: do nothing)."""
    from sandbox.guard.lint import lint_statement
    from sandbox.guard.policy import Decision, Policy

    statements = split_statements(sql, dialect)
    if not statements:
        return "allow", ""
    policy = Policy()
    findings = lint_statement(statements[0], dialect, None, sandbox_dir)
    decided = [(policy.decide(f), f) for f in findings]
    for decision, finding in decided:
        if decision is Decision.BLOCK:
            return "block", finding.message
    for decision, finding in decided:
        if decision is Decision.CONFIRM:
            return "confirm", f"{finding.rule}: {finding.message}"
    return "allow", ""


def _explain_sqlite(session: Session, sql: str) -> Outcome:
    text = f"EXPLAIN QUERY PLAN {sql}"
    outcome = session.execute(text, classify(text, "sqlite"))
    if outcome.status is not Status.OK:
        return outcome
    how = "SQLite planned it without running it: no costs or times, a full SCAN is hot"
    plan = Plan("sqlite", sql, sqlite_tree(outcome.rows), False, [text], how)
    return _planned(outcome, plan)


def _explain_postgres(session: Session, sql: str, *, analyze: bool, why: str) -> Outcome:
    before = session.tx_state
    saved = _counters(session)
    inside = before is not TxState.IDLE
    if inside:
        opening = f"SAVEPOINT {SAVEPOINT}"
        closing = [f"ROLLBACK TO SAVEPOINT {SAVEPOINT}", f"RELEASE SAVEPOINT {SAVEPOINT}"]
    else:
        opening, closing = "BEGIN", ["ROLLBACK"]
    options = "ANALYZE, FORMAT JSON" if analyze else "FORMAT JSON"
    text = f"EXPLAIN ({options}) {sql}"
    ran: list[str] = []

    def run(statement: str) -> Outcome:
        ran.append(statement)
        return session.execute(statement, classify(statement, "postgres"))

    opened = run(opening)
    if opened.status is not Status.OK:
        # A failed transaction refuses the savepoint: nothing ran, and it stays failed.
        opened.tx_before = before
        if before is TxState.FAILED:
            opened.note = "not planned: this transaction has failed; ROLLBACK first"
        return opened
    explained = run(text)
    if explained.note == CONNECTION_LOST_NOTE:
        explained.tx_before = before
        return explained
    for statement in closing:
        undone = run(statement)
        if undone.status is not Status.OK and undone.note != CONNECTION_LOST_NOTE:
            # A cancel meant for the EXPLAIN may land on its clean-up: once more.
            run(statement)
    if session.tx_state is before:
        _restore(session, saved, inside)
    if explained.status is not Status.OK:
        explained.tx_before, explained.tx_after = before, session.tx_state
        wrapper = "SAVEPOINT … ROLLBACK TO" if inside else "BEGIN … ROLLBACK"
        explained.note = f"planned inside {wrapper}: {'; '.join(ran)}"
        explained.data = {"ran": ran}
        return explained
    document = explained.rows[0][0] if explained.rows else "[]"
    found = json.loads(document) if isinstance(document, str) else document
    top = found[0] if found else {}
    if analyze:
        wrapper = (
            "inside SAVEPOINT … ROLLBACK TO: nothing stays, your transaction goes on"
            if inside
            else "inside BEGIN … ROLLBACK: nothing stays"
        )
        how = f"ran with ANALYZE {wrapper}"
        if not classify(sql, "postgres").read_only:
            how += " (but sequences stay advanced)"
    else:
        how = f"not run: the guard flags it ({why}); planned without ANALYZE: estimates only"
    plan = Plan(
        "postgres",
        sql,
        postgres_tree(top.get("Plan", {}), analyze) if top else [],
        analyze,
        ran,
        how,
        execution_ms=top.get("Execution Time"),
        planning_ms=top.get("Planning Time"),
    )
    explained.tx_before, explained.tx_after = before, session.tx_state
    return _planned(explained, plan)


def _planned(outcome: Outcome, plan: Plan) -> Outcome:
    outcome.columns, outcome.rows = plan.display()
    outcome.rowcount = None
    outcome.note = plan.summary()
    outcome.data = {"plan": plan.to_json()}
    return outcome


def _counters(session: Session) -> tuple[int, int, int, bool]:
    return (
        session.tx_statements,
        session.ended_tx_statements,
        session.tx_changes,
        session.holds_write_lock,
    )


def _restore(session: Session, saved: tuple[int, int, int, bool], inside: bool) -> None:
    """The wrapper statements left the transaction as they found it: count the plan as the one
    read it was (the timeline shows one `\\explain`), not as the four statements it took."""
    (
        session.tx_statements,
        session.ended_tx_statements,
        session.tx_changes,
        session.holds_write_lock,
    ) = saved
    if inside:
        session.tx_statements += 1


# ---------------------------------------------------------------------- parsing


def sqlite_tree(rows: list[tuple[Any, ...]]) -> list[PlanNode]:
    """SQLite's (id, parent, notused, detail) rows as a tree, hot scans marked."""
    nodes: dict[int, PlanNode] = {}
    roots: list[PlanNode] = []
    for row in rows:
        ident, parent, detail = int(row[0]), int(row[1]), str(row[-1])
        node = _sqlite_node(detail)
        nodes[ident] = node
        owner = nodes.get(parent)
        (owner.children if owner is not None else roots).append(node)
    return roots


def _sqlite_node(detail: str) -> PlanNode:
    head, sep, rest = detail.partition(" USING ")
    node = PlanNode(head, f"USING {rest}" if sep else "")
    scan = _SQLITE_SCAN.match(detail)
    if scan is not None:
        node.hot = "full scan of an index" if scan.group(2) else "full scan"
    elif detail.startswith("USE TEMP B-TREE"):
        node.label, node.detail = detail, ""
        node.notable = "temp b-tree"
    if "AUTOMATIC" in rest:
        node.notable = "index built for this query"
    return node


def postgres_tree(top: dict[str, Any], analyzed: bool) -> list[PlanNode]:
    """PostgreSQL's JSON plan as a tree, each step's own share worked out and hot ones marked."""
    root = _pg_node(top, analyzed)
    whole = root.time_ms if analyzed else root.cost
    cheap = (root.cost or 0.0) < CHEAP_PLAN_COST
    for node in root.walk():
        if node.own is None or not whole:
            continue
        # Parallel workers' times overlap (each loop is one worker): a share can pass 100%.
        node.share = min(node.own / whole, 1.0)
        if node.share >= HOT_SHARE and not cheap:
            node.hot = f"{node.share:.0%} of the {'time' if analyzed else 'cost'}"
    return [root]


def _pg_node(data: dict[str, Any], analyzed: bool) -> PlanNode:
    node = PlanNode(_pg_label(data), _pg_detail(data))
    node.est_rows = data.get("Plan Rows")
    node.cost = data.get("Total Cost")
    if analyzed and "Actual Loops" in data:
        loops = int(data["Actual Loops"])
        node.loops = loops
        node.rows = float(data.get("Actual Rows", 0)) * loops
        node.time_ms = float(data.get("Actual Total Time", 0.0)) * loops
    node.children = [_pg_node(child, analyzed) for child in data.get("Plans", [])]
    mine = node.time_ms if analyzed else node.cost
    if mine is not None:
        below = sum((c.time_ms if analyzed else c.cost) or 0.0 for c in node.children)
        node.own = max(mine - below, 0.0)
    return node


def _pg_label(data: dict[str, Any]) -> str:
    label = str(data.get("Node Type", "?"))
    if label == "ModifyTable" and data.get("Operation"):
        label = str(data["Operation"])  # as EXPLAIN's text says it: "Delete on orders"
    if data.get("Join Type") not in (None, "Inner"):
        label += f" ({data['Join Type']})"  # Left, Right, Full, Semi, Anti
    if data.get("Relation Name"):
        alias = data.get("Alias")
        relation = data["Relation Name"]
        label += f" on {relation}" + (f" {alias}" if alias and alias != relation else "")
    elif data.get("CTE Name"):
        label += f" on {data['CTE Name']}"
    if data.get("Parent Relationship") in ("InitPlan", "SubPlan") and data.get("Subplan Name"):
        label = f"{data['Subplan Name']}: {label}"
    return label


def _pg_detail(data: dict[str, Any]) -> str:
    # The index goes here rather than in the label: a label stays short enough for a column.
    parts = [f"using {data['Index Name']}"] if data.get("Index Name") else []
    for key in ("Index Cond", "Recheck Cond", "Hash Cond", "Merge Cond", "Join Filter", "Filter"):
        if data.get(key):
            parts.append(f"{key}: {data[key]}")
    removed = data.get("Rows Removed by Filter")
    if removed:
        parts.append(f"{removed:,} rows removed by filter")
    if data.get("Sort Key"):
        parts.append("Sort Key: " + ", ".join(map(str, data["Sort Key"])))
    return "; ".join(parts)
