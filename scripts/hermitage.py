"""Replay the Hermitage isolation cases through `dbsandbox run` and compare every step.

The cases live outside the project, in the shared corpora folder (`hermitage/` in it:
postgres.json, postgres_derived.json, sqlite.json; see that folder's README.md). They are read
in place. Each case becomes one dbsandbox script:

    \\session setup          the case's setup (after DROP TABLE IF EXISTS test, as the
                            corpus's own runners do)
    \\session T1 ...         one `\\session` line per session switch, each step's SQL with `;`
    \\session final          SELECT id, value FROM test ORDER BY id;   (the final state)

run as `dbsandbox run - --format json --yes --engine E [--url URL] [--busy-timeout MS]`, and
every step of the JSON report is held against the case: rows (as a multiset), ok with rowcount
and tag (a `commit` with no tag named must answer COMMIT on PostgreSQL, not ROLLBACK), blocks
(`waited`, and `blocked_by` naming the `by` sessions), errors (code, message substring; on
SQLite also the transaction state after the error and whether the busy handler waited), the
statement a step `unblocks` (its outcome, and in the timeline that outcome falls after the
releasing step was sent and before the next step was), and the final state. A step expected
not to block must return before the script sends the next step, as the corpus's runners
(which give each statement 1 s) saw it.

    python scripts/hermitage.py [-k PATTERN] [--engine sqlite|postgres] [--url URL]
                                [--corpora DIR] [--dbsandbox PATH] [-v]

Prints `PASS name` or `FAIL name: reason` per case, then `N passed, M failed`; exits 1 on any
failure, 0 (saying so) when the corpus folder is absent. Standard library only: dbsandbox is
the only program it runs.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

Engine = Literal["sqlite", "postgres"]

REPO = Path(__file__).resolve().parent.parent
CORPORA_ENV = "DBSANDBOX_CORPORA"
# Which engine each case file is for, in the order they are replayed.
CASE_FILES: dict[str, Engine] = {
    "postgres.json": "postgres",
    "postgres_derived.json": "postgres",
    "sqlite.json": "sqlite",
}
SETUP_SESSION = "setup"
FINAL_SESSION = "final"
FINAL_SQL = "SELECT id, value FROM test ORDER BY id"
# The corpus's SQLite runner counts a statement as having waited in the busy handler when it
# took at least half the busy timeout (verify_sqlite.py); the same threshold here.
BUSY_WAIT_FRACTION = 0.5
# Events that end a statement in the report's timeline.
COMPLETION_KINDS = frozenset({"outcome", "error", "cancelled"})
RUN_TIMEOUT_S = 120.0


def default_corpora() -> Path:
    """DBSANDBOX_CORPORA, else `shared/corpora` beside the repository."""
    env = os.environ.get(CORPORA_ENV)
    return Path(env) if env else REPO.parent / "shared" / "corpora"


def default_dbsandbox() -> Path:
    """The `dbsandbox` installed next to the Python running this (a venv's bin/)."""
    return Path(sys.executable).parent / "dbsandbox"


@dataclass(frozen=True)
class Case:
    """One Hermitage case and the file (and so the engine) it comes from."""

    name: str
    file: str
    engine: Engine
    data: dict[str, Any]

    @property
    def steps(self) -> list[dict[str, Any]]:
        steps: list[dict[str, Any]] = self.data["steps"]
        return steps

    @property
    def busy_timeout_ms(self) -> int | None:
        value = self.data.get("busy_timeout_ms")
        return int(value) if value is not None else None


def load_cases(hermitage: Path) -> list[Case]:
    """Every case of the three files, in file order."""
    cases: list[Case] = []
    for file, engine in CASE_FILES.items():
        for data in json.loads((hermitage / file).read_text(encoding="utf-8")):
            cases.append(Case(data["name"], file, engine, data))
    return cases


@dataclass(frozen=True)
class Script:
    """A case as a dbsandbox script, and the line each step's statement starts on."""

    text: str
    setup_lines: list[int]
    step_lines: dict[str, int]  # step id -> line
    final_line: int


def build_script(case: Case) -> Script:
    sessions = {step["session"] for step in case.steps}
    clash = sessions & {SETUP_SESSION, FINAL_SESSION}
    if clash:
        raise ValueError(f"{case.name}: session name {sorted(clash)} is reserved by the harness")
    lines: list[str] = []

    def add(sql: str) -> int:
        text = sql.strip().rstrip(";").strip()
        if "\n" in text:
            raise ValueError(f"{case.name}: a statement over several lines: {text!r}")
        lines.append(text + ";")
        return len(lines)

    lines.append(f"\\session {SETUP_SESSION}")
    setup_lines = [add("DROP TABLE IF EXISTS test")]
    setup_lines += [add(sql) for sql in case.data["setup"]]
    step_lines: dict[str, int] = {}
    current = SETUP_SESSION
    for step in case.steps:
        if step["session"] != current:
            current = step["session"]
            lines.append(f"\\session {current}")
        step_lines[step["id"]] = add(step["sql"])
    lines.append(f"\\session {FINAL_SESSION}")
    final_line = add(FINAL_SQL)
    return Script("\n".join(lines) + "\n", setup_lines, step_lines, final_line)


def command(
    case: Case, dbsandbox: Path | str, url: str | None, busy_timeout_ms: int | None = None
) -> list[str]:
    cmd = [str(dbsandbox), "run", "-", "--format", "json", "--yes", "--engine", case.engine]
    if url and case.engine == "postgres":
        cmd += ["--url", url]
    busy = busy_timeout_ms if busy_timeout_ms is not None else case.busy_timeout_ms
    if busy is not None:
        cmd += ["--busy-timeout", str(busy)]
    return cmd


@dataclass
class Replay:
    """What one case's run gave: the verdict's problems, and the report to look into."""

    case: Case
    script: Script
    problems: list[str]
    report: dict[str, Any] | None
    elapsed_s: float

    @property
    def passed(self) -> bool:
        return not self.problems


def replay(case: Case, dbsandbox: Path | str, url: str | None = None) -> Replay:
    """Run one case through the real CLI and compare the report with the case."""
    script = build_script(case)
    cmd = command(case, dbsandbox, url)
    started = time.monotonic()
    try:
        proc = subprocess.run(
            cmd,
            input=script.text,
            capture_output=True,
            text=True,
            timeout=RUN_TIMEOUT_S,
            check=False,
        )
    except subprocess.TimeoutExpired:
        elapsed = time.monotonic() - started
        return Replay(case, script, [f"dbsandbox ran over {RUN_TIMEOUT_S:.0f} s"], None, elapsed)
    except OSError as exc:
        return Replay(case, script, [f"cannot run {cmd[0]}: {exc}"], None, 0.0)
    elapsed = time.monotonic() - started
    if proc.returncode != 0:
        last = (proc.stderr.strip() or proc.stdout.strip() or "no output").splitlines()[-1]
        return Replay(case, script, [f"dbsandbox exited {proc.returncode}: {last}"], None, elapsed)
    try:
        report: dict[str, Any] = json.loads(proc.stdout)
    except ValueError as exc:
        return Replay(case, script, [f"dbsandbox printed no JSON report ({exc})"], None, elapsed)
    return Replay(case, script, compare(case, script, report), report, elapsed)


# --- comparison -------------------------------------------------------------------------


def brief(statement: dict[str, Any]) -> str:
    """A statement's outcome in a few words, for failure messages."""
    status = statement.get("status")
    if status in ("error", "cancelled"):
        error = statement.get("error") or {}
        return f"{status} {error.get('code')} {error.get('message', '')!r}".rstrip()
    if status != "ok":
        return f"{status} ({statement.get('note')})"
    if statement.get("columns"):
        return f"rows {statement.get('rows')}"
    parts = ["ok"]
    if statement.get("tag"):
        parts.append(str(statement["tag"]))
    if statement.get("rowcount") is not None:
        parts.append(f"rowcount={statement['rowcount']}")
    return " ".join(parts)


def _row_key(row: Sequence[Any]) -> str:
    return json.dumps(list(row), sort_keys=True)


def same_multiset(got: Sequence[Sequence[Any]], expected: Sequence[Sequence[Any]]) -> bool:
    return sorted(map(_row_key, got)) == sorted(map(_row_key, expected))


def check_outcome(
    expect: dict[str, Any], statement: dict[str, Any], case: Case, sql: str
) -> list[str]:
    """Mismatches between an expected result (not `blocks`) and a statement of the report."""
    out: list[str] = []
    status = statement.get("status")
    error = statement.get("error") or {}
    if "in_transaction" in expect:
        in_tx = statement.get("tx_after") != "idle"
        if in_tx != expect["in_transaction"]:
            out.append(
                f"expected in_transaction={expect['in_transaction']}, "
                f"tx_after is {statement.get('tx_after')}"
            )
    if "busy_wait" in expect:
        busy = case.busy_timeout_ms or 0
        elapsed = float(statement.get("elapsed_ms") or 0.0)
        waited = elapsed >= BUSY_WAIT_FRACTION * busy
        if waited != expect["busy_wait"]:
            how = "after the busy timeout" if expect["busy_wait"] else "at once"
            out.append(f"expected to fail {how} (busy timeout {busy} ms), took {elapsed:.0f} ms")
    if "error" in expect:
        if status != "error":
            return [*out, f"expected error {expect['error']}, got {brief(statement)}"]
        if error.get("code") != expect["error"]:
            out.append(f"expected error {expect['error']}, got {brief(statement)}")
        message = expect.get("message")
        if message is not None and message not in str(error.get("message", "")):
            out.append(f"expected a message containing {message!r}, got {error.get('message')!r}")
        return out
    if status != "ok":
        return [*out, f"expected {json.dumps(expect)}, got {brief(statement)}"]
    if "rows" in expect:
        if not statement.get("columns"):
            return [*out, f"expected rows {expect['rows']}, got {brief(statement)}"]
        if statement.get("more_rows"):
            out.append("the report cut the rows (more_rows)")
        if not same_multiset(statement.get("rows") or [], expect["rows"]):
            out.append(f"expected rows {expect['rows']}, got {statement.get('rows')}")
        return out
    if "rowcount" in expect and statement.get("rowcount") != expect["rowcount"]:
        out.append(f"expected rowcount {expect['rowcount']}, got {statement.get('rowcount')}")
    # A COMMIT expected to succeed must commit: PostgreSQL answers ROLLBACK in a failed
    # transaction, and the corpus names that tag when it expects it. SQLite has no tags.
    tag = expect.get("tag")
    if tag is None and case.engine == "postgres" and sql.strip().lower() == "commit":
        tag = "COMMIT"
    if tag is not None and statement.get("tag") != tag:
        out.append(f"expected tag {tag!r}, got {statement.get('tag')!r}")
    return out


def compare(case: Case, script: Script, report: dict[str, Any]) -> list[str]:
    """Every mismatch between the case and dbsandbox's JSON report, step by step."""
    problems: list[str] = []
    if report.get("stopped") is not None:
        problems.append(f"the guard stopped statement {report['stopped']}")
    by_line: dict[int, dict[str, Any]] = {}
    for statement in report.get("statements", []):
        by_line.setdefault(int(statement["line"]), statement)
    sent: dict[int, int] = {}  # statement index -> seq of its `statement` event
    done: dict[int, int] = {}  # statement index -> seq of its first completion event
    for event in report.get("timeline", []):
        index = event.get("statement")
        if index is None:
            continue
        if event["kind"] == "statement":
            sent.setdefault(index, event["seq"])
        elif event["kind"] in COMPLETION_KINDS:
            done.setdefault(index, event["seq"])

    for line in script.setup_lines:
        setup = by_line.get(line)
        if setup is None or setup.get("status") != "ok":
            what = brief(setup) if setup else "not in the report"
            problems.append(f"setup line {line}: {what}")
    if problems:
        return problems

    steps = case.steps
    statements: dict[str, dict[str, Any]] = {}
    for step in steps:
        statement = by_line.get(script.step_lines[step["id"]])
        if statement is None:
            problems.append(f"{step['id']}: no statement in the report for it")
        else:
            statements[step["id"]] = statement
    final = by_line.get(script.final_line)
    if final is None:
        problems.append("final state: no statement in the report for it")
    if problems:
        return problems
    assert final is not None

    # Where each step's successor was sent: a statement that did not block returned before.
    next_sent: dict[str, int] = {}
    for k, step in enumerate(steps):
        after = statements[steps[k + 1]["id"]] if k + 1 < len(steps) else final
        next_sent[step["id"]] = sent.get(after["index"], sys.maxsize)
    released_by = {step["unblocks"]["step"]: step["id"] for step in steps if "unblocks" in step}
    step_ids = [step["id"] for step in steps]

    def step_at(seq: int | None) -> str:
        """The last step sent before the event `seq` (for messages)."""
        if seq is None:
            return "never"
        last = "before any step"
        for sid in step_ids:
            if sent.get(statements[sid]["index"], sys.maxsize) < seq:
                last = f"after {sid} was sent"
        return last

    for step in steps:
        sid, expect = step["id"], step["expect"]
        statement = statements[sid]
        index = statement["index"]
        finished = done.get(index)
        returned_in_time = finished is not None and finished < next_sent[sid]
        if expect.get("blocks"):
            if not statement.get("waited"):
                problems.append(f"{sid}: expected to block, did not wait: {brief(statement)}")
            else:
                by = expect.get("by")
                got_by = sorted(set(statement.get("blocked_by") or []))
                if by is not None and got_by != sorted(by):
                    problems.append(f"{sid}: blocked by {got_by}, expected by {sorted(by)}")
                if returned_in_time:
                    problems.append(f"{sid}: expected to block, returned before the next step")
            if sid not in released_by:
                problems.append(f"{sid}: blocks, but no step of the case declares its release")
        else:
            if not returned_in_time:
                waited = statement.get("waited")
                why = f" (waited on {statement.get('blocked_by')})" if waited else ""
                problems.append(
                    f"{sid}: did not return before the next step{why}; "
                    f"returned {step_at(finished)}: {brief(statement)}"
                )
            problems += [f"{sid}: {p}" for p in check_outcome(expect, statement, case, step["sql"])]
        if "unblocks" in step:
            target = step["unblocks"]["step"]
            if target not in statements:
                problems.append(f"{sid}: unblocks {target}, which is not a step of the case")
                continue
            released = statements[target]
            finished_at = done.get(released["index"])
            own_sent = sent.get(index, sys.maxsize)
            if finished_at is None or not own_sent < finished_at < next_sent[sid]:
                problems.append(
                    f"{sid}: should release {target}, whose outcome came {step_at(finished_at)}"
                )
            target_sql = next(s["sql"] for s in steps if s["id"] == target)
            problems += [
                f"{target} (released by {sid}): {p}"
                for p in check_outcome(step["unblocks"]["expect"], released, case, target_sql)
            ]

    if "final_state" in case.data:
        if final.get("status") != "ok":
            problems.append(f"final state: {brief(final)}")
        elif final.get("rows") != case.data["final_state"]:
            problems.append(f"final state {final.get('rows')}, expected {case.data['final_state']}")
    return problems


def trace(result: Replay) -> list[str]:
    """Each step with what dbsandbox reported for it (for -v)."""
    report = result.report or {}
    by_line = {int(s["line"]): s for s in report.get("statements", [])}
    out = []
    for step in result.case.steps:
        st = by_line.get(result.script.step_lines[step["id"]])
        got = "missing" if st is None else brief(st)
        if st is not None and st.get("waited"):
            got += f" [waited on {st.get('blocked_by')}]"
        out.append(f"    {step['id']} {step['session']}: {step['sql']}  -> {got}")
    return out


# --- command line -----------------------------------------------------------------------


def select(cases: list[Case], pattern: str | None, engine: str | None) -> list[Case]:
    found = re.compile(pattern) if pattern else None
    return [
        c
        for c in cases
        if (engine is None or c.engine == engine) and (found is None or found.search(c.name))
    ]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-k", dest="pattern", help="only cases whose name matches this regex")
    parser.add_argument("--engine", choices=("sqlite", "postgres"), help="only this engine's cases")
    parser.add_argument(
        "--url", help="PostgreSQL server for the postgres cases (default: as dbsandbox resolves it)"
    )
    parser.add_argument(
        "--corpora",
        type=Path,
        default=None,
        help=f"the shared corpora folder (default: ${CORPORA_ENV}, else <repo>/../shared/corpora)",
    )
    parser.add_argument(
        "--dbsandbox",
        default=str(default_dbsandbox()),
        help="the dbsandbox executable (default: the one next to this Python)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="print each failing step")
    args = parser.parse_args(argv)

    corpora: Path = args.corpora or default_corpora()
    hermitage = corpora / "hermitage"
    if not hermitage.is_dir():
        print(f"SKIP: no Hermitage corpus at {hermitage} (set {CORPORA_ENV} or --corpora)")
        return 0
    cases = select(load_cases(hermitage), args.pattern, args.engine)
    if not cases:
        where = f" on {args.engine}" if args.engine else ""
        print(f"no case matches -k {args.pattern!r}{where}", file=sys.stderr)
        return 2
    passed = failed = 0
    started = time.monotonic()
    for case in cases:
        result = replay(case, args.dbsandbox, args.url)
        if result.passed:
            passed += 1
            print(f"PASS {case.name}", flush=True)
        else:
            failed += 1
            print(f"FAIL {case.name}: {'; '.join(result.problems)}", flush=True)
            if args.verbose and result.report is not None:
                print("\n".join(trace(result)), flush=True)
    print(f"# {len(cases)} cases in {time.monotonic() - started:.1f} s")
    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
