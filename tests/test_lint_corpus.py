"""The guard against a labelled corpus of statements (tests/corpus/lint_corpus.toml).

Each case says which error/warning rules lint_script must report for it, on one dialect or on
both. One test per case checks that exactly; a scoring test measures recall on the dangerous
cases and the false-positive rate on the safe ones, per dialect, the way the acceptance corpus
is scored; a shape test keeps the corpus honest (size, both dialects, both labels, every rule).
"""

from __future__ import annotations

import re
import tomllib
from collections import Counter, defaultdict
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pytest

from sandbox.guard import RULES, Finding, Severity, lint_script
from sandbox.statements import Dialect

CORPUS = Path(__file__).parent / "corpus" / "lint_corpus.toml"
DIALECTS: tuple[Dialect, ...] = ("sqlite", "postgres")
MIN_CASES = 280
MIN_RECALL = 0.97  # dangerous cases that get the error rule they should
MAX_FALSE_POSITIVES = 0.03  # safe cases with any error or warning
BLOCKING = (Severity.ERROR, Severity.WARNING)
KEYS = {"sql", "dialect", "expect", "category", "note"}


@dataclass(frozen=True)
class Case:
    slug: str
    sql: str
    dialect: str  # "sqlite", "postgres" or "both"
    expect: frozenset[str]
    category: str
    note: str

    @property
    def dialects(self) -> tuple[Dialect, ...]:
        return tuple(d for d in DIALECTS if self.dialect in (d, "both"))

    @property
    def label(self) -> str:
        """dangerous (an error rule expected), safe (nothing), or unverifiable (warning only)."""
        if any(RULES[rule].severity is Severity.ERROR for rule in self.expect if rule in RULES):
            return "dangerous"
        return "safe" if not self.expect else "unverifiable"


def _slug(index: int, sql: str) -> str:
    code = re.sub(r"--[^\n]*|/\*.*?\*/", " ", sql, flags=re.S)
    words = re.findall(r"[a-z0-9_]+", code.lower())[:6]
    return f"{index:03d}-" + "-".join(words)


def _raw() -> list[dict[str, Any]]:
    with CORPUS.open("rb") as handle:
        cases: list[dict[str, Any]] = tomllib.load(handle)["case"]
    return cases


RAW = _raw()
CASES = [
    Case(
        slug=_slug(index, entry["sql"]),
        sql=entry["sql"],
        dialect=entry["dialect"],
        expect=frozenset(entry["expect"]),
        category=entry["category"],
        note=entry.get("note", ""),
    )
    for index, entry in enumerate(RAW)
]


@cache
def findings(sql: str, dialect: Dialect) -> tuple[Finding, ...]:
    return tuple(lint_script(sql, dialect))


def blocking_rules(sql: str, dialect: Dialect) -> frozenset[str]:
    return frozenset(f.rule for f in findings(sql, dialect) if f.severity in BLOCKING)


@pytest.mark.parametrize("case", CASES, ids=[case.slug for case in CASES])
def test_case(case: Case) -> None:
    got = {dialect: blocking_rules(case.sql, dialect) for dialect in case.dialects}
    wrong = {d: sorted(rules) for d, rules in got.items() if rules != case.expect}
    messages = [f"{f.rule}: {f.message}" for d in wrong for f in findings(case.sql, d)]
    assert not wrong, (
        f"expected {sorted(case.expect)}, got {wrong}\n{case.sql.strip()}\n"
        + "\n".join(messages)
        + (f"\nnote: {case.note}" if case.note else "")
    )


@dataclass
class Score:
    dangerous: int = 0
    caught: int = 0  # an expected error rule was reported
    flagged: int = 0  # any error or warning was reported
    safe: int = 0
    false_positives: int = 0

    @property
    def recall(self) -> float:
        return self.caught / self.dangerous if self.dangerous else 1.0

    @property
    def flagged_recall(self) -> float:
        return self.flagged / self.dangerous if self.dangerous else 1.0

    @property
    def false_positive_rate(self) -> float:
        return self.false_positives / self.safe if self.safe else 0.0


