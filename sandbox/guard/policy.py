"""Whether a flagged statement may run: allow, confirm or block.

- allow: it runs; its findings are shown.
- confirm: it runs only when the learner says yes: in the app a dialog showing its impact; in
  `dbsandbox run` the flag --yes, or an acknowledgement comment naming the rule on the
  statement (`-- dbsandbox: allow delete-without-where`).
- block: it never runs, whoever asks (--yes, a comment, a yes in the app, a scenario's
  scripted step). Only statements that reach outside the sandbox are blocked (see
  `sandbox.guard.boundary`): a sandbox never needs another database, a server-wide role, the
  server's files or settings, and on a shared PostgreSQL server those belong to someone else.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from sandbox.guard.findings import Finding, Severity
from sandbox.guard.lint import lint_statement
from sandbox.guard.schema import Schema
from sandbox.statements import Dialect, Statement, tokens

if TYPE_CHECKING:
    from sandbox.guard.impact import Impact
    from sandbox.session import Session


class Decision(enum.StrEnum):
    ALLOW = "allow"
    CONFIRM = "confirm"
    BLOCK = "block"


# Objects whose DROP reaches outside: every database has them in common. Dropping a
# subscription also drops its replication slot on the publishing server.
_OUTSIDE_THE_SANDBOX = frozenset(
    {"database", "role", "tablespace", "everything owned by", "subscription"}
)


def reaches_outside(finding: Finding) -> bool:
    """Whether the finding is about something outside the sandbox: it never runs."""
    return finding.severity is Severity.BOUNDARY or any(
        kind in _OUTSIDE_THE_SANDBOX for kind, _ in finding.objects
    )


def outside_the_sandbox(
    statement: Statement, dialect: Dialect, sandbox_dir: Path | None = None
) -> list[Finding]:
    """The findings that block a statement wherever the sandbox would run it."""
    return [f for f in lint_statement(statement, dialect, None, sandbox_dir) if reaches_outside(f)]


@dataclass(frozen=True)
class Policy:
    """Severity decides, unless a rule has its own decision; nothing unblocks the boundary."""

    by_severity: dict[Severity, Decision] = field(
        default_factory=lambda: {
            Severity.ERROR: Decision.CONFIRM,
            Severity.WARNING: Decision.ALLOW,
            Severity.INFO: Decision.ALLOW,
            Severity.BOUNDARY: Decision.BLOCK,
        }
    )
    by_rule: dict[str, Decision] = field(default_factory=dict)

    def decide(self, finding: Finding) -> Decision:
        if reaches_outside(finding):
            return Decision.BLOCK
        return self.by_rule.get(finding.rule, self.by_severity[finding.severity])


# `dbsandbox: allow rule-a, rule-b` inside a comment.
_ACK = re.compile(r"dbsandbox:\s*allow\s+([a-z][a-z0-9-]*(?:\s*,\s*[a-z][a-z0-9-]*)*)", re.I)


_MENTION = re.compile("dbsandbox", re.I)


def _rules_in(text: str) -> set[str]:
    found: set[str] = set()
    for match in _ACK.finditer(text):
        found.update(part.strip().lower() for part in match.group(1).split(","))
    return found


def acknowledgements(
    source: str, statements: Sequence[Statement], dialect: Dialect
) -> dict[int, set[str]]:
    """The rules each statement's comments acknowledge, by statement index.

    A comment counts for a statement when it stands on the lines just before it, inside it, or
    after its semicolon on the same line. Text in strings never counts.
    """
    found: dict[int, set[str]] = {}
    previous_end = 0
    for position, statement in enumerate(statements):
        before = source[previous_end : statement.start]
        if position > 0:
            # The rest of the previous statement's last line belongs to that statement.
            newline = before.find("\n")
            tail, before = (before, "") if newline < 0 else (before[:newline], before[newline:])
            found.setdefault(statements[position - 1].index, set()).update(_rules_in(tail))
        # Blanking out code never makes the word appear: a statement without it, in any case,
        # acknowledges nothing inside, and is not lexed again to find out.
        inside = _comments_only(statement.text, dialect) if _MENTION.search(statement.text) else ""
        rules = _rules_in(before) | _rules_in(inside)
        found.setdefault(statement.index, set()).update(rules)
        previous_end = statement.end
    if statements:
        last = statements[-1]
        tail = source[last.end :].split("\n", 1)[0]
        found.setdefault(last.index, set()).update(_rules_in(tail))
    return found


def _comments_only(text: str, dialect: Dialect) -> str:
    """The statement's text with every code token blanked out: what remains is comments."""
    chars = list(text)
    for token in tokens(text, dialect):
        chars[token.start : token.end] = " " * (token.end - token.start)
    return "".join(chars)


