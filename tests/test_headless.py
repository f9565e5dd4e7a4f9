"""Everything outside the TUI works without loading Textual (the CLI, CI, scripts).

Runs in a fresh interpreter: this test process may already have imported Textual for the UI
tests, which would hide an import that pulls it in.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys

# pkgutil.walk_packages imports every package it descends into, sandbox.ui included, so walk
# with iter_modules and skip sandbox.ui* (and __main__, which runs the CLI) before importing.
CHECK = """
import importlib, json, pkgutil, sys
import sandbox

imported = []

def walk(package):
    for info in pkgutil.iter_modules(package.__path__, package.__name__ + "."):
        if info.name.startswith("sandbox.ui") or info.name == "sandbox.__main__":
            continue
        module = importlib.import_module(info.name)
        imported.append(info.name)
        if info.ispkg:
            walk(module)

walk(sandbox)
textual = sorted(m for m in sys.modules if m == "textual" or m.startswith("textual."))
print(json.dumps({"imported": imported, "textual": textual}))
"""


def test_no_module_outside_the_ui_imports_textual() -> None:
    assert importlib.util.find_spec("textual") is not None, "textual is not installed: vacuous"
    done = subprocess.run(
        [sys.executable, "-c", CHECK],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    # The walk really reached the modules (and subpackages) that matter.
    for module in (
        "sandbox.cli",
        "sandbox.cleanup",
        "sandbox.targets",
        "sandbox.runner",
        "sandbox.report",
        "sandbox.engines.postgres",
        "sandbox.engines.sqlite",
    ):
        assert module in found["imported"]
    assert not any(name.startswith("sandbox.ui") for name in found["imported"])
    assert found["textual"] == [], f"imported Textual: {found['textual'][:5]}"
