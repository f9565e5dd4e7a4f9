"""DELETE, UPDATE and MERGE: does the statement touch every row of its target?

Every DELETE/UPDATE/MERGE node in the tree is checked, so the rules also see data-modifying
CTEs (`WITH d AS (DELETE FROM t RETURNING *) SELECT ...`). Each finding carries the SQL that
measures its impact: the same target and predicate as a SELECT count.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from sqlglot import exp

from sandbox.guard import sqltext, walk
from sandbox.guard.findings import PreviewPlan
from sandbox.guard.predicates import Target, Truth, mentions_target, truth, varies_per_row
from sandbox.guard.schema import Schema

SAMPLE_ROWS = 5


@dataclass(frozen=True)
class DmlFinding:
    rule: str
    message: str
    fix: str
    table: str | None
    preview: PreviewPlan | None


def _target_of(node: exp.Expression) -> exp.Table | None:
    table = node.this
    if isinstance(table, exp.Table):
        return table
    # `DELETE users` (no FROM): sqlglot keeps the table in `tables` and leaves `this` empty.
    tables = node.args.get("tables") if isinstance(node, exp.Delete) else None
    if isinstance(tables, list) and len(tables) == 1 and isinstance(tables[0], exp.Table):
        return tables[0]
    return None


def _names(table: exp.Table) -> set[str]:
    names = {table.name.lower()}
    if table.alias:
        names.add(table.alias.lower())
    return names


def _display(table: exp.Table) -> str:
    return ".".join(part for part in (table.db, table.name) if part) or sqltext.sql(table)


def _other_tables(node: exp.Expression) -> list[exp.Expression]:
    """USING (DELETE), FROM (UPDATE) and joins: tables beside the target."""
    found: list[exp.Expression] = []
    using = node.args.get("using")
    if isinstance(using, list):
        found.extend(using)
    from_ = node.args.get("from_")
    if isinstance(from_, exp.From):
        found.append(from_.this)
    found.extend(node.args.get("joins") or [])
    return found


def check(root: exp.Expression, dialect: str, schema: Schema | None) -> list[DmlFinding]:
    findings: list[DmlFinding] = []
    for node in walk.find_all(root, exp.Delete, exp.Update, exp.Merge):
        if not isinstance(node, exp.Merge) and node.find_ancestor(exp.When, exp.OnConflict):
            continue  # a MERGE action or an upsert's DO UPDATE: judged with its statement
        if isinstance(node, exp.Merge):
            found = _check_merge(node, root, dialect, schema)
        else:
            found = _check_delete_update(node, root, dialect, schema)
        if found is not None:
            findings.append(found)
    return findings


def _check_delete_update(
    node: exp.Expression, root: exp.Expression, dialect: str, schema: Schema | None
) -> DmlFinding | None:
    """Judge the statement; a flagged one carries its preview, whose SQL is built on first use."""
    table = _target_of(node)
    verb = "delete" if isinstance(node, exp.Delete) else "update"
    if table is None or (verb == "update" and not node.expressions):
        # No table to change, or an UPDATE with nothing to SET: sqlglot misread the statement
        # (`UPDATE t SET WHERE id = 1` parses with an empty SET), so nothing here is verified.
        what = sqltext.sql(table, dialect) if table is not None else "its table"
        return DmlFinding(
            "unverified",
            f"could not verify this {verb.upper()} on {what} (the guard could not read it); it "
            "may change or destroy data",
            "check it by hand, or rewrite it as a plain statement the guard can read",
            _display(table) if table is not None else None,
            None,
        )
    shown = _display(table)
    others = _other_tables(node)
    where = node.args.get("where")
    found = _judge_delete_update(node, verb, table, shown, others, where, dialect, schema)
    if found is None:
        return None
    # Built once, here: adding the preview afterwards with dataclasses.replace cost about a
    # twentieth of all of check's time over the lint corpus.
    rule, message, fix = found
    condition = where.this if isinstance(where, exp.Where) else None
    return DmlFinding(
        rule, message, fix, shown, _preview(verb, table, shown, others, condition, root, dialect)
    )


def _judge_delete_update(
    node: exp.Expression,
    verb: str,
    table: exp.Table,
    shown: str,
    others: list[exp.Expression],
    where: exp.Expression | None,
    dialect: str,
    schema: Schema | None,
) -> tuple[str, str, str] | None:
    """The rule, message and fix for a DELETE or UPDATE that touches every row, or None."""
    if where is None:
        if others:
            names = ", ".join(sqltext.sql(o, dialect) for o in others)
            return (
                "where-not-restricting",
                f"{verb.upper()} on {shown} joins {names} with no WHERE: it would {verb} every "
                f"row of {shown} that has any match",
                "add a WHERE that joins the tables on their keys and names the rows to change",
            )
        return without_where(verb, shown, limited=bool(node.args.get("limit")))
    target = Target(shown, _names(table), other_tables=bool(others), schema=schema)
    verdict = truth(where.this, target)
    if verdict is Truth.TRUE:
        reason = target.reason() or f"WHERE {sqltext.sql(where.this, dialect)} is always true"
        return (
            "where-not-restricting" if target.self_lookup else "always-true-where",
            f"{verb.upper()} on {shown}: {reason}, so it would {verb} every row"
            + (" (a batch at a time)" if target.batched else ""),
            "write a WHERE that singles out the rows you mean (e.g. by primary key)",
        )
    if (
        verdict is Truth.ROW
        and not mentions_target(where.this, target)
        and not varies_per_row(where.this)
    ):
        return (
            "where-not-restricting",
            f"{verb.upper()} on {shown}: the WHERE never looks at {shown}'s own rows, so it "
            f"would {verb} all of them or none",
            f"make the condition refer to {shown}'s columns (correlate the subquery, or join "
            "on a key)",
        )
    return None


def without_where(verb: str, shown: str, *, limited: bool = False) -> tuple[str, str, str]:
    """The rule, message and fix for a DELETE or UPDATE of `shown` with no WHERE and no other
    table (`limited`: it has a LIMIT)."""
    what = (
        "delete every row in"
        if verb == "delete"
        else "overwrite the changed columns of every row in"
    )
    limit = (
        " (a LIMIT does not make it safe: which rows it hits is up to the engine)"
        if limited
        else ""
    )
    return (
        f"{verb}-without-where",
        f"{verb.upper()} without WHERE: it would {what} {shown}{limit}",
        "add a WHERE naming the rows, e.g. WHERE id = ...; run it after BEGIN so you can ROLLBACK",
    )


def _check_merge(
    node: exp.Merge, root: exp.Expression, dialect: str, schema: Schema | None
) -> DmlFinding | None:
    table = _target_of(node)
    on = node.args.get("on")
    if table is None or on is None:
        return None
    whens = node.args.get("whens")
    destructive = [
        w
        for w in (whens.expressions if whens else [])
        if isinstance(w.args.get("then"), exp.Update)
        or (isinstance(w.args.get("then"), exp.Var) and w.args["then"].name.upper() == "DELETE")
    ]
    if not destructive:
        return None  # insert-only MERGE adds rows, it cannot overwrite or remove any
    shown = _display(table)
    target = Target(shown, _names(table), other_tables=True, schema=schema)
    if all(_filters(w.args.get("condition"), target) for w in destructive):
        # WHEN MATCHED AND <condition on the target> THEN UPDATE / DELETE: each action is
        # filtered by its own condition, as a WHERE would, whatever ON matches.
        return None
    verdict = truth(on, target)
    if verdict is Truth.TRUE or (verdict is Truth.ROW and not mentions_target(on, target)):
        source = node.args.get("using")
        preview = _preview("merge", table, shown, [source] if source else [], on, root, dialect)
        return DmlFinding(
            "merge-matches-all",
            f"MERGE into {shown}: ON {sqltext.sql(on, dialect)} matches every row of {shown}, "
            "so WHEN MATCHED would change all of them",
            f"join on a key: ON {table.alias_or_name}.id = source.id",
            shown,
            preview,
        )
    return None


def _filters(condition: exp.Expression | None, target: Target) -> bool:
    """Whether a WHEN clause's AND condition singles out rows of the target."""
    if condition is None:
        return False
    return truth(condition, target) is not Truth.TRUE and mentions_target(condition, target)


