"""Does a WHERE (or MERGE ... ON) really restrict which rows are touched?

Two questions, answered from the sqlglot tree:
- `truth`: is the predicate the same for every row? Constant folding with SQL's three-valued
  logic, plus tautologies a constant folder misses (`x = x`, `x > 5 OR x <= 5`, `LIKE '%'`,
  `id IN (SELECT id FROM same_table)`).
- `mentions_target`: does the predicate look at the target's rows at all, directly or through a
  correlated subquery? If not, it selects every row or none (`WHERE EXISTS (SELECT 1 FROM u)`).
"""

from __future__ import annotations

import enum
import math
import operator
from dataclasses import dataclass, field
from typing import Any

from sqlglot import exp

from sandbox.guard import sqltext, walk
from sandbox.guard.schema import Schema


class Truth(enum.Enum):
    TRUE = "true"  # true for every row (ignoring rows where a compared column is NULL)
    FALSE = "false"
    NULL = "null"  # constant NULL: selects nothing
    ROW = "row"  # depends on the row


T, F, N, R = Truth.TRUE, Truth.FALSE, Truth.NULL, Truth.ROW


def _and(a: Truth, b: Truth) -> Truth:
    if F in (a, b):
        return F
    if a is T:
        return b
    if b is T:
        return a
    if R in (a, b):
        return R
    return N


def _or(a: Truth, b: Truth) -> Truth:
    if T in (a, b):
        return T
    if a is F:
        return b
    if b is F:
        return a
    if R in (a, b):
        return R
    return N


def _not(a: Truth) -> Truth:
    return {T: F, F: T}.get(a, a)


@dataclass
class Target:
    """The table a DML statement changes, and how the predicate may name it."""

    table: str
    names: set[str]  # lower-case table name and alias
    other_tables: bool = False  # USING / FROM / MERGE source: unqualified names are ambiguous
    schema: Schema | None = None
    # Why a predicate was judged always true: (a node, the rest of the note). The node is
    # written as SQL only when the note is shown (`reason`), as writing SQL is costly: a later
    # part can overrule a note (`x = x AND id = 1` is not true for every row), and the notes
    # made while judging a subquery's own WHERE are never shown.
    notes: list[tuple[exp.Expression | None, str]] = field(default_factory=list)
    self_lookup: bool = False  # `id IN (SELECT id FROM same_table)`: true via a subquery
    batched: bool = False  # ... with a LIMIT: every row all the same, a batch per run

    def note(self, node: exp.Expression | None, rest: str) -> None:
        self.notes.append((node, rest))

    def reason(self) -> str | None:
        """The last note, which says why the whole predicate is true, or None."""
        if not self.notes:
            return None
        node, rest = self.notes[-1]
        # The tree is not changed between the note and here, so the text is what it was.
        return (sqltext.sql(node) if node is not None else "") + rest


_NOT_CONST = object()
_ARITHMETIC: dict[type[exp.Expression], Any] = {
    exp.Add: operator.add,
    exp.Sub: operator.sub,
    exp.Mul: operator.mul,
    exp.Div: operator.truediv,
    exp.Mod: operator.mod,
}
_VOLATILE = ("rand", "random", "now", "clock_timestamp", "nextval", "gen_random_uuid")


# Every type `const` gives a value for: one test turns away the rest (columns, comparisons).
_CONST_TYPES: tuple[type[exp.Expression], ...] = (
    exp.Paren,
    exp.Boolean,
    exp.Null,
    exp.Literal,
    exp.Neg,
    exp.Cast,
    exp.DPipe,
    *_ARITHMETIC,
)


def const(node: exp.Expression) -> Any:
    """The Python value of a constant expression, or _NOT_CONST."""
    if not isinstance(node, _CONST_TYPES):
        return _NOT_CONST
    if isinstance(node, exp.Paren):
        return const(node.this)
    if isinstance(node, exp.Boolean):
        return bool(node.this)
    if isinstance(node, exp.Null):
        return None
    if isinstance(node, exp.Literal):
        if node.is_string:
            return str(node.this)
        try:
            number = float(node.this)
        except ValueError:
            return _NOT_CONST
        return int(number) if number.is_integer() else number
    if isinstance(node, exp.Neg):
        value = const(node.this)
        return -value if _numbers(value) else _NOT_CONST
    if isinstance(node, exp.Cast):
        return const(node.this)
    if isinstance(node, exp.DPipe):
        left, right = const(node.this), const(node.expression)
        if left is None or right is None:
            return None if _NOT_CONST not in (left, right) else _NOT_CONST
        if isinstance(left, str) and isinstance(right, str):
            return left + right
        return _NOT_CONST
    for kind, op in _ARITHMETIC.items():
        if isinstance(node, kind):
            left, right = const(node.this), const(node.expression)
            if not _numbers(left, right):
                return _NOT_CONST
            if kind in (exp.Div, exp.Mod) and right == 0:
                return None  # SQLite: NULL; PostgreSQL: an error. Either way nothing matches.
            return op(left, right)
    return _NOT_CONST


