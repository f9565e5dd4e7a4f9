"""How a learner got out of a mistake, read from what the sessions actually did.

Four ways back, judged from the executions that followed the breakage:
- rollback: a transaction holding uncommitted changes was rolled back (nothing was saved);
- savepoint: ROLLBACK TO SAVEPOINT undid part of a transaction;
- restore: the sandbox was put back to a snapshot with \\\\restore;
- repair: new writes were committed (the data was put right by hand, with SQL).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from sandbox.outcome import Status, TxState
from sandbox.sqlkind import TxControl

if TYPE_CHECKING:
    from sandbox.conductor import Execution  # a type only: the app imports this module early

METHODS = {
    "rollback": "rolled back before COMMIT",
    "savepoint": "rolled back to a savepoint",
    "restore": "restored a snapshot",
    "repair": "repaired with SQL",
}


def methods_used(executions: Sequence[Execution], since: int = 0) -> list[str]:
    """The recovery methods seen in executions[since:], in the order first used."""
    used: list[str] = []
    unsaved: dict[str, bool] = {}  # session -> wrote something its open transaction may keep

    def note(method: str) -> None:
        if method not in used:
            used.append(method)

    for execution in executions[since:]:
        outcome = execution.outcome
        if outcome is None or outcome.status is not Status.OK:
            continue
        if execution.meta == "restore":
            note("restore")
            unsaved.clear()  # every open transaction was rolled back by the restore
            continue
        if execution.meta is not None:
            continue
        kind, who = execution.kind, execution.session
        ended = outcome.tx_before is not TxState.IDLE and outcome.tx_after is TxState.IDLE
        if kind.tx_control is TxControl.ROLLBACK_TO:
            note("savepoint")
        elif kind.tx_control in (TxControl.ROLLBACK, TxControl.COMMIT) and ended:
            committed = kind.tx_control is TxControl.COMMIT and outcome.tag != "ROLLBACK"
            if committed and unsaved.get(who):
                note("repair")
            elif kind.tx_control is TxControl.ROLLBACK:
                note("rollback")  # (a COMMIT the server answered with ROLLBACK is no recovery)
            unsaved.pop(who, None)
        elif kind.changes_data:  # a SET or a PRAGMA repairs nothing
            if outcome.tx_after is TxState.IDLE:
                note("repair")  # autocommit: saved at once
            else:
                unsaved[who] = True
    return used


def describe(methods: Sequence[str], joiner: str = ", ") -> str:
    return joiner.join(METHODS[m] for m in methods) if methods else "nothing yet"
