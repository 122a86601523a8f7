"""Digest at scale: 10,000 digest readers, 500 posts in the day.

Measures, on a scratch database (a SQLite file, or a PostgreSQL database made and dropped
at LISTSERV_BENCH_PG_URL):
  1. opening the run: reading the posts, rendering the body ONCE, queueing 10,000 deliveries;
  2. composing all 10,000 readers' messages as the outbox does at send time;
and prints the figures with the peak RSS of the process. With --send, it then delivers them
through the outbox to Postfix's smtp-sink (Debian package `postfix`) and prints that too.

    python bench/digest.py [--db sqlite|postgresql] [--readers 10000] [--posts 500] [--send]
"""

from __future__ import annotations

import argparse
import asyncio
import resource
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from pathlib import Path

from common import (
    fast_sink,
    free_port,
    ingest,
    scratch_database,
    scratch_dir,
    sink_name,
    wait_port,
)
from sqlalchemy import func, insert, select

from listserv.app import environment
from listserv.config import Config, parse
from listserv.core import digest
from listserv.core.addresses import Route
from listserv.outbound.outbox import Outbox
from listserv.outbound.transports import SmtpRelay
from listserv.schedule import digests
from listserv.store.database import Database
from listserv.store.models import Delivery, MailingList, Member

LIST = "living-with-als@lists.example.org"
PARAGRAPH = ("We tried the stretching routine the physiotherapist suggested, twice a day, "
             "and it helps with the cramps in the evening. ")


def peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def setup(db: Database, readers: int, posts: int, day: datetime) -> None:
    with db.session() as s:
        s.add(MailingList(address=LIST, title="Living with ALS", subject_prefix="[ALS]",
                          digest_hour=7, timezone="UTC", created_at=day - timedelta(days=30)))
        s.flush()
        list_id = s.scalar(select(MailingList.id))
        s.execute(insert(Member), [
            {"list_id": list_id, "address": f"reader{i}@example.org",
             "display_name": f"Reader {i}", "mode": "digest", "receive_own_posts": False,
             "joined_at": day - timedelta(days=30)}
            for i in range(readers)
        ])
    limits = parse({}, Path(".")).limits
    route = Route("list", LIST, "post")
    for n in range(posts):
        thread = n % 100
        msg = EmailMessage()
        msg["From"] = f"Reader {n % 50} <reader{n % 50}@example.org>"
        msg["To"] = LIST
        msg["Subject"] = f"Re: Question number {thread}" if n >= 100 else f"Question number {n}"
        msg["Message-ID"] = f"<p{n}@example.org>"
        if n >= 100:
            msg["In-Reply-To"] = f"<p{thread}@example.org>"
        msg.set_content(PARAGRAPH * 4 + "\n\nOn Monday someone wrote:\n> " + PARAGRAPH * 3)
        at = day + timedelta(seconds=60 * n)
        result = ingest(db, route, msg.as_bytes(), f"reader{n % 50}@example.org", at, limits)
        assert result.post_ids, result.detail


def send_all(db: Database, config: Config, expected: int) -> None:
    """Deliver every queued digest through the outbox to smtp-sink; print the rate."""
    port = free_port()
    sink = fast_sink(port)
    try:
        wait_port(port)
        relay = SmtpRelay("127.0.0.1", port, config.delivery.connections, 60.0)
        outbox = Outbox(db, config, relay, environment(config.base_dir),
                        lambda: datetime.now(UTC) + timedelta(days=2))

        async def drain() -> int:
            total = 0
            while attempted := await outbox.run_once():
                total += attempted
            await relay.close()
            return total

        started = time.perf_counter()
        attempted = asyncio.run(drain())
        took = time.perf_counter() - started
        with db.session() as s:
            sent = s.scalar(select(func.count()).select_from(Delivery)
                            .where(Delivery.status == "sent"))
        print(f"send through the outbox to {sink_name()}: {sent}/{expected} sent "
              f"({attempted} attempts) in {took:.1f} s ({sent / took:.0f} messages/s)")
    finally:
        sink.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--db", choices=["sqlite", "postgresql"], default="sqlite")
    parser.add_argument("--readers", type=int, default=10_000)
    parser.add_argument("--posts", type=int, default=500)
    parser.add_argument("--send", action="store_true", help="also deliver them to smtp-sink")
    args = parser.parse_args()
    day = datetime(2026, 11, 2, 7, 30, tzinfo=UTC)
    with scratch_dir() as tmp, scratch_database(args.db, Path(tmp)) as url:
        config = parse({"database": {"url": url}}, Path(tmp))
        db = Database(config.database_url)
        db.create_schema()
        started = time.perf_counter()
        setup(db, args.readers, args.posts, day)
        print(f"setup: {args.readers} readers, {args.posts} posts stored in "
              f"{time.perf_counter() - started:.1f} s")
        templates = environment(config.base_dir)

        started = time.perf_counter()
        with db.session() as s:
            ml = s.scalars(select(MailingList)).one()
            opened = digests.open_run(s, config, templates, ml,
                                      digest.period(day.date() + timedelta(days=1), 7, "UTC"),
                                      day + timedelta(days=1))
        open_s = time.perf_counter() - started
        print(f"open run (render once, queue {opened.recipients} deliveries, "
              f"{opened.posts} posts): {open_s:.2f} s")

        composer = digests.Composer(config, templates, lambda: day)
        with db.session() as s:
            ids = s.scalars(select(Delivery.id).where(Delivery.digest_id == opened.run_id)
                            .order_by(Delivery.id)).all()
        started = time.perf_counter()
        size = 0
        with db.session() as s:
            for delivery_id in ids:
                _, message = composer.compose(s, delivery_id)
                size = len(message)
        compose_s = time.perf_counter() - started
        print(f"compose {len(ids)} messages ({size / 1024:.0f} KiB each): {compose_s:.2f} s "
              f"({compose_s / max(len(ids), 1) * 1000:.2f} ms each)")
        print(f"build and queue all: {open_s + compose_s:.2f} s; "
              f"peak RSS {peak_rss_mb():.0f} MB")
        if args.send:
            send_all(db, config, len(ids))
            print(f"peak RSS after sending {peak_rss_mb():.0f} MB")
        db.dispose()


if __name__ == "__main__":
    main()