def _truthy(value: Any) -> Truth:
    if value is None:
        return N
    if isinstance(value, bool):
        return T if value else F
    if isinstance(value, int | float):
        return T if value != 0 else F
    text = str(value).strip().lower()
    if text in ("t", "true", "yes", "y", "on", "1"):
        return T
    if text in ("f", "false", "no", "n", "off", "0", ""):
        return F
    return R


_COMPARE_OPS: dict[type[exp.Expression], Any] = {
    exp.EQ: operator.eq,
    exp.NEQ: operator.ne,
    exp.GT: operator.gt,
    exp.GTE: operator.ge,
    exp.LT: operator.lt,
    exp.LTE: operator.le,
}


def _compare(op: type[exp.Expression], a: Any, b: Any) -> Truth:
    if a is None or b is None:
        return N
    if isinstance(a, str) != isinstance(b, str):
        return R  # 1 = '1': true in PostgreSQL, false in SQLite; do not guess
    try:
        result = _COMPARE_OPS[op](a, b)
    except TypeError:
        return R  # '1' = 1: engines differ on coercion; do not guess
    return T if result else F


def _deterministic(node: exp.Expression) -> bool:
    if node.find(exp.Select, exp.Rand):
        return False
    return not any(
        (isinstance(f, exp.Anonymous) and str(f.this).lower() in _VOLATILE)
        or f.sql_name().lower() in _VOLATILE
        for f in node.find_all(exp.Func)
    )


def _same(a: exp.Expression, b: exp.Expression) -> bool:
    # Two anonymous `?` placeholders are two values, however alike they look.
    if a != b:
        return False  # the usual case: no need to walk either side
    anonymous = any(p.this is None for p in a.find_all(exp.Placeholder))
    return _deterministic(a) and not anonymous


_COMPARISONS = (exp.EQ, exp.NEQ, exp.GT, exp.GTE, exp.LT, exp.LTE)


def _positive(node: exp.Expression) -> exp.Expression | None:
    """The predicate a negated one negates, or None if `node` is not negated.

    sqlglot writes some negations as a `negate` flag rather than a NOT node: `x NOT LIKE p` in
    both dialects, and `x IS NOT NULL` when reading PostgreSQL.
    """
    if isinstance(node, exp.Not):
        inner: exp.Expression = node.this
        return inner.this if isinstance(inner, exp.Paren) else inner
    if node.args.get("negate"):
        positive = node.copy()
        positive.set("negate", False)
        return positive
    return None


