"""An ordinary SQLAlchemy ORM program, for measuring `dbsandbox trace` against.

It finds its database in DATABASE_URL, as the course's programs do, and runs rounds of what
such programs do until it has sent `--statements` cursor executions (10,000 by default):

- inserts: new objects with `session.add`, sent by an explicit `session.flush()` in batches
  (SQLAlchemy's "insertmanyvalues": one INSERT per batch where the driver can, one per row
  where it cannot; each is one cursor execution, logged once by the echo log);
- selects by id, both `session.get` on an expired object and `select(...).where(id == ...)`;
- updates of loaded objects, which the next query's autoflush sends;
- a few deletes; then a commit, which expires everything, so the next round's gets query.

`--echo-log PATH` (or TRACE_ECHO_LOG) writes SQLAlchemy's own echo log to that file: a
handler on the "sqlalchemy.engine" logger at INFO, in the format `create_engine(echo=True)`
uses, and nothing on stdout. Without it nothing is logged (the overhead is measured so).

The statement count comes from the program's own `after_cursor_execute` listener: it counts
exactly what the echo log shows as statements (every cursor execution, each insertmanyvalues
batch included), so the program stops on the same count whatever the engine batches.

    DATABASE_URL=sqlite:////tmp/w.db python benchmarks/trace_workload.py [--statements 10000]
        [--batch 50] [--echo-log /tmp/echo.log]
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from typing import Any

from sqlalchemy import ForeignKey, Integer, String, create_engine, event, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

ECHO_ENV = "TRACE_ECHO_LOG"
# SQLAlchemy's own format for echo=True (sqlalchemy.log): the fidelity check reads it back.
ECHO_FORMAT = "%(asctime)s %(levelname)s %(name)s %(message)s"


class Base(DeclarativeBase):
    pass


class Shelf(Base):
    __tablename__ = "shelves"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    shelf_id: Mapped[int] = mapped_column(ForeignKey("shelves.id"))
    name: Mapped[str] = mapped_column(String(60))
    qty: Mapped[int] = mapped_column(Integer, default=0)


def echo_to(path: str) -> None:
    """SQLAlchemy's echo log into `path` only (echo=True would also print to stdout)."""
    handler = logging.FileHandler(path, mode="w", encoding="utf-8")
    handler.setFormatter(logging.Formatter(ECHO_FORMAT))
    logger = logging.getLogger("sqlalchemy.engine")
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False


def run(url: str, statements: int, batch: int) -> tuple[int, int]:
    """Rounds of insert / get / update / select / delete / commit until `statements` cursor
    executions were sent. Returns (cursor executions, commits)."""
    engine = create_engine(url)
    sent = [0]

    @event.listens_for(engine, "after_cursor_execute")
    def _count(*_: Any) -> None:
        sent[0] += 1

    Base.metadata.create_all(engine)
    commits = 0
    ids: list[int] = []
    round_no = 0
    with Session(engine) as session:
        shelf = Shelf(name="main")
        session.add(shelf)
        session.commit()
        commits += 1
        shelf_id = shelf.id
        while sent[0] < statements:
            round_no += 1
            fresh = [
                Item(shelf_id=shelf_id, name=f"item {round_no}.{i}", qty=i) for i in range(batch)
            ]
            session.add_all(fresh)
            session.flush()  # the batch's INSERTs, before any query would autoflush them
            # Objects of earlier rounds, expired by the last commit: each get() queries, and
            # the change to the one before it is autoflushed first (an UPDATE).
            for item_id in ids[-batch:]:
                item = session.get(Item, item_id)
                if item is not None:
                    item.qty += 1
                if sent[0] >= statements:
                    break
            for item_id in ids[-batch // 2 :]:
                session.execute(select(Item.name).where(Item.id == item_id)).first()
                if sent[0] >= statements:
                    break
            for gone in ids[:2]:
                doomed = session.get(Item, gone)
                if doomed is not None:
                    session.delete(doomed)
            del ids[:2]
            ids += [item.id for item in fresh]
            session.commit()
            commits += 1
    engine.dispose()
    return sent[0], commits


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--statements", type=int, default=10_000)
    parser.add_argument("--batch", type=int, default=50, help="new objects per flush")
    parser.add_argument("--echo-log", default=os.environ.get(ECHO_ENV))
    args = parser.parse_args()
    url = os.environ.get("DATABASE_URL")
    if not url:
        print("trace_workload: set DATABASE_URL to a SQLAlchemy URL", file=sys.stderr)
        return 2
    if args.echo_log:
        echo_to(args.echo_log)
    sent, commits = run(url, args.statements, args.batch)
    print(f"statements {sent} commits {commits}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
