"""Benchmark 6, the web archive: requests per second and p50/p95 latency of the thread
list, a 50-post thread and a search under concurrent clients, against `listserv serve
--role web` on a list of 1,000,000 posts in 50,000 threads; the time to index them; and
what indexing adds to ingest's cost per post.

    python bench/web.py --db sqlite --posts 1000000 --threads 50000
    python bench/web.py --db postgresql --posts 1000000 --threads 50000

Targets: thread list and thread page p95 under 50 ms, search p95 under 200 ms, indexing
under 20% of ingest's cost per post. The rows are generated inside the database (like
bench/forum.py); the words of each post come from a 50-word vocabulary, so a word is in
about 2% of the posts and two words together in about 0.04%.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import aiohttp
from common import (
    LIST,
    Proc,
    free_port,
    ingest,
    machine,
    scratch_database,
    scratch_dir,
    seed_list,
    wait_port,
    write_config,
)
from sqlalchemy import text

from listserv.config import LimitsConfig
from listserv.core.addresses import Route
from listserv.store import posts as stored
from listserv.store import search
from listserv.store.database import Database, get_list

WORDS = (
    "massage",
    "therapy",
    "physio",
    "stretching",
    "wheelchair",
    "ramp",
    "cushion",
    "speech",
    "breathing",
    "ventilator",
    "feeding",
    "sleep",
    "fatigue",
    "cramps",
    "tremor",
    "walking",
    "cane",
    "splint",
    "exercise",
    "swimming",
    "diet",
    "protein",
    "vitamin",
    "doctor",
    "clinic",
    "nurse",
    "carer",
    "family",
    "grief",
    "hope",
    "humour",
    "music",
    "garden",
    "dog",
    "travel",
    "insurance",
    "housing",
    "transport",
    "computer",
    "eyegaze",
    "voice",
    "banking",
    "trial",
    "research",
    "drug",
    "riluzole",
    "edaravone",
    "dentist",
    "saliva",
    "pain",
)
assert len(WORDS) == 50

FILL = {
    "sqlite": "WITH RECURSIVE seq(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM seq WHERE n < "
    ":count) {insert} SELECT {columns} FROM seq",
    "postgresql": "{insert} SELECT {columns} FROM generate_series(1, :count) AS seq(n)",
}


def fill(db: Database, list_id: int, posts: int, threads: int) -> int:
    """`threads` threads of posts/threads posts each, plus one thread of 50 posts, the most
    recently active; returns that thread's id."""
    dialect = db.engine.dialect.name
    sqlite = dialect == "sqlite"

    def at(seconds: str) -> str:
        if sqlite:
            return f"datetime('2026-01-01', '+' || ({seconds}) || ' seconds')"
        return f"(timestamptz '2026-01-01 00:00:00+00' + ({seconds}) * interval '1 second')"

    words = "CASE {} " + " ".join(f"WHEN {i} THEN '{w}'" for i, w in enumerate(WORDS)) + " END"
    # A small message, as stored: headers, a blank line, the text.
    message = "From: member@example.net\nSubject: Re: a thread\n\nA reply of a few lines."
    blob = f"CAST('{message}' AS BLOB)" if sqlite else f"convert_to('{message}', 'UTF8')"
    per = posts // threads
    text_ = (
        f"'A reply of a few lines about ' || {words.format('n % 50')} || ' and ' || "
        f"{words.format('(n * 7 + n / 50) % 50')} || ', number ' || n"
    )
    thread_columns = (
        f"n, {list_id}, 'Thread about ' || {words.format('n % 50')} || ' ' || n,"
        f" 'thread ' || n, {at('n')}, {at(f'n + {threads} * ({per} - 1)')}, {per}"
    )
    post_columns = (
        f"n, {list_id}, ((n - 1) % {threads}) + 1, 'p' || n || '@bench.example.org', "
        f"'m' || (n * 7 % 5003) || '@example.net', 'Member ' || (n * 7 % 5003), "
        f"'Re: Thread ' || (((n - 1) % {threads}) + 1), {at('n')}, {at('n')}, {text_}, "
        f"{text_}, {blob}"
    )
    long_thread = threads + 1
    long_columns = (
        f"{posts} + n, {list_id}, {long_thread}, 'long' || n || '@bench.example.org', "
        f"'m' || n || '@example.net', 'Member ' || n, 'Re: A long thread', "
        f"{at(f'{posts} + n')}, {at(f'{posts} + n')}, {text_}, {text_}, {blob}"
    )
    insert_posts = (
        "INSERT INTO posts (id, list_id, thread_id, message_id, author_address, "
        "author_name, subject, date, received_at, body, new_text, raw)"
    )
    with db.session() as s:
        s.execute(
            text(
                FILL[dialect].format(
                    insert="INSERT INTO threads (id, list_id, subject, subject_key, started_at, "
                    "last_activity, post_count)",
                    columns=thread_columns,
                )
            ),
            {"count": threads},
        )
        s.execute(
            text(FILL[dialect].format(insert=insert_posts, columns=post_columns)), {"count": posts}
        )
        s.execute(
            text(
                "INSERT INTO threads (id, list_id, subject, subject_key, started_at, last_activity,"
                f" post_count) VALUES ({long_thread}, {list_id}, 'A long thread about massage', "
                f"'a long thread', {at(str(posts))}, {at(str(posts + 50))}, 50)"
            )
        )
        s.execute(
            text(FILL[dialect].format(insert=insert_posts, columns=long_columns)), {"count": 50}
        )
        s.execute(text("UPDATE lists SET archive = 'public' WHERE id = :l"), {"l": list_id})
        if not sqlite:  # rows were given their ids: ingest's later rows take the next ones
            for table in ("threads", "posts"):
                s.execute(
                    text(
                        f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), "
                        f"(SELECT max(id) FROM {table}))"
                    )
                )
    return long_thread


