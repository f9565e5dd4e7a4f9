"""sqlglot's find_all and find, in the same order, for the guard's hot paths.

`Expression.find_all` is a generator over a generator (`walk`) over a generator (`bfs`) over a
generator per node (`iter_expressions`): for the small trees of single statements that is most
of its cost. These walk the same breadth-first order with a plain list as the queue.
"""

from __future__ import annotations

from typing import TypeVar

from sqlglot import exp

E = TypeVar("E", bound=exp.Expr)
Expr = exp.Expr


def find_all(root: exp.Expr, *types: type[E]) -> list[E]:
    """What `list(root.find_all(*types))` gives: the matching nodes, breadth first."""
    found: list[E] = []
    queue = [root]
    enqueue = queue.append
    for node in queue:  # the list grows as it is read: a queue that is never popped
        if isinstance(node, types):
            found.append(node)
        # Most values are nodes, None or a bool (or a string): None and the bools by identity,
        # nodes before lists, and a plain loop beats extend() with a generator on short lists.
        for value in node.args.values():
            if value is None or value is True or value is False:
                continue
            if isinstance(value, Expr):
                enqueue(value)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, Expr):
                        enqueue(item)
    return found


def find(root: exp.Expr, *types: type[E]) -> E | None:
    """What `root.find(*types)` gives: the first matching node, breadth first, or None."""
    queue = [root]
    enqueue = queue.append
    for node in queue:
        if isinstance(node, types):
            return node
        for value in node.args.values():
            if value is None or value is True or value is False:
                continue
            if isinstance(value, Expr):
                enqueue(value)
            elif isinstance(value, list):
                for item in value:
                    if isinstance(item, Expr):
                        enqueue(item)
    return None