def truth(node: exp.Expression, target: Target) -> Truth:
    """Whether `node` is the same for every row, and which way."""
    if isinstance(node, exp.Paren):
        return truth(node.this, target)
    if node.args.get("negate") and isinstance(node, exp.Is | exp.Like | exp.ILike | exp.Glob):
        positive = _positive(node)
        assert positive is not None
        return _not(truth(positive, target))
    if isinstance(node, exp.Not):
        return _not(truth(node.this, target))
    if isinstance(node, exp.And):
        return _and(truth(node.this, target), truth(node.expression, target))
    if isinstance(node, exp.Or):
        result = _or(truth(node.this, target), truth(node.expression, target))
        if result is R and _covers_everything(_disjuncts(node), target):
            return T
        return result
    value = const(node)
    if value is not _NOT_CONST:
        return _truthy(value)
    if isinstance(node, exp.EQ) and isinstance(node.expression, exp.Any):
        # `id = ANY (SELECT id FROM t)` is `id IN (SELECT id FROM t)`.
        # Copies: building the In node must not re-parent the statement's own nodes.
        query = node.expression.this
        return _truth_in(exp.In(this=node.this.copy(), query=query.copy()), target)
    if isinstance(node, _COMPARISONS):
        left, right = const(node.this), const(node.expression)
        if left is not _NOT_CONST and right is not _NOT_CONST:
            return _compare(type(node), left, right)
        if _same(node.this, node.expression):
            target.note(node, " compares a value with itself")
            return T if isinstance(node, exp.EQ | exp.GTE | exp.LTE) else F
        return R
    if isinstance(node, exp.NullSafeEQ | exp.NullSafeNEQ) and _same(node.this, node.expression):
        # `x IS NOT DISTINCT FROM x` holds for every row, NULLs included; its negation for none.
        target.note(node, " compares a value with itself")
        return T if isinstance(node, exp.NullSafeEQ) else F
    if isinstance(node, exp.Is):
        return _truth_is(node, target)
    if isinstance(node, exp.Like | exp.ILike | exp.Glob):
        pattern = const(node.expression)
        wildcard = "*" if isinstance(node, exp.Glob) else "%"
        if isinstance(pattern, str) and pattern and set(pattern) == {wildcard}:
            target.note(node, " matches every non-NULL value")
            return T
        return R
    if isinstance(node, exp.In):
        return _truth_in(node, target)
    if isinstance(node, exp.Between):
        low, high, value = const(node.args["low"]), const(node.args["high"]), const(node.this)
        if _NOT_CONST not in (low, high, value):
            return _and(_compare(exp.GTE, value, low), _compare(exp.LTE, value, high))
        return R
    return R


def _truth_is(node: exp.Is, target: Target) -> Truth:
    subject, what = node.this, node.expression
    if isinstance(what, exp.Null):
        value = const(subject)
        if value is not _NOT_CONST:
            return T if value is None else F
        if _not_null_column(subject, target):
            target.note(subject, " is declared NOT NULL")
            return F
        return R
    if isinstance(what, exp.Boolean):
        value = const(subject)
        if value is not _NOT_CONST:
            return T if _truthy(value) is _truthy(what.this) else F
    return R


def _not_null_column(node: exp.Expression, target: Target) -> bool:
    if target.schema is None or not isinstance(node, exp.Column):
        return False
    if node.table and node.table.lower() not in target.names:
        return False
    table = target.schema.table(target.table)
    column = table.column(node.name) if table else None
    # Only NOT NULL counts: a SQLite primary key other than INTEGER PRIMARY KEY accepts NULL
    # (introspection marks PostgreSQL key columns NOT NULL, as the server does).
    return bool(column and column.not_null)


def _truth_in(node: exp.In, target: Target) -> Truth:
    query = node.args.get("query")
    if query is not None:
        select = query.this if isinstance(query, exp.Subquery) else query
        if _selects_same_column_of_target(node.this, select, target):
            target.self_lookup = True
            target.batched = bool(select.args.get("limit"))
            limited = " with only a LIMIT to pick the rows" if target.batched else ""
            target.note(
                node, f" looks up {target.table}'s own column in {target.table} itself{limited}"
            )
            return T
        return R
    value = const(node.this)
    options = [const(e) for e in node.expressions]
    if value is not _NOT_CONST and _NOT_CONST not in options:
        if value is None:
            return N
        return T if value in options else F
    return R


def _selects_same_column_of_target(column: exp.Expression, select: Any, target: Target) -> bool:
    """`id IN (SELECT id FROM same_table)` with nothing that filters the inner select."""
    if not isinstance(column, exp.Column) or not isinstance(select, exp.Select):
        return False
    if len(select.expressions) != 1 or not isinstance(select.expressions[0], exp.Column):
        return False
    tables = walk.find_all(select, exp.Table)
    from_ = select.args.get("from_")
    if from_ is None or len(tables) != 1 or tables[0].name.lower() != target.table.lower():
        return False
    where = select.args.get("where")
    if (
        where is not None
        and truth(where.this, Target(target.table, set(), schema=target.schema)) is not T
    ):
        return False
    # LIMIT / OFFSET are no filter: `id IN (SELECT id FROM t LIMIT 1000)` is a batch of any rows,
    # and the loop that repeats it takes them all. GROUP BY / HAVING may pick rows, so they count.
    if select.args.get("group") or select.args.get("having"):
        return False
    return bool(select.expressions[0].name.lower() == column.name.lower())


