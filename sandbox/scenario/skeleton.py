"""`dbsandbox new ID`: a scenario file to start from, which validates and proves as written.

The skeleton is a small, complete lesson (a price change run without its WHERE, committed
at once) with every part an author needs: story, task, hints, setup, breakage with declared
outcomes, a reference solution, data checks, a process check with its counter-example, and a
hidden variant. Authors change it into their own; `dbsandbox validate --prove` tells them
when they broke something.
"""

# ruff: noqa: E501  (the template's TOML lines are as long as its SQL)
from __future__ import annotations

from pathlib import Path

from sandbox.errors import UserError
from sandbox.scenario.loader import ID

TEMPLATE = '''\
# A dbsandbox scenario. Reference: docs/scenarios.md; for teachers: docs/teaching.md.
# Check it with: dbsandbox validate --prove {path}
id = "{id}"
title = "A price change without its WHERE"
summary = "A one-product price change ran on every product and was committed at once."
difficulty = "beginner"
tags = ["update", "where", "autocommit"]
engines = ["sqlite", "postgres"]
minutes = 5

story = """
Sam meant to raise the price of the **mug** (id 2) to **{{{{new_price}}}}**, and ran the
UPDATE without its WHERE. Outside a transaction it was saved at once: every product now
costs {{{{new_price}}}}. The old prices are still in `price_history`.
"""

task = """
Put every other product back to its last price from `price_history`, in one transaction,
and keep the mug's new price.
"""

hints = [
  "Which rows should the UPDATE have changed? Compare products with price_history.",
  "An autocommitted change cannot be rolled back: repair it with SQL from the history.",
  "BEGIN; UPDATE products SET price = (SELECT h.price FROM price_history h WHERE h.product_id = products.id) WHERE id <> 2; COMMIT;",
]

# The dataset the learner sees. {{{{name}}}} below stands for these values.
[vars]
new_price = 12
products = 3

# A hidden dataset: grading replays the learner's statements on it too, so an answer
# copied from the screen (SET price = 4 WHERE id = 1) fails here.
[[variants]]
name = "other prices, more products"
vars = {{ products = 5 }}
setup = """
INSERT INTO products VALUES (4, 'plate', 7), (5, 'bowl', 9);
INSERT INTO price_history VALUES (4, 7), (5, 9);
"""

[setup]
sql = """
CREATE TABLE products (id INTEGER PRIMARY KEY, name TEXT NOT NULL, price INTEGER NOT NULL);
CREATE TABLE price_history (product_id INTEGER PRIMARY KEY, price INTEGER NOT NULL);
INSERT INTO products VALUES (1, 'pen', 4), (2, 'mug', 10), (3, 'cap', 15);
INSERT INTO price_history VALUES (1, 4), (2, 10), (3, 15);
"""

[[breakage]]
session = "A"
sql = "UPDATE products SET price = {{{{new_price}}}}"
rowcount = "{{{{products}}}}"

[[solution]]
session = "A"
sql = "BEGIN"

[[solution]]
session = "A"
sql = "UPDATE products SET price = (SELECT h.price FROM price_history h WHERE h.product_id = products.id) WHERE id <> 2"

[[solution]]
session = "A"
sql = "COMMIT"

# Every check must fail on the broken state (validate --prove shows it does).
[[checks]]
name = "every other product has its last price again, and the mug its new one"
sql = "SELECT count(*) FROM products p JOIN price_history h ON h.product_id = p.id WHERE (p.id = 2 AND p.price <> {{{{new_price}}}}) OR (p.id <> 2 AND p.price <> h.price)"
expect = [[0]]

[[checks]]
name = "the repair ran in one transaction"
process = "one-transaction"
tables = ["products"]
counter = [
  {{ session = "A", sql = "UPDATE products SET price = 4 WHERE id = 1" }},
  {{ session = "A", sql = "UPDATE products SET price = 15 WHERE id = 3" }},
]
'''


def write_skeleton(ident: str, folder: Path) -> Path:
    """Write `ID.toml` in `folder`; never over a file that is already there."""
    if not ID.match(ident):
        raise UserError(
            f"{ident!r} is not a scenario id: lower-case letters, digits and dashes, "
            "e.g. price-without-where"
        )
    if not folder.is_dir():
        raise UserError(f"{folder}: no such folder")
    path = folder / f"{ident}.toml"
    try:
        with path.open("x", encoding="utf-8") as out:
            out.write(TEMPLATE.format(id=ident, path=path))
    except FileExistsError:
        raise UserError(f"{path} is already there: choose another id or folder") from None
    except OSError as exc:
        raise UserError(f"cannot write {path}: {exc.strerror or exc}") from None
    return path