@dataclass
class Review:
    """The guard's verdict on one statement about to run."""

    findings: list[Finding]
    decisions: list[Decision]
    impacts: list[Impact | None]
    decision: Decision  # what happens: the strongest decision left after acknowledgements
    reason: str  # why, in a few words

    @property
    def runs(self) -> bool:
        return self.decision is Decision.ALLOW

    @property
    def confirmed_rules(self) -> list[str]:
        """Rules that wanted a confirmation and got it (confirmed, or a scripted mistake): the
        statement runs despite them. Each once, in finding order."""
        if not self.runs:
            return []
        rules = [
            f.rule
            for f, d in zip(self.findings, self.decisions, strict=True)
            if d is Decision.CONFIRM
        ]
        return list(dict.fromkeys(rules))

    def to_json(self) -> list[dict[str, Any]]:
        entries: list[dict[str, Any]] = []
        for finding, decision, impact in zip(
            self.findings, self.decisions, self.impacts, strict=True
        ):
            entry = finding.to_json()
            del entry["path"]
            entry["decision"] = str(decision)
            entry["impact"] = _impact_json(impact) if impact is not None else None
            entries.append(entry)
        return entries


@dataclass
class Guard:
    """Lints each statement, measures flagged ones, and applies the policy.

    `yes` confirms every confirm-level finding (the run's --yes); `acknowledged` holds the
    rules each statement's comments acknowledge; `scripted` lets confirm-level findings run (a
    scenario's scripted mistake) while still reporting what the guard saw. Nothing lets a
    blocked statement run.
    """

    policy: Policy = field(default_factory=Policy)
    yes: bool = False
    # In the app a person answers a dialog: the reasons recorded must say so, not name the
    # command line's --yes (issue 12: "CLI advice appears inside the TUI").
    in_app: bool = False
    scripted: bool = False
    acknowledged: dict[int, set[str]] = field(default_factory=dict)

    def review(
        self,
        statement: Statement,
        session: Session,
        dialect: Dialect,
        schema: Schema | None = None,
        index: int | None = None,
        sandbox_dir: Path | None = None,
    ) -> Review:
        """Runs on the session's own thread: impact previews use its connection.

        `sandbox_dir` is the directory whose files are the sandbox's own (SQLite).
        """
        from sandbox.guard.impact import measure

        findings = lint_statement(statement, dialect, schema, sandbox_dir)
        decisions = [self.policy.decide(f) for f in findings]
        # A statement outside the sandbox never runs: there is nothing in it to measure.
        impacts: list[Impact | None] = [
            measure(session, f)
            if f.severity is not Severity.BOUNDARY
            and (d is not Decision.ALLOW or f.severity is Severity.ERROR)
            else None
            for f, d in zip(findings, decisions, strict=True)
        ]
        acknowledged = self.acknowledged.get(statement.index if index is None else index, set())
        outcome, reason = Decision.ALLOW, "no finding stops it"
        for finding, decision in zip(findings, decisions, strict=True):
            if decision is Decision.BLOCK:
                outcome, reason = Decision.BLOCK, "blocked: it reaches outside the sandbox"
                break
            if decision is Decision.CONFIRM:
                if finding.rule in acknowledged:
                    reason = "acknowledged by a comment"
                elif self.yes:
                    reason = (
                        "confirmed by you in the dialog" if self.in_app else "confirmed by --yes"
                    )
                elif self.scripted:
                    reason = "a scripted mistake: allowed to happen"
                else:
                    outcome = Decision.CONFIRM
                    ask = "answer the dialog" if self.in_app else "rerun with --yes"
                    reason = (
                        f"needs confirmation: {ask}, or add the comment "
                        f"-- dbsandbox: allow {finding.rule}"
                    )
        return Review(findings, decisions, impacts, outcome, reason)


def _impact_json(impact: Impact) -> dict[str, Any]:
    from sandbox.outcome import json_value

    return {
        "summary": impact.summary,
        "rows": impact.rows,
        "total": impact.total,
        "columns": impact.columns,
        "sample": [[json_value(v) for v in row] for row in impact.sample],
        "also": impact.also,
        "error": impact.error,
    }