def score(cases: list[Case]) -> tuple[dict[str, Score], dict[tuple[str, str], Score]]:
    per_dialect: dict[str, Score] = defaultdict(Score)
    per_category: dict[tuple[str, str], Score] = defaultdict(Score)
    for case in cases:
        for dialect in case.dialects:
            got = blocking_rules(case.sql, dialect)
            for tally in (per_dialect[dialect], per_category[(dialect, case.category)]):
                if case.label == "dangerous":
                    tally.dangerous += 1
                    expected_errors = {
                        r for r in case.expect if RULES[r].severity is Severity.ERROR
                    }
                    tally.caught += bool(got & expected_errors)
                    tally.flagged += bool(got)
                elif case.label == "safe":
                    tally.safe += 1
                    tally.false_positives += bool(got)
    return dict(per_dialect), dict(per_category)


def test_recall_and_false_positives(capsys: pytest.CaptureFixture[str]) -> None:
    per_dialect, per_category = score(CASES)
    with capsys.disabled():
        print()
        for (dialect, category), s in sorted(per_category.items()):
            print(
                f"  {dialect:8} {category:18} dangerous {s.caught:3}/{s.dangerous:<3} "
                f"safe FP {s.false_positives:2}/{s.safe}"
            )
        for dialect, s in sorted(per_dialect.items()):
            print(
                f"{dialect:8} recall {s.recall:.3f} ({s.caught}/{s.dangerous}; flagged at all "
                f"{s.flagged_recall:.3f})  false positives {s.false_positive_rate:.3f} "
                f"({s.false_positives}/{s.safe})"
            )
    for dialect in DIALECTS:
        s = per_dialect[dialect]
        assert s.recall >= MIN_RECALL, f"{dialect}: recall {s.recall:.3f} < {MIN_RECALL}"
        assert s.false_positive_rate <= MAX_FALSE_POSITIVES, (
            f"{dialect}: false positives {s.false_positive_rate:.3f} > {MAX_FALSE_POSITIVES}"
        )


def test_corpus_shape() -> None:
    assert len(CASES) >= MIN_CASES
    for entry in RAW:
        assert set(entry) <= KEYS and {"sql", "dialect", "expect", "category"} <= set(entry), entry
        assert entry["dialect"] in ("sqlite", "postgres", "both"), entry
        assert entry["sql"].strip() and entry["category"].strip(), entry
    per_dialect = Counter(d for case in CASES for d in case.dialects)
    assert set(per_dialect) == set(DIALECTS)
    labels = Counter((d, case.label) for case in CASES for d in case.dialects)
    for dialect in DIALECTS:
        assert labels[(dialect, "dangerous")] and labels[(dialect, "safe")], labels
    seen = Counter((case.sql.strip(), d) for case in CASES for d in case.dialects)
    assert not [key for key, n in seen.items() if n > 1], "duplicate cases"
    used = {rule for case in CASES for rule in case.expect}
    assert used <= set(RULES), f"unknown rules: {used - set(RULES)}"
    errors = {rule_id for rule_id, rule in RULES.items() if rule.severity is Severity.ERROR}
    assert errors <= used, f"error rules without a case: {errors - used}"


_TABLE_RULES = {
    "delete-without-where",
    "update-without-where",
    "always-true-where",
    "where-not-restricting",
    "merge-matches-all",
    "drop-table",
    "truncate",
    "drop-column",
}


@pytest.mark.parametrize("dialect", DIALECTS)
def test_findings_name_their_table(dialect: Dialect) -> None:
    """A finding about a table says which one, in its message, in plain words."""
    for case in CASES:
        if dialect not in case.dialects:
            continue
        for finding in findings(case.sql, dialect):
            if finding.rule not in _TABLE_RULES:
                continue
            assert finding.table, f"{case.slug}: {finding.rule} has no table"
            name = finding.table.split(".")[-1]
            assert name in finding.message, f"{case.slug}: {finding.message!r} omits {name}"
