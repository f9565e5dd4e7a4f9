"""A program with several connections at once, each statement tagged with who sent it.

Four threads (by default), each with its own connection from SQLAlchemy's pool, held for the
whole run, start together (a barrier) and send N statements each, interleaving as the
scheduler lets them. Each statement says who sent it in a SQL comment (`/* tag p1-t2 */`)
and which of that sender's statements it is in a parameter (`:seq`, 0..N-1), so a trace can
be checked against the truth: every statement must be on the lane of the connection that sent
it, and each lane must hold one sender's statements, all of them, in order.

    DATABASE_URL=... python benchmarks/trace_lanes_program.py PROCESS_TAG [--threads 4] [-n 100]
        [--processes 2]

With --processes K, the program forks K processes (multiprocessing, fork) that each run the
threads, tagged PROCESS_TAG.1 .. PROCESS_TAG.K. The table `marks (tag, seq)` must exist
(--prepare creates it: not from two programs started together on PostgreSQL, whose
concurrent CREATE TABLE IF NOT EXISTS can collide).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import threading

from sqlalchemy import create_engine, text


def tag_of(process_tag: str, thread: int) -> str:
    return f"{process_tag}-t{thread}"


def statement(tag: str) -> str:
    # Half reads, half writes: the writes make SQLite's writers wait for one another
    # (the busy timeout), so lanes really do interleave and wait.
    return f"SELECT /* tag {tag} */ :seq AS seq"


def write(tag: str) -> str:
    return f"INSERT /* tag {tag} */ INTO marks (tag, seq) VALUES ('{tag}', :seq)"


def run_threads(process_tag: str, threads: int, count: int) -> None:
    # Each thread keeps its connection: a pool as large as the threads, none overflowing.
    engine = create_engine(
        os.environ["DATABASE_URL"],
        pool_size=threads,
        max_overflow=0,
        connect_args={"timeout": 60} if os.environ["DATABASE_URL"].startswith("sqlite") else {},
    )
    start = threading.Barrier(threads)
    failures: list[BaseException] = []

    def worker(number: int) -> None:
        tag = tag_of(process_tag, number)
        try:
            with engine.connect() as conn:
                start.wait()
                for seq in range(count):
                    sql = write(tag) if seq % 2 else statement(tag)
                    conn.execute(text(sql), {"seq": seq})
                    if seq % 10 == 9:
                        conn.commit()
                conn.commit()
        except BaseException as exc:  # reported below: the run fails
            failures.append(exc)

    workers = [
        threading.Thread(target=worker, args=(n,), name=tag_of(process_tag, n))
        for n in range(1, threads + 1)
    ]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join()
    engine.dispose()
    if failures:
        raise failures[0]
    print(f"{process_tag}: {threads} threads x {count} statements sent")


def prepare() -> None:
    engine = create_engine(os.environ["DATABASE_URL"])
    with engine.begin() as conn:
        conn.execute(text("CREATE TABLE IF NOT EXISTS marks (tag VARCHAR(40), seq INTEGER)"))
    engine.dispose()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("process_tag")
    parser.add_argument("--threads", type=int, default=4)
    parser.add_argument("-n", "--count", type=int, default=100)
    parser.add_argument("--processes", type=int, default=0)
    parser.add_argument("--prepare", action="store_true", help="create the table first")
    args = parser.parse_args()
    if args.prepare:
        prepare()
    if not args.processes:
        run_threads(args.process_tag, args.threads, args.count)
        return 0
    context = multiprocessing.get_context("fork")
    children = [
        context.Process(
            target=run_threads, args=(f"{args.process_tag}.{k}", args.threads, args.count)
        )
        for k in range(1, args.processes + 1)
    ]
    for child in children:
        child.start()
    for child in children:
        child.join()
    failed = [c.exitcode for c in children if c.exitcode != 0]
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
