"""Statements per second: `dbsandbox lint` against raw `sqlglot.parse` of the same statements.

Usage: python benchmarks/lint_speed.py [--rounds 5]

The statements are the labelled lint corpus (tests/corpus/lint_corpus.toml), each linted in
its own dialect. The target is lint running at least as fast as sqlglot.parse alone (1.00x):
lint parses only what it must (DELETE, UPDATE, MERGE, WITH and what wrappers run, less the
plainest writes it reads from its own tokens: sandbox/guard/keyed.py), and hands the parser
tokens made by its own lexer (sandbox/guard/handover.py), so its own lexing and rules have to
cost less than parsing the statements it never parses.
"""

from __future__ import annotations

import argparse
import contextlib
import importlib.metadata
import logging
import statistics
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import sqlglot

from sandbox.guard import lint_script

CORPUS = Path(__file__).resolve().parent.parent / "tests" / "corpus" / "lint_corpus.toml"


def statements() -> list[tuple[str, str]]:
    cases = tomllib.loads(CORPUS.read_text(encoding="utf-8"))["case"]
    pairs: list[tuple[str, str]] = []
    for case in cases:
        dialects = ("sqlite", "postgres") if case["dialect"] == "both" else (case["dialect"],)
        pairs.extend((d, case["sql"]) for d in dialects)
    return pairs


def parse(dialect: str, sql: str) -> None:
    # A statement sqlglot cannot parse still costs its attempt.
    with contextlib.suppress(Exception):
        sqlglot.parse(sql, read=dialect)


def lint(dialect: str, sql: str) -> None:
    lint_script(sql, "postgres" if dialect == "postgres" else "sqlite")


def rate(
    work: Callable[[str, str], None], pairs: list[tuple[str, str]], rounds: int
) -> list[float]:
    rates = []
    for _ in range(rounds):
        started = time.perf_counter()
        for dialect, sql in pairs:
            work(dialect, sql)
        rates.append(len(pairs) / (time.perf_counter() - started))
    return rates


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    args = parser.parse_args()
    logging.getLogger("sqlglot").setLevel(logging.ERROR)
    pairs = statements()
    rate(lint, pairs, 1)  # warm caches and imports for both
    rate(parse, pairs, 1)
    # Alternate the two, round by round: a change in machine load then hits both alike, and
    # the ratio is taken within each pair of rounds.
    parse_rates, lint_rates = [], []
    for _ in range(args.rounds):
        parse_rates += rate(parse, pairs, 1)
        lint_rates += rate(lint, pairs, 1)
    ratios = [q / p for p, q in zip(parse_rates, lint_rates, strict=True)]
    p, q = statistics.median(parse_rates), statistics.median(lint_rates)
    print(f"{len(pairs)} statements from {CORPUS.name}, {args.rounds} alternating rounds")
    print(f"  sqlglot.parse   {p:10,.0f} statements/s (median)")
    print(f"  dbsandbox lint  {q:10,.0f} statements/s (median)")
    print(
        f"  lint / parse    {statistics.median(ratios):10.2f}x median, "
        f"{min(ratios):.2f}-{max(ratios):.2f}x range   (target: at least 1.00x)"
    )
    print(f"env: python {sys.version.split()[0]}, sqlglot {importlib.metadata.version('sqlglot')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
