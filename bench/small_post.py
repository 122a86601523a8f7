"""Small posts: latency from a post stored to its last copy sent, on a 10-member list, idle.

Starts `listserv serve` (every role in one process), with --fsyncs under `strace -f -c`
to count its fsync and fdatasync calls per post (strace slows it: read latency from a run
without), and sends N posts one at a time, each after the previous one's copies were all
sent. Latency is read from the server's own stamps: the post's `received_at` (stored, just
before the 250) to the latest `sent_at` of its copies (recorded after the relay's 250).
Not part of the suite.

    python bench/small_post.py --posts 200
    python bench/small_post.py --posts 50 --fsyncs
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import smtplib
import sys
import time
from pathlib import Path

import load
from common import (
    LIST,
    Proc,
    _children,
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


def last_copy(engine: Engine, message_id: str) -> float | None:
    """Seconds from the post stored to its last copy sent; None while copies are pending."""
    with engine.connect() as conn:
        post = conn.execute(
            select(Post.id, Post.received_at).where(Post.message_id == message_id)
        ).first()
        if post is None:
            return None
        sent, last = conn.execute(
            select(func.count(), func.max(Delivery.sent_at)).where(
                Delivery.post_id == post.id, Delivery.status == "sent"
            )
        ).one()
    return (last - post.received_at).total_seconds() if sent == COPIES else None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--posts", type=int, default=200)
    parser.add_argument("--fsyncs", action="store_true", help="count them with strace")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"sink: {sink_name()}")
    strace = shutil.which("strace") if args.fsyncs else None
    if args.fsyncs and strace is None:
        sys.exit("--fsyncs needs strace")
    with scratch_dir() as tmp, scratch_database(args.db, Path(tmp)) as url:
        seed_list(url, COPIES)
        port, sink_port = free_port(), free_port()
        sink = fast_sink(sink_port)
        config = write_config(Path(tmp), url, port, sink_port, poll_seconds=5.0)
        with config.open("a") as out:  # the web role too, on a port of its own
            out.write(f'\n[web]\nhost = "127.0.0.1"\nport = {free_port()}\n')
        counts = Path(tmp) / "strace.txt"
        serve = [sys.executable, "-m", "listserv", "-c", str(config), "serve", "--role", "all"]
        trace = [strace, "-f", "-qq", "-c", "-e", "trace=fsync,fdatasync", "-o", str(counts)]
        server = Proc([*trace, *serve] if strace else serve)
        engine = create_engine(url)
        latencies: list[float] = []
        try:
            wait_port(port)
            wait_port(sink_port)
            with smtplib.SMTP("127.0.0.1", port) as client:
                for i in range(args.posts):
                    tag = f"small{i}"
                    client.sendmail("poster@example.org", [LIST], load.message(tag))
                    deadline = time.monotonic() + 30
                    while (seconds := last_copy(engine, f"{tag}@bench.example.org")) is None:
                        if time.monotonic() > deadline:
                            sys.exit(f"post {i}: copies not all sent after 30 s")
                        time.sleep(0.002)
                    latencies.append(seconds)
        finally:
            engine.dispose()
            if strace:  # stop the server itself: strace writes its counts once it exits
                for pid in _children(server.pid)[:1]:
                    os.kill(pid, signal.SIGINT)
                server.popen.wait(timeout=30)
            log = server.stop()
            sink.stop()
            if "Traceback" in log or "Error" in log:
                print(log[-3000:])
        syncs = (
            sum(
                int(line.split()[3])
                for line in counts.read_text().splitlines()
                if line.split()[-1:] in (["fsync"], ["fdatasync"])
            )
            if strace and counts.exists()
            else None
        )
    latencies.sort()
    print(f"small posts on {args.db}: {args.posts} posts to a list of {COPIES + 1}, one at a time")
    print(
        f"  post stored -> last copy sent: p50 {load.percentile(latencies, 50) * 1000:.1f} ms"
        f"  p90 {load.percentile(latencies, 90) * 1000:.1f} ms  (target p50 < 50 ms)"
    )
    if syncs is not None:
        print(f"  fsync + fdatasync in the server: {syncs} = {syncs / args.posts:.1f} per post")


if __name__ == "__main__":
    main()
