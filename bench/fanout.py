"""Benchmark 2 and 5, fan-out: one post to a list of 100,000 members, delivered through a
local SMTP sink by `listserv serve` (receiver and dispatcher in one process). Prints
recipients/s, time to first and last delivery, peak RSS and CPU per message of the server
(with --first-only it stops at the first copy); with
--latency, also the ingest p50/p99 of posts sent while the fan-out runs, next to the same
server's figures when idle.

    python bench/fanout.py --db sqlite --members 100000 --latency
"""

from __future__ import annotations

import argparse
import smtplib
import sys
import threading
import time
from pathlib import Path

import load
from common import (
    LIST,
    QUIET,
    deliveries,
    fast_sink,
    free_port,
    listserv_server,
    machine,
    scratch_database,
    scratch_dir,
    seed_list,
    sink_name,
    wait_port,
    write_config,
)
from sqlalchemy import create_engine, func, select

from listserv.outbound import keys
from listserv.store.models import Delivery, Post


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--members", type=int, default=100_000)
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--dkim", action="store_true", help="sign every message with DKIM")
    parser.add_argument("--first-only", action="store_true",
                        help="stop once the first copy is sent (time to first copy only)")
    parser.add_argument("--latency", action="store_true",
                        help="also measure ingest latency while the fan-out runs")
    args = parser.parse_args()
    print(f"machine: {machine()}")
    print(f"sink: {sink_name()}")

    with scratch_dir() as tmp, scratch_database(args.db, Path(tmp)) as url:
        t = time.perf_counter()
        seed_list(url, args.members)
        print(f"seeded {args.members} members in {time.perf_counter() - t:.1f} s")
        port, sink_port = free_port(), free_port()
        sink = fast_sink(sink_port)
        config = write_config(Path(tmp), url, port, sink_port, connections=args.connections,
                              poll_seconds=1.0)
        if args.dkim:
            pem, _ = keys.generate()
            keys.write_private(Path(tmp) / "dkim.pem", pem)
            with config.open("a") as out:
                out.write('\n[dkim]\nselector = "bench"\ndomain = "lists.example.org"\n'
                          'private_key_file = "dkim.pem"\n')
            print("DKIM signing: on")
        server = listserv_server(config, "all")
        engine = create_engine(url)
        latency: dict[str, list[float]] = {}
        try:
            wait_port(port)
            wait_port(sink_port)
            if args.latency:
                latency["idle"] = load.run(port, 200, 2, "idle", pause=0.01, to=QUIET)[1]
            cpu0 = server.cpu_seconds()
            with smtplib.SMTP("127.0.0.1", port) as client:
                client.sendmail("poster@example.org", [LIST], load.message("fanout"))
            start = time.perf_counter()
            probe: threading.Thread | None = None
            if args.latency:
                def measure() -> None:
                    latency["fanout"] = load.run(port, 200, 2, "busy", pause=0.01,
                                                 to=QUIET)[1]
                probe = threading.Thread(target=measure)
                probe.start()
            while True:
                done = deliveries(engine, "sent") + deliveries(engine, "failed")
                if done >= (1 if args.first_only else args.members):
                    break
                if server.popen.poll() is not None:
                    sys.exit("server exited:\n" + server.stop())
                time.sleep(0.2)
            wall = time.perf_counter() - start
            cpu = server.cpu_seconds() - cpu0
            rss = server.peak_rss_mb()
            if probe is not None:
                probe.join()
            with engine.connect() as conn:
                received = conn.scalar(select(Post.received_at).where(
                    Post.message_id == "fanout@bench.example.org"))
                first = conn.scalar(select(func.min(Delivery.sent_at)))
                last = conn.scalar(select(func.max(Delivery.sent_at)))
                failed = deliveries(engine, "failed")
        finally:
            engine.dispose()
            log = server.stop()
            sink.stop()
        if "Traceback" in log:
            print(log[-3000:])

    to_first = (first - received).total_seconds() if first and received else float("nan")
    # Copies are stamped sent when their round is recorded, so this bounds the first 250.
    print(f"  time to first copy (post stored -> first copy recorded sent): {to_first:.2f} s"
          " (target < 0.5 s)")
    if args.first_only:
        return
    to_last = (last - received).total_seconds() if last and received else wall
    # Each member's copy is its own message: VERP sender and personal List-Unsubscribe.
    messages = args.members
    print(f"fan-out on {args.db}: {args.members} members, {args.connections} connections, "
          f"one personalized message per member, {failed} failed")
    print(f"  time to last delivery: {to_last:.1f} s  ({args.members / to_last:.0f} recipients/s;"
          f" target 100,000 in < 60 s)")
    print(f"  server peak RSS: {rss:.0f} MB (target < 250 MB)")
    print(f"  server CPU: {cpu:.1f} s = {cpu * 1000 / messages:.2f} ms per message, "
          f"{cpu * 1e6 / args.members:.0f} us per recipient")
    for name, values in latency.items():
        print(f"  ingest latency {name:7s}: p50 {load.percentile(values, 50) * 1000:6.1f} ms"
              f"  p99 {load.percentile(values, 99) * 1000:6.1f} ms  ({len(values)} posts)")


if __name__ == "__main__":
    main()
