"""Benchmark 1, ingest: posts accepted per second over SMTP on loopback, 8 concurrent
clients, each post committed durably before the 250, next to a same-run baseline (a bare
aiosmtpd server that answers 250 and stores nothing).

    python bench/ingest.py --db sqlite --posts 2000 [--receivers 2]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import load
from common import (
    Proc,
    free_port,
    listserv_server,
    machine,
    scratch_database,
    scratch_dir,
    seed_list,
    wait_port,
    write_config,
)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--posts", type=int, default=2000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--receivers", type=int, default=1,
                        help="receiver processes sharing the port (SO_REUSEPORT)")
    args = parser.parse_args()
    print(f"machine: {machine()}")

    port = free_port()
    baseline = Proc([sys.executable,
                     str(Path(__file__).with_name("nullsmtp.py")), str(port)])
    try:
        wait_port(port)
        load.run(port, args.clients * 5, args.clients, "warm")
        base_s, base_lat = load.run(port, args.posts, args.clients, "base")
    finally:
        baseline.stop()

    with scratch_dir() as tmp, scratch_database(args.db, Path(tmp)) as url:
        seed_list(url, 10)
        port = free_port()
        config = write_config(Path(tmp), url, port, free_port())
        servers = [listserv_server(config, "receiver") for _ in range(args.receivers)]
        try:
            wait_port(port)
            time.sleep(1)  # let every receiver bind before the load starts
            load.run(port, args.clients * 5, args.clients, "warm")
            cpu0 = sum(s.cpu_seconds() for s in servers)
            ls_s, ls_lat = load.run(port, args.posts, args.clients, "post")
            cpu = sum(s.cpu_seconds() for s in servers) - cpu0
            rss = max(s.peak_rss_mb() for s in servers)
        finally:
            logs = [s.stop() for s in servers]
        for log in logs:
            if "Traceback" in log:
                print(log)

    posts = len(base_lat)
    base_rate, ls_rate = posts / base_s, len(ls_lat) / ls_s
    print(f"ingest on {args.db}: {len(ls_lat)} posts, {args.clients} clients, "
          f"{args.receivers} receiver process(es)")
    print(f"  baseline (aiosmtpd, stores nothing): {base_rate:8.0f} posts/s  "
          f"p50 {load.percentile(base_lat, 50) * 1000:6.1f} ms  "
          f"p99 {load.percentile(base_lat, 99) * 1000:6.1f} ms")
    print(f"  listserv (durable commit before 250): {ls_rate:7.0f} posts/s  "
          f"p50 {load.percentile(ls_lat, 50) * 1000:6.1f} ms  "
          f"p99 {load.percentile(ls_lat, 99) * 1000:6.1f} ms")
    print(f"  ratio: {ls_rate / base_rate:.0%} of baseline (target >= 50% on SQLite)")
    print(f"  receiver CPU {cpu * 1000 / len(ls_lat):.2f} ms/post, "
          f"peak RSS {rss:.0f} MB per process")


if __name__ == "__main__":
    main()
