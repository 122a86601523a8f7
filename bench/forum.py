"""Benchmark 4, forum reads: `threads` (the listing) and `show` (one thread) on a list with
1,000,000 posts in 50,000 threads. Target: under 50 ms each. The rows are generated inside
the database (a recursive CTE on SQLite, generate_series on PostgreSQL) to keep setup short.

    python bench/forum.py --db sqlite --posts 1000000 --threads 50000
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

from common import LIST, machine, scratch_database, scratch_dir, seed_list
from sqlalchemy import text

from listserv.admin import threads as forum
from listserv.store.database import Database, get_list

SQLITE_FILL = """
WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < :count)
{insert} SELECT {columns} FROM seq
"""
PG_FILL = "{insert} SELECT {columns} FROM generate_series(1, :count) AS seq(n)"


def fill(db: Database, list_id: int, posts: int, threads: int) -> None:
    """Threads with evenly spread posts; a thread's posts interleave with other threads'
    in id order, as replies arriving over months do."""
    sqlite = db.engine.dialect.name == "sqlite"

    def at(seconds: str) -> str:
        if sqlite:
            return f"datetime('2026-01-01', '+' || ({seconds}) || ' seconds')"
        return f"(timestamptz '2026-01-01 00:00:00+00' + ({seconds}) * interval '1 second')"

    blob = "CAST('raw message' AS BLOB)" if sqlite else "convert_to('raw message', 'UTF8')"
    per = posts // threads
    last_post = f"(n + {threads} * ({per} - 1))"
    thread_columns = (
        f"n, {list_id}, 'Thread number ' || n, 'thread number ' || n, {at('n')}, "
        f"{at(last_post)}, {per}"
    )
    post_columns = (
        f"n, {list_id}, ((n - 1) % {threads}) + 1, 'p' || n || '@bench.example.org', "
        f"'m' || (n * 7 % 5003) || '@example.net', '', 'Re: Thread number ' || (((n - 1) % "
        f"{threads}) + 1), {at('n')}, {at('n')}, 'A reply of a few lines, number ' || n, {blob}"
    )
    template = SQLITE_FILL if sqlite else PG_FILL
    with db.session() as s:
        s.execute(text(template.format(
            insert="INSERT INTO threads (id, list_id, subject, subject_key, started_at, "
                   "last_activity, post_count)", columns=thread_columns)), {"count": threads})
        s.execute(text(template.format(
            insert="INSERT INTO posts (id, list_id, thread_id, message_id, author_address, "
                   "author_name, subject, date, received_at, body, raw)",
            columns=post_columns)), {"count": posts})
    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")


def timed(fn: object, runs: int) -> tuple[float, float]:
    """(median, max) milliseconds of `runs` calls, each in its own read transaction."""
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()  # type: ignore[operator]
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times), max(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=50_000)
    parser.add_argument("--runs", type=int, default=20)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with scratch_dir() as tmp, scratch_database(args.db, Path(tmp)) as url:
        seed_list(url, 0)
        db = Database(url)
        with db.read() as s:
            ml = get_list(s, LIST)
            assert ml is not None
        start = time.perf_counter()
        fill(db, ml.id, args.posts, args.threads)
        print(f"filled {args.posts} posts in {args.threads} threads "
              f"in {time.perf_counter() - start:.0f} s")

        def listing() -> None:
            with db.read() as s:
                rows = forum.thread_listing(s, ml, 50)
            assert len(rows) == 50 and len(rows[0]["participants"]) > 1

        def show(thread_id: int) -> object:
            def run() -> None:
                with db.read() as s:
                    found = forum.thread_posts(s, thread_id)
                assert found is not None and len(found[1]) == args.posts // args.threads
            return run

        results = {
            "threads (listing, 50 most active)": timed(listing, args.runs),
            "show (most recent thread)": timed(show(args.threads), args.runs),
            "show (oldest thread)": timed(show(1), args.runs),
        }
        db.dispose()
    print(f"forum reads on {args.db}: {args.posts} posts, {args.threads} threads "
          f"({args.runs} runs each; target < 50 ms)")
    for name, (median, worst) in results.items():
        print(f"  {name:36s} median {median:6.1f} ms  max {worst:6.1f} ms")


if __name__ == "__main__":
    main()
