"""`Expression.sql` for the guard, without building a dialect and a generator per call.

`node.sql(dialect=...)` makes a new Dialect and Generator every time, which costs about as much
as writing a short predicate. A generator keeps nothing from one `generate` to the next but the
counter that names the table aliases it invents (`_t0`, `_t1`, ...): reset before each call,
one generator per dialect (and per thread: a generate is not re-entrant) writes the same text.

The tree is still copied first, as `sql()` does, since the generator changes some trees it
writes; `copy` makes the same copy as sqlglot's, faster.
"""

from __future__ import annotations

import threading
from copy import deepcopy
from typing import Any

from sqlglot import exp
from sqlglot.dialects.dialect import Dialect
from sqlglot.generator import Generator
from sqlglot.helper import name_sequence

_local = threading.local()


def sql(node: exp.Expr, dialect: str | None = None) -> str:
    """What `node.sql(dialect=dialect)` returns."""
    generators: dict[str | None, Generator] | None = getattr(_local, "generators", None)
    if generators is None:
        generators = _local.generators = {}
    generator = generators.get(dialect)
    if generator is None:
        generator = generators[dialect] = Dialect.get_or_raise(dialect).generator()
    generator._next_name = name_sequence("_t")  # as a new generator's
    return generator.generate(copy(node), copy=False)


# Values that copy.deepcopy gives back as they are.
_ATOMS = frozenset({int, float, str, bool, type(None)})


def _plain(value: Any) -> Any:
    """deepcopy(value) for a node's comments or meta: a shallow copy when it holds only atoms."""
    if type(value) is dict:
        if all(type(v) in _ATOMS and type(k) in _ATOMS for k, v in value.items()):
            return dict(value)
    elif type(value) is list and all(type(v) in _ATOMS for v in value):
        return list(value)
    return deepcopy(value)


def copy(root: exp.Expr) -> exp.Expr:
    """What `root.copy()` returns, in half to two thirds of the time.

    sqlglot's Expression.__deepcopy__ (30.30) line for line, but for the comments and the meta:
    it deep-copies them with copy.deepcopy, which costs most of the copy, as the parser gives
    most identifiers and literals a meta dict of their position. Both hold only strings and
    numbers, which deepcopy gives back as they are, so a shallow copy is the same copy.
    """
    new_root = root.__class__()
    stack: list[tuple[exp.Expr, exp.Expr]] = [(root, new_root)]
    while stack:
        node, new = stack.pop()
        if node.comments is not None:
            new.comments = _plain(node.comments)
        if node._type is not None:
            new._type = deepcopy(node._type)
        if node._meta is not None:
            new._meta = _plain(node._meta)
        if node._hash is not None:
            new._hash = node._hash
        for key, value in node.args.items():
            if isinstance(value, exp.Expr):
                stack.append((value, value.__class__()))
                new.set(key, stack[-1][-1])
            elif type(value) is list:
                new.args[key] = []
                for item in value:
                    if isinstance(item, exp.Expr):
                        stack.append((item, item.__class__()))
                        new.append(key, stack[-1][-1])
                    else:
                        new.append(key, item)
            else:
                new.args[key] = value
    return new_root
