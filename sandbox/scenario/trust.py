"""Whether a scenario's Python programs may run: a scenario file with a Python step is code.

The built-in catalog's files ship with dbsandbox and run as they are. Any other file with a
Python step (a class pack, a path given on the command line) runs only when the user says so:
`--trust` on the command (for all of its scenarios), or a Yes in the app (for that file).
"""

from __future__ import annotations

from pathlib import Path

from sandbox.errors import UserError
from sandbox.scenario.model import Scenario

# --trust for this command (main() sets it for each call), and the files the app's user said
# Yes to in this process.
_trust_all = False
_trusted: set[Path] = set()


def trust_all(flag: bool) -> None:
    """`--trust`: every scenario this command loads may run its Python programs."""
    global _trust_all
    _trust_all = flag


def trust_file(path: Path) -> None:
    """The user said Yes to running this file's programs (the app asks)."""
    _trusted.add(path.resolve())


def from_catalog(scenario: Scenario) -> bool:
    """Whether the scenario's file is one of the built-in catalog's (not a pack's stand-in)."""
    from sandbox.scenario.catalog import catalog_dir

    if scenario.path is None:
        return False
    return scenario.path.resolve().parent == catalog_dir().resolve()


def is_trusted(scenario: Scenario) -> bool:
    """Whether it may run: no Python in it, from the catalog, or trusted by the user."""
    if not scenario.has_python or from_catalog(scenario) or _trust_all:
        return True
    return scenario.path is not None and scenario.path.resolve() in _trusted


def untrusted_reason(scenario: Scenario) -> str:
    return (
        f"scenario {scenario.id} carries Python code: it runs only from the catalog, "
        "or with --trust"
    )


def require_trust(scenario: Scenario) -> None:
    """Refuse, in one line, to play an untrusted scenario that runs Python programs."""
    if not is_trusted(scenario):
        raise UserError(untrusted_reason(scenario))