def _preview(
    verb: str,
    table: exp.Table,
    shown: str,
    others: list[exp.Expression],
    condition: exp.Expression | None,
    root: exp.Expression,
    dialect: str,
) -> PreviewPlan:
    """The preview of a finding; `condition` (the WHERE's or the ON's) is copied only if built."""
    build = functools.partial(_preview_sql, verb, table, others, condition, root, dialect)
    return PreviewPlan(verb=verb, table=shown, build=build)


def _preview_sql(
    verb: str,
    table: exp.Table,
    others: list[exp.Expression],
    predicate: exp.Expression | None,
    root: exp.Expression,
    dialect: str,
) -> tuple[str, str, str]:
    target = table.copy()
    condition = predicate.copy() if predicate is not None else None
    if others:
        # Joined tables would multiply the count: ask per target row whether any match exists.
        inner = exp.select("1").from_(others[0].copy())
        for other in others[1:]:
            inner = inner.join(other.copy())
        if condition is not None:
            inner = inner.where(condition)
        condition = exp.Exists(this=inner)
    count = exp.select(exp.Count(this=exp.Star())).from_(target.copy())
    sample = exp.select(
        exp.Column(this=exp.Star(), table=exp.to_identifier(table.alias_or_name))
    ).from_(target.copy())
    if condition is not None:
        count = count.where(condition.copy())
        sample = sample.where(condition.copy())
    sample = sample.limit(SAMPLE_ROWS)
    ctes = _plain_ctes(root)
    if ctes is not None:
        count.set("with_", ctes.copy())
        sample.set("with_", ctes.copy())
    total = exp.select(exp.Count(this=exp.Star())).from_(
        exp.Table(this=table.this.copy(), db=table.args.get("db"))
    )
    return sqltext.sql(count, dialect), sqltext.sql(total, dialect), sqltext.sql(sample, dialect)


def _plain_ctes(root: exp.Expression) -> exp.With | None:
    """The statement's read-only CTEs, which the predicate may refer to."""
    with_ = root.args.get("with_")
    if not isinstance(with_, exp.With):
        return None
    plain = [
        c for c in with_.expressions if not c.find(exp.Delete, exp.Update, exp.Insert, exp.Merge)
    ]
    if not plain:
        return None
    return exp.With(expressions=[c.copy() for c in plain], recursive=with_.args.get("recursive"))
