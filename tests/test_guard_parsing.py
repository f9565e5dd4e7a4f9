"""The guard's parse_one (one tokenizer and parser per dialect), walk and sqltext.sql (one
generator per dialect), against sqlglot's own.

Every corpus statement is parsed by both, in both dialects and in one interleaved sequence, so a
statement sqlglot cannot parse is followed by others: the reused parser must leave nothing of a
failed parse behind.
"""

from __future__ import annotations

import threading
import tomllib
from collections.abc import Callable
from pathlib import Path

import sqlglot
from sqlglot import exp

from sandbox.guard import sqltext, walk
from sandbox.guard.parsing import parse_one

CORPUS = Path(__file__).parent / "corpus" / "lint_corpus.toml"


def outcome(
    parse: Callable[[str, str], sqlglot.exp.Expr], sql: str, dialect: str
) -> tuple[str, str]:
    try:
        tree = parse(sql, dialect)
    except Exception as error:
        return "raised", f"{type(error).__name__}: {error}"
    return repr(tree), tree.sql(dialect=dialect)


def sqlglots(sql: str, dialect: str) -> sqlglot.exp.Expr:
    return sqlglot.parse_one(sql, read=dialect)


def test_same_trees_and_errors_as_sqlglot_parse_one() -> None:
    texts = [case["sql"] for case in tomllib.loads(CORPUS.read_text("utf-8"))["case"]]
    texts += ["", ";", "SELECT 1; SELECT 2", "DELETE FROM", "UPDATE t SET WHERE id = 1"]
    failures = 0
    for sql in texts:
        for dialect in ("sqlite", "postgres"):
            expected = outcome(sqlglots, sql, dialect)
            failures += expected[0] == "raised"
            assert outcome(parse_one, sql, dialect) == expected, sql
    assert failures > 5  # the sequence does interleave failed parses


def _in_four_threads(work: Callable[[], list[bool]]) -> list[bool]:
    """What `work` gives in four threads run at once, all together."""
    results: list[bool] = []
    threads = [threading.Thread(target=lambda: results.extend(work())) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return results


def test_each_thread_has_its_own_parser() -> None:
    sql = "DELETE FROM t WHERE a IN (SELECT a FROM u WHERE b = 1) AND c > 2"
    expected = sqlglot.parse_one(sql, read="postgres")
    results = _in_four_threads(lambda: [parse_one(sql, "postgres") == expected for _ in range(200)])
    assert results == [True] * 800


def test_walk_visits_what_sqlglot_visits_in_the_same_order() -> None:
    texts = [case["sql"] for case in tomllib.loads(CORPUS.read_text("utf-8"))["case"]]
    trees = []
    for sql in texts:
        for dialect in ("sqlite", "postgres"):
            try:
                trees.append(parse_one(sql, dialect))
            except Exception:
                continue
    assert len(trees) > 500
    kinds = [(exp.Delete, exp.Update, exp.Merge), (exp.Column,), (exp.Table,), (exp.Func,)]
    for tree in trees:
        assert [id(n) for n in walk.find_all(tree, exp.Expr)] == [id(n) for n in tree.walk()]
        for types in kinds:
            assert [id(n) for n in walk.find_all(tree, *types)] == [
                id(n) for n in tree.find_all(*types)
            ]
            assert walk.find(tree, *types) is tree.find(*types)


def test_sqltext_writes_what_sql_writes() -> None:
    texts = [case["sql"] for case in tomllib.loads(CORPUS.read_text("utf-8"))["case"]]
    written = 0
    for sql in texts:
        for dialect in ("sqlite", "postgres"):
            try:
                tree = parse_one(sql, dialect)
            except Exception:
                continue
            before = repr(tree)
            for node in tree.walk():
                for target in (None, dialect):
                    assert sqltext.sql(node, target) == node.sql(dialect=target)
                    written += 1
            assert repr(tree) == before  # written from a copy, as sql() does
    assert written > 10_000


def test_each_thread_has_its_own_generator() -> None:
    tree = sqlglot.parse_one("DELETE FROM t WHERE a IN (SELECT a FROM u WHERE b = 1) AND c > 2")
    expected = {d: tree.sql(dialect=d) for d in (None, "postgres")}
    results = _in_four_threads(
        lambda: [sqltext.sql(tree, d) == expected[d] for _ in range(100) for d in expected]
    )
    assert results == [True] * 800


def test_sqltext_names_invented_aliases_as_a_new_generator_does() -> None:
    # The reused generator's alias counter would say _t1 the second time.
    alias = exp.TableAlias(columns=[exp.to_identifier("a")])
    assert [sqltext.sql(alias) for _ in range(2)] == [alias.sql()] * 2 == ["_t0(a)"] * 2