def _disjuncts(node: exp.Expression) -> list[exp.Expression]:
    if isinstance(node, exp.Or):
        return _disjuncts(node.this) + _disjuncts(node.expression)
    if isinstance(node, exp.Paren):
        return _disjuncts(node.this)
    return [node]


_INF = math.inf


Span = tuple[float, bool, float, bool]  # low, low included, high, high included
# The same with the literal as written: a number, or text; open ends are -_INF / _INF.
Bounds = tuple[Any, bool, Any, bool]


def _comparable(*values: Any) -> bool:
    """All numbers, or all text: values whose order the guard may reason about."""
    return _numbers(*values) or all(isinstance(v, str) for v in values)


def _intervals(node: exp.Expression) -> tuple[str, bool, list[Bounds]] | None:
    """A comparison of one expression with a literal, as the values it lets through:
    (the expression, whether the literal is text, the spans)."""
    if isinstance(node, exp.Between):
        low, high = const(node.args["low"]), const(node.args["high"])
        if _comparable(low, high):
            return sqltext.sql(node.this), isinstance(low, str), [(low, True, high, True)]
        return None
    if not isinstance(node, _COMPARISONS):
        return None
    subject, value = node.this, const(node.expression)
    flipped = False
    if not _comparable(value):
        subject, value, flipped = node.expression, const(node.this), True
        if not _comparable(value):
            return None
    if const(subject) is not _NOT_CONST:
        return None
    op: type[exp.Expression] = type(node)
    if flipped:
        mirror: dict[type[exp.Expression], type[exp.Expression]] = {
            exp.GT: exp.LT,
            exp.LT: exp.GT,
            exp.GTE: exp.LTE,
            exp.LTE: exp.GTE,
        }
        op = mirror.get(op, op)
    v = value if isinstance(value, str) else float(value)
    by_op: dict[type[exp.Expression], list[Bounds]] = {
        exp.EQ: [(v, True, v, True)],
        exp.NEQ: [(-_INF, False, v, False), (v, False, _INF, False)],
        exp.GT: [(v, False, _INF, False)],
        exp.GTE: [(v, True, _INF, False)],
        exp.LT: [(-_INF, False, v, False)],
        exp.LTE: [(-_INF, False, v, True)],
    }
    return sqltext.sql(subject), isinstance(value, str), by_op[op]


def _text_as_numbers(bounds: list[Bounds]) -> list[Span] | None:
    """Spans over text, as numbers, when they all meet at one literal.

    Text orders by collation, and a date column orders '2024-2-01' after '2024-12-01': only
    `d < '2024-01-01' OR d >= '2024-01-01'`, one literal on both sides, is safe to judge.
    """
    literals = {v for low, _, high, _ in bounds for v in (low, high) if isinstance(v, str)}
    if len(literals) != 1:
        return None
    return [
        (
            0.0 if isinstance(low, str) else low,
            low_in,
            0.0 if isinstance(high, str) else high,
            hi_in,
        )
        for low, low_in, high, hi_in in bounds
    ]


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, int | float) and not isinstance(v, bool) for v in values)


def _covers_everything(parts: list[exp.Expression], target: Target) -> bool:
    """`x > 5 OR x <= 5`, `x IS NULL OR x IS NOT NULL`, `p OR NOT p`: true for every row."""
    texts: set[str] | None = None  # each part as SQL, made only once a part is negated
    for part in parts:
        inner = _positive(part)
        if inner is not None:
            inner_text = sqltext.sql(inner)
            if texts is None:
                texts = {sqltext.sql(p) for p in parts}
            if inner_text in texts and _deterministic(inner):
                target.note(None, f"{inner_text} OR NOT {inner_text} is always true")
                return True
    by_subject: dict[tuple[str, bool], list[Bounds]] = {}
    for part in parts:
        found = _intervals(part)
        if found:
            subject, text, bounds = found
            by_subject.setdefault((subject, text), []).extend(bounds)
    for (subject, text), bounds in by_subject.items():
        spans = _text_as_numbers(bounds) if text else bounds
        if spans is not None and _union_is_everything(spans):
            target.note(None, f"the ranges on {subject} cover every value")
            return True
    return False


