"""End to end on a small list: posts per second from SMTP in to all 9 copies accepted by the
relay, on a 10-member list, 8 posting clients, every role in one `listserv serve`, next to
a same-run baseline (a bare aiosmtpd server's ingest rate under the same clients); and the
latency from a post stored to its last copy sent, idle (one post at a time) and under that
load.

    python bench/end_to_end.py --db sqlite --posts 1000
    python bench/end_to_end.py --db postgresql --posts 1000

The load is N posts from 8 Python smtplib client processes (bench/load.py), each reusing
one connection. The end-to-end rate is N over the time from the first post sent to the
last copy recorded sent (after the relay's 250 for it); the script checks that every post
was stored and that each of its 9 copies was sent exactly once. Latency is read from the
server's own stamps: a post's `received_at` (stored, just before its 250) to the latest
`sent_at` of its copies. The relay is Postfix's smtp-sink when installed. Not part of the
suite.
"""

from __future__ import annotations

import argparse
import signal
import smtplib
import subprocess
import sys
import time
from pathlib import Path

import load
from common import (
    LIST,
    Proc,
    deliveries,
    fast_sink,
    free_port,
    machine,
    scratch_database,
    scratch_dir,
    seed_list,
    sink_name,
    wait_port,
    write_config,
)
from sqlalchemy import Engine, create_engine, func, select

from listserv.store.models import Delivery, Post

COPIES = 9  # a 10-member list: the poster (no mail) and 9 readers


def latencies(engine: Engine, prefix: str) -> list[float]:
    """Seconds from each post stored to its last copy sent, of the posts tagged `prefix`,
    sorted; raises unless every one of them has its 9 copies sent, each once."""
    with engine.connect() as conn:
        rows = conn.execute(
            select(Post.received_at, func.max(Delivery.sent_at), func.count(),
                   func.count(func.distinct(Delivery.recipient)))
            .join(Delivery, Delivery.post_id == Post.id)
            .where(Post.message_id.like(f"{prefix}%"), Delivery.status == "sent")
            .group_by(Post.id)
        ).all()
    if any(n != COPIES or distinct != COPIES for _r, _s, n, distinct in rows):
        raise SystemExit(f"{prefix}: a post whose copies were not 9 distinct ones")
    return sorted((last - received).total_seconds() for received, last, _n, _d in rows)


def wait_sent(engine: Engine, server: Proc, target: int, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while deliveries(engine, "sent") < target:
        if server.popen.poll() is not None:
            sys.exit("server exited:\n" + server.stop()[-3000:])
        if time.monotonic() > deadline:
            sent = deliveries(engine, "sent")
            sys.exit(f"only {sent} of {target} copies sent after {timeout} s")
        time.sleep(0.005)


def baseline(posts: int, clients: int) -> float:
    """The bare aiosmtpd server's ingest rate under the same clients, posts/s."""
    port = free_port()
    server = Proc([sys.executable, str(Path(__file__).with_name("nullsmtp.py")), str(port)])
    try:
        wait_port(port)
        load.run(port, clients * 5, clients, "warm")
        seconds, accepted = load.run(port, posts, clients, "post")
    finally:
        server.stop()
    return len(accepted) / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--posts", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--idle", type=int, default=100, help="posts sent one at a time")
    parser.add_argument("--workers", type=int, default=1, help="serve --workers")
    parser.add_argument("--py-spy", metavar="FILE", help="profile the server under load with "
                        "py-spy (pip install py-spy) into FILE, as collapsed stacks")
    parser.add_argument("--gil", action="store_true",
                        help="with --py-spy: sample only the thread holding the GIL (CPU)")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"sink: {sink_name()}")

    bare = baseline(args.posts, args.clients)
    with scratch_dir() as tmp, scratch_database(args.db, Path(tmp)) as url:
        seed_list(url, COPIES)
        port, sink_port = free_port(), free_port()
        sink = fast_sink(sink_port)
        config = write_config(Path(tmp), url, port, sink_port)
        with config.open("a") as out:  # the web role too, on a port of its own
            out.write(f'\n[web]\nhost = "127.0.0.1"\nport = {free_port()}\n')
        server = Proc([sys.executable, "-m", "listserv", "-c", str(config), "serve",
                       "--role", "all", "--workers", str(args.workers)])
        engine = create_engine(url)
        try:
            wait_port(port)
            wait_port(sink_port)
            time.sleep(1)  # every receiver process started
            # Idle: one post at a time over one connection, each after the last one's copies.
            with smtplib.SMTP("127.0.0.1", port) as client:
                for i in range(args.idle):
                    client.sendmail("poster@example.org", [LIST], load.message(f"idle{i}"))
                    wait_sent(engine, server, (i + 1) * COPIES, 30)
            idle = latencies(engine, "idle")
            # Loaded: N posts from the clients at once, until their last copy is sent.
            before = deliveries(engine, "sent")
            cpu0 = server.cpu_seconds()
            profiler = None
            if args.py_spy:
                profiler = subprocess.Popen(
                    [str(Path(sys.executable).with_name("py-spy")), "record", "--pid",
                     str(server.pid), "--subprocesses", "--threads", "--rate", "250",
                     "--format", "raw", "--output", args.py_spy, "--nonblocking",
                     *(["--gil"] if args.gil else [])],
                    stdout=subprocess.DEVNULL)
                time.sleep(1)
            start = time.perf_counter()
            ingest_seconds, accepted = load.run(port, args.posts, args.clients, "load")
            wait_sent(engine, server, before + len(accepted) * COPIES, 600)
            wall = time.perf_counter() - start
            cpu = server.cpu_seconds() - cpu0
            if profiler is not None:
                profiler.send_signal(signal.SIGINT)
                profiler.wait(30)
            loaded = latencies(engine, "load")
            if len(loaded) != len(accepted):
                sys.exit(f"{len(loaded)} of {len(accepted)} posts have their copies")
            with engine.connect() as conn:
                extra = conn.scalar(select(func.count()).select_from(Delivery)
                                    .where(Delivery.status != "sent")) or 0
        finally:
            engine.dispose()
            log = server.stop()
            sink.stop()
        if "Traceback" in log:
            print(log[-3000:])

    rate = len(accepted) / wall
    print(f"end to end on {args.db}: a list of {COPIES + 1}, {len(accepted)} posts from "
          f"{args.clients} clients, serve --role all --workers {args.workers}; every post "
          f"stored and its {COPIES} copies sent once each (checked), {extra} other deliveries")
    print(f"  baseline (bare aiosmtpd, stores nothing): {bare:6.0f} posts/s")
    print(f"  listserv, SMTP in to last copy sent:      {rate:6.1f} posts/s  "
          f"({rate * COPIES:.0f} copies/s; the 250s came at {len(accepted) / ingest_seconds:.0f}"
          f" posts/s)")
    print(f"  ratio: {rate / bare:.3f} x baseline (target >= 0.1)")
    print(f"  server CPU per post (ingest and 9 copies): {cpu * 1000 / len(accepted):.2f} ms")
    for name, values in (("idle", idle), ("under load", loaded)):
        print(f"  post stored -> last copy sent, {name}: "
              f"p50 {load.percentile(values, 50) * 1000:.1f} ms  "
              f"p90 {load.percentile(values, 90) * 1000:.1f} ms  "
              f"p99 {load.percentile(values, 99) * 1000:.1f} ms  ({len(values)} posts; "
              f"target p50 idle < 50 ms)")


if __name__ == "__main__":
    main()
