"""docs/teaching.md's path through the catalog is the catalog: every scenario, its difficulty,
time and engines, in the picker's order."""

from __future__ import annotations

import importlib.util
from pathlib import Path

SCRIPT = Path(__file__).resolve().parent.parent / "scripts" / "teaching_table.py"


def test_the_teaching_guide_lists_the_catalog_as_it_is() -> None:
    spec = importlib.util.spec_from_file_location("teaching_table", SCRIPT)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.documented() == module.table(), (
        "docs/teaching.md is behind the catalog: run python scripts/teaching_table.py --write"
    )