def _union_is_everything(spans: list[Span]) -> bool:
    spans = sorted(spans, key=lambda s: (s[0], not s[1]))
    reach, reach_closed = -_INF, False
    started = False
    for low, low_closed, high, high_closed in spans:
        if not started:
            if low != -_INF:
                return False
            started = True
            reach, reach_closed = high, high_closed
            continue
        if low > reach or (low == reach and not (low_closed or reach_closed)):
            return False
        if high > reach or (high == reach and high_closed):
            reach, reach_closed = high, high_closed
    return started and reach == _INF


# --------------------------------------------------------------------------- correlation


def _own_tables(select: exp.Select) -> tuple[set[str], set[str]]:
    """The tables a SELECT reads itself: (the names that qualify its columns, the tables)."""
    qualifiers: set[str] = set()
    tables: set[str] = set()
    for table in walk.find_all(select, exp.Table):
        if table.find_ancestor(exp.Select) is select:
            # An alias hides the table's own name: in `FROM t AS t2`, `t.id` is the outer t.
            qualifiers.add((table.alias or table.name).lower())
            tables.add(table.name.lower())
    return qualifiers, tables


def _subquery_scope(inner: exp.Expr, predicate: exp.Expression) -> exp.Select | None:
    """The innermost SELECT between `inner` and the predicate, if `inner` is in one."""
    node = inner.parent
    while node is not None and node is not predicate:
        if isinstance(node, exp.Select):
            return node
        node = node.parent
    return None


def mentions_target(predicate: exp.Expression, target: Target) -> bool:
    """Whether the predicate looks at the target's rows, directly or by correlation.

    When a name cannot be resolved without the schema, the answer is yes: the guard only
    claims a predicate ignores the target when it is sure.
    """
    for column in walk.find_all(predicate, exp.Column):
        qualifier = column.table.lower() if column.table else ""
        scope = _subquery_scope(column, predicate)
        if scope is None:
            if qualifier in target.names:
                return True
            if not qualifier and (
                not target.other_tables or _resolves_to_target(column.name, target, default=True)
            ):
                return True
            continue
        own, own_tables = _own_tables(scope)
        if qualifier:
            if qualifier in target.names and qualifier not in own:
                return True
            continue
        if not own:
            return True  # a bare name whose origin cannot be told: assume the target
        if target.schema is None:
            # SQL resolves a bare name to the innermost table that has it. Without the schema,
            # read it as the subquery's own column unless it is compared with another column,
            # as in a join predicate (`c.id = customer_id`), where it may well be the target's.
            if _compared_with_column(column, scope):
                return True
            continue
        if _resolves_to_target(column.name, target, default=None) and not _resolves_in(
            column.name, own_tables, target
        ):
            return True
    return False


def _compared_with_column(column: exp.Column, scope: exp.Select) -> bool:
    """Whether `column` is one operand of a comparison (=, <, BETWEEN, LIKE, IN ...) whose
    other operands read a column."""
    node: exp.Expr = column
    while node.parent is not None and node.parent is not scope:
        parent = node.parent
        if isinstance(parent, exp.Connector | exp.Not | exp.Where | exp.Select | exp.Exists):
            return False
        if isinstance(parent, exp.Predicate):
            others = [
                operand
                for value in parent.args.values()
                for operand in (value if isinstance(value, list) else [value])
                if isinstance(operand, exp.Expr) and operand is not node
            ]
            return any(operand.find(exp.Column) for operand in others)
        node = parent
    return False


_PER_ROW = ("rand", "random")


def varies_per_row(node: exp.Expression) -> bool:
    """Whether the predicate calls a function that gives each row its own answer (random()).

    Such a predicate does not look at the target's columns, yet does not pick all rows or none.
    Stable functions such as now() do not count: they are the same for the whole statement.
    """
    for func in walk.find_all(node, exp.Func):
        if _subquery_scope(func, node) is not None:
            continue  # inside a subquery: evaluated once, not per target row
        name = str(func.this) if isinstance(func, exp.Anonymous) else func.sql_name()
        if isinstance(func, exp.Rand) or name.lower() in _PER_ROW:
            return True
    return False


def _resolves_to_target(name: str, target: Target, default: bool | None) -> bool:
    if target.schema is None:
        return bool(default)
    table = target.schema.table(target.table)
    if table is None:
        return bool(default)
    return table.column(name) is not None


def _resolves_in(name: str, tables: set[str], target: Target) -> bool:
    if target.schema is None:
        return False
    for table_name in tables:
        table = target.schema.table(table_name)
        if table is not None and table.column(name) is not None:
            return True
    return False
