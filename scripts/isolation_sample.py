"""CI gate: replay a sample of PostgreSQL's isolation specs through `dbsandbox run`.

The specs, their expected output and the runner live outside the project, in the shared
corpora folder (`pg-isolation/`, read in place; see its README.md). This runs that folder's
`run.py` on the permutations `scripts/isolation_sample.txt` names (one regex per line), then
judges every mismatch with the corpus's `known.json`: a mismatch passes only when known.json
classifies that permutation (or its whole spec) as category (b), a converter/harness limit,
or (c), a marker or order difference that is not dbsandbox's fault. Anything else fails the
gate, including known dbsandbox defects (category a) and mismatches run.py only guessed a
category for. A sample line that selects no permutation fails too, so the sample cannot shrink
silently.

    python scripts/isolation_sample.py [--url URL] [--dbsandbox PATH] [--corpora DIR]
                                       [--sample FILE] [--max-seconds S]

Exits 0 when every mismatch is allowed, 1 otherwise, and 0 (saying so) when the corpus folder
is absent. Standard library only.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Run as `python scripts/isolation_sample.py`: the corpora defaults come from the Hermitage
# harness beside it, imported as the tests import it.
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from scripts.hermitage import CORPORA_ENV, REPO, default_corpora, default_dbsandbox

SAMPLE = REPO / "scripts" / "isolation_sample.txt"
ALLOWED = frozenset({"b", "c"})  # known.json categories that are not dbsandbox's fault
DEFAULT_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def read_sample(path: Path) -> list[str]:
    """The sample's regexes: one a line, `#` comments and blank lines ignored."""
    lines = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            re.compile(line)
            lines.append(line)
    return lines


@dataclass(frozen=True)
class Verdict:
    ran: list[str]
    passed: list[str]
    allowed: dict[str, str]  # id -> "category: reason"
    refused: dict[str, str]  # id -> why it fails the gate
    unmatched: list[str]  # sample lines that selected nothing


def judge(results: list[dict[str, Any]], known: dict[str, Any], sample: list[str]) -> Verdict:
    ran = [r["id"] for r in results]
    passed = [r["id"] for r in results if r["match"]]
    allowed: dict[str, str] = {}
    refused: dict[str, str] = {}
    for r in results:
        if r["match"]:
            continue
        entry = known.get(r["id"]) or known.get(f"{r['spec']}/*")
        if entry and entry.get("category") in ALLOWED:
            allowed[r["id"]] = f"({entry['category']}) {entry.get('reason', '')}"
        elif entry:
            defect = f" {entry['defect']}" if entry.get("defect") else ""
            refused[r["id"]] = f"known.json category ({entry.get('category')}){defect}"
        else:
            refused[r["id"]] = f"not in known.json (run.py guessed {r.get('category') or '?'})"
    unmatched = [line for line in sample if not any(re.search(line, i) for i in ran)]
    return Verdict(ran, passed, allowed, refused, unmatched)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=(__doc__ or "").splitlines()[0],
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--url", default=DEFAULT_URL, help=f"PostgreSQL server (default {DEFAULT_URL})"
    )
    parser.add_argument("--dbsandbox", default=str(default_dbsandbox()))
    parser.add_argument("--corpora", type=Path, default=None)
    parser.add_argument("--sample", type=Path, default=SAMPLE)
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=600.0,
        help="stop run.py and fail after this long (default 600: twice the sample's budget)",
    )
    args = parser.parse_args(argv)

    corpus = (args.corpora or default_corpora()) / "pg-isolation"
    if not (corpus / "run.py").is_file():
        print(f"isolation sample: SKIP, no pg-isolation corpus at {corpus} (set {CORPORA_ENV})")
        return 0
    sample = read_sample(args.sample)
    known: dict[str, Any] = json.loads((corpus / "known.json").read_text(encoding="utf-8"))
    pattern = "|".join(f"(?:{line})" for line in sample)
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="isolation-sample-") as tmp:
        results_path = Path(tmp) / "results.jsonl"
        cmd = [
            sys.executable,
            str(corpus / "run.py"),
            "--dbsandbox",
            args.dbsandbox,
            "--url",
            args.url,
            "-k",
            pattern,
            "--results",
            str(results_path),
        ]
        print(f"isolation sample: {len(sample)} lines of {args.sample.name}, run.py in {corpus}")
        try:
            proc = subprocess.run(
                cmd, stdin=subprocess.DEVNULL, timeout=args.max_seconds, check=False
            )
        except subprocess.TimeoutExpired:
            print(f"isolation sample: FAIL, run.py took longer than {args.max_seconds:.0f} s")
            return 1
        results = [
            json.loads(line)
            for line in (results_path.read_text().splitlines() if results_path.exists() else [])
        ]
    took = time.monotonic() - started
    verdict = judge(results, known, sample)
    if proc.returncode not in (0, 1) or not results:
        print(
            f"isolation sample: FAIL, run.py exited {proc.returncode} with {len(results)} results"
        )
        return 1
    for pid, why in verdict.allowed.items():
        print(f"  allowed {pid}: {why[:160]}")
    for pid, why in verdict.refused.items():
        print(f"  NOT ALLOWED {pid}: {why}")
    for line in verdict.unmatched:
        print(f"  sample line selects no permutation: {line}")
    failed = len(verdict.ran) - len(verdict.passed)
    print(
        f"isolation sample: {len(verdict.ran)} permutations in {took:.0f} s: "
        f"{len(verdict.passed)} passed, {failed} failed "
        f"({len(verdict.allowed)} allowed by known.json, {len(verdict.refused)} not)"
    )
    return 1 if verdict.refused or verdict.unmatched else 0


if __name__ == "__main__":
    sys.exit(main())
