"""`Expression.sql` for the guard, without building a dialect and a generator per call.

`node.sql(dialect=...)` makes a new Dialect and Generator every time, which costs about as much
as writing a short predicate. A generator keeps nothing from one `generate` to the next but the
counter that names the table aliases it invents (`_t0`, `_t1`, ...): reset before each call,
one generator per dialect (and per thread: a generate is not re-entrant) writes the same text.
The tree is still copied first, as `sql()` does: the generator changes some trees it writes.
"""

from __future__ import annotations

import threading

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
    return generator.generate(node, copy=True)
