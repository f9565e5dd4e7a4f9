"""Backslash lines: directions to dbsandbox itself, the same in scripts and in the editor.

`\\session` picks the session for the statements that follow; the snapshot commands act on the
whole sandbox and are recorded, like statements, where they ran. `\\explain STATEMENT;` carries
a statement (to its `;`, over lines) and plans it on the session, like a statement
(sandbox.plans). `\\traffic` starts, waits for or stops a traffic session (sandbox.traffic).
"""

from __future__ import annotations

import re

from sandbox.errors import UserError
from sandbox.snapshots.model import NAME_RULE, SNAPSHOT_NAME
from sandbox.sqlkind import StatementKind
from sandbox.statements import STATEMENT_COMMANDS, Dialect, MetaCommand, Statement

SESSION_NAME = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]{0,31}$")
COMMANDS = {
    "session": ("NAME", "send the statements that follow to session NAME (opened on first use)"),
    "background": (
        "",
        "go on after the next statement as soon as it waits on a lock (not when it ends)",
    ),
    "snapshot": ("NAME", "copy the whole sandbox, as committed now, under NAME"),
    "restore": ("NAME", "put the sandbox back to snapshot NAME (open transactions roll back)"),
    "diff": ("NAME", "rows added, removed and changed since snapshot NAME"),
    "snapshots": ("", "list the snapshots taken so far"),
    "explain": (
        "STATEMENT;",
        "the statement's plan as a tree, its costly steps marked (F9: the one under the cursor)",
    ),
    "traffic": (
        "NAME every 50ms for 3s: STATEMENT;",
        "session NAME sends the statement again and again, like an application "
        "(\\traffic NAME wait | stop)",
    ),
}
SNAPSHOT_COMMANDS = frozenset({"snapshot", "restore", "diff", "snapshots"})
# Directions to the runner about the statements that follow, not steps of their own.
PACING_COMMANDS = frozenset({"session", "background"})


def usage(name: str) -> str:
    args, _ = COMMANDS[name]
    return f"\\{name} {args}".rstrip()


def help_lines() -> list[str]:
    return [f"{usage(name):<16} {text}" for name, (_, text) in COMMANDS.items()]


def check(
    command: MetaCommand, source: str, session_name: str, dialect: Dialect = "sqlite"
) -> None:
    """Raise a UserError naming the line when a meta-command is malformed."""
    where = f"{source}:{command.line}"
    name = command.name
    if name not in COMMANDS:
        known = ", ".join(f"\\{n}" for n in COMMANDS)
        raise UserError(f"{where}: unknown command \\{name} (known: {known})")
    if name == "traffic":
        from sandbox import traffic

        try:
            traffic.check(command, dialect)
        except UserError as exc:
            raise UserError(f"{where}: {exc}") from None
        return
    if name in STATEMENT_COMMANDS:
        if not command.sql:
            raise UserError(
                f"{where}: \\{name} needs a SQL statement after it "
                "(e.g. \\explain SELECT * FROM orders WHERE id = 1;)"
            )
        return
    wants_name = bool(COMMANDS[name][0])
    if not wants_name:
        if command.args:
            raise UserError(f"{where}: \\{name} takes no arguments")
        return
    if name == "session":
        if len(command.args) != 1 or not session_name_ok(command.args[0]):
            raise UserError(
                f"{where}: \\session needs one name of letters, digits, _ or - (e.g. \\session B)"
            )
        return
    if len(command.args) != 1:
        raise UserError(f"{where}: {usage(name)} needs exactly one name")
    if not SNAPSHOT_NAME.match(command.args[0]):
        raise UserError(f"{where}: bad snapshot name {command.args[0]!r}: use {NAME_RULE}")


def session_name_ok(name: str) -> bool:
    return bool(SESSION_NAME.match(name))


def as_statement(command: MetaCommand) -> Statement:
    """The command as a statement of the run, so reports list it where it happened."""
    # `\\explain` may carry a statement over several lines.
    breaks = command.text.count("\n")
    last = command.text.rsplit("\n", 1)[-1]
    return Statement(
        command.text,
        -1,  # not a SQL statement: no acknowledgement comment can refer to it
        command.start,
        command.end,
        command.line,
        command.column,
        command.line + breaks,
        (command.column if not breaks else 1) + len(last) - 1,
    )


def kind_of(command: MetaCommand) -> StatementKind:
    return StatementKind(
        words=("\\" + command.name,), tx_control=None, read_only=True, takes_write_lock=False
    )