def analyze(db: Database) -> None:
    with db.engine.connect() as conn:
        conn.execution_options(isolation_level="AUTOCOMMIT").exec_driver_sql("ANALYZE")


async def load(url: str, clients: int, seconds: float) -> tuple[float, float, float]:
    """(requests/s, p50 ms, p95 ms) of `clients` clients fetching `url` for `seconds`."""
    latencies: list[float] = []
    deadline = time.perf_counter() + seconds

    async def client(session: aiohttp.ClientSession) -> None:
        while time.perf_counter() < deadline:
            start = time.perf_counter()
            async with session.get(url) as response:
                await response.read()
                assert response.status == 200, (url, response.status)
            latencies.append((time.perf_counter() - start) * 1000)

    async with aiohttp.ClientSession() as session:
        for _ in range(5):  # warm-up, untimed
            async with session.get(url) as response:
                await response.read()
        deadline = time.perf_counter() + seconds
        began = time.perf_counter()
        await asyncio.gather(*(client(session) for _ in range(clients)))
        elapsed = time.perf_counter() - began
    latencies.sort()
    return (
        len(latencies) / elapsed,
        statistics.median(latencies),
        latencies[int(len(latencies) * 0.95)],
    )


def ingest_cost(url: str, posts: int) -> dict[str, tuple[float, float]]:
    """Wall and CPU milliseconds per stored post (parse, decide, store, commit; one post
    per transaction, as a lone client gets), without and with the index row."""
    db = Database(url)
    with db.read() as s:
        ml = get_list(s, "quiet@lists.example.org")
        assert ml is not None
    route = Route("list", ml.address, "post")
    limits = LimitsConfig()
    now = datetime.now(UTC)
    dialect = db.engine.dialect.name
    indexing = stored._INDEX[dialect]

    class Skip:
        def run(self, *args: object) -> None:
            return None

    def one_round(tag: str) -> tuple[float, float]:
        start, cpu = time.perf_counter(), time.process_time()
        for i in range(posts):
            raw = (
                f"From: Poster <poster@example.org>\r\nTo: {ml.address}\r\n"
                f"Subject: About {WORDS[i % 50]} and {WORDS[i * 7 % 50]}\r\n"
                f"Message-ID: <{tag}{i}@bench.example.org>\r\n\r\n"
                f"A reply of a few lines about {WORDS[i % 50]}, number {i}.\r\n"
            ).encode()
            ingest(db, route, raw, "poster@example.org", now + timedelta(seconds=i), limits)
        return (
            (time.perf_counter() - start) * 1000 / posts,
            (time.process_time() - cpu) * 1000 / posts,
        )

    try:
        one_round("warm")
        rounds: dict[str, list[tuple[float, float]]] = {"without": [], "with": []}
        for n in range(3):  # alternated, so a busy moment does not favour one
            stored._INDEX[dialect] = Skip()  # type: ignore[assignment]
            rounds["without"].append(one_round(f"a{n}-"))
            stored._INDEX[dialect] = indexing
            rounds["with"].append(one_round(f"b{n}-"))
    finally:
        stored._INDEX[dialect] = indexing
        db.dispose()
    return {
        name: (statistics.median(w for w, _ in runs), statistics.median(c for _, c in runs))
        for name, runs in rounds.items()
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--posts", type=int, default=1_000_000)
    parser.add_argument("--threads", type=int, default=50_000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--ingest-posts", type=int, default=1000)
    args = parser.parse_args()
    print(f"machine: {machine()}")
    with scratch_dir() as tmp, scratch_database(args.db, Path(tmp)) as url:
        seed_list(url, 0)
        db = Database(url)
        with db.read() as s:
            ml = get_list(s, LIST)
            assert ml is not None
            list_id = ml.id
        start = time.perf_counter()
        long_thread = fill(db, list_id, args.posts, args.threads)
        print(
            f"filled {args.posts + 50} posts in {args.threads + 1} threads "
            f"in {time.perf_counter() - start:.0f} s"
        )
        start = time.perf_counter()
        with db.transaction() as conn:
            indexed = search.reindex(conn, list_id)
        took = time.perf_counter() - start
        print(f"indexed {indexed} posts in {took:.1f} s ({took / indexed * 1e6:.0f} us/post)")
        analyze(db)
        db.dispose()

        port = free_port()
        config = write_config(Path(tmp), url, free_port(), free_port())
        config.write_text(config.read_text() + f'\n[web]\nhost = "127.0.0.1"\nport = {port}\n')
        server = Proc(
            [sys.executable, "-m", "listserv", "-c", str(config), "serve", "--role", "web"]
        )
        try:
            wait_port(port)
            base = f"http://127.0.0.1:{port}/bench"
            pages = {
                "thread list (page 1)": f"{base}/",
                "thread list (page 100)": f"{base}/?page=100",
                "thread, 50 posts": f"{base}/t/{long_thread}",
                "thread, 20 posts": f"{base}/t/1",
                "search, one word (2% of posts)": f"{base}/search?q=massage",
                "search, two words": f"{base}/search?q=massage+therapy",
                'search, "phrase"': f"{base}/search?q=%22about+massage%22",
                "search, a word of one post": f"{base}/search?q=999999",
            }
            print(
                f"web on {args.db}: {args.clients} concurrent clients, {args.seconds:.0f} s "
                "each (targets: pages p95 < 50 ms, search p95 < 200 ms)"
            )
            for name, page in pages.items():
                rate, p50, p95 = asyncio.run(load(page, args.clients, args.seconds))
                print(f"  {name:32s} {rate:7.0f} req/s  p50 {p50:6.1f} ms  p95 {p95:6.1f} ms")
        finally:
            output = server.stop()
            if "Traceback" in output:
                print(output)
        cost = ingest_cost(url, args.ingest_posts)
        print(f"ingest cost per post ({args.ingest_posts} posts x 3, one per transaction):")
        for i, kind in enumerate(("wall", "CPU")):
            without, with_index = cost["without"][i], cost["with"][i]
            print(
                f"  {kind:4s} {without:.2f} ms without the index row, {with_index:.2f} ms "
                f"with it (+{(with_index / without - 1) * 100:.0f}%)"
            )


if __name__ == "__main__":
    main()
