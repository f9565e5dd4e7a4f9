"""The guard: lint SQL before it runs, preview its impact, decide whether it may run."""

from sandbox.guard.findings import RULES, Finding, PreviewPlan, Rule, Severity
from sandbox.guard.lint import lint_script, lint_statement
from sandbox.guard.schema import ColumnInfo, Schema, TableInfo

__all__ = [
    "RULES",
    "ColumnInfo",
    "Finding",
    "PreviewPlan",
    "Rule",
    "Schema",
    "Severity",
    "TableInfo",
    "lint_script",
    "lint_statement",
]
