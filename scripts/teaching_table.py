"""Print docs/teaching.md's path through the catalog, from the catalog itself.

    python scripts/teaching_table.py            # print the table
    python scripts/teaching_table.py --write    # put it into docs/teaching.md

tests/test_teaching_doc.py holds the document to this table, so a scenario added to the
catalog (or a changed difficulty, time or engine) is a failing test until the guide says so.
"""

from __future__ import annotations

import sys
from pathlib import Path

from sandbox.scenario.catalog import catalog_files, listings
from sandbox.scenario.loader import load

DOC = Path(__file__).resolve().parent.parent / "docs" / "teaching.md"
BEGIN = "<!-- catalog-path: begin (scripts/teaching_table.py --write) -->"
END = "<!-- catalog-path: end -->"


def table() -> str:
    scenarios = {path.stem: load(path) for path in catalog_files()}
    rows = [
        "| # | scenario | difficulty | minutes | engines | what it practises |",
        "| --- | --- | --- | --- | --- | --- |",
    ]
    for number, listing in enumerate(listings(), 1):
        scenario = scenarios[listing.id]
        practises = scenario.anomaly or ", ".join(scenario.tags[:3])
        engines = " + ".join(scenario.engines)
        rows.append(
            f"| {number} | `{scenario.id}`: {scenario.title} | {scenario.difficulty} | "
            f"{scenario.expected_minutes} | {engines} | {practises} |"
        )
    return "\n".join(rows)


def documented() -> str:
    text = DOC.read_text(encoding="utf-8")
    return text[text.index(BEGIN) + len(BEGIN) : text.index(END)].strip()


def main() -> int:
    if "--write" in sys.argv[1:]:
        text = DOC.read_text(encoding="utf-8")
        start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
        DOC.write_text(text[:start] + "\n" + table() + "\n" + text[end:], encoding="utf-8")
        return 0
    print(table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
