"""Benchmark 1, ingest: posts accepted per second over SMTP on loopback, 8 concurrent
clients, each post committed durably before the 250, next to a same-run baseline (a bare
aiosmtpd server that answers 250 and stores nothing).

    python bench/ingest.py --db sqlite --posts 4000 --workers 2
    python bench/ingest.py --db sqlite --posts 4000 --workers 2 --role all

With `--role all` every role runs in the one `serve` and each post goes to the 10 readers
of its list through Postfix's smtp-sink: ingest while the dispatcher is busy.

Two loads, each against the baseline and listserv in turn:
- throughput: Postfix's smtp-source (a C program) with 8 parallel sessions, so that the
  load generator's CPU does not crowd the servers on a small machine. Skipped when
  smtp-source is not installed (Debian package `postfix`).
- latency: 8 Python smtplib client processes, timing every post (p50, p99).
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import load
from common import (
    LIST,
    Proc,
    fast_sink,
    free_port,
    listserv_server,
    machine,
    scratch_database,
    scratch_dir,
    seed_list,
    sink_name,
    smtp_source_binary,
    wait_port,
    write_config,
)
from sqlalchemy import create_engine, func, select

from listserv.store.models import Delivery, Post


def smtp_source(port: int, posts: int, sessions: int) -> float:
    """Send `posts` posts over `sessions` reused connections; the seconds it took."""
    binary = smtp_source_binary()
    assert binary is not None
    start = time.perf_counter()
    subprocess.run([binary, "-d", "-s", str(sessions), "-m", str(posts), "-l", "1800",
                    "-S", "Bench post", "-f", "poster@example.org", "-t", LIST,
                    f"127.0.0.1:{port}"], check=True)
    return time.perf_counter() - start


class Figures:
    """One server's figures under both loads."""

    def __init__(self) -> None:
        self.source_rate: float | None = None
        self.python_rate = 0.0
        self.latencies: list[float] = []
        self.cpu_ms = 0.0  # server CPU per post, over both loads


def measure(server: Proc, port: int, args: argparse.Namespace,
            stored: Callable[[], int] | None = None) -> Figures:
    figures = Figures()
    wait_port(port)
    time.sleep(1)  # let every receiver process start before the load does
    load.run(port, args.clients * 5, args.clients, "warm")
    before = stored() if stored else 0
    cpu0, posts = server.cpu_seconds(), 0
    if smtp_source_binary():
        figures.source_rate = args.posts / smtp_source(port, args.posts, args.clients)
        posts += args.posts
    seconds, figures.latencies = load.run(port, args.posts, args.clients, "post")
    posts += len(figures.latencies)
    figures.python_rate = len(figures.latencies) / seconds
    figures.cpu_ms = (server.cpu_seconds() - cpu0) * 1000 / posts
    if stored and stored() - before != posts:
        raise SystemExit(f"only {stored() - before} of {posts} posts were stored")
    return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--posts", type=int, default=4000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--workers", type=int, default=1,
                        help="receiver processes behind one port (serve --workers)")
    parser.add_argument("--role", choices=["receiver", "all"], default="receiver",
                        help="all: the dispatcher delivers the posts meanwhile")
    args = parser.parse_args()
    print(f"machine: {machine()}")

    port = free_port()
    baseline = Proc([sys.executable, str(Path(__file__).with_name("nullsmtp.py")), str(port)])
    try:
        base = measure(baseline, port, args)
    finally:
        baseline.stop()

    with scratch_dir() as tmp, scratch_database(args.db, Path(tmp)) as url:
        seed_list(url, 10)
        engine = create_engine(url)

        def stored() -> int:
            with engine.connect() as conn:
                return conn.scalar(select(func.count()).select_from(Post)) or 0

        port, sink_port = free_port(), free_port()
        sink = fast_sink(sink_port) if args.role == "all" else None
        config = write_config(Path(tmp), url, port, sink_port)
        server = listserv_server(config, args.role, args.workers)
        try:
            ours = measure(server, port, args, stored)
            rss = server.peak_rss_mb()
            with engine.connect() as conn:
                sent = conn.scalar(select(func.count()).select_from(Delivery)
                                   .where(Delivery.status == "sent"))
        finally:
            log = server.stop()
            engine.dispose()
            if sink is not None:
                sink.stop()
        if "Traceback" in log:
            print(log)

    print(f"ingest on {args.db}: {args.posts} posts per load, {args.clients} concurrent "
          f"clients, {args.workers} receiver process(es), serve --role {args.role}; every "
          f"post stored (checked)")
    if args.role == "all":
        print(f"  copies sent meanwhile by the dispatcher (sink: {sink_name()}): {sent}")
    if base.source_rate and ours.source_rate:
        print("  throughput, load by smtp-source:")
        print(f"    baseline (aiosmtpd, stores nothing): {base.source_rate:6.0f} posts/s")
        print(f"    listserv (durable commit before 250): {ours.source_rate:5.0f} posts/s")
        print(f"    ratio: {ours.source_rate / base.source_rate:.0%} of baseline "
              f"(target >= 50% on SQLite)")
    else:
        print("  throughput by smtp-source: skipped (install postfix for smtp-source)")
    print("  latency, load by Python smtplib clients:")
    for name, fig in (("baseline", base), ("listserv", ours)):
        print(f"    {name}: {fig.python_rate:6.0f} posts/s  "
              f"p50 {load.percentile(fig.latencies, 50) * 1000:6.1f} ms  "
              f"p99 {load.percentile(fig.latencies, 99) * 1000:6.1f} ms")
    print(f"    ratio: {ours.python_rate / base.python_rate:.0%} of baseline (these clients "
          f"use {args.clients} Python processes on the same cores)")
    print(f"  server CPU per post: baseline {base.cpu_ms:.2f} ms, listserv {ours.cpu_ms:.2f} ms "
          f"(all its processes); listserv peak RSS {rss:.0f} MB per process")


if __name__ == "__main__":
    main()
