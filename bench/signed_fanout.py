"""Benchmark: 100,000 DKIM-signed personal copies of one post, with one dispatcher process
and with N, beside the same run's ceiling of the sink (Postfix's `smtp-source` into
`smtp-sink`, 8 sessions, when installed).

Each fan-out runs on a fresh database: `listserv serve --role all --dispatchers K` in a
subprocess, one post through its receiver, until every delivery is recorded. CPU per copy
is the server's with all its processes (read from /proc while they run). With --footer the
list has `[web] base_url`, so each copy carries its member's one-click link in the footer
too, and the body (and its hash) is per copy; without it, only headers differ per copy (the
default: the personal unsubscribe token is in List-Unsubscribe).

    python bench/signed_fanout.py --members 100000 --dispatchers 2 [--footer] [--db sqlite]
"""

from __future__ import annotations

import argparse
import os
import smtplib
import subprocess
import sys
import time
from dataclasses import dataclass
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
    smtp_sink_binary,
    smtp_source_binary,
    wait_port,
    write_config,
)
from sqlalchemy import create_engine, func, select

from listserv.outbound import keys
from listserv.store.models import Delivery, Post

CONNECTIONS = 8  # per dispatcher process, as bench/fanout.py


@dataclass
class Run:
    dispatchers: int
    seconds: float  # post stored -> last copy recorded sent
    cpu: float
    rss_mb: float
    failed: int


def sink_ceiling(messages: int, size: int) -> float | None:
    """Messages/s that smtp-source (C) gets into smtp-sink over 8 reused sessions: what the
    sink takes at most on this machine now, with the cores free of listserv."""
    source = smtp_source_binary()
    if not (source and smtp_sink_binary()):
        return None
    port = free_port()
    sink = fast_sink(port)
    try:
        wait_port(port)
        start = time.perf_counter()
        subprocess.run([source, "-d", "-s", "8", "-m", str(messages), "-l", str(size),
                        "-f", "poster@example.org", "-t", "m@example.net",
                        f"127.0.0.1:{port}"], check=True, capture_output=True)
        return messages / (time.perf_counter() - start)
    finally:
        sink.stop()


def fanout(db: str, members: int, dispatchers: int, footer: bool) -> Run:
    with scratch_dir() as tmp, scratch_database(db, Path(tmp)) as url:
        seed_list(url, members)
        port, sink_port = free_port(), free_port()
        sink = fast_sink(sink_port)
        config = write_config(Path(tmp), url, port, sink_port, connections=CONNECTIONS,
                              poll_seconds=1.0)
        pem, _ = keys.generate()
        keys.write_private(Path(tmp) / "dkim.pem", pem)
        with config.open("a") as out:
            out.write('\n[dkim]\nselector = "bench"\ndomain = "lists.example.org"\n'
                      'private_key_file = "dkim.pem"\n\n[web]\nport = 0\n')
            if footer:
                out.write('base_url = "https://lists.example.org"\n')
        server = Proc([sys.executable, "-m", "listserv", "-c", str(config), "serve",
                       "--role", "all", "--dispatchers", str(dispatchers)])
        engine = create_engine(url)
        try:
            wait_port(port)
            wait_port(sink_port)
            time.sleep(3)  # the dispatcher processes start (imports) before the post
            cpu0 = server.cpu_seconds()
            with smtplib.SMTP("127.0.0.1", port) as client:
                client.sendmail("poster@example.org", [LIST], load.message("fanout"))
            while True:
                with engine.connect() as conn:
                    done = conn.scalar(select(func.count()).select_from(Delivery).where(
                        Delivery.status.in_(("sent", "failed")))) or 0
                if done >= members:
                    break
                if server.popen.poll() is not None:
                    sys.exit("server exited:\n" + server.stop())
                time.sleep(0.2)
            cpu = server.cpu_seconds() - cpu0
            rss = server.peak_rss_mb()
            with engine.connect() as conn:
                received = conn.scalar(select(Post.received_at).where(
                    Post.message_id == "fanout@bench.example.org"))
                last = conn.scalar(select(func.max(Delivery.sent_at)))
            failed = deliveries(engine, "failed")
        finally:
            engine.dispose()
            log = server.stop()
            sink.stop()
        if "Traceback" in log:
            print(log[-3000:])
        assert received is not None and last is not None
        return Run(dispatchers, (last - received).total_seconds(), cpu, rss, failed)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--dispatchers", type=int, default=os.cpu_count() or 2)
    parser.add_argument("--footer", action="store_true",
                        help="a personal one-click link in each copy's footer ([web] base_url)")
    args = parser.parse_args()
    print(f"machine: {machine()}, load average {os.getloadavg()[0]:.1f} at start")
    print(f"sink: {sink_name()}")
    print(f"copies: {args.members}, DKIM-signed, personal "
          f"{'footer and List-Unsubscribe' if args.footer else 'List-Unsubscribe'}, "
          f"{CONNECTIONS} connections per dispatcher, {args.db}")
    ceiling = sink_ceiling(20_000, 3000)
    if ceiling:
        print(f"  baseline, smtp-source -> smtp-sink: {ceiling:,.0f} messages/s "
              f"({args.members / ceiling:.1f} s for {args.members:,})")
    for count in (1, args.dispatchers):
        run = fanout(args.db, args.members, count, args.footer)
        ratio = f", {args.members / run.seconds / ceiling:.2f} x the sink" if ceiling else ""
        print(f"  {count} dispatcher process{'es' if count > 1 else ''}: {run.seconds:.1f} s "
              f"({args.members / run.seconds:,.0f} copies/s{ratio}), CPU "
              f"{run.cpu * 1000 / args.members:.2f} ms per copy, peak RSS {run.rss_mb:.0f} MB, "
              f"{run.failed} failed")
    print(f"  load average {os.getloadavg()[0]:.1f} at the end")


if __name__ == "__main__":
    main()
